//! A small residual CNN with batch normalisation on the embedded MNIST digits: how to write
//! your own module (a residual block) and compose it with the built-in layers.
//!
//! Run it with `cargo run --release --example resnet` (`--epochs N`).

mod common;

use tapegrad::nn::metrics;
use tapegrad::prelude::*;

/// `relu(x + bn(conv(relu(bn(conv(x))))))`: the block of He et al.'s residual networks.
/// The derive finds the parameters and the BatchNorm layers (for train/eval) in `body`.
#[derive(Module)]
struct ResidualBlock {
    body: Sequential,
}

impl ResidualBlock {
    fn new(channels: usize) -> Self {
        let body = Sequential::new()
            .add(Conv2d::new(channels, channels, 3).padding(1).no_bias())
            .add(BatchNorm2d::new(channels))
            .add(ReLU)
            .add(Conv2d::new(channels, channels, 3).padding(1).no_bias())
            .add(BatchNorm2d::new(channels));
        ResidualBlock { body }
    }
}

impl Forward for ResidualBlock {
    fn forward(&self, x: &Tensor) -> Tensor {
        (x + &self.body.forward(x)).relu()
    }
}

/// Mean training loss and test accuracy of each epoch.
pub fn run(epochs: usize, train_limit: Option<usize>, verbose: bool) -> Vec<(f64, f64)> {
    manual_seed(6);
    let data = Mnist::embedded().expect("embedded data");
    let n = train_limit.unwrap_or(data.train.len()).min(data.train.len());
    let images = data.train.images.narrow(0, 0, n);
    let labels = data.train.labels.narrow(0, 0, n);
    let model = Sequential::new()
        .add(Conv2d::new(1, 16, 3).padding(1).no_bias())
        .add(BatchNorm2d::new(16))
        .add(ReLU)
        .add(MaxPool2d::new(2))
        .add(ResidualBlock::new(16))
        .add(MaxPool2d::new(2))
        .add(ResidualBlock::new(16))
        .add(AdaptiveAvgPool2d { height: 1, width: 1 })
        .add(Flatten::default())
        .add(Linear::new(16, 10));
    if verbose {
        let names: Vec<String> = model.named_parameters().into_iter().map(|(n, _)| n).collect();
        println!("{} parameter tensors, e.g. {}", names.len(), names[4..8].join(", "));
    }
    let mut opt = Adam::new(model.parameters(), 3e-3);
    let loader = DataLoader::new(images, labels, 64).shuffle(6);
    let mut accuracy = Vec::new();
    for epoch in 0..epochs {
        model.train();
        let mut loss_sum = 0.0;
        for (x, y) in loader.epoch(epoch as u64) {
            let loss = F::cross_entropy(&model.forward(&x), &y);
            opt.zero_grad();
            loss.backward();
            opt.step();
            loss_sum += loss.item();
        }
        model.eval();
        let acc = {
            let _no_grad = no_grad();
            metrics::accuracy(&model.forward(&data.test.images), &data.test.labels)
        };
        accuracy.push((loss_sum / loader.batches() as f64, acc));
        if verbose {
            println!(
                "epoch {}  mean loss {:.4}  test accuracy {:.2}%",
                epoch + 1,
                loss_sum / loader.batches() as f64,
                100.0 * acc
            );
        }
    }
    accuracy
}

#[allow(dead_code)]
fn main() {
    common::check_args(
        "usage: cargo run --release --example resnet -- [--epochs N (default 3)] [--threads N \
        (default 2)]",
        &["--epochs", "--threads"],
    );
    let _ = tapegrad::set_num_threads(common::flag("--threads", 2));
    run(common::flag("--epochs", 3), None, true);
}
