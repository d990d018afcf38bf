//! Every registered op against central differences in f64: first derivatives (gradcheck)
//! and, where they exist, second derivatives (gradgradcheck), over random shapes
//! (broadcasting, size-1 and empty dimensions included) and values. 256 cases per op unless
//! PROPTEST_CASES says otherwise; OP_FILTER=text checks only the ops whose names contain it.

mod common;

use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tapegrad_tape::{GradcheckOptions, Tensor, gradcheck, gradgradcheck};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256)
}

fn check(op: &common::OpCase, sample: common::Sample) -> Result<(), TestCaseError> {
    if common::on_a_kink(op, &sample) {
        return Err(TestCaseError::reject("input on a kink of a piecewise op"));
    }
    let inputs: Vec<Tensor> = sample
        .tensors
        .iter()
        .map(|t| if t.dtype().is_float() { t.detach().requires_grad() } else { t.clone() })
        .collect();
    let ints = sample.ints.clone();
    let call = op.call;
    let f = move |xs: &[Tensor]| call(xs, &ints);
    let opts = GradcheckOptions::default();
    let first = gradcheck(&f, &inputs, &opts).map_err(|e| TestCaseError::fail(e.to_string()))?;
    if !first.passed {
        return Err(TestCaseError::fail(first.to_string()));
    }
    if op.second_order {
        let second =
            gradgradcheck(&f, &inputs, &opts).map_err(|e| TestCaseError::fail(e.to_string()))?;
        if !second.passed {
            return Err(TestCaseError::fail(second.to_string()));
        }
    }
    Ok(())
}

#[test]
fn every_op_matches_central_differences() {
    let mut failures = Vec::new();
    let filter = std::env::var("OP_FILTER").unwrap_or_default();
    for op in common::registry().into_iter().filter(|op| op.name.contains(filter.as_str())) {
        let config = Config { cases: cases(), failure_persistence: None, ..Config::default() };
        let mut runner = TestRunner::new(config);
        if let Err(e) = runner.run(&(op.sample)(), |sample| check(&op, sample)) {
            failures.push(format!("{} ({}): {e}", op.name, op.torch));
        }
    }
    assert!(failures.is_empty(), "{} ops failed:\n{}", failures.len(), failures.join("\n\n"));
}

/// Under `create_graph`, tanh's and sigmoid's rules are one recorded op each, whose own
/// rules are recorded again: their derivatives of every order come out, here the first
/// three against closed forms in the output `y`.
#[test]
fn tanh_and_sigmoid_differentiate_to_the_third_order() {
    use tapegrad_ops::prelude::*;
    use tapegrad_tape::{GradOptions, grad};
    type Closed = fn(f64) -> [f64; 3];
    type Op = fn(&Tensor) -> Tensor;
    let tanh: Closed = |y| {
        let d1 = 1.0 - y * y;
        [d1, -2.0 * y * d1, -2.0 * d1 * (1.0 - 3.0 * y * y)]
    };
    let sigmoid: Closed = |s| {
        let d1 = s * (1.0 - s);
        [d1, d1 * (1.0 - 2.0 * s), d1 * (1.0 - 6.0 * s + 6.0 * s * s)]
    };
    let cases: [(&str, Op, Closed); 2] =
        [("tanh", |x| x.tanh(), tanh), ("sigmoid", |x| x.sigmoid(), sigmoid)];
    for (name, f, closed) in cases {
        let x = Tensor::from_vec(vec![-1.5f64, -0.3, 0.0, 0.7, 2.0], &[5]).requires_grad();
        let y = f(&x);
        let mut derivatives = vec![];
        let mut current = y.clone();
        for order in 0..3 {
            let options = GradOptions::new().create_graph(order < 2);
            let d = grad(&[&current.sum()], &[&x], options)[0].clone().expect("x is used");
            derivatives.push(d.to_vec::<f64>());
            current = d;
        }
        for (i, y) in y.to_vec::<f64>().into_iter().enumerate() {
            for (order, want) in closed(y).into_iter().enumerate() {
                let got = derivatives[order][i];
                assert!(
                    (got - want).abs() <= 1e-12,
                    "{name}: derivative {} at element {i}: {got} vs {want}",
                    order + 1
                );
            }
        }
    }
}

