//! Data-parallel training with ranks as threads: the same checks the mpirun tests make
//! across processes, on any machine.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tapegrad_distributed::{
    DdpOptions, DistributedDataParallel, GroupOptions, ProcessGroup, ReduceOp, ReduceOrder,
    SyncBatchNorm,
};
use tapegrad_nn::{Forward, Linear, Module, Optimizer, SGD};
use tapegrad_ops::prelude::*;
use tapegrad_tape::{DType, Tensor};

/// Runs `f` on every rank of a thread group, returning the ranks' results in rank order.
fn on_ranks<T: Send + 'static>(
    world: usize,
    f: impl Fn(ProcessGroup) -> T + Send + Sync + Clone + 'static,
) -> Vec<T> {
    let handles: Vec<_> = ProcessGroup::threads(world)
        .into_iter()
        .map(|g| {
            let f = f.clone();
            std::thread::spawn(move || f(g))
        })
        .collect();
    handles.into_iter().map(|h| h.join().expect("a rank panicked")).collect()
}

#[test]
fn ddp_in_f32_matches_one_process_on_the_global_batch() {
    for world in [2, 3] {
        let ranks = on_ranks(world, move |g| {
            let data = batches(5, world, &[6], DType::F32);
            // Each rank starts from its own weights: DDP copies rank 0's.
            let model = mlp(100 + g.rank() as u64, DType::F32);
            flat_state(&train_ddp(model, &g, &data, DdpOptions::default()))
        });
        let data = batches(5, world, &[6], DType::F32);
        let single = flat_state(&train_global(mlp(100, DType::F32), &data));
        for (rank, params) in ranks.iter().enumerate() {
            assert_eq!(params, &ranks[0], "rank {rank} of {world} differs from rank 0");
            let diff = max_diff(params, &single);
            assert!(diff <= 1e-6, "{world} ranks: off by {diff:e} from one process");
        }
    }
}

#[test]
fn ddp_in_f64_in_rank_order_is_exactly_one_process_accumulating_the_shards() {
    for world in [2, 3] {
        let options = DdpOptions::default()
            .reduce_order(ReduceOrder::RankOrder)
            .first_bucket_mb(1e-3)
            .bucket_cap_mb(1e-3);
        let ranks = on_ranks(world, move |g| {
            let data = batches(4, world, &[6], DType::F64);
            let ddp = train_ddp(mlp(7 + g.rank() as u64, DType::F64), &g, &data, options);
            assert!(ddp.bucket_count() > 1, "small caps make several buckets");
            flat_state(&ddp)
        });
        let data = batches(4, world, &[6], DType::F64);
        let single = flat_state(&train_accumulated(mlp(7, DType::F64), world, &data));
        for params in &ranks {
            assert_eq!(params, &single, "{world} ranks");
        }
    }
}

#[test]
fn sync_batch_norm_trains_as_batch_norm_on_the_global_batch() {
    let world = 2;
    let ranks = on_ranks(world, move |g| {
        let data = batches(3, world, &[1, 6, 6], DType::F64);
        flat_state(&train_ddp(convnet(5, DType::F64, Some(&g)), &g, &data, DdpOptions::default()))
    });
    let data = batches(3, world, &[1, 6, 6], DType::F64);
    let single = flat_state(&train_global(convnet(5, DType::F64, None), &data));
    assert_eq!(ranks[0], ranks[1]);
    // Parameters and running statistics (buffers are in the state dict).
    let diff = max_diff(&ranks[0], &single);
    assert!(diff < 1e-12, "off by {diff:e}");
}

#[test]
fn sync_batch_norm_weighs_every_sample_alike_when_batches_differ_in_size() {
    // Rank 0 holds 1 sample, rank 1 holds 5: the statistics are those of all 6.
    let x = || {
        tapegrad_tape::manual_seed(9);
        Tensor::randn_dtype(&[6, 3, 2, 2], DType::F64)
    };
    let outs = on_ranks(2, move |g| {
        let all = x();
        let mine = if g.rank() == 0 { all.narrow(0, 0, 1) } else { all.narrow(0, 1, 5) };
        let mut bn = SyncBatchNorm::new(3, &g);
        bn.to_dtype(DType::F64);
        let y = bn.forward(&mine.contiguous());
        (y.to_vec::<f64>(), bn.batch_norm().running_var.to_vec::<f64>())
    });
    let mut bn = tapegrad_nn::BatchNorm2d::new(3);
    bn.to_dtype(DType::F64);
    let y = bn.forward(&x()).to_vec::<f64>();
    let joined: Vec<f64> = outs[0].0.iter().chain(&outs[1].0).copied().collect();
    assert!(max_diff(&joined, &y) < 1e-12);
    assert!(max_diff(&outs[0].1, &bn.running_var.to_vec::<f64>()) < 1e-12);
    assert_eq!(outs[0].1, outs[1].1);
}

