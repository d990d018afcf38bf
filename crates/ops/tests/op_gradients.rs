//! Every registered op against central differences in f64: first derivatives (gradcheck)
//! and, where they exist, second derivatives (gradgradcheck), over random shapes
//! (broadcasting, size-1 and empty dimensions included) and values. 256 cases per op unless
//! PROPTEST_CASES says otherwise.

mod common;

use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tapegrad_tape::{GradcheckOptions, Tensor, gradcheck, gradgradcheck};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256)
}

/// Ops that are piecewise smooth: their derivative jumps where two inputs tie (max,
/// pooling, |a - b|) or where an input crosses zero (relu, abs).
const PIECEWISE: &[&str] = &[
    "x.abs",
    "x.relu",
    "x.leaky_relu",
    "a.maximum",
    "a.minimum",
    "x.max",
    "x.min",
    "max_pool2d",
    "l1_loss",
    "x.norm",
];

/// Central differences step 1e-6 either side; inputs this close to a tie or to zero would
/// straddle a kink and compare a one-sided derivative with the average of two.
const KINK_MARGIN: f64 = 1e-5;

/// Whether a sample of a piecewise op sits within [`KINK_MARGIN`] of one of its kinks.
fn near_kink(sample: &common::Sample) -> bool {
    let mut values: Vec<f64> = sample
        .tensors
        .iter()
        .filter(|t| t.dtype().is_float())
        .flat_map(|t| t.to_vec::<f64>())
        .collect();
    values.sort_by(f64::total_cmp);
    values.windows(2).any(|w| w[1] - w[0] < KINK_MARGIN)
        || values.iter().any(|v| v.abs() < KINK_MARGIN)
}

fn check(op: &common::OpCase, sample: common::Sample) -> Result<(), TestCaseError> {
    if PIECEWISE.iter().any(|p| op.name.starts_with(p)) && near_kink(&sample) {
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
    for op in common::registry() {
        let config = Config { cases: cases(), failure_persistence: None, ..Config::default() };
        let mut runner = TestRunner::new(config);
        if let Err(e) = runner.run(&(op.sample)(), |sample| check(&op, sample)) {
            failures.push(format!("{} ({}): {e}", op.name, op.torch));
        }
    }
    assert!(failures.is_empty(), "{} ops failed:\n{}", failures.len(), failures.join("\n\n"));
}
