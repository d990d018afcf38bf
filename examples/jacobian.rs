//! Jacobians and Hessians with the function transforms of `tapegrad::ops::func`: the
//! Jacobian of a function with broadcasting and reductions (by rows and by columns, checked
//! against each other), a directional derivative by forward mode with dual tensors, the
//! Hessian of a small network's loss with respect to its weights, and a Hessian-vector
//! product that never forms the Hessian, by reverse-over-reverse and forward-over-reverse.
//!
//! Run it with `cargo run --release --example jacobian`.

use tapegrad::forward_ad::{dual_level, make_dual, unpack_dual};
use tapegrad::ops::func::{self, Strategy};
use tapegrad::prelude::*;

/// `f(x [2, 3], y [3]) -> [3]`: a broadcast product, a tanh and a sum over rows.
fn f(t: &[Tensor]) -> Tensor {
    (&t[0] * &t[1]).tanh().sum_dim(0, false)
}

/// The largest differences: between the Jacobians built by rows and by columns (and a
/// dual tensor's tangent against the Jacobian times its direction), and between the
/// Hessian times `v` and the Hessian-vector products.
pub fn run(verbose: bool) -> (f64, f64) {
    manual_seed(4);
    let x = Tensor::randn_dtype(&[2, 3], DType::F64);
    let y = Tensor::randn_dtype(&[3], DType::F64);
    let rows = func::jacobian(f, &[x.clone(), y.clone()], Strategy::Reverse); // 3 sweeps
    // 9 forward passes in forward mode, one per input element.
    let columns = func::jacobian(f, &[x.clone(), y.clone()], Strategy::Forward);
    let mut jacobian_gap =
        rows.iter().zip(&columns).map(|(a, b)| (a - b).abs().max().item()).fold(0.0, f64::max);

    // Forward mode by hand: x carries a direction, and one pass gives df/dx along it.
    let direction = Tensor::randn_dtype(&[2, 3], DType::F64);
    let along = {
        let _level = dual_level();
        unpack_dual(&f(&[make_dual(&x, &direction), y.clone()])).tangent.unwrap()
    };
    let from_rows = rows[0].reshape(&[3, 6]).matmul(&direction.reshape(&[6]));
    jacobian_gap = jacobian_gap.max((&along - &from_rows).abs().max().item());
    if verbose {
        println!("df/dx has shape {:?} (output ++ input):\n{}", rows[0].shape(), rows[0]);
        println!("df/dy:\n{}", rows[1]);
        println!("df/dx along a direction, in one forward pass with a dual tensor: {along}");
        println!("rows, columns and the dual tensor agree to {jacobian_gap:.1e}\n");
    }

    // The loss of a one-hidden-layer network as a function of its two weight matrices.
    let inputs = Tensor::randn_dtype(&[8, 3], DType::F64);
    let targets = Tensor::randn_dtype(&[8, 1], DType::F64);
    let loss = |w: &[Tensor]| {
        (&inputs.matmul(&w[0].t()).tanh().matmul(&w[1].t()) - &targets).square().mean()
    };
    let weights =
        [Tensor::randn_dtype(&[4, 3], DType::F64), Tensor::randn_dtype(&[1, 4], DType::F64)];
    let h = func::hessian(loss, &weights);
    let v = [Tensor::randn_dtype(&[4, 3], DType::F64), Tensor::randn_dtype(&[1, 4], DType::F64)];
    let (_, hv) = func::hvp(loss, &weights, &v);
    // H v from the blocks, to compare.
    let flat = |t: &Tensor| t.reshape(&[-1]);
    let block = |i: usize, j: usize| {
        h[i][j].reshape(&[weights[i].numel() as isize, weights[j].numel() as isize])
    };
    // Forward over reverse: the gradient, taken with create_graph inside a dual level,
    // carries H v as its tangent.
    let hv_forward: Vec<Tensor> = {
        let _level = dual_level();
        let duals: Vec<Tensor> = weights
            .iter()
            .zip(&v)
            .map(|(w, v)| make_dual(&w.detach().requires_grad(), v))
            .collect();
        let options = GradOptions::new().create_graph(true);
        grad(&[&loss(&duals)], &[&duals[0], &duals[1]], options)
            .iter()
            .map(|g| unpack_dual(g.as_ref().unwrap()).tangent.unwrap().detach())
            .collect()
    };
    let hessian_gap = (0..2)
        .map(|i| {
            let from_blocks = &block(i, 0).matmul(&flat(&v[0])) + &block(i, 1).matmul(&flat(&v[1]));
            let by_hvp = (&from_blocks - &flat(&hv[i])).abs().max().item();
            by_hvp.max((&from_blocks - &flat(&hv_forward[i])).abs().max().item())
        })
        .fold(0.0, f64::max);
    if verbose {
        println!(
            "the loss's Hessian blocks: {:?} {:?} / {:?} {:?}",
            h[0][0].shape(),
            h[0][1].shape(),
            h[1][0].shape(),
            h[1][1].shape()
        );
        println!("d2 loss / dW2 dW2 =\n{}", h[1][1].reshape(&[4, 4]));
        println!(
            "H v from the blocks, from hvp (two sweeps, no Hessian) and forward over reverse \
             (one sweep carrying tangents) agree to {hessian_gap:.1e}"
        );
    }
    (jacobian_gap, hessian_gap)
}

#[allow(dead_code)]
fn main() {
    run(true);
}