#[test]
fn sync_batch_norm_evaluates_locally_with_its_running_statistics() {
    let group = ProcessGroup::single();
    let sync = SyncBatchNorm::new(2, &group);
    let plain = tapegrad_nn::BatchNorm2d::new(2);
    let x = Tensor::randn(&[4, 2, 3, 3]);
    sync.forward(&x);
    plain.forward(&x);
    sync.eval();
    plain.eval();
    let y = Tensor::randn(&[2, 2, 3, 3]);
    let diff = max_diff(
        &sync.forward(&y).to_dtype(DType::F64).to_vec::<f64>(),
        &plain.forward(&y).to_dtype(DType::F64).to_vec::<f64>(),
    );
    assert!(diff < 1e-5, "{diff}");
    let one = std::panic::catch_unwind(|| {
        let s = SyncBatchNorm::new(2, &ProcessGroup::single());
        s.forward(&Tensor::randn(&[1, 2]));
    });
    assert!(one.is_err(), "one value per channel in training is refused");
}

#[test]
fn training_forwards_start_from_rank_zeros_buffers_unless_told_not_to() {
    for broadcast in [true, false] {
        let means = on_ranks(2, move |g| {
            let options = DdpOptions::default().broadcast_buffers(broadcast);
            let ddp = DistributedDataParallel::new_with(convnet(5, DType::F32, None), &g, options);
            let running_mean = ddp.named_buffers()[0].1.clone();
            if g.rank() == 1 {
                running_mean.set_data(&Tensor::full(&[4], 100.0)); // drifted away
            }
            let data = batches(1, 2, &[1, 6, 6], DType::F32);
            ddp.forward(&shard(&data[0].0, g.rank()));
            running_mean.to_vec::<f32>()
        });
        // 0.9 of the starting value plus 0.1 of a batch mean of order 1.
        let drifted = means[1].iter().all(|&m| m > 50.0);
        assert_eq!(drifted, !broadcast, "broadcast_buffers({broadcast}): {means:?}");
    }
}

#[test]
fn parameters_left_out_of_one_ranks_loss_get_the_mean_of_the_others() {
    let grads = on_ranks(2, |g| {
        tapegrad_tape::manual_seed(3);
        let (shared, head, idle) = (Linear::new(2, 2), Linear::new(2, 1), Linear::new(2, 1));
        let model = tapegrad_nn::Sequential::new().add(shared).add(head).add(idle);
        let ddp = DistributedDataParallel::new(model, &g);
        let layers = ddp.named_parameters();
        let (w0, w1) = (&layers[0].1, &layers[2].1);
        let h = w0.matmul(&Tensor::ones(&[2, 1]));
        // Rank 0 uses the first layer only; rank 1 the second layer too; nobody the third.
        let loss = if g.rank() == 0 { h.sum() } else { &h.sum() + &w1.sum() };
        ddp.backward(&loss);
        layers.iter().map(|(_, p)| p.grad().map(|g| g.to_vec::<f32>())).collect::<Vec<_>>()
    });
    assert_eq!(grads[0], grads[1]);
    assert_eq!(grads[0][0], Some(vec![1.0; 4]), "used by both: the mean of equal gradients");
    assert_eq!(grads[0][2], Some(vec![0.5, 0.5]), "used by rank 1 only: (0 + 1) / 2");
    assert_eq!(grads[0][4], None, "used by no rank: no gradient, as in one process");
}

