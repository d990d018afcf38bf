//! Activation layers against PyTorch: the fixture (tests/fixtures/activations.safetensors,
//! from tools/activation_reference.py) holds the parameters and input of an `nn.Sequential`
//! that puts every activation layer between linear layers, with PyTorch's float64 output and
//! gradients. The same stack is built here with each layer's PyTorch settings, loaded by
//! PyTorch's parameter names, and run in float64 and float32.

mod common;

use common::{Case, DTYPES, assert_close};
use tapegrad_nn::*;
use tapegrad_tape::Tensor;

fn activation_stack() -> Sequential {
    let linear = || Linear::new(8, 8);
    Sequential::new()
        .add(Linear::new(6, 8))
        .add(PReLU::new().num_parameters(8))
        .add(linear())
        .add(Hardswish)
        .add(linear())
        .add(Mish)
        .add(linear())
        .add(SELU)
        .add(linear())
        .add(CELU::new().alpha(0.5))
        .add(linear())
        .add(LogSigmoid)
        .add(linear())
        .add(Softsign)
        .add(linear())
        .add(ELU::new().alpha(0.7))
        .add(linear())
        .add(Softplus::new().beta(2.0).threshold(1.0))
        .add(linear())
        .add(Tanhshrink)
        .add(linear())
        .add(Hardtanh::new().bounds(-0.5, 0.75))
        .add(linear())
        .add(ReLU6)
        .add(Linear::new(8, 16))
        .add(GLU::new())
        .add(Linear::new(8, 5))
        .add(PReLU::new())
        .add(LogSoftmax { dim: 1 })
}

#[test]
fn every_activation_layer_in_one_stack_matches_pytorch() {
    let case = Case::new("activations.safetensors", "net");
    for (dtype, tolerance) in DTYPES {
        let mut net = activation_stack();
        case.load(&mut net, dtype);
        let x = case.input("input", dtype);
        let out = net.forward(&x);
        assert_close("out", &out, &case.get("expected.out"), tolerance);
        case.backward(&out);
        assert_close("input", &x.grad().unwrap(), &case.get("grad.input"), tolerance);
        let params = net.named_parameters();
        for name in ["0.weight", "1.weight", "12.bias", "26.weight", "27.weight"] {
            let p = &params.iter().find(|(n, _)| n == name).unwrap().1;
            let expected = case.get(&format!("grad.{name}"));
            assert_close(name, &p.grad().unwrap(), &expected, tolerance);
        }
    }
}

#[test]
fn activation_layers_default_to_pytorch_settings() {
    assert_eq!(ELU::new().alpha, 1.0);
    assert_eq!(CELU::new().alpha, 1.0);
    let hardtanh = Hardtanh::new();
    assert_eq!((hardtanh.min_val, hardtanh.max_val), (-1.0, 1.0));
    let softplus = Softplus::new().options;
    assert_eq!((softplus.beta, softplus.threshold), (1.0, 20.0));
    assert_eq!(GLU::new().dim, -1);
    let prelu = PReLU::new();
    assert_eq!(prelu.weight.to_vec::<f32>(), vec![0.25]);
    assert_eq!(prelu.named_parameters()[0].0, "weight");
    assert!(prelu.weight.tracks_grad());
}

#[test]
fn prelu_rejects_a_slope_count_that_fits_no_channel_count() {
    let prelu = PReLU::new().num_parameters(3);
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        prelu.forward(&Tensor::zeros(&[2, 4, 5]))
    }));
    let message = *err.unwrap_err().downcast::<String>().unwrap();
    assert!(message.contains("prelu") && message.contains("one per channel (4"), "{message}");
}
