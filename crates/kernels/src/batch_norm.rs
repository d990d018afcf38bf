//! Batch normalisation in training mode on a contiguous `[N, C, ...]` buffer, seen as
//! `[n, c, hw]`: each channel's statistics over its `n * hw` values, the normalised output,
//! and the gradient in one pass per channel. Where a channel's rows are shorter than a
//! vector (`hw < 16`: BatchNorm1d's `[N, C]` has one value per row) the buffer is taken as
//! `n` rows of all `c * hw` positions instead, vectorised across channels.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::Real;
use crate::parallel::{THRESHOLD, start_parallel};
use crate::simd::{WidestLoop, run_widest};
use crate::strided::{LANES, combine_lanes};

/// Each channel's mean and (biased) variance over `x` of shape `[n, c, hw]`, summed in two
/// passes (a first mean, then the deviations from it, which correct it). Channels (or, for
/// short rows, blocks of positions) are shared among rayon's threads when `x` is large; each
/// is summed by one thread in a fixed order, so the result does not depend on the number of
/// threads.
///
/// ```
/// use tapegrad_kernels::batch_norm::channel_stats;
/// // Two images, one channel of two values: 1, 3 and 5, 7.
/// let (mean, var) = channel_stats(&[1.0f64, 3.0, 5.0, 7.0], (2, 1, 2));
/// assert_eq!((mean, var), (vec![4.0], vec![5.0]));
/// ```
///
/// # Panics
/// If `x` does not hold `n * c * hw` values.
pub fn channel_stats<T: Real>(x: &[T], (n, c, hw): (usize, usize, usize)) -> (Vec<T>, Vec<T>) {
    assert_eq!(x.len(), n * c * hw, "channel_stats: buffer size");
    let count = T::from_count(n * hw);
    if short_rows(x.len(), hw) {
        let width = c * hw;
        let (zeros, ones) = (vec![T::ZERO; width], vec![T::ONE; width]);
        let (sums, _) = position_sums(x, None, width, (&zeros, &ones));
        let first: Vec<T> = per_channel_total(&sums, hw).iter().map(|&s| s / count).collect();
        let (sums, squares) = position_sums(x, None, width, (&by_position(&first, hw), &ones));
        let (sums, squares) = (per_channel_total(&sums, hw), per_channel_total(&squares, hw));
        return (0..c).map(|ch| corrected(first[ch], (sums[ch], squares[ch]), count)).unzip();
    }
    let one_channel = |ch: usize| {
        // The corrected two-pass method (see `layer_norm::moments`).
        let rows = Channel { data: x, ch, c, hw };
        let first =
            run_widest(ChannelSums { rows, other: None, at: T::ZERO, scale: T::ONE }).0 / count;
        let deviations = ChannelSums { rows, other: None, at: first, scale: T::ONE };
        corrected(first, run_widest(deviations), count)
    };
    per_channel(x.len(), c, one_channel).into_iter().unzip()
}

/// The mean and (biased) variance of `count` values from a first estimate of their mean
/// and the sums of their deviations from it and of those deviations squared (the
/// correction of the two-pass method); a variance rounded below zero is zero.
fn corrected<T: Real>(first: T, (sum, squares): (T, T), count: T) -> (T, T) {
    let var = (squares - sum * sum / count) / count;
    (first + sum / count, if var < T::ZERO { T::ZERO } else { var })
}

/// `f(ch)` for each of `c` channels of a buffer of `len` values, in order, on rayon's
/// threads when the buffer is large.
fn per_channel<R: Send>(len: usize, c: usize, f: impl Fn(usize) -> R + Sync + Send) -> Vec<R> {
    if c > 1 && start_parallel(len) {
        (0..c).into_par_iter().map(f).collect()
    } else {
        (0..c).map(f).collect()
    }
}

/// The rows of one channel in a `[n, c, hw]` buffer: `data[(i * c + ch) * hw..][..hw]` for
/// each image `i`.
#[derive(Clone, Copy)]
pub(crate) struct Channel<'a, T> {
    pub(crate) data: &'a [T],
    pub(crate) ch: usize,
    pub(crate) c: usize,
    pub(crate) hw: usize,
}

