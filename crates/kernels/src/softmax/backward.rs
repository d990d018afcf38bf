//! The gradient of softmax and log-softmax from their output, one pass over each row (the
//! composed form, a reduction and two or three elementwise operations over the whole
//! tensor, reads and writes it four times):
//!
//! ```text
//! softmax:      dx = y (g - Σ g y)
//! log-softmax:  dx = g - e^y Σ g
//! ```

use super::Softmax;
use crate::simd::{WidestLoop, run_widest};
use crate::strided::{LANES, combine_lanes};

/// The gradient of the input of `softmax` (or, with `log`, log-softmax) along the middle
/// dimension of `[outer, n, inner]`, from its output `y` and the output's gradient `g`
/// (contiguous buffers of that shape).
///
/// ```
/// use tapegrad_kernels::softmax::{softmax, softmax_backward};
/// // Softmax of [0, 0] is [1/2, 1/2]; a gradient [1, 0] gives [1/4, -1/4].
/// let y = softmax(&[0.0f64, 0.0], (1, 2, 1), false);
/// assert_eq!(softmax_backward(&y, &[1.0, 0.0], (1, 2, 1), false), vec![0.25, -0.25]);
/// // Log-softmax: g - softmax * Σ g.
/// let log_y = softmax(&[0.0f64, 0.0], (1, 2, 1), true);
/// assert_eq!(softmax_backward(&log_y, &[1.0, 0.0], (1, 2, 1), true), vec![0.5, -0.5]);
/// ```
///
/// # Panics
/// If `y` or `g` does not hold `outer * n * inner` elements.
pub fn softmax_backward<T: Softmax>(
    y: &[T],
    g: &[T],
    (outer, n, inner): (usize, usize, usize),
    log: bool,
) -> Vec<T> {
    let len = outer.checked_mul(n).and_then(|v| v.checked_mul(inner));
    assert!(len == Some(y.len()) && y.len() == g.len(), "softmax_backward: buffer sizes");
    let block = n * inner;
    let per_task = (outer / (4 * rayon::current_num_threads())).max(1);
    crate::parallel::written_in_chunks(y.len(), block, per_task, |i, dx| {
        let at = i * block..(i + 1) * block;
        run_widest(Block { y: &y[at.clone()], g: &g[at], dx, inner, log });
    })
}

/// One block `[n, inner]`: `inner` rows of `n` elements, `inner` apart.
struct Block<'a, T> {
    y: &'a [T],
    g: &'a [T],
    dx: &'a mut [T],
    inner: usize,
    log: bool,
}

impl<T: Softmax> WidestLoop for Block<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let Block { y, g, dx, inner, log } = self;
        if inner == 1 {
            row(y, g, dx, log);
        } else {
            across_rows(y, g, dx, inner, log);
        }
    }
}

/// One contiguous row.
#[inline(always)]
fn row<T: Softmax>(y: &[T], g: &[T], dx: &mut [T], log: bool) {
    let n = y.len();
    let (g, dx) = (&g[..n], &mut dx[..n]);
    // Σ g (log-softmax) or Σ g y (softmax), in sixteen running sums so it vectorises.
    let mut acc = [T::ZERO; LANES];
    let whole = n / LANES * LANES;
    for (ys, gs) in y[..whole].chunks_exact(LANES).zip(g[..whole].chunks_exact(LANES)) {
        for k in 0..LANES {
            acc[k] += if log { gs[k] } else { gs[k] * ys[k] };
        }
    }
    let mut s = combine_lanes(acc);
    for k in whole..n {
        s += if log { g[k] } else { g[k] * y[k] };
    }
    if log {
        for k in 0..n {
            dx[k] = g[k] - y[k].exp_vectorisable() * s;
        }
    } else {
        for k in 0..n {
            dx[k] = y[k] * (g[k] - s);
        }
    }
}

/// `inner` rows side by side (the reduced dimension is not the last).
#[inline(always)]
fn across_rows<T: Softmax>(y: &[T], g: &[T], dx: &mut [T], inner: usize, log: bool) {
    let mut sums = vec![T::ZERO; inner];
    for (ys, gs) in y.chunks_exact(inner).zip(g.chunks_exact(inner)) {
        for ((s, &y), &g) in sums.iter_mut().zip(ys).zip(gs) {
            *s += if log { g } else { g * y };
        }
    }
    for ((d, ys), gs) in
        dx.chunks_exact_mut(inner).zip(y.chunks_exact(inner)).zip(g.chunks_exact(inner))
    {
        for (((d, &y), &g), &s) in d.iter_mut().zip(ys).zip(gs).zip(&sums) {
            *d = if log { g - y.exp_vectorisable() * s } else { y * (g - s) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::softmax_backward;
    use crate::softmax::softmax;

    /// The composed form, in f64.
    fn reference(
        y: &[f64],
        g: &[f64],
        (outer, n, inner): (usize, usize, usize),
        log: bool,
    ) -> Vec<f64> {
        let mut dx = vec![0.0; y.len()];
        for o in 0..outer {
            for i in 0..inner {
                let at = |j: usize| (o * n + j) * inner + i;
                let s: f64 = (0..n).map(|j| if log { g[at(j)] } else { g[at(j)] * y[at(j)] }).sum();
                for j in 0..n {
                    let k = at(j);
                    dx[k] = if log { g[k] - y[k].exp() * s } else { y[k] * (g[k] - s) };
                }
            }
        }
        dx
    }

    #[test]
    fn matches_the_composed_form_along_any_dimension() {
        for &(outer, n, inner) in &[(3, 37, 1), (2, 5, 3), (1, 1, 1), (64, 40, 1), (4, 17, 8)] {
            let len = outer * n * inner;
            let x: Vec<f64> = (0..len).map(|i| ((i * 7919 % 1000) as f64 / 300.0) - 1.5).collect();
            let g: Vec<f64> =
                (0..len).map(|i| ((i * 104_729 % 1000) as f64 / 500.0) - 1.0).collect();
            for log in [false, true] {
                let y = softmax(&x, (outer, n, inner), log);
                let got = softmax_backward(&y, &g, (outer, n, inner), log);
                let want = reference(&y, &g, (outer, n, inner), log);
                for (a, b) in got.iter().zip(&want) {
                    assert!(
                        (a - b).abs() < 1e-13,
                        "{a} vs {b} for {:?}, log {log}",
                        (outer, n, inner)
                    );
                }
            }
        }
    }
}
