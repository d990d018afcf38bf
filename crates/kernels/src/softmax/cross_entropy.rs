//! Cross-entropy of contiguous rows of logits against one class each, one pass over a row
//! each way:
//!
//! ```text
//! loss = ln Σ e^(x - m) - (x_t - m)          (m the row's maximum: -log_softmax(x)_t)
//! dx   = c (e^((x - m) - ln Σ) - [j = t])    (c: the loss's gradient times the row's weight)
//! ```
//!
//! The composed form (log-softmax, then picking the target's entry) writes the whole
//! log-softmax forward, and its gradient is a tensor of zeros with one entry per row, then
//! log-softmax's backward over it: four passes over the logits' size where these take two.
//! The loss is the negated log-softmax entry bit for bit: the same maximum, the same sum in
//! the same order, `(x_t - m) - ln Σ` negated (so a zero loss is `-0.0`, as there).

use rayon::prelude::*;

use super::{Softmax, row_max};
use crate::parallel::start_parallel;
use crate::simd::{WidestLoop, run_widest};
use crate::strided::{LANES, combine_lanes};

/// What [`cross_entropy`] computes for each row: the loss, and the row's maximum and log
/// of the sum of exponentials, which its gradient reads again.
///
/// ```
/// use tapegrad_kernels::softmax::cross_entropy;
/// let rows = cross_entropy(&[1.0f32, 1.0], 2, &[0]);
/// assert_eq!((rows.maxima[0], rows.log_sums[0]), (1.0, 2f32.ln()));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct CrossEntropyRows<T> {
    /// `-((x_t - m) - ln Σ e^(x - m))` per row.
    pub losses: Vec<T>,
    /// `m`, each row's maximum (NaN if the row holds one).
    pub maxima: Vec<T>,
    /// `ln Σ e^(x - m)` per row.
    pub log_sums: Vec<T>,
}

/// The cross-entropy of each row of `x` (`rows x n`, contiguous, `n >= 1`) against its
/// class `targets[r]`: `-log_softmax(x)[r, targets[r]]`, computed as log-softmax computes
/// it (a row holding a NaN gives NaN).
///
/// ```
/// use tapegrad_kernels::softmax::cross_entropy;
/// // Rows [0, 0] against class 1 and [ln 3, 0] against class 0: ln 2 and ln(4/3).
/// let rows = cross_entropy(&[0.0f64, 0.0, 3f64.ln(), 0.0], 2, &[1, 0]);
/// assert!((rows.losses[0] - 2f64.ln()).abs() < 1e-15);
/// assert!((rows.losses[1] - (4.0f64 / 3.0).ln()).abs() < 1e-15);
/// ```
///
/// # Panics
/// If `n` is 0, `x` is not whole rows, `targets` does not hold one class per row, or a
/// class is not below `n`.
pub fn cross_entropy<T: Softmax>(x: &[T], n: usize, targets: &[usize]) -> CrossEntropyRows<T> {
    let rows = check_rows("cross_entropy", x.len(), n, targets);
    let normaliser = |row: &[T]| run_widest(Normaliser(row));
    let stats: Vec<(T, T)> = if rows > 1 && start_parallel(x.len()) {
        let per_task = (rows / (4 * rayon::current_num_threads())).max(1);
        x.par_chunks(n).with_min_len(per_task).map(normaliser).collect()
    } else {
        x.chunks(n).map(normaliser).collect()
    };
    let losses = (stats.iter().zip(x.chunks(n)).zip(targets))
        .map(|((&(m, log_sum), row), &t)| -((row[t] - m) - log_sum))
        .collect();
    let (maxima, log_sums) = stats.into_iter().unzip();
    CrossEntropyRows { losses, maxima, log_sums }
}

/// The gradient of the logits `x` (`rows x n`) of [`cross_entropy`], from its per-row
/// `maxima` and `log_sums` and `scale[r]`, the gradient of row `r`'s loss (times any weight
/// the row's loss was multiplied by): `scale[r] (softmax(x)[r] - onehot(targets[r]))`.
///
/// ```
/// use tapegrad_kernels::softmax::{cross_entropy, cross_entropy_backward};
/// // softmax([0, 0]) = [1/2, 1/2]; against class 1, times 2: [1, -1].
/// let x = [0.0f64, 0.0];
/// let rows = cross_entropy(&x, 2, &[1]);
/// let dx = cross_entropy_backward(&x, 2, &[1], &rows.maxima, &rows.log_sums, &[2.0]);
/// assert_eq!(dx, vec![1.0, -1.0]);
/// ```
///
/// # Panics
/// If the sizes disagree as in [`cross_entropy`], or the per-row buffers do not hold one
/// value per row.
pub fn cross_entropy_backward<T: Softmax>(
    x: &[T],
    n: usize,
    targets: &[usize],
    maxima: &[T],
    log_sums: &[T],
    scale: &[T],
) -> Vec<T> {
    let rows = check_rows("cross_entropy_backward", x.len(), n, targets);
    assert!(
        maxima.len() == rows && log_sums.len() == rows && scale.len() == rows,
        "cross_entropy_backward: {rows} rows, per-row buffers of {}, {} and {}",
        maxima.len(),
        log_sums.len(),
        scale.len()
    );
    let per_task = (rows / (4 * rayon::current_num_threads())).max(1);
    crate::parallel::written_in_chunks(x.len(), n, per_task, |r, dx| {
        let x = &x[r * n..(r + 1) * n];
        run_widest(Spread { x, dx, m: maxima[r], log_sum: log_sums[r], scale: scale[r] });
        dx[targets[r]] = dx[targets[r]] - scale[r];
    })
}

