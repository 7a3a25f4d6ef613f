//! From the spanning tree to flat clusters, step for step as scikit-learn-contrib's hdbscan
//! 0.8 does it, so that the same tree gives the same clusters:
//!
//! 1. single linkage (`_hdbscan_linkage.label`): edges by increasing weight merge
//!    components; merge `i` becomes node `n + i`;
//! 2. the condensed tree (`_hdbscan_tree.condense_tree`): walking down from the root, a
//!    split where both sides have at least `min_cluster_size` points makes two new
//!    clusters; a smaller side's points "fall out" of the cluster at that level
//!    (`lambda = 1 / distance`);
//! 3. stability (`compute_stability`): per cluster, the sum over its departing points and
//!    child clusters of `(lambda - lambda_birth) x size`;
//! 4. excess of mass (`get_clusters`, method `eom`): bottom-up, a cluster is kept unless its
//!    children together are more stable, in which case it takes their summed stability;
//!    the root is never a cluster (`allow_single_cluster=False`);
//! 5. labels (`do_labelling`): a point belongs to its nearest kept ancestor, or is noise.
//!
//! One detail is copied on purpose: hdbscan sums the children's stabilities in a 32-bit
//! float (`cdef float subtree_stability`) before comparing with the parent's 64-bit value.
//! We round the same way, so near-ties between a parent and its children resolve as there.

use super::boruvka::Edge;

/// One merge of the single-linkage hierarchy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Merge {
    left: usize,
    right: usize,
    distance: f64,
    size: usize,
}

/// One row of the condensed tree: a point or a cluster leaving `parent` at `lambda`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Row {
    parent: usize,
    child: usize,
    lambda: f64,
    size: usize,
}

/// The single-linkage hierarchy of `n` points from their spanning tree's edges (distance:
/// the square root of the edge's squared weight).
pub(super) fn single_linkage(mut edges: Vec<Edge>, n: usize) -> Vec<Merge> {
    edges.sort_by(Edge::cmp_total);
    let mut parent: Vec<Option<usize>> = vec![None; 2 * n];
    let mut size: Vec<usize> = (0..2 * n).map(|i| usize::from(i < n)).collect();
    let find = |parent: &mut Vec<Option<usize>>, mut x: usize| {
        let start = x;
        while let Some(p) = parent[x] {
            x = p;
        }
        let root = x;
        let mut y = start;
        while let Some(p) = parent[y] {
            if p == root {
                break;
            }
            parent[y] = Some(root);
            y = p;
        }
        root
    };
    let mut merges = Vec::with_capacity(edges.len());
    for (i, edge) in edges.iter().enumerate() {
        let left = find(&mut parent, edge.a);
        let right = find(&mut parent, edge.b);
        let merged = n + i;
        size[merged] = size[left] + size[right];
        parent[left] = Some(merged);
        parent[right] = Some(merged);
        merges.push(Merge {
            left,
            right,
            distance: edge.weight2.sqrt(),
            size: size[merged],
        });
    }
    merges
}

/// Flat clusters of the `n = merges.len() + 1` points: `Some(cluster)` (clusters numbered
/// in condensed-tree order) or `None` for noise.
pub(super) fn clusters(merges: &[Merge], min_cluster_size: usize) -> Vec<Option<usize>> {
    let n = merges.len() + 1;
    let rows = condense(merges, min_cluster_size);
    let mut stability = stability(&rows, n);
    let selected = excess_of_mass(&rows, n, &mut stability);
    label(&rows, n, &selected)
}

/// Nodes of the subtree under `root`, breadth first, as `bfs_from_hierarchy`.
fn breadth_first(merges: &[Merge], root: usize) -> Vec<usize> {
    let n = merges.len() + 1;
    let mut result = Vec::new();
    let mut level = vec![root];
    while !level.is_empty() {
        result.extend_from_slice(&level);
        level = level
            .iter()
            .filter(|&&x| x >= n)
            .flat_map(|&x| [merges[x - n].left, merges[x - n].right])
            .collect();
    }
    result
}

/// The condensed tree (`condense_tree`). Clusters are numbered from `n` (the root) up, in
/// breadth-first order, so a cluster's number is larger than its parent's.
fn condense(merges: &[Merge], min_cluster_size: usize) -> Vec<Row> {
    let n = merges.len() + 1;
    let root = 2 * merges.len();
    let mut relabel = vec![0usize; root + 1];
    relabel[root] = n;
    let mut next_label = n + 1;
    let mut ignore = vec![false; root + 1];
    let mut rows = Vec::with_capacity(2 * n);
    let count = |node: usize| if node >= n { merges[node - n].size } else { 1 };
    for node in breadth_first(merges, root) {
        if ignore[node] || node < n {
            continue;
        }
        let Merge {
            left,
            right,
            distance,
            ..
        } = merges[node - n];
        let lambda = if distance > 0.0 {
            1.0 / distance
        } else {
            f64::INFINITY
        };
        let (left_count, right_count) = (count(left), count(right));
        let parent = relabel[node];
        let mut fall_out = |side: usize, rows: &mut Vec<Row>| {
            for sub in breadth_first(merges, side) {
                if sub < n {
                    rows.push(Row {
                        parent,
                        child: sub,
                        lambda,
                        size: 1,
                    });
                }
                ignore[sub] = true;
            }
        };
        match (
            left_count >= min_cluster_size,
            right_count >= min_cluster_size,
        ) {
            (true, true) => {
                for (side, side_count) in [(left, left_count), (right, right_count)] {
                    relabel[side] = next_label;
                    next_label += 1;
                    rows.push(Row {
                        parent,
                        child: relabel[side],
                        lambda,
                        size: side_count,
                    });
                }
            }
            (false, false) => {
                fall_out(left, &mut rows);
                fall_out(right, &mut rows);
            }
            (false, true) => {
                relabel[right] = parent;
                fall_out(left, &mut rows);
            }
            (true, false) => {
                relabel[left] = parent;
                fall_out(right, &mut rows);
            }
        }
    }
    rows
}

