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
    for op in common::registry() {
        let config = Config { cases: cases(), failure_persistence: None, ..Config::default() };
        let mut runner = TestRunner::new(config);
        if let Err(e) = runner.run(&(op.sample)(), |sample| check(&op, sample)) {
            failures.push(format!("{} ({}): {e}", op.name, op.torch));
        }
    }
    assert!(failures.is_empty(), "{} ops failed:\n{}", failures.len(), failures.join("\n\n"));
}
