//! The exact minimum spanning tree of the mutual-reachability graph, by Borůvka's algorithm
//! over the kd-tree, without ever forming the n² graph.
//!
//! Mutual reachability: `max(core(a), core(b), d(a, b))`. Each round, every component
//! finds its cheapest edge to another component, all of those join the tree, and
//! components merge: at most log2(n) rounds. Edges are ordered by (weight, smaller row,
//! larger row), a strict total order, so the tree is unique and each component's choice
//! is well defined: the result depends neither on the thread count nor on the order in
//! which points are searched.
//!
//! Most of the work is avoided, never approximated:
//!
//! * a point's core-distance ball ([`Neighbours`]) settles it when it holds a foreign point
//!   at the core distance, the least any edge from the point can weigh (in the first round
//!   this settles almost every point);
//! * what a point's search proved stays true while components grow: its exact cheapest edge
//!   is still its cheapest while the other end stays foreign, and a lower bound on its
//!   edges stays a lower bound ([`Knowledge`]);
//! * every component keeps an atomic bound, the weight of the cheapest real edge any of its
//!   points has found so far; a point or tree node whose lower bound is *strictly* above it
//!   cannot hold the component's cheapest edge, ties included, so skipping it never changes
//!   the answer, only the time;
//! * leaves are searched in order of their lower bound to any foreign point, so the points
//!   at a component's border tighten the bound before the interior is looked at, and the
//!   interior is then skipped leaf by leaf.
//!
//! scikit-learn-contrib's hdbscan uses a dual-tree Borůvka that by default stops short of
//! the exact tree (`approx_min_span_tree=True`); ours is exact.

use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use super::kdtree::KdTree;

/// Points settled per parallel task at least.
const MIN_POINTS_PER_TASK: usize = 64;

/// Leaves searched per parallel task at least.
const MIN_LEAVES_PER_TASK: usize = 4;

/// Marks a kd-tree node whose points belong to more than one component.
const MIXED: usize = usize::MAX;

/// An edge of the spanning tree: rows `a < b` and the squared mutual-reachability distance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Edge {
    /// Smaller row.
    pub a: usize,
    /// Larger row.
    pub b: usize,
    /// Squared mutual-reachability distance.
    pub weight2: f64,
}

impl Edge {
    fn new(p: usize, q: usize, weight2: f64) -> Self {
        Edge {
            a: p.min(q),
            b: p.max(q),
            weight2,
        }
    }

    /// The strict total order every choice is made by: weight, then rows.
    pub fn cmp_total(&self, other: &Edge) -> std::cmp::Ordering {
        self.weight2
            .total_cmp(&other.weight2)
            .then(self.a.cmp(&other.a))
            .then(self.b.cmp(&other.b))
    }

    fn precedes(&self, other: &Edge) -> bool {
        self.cmp_total(other).is_lt()
    }
}

/// Each point's core-distance ball (from the core-distance search), in tree-order
/// positions: every point within the core distance when the ball is complete.
///
/// No edge from `p` weighs less than `core(p)`, and an edge weighing exactly that joins a
/// point inside the ball; so when the ball holds a foreign point at that weight, the
/// cheapest such edge is the point's answer. Otherwise its best foreign member still
/// bounds the search.
pub(super) struct Neighbours {
    /// `offsets[p]..offsets[p + 1]` indexes `members` for position `p`.
    offsets: Vec<usize>,
    /// (squared distance, position) of the ball's members, ascending.
    members: Vec<(f64, usize)>,
    /// Whether position `p`'s ball is complete (not cut short by masses of ties).
    complete: Vec<bool>,
}

impl Neighbours {
    /// Room for `n` balls of about `k` members.
    pub fn with_capacity(n: usize, k: usize) -> Self {
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        Neighbours {
            offsets,
            members: Vec::with_capacity(n * k),
            complete: Vec::with_capacity(n),
        }
    }

    /// Appends the next position's ball.
    pub fn push(&mut self, ball: &[(f64, usize)], complete: bool) {
        self.members.extend_from_slice(ball);
        self.offsets.push(self.members.len());
        self.complete.push(complete);
    }

    fn ball(&self, p: usize) -> &[(f64, usize)] {
        &self.members[self.offsets[p]..self.offsets[p + 1]]
    }
}

/// What a point's searches have established about its cheapest edge to another
/// component. It stays true in later rounds because components only grow: a point foreign
/// now was foreign then.
#[derive(Debug, Clone, Copy)]
struct Knowledge {
    /// Its cheapest edge to another component, exactly, with the other end's position.
    exact: Option<(Edge, usize)>,
    /// No edge from it to another component weighs (squared) less than this.
    lower2: f64,
}

