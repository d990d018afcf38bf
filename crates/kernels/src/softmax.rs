//! Softmax, log-softmax and log-sum-exp along one dimension of a contiguous buffer.
//!
//! A buffer of shape `[outer, n, inner]` holds `outer * inner` rows of `n` elements, `inner`
//! apart. Each row is shifted by its maximum (so `exp` never overflows), exponentiated once
//! and normalised. With `inner == 1` a row is contiguous and its loops run along it; with
//! `inner > 1` they run across the `inner` rows of a block at once. Blocks are independent,
//! so they are shared among threads without changing any result.

use crate::Real;
use crate::fast_math::Exp;
use crate::simd::{WidestLoop, run_widest};
use crate::strided::{LANES, combine_lanes, combine_lanes_with};

pub(crate) mod attention;
mod backward;
mod cross_entropy;
mod logsumexp;
pub use attention::{Keys, attention_weights, attention_weights_backward};
pub use backward::softmax_backward;
pub use cross_entropy::{CrossEntropyRows, cross_entropy, cross_entropy_backward};
pub use logsumexp::{logsumexp, logsumexp_backward};

/// Element types softmax runs on: a vectorisable `exp` and a natural logarithm (taken once
/// per row).
///
/// ```
/// use tapegrad_kernels::softmax::Softmax;
/// assert_eq!(<f64 as Softmax>::ln_of_sum(1.0), 0.0);
/// ```
pub trait Softmax: Real + Exp {
    /// `ln(self)`, for the per-row normaliser of log-softmax.
    fn ln_of_sum(self) -> Self;
}

impl Softmax for f32 {
    fn ln_of_sum(self) -> Self {
        self.ln()
    }
}

impl Softmax for f64 {
    fn ln_of_sum(self) -> Self {
        self.ln()
    }
}

/// Softmax (or, with `log`, log-softmax) of each row along the middle dimension of `x`,
/// a contiguous buffer of shape `[outer, n, inner]`. A row holding a NaN is NaN throughout,
/// as in PyTorch.
///
/// ```
/// use tapegrad_kernels::softmax::softmax;
/// // Two rows of two: [0, 0] and [ln 3, 0].
/// let y = softmax(&[0.0f64, 0.0, 3.0f64.ln(), 0.0], (2, 2, 1), false);
/// let want = [0.5, 0.5, 0.75, 0.25];
/// assert!(y.iter().zip(want).all(|(y, w)| (y - w).abs() < 1e-15));
/// let log_y = softmax(&[1.0f64, 1.0], (1, 2, 1), true);
/// assert!(log_y.iter().all(|v| (v + 2f64.ln()).abs() < 1e-15));
/// ```
///
/// # Panics
/// If `x` does not hold `outer * n * inner` elements.
pub fn softmax<T: Softmax>(x: &[T], (outer, n, inner): (usize, usize, usize), log: bool) -> Vec<T> {
    assert_eq!(
        Some(x.len()),
        outer.checked_mul(n).and_then(|v| v.checked_mul(inner)),
        "softmax: buffer size"
    );
    let block = n * inner;
    let per_task = (outer / (4 * rayon::current_num_threads())).max(1);
    crate::parallel::written_in_chunks(x.len(), block, per_task, |i, y| {
        let x = &x[i * block..(i + 1) * block];
        if inner == 1 {
            row(x, y, log);
        } else {
            across_rows(x, y, (n, inner), log);
        }
    })
}

/// The larger of two values, NaN if either is.
#[inline(always)]
fn max_nan<T: Real>(a: T, b: T) -> T {
    if b > a || b.is_nan() { b } else { a }
}

/// The largest element of a non-empty row, NaN if it holds one: in lanes, so it
/// vectorises, inlined into the caller's instruction-set copy.
#[inline(always)]
fn row_max<T: Real>(x: &[T]) -> T {
    let mut lanes = [x[0]; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for k in 0..LANES {
            lanes[k] = max_nan(lanes[k], chunk[k]);
        }
    }
    rest.iter().fold(combine_lanes_with(lanes, max_nan), |a, &b| max_nan(a, b))
}

/// One contiguous row, with the widest vectors the CPU has.
fn row<T: Softmax>(x: &[T], y: &mut [T], log: bool) {
    struct Row<'a, T>(&'a [T], &'a mut [T], bool);
    impl<T: Softmax> WidestLoop for Row<'_, T> {
        type Output = ();
        #[inline(always)]
        fn run(self) {
            row_body(self.0, self.1, self.2)
        }
    }
    run_widest(Row(x, y, log))
}

/// [`row`]'s loops, inlined into each instruction-set copy (a closure that is not inlined
/// would be compiled for the baseline only).
#[inline(always)]
fn row_body<T: Softmax>(x: &[T], y: &mut [T], log: bool) {
    let m = row_max(x);
    let rest = x.chunks_exact(LANES).remainder();
    // The exponentials and their sum in one pass, added in `lane_sum`'s order.
    let mut acc = [T::ZERO; LANES];
    let mut ys = y.chunks_exact_mut(LANES);
    for (ys, xs) in (&mut ys).zip(x.chunks_exact(LANES)) {
        for k in 0..LANES {
            ys[k] = (xs[k] - m).exp_vectorisable();
            acc[k] += ys[k];
        }
    }
    let y_rest = ys.into_remainder();
    for (d, &v) in y_rest.iter_mut().zip(rest) {
        *d = (v - m).exp_vectorisable();
    }
    let sum = y_rest.iter().fold(combine_lanes(acc), |s, &v| s + v);
    if log {
        // `(v - m) - ln(sum)`, not `v - (m + ln(sum))`: the shift is exact, and adding
        // a small logarithm to a large maximum would round it away.
        let lse = sum.ln_of_sum();
        for (d, &v) in y.iter_mut().zip(x) {
            *d = (v - m) - lse;
        }
    } else {
        let inv = T::ONE / sum;
        y.iter_mut().for_each(|d| *d = *d * inv);
    }
}

