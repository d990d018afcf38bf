//! Attention weights from attention scores in one pass over each row each way: the scale,
//! the mask and the softmax together,
//!
//! ```text
//! y  = softmax(x scale + a) over the keys a row may see, 0 at the others (a: a float mask)
//! dx = scale y (g - Σ g y)
//! ```
//!
//! Composed of recorded operations, a mask is a `where` or an addition over the scores and
//! another pass over their gradient, and the scale a pass of its own each way: six passes
//! over the `[..., L, S]` scores besides the softmax's two. A masked key's weight is zero,
//! so the gradient needs no mask: `y` carries it.

use super::{Softmax, row_max};
use crate::simd::{WidestLoop, run_widest};
use crate::strided::{LANES, combine_lanes};

/// Which keys each row of scores may attend to, and what is added to the scaled scores.
///
/// ```
/// use tapegrad_kernels::softmax::{Keys, attention_weights};
/// // Two queries over two keys, causal: the first sees only the first key.
/// let y = attention_weights(&[0.0f32, 5.0, 0.0, 0.0], 2, 1.0, &Keys::Causal { queries: 2 });
/// assert_eq!(y, vec![1.0, 0.0, 0.5, 0.5]);
/// ```
#[derive(Clone, Copy, Debug)]
pub enum Keys<'a, T> {
    /// Every key.
    All,
    /// Query `i` of each `[queries, S]` matrix sees keys `0..=i` (PyTorch's `is_causal`,
    /// aligned to the top left).
    Causal {
        /// Rows of one matrix (`L`).
        queries: usize,
    },
    /// Row `r` sees key `j` where `mask[starts[r] + j]` is true. A row that sees no key
    /// (or only scores of `-inf`) gets zero weights, not NaN.
    Masked {
        /// The mask's elements.
        mask: &'a [bool],
        /// Where each row's `S` mask entries start in `mask`.
        starts: &'a [usize],
    },
    /// Row `r` adds `mask[starts[r] + j]` to key `j`'s scaled score (`-inf` hides a key).
    /// A row whose every sum is `-inf` gets zero weights, not NaN.
    Added {
        /// The mask's elements.
        mask: &'a [T],
        /// Where each row's `S` mask entries start in `mask`.
        starts: &'a [usize],
    },
}

/// The attention weights of rows of `keys` scores (`x`, contiguous, whole rows):
/// `softmax(x scale)` over the keys each row may see, zero at the others. A NaN among a
/// row's visible scores makes the row NaN, as softmax's does (a causal row's hidden keys
/// stay zero).
///
/// ```
/// use tapegrad_kernels::softmax::{Keys, attention_weights};
/// let mask = [true, false, false, false];
/// // Row 0 sees key 0 only; row 1 sees nothing and gets zeros.
/// let y = attention_weights(&[1.0f64, 2.0, 3.0, 4.0], 2, 0.5, &Keys::Masked { mask: &mask, starts: &[0, 2] });
/// assert_eq!(y, vec![1.0, 0.0, 0.0, 0.0]);
/// ```
///
/// # Panics
/// If `x` is not whole rows of `keys` (with `keys > 0`), or a mask does not cover each
/// row.
pub fn attention_weights<T: Softmax>(
    x: &[T],
    keys: usize,
    scale: T,
    visible: &Keys<'_, T>,
) -> Vec<T> {
    if x.is_empty() {
        return Vec::new();
    }
    assert!(
        keys > 0 && x.len().is_multiple_of(keys),
        "attention_weights: {} is not rows of {keys}",
        x.len()
    );
    let rows = x.len() / keys;
    let covered = |starts: &[usize], len: usize| {
        assert!(
            starts.len() == rows && starts.iter().all(|&s| s + keys <= len),
            "attention_weights: the mask does not cover the rows"
        )
    };
    match *visible {
        Keys::Causal { queries } => assert!(queries > 0, "attention_weights: no queries"),
        Keys::Masked { mask, starts } => covered(starts, mask.len()),
        Keys::Added { mask, starts } => covered(starts, mask.len()),
        Keys::All => {}
    }
    let per_task = (rows / (4 * rayon::current_num_threads())).max(1);
    crate::parallel::written_in_chunks(x.len(), keys, per_task, |r, y| {
        let x = &x[r * keys..(r + 1) * keys];
        match *visible {
            Keys::All => run_widest(Row { x, y, scale, mask: RowMask::None }),
            Keys::Causal { queries } => {
                let seen = (r % queries + 1).min(keys);
                run_widest(Row { x: &x[..seen], y: &mut y[..seen], scale, mask: RowMask::None })
            }
            Keys::Masked { mask, starts } => {
                let mask = RowMask::Bits(&mask[starts[r]..starts[r] + keys]);
                run_widest(Row { x, y, scale, mask })
            }
            Keys::Added { mask, starts } => {
                let mask = RowMask::Added(&mask[starts[r]..starts[r] + keys]);
                run_widest(Row { x, y, scale, mask })
            }
        }
    })
}

