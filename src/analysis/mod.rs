//! CPU-only mathematics on ndarray: clustering, 2D maps and validity measures.
//!
//! Owns the algorithms and nothing else: no files, no async, no logging of customer data.
//! Every function that draws random numbers takes a seed or an RNG; every parallel loop
//! either writes disjoint outputs or reduces in a fixed order, so results are identical
//! whatever the number of threads.

pub mod clustering;
pub mod knn;
pub mod kpis;
pub mod maps;
pub mod profile;
pub mod progress;
pub mod separation;
pub(crate) mod streams;
#[cfg(test)]
pub(crate) mod test_blobs;
pub mod validity;
