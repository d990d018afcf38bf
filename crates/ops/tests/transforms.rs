//! The function transforms (`tapegrad_ops::func`) against central differences and against
//! each other, on random f64 inputs to compositions with broadcasting and reductions.

use proptest::prelude::*;
use tapegrad_ops::func;
use tapegrad_ops::prelude::*;
use tapegrad_tape::testing::tensor_f64;
use tapegrad_tape::{DType, GradOptions, Tensor, grad, no_grad};

/// `f(x [2, 3], y [3]) -> [3]`: a broadcast product, a tanh, a reduction over rows and a
/// mean over columns broadcast back.
fn f(t: &[Tensor]) -> Tensor {
    let (x, y) = (&t[0], &t[1]);
    &(x * y).tanh().sum_dim(0, false) + &x.exp().mean_dim(1, true).sum_dim(0, false)
}

/// A scalar: `sum(sin(x) * y^2) + (x . x)^2`.
fn scalar(t: &[Tensor]) -> Tensor {
    let (x, y) = (&t[0], &t[1]);
    &(&x.sin() * &y.square()).sum() + &x.square().sum().square()
}

/// The Jacobian of `f` with respect to input `i` by central differences, `[out.., in..]`.
fn numerical(f: impl Fn(&[Tensor]) -> Tensor, inputs: &[Tensor], i: usize) -> Vec<f64> {
    let eps = 1e-6;
    let out_n = f(inputs).numel();
    let n = inputs[i].numel();
    let base = inputs[i].to_vec::<f64>();
    let mut j = vec![0.0; out_n * n];
    for k in 0..n {
        let eval = |delta: f64| {
            let mut v = base.clone();
            v[k] += delta;
            let mut xs = inputs.to_vec();
            xs[i] = Tensor::from_vec(v, inputs[i].shape());
            f(&xs).to_vec::<f64>()
        };
        let (plus, minus) = (eval(eps), eval(-eps));
        for o in 0..out_n {
            j[o * n + k] = (plus[o] - minus[o]) / (2.0 * eps);
        }
    }
    j
}

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs()))
}

fn inputs() -> impl Strategy<Value = Vec<Tensor>> {
    (tensor_f64(Just(vec![2, 3]), -1.5..1.5), tensor_f64(Just(vec![3]), -1.5..1.5))
        .prop_map(|(x, y)| vec![x.detach(), y.detach()])
}

/// One step of a random program: an op on earlier values `a` and `b` (indices taken modulo
/// the values so far), each giving a `[2, 3]` tensor.
fn step(op: u8, a: &Tensor, b: &Tensor) -> Tensor {
    match op % 18 {
        0 => a.tanh(),
        1 => a.sin(),
        2 => a.sigmoid(),
        3 => a * b,
        4 => a + b,
        5 => a - b,
        6 => a / &b.square().add_scalar(1.0),
        7 => a.softmax(1),
        8 => a.log_softmax(0),
        9 => a + &b.sum_dim(1, true),
        10 => a.matmul(&b.t()).matmul(a).mul_scalar(0.1),
        11 => a.cumsum(1),
        12 => tapegrad_ops::cat(&[a, b], 0).narrow(0, 1, 2),
        13 => a.transpose(0, 1).contiguous().reshape(&[2, 3]),
        14 => a.square().add_scalar(0.5).pow(&b.tanh()),
        15 => a.gelu(),
        16 => &a.logsumexp(1, true) * b,
        _ => &a.tanh().exp().mean_dim(0, true) * b,
    }
}

