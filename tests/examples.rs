//! The examples, run in a reduced form: each must still learn. The example sources are
//! compiled into this test as modules, so the test runs exactly the code a user runs.

// Each example declares the shared `examples/common` helpers itself.
#![allow(clippy::duplicate_mod)]

#[path = "../examples/mnist.rs"]
#[allow(dead_code)]
mod mnist;

use tapegrad::nn::{Module, load};

#[test]
fn mnist_mlp_learns_on_the_embedded_digits() {
    let out = std::env::temp_dir().join(format!("tapegrad-mnist-test-{}", std::process::id()));
    let cfg = mnist::Config {
        model: "mlp".into(),
        data: None,
        epochs: 4,
        batch_size: 128,
        lr: 1e-3,
        seed: 0,
        out: out.clone(),
        quiet: true,
    };
    let outcome = mnist::run(&cfg);
    assert!(outcome.losses[3] < outcome.losses[0] * 0.5, "loss falls: {:?}", outcome.losses);
    let acc = *outcome.test_accuracy.last().unwrap();
    assert!(acc > 0.85, "test accuracy {acc} after 4 epochs");
    // The saved weights load back into the same architecture and give the same accuracy.
    let mut model = mnist::mlp();
    load(&mut model, out.join("mnist-mlp.safetensors")).unwrap();
    assert_eq!(model.parameters().len(), 6);
    let png = std::fs::read(out.join("mnist-mlp.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG of the curves is written");
}

#[test]
fn mnist_cnn_learns_in_one_epoch() {
    let out = std::env::temp_dir().join(format!("tapegrad-mnist-cnn-test-{}", std::process::id()));
    let cfg = mnist::Config {
        model: "cnn".into(),
        data: None,
        epochs: 1,
        batch_size: 64,
        lr: 1e-3,
        seed: 1,
        out,
        quiet: true,
    };
    let outcome = mnist::run(&cfg);
    assert!(outcome.test_accuracy[0] > 0.7, "test accuracy {:?}", outcome.test_accuracy);
}

#[path = "../examples/custom_op.rs"]
#[allow(dead_code)]
mod custom_op;
#[path = "../examples/gan.rs"]
#[allow(dead_code)]
mod gan;
#[path = "../examples/higher_order.rs"]
#[allow(dead_code)]
mod higher_order;
#[path = "../examples/linear_regression.rs"]
#[allow(dead_code)]
mod linear_regression;
#[path = "../examples/logistic_regression.rs"]
#[allow(dead_code)]
mod logistic_regression;
#[path = "../examples/resnet.rs"]
#[allow(dead_code)]
mod resnet;
#[path = "../examples/sequence.rs"]
#[allow(dead_code)]
mod sequence;
#[path = "../examples/tape_tour.rs"]
#[allow(dead_code)]
mod tape_tour;

#[test]
fn linear_regression_recovers_the_line() {
    let (w, b, loss) = linear_regression::run(60, false);
    assert!((w - 3.0).abs() < 0.05 && (b + 2.0).abs() < 0.05 && loss < 0.02, "{w} {b} {loss}");
}

#[test]
fn logistic_regression_separates_the_clouds() {
    let o = logistic_regression::run(60, false);
    assert!(
        o.last_loss < o.first_loss && o.accuracy > 0.9,
        "{} -> {}, {}",
        o.first_loss,
        o.last_loss,
        o.accuracy
    );
}

#[test]
fn gru_learns_the_next_value_of_a_sine_wave() {
    let (first, last) = sequence::run(60, false);
    assert!(last < first * 0.2, "{first} -> {last}");
}

#[test]
fn tape_tour_exports_the_graph() {
    let (dot, sweep) = tape_tour::run(false);
    assert!(
        dot.contains("matmul") && dot.contains("tanh") && dot.matches("->").count() == 5,
        "{dot}"
    );
    // Five steps, loss first; mul sends a gradient to tanh twice (h * h).
    assert!(sweep.contains("step 1: #4 sum") && sweep.contains("step 5: #0 leaf"), "{sweep}");
    assert_eq!(sweep.matches("-> n2 ").count(), 2, "{sweep}");
}

#[test]
fn hessian_vector_product_and_gradient_penalty() {
    let (err, first, last) = higher_order::run(40, false);
    assert!(err < 1e-6, "HVP differs from finite differences by {err}");
    assert!(last < first * 0.5, "penalty {first} -> {last}");
}

#[test]
fn gan_samples_land_near_the_real_modes() {
    let o = gan::run(1500, None, false);
    assert!(
        o.near_a_mode > 0.5 && o.modes_covered >= 6,
        "{} near, {} modes",
        o.near_a_mode,
        o.modes_covered
    );
}

#[test]
fn residual_cnn_trains() {
    let epochs = resnet::run(2, Some(1000), false);
    assert!(epochs[1].0 < epochs[0].0 * 0.8, "training loss falls: {epochs:?}");
}

#[test]
fn custom_op_passes_both_checks() {
    let (first, second) = custom_op::run(false);
    assert!(first.passed && second.passed, "{first}\n{second}");
}

#[path = "../examples/pinn.rs"]
#[allow(dead_code)]
mod pinn;

/// The physics-informed fit reaches `sin x` from nothing but `u'' + u = 0` and its initial
/// values (the full example, 3000 steps, reaches 2.4e-4 in about a second).
#[test]
fn pinn_learns_the_sine_from_its_equation() {
    let (error, losses) = pinn::run(800, false);
    assert!(error < 2e-2, "max |u - sin| = {error}");
    assert!(losses.last().unwrap() < &(losses[0] * 1e-2), "loss falls: {losses:?}");
}

#[path = "../examples/jacobian.rs"]
#[allow(dead_code)]
mod jacobian;

#[test]
fn jacobians_by_rows_and_columns_and_hessians_agree() {
    let (jacobian_gap, hessian_gap) = jacobian::run(false);
    assert!(jacobian_gap < 1e-12 && hessian_gap < 1e-12, "{jacobian_gap} {hessian_gap}");
}

#[path = "../examples/checkpointing.rs"]
#[allow(dead_code)]
mod checkpointing;

#[test]
fn checkpointing_saves_memory_and_keeps_gradients() {
    let (plain, plain_peak, _, want) = checkpointing::run(0, 8);
    let (four, four_peak, _, got) = checkpointing::run(4, 8);
    assert_eq!(got, want);
    assert!(four * 4 < plain, "{four} vs {plain}");
    assert!(four_peak * 2 < plain_peak, "peak during backward {four_peak} vs {plain_peak}");
}