/// The gradient of [`attention_weights`]' input from its output `y` and the output's
/// gradient `g` (rows of `keys`, contiguous): `scale y (g - Σ g y)` per row.
///
/// ```
/// use tapegrad_kernels::softmax::{Keys, attention_weights, attention_weights_backward};
/// let y = attention_weights(&[0.0f64, 0.0], 2, 2.0, &Keys::All);
/// assert_eq!(attention_weights_backward(&y, &[1.0, 0.0], 2, 2.0), vec![0.5, -0.5]);
/// ```
///
/// # Panics
/// If `y` and `g` differ in length or are not whole rows of `keys`.
pub fn attention_weights_backward<T: Softmax>(y: &[T], g: &[T], keys: usize, scale: T) -> Vec<T> {
    assert_eq!(y.len(), g.len(), "attention_weights_backward: buffer sizes");
    if y.is_empty() {
        return Vec::new();
    }
    assert!(keys > 0 && y.len().is_multiple_of(keys), "attention_weights_backward: not whole rows");
    let per_task = (y.len() / keys / (4 * rayon::current_num_threads())).max(1);
    crate::parallel::written_in_chunks(y.len(), keys, per_task, |r, dx| {
        let at = r * keys..(r + 1) * keys;
        run_widest(RowGrad { y: &y[at.clone()], g: &g[at], dx, scale })
    })
}

/// One row's mask.
enum RowMask<'a, T> {
    None,
    Bits(&'a [bool]),
    Added(&'a [T]),
}

/// One row forward: the scaled scores (`-inf` where masked) written into `y`, then the
/// softmax in place.
struct Row<'a, T> {
    x: &'a [T],
    y: &'a mut [T],
    scale: T,
    mask: RowMask<'a, T>,
}

impl<T: Softmax> WidestLoop for Row<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let Row { x, y, scale, mask } = self;
        let hidden = T::round_from(f64::NEG_INFINITY);
        let may_be_empty = match mask {
            RowMask::None => {
                y.iter_mut().zip(x).for_each(|(y, &x)| *y = x * scale);
                false
            }
            RowMask::Bits(mask) => {
                let each = y.iter_mut().zip(x).zip(mask);
                each.for_each(|((y, &x), &m)| *y = if m { x * scale } else { hidden });
                true
            }
            RowMask::Added(mask) => {
                let each = y.iter_mut().zip(x).zip(mask);
                each.for_each(|((y, &x), &a)| *y = x * scale + a);
                true
            }
        };
        normalise(y, may_be_empty);
    }
}

/// Softmax of a row in place, its maximum subtracted; with `may_be_empty`, a row whose
/// maximum is `-inf` (nothing to attend to) becomes zeros.
#[inline(always)]
fn normalise<T: Softmax>(y: &mut [T], may_be_empty: bool) {
    let m = row_max(y);
    if may_be_empty && m == T::round_from(f64::NEG_INFINITY) {
        // Nothing to attend to: zero weights (PyTorch's result for such rows).
        y.fill(T::ZERO);
        return;
    }
    let mut acc = [T::ZERO; LANES];
    let mut chunks = y.chunks_exact_mut(LANES);
    for ys in &mut chunks {
        for k in 0..LANES {
            ys[k] = (ys[k] - m).exp_vectorisable();
            acc[k] += ys[k];
        }
    }
    let rest = chunks.into_remainder();
    for v in rest.iter_mut() {
        *v = (*v - m).exp_vectorisable();
    }
    let sum = rest.iter().fold(combine_lanes(acc), |s, &v| s + v);
    let inv = T::ONE / sum;
    y.iter_mut().for_each(|v| *v = *v * inv);
}

