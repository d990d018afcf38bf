//! Random values many at a time. Standard normal samples, two from each pair of uniform
//! ones: [`box_muller`] (`randn`'s). Bernoulli masks (dropout's): each block of [`BLOCK`]
//! elements has its own [`LANES`] xoshiro256++ generators, seeded from the caller's seed
//! and the block's index, so blocks fill in any order, on any thread, with the same result;
//! and the lanes, stepped together, compile to vector instructions.

use rayon::prelude::*;

mod normal;
pub use normal::box_muller;

use crate::parallel::start_parallel;
use crate::simd::{WidestLoop, run_widest};

/// Elements per independently seeded block.
///
/// ```
/// use tapegrad_kernels::random::{BLOCK, bernoulli_mask};
/// // Two blocks: each has draws of its own, so their halves of the mask differ.
/// let mut mask = vec![0u8; 2 * BLOCK];
/// bernoulli_mask(1, 0.5, 1, 0, &mut mask);
/// assert_ne!(mask[..BLOCK], mask[BLOCK..]);
/// ```
pub const BLOCK: usize = 1 << 14;

/// Generators stepped side by side within a block: element `i` of each group of
/// `2 * LANES` takes half of lane `i % LANES`'s 64-bit draw.
///
/// ```
/// use tapegrad_kernels::random::{BLOCK, LANES};
/// assert_eq!(BLOCK % (2 * LANES), 0); // blocks hold whole groups
/// ```
pub const LANES: usize = 8;

/// SplitMix64's output function (Steele, Lea and Flood): spreads consecutive inputs over
/// all 64 bits, the usual way to seed xoshiro.
#[inline]
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// [`LANES`] xoshiro256++ generators, word `w` of lane `l` at `s[w][l]`.
struct Lanes {
    s: [[u64; LANES]; 4],
}

impl Lanes {
    /// The generators of block `block` under `seed`: SplitMix64 of consecutive counters
    /// started from both fills the 32 state words. No lane's state is all zero: SplitMix64
    /// is a bijection, so distinct counters give distinct words, at most one of them zero.
    fn new(seed: u64, block: u64) -> Lanes {
        let mut counter = splitmix(seed ^ splitmix(block));
        let mut s = [[0u64; LANES]; 4];
        for word in s.iter_mut() {
            for lane in word.iter_mut() {
                counter = counter.wrapping_add(1);
                *lane = splitmix(counter);
            }
        }
        Lanes { s }
    }

    /// One step of every lane: `LANES` 64-bit outputs.
    #[inline(always)]
    fn next(&mut self) -> [u64; LANES] {
        let [s0, s1, s2, s3] = &mut self.s;
        let mut out = [0u64; LANES];
        for l in 0..LANES {
            out[l] = s0[l].wrapping_add(s3[l]).rotate_left(23).wrapping_add(s0[l]);
            let t = s1[l] << 17;
            s2[l] ^= s0[l];
            s3[l] ^= s1[l];
            s1[l] ^= s2[l];
            s0[l] ^= s3[l];
            s2[l] ^= t;
            s3[l] = s3[l].rotate_left(45);
        }
        out
    }
}

/// Fills one block: element `i` of each group of `2 * LANES` takes the low (first half) or
/// high (second half) 32 bits of lane `i % LANES`'s draw.
struct FillBlock<'a, T> {
    out: &'a mut [T],
    seed: u64,
    block: u64,
    threshold: u32,
    keep: T,
    drop: T,
}

impl<T: Copy> WidestLoop for FillBlock<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let mut lanes = Lanes::new(self.seed, self.block);
        for group in self.out.chunks_mut(2 * LANES) {
            let draws = lanes.next();
            let mut halves = [0u32; 2 * LANES];
            for l in 0..LANES {
                halves[l] = draws[l] as u32;
                halves[LANES + l] = (draws[l] >> 32) as u32;
            }
            for (o, &u) in group.iter_mut().zip(&halves) {
                *o = if u >= self.threshold { self.keep } else { self.drop };
            }
        }
    }
}