impl<'a, T> Channel<'a, T> {
    fn rows(self) -> impl Iterator<Item = &'a [T]> {
        let Channel { data, ch, c, hw } = self;
        data.chunks_exact((c * hw).max(1)).map(move |image| &image[ch * hw..(ch + 1) * hw])
    }
}

/// Two sums over one channel's values `v`, with `d = (v - at) * scale`: `sum(g)` and
/// `sum(g * d)` where `other` gives `g` (the output gradient, laid out like the values), or
/// `sum(v - at)` and `sum(d * d)` without it. Summed in [`LANES`] interleaved partial sums,
/// the rest of each row added separately, the lanes combined pairwise at the end.
pub(crate) struct ChannelSums<'a, T> {
    pub(crate) rows: Channel<'a, T>,
    pub(crate) other: Option<Channel<'a, T>>,
    pub(crate) at: T,
    pub(crate) scale: T,
}

impl<T: Real> WidestLoop for ChannelSums<'_, T> {
    type Output = (T, T);
    #[inline(always)]
    fn run(self) -> (T, T) {
        let (at, scale) = (self.at, self.scale);
        let (mut plain, mut products) = ([T::ZERO; LANES], [T::ZERO; LANES]);
        let (mut plain_rest, mut products_rest) = (T::ZERO, T::ZERO);
        match self.other {
            None => {
                for row in self.rows.rows() {
                    let chunks = row.chunks_exact(LANES);
                    for &v in chunks.remainder() {
                        let d = (v - at) * scale;
                        (plain_rest, products_rest) =
                            (plain_rest + (v - at), products_rest + d * d);
                    }
                    for chunk in chunks {
                        for k in 0..LANES {
                            let d = (chunk[k] - at) * scale;
                            plain[k] += chunk[k] - at;
                            products[k] += d * d;
                        }
                    }
                }
            }
            Some(grads) => {
                for (row, gs) in self.rows.rows().zip(grads.rows()) {
                    let (chunks, g_chunks) = (row.chunks_exact(LANES), gs.chunks_exact(LANES));
                    for (&v, &g) in chunks.remainder().iter().zip(g_chunks.remainder()) {
                        let d = (v - at) * scale;
                        (plain_rest, products_rest) = (plain_rest + g, products_rest + g * d);
                    }
                    for (chunk, g) in chunks.zip(g_chunks) {
                        for k in 0..LANES {
                            let d = (chunk[k] - at) * scale;
                            plain[k] += g[k];
                            products[k] += g[k] * d;
                        }
                    }
                }
            }
        }
        (combine_lanes(plain) + plain_rest, combine_lanes(products) + products_rest)
    }
}

/// `out[j] = f(row, j)` for the `hw`-long rows of a `[rows, hw]` output: whole rows per
/// task on rayon's threads when large, each row written through `fill(row, src, dst)` with
/// `src` the rows of `inputs` at the same place.
fn rows_into<T: Real>(
    len: usize,
    hw: usize,
    inputs: [&[T]; 2],
    fill: impl Fn(usize, [&[T]; 2], &mut [MaybeUninit<T>]) + Sync + Send,
) -> Vec<T> {
    let mut out = Vec::with_capacity(len);
    let dst = &mut out.spare_capacity_mut()[..len];
    let hw = hw.max(1);
    let block = |(b, dst): (usize, &mut [MaybeUninit<T>]), rows: usize| {
        for (r, d) in dst.chunks_mut(hw).enumerate() {
            let (row, at) = (b * rows + r, (b * rows + r) * hw);
            fill(row, inputs.map(|s| &s[at..at + d.len()]), d);
        }
    };
    if start_parallel(len) {
        let rows = (THRESHOLD / 4).div_ceil(hw);
        dst.par_chunks_mut(rows * hw).enumerate().for_each(|part| block(part, rows));
    } else {
        block((0, dst), len.div_ceil(hw).max(1));
    }
    // SAFETY: the blocks cover the first `len` slots, and `fill` writes each slot of its row.
    unsafe { out.set_len(len) };
    out
}