/// A point's answer in a round: the edge it offers its component (if it can be the
/// cheapest) and what it now knows.
type Answer = (Option<Edge>, Knowledge);

/// A point's first answer, found without searching the tree.
#[derive(Debug, Clone, Copy)]
enum First {
    /// Its cheapest edge to another component, with the other end's position.
    Settled(Edge, usize),
    /// A real edge to another component, not known to be the cheapest.
    Candidate(Edge, usize),
    /// Nothing yet.
    Unknown,
}

/// The minimum spanning tree (n - 1 edges, in the order they were found) of the
/// mutual-reachability graph, given the tree, each tree position's squared core distance
/// and core-distance ball.
pub(super) fn minimum_spanning_tree(
    tree: &KdTree,
    core2: &[f64],
    neighbours: &Neighbours,
) -> Vec<Edge> {
    let n = core2.len();
    let rows = tree.rows();
    let nodes = tree.nodes();
    // Smallest core distance under each node, children before parents.
    let mut node_core2 = vec![f64::INFINITY; nodes.len()];
    for (id, node) in nodes.iter().enumerate().rev() {
        node_core2[id] = match node.children {
            None => core2[node.start..node.end]
                .iter()
                .fold(f64::INFINITY, |m, &c| m.min(c)),
            Some((l, r)) => node_core2[l].min(node_core2[r]),
        };
    }
    // Leaves in pre-order cover the tree-order positions in order.
    let leaves: Vec<usize> = (0..nodes.len())
        .filter(|&id| nodes[id].children.is_none())
        .collect();
    let mut sets = UnionFind::new(n);
    let mut edges: Vec<Edge> = Vec::with_capacity(n.saturating_sub(1));
    // Component of each tree position: the union-find root of its row.
    let mut component: Vec<usize> = rows.to_vec();
    let mut node_component = vec![MIXED; nodes.len()];
    let bounds: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(u64::MAX)).collect();
    let mut knowledge = vec![
        Knowledge {
            exact: None,
            lower2: 0.0,
        };
        n
    ];
    while edges.len() + 1 < n {
        for (id, node) in nodes.iter().enumerate().rev() {
            node_component[id] = match node.children {
                None => {
                    let first = component[node.start];
                    if component[node.start..node.end].iter().all(|&c| c == first) {
                        first
                    } else {
                        MIXED
                    }
                }
                Some((l, r)) if node_component[l] == node_component[r] => node_component[l],
                Some(_) => MIXED,
            };
        }
        for bound in &bounds {
            bound.store(f64::INFINITY.to_bits(), Ordering::Relaxed);
        }
        let search = Search {
            tree,
            core2,
            neighbours,
            component: &component,
            node_component: &node_component,
            node_core2: &node_core2,
            bounds: &bounds,
        };
        // Cheap answers first: they settle most points and seed the components' bounds.
        let first: Vec<First> = knowledge
            .par_iter()
            .enumerate()
            .with_min_len(MIN_POINTS_PER_TASK)
            .map(|(p, known)| search.first(p, known))
            .collect();
        // Leaves with points left to search, nearest to a foreign point first.
        let pending: Vec<Option<(f64, usize)>> = leaves
            .par_iter()
            .with_min_len(MIN_LEAVES_PER_TASK)
            .map_init(Scratch::default, |scratch, &leaf| {
                let node = &nodes[leaf];
                first[node.start..node.end]
                    .iter()
                    .any(|f| !matches!(f, First::Settled(..)))
                    .then(|| (search.leaf_lower_bound2(leaf, &mut scratch.stack), leaf))
            })
            .collect();
        let mut pending: Vec<(f64, usize)> = pending.into_iter().flatten().collect();
        pending.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let searched: Vec<(usize, Vec<Answer>)> = pending
            .par_iter()
            .with_min_len(MIN_LEAVES_PER_TASK)
            .map_init(Scratch::default, |scratch, &(far2, leaf)| {
                let range = nodes[leaf].start..nodes[leaf].end;
                let answers = range
                    .clone()
                    .zip(&first[range.clone()])
                    .zip(&knowledge[range])
                    .map(|((p, first), known)| search.answer(p, *first, *known, far2, scratch))
                    .collect();
                (nodes[leaf].start, answers)
            })
            .collect();
        let mut found: Vec<Option<Edge>> = Vec::with_capacity(n);
        for (p, first) in first.iter().enumerate() {
            found.push(match *first {
                First::Settled(edge, other) => {
                    knowledge[p] = Knowledge {
                        exact: Some((edge, other)),
                        lower2: edge.weight2,
                    };
                    Some(edge)
                }
                First::Candidate(..) | First::Unknown => None,
            });
        }
        for (start, answers) in searched {
            for (i, (edge, known)) in answers.into_iter().enumerate() {
                if !matches!(first[start + i], First::Settled(..)) {
                    found[start + i] = edge;
                    knowledge[start + i] = known;
                }
            }
        }
        // Each component's cheapest edge; the total order makes the fold order irrelevant.
        let mut cheapest: Vec<Option<Edge>> = vec![None; n];
        for (p, edge) in found.into_iter().enumerate() {
            if let Some(edge) = edge {
                let slot = &mut cheapest[component[p]];
                if slot.is_none_or(|c| edge.precedes(&c)) {
                    *slot = Some(edge);
                }
            }
        }
        let before = edges.len();
        for edge in cheapest.into_iter().flatten() {
            if sets.union(edge.a, edge.b) {
                edges.push(edge);
            }
        }
        if edges.len() == before {
            break;
        }
        for (pos, c) in component.iter_mut().enumerate() {
            *c = sets.find(rows[pos]);
        }
    }
    edges
}

