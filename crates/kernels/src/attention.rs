//! Scaled dot-product attention in blocks of queries, without a mask, with the causal one,
//! or with a bool or float mask given per row of scores:
//!
//! ```text
//! forward, per block of queries Q_b:   S = Q_b Kᵀ,  P = softmax(S scale),  O_b = P V
//! backward, per block:  dP = dO_b Vᵀ,  dS = scale P (dP - Σ dP P),
//!                       dQ_b = dS K,  dK += dSᵀ Q_b,  dV += Pᵀ dO_b
//! ```
//!
//! A block's scores live in a buffer the size of the block's rows (in cache) between its
//! products, where the op-by-op form writes the whole `[L, S]` scores, weights, their
//! gradients and the scores' gradients to memory and reads each back. Under the causal
//! mask a block multiplies only the keys its last query sees, about half the products.
//! The weights are written once, for the backward, when it will be needed; a masked key's
//! weight is zero, so the backward needs no mask (a float mask gets no gradient here).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::Float;
use crate::gemm::{View, gemm_serial};
use crate::parallel::cleared;
use crate::simd::{WidestLoop, run_widest};
use crate::softmax::Keys;
use crate::softmax::attention::{masked_weights_in_place, weights_grad_in_place};

/// Queries per block: a block's scores (`QUERIES x S`) stay in L2 up to a few thousand keys.
const QUERIES: usize = 64;

/// One operand of the attention, `items` matrices of `rows x cols` elements at
/// `offsets[i] + r * rs + c * cs` in `data` (a strided view, read where it lies).
///
/// ```
/// use tapegrad_kernels::attention::Operand;
/// // Two contiguous 3 x 2 matrices.
/// let data = [0.0f32; 12];
/// let q = Operand { data: &data, offsets: &[0, 6], rows: 3, cols: 2, rs: 2, cs: 1 };
/// assert_eq!(q.view(1).offset, 6);
/// ```
#[derive(Clone, Copy)]
pub struct Operand<'a, T> {
    /// The elements.
    pub data: &'a [T],
    /// Where each matrix's element (0, 0) lies.
    pub offsets: &'a [usize],
    /// Rows of each matrix.
    pub rows: usize,
    /// Columns of each matrix.
    pub cols: usize,
    /// Row stride.
    pub rs: usize,
    /// Column stride.
    pub cs: usize,
}

impl<'a, T> Operand<'a, T> {
    /// Matrix `item` as a GEMM view.
    ///
    /// ```
    /// use tapegrad_kernels::attention::Operand;
    /// let data = [0.0f64; 8];
    /// let k = Operand { data: &data, offsets: &[0, 4], rows: 2, cols: 2, rs: 2, cs: 1 };
    /// assert_eq!((k.view(1).rows, k.view(1).cols), (2, 2));
    /// ```
    pub fn view(&self, item: usize) -> View<'a, T> {
        let (rows, cols, rs, cs) = (self.rows, self.cols, self.rs, self.cs);
        View { data: self.data, offset: self.offsets[item], rows, cols, rs, cs }
    }

    /// Rows `from..from + n` of matrix `item`.
    fn rows_of(&self, item: usize, from: usize, n: usize) -> View<'a, T> {
        View { offset: self.offsets[item] + from * self.rs, rows: n, ..self.view(item) }
    }
}

/// What [`attention`] returns: the output `[items, L, Ev]` and, when asked for, the
/// weights `[items, L, S]` its backward reads (empty otherwise).
///
/// ```
/// use tapegrad_kernels::attention::{Operand, attention};
/// use tapegrad_kernels::softmax::Keys;
/// // Two queries, causal, over two keys: the first sees only the first key.
/// let (q, k, v) = ([0.0f32, 0.0], [0.0, 0.0], [1.0, 3.0]);
/// let op = |data, rows| Operand { data, offsets: &[0], rows, cols: 1, rs: 1, cs: 1 };
/// let attended = attention(op(&q, 2), op(&k, 2), op(&v, 2), 1.0, Keys::Causal { queries: 2 }, true);
/// assert_eq!(attended.output, vec![1.0, 2.0]);
/// assert_eq!(attended.weights, vec![1.0, 0.0, 0.5, 0.5]);
/// ```
pub struct Attended<T> {
    /// `softmax(Q Kᵀ scale) V` per item.
    pub output: Vec<T>,
    /// The attention weights, zero where a mask hides a key.
    pub weights: Vec<T>,
}

