//! Log-sum-exp along one dimension, softmax's normaliser, and its gradient:
//!
//! ```text
//! lse = m + ln Σ e^(x - m)      (m the row's maximum, so that no exponential overflows)
//! dx  = g e^(x - lse)           (g the gradient of lse: one value per row)
//! ```
//!
//! Rows as in [`softmax`](super::softmax): a contiguous `[outer, n, inner]` buffer, blocks
//! shared among threads, each block's loops in the widest vectors the CPU has.

use rayon::prelude::*;

use super::{Softmax, max_nan};
use crate::parallel::start_parallel;
use crate::simd::{WidestLoop, run_widest};

/// The log of the sum of the exponentials of each row along the middle dimension of `x`, a
/// contiguous buffer of shape `[outer, n, inner]` with `n >= 1`: `outer * inner` values. A
/// row holding a NaN gives NaN, one holding `+inf` gives `+inf`, and a row of `-inf` gives
/// `-inf`, as in PyTorch.
///
/// ```
/// use tapegrad_kernels::softmax::logsumexp;
/// // Rows [0, 0] and [1000, 1000]: ln 2 and 1000 + ln 2, without overflow.
/// let lse = logsumexp(&[0.0f64, 0.0, 1000.0, 1000.0], (2, 2, 1));
/// assert!((lse[0] - 2f64.ln()).abs() < 1e-15 && (lse[1] - 1000.0 - 2f64.ln()).abs() < 1e-12);
/// ```
///
/// # Panics
/// If `n` is 0 or `x` does not hold `outer * n * inner` elements.
pub fn logsumexp<T: Softmax>(x: &[T], (outer, n, inner): (usize, usize, usize)) -> Vec<T> {
    let len = outer.checked_mul(n).and_then(|v| v.checked_mul(inner));
    assert!(n > 0 && len == Some(x.len()), "logsumexp: buffer size");
    let mut out = vec![T::ZERO; outer * inner];
    if x.is_empty() {
        return out;
    }
    let run = |(out, x): (&mut [T], &[T])| run_widest(Reduce { x, out, n });
    if outer > 1 && start_parallel(x.len()) {
        let per_task = (outer / (4 * rayon::current_num_threads())).max(1);
        out.par_chunks_mut(inner).zip(x.par_chunks(n * inner)).with_min_len(per_task).for_each(run);
    } else {
        out.chunks_mut(inner).zip(x.chunks(n * inner)).for_each(run);
    }
    out
}

/// The gradient of [`logsumexp`]'s input from the input `x`, the output `lse` and the
/// output's gradient `g` (one value per row, as `lse`).
///
/// ```
/// use tapegrad_kernels::softmax::{logsumexp, logsumexp_backward};
/// // The gradient is softmax(x) times g: [1/2, 1/2] * 2 for the row [0, 0].
/// let x = [0.0f64, 0.0];
/// let lse = logsumexp(&x, (1, 2, 1));
/// assert_eq!(logsumexp_backward(&x, &lse, &[2.0], (1, 2, 1)), vec![1.0, 1.0]);
/// ```
///
/// # Panics
/// If the buffers do not have the sizes of `[outer, n, inner]` and `[outer, inner]`.
pub fn logsumexp_backward<T: Softmax>(
    x: &[T],
    lse: &[T],
    g: &[T],
    (outer, n, inner): (usize, usize, usize),
) -> Vec<T> {
    let len = outer.checked_mul(n).and_then(|v| v.checked_mul(inner));
    let rows = outer.checked_mul(inner);
    assert!(
        len == Some(x.len()) && rows == Some(lse.len()) && lse.len() == g.len(),
        "logsumexp_backward: buffer sizes"
    );
    let mut dx = vec![T::ZERO; x.len()];
    if x.is_empty() {
        return dx;
    }
    let block = n * inner;
    let run = |(dx, (x, (lse, g))): SpreadParts<'_, T>| run_widest(Spread { x, lse, g, dx });
    if outer > 1 && start_parallel(x.len()) {
        let per_task = (outer / (4 * rayon::current_num_threads())).max(1);
        dx.par_chunks_mut(block)
            .zip(x.par_chunks(block).zip(lse.par_chunks(inner).zip(g.par_chunks(inner))))
            .with_min_len(per_task)
            .for_each(run);
    } else {
        dx.chunks_mut(block)
            .zip(x.chunks(block).zip(lse.chunks(inner).zip(g.chunks(inner))))
            .for_each(run);
    }
    dx
}

/// A block of the gradient with its inputs, as the iterators pair them up.
type SpreadParts<'a, T> = (&'a mut [T], (&'a [T], (&'a [T], &'a [T])));

/// One block `[n, inner]` reduced to its `inner` values.
struct Reduce<'a, T> {
    x: &'a [T],
    out: &'a mut [T],
    n: usize,
}

impl<T: Softmax> WidestLoop for Reduce<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let Reduce { x, out, n } = self;
        if out.len() == 1 {
            out[0] = row(x);
        } else {
            across_rows(x, out, n);
        }
    }
}

/// Neither infinite nor NaN (`Real` has no `is_finite`): only then is `0 v` zero.
#[inline(always)]
fn is_finite<T: Softmax>(v: T) -> bool {
    v * T::ZERO == T::ZERO
}

