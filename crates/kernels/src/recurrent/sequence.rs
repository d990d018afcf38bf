//! An LSTM layer's recurrence over a whole sequence, fused: from the input projections of
//! every step (`xi = x W_ihᵀ + b_ih`, one large product done beforehand) to the hidden and
//! cell states of every step, and back.
//!
//! Each batch element's recurrence is independent of the others', so the batch is split
//! into blocks of rows that run the whole time loop on their own thread, with no
//! synchronisation per step. Per step a block computes `gates = xi_t + b_hh + h W_hhᵀ` (a
//! product with few rows) and the cell; backward runs the steps in reverse, one product
//! `dgates W_hh` per step, and the weight's gradient is then a single product over all
//! steps (`dgatesᵀ [h_0 .. h_{T-1}]`) instead of one per step.
//!
//! The sizes, the time-major input view, the weights, the split into blocks and the
//! weight-gradient product are shared with the GRU's and the Elman RNN's recurrences
//! (`gru.rs`, `elman.rs`).
//!
//! Layouts: outputs and activations are batch-major (`[B, T, 2 H]` for `[h_t, c_t]`,
//! `[B, T, 5 H]` for the activations, `[B, T, 4 H]` for the gates' gradients), so that each
//! block of rows owns one contiguous slice.

use rayon::prelude::*;

use super::{Backward, Forward};
use crate::Float;
use crate::gemm::{Gemm, PackedB, View, gemm_into, gemm_serial_packed};
use crate::simd::run_widest;

/// The sizes of a recurrence.
///
/// ```
/// let shape = tapegrad_kernels::recurrent::Recurrence { steps: 35, batch: 32, hidden: 128 };
/// assert_eq!(shape.steps * shape.batch, 1120);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recurrence {
    /// Time steps `T`.
    pub steps: usize,
    /// Batch elements `B`.
    pub batch: usize,
    /// Hidden units `H`.
    pub hidden: usize,
}

/// A time-major input: element `j` of step `t`, batch element `b` is at
/// `t * step_stride + b * batch_stride + j` (the `4 H` values of a row contiguous).
///
/// ```
/// use tapegrad_kernels::recurrent::TimeMajor;
/// // Two steps of three batch elements, rows of 8: a contiguous [T, B, 8] buffer.
/// let data = vec![0.0f32; 2 * 3 * 8];
/// let xi = TimeMajor { data: &data, step_stride: 3 * 8, batch_stride: 8 };
/// assert_eq!(xi.data.len(), 2 * xi.step_stride);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct TimeMajor<'a, T> {
    /// The values.
    pub data: &'a [T],
    /// Distance between steps.
    pub step_stride: usize,
    /// Distance between batch elements.
    pub batch_stride: usize,
}

impl<'a, T> TimeMajor<'a, T> {
    /// Row `(t, b)`, `len` values.
    pub(super) fn row(&self, t: usize, b: usize, len: usize) -> &'a [T] {
        let at = t * self.step_stride + b * self.batch_stride;
        &self.data[at..at + len]
    }
}

/// The recurrent weights: `w_hh` `[G H, H]` and `b_hh` `[G H]`, `G` the number of gates
/// (four for an LSTM, three for a GRU).
///
/// ```
/// use tapegrad_kernels::recurrent::RecurrentWeights;
/// let (w, b) = (vec![0.0f64; 4 * 2 * 2], vec![0.0f64; 4 * 2]); // H = 2
/// let weights = RecurrentWeights { w_hh: &w, b_hh: &b };
/// assert_eq!(weights.w_hh.len(), 4 * weights.b_hh.len() / 2);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct RecurrentWeights<'a, T> {
    /// `W_hh`, row-major `[G H, H]`.
    pub w_hh: &'a [T],
    /// `b_hh`, `[G H]`.
    pub b_hh: &'a [T],
}

/// Rows per block: the batch shared among the threads, at least 8 rows a block so the
/// per-step products stay worth their packing. Rows are independent, and each row's values
/// do not depend on the block it is in.
pub(super) fn block_rows(batch: usize) -> usize {
    batch.div_ceil(rayon::current_num_threads().max(1)).max(8).min(batch.max(1))
}

fn check<T>(shape: Recurrence, weights: &RecurrentWeights<'_, T>, state: (&[T], &[T])) {
    let Recurrence { batch, hidden: h, .. } = shape;
    assert!(
        weights.w_hh.len() == 4 * h * h
            && weights.b_hh.len() == 4 * h
            && state.0.len() == batch * h
            && state.1.len() == batch * h,
        "lstm_sequence: weight or state sizes"
    );
}

