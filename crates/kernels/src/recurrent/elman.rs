//! An Elman RNN layer's recurrence over a whole sequence, fused: from the input
//! projections of every step (`xi = x W_ihᵀ + b_ih`, one large product done beforehand),
//!
//! ```text
//! h_t = act(xi_t + b_hh + h_{t-1} W_hhᵀ),   act = tanh or relu
//! ```
//!
//! split as for the LSTM ([`super::lstm_sequence_forward`]): blocks of batch rows run the
//! whole time loop on their own thread, one product with few rows per step, and the
//! recurrent weight's gradient is one product over all steps afterwards. Both
//! activations' derivatives are functions of their output (`1 - h²`, `h > 0`), so the
//! outputs are all the backward keeps.
//!
//! Layouts: the outputs `h_t` and the gradients of the pre-activations are batch-major
//! (`[B, T, H]`).

use rayon::prelude::*;

use super::sequence::{block_rows, rows_of, weight_grads};
use super::{Recurrence, RecurrentWeights, TimeMajor};
use crate::Float;
use crate::gemm::{Gemm, PackedB, View, gemm_serial_packed};
use crate::simd::{WidestLoop, run_widest};

/// The activation of an Elman recurrence.
///
/// ```
/// use tapegrad_kernels::recurrent::Activation;
/// assert_ne!(Activation::Tanh, Activation::Relu);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `tanh`.
    Tanh,
    /// `max(0, x)`.
    Relu,
}

/// Step `t` for a block of rows: `pre` `[n, H]` holds `b_hh + h_{t-1} W_hhᵀ` and receives
/// `h_t`; row `r` also adds `xi`'s row and writes `h_t` to `out[r * steps * H..]` (the
/// slice starts at step `t` of the block's first row).
struct ForwardStep<'a, T> {
    xi: TimeMajor<'a, T>,
    first: usize,
    shape: Recurrence,
    t: usize,
    activation: Activation,
    pre: &'a mut [T],
    out: &'a mut [T],
}

impl<T: Float> WidestLoop for ForwardStep<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let Recurrence { steps, hidden: h, .. } = self.shape;
        for (r, pre) in self.pre.chunks_exact_mut(h).enumerate() {
            let x = &self.xi.row(self.t, self.first + r, h)[..h];
            let out = &mut self.out[r * steps * h..][..h];
            match self.activation {
                Activation::Tanh => {
                    for k in 0..h {
                        let v = (x[k] + pre[k]).tanh_vectorisable();
                        pre[k] = v;
                        out[k] = v;
                    }
                }
                Activation::Relu => {
                    for k in 0..h {
                        // As the relu op: NaN stays NaN, -0 stays -0.
                        let a = x[k] + pre[k];
                        let v = if a < T::ZERO { T::ZERO } else { a };
                        pre[k] = v;
                        out[k] = v;
                    }
                }
            }
        }
    }
}

fn check<T>(shape: Recurrence, weights: &RecurrentWeights<'_, T>, h0: &[T]) {
    let Recurrence { batch, hidden: h, .. } = shape;
    assert!(
        weights.w_hh.len() == h * h && weights.b_hh.len() == h && h0.len() == batch * h,
        "elman_sequence: weight or state sizes"
    );
}

