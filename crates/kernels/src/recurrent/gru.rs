//! A GRU layer's recurrence over a whole sequence, fused, in PyTorch's formulation: from
//! the input projections of every step (`xi = x W_ihᵀ + b_ih`, `[r, z, n]` blocks, one
//! large product done beforehand) and the hidden projection `gh = h W_hhᵀ + b_hh` of the
//! previous state,
//!
//! ```text
//! r = σ(xi_r + gh_r), z = σ(xi_z + gh_z), n = tanh(xi_n + r gh_n)
//! h' = (1 - z) n + z h
//! ```
//!
//! The work is split as for the LSTM ([`super::lstm_sequence_forward`]): blocks of batch
//! rows run the whole time loop on their own thread, one product with few rows per step,
//! and the recurrent weight's gradient is one product over all steps afterwards. The reset
//! gate multiplies `gh_n` (not `h`), so the gradient reaching `W_hh` differs from the one
//! reaching `xi` in the `n` block: backward writes both.
//!
//! Layouts: the outputs `h_t` are batch-major (`[B, T, H]`), the activations
//! `[r, z, n, gh_n]` `[B, T, 4 H]`, and the gradients of `xi` and of `gh` `[B, T, 3 H]`.

use rayon::prelude::*;

use super::sequence::{block_rows, rows_of, weight_grads};
use super::{Recurrence, RecurrentWeights, TimeMajor, sigmoid};
use crate::Float;
use crate::gemm::{Gemm, PackedB, View, gemm_serial_packed};
use crate::simd::{WidestLoop, run_widest};

/// One row of the cell forward; each slice its own argument so that the compiler knows the
/// outputs alias nothing and vectorises the loop. `state` holds `h` and receives `h'`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn forward_row<T: Float>(
    (xr, xz, xn): (&[T], &[T], &[T]),
    (hr, hz, hn): (&[T], &[T], &[T]),
    state: &mut [T],
    out: &mut [T],
    act_r: &mut [T],
    act_z: &mut [T],
    act_n: &mut [T],
    act_hn: &mut [T],
) {
    let h = state.len();
    let (xr, xz, xn) = (&xr[..h], &xz[..h], &xn[..h]);
    let (hr, hz, hn) = (&hr[..h], &hz[..h], &hn[..h]);
    let out = &mut out[..h];
    let (act_r, act_z, act_n, act_hn) =
        (&mut act_r[..h], &mut act_z[..h], &mut act_n[..h], &mut act_hn[..h]);
    for k in 0..h {
        let r = sigmoid(xr[k] + hr[k]);
        let z = sigmoid(xz[k] + hz[k]);
        let n = (xn[k] + r * hn[k]).tanh_vectorisable();
        let next = (T::ONE - z) * n + z * state[k];
        state[k] = next;
        out[k] = next;
        act_r[k] = r;
        act_z[k] = z;
        act_n[k] = n;
        act_hn[k] = hn[k];
    }
}

/// Step `t`'s cells for a block of rows: `gh` `[n, 3 H]`, `state` `[n, H]` (updated in
/// place); row `r`'s output at `out[r * steps * H..]` and activations at
/// `acts[r * steps * 4 H..]` (both slices start at step `t` of the block's first row).
struct ForwardStep<'a, T> {
    xi: TimeMajor<'a, T>,
    first: usize,
    shape: Recurrence,
    t: usize,
    gh: &'a [T],
    state: &'a mut [T],
    out: &'a mut [T],
    acts: &'a mut [T],
}

impl<T: Float> WidestLoop for ForwardStep<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let Recurrence { steps, hidden: h, .. } = self.shape;
        for (r, state) in self.state.chunks_exact_mut(h).enumerate() {
            let x = self.xi.row(self.t, self.first + r, 3 * h);
            let g = &self.gh[r * 3 * h..(r + 1) * 3 * h];
            let act = &mut self.acts[r * steps * 4 * h..][..4 * h];
            let (act_r, rest) = act.split_at_mut(h);
            let (act_z, rest) = rest.split_at_mut(h);
            let (act_n, act_hn) = rest.split_at_mut(h);
            forward_row(
                (&x[..h], &x[h..2 * h], &x[2 * h..]),
                (&g[..h], &g[h..2 * h], &g[2 * h..]),
                state,
                &mut self.out[r * steps * h..][..h],
                act_r,
                act_z,
                act_n,
                act_hn,
            );
        }
    }
}