/// Runs the recurrence forward: `hc` gets `[h_t, c_t]` for every step (`[B, T, 2 H]`) and
/// `acts` the activations `[i, f, g, o, tanh c_t]` (`[B, T, 5 H]`), from `xi` (`[T, B, 4 H]`,
/// input bias included) and the initial states `h0`, `c0` (`[B, H]`).
///
/// ```
/// use tapegrad_kernels::recurrent::{Recurrence, RecurrentWeights, TimeMajor, lstm_sequence_forward};
/// // One unit, one step, zero weights and inputs: i = f = o = 1/2, g = 0, so c_1 = c_0 / 2.
/// let shape = Recurrence { steps: 1, batch: 1, hidden: 1 };
/// let xi = TimeMajor { data: &[0.0f64; 4], step_stride: 4, batch_stride: 4 };
/// let weights = RecurrentWeights { w_hh: &[0.0; 4], b_hh: &[0.0; 4] };
/// let (mut hc, mut acts) = (vec![0.0; 2], vec![0.0; 5]);
/// lstm_sequence_forward(shape, xi, weights, (&[0.3], &[2.0]), &mut hc, &mut acts);
/// assert_eq!(hc, [0.5 * 1f64.tanh(), 1.0]);
/// ```
///
/// # Panics
/// If a buffer's length disagrees with `shape`.
pub fn lstm_sequence_forward<T: Float + Gemm>(
    shape: Recurrence,
    xi: TimeMajor<'_, T>,
    weights: RecurrentWeights<'_, T>,
    (h0, c0): (&[T], &[T]),
    hc: &mut [T],
    acts: &mut [T],
) {
    let Recurrence { steps, batch, hidden: h } = shape;
    check(shape, &weights, (h0, c0));
    assert!(
        hc.len() == batch * steps * 2 * h && acts.len() == batch * steps * 5 * h,
        "lstm_sequence_forward: output sizes"
    );
    if batch * steps * h == 0 {
        return;
    }
    let rows = block_rows(batch);
    // W_hhᵀ is the right-hand operand of every step's product: copied for the kernel once.
    let w_t = PackedB::new(View::row_major(weights.w_hh, 4 * h, h).t());
    hc.par_chunks_mut(rows * steps * 2 * h)
        .zip(acts.par_chunks_mut(rows * steps * 5 * h))
        .enumerate()
        .for_each(|(block, (hc, acts))| {
            let first = block * rows;
            let n = hc.len() / (steps * 2 * h);
            let state = (&h0[first * h..(first + n) * h], &c0[first * h..(first + n) * h]);
            forward_block(shape, (first, n), xi, (&w_t, weights.b_hh), state, hc, acts);
        });
}

/// The forward of rows `first..first + n`, serially.
fn forward_block<T: Float + Gemm>(
    Recurrence { steps, hidden: h, .. }: Recurrence,
    (first, n): (usize, usize),
    xi: TimeMajor<'_, T>,
    (w_t, b_hh): (&PackedB<'_, T>, &[T]),
    (h0, c0): (&[T], &[T]),
    hc: &mut [T],
    acts: &mut [T],
) {
    let (mut h_prev, mut c_prev) = (h0.to_vec(), c0.to_vec());
    let mut gates = vec![T::ZERO; n * 4 * h];
    for t in 0..steps {
        for (r, row) in gates.chunks_exact_mut(4 * h).enumerate() {
            let x = xi.row(t, first + r, 4 * h);
            for ((g, &x), &b) in row.iter_mut().zip(x).zip(b_hh) {
                *g = x + b;
            }
        }
        gemm_serial_packed(View::row_major(&h_prev, n, h), w_t, &mut gates, true);
        for r in 0..n {
            let at = r * steps + t;
            let out = &mut hc[at * 2 * h..(at + 1) * 2 * h];
            run_widest(Forward {
                gates: &gates[r * 4 * h..(r + 1) * 4 * h],
                c: &c_prev[r * h..(r + 1) * h],
                hidden: h,
                hc: &mut *out,
                acts: &mut acts[at * 5 * h..(at + 1) * 5 * h],
            });
            h_prev[r * h..(r + 1) * h].copy_from_slice(&out[..h]);
            c_prev[r * h..(r + 1) * h].copy_from_slice(&out[h..]);
        }
    }
}

/// What the backward of the recurrence reads: the forward's outputs and activations
/// (batch-major, as [`lstm_sequence_forward`] wrote them) and the initial states.
///
/// ```
/// use tapegrad_kernels::recurrent::SequenceTape;
/// // One step, one batch element, H = 1: [h_1, c_1], five activations, h_0 and c_0.
/// let tape = SequenceTape { hc: &[0.1f32, 0.2], acts: &[0.5; 5], h0: &[0.0], c0: &[0.0] };
/// assert_eq!(tape.acts.len(), 5 * tape.h0.len());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct SequenceTape<'a, T> {
    /// `[h_t, c_t]`, `[B, T, 2 H]`.
    pub hc: &'a [T],
    /// The activations, `[B, T, 5 H]`.
    pub acts: &'a [T],
    /// `h_0`, `[B, H]`.
    pub h0: &'a [T],
    /// `c_0`, `[B, H]`.
    pub c0: &'a [T],
}

