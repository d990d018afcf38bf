//! Layer normalisation on a contiguous `[rows, d]` buffer: each row standardised with its
//! own mean and variance, then scaled and shifted elementwise, and the gradient of that,
//! in one pass over the rows each way.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::Real;
use crate::parallel::{THRESHOLD, start_parallel};
use crate::simd::{WidestLoop, run_widest};
use crate::strided::{LANES, combine_lanes};

/// Most blocks of rows in [`backward`]: each block keeps its own share of the weight and
/// bias gradients (`2 d` values) until they are added up.
const MAX_BLOCKS: usize = 64;

/// Rows per task: enough values for a task to repay waking a thread, and at most
/// [`MAX_BLOCKS`] blocks. Fixed by the shape alone, so the column sums of [`backward`] are
/// split the same way at every thread count.
pub(crate) fn rows_per_block(rows: usize, d: usize) -> usize {
    (THRESHOLD / 4).div_ceil(d.max(1)).max(rows.div_ceil(MAX_BLOCKS)).max(1)
}

/// Runs `block(first_row, rows, their outputs, their statistics)` over blocks of `per` rows
/// of `d` values of `x`, beside the same rows of `dst` and entries of `stats`; on rayon's
/// threads when `x` is large.
pub(crate) fn forward_blocks<T: Real>(
    x: &[T],
    dst: &mut [MaybeUninit<T>],
    stats: &mut [(T, T)],
    (per, d): (usize, usize),
    block: impl Fn(usize, &[T], &mut [MaybeUninit<T>], &mut [(T, T)]) + Sync + Send,
) {
    let block_len = (per * d).max(1);
    if start_parallel(x.len()) {
        x.par_chunks(block_len)
            .zip(dst.par_chunks_mut(block_len).zip(stats.par_chunks_mut(per)))
            .enumerate()
            .for_each(|(b, (xs, (ys, stats)))| block(b * per, xs, ys, stats));
    } else {
        let blocks = x.chunks(block_len).zip(dst.chunks_mut(block_len).zip(stats.chunks_mut(per)));
        for (b, (xs, (ys, stats))) in blocks.enumerate() {
            block(b * per, xs, ys, stats);
        }
    }
}

/// `block(first_row, rows of g, rows of x, their outputs)` over blocks of `per` rows of `d`
/// values, on rayon's threads when large; the results in block order.
pub(crate) fn backward_blocks<T: Real, R: Send>(
    g: &[T],
    x: &[T],
    dst: &mut [MaybeUninit<T>],
    (per, d): (usize, usize),
    block: impl Fn(usize, &[T], &[T], &mut [MaybeUninit<T>]) -> R + Sync + Send,
) -> Vec<R> {
    let block_len = (per * d).max(1);
    let blocks: Vec<_> =
        g.chunks(block_len).zip(x.chunks(block_len)).zip(dst.chunks_mut(block_len)).collect();
    let run = |(b, ((gs, xs), dst))| block(b * per, gs, xs, dst);
    if start_parallel(x.len()) {
        blocks.into_par_iter().enumerate().map(run).collect()
    } else {
        blocks.into_iter().enumerate().map(run).collect()
    }
}

