//! Micro-benchmarks of the CPU kernels behind the ops, to guide performance work (the
//! fixed workloads against PyTorch are `cargo bench --bench workloads`).
//!
//!     cargo bench -p tapegrad-bench-kernels                    # everything
//!     cargo bench -p tapegrad-bench-kernels -- conv            # one group (a name filter)
//!     cargo bench -p tapegrad-bench-kernels -- --quick conv    # shorter measurements
//!
//! A package of its own (benches/kernels) so that building the examples never builds
//! criterion.
//!
//! Shapes are the ones the workloads spend their time in: the CNN's two convolutions and
//! poolings at batch 64, the MLP's matmuls at batch 128, and elementwise kernels and
//! reductions below and above the threading threshold (65,536 elements).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tapegrad::prelude::*;
use tapegrad_kernels::gemm::{View, gemm_serial, library_gemm_serial};

/// Runs forward and backward of `f` on fresh leaves, as a training step would.
fn forward_backward(inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Tensor) {
    let out = f(inputs);
    out.sum().backward();
    for x in inputs {
        x.zero_grad();
    }
}

fn elementwise(c: &mut Criterion) {
    let mut group = c.benchmark_group("elementwise");
    for n in [4_096usize, 1 << 20] {
        let (a, b) = (Tensor::randn(&[n]), Tensor::randn(&[n]));
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("relu", n), &a, |bench, a| {
            bench.iter(|| black_box(a.relu()))
        });
        group.bench_with_input(BenchmarkId::new("exp", n), &a, |bench, a| {
            bench.iter(|| black_box(a.exp()))
        });
        group.bench_with_input(
            BenchmarkId::new("add", n),
            &(a.clone(), b.clone()),
            |bench, (a, b)| bench.iter(|| black_box(a + b)),
        );
        group.bench_with_input(BenchmarkId::new("mul", n), &(a, b), |bench, (a, b)| {
            bench.iter(|| black_box(a * b))
        });
    }
    // A bias added across rows: broadcasting without an expanded copy.
    let (x, bias) = (Tensor::randn(&[1024, 1024]), Tensor::randn(&[1024]));
    group.throughput(Throughput::Elements(1 << 20));
    group.bench_function("add_row_broadcast/1048576", |bench| bench.iter(|| black_box(&x + &bias)));
    group.finish();
}

fn reductions(c: &mut Criterion) {
    let mut group = c.benchmark_group("reductions");
    let x = Tensor::randn(&[1024, 1024]);
    group.throughput(Throughput::Elements(1 << 20));
    group.bench_function("sum_all/1024x1024", |bench| bench.iter(|| black_box(x.sum())));
    group.bench_function("sum_dim0/1024x1024", |bench| {
        bench.iter(|| black_box(x.sum_dim(0, false)))
    });
    group.bench_function("sum_dim1/1024x1024", |bench| {
        bench.iter(|| black_box(x.sum_dim(1, false)))
    });
    group.bench_function("max_dim1/1024x1024", |bench| {
        bench.iter(|| black_box(x.max_dim(1, false)))
    });
    group.bench_function("logsumexp_dim1/1024x1024", |bench| {
        bench.iter(|| black_box(x.logsumexp(1, false)))
    });
    // The gradient of a broadcast bias: a sum back to the bias's shape.
    group.bench_function("sum_to_shape/1024x1024->1024", |bench| {
        bench.iter(|| black_box(x.sum_to_shape(&[1024])))
    });
    group.finish();
}

fn matmul(c: &mut Criterion) {
    let mut group = c.benchmark_group("matmul");
    let shapes: &[(&str, &[usize], &[usize])] = &[
        ("mlp_layer1", &[128, 784], &[784, 128]),
        ("mlp_layer2", &[128, 128], &[128, 64]),
        ("square128", &[128, 128], &[128, 128]),
        ("square512", &[512, 512], &[512, 512]),
        ("batched32x64", &[32, 64, 64], &[32, 64, 64]),
    ];
    for &(name, a_shape, b_shape) in shapes {
        let (a, b) = (Tensor::randn(a_shape), Tensor::randn(b_shape));
        let (k, n) = (b_shape[b_shape.len() - 2], b_shape[b_shape.len() - 1]);
        let rows: usize = a_shape[..a_shape.len() - 1].iter().product();
        group.throughput(Throughput::Elements((2 * rows * k * n) as u64));
        group.bench_function(name, |bench| bench.iter(|| black_box(a.matmul(&b))));
    }
    group.finish();
}