/// Runs the recurrence backward from `dhc`, the gradient of `[h_t, c_t]` (time-major,
/// `[T, B, 2 H]` rows): `dxi` gets the gradient of the gate pre-activations of every step
/// (`[B, T, 4 H]`, which is also that of `xi`), `dh0` and `dc0` those of the initial states;
/// `w_hh` is the recurrent weight (`[4 H, H]`; the bias plays no part).
///
/// ```
/// use tapegrad_kernels::recurrent::*;
/// let shape = Recurrence { steps: 1, batch: 1, hidden: 1 };
/// let xi = TimeMajor { data: &[0.0f64; 4], step_stride: 4, batch_stride: 4 };
/// let weights = RecurrentWeights { w_hh: &[0.0; 4], b_hh: &[0.0; 4] };
/// let (h0, c0) = ([0.0], [2.0]);
/// let (mut hc, mut acts) = (vec![0.0; 2], vec![0.0; 5]);
/// lstm_sequence_forward(shape, xi, weights, (&h0, &c0), &mut hc, &mut acts);
/// let tape = SequenceTape { hc: &hc, acts: &acts, h0: &h0, c0: &c0 };
/// let dhc = TimeMajor { data: &[0.0, 1.0], step_stride: 2, batch_stride: 2 }; // d c_1 = 1
/// let (mut dxi, mut dh0, mut dc0) = (vec![0.0; 4], vec![0.0], vec![0.0]);
/// lstm_sequence_backward(shape, tape, weights.w_hh, dhc, &mut dxi, (&mut dh0, &mut dc0));
/// assert_eq!(dc0, [0.5]); // d c_1 / d c_0 = f
/// ```
///
/// # Panics
/// If a buffer's length disagrees with `shape`.
pub fn lstm_sequence_backward<T: Float + Gemm>(
    shape: Recurrence,
    tape: SequenceTape<'_, T>,
    w_hh: &[T],
    dhc: TimeMajor<'_, T>,
    dxi: &mut [T],
    (dh0, dc0): (&mut [T], &mut [T]),
) {
    let Recurrence { steps, batch, hidden: h } = shape;
    assert!(
        w_hh.len() == 4 * h * h
            && tape.h0.len() == batch * h
            && tape.c0.len() == batch * h
            && tape.hc.len() == batch * steps * 2 * h
            && tape.acts.len() == batch * steps * 5 * h
            && dxi.len() == batch * steps * 4 * h
            && dh0.len() == batch * h
            && dc0.len() == batch * h,
        "lstm_sequence_backward: buffer sizes"
    );
    if steps == 0 {
        dh0.fill(T::ZERO);
        dc0.fill(T::ZERO);
    }
    if batch * h * steps == 0 {
        return;
    }
    let rows = block_rows(batch);
    // W_hh is the right-hand operand of every step's product: copied for the kernel once.
    let w_hh = PackedB::new(View::row_major(w_hh, 4 * h, h));
    dxi.par_chunks_mut(rows * steps * 4 * h)
        .zip(dh0.par_chunks_mut(rows * h).zip(dc0.par_chunks_mut(rows * h)))
        .enumerate()
        .for_each(|(block, (dxi, (dh0, dc0)))| {
            let first = block * rows;
            let n = dh0.len() / h;
            let rows = first..first + n;
            let tape = SequenceTape {
                hc: rows_of(tape.hc, &rows, steps * 2 * h),
                acts: rows_of(tape.acts, &rows, steps * 5 * h),
                h0: rows_of(tape.h0, &rows, h),
                c0: rows_of(tape.c0, &rows, h),
            };
            backward_block(shape, (first, n), tape, &w_hh, dhc, dxi, (dh0, dc0));
        });
}

/// Rows `rows` of a buffer of `width` values per row.
pub(super) fn rows_of<'a, T>(s: &'a [T], rows: &std::ops::Range<usize>, width: usize) -> &'a [T] {
    &s[rows.start * width..rows.end * width]
}

