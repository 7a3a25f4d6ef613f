//! The default embedder: TF-IDF over browsing terms, reduced by a seeded randomized truncated
//! SVD (latent semantic analysis). No network, deterministic for a seed, learned from the data.
//!
//! Owns the vocabulary, the idf weights, the SVD components and the sparse products they need
//! (written here: the corpus is a sparse CSR matrix, the projections are small and dense). It
//! does not build documents, and it does not centre the matrix (LSA, like scikit-learn's
//! `TruncatedSVD`, works on the raw sparse TF-IDF so that sparsity survives).
//!
//! Decisions, each with its reason:
//! - **Term keys** are `(kind, value)`, so `brand:apple` and a category `apple` stay apart.
//! - **Sublinear tf is `ln(1 + w)`, not `1 + ln w`.** The weights are recency-weighted counts
//!   and are often below 1 (an old single view); `1 + ln w` would turn those negative.
//!   `ln(1 + w)` is positive for every `w > 0`, close to `w` for small weights and
//!   logarithmic for large ones, which is what sublinear tf is for.
//! - **Smooth idf** `ln((1 + n) / (1 + df)) + 1` (scikit-learn's), rows l2-normalised.
//! - **Randomized SVD** (Halko, Martinsson, Tropp 2011, algorithm 4.4): a Gaussian test matrix
//!   with `dimensions + oversampling` columns, `power_iterations` rounds of re-orthonormalised
//!   power iteration, modified Gram–Schmidt (twice, for stability) as the QR, and an exact
//!   one-sided Jacobi SVD of the small projected matrix. Signs are fixed so that each
//!   component's largest loading is positive.
//! - **Fewer terms than dimensions:** the embedder uses `min(dimensions, vocabulary,
//!   non-empty histories)` dimensions and says so in [`LocalEmbedder::describe`]'s notes,
//!   rather than erroring: a small store is still worth segmenting, and the run records it.
//!   A corpus with no term at all above `min_df` is an error ([`LocalError::EmptyVocabulary`]).
//! - **Empty documents embed to the zero vector**, and so do documents whose terms were all
//!   unseen at fit time: there is nothing to place them by. The pipeline flags such customers.
//! - **Determinism:** the only randomness is the seeded test matrix; parallel work is split by
//!   rows and every reduction runs in a fixed order, so results do not depend on thread count.

use std::collections::HashMap;

use ndarray::{Array2, Axis};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{EmbedderInfo, EmbeddingError, LocalSettings};
use crate::analysis::progress::Progress;
use crate::domain::{BrowsingDocument, TermKind};

/// Rows embedded between two progress reports.
const PROGRESS_CHUNK: usize = 4096;

/// Hyperparameters of the local embedder, as configured in `[embedding.local]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalParams {
    /// Requested vector length.
    pub dimensions: usize,
    /// Minimum number of histories a term must appear in to be kept.
    pub min_df: usize,
    /// Extra random directions beyond `dimensions`.
    pub oversampling: usize,
    /// Rounds of power iteration.
    pub power_iterations: usize,
}

impl Default for LocalParams {
    fn default() -> Self {
        LocalParams {
            dimensions: 32,
            min_df: 2,
            oversampling: 10,
            power_iterations: 4,
        }
    }
}

impl From<&LocalSettings> for LocalParams {
    fn from(s: &LocalSettings) -> Self {
        LocalParams {
            dimensions: s.dimensions,
            min_df: s.min_df,
            oversampling: s.oversampling,
            power_iterations: s.power_iterations,
        }
    }
}

/// Why the local embedder could not be fitted.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A parameter is out of range.
    #[error("local embedder: {reason}")]
    InvalidParams {
        /// Which parameter and why.
        reason: String,
    },
    /// A saved model that cannot be loaded.
    #[error("saved local embedder: {reason}")]
    InvalidSaved {
        /// Which field and why.
        reason: String,
    },
    /// No term appears in at least `min_df` of the histories, so there is nothing to learn.
    #[error(
        "local embedder: no browsing term appears in at least {min_df} of the {documents} histories; \
         lower embedding.local.min_df or provide browsing events"
    )]
    EmptyVocabulary {
        /// Histories in the corpus.
        documents: usize,
        /// The configured minimum document frequency.
        min_df: usize,
    },
}