/// Lowers an atomic bound (f64 bits; non-negative values order like their bits).
fn lower_bound(bound: &AtomicU64, value: f64) {
    bound.fetch_min(value.to_bits(), Ordering::Relaxed);
}

/// What one round's searches read.
struct Search<'a> {
    tree: &'a KdTree,
    core2: &'a [f64],
    neighbours: &'a Neighbours,
    component: &'a [usize],
    node_component: &'a [usize],
    node_core2: &'a [f64],
    bounds: &'a [AtomicU64],
}

impl Search<'_> {
    /// The bound of `p`'s component now.
    fn limit(&self, p: usize) -> f64 {
        f64::from_bits(self.bounds[self.component[p]].load(Ordering::Relaxed))
    }

    /// A first answer without a tree search, lowering the component's bound: last round's
    /// exact edge if its other end is still foreign (the cheapest then, among a superset
    /// of today's foreign points, so the cheapest now), else the best foreign member of the
    /// point's ball, which settles it when it weighs the core distance (see [`Neighbours`]).
    fn first(&self, p: usize, known: &Knowledge) -> First {
        let here = self.component[p];
        if let Some((edge, other)) = known.exact
            && self.component[other] != here
        {
            lower_bound(&self.bounds[here], edge.weight2);
            return First::Settled(edge, other);
        }
        let own2 = self.core2[p];
        let rows = self.tree.rows();
        let mut best: Option<(Edge, usize)> = None;
        for &(d2, pos) in self.neighbours.ball(p) {
            if self.component[pos] != here {
                let edge = Edge::new(rows[p], rows[pos], own2.max(self.core2[pos]).max(d2));
                if best.is_none_or(|(b, _)| edge.precedes(&b)) {
                    best = Some((edge, pos));
                }
            }
        }
        let Some((edge, other)) = best else {
            return First::Unknown;
        };
        lower_bound(&self.bounds[here], edge.weight2);
        if self.neighbours.complete[p] && edge.weight2 == own2 {
            First::Settled(edge, other)
        } else {
            First::Candidate(edge, other)
        }
    }

    /// A lower bound on the squared weight of any edge from a point of `leaf` to a point of
    /// another component: the least node-to-node bound over the foreign leaves (0 for a
    /// leaf that spans components).
    fn leaf_lower_bound2(&self, leaf: usize, stack: &mut Vec<(f64, usize)>) -> f64 {
        let here = self.node_component[leaf];
        if here == MIXED {
            return 0.0;
        }
        let nodes = self.tree.nodes();
        let own2 = self.node_core2[leaf];
        let mut best = f64::INFINITY;
        stack.clear();
        stack.push((own2.max(self.node_core2[0]), 0));
        while let Some((lower, node)) = stack.pop() {
            if lower >= best || self.node_component[node] == here {
                continue;
            }
            match nodes[node].children {
                None => best = lower,
                Some((left, right)) => {
                    let lower_of = |child: usize| {
                        own2.max(self.node_core2[child])
                            .max(self.tree.node_lower_bound2(leaf, child))
                    };
                    push_nearer_last(stack, (lower_of(left), left), (lower_of(right), right));
                }
            }
        }
        best
    }

    /// The answer for a point not settled by its first answer: its cheapest edge to another
    /// component if that can be the component's cheapest, and what the search proved.
    /// `far2` bounds every edge from the point's leaf to another component.
    fn answer(
        &self,
        p: usize,
        first: First,
        known: Knowledge,
        far2: f64,
        scratch: &mut Scratch,
    ) -> Answer {
        let candidate = match first {
            First::Settled(edge, other) => {
                return (
                    Some(edge),
                    Knowledge {
                        exact: Some((edge, other)),
                        lower2: edge.weight2,
                    },
                );
            }
            First::Candidate(edge, other) => Some((edge, other)),
            First::Unknown => None,
        };
        let lower2 = known.lower2.max(self.core2[p]).max(far2);
        if lower2 > self.limit(p) {
            // Nothing from here can be the component's cheapest edge.
            let known = Knowledge {
                exact: None,
                lower2,
            };
            return (None, known);
        }
        self.cheapest_edge(p, candidate, lower2, scratch)
    }

    /// Searches the tree for the cheapest edge from tree position `p` to another
    /// component, starting from a known candidate; `lower2` is a lower bound already known.
    fn cheapest_edge(
        &self,
        p: usize,
        candidate: Option<(Edge, usize)>,
        lower2: f64,
        scratch: &mut Scratch,
    ) -> Answer {
        let Scratch {
            stack,
            distances: scratch,
        } = scratch;
        let here = self.component[p];
        let bound = &self.bounds[here];
        let own2 = self.core2[p];
        let q = self.tree.point(p);
        let rows = self.tree.rows();
        let nodes = self.tree.nodes();
        let mut best = candidate;
        // Smallest lower bound among the nodes skipped for weight, not for membership.
        let mut skipped2 = f64::INFINITY;
        stack.clear();
        stack.push((own2.max(self.node_core2[0]), 0));
        while let Some((lower, node)) = stack.pop() {
            if self.node_component[node] == here {
                continue;
            }
            let best2 = best.map_or(f64::INFINITY, |(e, _)| e.weight2);
            if lower > best2.min(self.limit(p)) {
                skipped2 = skipped2.min(lower);
                continue;
            }
            let n = &nodes[node];
            match n.children {
                None => {
                    self.tree.leaf_distances2(node, q, scratch);
                    for (pos, &d2) in (n.start..n.end).zip(scratch.iter()) {
                        if self.component[pos] == here {
                            continue;
                        }
                        let w2 = own2.max(self.core2[pos]).max(d2);
                        let edge = Edge::new(rows[p], rows[pos], w2);
                        if best.is_none_or(|(b, _)| edge.precedes(&b)) {
                            best = Some((edge, pos));
                            lower_bound(bound, w2);
                        }
                    }
                }
                Some((left, right)) => {
                    let lower_of = |child: usize| {
                        own2.max(self.node_core2[child])
                            .max(self.tree.lower_bound2(child, q))
                    };
                    push_nearer_last(stack, (lower_of(left), left), (lower_of(right), right));
                }
            }
        }
        let best2 = best.map_or(f64::INFINITY, |(e, _)| e.weight2);
        let knowledge = Knowledge {
            // Exact when everything skipped weighs strictly more than what was found.
            exact: best.filter(|_| best2 < skipped2),
            lower2: lower2.max(best2.min(skipped2)),
        };
        (best.map(|(e, _)| e), knowledge)
    }
}

