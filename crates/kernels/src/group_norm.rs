//! Group normalisation on a contiguous `[n, c, hw]` buffer: the `c` channels split into
//! `groups` groups, each group of each sample (one contiguous row of `c / groups * hw`
//! values) standardised with its own statistics, then a per-channel scale and shift; and
//! the gradient of that. Built from the row loops of layer norm and the channel loops of
//! batch norm.

use std::mem::MaybeUninit;

use crate::Real;
use crate::batch_norm::{Channel, ChannelSums, InputGradient};
use crate::layer_norm::{backward_blocks, forward_blocks, moments, rows_per_block};
use crate::simd::{WidestLoop, run_widest};

/// The sizes of a group norm: `n` samples of `c` channels of `hw` values in `groups` groups.
///
/// ```
/// use tapegrad_kernels::group_norm::Groups;
/// // A [2, 8, 4, 4] batch in 4 groups: each group of a sample is 2 channels of 16 values.
/// let sizes = Groups { n: 2, c: 8, hw: 16, groups: 4 };
/// # let _ = sizes;
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Groups {
    /// Samples.
    pub n: usize,
    /// Channels (a multiple of `groups`).
    pub c: usize,
    /// Values per channel.
    pub hw: usize,
    /// Groups of channels.
    pub groups: usize,
}

impl Groups {
    /// Channels per group.
    fn per_group(self) -> usize {
        self.c / self.groups.max(1)
    }
    /// Values per group of one sample: the length of a row.
    fn row(self) -> usize {
        self.per_group() * self.hw
    }
    /// Rows: groups of all samples.
    fn rows(self) -> usize {
        self.n * self.groups
    }
    fn check(self, len: usize, what: &str) {
        assert!(
            self.groups > 0 && self.c.is_multiple_of(self.groups),
            "group_norm {what}: {} channels in {} groups",
            self.c,
            self.groups
        );
        assert_eq!(len, self.n * self.c * self.hw, "group_norm {what}: buffer size");
    }
}

/// The group-normalised `x` with each row's mean and inverse deviation `invstd =
/// inverse_deviation(var)` (the biased variance, as squared deviations from the mean):
/// `(y, mean, invstd)`, `y = (x - mean) invstd weight[ch] + bias[ch]` with `weight` and
/// `bias` (`c` values) defaulting to 1 and 0, the statistics `n * groups` values in
/// sample-major order.
///
/// ```
/// use tapegrad_kernels::group_norm::{Groups, forward};
/// // One sample, two channels of two values, one group; channel 1 scaled by 2.
/// let sizes = Groups { n: 1, c: 2, hw: 2, groups: 1 };
/// let x = [1.0f64, 3.0, 5.0, 7.0];
/// let (y, mean, invstd) = forward(&x, sizes, Some(&[1.0, 2.0]), None, |v: f64| 1.0 / v.sqrt());
/// assert_eq!((mean, invstd), (vec![4.0], vec![1.0 / 5f64.sqrt()]));
/// assert!((y[2] - 2.0 / 5f64.sqrt()).abs() < 1e-15); // (5 - 4) invstd, times 2
/// ```
///
/// # Panics
/// If the sizes do not fit the buffers, or `c` is not a multiple of `groups`.
pub fn forward<T: Real>(
    x: &[T],
    sizes: Groups,
    weight: Option<&[T]>,
    bias: Option<&[T]>,
    inverse_deviation: impl Fn(T) -> T + Sync + Send,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    sizes.check(x.len(), "forward");
    assert!(weight.is_none_or(|w| w.len() == sizes.c), "group_norm: weight size");
    assert!(bias.is_none_or(|b| b.len() == sizes.c), "group_norm: bias size");
    let (d, hw, per_group) = (sizes.row(), sizes.hw, sizes.per_group());
    let count = T::from_count(d);
    let mut y = Vec::with_capacity(x.len());
    let mut stats = vec![(T::ZERO, T::ZERO); sizes.rows()];
    let per = rows_per_block(sizes.rows(), d);
    let dst = &mut y.spare_capacity_mut()[..x.len()];
    forward_blocks(x, dst, &mut stats, (per, d), |first_row, xs, ys, stats| {
        let rows = xs.chunks(d.max(1)).zip(ys.chunks_mut(d.max(1))).zip(stats);
        for (r, ((src, dst), stat)) in rows.enumerate() {
            let (mean, var) = moments(src, count);
            let invstd = inverse_deviation(var);
            *stat = (mean, invstd);
            let first = ((first_row + r) % sizes.groups) * per_group;
            let segments = src.chunks(hw.max(1)).zip(dst.chunks_mut(hw.max(1)));
            for (s, (src, dst)) in segments.enumerate() {
                let scale = invstd * weight.map_or(T::ONE, |w| w[first + s]);
                let shift = bias.map_or(T::ZERO, |b| b[first + s]);
                run_widest(Standardize { src, dst, mean, scale, shift });
            }
        }
    });
    // SAFETY: every row's segments were written by `Standardize` (each segment of `dst` beside
    // its segment of `x`, the same length); an empty buffer has nothing to write.
    unsafe { y.set_len(x.len()) };
    let (mean, invstd) = stats.into_iter().unzip();
    (y, mean, invstd)
}