/// Under `create_graph`, the rules of SiLU, the ELU family, GELU (both forms) and softplus
/// are one recorded op each (`silu_backward`, ...), whose own rules compute the second derivative in one pass
/// (the last pass here, which records nothing) and record it for the third: each derivative up to the third against central differences
/// of the one before it, in f64, with softplus on both sides of its linear threshold.
#[test]
fn silu_elu_gelu_and_softplus_differentiate_to_the_third_order() {
    use tapegrad_ops::prelude::*;
    use tapegrad_ops::{GeluApproximate, SoftplusOptions};
    use tapegrad_tape::{GradOptions, grad};
    type Op = fn(&Tensor) -> Tensor;
    let ops: [(&str, Op); 8] = [
        ("silu", |x| x.silu()),
        ("elu", |x| x.elu_with(0.7)),
        ("celu", |x| x.celu_with(1.5)),
        ("selu", |x| x.selu()),
        ("gelu", |x| x.gelu()),
        ("gelu_tanh", |x| x.gelu_with(GeluApproximate::Tanh)),
        ("softplus", |x| x.softplus()),
        ("softplus_with", |x| x.softplus_with(SoftplusOptions::default().beta(2.0).threshold(1.0))),
    ];
    // The `order`-th derivative at each point, through `order` recorded passes.
    let derivative = |f: Op, points: &[f64], order: usize| -> Vec<f64> {
        let x = Tensor::from_vec(points.to_vec(), &[points.len()]).requires_grad();
        let mut current = f(&x);
        for pass in 0..order {
            // The last pass records nothing, so the fused rules run there.
            let options = GradOptions::new().create_graph(pass + 1 < order);
            current = grad(&[&current.sum()], &[&x], options)[0].clone().expect("x is used");
        }
        current.to_vec::<f64>()
    };
    let base = [-4.0, -1.3, -0.2, 0.1, 0.35, 0.9, 2.5, 25.0];
    // The points alone, and repeated past the size where SiLU and GELU keep their
    // derivative from the forward pass.
    let repeated: Vec<f64> = base.iter().copied().cycle().take(base.len() * 600).collect();
    let h = 1e-5;
    for (name, f) in ops {
        for (points, order) in
            [&base[..], &repeated].into_iter().flat_map(|p| (1..=3).map(move |o| (p, o)))
        {
            let got = derivative(f, points, order);
            let up: Vec<f64> = points.iter().map(|p| p + h).collect();
            let down: Vec<f64> = points.iter().map(|p| p - h).collect();
            let (above, below) = (derivative(f, &up, order - 1), derivative(f, &down, order - 1));
            for (i, point) in points.iter().enumerate() {
                let want = (above[i] - below[i]) / (2.0 * h);
                assert!(
                    (got[i] - want).abs() <= 1e-6 * (1.0 + want.abs()),
                    "{name}: derivative {order} at {point} (of {}): {} vs {want}",
                    points.len(),
                    got[i]
                );
            }
        }
    }
}

/// Under `create_graph`, layer norm's input gradient is one recorded op
/// (`layer_norm_backward`), whose rule for `x` is one kernel pass while nothing records it
/// and recorded ops for a third derivative; group norm's and batch norm's (with the batch's
/// statistics) are the same op on their groups or channels as rows. With `f0 = <c0, norm(x)>` and `fk = <ck, ∇fk-1>`, each `∇fk` up to the third
/// against central differences of `fk`, in f64, with and without affine parameters, on
/// rows longer and shorter than a vector.
#[test]
fn layer_norm_group_norm_and_batch_norm_differentiate_to_the_third_order() {
    use tapegrad_ops::{
        BatchNormOptions, GroupNormOptions, LayerNormOptions, functional, prelude::*,
    };
    use tapegrad_tape::{DType, GradOptions, grad};
    let random = |shape: &[usize]| Tensor::randn(shape).to_dtype(DType::F64);
    let (ln_weight, ln_bias) = (random(&[37]), random(&[37]));
    let (gn_weight, gn_bias) = (random(&[6]), random(&[6]));
    let (bn_weight, bn_bias) = (random(&[3]), random(&[3]));
    type Norm<'a> = Box<dyn Fn(&Tensor) -> Tensor + 'a>;
    let cases: Vec<(&str, Vec<usize>, Norm<'_>)> = vec![
        ("layer_norm", vec![3, 37], Box::new(|x| functional::layer_norm(x, &[37]))),
        (
            "layer_norm affine",
            vec![3, 37],
            Box::new(|x| {
                let options = LayerNormOptions::default().weight(&ln_weight).bias(&ln_bias);
                functional::layer_norm_with(x, &[37], options)
            }),
        ),
        ("group_norm", vec![2, 6, 5], Box::new(|x| functional::group_norm(x, 3))),
        (
            "group_norm affine",
            vec![2, 6, 5],
            Box::new(|x| {
                let options = GroupNormOptions::default().weight(&gn_weight).bias(&gn_bias);
                functional::group_norm_with(x, 3, options)
            }),
        ),
        (
            "batch_norm affine",
            vec![4, 3, 5],
            Box::new(|x| {
                let options =
                    BatchNormOptions::default().training(true).weight(&bn_weight).bias(&bn_bias);
                functional::batch_norm_with(x, None, options)
            }),
        ),
    ];
    for (name, shape, norm) in cases {
        let c: Vec<Tensor> = (0..3).map(|_| random(&shape)).collect();
        let x0 = random(&shape).mul_scalar(2.0).add_scalar(1.0);
        // `fk` at `x`, and `∇fk` when `gradient` (the last pass recording nothing).
        let f = |x: &Tensor, order: usize, gradient: bool| -> (f64, Option<Vec<f64>>) {
            let x = x.detach().requires_grad();
            let mut current = norm(&x);
            for ck in &c[..order] {
                let scalar = (&current * ck).sum();
                current = grad(&[&scalar], &[&x], GradOptions::new().create_graph(true))[0]
                    .clone()
                    .expect("x is used");
            }
            let scalar = (&current * &c[order]).sum();
            let gradient = gradient.then(|| {
                grad(&[&scalar], &[&x], GradOptions::new())[0]
                    .clone()
                    .expect("x is used")
                    .to_vec::<f64>()
            });
            (scalar.item(), gradient)
        };
        let values = x0.to_vec::<f64>();
        let h = 1e-5;
        for order in 0..3 {
            let got = f(&x0, order, true).1.expect("asked for");
            for i in 0..values.len() {
                let shifted = |by: f64| {
                    let mut v = values.clone();
                    v[i] += by;
                    f(&Tensor::from_vec(v, &shape), order, false).0
                };
                let want = (shifted(h) - shifted(-h)) / (2.0 * h);
                assert!(
                    (got[i] - want).abs() <= 1e-6 * (1.0 + want.abs()),
                    "{name}: derivative {} at element {i}: {} vs {want}",
                    order + 1,
                    got[i]
                );
            }
        }
    }
}