#[test]
fn an_unused_parameter_in_an_early_bucket_waits_on_one_rank_only() {
    for order in [ReduceOrder::Backend, ReduceOrder::RankOrder] {
        let grads = on_ranks(2, move |g| {
            tapegrad_tape::manual_seed(3);
            let options =
                DdpOptions::default().first_bucket_mb(1e-5).bucket_cap_mb(1e-5).reduce_order(order);
            // Buckets in reverse order: [head.bias], [head.weight], [body.bias], [body.weight].
            let model =
                tapegrad_nn::Sequential::new().add(Linear::new(2, 2)).add(Linear::new(2, 1));
            let ddp = DistributedDataParallel::new_with(model, &g, options);
            assert_eq!(ddp.bucket_count(), 4);
            let p = ddp.parameters();
            let body = p[0].matmul(&Tensor::ones(&[2, 1])).sum();
            // Rank 0 leaves the head (the first buckets) out; rank 1 uses it.
            let loss = if g.rank() == 0 { body } else { &body + &p[3].sum() };
            ddp.backward(&loss);
            p.iter().map(|t| t.grad().map(|g| g.to_vec::<f32>())).collect::<Vec<_>>()
        });
        assert_eq!(grads[0], grads[1], "{order:?}");
        assert_eq!(grads[0][0], Some(vec![1.0; 4]));
        assert_eq!(grads[0][1], None, "body.bias: no rank");
        assert_eq!(grads[0][2], None, "head.weight: no rank");
        assert_eq!(grads[0][3], Some(vec![0.5]), "head.bias: rank 1 only");
    }
}

#[test]
fn replacing_the_parameters_through_the_wrapper_keeps_them_averaged() {
    let grads = on_ranks(2, |g| {
        tapegrad_tape::manual_seed(0);
        let mut ddp = DistributedDataParallel::new(Linear::new(1, 1), &g);
        ddp.to_dtype(DType::F64); // new parameter tensors
        let x = Tensor::full(&[1, 1], (g.rank() + 1) as f64).to_dtype(DType::F64);
        ddp.backward(&ddp.forward(&x).sum());
        ddp.module().weight.grad().unwrap().to_vec::<f64>()
    });
    assert_eq!(grads, vec![vec![1.5], vec![1.5]]);
}

#[test]
fn plain_backward_with_an_unused_parameter_is_caught_at_the_next_forward() {
    let messages = on_ranks(2, |g| {
        let model = tapegrad_nn::Sequential::new().add(Linear::new(2, 2)).add(Linear::new(2, 2));
        let ddp = DistributedDataParallel::new(model, &g);
        let w = ddp.parameters()[0].clone();
        w.sum().backward(); // three of the four parameters never get a gradient
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ddp.forward(&Tensor::ones(&[1, 2]));
        }));
        *caught.unwrap_err().downcast::<String>().unwrap()
    });
    for message in messages {
        assert!(message.contains("ddp.backward(&loss)") && message.contains("0.bias"), "{message}");
    }
}

#[test]
fn no_sync_accumulates_locally_and_the_next_backward_averages_the_total() {
    let grads = on_ranks(2, |g| {
        tapegrad_tape::manual_seed(0);
        let ddp = DistributedDataParallel::new(Linear::new(1, 1), &g);
        let x = Tensor::full(&[1, 1], (g.rank() + 1) as f64);
        {
            let _local = ddp.no_sync();
            ddp.backward(&ddp.forward(&x).sum());
            // Not averaged yet: each rank holds its own gradient.
            assert_eq!(ddp.module().weight.grad().unwrap().item(), (g.rank() + 1) as f64);
        }
        ddp.backward(&ddp.forward(&x).sum());
        ddp.module().weight.grad().unwrap().item()
    });
    // Rank r accumulated 2 (r + 1); the mean over the ranks is (2 + 4) / 2.
    assert_eq!(grads, vec![3.0, 3.0]);
}

#[test]
fn each_plain_backward_averages_at_its_end_so_passes_accumulate_averages() {
    let grads = on_ranks(2, |g| {
        tapegrad_tape::manual_seed(0);
        let ddp = DistributedDataParallel::new(Linear::new(1, 1), &g);
        let r = g.rank() as f64;
        // Pass 1: inputs 1 and 3 (mean 2); pass 2: inputs 10 and 30 (mean 20).
        ddp.forward(&Tensor::full(&[1, 1], 1.0 + 2.0 * r)).sum().backward();
        ddp.forward(&Tensor::full(&[1, 1], 10.0 + 20.0 * r)).sum().backward();
        ddp.module().weight.grad().unwrap().item()
    });
    assert_eq!(grads, vec![22.0, 22.0]); // the averages added: 2 + 20
}

#[test]
fn a_second_gradient_before_the_first_was_averaged_is_refused() {
    let messages = on_ranks(2, |g| {
        let model = tapegrad_nn::Sequential::new().add(Linear::new(2, 2)).add(Linear::new(2, 2));
        let ddp = DistributedDataParallel::new(model, &g);
        let w = ddp.parameters()[0].clone();
        w.sum().backward(); // the other parameters are left waiting
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.sum().backward()));
        *caught.unwrap_err().downcast::<String>().unwrap()
    });
    for message in messages {
        assert!(message.contains("second gradient") && message.contains("no_sync"), "{message}");
    }
}