/// The normalised rows of `x` (`rows x d`, row-major), with each row's mean and inverse
/// standard deviation `invstd = inverse_deviation(var)` (of the biased variance, summed as
/// squared deviations from the mean; typically `1 / sqrt(var + eps)`): `(y, mean, invstd)`
/// with `y = (x - mean) invstd weight + bias`, `weight` and `bias` (`d` values each)
/// defaulting to 1 and 0.
///
/// ```
/// use tapegrad_kernels::layer_norm::forward;
/// let (y, mean, invstd) =
///     forward(&[1.0f64, 3.0, 10.0, 14.0], (2, 2), None, None, |var: f64| 1.0 / var.sqrt());
/// assert_eq!((mean, invstd), (vec![2.0, 12.0], vec![1.0, 0.5]));
/// assert_eq!(y, vec![-1.0, 1.0, -1.0, 1.0]);
/// ```
///
/// # Panics
/// If `x` does not hold `rows * d` values or `weight` or `bias` not `d`.
pub fn forward<T: Real>(
    x: &[T],
    (rows, d): (usize, usize),
    weight: Option<&[T]>,
    bias: Option<&[T]>,
    inverse_deviation: impl Fn(T) -> T + Sync + Send,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    assert_eq!(x.len(), rows * d, "layer_norm: buffer size");
    assert!(weight.is_none_or(|w| w.len() == d), "layer_norm: weight size");
    assert!(bias.is_none_or(|b| b.len() == d), "layer_norm: bias size");
    let count = T::from_count(d);
    let mut y = Vec::with_capacity(x.len());
    let mut stats = vec![(T::ZERO, T::ZERO); rows];
    let dst = &mut y.spare_capacity_mut()[..x.len()];
    let per = rows_per_block(rows, d);
    forward_blocks(x, dst, &mut stats, (per, d), |_, xs, ys, stats| {
        for ((src, dst), stat) in xs.chunks(d.max(1)).zip(ys.chunks_mut(d.max(1))).zip(stats) {
            let (mean, var) = moments(src, count);
            let invstd = inverse_deviation(var);
            *stat = (mean, invstd);
            run_widest(Normalize { src, dst, mean, invstd, weight, bias });
        }
    });
    // SAFETY: every row of `x` had its row of `y` written by `Normalize` (`d = 0` leaves
    // nothing to write).
    unsafe { y.set_len(x.len()) };
    let (mean, invstd) = stats.into_iter().unzip();
    (y, mean, invstd)
}

/// The gradients of [`forward`] given the output gradient `g`: `(dx, dweight, dbias)` with
/// `dx = invstd (h - mean(h) - xhat mean(h xhat))` per row for `h = g weight` and `xhat =
/// (x - mean) invstd`, `dweight = sum_rows(g xhat)`, `dbias = sum_rows(g)`; the last two
/// only with `parameters` (else empty: a layer norm without affine parameters, or whose
/// parameters need no gradient, skips that pass). The column sums run over fixed blocks of
/// rows, added in order: the same bits at every thread count.
///
/// ```
/// use tapegrad_kernels::layer_norm::{backward, forward};
/// let x = [1.0f64, 3.0];
/// let (_, mean, invstd) = forward(&x, (1, 2), None, None, |var: f64| 1.0 / var.sqrt());
/// // A constant output gradient moves no normalised value.
/// let (dx, dw, db) = backward(&[1.0, 1.0], &x, (1, 2), &mean, &invstd, None, true);
/// assert_eq!((dx, dw, db), (vec![0.0, 0.0], vec![-1.0, 1.0], vec![1.0, 1.0]));
/// let (dx, dw, _) = backward(&[1.0, 1.0], &x, (1, 2), &mean, &invstd, None, false);
/// assert!(dx == [0.0, 0.0] && dw.is_empty());
/// ```
///
/// # Panics
/// If a buffer is shorter than the shape says.
pub fn backward<T: Real>(
    g: &[T],
    x: &[T],
    (rows, d): (usize, usize),
    mean: &[T],
    invstd: &[T],
    weight: Option<&[T]>,
    parameters: bool,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    assert!(g.len() == rows * d && x.len() == g.len(), "layer_norm backward: buffer sizes");
    assert!(mean.len() == rows && invstd.len() == rows, "layer_norm backward: statistics");
    assert!(weight.is_none_or(|w| w.len() == d), "layer_norm backward: weight size");
    let count = T::from_count(d);
    let mut dx = Vec::with_capacity(x.len());
    let per = rows_per_block(rows, d);
    let columns = if parameters { d } else { 0 };
    let dst = &mut dx.spare_capacity_mut()[..x.len()];
    // Each block of rows: its rows of dx, and its share of dweight and dbias.
    let parts = backward_blocks(g, x, dst, (per, d), |first, gs, xs, dst| {
        let (mut dw, mut db) = (vec![T::ZERO; columns], vec![T::ZERO; columns]);
        let rows = gs.chunks(d).zip(xs.chunks(d)).zip(dst.chunks_mut(d));
        for (r, ((g, x), dst)) in rows.enumerate() {
            let (mean, invstd) = (mean[first + r], invstd[first + r]);
            let row = Row { g, x, mean, invstd, weight };
            let (sum_h, sum_hx) = run_widest(GradientSums(row));
            let (mean_h, mean_hx) = (sum_h / count, sum_hx / count);
            run_widest(InputGradient { row, dst, mean_h, mean_hx });
            if parameters {
                run_widest(ParameterGradients { row, dw: &mut dw, db: &mut db });
            }
        }
        (dw, db)
    });
    // SAFETY: every row of `dx` was written by `InputGradient` (`d = 0` leaves nothing).
    unsafe { dx.set_len(x.len()) };
    let mut parts = parts.into_iter();
    let (mut dw, mut db) =
        parts.next().unwrap_or_else(|| (vec![T::ZERO; columns], vec![T::ZERO; columns]));
    for (w, b) in parts {
        dw.iter_mut().zip(&w).for_each(|(t, &v)| *t += v);
        db.iter_mut().zip(&b).for_each(|(t, &v)| *t += v);
    }
    (dx, dw, db)
}

