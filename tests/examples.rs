//! The examples, run in a reduced form: each must still learn. The example sources are
//! compiled into this test as modules, so the test runs exactly the code a user runs.

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
