//! tapegrad's benchmark: the fixed workloads W1-W10, run on tapegrad and, when a Python with
//! torch is available, on PyTorch in alternation (bench/torch_workloads.py), printed as one
//! table of medians, spreads and ratios.
//!
//!     cargo bench --bench workloads                      # W1-W5, conv, W7-W10, 5 alternating runs
//!     cargo bench --bench workloads -- --only w3,w4      # some workloads
//!     cargo bench --bench workloads -- --only conv       # issue 3's convolution bar
//!     cargo bench --bench workloads -- --w6              # also Fashion-MNIST end to end
//!     cargo bench --bench workloads -- --threads 1       # single-threaded kernels
//!     cargo bench --bench workloads -- --json            # one JSON line per measurement
//!     cargo bench --bench workloads -- --quick           # tiny sizes (what CI runs)
//!
//! The PyTorch side uses `$TAPEGRAD_BENCH_PYTHON` (default `python3`); without torch the
//! table shows tapegrad alone.

// The included example declares the shared `examples/common` helpers itself.
#![allow(clippy::duplicate_mod)]

use std::process::Command;
use std::time::Instant;

use tapegrad::data::{DataLoader, Mnist};
use tapegrad::nn::{Forward, Module, Optimizer, Sequential, metrics};
use tapegrad::prelude::*;
use tapegrad_kernels::gemm::{View, library_gemm_serial};

/// How big and how often.
#[derive(Clone, Copy)]
pub struct Settings {
    pub quick: bool,
    pub runs: usize,
}

/// One measured quantity of a workload.
pub struct Measure {
    pub workload: String,
    pub metric: String,
    pub unit: String,
    /// Whether larger is better (GFLOP/s) or smaller (time).
    pub higher_is_better: bool,
    pub ours: Vec<f64>,
    pub torch: Vec<f64>,
    pub note: String,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() { f64::NAN } else { s[s.len() / 2] }
}

/// W1/W2: `x = tanh(x * 1.0001 + 0.001)` N times, then backward; ns per recorded op
/// (forward+backward, and forward alone). Graph teardown is outside the timing.
pub fn chain(numel: usize, s: Settings) -> (f64, f64) {
    let n = if s.quick { 100 } else { 10_000 };
    let x0 = Tensor::full(&[numel], 0.5).requires_grad();
    let (mut fwd, mut tot) = (vec![], vec![]);
    for r in 0..(if s.quick { 2 } else { 6 }) {
        x0.zero_grad();
        let t0 = Instant::now();
        let mut x = x0.clone();
        for _ in 0..n {
            x = (&x * 1.0001 + 0.001).tanh();
        }
        let t1 = t0.elapsed();
        if numel == 1 {
            x.backward()
        } else {
            x.sum().backward()
        }
        let t2 = t0.elapsed();
        if r > 0 {
            fwd.push(t1.as_nanos() as f64 / (3 * n) as f64);
            tot.push(t2.as_nanos() as f64 / (3 * n) as f64);
        }
        drop(x);
    }
    (median(&tot), median(&fwd))
}

/// The models of the main job, so that W3/W4/W6 measure exactly what users run.
#[path = "../examples/mnist.rs"]
#[allow(dead_code)]
mod mnist;

use mnist::{cnn, mlp};

