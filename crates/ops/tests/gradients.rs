//! Every differentiable op against central differences in f64: first derivatives
//! (gradcheck) and second derivatives (gradgradcheck), over random shapes (broadcasting,
//! size-1 and empty dimensions included) and values. 256 cases per op unless
//! PROPTEST_CASES says otherwise.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use tapegrad_ops::TensorOps;
use tapegrad_tape::testing::{broadcast_shapes, matmul_pair_f64, shape, shape_with_empty, tensor_f64};
use tapegrad_tape::{GradcheckOptions, Tensor, gradcheck, gradgradcheck};

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Checks first and second derivatives of `f` at `inputs`.
fn check(f: impl Fn(&[Tensor]) -> Tensor, inputs: &[Tensor]) -> Result<(), TestCaseError> {
    let inputs: Vec<Tensor> = inputs.iter().map(|t| t.detach().requires_grad()).collect();
    let opts = GradcheckOptions::default();
    let first = gradcheck(&f, &inputs, &opts).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(first.passed, "{}", first);
    let second = gradgradcheck(&f, &inputs, &opts).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(second.passed, "{}", second);
    Ok(())
}

/// Two tensors with broadcast-compatible shapes and values from separate ranges.
fn pair(a: std::ops::Range<f64>, b: std::ops::Range<f64>) -> impl Strategy<Value = (Tensor, Tensor)> {
    broadcast_shapes(3, 3)
        .prop_flat_map(move |(sa, sb)| (tensor_f64(Just(sa), a.clone()), tensor_f64(Just(sb), b.clone())))
}

fn any_tensor(range: std::ops::Range<f64>) -> impl Strategy<Value = Tensor> {
    tensor_f64(shape_with_empty(3, 3), range)
}

/// A tensor of rank >= 1 and a valid dimension of it (possibly negative).
fn tensor_and_dim() -> impl Strategy<Value = (Tensor, isize)> {
    tensor_f64(proptest::collection::vec(1usize..=3, 1..=3), -2.0..2.0).prop_flat_map(|t| {
        let r = t.dim() as isize;
        (Just(t), -r..r)
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn add((a, b) in pair(-2.0..2.0, -2.0..2.0)) {
        check(|x| &x[0] + &x[1], &[a, b])?;
    }

    #[test]
    fn sub((a, b) in pair(-2.0..2.0, -2.0..2.0)) {
        check(|x| &x[0] - &x[1], &[a, b])?;
    }

    #[test]
    fn mul((a, b) in pair(-2.0..2.0, -2.0..2.0)) {
        check(|x| &x[0] * &x[1], &[a, b])?;
    }

    #[test]
    fn div((a, b) in pair(-2.0..2.0, 0.5..2.0)) {
        check(|x| &x[0] / &x[1], &[a, b])?;
    }

    #[test]
    fn neg(a in any_tensor(-2.0..2.0)) {
        check(|x| -&x[0], &[a])?;
    }

    #[test]
    fn scalar_arithmetic(a in any_tensor(0.5..2.0), s in -3.0f64..3.0) {
        check(move |x| &x[0] + s, std::slice::from_ref(&a))?;
        check(move |x| &x[0] - s, std::slice::from_ref(&a))?;
        check(move |x| s - &x[0], std::slice::from_ref(&a))?;
        check(move |x| &x[0] * s, std::slice::from_ref(&a))?;
        check(move |x| &x[0] / (s.abs() + 0.5), std::slice::from_ref(&a))?;
        check(move |x| s / &x[0], &[a])?;
    }

    #[test]
    fn exp(a in any_tensor(-2.0..2.0)) {
        check(|x| x[0].exp(), &[a])?;
    }

    #[test]
    fn log(a in any_tensor(0.5..3.0)) {
        check(|x| x[0].log(), &[a])?;
    }

    #[test]
    fn tanh(a in any_tensor(-2.0..2.0)) {
        check(|x| x[0].tanh(), &[a])?;
    }

    #[test]
    fn sigmoid(a in any_tensor(-3.0..3.0)) {
        check(|x| x[0].sigmoid(), &[a])?;
    }

    #[test]
    fn relu(a in any_tensor(-2.0..2.0)) {
        check(|x| x[0].relu(), &[a])?;
    }

    #[test]
    fn pow_scalar(a in any_tensor(0.5..2.0), p in prop::sample::select(vec![-1.5, -1.0, 0.0, 0.5, 1.0, 2.0, 3.0])) {
        check(move |x| x[0].pow(p), &[a])?;
    }

    #[test]
    fn pow_tensor((a, b) in pair(0.5..2.0, -2.0..2.0)) {
        check(|x| x[0].pow(&x[1]), &[a, b])?;
    }

    #[test]
    fn sum(a in any_tensor(-2.0..2.0)) {
        check(|x| x[0].sum(), &[a])?;
    }

    #[test]
    fn mean(a in tensor_f64(shape(3, 3), -2.0..2.0)) {
        check(|x| x[0].mean(), &[a])?;
    }

    #[test]
    fn sum_dim((a, d) in tensor_and_dim(), keepdim in any::<bool>()) {
        check(move |x| x[0].sum_dim(d, keepdim), &[a])?;
    }

    #[test]
    fn mean_dim((a, d) in tensor_and_dim(), keepdim in any::<bool>()) {
        check(move |x| x[0].mean_dim(d, keepdim), &[a])?;
    }

    #[test]
    fn matmul((a, b) in matmul_pair_f64(4, -2.0..2.0)) {
        check(|x| x[0].matmul(&x[1]), std::slice::from_ref(&a).iter().chain([&b]).cloned().collect::<Vec<_>>().as_slice())?;
        // A transposed operand goes to GEMM as a strided view.
        check(|x| x[1].t().matmul(&x[0].t()), &[a, b])?;
    }

    #[test]
    fn reshape(a in tensor_f64(shape(3, 3), -2.0..2.0)) {
        check(|x| x[0].reshape(&[-1]), std::slice::from_ref(&a))?;
        check(|x| x[0].t().reshape(&[1, -1]), &[a])?;
    }

    #[test]
    fn transpose((a, d) in tensor_and_dim()) {
        check(move |x| x[0].transpose(0, d), &[a])?;
    }

    #[test]
    fn broadcast_to_and_sum_to_shape((sa, sb) in broadcast_shapes(3, 3), seed in any::<u64>()) {
        let target = tapegrad_tape::layout::broadcast_shapes(&sa, &sb).unwrap().to_vec();
        tapegrad_tape::manual_seed(seed);
        let a = Tensor::randn_dtype(&sa, tapegrad_tape::DType::F64);
        let big = Tensor::randn_dtype(&target, tapegrad_tape::DType::F64);
        let t = target.clone();
        check(move |x| x[0].broadcast_to(&t), &[a])?;
        check(move |x| x[0].sum_to_shape(&sa), &[big])?;
    }

    #[test]
    fn contiguous_of_a_view(a in tensor_f64(proptest::collection::vec(1usize..=3, 2..=3), -2.0..2.0)) {
        check(|x| x[0].transpose(0, 1).contiguous(), &[a])?;
    }
}