/// `(x - mean) * invstd * weight + bias` per channel of `x` (`[n, c, hw]`); `weight` and
/// `bias` default to 1 and 0.
///
/// ```
/// use tapegrad_kernels::batch_norm::normalize;
/// let y = normalize(&[1.0f32, 3.0], (1, 1, 2), &[2.0], &[1.0], Some(&[10.0]), Some(&[0.5]));
/// assert_eq!(y, vec![-9.5, 10.5]);
/// ```
///
/// # Panics
/// If a buffer is shorter than the shape says.
pub fn normalize<T: Real>(
    x: &[T],
    (n, c, hw): (usize, usize, usize),
    mean: &[T],
    invstd: &[T],
    weight: Option<&[T]>,
    bias: Option<&[T]>,
) -> Vec<T> {
    assert_eq!(x.len(), n * c * hw, "normalize: buffer size");
    assert!(mean.len() >= c && invstd.len() >= c, "normalize: statistics per channel");
    let scale: Vec<T> = (0..c).map(|ch| invstd[ch] * weight.map_or(T::ONE, |w| w[ch])).collect();
    let shift: Vec<T> =
        (0..c).map(|ch| bias.map_or(T::ZERO, |b| b[ch]) - mean[ch] * scale[ch]).collect();
    if short_rows(x.len(), hw) {
        let (scale, shift) = (by_position(&scale, hw), by_position(&shift, hw));
        return rows_into(x.len(), c * hw, [x, x], |_, [src, _], dst| {
            run_widest(AffineRow { src, dst, scale: &scale, shift: &shift });
        });
    }
    rows_into(x.len(), hw, [x, x], |row, [src, _], dst| {
        let ch = row % c;
        run_widest(Affine { src, dst, scale: scale[ch], shift: shift[ch] });
    })
}

/// `dst = src * scale + shift`.
struct Affine<'a, T> {
    src: &'a [T],
    dst: &'a mut [MaybeUninit<T>],
    scale: T,
    shift: T,
}

impl<T: Real> WidestLoop for Affine<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        for (d, &v) in self.dst.iter_mut().zip(self.src) {
            d.write(v * self.scale + self.shift);
        }
    }
}

/// `dst = k g - k mean(g) - (x - mean) q` with `[k, k mean(g), q, mean]` as `coefficients`.
pub(crate) struct InputGradient<'a, T> {
    pub(crate) g: &'a [T],
    pub(crate) x: &'a [T],
    pub(crate) dst: &'a mut [MaybeUninit<T>],
    pub(crate) coefficients: [T; 4],
}

impl<T: Real> WidestLoop for InputGradient<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let [k, shift, q, mean] = self.coefficients;
        for ((d, &g), &x) in self.dst.iter_mut().zip(self.g).zip(self.x) {
            d.write(k * g - shift - (x - mean) * q);
        }
    }
}

/// The gradients of [`normalize`] with batch statistics, given the output gradient `g`:
/// `(dx, dweight, dbias)` with `dx = weight invstd (g - mean(g) - xhat mean(g xhat))` per
/// channel, `dweight = sum(g xhat)`, `dbias = sum(g)`, `xhat = (x - mean) invstd`.
///
/// ```
/// use tapegrad_kernels::batch_norm::backward;
/// // A constant output gradient moves no normalised value: dx = 0, dbias = the count.
/// let (dx, dw, db) = backward(&[1.0f64; 2], &[1.0, 3.0], (1, 1, 2), &[2.0], &[1.0], None);
/// assert_eq!((dx, dw, db), (vec![0.0, 0.0], vec![0.0], vec![2.0]));
/// ```
///
/// # Panics
/// If a buffer is shorter than the shape says.
pub fn backward<T: Real>(
    g: &[T],
    x: &[T],
    (n, c, hw): (usize, usize, usize),
    mean: &[T],
    invstd: &[T],
    weight: Option<&[T]>,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    assert!(g.len() == n * c * hw && x.len() == g.len(), "batch_norm backward: buffer sizes");
    assert!(mean.len() >= c && invstd.len() >= c, "batch_norm backward: statistics per channel");
    let short = short_rows(x.len(), hw);
    let (sum_g, sum_gx): (Vec<T>, Vec<T>) = if short {
        let at = (by_position(&mean[..c], hw), by_position(&invstd[..c], hw));
        let (sum_g, sum_gx) = position_sums(x, Some(g), c * hw, (&at.0, &at.1));
        (per_channel_total(&sum_g, hw), per_channel_total(&sum_gx, hw))
    } else {
        let sums = per_channel(x.len(), c, |ch| {
            let rows = Channel { data: x, ch, c, hw };
            let other = Some(Channel { data: g, ch, c, hw });
            run_widest(ChannelSums { rows, other, at: mean[ch], scale: invstd[ch] })
        });
        sums.into_iter().unzip()
    };
    let count = T::from_count(n * hw);
    // dx = k (g - mean(g) - (x - mean) invstd mean(g xhat)) = k g - k mean(g) - (x - mean) q.
    let coefficients: Vec<[T; 4]> = (0..c)
        .map(|ch| {
            let k = invstd[ch] * weight.map_or(T::ONE, |w| w[ch]);
            [k, k * (sum_g[ch] / count), invstd[ch] * (sum_gx[ch] / count) * k, mean[ch]]
        })
        .collect();
    let dx = if short {
        let each =
            |k: usize| by_position(&coefficients.iter().map(|q| q[k]).collect::<Vec<_>>(), hw);
        let coefficients = [each(0), each(1), each(2), each(3)];
        rows_into(x.len(), c * hw, [g, x], |_, [g, x], dst| {
            run_widest(InputGradientRow { g, x, dst, coefficients: &coefficients });
        })
    } else {
        rows_into(x.len(), hw, [g, x], |row, [gs, xs], dst| {
            run_widest(InputGradient { g: gs, x: xs, dst, coefficients: coefficients[row % c] });
        })
    };
    (dx, sum_gx, sum_g)
}