/// A random composition of ops on `x [2, 3]` and `y [3]` (broadcast): each step applies
/// one op to two earlier values; the result is the last value.
fn program(steps: &[(u8, usize, usize)]) -> impl Fn(&[Tensor]) -> Tensor + '_ {
    move |t: &[Tensor]| {
        let mut values = vec![t[0].clone(), t[1].broadcast_to(&[2, 3])];
        for &(op, a, b) in steps {
            let (a, b) = (&values[a % values.len()], &values[b % values.len()]);
            let next = step(op, a, b);
            values.push(next);
        }
        values.pop().expect("two values at least")
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Forward mode (jvp) against reverse mode (the Jacobian by rows, times v) and central
    /// differences, on random programs.
    #[test]
    fn forward_mode_matches_reverse_mode_on_random_compositions(
        steps in proptest::collection::vec((any::<u8>(), any::<usize>(), any::<usize>()), 1..8),
        xs in inputs(),
        v0 in tensor_f64(Just(vec![2, 3]), -1.0..1.0),
        v1 in tensor_f64(Just(vec![3]), -1.0..1.0),
    ) {
        let f = program(&steps);
        let (y, jv) = func::jvp(&f, &xs, &[v0.clone(), v1.clone()]);
        let j = func::jacrev(&f, &xs);
        let want = &j[0].reshape(&[6, 6]).matmul(&v0.reshape(&[6])) + &j[1].reshape(&[6, 3]).matmul(&v1);
        prop_assert!(close(&jv.reshape(&[6]).to_vec::<f64>(), &want.to_vec::<f64>(), 1e-10));
        // Central differences along v.
        let h = 1e-6;
        let at = |s: f64| f(&[&xs[0] + &(&v0 * (s * h)), &xs[1] + &(&v1 * (s * h))]).to_vec::<f64>();
        let (plus, minus) = (at(1.0), at(-1.0));
        let numeric: Vec<f64> = plus.iter().zip(&minus).map(|(p, m)| (p - m) / (2.0 * h)).collect();
        prop_assert!(close(&jv.to_vec::<f64>(), &numeric, 1e-5), "{:?} vs {:?}", jv.to_vec::<f64>(), numeric);
        prop_assert_eq!(y.to_vec::<f64>(), f(&xs).to_vec::<f64>());
    }

    #[test]
    fn jacobians_match_central_differences_and_each_other(xs in inputs()) {
        let rev = func::jacrev(f, &xs);
        let fwd = func::jacfwd(f, &xs);
        for i in 0..2 {
            let want = numerical(f, &xs, i);
            prop_assert_eq!(rev[i].shape(), &[&[3][..], xs[i].shape()].concat()[..]);
            prop_assert!(close(&rev[i].to_vec::<f64>(), &want, 1e-6));
            prop_assert!(close(&fwd[i].to_vec::<f64>(), &rev[i].to_vec::<f64>(), 1e-12));
        }
        let auto = func::jacobian(f, &xs, func::Strategy::Auto); // 3 outputs, 9 inputs: reverse
        prop_assert_eq!(auto[0].to_vec::<f64>(), rev[0].to_vec::<f64>());
    }

    #[test]
    fn jvp_and_vjp_are_the_jacobian_times_a_vector(
        xs in inputs(),
        u in tensor_f64(Just(vec![3]), -1.0..1.0),
        v0 in tensor_f64(Just(vec![2, 3]), -1.0..1.0),
        v1 in tensor_f64(Just(vec![3]), -1.0..1.0),
    ) {
        let j = func::jacrev(f, &xs);
        let (j0, j1) = (j[0].reshape(&[3, 6]), j[1].clone());
        // J v = J0 v0 + J1 v1.
        let (_, jv) = func::jvp(f, &xs, &[v0.clone(), v1.clone()]);
        let want = &j0.matmul(&v0.reshape(&[6])) + &j1.matmul(&v1);
        prop_assert!(close(&jv.to_vec::<f64>(), &want.to_vec::<f64>(), 1e-12));
        // u^T J, per input.
        let (_, g) = func::vjp(f, &xs, &u);
        prop_assert!(close(&g[0].to_vec::<f64>(), &u.matmul(&j0).to_vec::<f64>(), 1e-12));
        prop_assert!(close(&g[1].to_vec::<f64>(), &u.matmul(&j1).to_vec::<f64>(), 1e-12));
    }

    #[test]
    fn hvp_is_the_hessian_times_a_vector(
        xs in inputs(),
        v0 in tensor_f64(Just(vec![2, 3]), -1.0..1.0),
        v1 in tensor_f64(Just(vec![3]), -1.0..1.0),
    ) {
        let h = func::hessian(scalar, &xs);
        let (_, hv) = func::hvp(scalar, &xs, &[v0.clone(), v1.clone()]);
        let v = [v0.reshape(&[6]), v1.clone()];
        let block = |i: usize, j: usize| h[i][j].reshape(&[xs[i].numel() as isize, xs[j].numel() as isize]);
        for i in 0..2 {
            let want = &block(i, 0).matmul(&v[0]) + &block(i, 1).matmul(&v[1]);
            prop_assert!(close(&hv[i].reshape(&[-1]).to_vec::<f64>(), &want.to_vec::<f64>(), 1e-10));
            // The Hessian is the Jacobian of the gradient, checked by central differences.
            let gradient = |t: &[Tensor]| {
                let (_, g) = func::vjp(scalar, t, &Tensor::ones_dtype(&[], DType::F64));
                g[i].clone()
            };
            let want = numerical(gradient, &xs, i);
            prop_assert!(close(&h[i][i].to_vec::<f64>(), &want, 1e-6));
        }
        // Symmetric.
        let (h01, h10) = (block(0, 1), block(1, 0));
        prop_assert!(close(&h01.to_vec::<f64>(), &h10.t().contiguous().to_vec::<f64>(), 1e-10));
    }
}