/// Version of [`SavedLocalEmbedder`]'s layout; bumped on incompatible changes.
pub const SAVED_FORMAT_VERSION: u32 = 1;

/// Name of the file in a run's directory that holds the run's fitted local embedder.
pub const SAVED_FILE: &str = "local_embedder.json";

/// One vocabulary term as saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedTerm {
    /// What the term names.
    pub kind: TermKind,
    /// The value, as in the browsing documents.
    pub value: String,
    /// Its smooth idf.
    pub idf: f64,
}

/// A fitted local embedder as a file: vocabulary with idf, the SVD components (row-major,
/// `terms × dimensions`) and the singular values. Written with each store run so that
/// later questions can embed text with the same model; it holds terms and weights learned
/// from the whole corpus, never a customer's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedLocalEmbedder {
    /// Layout version ([`SAVED_FORMAT_VERSION`]).
    pub format_version: u32,
    /// The vocabulary, in index order.
    pub terms: Vec<SavedTerm>,
    /// Vector length.
    pub dimensions: usize,
    /// `terms × dimensions` values, row by row.
    pub components: Vec<f64>,
    /// Singular values, largest first.
    pub singular_values: Vec<f64>,
    /// Notes from the fit.
    pub notes: Vec<String>,
}

/// A fitted TF-IDF + SVD model; embeds any documents, including ones not seen at fit time.
pub struct LocalEmbedder {
    /// Term index per kind (indexed by [`kind_index`]), so look-ups borrow the value.
    vocab: [HashMap<String, u32>; 3],
    /// Smooth idf per term index.
    idf: Vec<f64>,
    /// `vocabulary × dimensions`: column `j` is the `j`-th right singular vector.
    components: Array2<f64>,
    /// Singular values of the fitted TF-IDF matrix, largest first.
    singular_values: Vec<f64>,
    /// What the run should know (e.g. reduced dimensions).
    notes: Vec<String>,
}

impl std::fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("vocabulary", &self.idf.len())
            .field("dimensions", &self.components.ncols())
            .field("singular_values", &self.singular_values)
            .finish_non_exhaustive()
    }
}

fn kind_index(kind: TermKind) -> usize {
    match kind {
        TermKind::Category => 0,
        TermKind::Brand => 1,
        TermKind::Event => 2,
    }
}

impl LocalEmbedder {
    /// Learns the vocabulary (terms in at least `min_df` histories), idf and SVD components
    /// from `corpus`. CPU-bound (parallel over rows); run it off the async runtime.
    pub fn fit(
        corpus: &[BrowsingDocument],
        params: &LocalParams,
        seed: u64,
    ) -> Result<Self, LocalError> {
        if params.dimensions == 0 || params.min_df == 0 {
            return Err(LocalError::InvalidParams {
                reason: "dimensions and min_df must be at least 1".into(),
            });
        }
        let n = corpus.len();
        let mut df: HashMap<(TermKind, &str), usize> = HashMap::new();
        for doc in corpus {
            for t in doc.terms() {
                *df.entry((t.kind, t.value.as_str())).or_insert(0) += 1;
            }
        }
        let mut kept: Vec<((TermKind, &str), usize)> = df
            .into_iter()
            .filter(|&(_, count)| count >= params.min_df)
            .collect();
        if kept.is_empty() {
            return Err(LocalError::EmptyVocabulary {
                documents: n,
                min_df: params.min_df,
            });
        }
        // Sorted, so term indices (and hence every product) do not depend on hashing.
        kept.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut vocab: [HashMap<String, u32>; 3] = Default::default();
        let mut idf = Vec::with_capacity(kept.len());
        for (i, ((kind, value), count)) in kept.iter().enumerate() {
            vocab[kind_index(*kind)].insert((*value).to_string(), i as u32);
            idf.push(((1.0 + n as f64) / (1.0 + *count as f64)).ln() + 1.0);
        }
        let mut model = LocalEmbedder {
            vocab,
            idf,
            components: Array2::zeros((kept.len(), 0)),
            singular_values: Vec::new(),
            notes: Vec::new(),
        };
        let x = model.tfidf(corpus);
        let non_empty = (0..x.nrows()).filter(|&r| x.row_nnz(r) > 0).count();
        let vocabulary = model.idf.len();
        let k = params.dimensions.min(vocabulary).min(non_empty);
        if k < params.dimensions {
            model.notes.push(format!(
                "local embedder: {k} dimensions instead of the {} requested, because the data \
                 has only {vocabulary} terms in at least {} histories and {non_empty} non-empty histories",
                params.dimensions, params.min_df
            ));
            tracing::warn!(
                requested = params.dimensions,
                dimensions = k,
                vocabulary,
                non_empty,
                "local embedder reduced its dimensions"
            );
        }
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let (sigma, components) = randomized_svd(
            &x,
            k,
            params.oversampling,
            params.power_iterations,
            &mut rng,
        );
        model.singular_values = sigma;
        model.components = components;
        Ok(model)
    }