/// Whether a buffer with `hw` values per channel and sample takes the short-row path: rows
/// of a channel that short (BatchNorm1d's `[N, C]` has one value per row) would run the
/// vector loops one or a few values at a time, so the buffer is taken as `n` rows of all
/// `c * hw` positions instead, with coefficients per position and vectors across channels.
fn short_rows(len: usize, hw: usize) -> bool {
    len > 0 && (1..LANES).contains(&hw)
}

/// Each channel's value repeated for its `hw` positions.
fn by_position<T: Copy>(per_channel: &[T], hw: usize) -> Vec<T> {
    per_channel.iter().flat_map(|&v| std::iter::repeat_n(v, hw)).collect()
}

/// The sums over each channel's `hw` adjacent positions.
fn per_channel_total<T: Real>(per_position: &[T], hw: usize) -> Vec<T> {
    per_position.chunks_exact(hw).map(|p| p.iter().fold(T::ZERO, |s, &v| s + v)).collect()
}

/// Positions summed by one task of [`position_sums`]: a fixed number, so that the sums do
/// not depend on the number of threads.
const POSITIONS_PER_TASK: usize = 256;

/// For each position `j` of the `width`-wide rows of `x`, with `(at, scale)` per position:
/// `(Σ (x - at), Σ ((x - at) scale)²)` over the rows, or with `other` (`g`),
/// `(Σ g, Σ g (x - at) scale)`. Blocks of positions are shared among rayon's threads when
/// `x` is large; each position is summed by one task, row after row.
fn position_sums<T: Real>(
    x: &[T],
    other: Option<&[T]>,
    width: usize,
    (at, scale): (&[T], &[T]),
) -> (Vec<T>, Vec<T>) {
    let block = |first: usize| {
        let end = (first + POSITIONS_PER_TASK).min(width);
        let (at, scale) = (&at[first..end], &scale[first..end]);
        run_widest(PositionSums { x, other, width, columns: (first, end), at, scale })
    };
    let firsts = (0..width).step_by(POSITIONS_PER_TASK);
    let blocks: Vec<(Vec<T>, Vec<T>)> = if width > POSITIONS_PER_TASK && start_parallel(x.len()) {
        firsts.collect::<Vec<_>>().into_par_iter().map(block).collect()
    } else {
        firsts.map(block).collect()
    };
    let (mut plain, mut products) = (Vec::with_capacity(width), Vec::with_capacity(width));
    for (p, q) in blocks {
        plain.extend(p);
        products.extend(q);
    }
    (plain, products)
}

/// The sums of [`position_sums`] for the positions `columns` of every row.
struct PositionSums<'a, T> {
    x: &'a [T],
    other: Option<&'a [T]>,
    width: usize,
    columns: (usize, usize),
    at: &'a [T],
    scale: &'a [T],
}

