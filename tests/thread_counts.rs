//! Results do not depend on the number of threads: training steps of models large enough to
//! take every threaded path (split convolutions and their weight-gradient partial sums,
//! blocked reductions, threaded elementwise loops and GEMMs) give bit-identical losses and
//! parameters at 1, 2, 3 and 4 threads.

use tapegrad::nn::{BatchNorm2d, Flatten, Forward};
use tapegrad::prelude::*;

/// Losses (as bits) of `steps` training steps, then every parameter's bits, with the
/// kernels on a pool of `threads` threads.
fn train(
    threads: usize,
    model: fn() -> Sequential,
    input: &'static [usize],
    steps: usize,
) -> Vec<u32> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        manual_seed(17);
        let model = model();
        let mut opt = Adam::new(model.parameters(), 1e-2);
        let x = Tensor::randn(input);
        let y =
            Tensor::from_vec((0..input[0] as i64).map(|i| i % 10).collect::<Vec<_>>(), &[input[0]]);
        let mut bits = Vec::new();
        for _ in 0..steps {
            opt.zero_grad();
            let loss = F::cross_entropy(&model.forward(&x), &y);
            loss.backward();
            opt.step();
            bits.push((loss.item() as f32).to_bits());
        }
        for p in model.parameters() {
            bits.extend(p.to_vec::<f32>().iter().map(|v| v.to_bits()));
        }
        bits
    })
}

fn assert_same_at_every_thread_count(
    model: fn() -> Sequential,
    input: &'static [usize],
    steps: usize,
) {
    let one = train(1, model, input, steps);
    for threads in [2, 3, 4] {
        let other = train(threads, model, input, steps);
        let first = one.iter().zip(&other).position(|(a, b)| a != b);
        assert_eq!(first, None, "{threads} threads differ from 1 at value {first:?}");
    }
}

/// The main job's CNN: 5x5 convolutions (Winograd's path on AVX-512 for the second),
/// pooling, a linear layer.
fn cnn() -> Sequential {
    Sequential::new()
        .add(Conv2d::new(1, 16, 5).padding(2))
        .add(ReLU)
        .add(MaxPool2d::new(2))
        .add(Conv2d::new(16, 32, 5).padding(2))
        .add(ReLU)
        .add(MaxPool2d::new(2))
        .add(Flatten::default())
        .add(Linear::new(32 * 7 * 7, 10))
}

/// 3x3 convolutions with batch normalisation (per-channel reductions over large tensors).
fn resnet_like() -> Sequential {
    Sequential::new()
        .add(Conv2d::new(3, 16, 3).padding(1))
        .add(BatchNorm2d::new(16))
        .add(ReLU)
        .add(Conv2d::new(16, 16, 3).padding(1))
        .add(BatchNorm2d::new(16))
        .add(ReLU)
        .add(Flatten::default())
        .add(Linear::new(16 * 16 * 16, 10))
}

/// A wide MLP: GEMMs split across threads, large elementwise ops and bias reductions.
fn mlp() -> Sequential {
    Sequential::new().add(Linear::new(784, 512)).add(ReLU).add(Linear::new(512, 10))
}

#[test]
fn cnn_training_is_identical_at_any_thread_count() {
    assert_same_at_every_thread_count(cnn, &[64, 1, 28, 28], 3);
}

#[test]
fn batch_norm_network_is_identical_at_any_thread_count() {
    assert_same_at_every_thread_count(resnet_like, &[32, 3, 16, 16], 3);
}

#[test]
fn mlp_training_is_identical_at_any_thread_count() {
    assert_same_at_every_thread_count(mlp, &[256, 784], 3);
}

/// L-BFGS over 300,000 f64 parameters (its dot products and updates split into blocks on the
/// pool): the same trajectory at 1 to 4 threads.
#[test]
fn lbfgs_steps_are_the_same_at_every_thread_count() {
    let run = |threads: usize| -> Vec<u64> {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            manual_seed(5);
            let p = Tensor::zeros_dtype(&[300_000], DType::F64).requires_grad();
            let target = Tensor::randn_dtype(&[300_000], DType::F64);
            let weight = Tensor::rand(&[300_000]).to_dtype(DType::F64) + 0.1;
            let mut opt = LBFGS::new(vec![p.clone()], 1.0)
                .max_iter(6)
                .history_size(4)
                .line_search_fn(Some(LineSearch::StrongWolfe));
            let mut bits = Vec::new();
            for _ in 0..2 {
                let loss = opt.step(|| {
                    p.zero_grad();
                    let loss = ((&p - &target).square() * &weight).sum();
                    loss.backward();
                    loss
                });
                bits.push(loss.item().to_bits());
            }
            bits.extend(p.to_vec::<f64>().iter().map(|v| v.to_bits()));
            bits
        })
    };
    let one = run(1);
    for threads in [2, 3, 4] {
        let other = run(threads);
        let first = one.iter().zip(&other).position(|(a, b)| a != b);
        assert_eq!(first, None, "{threads} threads differ from 1 at value {first:?}");
    }
}