/// The second derivative through the input: the gradient in `x` of `<v, dx>`, `dx` being
/// [`backward`]'s input gradient for the output gradient `g`. Per row, with `h = g weight`,
/// `xhat = (x - mean) invstd` and the row means `a = mean(h)`, `b = mean(h xhat)`, `mv =
/// mean(v)`, `mvx = mean(v xhat)` and `mvh = mean(v h)`:
/// `-invstd² ((h - a) mvx + (v - mv) b + xhat (mvh - a mv - 3 b mvx))`. The Hessian of
/// `<g, y>` in `x` is symmetric, so this is also the derivative of `dx` along `v`.
///
/// ```
/// use tapegrad_kernels::layer_norm::{double_backward, forward};
/// let x = [1.0f64, 3.0];
/// let (_, mean, invstd) = forward(&x, (1, 2), None, None, |var: f64| 1.0 / var.sqrt());
/// // Moving a whole row by one amount changes no gradient.
/// let d = double_backward((&[2.0, 0.5], &x, &[1.0, 1.0]), (1, 2), (&mean, &invstd), None);
/// assert_eq!(d, vec![0.0, 0.0]);
/// ```
///
/// # Panics
/// If a buffer is shorter than the shape says.
pub fn double_backward<T: Real>(
    (g, x, v): (&[T], &[T], &[T]),
    (rows, d): (usize, usize),
    (mean, invstd): (&[T], &[T]),
    weight: Option<&[T]>,
) -> Vec<T> {
    let sizes_match = g.len() == rows * d && x.len() == g.len() && v.len() == g.len();
    assert!(sizes_match, "layer_norm double backward: buffer sizes");
    assert!(mean.len() == rows && invstd.len() == rows, "layer_norm double backward: statistics");
    assert!(weight.is_none_or(|w| w.len() == d), "layer_norm double backward: weight size");
    let count = T::from_count(d);
    let mut out = Vec::with_capacity(x.len());
    let per = rows_per_block(rows, d);
    let dst = &mut out.spare_capacity_mut()[..x.len()];
    backward_blocks(g, x, dst, (per, d), |first, gs, xs, dst| {
        let vs = &v[first * d..first * d + gs.len()];
        let rows = gs.chunks(d).zip(xs.chunks(d)).zip(vs.chunks(d)).zip(dst.chunks_mut(d));
        for (r, (((g, x), v), dst)) in rows.enumerate() {
            let row = Row { g, x, mean: mean[first + r], invstd: invstd[first + r], weight };
            run_widest(SecondInputGradient { row, v, dst, count });
        }
    });
    // SAFETY: every row was written by `SecondInputGradient` (`d = 0` leaves nothing).
    unsafe { out.set_len(x.len()) };
    out
}

/// `sum(a - at)` and `sum((a - at)^2)` over a row `a`, in [`LANES`] interleaved partial sums.
pub(crate) struct RowSums<'a, T> {
    pub(crate) a: &'a [T],
    pub(crate) at: T,
}

