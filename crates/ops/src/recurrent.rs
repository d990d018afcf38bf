//! The elementwise half of an LSTM step as one recorded op (`lstm_cell`): from the gate
//! pre-activations and the previous cell state to the new hidden and cell states, with a
//! fused backward. Under `create_graph` the rule is written with recorded ops instead, so
//! the step is differentiable to any order either way. The submodules hold the recurrences
//! over whole sequences: `sequence` the LSTM's, `gru` the GRU's, `elman` the Elman RNN's
//! (`single_state` what the last two share).

use std::panic::Location;

use tapegrad_kernels::recurrent::{lstm_cell_backward, lstm_cell_forward};
use tapegrad_tape::layout::Layout;
use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{
    Backward, Element, Error, Result, Storage, Tensor, ensure_float, is_grad_enabled,
    record_with_tangent,
};

use crate::shape::narrow;

mod elman;
mod gru;
mod sequence;
mod single_state;
use crate::unary::{sigmoid_op, tanh};
pub(crate) use elman::rnn_recurrence;
pub(crate) use gru::gru_recurrence;
pub(crate) use sequence::lstm_recurrence;

fn slice<T: Element>(s: &Storage) -> &[T] {
    s.as_slice::<T>().expect("dtype checked")
}

/// `[h', c']` (`[B, 2H]`) and the activations `[i, f, g, o, tanh c']` (`[B, 5H]`).
fn forward<T: Element>(gates: &Storage, c: &Storage, hidden: usize) -> (Vec<T>, Vec<T>) {
    let c = slice::<T>(c);
    let mut hc = vec![T::ZERO; 2 * c.len()];
    let mut acts = vec![T::ZERO; 5 * c.len()];
    lstm_cell_forward(slice::<T>(gates), c, hidden, &mut hc, &mut acts);
    (hc, acts)
}

/// The gradients of the gates and of `c` from that of `[h', c']`, fused.
fn backward_fused<T: Element>(
    acts: &Storage,
    c: &Storage,
    dhc: &Storage,
    hidden: usize,
) -> (Vec<T>, Vec<T>) {
    let c = slice::<T>(c);
    let mut dgates = vec![T::ZERO; 4 * c.len()];
    let mut dc = vec![T::ZERO; c.len()];
    lstm_cell_backward(slice::<T>(acts), c, slice::<T>(dhc), hidden, &mut dgates, &mut dc);
    (dgates, dc)
}

/// The same gradients written with recorded ops (for `create_graph`).
fn backward_recorded(gates: &Tensor, c: &Tensor, dhc: &Tensor, hidden: usize) -> (Tensor, Tensor) {
    let part = |t: &Tensor, k: usize| narrow(t, 1, k * hidden, hidden).expect("shape checked");
    let (i, f) = (sigmoid_op(&part(gates, 0)), sigmoid_op(&part(gates, 1)));
    let (g, o) = (tanh(&part(gates, 2)), sigmoid_op(&part(gates, 3)));
    let tc = tanh(&(&(&f * c) + &(&i * &g)));
    let (dh, dc_next) = (part(dhc, 0), part(dhc, 1));
    let one_minus = |t: &Tensor| t.rsub_scalar(1.0);
    let dcell = &dc_next + &(&(&dh * &o) * &one_minus(&(&tc * &tc)));
    let da_i = &(&dcell * &g) * &(&i * &one_minus(&i));
    let da_f = &(&dcell * c) * &(&f * &one_minus(&f));
    let da_g = &(&dcell * &i) * &one_minus(&(&g * &g));
    let da_o = &(&dh * &tc) * &(&o * &one_minus(&o));
    let dgates = crate::cat(&[&da_i, &da_f, &da_g, &da_o], 1);
    (dgates, &dcell * &f)
}