/// The weights of one row of scores in place: `softmax(y scale)`, inlined into the
/// caller's instruction-set copy.
#[inline(always)]
pub(crate) fn weights_in_place<T: Softmax>(y: &mut [T], scale: T) {
    y.iter_mut().for_each(|v| *v = *v * scale);
    normalise(y, false);
}

/// The weights of row `row` of `visible`'s scores in place, for its first `y.len()` keys:
/// the scaled scores masked (a bool mask) or with the mask added, then the softmax, zeros
/// where the row sees nothing. The causal mask is the caller's: it passes the keys the row
/// sees.
#[inline(always)]
pub(crate) fn masked_weights_in_place<T: Softmax>(
    y: &mut [T],
    scale: T,
    visible: &Keys<'_, T>,
    row: usize,
) {
    let keys = y.len();
    match *visible {
        Keys::All | Keys::Causal { .. } => return weights_in_place(y, scale),
        Keys::Masked { mask, starts } => {
            let hidden = T::round_from(f64::NEG_INFINITY);
            let mask = &mask[starts[row]..starts[row] + keys];
            y.iter_mut().zip(mask).for_each(|(y, &m)| *y = if m { *y * scale } else { hidden });
        }
        Keys::Added { mask, starts } => {
            let mask = &mask[starts[row]..starts[row] + keys];
            y.iter_mut().zip(mask).for_each(|(y, &a)| *y = *y * scale + a);
        }
    }
    normalise(y, true);
}

/// The gradient of one row's scores in place of the weights' gradient `g`:
/// `scale y (g - Σ g y)`, inlined into the caller's instruction-set copy.
#[inline(always)]
pub(crate) fn weights_grad_in_place<T: Softmax>(y: &[T], g: &mut [T], scale: T) {
    let s = dot(y, g);
    for (g, &y) in g.iter_mut().zip(y) {
        *g = y * (*g - s) * scale;
    }
}

/// `Σ g y` in sixteen running sums, so it vectorises.
#[inline(always)]
fn dot<T: Softmax>(y: &[T], g: &[T]) -> T {
    let n = y.len();
    let mut acc = [T::ZERO; LANES];
    let whole = n / LANES * LANES;
    for (ys, gs) in y[..whole].chunks_exact(LANES).zip(g[..whole].chunks_exact(LANES)) {
        for k in 0..LANES {
            acc[k] += gs[k] * ys[k];
        }
    }
    let mut s = combine_lanes(acc);
    for k in whole..n {
        s += g[k] * y[k];
    }
    s
}

/// One row of the gradient.
struct RowGrad<'a, T> {
    y: &'a [T],
    g: &'a [T],
    dx: &'a mut [T],
    scale: T,
}

