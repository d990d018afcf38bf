//! Forward values against PyTorch: tests/fixtures/torch_ops.json holds PyTorch's outputs for
//! fixed float64 inputs (written by tools/torch_op_reference.py), so no torch is needed here.

use serde_json::Value;
use tapegrad_ops::functional::{self, BatchNormStats, Conv2dOptions};
use tapegrad_ops::{Reduction, TensorOps};
use tapegrad_tape::{DType, Tensor};

fn tensor(v: &Value) -> Tensor {
    let shape: Vec<usize> = v["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    let data: Vec<f64> = v["data"].as_array().unwrap().iter().map(|d| d.as_f64().unwrap()).collect();
    Tensor::from_vec(data, &shape)
}

fn pair(args: &Value, key: &str) -> (usize, usize) {
    let a = args[key].as_array().unwrap();
    (a[0].as_u64().unwrap() as usize, a[1].as_u64().unwrap() as usize)
}

fn run(name: &str, x: &[Tensor], args: &Value) -> Tensor {
    let dim = || args["dim"].as_i64().unwrap() as isize;
    match name {
        "exp" => x[0].exp(),
        "tanh" => x[0].tanh(),
        "sigmoid" => x[0].sigmoid(),
        "relu" => x[0].relu(),
        "abs" => x[0].abs(),
        "sin" => x[0].sin(),
        "cos" => x[0].cos(),
        "erf" => x[0].erf(),
        "silu" => x[0].silu(),
        "gelu" => x[0].gelu(),
        "gelu_tanh" => x[0].gelu_tanh(),
        "softplus" => x[0].softplus(),
        "elu" => x[0].elu(1.0),
        "leaky_relu" => x[0].leaky_relu(0.1),
        "square" => x[0].square(),
        "log" => x[0].log(),
        "log1p" => x[0].log1p(),
        "sqrt" => x[0].sqrt(),
        "rsqrt" => x[0].rsqrt(),
        "reciprocal" => x[0].reciprocal(),
        "softmax" => x[0].softmax(dim()),
        "log_softmax" => x[0].log_softmax(dim()),
        "logsumexp" => x[0].logsumexp(dim(), false),
        "var" => x[0].var_dim(dim(), 1.0, false),
        "norm" => x[0].norm_dim(2.0, dim(), false),
        "matmul" => x[0].matmul(&x[1]),
        "cross_entropy" => functional::cross_entropy(&x[0], &x[1].to_dtype(DType::I64)),
        "binary_cross_entropy" => functional::binary_cross_entropy(&x[0], &x[1], Reduction::Mean),
        "binary_cross_entropy_with_logits" => {
            functional::binary_cross_entropy_with_logits(&x[0], &x[1], Reduction::Mean)
        }
        "smooth_l1_loss" => functional::smooth_l1_loss(&x[0], &x[1], args["beta"].as_f64().unwrap(), Reduction::Mean),
        "conv2d" => functional::conv2d(
            &x[0],
            &x[1],
            Some(&x[2]),
            Conv2dOptions {
                stride: pair(args, "stride"),
                padding: pair(args, "padding"),
                dilation: pair(args, "dilation"),
                groups: args["groups"].as_u64().unwrap() as usize,
            },
        ),
        "conv_transpose2d" => functional::conv_transpose2d(
            &x[0],
            &x[1],
            Some(&x[2]),
            Conv2dOptions { stride: pair(args, "stride"), padding: pair(args, "padding"), ..Default::default() },
            pair(args, "output_padding"),
        ),
        "max_pool2d" => {
            functional::max_pool2d(&x[0], pair(args, "kernel"), pair(args, "stride"), pair(args, "padding"))
        }
        "avg_pool2d" => {
            functional::avg_pool2d(&x[0], pair(args, "kernel"), pair(args, "stride"), pair(args, "padding"))
        }
        "adaptive_avg_pool2d" => functional::adaptive_avg_pool2d(&x[0], pair(args, "size")),
        "layer_norm" => functional::layer_norm(&x[0], &[x[1].numel()], Some(&x[1]), Some(&x[2]), 1e-5),
        "batch_norm" => {
            let stats = BatchNormStats::new(x[1].numel(), DType::F64);
            let out = functional::batch_norm(&x[0], Some(&stats), Some(&x[1]), Some(&x[2]), true, 0.1, 1e-5);
            let running = tapegrad_ops::cat(&[&stats.running_mean, &stats.running_var], 0);
            RUNNING.with(|r| *r.borrow_mut() = Some(running.reshape(&[2, -1])));
            out
        }
        "batch_norm_running" => RUNNING.with(|r| r.borrow().clone().expect("batch_norm case runs first")),
        other => panic!("no tapegrad call for fixture case {other}"),
    }
}

thread_local! {
    static RUNNING: std::cell::RefCell<Option<Tensor>> = const { std::cell::RefCell::new(None) };
}

#[test]
fn forward_values_match_pytorch() {
    let text = include_str!("fixtures/torch_ops.json");
    let fixtures: Value = serde_json::from_str(text).unwrap();
    let mut failures = Vec::new();
    let cases = fixtures["cases"].as_array().unwrap();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let inputs: Vec<Tensor> = case["inputs"].as_array().unwrap().iter().map(tensor).collect();
        let expected = tensor(&case["output"]);
        let got = run(name, &inputs, &case["args"]);
        if got.shape() != expected.shape() {
            failures.push(format!("{name}: shape {:?}, PyTorch {:?}", got.shape(), expected.shape()));
            continue;
        }
        let worst = got
            .to_vec::<f64>()
            .iter()
            .zip(expected.to_vec::<f64>())
            .map(|(a, b)| (a - b).abs() / (1e-300 + b.abs().max(1.0)))
            .fold(0.0f64, f64::max);
        if worst > 1e-12 {
            failures.push(format!("{name}: relative difference {worst:e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(cases.len() >= 38);
}