/// Runs `step` `warmup + count` times; the median of the last `count` in ms.
fn median_step_ms(warmup: usize, count: usize, mut step: impl FnMut()) -> f64 {
    let mut times = vec![];
    for i in 0..warmup + count {
        let t0 = Instant::now();
        step();
        if i >= warmup {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    median(&times)
}

fn train_steps(
    model: &Sequential,
    opt: &mut dyn Optimizer,
    x: &Tensor,
    y: &Tensor,
    warmup: usize,
    count: usize,
) -> f64 {
    median_step_ms(warmup, count, || {
        opt.zero_grad();
        backward_noting(&F::cross_entropy(&model.forward(x), y));
        opt.step();
    })
}

fn labels(n: usize) -> Tensor {
    let u = Tensor::rand(&[n]).to_vec::<f32>();
    Tensor::from_vec(u.iter().map(|v| (v * 10.0) as i64 % 10).collect::<Vec<_>>(), &[n])
}

/// W3: MLP 784-128-64-10 train step, batch 128, Adam; ms per step and peak RSS in MiB.
pub fn w3(s: Settings) -> (f64, f64) {
    manual_seed(0);
    let model = mlp();
    let mut opt = Adam::new(model.parameters(), 1e-3);
    let (x, y) = (Tensor::randn(&[128, 784]), labels(128));
    let ms = train_steps(
        &model,
        &mut opt,
        &x,
        &y,
        if s.quick { 2 } else { 20 },
        if s.quick { 5 } else { 200 },
    );
    (ms, peak_rss_mib())
}

/// W7: an LSTM language-model step written with tapegrad's layers as a user would:
/// Embedding(1000, 64), a batch-first LSTM(64, 128) over 32 x 35 tokens, Linear(128, 1000)
/// at every step, cross-entropy, gradient clipping at norm 1, Adam; ms per step (median of
/// 30 after 5 warm-up).
pub fn w7(s: Settings) -> f64 {
    use tapegrad::nn::{Embedding, LSTM, Linear, clip_grad_norm};
    manual_seed(0);
    let (batch, steps, vocab) = if s.quick { (4, 5, 50) } else { (32, 35, 1000) };
    let embedding = Embedding::new(vocab, 64);
    let lstm = LSTM::new(64, 128, 1).batch_first(true);
    let head = Linear::new(128, vocab);
    let params: Vec<Tensor> =
        [embedding.parameters(), lstm.parameters(), head.parameters()].concat();
    let mut opt = Adam::new(params.clone(), 1e-3);
    let token = |n: usize| {
        let u = Tensor::rand(&[n]).to_vec::<f32>();
        u.iter().map(|v| ((v * vocab as f32) as i64).min(vocab as i64 - 1)).collect::<Vec<_>>()
    };
    let tokens = Tensor::from_vec(token(batch * steps), &[batch, steps]);
    let targets = Tensor::from_vec(token(batch * steps), &[batch * steps]);
    let (warmup, count) = if s.quick { (1, 3) } else { (5, 30) };
    median_step_ms(warmup, count, || {
        opt.zero_grad();
        let hidden = lstm.forward(&embedding.forward(&tokens));
        let logits = head.forward(&hidden).reshape(&[-1, vocab as isize]);
        backward_noting(&F::cross_entropy(&logits, &targets));
        clip_grad_norm(&params, 1.0);
        opt.step();
    })
}

/// W8: a pre-norm transformer encoder block step, written out as a user would: 16 x 64 x
/// 128, x + MHA(LN(x)) then x + FFN(LN(x)), 4 heads of 32 with softmax(QK^T / sqrt(32)) V
/// composed of matmul and softmax, FFN 128 -> 512 -> 128 with GELU (erf), MSE against a
/// fixed target, AdamW; ms per step (median of 50 after 5 warm-up). Then the same step with
/// `nn::TransformerEncoderLayer` (pre-norm, GELU, no dropout), against PyTorch's layer.
pub fn w8(s: Settings) -> (f64, f64) {
    use tapegrad::nn::{AdamW, LayerNorm, Linear, TransformerEncoderLayer};
    manual_seed(0);
    let (b, t, d, h) = if s.quick { (2, 8, 16, 4) } else { (16, 64, 128, 4) };
    let (ln1, qkv, proj) = (LayerNorm::new(&[d]), Linear::new(d, 3 * d), Linear::new(d, d));
    let (ln2, fc1, fc2) = (LayerNorm::new(&[d]), Linear::new(d, 4 * d), Linear::new(4 * d, d));
    let modules: [&dyn Module; 6] = [&ln1, &qkv, &proj, &ln2, &fc1, &fc2];
    let params: Vec<Tensor> = modules.iter().flat_map(|m| m.parameters()).collect();
    let (x, target) = (Tensor::randn(&[b, t, d]), Tensor::randn(&[b, t, d]));
    let heads = |u: &Tensor| {
        u.reshape(&[b as isize, t as isize, h as isize, (d / h) as isize]).transpose(1, 2)
    };
    let block = |x: &Tensor| {
        let parts = qkv.forward(&ln1.forward(x)).split(d, -1);
        let (q, k, v) = (heads(&parts[0]), heads(&parts[1]), heads(&parts[2]));
        let scores = &q.matmul(&k.transpose(-2, -1)) * (1.0 / ((d / h) as f64).sqrt());
        let att = scores
            .softmax(-1)
            .matmul(&v)
            .transpose(1, 2)
            .reshape(&[b as isize, t as isize, d as isize]);
        let x = x + &proj.forward(&att);
        &x + &fc2.forward(&fc1.forward(&ln2.forward(&x)).gelu())
    };
    let steps = |params: Vec<Tensor>, forward: &dyn Fn(&Tensor) -> Tensor| {
        let mut opt = AdamW::new(params, 1e-3);
        let (warmup, count) = if s.quick { (1, 3) } else { (5, 50) };
        median_step_ms(warmup, count, || {
            opt.zero_grad();
            backward_noting(&F::mse_loss(&forward(&x), &target));
            opt.step();
        })
    };
    let composed = steps(params, &block);
    let layer = TransformerEncoderLayer::new(d, h)
        .dim_feedforward(4 * d)
        .dropout(0.0)
        .activation(|x| x.gelu())
        .batch_first(true)
        .norm_first(true);
    (composed, steps(layer.parameters(), &|x| layer.forward(x)))
}

/// W9: second order. (a) A Hessian-vector product of an MLP loss (784-128-64-10, tanh,
/// cross-entropy, batch 128) with respect to all parameters: `g = grad(loss, create_graph)`,
/// then `grad(sum(g . v))`; (b) a WGAN-GP critic step (MLP 2-256-256-1, tanh, batches of 256,
/// gradient penalty through `create_graph`, Adam). ms per HVP and per step (medians of 50
/// after 5 warm-up).
pub fn w9(s: Settings) -> (f64, f64) {
    use tapegrad::nn::{Linear, Tanh};
    use tapegrad::tape::{GradOptions, grad};
    manual_seed(0);
    let (batch, (warmup, count)) = if s.quick { (8, (1, 2)) } else { (128, (5, 50)) };
    let mlp = Sequential::new()
        .add(Linear::new(784, 128))
        .add(Tanh)
        .add(Linear::new(128, 64))
        .add(Tanh)
        .add(Linear::new(64, 10));
    let params = mlp.parameters();
    let (x, y) = (Tensor::randn(&[batch, 784]), labels(batch));
    let v: Vec<Tensor> = params.iter().map(|p| Tensor::randn(p.shape())).collect();
    let inputs: Vec<&Tensor> = params.iter().collect();
    let mut hvp = vec![];
    for step in 0..warmup + count {
        let t0 = Instant::now();
        let loss = F::cross_entropy(&mlp.forward(&x), &y);
        let g = grad(&[&loss], &inputs, GradOptions::new().create_graph(true));
        let dot = g
            .iter()
            .zip(&v)
            .map(|(g, v)| (g.as_ref().expect("every parameter is used") * v).sum())
            .reduce(|a, b| &a + &b)
            .expect("parameters");
        let hv = grad(&[&dot], &inputs, GradOptions::new());
        assert!(hv.iter().all(Option::is_some));
        if step >= warmup {
            hvp.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }

    let n = if s.quick { 16 } else { 256 };
    let critic = Sequential::new()
        .add(Linear::new(2, 256))
        .add(Tanh)
        .add(Linear::new(256, 256))
        .add(Tanh)
        .add(Linear::new(256, 1));
    let mut opt = Adam::new(critic.parameters(), 1e-4).betas((0.5, 0.9));
    let (real, fake) = (Tensor::randn(&[n, 2]), &Tensor::randn(&[n, 2]) + 2.0);
    let eps = Tensor::rand(&[n, 1]);
    let mix = &(&eps * &real) + &(&eps.rsub_scalar(1.0) * &fake);
    let mut gan = vec![];
    for step in 0..warmup + count {
        let t0 = Instant::now();
        opt.zero_grad();
        let x_hat = mix.detach().requires_grad();
        let scores = critic.forward(&x_hat).sum();
        let g = grad(&[&scores], &[&x_hat], GradOptions::new().create_graph(true));
        let g = g[0].as_ref().expect("x_hat is used");
        let penalty = g.norm_dim(2.0, 1, false).sub_scalar(1.0).square().mean();
        let loss =
            &(&critic.forward(&fake).mean() - &critic.forward(&real).mean()) + &(&penalty * 10.0);
        backward_noting(&loss);
        opt.step();
        if step >= warmup {
            gan.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    (median(&hvp), median(&gan))
}

/// `ops`: single operations as a model's layers use them, each forward plus backward from a
/// sum into leaf gradients that accumulate (as PyTorch's `.grad` does), median ms per call:
/// elementwise functions, broadcasts, reductions along either dimension, views made
/// contiguous, normalisations, convolutions of several kinds (one deep and strided, as in a
/// GAN's discriminator), pooling, attention, an embedding, an f64 product, a linear layer on
/// subnormal activations, a GRU. The op-level check beside the model workloads: a slow path
/// in one operation shows here by name.
pub fn ops(s: Settings) -> Vec<(&'static str, f64)> {
    use tapegrad::nn::{BatchNorm2d, Conv2d, GRU};
    let q = s.quick;
    let (rows, cols) = if q { (64, 32) } else { (4096, 512) };
    let (n, c, hw) = if q { (2, 8, 8) } else { (32, 64, 32) };
    let classes = if q { 10 } else { 1000 };
    let reps = if q { 2 } else { 15 };
    let mut out = vec![];
    let mut time = |name: &'static str, f: &dyn Fn()| {
        out.push((name, median_step_ms(2, reps, f)));
    };
    manual_seed(0);
    let x = Tensor::randn(&[rows, cols]).requires_grad();
    let (bias, column) =
        (Tensor::randn(&[cols]).requires_grad(), Tensor::randn(&[rows, 1]).requires_grad());
    time("relu", &|| x.relu().sum().backward());
    time("gelu", &|| x.gelu().sum().backward());
    time("sigmoid", &|| x.sigmoid().sum().backward());
    time("tanh", &|| x.tanh().sum().backward());
    time("silu", &|| x.silu().sum().backward());
    time("relu6", &|| x.relu6().sum().backward());
    time("hardswish", &|| x.hardswish().sum().backward());
    time("elu", &|| x.elu().sum().backward());
    time("softplus", &|| x.softplus().sum().backward());
    time("sin", &|| x.sin().sum().backward());
    let zero = Tensor::zeros(&[]);
    time("where(x > 0, x, 0)", &|| where_(&x.gt(&zero), &x, &zero).sum().backward());
    time("x * x", &|| (&x * &x).sum().backward());
    time("x + row", &|| (&x + &bias).sum().backward());
    time("x * column", &|| (&x * &column).sum().backward());
    time("sum(0)", &|| x.sum_dim(0, false).sum().backward());
    time("mean(1)", &|| x.mean_dim(1, false).sum().backward());
    time("max(1)", &|| x.max_dim(1, false).0.sum().backward());
    time("cumsum(1)", &|| x.cumsum(1).sum().backward());
    time("cumsum(0)", &|| x.cumsum(0).sum().backward());
    time("sort(1)", &|| x.sort(1, false).0.sum().backward());
    time("topk(10, 1)", &|| x.topk(10, 1).0.sum().backward());
    let picks = Tensor::randint(0, cols as i64, &[rows, cols / 8]);
    time("gather(1)", &|| x.gather(1, &picks).sum().backward());
    let positive = x.detach().gt(&zero);
    time("masked_select", &|| x.masked_select(&positive).sum().backward());
    time("logsumexp(1)", &|| x.logsumexp(1, false).sum().backward());
    time("amax(1)", &|| x.amax(&[1], false).sum().backward());
    time("prod(1)", &|| x.prod_dim(1, false).sum().backward());
    time("prod(0)", &|| x.prod_dim(0, false).sum().backward());
    time("flip(1)", &|| x.flip(&[1]).square().sum().backward());
    time("tril", &|| x.tril(0).square().sum().backward());
    time("x.t() * 2", &|| (&x.t() * 2.0).sum().backward());
    time("chunk + cat", &|| {
        let parts = x.chunk(4, 1);
        cat(&parts.iter().collect::<Vec<_>>(), 1).sum().backward()
    });
    time("layer_norm", &|| F::layer_norm(&x, &[cols]).square().sum().backward());
    time("dropout", &|| F::dropout(&x).sum().backward());
    let logits = Tensor::randn(&[rows / 4, classes]).requires_grad();
    let targets = Tensor::randint(0, classes as i64, &[rows / 4]);
    time("softmax", &|| logits.softmax(-1).square().sum().backward());
    time("log_softmax", &|| logits.log_softmax(-1).square().sum().backward());
    time("cross_entropy", &|| F::cross_entropy(&logits, &targets).backward());
    let target = Tensor::randn(&[rows, cols]);
    time("smooth_l1_loss", &|| F::smooth_l1_loss(&x, &target).backward());
    time("atan2", &|| x.atan2(&target).sum().backward());
    let heads = Tensor::randn(&[n, c, 8, hw * 2]).requires_grad();
    time("permute", &|| (&heads.permute(&[0, 2, 1, 3]) * 2.0).sum().backward());
    let img = Tensor::randn(&[n, c, hw, hw]).requires_grad();
    let conv3 = Conv2d::new(c, c, 3).padding(1);
    let strided = Conv2d::new(c, 2 * c, 3).padding(1).stride(2);
    let conv1 = Conv2d::new(c, 2 * c, 1);
    let depthwise = Conv2d::with_groups(c, c, 3, c).padding(1);
    let depthwise_strided = Conv2d::with_groups(c, c, 3, c).padding(1).stride(2);
    time("conv 3x3", &|| conv3.forward(&img).sum().backward());
    time("conv 3x3 stride 2", &|| strided.forward(&img).sum().backward());
    time("conv 1x1", &|| conv1.forward(&img).sum().backward());
    time("conv 3x3 depthwise", &|| depthwise.forward(&img).sum().backward());
    time("conv 3x3 depthwise stride 2", &|| depthwise_strided.forward(&img).sum().backward());
    // A discriminator's deep layer: a long shared dimension (2c x 16 taps) over few pixels.
    let deep_img = Tensor::randn(&[n, 2 * c, hw / 4, hw / 4]).requires_grad();
    let deep = Conv2d::new(2 * c, 4 * c, 4).stride(2).padding(1);
    time("conv 4x4 stride 2, deep", &|| deep.forward(&deep_img).sum().backward());
    let bn = BatchNorm2d::new(c);
    time("batch_norm", &|| bn.forward(&img).square().sum().backward());
    time("group_norm", &|| F::group_norm(&img, 8).square().sum().backward());
    time("pad 1 (zeros)", &|| F::pad(&img, &[1, 1, 1, 1]).sum().backward());
    time("max_pool 2x2", &|| F::max_pool2d(&img, 2).sum().backward());
    let pool3 = MaxPool2dOptions::default().stride(2).padding(1);
    time("max_pool 3x3 stride 2", &|| F::max_pool2d_with(&img, 3, pool3).sum().backward());
    let signal = Tensor::randn(&[n, c, hw * hw]).requires_grad();
    time("max_pool1d 4", &|| F::max_pool1d(&signal, 4).sum().backward());
    time("avg_pool 2x2", &|| F::avg_pool2d(&img, 2).sum().backward());
    time("adaptive_avg_pool 1", &|| F::adaptive_avg_pool2d(&img, 1).sum().backward());
    // A spatial transformer's warp: small rotations with a shift, the grid from theta.
    let angles: Vec<f32> = (0..n).map(|i| 0.1 * (i as f32).sin()).collect();
    let rows_of = |a: &f32| [a.cos(), -a.sin(), 0.05, a.sin(), a.cos(), -0.05];
    let theta = Tensor::from_vec(angles.iter().flat_map(rows_of).collect(), &[n, 2, 3]);
    let theta = theta.requires_grad();
    time("grid_sample, affine warp", &|| {
        let grid = F::affine_grid(&theta, &[n, c, hw, hw], false);
        F::grid_sample(&img, &grid).sum().backward()
    });
    let table = Tensor::randn(&[if q { 100 } else { 10000 }, 256]).requires_grad();
    let ids = Tensor::randint(0, table.shape()[0] as i64, &[n, 128]);
    time("embedding", &|| F::embedding(&ids, &table).sum().backward());
    let qkv = Tensor::randn(&[n, 8, if q { 16 } else { 128 }, 64]).requires_grad();
    time("attention", &|| F::scaled_dot_product_attention(&qkv, &qkv, &qkv).sum().backward());
    let a64 = Tensor::randn(&[256, 256]).to_dtype(DType::F64).requires_grad();
    time("matmul f64 256", &|| a64.matmul(&a64).sum().backward());
    // Subnormal activations (a softmax that has underflowed, a gradient that has vanished):
    // what each multiply meeting one costs, beside an ordinary product. (A sixteenth of the
    // rows: PyTorch takes seconds for the full size.)
    let tiny = Tensor::randn(&[rows / 16, cols]).mul_scalar(1e-39).requires_grad();
    let weight = Tensor::randn(&[cols, cols]).requires_grad();
    time("linear, subnormal input", &|| F::linear(&tiny, &weight, None).sum().backward());
    let gru = GRU::new(256, 256, 1);
    let seq = Tensor::randn(&[if q { 4 } else { 35 }, n, 256]).requires_grad();
    time("gru", &|| gru.forward(&seq).sum().backward());
    // A speech recogniser's loss: 100 steps over 30 classes against 20 labels per sequence.
    let (steps, labels) = if q { (8, 3) } else { (100, 20) };
    let frames = Tensor::randn(&[steps, n, 30]).requires_grad();
    let spoken: Vec<i64> = (0..n * labels).map(|k| 1 + (7 * k as i64 + 3) % 29).collect();
    let spoken = Tensor::from_vec(spoken, &[n, labels]);
    let (heard, said) = (vec![steps; n], vec![labels; n]);
    time("ctc_loss", &|| F::ctc_loss(&frames.log_softmax(2), &spoken, &heard, &said).backward());
    out
}

/// W10: a ResNet-8 step at CIFAR size: 32 x 3 x 32 x 32, a conv-BN-ReLU stem and three
/// BasicBlocks (16, 32, 64 channels, strides 1, 2, 2; 1x1 stride-2 shortcuts with BN when
/// the shape changes), BatchNorm in training mode, global average pooling, Linear(64, 10),
/// cross-entropy, SGD with momentum 0.9 and weight decay 5e-4; ms per step (median of 30
/// after 5 warm-up).
pub fn w10(s: Settings) -> f64 {
    use tapegrad::nn::{BatchNorm2d, Conv2d, Linear};
    struct Block {
        conv1: Conv2d,
        bn1: BatchNorm2d,
        conv2: Conv2d,
        bn2: BatchNorm2d,
        shortcut: Option<(Conv2d, BatchNorm2d)>,
    }
    impl Block {
        fn new(cin: usize, cout: usize, stride: usize) -> Block {
            let conv3 = |cin, stride| Conv2d::new(cin, cout, 3).stride(stride).padding(1).no_bias();
            Block {
                conv1: conv3(cin, stride),
                bn1: BatchNorm2d::new(cout),
                conv2: conv3(cout, 1),
                bn2: BatchNorm2d::new(cout),
                shortcut: (stride != 1 || cin != cout).then(|| {
                    (Conv2d::new(cin, cout, 1).stride(stride).no_bias(), BatchNorm2d::new(cout))
                }),
            }
        }
        fn forward(&self, x: &Tensor) -> Tensor {
            let y = self.bn1.forward(&self.conv1.forward(x)).relu();
            let y = self.bn2.forward(&self.conv2.forward(&y));
            let skip = match &self.shortcut {
                Some((conv, bn)) => bn.forward(&conv.forward(x)),
                None => x.clone(),
            };
            (&y + &skip).relu()
        }
        fn modules(&self) -> Vec<&dyn Module> {
            let mut m: Vec<&dyn Module> = vec![&self.conv1, &self.bn1, &self.conv2, &self.bn2];
            if let Some((conv, bn)) = &self.shortcut {
                m.extend([conv as &dyn Module, bn as &dyn Module]);
            }
            m
        }
    }
    manual_seed(0);
    let (n, size) = if s.quick { (4, 8) } else { (32, 32) };
    let (stem, stem_bn) = (Conv2d::new(3, 16, 3).padding(1).no_bias(), BatchNorm2d::new(16));
    let blocks = [Block::new(16, 16, 1), Block::new(16, 32, 2), Block::new(32, 64, 2)];
    let fc = Linear::new(64, 10);
    let mut modules: Vec<&dyn Module> = vec![&stem, &stem_bn, &fc];
    blocks.iter().for_each(|b| modules.extend(b.modules()));
    let params: Vec<Tensor> = modules.iter().flat_map(|m| m.parameters()).collect();
    let mut opt = SGD::new(params, 0.1).momentum(0.9).weight_decay(5e-4);
    let (x, y) = (Tensor::randn(&[n, 3, size, size]), labels(n));
    let forward = |x: &Tensor| {
        let h = blocks.iter().fold(stem_bn.forward(&stem.forward(x)).relu(), |h, b| b.forward(&h));
        fc.forward(&F::adaptive_avg_pool2d(&h, (1, 1)).reshape(&[n as isize, 64]))
    };
    let (warmup, count) = if s.quick { (1, 2) } else { (5, 30) };
    median_step_ms(warmup, count, || {
        opt.zero_grad();
        backward_noting(&F::cross_entropy(&forward(&x), &y));
        opt.step();
    })
}

/// W4: the CNN train step, batch 64, SGD with momentum; ms per step.
pub fn w4(s: Settings) -> f64 {
    manual_seed(0);
    let model = cnn();
    let mut opt = SGD::new(model.parameters(), 0.01).momentum(0.9);
    let n = if s.quick { 8 } else { 64 };
    let (x, y) = (Tensor::randn(&[n, 1, 28, 28]), labels(n));
    train_steps(&model, &mut opt, &x, &y, if s.quick { 1 } else { 5 }, if s.quick { 3 } else { 50 })
}

/// Issue 3's convolution bar: conv2d of a 64 x 1 x 28 x 28 batch with 16 filters 5x5
/// (padding 2, as in the CNN's first layer), forward and backward to the input, weight and
/// bias from a fixed upstream gradient; ms per forward+backward.
pub fn conv(s: Settings) -> f64 {
    manual_seed(0);
    let n = if s.quick { 4 } else { 64 };
    let x = Tensor::randn(&[n, 1, 28, 28]).requires_grad();
    let w = Tensor::randn(&[16, 1, 5, 5]).requires_grad();
    let b = Tensor::randn(&[16]).requires_grad();
    let gy = Tensor::randn(&[n, 16, 28, 28]);
    let opts = tapegrad::ops::ConvOptions::default().padding(2);
    let mut times = vec![];
    for step in 0..if s.quick { 3 } else { 60 } {
        let t0 = Instant::now();
        let y = F::conv2d_with(&x, &w, Some(&b), opts);
        y.backward_with(Some(&gy), Default::default());
        if step >= 10 || s.quick {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        for t in [&x, &w, &b] {
            t.zero_grad();
        }
    }
    median(&times)
}

/// GFLOP/s of `multiply` (one n x n product) as the median of timed batches of calls.
fn gflops(n: usize, s: Settings, mut multiply: impl FnMut()) -> f64 {
    for _ in 0..3 {
        multiply();
    }
    let t0 = Instant::now();
    multiply();
    let inner = (0.05 / t0.elapsed().as_secs_f64().max(1e-7)).ceil().max(1.0) as usize;
    let samples: Vec<f64> = (0..if s.quick { 3 } else { 11 })
        .map(|_| {
            let t = Instant::now();
            for _ in 0..inner {
                multiply();
            }
            2.0 * (n as f64).powi(3) / (t.elapsed().as_secs_f64() / inner as f64) / 1e9
        })
        .collect();
    median(&samples)
}

/// W5: per size, GFLOP/s of our matmul op on square f32 matrices, and of one
/// single-threaded call of the GEMM library (matrixmultiply's `sgemm`, or the gemm crate's
/// with `--features gemm`) on the same data, the bar for the own AVX-512 kernel the op uses
/// by default; compare the two with `--threads 1`.
pub fn w5(s: Settings) -> Vec<(usize, f64, f64)> {
    let sizes: &[usize] = if s.quick { &[64] } else { &[128, 256, 512, 1024] };
    sizes
        .iter()
        .map(|&n| {
            let a = Tensor::uniform(&[n, n], -1.0, 1.0);
            let b = Tensor::uniform(&[n, n], -1.0, 1.0);
            let ours = gflops(n, s, || drop(a.matmul(&b)));
            let (av, bv) = (a.to_vec::<f32>(), b.to_vec::<f32>());
            let mut c = vec![0f32; n * n];
            // The library's single-threaded product (matrixmultiply's, or the gemm crate's
            // with `--features gemm`), without the tensor: the bar for the own kernel.
            let raw = gflops(n, s, || {
                library_gemm_serial(View::row_major(&av, n, n), View::row_major(&bv, n, n), &mut c)
            });
            (n, ours, raw)
        })
        .collect()
}

/// W6: Fashion-MNIST end to end (MLP 10 epochs / CNN 3 epochs); training seconds and final
/// test accuracy. `None` without the data set.
pub fn w6(model_name: &str, s: Settings) -> Option<(f64, f64)> {
    let data = Mnist::from_dir("/usr/share/datasets/fashion-mnist").ok()?;
    manual_seed(0);
    let (model, batch, epochs) = match model_name {
        "mlp" => (mlp(), 128, 10),
        _ => (cnn(), 64, 3),
    };
    let (epochs, n) = if s.quick { (1, 2000) } else { (epochs, data.train.len()) };
    let mut opt = Adam::new(model.parameters(), 1e-3);
    let loader = DataLoader::new(
        data.train.images.narrow(0, 0, n),
        data.train.labels.narrow(0, 0, n),
        batch,
    )
    .shuffle(0);
    let t0 = Instant::now();
    let mut acc = 0.0;
    for epoch in 0..epochs {
        for (x, y) in loader.epoch(epoch as u64) {
            opt.zero_grad();
            F::cross_entropy(&model.forward(&x), &y).backward();
            opt.step();
        }
        let _no_grad = no_grad();
        let test = DataLoader::new(data.test.images.clone(), data.test.labels.clone(), 1000);
        acc = test
            .epoch(0)
            .map(|(x, y)| metrics::accuracy(&model.forward(&x), &y) * y.numel() as f64)
            .sum::<f64>()
            / data.test.len() as f64;
    }
    Some((t0.elapsed().as_secs_f64(), acc))
}

/// The most bytes one step's graph held for its backward pass (`tape_stats`), over the
/// steps since the last [`reset_memory`].
static SAVED_BYTES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// `loss.backward()`, noting first what the step's graph holds for it.
fn backward_noting(loss: &Tensor) {
    let saved = tapegrad::tape_stats().saved_bytes;
    SAVED_BYTES.fetch_max(saved, std::sync::atomic::Ordering::Relaxed);
    loss.backward();
}

/// Starts a workload's memory figures afresh: the saved-bytes maximum, and the process's
/// peak resident size (Linux resets it on writing 5 to clear_refs; elsewhere the peak
/// stays the process's).
fn reset_memory() {
    SAVED_BYTES.store(0, std::sync::atomic::Ordering::Relaxed);
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The workload's peak RSS and the most its graph held for backward in one step.
fn memory_note() -> String {
    let saved = SAVED_BYTES.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1048576.0;
    format!("peak RSS {:.0} MiB, saved for backward {saved:.1} MiB", peak_rss_mib())
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The pause after each of PyTorch's runs (see `torch_run`).
const SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

/// One run of a workload on PyTorch: `(metric, value, rest of the JSON line)` per line.
fn torch_run(
    python: &str,
    workload: &str,
    threads: usize,
    quick: bool,
) -> Vec<(String, f64, String)> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/torch_workloads.py");
    let mut cmd = Command::new(python);
    cmd.args([script, "--workload", workload, "--threads", &threads.to_string()]);
    if quick {
        cmd.arg("--quick");
    }
    let Ok(out) = cmd.output() else { return vec![] };
    if !quick {
        // PyTorch's process has just returned its memory (700 MB and more) to the system,
        // and tapegrad's turn comes next: wait until the machine has settled.
        std::thread::sleep(SETTLE);
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let metric = l.split("\"metric\": \"").nth(1)?.split('"').next()?.to_string();
            let value =
                l.split("\"value\": ").nth(1)?.split([',', '}']).next()?.trim().parse().ok()?;
            let extra = l
                .split("\"unit\": ")
                .nth(1)?
                .split_once(',')
                .map_or(String::new(), |(_, e)| e.trim_end_matches('}').trim().to_string());
            Some((metric, value, extra))
        })
        .collect()
}

fn torch_available(python: &str) -> bool {
    Command::new(python).args(["-c", "import torch"]).output().is_ok_and(|o| o.status.success())
}

/// Runs the chosen workloads `runs` times, alternating with PyTorch when `python` is given.
pub fn run_all(only: &[&str], s: Settings, threads: usize, python: Option<&str>) -> Vec<Measure> {
    let mut out: Vec<Measure> = vec![];
    let mut push = |w: &str,
                    metric: &str,
                    unit: &str,
                    higher: bool,
                    ours: f64,
                    torch: Option<f64>,
                    note: String| {
        if let Some(m) = out.iter_mut().find(|m| m.workload == w && m.metric == metric) {
            m.ours.push(ours);
            m.torch.extend(torch);
            if !note.is_empty() {
                m.note = note;
            }
        } else {
            out.push(Measure {
                workload: w.into(),
                metric: metric.into(),
                unit: unit.into(),
                higher_is_better: higher,
                ours: vec![ours],
                torch: torch.into_iter().collect(),
                note,
            });
        }
    };
    let torch = |w: &str| python.map(|p| torch_run(p, w, threads, s.quick)).unwrap_or_default();
    let find = |t: &[(String, f64, String)], metric: &str| {
        t.iter().find(|(m, _, _)| m == metric).map(|(_, v, _)| *v)
    };
    for run in 0..s.runs {
        for &w in only {
            reset_memory();
            match w {
                "w1" | "w2" => {
                    let (tot, fwd) = chain(if w == "w1" { 1 } else { 64 }, s);
                    let t = torch(w);
                    let tf = t.first().and_then(|(_, _, e)| {
                        e.split("\"fwd\": ").nth(1).and_then(|v| v.trim().parse().ok())
                    });
                    push(w, "fwd+bwd", "ns/op", false, tot, find(&t, "fwd+bwd"), String::new());
                    push(w, "fwd", "ns/op", false, fwd, tf, String::new());
                }
                "w3" => {
                    let (ms, _) = w3(s);
                    let t = torch(w);
                    let note = format!(
                        "tapegrad {}; PyTorch {}",
                        memory_note(),
                        t.first().map_or("-".into(), |x| x.2.clone())
                    );
                    push(w, "train step", "ms", false, ms, find(&t, "step"), note);
                }
                "w4" => {
                    let ms = w4(s);
                    let t = torch(w);
                    push(
                        w,
                        &format!("train step, {threads} thr"),
                        "ms",
                        false,
                        ms,
                        find(&t, "step"),
                        memory_note(),
                    );
                }
                "w7" => {
                    let ms = w7(s);
                    let t = torch(w);
                    push(
                        w,
                        &format!("LSTM LM step, {threads} thr"),
                        "ms",
                        false,
                        ms,
                        find(&t, "step"),
                        memory_note(),
                    );
                }
                "w8" => {
                    let (composed, layer) = w8(s);
                    let t = torch(w);
                    let metric = format!("block step, {threads} thr");
                    push(w, &metric, "ms", false, composed, find(&t, "step"), memory_note());
                    let metric = format!("encoder layer step, {threads} thr");
                    push(w, &metric, "ms", false, layer, find(&t, "fused step"), String::new());
                }
                "w9" => {
                    let (hvp, gan) = w9(s);
                    let t = torch(w);
                    push(
                        w,
                        "MLP Hessian-vector product",
                        "ms",
                        false,
                        hvp,
                        find(&t, "hvp"),
                        String::new(),
                    );
                    push(
                        w,
                        &format!("WGAN-GP critic step, {threads} thr"),
                        "ms",
                        false,
                        gan,
                        find(&t, "wgan-gp step"),
                        memory_note(),
                    );
                }
                "w10" => {
                    let ms = w10(s);
                    let t = torch(w);
                    push(
                        w,
                        &format!("ResNet-8 step, {threads} thr"),
                        "ms",
                        false,
                        ms,
                        find(&t, "step"),
                        memory_note(),
                    );
                }
                "conv" => {
                    let ms = conv(s);
                    let t = torch(w);
                    push(
                        w,
                        "conv 64x1x28x28 fwd+bwd",
                        "ms",
                        false,
                        ms,
                        find(&t, "fwd+bwd"),
                        String::new(),
                    );
                }
                "w5" => {
                    let ours = w5(s);
                    let t = torch(w);
                    for (n, g, raw) in ours {
                        let metric = format!("sgemm n={n}");
                        let note = format!(
                            "library GEMM (matrixmultiply or gemm), 1 thread: {raw:.0} GFLOP/s"
                        );
                        push(w, &metric, "GFLOP/s", true, g, find(&t, &metric), note);
                    }
                }
                "ops" => {
                    let t = torch(w);
                    for (name, ms) in ops(s) {
                        let metric = format!("{name} fwd+bwd");
                        push(w, &metric, "ms", false, ms, find(&t, &metric), String::new());
                    }
                }
                "w6mlp" | "w6cnn" => {
                    if let Some((secs, acc)) = w6(&w[2..], s) {
                        let t = torch(w);
                        let note = format!(
                            "accuracy: tapegrad {:.2}%, PyTorch {}",
                            100.0 * acc,
                            t.first().map_or("-".into(), |x| x.2.clone())
                        );
                        push(
                            w,
                            "training wall time",
                            "s",
                            false,
                            secs,
                            find(&t, "train wall time"),
                            note,
                        );
                    }
                }
                other => unreachable!("check_args accepts only known workloads, got {other}"),
            }
        }
        eprintln!("run {}/{} done", run + 1, s.runs);
    }
    out
}

/// The CPU model and the widest vectors the kernels use on it, for the table's first line
/// (ratios differ between machine kinds). The family and model numbers follow the name:
/// virtual machines often report a name without the generation ("AMD EPYC").
pub fn machine() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        let line = info.lines().find(|l| l.split(':').next().map(str::trim) == Some(key))?;
        Some(line.split_once(':')?.1.trim().to_string())
    };
    let model = match (field("model name"), field("cpu family"), field("model")) {
        (Some(name), Some(family), Some(number)) => {
            format!("{name} (family {family}, model {number})")
        }
        (Some(name), ..) => name,
        _ => "unknown CPU".into(),
    };
    #[cfg(target_arch = "x86_64")]
    let vectors = if tapegrad_kernels::simd::avx512_enabled() {
        "AVX-512"
    } else if std::arch::is_x86_feature_detected!("avx512f") {
        "AVX-512 switched off by TAPEGRAD_NO_AVX512 (every vector kernel in its AVX2 form \
         where the CPU has AVX2, else in its portable form)"
    } else if tapegrad_kernels::simd::avx2_enabled() {
        "AVX2 (every vector kernel in its AVX2 form: elementwise loops, convolutions, f32 \
         matrix products, 2x2 max pooling)"
    } else {
        "SSE2 (the AVX-512 kernels fall back to their portable forms)"
    };
    #[cfg(not(target_arch = "x86_64"))]
    let vectors = "the compiler's baseline (no AVX-512 kernels)";
    let caches = tapegrad_kernels::cache::caches();
    format!(
        "machine: {model}; vectors: {vectors}; caches per core: L1d {} KiB, L2 {} KiB; \
         threads: {}",
        caches.l1_data >> 10,
        caches.l2 >> 10,
        rayon::current_num_threads()
    )
}

/// The table: per measure, both medians with their spreads, and how many times faster
/// tapegrad is (PyTorch / tapegrad for times, tapegrad / PyTorch for throughput): the
/// median over runs of each run's ratio when every run has both measurements.
pub fn table(measures: &[Measure], json: bool) -> String {
    let mut s = String::new();
    if !json {
        s.push_str(&format!("{}\n", machine()));
        s.push_str(&format!(
            "{:<6} {:<28} {:>26} {:>26} {:>8}  {}\n",
            "id",
            "metric",
            "tapegrad median (min-max)",
            "PyTorch median (min-max)",
            "speedup",
            "notes"
        ));
    }
    for m in measures {
        let spread = |v: &[f64]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                let (lo, hi) = v
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
                format!("{:.3} ({:.3}-{:.3})", median(v), lo, hi)
            }
        };
        let speedup =
            |ours: f64, torch: f64| if m.higher_is_better { ours / torch } else { torch / ours };
        let ratio = if m.torch.is_empty() {
            f64::NAN
        } else if m.torch.len() == m.ours.len() {
            // Runs alternate, so each run's pair saw the same state of the machine: the
            // median of the per-run ratios is steadier than the ratio of the medians.
            let per_run: Vec<f64> =
                m.ours.iter().zip(&m.torch).map(|(&o, &t)| speedup(o, t)).collect();
            median(&per_run)
        } else {
            speedup(median(&m.ours), median(&m.torch))
        };
        if json {
            s.push_str(&format!(
                "{{\"workload\": \"{}\", \"metric\": \"{}\", \"unit\": \"{}\", \"tapegrad\": \
                {:?}, \"torch\": {:?}, \"speedup\": {}}}\n",
                m.workload,
                m.metric,
                m.unit,
                m.ours,
                m.torch,
                if ratio.is_nan() { "null".into() } else { format!("{ratio:.3}") }
            ));
        } else {
            s.push_str(&format!(
                "{:<6} {:<28} {:>26} {:>26} {:>8}  {}\n",
                m.workload,
                format!("{} [{}]", m.metric, m.unit),
                spread(&m.ours),
                spread(&m.torch),
                if ratio.is_nan() { "-".into() } else { format!("{ratio:.2}x") },
                m.note
            ));
        }
    }
    s
}

/// What `--help` prints.
const USAGE: &str =
    "tapegrad's benchmark: W1-W10 on tapegrad and, when TAPEGRAD_BENCH_PYTHON (default python3)
has torch, on PyTorch in alternation.

usage: cargo bench --bench workloads -- [options]
  --only IDS      comma-separated workloads: w1 w2 w3 w4 conv w5 w6mlp w6cnn w7 w8 w9 w10 ops
                  (default: all but w6 and ops)
  --w6            also the Fashion-MNIST workloads w6mlp and w6cnn
  --threads N     worker threads on both sides (default 2)
  --runs N        alternating runs (default 5, 1 with --quick)
  --quick         tiny sizes (what CI runs)
  --json          one JSON line per measurement
  --no-torch      measure tapegrad alone";

/// The workload ids `--only` accepts.
const WORKLOADS: [&str; 13] =
    ["w1", "w2", "w3", "w4", "conv", "w5", "w6mlp", "w6cnn", "w7", "w8", "w9", "w10", "ops"];

/// Checks the command line: known flags, a value after those that take one (a positive
/// number for `--threads` and `--runs`), known workload ids.
pub fn check_args(args: &[String]) -> Result<(), String> {
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            // `--bench` is what `cargo bench` passes.
            "--quick" | "--json" | "--w6" | "--no-torch" | "--bench" => {}
            flag @ ("--threads" | "--runs" | "--only") => {
                let value = rest.next().ok_or(format!("{flag} needs a value"))?;
                if flag == "--only" {
                    if let Some(bad) = value.split(',').find(|w| !WORKLOADS.contains(w)) {
                        return Err(format!("unknown workload {bad:?} in --only"));
                    }
                } else if !value.parse::<usize>().is_ok_and(|n| n > 0) {
                    return Err(format!("{flag} needs a positive number, got {value:?}"));
                }
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(())
}

#[allow(dead_code)]
fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return;
    }
    if let Err(message) = check_args(&args[1..]) {
        eprintln!("error: {message}\n\n{USAGE}");
        std::process::exit(2);
    }
    let value =
        |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let threads: usize = value("--threads").and_then(|t| t.parse().ok()).unwrap_or(2);
    let _ = tapegrad::set_num_threads(threads);
    let quick = has("--quick");
    let mut only: Vec<String> =
        value("--only").map(|o| o.split(',').map(str::to_string).collect()).unwrap_or_else(|| {
            ["w1", "w2", "w3", "w4", "conv", "w5", "w7", "w8", "w9", "w10"]
                .map(String::from)
                .to_vec()
        });
    if has("--w6") {
        only.extend(["w6mlp".into(), "w6cnn".into()]);
    }
    let only: Vec<&str> = only.iter().map(String::as_str).collect();
    let python = std::env::var("TAPEGRAD_BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let python = (!has("--no-torch") && torch_available(&python)).then_some(python);
    if python.is_none() {
        eprintln!(
            "PyTorch not found (set TAPEGRAD_BENCH_PYTHON to a Python with torch); measuring \
            tapegrad alone"
        );
    }
    let runs = value("--runs").and_then(|r| r.parse().ok()).unwrap_or(if quick { 1 } else { 5 });
    let measures = run_all(&only, Settings { quick, runs }, threads, python.as_deref());
    print!("{}", table(&measures, has("--json")));
}