/// The keys a block of queries `from..from + n` reads: all of them, or under the causal
/// mask those its last query sees.
fn keys_seen(from: usize, n: usize, keys: usize, causal: bool) -> usize {
    if causal { (from + n).min(keys) } else { keys }
}

/// Scaled dot-product attention of queries `q` (`items` matrices `L x E`) over keys `k`
/// (`S x E`) and values `v` (`S x Ev`), with the keys each query sees in `visible`: all,
/// causal (`Keys::Causal { queries: L }`: query `i` sees keys `0..=i`), or a mask per row of
/// scores (row `item * L + i`), bool or added; a query that sees no key gets zero weights.
/// The weights are kept for the backward with `keep_weights`. `S` and `Ev` must be
/// positive.
///
/// ```
/// use tapegrad_kernels::attention::{Operand, attention};
/// use tapegrad_kernels::softmax::Keys;
/// // One query, two keys with equal scores: the output averages the values.
/// let (q, k, v) = ([1.0f64, 0.0], [1.0, 0.0, 1.0, 0.0], [2.0, 4.0]);
/// let op = |data, rows, cols| Operand { data, offsets: &[0], rows, cols, rs: cols, cs: 1 };
/// let out = attention(op(&q, 1, 2), op(&k, 2, 2), op(&v, 2, 1), 1.0, Keys::All, true);
/// assert_eq!((out.output, out.weights), (vec![3.0], vec![0.5, 0.5]));
/// // A bool mask that hides the second key: the output is the first value.
/// let hidden = Keys::Masked { mask: &[true, false], starts: &[0] };
/// let out = attention(op(&q, 1, 2), op(&k, 2, 2), op(&v, 2, 1), 1.0, hidden, false);
/// assert_eq!(out.output, vec![2.0]);
/// ```
///
/// # Panics
/// If the operands' numbers of matrices or shapes do not fit, there are no keys or no
/// value columns, a causal mask's queries are not `L`, or a mask does not cover each row.
pub fn attention<T: Float>(
    q: Operand<'_, T>,
    k: Operand<'_, T>,
    v: Operand<'_, T>,
    scale: T,
    visible: Keys<'_, T>,
    keep_weights: bool,
) -> Attended<T> {
    let (items, l, s, ev) = (q.offsets.len(), q.rows, k.rows, v.cols);
    check(&q, &k, &v);
    let covered = |starts: &[usize], len: usize| {
        assert!(
            starts.len() == items * l && starts.iter().all(|&at| at + s <= len),
            "attention: the mask does not cover the rows"
        )
    };
    let causal = match visible {
        Keys::All => false,
        Keys::Causal { queries } => {
            assert_eq!(queries, l, "attention: the causal mask's queries are not L");
            true
        }
        Keys::Masked { mask, starts } => {
            covered(starts, mask.len());
            false
        }
        Keys::Added { mask, starts } => {
            covered(starts, mask.len());
            false
        }
    };
    let mut output: Vec<T> = Vec::with_capacity(items * l * ev);
    let mut weights: Vec<T> = Vec::with_capacity(if keep_weights { items * l * s } else { 0 });
    {
        let out_blocks = blocks(&mut output.spare_capacity_mut()[..items * l * ev], l, ev);
        let mut weight_blocks: Vec<_> = if keep_weights {
            let spare = &mut weights.spare_capacity_mut()[..items * l * s];
            blocks(spare, l, s).into_iter().map(|(_, _, block)| Some(block)).collect()
        } else {
            Vec::new()
        };
        let tasks: Vec<_> = out_blocks
            .into_iter()
            .enumerate()
            .map(|(i, block)| (block, weight_blocks.get_mut(i).and_then(Option::take)))
            .collect();
        // Each task's products and softmax with subnormal numbers flushed
        // (`crate::subnormal`): the weights of an attention that has grown sharp underflow.
        tasks.into_par_iter().with_min_len(1).for_each(|((item, from, out), weights)| {
            crate::subnormal::flushing(|| {
                let n = out.len() / ev;
                let seen = keys_seen(from, n, s, causal);
                let mut scores = vec![T::ZERO; n * seen];
                gemm_serial(
                    q.rows_of(item, from, n),
                    k.rows_of(item, 0, seen).t(),
                    &mut scores,
                    false,
                );
                let first_row = item * l + from;
                run_widest(WeightRows {
                    scores: &mut scores,
                    seen,
                    from,
                    first_row,
                    visible,
                    scale,
                });
                let out = cleared(out, T::ZERO);
                let p = View::row_major(&scores, n, seen);
                gemm_serial(p, v.rows_of(item, 0, seen), out, false);
                if let Some(weights) = weights {
                    let weights = cleared(weights, T::ZERO);
                    for (w, p) in weights.chunks_exact_mut(s).zip(scores.chunks_exact(seen)) {
                        w[..seen].copy_from_slice(p);
                    }
                }
            })
        });
    }
    // SAFETY: the blocks tile each buffer's first `len` elements, and every task cleared
    // its blocks before writing them (a panicking task unwinds before this).
    unsafe {
        output.set_len(items * l * ev);
        if keep_weights {
            weights.set_len(items * l * s);
        }
    }
    Attended { output, weights }
}