/// The number of rows, after checking the sizes and the classes.
fn check_rows(op: &str, len: usize, n: usize, targets: &[usize]) -> usize {
    assert!(n > 0 && len.is_multiple_of(n), "{op}: {len} logits are not rows of {n}");
    let rows = len / n;
    assert_eq!(targets.len(), rows, "{op}: {} targets for {rows} rows", targets.len());
    if let Some((r, t)) = targets.iter().enumerate().find(|(_, t)| **t >= n) {
        panic!("{op}: row {r}'s class {t} is not below {n}");
    }
    rows
}

/// A row's maximum and `ln Σ e^(x - m)`, in log-softmax's order of operations.
struct Normaliser<'a, T>(&'a [T]);

impl<T: Softmax> WidestLoop for Normaliser<'_, T> {
    type Output = (T, T);

    #[inline(always)]
    fn run(self) -> (T, T) {
        let x = self.0;
        let m = row_max(x);
        let rest = x.chunks_exact(LANES).remainder();
        let mut acc = [T::ZERO; LANES];
        for xs in x.chunks_exact(LANES) {
            for k in 0..LANES {
                acc[k] += (xs[k] - m).exp_vectorisable();
            }
        }
        let sum = rest.iter().fold(combine_lanes(acc), |s, &v| s + (v - m).exp_vectorisable());
        (m, sum.ln_of_sum())
    }
}

/// `dx = scale e^((x - m) - ln Σ)` over one row (the target's entry is corrected after).
struct Spread<'a, T> {
    x: &'a [T],
    dx: &'a mut [T],
    m: T,
    log_sum: T,
    scale: T,
}

impl<T: Softmax> WidestLoop for Spread<'_, T> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Spread { x, dx, m, log_sum, scale } = self;
        for (d, &v) in dx.iter_mut().zip(x) {
            *d = scale * ((v - m) - log_sum).exp_vectorisable();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::softmax::softmax;

    /// The loss is log-softmax's entry negated, bit for bit, and the gradient matches the
    /// composed form in f64, for rows shorter and longer than a vector, at one thread's size
    /// and at a size shared among threads.
    #[test]
    fn rows_match_log_softmax_and_its_gradient() {
        let mut next = crate::testing::uniform(3);
        for (rows, n) in [(1usize, 1usize), (3, 5), (7, 16), (5, 37), (2000, 100)] {
            let x: Vec<f64> = (0..rows * n).map(|_| 8.0 * next()).collect();
            let targets: Vec<usize> = (0..rows).map(|r| (r * 7 + 3) % n).collect();
            let scale: Vec<f64> = (0..rows).map(|_| next()).collect();
            let got = cross_entropy(&x, n, &targets);
            let log_y = softmax(&x, (rows, n, 1), true);
            for r in 0..rows {
                assert_eq!(got.losses[r].to_bits(), (-log_y[r * n + targets[r]]).to_bits());
            }
            let dx = cross_entropy_backward(&x, n, &targets, &got.maxima, &got.log_sums, &scale);
            for r in 0..rows {
                for j in 0..n {
                    let p = log_y[r * n + j].exp();
                    let want = scale[r] * (p - if j == targets[r] { 1.0 } else { 0.0 });
                    let at = r * n + j;
                    assert!((dx[at] - want).abs() < 1e-14, "({rows}x{n}) [{r}][{j}]: {}", dx[at]);
                }
            }
            let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let got = cross_entropy(&x32, n, &targets);
            let log_y = softmax(&x32, (rows, n, 1), true);
            for r in 0..rows {
                assert_eq!(got.losses[r].to_bits(), (-log_y[r * n + targets[r]]).to_bits());
            }
        }
    }

    #[test]
    #[should_panic(expected = "row 1's class 4 is not below 4")]
    fn a_class_past_the_row_is_refused() {
        cross_entropy(&[0.0f32; 8], 4, &[0, 4]);
    }
}
