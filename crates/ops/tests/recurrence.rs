//! The fused LSTM, GRU and Elman recurrences against the same recurrences composed step by
//! step (from `lstm_gates`, and from PyTorch's formulas), on a batch large enough to be
//! split among threads: values, gradients, and second derivatives of the GRU's and the
//! Elman RNN's.

use tapegrad_ops::functional::{
    gru_recurrence, linear, lstm_gates, lstm_recurrence, rnn_relu_recurrence, rnn_tanh_recurrence,
};
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

/// The GRU recurrence written as a user would, PyTorch's formulas step by step.
fn gru_composed(inputs: &[Tensor]) -> (Tensor, Tensor) {
    let (xi, w_hh, b_hh) = (&inputs[0], &inputs[2], &inputs[3]);
    let mut h = inputs[1].clone();
    let hidden = h.shape()[1];
    let mut outs = Vec::new();
    for t in 0..xi.shape()[0] {
        let x = xi.select(0, t as isize).split(hidden, 1);
        let g = linear(&h, w_hh, Some(b_hh)).split(hidden, 1);
        let r = (&x[0] + &g[0]).sigmoid();
        let z = (&x[1] + &g[1]).sigmoid();
        let n = (&x[2] + &(&r * &g[2])).tanh();
        h = &(&z.rsub_scalar(1.0) * &n) + &(&z * &h);
        outs.push(h.clone());
    }
    let refs: Vec<&Tensor> = outs.iter().collect();
    (tapegrad_ops::stack(&refs, 0), h)
}

fn gru_inputs(dtype: DType, (steps, batch, hidden): (usize, usize, usize)) -> Vec<Tensor> {
    manual_seed(7);
    let r = |shape: &[usize], scale: f64| {
        (Tensor::randn_dtype(shape, dtype) * scale).detach().requires_grad()
    };
    vec![
        r(&[steps, batch, 3 * hidden], 1.0),
        r(&[batch, hidden], 0.5),
        r(&[3 * hidden, hidden], 0.3),
        r(&[3 * hidden], 0.1),
    ]
}

/// A loss that weighs every output differently, and the final state.
fn gru_loss((out, h): &(Tensor, Tensor)) -> Tensor {
    let n = out.numel();
    let w = Tensor::arange_dtype(0.0, n as f64, 1.0, out.dtype()).reshape(&[-1]);
    &(&out.reshape(&[-1]) * &w.div_scalar(n as f64)).sum() + &h.square().sum()
}

fn gru_check(dtype: DType, shape: (usize, usize, usize), tol: f64) {
    let xs = gru_inputs(dtype, shape);
    let fused = gru_recurrence(&xs[0], &xs[1], &xs[2], &xs[3]);
    let steps = gru_composed(&xs);
    for (a, b) in [(&fused.0, &steps.0), (&fused.1, &steps.1)] {
        assert_eq!(a.shape(), b.shape());
        assert!(max_gap(a, b) < tol, "values differ by {}", max_gap(a, b));
    }
    let wrt: Vec<&Tensor> = xs.iter().collect();
    let g_fused = grad(&[&gru_loss(&fused)], &wrt, GradOptions::new());
    let g_steps = grad(&[&gru_loss(&steps)], &wrt, GradOptions::new());
    for (i, (a, b)) in g_fused.iter().zip(&g_steps).enumerate() {
        let (a, b) = (a.as_ref().unwrap(), b.as_ref().unwrap());
        let scale = 1.0 + b.abs().max().item();
        assert!(max_gap(a, b) < tol * scale, "input {i}: gradients differ by {}", max_gap(a, b));
    }
}

#[test]
fn the_fused_gru_equals_the_composed_one_in_f64() {
    // 40 rows: split into blocks among the threads.
    gru_check(DType::F64, (7, 40, 16), 1e-12);
}

#[test]
fn the_fused_gru_equals_the_composed_one_in_f32() {
    gru_check(DType::F32, (7, 40, 16), 1e-5);
}

#[test]
fn the_fused_gru_has_the_composed_second_derivatives() {
    // The gradient's own gradient (through the composed backward rule) against the
    // composed recurrence's, for every input.
    let xs = gru_inputs(DType::F64, (4, 3, 5));
    let wrt: Vec<&Tensor> = xs.iter().collect();
    let second = |run: &dyn Fn(&[Tensor]) -> (Tensor, Tensor)| {
        let g = grad(&[&gru_loss(&run(&xs))], &wrt, GradOptions::new().create_graph(true));
        let total = g.iter().map(|g| g.as_ref().unwrap().square().sum()).reduce(|a, b| &a + &b);
        grad(&[&total.unwrap()], &wrt, GradOptions::new())
    };
    let fused = second(&|xs| gru_recurrence(&xs[0], &xs[1], &xs[2], &xs[3]));
    let steps = second(&gru_composed);
    for (i, (a, b)) in fused.iter().zip(&steps).enumerate() {
        let (a, b) = (a.as_ref().unwrap(), b.as_ref().unwrap());
        assert!(
            max_gap(a, b) < 1e-10 * (1.0 + b.abs().max().item()),
            "input {i}: {}",
            max_gap(a, b)
        );
    }
}

