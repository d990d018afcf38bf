//! Forward mode on every registered op, in f64 over random shapes and values: the tangent
//! an op computes (`J v`) against central differences along `v`, and against reverse mode
//! (`uᵀ (J v) = (uᵀ J) v` for a random `u`); and, where second derivatives exist, the
//! tangent of a gradient computed inside a dual level (forward-over-reverse, `H v`) against
//! reverse-over-reverse; and the tangent in f32 against the one in f64. 64 cases per op
//! unless PROPTEST_CASES says otherwise.

mod common;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tapegrad_tape::forward_ad::{dual_level, make_dual, unpack_dual};
use tapegrad_tape::{DType, GradOptions, Tensor, grad, no_grad};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64)
}

/// A tensor of `like`'s shape with values in [-1, 1) drawn from `seed` (splitmix64).
fn random_like(like: &Tensor, seed: &mut u64) -> Tensor {
    let values = (0..like.numel())
        .map(|_| {
            *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = *seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(values, like.shape())
}

fn dot(a: &Tensor, b: &Tensor) -> f64 {
    a.to_vec::<f64>().iter().zip(b.to_vec::<f64>()).map(|(x, y)| x * y).sum()
}

/// The first position where `a` and `b` differ by more than the tolerance (NaN differs).
fn close(a: &[f64], b: &[f64], atol: f64, rtol: f64) -> Option<usize> {
    let within = |x: f64, y: f64| (x - y).abs() <= atol + rtol * y.abs();
    a.iter().zip(b).position(|(&x, &y)| !within(x, y))
}

struct Case<'a> {
    op: &'a common::OpCase,
    xs: Vec<Tensor>,
    ints: Vec<i64>,
    /// One tangent per float input (`None` for index tensors).
    vs: Vec<Option<Tensor>>,
}

impl Case<'_> {
    fn call(&self, xs: &[Tensor]) -> Tensor {
        (self.op.call)(xs, &self.ints)
    }

    /// The op on dual inputs: its value and tangent (zeros if it has none).
    fn forward(&self, xs: &[Tensor]) -> (Tensor, Tensor) {
        let _level = dual_level();
        let duals: Vec<Tensor> = xs
            .iter()
            .zip(&self.vs)
            .map(|(x, v)| v.as_ref().map_or_else(|| x.clone(), |v| make_dual(x, v)))
            .collect();
        let parts = unpack_dual(&self.call(&duals));
        let jv = parts.tangent.unwrap_or_else(|| parts.primal.zeros_like());
        (parts.primal, jv)
    }

    /// `(f(x + h v) - f(x - h v)) / 2h`.
    fn central_difference(&self) -> Vec<f64> {
        let h = 1e-6;
        let shifted = |sign: f64| -> Vec<f64> {
            let xs: Vec<Tensor> = self
                .xs
                .iter()
                .zip(&self.vs)
                .map(|(x, v)| v.as_ref().map_or_else(|| x.clone(), |v| x + &(v * (sign * h))))
                .collect();
            let _no_grad = no_grad();
            self.call(&xs).to_vec::<f64>()
        };
        let (plus, minus) = (shifted(1.0), shifted(-1.0));
        plus.iter().zip(&minus).map(|(p, m)| (p - m) / (2.0 * h)).collect()
    }

    /// The float inputs as fresh leaves that require grad, and their positions.
    fn leaves(&self) -> (Vec<Tensor>, Vec<usize>) {
        let xs: Vec<Tensor> = self
            .xs
            .iter()
            .map(|x| if x.dtype().is_float() { x.detach().requires_grad() } else { x.clone() })
            .collect();
        let floats = (0..xs.len()).filter(|&i| self.vs[i].is_some()).collect();
        (xs, floats)
    }
}

fn check(op: &common::OpCase, sample: common::Sample, seed: u64) -> Result<(), TestCaseError> {
    if common::on_a_kink(op, &sample) {
        return Err(TestCaseError::reject("input on a kink of a piecewise op"));
    }
    let mut seed = seed;
    let vs = sample
        .tensors
        .iter()
        .map(|t| t.dtype().is_float().then(|| random_like(t, &mut seed)))
        .collect();
    let case = Case { op, xs: sample.tensors.clone(), ints: sample.ints.clone(), vs };
    let (y, jv) = case.forward(&case.xs);
    prop_assert_eq!(jv.shape(), y.shape(), "{}: tangent shape", op.name);
    let forward = jv.to_vec::<f64>();

    // Against central differences.
    let numeric = case.central_difference();
    if let Some(k) = close(&forward, &numeric, 1e-5, 1e-3) {
        return Err(TestCaseError::fail(format!(
            "{}: J v element {k} is {}, central differences give {}",
            op.name, forward[k], numeric[k]
        )));
    }

    // Against reverse mode: uᵀ (J v) = Σᵢ (uᵀ Jᵢ) vᵢ.
    let (leaves, floats) = case.leaves();
    let out = case.call(&leaves);
    let u = random_like(&out, &mut seed);
    let reverse: f64 = if out.tracks_grad() {
        let wrt: Vec<&Tensor> = floats.iter().map(|&i| &leaves[i]).collect();
        let options = GradOptions::new().grad_outputs(vec![u.clone()]).allow_unused(true);
        let grads = grad(&[&out], &wrt, options);
        grads
            .iter()
            .zip(&floats)
            .filter_map(|(g, &i)| g.as_ref().map(|g| dot(g, case.vs[i].as_ref().unwrap())))
            .sum()
    } else {
        0.0
    };
    let along = dot(&u, &jv);
    prop_assert!(
        (along - reverse).abs() <= 1e-9 * (1.0 + reverse.abs()),
        "{}: uᵀ(J v) = {along}, (uᵀJ) v = {reverse}",
        op.name
    );

    // The same in f32, against the f64 tangent.
    let to_f32 = |t: &Tensor| if t.dtype().is_float() { t.to_dtype(DType::F32) } else { t.clone() };
    let single = Case {
        op,
        xs: case.xs.iter().map(to_f32).collect(),
        ints: case.ints.clone(),
        vs: case.vs.iter().map(|v| v.as_ref().map(to_f32)).collect(),
    };
    let (_, jv32) = single.forward(&single.xs);
    let jv32 = jv32.to_vec::<f64>();
    if let Some(k) = close(&jv32, &forward, 1e-3, 1e-2) {
        return Err(TestCaseError::fail(format!(
            "{}: J v element {k} is {} in f32, {} in f64",
            op.name, jv32[k], forward[k]
        )));
    }

    if op.second_order {
        check_forward_over_reverse(&case, &u)?;
    }
    Ok(())
}

