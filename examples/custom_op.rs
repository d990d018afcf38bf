//! A custom differentiable operation: a numerically stable `softplus(x) = ln(1 + e^x)`,
//! written as a `Function` with a hand-derived backward (the vector-Jacobian product), then
//! verified against central differences with `gradcheck` and `gradgradcheck`.
//!
//! Run it with `cargo run --release --example custom_op`.

use tapegrad::prelude::*;
use tapegrad::tape::GradcheckReport;

/// `softplus(x) = max(x, 0) + ln(1 + e^-|x|)`, which never overflows.
struct Softplus;

impl Function for Softplus {
    fn name(&self) -> &'static str {
        "softplus"
    }

    fn forward(&self, inputs: &[Tensor]) -> Tensor {
        let x = &inputs[0];
        let abs = (x * x).pow(0.5);
        x.relu() + (-abs).exp().add_scalar(1.0).log()
    }

    /// d softplus / dx = sigmoid(x). Written with tensor ops, so it is differentiable too.
    fn backward(&self, ctx: &FunctionCtx<'_>, grad: &Tensor) -> Vec<Option<Tensor>> {
        vec![Some(grad * &ctx.input(0).sigmoid())]
    }
}

/// The first- and second-order reports.
pub fn run(verbose: bool) -> (GradcheckReport, GradcheckReport) {
    let x = Tensor::from_vec(vec![-30.0f64, -2.0, -0.5, 0.3, 1.7, 40.0], &[2, 3]).requires_grad();
    let y = apply(Softplus, &[&x]);
    y.sum().backward();
    if verbose {
        println!("softplus(x) = {y}");
        println!("d/dx sum(softplus(x)) = {}", x.grad().expect("x requires grad"));
    }
    let f = |xs: &[Tensor]| apply(Softplus, &[&xs[0]]);
    let opts = GradcheckOptions::default();
    let first = gradcheck(f, std::slice::from_ref(&x), &opts).expect("f64 inputs");
    let second = gradgradcheck(f, &[x], &opts).expect("f64 inputs");
    if verbose {
        println!("{first}\n{second}");
    }
    (first, second)
}

#[allow(dead_code)]
fn main() {
    let (first, second) = run(true);
    assert!(first.passed && second.passed);
}