/// The gradients of [`forward`] given the output gradient `g`: `(dx, dweight, dbias)`, per
/// row `dx = invstd (h - mean(h) - xhat mean(h xhat))` with `h = g weight[ch]` and `xhat =
/// (x - mean) invstd`, `dweight[ch] = sum(g xhat)` and `dbias[ch] = sum(g)` over the
/// channel's values in every sample; the last two only with `parameters` (else empty).
/// Each row's per-channel sums are kept and added over the samples in order: the same bits
/// at every thread count.
///
/// ```
/// use tapegrad_kernels::group_norm::{Groups, backward, forward};
/// let sizes = Groups { n: 1, c: 2, hw: 1, groups: 1 };
/// let x = [1.0f64, 3.0];
/// let (_, mean, invstd) = forward(&x, sizes, None, None, |v: f64| 1.0 / v.sqrt());
/// // A constant output gradient moves no normalised value.
/// let (dx, dw, db) = backward(&[1.0, 1.0], &x, sizes, &mean, &invstd, None, true);
/// assert_eq!((dx, dw, db), (vec![0.0, 0.0], vec![-1.0, 1.0], vec![1.0, 1.0]));
/// ```
///
/// # Panics
/// If the sizes do not fit the buffers.
pub fn backward<T: Real>(
    g: &[T],
    x: &[T],
    sizes: Groups,
    mean: &[T],
    invstd: &[T],
    weight: Option<&[T]>,
    parameters: bool,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    sizes.check(x.len(), "backward");
    assert_eq!(g.len(), x.len(), "group_norm backward: gradient size");
    let rows = sizes.rows();
    assert!(mean.len() == rows && invstd.len() == rows, "group_norm backward: statistics");
    assert!(weight.is_none_or(|w| w.len() == sizes.c), "group_norm backward: weight size");
    let (d, hw, per_group) = (sizes.row(), sizes.hw, sizes.per_group());
    let count = T::from_count(d);
    let per = rows_per_block(rows, d);
    let mut dx = Vec::with_capacity(x.len());
    let dst = &mut dx.spare_capacity_mut()[..x.len()];
    // Each row: its dx, and the sums of g and g xhat of each of its channels.
    let sums = backward_blocks(g, x, dst, (per, d), |first_row, gs, xs, dst| {
        let mut sums = Vec::with_capacity(gs.len() / hw.max(1));
        let rows = gs.chunks(d.max(1)).zip(xs.chunks(d.max(1))).zip(dst.chunks_mut(d.max(1)));
        for (r, ((g, x), dst)) in rows.enumerate() {
            let row = first_row + r;
            let (m, s) = (mean[row], invstd[row]);
            let first = (row % sizes.groups) * per_group;
            let at = sums.len();
            let (mut sum_h, mut sum_hx) = (T::ZERO, T::ZERO);
            for (k, (g, x)) in g.chunks(hw.max(1)).zip(x.chunks(hw.max(1))).enumerate() {
                let (rows, other) = (one_row(x), Some(one_row(g)));
                let (sg, sgx) = run_widest(ChannelSums { rows, other, at: m, scale: s });
                let w = weight.map_or(T::ONE, |w| w[first + k]);
                (sum_h, sum_hx) = (sum_h + w * sg, sum_hx + w * sgx);
                sums.push((sg, sgx));
            }
            let (mean_h, mean_hx) = (sum_h / count, sum_hx / count);
            let segments =
                g.chunks(hw.max(1)).zip(x.chunks(hw.max(1))).zip(dst.chunks_mut(hw.max(1)));
            for (k, ((g, x), dst)) in segments.enumerate() {
                let w = weight.map_or(T::ONE, |w| w[first + k]);
                let coefficients = [s * w, s * mean_h, s * s * mean_hx, m];
                run_widest(InputGradient { g, x, dst, coefficients });
            }
            debug_assert_eq!(sums.len() - at, per_group);
        }
        sums
    });
    // SAFETY: every row's segments were written by `InputGradient` (each beside its
    // segments of `g` and `x`, the same length); an empty buffer has nothing to write.
    unsafe { dx.set_len(x.len()) };
    let columns = if parameters { sizes.c } else { 0 };
    let (mut dw, mut db) = (vec![T::ZERO; columns], vec![T::ZERO; columns]);
    if parameters {
        // Row r's channel k is channel (r mod groups) * per_group + k; rows come in order.
        for (i, &(sg, sgx)) in sums.iter().flatten().enumerate() {
            let ch = i % sizes.c;
            (dw[ch], db[ch]) = (dw[ch] + sgx, db[ch] + sg);
        }
    }
    (dx, dw, db)
}