impl<T: Real> WidestLoop for PositionSums<'_, T> {
    type Output = (Vec<T>, Vec<T>);
    #[inline(always)]
    fn run(self) -> (Vec<T>, Vec<T>) {
        let (first, end) = self.columns;
        let (mut plain, mut products) = (vec![T::ZERO; end - first], vec![T::ZERO; end - first]);
        let rows = self.x.chunks_exact(self.width).map(|row| &row[first..end]);
        match self.other {
            None => {
                for row in rows {
                    let sums = plain.iter_mut().zip(products.iter_mut());
                    for ((p, q), ((&v, &at), &scale)) in
                        sums.zip(row.iter().zip(self.at).zip(self.scale))
                    {
                        let d = (v - at) * scale;
                        *p += v - at;
                        *q += d * d;
                    }
                }
            }
            Some(other) => {
                let grads = other.chunks_exact(self.width).map(|row| &row[first..end]);
                for (row, gs) in rows.zip(grads) {
                    let sums = plain.iter_mut().zip(products.iter_mut());
                    let values = row.iter().zip(gs).zip(self.at.iter().zip(self.scale));
                    for ((p, q), ((&v, &g), (&at, &scale))) in sums.zip(values) {
                        *p += g;
                        *q += g * ((v - at) * scale);
                    }
                }
            }
        }
        (plain, products)
    }
}

/// `dst = src scale + shift` along a row, with a scale and shift per position.
struct AffineRow<'a, T> {
    src: &'a [T],
    dst: &'a mut [MaybeUninit<T>],
    scale: &'a [T],
    shift: &'a [T],
}

impl<T: Real> WidestLoop for AffineRow<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let coefficients = self.scale.iter().zip(self.shift);
        for ((d, &v), (&scale, &shift)) in self.dst.iter_mut().zip(self.src).zip(coefficients) {
            d.write(v * scale + shift);
        }
    }
}

/// [`InputGradient`] along a row, with the four coefficients per position.
struct InputGradientRow<'a, T> {
    g: &'a [T],
    x: &'a [T],
    dst: &'a mut [MaybeUninit<T>],
    coefficients: &'a [Vec<T>; 4],
}