    /// Singular values of the fitted TF-IDF matrix, largest first (one per dimension).
    pub fn singular_values(&self) -> &[f64] {
        &self.singular_values
    }

    /// Number of terms kept at fit time.
    pub fn vocabulary_len(&self) -> usize {
        self.idf.len()
    }

    /// Provider, model and effective dimensions, with notes on any reduction.
    pub fn describe(&self) -> EmbedderInfo {
        EmbedderInfo {
            provider: "local".into(),
            model: "tfidf-rsvd".into(),
            dimensions: self.dimensions(),
            notes: self.notes.clone(),
        }
    }

    /// Effective vector length (may be below the requested one; see the module doc).
    pub fn dimensions(&self) -> usize {
        self.components.ncols()
    }

    /// The fitted model in a form that can be written to a file and loaded by a later
    /// process: `segscope ask` embeds a free-text description with the very model a run's
    /// customers were embedded with, so that its vectors are comparable with the stored ones.
    pub fn save(&self) -> SavedLocalEmbedder {
        let mut terms: Vec<Option<SavedTerm>> = vec![None; self.idf.len()];
        for kind in [TermKind::Category, TermKind::Brand, TermKind::Event] {
            for (value, &j) in &self.vocab[kind_index(kind)] {
                terms[j as usize] = Some(SavedTerm {
                    kind,
                    value: value.clone(),
                    idf: self.idf[j as usize],
                });
            }
        }
        SavedLocalEmbedder {
            format_version: SAVED_FORMAT_VERSION,
            terms: terms.into_iter().flatten().collect(),
            dimensions: self.components.ncols(),
            components: self.components.iter().copied().collect(),
            singular_values: self.singular_values.clone(),
            notes: self.notes.clone(),
        }
    }

    /// Rebuilds a model written by [`LocalEmbedder::save`], checking that every length
    /// agrees so that a truncated or hand-edited file is an error, not wrong vectors.
    pub fn load(saved: SavedLocalEmbedder) -> Result<Self, LocalError> {
        let invalid = |reason: String| Err(LocalError::InvalidSaved { reason });
        if saved.format_version != SAVED_FORMAT_VERSION {
            return invalid(format!(
                "format_version is {}, this segscope reads {SAVED_FORMAT_VERSION}",
                saved.format_version
            ));
        }
        let m = saved.terms.len();
        let k = saved.dimensions;
        if saved.components.len() != m * k {
            return invalid(format!(
                "components has {} values, expected terms ({m}) × dimensions ({k})",
                saved.components.len()
            ));
        }
        if saved.singular_values.len() != k {
            return invalid(format!(
                "singular_values has {} values, expected dimensions ({k})",
                saved.singular_values.len()
            ));
        }
        if saved.components.iter().any(|v| !v.is_finite())
            || saved.terms.iter().any(|t| !t.idf.is_finite())
        {
            return invalid("components and idf must be finite numbers".into());
        }
        let mut vocab: [HashMap<String, u32>; 3] = Default::default();
        let mut idf = Vec::with_capacity(m);
        for (i, term) in saved.terms.into_iter().enumerate() {
            if vocab[kind_index(term.kind)]
                .insert(term.value.clone(), i as u32)
                .is_some()
            {
                return invalid(format!(
                    "terms lists {}:{} twice",
                    term.kind.key(),
                    term.value
                ));
            }
            idf.push(term.idf);
        }
        let components = Array2::from_shape_vec((m, k), saved.components).map_err(|e| {
            LocalError::InvalidSaved {
                reason: format!("components: {e}"),
            }
        })?;
        Ok(LocalEmbedder {
            vocab,
            idf,
            components,
            singular_values: saved.singular_values,
            notes: saved.notes,
        })
    }

