//! A physics-informed network: `u(x)` is trained so that `u'' + u = 0` on `[0, 2π]` with
//! `u(0) = 0` and `u'(0) = 1`, whose solution is `sin x`. The loss uses the first and
//! second derivatives of the network with respect to its input, taken with `grad` and
//! `create_graph`, so training differentiates through them (third-order terms).
//!
//! Run it with `cargo run --release --example pinn` (`--steps N`).

mod common;

use std::f64::consts::TAU;

use tapegrad::nn::Sequential;
use tapegrad::prelude::*;

/// `u(x)`: 1 -> 32 -> 32 -> 1 with tanh, in f64.
fn network() -> Sequential {
    let mut net = Sequential::new()
        .add(Linear::new(1, 32))
        .add(Tanh)
        .add(Linear::new(32, 32))
        .add(Tanh)
        .add(Linear::new(32, 1));
    net.to_dtype(DType::F64);
    net
}

/// `du/dx` for every point of `x` (each `u` depends on its own `x` only, so the gradient of
/// the sum is the pointwise derivative), kept differentiable.
fn derivative(u: &Tensor, x: &Tensor) -> Tensor {
    grad(&[&u.sum()], &[x], GradOptions::new().create_graph(true)).remove(0).expect("u uses x")
}

/// The largest error of `u` against `sin x` on 201 points of `[0, 2π]`.
fn max_error(net: &Sequential) -> f64 {
    let _no_grad = no_grad();
    let x =
        Tensor::arange_dtype(0.0, 201.0, 1.0, DType::F64).mul_scalar(TAU / 200.0).reshape(&[-1, 1]);
    let u = net.forward(&x);
    (&u - &x.sin()).abs().max().item()
}

/// Trains for `steps` Adam steps and returns the final largest error against `sin x` and
/// the loss at each hundredth step.
pub fn run(steps: usize, verbose: bool) -> (f64, Vec<f64>) {
    manual_seed(3);
    let net = network();
    let mut opt = Adam::new(net.parameters(), 1e-2);
    let mut schedule = CosineAnnealingLR::new(1e-2, steps, 1e-4);
    // Collocation points, fixed; the boundary point x = 0.
    let x = Tensor::arange_dtype(0.0, 64.0, 1.0, DType::F64)
        .mul_scalar(TAU / 63.0)
        .reshape(&[-1, 1])
        .requires_grad();
    let zero = Tensor::zeros_dtype(&[1, 1], DType::F64).requires_grad();
    let mut losses = Vec::new();
    for step in 0..steps {
        let u = net.forward(&x);
        let du = derivative(&u, &x);
        let d2u = derivative(&du, &x);
        let residual = (&d2u + &u).square().mean();
        let u0 = net.forward(&zero);
        let du0 = derivative(&u0, &zero);
        let boundary = &u0.square().sum() + &du0.sub_scalar(1.0).square().sum();
        let loss = &residual + &boundary;
        opt.zero_grad();
        loss.backward();
        opt.step();
        schedule.step(&mut opt);
        if step % 100 == 0 {
            losses.push(loss.item());
            if verbose {
                println!(
                    "step {step:5}  loss {:.3e}  max |u - sin| {:.3e}",
                    loss.item(),
                    max_error(&net)
                );
            }
        }
    }
    let error = max_error(&net);
    if verbose {
        println!("after {steps} steps: max |u(x) - sin x| on [0, 2π] = {error:.2e}");
    }
    (error, losses)
}

#[allow(dead_code)]
fn main() {
    common::check_args(
        "usage: cargo run --release --example pinn -- [--steps N (default 3000)] [--threads N (default 1)]",
        &["--steps", "--threads"],
    );
    let _ = tapegrad::set_num_threads(common::flag("--threads", 1));
    let start = std::time::Instant::now();
    run(common::flag("--steps", 3000), true);
    println!("{:.1} s", start.elapsed().as_secs_f64());
}