/// One contiguous row, in sixteen lanes.
#[inline(always)]
fn row<T: Softmax>(x: &[T]) -> T {
    const LANES: usize = 16;
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    let mut lanes = [x[0]; LANES];
    for chunk in chunks.clone() {
        for k in 0..LANES {
            lanes[k] = max_nan(lanes[k], chunk[k]);
        }
    }
    let m = rest.iter().fold(lanes.into_iter().fold(x[0], max_nan), |a, &b| max_nan(a, b));
    if !is_finite(m) {
        // NaN or +inf is the answer itself; a row of -inf sums to nothing.
        return m;
    }
    let mut sums = [T::ZERO; LANES];
    for chunk in chunks {
        for k in 0..LANES {
            sums[k] += (chunk[k] - m).exp_vectorisable();
        }
    }
    let sum = rest
        .iter()
        .fold(sums.into_iter().fold(T::ZERO, |a, b| a + b), |a, &v| a + (v - m).exp_vectorisable());
    m + sum.ln_of_sum()
}

/// `out.len()` rows of `n` elements, that far apart, side by side.
#[inline(always)]
fn across_rows<T: Softmax>(x: &[T], out: &mut [T], n: usize) {
    let inner = out.len();
    out.copy_from_slice(&x[..inner]);
    for j in 1..n {
        for (m, &v) in out.iter_mut().zip(&x[j * inner..(j + 1) * inner]) {
            *m = max_nan(*m, v);
        }
    }
    let mut sums = vec![T::ZERO; inner];
    for j in 0..n {
        for ((s, &v), &m) in sums.iter_mut().zip(&x[j * inner..(j + 1) * inner]).zip(&*out) {
            *s += (v - m).exp_vectorisable();
        }
    }
    for (m, s) in out.iter_mut().zip(sums) {
        if is_finite(*m) {
            *m += s.ln_of_sum();
        }
    }
}

/// One block `[n, inner]` of the gradient: each row's `g e^(x - lse)`.
struct Spread<'a, T> {
    x: &'a [T],
    lse: &'a [T],
    g: &'a [T],
    dx: &'a mut [T],
}

impl<T: Softmax> WidestLoop for Spread<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let Spread { x, lse, g, dx } = self;
        let inner = lse.len();
        if inner == 1 {
            // One row along the reduced dimension: its lse and g are scalars, and the loop
            // runs down the row in vectors.
            let (l, g) = (lse[0], g[0]);
            for (d, &v) in dx.iter_mut().zip(x) {
                *d = g * (v - l).exp_vectorisable();
            }
            return;
        }
        for (dx, x) in dx.chunks_exact_mut(inner).zip(x.chunks_exact(inner)) {
            for (((d, &v), &l), &g) in dx.iter_mut().zip(x).zip(lse).zip(g) {
                *d = g * (v - l).exp_vectorisable();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{logsumexp, logsumexp_backward};

    /// The definition in f64, one row at a time.
    fn reference(x: &[f64], (outer, n, inner): (usize, usize, usize)) -> Vec<f64> {
        let mut out = Vec::new();
        for o in 0..outer {
            for i in 0..inner {
                let row: Vec<f64> = (0..n).map(|j| x[(o * n + j) * inner + i]).collect();
                let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                out.push(m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln());
            }
        }
        out
    }

    #[test]
    fn rows_along_any_dimension_match_the_definition() {
        for sizes in [(1, 1, 1), (3, 37, 1), (2, 5, 3), (4, 1, 7), (1, 40, 33)] {
            let len = sizes.0 * sizes.1 * sizes.2;
            let x: Vec<f64> = (0..len).map(|i| ((i * 7919) % 101) as f64 * 0.37 - 18.0).collect();
            let got = logsumexp(&x, sizes);
            for (g, r) in got.iter().zip(reference(&x, sizes)) {
                assert!((g - r).abs() <= 1e-13 * r.abs().max(1.0), "{sizes:?}: {g} vs {r}");
            }
            // The gradient is g times softmax: each row of it sums to g.
            let g: Vec<f64> = (0..got.len()).map(|i| i as f64 + 0.5).collect();
            let dx = logsumexp_backward(&x, &got, &g, sizes);
            let sums = logsumexp(&dx.iter().map(|v| v.ln()).collect::<Vec<_>>(), sizes);
            for (s, g) in sums.iter().zip(&g) {
                assert!((s.exp() - g).abs() <= 1e-12 * g, "{sizes:?}: {} vs {g}", s.exp());
            }
        }
    }

    #[test]
    fn special_rows_give_what_pytorch_gives() {
        let (inf, nan) = (f64::INFINITY, f64::NAN);
        let x = [-inf, -inf, 1.0, inf, nan, 2.0, 1e308, 1e308];
        for sizes in [(4, 2, 1), (1, 2, 4)] {
            // Along rows, or the same values as columns of one block.
            let x: Vec<f64> = if sizes.2 == 1 {
                x.to_vec()
            } else {
                (0..8).map(|k| x[(k % 4) * 2 + k / 4]).collect()
            };
            let lse = logsumexp(&x, sizes);
            assert_eq!(lse[0], -inf, "{sizes:?}");
            assert_eq!(lse[1], inf, "{sizes:?}");
            assert!(lse[2].is_nan(), "{sizes:?}");
            assert_eq!(lse[3], 1e308 + 2f64.ln(), "{sizes:?}");
        }
        let lse = logsumexp(&[1e4f32, -1e4, 3.0], (1, 3, 1));
        assert_eq!(lse, vec![1e4f32]);
    }
}
