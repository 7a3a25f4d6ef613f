//! Random-projection trees: cheap, rough neighbourhoods that start NN-descent and seed
//! index searches (pynndescent's `make_euclidean_tree`).
//!
//! Each node splits its points by the hyperplane halfway between two of them, chosen at
//! random, until at most `leaf_size` points remain; points in one leaf are likely near each
//! other. Every node draws from its own stream named by `(seed, tree, path)`, and the two
//! halves of a node are built independently (in parallel when large), so a tree is the
//! same whatever the number of threads.

use rand::Rng;

use super::{dot, row};
use crate::analysis::streams::{Purpose, mix, stream};

/// Points on the hyperplane itself (|margin| below this) go to a random side, as in
/// pynndescent, so that duplicates do not all pile up on one side.
const MARGIN_EPSILON: f64 = 1e-8;
/// Nodes this large build their two halves in parallel; below, the overhead would dominate.
const PARALLEL_MIN_POINTS: usize = 2_048;
/// pynndescent's limit; with random fallback splits the depth stays near log2(n) anyway.
const MAX_DEPTH: usize = 200;

/// One random-projection tree over a set of points.
#[derive(Debug, Clone)]
pub(super) struct RpTree {
    nodes: Vec<Node>,
    /// The points, permuted so that every leaf is a contiguous range.
    order: Vec<usize>,
}

#[derive(Debug, Clone)]
enum Node {
    /// Points with `offset + normal · x > 0` are in `left`, the others in `right`.
    Split {
        normal: Vec<f64>,
        offset: f64,
        left: usize,
        right: usize,
    },
    Leaf {
        start: usize,
        end: usize,
    },
}

/// A node as built recursively, before flattening into [`RpTree::nodes`].
enum Built {
    Split {
        normal: Vec<f64>,
        offset: f64,
        halves: Box<[Built; 2]>,
    },
    Leaf {
        len: usize,
    },
}

/// The data every node reads, bundled to keep the recursion's signature short.
#[derive(Clone, Copy)]
struct Context<'a> {
    data: &'a [f64],
    d: usize,
    leaf_size: usize,
    seed: u64,
    tree: u64,
}

impl RpTree {
    /// Builds tree number `tree` over `points` (row indices into `data`, `d` columns).
    pub(super) fn build(
        data: &[f64],
        d: usize,
        mut points: Vec<usize>,
        leaf_size: usize,
        seed: u64,
        tree: u64,
    ) -> Self {
        let context = Context {
            data,
            d,
            leaf_size: leaf_size.max(1),
            seed,
            tree,
        };
        let built = build_node(context, &mut points, 1, 0);
        let mut nodes = Vec::new();
        flatten(built, 0, &mut nodes);
        Self {
            nodes,
            order: points,
        }
    }

    /// The leaves, each a set of point indices.
    pub(super) fn leaves(&self) -> impl Iterator<Item = &[usize]> + '_ {
        self.nodes.iter().filter_map(|node| match *node {
            Node::Leaf { start, end } => Some(&self.order[start..end]),
            Node::Split { .. } => None,
        })
    }

    /// The points of the leaf that `query` falls into.
    pub(super) fn leaf_of(&self, query: &[f64]) -> &[usize] {
        let mut at = 0;
        loop {
            match &self.nodes[at] {
                Node::Split {
                    normal,
                    offset,
                    left,
                    right,
                } => {
                    at = if margin(normal, *offset, query) > 0.0 {
                        *left
                    } else {
                        *right
                    };
                }
                Node::Leaf { start, end } => return &self.order[*start..*end],
            }
        }
    }
}

fn margin(normal: &[f64], offset: f64, x: &[f64]) -> f64 {
    offset + dot(normal, x)
}

fn build_node(context: Context<'_>, points: &mut [usize], key: u64, depth: usize) -> Built {
    if points.len() <= context.leaf_size || depth >= MAX_DEPTH {
        return Built::Leaf { len: points.len() };
    }
    let (normal, offset, n_left) = split(context, points, key);
    let parallel = points.len() >= PARALLEL_MIN_POINTS;
    let (left, right) = points.split_at_mut(n_left);
    let left_key = mix(key.wrapping_mul(3).wrapping_add(1));
    let right_key = mix(key.wrapping_mul(3).wrapping_add(2));
    let (left, right) = if parallel {
        rayon::join(
            || build_node(context, left, left_key, depth + 1),
            || build_node(context, right, right_key, depth + 1),
        )
    } else {
        (
            build_node(context, left, left_key, depth + 1),
            build_node(context, right, right_key, depth + 1),
        )
    };
    Built::Split {
        normal,
        offset,
        halves: Box::new([left, right]),
    }
}

