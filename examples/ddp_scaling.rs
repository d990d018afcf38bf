//! How data-parallel training scales on this machine: W3's MLP step and W4's CNN step (the
//! benchmark's workloads), the global batch split among the ranks.
//!
//! ```text
//! cargo build --release --features mpi --example ddp_scaling
//! mpirun -np 1 target/release/examples/ddp_scaling --threads 2 --ddp off   # no DDP at all
//! mpirun -np 2 target/release/examples/ddp_scaling --threads 1           # 2 ranks x 1 thread
//! ```
//!
//! Prints, per workload, the median step time over the ranks' slowest, the global samples per
//! second, and what each step communicated and waited for (docs/DISTRIBUTED.md).

#[path = "mnist.rs"]
#[allow(dead_code)]
mod mnist;

use std::time::Instant;

use mnist::common;
use tapegrad::distributed::{DdpOptions, DistributedDataParallel, ProcessGroup, ReduceOp};
use tapegrad::nn::{Forward, Module, Optimizer, SGD, Sequential};
use tapegrad::prelude::*;

const USAGE: &str = "usage: mpirun -np N target/release/examples/ddp_scaling [flags]

  --threads N     kernel threads per rank, default 1
  --ddp on|off     off: train without DistributedDataParallel (one rank only); default on
  --only w3|w4    one workload (default both)
  --repeats N     measure each workload N times and keep the median, default 3
  --batch N       the global batch (default: the workload's, W3 128, W4 64)
  --bucket-mb X   DDP's bucket cap, first bucket included (default: PyTorch's 25 and 1)";

struct Measured {
    step_ms: f64,
    bytes: usize,
    buckets: usize,
    overlapped: usize,
    wait_ms: f64,
}

/// A benchmark workload's model, optimizer and data.
struct Workload {
    name: &'static str,
    model: fn() -> Sequential,
    optimizer: fn(Vec<Tensor>) -> Box<dyn Optimizer>,
    sample: &'static [usize],
    batch: usize,
    /// Warm-up and measured steps.
    counts: (usize, usize),
}

/// The median step time of `w` on this rank's share of a global batch of `batch`.
fn measure(group: &ProcessGroup, plain: bool, w: &Workload, batch: usize) -> Measured {
    let (warmup, steps) = w.counts;
    let model = (w.model)();
    let make_opt = w.optimizer;
    let sample = w.sample;
    let per_rank = batch / group.world_size();
    manual_seed(42);
    let mut shape = vec![batch];
    shape.extend_from_slice(sample);
    let x = Tensor::randn(&shape).narrow(0, group.rank() * per_rank, per_rank).contiguous();
    let y =
        Tensor::from_vec((0..per_rank).map(|i| (i % 10) as i64).collect::<Vec<_>>(), &[per_rank]);
    let params = model.parameters();
    let (ddp, model) = if plain {
        (None, Some(model))
    } else {
        let options = match common::flag_str("--bucket-mb") {
            Some(_) => {
                let mb: f64 = common::flag("--bucket-mb", 25.0);
                DdpOptions::default().bucket_cap_mb(mb).first_bucket_mb(mb)
            }
            None => DdpOptions::default(),
        };
        (Some(DistributedDataParallel::new_with(model, group, options)), None)
    };
    let forward = |x: &Tensor| match (&ddp, &model) {
        (Some(d), _) => d.forward(x),
        (None, Some(m)) => m.forward(x),
        (None, None) => unreachable!("one of the two is made"),
    };
    let mut opt = make_opt(params);
    let mut times = Vec::with_capacity(steps);
    let (mut wait, mut bytes, mut buckets, mut overlapped) = (0.0, 0, 0, 0);
    for step in 0..warmup + steps {
        let start = Instant::now();
        opt.zero_grad();
        let loss = F::cross_entropy(&forward(&x), &y);
        match &ddp {
            Some(d) => d.backward(&loss),
            None => loss.backward(),
        }
        opt.step();
        if step >= warmup {
            times.push(start.elapsed().as_secs_f64() * 1e3);
            if let Some(d) = &ddp {
                let s = d.last_sync();
                wait += s.wait.as_secs_f64() * 1e3 / steps as f64;
                (bytes, buckets, overlapped) = (s.bytes, s.buckets, s.overlapped);
            }
        }
    }
    times.sort_by(f64::total_cmp);
    Measured { step_ms: times[times.len() / 2], bytes, buckets, overlapped, wait_ms: wait }
}