/// GELU and SiLU keep their derivative from the forward pass for large contiguous inputs
/// (and evaluate it again in backward otherwise): GELU's first two derivatives on a tensor
/// past that size against closed forms, and for each of them the same derivatives, to the
/// bit, from a contiguous input and from a transposed view of the same values.
#[test]
fn saved_derivatives_of_gelu_silu_and_mish_on_large_tensors() {
    use tapegrad_ops::prelude::*;
    use tapegrad_tape::DType;
    let n = 6000;
    let values: Vec<f64> = (0..n).map(|i| -7.0 + 14.0 * i as f64 / (n - 1) as f64).collect();
    let x = Tensor::from_vec(values.clone(), &[60, 100]).requires_grad();
    let [plain, first, second] = derivatives(&x, |x| x.gelu());
    for (i, &v) in values.iter().enumerate() {
        let density = (-0.5 * v * v).exp() / (2.0 * std::f64::consts::PI).sqrt();
        let cdf = 0.5 * libm::erfc(-v / std::f64::consts::SQRT_2);
        let (d1, d2) = (cdf + v * density, density * (2.0 - v * v));
        for (what, got, want) in
            [("first", plain[i], d1), ("first", first[i], d1), ("second", second[i], d2)]
        {
            assert!((got - want).abs() <= 1e-12, "gelu {what} derivative at {v}: {got} vs {want}");
        }
    }

    type Op = fn(&Tensor) -> Tensor;
    let ops: [(&str, Op); 4] = [
        ("gelu", |x| x.gelu()),
        ("gelu_tanh", |x| x.gelu_with(tapegrad_ops::GeluApproximate::Tanh)),
        ("silu", |x| x.silu()),
        ("mish", |x| x.mish()),
    ];
    for (name, op) in ops {
        for dtype in [DType::F64, DType::F32] {
            let values = Tensor::randn(&[100, 60]).mul_scalar(3.0).to_dtype(dtype);
            let contiguous = values.t().contiguous().requires_grad();
            let leaf = values.requires_grad();
            let view = leaf.t();
            assert!(!view.is_contiguous());
            let saved = derivatives(&contiguous, op);
            let evaluated = derivatives(&view, op);
            for (which, (a, b)) in saved.iter().zip(&evaluated).enumerate() {
                let same = a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{name} {dtype:?}: derivative {which} differs between the paths");
            }
        }
    }
}

/// Derivatives of an elementwise `f` at every element of `x`, in f64: the first from a
/// plain backward pass, the first again through `create_graph`, and the second from that.
fn derivatives(x: &Tensor, f: impl Fn(&Tensor) -> Tensor) -> [Vec<f64>; 3] {
    use tapegrad_ops::prelude::*;
    use tapegrad_tape::{DType, GradOptions, grad};
    // Kept: `x` may be a recorded view, used again below.
    let keep = GradOptions::new().retain_graph(true);
    let plain = grad(&[&f(x).sum()], &[x], keep)[0].clone().expect("x is used");
    let options = GradOptions::new().create_graph(true);
    let first = grad(&[&f(x).sum()], &[x], options)[0].clone().expect("x is used");
    let second = grad(&[&first.sum()], &[x], GradOptions::new())[0].clone().expect("x is used");
    [plain, first, second].map(|d| d.contiguous().to_dtype(DType::F64).to_vec::<f64>())
}
