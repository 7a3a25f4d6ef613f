//! Browsing histories to vectors: the [`Embedder`] capability and its two implementations.
//!
//! Owns the contract every embedder keeps ([`Embedder`]), the closed set of configured
//! embedders ([`ConfiguredEmbedder`], built from settings in one place that also checks
//! dimensions, in the manner of meilisearch's embedder enum), the local TF-IDF + SVD embedder
//! ([`local`], the default), the OpenAI-compatible client ([`openai`], the only file that
//! touches async-openai) and its content-hash cache ([`cache`]). It does not build the
//! documents (that is `features`), store vectors (`store`) or decide what to do with a
//! customer whose history is empty (the pipeline flags them; see [`Embedder::embed`]).
//!
//! Progress: [`Embedder::embed`] takes `&dyn Progress`. [`Progress`] is `Sync`, so the
//! reference is `Send` and the returned future can be `Send` without changing that trait;
//! implementations report progress from the task that awaits them, never from spawned tasks.

pub mod cache;
pub mod local;
pub mod openai;
pub mod settings;

use ndarray::Array2;
use serde::Serialize;

use crate::analysis::progress::Progress;
use crate::domain::BrowsingDocument;

pub use local::{LocalEmbedder, LocalError, LocalParams};
pub use openai::{OpenAiEmbedder, OpenAiError};
pub use settings::{ApiKey, EmbeddingProvider, EmbeddingSettings, LocalSettings, OpenAiSettings};

/// What a run records about the embedder it used: enough to reproduce or explain the vectors,
/// never a secret (no key; the base URL is recorded without user info or query).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EmbedderInfo {
    /// `"local"` or `"openai"`.
    pub provider: String,
    /// The model: `tfidf-rsvd` for the local embedder, the model name otherwise.
    pub model: String,
    /// Length of every vector this embedder returns.
    pub dimensions: usize,
    /// Facts a reader should know, e.g. that fewer dimensions than requested were possible.
    pub notes: Vec<String>,
}

/// Turns browsing histories into fixed-length vectors.
///
/// Contract (every implementation keeps it; callers rely on it):
/// - row `i` of the result is the vector of `docs[i]`: input order is preserved, whatever
///   batching or concurrency happens inside;
/// - the result has exactly `docs.len()` rows and [`Embedder::dimensions`] columns, and every
///   value is finite; an implementation that cannot meet this returns an error, never a
///   partial or padded matrix;
/// - an empty `docs` gives a `0 × dimensions` matrix without any work or request;
/// - the same documents give the same vectors (the local embedder for a fixed fit; a remote
///   one up to the provider's own determinism, and exactly when served from the cache);
/// - [`Embedder::describe`] contains no secret and is safe to write into run outputs.
pub trait Embedder: Send + Sync {
    /// Provider, model and dimensions, recorded in run outputs.
    fn describe(&self) -> EmbedderInfo;
    /// Length of every vector returned by [`Embedder::embed`].
    fn dimensions(&self) -> usize;
    /// Embeds `docs` in order; see the trait's contract.
    fn embed(
        &self,
        docs: &[BrowsingDocument],
        progress: &dyn Progress,
    ) -> impl std::future::Future<Output = Result<Array2<f32>, EmbeddingError>> + Send;
}

/// Why embedding failed, as callers see it.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddingError {
    /// The `[embedding]` settings are inconsistent; the reason names the key.
    #[error("configuration: {reason}")]
    InvalidSettings {
        /// Which key and why.
        reason: String,
    },
    /// An embedder returned vectors of another length than it declared.
    #[error("embedder returned vectors of {got} dimensions, expected {expected}")]
    DimensionMismatch {
        /// Declared length.
        expected: usize,
        /// Length received.
        got: usize,
    },
    /// The local embedder failed.
    #[error(transparent)]
    Local(#[from] LocalError),
    /// The OpenAI-compatible embedder failed.
    #[error(transparent)]
    OpenAi(#[from] OpenAiError),
}

/// The embedders segscope can be configured with: a closed set, so that adding one is a
/// compile-time-checked change in this file and `build` is the one place that reads the
/// `[embedding]` settings.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "built once per run and never moved in a loop; boxing would only add a hop"
)]
pub enum ConfiguredEmbedder {
    /// TF-IDF + randomized SVD, fitted on the run's corpus.
    Local(LocalEmbedder),
    /// An OpenAI-compatible endpoint.
    OpenAi(OpenAiEmbedder),
}

impl ConfiguredEmbedder {
    /// Builds the configured embedder: validates the settings, fits the local embedder on
    /// `corpus` (CPU work: call from a blocking context for large corpora) or prepares the
    /// remote client (no request is made here). `seed` seeds the SVD's random projection or
    /// the retry jitter.
    pub fn build(
        settings: &EmbeddingSettings,
        corpus: &[BrowsingDocument],
        seed: u64,
    ) -> Result<Self, EmbeddingError> {
        settings.validate()?;
        let embedder = match settings.provider {
            EmbeddingProvider::Local => {
                let params = LocalParams::from(&settings.local);
                ConfiguredEmbedder::Local(LocalEmbedder::fit(corpus, &params, seed)?)
            }
            EmbeddingProvider::Openai => {
                ConfiguredEmbedder::OpenAi(OpenAiEmbedder::new(&settings.openai, seed)?)
            }
        };
        let info = embedder.describe();
        if info.dimensions != embedder.dimensions() || embedder.dimensions() == 0 {
            return Err(EmbeddingError::DimensionMismatch {
                expected: embedder.dimensions(),
                got: info.dimensions,
            });
        }
        Ok(embedder)
    }
}

impl Embedder for ConfiguredEmbedder {
    fn describe(&self) -> EmbedderInfo {
        match self {
            ConfiguredEmbedder::Local(e) => e.describe(),
            ConfiguredEmbedder::OpenAi(e) => e.describe(),
        }
    }

    fn dimensions(&self) -> usize {
        match self {
            ConfiguredEmbedder::Local(e) => e.dimensions(),
            ConfiguredEmbedder::OpenAi(e) => e.dimensions(),
        }
    }

    async fn embed(
        &self,
        docs: &[BrowsingDocument],
        progress: &dyn Progress,
    ) -> Result<Array2<f32>, EmbeddingError> {
        let out = match self {
            ConfiguredEmbedder::Local(e) => e.embed(docs, progress).await?,
            ConfiguredEmbedder::OpenAi(e) => e.embed(docs, progress).await?,
        };
        // The contract, checked once at the seam so no caller has to.
        if out.nrows() != docs.len() || out.ncols() != self.dimensions() {
            return Err(EmbeddingError::DimensionMismatch {
                expected: self.dimensions(),
                got: out.ncols(),
            });
        }
        Ok(out)
    }
}
