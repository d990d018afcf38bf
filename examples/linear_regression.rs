//! Fits `y = 3x - 2` (plus noise) with a one-feature linear layer and plain SGD, printing the
//! loss as it falls. The smallest complete training loop: forward, loss, backward, step.
//!
//! Run it with `cargo run --release --example linear_regression`.

use tapegrad::prelude::*;

/// The learned slope and intercept, and the loss at the end.
pub fn run(steps: usize, verbose: bool) -> (f64, f64, f64) {
    manual_seed(0);
    let n = 256;
    let x = Tensor::randn(&[n, 1]);
    let noise = Tensor::randn(&[n, 1]) * 0.1;
    let y = &(&x * 3.0 - 2.0) + &noise;

    let model = Linear::new(1, 1);
    let mut opt = SGD::new(model.parameters(), 0.1);
    let mut last = f64::NAN;
    for step in 0..=steps {
        let loss = F::mse_loss(&model.forward(&x), &y);
        opt.zero_grad();
        loss.backward();
        opt.step();
        last = loss.item();
        if verbose && step % 10 == 0 {
            println!("step {step:>4}  loss {last:.6}");
        }
    }
    let w = model.weight.item();
    let b = model.bias.as_ref().expect("Linear::new has a bias").item();
    if verbose {
        println!(
            "learned y = {w:.3} x {} {:.3}   (true: y = 3 x - 2)",
            if b < 0.0 { '-' } else { '+' },
            b.abs()
        );
    }
    (w, b, last)
}

#[allow(dead_code)]
fn main() {
    let steps = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(100);
    run(steps, true);
}
