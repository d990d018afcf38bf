//! Anomaly mode: the first NaN or infinity, in forward or in backward, stops with an error
//! naming the op and the line that recorded it.

use std::panic::{AssertUnwindSafe, catch_unwind};

use tapegrad::prelude::*;
use tapegrad::tape::{detect_anomaly, detect_anomaly_with, is_anomaly_enabled};

fn panic_message(f: impl FnOnce()) -> String {
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic");
    err.downcast_ref::<String>().cloned().unwrap_or_default()
}

#[test]
fn a_log_of_a_negative_number_is_named_with_its_line() {
    let x = Tensor::from_vec(vec![1.0f64, -2.0, 3.0], &[3]).requires_grad();
    let _anomaly = detect_anomaly();
    let line = line!() + 1;
    let message = panic_message(|| drop(x.log()));
    assert!(message.contains("`log` produced NaN in its output (element 1"), "{message}");
    assert!(message.contains(&format!("{}:{line}", file!())), "{message}");
}

#[test]
fn a_nan_that_only_backward_makes_names_the_forward_op() {
    let x = Tensor::from_vec(vec![0.0f64, 4.0], &[2]).requires_grad();
    let _anomaly = detect_anomaly();
    let line = line!() + 1;
    let y = x.sqrt().mul_scalar(0.0).sum(); // forward: all finite
    assert_eq!(y.item(), 0.0);
    // sqrt's rule: 0 * 1 / (2 sqrt(0)) = NaN.
    let err = y.try_backward().unwrap_err().to_string();
    assert!(err.contains("the backward rule of `sqrt` produced NaN"), "{err}");
    assert!(err.contains(&format!("{}:{line}", file!())), "{err}");
}

#[test]
fn infinities_can_be_allowed_and_the_mode_ends_with_its_guard() {
    let scores = Tensor::from_vec(vec![1.0f32, 2.0], &[2]);
    let mask = Tensor::from_vec(vec![false, true], &[2]);
    {
        let _anomaly = detect_anomaly_with(false); // masking with -inf is not an anomaly
        let p = scores.masked_fill(&mask, f64::NEG_INFINITY).softmax(0);
        assert_eq!(p.to_vec::<f32>(), vec![1.0, 0.0]);
    }
    assert!(!is_anomaly_enabled());
    // Off: NaN flows through silently, as without anomaly mode in PyTorch.
    assert!(Tensor::from_vec(vec![-1.0f32], &[1]).log().item().is_nan());
}