/// `dst = (src - mean) scale + shift`: the deviation taken before scaling, so a group far
/// from zero keeps the precision of its spread (`src * scale - mean * scale` would round at
/// the size of the mean).
struct Standardize<'a, T> {
    src: &'a [T],
    dst: &'a mut [MaybeUninit<T>],
    mean: T,
    scale: T,
    shift: T,
}

impl<T: Real> WidestLoop for Standardize<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        for (d, &v) in self.dst.iter_mut().zip(self.src) {
            d.write((v - self.mean) * self.scale + self.shift);
        }
    }
}

/// A contiguous segment as the one row of a one-channel [`Channel`].
fn one_row<T>(data: &[T]) -> Channel<'_, T> {
    Channel { data, ch: 0, c: 1, hw: data.len() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: u64, offset: f64) -> Vec<f64> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                offset + ((state >> 33) as f64 / (1u64 << 31) as f64 - 0.5)
            })
            .collect()
    }

    fn invstd(var: f64) -> f64 {
        1.0 / (var + 1e-5).sqrt()
    }

    /// The documented formulas, one group at a time.
    fn reference(g: &[f64], x: &[f64], sizes: Groups, w: &[f64], b: &[f64]) -> [Vec<f64>; 4] {
        let (d, hw, pg) = (sizes.row(), sizes.hw, sizes.per_group());
        let (mut y, mut dx) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        let (mut dw, mut db) = (vec![0.0; sizes.c], vec![0.0; sizes.c]);
        for row in 0..sizes.rows() {
            let range = row * d..(row + 1) * d;
            let ch = |j: usize| (row % sizes.groups) * pg + j / hw;
            let xr = &x[range.clone()];
            let mean = xr.iter().sum::<f64>() / d as f64;
            let s = invstd(xr.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64);
            let h: Vec<f64> = (0..d).map(|j| g[row * d + j] * w[ch(j)]).collect();
            let xhat: Vec<f64> = xr.iter().map(|v| (v - mean) * s).collect();
            let mean_h = h.iter().sum::<f64>() / d as f64;
            let mean_hx = h.iter().zip(&xhat).map(|(h, x)| h * x).sum::<f64>() / d as f64;
            for j in 0..d {
                y[row * d + j] = xhat[j] * w[ch(j)] + b[ch(j)];
                dx[row * d + j] = s * (h[j] - mean_h - xhat[j] * mean_hx);
                dw[ch(j)] += g[row * d + j] * xhat[j];
                db[ch(j)] += g[row * d + j];
            }
        }
        [y, dx, dw, db]
    }

    fn close(a: &[f64], b: &[f64], tolerance: f64, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: length");
        let scale = b.iter().fold(1.0f64, |s, v| s.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tolerance * scale, "{what}[{i}]: {x} vs {y}");
        }
    }

    /// Small and large buffers (the large ones shared among threads), one group, one
    /// channel per group, rows not whole vectors, a large common offset.
    #[test]
    fn groups_match_the_formulas() {
        for (n, c, hw, groups) in
            [(1, 1, 1, 1), (2, 4, 3, 2), (3, 6, 17, 3), (2, 8, 5, 8), (16, 32, 256, 4)]
        {
            let sizes = Groups { n, c, hw, groups };
            let len = n * c * hw;
            let (x, g) = (values(len, 1, 30.0), values(len, 2, 0.0));
            let w: Vec<f64> = (0..c).map(|k| 0.5 + k as f64 / c as f64).collect();
            let b: Vec<f64> = (0..c).map(|k| k as f64 * 0.1).collect();
            let [y, dx, dw, db] = reference(&g, &x, sizes, &w, &b);
            let (got, mean, s) = forward(&x, sizes, Some(&w), Some(&b), invstd);
            close(&got, &y, 1e-12, "y");
            let (gx, gw, gb) = backward(&g, &x, sizes, &mean, &s, Some(&w), true);
            close(&gx, &dx, 1e-11, "dx");
            close(&gw, &dw, 1e-11, "dweight");
            close(&gb, &db, 1e-12, "dbias");
            let (plain_dx, none, _) = backward(&g, &x, sizes, &mean, &s, Some(&w), false);
            assert!(plain_dx == gx && none.is_empty());
        }
    }

    /// In f32, a group far from zero (values 100 +- 0.1) keeps what precision its spread
    /// allows: the mean itself rounds to an f32 near 100 (to 3.8e-6, 6.5e-5 of the spread),
    /// which bounds any f32 method; a plain two-pass mean, or scaling before subtracting
    /// the mean, was off by 1e-4 to 1.2e-4 here.
    #[test]
    fn groups_far_from_zero_keep_their_precision() {
        let sizes = Groups { n: 2, c: 4, hw: 64, groups: 2 };
        let x64: Vec<f64> =
            values(512, 9, 100.0).iter().map(|v| 100.0 + (v - 100.0) * 0.2).collect();
        let x32: Vec<f32> = x64.iter().map(|&v| v as f32).collect();
        let exact: Vec<f64> = x32.iter().map(|&v| v as f64).collect();
        let (y64, ..) = forward(&exact, sizes, None, None, invstd);
        let (y32, ..) = forward(&x32, sizes, None, None, |v: f32| 1.0 / (v + 1e-5).sqrt());
        for (a, b) in y32.iter().zip(&y64) {
            assert!((*a as f64 - b).abs() < 5e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let sizes = Groups { n: 8, c: 16, hw: 1024, groups: 4 };
        let len = 8 * 16 * 1024;
        let x: Vec<f32> = values(len, 5, 1.0).iter().map(|&v| v as f32).collect();
        let g: Vec<f32> = values(len, 6, 0.0).iter().map(|&v| v as f32).collect();
        let run = || {
            let (y, mean, s) = forward(&x, sizes, None, None, |v: f32| 1.0 / (v + 1e-5).sqrt());
            (y, backward(&g, &x, sizes, &mean, &s, None, true))
        };
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(run);
        let three = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap().install(run);
        assert!(one == three);
    }

    #[test]
    fn empty_buffers_give_empty_results() {
        let sizes = Groups { n: 0, c: 4, hw: 3, groups: 2 };
        let (y, mean, _) = forward::<f32>(&[], sizes, None, None, |v| v);
        assert!(y.is_empty() && mean.is_empty());
        let (dx, dw, db) = backward::<f32>(&[], &[], sizes, &[], &[], None, true);
        assert!(dx.is_empty() && dw == [0.0; 4] && db == [0.0; 4]);
        let sizes = Groups { n: 2, c: 4, hw: 0, groups: 2 };
        let (y, mean, _) = forward::<f32>(&[], sizes, None, None, |v| v);
        assert!(y.is_empty() && mean.len() == 4);
    }
}
