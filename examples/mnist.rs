//! The main job: train a digit classifier and watch the loss fall.
//!
//! `cargo run --release --example mnist` trains the classic MLP (784-128-64-10, ReLU,
//! softmax cross-entropy, Adam 1e-3, batch 128) on the 5,000 MNIST digits embedded in
//! tapegrad, with a progress bar per epoch, then reports test accuracy, saves the weights
//! and writes a PNG of the loss and accuracy curves.
//!
//! Flags: `--model mlp|cnn`, `--data DIR` (full MNIST or Fashion-MNIST IDX files, e.g.
//! /usr/share/datasets/fashion-mnist), `--epochs N`, `--batch-size N`, `--lr X`,
//! `--threads N`, `--seed N`, `--out DIR` (default target/mnist).

pub mod common;

use std::path::PathBuf;
use std::time::Instant;

use tapegrad::data::{DataLoader, Mnist};
use tapegrad::nn::{
    Conv2d, Forward, Linear, MaxPool2d, Module, Optimizer, ReLU, Sequential, metrics, save,
};
use tapegrad::prelude::*;

/// What to train and how.
pub struct Config {
    pub model: String,
    pub data: Option<PathBuf>,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
    pub out: PathBuf,
    pub quiet: bool,
}

/// What training achieved.
pub struct Outcome {
    /// Mean training loss per epoch.
    pub losses: Vec<f64>,
    pub train_accuracy: Vec<f64>,
    pub test_accuracy: Vec<f64>,
    pub seconds: f64,
}

/// The classic MLP on flattened 28x28 images.
pub fn mlp() -> Sequential {
    Sequential::new()
        .add(tapegrad::nn::Flatten::default())
        .add(Linear::new(784, 128))
        .add(ReLU)
        .add(Linear::new(128, 64))
        .add(ReLU)
        .add(Linear::new(64, 10))
}

/// Two convolution + pooling blocks and a linear classifier.
pub fn cnn() -> Sequential {
    Sequential::new()
        .add(Conv2d::new(1, 16, 5).padding(2))
        .add(ReLU)
        .add(MaxPool2d::new(2))
        .add(Conv2d::new(16, 32, 5).padding(2))
        .add(ReLU)
        .add(MaxPool2d::new(2))
        .add(tapegrad::nn::Flatten::default())
        .add(Linear::new(32 * 7 * 7, 10))
}

fn evaluate(model: &Sequential, images: &Tensor, labels: &Tensor) -> f64 {
    let _no_grad = no_grad();
    model.eval();
    let loader = DataLoader::new(images.clone(), labels.clone(), 1000);
    let (mut correct, mut total) = (0.0, 0.0);
    for (x, y) in loader.epoch(0) {
        let n = y.numel() as f64;
        correct += metrics::accuracy(&model.forward(&x), &y) * n;
        total += n;
    }
    model.train();
    correct / total.max(1.0)
}

