//! Plain data with invariants, shared by every layer: no I/O, no async.
//!
//! [`Partition`] is how a clustering result travels through segscope: one entry per
//! customer, `Some(segment)` or `None` for a customer left out of every segment (HDBSCAN's
//! noise). Segment indices are dense (`0..k`) and ordered by decreasing size, so the same
//! data always yields the same numbering.

use serde::{Deserialize, Serialize};

mod document;

pub use document::{BrowsingDocument, TermKind, WeightedTerm};

/// Per-customer segment membership with dense, size-ordered segment indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    labels: Vec<Option<usize>>,
    k: usize,
}

impl Partition {
    /// Builds a partition from raw cluster labels (any integers; `None` is noise),
    /// renumbering segments `0..k` by decreasing size, ties broken by first appearance.
    pub fn from_raw<L: Copy + Eq + std::hash::Hash>(
        raw: impl IntoIterator<Item = Option<L>>,
    ) -> Self {
        Self::from_raw_with_order(raw).0
    }

    /// As [`Partition::from_raw`], also returning the raw label of each new segment
    /// (`order[s]` is the raw label renumbered to `s`), so that per-cluster model parameters
    /// (centroids, mixture components) can be put in the partition's order.
    pub fn from_raw_with_order<L: Copy + Eq + std::hash::Hash>(
        raw: impl IntoIterator<Item = Option<L>>,
    ) -> (Self, Vec<L>) {
        let raw: Vec<Option<L>> = raw.into_iter().collect();
        let mut first_seen: Vec<L> = Vec::new();
        let mut counts: std::collections::HashMap<L, (usize, usize)> = Default::default();
        for label in raw.iter().flatten() {
            let next = first_seen.len();
            let entry = counts.entry(*label).or_insert((0, next));
            if entry.1 == next {
                first_seen.push(*label);
            }
            entry.0 += 1;
        }
        let mut ranked: Vec<(L, usize, usize)> = counts
            .into_iter()
            .map(|(label, (count, first))| (label, count, first))
            .collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)));
        let index: std::collections::HashMap<L, usize> = ranked
            .iter()
            .enumerate()
            .map(|(new, (label, _, _))| (*label, new))
            .collect();
        let labels = raw
            .iter()
            .map(|l| l.and_then(|l| index.get(&l).copied()))
            .collect();
        let order = ranked.iter().map(|(label, _, _)| *label).collect();
        (
            Partition {
                labels,
                k: ranked.len(),
            },
            order,
        )
    }

    /// Number of segments (noise is not a segment).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Number of customers, noise included.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the partition covers no customer.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Segment of each customer, `None` for noise.
    pub fn labels(&self) -> &[Option<usize>] {
        &self.labels
    }

    /// Size of each segment, indexed by segment.
    pub fn sizes(&self) -> Vec<usize> {
        let mut sizes = vec![0; self.k];
        for s in self.labels.iter().flatten() {
            sizes[*s] += 1;
        }
        sizes
    }

    /// Number of customers in no segment.
    pub fn noise_count(&self) -> usize {
        self.labels.iter().filter(|l| l.is_none()).count()
    }

    /// Indices of the customers that belong to a segment, with their segment: the input
    /// that validity measures take (they are defined over clustered points only).
    pub fn clustered(&self) -> (Vec<usize>, Vec<usize>) {
        self.labels
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.map(|s| (i, s)))
            .unzip()
    }
}

/// Which clustering algorithm makes the segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// k-means with k-means++ seeding and restarts.
    Kmeans,
    /// Gaussian mixture with full covariances, k chosen by BIC.
    Gmm,
    /// HDBSCAN: density clusters, with a noise group that is not a segment.
    Hdbscan,
}

impl Method {
    /// Lower-case name used in files and settings (`kmeans`, `gmm`, `hdbscan`).
    pub fn key(self) -> &'static str {
        match self {
            Method::Kmeans => "kmeans",
            Method::Gmm => "gmm",
            Method::Hdbscan => "hdbscan",
        }
    }
}

/// Which 2D map to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MapMethod {
    /// Principal component analysis: linear, distances and variances are honest.
    Pca,
    /// UMAP: keeps local neighbourhoods; distances between clusters only roughly meaningful.
    Umap,
    /// t-SNE: keeps local neighbourhoods; gaps and cluster sizes carry no meaning.
    Tsne,
}

impl MapMethod {
    /// Lower-case name used in files and columns (`pca`, `umap`, `tsne`).
    pub fn key(self) -> &'static str {
        match self {
            MapMethod::Pca => "pca",
            MapMethod::Umap => "umap",
            MapMethod::Tsne => "tsne",
        }
    }

    /// Name as people write it (`PCA`, `UMAP`, `t-SNE`).
    pub fn display_name(self) -> &'static str {
        match self {
            MapMethod::Pca => "PCA",
            MapMethod::Umap => "UMAP",
            MapMethod::Tsne => "t-SNE",
        }
    }
}

/// How features are scaled before clustering and mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scaling {
    /// Zero mean, unit variance (population standard deviation), as scikit-learn's StandardScaler.
    Standard,
    /// Median removed, divided by the interquartile range, as scikit-learn's RobustScaler.
    Robust,
    /// Raw values.
    None,
}

/// Parses the lower-case names used in settings and on the command line.
macro_rules! parse_by_name {
    ($ty:ty, $what:literal, $($name:literal => $value:expr),+) => {
        impl std::str::FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s.trim().to_ascii_lowercase().as_str() {
                    $($name => Ok($value),)+
                    other => Err(format!(concat!("'{}' is not a ", $what, "; use one of: {}"), other, [$($name),+].join(", "))),
                }
            }
        }
    };
}

parse_by_name!(Method, "clustering method", "kmeans" => Method::Kmeans, "gmm" => Method::Gmm, "hdbscan" => Method::Hdbscan);
parse_by_name!(MapMethod, "map", "pca" => MapMethod::Pca, "umap" => MapMethod::Umap, "tsne" => MapMethod::Tsne);
parse_by_name!(Scaling, "scaling", "standard" => Scaling::Standard, "robust" => Scaling::Robust, "none" => Scaling::None);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_renumbers_by_size_then_first_appearance() {
        let p = Partition::from_raw([Some(7), Some(3), Some(3), None, Some(7), Some(9), Some(3)]);
        assert_eq!(p.k(), 3);
        assert_eq!(
            p.labels(),
            &[Some(1), Some(0), Some(0), None, Some(1), Some(2), Some(0)]
        );
        assert_eq!(p.sizes(), vec![3, 2, 1]);
        assert_eq!(p.noise_count(), 1);
        assert_eq!(
            p.clustered(),
            (vec![0, 1, 2, 4, 5, 6], vec![1, 0, 0, 1, 2, 0])
        );
    }

    #[test]
    fn names_parse_and_errors_list_the_choices() {
        assert_eq!("TSNE".parse::<MapMethod>(), Ok(MapMethod::Tsne));
        assert_eq!(
            "pam".parse::<Method>(),
            Err("'pam' is not a clustering method; use one of: kmeans, gmm, hdbscan".to_string())
        );
    }

    #[test]
    fn partition_ties_keep_first_appearance_order() {
        let p = Partition::from_raw([Some('b'), Some('a'), Some('a'), Some('b')]);
        assert_eq!(p.labels(), &[Some(0), Some(1), Some(1), Some(0)]);
    }
}