impl<T: Softmax> WidestLoop for RowGrad<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let RowGrad { y, g, dx, scale } = self;
        let n = y.len();
        let (g, dx) = (&g[..n], &mut dx[..n]);
        let s = dot(y, g);
        // The softmax's gradient, then the scale's: the order of the composed form.
        for k in 0..n {
            dx[k] = y[k] * (g[k] - s) * scale;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Keys, attention_weights, attention_weights_backward};
    use crate::softmax::{softmax, softmax_backward};

    fn scores(n: usize) -> Vec<f64> {
        (0..n).map(|i| ((i * 7919 % 1000) as f64 - 500.0) * 0.013).collect()
    }

    #[test]
    fn unmasked_rows_are_softmax_of_the_scaled_scores_bit_for_bit() {
        for (rows, keys) in [(1, 1), (3, 17), (64, 128), (700, 33)] {
            let x = scores(rows * keys);
            let scale = 0.3;
            let scaled: Vec<f64> = x.iter().map(|v| v * scale).collect();
            let want = softmax(&scaled, (rows, keys, 1), false);
            assert_eq!(attention_weights(&x, keys, scale, &Keys::All), want);
            let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let s32: Vec<f32> = x32.iter().map(|v| v * 0.3f32).collect();
            let want32 = softmax(&s32, (rows, keys, 1), false);
            let y = attention_weights(&x32, keys, 0.3f32, &Keys::All);
            assert_eq!(y, want32);
            let g: Vec<f32> = scores(rows * keys).iter().rev().map(|&v| v as f32).collect();
            let dx: Vec<f32> = softmax_backward(&y, &g, (rows, keys, 1), false)
                .iter()
                .map(|d| d * 0.3f32)
                .collect();
            assert_eq!(attention_weights_backward(&y, &g, keys, 0.3f32), dx);
        }
    }

    #[test]
    fn causal_rows_see_keys_up_to_their_own_position() {
        let (queries, keys, batches) = (5, 3, 2);
        let x = scores(batches * queries * keys);
        let y = attention_weights(&x, keys, 1.0, &Keys::Causal { queries });
        for r in 0..batches * queries {
            let seen = (r % queries + 1).min(keys);
            let row = &x[r * keys..r * keys + seen];
            let want = softmax(row, (1, seen, 1), false);
            assert_eq!(&y[r * keys..r * keys + seen], &want[..], "row {r}");
            assert!(y[r * keys + seen..(r + 1) * keys].iter().all(|&v| v == 0.0));
        }
    }

    #[test]
    fn masked_keys_get_zero_weight_and_empty_rows_zeros() {
        let keys = 4;
        let x = vec![1.0f64, 2.0, 3.0, 4.0, 1.0, f64::NEG_INFINITY, 0.0, 0.0, 5.0, 5.0, 5.0, 5.0];
        let mask = [true, false, true, false, false, true, false, false];
        // Rows 0 and 2 share the first mask row; row 1's one visible score is -inf.
        let y = attention_weights(&x, keys, 2.0, &Keys::Masked { mask: &mask, starts: &[0, 4, 0] });
        let pair = softmax(&[2.0f64, 6.0], (1, 2, 1), false);
        assert_eq!(&y[..4], &[pair[0], 0.0, pair[1], 0.0]);
        assert_eq!(&y[4..8], &[0.0; 4]);
        assert_eq!(&y[8..], &[0.5, 0.0, 0.5, 0.0]);
        // A hidden NaN does nothing; a visible one makes its row NaN.
        let y = attention_weights(
            &[f64::NAN, 1.0, 1.0, f64::NAN],
            2,
            1.0,
            &Keys::Masked { mask: &[false, true], starts: &[0, 0] },
        );
        assert_eq!(y[..2], [0.0, 1.0]);
        assert!(y[2..].iter().all(|v| v.is_nan()));
        let y = attention_weights(
            &[1.0, f64::NAN, f64::NAN, 1.0],
            2,
            1.0,
            &Keys::Causal { queries: 2 },
        );
        assert_eq!(y[..2], [1.0, 0.0]);
        assert!(y[2..].iter().all(|v| v.is_nan()));
    }

    #[test]
    fn an_added_mask_is_added_to_the_scaled_scores() {
        let x = [1.0f64, 2.0, 3.0, 0.0, 0.0, 0.0];
        let added = [0.5, f64::NEG_INFINITY, -1.0, f64::NEG_INFINITY, f64::NEG_INFINITY, 0.0];
        let mask = Keys::Added { mask: &added, starts: &[0, 3] };
        let y = attention_weights(&x, 3, 2.0, &mask);
        let want = softmax(&[2.0f64 + 0.5, f64::NEG_INFINITY, 6.0 - 1.0], (1, 3, 1), false);
        assert_eq!(&y[..3], &want[..]);
        assert_eq!(&y[3..], &[0.0, 0.0, 1.0]);
        // One key left visible takes all the weight; none left: zeros.
        let y =
            attention_weights(&x[..3], 3, 1.0, &Keys::Added { mask: &added[3..], starts: &[0] });
        assert_eq!(y, [0.0, 0.0, 1.0]);
        let hidden = [f64::NEG_INFINITY; 3];
        let y = attention_weights(&x[..3], 3, 1.0, &Keys::Added { mask: &hidden, starts: &[0] });
        assert_eq!(y, [0.0; 3]);
    }
}
