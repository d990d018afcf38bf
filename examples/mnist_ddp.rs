//! The main job, data-parallel over MPI: each rank trains the same model on its own shard
//! of every batch, and the ranks average their gradients after each backward pass.
//!
//! ```text
//! cargo build --release --features mpi --example mnist_ddp
//! mpirun -np 2 target/release/examples/mnist_ddp          # as root: add --allow-run-as-root
//! ```
//!
//! Flags: `--model mlp|cnn`, `--data DIR`, `--epochs N`, `--batch-size N` (the global batch,
//! split among the ranks), `--lr X`, `--threads N` (kernel threads per rank, default 1),
//! `--steps N` (at most N steps per epoch, for a quick check), `--seed N`, `--out DIR`
//! (default target/mnist-ddp). Every rank prints its own throughput per epoch; rank 0 draws
//! the progress bar, evaluates and saves.

#[path = "mnist.rs"]
#[allow(dead_code)]
mod mnist;

use mnist::common;

use std::path::PathBuf;
use std::time::Instant;

use tapegrad::data::{DataLoader, DistributedSampler, Mnist};
use tapegrad::distributed::{DistributedDataParallel, ProcessGroup, ReduceOp, main_println};
use tapegrad::nn::{Forward, Module, Optimizer, metrics, save};
use tapegrad::prelude::*;

const USAGE: &str = "usage: mpirun -np N target/release/examples/mnist_ddp [flags]

  --model mlp|cnn     the network (default mlp)
  --data DIR          full MNIST or Fashion-MNIST IDX files (default: the embedded 5,000 digits)
  --epochs N          default 10 (mlp) or 3 (cnn)
  --batch-size N      the global batch, split among the ranks; default 128
  --lr X              Adam's learning rate, default 0.001
  --threads N         kernel threads per rank, default 1
  --steps N           at most N steps per epoch (default: the whole epoch)
  --seed N            default 0
  --out DIR           weights, default target/mnist-ddp";

fn main() {
    common::check_args(
        USAGE,
        &[
            "--model",
            "--data",
            "--epochs",
            "--batch-size",
            "--lr",
            "--threads",
            "--steps",
            "--seed",
            "--out",
        ],
    );
    let group = ProcessGroup::mpi();
    let (rank, world) = (group.rank(), group.world_size());
    let _ = tapegrad::set_num_threads(common::flag("--threads", 1));
    let model_name = common::flag_str("--model").unwrap_or_else(|| "mlp".into());
    let epochs = common::flag("--epochs", if model_name == "cnn" { 3 } else { 10 });
    let global_batch: usize = common::flag("--batch-size", 128);
    let lr = common::flag("--lr", 1e-3);
    let max_steps: usize = common::flag("--steps", usize::MAX);
    let seed: u64 = common::flag("--seed", 0);
    let out = PathBuf::from(common::flag_str("--out").unwrap_or_else(|| "target/mnist-ddp".into()));
    if !global_batch.is_multiple_of(world) {
        main_println!(
            group,
            "error: --batch-size {global_batch} is not a multiple of {world} ranks"
        );
        std::process::exit(2);
    }

    let data = match common::flag_str("--data") {
        Some(dir) => Mnist::from_dir(&dir).unwrap_or_else(|e| {
            eprintln!("error: {e}");
            std::process::exit(1)
        }),
        None => Mnist::embedded().expect("the embedded data set is part of the build"),
    };
    // Each rank may start from different weights: DistributedDataParallel copies rank 0's.
    manual_seed(seed + rank as u64);
    let model = match model_name.as_str() {
        "mlp" => mnist::mlp(),
        "cnn" => mnist::cnn(),
        other => {
            main_println!(group, "error: --model must be mlp or cnn, not {other}");
            std::process::exit(2)
        }
    };
    let model = DistributedDataParallel::new(model, &group);
    let mut opt = Adam::new(model.parameters(), lr);
    let n = data.train.len();
    let sampler = DistributedSampler::new(n, world, rank).shuffle(seed);
    let loader =
        DataLoader::new(data.train.images.clone(), data.train.labels.clone(), global_batch / world)
            .sampler(sampler);
    let steps = loader.batches().min(max_steps);
    main_println!(
        group,
        "training the {} on {n} images over {world} ranks ({} each per epoch), {epochs} epochs, \
         global batch {global_batch}, Adam lr {lr}",
        model_name.to_uppercase(),
        loader.len()
    );
    for epoch in 0..epochs {
        let bar = if group.is_main() {
            indicatif::ProgressBar::new(steps as u64)
        } else {
            indicatif::ProgressBar::hidden()
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30.cyan/blue}] {pos:>3}/{len} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("epoch {:>2}/{epochs}", epoch + 1));
        let start = Instant::now();
        let (mut loss_sum, mut seen) = (0.0, 0.0);
        for (x, y) in loader.epoch(epoch as u64).take(steps) {
            let loss = F::cross_entropy(&model.forward(&x), &y);
            opt.zero_grad();
            model.backward(&loss);
            opt.step();
            loss_sum += loss.item() * y.numel() as f64;
            seen += y.numel() as f64;
            bar.inc(1);
            bar.set_message(format!("loss {:.4} (rank 0's shard)", loss_sum / seen));
        }
        let seconds = start.elapsed().as_secs_f64();
        bar.finish();
        println!(
            "  rank {rank}: {seen} samples in {seconds:.2} s, {:.0} samples/s",
            seen / seconds.max(1e-9)
        );
        // The loss over every rank's samples, for the log.
        let totals = Tensor::from_vec(vec![loss_sum, seen], &[2]);
        let totals = group.all_reduce(&totals, ReduceOp::Sum).to_vec::<f64>();
        if group.is_main() {
            let accuracy = {
                let _no_grad = no_grad();
                model.module().eval();
                let logits = model.module().forward(&data.test.images);
                model.module().train();
                metrics::accuracy(&logits, &data.test.labels)
            };
            println!(
                "  epoch {}: mean loss {:.4} over all ranks, test accuracy {:.2}%",
                epoch + 1,
                totals[0] / totals[1],
                100.0 * accuracy
            );
        }
    }
    let weights = out.join(format!("mnist-ddp-{model_name}.safetensors"));
    group
        .save_on_main(|| {
            std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
            save(model.module(), &weights).map_err(|e| e.to_string())
        })
        .unwrap_or_else(|e| panic!("saving the weights: {e}"));
    main_println!(group, "weights in {}", weights.display());
}
