//! The fused LSTM recurrence against the same recurrence composed step by step from
//! `lstm_gates`, on a batch large enough to be split among threads: values and gradients.

use tapegrad_ops::functional::{linear, lstm_gates, lstm_recurrence};
use tapegrad_ops::prelude::*;
use tapegrad_tape::{DType, GradOptions, Tensor, grad, manual_seed};

/// The recurrence written as a user would, one `lstm_gates` per step.
fn composed(inputs: &[Tensor]) -> (Tensor, Tensor, Tensor) {
    let (xi, w_hh, b_hh) = (&inputs[0], &inputs[3], &inputs[4]);
    let (mut h, mut c) = (inputs[1].clone(), inputs[2].clone());
    let mut outs = Vec::new();
    for t in 0..xi.shape()[0] {
        let gates = &xi.select(0, t as isize) + &linear(&h, w_hh, Some(b_hh));
        (h, c) = lstm_gates(&gates, &c);
        outs.push(h.clone());
    }
    let refs: Vec<&Tensor> = outs.iter().collect();
    (tapegrad_ops::stack(&refs, 0), h, c)
}

fn inputs(dtype: DType, (steps, batch, hidden): (usize, usize, usize)) -> Vec<Tensor> {
    manual_seed(5);
    let r = |shape: &[usize], scale: f64| {
        (Tensor::randn_dtype(shape, dtype) * scale).detach().requires_grad()
    };
    vec![
        r(&[steps, batch, 4 * hidden], 1.0),
        r(&[batch, hidden], 0.5),
        r(&[batch, hidden], 0.5),
        r(&[4 * hidden, hidden], 0.3),
        r(&[4 * hidden], 0.1),
    ]
}

fn max_gap(a: &Tensor, b: &Tensor) -> f64 {
    (&a.to_dtype(DType::F64) - &b.to_dtype(DType::F64)).abs().max().item()
}

fn check(dtype: DType, tol: f64) {
    let xs = inputs(dtype, (7, 40, 16));
    let (out, h, c) = lstm_recurrence(&xs[0], &xs[1], &xs[2], &xs[3], &xs[4]);
    let (out2, h2, c2) = composed(&xs);
    for (a, b) in [(&out, &out2), (&h, &h2), (&c, &c2)] {
        assert!(max_gap(a, b) < tol, "values differ by {}", max_gap(a, b));
    }
    // A loss that weighs every output differently.
    let loss = |(out, h, c): &(Tensor, Tensor, Tensor)| {
        let w = Tensor::arange_dtype(0.0, out.numel() as f64, 1.0, dtype).reshape(&[7, 40, 16]);
        &(&(out * &w.div_scalar(out.numel() as f64)).sum() + &h.sum()) + &c.square().sum()
    };
    let wrt: Vec<&Tensor> = xs.iter().collect();
    let fused = grad(&[&loss(&(out, h, c))], &wrt, GradOptions::new());
    let steps = grad(&[&loss(&(out2, h2, c2))], &wrt, GradOptions::new());
    for (i, (a, b)) in fused.iter().zip(&steps).enumerate() {
        let (a, b) = (a.as_ref().unwrap(), b.as_ref().unwrap());
        let scale = 1.0 + b.abs().max().item();
        assert!(max_gap(a, b) < tol * scale, "input {i}: gradients differ by {}", max_gap(a, b));
    }
}

#[test]
fn the_fused_recurrence_equals_the_composed_one_in_f64() {
    check(DType::F64, 1e-12);
}

#[test]
fn the_fused_recurrence_equals_the_composed_one_in_f32() {
    check(DType::F32, 1e-5);
}

#[test]
fn an_empty_sequence_returns_the_initial_state() {
    let xs = inputs(DType::F64, (0, 3, 2));
    let (out, h, c) = lstm_recurrence(&xs[0], &xs[1], &xs[2], &xs[3], &xs[4]);
    assert_eq!(out.shape(), &[0, 3, 2]);
    assert_eq!(
        (h.to_vec::<f64>(), c.to_vec::<f64>()),
        (xs[1].to_vec::<f64>(), xs[2].to_vec::<f64>())
    );
}