/// The backward of rows `first..first + n`, serially; `tape` holds those rows only.
fn backward_block<T: Float + Gemm>(
    Recurrence { steps, hidden: h, .. }: Recurrence,
    (first, n): (usize, usize),
    tape: SequenceTape<'_, T>,
    w_hh: &PackedB<'_, T>,
    dhc: TimeMajor<'_, T>,
    dxi: &mut [T],
    (dh, dc): (&mut [T], &mut [T]),
) {
    // `dh`, `dc`: the gradients reaching h_t and c_t from step t + 1 (none at the last).
    dh.fill(T::ZERO);
    dc.fill(T::ZERO);
    let mut step = vec![T::ZERO; 2 * h];
    let mut dgates = vec![T::ZERO; n * 4 * h];
    for t in (0..steps).rev() {
        for r in 0..n {
            let outer = dhc.row(t, first + r, 2 * h);
            for k in 0..h {
                step[k] = outer[k] + dh[r * h + k];
                step[h + k] = outer[h + k] + dc[r * h + k];
            }
            let at = r * steps + t;
            let c_prev = if t == 0 {
                &tape.c0[r * h..(r + 1) * h]
            } else {
                &tape.hc[(at - 1) * 2 * h + h..at * 2 * h]
            };
            run_widest(Backward {
                acts: &tape.acts[at * 5 * h..(at + 1) * 5 * h],
                c: c_prev,
                dhc: &step,
                hidden: h,
                dgates: &mut dgates[r * 4 * h..(r + 1) * 4 * h],
                dc: &mut dc[r * h..(r + 1) * h],
            });
            dxi[at * 4 * h..(at + 1) * 4 * h].copy_from_slice(&dgates[r * 4 * h..(r + 1) * 4 * h]);
        }
        // h_{t-1} fed every gate of step t through W_hh.
        gemm_serial_packed(View::row_major(&dgates, n, 4 * h), w_hh, dh, false);
    }
}

/// The gradients of the recurrent weights from the gates' gradients `dxi` (`[B, T, 4 H]`,
/// from [`lstm_sequence_backward`]): `dw_hh = Σ_t dgates_tᵀ h_{t-1}` (`[4 H, H]`) as one
/// product over every step and batch element, and `db_hh = Σ dgates` (`[4 H]`).
///
/// ```
/// use tapegrad_kernels::recurrent::*;
/// let shape = Recurrence { steps: 1, batch: 1, hidden: 1 };
/// let tape = SequenceTape { hc: &[0.0f64, 0.0], acts: &[0.0; 5], h0: &[2.0], c0: &[0.0] };
/// let (mut dw, mut db) = (vec![0.0; 4], vec![0.0; 4]);
/// lstm_sequence_weight_grads(shape, tape, &[1.0, 2.0, 3.0, 4.0], &mut dw, &mut db);
/// assert_eq!((dw, db), (vec![2.0, 4.0, 6.0, 8.0], vec![1.0, 2.0, 3.0, 4.0])); // h_0 = 2
/// ```
///
/// # Panics
/// If a buffer's length disagrees with `shape`.
pub fn lstm_sequence_weight_grads<T: Float + Gemm>(
    shape: Recurrence,
    tape: SequenceTape<'_, T>,
    dxi: &[T],
    dw_hh: &mut [T],
    db_hh: &mut [T],
) {
    let Recurrence { steps, batch, hidden: h } = shape;
    let rows = batch * steps;
    assert!(
        dxi.len() == rows * 4 * h
            && tape.hc.len() == rows * 2 * h
            && tape.h0.len() == batch * h
            && dw_hh.len() == 4 * h * h
            && db_hh.len() == 4 * h,
        "lstm_sequence_weight_grads: buffer sizes"
    );
    weight_grads(shape, (tape.hc, 2 * h, tape.h0), (dxi, 4 * h), dw_hh, db_hh);
}

/// `dw_hh = Σ_t dgatesᵀ h_{t-1}` and `db_hh = Σ dgates` over every step and batch element:
/// `dgates` holds `width` values per row (`[B, T, width]`), and `h_{t-1}` of row `(b, t)` is
/// `h0`'s row `b` at `t = 0`, else the first `H` values of row `(b, t - 1)` of `states`
/// (`stride` values per row).
pub(super) fn weight_grads<T: Float + Gemm>(
    Recurrence { steps, batch, hidden: h }: Recurrence,
    (states, stride, h0): (&[T], usize, &[T]),
    (dgates, width): (&[T], usize),
    dw_hh: &mut [T],
    db_hh: &mut [T],
) {
    let rows = batch * steps;
    let mut h_prev = vec![T::ZERO; rows * h];
    for (row, prev) in h_prev.chunks_exact_mut(h.max(1)).enumerate() {
        let (b, t) = (row / steps, row % steps);
        let from = if t == 0 {
            &h0[b * h..(b + 1) * h]
        } else {
            &states[(row - 1) * stride..(row - 1) * stride + h]
        };
        prev.copy_from_slice(from);
    }
    let gates = View::row_major(dgates, rows, width);
    gemm_into(gates.t(), View::row_major(&h_prev, rows, h), dw_hh, false);
    let ones = vec![T::ONE; rows];
    gemm_into(View::row_major(&ones, 1, rows), gates, db_hh, false);
}
