//! Named random streams: randomness that depends on what it is for, never on which thread
//! asks or in what order.
//!
//! A parallel algorithm that shares one RNG gives different results for different thread
//! counts. Instead, each piece of work opens its own stream named by the run's seed, a
//! [`Purpose`] and one or two numbers that identify the piece (a tree node, a point, an
//! iteration). SplitMix64's finaliser turns the name into the seed of a xoshiro stream, and
//! the same hash serves directly as a random priority where one number is all that is needed.

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// What a stream is for; part of every stream's name, so that streams for different
/// purposes never coincide. One list for the crate keeps the tags unique.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Purpose {
    /// A random-projection tree node choosing its hyperplane.
    TreeNode = 1,
    /// NN-descent topping up a point's initial neighbours.
    RandomFill = 2,
    /// NN-descent's sampling priority of an edge in one iteration.
    CandidatePriority = 3,
    /// Entry points of an index search beyond the query's tree leaf.
    QuerySeeds = 4,
    /// UMAP's negative samples while placing one new point.
    UmapTransform = 5,
    /// UMAP's negative samples of one block of points in one epoch of the layout.
    UmapLayout = 6,
}

/// SplitMix64's finaliser: a bijection on u64 that spreads every input bit.
#[inline]
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A 64-bit name for `(seed, purpose, a, b)`: the seed of a stream, or a random priority
/// that depends on nothing else.
#[inline]
pub(crate) fn stream_key(seed: u64, purpose: Purpose, a: u64, b: u64) -> u64 {
    const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = mix(seed ^ GOLDEN);
    h = mix(h ^ (purpose as u64).wrapping_mul(GOLDEN));
    h = mix(h ^ a.wrapping_mul(GOLDEN));
    mix(h ^ b.wrapping_add(GOLDEN))
}

/// The random stream named `(seed, purpose, a, b)`.
pub(crate) fn stream(seed: u64, purpose: Purpose, a: u64, b: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(stream_key(seed, purpose, a, b))
}

/// A 64-bit name for a point from the bits of its coordinates, so that work on a point can
/// be named by the point itself and not by its position in a batch.
pub(crate) fn point_key(values: impl IntoIterator<Item = f64>) -> u64 {
    values.into_iter().fold(0, |h, v| mix(h ^ v.to_bits()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_every_part() {
        let base = stream_key(1, Purpose::TreeNode, 2, 3);
        assert_ne!(base, stream_key(0, Purpose::TreeNode, 2, 3));
        assert_ne!(base, stream_key(1, Purpose::RandomFill, 2, 3));
        assert_ne!(base, stream_key(1, Purpose::TreeNode, 3, 2));
        assert_ne!(base, stream_key(1, Purpose::TreeNode, 2, 4));
        assert_ne!(point_key([1.0, 2.0]), point_key([2.0, 1.0]));
    }
}
