//! Turns validated tables into the matrix the algorithms see.
//!
//! Scaling, RFM from transactions ([`rfm`]) and browsing behaviour from events
//! ([`browsing`]).

pub mod browsing;
pub mod rfm;
pub mod scaling;

pub use browsing::{BrowsingBehaviour, behaviour};
pub use rfm::{Rfm, rfm};
pub use scaling::{FittedScaler, fit_scaler};
