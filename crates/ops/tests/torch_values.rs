//! Values and gradients against PyTorch: tests/fixtures/torch_ops.json holds PyTorch's
//! outputs (and, for most cases, the indices it chose and the gradients of every input for
//! a given `grad_output`) for fixed float64 inputs, written by tools/torch_op_reference.py,
//! so no torch is needed here. Every case runs in f64 and in f32 (which reaches the f32-only
//! SIMD kernels); gradients are taken both with a plain backward (fused rules) and with
//! `create_graph` (the composed, differentiable rules).
//!
//! NaN and the infinities are stored as the strings "nan", "inf" and "-inf". A NaN must meet
//! a NaN and an infinity the same infinity; finite values agree within a tolerance (the
//! sign of a zero is not compared: PyTorch's own varies with its vector width).

use serde_json::Value;
use tapegrad_ops::functional::{self, BatchNormStats};
use tapegrad_ops::prelude::*;
use tapegrad_ops::{AvgPool2dOptions, ConvOptions, MaxPool2dOptions, Reduction};
use tapegrad_tape::{BackwardOptions, DType, GradOptions, Tensor, grad};

/// A number from the fixture: a JSON number or one of "nan", "inf", "-inf".
fn number(v: &Value) -> f64 {
    match v {
        Value::String(s) => match s.as_str() {
            "nan" => f64::NAN,
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            other => panic!("not a number: {other:?}"),
        },
        v => v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")),
    }
}