fn check<T>(shape: Recurrence, weights: &RecurrentWeights<'_, T>, h0: &[T]) {
    let Recurrence { batch, hidden: h, .. } = shape;
    assert!(
        weights.w_hh.len() == 3 * h * h && weights.b_hh.len() == 3 * h && h0.len() == batch * h,
        "gru_sequence: weight or state sizes"
    );
}

/// Runs the recurrence forward: `out` gets `h_t` for every step (`[B, T, H]`) and `acts` the
/// activations `[r, z, n, gh_n]` (`[B, T, 4 H]`), from `xi` (`[T, B, 3 H]`, input bias
/// included) and the initial state `h0` (`[B, H]`).
///
/// ```
/// use tapegrad_kernels::recurrent::{Recurrence, RecurrentWeights, TimeMajor, gru_sequence_forward};
/// // One unit, one step, zero weights and inputs: r = z = 1/2, n = 0, so h_1 = h_0 / 2.
/// let shape = Recurrence { steps: 1, batch: 1, hidden: 1 };
/// let xi = TimeMajor { data: &[0.0f64; 3], step_stride: 3, batch_stride: 3 };
/// let weights = RecurrentWeights { w_hh: &[0.0; 3], b_hh: &[0.0; 3] };
/// let (mut out, mut acts) = (vec![0.0; 1], vec![0.0; 4]);
/// gru_sequence_forward(shape, xi, weights, &[0.8], &mut out, &mut acts);
/// assert_eq!(out, [0.4]);
/// assert_eq!(acts, [0.5, 0.5, 0.0, 0.0]);
/// ```
///
/// # Panics
/// If a buffer's length disagrees with `shape`.
pub fn gru_sequence_forward<T: Float + Gemm>(
    shape: Recurrence,
    xi: TimeMajor<'_, T>,
    weights: RecurrentWeights<'_, T>,
    h0: &[T],
    out: &mut [T],
    acts: &mut [T],
) {
    let Recurrence { steps, batch, hidden: h } = shape;
    check(shape, &weights, h0);
    assert!(
        out.len() == batch * steps * h && acts.len() == batch * steps * 4 * h,
        "gru_sequence_forward: output sizes"
    );
    if batch * steps * h == 0 {
        return;
    }
    let rows = block_rows(batch);
    // W_hhᵀ is the right-hand operand of every step's product: copied for the kernel once.
    let w_t = PackedB::new(View::row_major(weights.w_hh, 3 * h, h).t());
    out.par_chunks_mut(rows * steps * h)
        .zip(acts.par_chunks_mut(rows * steps * 4 * h))
        .enumerate()
        .for_each(|(block, (out, acts))| {
            let first = block * rows;
            let n = out.len() / (steps * h);
            let mut state = h0[first * h..(first + n) * h].to_vec();
            let mut gh = vec![T::ZERO; n * 3 * h];
            for t in 0..steps {
                for row in gh.chunks_exact_mut(3 * h) {
                    row.copy_from_slice(weights.b_hh);
                }
                gemm_serial_packed(View::row_major(&state, n, h), &w_t, &mut gh, true);
                run_widest(ForwardStep {
                    xi,
                    first,
                    shape,
                    t,
                    gh: &gh,
                    state: &mut state,
                    out: &mut out[t * h..],
                    acts: &mut acts[t * 4 * h..],
                });
            }
        });
}

/// What the backward of the recurrence reads: the forward's outputs and activations
/// (batch-major, as [`gru_sequence_forward`] wrote them) and the initial state.
///
/// ```
/// use tapegrad_kernels::recurrent::GruTape;
/// // One step, one batch element, H = 1: h_1, the activations [r, z, n, gh_n], h_0.
/// let tape = GruTape { h: &[0.4f32], acts: &[0.5, 0.5, 0.0, 0.0], h0: &[0.8] };
/// assert_eq!(tape.acts.len(), 4 * tape.h.len());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct GruTape<'a, T> {
    /// `h_t`, `[B, T, H]`.
    pub h: &'a [T],
    /// The activations `[r, z, n, gh_n]`, `[B, T, 4 H]`.
    pub acts: &'a [T],
    /// `h_0`, `[B, H]`.
    pub h0: &'a [T],
}