/// Buffers a search reuses from point to point.
#[derive(Debug, Default)]
struct Scratch {
    /// Nodes still to visit, with their lower bounds.
    stack: Vec<(f64, usize)>,
    /// Squared distances to a leaf's points.
    distances: Vec<f64>,
}

/// Pushes two children so that the one with the smaller lower bound is searched first.
fn push_nearer_last(stack: &mut Vec<(f64, usize)>, a: (f64, usize), b: (f64, usize)) {
    if a.0 <= b.0 {
        stack.push(b);
        stack.push(a);
    } else {
        stack.push(a);
        stack.push(b);
    }
}

/// Union-find with path halving and union by size; the merged root is the larger set's
/// (the first's on a tie), so the same unions give the same roots.
struct UnionFind {
    parent: Vec<usize>,
    size: Vec<usize>,
}

impl UnionFind {
    fn new(n: usize) -> Self {
        UnionFind {
            parent: (0..n).collect(),
            size: vec![1; n],
        }
    }

    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    /// Joins the sets of `a` and `b`; false when they were already one.
    fn union(&mut self, a: usize, b: usize) -> bool {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return false;
        }
        let (big, small) = if self.size[ra] >= self.size[rb] {
            (ra, rb)
        } else {
            (rb, ra)
        };
        self.parent[small] = big;
        self.size[big] += self.size[small];
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::clustering::hdbscan::core_distances;
    use crate::analysis::clustering::hdbscan::kdtree::tests::squared_distance;
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    /// Prim's algorithm over the full mutual-reachability graph, under the same total
    /// order: the unique minimum spanning tree to compare with.
    fn brute_force_tree(data: &[f64], dim: usize, min_samples: usize) -> Vec<Edge> {
        let n = data.len() / dim;
        let point = |i: usize| &data[i * dim..(i + 1) * dim];
        let core2: Vec<f64> = (0..n)
            .map(|i| {
                let mut d: Vec<f64> = (0..n)
                    .map(|j| squared_distance(point(i), point(j)))
                    .collect();
                d.sort_by(f64::total_cmp);
                d[min_samples]
            })
            .collect();
        let weight = |i: usize, j: usize| {
            Edge::new(
                i,
                j,
                core2[i]
                    .max(core2[j])
                    .max(squared_distance(point(i), point(j))),
            )
        };
        let mut in_tree = vec![false; n];
        let mut best: Vec<Option<Edge>> = vec![None; n];
        let mut edges = Vec::new();
        let mut current = 0;
        in_tree[0] = true;
        for _ in 1..n {
            for j in 0..n {
                if !in_tree[j] {
                    let e = weight(current, j);
                    if best[j].is_none_or(|b| e.precedes(&b)) {
                        best[j] = Some(e);
                    }
                }
            }
            let next = (0..n)
                .filter(|&j| !in_tree[j])
                .min_by(|&a, &b| {
                    let (ea, eb) = (best[a].expect("edge"), best[b].expect("edge"));
                    ea.cmp_total(&eb)
                })
                .expect("a vertex left");
            edges.push(best[next].expect("edge"));
            in_tree[next] = true;
            current = next;
        }
        edges.sort_by(Edge::cmp_total);
        edges
    }