fn decode(v: &Value) -> (Vec<usize>, Vec<f64>) {
    let shape =
        v["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    (shape, v["data"].as_array().unwrap().iter().map(number).collect())
}

fn tensor(v: &Value, dtype: DType) -> Tensor {
    let (shape, data) = decode(v);
    Tensor::from_vec(data, &shape).to_dtype(dtype)
}

fn pair(args: &Value, key: &str) -> (usize, usize) {
    let a = args[key].as_array().unwrap();
    (a[0].as_u64().unwrap() as usize, a[1].as_u64().unwrap() as usize)
}

/// An optional number argument (absent or null is `None`).
fn opt(args: &Value, key: &str) -> Option<f64> {
    args.get(key).filter(|v| !v.is_null()).map(number)
}

/// The tapegrad call for a case: its output and, for max/min along a dimension and max
/// pooling, the chosen indices.
fn run(name: &str, x: &[Tensor], args: &Value) -> (Tensor, Option<Tensor>) {
    let dim = || args["dim"].as_i64().unwrap() as isize;
    let keepdim = || args.get("keepdim").and_then(Value::as_bool).unwrap_or(false);
    let maybe_dim = || args.get("dim").and_then(Value::as_i64).map(|d| d as isize);
    let value = match name {
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
        "gelu_tanh" => x[0].gelu_with(tapegrad_ops::GeluApproximate::Tanh),
        "softplus" => x[0].softplus(),
        "elu" => x[0].elu_with(opt(args, "alpha").unwrap_or(1.0)),
        "leaky_relu" => x[0].leaky_relu_with(0.1),
        "square" => x[0].square(),
        "hardtanh" => {
            x[0].hardtanh_with(opt(args, "min").unwrap_or(-1.0), opt(args, "max").unwrap_or(1.0))
        }
        "relu6" => x[0].relu6(),
        "hardsigmoid" => x[0].hardsigmoid(),
        "hardswish" => x[0].hardswish(),
        "mish" => x[0].mish(),
        "selu" => x[0].selu(),
        "celu" => x[0].celu_with(opt(args, "alpha").unwrap_or(1.0)),
        "logsigmoid" => x[0].logsigmoid(),
        "softsign" => x[0].softsign(),
        "tanhshrink" => x[0].tanhshrink(),
        "amax" | "amin" => {
            let dims: Vec<isize> = args["dims"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_i64().unwrap() as isize)
                .collect();
            if name == "amax" { x[0].amax(&dims, keepdim()) } else { x[0].amin(&dims, keepdim()) }
        }
        "max_pool1d" => {
            let int = |key: &str, default: u64| {
                args.get(key).and_then(Value::as_u64).unwrap_or(default) as usize
            };
            let kernel = int("kernel", 0);
            let options = tapegrad_ops::MaxPool1dOptions::default()
                .stride(int("stride", kernel as u64))
                .padding(int("padding", 0))
                .dilation(int("dilation", 1))
                .ceil_mode(args.get("ceil_mode").and_then(Value::as_bool).unwrap_or(false));
            let (v, i) = functional::max_pool1d_with_indices(&x[0], kernel, options);
            return (v, Some(i));
        }
        "avg_pool1d" => {
            let int = |key: &str, default: u64| {
                args.get(key).and_then(Value::as_u64).unwrap_or(default) as usize
            };
            let kernel = int("kernel", 0);
            let flag = |key: &str, default: bool| {
                args.get(key).and_then(Value::as_bool).unwrap_or(default)
            };
            let options = tapegrad_ops::AvgPool1dOptions::default()
                .stride(int("stride", kernel as u64))
                .padding(int("padding", 0))
                .ceil_mode(flag("ceil_mode", false))
                .count_include_pad(flag("count_include_pad", true));
            functional::avg_pool1d_with(&x[0], kernel, options)
        }
        "adaptive_avg_pool1d" => {
            functional::adaptive_avg_pool1d(&x[0], args["size"].as_u64().unwrap() as usize)
        }
        "adaptive_max_pool1d" => {
            functional::adaptive_max_pool1d(&x[0], args["size"].as_u64().unwrap() as usize)
        }
        "adaptive_max_pool2d" => functional::adaptive_max_pool2d(&x[0], pair(args, "size")),
        "conv_transpose1d" => {
            let int = |key: &str| args[key].as_u64().unwrap() as usize;
            let options = tapegrad_ops::ConvOptions::default()
                .stride(int("stride"))
                .padding(int("padding"))
                .output_padding(int("output_padding"))
                .groups(int("groups"))
                .dilation(int("dilation"));
            functional::conv_transpose1d_with(&x[0], &x[1], Some(&x[2]), options)
        }
        "margin_ranking_loss"
        | "triplet_margin_loss"
        | "cosine_embedding_loss"
        | "hinge_embedding_loss"
        | "soft_margin_loss"
        | "poisson_nll_loss"
        | "gaussian_nll_loss" => {
            let reduction = match args["reduction"].as_str().unwrap() {
                "mean" => Reduction::Mean,
                "sum" => Reduction::Sum,
                _ => Reduction::None,
            };
            let num = |key: &str| args[key].as_f64().unwrap();
            let flag = |key: &str| args[key].as_bool().unwrap();
            match name {
                "margin_ranking_loss" => tapegrad_ops::MarginRankingLoss::new()
                    .margin(num("margin"))
                    .reduction(reduction)
                    .forward(&x[0], &x[1], &x[2]),
                "triplet_margin_loss" => tapegrad_ops::TripletMarginLoss::new()
                    .margin(num("margin"))
                    .p(num("p"))
                    .eps(num("eps"))
                    .swap(flag("swap"))
                    .reduction(reduction)
                    .forward(&x[0], &x[1], &x[2]),
                "cosine_embedding_loss" => tapegrad_ops::CosineEmbeddingLoss::new()
                    .margin(num("margin"))
                    .reduction(reduction)
                    .forward(&x[0], &x[1], &x[2]),
                "hinge_embedding_loss" => tapegrad_ops::HingeEmbeddingLoss::new()
                    .margin(num("margin"))
                    .reduction(reduction)
                    .forward(&x[0], &x[1]),
                "soft_margin_loss" => {
                    tapegrad_ops::SoftMarginLoss::new().reduction(reduction).forward(&x[0], &x[1])
                }
                "poisson_nll_loss" => tapegrad_ops::PoissonNLLLoss::new()
                    .log_input(flag("log_input"))
                    .full(flag("full"))
                    .eps(num("eps"))
                    .reduction(reduction)
                    .forward(&x[0], &x[1]),
                _ => tapegrad_ops::GaussianNLLLoss::new()
                    .full(flag("full"))
                    .eps(num("eps"))
                    .reduction(reduction)
                    .forward(&x[0], &x[1], &x[2]),
            }
        }
        "mm" => x[0].mm(&x[1]),
        "bmm" => x[0].bmm(&x[1]),
        "mv" => x[0].mv(&x[1]),
        "dot" => x[0].dot(&x[1]),
        "outer" => x[0].outer(&x[1]),
        "cdist" => tapegrad_ops::cdist(&x[0], &x[1], args["p"].as_f64().unwrap()),
        "diagonal" => {
            let int = |key: &str| args[key].as_i64().unwrap();
            x[0].diagonal(int("offset"), int("dim1") as isize, int("dim2") as isize)
        }
        "trace" => x[0].trace(),
        "diff" => x[0].diff(args["n"].as_u64().unwrap() as usize, dim()),
        "tan" => x[0].tan(),
        "asin" => x[0].asin(),
        "acos" => x[0].acos(),
        "atan" => x[0].atan(),
        "atan2" => x[0].atan2(&x[1]),
        "sinh" => x[0].sinh(),
        "cosh" => x[0].cosh(),
        "asinh" => x[0].asinh(),
        "acosh" => x[0].acosh(),
        "atanh" => x[0].atanh(),
        "expm1" => x[0].expm1(),
        "exp2" => x[0].exp2(),
        "log2" => x[0].log2(),
        "log10" => x[0].log10(),
        "logaddexp" => x[0].logaddexp(&x[1]),
        "sign" => x[0].sign(),
        "floor" => x[0].floor(),
        "ceil" => x[0].ceil(),
        "round" => x[0].round(),
        "trunc" => x[0].trunc(),
        "frac" => x[0].frac(),
        "glu" => x[0].glu(dim()),
        "prelu" => x[0].prelu(&x[1]),
        "sort" => {
            let descending = args["descending"].as_bool().unwrap();
            let (values, indices) = x[0].sort(dim(), descending);
            return (values, Some(indices));
        }
        "argsort" => x[0].argsort(dim(), args["descending"].as_bool().unwrap()),
        "topk" => {
            let k = args["k"].as_u64().unwrap() as usize;
            let (values, indices) = x[0].topk_with(k, dim(), args["largest"].as_bool().unwrap());
            return (values, Some(indices));
        }
        "std" => {
            let correction = opt(args, "correction").unwrap();
            match maybe_dim() {
                Some(d) => x[0].std_dim(d, correction, keepdim()),
                None => x[0].std(correction),
            }
        }
        "einsum" => {
            let operands: Vec<&Tensor> = x.iter().collect();
            tapegrad_ops::einsum(args["equation"].as_str().unwrap(), &operands)
        }
        "kl_div" => {
            let loss =
                tapegrad_ops::KLDivLoss::new().log_target(args["log_target"].as_bool().unwrap());
            let loss = match args["reduction"].as_str().unwrap() {
                "batchmean" => loss.batchmean(),
                "sum" => loss.reduction(Reduction::Sum),
                "mean" => loss.reduction(Reduction::Mean),
                _ => loss.reduction(Reduction::None),
            };
            loss.forward(&x[0], &x[1])
        }
        "roll" => {
            let list = |key: &str| -> Vec<isize> {
                args[key].as_array().unwrap().iter().map(|v| v.as_i64().unwrap() as isize).collect()
            };
            x[0].roll(&list("shifts"), &list("dims"))
        }
        "cholesky" => tapegrad_ops::linalg::cholesky(&x[0]),
        "solve" => tapegrad_ops::linalg::solve(&x[0], &x[1]),
        "inv" => tapegrad_ops::linalg::inv(&x[0]),
        "det" => tapegrad_ops::linalg::det(&x[0]),
        "slogdet" => tapegrad_ops::linalg::slogdet(&x[0]).1,
        "slogdet_sign" => tapegrad_ops::linalg::slogdet(&x[0]).0,
        "qr" => {
            let mode = match args["mode"].as_str().unwrap() {
                "complete" => tapegrad_ops::linalg::QrMode::Complete,
                _ => tapegrad_ops::linalg::QrMode::Reduced,
            };
            let (q, r) = tapegrad_ops::linalg::qr_with(&x[0], mode);
            tapegrad_ops::cat(&[&q.reshape(&[-1]), &r.reshape(&[-1])], 0)
        }
        "eigh" => {
            let (l, v) = tapegrad_ops::linalg::eigh(&x[0]);
            tapegrad_ops::cat(&[&l.reshape(&[-1]), &v.square().reshape(&[-1])], 0)
        }
        "eigvalsh" => tapegrad_ops::linalg::eigvalsh(&x[0]),
        "svd" => {
            let full = args["full"].as_bool().unwrap();
            let options = tapegrad_ops::linalg::SvdOptions::default().full_matrices(full);
            let (u, s, vh) = tapegrad_ops::linalg::svd_with(&x[0], options);
            let k = s.shape()[s.dim() - 1];
            let (u, vh) = (u.narrow(-1, 0, k), vh.narrow(-2, 0, k));
            let flat = |t: &Tensor| t.reshape(&[-1]);
            let (squares_u, squares_vh) = (flat(&u.square()), flat(&vh.square()));
            tapegrad_ops::cat(&[&flat(&s), &squares_u, &squares_vh, &flat(&u.matmul(&vh))], 0)
        }
        "svdvals" => tapegrad_ops::linalg::svdvals(&x[0]),
        "pinv" => tapegrad_ops::linalg::pinv(&x[0]),
        "matrix_norm" => {
            use tapegrad_ops::linalg::MatrixOrd;
            let ord = match &args["ord"] {
                Value::String(s) if s == "fro" => MatrixOrd::Fro,
                Value::String(s) if s == "nuc" => MatrixOrd::Nuc,
                other => match number(other) {
                    2.0 => MatrixOrd::Two,
                    -2.0 => MatrixOrd::NegTwo,
                    1.0 => MatrixOrd::One,
                    -1.0 => MatrixOrd::NegOne,
                    f64::INFINITY => MatrixOrd::Inf,
                    _ => MatrixOrd::NegInf,
                },
            };
            let options =
                tapegrad_ops::linalg::MatrixNormOptions::default().ord(ord).keepdim(keepdim());
            tapegrad_ops::linalg::matrix_norm_with(&x[0], options)
        }
        "cond" => tapegrad_ops::linalg::cond(&x[0]),
        "matrix_rank" => tapegrad_ops::linalg::matrix_rank(&x[0]),
        "qr_r" => tapegrad_ops::linalg::qr_with(&x[0], tapegrad_ops::linalg::QrMode::R).1,
        "cross" => {
            tapegrad_ops::linalg::cross(&x[0], &x[1], args["dim"].as_i64().unwrap() as isize)
        }
        "lstsq" => tapegrad_ops::linalg::lstsq(&x[0], &x[1]),
        "matrix_power" => tapegrad_ops::linalg::matrix_power(&x[0], args["k"].as_i64().unwrap()),
        "solve_triangular" => {
            let flag = |key: &str| args[key].as_bool().unwrap();
            let options = tapegrad_ops::linalg::SolveTriangularOptions::default()
                .left(flag("left"))
                .unitriangular(flag("unitriangular"));
            tapegrad_ops::linalg::solve_triangular_with(&x[0], &x[1], flag("upper"), options)
        }
        "lgamma" => x[0].lgamma(),
        "digamma" => x[0].digamma(),
        "polygamma" => x[0].polygamma(args["n"].as_u64().unwrap() as u32),
        "repeat_interleave" => {
            x[0].repeat_interleave(args["repeats"].as_u64().unwrap() as usize, dim())
        }
        "movedim" => {
            let int = |key: &str| args[key].as_i64().unwrap() as isize;
            x[0].movedim(int("source"), int("destination"))
        }
        "pixel_shuffle" => {
            functional::pixel_shuffle(&x[0], args["factor"].as_u64().unwrap() as usize)
        }
        "pixel_unshuffle" => {
            functional::pixel_unshuffle(&x[0], args["factor"].as_u64().unwrap() as usize)
        }
        "tril" => x[0].tril(args["diagonal"].as_i64().unwrap()),
        "triu" => x[0].triu(args["diagonal"].as_i64().unwrap()),
        "log" => x[0].log(),
        "log1p" => x[0].log1p(),
        "sqrt" => x[0].sqrt(),
        "rsqrt" => x[0].rsqrt(),
        "reciprocal" => x[0].reciprocal(),
        "pow" => x[0].pow(opt(args, "p").unwrap()),
        "pow_tensor" => x[0].pow(&x[1]),
        "clamp" => x[0].clamp(opt(args, "min"), opt(args, "max")),
        "maximum" => x[0].maximum(&x[1]),
        "minimum" => x[0].minimum(&x[1]),
        "gt" => x[0].gt(&x[1]),
        "ge" => x[0].ge(&x[1]),
        "lt" => x[0].lt(&x[1]),
        "le" => x[0].le(&x[1]),
        "eq" => x[0].eq(&x[1]),
        "ne" => x[0].ne(&x[1]),
        "where" => tapegrad_ops::where_(&x[0], &x[1], &x[2]),
        "max" => x[0].max(),
        "min" => x[0].min(),
        "max_dim" | "min_dim" => {
            let (v, i) = if name == "max_dim" {
                x[0].max_dim(dim(), keepdim())
            } else {
                x[0].min_dim(dim(), keepdim())
            };
            return (v, Some(i));
        }
        "argmax" => x[0].argmax(maybe_dim(), keepdim()),
        "argmin" => x[0].argmin(maybe_dim(), keepdim()),
        "softmax" => x[0].softmax(dim()),
        "log_softmax" => x[0].log_softmax(dim()),
        "logsumexp" => x[0].logsumexp(dim(), false),
        "var" => x[0].var_dim(dim(), 1.0, false),
        "norm" => {
            let p = opt(args, "p").unwrap_or(2.0);
            match maybe_dim() {
                Some(d) => x[0].norm_dim(p, d, false),
                None => x[0].norm(p),
            }
        }
        "matmul" => x[0].matmul(&x[1]),
        "cross_entropy" => functional::cross_entropy(&x[0], &x[1].to_dtype(DType::I64)),
        "binary_cross_entropy" => functional::binary_cross_entropy(&x[0], &x[1]),
        "binary_cross_entropy_with_logits" => {
            functional::binary_cross_entropy_with_logits(&x[0], &x[1])
        }
        "smooth_l1_loss" => functional::smooth_l1_loss_with(
            &x[0],
            &x[1],
            tapegrad_ops::SmoothL1Loss::new().beta(args["beta"].as_f64().unwrap()),
        ),
        "conv2d" => functional::conv2d_with(
            &x[0],
            &x[1],
            Some(&x[2]),
            ConvOptions::default()
                .stride(pair(args, "stride"))
                .padding(pair(args, "padding"))
                .dilation(pair(args, "dilation"))
                .groups(args["groups"].as_u64().unwrap() as usize),
        ),
        "conv_transpose2d" => functional::conv_transpose2d_with(
            &x[0],
            &x[1],
            Some(&x[2]),
            ConvOptions::default()
                .stride(pair(args, "stride"))
                .padding(pair(args, "padding"))
                .output_padding(pair(args, "output_padding")),
        ),
        "max_pool2d" => {
            let options = MaxPool2dOptions::default()
                .stride(pair(args, "stride"))
                .padding(pair(args, "padding"));
            let (v, i) = functional::max_pool2d_with_indices(&x[0], pair(args, "kernel"), options);
            return (v, Some(i));
        }
        "avg_pool2d" => functional::avg_pool2d_with(
            &x[0],
            pair(args, "kernel"),
            AvgPool2dOptions::default().stride(pair(args, "stride")).padding(pair(args, "padding")),
        ),
        "adaptive_avg_pool2d" => functional::adaptive_avg_pool2d(&x[0], pair(args, "size")),
        "layer_norm" => {
            let options = tapegrad_ops::LayerNormOptions::default().weight(&x[1]).bias(&x[2]);
            functional::layer_norm_with(&x[0], &[x[1].numel()], options)
        }
        "batch_norm" => {
            let stats = BatchNormStats::new(x[1].numel(), x[0].dtype());
            let options =
                tapegrad_ops::BatchNormOptions::default().weight(&x[1]).bias(&x[2]).training(true);
            let out = functional::batch_norm_with(&x[0], Some(&stats), options);
            let running = tapegrad_ops::cat(&[&stats.running_mean, &stats.running_var], 0);
            RUNNING.with(|r| *r.borrow_mut() = Some(running.reshape(&[2, -1])));
            out
        }
        "batch_norm_running" => {
            RUNNING.with(|r| r.borrow().clone().expect("batch_norm case runs first"))
        }
        "cross_entropy_opts" => {
            let weight: Vec<f64> = args["weight"].as_array().unwrap().iter().map(number).collect();
            let n = weight.len();
            let reduction = match args["reduction"].as_str().unwrap() {
                "mean" => tapegrad_ops::Reduction::Mean,
                "sum" => tapegrad_ops::Reduction::Sum,
                _ => tapegrad_ops::Reduction::None,
            };
            let loss = tapegrad_ops::CrossEntropyLoss::new()
                .weight(&Tensor::from_vec(weight, &[n]).to_dtype(x[0].dtype()))
                .ignore_index(args["ignore_index"].as_i64().unwrap())
                .label_smoothing(number(&args["label_smoothing"]))
                .reduction(reduction);
            functional::cross_entropy_with(&x[0], &x[1].to_dtype(DType::I64), loss)
        }
        "cross_entropy_soft_ls" => functional::cross_entropy_with(
            &x[0],
            &x[1],
            tapegrad_ops::CrossEntropyLoss::new().label_smoothing(number(&args["label_smoothing"])),
        ),
        "bce_logits_pos_weight" => functional::binary_cross_entropy_with_logits_with(
            &x[0],
            &x[1],
            tapegrad_ops::BCEWithLogitsLoss::new()
                .weight(&tensor(&args["weight"], x[0].dtype()))
                .pos_weight(&tensor(&args["pos_weight"], x[0].dtype())),
        ),
        "bce_weight" => functional::binary_cross_entropy_with(
            &x[0],
            &x[1],
            tapegrad_ops::BCELoss::new().weight(&tensor(&args["weight"], x[0].dtype())),
        ),
        "huber_loss" => functional::huber_loss_with(
            &x[0],
            &x[1],
            tapegrad_ops::HuberLoss::new().delta(number(&args["delta"])),
        ),
        "conv2d_same" => functional::conv2d_with(
            &x[0],
            &x[1],
            Some(&x[2]),
            ConvOptions::default()
                .padding(tapegrad_ops::Padding::Same)
                .dilation(pair(args, "dilation")),
        ),
        "conv1d_same" => functional::conv1d_with(
            &x[0],
            &x[1],
            None,
            ConvOptions::default().padding(tapegrad_ops::Padding::Same),
        ),
        "max_pool2d_opts" => {
            let options = MaxPool2dOptions::default()
                .stride(pair(args, "stride"))
                .padding(pair(args, "padding"))
                .dilation(pair(args, "dilation"))
                .ceil_mode(true);
            let (v, i) = functional::max_pool2d_with_indices(&x[0], pair(args, "kernel"), options);
            return (v, Some(i));
        }
        "avg_pool2d_opts" => functional::avg_pool2d_with(
            &x[0],
            pair(args, "kernel"),
            AvgPool2dOptions::default()
                .stride(pair(args, "stride"))
                .padding(pair(args, "padding"))
                .ceil_mode(true)
                .count_include_pad(args["count_include_pad"].as_bool().unwrap()),
        ),
        "avg_pool2d_divisor" => functional::avg_pool2d_with(
            &x[0],
            2,
            AvgPool2dOptions::default()
                .divisor_override(args["divisor"].as_u64().unwrap() as usize),
        ),
        "normalize" => functional::normalize_with(
            &x[0],
            tapegrad_ops::NormalizeOptions::default()
                .p(number(&args["p"]))
                .dim(dim())
                .eps(number(&args["eps"])),
        ),
        "cosine_similarity" => functional::cosine_similarity_with(
            &x[0],
            &x[1],
            tapegrad_ops::CosineSimilarityOptions::default().dim(dim()).eps(number(&args["eps"])),
        ),
        "pairwise_distance" => functional::pairwise_distance_with(
            &x[0],
            &x[1],
            tapegrad_ops::PairwiseDistanceOptions::default()
                .p(number(&args["p"]))
                .eps(number(&args["eps"]))
                .keepdim(args["keepdim"].as_bool().expect("keepdim")),
        ),
        "one_hot" => functional::one_hot(
            &x[0].to_dtype(DType::I64),
            args.get("num_classes").and_then(Value::as_u64).map(|n| n as usize),
        ),
        "interpolate" => {
            let list = |key: &str| args.get(key).and_then(Value::as_array).cloned();
            let mut options = match (list("size"), list("scale")) {
                (Some(size), None) => tapegrad_ops::InterpolateOptions::size(
                    &size.iter().map(|v| v.as_u64().unwrap() as usize).collect::<Vec<_>>(),
                ),
                (None, Some(scale)) => tapegrad_ops::InterpolateOptions::scale_factors(
                    &scale.iter().map(number).collect::<Vec<_>>(),
                ),
                _ => panic!("interpolate case without size or scale: {args}"),
            };
            options = options.mode(match args["mode"].as_str().unwrap() {
                "nearest" => tapegrad_ops::InterpolateMode::Nearest,
                "nearest-exact" => tapegrad_ops::InterpolateMode::NearestExact,
                "linear" => tapegrad_ops::InterpolateMode::Linear,
                "bilinear" => tapegrad_ops::InterpolateMode::Bilinear,
                "trilinear" => tapegrad_ops::InterpolateMode::Trilinear,
                other => panic!("mode {other}"),
            });
            if let Some(align) = args.get("align").and_then(Value::as_bool) {
                options = options.align_corners(align);
            }
            let recompute = args["recompute"].as_bool().unwrap();
            functional::interpolate_with(&x[0], options.recompute_scale_factor(recompute))
        }
        "pad" => {
            let pads: Vec<isize> = args["pads"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap() as isize)
                .collect();
            let mode = match args["mode"].as_str().unwrap() {
                "reflect" => tapegrad_ops::PadMode::Reflect,
                "replicate" => tapegrad_ops::PadMode::Replicate,
                "circular" => tapegrad_ops::PadMode::Circular,
                _ => tapegrad_ops::PadMode::Constant(number(&args["value"])),
            };
            functional::pad_with(&x[0], &pads, mode)
        }
        "prod_dim" => x[0].prod_dim(dim(), false),
        "cumsum" => x[0].cumsum(dim()),
        "cumprod" => x[0].cumprod(dim()),
        "softplus_opts" => x[0].softplus_with(
            tapegrad_ops::SoftplusOptions::default()
                .beta(number(&args["beta"]))
                .threshold(number(&args["threshold"])),
        ),
        other => panic!("no tapegrad call for fixture case {other}"),
    };
    (value, None)
}

thread_local! {
    static RUNNING: std::cell::RefCell<Option<Tensor>> = const { std::cell::RefCell::new(None) };
}

/// The first element where `got` differs from PyTorch's `expected`, described: NaN must be
/// NaN, an infinity the same infinity, a finite value within `tol` relative to
/// `max(|expected|, 1)` (exactly, with `tol` 0).
fn mismatch(got: &Tensor, (shape, expected): &(Vec<usize>, Vec<f64>), tol: f64) -> Option<String> {
    if got.shape() != shape.as_slice() {
        return Some(format!("shape {:?}, PyTorch {shape:?}", got.shape()));
    }
    let got = got.to_vec::<f64>();
    let bad = |&(a, b): &(f64, f64)| {
        if b.is_nan() || b.is_infinite() {
            !(a.is_nan() && b.is_nan()) && a != b
        } else {
            !a.is_finite() || (a - b).abs() > tol * b.abs().max(1.0)
        }
    };
    let pairs: Vec<(f64, f64)> = got.iter().copied().zip(expected.iter().copied()).collect();
    let first = pairs.iter().position(bad)?;
    let count = pairs.iter().filter(|p| bad(p)).count();
    let (a, b) = pairs[first];
    Some(format!(
        "element {first} is {a:?}, PyTorch {b:?} ({count} of {} elements differ)",
        pairs.len()
    ))
}

fn tolerance(dtype: DType) -> f64 {
    if dtype == DType::F64 { 1e-12 } else { 2e-5 }
}

/// Checks one case in one dtype, pushing a line per disagreement onto `failures`.
fn check_case(index: usize, case: &Value, dtype: DType, failures: &mut Vec<String>) {
    let name = case["name"].as_str().unwrap();
    let label = format!("case {index} ({name}, {dtype:?})");
    let args = &case["args"];
    let raw = case["inputs"].as_array().unwrap();
    let overflows_f32 =
        |v: &Value| decode(v).1.iter().any(|x| x.is_finite() && x.abs() > f32::MAX as f64);
    if dtype == DType::F32 && raw.iter().any(overflows_f32) {
        return; // an f64-only case: its finite inputs would be infinities in f32
    }
    let inputs: Vec<Tensor> = raw.iter().map(|v| tensor(v, dtype)).collect();
    // A case may widen the tolerance where PyTorch's own values are less accurate.
    let tol = args.get("tolerance").and_then(Value::as_f64).unwrap_or(0.0).max(tolerance(dtype));
    let (value, indices) = run(name, &inputs, args);
    let exact = if value.dtype() == DType::I64 { 0.0 } else { tol };
    if let Some(m) = mismatch(&value, &decode(&case["output"]), exact) {
        failures.push(format!("{label} output: {m}"));
    }
    match (indices, case.get("indices")) {
        (Some(got), Some(expected)) => {
            if let Some(m) = mismatch(&got, &decode(expected), 0.0) {
                failures.push(format!("{label} indices: {m}"));
            }
        }
        (None, Some(_)) => {
            failures.push(format!("{label}: PyTorch returns indices, tapegrad none"))
        }
        _ => {}
    }
    let Some(grads) = case.get("grads").and_then(Value::as_array) else { return };
    let g = tensor(&case["grad_output"], dtype);
    for create_graph in [false, true] {
        let mode = if create_graph { "create_graph" } else { "backward" };
        let leaves: Vec<Tensor> = inputs
            .iter()
            .zip(grads)
            .map(|(x, e)| if e.is_null() { x.clone() } else { x.detach().requires_grad() })
            .collect();
        let (y, _) = run(name, &leaves, args);
        let wanted: Vec<&Tensor> =
            leaves.iter().zip(grads).filter(|(_, e)| !e.is_null()).map(|(x, _)| x).collect();
        let got: Vec<Option<Tensor>> = if create_graph {
            let opts = GradOptions::new()
                .grad_outputs(vec![g.clone()])
                .create_graph(true)
                .allow_unused(true);
            grad(&[&y], &wanted, opts)
        } else {
            y.backward_with(Some(&g), BackwardOptions::new());
            wanted.iter().map(|x| x.grad()).collect()
        };
        let expected = grads.iter().enumerate().filter(|(_, e)| !e.is_null());
        for ((i, e), got) in expected.zip(got) {
            let (shape, data) = decode(e);
            // No gradient reaching an input means zeros.
            let got = got.unwrap_or_else(|| Tensor::zeros_dtype(&shape, dtype));
            if let Some(m) = mismatch(&got, &(shape, data), tol) {
                failures.push(format!("{label} gradient of input {i} ({mode}): {m}"));
            }
        }
    }
}

#[test]
fn values_and_gradients_match_pytorch() {
    let text = include_str!("fixtures/torch_ops.json");
    let fixtures: Value = serde_json::from_str(text).unwrap();
    let cases = fixtures["cases"].as_array().unwrap();
    let mut failures = Vec::new();
    for dtype in [DType::F64, DType::F32] {
        for (index, case) in cases.iter().enumerate() {
            check_case(index, case, dtype, &mut failures);
        }
    }
    assert!(
        failures.is_empty(),
        "{} disagreements with PyTorch:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(cases.len() >= 140);
    let with_grads = cases.iter().filter(|c| c.get("grads").is_some()).count();
    assert!(with_grads >= 80, "{with_grads} cases with gradients");
}

/// The comparison itself: a NaN where PyTorch has a number (or the reverse) fails, as does
/// an infinity of the wrong sign; finite values pass within the tolerance.
#[test]
fn comparison_treats_nan_and_infinity_exactly() {
    let t = |v: Vec<f64>| Tensor::from_vec(v, &[3]);
    let e = |v: Vec<f64>| (vec![3], v);
    let (nan, inf) = (f64::NAN, f64::INFINITY);
    assert!(mismatch(&t(vec![nan, inf, 1.0]), &e(vec![nan, inf, 1.0]), 0.0).is_none());
    assert!(mismatch(&t(vec![nan, 0.0, 1.0]), &e(vec![nan, -0.0, 1.0 + 1e-13]), 1e-12).is_none());
    let m = mismatch(&t(vec![1.0, nan, 1.0]), &e(vec![1.0, 0.5, 1.0]), 1e-12).unwrap();
    assert!(m.starts_with("element 1 is NaN"), "{m}");
    assert!(mismatch(&t(vec![0.5, 2.0, 1.0]), &e(vec![nan, 2.0, 1.0]), 1e-12).is_some());
    assert!(mismatch(&t(vec![0.5, -inf, 1.0]), &e(vec![0.5, inf, 1.0]), 1e-12).is_some());
    assert!(mismatch(&t(vec![0.5, inf, 1.0]), &e(vec![0.5, 1e308, 1.0]), 1e-12).is_some());
    assert_eq!(number(&Value::String("-inf".into())), f64::NEG_INFINITY);
}