/// One row of the cell backward. `carry` holds the gradient reaching `h_t` from step
/// `t + 1` and receives the part of `h_{t-1}`'s gradient that bypasses `W_hh` (`z dh`).
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
#[inline(always)]
fn backward_row<T: Float>(
    (r, z, n, hn): (&[T], &[T], &[T], &[T]),
    h_prev: &[T],
    d_out: &[T],
    carry: &mut [T],
    (dxr, dxz, dxn): (&mut [T], &mut [T], &mut [T]),
    (dgr, dgz, dgn): (&mut [T], &mut [T], &mut [T]),
) {
    let h = h_prev.len();
    let (r, z, n, hn) = (&r[..h], &z[..h], &n[..h], &hn[..h]);
    let (d_out, carry) = (&d_out[..h], &mut carry[..h]);
    let (dxr, dxz, dxn) = (&mut dxr[..h], &mut dxz[..h], &mut dxn[..h]);
    let (dgr, dgz, dgn) = (&mut dgr[..h], &mut dgz[..h], &mut dgn[..h]);
    for k in 0..h {
        let dh = d_out[k] + carry[k];
        let da_n = dh * (T::ONE - z[k]) * (T::ONE - n[k] * n[k]);
        let da_r = da_n * hn[k] * r[k] * (T::ONE - r[k]);
        let da_z = dh * (h_prev[k] - n[k]) * z[k] * (T::ONE - z[k]);
        dxr[k] = da_r;
        dxz[k] = da_z;
        dxn[k] = da_n;
        dgr[k] = da_r;
        dgz[k] = da_z;
        dgn[k] = da_n * r[k];
        carry[k] = dh * z[k];
    }
}

/// Step `t`'s cell gradients for a block of rows (`tape` holds the block's rows only):
/// row `r`'s gradient of `xi` goes to `dxi[r * steps * 3 H..]` (the slice starts at step
/// `t`), of `gh` to `dgh[r * 3 H..]`.
struct BackwardStep<'a, T> {
    tape: GruTape<'a, T>,
    d_out: TimeMajor<'a, T>,
    first: usize,
    shape: Recurrence,
    t: usize,
    carry: &'a mut [T],
    dxi: &'a mut [T],
    dgh: &'a mut [T],
}

impl<T: Float> WidestLoop for BackwardStep<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let Recurrence { steps, hidden: h, .. } = self.shape;
        let t = self.t;
        for (r, carry) in self.carry.chunks_exact_mut(h).enumerate() {
            let at = r * steps + t;
            let act = &self.tape.acts[at * 4 * h..(at + 1) * 4 * h];
            let h_prev = if t == 0 {
                &self.tape.h0[r * h..(r + 1) * h]
            } else {
                &self.tape.h[(at - 1) * h..at * h]
            };
            let dx = &mut self.dxi[r * steps * 3 * h..][..3 * h];
            let (dxr, rest) = dx.split_at_mut(h);
            let (dxz, dxn) = rest.split_at_mut(h);
            let dg = &mut self.dgh[r * 3 * h..(r + 1) * 3 * h];
            let (dgr, rest) = dg.split_at_mut(h);
            let (dgz, dgn) = rest.split_at_mut(h);
            backward_row(
                (&act[..h], &act[h..2 * h], &act[2 * h..3 * h], &act[3 * h..]),
                h_prev,
                self.d_out.row(t, self.first + r, h),
                carry,
                (dxr, dxz, dxn),
                (dgr, dgz, dgn),
            );
        }
    }
}