    fn our_tree(data: &[f64], dim: usize, min_samples: usize) -> Vec<Edge> {
        let tree = KdTree::build(data, dim);
        let (core2, neighbours) = core_distances(&tree, min_samples);
        let mut edges = minimum_spanning_tree(&tree, &core2, &neighbours);
        edges.sort_by(Edge::cmp_total);
        edges
    }

    #[test]
    fn equals_prim_on_continuous_data() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let dim = 3;
        // Three clouds of different spreads plus scattered points.
        let data: Vec<f64> = (0..400)
            .flat_map(|i| {
                let (centre, spread) = match i % 4 {
                    0 => (0.0, 0.5),
                    1 => (5.0, 1.0),
                    2 => (-4.0, 2.0),
                    _ => (0.0, 8.0),
                };
                (0..dim)
                    .map(|_| centre + spread * (rng.r#gen::<f64>() - 0.5))
                    .collect::<Vec<_>>()
            })
            .collect();
        for min_samples in [1, 4, 15] {
            assert_eq!(
                our_tree(&data, dim, min_samples),
                brute_force_tree(&data, dim, min_samples),
                "min_samples {min_samples}"
            );
        }
    }

    #[test]
    fn equals_prim_when_weights_tie_everywhere() {
        // Small integers: distances and core distances tie massively, duplicates included,
        // so only the tie rule decides which tree is the answer.
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let dim = 2;
        let data: Vec<f64> = (0..300 * dim)
            .map(|_| f64::from(rng.gen_range(0u8..6)))
            .collect();
        for min_samples in [1, 5, 12] {
            assert_eq!(
                our_tree(&data, dim, min_samples),
                brute_force_tree(&data, dim, min_samples),
                "min_samples {min_samples}"
            );
        }
    }

    #[test]
    fn equals_prim_with_masses_of_duplicates() {
        // Four distinct points, each repeated about 75 times: core-distance balls are cut
        // short, so every search falls back to the tree.
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        let data: Vec<f64> = (0..300 * 2)
            .map(|_| f64::from(rng.gen_range(0u8..2)))
            .collect();
        for min_samples in [3, 5] {
            assert_eq!(
                our_tree(&data, 2, min_samples),
                brute_force_tree(&data, 2, min_samples),
                "min_samples {min_samples}"
            );
        }
    }
}
