//! 2D maps of the customers: PCA, UMAP and t-SNE.
//!
//! Each map is a pure function of the scaled feature matrix, its parameters and a seed.

pub mod pca;
pub mod tsne;
pub mod umap;
