//! The use cases, each a sequence of capabilities: for now, segmenting a feature table
//! ([`segment`]). Store data, weekly tracking and the service join here later.
//!
//! A pipeline owns stage order, timings and what goes into the output files; the maths
//! stays in [`crate::analysis`], the words in [`crate::narrative`], the file formats in
//! [`crate::report`].

pub mod fit_sample;
pub mod segment;

pub use segment::{PipelineError, SegmentRequest, SegmentRun, run_segment};