/// Median time of an all-reduce of `bytes` bytes of f32 (rank 0's view).
fn all_reduce_ms(group: &ProcessGroup, bytes: usize) -> f64 {
    use tapegrad::distributed::Payload;
    let mut times: Vec<f64> = (0..25)
        .map(|_| {
            let data = Payload::F32(vec![1.0; bytes / 4]);
            group.barrier();
            let start = Instant::now();
            group.all_reduce_async(data).wait().expect("all-reduce");
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    common::check_args(
        USAGE,
        &["--threads", "--ddp", "--only", "--repeats", "--batch", "--bucket-mb"],
    );
    let group = ProcessGroup::mpi();
    let threads: usize = common::flag("--threads", 1);
    let _ = tapegrad::set_num_threads(threads);
    let plain = match common::flag_str("--ddp").as_deref() {
        None | Some("on") => false,
        Some("off") => true,
        Some(other) => {
            eprintln!("error: --ddp takes on or off, not {other}");
            std::process::exit(2)
        }
    };
    assert!(!plain || group.world_size() == 1, "--ddp off runs on one rank");
    let only = common::flag_str("--only");
    let repeats: usize = common::flag("--repeats", 3);
    let workloads = [
        Workload {
            name: "w3",
            model: mnist::mlp,
            optimizer: |p| Box::new(Adam::new(p, 1e-3)),
            sample: &[784],
            batch: 128,
            counts: (20, 200),
        },
        Workload {
            name: "w4",
            model: mnist::cnn,
            optimizer: |p| {
                Box::new(
                    SGD::new(p, 0.01)
                        .momentum(0.9)
                        .dampening(0.0)
                        .nesterov(false)
                        .weight_decay(0.0),
                )
            },
            sample: &[1, 28, 28],
            batch: 64,
            counts: (5, 50),
        },
    ];
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    if group.is_main() {
        println!(
            "{} rank(s) x {threads} thread(s){}, {cpu}",
            group.world_size(),
            if plain { ", no DDP" } else { "" }
        );
    }
    if group.world_size() > 1 && only.is_none() {
        for kib in [113.0, 427.0, 4096.0, 25600.0] {
            let ms = all_reduce_ms(&group, (kib * 1024.0) as usize);
            if group.is_main() {
                println!(
                    "all-reduce of {kib:.0} KiB: {ms:.3} ms ({:.2} GB/s of buffer per rank)",
                    kib * 1024.0 / (ms * 1e-3) / 1e9
                );
            }
        }
    }
    for w in &workloads {
        if only.as_deref().is_some_and(|o| o != w.name) {
            continue;
        }
        let batch = common::flag("--batch", w.batch);
        let mut runs: Vec<Measured> = (0..repeats)
            .map(|_| {
                manual_seed(group.rank() as u64);
                measure(&group, plain, w, batch)
            })
            .collect();
        runs.sort_by(|a, b| a.step_ms.total_cmp(&b.step_ms));
        let m = runs.swap_remove(repeats / 2);
        // The job is as fast as its slowest rank.
        let slowest = group.all_gather(&Tensor::from_vec(vec![m.step_ms, m.wait_ms], &[2]));
        let worst = slowest.iter().map(|t| t.to_vec::<f64>()[0]).fold(0.0, f64::max);
        let wait = group.all_reduce(&Tensor::from_vec(vec![m.wait_ms], &[1]), ReduceOp::Avg).item();
        if group.is_main() {
            println!(
                "{}: batch {batch}: {worst:.3} ms per step, {:.0} samples/s; {} bucket(s) ({} started during backward), {:.1} KiB per rank per step, {wait:.3} ms waited",
                w.name,
                batch as f64 / worst * 1e3,
                m.buckets,
                m.overlapped,
                m.bytes as f64 / 1024.0
            );
        }
    }
}