/// Stability of every cluster, indexed by `cluster - n` (`compute_stability`).
fn stability(rows: &[Row], n: usize) -> Vec<f64> {
    let clusters = cluster_count(rows, n);
    let mut birth = vec![f64::NAN; clusters];
    birth[0] = 0.0;
    for row in rows.iter().filter(|r| r.child >= n) {
        birth[row.child - n] = row.lambda;
    }
    let mut stability = vec![0.0; clusters];
    for row in rows {
        let c = row.parent - n;
        stability[c] += (row.lambda - birth[c]) * row.size as f64;
    }
    stability
}

/// Clusters in the condensed tree, the root included (it exists even when nothing splits).
fn cluster_count(rows: &[Row], n: usize) -> usize {
    rows.iter()
        .map(|r| r.parent.max(r.child) + 1)
        .max()
        .unwrap_or(n + 1)
        .max(n + 1)
        - n
}

/// Which clusters excess of mass keeps, indexed by `cluster - n` (`get_clusters`, `eom`).
fn excess_of_mass(rows: &[Row], n: usize, stability: &mut [f64]) -> Vec<bool> {
    let clusters = stability.len();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); clusters];
    for row in rows.iter().filter(|r| r.size > 1) {
        children[row.parent - n].push(row.child - n);
    }
    let mut selected = vec![true; clusters];
    selected[0] = false;
    for c in (1..clusters).rev() {
        // hdbscan's `cdef float subtree_stability`: each addition rounds to 32 bits.
        let mut subtree: f32 = 0.0;
        for &child in &children[c] {
            subtree = (f64::from(subtree) + stability[child]) as f32;
        }
        if f64::from(subtree) > stability[c] {
            selected[c] = false;
            stability[c] = f64::from(subtree);
        } else {
            let mut stack = children[c].clone();
            while let Some(d) = stack.pop() {
                selected[d] = false;
                stack.extend_from_slice(&children[d]);
            }
        }
    }
    selected
}

/// Each point's nearest kept ancestor (`do_labelling`), clusters numbered by rank among
/// the kept ones.
fn label(rows: &[Row], n: usize, selected: &[bool]) -> Vec<Option<usize>> {
    let mut rank = vec![None; selected.len()];
    let mut next = 0;
    for (c, &keep) in selected.iter().enumerate() {
        if keep {
            rank[c] = Some(next);
            next += 1;
        }
    }
    // Rows list a cluster as a child before any row lists it as a parent.
    let mut owner: Vec<Option<usize>> = vec![None; selected.len()];
    let mut labels = vec![None; n];
    for row in rows {
        let from = owner[row.parent - n];
        if row.child >= n {
            let c = row.child - n;
            owner[c] = if selected[c] { rank[c] } else { from };
        } else {
            labels[row.child] = from;
        }
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(a: usize, b: usize, w: f64) -> Edge {
        Edge {
            a,
            b,
            weight2: w * w,
        }
    }

    #[test]
    fn single_linkage_numbers_merges_after_the_points() {
        let merges = single_linkage(vec![edge(1, 2, 2.0), edge(0, 1, 1.0)], 3);
        assert_eq!(
            merges,
            vec![
                Merge {
                    left: 0,
                    right: 1,
                    distance: 1.0,
                    size: 2
                },
                Merge {
                    left: 3,
                    right: 2,
                    distance: 2.0,
                    size: 3
                },
            ]
        );
    }

    #[test]
    fn two_tight_groups_and_a_straggler() {
        // Points 0-2 within 0.1 of each other, 3-5 likewise, 6 far from both.
        let edges = vec![
            edge(0, 1, 0.1),
            edge(1, 2, 0.1),
            edge(3, 4, 0.1),
            edge(4, 5, 0.1),
            edge(2, 3, 5.0),
            edge(5, 6, 20.0),
        ];
        let labels = clusters(&single_linkage(edges, 7), 3);
        assert_eq!(labels[0], labels[1]);
        assert_eq!(labels[1], labels[2]);
        assert_eq!(labels[3], labels[4]);
        assert_eq!(labels[4], labels[5]);
        assert_ne!(labels[0], labels[3]);
        assert!(labels[0].is_some() && labels[3].is_some());
        assert_eq!(labels[6], None);
    }
}