/// Fills `out` with `keep` where a uniform 32-bit draw reaches `p` of the range (probability
/// `1 - p`, rounded to a multiple of 2^-32: a `p` below 2^-33 drops nothing, one above
/// `1 - 2^-33` keeps 2^-32) and `drop` elsewhere: dropout's mask, with `keep` the scale
/// `1 / (1 - p)`. The draws depend only on `seed` and each element's position, not on the
/// thread count; large masks are filled on rayon's threads.
///
/// # Panics
/// If `p` is not in `[0, 1]`.
///
/// ```
/// use tapegrad_kernels::random::bernoulli_mask;
/// let mut mask = vec![0.0f32; 100_000];
/// bernoulli_mask(7, 0.25, 4.0 / 3.0, 0.0, &mut mask);
/// let kept = mask.iter().filter(|&&m| m != 0.0).count() as f64 / 1e5;
/// assert!((kept - 0.75).abs() < 0.01);
/// let mut again = vec![0.0f32; 100_000];
/// bernoulli_mask(7, 0.25, 4.0 / 3.0, 0.0, &mut again);
/// assert_eq!(mask, again); // the seed fixes the mask
/// ```
pub fn bernoulli_mask<T: Copy + Send + Sync>(seed: u64, p: f64, keep: T, drop: T, out: &mut [T]) {
    assert!((0.0..=1.0).contains(&p), "bernoulli_mask: probability {p} is not in [0, 1]");
    // The 2^32 draws below the threshold are the dropped ones: p of them.
    let threshold = (p * 4_294_967_296.0).round().min(u32::MAX as f64) as u32;
    let fill = |(block, out): (usize, &mut [T])| {
        run_widest(FillBlock { out, seed, block: block as u64, threshold, keep, drop })
    };
    if start_parallel(out.len()) {
        out.par_chunks_mut(BLOCK).enumerate().for_each(fill);
    } else {
        out.chunks_mut(BLOCK).enumerate().for_each(fill);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lanes_are_xoshiro256plusplus() {
        use rand::{Rng, SeedableRng, rngs::Xoshiro256PlusPlus};
        // Each lane, on its own, is `rand`'s generator started from the same state.
        let mut lanes = Lanes::new(1, 2);
        let mut reference: Vec<Xoshiro256PlusPlus> = (0..LANES)
            .map(|l| {
                let words = [0, 1, 2, 3].map(|w| lanes.s[w][l].to_le_bytes());
                Xoshiro256PlusPlus::from_seed(words.concat().try_into().unwrap())
            })
            .collect();
        for _ in 0..50 {
            let draws = lanes.next();
            for (l, r) in reference.iter_mut().enumerate() {
                assert_eq!(draws[l], r.next_u64());
            }
        }
    }

    #[test]
    fn masks_keep_the_asked_fraction_everywhere_and_differ_between_blocks_and_seeds() {
        let n = 4 * BLOCK + 123;
        for p in [0.1, 0.5, 0.9] {
            let mut mask = vec![0u8; n];
            bernoulli_mask(3, p, 1, 0, &mut mask);
            // Each block, and each position within the groups of 2 * LANES, keeps 1 - p.
            for block in mask.chunks_exact(BLOCK) {
                let kept = block.iter().map(|&m| m as f64).sum::<f64>() / block.len() as f64;
                assert!((kept - (1.0 - p)).abs() < 0.05, "p {p}: block kept {kept}");
            }
            for position in 0..2 * LANES {
                let column: Vec<u8> =
                    mask.iter().skip(position).step_by(2 * LANES).copied().collect();
                let kept = column.iter().map(|&m| m as f64).sum::<f64>() / column.len() as f64;
                assert!((kept - (1.0 - p)).abs() < 0.05, "p {p}: position {position} kept {kept}");
            }
            let (first, second) = (&mask[..BLOCK], &mask[BLOCK..2 * BLOCK]);
            assert_ne!(first, second, "blocks have their own draws");
            let mut other = vec![0u8; n];
            bernoulli_mask(4, p, 1, 0, &mut other);
            assert_ne!(mask, other, "seeds have their own draws");
        }
    }

    #[test]
    fn neighbouring_draws_are_uncorrelated() {
        // Kept-kept pairs at distance 1 and at 2 * LANES appear at the rate independence gives.
        let mut mask = vec![0u8; 8 * BLOCK];
        bernoulli_mask(11, 0.5, 1, 0, &mut mask);
        for distance in [1, LANES, 2 * LANES] {
            let pairs = mask.len() - distance;
            let both = (0..pairs).filter(|&i| mask[i] == 1 && mask[i + distance] == 1).count();
            let rate = both as f64 / pairs as f64;
            assert!((rate - 0.25).abs() < 0.01, "distance {distance}: {rate}");
        }
    }

    #[test]
    fn the_mask_is_the_same_on_one_thread_and_on_many() {
        let n = 6 * BLOCK + 5;
        let mut parallel = vec![0.0f64; n];
        bernoulli_mask(9, 0.3, 2.0, 0.0, &mut parallel);
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let mut serial = vec![0.0f64; n];
        one.install(|| bernoulli_mask(9, 0.3, 2.0, 0.0, &mut serial));
        assert_eq!(parallel, serial);
    }

    #[test]
    fn zero_and_one_drop_nothing_and_everything() {
        let mut mask = vec![5u8; 1000];
        bernoulli_mask(1, 0.0, 1, 0, &mut mask);
        assert!(mask.iter().all(|&m| m == 1));
        bernoulli_mask(1, 1.0, 1, 0, &mut mask);
        // The threshold is 2^32 - 1: only a draw of exactly u32::MAX survives (2^-32).
        assert!(mask.iter().all(|&m| m == 0));
    }
}