#[test]
fn transforms_work_under_no_grad() {
    let x = Tensor::from_vec(vec![0.5f64, -1.0], &[2]);
    let _no_grad = no_grad();
    let j = func::jacrev(|t| t[0].exp(), std::slice::from_ref(&x));
    assert_eq!(j[0].to_vec::<f64>(), vec![0.5f64.exp(), 0.0, 0.0, (-1.0f64).exp()]);
    let (_, hv) = func::hvp(|t| t[0].exp().sum(), &[x], &[Tensor::ones_dtype(&[2], DType::F64)]);
    assert_eq!(hv[0].to_vec::<f64>(), vec![0.5f64.exp(), (-1.0f64).exp()]);
    assert!(!hv[0].tracks_grad());
}

/// The Hessian of a function that itself takes a gradient: `f(x) = |∇g(x)|²` with
/// `g(x) = Σ x³`, so `∇g = 3x²`, `f = Σ 9x⁴` and `H = diag(108 x²)`.
#[test]
fn transforms_compose_with_grad_inside_the_function() {
    let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
    let f = |t: &[Tensor]| {
        let g = t[0].pow(3.0).sum();
        let dg = grad(&[&g], &[&t[0]], GradOptions::new().create_graph(true)).remove(0).unwrap();
        dg.square().sum()
    };
    let h = func::hessian(f, &[x]);
    assert_eq!(h[0][0].to_vec::<f64>(), vec![108.0, 0.0, 0.0, 432.0]);
}

/// A transform of a tracked input is recorded, so it can be differentiated again: the
/// gradient of a vjp.
#[test]
fn results_on_tracked_inputs_are_differentiable() {
    let x = Tensor::from_vec(vec![3.0f64], &[1]).requires_grad();
    let (_, g) = func::vjp(
        |t| t[0].pow(3.0),
        std::slice::from_ref(&x),
        &Tensor::ones_dtype(&[1], DType::F64),
    );
    assert!(g[0].tracks_grad());
    g[0].sum().backward(); // d(3x^2)/dx = 6x
    assert_eq!(x.grad().unwrap().item(), 18.0);
}

/// The Hessian of a small network's loss with respect to both weight matrices, against
/// PyTorch's `torch.func.hessian` (tests/fixtures/torch_hessian.json, written by
/// tools/torch_func_reference.py).
#[test]
fn a_network_loss_hessian_matches_torch_func() {
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/torch_hessian.json")).unwrap();
    let tensor = |v: &serde_json::Value| {
        let shape: Vec<usize> =
            v["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        let data: Vec<f64> =
            v["data"].as_array().unwrap().iter().map(|d| d.as_f64().unwrap()).collect();
        Tensor::from_vec(data, &shape)
    };
    let (x, y) = (tensor(&fixture["x"]), tensor(&fixture["y"]));
    let loss = |w: &[Tensor]| (&x.matmul(&w[0].t()).tanh().matmul(&w[1].t()) - &y).square().mean();
    let weights = [tensor(&fixture["w1"]), tensor(&fixture["w2"])];
    assert!((loss(&weights).item() - fixture["loss"].as_f64().unwrap()).abs() < 1e-14);
    let h = func::hessian(loss, &weights);
    for i in 0..2 {
        for j in 0..2 {
            let want = tensor(&fixture["hessian"][i][j]);
            assert_eq!(h[i][j].shape(), want.shape(), "block ({i}, {j})");
            assert!(
                close(&h[i][j].to_vec::<f64>(), &want.to_vec::<f64>(), 1e-12),
                "block ({i}, {j})"
            );
        }
    }
}