/// The gradients of [`attention`]'s queries, keys and values (contiguous, `[items, L, E]`,
/// `[items, S, E]`, `[items, S, Ev]`) from its weights and the output's gradient `grad`
/// (`items` matrices `L x Ev`), `causal` if the forward was. Any other mask is in the
/// weights (zero where it hid a key).
///
/// ```
/// use tapegrad_kernels::attention::{Operand, attention, attention_backward};
/// use tapegrad_kernels::softmax::Keys;
/// let (q, k, v) = ([1.0f64, 0.0], [1.0, 0.0, 1.0, 0.0], [2.0, 4.0]);
/// let op = |data, rows, cols| Operand { data, offsets: &[0], rows, cols, rs: cols, cs: 1 };
/// let out = attention(op(&q, 1, 2), op(&k, 2, 2), op(&v, 2, 1), 1.0, Keys::All, true);
/// let (dq, dk, dv) =
///     attention_backward(op(&q, 1, 2), op(&k, 2, 2), op(&v, 2, 1), &out.weights, op(&[1.0], 1, 1), 1.0, false);
/// // Each value gets half the output's gradient; moving the query changes nothing here
/// // (both keys are equal), and each key's gradient is its weight's, times the query.
/// assert_eq!(dv, vec![0.5, 0.5]);
/// assert_eq!(dq, vec![0.0, 0.0]);
/// assert_eq!(dk, vec![-0.5, 0.0, 0.5, 0.0]);
/// ```
///
/// # Panics
/// If the shapes do not fit [`attention`]'s.
pub fn attention_backward<T: Float>(
    q: Operand<'_, T>,
    k: Operand<'_, T>,
    v: Operand<'_, T>,
    weights: &[T],
    grad: Operand<'_, T>,
    scale: T,
    causal: bool,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let (items, l, s, e, ev) = (q.offsets.len(), q.rows, k.rows, q.cols, v.cols);
    check(&q, &k, &v);
    assert!(
        weights.len() == items * l * s
            && grad.offsets.len() == items
            && (grad.rows, grad.cols) == (l, ev),
        "attention_backward: weights or gradient do not fit"
    );
    let mut dq: Vec<T> = Vec::with_capacity(items * l * e);
    let mut dk: Vec<T> = Vec::with_capacity(items * s * e);
    let mut dv: Vec<T> = Vec::with_capacity(items * s * ev);
    {
        fn per_item<T>(buf: &mut Vec<T>, items: usize, len: usize) -> Vec<&mut [MaybeUninit<T>]> {
            let spare = &mut buf.spare_capacity_mut()[..items * len];
            if len == 0 {
                (0..items).map(|_| Default::default()).collect()
            } else {
                spare.chunks_mut(len).collect()
            }
        }
        let tasks: Vec<_> = per_item(&mut dq, items, l * e)
            .into_iter()
            .zip(per_item(&mut dk, items, s * e))
            .zip(per_item(&mut dv, items, s * ev))
            .enumerate()
            .collect();
        // Subnormal numbers flushed in each task, as in the forward.
        tasks.into_par_iter().with_min_len(1).for_each(|(item, ((dq, dk), dv))| {
            crate::subnormal::flushing(|| {
                let (dq, dk, dv) =
                    (cleared(dq, T::ZERO), cleared(dk, T::ZERO), cleared(dv, T::ZERO));
                let p_all = View::row_major(weights, items * l, s);
                let mut scratch = Vec::new();
                for from in (0..l).step_by(QUERIES) {
                    let n = QUERIES.min(l - from);
                    let seen = keys_seen(from, n, s, causal);
                    let p = View { offset: (item * l + from) * s, rows: n, cols: seen, ..p_all };
                    let g = grad.rows_of(item, from, n);
                    scratch.clear();
                    scratch.resize(n * seen, T::ZERO);
                    // dV += Pᵀ dO, then dP = dO Vᵀ and dS in its place.
                    gemm_serial(p.t(), g, &mut dv[..seen * ev], true);
                    gemm_serial(g, v.rows_of(item, 0, seen).t(), &mut scratch, false);
                    let rows = weights[(item * l + from) * s..].chunks(s);
                    run_widest(GradRows { weights: rows, grads: &mut scratch, seen, scale });
                    let ds = View::row_major(&scratch, n, seen);
                    gemm_serial(
                        ds,
                        k.rows_of(item, 0, seen),
                        &mut dq[from * e..(from + n) * e],
                        false,
                    );
                    gemm_serial(ds.t(), q.rows_of(item, from, n), &mut dk[..seen * e], true);
                }
            })
        });
    }
    // SAFETY: each item's slices of the three buffers were cleared by its task before the
    // products wrote them, and the slices tile the buffers.
    unsafe {
        dq.set_len(items * l * e);
        dk.set_len(items * s * e);
        dv.set_len(items * s * ev);
    }
    (dq, dk, dv)
}

