//! Grouped convolution layers: each group of outputs is the ungrouped convolution of its
//! own group of inputs with its own slice of the weight.

use tapegrad_nn::*;
use tapegrad_ops::prelude::*;
use tapegrad_tape::Tensor;

/// Overwrites a parameter's values, outside the graph.
fn set(parameter: &Tensor, values: &Tensor) {
    let _guard = tapegrad_tape::no_grad();
    parameter.copy_(values);
}

fn close(a: &Tensor, b: &Tensor) {
    assert_eq!(a.shape(), b.shape());
    for (x, y) in a.to_vec::<f32>().iter().zip(b.to_vec::<f32>()) {
        assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{x} against {y}");
    }
}

#[test]
fn grouped_conv1d_convolves_each_group_on_its_own() {
    let conv = Conv1d::with_groups(4, 6, 3, 2).padding(1);
    assert_eq!(conv.weight.shape(), &[6, 2, 3]);
    let x = Tensor::randn(&[2, 4, 9]);
    let y = conv.forward(&x);
    let bias = conv.bias.as_ref().unwrap();
    for g in 0..2 {
        let part = Conv1d::new(2, 3, 3).padding(1);
        set(&part.weight, &conv.weight.narrow(0, 3 * g, 3));
        set(part.bias.as_ref().unwrap(), &bias.narrow(0, 3 * g, 3));
        close(&y.narrow(1, 3 * g, 3), &part.forward(&x.narrow(1, 2 * g, 2)));
    }
}

#[test]
fn grouped_transposed_convolutions_convolve_each_group_on_their_own() {
    let up = ConvTranspose1d::with_groups(4, 6, 4, 2).stride(2).padding(1);
    assert_eq!(up.weight.shape(), &[4, 3, 4]);
    let x = Tensor::randn(&[2, 4, 7]);
    let y = up.forward(&x);
    assert_eq!(y.shape(), &[2, 6, 14]);
    for g in 0..2 {
        let part = ConvTranspose1d::new(2, 3, 4).stride(2).padding(1);
        set(&part.weight, &up.weight.narrow(0, 2 * g, 2));
        set(part.bias.as_ref().unwrap(), &up.bias.as_ref().unwrap().narrow(0, 3 * g, 3));
        close(&y.narrow(1, 3 * g, 3), &part.forward(&x.narrow(1, 2 * g, 2)));
    }

    let up = ConvTranspose2d::with_groups(6, 4, 3, 2).stride(2).padding(1).output_padding(1);
    assert_eq!(up.weight.shape(), &[6, 2, 3, 3]);
    let x = Tensor::randn(&[1, 6, 5, 5]);
    let y = up.forward(&x);
    assert_eq!(y.shape(), &[1, 4, 10, 10]);
    for g in 0..2 {
        let part = ConvTranspose2d::new(3, 2, 3).stride(2).padding(1).output_padding(1);
        set(&part.weight, &up.weight.narrow(0, 3 * g, 3));
        set(part.bias.as_ref().unwrap(), &up.bias.as_ref().unwrap().narrow(0, 2 * g, 2));
        close(&y.narrow(1, 2 * g, 2), &part.forward(&x.narrow(1, 3 * g, 3)));
    }
}

#[test]
fn a_depthwise_conv1d_trains_one_filter_per_channel() {
    let conv = Conv1d::with_groups(3, 3, 5, 3).padding(2).no_bias();
    let x = Tensor::randn(&[4, 3, 16]);
    conv.forward(&x).square().sum().backward();
    let grad = conv.weight.grad().expect("the weight gets a gradient");
    assert_eq!(grad.shape(), &[3, 1, 5]);
}