#[test]
fn one_rank_communicates_nothing() {
    let ddp = DistributedDataParallel::new(Linear::new(2, 2), &ProcessGroup::single());
    ddp.backward(&ddp.forward(&Tensor::ones(&[1, 2])).sum());
    assert_eq!(ddp.last_sync().buckets, 0);
    assert_eq!(ddp.module().weight.grad().unwrap().to_vec::<f32>(), vec![1.0; 4]);
}

#[test]
fn small_buckets_start_communicating_while_backward_runs() {
    let stats = on_ranks(2, |g| {
        let options = DdpOptions::default().first_bucket_mb(1e-4).bucket_cap_mb(1e-4);
        let model = mlp(g.rank() as u64, DType::F32); // 4 parameter tensors, each over 100 bytes
        let ddp = DistributedDataParallel::new_with(model, &g, options);
        let x = Tensor::randn(&[4, 6]);
        ddp.backward(&ddp.forward(&x).sum());
        ddp.last_sync()
    });
    for s in stats {
        assert_eq!(s.buckets, 4);
        // Every bucket but the one holding the first layer's weight (the last gradient
        // backward computes) started before the sweep ended.
        assert_eq!(s.overlapped, 3, "{s:?}");
    }
}

#[test]
fn max_and_min_over_the_ranks() {
    let out = on_ranks(3, |g| {
        let x = Tensor::from_vec(vec![g.rank() as i64, -(g.rank() as i64)], &[2]);
        let stop = Tensor::from_vec(vec![(g.rank() == 1) as i64], &[1]); // one rank wants to stop
        (
            g.all_reduce(&x, ReduceOp::Max).to_vec::<i64>(),
            g.all_reduce(&x, ReduceOp::Min).to_vec::<i64>(),
            g.all_reduce(&stop, ReduceOp::Max).item(),
        )
    });
    for (max, min, stop) in out {
        assert_eq!((max, min, stop), (vec![2, 0], vec![0, -2], 1.0));
    }
}

#[test]
fn a_nan_on_any_rank_wins_max_and_min_and_masks_are_refused() {
    let out = on_ranks(3, |g| {
        let x = Tensor::from_vec(vec![if g.rank() == 2 { f64::NAN } else { 1.0 }], &[1]);
        let mask = Tensor::from_vec(vec![true], &[1]);
        (
            g.all_reduce(&x, ReduceOp::Max).item().is_nan(),
            g.all_reduce(&x, ReduceOp::Min).item().is_nan(),
            g.try_all_reduce(&mask, ReduceOp::Sum).is_err(),
        )
    });
    assert_eq!(out, vec![(true, true, true); 3]);
}

#[test]
fn replacing_parameters_inside_no_sync_keeps_accumulating_locally() {
    let grads = on_ranks(2, |g| {
        tapegrad_tape::manual_seed(0);
        let mut ddp = DistributedDataParallel::new(Linear::new(1, 1), &g);
        let x = Tensor::full(&[1, 1], (g.rank() + 1) as f64).to_dtype(DType::F64);
        let local = ddp.no_sync();
        ddp.to_dtype(DType::F64);
        ddp.backward(&ddp.forward(&x).sum());
        let inside = ddp.module().weight.grad().unwrap().item();
        drop(local);
        ddp.backward(&ddp.forward(&x).sum());
        (inside, ddp.module().weight.grad().unwrap().item())
    });
    // Inside: each rank's own gradient; after: the mean of 2 (r + 1) over the ranks.
    assert_eq!(grads, vec![(1.0, 3.0), (2.0, 3.0)]);
}