#[test]
fn an_empty_gru_sequence_returns_the_initial_state() {
    let xs = gru_inputs(DType::F64, (0, 3, 2));
    let (out, h) = gru_recurrence(&xs[0], &xs[1], &xs[2], &xs[3]);
    assert_eq!(out.shape(), &[0, 3, 2]);
    assert_eq!(h.to_vec::<f64>(), xs[1].to_vec::<f64>());
}

type Recurrence = fn(&[Tensor]) -> (Tensor, Tensor);

fn rnn_tanh(xs: &[Tensor]) -> (Tensor, Tensor) {
    rnn_tanh_recurrence(&xs[0], &xs[1], &xs[2], &xs[3])
}

fn rnn_relu(xs: &[Tensor]) -> (Tensor, Tensor) {
    rnn_relu_recurrence(&xs[0], &xs[1], &xs[2], &xs[3])
}

/// The Elman recurrence step by step with `linear` and the activation's op.
fn elman_composed(xs: &[Tensor], relu: bool) -> (Tensor, Tensor) {
    let mut h = xs[1].clone();
    let mut outs = Vec::new();
    for t in 0..xs[0].shape()[0] {
        let a = &xs[0].select(0, t as isize) + &linear(&h, &xs[2], Some(&xs[3]));
        h = if relu { a.relu() } else { a.tanh() };
        outs.push(h.clone());
    }
    let refs: Vec<&Tensor> = outs.iter().collect();
    (tapegrad_ops::stack(&refs, 0), h)
}

fn elman_inputs(dtype: DType, (steps, batch, hidden): (usize, usize, usize)) -> Vec<Tensor> {
    manual_seed(11);
    let r = |shape: &[usize], scale: f64| {
        (Tensor::randn_dtype(shape, dtype) * scale).detach().requires_grad()
    };
    vec![
        r(&[steps, batch, hidden], 1.0),
        r(&[batch, hidden], 0.5),
        r(&[hidden, hidden], 0.3),
        r(&[hidden], 0.1),
    ]
}

/// Values and gradients of `fused` and `composed` on the same inputs agree within `tol`.
fn agree(
    xs: &[Tensor],
    fused: Recurrence,
    composed: &dyn Fn(&[Tensor]) -> (Tensor, Tensor),
    tol: f64,
) {
    let (a, b) = (fused(xs), composed(xs));
    for (x, y) in [(&a.0, &b.0), (&a.1, &b.1)] {
        assert_eq!(x.shape(), y.shape());
        assert!(max_gap(x, y) < tol, "values differ by {}", max_gap(x, y));
    }
    let wrt: Vec<&Tensor> = xs.iter().collect();
    let ga = grad(&[&gru_loss(&a)], &wrt, GradOptions::new());
    let gb = grad(&[&gru_loss(&b)], &wrt, GradOptions::new());
    for (i, (x, y)) in ga.iter().zip(&gb).enumerate() {
        let (x, y) = (x.as_ref().unwrap(), y.as_ref().unwrap());
        let scale = 1.0 + y.abs().max().item();
        assert!(max_gap(x, y) < tol * scale, "input {i}: gradients differ by {}", max_gap(x, y));
    }
}

#[test]
fn the_fused_elman_recurrences_equal_the_composed_ones() {
    for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
        let xs = elman_inputs(dtype, (9, 40, 16));
        agree(&xs, rnn_tanh, &|xs| elman_composed(xs, false), tol);
        agree(&xs, rnn_relu, &|xs| elman_composed(xs, true), tol);
    }
}

#[test]
fn the_fused_elman_recurrences_have_the_composed_second_derivatives() {
    let xs = elman_inputs(DType::F64, (4, 3, 5));
    let wrt: Vec<&Tensor> = xs.iter().collect();
    let second = |run: &dyn Fn(&[Tensor]) -> (Tensor, Tensor)| {
        let g = grad(&[&gru_loss(&run(&xs))], &wrt, GradOptions::new().create_graph(true));
        let total = g.iter().map(|g| g.as_ref().unwrap().square().sum()).reduce(|a, b| &a + &b);
        grad(&[&total.unwrap()], &wrt, GradOptions::new())
    };
    for (fused, relu) in [(rnn_tanh as Recurrence, false), (rnn_relu, true)] {
        let a = second(&fused);
        let b = second(&|xs| elman_composed(xs, relu));
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            let (x, y) = (x.as_ref().unwrap(), y.as_ref().unwrap());
            assert!(max_gap(x, y) < 1e-10 * (1.0 + y.abs().max().item()), "relu {relu}, input {i}");
        }
    }
}

#[test]
fn relu_recurrences_keep_nan_as_the_relu_op_does() {
    let xs = elman_inputs(DType::F64, (3, 2, 2));
    let mut values = xs[0].to_vec::<f64>();
    values[5] = f64::NAN; // step 1, batch element 0, unit 1
    let mut inputs = xs.clone();
    inputs[0] = Tensor::from_vec(values, xs[0].shape()).requires_grad();
    let (a, b) = (rnn_relu(&inputs), elman_composed(&inputs, true));
    assert!(a.0.to_vec::<f64>()[5].is_nan());
    assert_eq!(
        a.0.to_vec::<f64>().iter().map(|v| v.is_nan()).collect::<Vec<_>>(),
        b.0.to_vec::<f64>().iter().map(|v| v.is_nan()).collect::<Vec<_>>()
    );
}
