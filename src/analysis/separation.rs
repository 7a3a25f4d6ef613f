//! What a 2D map shows, in numbers a sentence can be written from: whether known labels
//! (e.g. Iris species) separate in the map, and whether a segment appears split into
//! separate islands.
//!
//! Both read the map's k-nearest-neighbour graph (k = [`MAP_NEIGHBORS`]):
//! - label overlap of two labels a and b is the share of the neighbour slots of their points
//!   that cross to the other label, `(cross(a→b) + cross(b→a)) / (k (|a| + |b|))`; 0 means
//!   the two never meet in the map;
//! - a segment is split when its points, linked only to neighbours of the same segment,
//!   fall into two or more components that each hold at least [`MIN_PART_SHARE`] of it.

use ndarray::ArrayView2;
use serde::Serialize;

use crate::analysis::knn::{KnnError, exact_knn};

/// Neighbours per point in the map's neighbour graph.
pub const MAP_NEIGHBORS: usize = 10;
/// Smallest share of a segment that counts as a separate part of it.
pub const MIN_PART_SHARE: f64 = 0.1;

/// How much two labels mix in a map.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LabelOverlap {
    /// First label.
    pub a: String,
    /// Second label.
    pub b: String,
    /// Share of neighbour slots crossing between the two labels (0 = fully separate).
    pub overlap: f64,
}

/// A segment that a map shows as several islands.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SplitSegment {
    /// Segment index.
    pub segment: usize,
    /// Sizes of the parts (each at least [`MIN_PART_SHARE`] of the segment), largest first.
    pub parts: Vec<usize>,
}

/// The map's neighbour graph, computed once for both readings.
pub struct MapNeighbors {
    indices: ndarray::Array2<usize>,
}

impl MapNeighbors {
    /// Builds the neighbour graph of a 2D embedding.
    pub fn new(embedding: ArrayView2<f64>) -> Result<Self, KnnError> {
        let k = MAP_NEIGHBORS
            .min(embedding.nrows().saturating_sub(1))
            .max(1);
        let graph = exact_knn(embedding, k)?;
        Ok(MapNeighbors {
            indices: graph.indices().to_owned(),
        })
    }

    /// Overlap of every pair of labels (`labels[i]` indexes `names`), pairs in name order.
    pub fn label_overlaps(&self, labels: &[usize], names: &[String]) -> Vec<LabelOverlap> {
        let m = names.len();
        let mut cross = vec![vec![0usize; m]; m];
        let mut count = vec![0usize; m];
        for (i, row) in self.indices.rows().into_iter().enumerate() {
            count[labels[i]] += 1;
            for &j in row {
                cross[labels[i]][labels[j]] += 1;
            }
        }
        let k = self.indices.ncols() as f64;
        let mut out = Vec::new();
        for a in 0..m {
            for b in a + 1..m {
                let slots = k * (count[a] + count[b]) as f64;
                let overlap = if slots > 0.0 {
                    (cross[a][b] + cross[b][a]) as f64 / slots
                } else {
                    0.0
                };
                out.push(LabelOverlap {
                    a: names[a].clone(),
                    b: names[b].clone(),
                    overlap,
                });
            }
        }
        out
    }

    /// Segments that the map shows as two or more islands. `labels[i]` is the segment of
    /// the map's point `i` (`None` for noise), segment indices below `k`; the points may
    /// be a sample of a run's customers, keeping the run's segment numbering.
    pub fn split_segments(&self, labels: &[Option<usize>], k: usize) -> Vec<SplitSegment> {
        let n = self.indices.nrows();
        let mut parent: Vec<usize> = (0..n).collect();
        fn root(parent: &mut [usize], mut i: usize) -> usize {
            while parent[i] != i {
                parent[i] = parent[parent[i]];
                i = parent[i];
            }
            i
        }
        for (i, row) in self.indices.rows().into_iter().enumerate() {
            for &j in row {
                if labels[i].is_some() && labels[i] == labels[j] {
                    let (ri, rj) = (root(&mut parent, i), root(&mut parent, j));
                    if ri != rj {
                        parent[ri.max(rj)] = ri.min(rj);
                    }
                }
            }
        }
        let mut component_size = vec![0usize; n];
        for i in 0..n {
            let r = root(&mut parent, i);
            component_size[r] += 1;
        }
        let mut sizes = vec![0usize; k];
        for s in labels.iter().flatten() {
            sizes[*s] += 1;
        }
        let mut parts: Vec<Vec<usize>> = vec![Vec::new(); k];
        for i in 0..n {
            if let Some(s) = labels[i]
                && parent[i] == i
                && component_size[i] as f64 >= MIN_PART_SHARE * sizes[s] as f64
            {
                parts[s].push(component_size[i]);
            }
        }
        parts
            .into_iter()
            .enumerate()
            .filter(|(_, p)| p.len() >= 2)
            .map(|(segment, mut parts)| {
                parts.sort_unstable_by(|a, b| b.cmp(a));
                SplitSegment { segment, parts }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Partition;
    use ndarray::Array2;

    /// Three tight groups of 20 points on a line: at 0, 100 and 200.
    fn three_islands() -> Array2<f64> {
        Array2::from_shape_fn((60, 2), |(i, j)| {
            (i / 20) as f64 * 100.0 + ((i % 20) as f64 * 0.1) * (j as f64 + 1.0)
        })
    }

    #[test]
    fn separate_and_overlapping_labels() {
        let map = three_islands();
        let neighbors = MapNeighbors::new(map.view()).expect("knn");
        // labels: island 0 = "x"; islands 1 and 2 alternate "y"/"z" point by point.
        let labels: Vec<usize> = (0..60)
            .map(|i| if i < 20 { 0 } else { 1 + i % 2 })
            .collect();
        let names = vec!["x".to_string(), "y".to_string(), "z".to_string()];
        let o = neighbors.label_overlaps(&labels, &names);
        assert_eq!(o.len(), 3);
        assert_eq!(
            (o[0].a.as_str(), o[0].b.as_str(), o[0].overlap),
            ("x", "y", 0.0)
        );
        assert_eq!(o[1].overlap, 0.0);
        assert!(o[2].overlap > 0.3, "y and z interleave: {}", o[2].overlap);
    }

    #[test]
    fn a_segment_on_two_islands_is_split() {
        let map = three_islands();
        let neighbors = MapNeighbors::new(map.view()).expect("knn");
        // segment 0 = islands 0 and 2, segment 1 = island 1
        let p = Partition::from_raw((0..60).map(|i| Some(usize::from(i / 20 == 1))));
        let split = neighbors.split_segments(p.labels(), p.k());
        assert_eq!(
            split,
            vec![SplitSegment {
                segment: 0,
                parts: vec![20, 20]
            }]
        );
    }
}