#[test]
fn the_recorded_all_reduce_passes_gradcheck_and_gradgradcheck_on_two_ranks() {
    use tapegrad_tape::{GradcheckOptions, gradcheck, gradgradcheck};
    // Both ranks run the checks in lockstep (the same perturbations, the same number of
    // calls), so each perturbation moves every rank's input at once. The numerical Jacobian
    // then sums d f_r / d x_s over the inputs s, the analytical one (through the all-reduced
    // backward) over the outputs r: the two agree when the ranks hold the same values, which
    // is what the check uses.
    let passed = on_ranks(2, |g| {
        tapegrad_tape::manual_seed(7);
        let x = Tensor::randn_dtype(&[3], DType::F64).requires_grad();
        let group = g.clone();
        let f = move |xs: &[Tensor]| {
            let total = tapegrad_distributed::all_reduce(&xs[0], &group);
            &(&total * &total) * &xs[0] // nonlinear: second derivatives are not zero
        };
        let options = GradcheckOptions::default();
        let first = gradcheck(f.clone(), std::slice::from_ref(&x), &options).unwrap();
        let second = gradgradcheck(f, std::slice::from_ref(&x), &options).unwrap();
        (first.passed, second.passed)
    });
    assert_eq!(passed, vec![(true, true); 2]);
}

#[test]
fn collectives_combine_every_rank() {
    let out = on_ranks(3, |g| {
        let x = Tensor::full(&[2], g.rank() as f64);
        let sum = g.all_reduce(&x, ReduceOp::Sum).to_vec::<f32>();
        let avg = g.all_reduce(&x, ReduceOp::Avg).to_vec::<f32>();
        let from_two = g.broadcast(&x, 2).to_vec::<f32>();
        let all: Vec<f32> = g.all_gather(&x).iter().map(|t| t.to_vec::<f32>()[0]).collect();
        g.barrier();
        (sum, avg, from_two, all)
    });
    for (sum, avg, from_two, all) in out {
        assert_eq!(sum, vec![3.0, 3.0]);
        assert_eq!(avg, vec![1.0, 1.0]);
        assert_eq!(from_two, vec![2.0, 2.0]);
        assert_eq!(all, vec![0.0, 1.0, 2.0]);
    }
}