/// Chooses the hyperplane halfway between two random points and moves the points on its
/// positive side to the front (stably); returns the plane and the size of the front part.
fn split(context: Context<'_>, points: &mut [usize], key: u64) -> (Vec<f64>, f64, usize) {
    let n = points.len();
    let mut rng = stream(context.seed, Purpose::TreeNode, context.tree, key);
    let first = rng.gen_range(0..n);
    let mut second = rng.gen_range(0..n - 1);
    if second >= first {
        second += 1;
    }
    let a = row(context.data, context.d, points[first]);
    let b = row(context.data, context.d, points[second]);
    let normal: Vec<f64> = a.iter().zip(b).map(|(p, q)| p - q).collect();
    let offset = -normal
        .iter()
        .zip(a.iter().zip(b))
        .map(|(n, (p, q))| n * (p + q) / 2.0)
        .sum::<f64>();

    let mut sides: Vec<bool> = points
        .iter()
        .map(|&i| {
            let m = margin(&normal, offset, row(context.data, context.d, i));
            if m.abs() < MARGIN_EPSILON {
                rng.r#gen::<bool>()
            } else {
                m > 0.0
            }
        })
        .collect();
    let n_left = sides.iter().filter(|&&left| left).count();
    if n_left == 0 || n_left == n {
        // Every point on one side (duplicates, or a numerically flat plane): split the
        // node in two halves instead, so that the recursion always makes progress.
        for (position, side) in sides.iter_mut().enumerate() {
            *side = position < n / 2;
        }
    }
    let on_side = |wanted: bool| -> Vec<usize> {
        points
            .iter()
            .zip(&sides)
            .filter(|&(_, &side)| side == wanted)
            .map(|(&point, _)| point)
            .collect()
    };
    let (left, right) = (on_side(true), on_side(false));
    let n_left = left.len();
    for (slot, &point) in points.iter_mut().zip(left.iter().chain(&right)) {
        *slot = point;
    }
    (normal, offset, n_left)
}

/// Appends `built` and its subtree to `nodes` in depth-first order; `start` is the
/// position of the subtree's first point in the permuted order.
fn flatten(built: Built, start: usize, nodes: &mut Vec<Node>) -> usize {
    match built {
        Built::Leaf { len } => {
            nodes.push(Node::Leaf {
                start,
                end: start + len,
            });
            len
        }
        Built::Split {
            normal,
            offset,
            halves,
        } => {
            let at = nodes.len();
            nodes.push(Node::Leaf { start, end: start });
            let [left, right] = *halves;
            let left_at = nodes.len();
            let left_len = flatten(left, start, nodes);
            let right_at = nodes.len();
            let right_len = flatten(right, start + left_len, nodes);
            nodes[at] = Node::Split {
                normal,
                offset,
                left: left_at,
                right: right_at,
            };
            left_len + right_len
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    #[test]
    fn leaves_partition_the_points_and_respect_the_size() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        let (n, d) = (3_000, 4);
        let mut data: Vec<f64> = (0..n * d).map(|_| rng.gen_range(-1.0..1.0)).collect();
        // A block of duplicates must still be split down to the leaf size.
        for i in 0..100 {
            let first = row(&data, d, 0).to_vec();
            data[i * d..(i + 1) * d].copy_from_slice(&first);
        }
        let tree = RpTree::build(&data, d, (0..n).collect(), 10, 7, 0);
        let mut seen: Vec<usize> = tree.leaves().flatten().copied().collect();
        assert!(
            tree.leaves()
                .all(|leaf| !leaf.is_empty() && leaf.len() <= 10)
        );
        seen.sort_unstable();
        assert_eq!(seen, (0..n).collect::<Vec<_>>());
        // A point descends to the leaf that holds it, unless it sits on a plane.
        let found = (0..n)
            .filter(|&i| tree.leaf_of(row(&data, d, i)).contains(&i))
            .count();
        assert!(
            found > n * 9 / 10,
            "{found} of {n} points find their own leaf"
        );
    }
}
