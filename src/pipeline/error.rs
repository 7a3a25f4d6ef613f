//! How a pipeline run fails, in one enum so the CLI and the service map each cause to an
//! exit status or HTTP status in one place.

use crate::analysis::clustering::ClusteringError;
use crate::analysis::validity::ValidityError;
use crate::embedding::EmbeddingError;
use crate::ingest::IngestError;
use crate::ingest::store::StoreIngestError;
use crate::llm::OpenAiChatError;
use crate::report::ReportError;
use crate::store::StoreError;

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The input file is unusable.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// A transactions or events file is unusable.
    #[error(transparent)]
    StoreIngest(#[from] StoreIngestError),
    /// Browsing histories could not be embedded.
    #[error("embedding: {0}")]
    Embedding(#[from] EmbeddingError),
    /// The vector store failed.
    #[error("vector store: {0}")]
    Store(#[from] StoreError),
    /// The input is readable but cannot support the request (e.g. fewer customers than k).
    #[error("{file}: {message}")]
    Unsupported {
        /// Input file.
        file: String,
        /// What does not fit.
        message: String,
    },
    /// Clustering failed.
    #[error(transparent)]
    Clustering(#[from] ClusteringError),
    /// A map failed.
    #[error("{map} map failed: {message}")]
    Map {
        /// Which map.
        map: &'static str,
        /// What went wrong.
        message: String,
    },
    /// A validity measure failed.
    #[error("validity measure failed: {0}")]
    Validity(#[from] ValidityError),
    /// Output could not be written.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// The `[llm]` settings do not describe a usable chat model (checked before any work,
    /// so a typo does not cost a whole run). A model that fails later never fails the run.
    #[error("llm settings: {0}")]
    ChatSettings(#[source] OpenAiChatError),
}

impl PipelineError {
    /// True when the cause is in the user's data or request rather than in segscope or the
    /// machine; the CLI maps this to its own exit code.
    pub fn is_input_problem(&self) -> bool {
        matches!(
            self,
            PipelineError::Ingest(_)
                | PipelineError::StoreIngest(_)
                | PipelineError::Unsupported { .. }
                | PipelineError::Clustering(
                    ClusteringError::TooFewDistinctRows { .. } | ClusteringError::AllNoise { .. }
                )
        )
    }
}