/// Runs the recurrence forward: `out` gets `h_t` for every step (`[B, T, H]`) from `xi`
/// (`[T, B, H]`, input bias included) and the initial state `h0` (`[B, H]`).
///
/// ```
/// use tapegrad_kernels::recurrent::*;
/// // One unit, two steps, w_hh = 2, b_hh = 0: h_1 = relu(1 + 2 h_0), h_2 = relu(-1 + 2 h_1).
/// let shape = Recurrence { steps: 2, batch: 1, hidden: 1 };
/// let xi = TimeMajor { data: &[1.0f64, -1.0], step_stride: 1, batch_stride: 1 };
/// let weights = RecurrentWeights { w_hh: &[2.0], b_hh: &[0.0] };
/// let mut out = vec![0.0; 2];
/// elman_sequence_forward(shape, xi, weights, Activation::Relu, &[0.25], &mut out);
/// assert_eq!(out, [1.5, 2.0]);
/// ```
///
/// # Panics
/// If a buffer's length disagrees with `shape`.
pub fn elman_sequence_forward<T: Float + Gemm>(
    shape: Recurrence,
    xi: TimeMajor<'_, T>,
    weights: RecurrentWeights<'_, T>,
    activation: Activation,
    h0: &[T],
    out: &mut [T],
) {
    let Recurrence { steps, batch, hidden: h } = shape;
    check(shape, &weights, h0);
    assert!(out.len() == batch * steps * h, "elman_sequence_forward: output size");
    if batch * steps * h == 0 {
        return;
    }
    let rows = block_rows(batch);
    // W_hhᵀ is the right-hand operand of every step's product: copied for the kernel once.
    let w_t = PackedB::new(View::row_major(weights.w_hh, h, h).t());
    out.par_chunks_mut(rows * steps * h).enumerate().for_each(|(block, out)| {
        let first = block * rows;
        let n = out.len() / (steps * h);
        let mut state = h0[first * h..(first + n) * h].to_vec();
        let mut pre = vec![T::ZERO; n * h];
        for t in 0..steps {
            for row in pre.chunks_exact_mut(h) {
                row.copy_from_slice(weights.b_hh);
            }
            gemm_serial_packed(View::row_major(&state, n, h), &w_t, &mut pre, true);
            run_widest(ForwardStep {
                xi,
                first,
                shape,
                t,
                activation,
                pre: &mut pre,
                out: &mut out[t * h..],
            });
            std::mem::swap(&mut state, &mut pre);
        }
    });
}

/// Step `t`'s gradients for a block of rows: `carry` `[n, H]` holds the gradient reaching
/// `h_t` from step `t + 1` (read, then left for the product); row `r`'s pre-activation
/// gradient goes to `da[r * H..]` and to `dxi[r * steps * H..]` (the slice starts at step
/// `t`).
struct BackwardStep<'a, T> {
    out: &'a [T],
    d_out: TimeMajor<'a, T>,
    first: usize,
    shape: Recurrence,
    t: usize,
    activation: Activation,
    carry: &'a [T],
    da: &'a mut [T],
    dxi: &'a mut [T],
}

impl<T: Float> WidestLoop for BackwardStep<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let Recurrence { steps, hidden: h, .. } = self.shape;
        for (r, da) in self.da.chunks_exact_mut(h).enumerate() {
            let at = r * steps + self.t;
            let y = &self.out[at * h..(at + 1) * h];
            let (g, carry) =
                (&self.d_out.row(self.t, self.first + r, h)[..h], &self.carry[r * h..(r + 1) * h]);
            match self.activation {
                Activation::Tanh => {
                    for k in 0..h {
                        da[k] = (g[k] + carry[k]) * (T::ONE - y[k] * y[k]);
                    }
                }
                Activation::Relu => {
                    for k in 0..h {
                        // Selected (an infinite gradient gives 0 where the input was not
                        // positive); a NaN output passes the gradient, as the relu op's.
                        da[k] = if y[k] <= T::ZERO { T::ZERO } else { g[k] + carry[k] };
                    }
                }
            }
            self.dxi[r * steps * h..][..h].copy_from_slice(da);
        }
    }
}