/// `inner` rows of `n` elements, `inner` apart, processed side by side.
fn across_rows<T: Softmax>(x: &[T], y: &mut [T], sizes: (usize, usize), log: bool) {
    struct AcrossRows<'a, T>(&'a [T], &'a mut [T], (usize, usize), bool);
    impl<T: Softmax> WidestLoop for AcrossRows<'_, T> {
        type Output = ();
        #[inline(always)]
        fn run(self) {
            across_rows_body(self.0, self.1, self.2, self.3)
        }
    }
    run_widest(AcrossRows(x, y, sizes, log))
}

/// [`across_rows`]' loops (see [`row_body`]).
#[inline(always)]
fn across_rows_body<T: Softmax>(x: &[T], y: &mut [T], (n, inner): (usize, usize), log: bool) {
    let mut m = x[..inner].to_vec();
    for j in 1..n {
        for (m, &v) in m.iter_mut().zip(&x[j * inner..(j + 1) * inner]) {
            *m = max_nan(*m, v);
        }
    }
    let mut sum = vec![T::ZERO; inner];
    for j in 0..n {
        let (xs, ys) = (&x[j * inner..(j + 1) * inner], &mut y[j * inner..(j + 1) * inner]);
        for (((d, &v), &m), s) in ys.iter_mut().zip(xs).zip(&m).zip(sum.iter_mut()) {
            *d = (v - m).exp_vectorisable();
            *s += *d;
        }
    }
    if log {
        let lse: Vec<T> = sum.iter().map(|&s| s.ln_of_sum()).collect();
        for j in 0..n {
            let (xs, ys) = (&x[j * inner..(j + 1) * inner], &mut y[j * inner..(j + 1) * inner]);
            for (((d, &v), &m), &c) in ys.iter_mut().zip(xs).zip(&m).zip(&lse) {
                *d = (v - m) - c;
            }
        }
    } else {
        let inv: Vec<T> = sum.iter().map(|&s| T::ONE / s).collect();
        for ys in y.chunks_exact_mut(inner) {
            for (d, &i) in ys.iter_mut().zip(&inv) {
                *d = *d * i;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::softmax;

    /// The definition, in f64, one row at a time.
    fn reference(x: &[f64], (outer, n, inner): (usize, usize, usize), log: bool) -> Vec<f64> {
        let mut out = vec![0.0; x.len()];
        for o in 0..outer {
            for i in 0..inner {
                let at = |j: usize| (o * n + j) * inner + i;
                let m = (0..n).map(|j| x[at(j)]).fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = (0..n).map(|j| (x[at(j)] - m).exp()).sum();
                for j in 0..n {
                    let v = x[at(j)] - m;
                    out[at(j)] = if log { v - sum.ln() } else { v.exp() / sum };
                }
            }
        }
        out
    }

    #[test]
    fn rows_and_columns_match_the_definition_serial_and_threaded() {
        for (outer, n, inner) in
            [(1, 1, 1), (3, 17, 1), (2, 5, 7), (700, 100, 1), (40, 30, 60), (1, 40, 3)]
        {
            let x: Vec<f64> =
                (0..outer * n * inner).map(|i| ((i * 7919 % 1000) as f64 - 500.0) * 0.02).collect();
            for log in [false, true] {
                let want = reference(&x, (outer, n, inner), log);
                let got = softmax(&x, (outer, n, inner), log);
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-13 * (1.0 + w.abs()),
                        "{outer}x{n}x{inner} log={log}: {g} vs {w}"
                    );
                }
                let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
                let got = softmax(&x32, (outer, n, inner), log);
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (*g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()),
                        "f32 {outer}x{n}x{inner}: {g} vs {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_nan_poisons_its_row_only_and_infinities_are_handled() {
        let y = softmax(&[1.0f32, f32::NAN, 2.0, 0.0, 0.0, 0.0], (2, 3, 1), false);
        assert!(y[..3].iter().all(|v| v.is_nan()));
        assert!(y[3..].iter().all(|&v| (v - 1.0 / 3.0).abs() < 1e-7));
        let y = softmax(&[f32::NEG_INFINITY, 0.0], (1, 2, 1), false);
        assert_eq!(y, vec![0.0, 1.0]);
        let y = softmax(&[f32::NEG_INFINITY, 0.0], (1, 2, 1), true);
        assert_eq!(y, vec![f32::NEG_INFINITY, 0.0]);
        // Large logits: the log-softmax of two equal maxima is -ln 2 to f32 precision.
        for inner in [1, 2] {
            let x: Vec<f32> = [1e4f32, 1e4, -1e4].iter().flat_map(|&v| vec![v; inner]).collect();
            let y = softmax(&x, (1, 3, inner), true);
            assert!(
                (y[0] as f64 + 2f64.ln()).abs() < 1e-6 && y[2 * inner] == -2e4 - 2f32.ln(),
                "{y:?}"
            );
        }
        let y = softmax(&[f64::NAN, 1.0, 1.0, 1.0], (1, 2, 2), false);
        assert!(y[0].is_nan() && y[2].is_nan() && y[1] == 0.5 && y[3] == 0.5);
    }
}