    /// Every term of the vocabulary with its kind, in index order (the order of
    /// [`LocalEmbedder::term_loadings`]).
    pub fn vocabulary(&self) -> Vec<(TermKind, &str)> {
        let mut terms: Vec<Option<(TermKind, &str)>> = vec![None; self.idf.len()];
        for kind in [TermKind::Category, TermKind::Brand, TermKind::Event] {
            for (value, &j) in &self.vocab[kind_index(kind)] {
                terms[j as usize] = Some((kind, value.as_str()));
            }
        }
        terms.into_iter().flatten().collect()
    }

    /// How strongly each vocabulary term loads on `vector` (an embedding of this model):
    /// the vector mapped back to term space through the SVD components. This is how a
    /// group's average embedding is read as "what they browse" without keeping anyone's
    /// history. A vector of another length gives no loadings.
    pub fn term_loadings(&self, vector: &[f32]) -> Vec<f64> {
        if vector.len() != self.components.ncols() {
            return Vec::new();
        }
        self.components
            .rows()
            .into_iter()
            .map(|row| row.iter().zip(vector).map(|(c, v)| c * f64::from(*v)).sum())
            .collect()
    }

    /// Embeds `docs` on the calling thread (parallel inside with rayon): the synchronous form
    /// of [`super::Embedder::embed`], for callers already off the async runtime.
    pub fn embed_blocking(
        &self,
        docs: &[BrowsingDocument],
        progress: &dyn Progress,
    ) -> Array2<f32> {
        let k = self.dimensions();
        let mut out = Array2::<f32>::zeros((docs.len(), k));
        progress.start("embed (local)", docs.len() as u64);
        for (chunk, mut block) in docs
            .chunks(PROGRESS_CHUNK)
            .zip(out.axis_chunks_iter_mut(Axis(0), PROGRESS_CHUNK))
        {
            let x = self.tfidf(chunk);
            let projected = csr_times_dense(&x, &self.components);
            block
                .axis_iter_mut(Axis(0))
                .into_par_iter()
                .zip(projected.axis_iter(Axis(0)).into_par_iter())
                .for_each(|(mut dst, src)| {
                    let norm = src.dot(&src).sqrt();
                    if norm > 0.0 {
                        for (d, s) in dst.iter_mut().zip(src.iter()) {
                            *d = (s / norm) as f32;
                        }
                    }
                });
            progress.advance(chunk.len() as u64);
        }
        progress.finish();
        out
    }

    /// TF-IDF rows of `docs` over the fitted vocabulary (unseen terms dropped), l2-normalised.
    fn tfidf(&self, docs: &[BrowsingDocument]) -> Csr {
        let rows: Vec<Vec<(u32, f64)>> = docs
            .par_iter()
            .map(|doc| {
                let mut row: Vec<(u32, f64)> = doc
                    .terms()
                    .iter()
                    .filter_map(|t| {
                        let j = *self.vocab[kind_index(t.kind)].get(t.value.as_str())?;
                        Some((j, t.weight.ln_1p() * self.idf[j as usize]))
                    })
                    .collect();
                let norm = row.iter().map(|(_, v)| v * v).sum::<f64>().sqrt();
                if norm > 0.0 {
                    row.iter_mut().for_each(|(_, v)| *v /= norm);
                }
                row
            })
            .collect();
        Csr::from_rows(&rows, self.idf.len())
    }
}

