//! Recurrent cells against PyTorch: the fixture (tests/fixtures/cells.safetensors, from
//! tools/cell_reference.py) holds PyTorch's parameters and inputs, and the states, final
//! states and gradients it computed in float64 when stepping each cell over a short
//! sequence (and a two-layer `nn.RNN` with relu). Each case runs in float64 and float32.

mod common;

use common::{Case, DTYPES, assert_close};
use tapegrad_nn::*;
use tapegrad_ops::{prelude::*, stack};
use tapegrad_tape::Tensor;

const FILE: &str = "cells.safetensors";

/// The parameter `name` of `model`.
fn param(model: &dyn Module, name: &str) -> Tensor {
    model.named_parameters().into_iter().find(|(n, _)| n == name).unwrap().1
}

/// The steps of `x` along its first dimension.
fn steps(x: &Tensor) -> Vec<Tensor> {
    (0..x.shape()[0]).map(|t| x.select(0, t as isize)).collect()
}

fn stacked(states: &[Tensor]) -> Tensor {
    stack(&states.iter().collect::<Vec<_>>(), 0)
}

#[test]
fn lstm_cell_stepped_from_a_given_state_matches_pytorch() {
    let case = Case::new(FILE, "lstm_cell");
    for (dtype, tolerance) in DTYPES {
        let mut cell = LSTMCell::new(4, 5);
        case.load(&mut cell, dtype);
        let (x, h0, c0) =
            (case.input("input", dtype), case.input("h0", dtype), case.input("c0", dtype));
        let (mut h, mut c, mut hs) = (h0.clone(), c0.clone(), vec![]);
        for step in steps(&x) {
            (h, c) = cell.forward_with_state(&step, Some((&h, &c)));
            hs.push(h.clone());
        }
        let out = stacked(&hs);
        assert_close("out", &out, &case.get("expected.out"), tolerance);
        assert_close("c_n", &c, &case.get("expected.c_n"), tolerance);
        case.backward(&out);
        assert_close("input", &x.grad().unwrap(), &case.get("grad.input"), tolerance);
        assert_close("h0", &h0.grad().unwrap(), &case.get("grad.h0"), tolerance);
        assert_close("c0", &c0.grad().unwrap(), &case.get("grad.c0"), tolerance);
        for name in ["weight_hh", "bias_ih"] {
            let g = param(&cell, name).grad().unwrap();
            assert_close(name, &g, &case.get(&format!("grad.{name}")), tolerance);
        }
    }
}

#[test]
fn gru_cell_stepped_from_a_zero_state_matches_pytorch() {
    let case = Case::new(FILE, "gru_cell");
    for (dtype, tolerance) in DTYPES {
        let mut cell = GRUCell::new(4, 5);
        case.load(&mut cell, dtype);
        let x = case.input("input", dtype);
        let mut hs: Vec<Tensor> = vec![];
        for step in steps(&x) {
            hs.push(cell.forward_with_state(&step, hs.last()));
        }
        let out = stacked(&hs);
        assert_close("out", &out, &case.get("expected.out"), tolerance);
        case.backward(&out);
        assert_close("input", &x.grad().unwrap(), &case.get("grad.input"), tolerance);
        for name in ["weight_ih", "bias_hh"] {
            let g = param(&cell, name).grad().unwrap();
            assert_close(name, &g, &case.get(&format!("grad.{name}")), tolerance);
        }
    }
}

#[test]
fn unbatched_relu_rnn_cell_without_bias_matches_pytorch() {
    let case = Case::new(FILE, "rnn_cell");
    for (dtype, tolerance) in DTYPES {
        let mut cell = RNNCell::new(4, 5).no_bias().nonlinearity(Nonlinearity::Relu);
        case.load(&mut cell, dtype);
        let (x, h0) = (case.input("input", dtype), case.input("h0", dtype));
        let (mut h, mut hs) = (h0.clone(), vec![]);
        for step in steps(&x) {
            h = cell.forward_with_state(&step, Some(&h));
            hs.push(h.clone());
        }
        let out = stacked(&hs);
        assert_eq!(out.shape(), &[3, 5]);
        assert_close("out", &out, &case.get("expected.out"), tolerance);
        case.backward(&out);
        assert_close("input", &x.grad().unwrap(), &case.get("grad.input"), tolerance);
        assert_close("h0", &h0.grad().unwrap(), &case.get("grad.h0"), tolerance);
        let g = param(&cell, "weight_hh").grad().unwrap();
        assert_close("weight_hh", &g, &case.get("grad.weight_hh"), tolerance);
    }
}

#[test]
fn two_layer_relu_rnn_matches_pytorch() {
    let case = Case::new(FILE, "rnn_relu");
    for (dtype, tolerance) in DTYPES {
        let mut rnn = RNN::new(4, 5, 2).nonlinearity(Nonlinearity::Relu);
        case.load(&mut rnn, dtype);
        let x = case.input("input", dtype);
        let (out, h) = rnn.forward_with_state(&x, None);
        assert_close("out", &out, &case.get("expected.out"), tolerance);
        assert_close("h_n", &h, &case.get("expected.h_n"), tolerance);
        case.backward(&out);
        assert_close("input", &x.grad().unwrap(), &case.get("grad.input"), tolerance);
        let g = param(&rnn, "weight_ih_l1").grad().unwrap();
        assert_close("weight_ih_l1", &g, &case.get("grad.weight_ih_l1"), tolerance);
    }
}

#[test]
fn cells_name_the_shape_they_were_given() {
    let message = |f: Box<dyn FnOnce() + std::panic::UnwindSafe>| {
        let err = std::panic::catch_unwind(f).unwrap_err();
        err.downcast_ref::<String>().cloned().unwrap_or_default()
    };
    let text = message(Box::new(|| {
        GRUCell::new(4, 5).forward(&Tensor::zeros(&[2, 3]));
    }));
    assert!(text.contains("GRUCell: input has shape [2, 3], expected [batch, 4] or [4]"), "{text}");
    let text = message(Box::new(|| {
        let h = Tensor::zeros(&[3, 5]);
        LSTMCell::new(4, 5).forward_with_state(&Tensor::zeros(&[2, 4]), Some((&h, &h)));
    }));
    assert!(text.contains("LSTMCell: h has shape [3, 5], expected [2, 5]"), "{text}");
    let text = message(Box::new(|| {
        RNNCell::new(4, 5).forward_with_state(&Tensor::zeros(&[4]), Some(&Tensor::zeros(&[1, 5])));
    }));
    assert!(text.contains("RNNCell: h has shape [1, 5], expected [5]"), "{text}");
}
