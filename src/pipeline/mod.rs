//! The use cases, each a sequence of capabilities: segmenting a feature table
//! ([`segment`]) or store data ([`store_segment`]), both on the shared core engine
//! (`engine`). Weekly tracking (`crate::track`) reuses their stages.
//!
//! A pipeline owns stage order, timings and what goes into the output files; the maths
//! stays in [`crate::analysis`], the words in [`crate::narrative`], the file formats in
//! [`crate::report`].

pub(crate) mod engine;
mod error;
pub mod fit_sample;
pub mod segment;
pub mod store_segment;

pub use error::PipelineError;
pub use segment::{SegmentRequest, SegmentRun, run_segment};
pub use store_segment::{StoreSegmentRequest, StoreSegmentRun, parse_as_of, run_store_segment};
