//! Bidirectional recurrent layers against PyTorch: the fixture
//! (tests/fixtures/bidirectional.safetensors, from tools/recurrent_reference.py) holds
//! PyTorch's parameters and inputs and the outputs, final states and gradients it computed
//! in float64. Each case runs in float64 and in float32.

mod common;

use common::{Case, DTYPES, assert_close};
use tapegrad_nn::*;
use tapegrad_tape::Tensor;

const FILE: &str = "bidirectional.safetensors";

#[test]
fn two_layer_bidirectional_lstm_with_a_given_state_matches_pytorch() {
    let case = Case::new(FILE, "lstm");
    for (dtype, tolerance) in DTYPES {
        let mut lstm = LSTM::new(4, 5, 2).bidirectional(true).batch_first(true);
        case.load(&mut lstm, dtype);
        let (x, h0, c0) =
            (case.input("input", dtype), case.input("h0", dtype), case.input("c0", dtype));
        let (out, (h, c)) = lstm.forward_with_state(&x, Some((&h0, &c0)));
        assert_close("out", &out, &case.get("expected.out"), tolerance);
        assert_close("h_n", &h, &case.get("expected.h_n"), tolerance);
        assert_close("c_n", &c, &case.get("expected.c_n"), tolerance);
        case.backward(&out);
        assert_close("input", &x.grad().unwrap(), &case.get("grad.input"), tolerance);
        assert_close("h0", &h0.grad().unwrap(), &case.get("grad.h0"), tolerance);
        let w = &lstm
            .named_parameters()
            .into_iter()
            .find(|(n, _)| n == "weight_ih_l1_reverse")
            .unwrap()
            .1;
        assert_close(
            "weight_ih_l1_reverse",
            &w.grad().unwrap(),
            &case.get("grad.weight_ih_l1_reverse"),
            tolerance,
        );
    }
}

#[test]
fn two_layer_bidirectional_gru_matches_pytorch() {
    let case = Case::new(FILE, "gru");
    for (dtype, tolerance) in DTYPES {
        let mut gru = GRU::new(4, 5, 2).bidirectional(true);
        case.load(&mut gru, dtype);
        let x = case.input("input", dtype);
        let (out, h) = gru.forward_with_state(&x, None);
        assert_close("out", &out, &case.get("expected.out"), tolerance);
        assert_close("h_n", &h, &case.get("expected.h_n"), tolerance);
        case.backward(&out);
        assert_close("input", &x.grad().unwrap(), &case.get("grad.input"), tolerance);
        let w = &gru
            .named_parameters()
            .into_iter()
            .find(|(n, _)| n == "weight_hh_l0_reverse")
            .unwrap()
            .1;
        assert_close(
            "weight_hh_l0_reverse",
            &w.grad().unwrap(),
            &case.get("grad.weight_hh_l0_reverse"),
            tolerance,
        );
    }
}

#[test]
fn bidirectional_rnn_matches_pytorch() {
    let case = Case::new(FILE, "rnn");
    for (dtype, tolerance) in DTYPES {
        let mut rnn = RNN::new(4, 5, 1).bidirectional(true);
        case.load(&mut rnn, dtype);
        let x = case.input("input", dtype);
        let (out, h) = rnn.forward_with_state(&x, None);
        assert_close("out", &out, &case.get("expected.out"), tolerance);
        assert_close("h_n", &h, &case.get("expected.h_n"), tolerance);
        case.backward(&out);
        assert_close("input", &x.grad().unwrap(), &case.get("grad.input"), tolerance);
    }
}

#[test]
fn dropout_between_layers_only_while_training() {
    let lstm = LSTM::new(3, 4, 2).dropout(0.5);
    let x = Tensor::randn(&[6, 2, 3]);
    lstm.eval();
    let eval = lstm.forward(&x).to_vec::<f32>();
    assert_eq!(eval, lstm.forward(&x).to_vec::<f32>(), "no dropout in eval mode");
    lstm.train();
    let (a, b) = (lstm.forward(&x).to_vec::<f32>(), lstm.forward(&x).to_vec::<f32>());
    assert_ne!(a, b, "training draws new masks");
    assert_ne!(a, eval);
    // One layer has no layer after it: nothing to drop.
    let single = GRU::new(3, 4, 1).dropout(0.5);
    assert_eq!(single.forward(&x).to_vec::<f32>(), single.forward(&x).to_vec::<f32>());
}

#[test]
fn a_state_of_the_wrong_shape_is_named() {
    let gru = GRU::new(3, 4, 2).bidirectional(true);
    let x = Tensor::randn(&[5, 2, 3]);
    let wrong = Tensor::zeros(&[2, 2, 4]); // two layers, but two directions each: [4, 2, 4]
    let run = std::panic::AssertUnwindSafe(|| gru.forward_with_state(&x, Some(&wrong)));
    let message = std::panic::catch_unwind(run).unwrap_err().downcast::<String>().unwrap();
    assert!(message.contains("h0 has shape [2, 2, 4], expected [4, 2, 4]"), "{message}");
}