impl<T: Real> WidestLoop for InputGradientRow<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let [k, shift, q, mean] = self.coefficients;
        let values = self.dst.iter_mut().zip(self.g).zip(self.x);
        let coefficients = k.iter().zip(shift).zip(q.iter().zip(mean));
        for (((d, &g), &x), ((&k, &shift), (&q, &mean))) in values.zip(coefficients) {
            d.write(k * g - shift - (x - mean) * q);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values with a large common offset (where a one-pass variance would cancel) and a
    /// spread that differs per channel.
    fn values(len: usize, seed: u64) -> Vec<f64> {
        let mut state = seed;
        (0..len)
            .map(|i| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                100.0 + (i % 7) as f64 * ((state >> 33) as f64 / (1u64 << 31) as f64 - 0.5)
            })
            .collect()
    }

    /// The formulas of the documentation, one value at a time in f64.
    fn reference(
        g: &[f64],
        x: &[f64],
        (n, c, hw): (usize, usize, usize),
        weight: &[f64],
    ) -> [Vec<f64>; 5] {
        let at = |i: usize, ch: usize, j: usize| (i * c + ch) * hw + j;
        let m = (n * hw) as f64;
        let (mut mean, mut var, mut dx) = (vec![0.0; c], vec![0.0; c], vec![0.0; x.len()]);
        let (mut dw, mut db) = (vec![0.0; c], vec![0.0; c]);
        for ch in 0..c {
            let cells = || (0..n).flat_map(move |i| (0..hw).map(move |j| at(i, ch, j)));
            mean[ch] = cells().map(|k| x[k]).sum::<f64>() / m;
            var[ch] = cells().map(|k| (x[k] - mean[ch]).powi(2)).sum::<f64>() / m;
            let invstd = 1.0 / var[ch].sqrt();
            db[ch] = cells().map(|k| g[k]).sum();
            dw[ch] = cells().map(|k| g[k] * (x[k] - mean[ch]) * invstd).sum();
            for k in cells() {
                let xhat = (x[k] - mean[ch]) * invstd;
                dx[k] = weight[ch] * invstd * (g[k] - db[ch] / m - xhat * dw[ch] / m);
            }
        }
        [mean, var, dx, dw, db]
    }

    /// Whether `a` and `b` agree to `tolerance` of `scale` (the largest `|b|` if `None`).
    fn close(a: &[f64], b: &[f64], tolerance: f64, scale: Option<f64>, what: &str) {
        let scale = scale.unwrap_or_else(|| b.iter().fold(1e-300f64, |s, v| s.max(v.abs())));
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tolerance * scale, "{what}[{i}]: {x} vs {y}");
        }
    }

    /// Channel counts and row lengths around the lane width, small and large enough to
    /// share among threads.
    #[test]
    fn statistics_and_gradients_match_the_formulas() {
        let shapes = [(2, 3, 1), (3, 2, 17), (2, 5, 35), (4, 16, 1024), (70, 3, 333)];
        // Short rows: BatchNorm1d's [N, C] and [N, C, L] with few positions, across tasks.
        let short = [(300, 40, 1), (64, 24, 3), (9, 701, 1), (5, 70, 15), (1, 3, 2)];
        for (n, c, hw) in shapes.into_iter().chain(short) {
            let len = n * c * hw;
            let (x, g) = (values(len, 1), values(len, 2));
            let g: Vec<f64> = g.iter().map(|v| v - 100.0).collect();
            let weight: Vec<f64> = (0..c).map(|ch| 0.5 + ch as f64).collect();
            let [mean, var, dx, dw, db] = reference(&g, &x, (n, c, hw), &weight);
            let (m, v) = channel_stats(&x, (n, c, hw));
            close(&m, &mean, 1e-14, None, "mean");
            close(&v, &var, 1e-12, None, "var");
            let invstd: Vec<f64> = v.iter().map(|v| 1.0 / v.sqrt()).collect();
            let y = normalize(&x, (n, c, hw), &m, &invstd, Some(&weight), None);
            let expected: Vec<f64> = (0..len)
                .map(|k| {
                    (x[k] - mean[(k / hw) % c]) / var[(k / hw) % c].sqrt() * weight[(k / hw) % c]
                })
                .collect();
            close(&y, &expected, 1e-12, None, "normalize");
            let (gx, gw, gb) = backward(&g, &x, (n, c, hw), &m, &invstd, Some(&weight));
            // dx cancels (exactly, for two values per channel): compare it with its terms.
            let term = (0..len).map(|k| (g[k] * weight[(k / hw) % c] * invstd[(k / hw) % c]).abs());
            close(&gx, &dx, 1e-12, Some(term.fold(0.0, f64::max)), "dx");
            close(&gw, &dw, 1e-12, None, "dweight");
            close(&gb, &db, 1e-13, None, "dbias");
        }
    }

    /// Every thread count gives the same bits (each channel, or each block of positions in
    /// short rows, is summed by one thread).
    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        for shape in [(8, 4, 4100), (512, 701, 1), (128, 300, 5)] {
            same_bits_on_one_and_three_threads(shape);
        }
    }

    fn same_bits_on_one_and_three_threads((n, c, hw): (usize, usize, usize)) {
        let x: Vec<f32> = values(n * c * hw, 3).iter().map(|&v| v as f32).collect();
        let g: Vec<f32> = values(n * c * hw, 4).iter().map(|&v| (v - 100.0) as f32).collect();
        let run = || {
            let (m, v) = channel_stats(&x, (n, c, hw));
            let invstd: Vec<f32> = v.iter().map(|v| 1.0 / v.sqrt()).collect();
            (
                normalize(&x, (n, c, hw), &m, &invstd, None, None),
                backward(&g, &x, (n, c, hw), &m, &invstd, None),
            )
        };
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(run);
        let three = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap().install(run);
        assert!(one == three);
    }

    #[test]
    fn empty_buffers_give_empty_results() {
        let (m, v) = channel_stats::<f32>(&[], (0, 3, 4));
        assert_eq!(m.len(), 3);
        assert!(m.iter().chain(&v).all(|s| s.is_nan()));
        let (dx, dw, db) = backward::<f32>(&[], &[], (2, 3, 0), &[0.0; 3], &[1.0; 3], None);
        assert!(dx.is_empty() && dw == [0.0; 3] && db == [0.0; 3]);
    }
}
