//! Turns validated tables into the matrix the algorithms see.
//!
//! For now this is scaling; RFM and browsing features (store data) join here later.

pub mod scaling;

pub use scaling::{FittedScaler, fit_scaler};
