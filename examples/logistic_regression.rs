//! Logistic regression: separate two Gaussian clouds in the plane with a single linear
//! layer, a sigmoid and binary cross-entropy on logits, trained by SGD with momentum.
//!
//! Run it with `cargo run --release --example logistic_regression`.

use tapegrad::nn::{Forward, Linear, Module, Optimizer, metrics};
use tapegrad::prelude::*;

/// Training accuracy and the loss at the start and end.
pub struct Outcome {
    pub first_loss: f64,
    pub last_loss: f64,
    pub accuracy: f64,
}

pub fn run(steps: usize, verbose: bool) -> Outcome {
    manual_seed(4);
    let n = 200;
    // Class 0 around (-1, -1), class 1 around (1, 1).
    let labels: Vec<f32> = (0..n).map(|i| (i % 2) as f32).collect();
    let centers: Vec<f32> = labels.iter().flat_map(|&y| [2.0 * y - 1.0, 2.0 * y - 1.0]).collect();
    let x = &Tensor::from_vec(centers, &[n, 2]) + &(Tensor::randn(&[n, 2]) * 0.7);
    let y = Tensor::from_vec(labels, &[n, 1]);
    let model = Linear::new(2, 1);
    let mut opt = SGD::new(model.parameters(), 0.1).momentum(0.9);
    let mut outcome = Outcome { first_loss: 0.0, last_loss: 0.0, accuracy: 0.0 };
    for step in 0..=steps {
        let logits = model.forward(&x);
        let loss = F::binary_cross_entropy_with_logits(&logits, &y);
        opt.zero_grad();
        loss.backward();
        opt.step();
        if step == 0 {
            outcome.first_loss = loss.item();
        }
        outcome.last_loss = loss.item();
        if verbose && step % 20 == 0 {
            println!("step {step:>4}  loss {:.4}", loss.item());
        }
    }
    let probs = model.forward(&x).sigmoid();
    let two_class = cat(&[&probs.rsub_scalar(1.0), &probs], 1);
    outcome.accuracy = metrics::accuracy(&two_class, &y.reshape(&[-1]).to_dtype(DType::I64));
    if verbose {
        println!("weights {}  bias {}", model.weight, model.bias.as_ref().expect("bias"));
        println!("training accuracy {:.1}%", 100.0 * outcome.accuracy);
    }
    outcome
}

#[allow(dead_code)]
fn main() {
    run(200, true);
}
