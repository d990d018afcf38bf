//! Training runs shared by the thread-backend tests and the mpirun tests: the same model
//! trained data-parallel on `world` ranks, and by one process on the global batch.

#![allow(dead_code)] // each test binary uses part of it

use tapegrad_distributed::{DdpOptions, DistributedDataParallel, ProcessGroup, SyncBatchNorm};
use tapegrad_nn::{
    BatchNorm2d, Conv2d, Flatten, Forward, Layer, Linear, Module, Optimizer, ReLU, SGD, Sequential,
    Tanh,
};
use tapegrad_ops::functional as F;
use tapegrad_ops::prelude::*;
use tapegrad_tape::{DType, Tensor, manual_seed};

/// Samples per rank per step.
pub const PER_RANK: usize = 4;

/// The global batches of `steps` steps for `world` ranks: inputs of `shape` per sample, labels
/// in 0..3; the same on every rank and in every process.
pub fn batches(
    steps: usize,
    world: usize,
    sample: &[usize],
    dtype: DType,
) -> Vec<(Tensor, Tensor)> {
    manual_seed(1234);
    (0..steps)
        .map(|_| {
            let n = world * PER_RANK;
            let mut shape = vec![n];
            shape.extend_from_slice(sample);
            let x = Tensor::randn_dtype(&shape, dtype);
            let y = Tensor::from_vec(
                (0..n).map(|i| ((i * 7 + 3) % 3) as i64).collect::<Vec<_>>(),
                &[n],
            );
            (x, y)
        })
        .collect()
}

/// Rows of rank `rank`'s share of a global batch.
pub fn shard(t: &Tensor, rank: usize) -> Tensor {
    t.narrow(0, rank * PER_RANK, PER_RANK).contiguous()
}

/// An MLP for samples of 6 features, initialised from `seed`.
pub fn mlp(seed: u64, dtype: DType) -> Sequential {
    manual_seed(seed);
    let mut m = Sequential::new().add(Linear::new(6, 16)).add(Tanh).add(Linear::new(16, 3));
    m.to_dtype(dtype);
    m
}

/// A small convnet with batch norm (synchronised when `group` is given), on 1x6x6 images.
pub fn convnet(seed: u64, dtype: DType, group: Option<&ProcessGroup>) -> Sequential {
    manual_seed(seed);
    let bn = BatchNorm2d::new(4);
    let norm: Box<dyn Layer> = match group {
        Some(g) => Box::new(SyncBatchNorm::from_batch_norm(bn, g)),
        None => Box::new(bn),
    };
    let mut m = Sequential::new()
        .add(Conv2d::new(1, 4, 3))
        .add(norm)
        .add(ReLU)
        .add(Flatten::new())
        .add(Linear::new(4 * 4 * 4, 3));
    m.to_dtype(dtype);
    m
}

fn optimizer(params: Vec<Tensor>) -> SGD {
    SGD::new(params, 0.1).momentum(0.9)
}

/// Every parameter and buffer, flattened to f64, in state-dict order.
pub fn flat_state(m: &impl Module) -> Vec<f64> {
    m.state_dict().into_iter().flat_map(|(_, t)| t.to_dtype(DType::F64).to_vec::<f64>()).collect()
}

/// Trains `model` data-parallel on this rank's shards of `data`.
pub fn train_ddp<M: Module + Forward>(
    model: M,
    group: &ProcessGroup,
    data: &[(Tensor, Tensor)],
    options: DdpOptions,
) -> DistributedDataParallel<M> {
    let ddp = DistributedDataParallel::new_with(model, group, options);
    let mut opt = optimizer(ddp.parameters());
    for (x, y) in data {
        let (x, y) = (shard(x, group.rank()), shard(y, group.rank()));
        let loss = F::cross_entropy(&ddp.forward(&x), &y);
        opt.zero_grad();
        ddp.backward(&loss);
        opt.step();
    }
    ddp
}

/// Trains `model` in one process on each whole global batch.
pub fn train_global<M: Module + Forward>(model: M, data: &[(Tensor, Tensor)]) -> M {
    let mut opt = optimizer(model.parameters());
    for (x, y) in data {
        let loss = F::cross_entropy(&model.forward(x), y);
        opt.zero_grad();
        loss.backward();
        opt.step();
    }
    model
}

/// Trains `model` in one process as `world` ranks would, one shard after another: the
/// gradients of the shards' losses added in rank order, then divided by `world`.
pub fn train_accumulated<M: Module + Forward>(
    model: M,
    world: usize,
    data: &[(Tensor, Tensor)],
) -> M {
    let mut opt = optimizer(model.parameters());
    for (x, y) in data {
        opt.zero_grad();
        for rank in 0..world {
            F::cross_entropy(&model.forward(&shard(x, rank)), &shard(y, rank)).backward();
        }
        for p in model.parameters() {
            let g = p.grad().unwrap();
            let mean: Vec<f64> = g.to_vec::<f64>().iter().map(|v| v / world as f64).collect();
            p.set_grad(Some(&Tensor::from_vec(mean, g.shape())));
        }
        opt.step();
    }
    model
}

/// The largest absolute difference.
pub fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max)
}
