//! Gradients of gradients: a Hessian-vector product without forming the Hessian, checked
//! against finite differences, and a gradient penalty (as in WGAN-GP) trained through
//! `create_graph`.
//!
//! Run it with `cargo run --release --example higher_order`.

use tapegrad::nn::{Forward, Linear, Module, Optimizer, ReLU, Sequential};
use tapegrad::prelude::*;

/// f(x) = sum(tanh(W x)^2) for a fixed W.
fn f(w: &Tensor, x: &Tensor) -> Tensor {
    w.matmul(x).tanh().square().sum()
}

/// The largest difference between the HVP and finite differences, and the gradient
/// penalty's value at the start and end of training.
pub fn run(steps: usize, verbose: bool) -> (f64, f64, f64) {
    manual_seed(8);
    let w = Tensor::randn_dtype(&[5, 4], DType::F64);
    let x = Tensor::randn_dtype(&[4, 1], DType::F64).requires_grad();
    let v = Tensor::randn_dtype(&[4, 1], DType::F64);

    // H v = d/dx (grad f(x) . v): differentiate the gradient, recorded with create_graph.
    let g = grad(&[&f(&w, &x)], &[&x], GradOptions::new().create_graph(true));
    let gv = (g[0].as_ref().expect("x is used") * &v).sum();
    let hv = grad(&[&gv], &[&x], GradOptions::new())[0].clone().expect("x is used");

    // Central differences of the gradient along v.
    let eps = 1e-5;
    let grad_at = |x0: &Tensor| {
        let x0 = x0.detach().requires_grad();
        grad(&[&f(&w, &x0)], &[&x0], GradOptions::new())[0].clone().expect("used")
    };
    let numeric = (&grad_at(&(&x + &(&v * eps))) - &grad_at(&(&x - &(&v * eps)))) / (2.0 * eps);
    let err = (&hv - &numeric).abs().max().item();
    if verbose {
        println!("Hessian-vector product H v = {}", hv.reshape(&[-1]));
        println!("finite differences          {}", numeric.reshape(&[-1]));
        println!("largest difference {err:.2e}\n");
    }

    // Gradient penalty: push the critic's input-gradient norm toward 1.
    let critic = Sequential::new().add(Linear::new(2, 32)).add(ReLU).add(Linear::new(32, 1));
    let mut opt = Adam::new(critic.parameters(), 1e-2);
    let points = Tensor::randn(&[64, 2]);
    let (mut first, mut last) = (0.0, 0.0);
    for step in 0..=steps {
        let input = points.detach().requires_grad();
        let score = critic.forward(&input).sum();
        let dx = grad(&[&score], &[&input], GradOptions::new().create_graph(true))[0]
            .clone()
            .expect("used");
        let penalty = (dx.norm_dim(2.0, 1, false) - 1.0).square().mean();
        opt.zero_grad();
        penalty.backward(); // differentiates through the gradient itself
        opt.step();
        if step == 0 {
            first = penalty.item();
        }
        last = penalty.item();
        if verbose && step % 20 == 0 {
            println!("step {step:>3}  gradient penalty {last:.5}");
        }
    }
    (err, first, last)
}

#[allow(dead_code)]
fn main() {
    run(100, true);
}