impl<T: Real> WidestLoop for RowSums<'_, T> {
    type Output = (T, T);
    #[inline(always)]
    fn run(self) -> (T, T) {
        let at = self.at;
        let (mut plain, mut squares) = ([T::ZERO; LANES], [T::ZERO; LANES]);
        let chunks = self.a.chunks_exact(LANES);
        let rest = chunks.remainder();
        for chunk in chunks {
            for k in 0..LANES {
                let deviation = chunk[k] - at;
                plain[k] += deviation;
                squares[k] += deviation * deviation;
            }
        }
        let (plain_rest, squares_rest) = rest
            .iter()
            .fold((T::ZERO, T::ZERO), |(p, q), &v| (p + (v - at), q + (v - at) * (v - at)));
        (combine_lanes(plain) + plain_rest, combine_lanes(squares) + squares_rest)
    }
}

/// `sum(h)` and `sum(h xhat)` over a row, with `h = g weight` and `xhat = (x - mean)
/// invstd`, in [`LANES`] interleaved partial sums.
struct GradientSums<'a, T>(Row<'a, T>);

impl<T: Real> WidestLoop for GradientSums<'_, T> {
    type Output = (T, T);
    #[inline(always)]
    fn run(self) -> (T, T) {
        let Row { g, x, mean, invstd, weight } = self.0;
        match weight {
            // Cut to the row so the compiler sees every index in range.
            Some(w) => gradient_sums(g, x, &w[..g.len()], (mean, invstd)),
            None => gradient_sums(g, x, Ones, (mean, invstd)),
        }
    }
}

/// The weight of a layer norm without one: one everywhere, multiplied away.
#[derive(Clone, Copy)]
struct Ones;

/// Values indexed along a row: the weight, or [`Ones`].
trait Weight<T>: Copy {
    /// `v w[j]`.
    fn times(self, j: usize, v: T) -> T;
    /// `v[k] w[j0 + k]` for the [`LANES`] values of `v` (one range check for all of them,
    /// so the products vectorise).
    fn times_lanes(self, j0: usize, v: &[T; LANES]) -> [T; LANES];
}

impl<T: Real> Weight<T> for &[T] {
    #[inline(always)]
    fn times(self, j: usize, v: T) -> T {
        v * self[j]
    }
    #[inline(always)]
    fn times_lanes(self, j0: usize, v: &[T; LANES]) -> [T; LANES] {
        let w: &[T; LANES] = self[j0..j0 + LANES].try_into().expect("LANES values");
        std::array::from_fn(|k| v[k] * w[k])
    }
}

impl<T: Copy> Weight<T> for Ones {
    #[inline(always)]
    fn times(self, _: usize, v: T) -> T {
        v
    }
    #[inline(always)]
    fn times_lanes(self, _: usize, v: &[T; LANES]) -> [T; LANES] {
        *v
    }
}

/// `sum(h)` and `sum(h xhat)` of [`GradientSums`], for one kind of weight (separate loops,
/// so each vectorises).
#[inline(always)]
fn gradient_sums<T: Real>(g: &[T], x: &[T], w: impl Weight<T>, (mean, invstd): (T, T)) -> (T, T) {
    let (mut plain, mut products) = ([T::ZERO; LANES], [T::ZERO; LANES]);
    let x = &x[..g.len()];
    let (g_chunks, x_chunks) = (g.chunks_exact(LANES), x.chunks_exact(LANES));
    let full = g.len() - g_chunks.remainder().len();
    for (j0, (gs, xs)) in (0..full).step_by(LANES).zip(g_chunks.zip(x_chunks)) {
        let h = w.times_lanes(j0, gs.try_into().expect("LANES values"));
        for k in 0..LANES {
            plain[k] += h[k];
            products[k] += h[k] * ((xs[k] - mean) * invstd);
        }
    }
    let (mut plain_rest, mut products_rest) = (T::ZERO, T::ZERO);
    for j in full..g.len() {
        let h = w.times(j, g[j]);
        plain_rest += h;
        products_rest += h * ((x[j] - mean) * invstd);
    }
    (combine_lanes(plain) + plain_rest, combine_lanes(products) + products_rest)
}