impl super::Embedder for LocalEmbedder {
    fn describe(&self) -> EmbedderInfo {
        LocalEmbedder::describe(self)
    }

    fn dimensions(&self) -> usize {
        LocalEmbedder::dimensions(self)
    }

    /// CPU-bound: on a multi-threaded tokio runtime this runs inside `block_in_place`, so the
    /// runtime moves its other tasks elsewhere; on a current-thread runtime it runs inline.
    /// Callers that want it wholly off the runtime use [`LocalEmbedder::embed_blocking`]
    /// inside `spawn_blocking`.
    async fn embed(
        &self,
        docs: &[BrowsingDocument],
        progress: &dyn Progress,
    ) -> Result<Array2<f32>, EmbeddingError> {
        let multi_thread = tokio::runtime::Handle::try_current()
            .map(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
            .unwrap_or(false);
        if multi_thread {
            Ok(tokio::task::block_in_place(|| {
                self.embed_blocking(docs, progress)
            }))
        } else {
            Ok(self.embed_blocking(docs, progress))
        }
    }
}

/// A compressed-sparse-row matrix; only what the embedder needs.
#[derive(Debug, Clone)]
pub(crate) struct Csr {
    indptr: Vec<usize>,
    indices: Vec<u32>,
    values: Vec<f64>,
    ncols: usize,
}

impl Csr {
    fn from_rows(rows: &[Vec<(u32, f64)>], ncols: usize) -> Csr {
        let nnz = rows.iter().map(Vec::len).sum();
        let mut indptr = Vec::with_capacity(rows.len() + 1);
        let mut indices = Vec::with_capacity(nnz);
        let mut values = Vec::with_capacity(nnz);
        indptr.push(0);
        for row in rows {
            for &(j, v) in row {
                indices.push(j);
                values.push(v);
            }
            indptr.push(indices.len());
        }
        Csr {
            indptr,
            indices,
            values,
            ncols,
        }
    }

    #[cfg(test)]
    pub(crate) fn from_dense(a: &Array2<f64>) -> Csr {
        let rows: Vec<Vec<(u32, f64)>> = a
            .rows()
            .into_iter()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .filter(|(_, v)| **v != 0.0)
                    .map(|(j, v)| (j as u32, *v))
                    .collect()
            })
            .collect();
        Csr::from_rows(&rows, a.ncols())
    }

    fn nrows(&self) -> usize {
        self.indptr.len() - 1
    }

    fn row_nnz(&self, r: usize) -> usize {
        self.indptr[r + 1] - self.indptr[r]
    }

    fn row(&self, r: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        let span = self.indptr[r]..self.indptr[r + 1];
        self.indices[span.clone()]
            .iter()
            .zip(&self.values[span])
            .map(|(&j, &v)| (j as usize, v))
    }

    /// The transpose, also CSR (so products with it are row-parallel and reduce in order).
    fn transpose(&self) -> Csr {
        let mut counts = vec![0usize; self.ncols + 1];
        for &j in &self.indices {
            counts[j as usize + 1] += 1;
        }
        for j in 0..self.ncols {
            counts[j + 1] += counts[j];
        }
        let indptr = counts.clone();
        let mut next = counts;
        let mut indices = vec![0u32; self.indices.len()];
        let mut values = vec![0.0; self.values.len()];
        for r in 0..self.nrows() {
            for (j, v) in self.row(r) {
                let at = next[j];
                indices[at] = r as u32;
                values[at] = v;
                next[j] += 1;
            }
        }
        Csr {
            indptr,
            indices,
            values,
            ncols: self.nrows(),
        }
    }
}

/// `x · d` for sparse `x` (n × m) and dense `d` (m × l), parallel over rows of `x`.
fn csr_times_dense(x: &Csr, d: &Array2<f64>) -> Array2<f64> {
    let l = d.ncols();
    let mut out = Array2::<f64>::zeros((x.nrows(), l));
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(r, mut dst)| {
            for (j, v) in x.row(r) {
                dst.scaled_add(v, &d.row(j));
            }
        });
    out
}