/// The operands' shapes agree: one number of matrices, `E` shared by queries and keys, `S`
/// by keys and values, at least one key and one value column (the blocks are cut along
/// the output's rows, so an output without columns would leave the weights unwritten).
fn check<T>(q: &Operand<'_, T>, k: &Operand<'_, T>, v: &Operand<'_, T>) {
    let items = q.offsets.len();
    assert!(
        k.offsets.len() == items
            && v.offsets.len() == items
            && q.cols == k.cols
            && k.rows == v.rows
            && k.rows > 0
            && v.cols > 0,
        "attention: operands do not fit"
    );
}

/// An `[items, L, width]` buffer cut into blocks of up to [`QUERIES`] rows: (item, first
/// row, block).
fn blocks<T>(
    buf: &mut [MaybeUninit<T>],
    l: usize,
    width: usize,
) -> Vec<(usize, usize, &mut [MaybeUninit<T>])> {
    if l == 0 || width == 0 {
        return Vec::new();
    }
    buf.chunks_mut(l * width)
        .enumerate()
        .flat_map(|(item, rows)| {
            rows.chunks_mut(QUERIES * width)
                .enumerate()
                .map(move |(b, block)| (item, b * QUERIES, block))
        })
        .collect()
}

/// A block's scores turned into weights row by row, with the widest vectors the CPU has:
/// row `r` (query `from + r`, row `first_row + r` of all the scores) sees `seen` keys, or
/// under the causal mask `from + r + 1`, less those its mask hides.
struct WeightRows<'a, 'm, T> {
    scores: &'a mut [T],
    seen: usize,
    from: usize,
    first_row: usize,
    visible: Keys<'m, T>,
    scale: T,
}

impl<T: Float> WidestLoop for WeightRows<'_, '_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let WeightRows { scores, seen, from, first_row, visible, scale } = self;
        let causal = matches!(visible, Keys::Causal { .. });
        for (r, row) in scores.chunks_exact_mut(seen).enumerate() {
            let sees = if causal { (from + r + 1).min(seen) } else { seen };
            let (visible_part, hidden) = row.split_at_mut(sees);
            masked_weights_in_place(visible_part, scale, &visible, first_row + r);
            hidden.fill(T::ZERO);
        }
    }
}

/// A block's weight gradients turned into score gradients row by row, reading the
/// weights' rows (`S` apart; the first `seen` of each).
struct GradRows<'a, T, R> {
    weights: R,
    grads: &'a mut [T],
    seen: usize,
    scale: T,
}