/// Runs the recurrence backward from `d_out`, the gradient of every step's output
/// (time-major, `[T, B, H]` rows), given the forward's outputs `out` (`[B, T, H]`): `dxi`
/// gets the gradient of the pre-activations (`[B, T, H]`; that of `xi`, and of the hidden
/// projections, for [`elman_sequence_weight_grads`]), `dh0` that of the initial state.
///
/// ```
/// use tapegrad_kernels::recurrent::*;
/// let shape = Recurrence { steps: 2, batch: 1, hidden: 1 };
/// let xi = TimeMajor { data: &[1.0f64, -1.0], step_stride: 1, batch_stride: 1 };
/// let weights = RecurrentWeights { w_hh: &[2.0], b_hh: &[0.0] };
/// let mut out = vec![0.0; 2];
/// elman_sequence_forward(shape, xi, weights, Activation::Relu, &[0.25], &mut out);
/// // d h_2 = 1: both steps active, so d h_1 = 2 and d h_0 = 4.
/// let d_out = TimeMajor { data: &[0.0, 1.0], step_stride: 1, batch_stride: 1 };
/// let (mut dxi, mut dh0) = (vec![0.0; 2], vec![0.0]);
/// elman_sequence_backward(shape, &out, weights.w_hh, Activation::Relu, d_out, &mut dxi, &mut dh0);
/// assert_eq!((dxi, dh0), (vec![2.0, 1.0], vec![4.0]));
/// ```
///
/// # Panics
/// If a buffer's length disagrees with `shape`.
pub fn elman_sequence_backward<T: Float + Gemm>(
    shape: Recurrence,
    out: &[T],
    w_hh: &[T],
    activation: Activation,
    d_out: TimeMajor<'_, T>,
    dxi: &mut [T],
    dh0: &mut [T],
) {
    let Recurrence { steps, batch, hidden: h } = shape;
    assert!(
        w_hh.len() == h * h
            && out.len() == batch * steps * h
            && dxi.len() == batch * steps * h
            && dh0.len() == batch * h,
        "elman_sequence_backward: buffer sizes"
    );
    dh0.fill(T::ZERO);
    if batch * h * steps == 0 {
        return;
    }
    let rows = block_rows(batch);
    // W_hh is the right-hand operand of every step's product: copied for the kernel once.
    let w_hh = PackedB::new(View::row_major(w_hh, h, h));
    dxi.par_chunks_mut(rows * steps * h).zip(dh0.par_chunks_mut(rows * h)).enumerate().for_each(
        |(block, (dxi, carry))| {
            let first = block * rows;
            let n = carry.len() / h;
            let out = rows_of(out, &(first..first + n), steps * h);
            // This step's pre-activation gradients, contiguous for the product.
            let mut da = vec![T::ZERO; n * h];
            for t in (0..steps).rev() {
                run_widest(BackwardStep {
                    out,
                    d_out,
                    first,
                    shape,
                    t,
                    activation,
                    carry,
                    da: &mut da,
                    dxi: &mut dxi[t * h..],
                });
                // h_{t-1} fed step t only through W_hh.
                gemm_serial_packed(View::row_major(&da, n, h), &w_hh, carry, false);
            }
        },
    );
}

/// The gradients of the recurrent weights from those of the pre-activations `dxi`
/// (`[B, T, H]`, from [`elman_sequence_backward`]) and the outputs `out` (`[B, T, H]`):
/// `dw_hh = Σ_t dxiᵀ h_{t-1}` (`[H, H]`) as one product over every step and batch element,
/// and `db_hh = Σ dxi` (`[H]`).
///
/// ```
/// use tapegrad_kernels::recurrent::*;
/// let shape = Recurrence { steps: 1, batch: 1, hidden: 1 };
/// let (mut dw, mut db) = (vec![0.0f64], vec![0.0]);
/// elman_sequence_weight_grads(shape, (&[0.0], &[2.0]), &[3.0], &mut dw, &mut db);
/// assert_eq!((dw, db), (vec![6.0], vec![3.0])); // h_0 = 2
/// ```
///
/// # Panics
/// If a buffer's length disagrees with `shape`.
pub fn elman_sequence_weight_grads<T: Float + Gemm>(
    shape: Recurrence,
    (out, h0): (&[T], &[T]),
    dxi: &[T],
    dw_hh: &mut [T],
    db_hh: &mut [T],
) {
    let Recurrence { steps, batch, hidden: h } = shape;
    assert!(
        dxi.len() == batch * steps * h
            && out.len() == batch * steps * h
            && h0.len() == batch * h
            && dw_hh.len() == h * h
            && db_hh.len() == h,
        "elman_sequence_weight_grads: buffer sizes"
    );
    weight_grads(shape, (out, h, h0), (dxi, h), dw_hh, db_hh);
}