/// Orthonormalises the columns of `a` in place order (modified Gram–Schmidt, applied twice for
/// stability); a column that is (numerically) in the span of earlier ones becomes zero.
fn orthonormalize(a: &Array2<f64>) -> Array2<f64> {
    let l = a.ncols();
    let mut cols: Vec<Vec<f64>> = (0..l).map(|j| a.column(j).to_vec()).collect();
    for j in 0..l {
        let (done, rest) = cols.split_at_mut(j);
        let c = &mut rest[0];
        let before = dot(c, c).sqrt();
        for _pass in 0..2 {
            for q in done.iter() {
                let r = dot(q, c);
                if r != 0.0 {
                    c.iter_mut().zip(q).for_each(|(ci, qi)| *ci -= r * qi);
                }
            }
        }
        let after = dot(c, c).sqrt();
        if before == 0.0 || after <= 1e-10 * before {
            c.iter_mut().for_each(|v| *v = 0.0);
        } else {
            c.iter_mut().for_each(|v| *v /= after);
        }
    }
    let mut q = Array2::<f64>::zeros(a.dim());
    for (j, col) in cols.iter().enumerate() {
        q.column_mut(j)
            .iter_mut()
            .zip(col)
            .for_each(|(d, s)| *d = *s);
    }
    q
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// One standard normal draw (Box–Muller), so the test matrix needs no extra crate.
fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = 1.0 - rng.r#gen::<f64>(); // (0, 1]
    let u2: f64 = rng.r#gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Top-`k` singular values and right singular vectors (`m × k`) of `x` by randomized SVD.
pub(crate) fn randomized_svd(
    x: &Csr,
    k: usize,
    oversampling: usize,
    power_iterations: usize,
    rng: &mut impl Rng,
) -> (Vec<f64>, Array2<f64>) {
    let m = x.ncols;
    let l = (k + oversampling).min(m).max(k);
    let omega = Array2::from_shape_simple_fn((m, l), || standard_normal(rng));
    let xt = x.transpose();
    let mut q = orthonormalize(&csr_times_dense(x, &omega));
    for _ in 0..power_iterations {
        let z = orthonormalize(&csr_times_dense(&xt, &q));
        q = orthonormalize(&csr_times_dense(x, &z));
    }
    // Bᵀ = Xᵀ Q (m × l); its left singular vectors are X's right singular vectors.
    let bt = csr_times_dense(&xt, &q);
    let (sigma, vectors) = one_sided_jacobi(&bt);
    let mut components = Array2::<f64>::zeros((m, k));
    for j in 0..k {
        let mut col = vectors.column(j).to_owned();
        // Sign convention: the largest loading is positive.
        let pivot = col.iter().copied().fold(
            0.0f64,
            |best, v| if v.abs() > best.abs() { v } else { best },
        );
        if pivot < 0.0 {
            col.mapv_inplace(|v| -v);
        }
        components.column_mut(j).assign(&col);
    }
    (sigma.into_iter().take(k).collect(), components)
}

/// SVD of a tall matrix `a` (m × l, l small) by Hestenes' one-sided Jacobi: returns singular
/// values (descending) and the matching left singular vectors (m × l; zero for σ = 0).
fn one_sided_jacobi(a: &Array2<f64>) -> (Vec<f64>, Array2<f64>) {
    let l = a.ncols();
    let mut cols: Vec<Vec<f64>> = (0..l).map(|j| a.column(j).to_vec()).collect();
    for _sweep in 0..80 {
        let mut rotated = false;
        for p in 0..l {
            for r in (p + 1)..l {
                let (left, right) = cols.split_at_mut(r);
                let (cp, cr) = (&mut left[p], &mut right[0]);
                let alpha = dot(cp, cp);
                let beta = dot(cr, cr);
                let gamma = dot(cp, cr);
                if alpha == 0.0 || beta == 0.0 || gamma.abs() <= 1e-15 * (alpha * beta).sqrt() {
                    continue;
                }
                rotated = true;
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = c * t;
                for (xp, xr) in cp.iter_mut().zip(cr.iter_mut()) {
                    let (vp, vr) = (*xp, *xr);
                    *xp = c * vp - s * vr;
                    *xr = s * vp + c * vr;
                }
            }
        }
        if !rotated {
            break;
        }
    }
    let mut order: Vec<(f64, usize)> = cols
        .iter()
        .enumerate()
        .map(|(j, c)| (dot(c, c).sqrt(), j))
        .collect();
    order.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut vectors = Array2::<f64>::zeros(a.dim());
    let mut sigma = Vec::with_capacity(l);
    for (out, &(s, j)) in order.iter().enumerate() {
        sigma.push(s);
        if s > 0.0 {
            vectors
                .column_mut(out)
                .iter_mut()
                .zip(&cols[j])
                .for_each(|(d, v)| *d = v / s);
        }
    }
    (sigma, vectors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::progress::NoProgress;
    use crate::domain::WeightedTerm;
    use crate::embedding::Embedder;

    fn doc(terms: &[(TermKind, &str, f64)]) -> BrowsingDocument {
        BrowsingDocument::new(terms.iter().map(|&(kind, value, weight)| WeightedTerm {
            kind,
            value: value.into(),
            weight,
        }))
    }

    fn cosine(a: ndarray::ArrayView1<f32>, b: ndarray::ArrayView1<f32>) -> f32 {
        a.dot(&b) / (a.dot(&a).sqrt() * b.dot(&b).sqrt())
    }

    /// Two topics with disjoint terms, each history a mix of its topic's terms.
    fn two_topics() -> Vec<BrowsingDocument> {
        let mut docs = Vec::new();
        for i in 0..20 {
            let w = 1.0 + (i % 5) as f64 * 0.3;
            docs.push(doc(&[
                (TermKind::Category, "electronics", 3.0 * w),
                (TermKind::Brand, "apple", 2.0),
                (TermKind::Brand, "samsung", 1.0 + (i % 3) as f64),
            ]));
            docs.push(doc(&[
                (TermKind::Category, "apparel", 2.0 * w),
                (TermKind::Brand, "nike", 1.5),
                (TermKind::Brand, "adidas", 0.5 + (i % 4) as f64),
            ]));
        }
        docs
    }

    #[test]
    fn disjoint_topics_land_in_orthogonal_directions() {
        let docs = two_topics();
        let params = LocalParams {
            dimensions: 2,
            ..LocalParams::default()
        };
        let model = LocalEmbedder::fit(&docs, &params, 7).expect("fit");
        let e = model.embed_blocking(&docs, &NoProgress);
        assert_eq!(e.dim(), (40, 2));
        for i in (0..40).step_by(2) {
            // Same topic: nearly identical directions; other topic: orthogonal.
            assert!(cosine(e.row(0), e.row(i)) > 0.99, "row {i}");
            assert!(cosine(e.row(1), e.row(i + 1)) > 0.99, "row {}", i + 1);
            assert!(cosine(e.row(i), e.row(i + 1)).abs() < 1e-6, "row {i}");
        }
    }

    #[test]
    fn a_saved_model_loads_back_and_embeds_identically() {
        let docs = two_topics();
        let params = LocalParams {
            dimensions: 2,
            ..LocalParams::default()
        };
        let model = LocalEmbedder::fit(&docs, &params, 7).expect("fit");
        let json = serde_json::to_string(&model.save()).expect("serialise");
        let saved: SavedLocalEmbedder = serde_json::from_str(&json).expect("parse");
        let loaded = LocalEmbedder::load(saved.clone()).expect("load");
        assert_eq!(
            loaded.embed_blocking(&docs, &NoProgress),
            model.embed_blocking(&docs, &NoProgress)
        );
        assert_eq!(loaded.vocabulary(), model.vocabulary());
        assert_eq!(loaded.vocabulary().len(), 6);
        // The apparel topic's vector maps back onto apparel terms, not electronics ones.
        let e = model.embed_blocking(&docs[1..2], &NoProgress);
        let loadings = model.term_loadings(e.row(0).as_slice().expect("row"));
        let best = loadings
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(j, _)| model.vocabulary()[j])
            .expect("a term");
        assert!(
            [(TermKind::Category, "apparel"), (TermKind::Brand, "nike")].contains(&best),
            "{best:?}"
        );

        let mut truncated = saved;
        truncated.components.pop();
        let err = LocalEmbedder::load(truncated).expect_err("truncated");
        assert_eq!(
            err.to_string(),
            "saved local embedder: components has 11 values, expected terms (6) × dimensions (2)"
        );
    }

    #[test]
    fn randomized_svd_matches_exact_singular_values() {
        use linfa_linalg::eigh::Eigh;
        // A 40 × 15 matrix of rank 6: with k + oversampling = 8 >= rank, the sketch spans the
        // whole range, so the top singular values must be exact up to rounding.
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let left = Array2::from_shape_simple_fn((40, 6), || standard_normal(&mut rng));
        let right = Array2::from_shape_simple_fn((6, 15), || standard_normal(&mut rng));
        let a = left.dot(&right);
        let x = Csr::from_dense(&a);
        let (sigma, components) = randomized_svd(&x, 4, 4, 2, &mut rng);
        let gram = a.t().dot(&a);
        let (eigenvalues, _) = gram.eigh().expect("eigh");
        let mut exact: Vec<f64> = eigenvalues.iter().map(|v| v.max(0.0).sqrt()).collect();
        exact.sort_by(|a, b| b.total_cmp(a));
        for (got, want) in sigma.iter().zip(&exact) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
        // Components are orthonormal.
        let vtv = components.t().dot(&components);
        for i in 0..4 {
            for j in 0..4 {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((vtv[[i, j]] - want).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn same_seed_same_vectors_on_any_thread_count() {
        let docs = two_topics();
        let params = LocalParams {
            dimensions: 3,
            min_df: 1,
            ..LocalParams::default()
        };
        let a = LocalEmbedder::fit(&docs, &params, 11)
            .expect("fit")
            .embed_blocking(&docs, &NoProgress);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("pool");
        let b = pool.install(|| {
            LocalEmbedder::fit(&docs, &params, 11)
                .expect("fit")
                .embed_blocking(&docs, &NoProgress)
        });
        assert_eq!(a, b);
    }

    #[test]
    fn unseen_terms_are_ignored_and_empty_docs_embed_to_zero() {
        let docs = two_topics();
        let model = LocalEmbedder::fit(&docs, &LocalParams::default(), 1).expect("fit");
        let known = doc(&[(TermKind::Category, "electronics", 2.0)]);
        let with_unseen = doc(&[
            (TermKind::Category, "electronics", 2.0),
            (TermKind::Brand, "never-seen", 9.0),
        ]);
        let only_unseen = doc(&[(TermKind::Brand, "never-seen", 9.0)]);
        let e = model.embed_blocking(
            &[known, with_unseen, only_unseen, BrowsingDocument::default()],
            &NoProgress,
        );
        assert_eq!(e.row(0), e.row(1));
        assert!(e.row(2).iter().all(|v| *v == 0.0));
        assert!(e.row(3).iter().all(|v| *v == 0.0));
        assert!((e.row(0).dot(&e.row(0)) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn small_vocabulary_reduces_dimensions_and_says_so() {
        let docs = two_topics();
        let model = LocalEmbedder::fit(&docs, &LocalParams::default(), 1).expect("fit");
        assert_eq!(model.dimensions(), 6);
        let info = model.describe();
        assert_eq!(info.dimensions, 6);
        assert!(info.notes[0].contains("6 dimensions instead of the 32"));
        let none = LocalEmbedder::fit(&[BrowsingDocument::default()], &LocalParams::default(), 1);
        assert!(matches!(none, Err(LocalError::EmptyVocabulary { .. })));
    }

    #[tokio::test]
    async fn trait_embed_matches_blocking_embed() {
        let docs = two_topics();
        let model = LocalEmbedder::fit(&docs, &LocalParams::default(), 1).expect("fit");
        let a = Embedder::embed(&model, &docs, &NoProgress)
            .await
            .expect("embed");
        assert_eq!(a, model.embed_blocking(&docs, &NoProgress));
        let none = Embedder::embed(&model, &[], &NoProgress)
            .await
            .expect("embed");
        assert_eq!(none.dim(), (0, 6));
    }
}