#[test]
fn a_failed_rank_is_reported_by_the_others_without_waiting_for_the_timeout() {
    let groups =
        ProcessGroup::threads_with(2, GroupOptions::default().timeout(Duration::from_secs(60)));
    let start = Instant::now();
    let handles: Vec<_> = groups
        .into_iter()
        .map(|g| {
            std::thread::spawn(move || {
                if g.rank() == 1 {
                    panic!("rank 1 fails before its first collective");
                }
                g.try_all_reduce(&Tensor::ones(&[1]), ReduceOp::Sum).map(drop)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
    assert!(results[1].is_err(), "rank 1 panicked");
    let error = results[0].as_ref().unwrap().as_ref().unwrap_err().to_string();
    assert!(error.contains("rank 1 failed"), "{error}");
    assert!(start.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_rank_that_never_joins_times_out_with_the_collective_named() {
    let mut groups =
        ProcessGroup::threads_with(2, GroupOptions::default().timeout(Duration::from_millis(300)));
    let silent = groups.pop().unwrap();
    let g = groups.pop().unwrap();
    let start = Instant::now();
    let error = g.try_all_reduce(&Tensor::ones(&[1]), ReduceOp::Sum).unwrap_err().to_string();
    assert!(error.contains("did not complete within") && error.contains("all_reduce"), "{error}");
    assert!(start.elapsed() >= Duration::from_millis(300));
    drop(silent);
}

#[test]
fn different_collectives_on_different_ranks_are_reported() {
    let out = on_ranks(2, |g| {
        let x = Tensor::ones(&[1]);
        if g.rank() == 0 {
            g.try_all_reduce(&x, ReduceOp::Sum).map(drop)
        } else {
            g.try_broadcast(&x, 0).map(drop)
        }
    });
    let message = out[0].as_ref().unwrap_err().to_string();
    assert!(message.contains("different collectives"), "{message}");
}

#[test]
fn buffers_of_different_lengths_or_roots_are_reported_not_mixed() {
    let out = on_ranks(2, |g| {
        let x = Tensor::ones(&[1 + g.rank()]);
        let lengths = g.try_all_reduce(&x, ReduceOp::Sum).map(drop);
        (lengths.unwrap_err().to_string(), g.try_all_reduce(&x, ReduceOp::Sum).is_err())
    });
    for (message, later) in out {
        assert!(
            message.contains("all_reduce of 1 x f32") && message.contains("all_reduce of 2 x f32"),
            "{message}"
        );
        assert!(later, "after a failure the group refuses further collectives");
    }
    let roots =
        on_ranks(2, |g| g.try_broadcast(&Tensor::ones(&[1]), g.rank()).unwrap_err().to_string());
    assert!(roots[0].contains("from rank 0") && roots[0].contains("from rank 1"), "{}", roots[0]);
}

#[test]
fn arguments_wrong_on_every_rank_are_refused_before_anything_is_sent() {
    let g = ProcessGroup::single();
    let root = g.try_broadcast(&Tensor::ones(&[1]), 3).unwrap_err().to_string();
    assert!(root.contains("root 3"), "{root}");
    let async_root = g.broadcast_async(tapegrad_distributed::Payload::F32(vec![1.0]), 3).wait();
    assert!(async_root.is_err());
    let avg = g.try_all_reduce(&Tensor::from_vec(vec![3i64], &[1]), ReduceOp::Avg).unwrap_err();
    assert!(avg.to_string().contains("float"), "{avg}");
    // Refusals sent nothing: the group still works.
    assert_eq!(g.all_reduce(&Tensor::ones(&[1]), ReduceOp::Sum).item(), 1.0);
}

#[test]
fn boolean_buffers_are_broadcast_too() {
    let masks = on_ranks(2, |g| {
        let mask = Tensor::from_vec(vec![g.rank() == 0, g.rank() == 1], &[2]);
        g.broadcast_into(std::slice::from_ref(&mask), 0);
        mask.to_vec::<bool>()
    });
    assert_eq!(masks, vec![vec![true, false]; 2]);
}

#[test]
fn save_on_main_writes_once_and_every_rank_learns_the_outcome() {
    let dir = std::env::temp_dir().join(format!("tapegrad-ddp-save-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    let p = path.clone();
    let out = on_ranks(2, move |g| {
        tapegrad_tape::manual_seed(g.rank() as u64);
        let ddp = DistributedDataParallel::new(Linear::new(3, 2), &g);
        let saved = g.save_on_main(|| tapegrad_nn::save(ddp.module(), &p));
        // After the collective, every rank can read rank 0's complete file.
        let mut copy = Linear::new(3, 2);
        tapegrad_nn::load(&mut copy, &p).unwrap();
        let failed = g.save_on_main(|| tapegrad_nn::save(ddp.module(), "/nonexistent/x"));
        (
            saved.is_ok(),
            copy.weight.to_vec::<f32>() == ddp.module().weight.to_vec::<f32>(),
            failed.is_err(),
        )
    });
    assert_eq!(out, vec![(true, true, true); 2]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn training_with_the_sampler_reads_disjoint_shards_that_change_per_epoch() {
    use tapegrad_data::{DataLoader, DistributedSampler};
    let world = 2;
    let make_data = || {
        tapegrad_tape::manual_seed(77);
        let x = Tensor::randn(&[24, 6]);
        // The label is the sample's index: what each rank read can be told apart.
        let y = Tensor::from_vec((0..24).collect::<Vec<i64>>(), &[24]);
        (x, y)
    };
    let ranks = on_ranks(world, move |g| {
        let (x, y) = make_data();
        let sampler = DistributedSampler::new(24, g.world_size(), g.rank()).shuffle(5);
        let loader = DataLoader::new(x, y, 4).sampler(sampler);
        let ddp = DistributedDataParallel::new(mlp(g.rank() as u64, DType::F32), &g);
        let mut opt = SGD::new(ddp.parameters(), 0.1);
        let mut seen: Vec<Vec<i64>> = Vec::new();
        for epoch in 0..2 {
            let mut this_epoch = Vec::new();
            for (xb, yb) in loader.epoch(epoch) {
                this_epoch.extend(yb.to_vec::<i64>());
                let classes = Tensor::from_vec(
                    yb.to_vec::<i64>().iter().map(|v| v % 3).collect::<Vec<_>>(),
                    &[yb.numel()],
                );
                let loss = tapegrad_ops::functional::cross_entropy(&ddp.forward(&xb), &classes);
                opt.zero_grad();
                ddp.backward(&loss);
                opt.step();
            }
            seen.push(this_epoch);
        }
        (flat_state(&ddp), seen)
    });
    assert_eq!(ranks[0].0, ranks[1].0, "the models stay identical");
    for epoch in 0..2 {
        let (a, b) = (&ranks[0].1[epoch], &ranks[1].1[epoch]);
        assert_eq!((a.len(), b.len()), (12, 12));
        let mut all: Vec<i64> = a.iter().chain(b).copied().collect();
        all.sort();
        assert_eq!(all, (0..24).collect::<Vec<i64>>(), "epoch {epoch}: disjoint and complete");
    }
    assert_ne!(ranks[0].1[0], ranks[0].1[1], "reshuffled per epoch");
}
