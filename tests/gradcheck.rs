//! The gradient checker and custom functions: a correct op passes, a wrong one is caught
//! and the report names the element.

use tapegrad::prelude::*;
use tapegrad::tape::{Error, FunctionCtx};

/// x^2 elementwise, with a backward that is right except at one element.
struct SquareWithBug {
    wrong_at: Option<usize>,
    wrong_factor: f64,
}

impl Function for SquareWithBug {
    fn name(&self) -> &'static str {
        "square_with_bug"
    }
    fn forward(&self, inputs: &[Tensor]) -> Tensor {
        &inputs[0] * &inputs[0]
    }
    fn backward(&self, ctx: &FunctionCtx<'_>, grad: &Tensor) -> Vec<Option<Tensor>> {
        let x = ctx.input(0);
        let mut factor = vec![2.0f64; x.numel()];
        if let Some(i) = self.wrong_at {
            factor[i] = self.wrong_factor;
        }
        let factor = Tensor::from_vec(factor, x.shape());
        vec![Some(grad * &(x * &factor))]
    }
}

fn input() -> Tensor {
    Tensor::from_vec(vec![0.5f64, -1.0, 2.0, 1.5, -0.25, 3.0], &[2, 3]).requires_grad()
}

#[test]
fn a_correct_custom_function_passes() {
    let f = |xs: &[Tensor]| apply(SquareWithBug { wrong_at: None, wrong_factor: 2.0 }, &[&xs[0]]);
    let report = gradcheck(f, &[input()], &GradcheckOptions::default()).unwrap();
    assert!(report.passed, "{report}");
    assert_eq!(report.compared, 36);
    let fast =
        gradcheck(f, &[input()], &GradcheckOptions { fast_mode: true, ..Default::default() })
            .unwrap();
    assert!(fast.passed && fast.compared == 1, "{fast}");
    let second = gradgradcheck(f, &[input()], &GradcheckOptions::default()).unwrap();
    assert!(second.passed, "{second}");
}

#[test]
fn a_wrong_backward_is_rejected_and_the_report_names_the_element() {
    // Element 4 of the flattened input is [1, 1].
    let f =
        |xs: &[Tensor]| apply(SquareWithBug { wrong_at: Some(4), wrong_factor: 2.5 }, &[&xs[0]]);
    let report = gradcheck(f, &[input()], &GradcheckOptions::default()).unwrap();
    assert!(!report.passed);
    let worst = report.worst.clone().unwrap();
    assert_eq!((worst.input, worst.input_index.as_slice()), (Some(0), &[1, 1][..]));
    assert_eq!((worst.output, worst.output_index.as_slice()), (Some(0), &[1, 1][..]));
    assert!((worst.analytic - 2.5 * -0.25).abs() < 1e-12, "{worst:?}");
    assert!((worst.numerical - 2.0 * -0.25).abs() < 1e-6, "{worst:?}");
    let text = report.to_string();
    assert!(
        text.contains("FAILED") && text.contains("d output 0[1, 1] / d input 0[1, 1]"),
        "{text}"
    );

    // One random projection sees a bug in proportion to its size; a gross one it catches.
    let gross =
        |xs: &[Tensor]| apply(SquareWithBug { wrong_at: Some(4), wrong_factor: 40.0 }, &[&xs[0]]);
    let fast =
        gradcheck(gross, &[input()], &GradcheckOptions { fast_mode: true, ..Default::default() })
            .unwrap();
    assert!(!fast.passed, "the projection catches it too: {fast}");
}

#[test]
fn gradgradcheck_catches_a_backward_that_is_not_differentiable() {
    // A backward computed on detached values gives right first derivatives but no second.
    struct DetachedCube;
    impl Function for DetachedCube {
        fn name(&self) -> &'static str {
            "detached_cube"
        }
        fn forward(&self, x: &[Tensor]) -> Tensor {
            x[0].pow(3.0)
        }
        fn backward(&self, ctx: &FunctionCtx<'_>, g: &Tensor) -> Vec<Option<Tensor>> {
            vec![Some(g * &(ctx.input(0).detach().pow(2.0) * 3.0))]
        }
    }
    let f = |xs: &[Tensor]| apply(DetachedCube, &[&xs[0]]);
    assert!(gradcheck(f, &[input()], &GradcheckOptions::default()).unwrap().passed);
    let report = gradgradcheck(f, &[input()], &GradcheckOptions::default()).unwrap();
    assert!(!report.passed, "{report}");
}

#[test]
fn misuse_is_an_error_not_a_verdict() {
    let f = |xs: &[Tensor]| &xs[0] * 2.0;
    let err = gradcheck(f, &[Tensor::ones(&[2]).requires_grad()], &GradcheckOptions::default())
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument { .. }) && err.to_string().contains("float64"),
        "{err}"
    );
    let err = gradcheck(f, &[Tensor::ones_dtype(&[2], DType::F64)], &GradcheckOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("no input requires a gradient"), "{err}");
}

#[test]
fn a_backward_rule_returning_the_wrong_shape_is_reported() {
    struct BadShape;
    impl Function for BadShape {
        fn name(&self) -> &'static str {
            "bad_shape"
        }
        fn forward(&self, x: &[Tensor]) -> Tensor {
            x[0].clone()
        }
        fn backward(&self, _: &FunctionCtx<'_>, g: &Tensor) -> Vec<Option<Tensor>> {
            vec![Some(g.sum())]
        }
    }
    let x = Tensor::ones(&[3]).requires_grad();
    let err = apply(BadShape, &[&x]).sum().try_backward().unwrap_err();
    let m = err.to_string();
    assert!(m.starts_with("bad_shape:") && m.contains("shape []") && m.contains("[3]"), "{m}");
    assert!(m.contains(file!()), "{m}");
}

#[test]
fn multiple_inputs_and_outputs() {
    let a = Tensor::from_vec(vec![0.3f64, -0.7], &[2]).requires_grad();
    let b = Tensor::from_vec(vec![1.1f64, 0.4, -0.2], &[3, 1]).requires_grad();
    let c = Tensor::from_vec(vec![2.0f64], &[1]); // a constant input: not checked
    let f = |xs: &[Tensor]| vec![(&xs[0] * &xs[1]).tanh() * &xs[2], (&xs[0] + &xs[1]).exp().sum()];
    let report =
        gradcheck(f, &[a.clone(), b.clone(), c.clone()], &GradcheckOptions::default()).unwrap();
    assert!(report.passed, "{report}");
    let report = gradgradcheck(f, &[a, b, c], &GradcheckOptions::default()).unwrap();
    assert!(report.passed, "{report}");
}