/// The mean and (biased) variance of a row of `count` values, by the corrected two-pass
/// method: a first mean, then the deviations from it, whose sum corrects the mean and
/// whose squares, less that correction, give the variance. A row far from zero keeps the
/// precision of its spread (the first mean's rounding cancels out).
#[inline]
pub(crate) fn moments<T: Real>(row: &[T], count: T) -> (T, T) {
    let first = run_widest(RowSums { a: row, at: T::ZERO }).0 / count;
    let (deviations, squares) = run_widest(RowSums { a: row, at: first });
    let var = (squares - deviations * deviations / count) / count;
    (first + deviations / count, if var < T::ZERO { T::ZERO } else { var })
}

/// `dst = (src - mean) invstd weight + bias`.
struct Normalize<'a, T> {
    src: &'a [T],
    dst: &'a mut [MaybeUninit<T>],
    mean: T,
    invstd: T,
    weight: Option<&'a [T]>,
    bias: Option<&'a [T]>,
}

impl<T: Real> WidestLoop for Normalize<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let (mean, invstd) = (self.mean, self.invstd);
        let xhat = self.src.iter().map(|&v| (v - mean) * invstd);
        match (self.weight, self.bias) {
            (Some(w), Some(b)) => {
                for (((d, v), &w), &b) in self.dst.iter_mut().zip(xhat).zip(w).zip(b) {
                    d.write(v * w + b);
                }
            }
            (Some(w), None) => {
                for ((d, v), &w) in self.dst.iter_mut().zip(xhat).zip(w) {
                    d.write(v * w);
                }
            }
            (None, Some(b)) => {
                for ((d, v), &b) in self.dst.iter_mut().zip(xhat).zip(b) {
                    d.write(v + b);
                }
            }
            (None, None) => {
                for (d, v) in self.dst.iter_mut().zip(xhat) {
                    d.write(v);
                }
            }
        }
    }
}

/// One row of the backward pass: its output gradient, input and statistics.
#[derive(Clone, Copy)]
struct Row<'a, T> {
    g: &'a [T],
    x: &'a [T],
    mean: T,
    invstd: T,
    weight: Option<&'a [T]>,
}

/// `dst = invstd (h - mean_h - xhat mean_hx)` with `h = g weight`.
struct InputGradient<'a, T> {
    row: Row<'a, T>,
    dst: &'a mut [MaybeUninit<T>],
    mean_h: T,
    mean_hx: T,
}

impl<T: Real> WidestLoop for InputGradient<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let Row { g, x, mean, invstd, weight } = self.row;
        let (mean_h, mean_hx) = (self.mean_h, self.mean_hx);
        let x = &x[..g.len()];
        let dst = &mut self.dst[..g.len()];
        match weight {
            Some(w) => {
                let w = &w[..g.len()];
                for j in 0..g.len() {
                    let xhat = (x[j] - mean) * invstd;
                    dst[j].write(invstd * (g[j] * w[j] - mean_h - xhat * mean_hx));
                }
            }
            None => {
                for j in 0..g.len() {
                    let xhat = (x[j] - mean) * invstd;
                    dst[j].write(invstd * (g[j] - mean_h - xhat * mean_hx));
                }
            }
        }
    }
}

/// One row of [`double_backward`], into `dst`.
struct SecondInputGradient<'a, T> {
    row: Row<'a, T>,
    v: &'a [T],
    dst: &'a mut [MaybeUninit<T>],
    count: T,
}

impl<T: Real> WidestLoop for SecondInputGradient<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let SecondInputGradient { row, v, dst, count } = self;
        match row.weight {
            // Cut to the row so the compiler sees every index in range.
            Some(w) => second_row(row, &w[..row.g.len()], v, dst, count),
            None => second_row(row, Ones, v, dst, count),
        }
    }
}