/// The tangent of `[h', c']` from the tangents of the gates and of `c` (forward mode),
/// written with recorded ops on the gates so it can be differentiated again.
fn tangent_recorded(
    gates: &Tensor,
    c: &Tensor,
    (dgates, dc): (Option<&Tensor>, Option<&Tensor>),
    hidden: usize,
) -> Tensor {
    let part = |t: &Tensor, k: usize| narrow(t, 1, k * hidden, hidden).expect("shape checked");
    let (i, f) = (sigmoid_op(&part(gates, 0)), sigmoid_op(&part(gates, 1)));
    let (g, o) = (tanh(&part(gates, 2)), sigmoid_op(&part(gates, 3)));
    let tc = tanh(&(&(&f * c) + &(&i * &g)));
    let one_minus = |t: &Tensor| t.rsub_scalar(1.0);
    // c' = f c + i g, h' = o tanh(c'), each activation's derivative in terms of its value.
    let from_gates = dgates.map(|d| {
        let di = &part(d, 0) * &(&i * &one_minus(&i));
        let df = &part(d, 1) * &(&f * &one_minus(&f));
        let dg = &part(d, 2) * &one_minus(&(&g * &g));
        let do_ = &part(d, 3) * &(&o * &one_minus(&o));
        (&(&(&di * &g) + &(&df * c)) + &(&dg * &i), do_)
    });
    let dcell = match (&from_gates, dc) {
        (Some((cell, _)), Some(dc)) => cell + &(&f * dc),
        (Some((cell, _)), None) => cell.clone(),
        (None, Some(dc)) => &f * dc,
        (None, None) => unreachable!("a tangent rule runs when an input has a tangent"),
    };
    let mut dh = &(&o * &one_minus(&(&tc * &tc))) * &dcell;
    if let Some((_, do_)) = &from_gates {
        dh = &dh + &(do_ * &tc);
    }
    crate::cat(&[&dh, &dcell], 1)
}

/// One LSTM step's elementwise part: `gates` `[B, 4H]` (PyTorch's order i, f, g, o, before
/// their activations) and `c` `[B, H]` give `h'` and `c'`, both `[B, H]`.
#[track_caller]
pub(crate) fn lstm_gates(gates: &Tensor, c: &Tensor) -> Result<(Tensor, Tensor)> {
    let location = Location::caller();
    let op = "lstm_gates";
    ensure_float(op, gates, location)?;
    ensure_float(op, c, location)?;
    if gates.dtype() != c.dtype() {
        return Err(Error::DType { op, lhs: gates.dtype(), rhs: c.dtype(), location });
    }
    let (rows, hidden) = match (gates.shape(), c.shape()) {
        (&[b, g], &[bc, h]) if b == bc && g == 4 * h => (b, h),
        _ => {
            return Err(Error::Shape {
                op,
                message: format!(
                    "expects gates [B, 4H] and c [B, H], got {:?} and {:?}",
                    gates.shape(),
                    c.shape()
                ),
                location,
            });
        }
    };
    let (gs, cs) = (gates.contiguous_storage(), c.contiguous_storage());
    let (hc, acts) = match gs {
        Storage::F32(_) => {
            let (hc, acts) = forward::<f32>(&gs, &cs, hidden);
            (Storage::from_vec(hc), Storage::from_vec(acts))
        }
        _ => {
            let (hc, acts) = forward::<f64>(&gs, &cs, hidden);
            (Storage::from_vec(hc), Storage::from_vec(acts))
        }
    };
    let value = Tensor::from_storage(hc, Layout::contiguous(&[rows, 2 * hidden]));
    let acts = Tensor::from_storage(acts, Layout::contiguous(&[rows, 5 * hidden]));
    let make_backward = || {
        Backward::new(move |ctx| {
            let (gates, c, acts) = (ctx.saved(0), ctx.saved(1), ctx.saved(2));
            let (dgates, dc) = if is_grad_enabled() {
                backward_recorded(gates, c, ctx.grad(), hidden)
            } else {
                let (a, cs, d) = (
                    acts.contiguous_storage(),
                    c.contiguous_storage(),
                    ctx.grad().contiguous_storage(),
                );
                let shape = |w: usize| Layout::contiguous(&[rows, w * hidden]);
                match d {
                    Storage::F32(_) => {
                        let (dg, dc) = backward_fused::<f32>(&a, &cs, &d, hidden);
                        (
                            Tensor::from_storage(Storage::from_vec(dg), shape(4)),
                            Tensor::from_storage(Storage::from_vec(dc), shape(1)),
                        )
                    }
                    _ => {
                        let (dg, dc) = backward_fused::<f64>(&a, &cs, &d, hidden);
                        (
                            Tensor::from_storage(Storage::from_vec(dg), shape(4)),
                            Tensor::from_storage(Storage::from_vec(dc), shape(1)),
                        )
                    }
                }
            };
            smallvec![
                ctx.needs_input_grad(0).then_some(dgates),
                ctx.needs_input_grad(1).then_some(dc)
            ]
        })
        .save(gates)
        .save(c)
        .save(&acts)
    };
    let hc = record_with_tangent(op, location, &[gates, c], value, make_backward, |ctx| {
        tangent_recorded(gates, c, (ctx.tangent(0), ctx.tangent(1)), hidden)
    });
    Ok((narrow(&hc, 1, 0, hidden)?, narrow(&hc, 1, hidden, hidden)?))
}