/// The tangent of `∇ₓ uᵀ f(x)` computed inside a dual level (the Hessian of `uᵀ f` times
/// `v`) against differentiating `(∇ₓ uᵀ f) · v` again in reverse mode.
fn check_forward_over_reverse(case: &Case<'_>, u: &Tensor) -> Result<(), TestCaseError> {
    let (leaves, floats) = case.leaves();
    let wrt = |xs: &[Tensor]| -> Vec<Tensor> { floats.iter().map(|&i| xs[i].clone()).collect() };

    // Reverse over reverse.
    let out = case.call(&leaves);
    if !out.tracks_grad() {
        return Ok(());
    }
    let targets = wrt(&leaves);
    let refs: Vec<&Tensor> = targets.iter().collect();
    let first =
        GradOptions::new().grad_outputs(vec![u.clone()]).create_graph(true).allow_unused(true);
    let g = grad(&[&out], &refs, first);
    let gv = g
        .iter()
        .zip(&floats)
        .filter_map(|(g, &i)| {
            g.as_ref()
                .filter(|g| g.tracks_grad())
                .map(|g| dot_tensor(g, case.vs[i].as_ref().unwrap()))
        })
        .reduce(|a, b| &a + &b);
    let hv_reverse: Vec<Vec<f64>> = match gv {
        Some(gv) => grad(&[&gv], &refs, GradOptions::new().allow_unused(true))
            .into_iter()
            .zip(&targets)
            .map(|(h, x)| h.unwrap_or_else(|| x.zeros_like()).to_vec::<f64>())
            .collect(),
        None => targets.iter().map(|x| vec![0.0; x.numel()]).collect(),
    };

    // Forward over reverse.
    let _level = dual_level();
    let duals: Vec<Tensor> = leaves
        .iter()
        .zip(&case.vs)
        .map(|(x, v)| v.as_ref().map_or_else(|| x.clone(), |v| make_dual(x, v)))
        .collect();
    let out = case.call(&duals);
    let targets = wrt(&duals);
    let refs: Vec<&Tensor> = targets.iter().collect();
    let options =
        GradOptions::new().grad_outputs(vec![u.clone()]).create_graph(true).allow_unused(true);
    let g = grad(&[&out], &refs, options);
    for (k, (g, x)) in g.iter().zip(&targets).enumerate() {
        let hv = g
            .as_ref()
            .and_then(|g| unpack_dual(g).tangent)
            .map_or_else(|| vec![0.0; x.numel()], |t| t.to_vec::<f64>());
        if let Some(e) = close(&hv, &hv_reverse[k], 1e-9, 1e-7) {
            let scale = hv_reverse[k].iter().fold(0.0f64, |m, v| m.max(v.abs()));
            return Err(TestCaseError::fail(format!(
                "{}: H v of input {k}, element {e}: forward-over-reverse {}, reverse-over-reverse {} (largest |H v| {scale}; inputs {:?})",
                case.op.name,
                hv[e],
                hv_reverse[k][e],
                case.xs.iter().map(|x| x.to_vec::<f64>()).collect::<Vec<_>>()
            )));
        }
    }
    Ok(())
}

/// `Σ a ⊙ b` as a recorded 0-d tensor.
fn dot_tensor(a: &Tensor, b: &Tensor) -> Tensor {
    (a * b).sum_to_shape(&[])
}

#[test]
fn every_op_has_a_tangent_rule_matching_differences_and_reverse_mode() {
    let mut failures = Vec::new();
    let filter = std::env::var("OP_FILTER").unwrap_or_default();
    for op in common::registry().into_iter().filter(|op| op.name.contains(filter.as_str())) {
        let config = Config { cases: cases(), failure_persistence: None, ..Config::default() };
        let mut runner = TestRunner::new(config);
        let strategy = ((op.sample)(), any::<u64>());
        if let Err(e) = runner.run(&strategy, |(sample, seed)| check(&op, sample, seed)) {
            failures.push(format!("{} ({}): {e}", op.name, op.torch));
        }
    }
    assert!(failures.is_empty(), "{} ops failed:\n{}", failures.len(), failures.join("\n\n"));
}