/// [`SecondInputGradient`] for one kind of weight: the five row sums in [`LANES`]
/// interleaved partial sums, then one pass writing the row.
#[inline(always)]
fn second_row<T: Real>(
    row: Row<'_, T>,
    w: impl Weight<T>,
    v: &[T],
    dst: &mut [MaybeUninit<T>],
    count: T,
) {
    let Row { g, x, mean, invstd, .. } = row;
    let (x, v, dst) = (&x[..g.len()], &v[..g.len()], &mut dst[..g.len()]);
    // h, h xhat, v, v xhat and v h, in that order.
    let mut lanes = [[T::ZERO; LANES]; 5];
    let chunks = g.chunks_exact(LANES).zip(x.chunks_exact(LANES)).zip(v.chunks_exact(LANES));
    let full = g.len() - g.len() % LANES;
    for (j0, ((gs, xs), vs)) in (0..full).step_by(LANES).zip(chunks) {
        let h = w.times_lanes(j0, gs.try_into().expect("LANES values"));
        for k in 0..LANES {
            let xhat = (xs[k] - mean) * invstd;
            lanes[0][k] += h[k];
            lanes[1][k] += h[k] * xhat;
            lanes[2][k] += vs[k];
            lanes[3][k] += vs[k] * xhat;
            lanes[4][k] += vs[k] * h[k];
        }
    }
    let mut rest = [T::ZERO; 5];
    for j in full..g.len() {
        let (h, xhat) = (w.times(j, g[j]), (x[j] - mean) * invstd);
        for (total, term) in rest.iter_mut().zip([h, h * xhat, v[j], v[j] * xhat, v[j] * h]) {
            *total += term;
        }
    }
    let [a, b, mv, mvx, mvh] = std::array::from_fn(|i| (combine_lanes(lanes[i]) + rest[i]) / count);
    let coefficient = mvh - a * mv - (b + b + b) * mvx;
    let scale = -(invstd * invstd);
    for j in 0..g.len() {
        let (h, xhat) = (w.times(j, g[j]), (x[j] - mean) * invstd);
        dst[j].write(scale * ((h - a) * mvx + (v[j] - mv) * b + xhat * coefficient));
    }
}

/// `dw += g xhat`, `db += g` along one row.
struct ParameterGradients<'a, T> {
    row: Row<'a, T>,
    dw: &'a mut [T],
    db: &'a mut [T],
}

