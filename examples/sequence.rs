//! A recurrent net learns a sequence task: given a noisy sine wave, a GRU predicts the
//! next value at every step (batch_first, with a linear read-out of its hidden state).
//!
//! Run it with `cargo run --release --example sequence`.

use tapegrad::nn::{Forward, GRU, Linear, Module, Optimizer};
use tapegrad::prelude::*;

/// Mean squared error of the predictions at the start and end of training.
pub fn run(steps: usize, verbose: bool) -> (f64, f64) {
    manual_seed(2);
    let (batch, len) = (32, 24);
    // Sine waves with random phases and frequencies; inputs are steps 0..len, targets 1..=len.
    let phase = Tensor::rand(&[batch, 1, 1]) * std::f64::consts::TAU;
    let freq = Tensor::rand(&[batch, 1, 1]).mul_scalar(0.3).add_scalar(0.2);
    let t = Tensor::arange(0.0, (len + 1) as f64, 1.0).reshape(&[1, -1, 1]);
    let wave = (&(&t * &freq) + &phase).sin();
    let inputs = &wave.narrow(1, 0, len) + &(Tensor::randn(&[batch, len, 1]) * 0.05);
    let targets = wave.narrow(1, 1, len);

    let gru = GRU::new(1, 32, 1).batch_first(true);
    let head = Linear::new(32, 1);
    let params: Vec<Tensor> = gru.parameters().into_iter().chain(head.parameters()).collect();
    let mut opt = Adam::new(params, 1e-2);
    let (mut first, mut last) = (0.0, 0.0);
    for step in 0..=steps {
        let predictions = head.forward(&gru.forward(&inputs));
        let loss = F::mse_loss(&predictions, &targets);
        opt.zero_grad();
        loss.backward();
        opt.step();
        if step == 0 {
            first = loss.item();
        }
        last = loss.item();
        if verbose && step % 25 == 0 {
            println!("step {step:>4}  next-value MSE {last:.5}");
        }
    }
    if verbose {
        println!(
            "MSE fell from {first:.4} to {last:.5} (predicting 0 everywhere scores about 0.5)"
        );
    }
    (first, last)
}

#[allow(dead_code)]
fn main() {
    run(200, true);
}