impl<'a, T: Float, R: Iterator<Item = &'a [T]>> WidestLoop for GradRows<'_, T, R> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let GradRows { weights, grads, seen, scale } = self;
        for (g, y) in grads.chunks_exact_mut(seen).zip(weights) {
            weights_grad_in_place(&y[..seen], g, scale);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Operand, attention, attention_backward};
    use crate::softmax::Keys;

    /// What is added to the scaled score of query `i` and key `j` of item `it`, or `None`
    /// where the key is hidden.
    type Visibility<'a> = &'a dyn Fn(usize, usize, usize) -> Option<f64>;

    /// The definition in f64, one item at a time: weights, output, and the gradients of
    /// `sum(O * c)`.
    #[allow(clippy::type_complexity)]
    fn reference(
        q: &[f64],
        k: &[f64],
        v: &[f64],
        c: &[f64],
        (items, l, s, e, ev): (usize, usize, usize, usize, usize),
        scale: f64,
        visible: Visibility,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
        let (mut w, mut o) = (vec![0.0; items * l * s], vec![0.0; items * l * ev]);
        let (mut dq, mut dk, mut dv) =
            (vec![0.0; items * l * e], vec![0.0; items * s * e], vec![0.0; items * s * ev]);
        for it in 0..items {
            for i in 0..l {
                let z: Vec<f64> = (0..s)
                    .map(|j| match visible(it, i, j) {
                        Some(added) => {
                            (0..e)
                                .map(|d| q[(it * l + i) * e + d] * k[(it * s + j) * e + d])
                                .sum::<f64>()
                                * scale
                                + added
                        }
                        None => f64::NEG_INFINITY,
                    })
                    .collect();
                let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                if m == f64::NEG_INFINITY {
                    continue; // sees nothing: zero weights, output and gradients
                }
                let sum: f64 = z.iter().map(|z| (z - m).exp()).sum();
                let p: Vec<f64> = z.iter().map(|z| (z - m).exp() / sum).collect();
                let seen = s;
                for j in 0..seen {
                    w[(it * l + i) * s + j] = p[j];
                    for d in 0..ev {
                        o[(it * l + i) * ev + d] += p[j] * v[(it * s + j) * ev + d];
                        dv[(it * s + j) * ev + d] += p[j] * c[(it * l + i) * ev + d];
                    }
                }
                let dp: Vec<f64> = (0..seen)
                    .map(|j| {
                        (0..ev).map(|d| c[(it * l + i) * ev + d] * v[(it * s + j) * ev + d]).sum()
                    })
                    .collect();
                let dot: f64 = (0..seen).map(|j| dp[j] * p[j]).sum();
                for j in 0..seen {
                    let ds = p[j] * (dp[j] - dot) * scale;
                    for d in 0..e {
                        dq[(it * l + i) * e + d] += ds * k[(it * s + j) * e + d];
                        dk[(it * s + j) * e + d] += ds * q[(it * l + i) * e + d];
                    }
                }
            }
        }
        (w, o, dq, dk, dv)
    }

    fn values(n: usize, a: usize) -> Vec<f64> {
        (0..n).map(|i| ((i * a) % 97) as f64 / 97.0 - 0.5).collect()
    }

    #[test]
    fn blocks_match_the_definition_under_every_kind_of_mask() {
        // Several blocks of queries with a short last one, more queries than keys and fewer.
        for (items, l, s, e, ev) in
            [(1, 1, 1, 1, 1), (3, 70, 50, 8, 5), (2, 130, 200, 16, 16), (2, 65, 3, 4, 2)]
        {
            let (q, k, v) =
                (values(items * l * e, 7), values(items * s * e, 11), values(items * s * ev, 13));
            let c = values(items * l * ev, 17);
            // A bool mask per row of scores, with a row that sees nothing (query 1) and keys
            // hidden here and there; a float mask per item and key (a padding mask: every
            // query of an item reads the same row), hiding the item's last key.
            let hides = |it: usize, i: usize, j: usize| {
                i == 1 || (it * 31 + i * 7 + j * 3).is_multiple_of(5)
            };
            let bits: Vec<bool> =
                (0..items * l * s).map(|r| !hides(r / (l * s), r / s % l, r % s)).collect();
            let bit_starts: Vec<usize> = (0..items * l).map(|r| r * s).collect();
            let added_at = |it: usize, j: usize| {
                if j + 1 == s && s > 1 {
                    f64::NEG_INFINITY
                } else {
                    ((it + j) % 7) as f64 * 0.1 - 0.3
                }
            };
            let added: Vec<f64> = (0..items * s).map(|x| added_at(x / s, x % s)).collect();
            let added_starts: Vec<usize> = (0..items * l).map(|r| r / l * s).collect();
            let kinds: [(&str, Keys<f64>, Visibility); 4] = [
                ("all", Keys::All, &|_, _, _| Some(0.0)),
                ("causal", Keys::Causal { queries: l }, &|_, i, j| (j <= i).then_some(0.0)),
                ("bool", Keys::Masked { mask: &bits, starts: &bit_starts }, &|it, i, j| {
                    (!hides(it, i, j)).then_some(0.0)
                }),
                ("float", Keys::Added { mask: &added, starts: &added_starts }, &|it, _, j| {
                    Some(added_at(it, j)).filter(|a| a.is_finite())
                }),
            ];
            for (kind, keys, visible) in kinds {
                let causal = kind == "causal";
                let (w, o, dq, dk, dv) =
                    reference(&q, &k, &v, &c, (items, l, s, e, ev), 0.7, visible);
                let offs = |rows: usize, cols: usize| {
                    (0..items).map(|i| i * rows * cols).collect::<Vec<_>>()
                };
                let (oq, ok, ov, oc) = (offs(l, e), offs(s, e), offs(s, ev), offs(l, ev));
                let op = |data, offsets, rows, cols| Operand {
                    data,
                    offsets,
                    rows,
                    cols,
                    rs: cols,
                    cs: 1,
                };
                let (qo, ko, vo) = (op(&q, &oq, l, e), op(&k, &ok, s, e), op(&v, &ov, s, ev));
                let got = attention(qo, ko, vo, 0.7, keys, true);
                let (gq, gk, gv) =
                    attention_backward(qo, ko, vo, &got.weights, op(&c, &oc, l, ev), 0.7, causal);
                for (name, got, want) in [
                    ("w", &got.weights, &w),
                    ("o", &got.output, &o),
                    ("dq", &gq, &dq),
                    ("dk", &gk, &dk),
                    ("dv", &gv, &dv),
                ] {
                    assert_eq!(got.len(), want.len(), "{name}");
                    for (g, w) in got.iter().zip(want.iter()) {
                        assert!((g - w).abs() < 1e-12, "{items}x{l}x{s} {kind} {name}: {g} vs {w}");
                    }
                }
                let without = attention(qo, ko, vo, 0.7, keys, false);
                assert_eq!((without.output, without.weights.len()), (got.output, 0));
            }
        }
    }

    #[test]
    #[should_panic(expected = "the mask does not cover the rows")]
    fn a_mask_short_of_the_rows_is_refused() {
        let data = [1.0f32; 4];
        let op = |rows, cols| Operand { data: &data, offsets: &[0], rows, cols, rs: cols, cs: 1 };
        let mask = Keys::Masked { mask: &[true, false, true], starts: &[0, 2] };
        attention(op(2, 2), op(2, 2), op(2, 2), 1.0, mask, true);
    }

    #[test]
    #[should_panic(expected = "operands do not fit")]
    fn values_without_columns_are_refused() {
        let data = [1.0f32; 4];
        let op = |rows, cols| Operand { data: &data, offsets: &[0], rows, cols, rs: cols, cs: 1 };
        attention(op(2, 2), op(2, 2), op(2, 0), 1.0, Keys::All, true);
    }

    #[test]
    fn strided_operands_are_read_where_they_lie() {
        // Queries stored transposed per item ([E, L] in memory), keys interleaved over two items.
        let (l, s, e) = (5, 4, 3);
        let qt = values(2 * e * l, 5);
        let k = values(s * 2 * e, 3);
        let v = values(2 * s, 19);
        let q = Operand { data: &qt, offsets: &[0, e * l], rows: l, cols: e, rs: 1, cs: l };
        let kk = Operand { data: &k, offsets: &[0, e], rows: s, cols: e, rs: 2 * e, cs: 1 };
        let vv = Operand { data: &v, offsets: &[0, s], rows: s, cols: 1, rs: 1, cs: 1 };
        let got = attention(q, kk, vv, 1.0, Keys::All, false);
        for item in 0..2 {
            for i in 0..l {
                let z: Vec<f64> = (0..s)
                    .map(|j| {
                        (0..e)
                            .map(|d| qt[item * e * l + d * l + i] * k[j * 2 * e + item * e + d])
                            .sum()
                    })
                    .collect();
                let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = z.iter().map(|z| (z - m).exp()).sum();
                let want: f64 = (0..s).map(|j| (z[j] - m).exp() / sum * v[item * s + j]).sum();
                assert!((got.output[item * l + i] - want).abs() < 1e-12);
            }
        }
    }
}