pub fn run(cfg: &Config) -> Outcome {
    manual_seed(cfg.seed);
    let data = match &cfg.data {
        Some(dir) => Mnist::from_dir(dir).unwrap_or_else(|e| {
            eprintln!("error: {e}");
            std::process::exit(1)
        }),
        None => Mnist::embedded().expect("the embedded data set is part of the build"),
    };
    let model = match cfg.model.as_str() {
        "mlp" => mlp(),
        "cnn" => cnn(),
        other => {
            eprintln!("error: --model must be mlp or cnn, not {other}");
            std::process::exit(2)
        }
    };
    let mut opt = Adam::new(model.parameters(), cfg.lr);
    let loader =
        DataLoader::new(data.train.images.clone(), data.train.labels.clone(), cfg.batch_size)
            .shuffle(cfg.seed);
    if !cfg.quiet {
        println!(
            "training the {} on {} images ({} test), {} epochs, batch {}, Adam lr {}",
            cfg.model.to_uppercase(),
            data.train.len(),
            data.test.len(),
            cfg.epochs,
            cfg.batch_size,
            cfg.lr
        );
    }
    let mut outcome =
        Outcome { losses: vec![], train_accuracy: vec![], test_accuracy: vec![], seconds: 0.0 };
    let start = Instant::now();
    for epoch in 0..cfg.epochs {
        let bar = if cfg.quiet {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new(loader.batches() as u64)
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30.cyan/blue}] {pos:>3}/{len} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("epoch {:>2}/{}", epoch + 1, cfg.epochs));
        let epoch_start = Instant::now();
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0.0, 0.0);
        for (x, y) in loader.epoch(epoch as u64) {
            let logits = model.forward(&x);
            let loss = F::cross_entropy(&logits, &y);
            opt.zero_grad();
            loss.backward();
            opt.step();
            let n = y.numel() as f64;
            loss_sum += loss.item() * n;
            correct += metrics::accuracy(&logits, &y) * n;
            seen += n;
            bar.inc(1);
            bar.set_message(format!(
                "loss {:.4}  acc {:.2}%  {:.0} samples/s",
                loss_sum / seen,
                100.0 * correct / seen,
                seen / epoch_start.elapsed().as_secs_f64()
            ));
        }
        bar.finish();
        outcome.losses.push(loss_sum / seen);
        outcome.train_accuracy.push(correct / seen);
        outcome.test_accuracy.push(evaluate(&model, &data.test.images, &data.test.labels));
        if !cfg.quiet {
            println!("           test accuracy {:.2}%", 100.0 * outcome.test_accuracy[epoch]);
        }
    }
    outcome.seconds = start.elapsed().as_secs_f64();

    let weights = cfg.out.join(format!("mnist-{}.safetensors", cfg.model));
    let chart = cfg.out.join(format!("mnist-{}.png", cfg.model));
    std::fs::create_dir_all(&cfg.out).expect("create the output directory");
    save(&model, &weights).expect("save the weights");
    let epochs = |v: &[f64], scale: f64| {
        v.iter().enumerate().map(|(i, &a)| ((i + 1) as f64, a * scale)).collect()
    };
    let series = |name: &str, points, color| common::Series { name: name.into(), points, color };
    common::write_chart(
        &chart,
        &[
            common::Panel {
                title: "TRAINING LOSS".into(),
                series: vec![series("LOSS", epochs(&outcome.losses, 1.0), [200, 40, 40])],
                scatter: false,
            },
            common::Panel {
                title: "ACCURACY %".into(),
                series: vec![
                    series("TRAIN", epochs(&outcome.train_accuracy, 100.0), [40, 90, 200]),
                    series("TEST", epochs(&outcome.test_accuracy, 100.0), [30, 150, 60]),
                ],
                scatter: false,
            },
        ],
    )
    .expect("write the chart");
    if !cfg.quiet {
        println!(
            "final test accuracy {:.2}% after {:.1} s of training; weights in {}, curves in {}",
            100.0 * outcome.test_accuracy.last().copied().unwrap_or(0.0),
            outcome.seconds,
            weights.display(),
            chart.display()
        );
    }
    outcome
}

const USAGE: &str = "usage: cargo run --release --example mnist -- [flags]

  --model mlp|cnn     the network (default mlp)
  --data DIR          full MNIST or Fashion-MNIST IDX files (default: the embedded 5,000 digits)
  --epochs N          default 30 (mlp) or 5 (cnn)
  --batch-size N      default 128
  --lr X              Adam's learning rate, default 0.001
  --threads N         kernel threads, default 2
  --seed N            default 0
  --out DIR           weights and curves, default target/mnist";

#[allow(dead_code)]
fn main() {
    common::check_args(
        USAGE,
        &["--model", "--data", "--epochs", "--batch-size", "--lr", "--threads", "--seed", "--out"],
    );
    let threads: usize = common::flag("--threads", 2);
    let _ = tapegrad::set_num_threads(threads);
    let model = common::flag_str("--model").unwrap_or_else(|| "mlp".into());
    let cfg = Config {
        epochs: common::flag("--epochs", if model == "cnn" { 5 } else { 30 }),
        batch_size: common::flag("--batch-size", 128),
        lr: common::flag("--lr", 1e-3),
        seed: common::flag("--seed", 0),
        data: common::flag_str("--data").map(PathBuf::from),
        out: PathBuf::from(common::flag_str("--out").unwrap_or_else(|| "target/mnist".into())),
        quiet: false,
        model,
    };
    run(&cfg);
}