impl<T: Real> WidestLoop for ParameterGradients<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let Row { g, x, mean, invstd, .. } = self.row;
        let (x, dw, db) = (&x[..g.len()], &mut self.dw[..g.len()], &mut self.db[..g.len()]);
        for j in 0..g.len() {
            dw[j] += g[j] * ((x[j] - mean) * invstd);
            db[j] += g[j];
        }
    }
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

    /// The documented formulas, one row at a time.
    fn reference(g: &[f64], x: &[f64], d: usize, w: &[f64]) -> [Vec<f64>; 4] {
        let (mut y, mut dx) = (vec![], vec![]);
        let (mut dw, mut db) = (vec![0.0; d], vec![0.0; d]);
        for (gr, xr) in g.chunks(d).zip(x.chunks(d)) {
            let mean = xr.iter().sum::<f64>() / d as f64;
            let s = invstd(xr.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64);
            let xhat: Vec<f64> = xr.iter().map(|v| (v - mean) * s).collect();
            let h: Vec<f64> = gr.iter().zip(w).map(|(g, w)| g * w).collect();
            let mean_h = h.iter().sum::<f64>() / d as f64;
            let mean_hx = h.iter().zip(&xhat).map(|(h, x)| h * x).sum::<f64>() / d as f64;
            for j in 0..d {
                y.push(xhat[j] * w[j] + 0.25);
                dx.push(s * (h[j] - mean_h - xhat[j] * mean_hx));
                dw[j] += gr[j] * xhat[j];
                db[j] += gr[j];
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

    /// Row lengths around the lane width, and tensors small and large enough to share among
    /// threads, with a large common offset (where a one-pass variance would cancel).
    #[test]
    fn rows_match_the_formulas() {
        for (rows, d) in [(1, 1), (3, 5), (4, 16), (7, 37), (2100, 64), (40, 2049), (300, 4096)] {
            let (x, g) = (values(rows * d, 1, 50.0), values(rows * d, 2, 0.0));
            let w: Vec<f64> = (0..d).map(|j| 0.5 + j as f64 / d as f64).collect();
            let b = vec![0.25; d];
            let [y, dx, dw, db] = reference(&g, &x, d, &w);
            let (got, mean, s) = forward(&x, (rows, d), Some(&w), Some(&b), invstd);
            close(&got, &y, 1e-12, "y");
            let (gx, gw, gb) = backward(&g, &x, (rows, d), &mean, &s, Some(&w), true);
            close(&gx, &dx, 1e-11, "dx");
            close(&gw, &dw, 1e-12, "dweight");
            close(&gb, &db, 1e-12, "dbias");
        }
    }

    #[test]
    fn without_affine_parameters_the_weight_is_one_and_the_bias_zero() {
        let (rows, d) = (6, 20);
        let (x, g) = (values(rows * d, 3, 0.0), values(rows * d, 4, 0.0));
        let ones = vec![1.0; d];
        let (plain, mean, s) = forward(&x, (rows, d), None, None, invstd);
        let (affine, ..) = forward(&x, (rows, d), Some(&ones), Some(&vec![0.0; d]), invstd);
        assert_eq!(plain, affine);
        let with = backward(&g, &x, (rows, d), &mean, &s, Some(&ones), true);
        assert_eq!(backward(&g, &x, (rows, d), &mean, &s, None, true), with);
        let (dx, dw, db) = backward(&g, &x, (rows, d), &mean, &s, None, false);
        assert!(dx == with.0 && dw.is_empty() && db.is_empty());
    }

    /// Every thread count gives the same bits (the column sums run over fixed blocks).
    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let (rows, d) = (3000, 48);
        let x: Vec<f32> = values(rows * d, 5, 1.0).iter().map(|&v| v as f32).collect();
        let g: Vec<f32> = values(rows * d, 6, 0.0).iter().map(|&v| v as f32).collect();
        let run = || {
            let (y, mean, s) = forward(&x, (rows, d), None, None, |v: f32| 1.0 / (v + 1e-5).sqrt());
            (y, backward(&g, &x, (rows, d), &mean, &s, None, true))
        };
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(run);
        let three = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap().install(run);
        assert!(one == three);
    }

    /// The second derivative against central differences of [`backward`]'s `<v, dx>` in
    /// `x`, with and without a weight, for rows shorter and longer than the lanes.
    #[test]
    fn the_second_derivative_matches_differences_of_the_first() {
        for (rows, d) in [(1, 2), (3, 5), (2, 37)] {
            let (x, g, v) =
                (values(rows * d, 7, 2.0), values(rows * d, 8, 0.0), values(rows * d, 9, 0.0));
            let w: Vec<f64> = (0..d).map(|j| 0.5 + j as f64 / d as f64).collect();
            for weight in [None, Some(&w[..])] {
                let first = |x: &[f64]| {
                    let (_, mean, s) = forward(x, (rows, d), None, None, invstd);
                    let dx = backward(&g, x, (rows, d), &mean, &s, weight, false).0;
                    dx.iter().zip(&v).map(|(a, b)| a * b).sum::<f64>()
                };
                let (_, mean, s) = forward(&x, (rows, d), None, None, invstd);
                let got = double_backward((&g, &x, &v), (rows, d), (&mean, &s), weight);
                let h = 1e-5;
                let want: Vec<f64> = (0..x.len())
                    .map(|i| {
                        let (mut up, mut down) = (x.clone(), x.clone());
                        up[i] += h;
                        down[i] -= h;
                        (first(&up) - first(&down)) / (2.0 * h)
                    })
                    .collect();
                close(&got, &want, 1e-7, "second derivative");
            }
        }
    }

    #[test]
    fn empty_rows_give_empty_results() {
        let (y, mean, _) = forward::<f32>(&[], (0, 8), None, None, |v| v);
        assert!(y.is_empty() && mean.is_empty());
        let (dx, dw, db) = backward::<f32>(&[], &[], (0, 8), &[], &[], None, true);
        assert!(dx.is_empty() && dw == [0.0; 8] && db == [0.0; 8]);
    }
}