/// The three products of a linear layer (`x Wᵀ` forward, `dy W` and `dyᵀ x` backward) on
/// one thread, through the default kernel and through the library alone
/// (`matrixmultiply`, or the `gemm` crate with its feature): at batch 512 and width 512, at
/// the LSTM's recurrent step (16 rows of a 4 x 128 gate product), at a narrow output
/// layer's shapes, at batch one (a step of inference, or of a policy), at a layer with one
/// output (an attention score or a value head), and at layers with a few inputs
/// (coordinates, a few features).
fn gemm_layouts(c: &mut Criterion) {
    let mut group = c.benchmark_group("gemm_layouts");
    for &(name, rows, inputs, outputs) in &[
        ("batch512_width512", 512, 512, 512),
        ("lstm_step16", 16, 128, 512),
        ("head560x128to1000", 560, 128, 1000),
        ("batch1_width512", 1, 512, 512),
        ("score4096x128to1", 4096, 128, 1),
        ("input4096x2to128", 4096, 2, 128),
        ("input4096x8to128", 4096, 8, 128),
    ] {
        let x: Vec<f32> = (0..rows * inputs).map(|i| (i % 17) as f32 * 0.1 - 0.8).collect();
        let w: Vec<f32> = (0..outputs * inputs).map(|i| (i % 13) as f32 * 0.1 - 0.6).collect();
        let dy: Vec<f32> = (0..rows * outputs).map(|i| (i % 11) as f32 * 0.1 - 0.5).collect();
        let products = [
            ("x_wt", View::row_major(&x, rows, inputs), View::row_major(&w, outputs, inputs).t()),
            ("dy_w", View::row_major(&dy, rows, outputs), View::row_major(&w, outputs, inputs)),
            ("dyt_x", View::row_major(&dy, rows, outputs).t(), View::row_major(&x, rows, inputs)),
        ];
        for (product, a, b) in products {
            let mut out = vec![0.0f32; a.rows * b.cols];
            group.throughput(Throughput::Elements((2 * a.rows * a.cols * b.cols) as u64));
            group.bench_function(
                BenchmarkId::new(format!("{name}/{product}"), "default"),
                |bench| bench.iter(|| gemm_serial(a, b, black_box(&mut out), false)),
            );
            group.bench_function(
                BenchmarkId::new(format!("{name}/{product}"), "library"),
                |bench| bench.iter(|| library_gemm_serial(a, b, black_box(&mut out))),
            );
        }
    }
    group.finish();
}

/// The W4 CNN's two convolutions at batch 64; the second (Winograd's by default on
/// AVX-512) also with the direct sum.
fn conv(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv");
    let opts = ConvOptions::default().padding(2);
    let layers: &[(&str, [usize; 4], [usize; 4], bool)] = &[
        ("1to16_28x28", [64, 1, 28, 28], [16, 1, 5, 5], true),
        ("16to32_14x14", [64, 16, 14, 14], [32, 16, 5, 5], true),
        ("16to32_14x14_direct", [64, 16, 14, 14], [32, 16, 5, 5], false),
    ];
    for &(name, x_shape, w_shape, winograd) in layers {
        let before = tapegrad::ops::set_winograd_enabled(winograd);
        let x = Tensor::randn(&x_shape);
        let w = Tensor::randn(&w_shape);
        group.bench_function(format!("{name}/forward"), |bench| {
            bench.iter(|| black_box(F::conv2d_with(&x, &w, None, opts)))
        });
        let leaves = [x.detach().requires_grad(), w.detach().requires_grad()];
        group.bench_function(format!("{name}/forward_backward"), |bench| {
            bench.iter(|| forward_backward(&leaves, |t| F::conv2d_with(&t[0], &t[1], None, opts)))
        });
        tapegrad::ops::set_winograd_enabled(before);
    }
    group.finish();
}

/// The W4 CNN's two poolings at batch 64.
fn pooling(c: &mut Criterion) {
    let mut group = c.benchmark_group("pooling");
    for (name, shape) in
        [("max2x2_16x28x28", [64usize, 16, 28, 28]), ("max2x2_32x14x14", [64, 32, 14, 14])]
    {
        let x = Tensor::randn(&shape);
        group.bench_function(format!("{name}/forward"), |bench| {
            bench.iter(|| black_box(F::max_pool2d(&x, 2)))
        });
        let leaves = [x.detach().requires_grad()];
        group.bench_function(format!("{name}/forward_backward"), |bench| {
            bench.iter(|| forward_backward(&leaves, |t| F::max_pool2d(&t[0], 2)))
        });
    }
    let x = Tensor::randn(&[64, 16, 28, 28]);
    group.bench_function("avg3x3_16x28x28/forward", |bench| {
        bench.iter(|| {
            black_box(F::avg_pool2d_with(&x, 3, AvgPool2dOptions::default().stride(1).padding(1)))
        })
    });
    group.finish();
}

criterion_group!(kernels, elementwise, reductions, matmul, gemm_layouts, conv, pooling);
criterion_main!(kernels);