/// Runs the recurrence backward from `d_out`, the gradient of every step's output
/// (time-major, `[T, B, H]` rows): `dxi` gets the gradient of `xi` (`[B, T, 3 H]`), `dgh`
/// that of the hidden projections `gh` (`[B, T, 3 H]`, what
/// [`gru_sequence_weight_grads`] reads), `dh0` that of the initial state; `w_hh` is the
/// recurrent weight (`[3 H, H]`).
///
/// ```
/// use tapegrad_kernels::recurrent::*;
/// let shape = Recurrence { steps: 1, batch: 1, hidden: 1 };
/// let xi = TimeMajor { data: &[0.0f64; 3], step_stride: 3, batch_stride: 3 };
/// let weights = RecurrentWeights { w_hh: &[0.0; 3], b_hh: &[0.0; 3] };
/// let h0 = [0.8];
/// let (mut out, mut acts) = (vec![0.0], vec![0.0; 4]);
/// gru_sequence_forward(shape, xi, weights, &h0, &mut out, &mut acts);
/// let tape = GruTape { h: &out, acts: &acts, h0: &h0 };
/// let d_out = TimeMajor { data: &[1.0], step_stride: 1, batch_stride: 1 };
/// let (mut dxi, mut dgh, mut dh0) = (vec![0.0; 3], vec![0.0; 3], vec![0.0]);
/// gru_sequence_backward(shape, tape, weights.w_hh, d_out, &mut dxi, &mut dgh, &mut dh0);
/// assert_eq!(dh0, [0.5]); // d h_1 / d h_0 = z
/// assert_eq!(dxi[2], 0.5); // d h_1 / d xi_n = (1 - z)(1 - n²)
/// assert_eq!(dgh[2], 0.25); // ... times r for gh_n
/// ```
///
/// # Panics
/// If a buffer's length disagrees with `shape`.
pub fn gru_sequence_backward<T: Float + Gemm>(
    shape: Recurrence,
    tape: GruTape<'_, T>,
    w_hh: &[T],
    d_out: TimeMajor<'_, T>,
    dxi: &mut [T],
    dgh: &mut [T],
    dh0: &mut [T],
) {
    let Recurrence { steps, batch, hidden: h } = shape;
    assert!(
        w_hh.len() == 3 * h * h
            && tape.h0.len() == batch * h
            && tape.h.len() == batch * steps * h
            && tape.acts.len() == batch * steps * 4 * h
            && dxi.len() == batch * steps * 3 * h
            && dgh.len() == batch * steps * 3 * h
            && dh0.len() == batch * h,
        "gru_sequence_backward: buffer sizes"
    );
    dh0.fill(T::ZERO);
    if batch * h * steps == 0 {
        return;
    }
    let rows = block_rows(batch);
    // W_hh is the right-hand operand of every step's product: copied for the kernel once.
    let w_hh = PackedB::new(View::row_major(w_hh, 3 * h, h));
    dxi.par_chunks_mut(rows * steps * 3 * h)
        .zip(dgh.par_chunks_mut(rows * steps * 3 * h).zip(dh0.par_chunks_mut(rows * h)))
        .enumerate()
        .for_each(|(block, (dxi, (dgh, carry)))| {
            let first = block * rows;
            let n = carry.len() / h;
            let range = first..first + n;
            let tape = GruTape {
                h: rows_of(tape.h, &range, steps * h),
                acts: rows_of(tape.acts, &range, steps * 4 * h),
                h0: rows_of(tape.h0, &range, h),
            };
            // The gradients of this step's `gh`, contiguous for the product.
            let mut dgh_step = vec![T::ZERO; n * 3 * h];
            for t in (0..steps).rev() {
                run_widest(BackwardStep {
                    tape,
                    d_out,
                    first,
                    shape,
                    t,
                    carry: &mut *carry,
                    dxi: &mut dxi[t * 3 * h..],
                    dgh: &mut dgh_step,
                });
                for (r, row) in dgh_step.chunks_exact(3 * h).enumerate() {
                    let at = r * steps + t;
                    dgh[at * 3 * h..(at + 1) * 3 * h].copy_from_slice(row);
                }
                // h_{t-1} fed every gate of step t through W_hh.
                gemm_serial_packed(View::row_major(&dgh_step, n, 3 * h), &w_hh, carry, true);
            }
        });
}

/// The gradients of the recurrent weights from those of the hidden projections `dgh`
/// (`[B, T, 3 H]`, from [`gru_sequence_backward`]): `dw_hh = Σ_t dghᵀ h_{t-1}` (`[3 H, H]`)
/// as one product over every step and batch element, and `db_hh = Σ dgh` (`[3 H]`).
///
/// ```
/// use tapegrad_kernels::recurrent::*;
/// let shape = Recurrence { steps: 1, batch: 1, hidden: 1 };
/// let tape = GruTape { h: &[0.0f64], acts: &[0.0; 4], h0: &[2.0] };
/// let (mut dw, mut db) = (vec![0.0; 3], vec![0.0; 3]);
/// gru_sequence_weight_grads(shape, tape, &[1.0, 2.0, 3.0], &mut dw, &mut db);
/// assert_eq!((dw, db), (vec![2.0, 4.0, 6.0], vec![1.0, 2.0, 3.0])); // h_0 = 2
/// ```
///
/// # Panics
/// If a buffer's length disagrees with `shape`.
pub fn gru_sequence_weight_grads<T: Float + Gemm>(
    shape: Recurrence,
    tape: GruTape<'_, T>,
    dgh: &[T],
    dw_hh: &mut [T],
    db_hh: &mut [T],
) {
    let Recurrence { steps, batch, hidden: h } = shape;
    assert!(
        dgh.len() == batch * steps * 3 * h
            && tape.h.len() == batch * steps * h
            && tape.h0.len() == batch * h
            && dw_hh.len() == 3 * h * h
            && db_hh.len() == 3 * h,
        "gru_sequence_weight_grads: buffer sizes"
    );
    weight_grads(shape, (tape.h, h, tape.h0), (dgh, 3 * h), dw_hh, db_hh);
}
