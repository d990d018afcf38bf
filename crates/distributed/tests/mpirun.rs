//! The MPI backend under `mpirun -np 2`: each test starts this test binary again as two
//! MPI ranks (the environment variable below tells a copy it is a rank), and checks what
//! mpirun reports. Needs Open MPI (`apt-get install openmpi-bin libopenmpi-dev`) and the
//! `mpi` feature: `cargo test -p tapegrad-distributed --features mpi --test mpirun`.
//!
//! Started by a user's own `mpirun -np N` (of this binary, or of `cargo test`), every copy
//! is a rank of that job: the training check runs on N ranks, and the checks of how a job
//! ends (which need a job of their own) say so and do nothing.

#![cfg(feature = "mpi")]

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tapegrad_distributed::{DdpOptions, GroupOptions, ProcessGroup, ReduceOrder};
use tapegrad_tape::{DType, Tensor};

const CHILD: &str = "TAPEGRAD_MPI_TEST_RANK";

/// Runs test `name` of this binary as `ranks` MPI processes; returns (success, output, time).
fn mpirun(name: &str, ranks: usize, limit: Duration) -> (bool, String, Duration) {
    let exe = std::env::current_exe().unwrap();
    let start = Instant::now();
    let mut child = Command::new("mpirun")
        // CI runs as root in a container with as many cores as ranks.
        .args(["--allow-run-as-root", "--oversubscribe", "-np", &ranks.to_string()])
        .arg(&exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun not found: install openmpi-bin (see docs/DISTRIBUTED.md)");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        text
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        text
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mpirun of `{name}` still ran after {limit:?}: a rank hangs");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let elapsed = start.elapsed();
    let output = reader.join().unwrap() + &err_reader.join().unwrap();
    (status.success(), output, elapsed)
}

/// How this copy of the test binary was started.
#[derive(PartialEq)]
enum Started {
    /// By cargo: each test starts `mpirun -np 2` on this binary.
    ByCargo,
    /// By a test's own mpirun: this copy is a rank of that test.
    AsRank,
    /// By a user's `mpirun -np N <this binary>`: every test binary is a rank of one job.
    UnderMpirun,
}

fn started() -> Started {
    if std::env::var_os(CHILD).is_some() {
        Started::AsRank
    } else if std::env::var_os("OMPI_COMM_WORLD_SIZE").is_some() {
        Started::UnderMpirun
    } else {
        Started::ByCargo
    }
}

fn is_rank() -> bool {
    started() != Started::ByCargo
}

/// The tests of how a job ends (a failure, a late finish) need a job of their own: inside a
/// user's own mpirun job, where MPI can be started once per process and the training check
/// has it, they report that and do nothing (cargo runs them).
fn needs_own_job(name: &str) -> bool {
    let skip = started() == Started::UnderMpirun;
    if skip {
        println!("{name}: runs only under `cargo test` (it needs an mpirun job of its own)");
    }
    skip
}

/// Every rank's `values`, checked equal to rank 0's.
fn assert_same_on_every_rank(group: &ProcessGroup, values: &[f64], what: &str) {
    let all = group.all_gather(&Tensor::from_vec(values.to_vec(), &[values.len()]));
    for (rank, v) in all.iter().enumerate() {
        assert_eq!(
            v.to_vec::<f64>(),
            values,
            "{what}: rank {rank} differs from rank {}",
            group.rank()
        );
    }
}

#[test]
fn two_processes_train_as_one_process_on_the_global_batch() {
    if !is_rank() {
        let (ok, output, _) = mpirun(
            "two_processes_train_as_one_process_on_the_global_batch",
            2,
            Duration::from_secs(300),
        );
        assert!(ok, "mpirun failed:\n{output}");
        assert_eq!(output.matches("checked on rank").count(), 2, "{output}");
        return;
    }
    let group = ProcessGroup::mpi();
    let world = group.world_size();
    let rank = group.rank();
    let me = Tensor::from_vec(vec![rank as i64], &[1]);
    let max = group.all_reduce(&me, tapegrad_distributed::ReduceOp::Max).to_vec::<i64>();
    let min = group.all_reduce(&me, tapegrad_distributed::ReduceOp::Min).to_vec::<i64>();
    assert_eq!((max, min), (vec![world as i64 - 1], vec![0]));

    // f32, MPI's all-reduce: within 1e-6 of one process on the global batch.
    let data = batches(5, world, &[6], DType::F32);
    let ddp = train_ddp(mlp(100 + rank as u64, DType::F32), &group, &data, DdpOptions::default());
    let params = flat_state(&ddp);
    assert_same_on_every_rank(&group, &params, "f32 parameters");
    let single = flat_state(&train_global(mlp(100, DType::F32), &data));
    let diff = max_diff(&params, &single);
    assert!(diff <= 1e-6, "f32: off by {diff:e} from one process");

    // f64, in rank order, several buckets: exactly one process adding the shards' gradients.
    let data = batches(4, world, &[6], DType::F64);
    for order in [ReduceOrder::RankOrder, ReduceOrder::Backend] {
        let options =
            DdpOptions::default().reduce_order(order).first_bucket_mb(1e-3).bucket_cap_mb(1e-3);
        let ddp = train_ddp(mlp(7 + rank as u64, DType::F64), &group, &data, options);
        assert!(ddp.bucket_count() > 1);
        let params = flat_state(&ddp);
        assert_same_on_every_rank(&group, &params, "f64 parameters");
        let single = flat_state(&train_accumulated(mlp(7, DType::F64), world, &data));
        if order == ReduceOrder::RankOrder || world == 2 {
            // Two ranks: a + b is the same sum in either order, so MPI's all-reduce is exact too.
            assert_eq!(params, single, "f64 with {order:?}");
        } else {
            // More ranks: MPI's order of additions is its own.
            assert!(max_diff(&params, &single) < 1e-12, "f64 with {order:?}");
        }
    }

    // SyncBatchNorm: the statistics of the global batch.
    let data = batches(3, world, &[1, 6, 6], DType::F64);
    let ddp = train_ddp(convnet(5, DType::F64, Some(&group)), &group, &data, DdpOptions::default());
    let params = flat_state(&ddp);
    let single = flat_state(&train_global(convnet(5, DType::F64, None), &data));
    let diff = max_diff(&params, &single);
    assert!(diff < 1e-12, "SyncBatchNorm: off by {diff:e}");
    println!("checked on rank {rank}");
}

#[test]
fn a_failing_rank_stops_the_job_and_says_which_it_was() {
    if !is_rank() {
        let (ok, output, elapsed) = mpirun(
            "a_failing_rank_stops_the_job_and_says_which_it_was",
            2,
            Duration::from_secs(120),
        );
        assert!(!ok, "the job should fail:\n{output}");
        assert!(output.contains("[rank 1 of 2] failed"), "{output}");
        assert!(output.contains("rank 1 gives up at step 2"), "{output}");
        // Well before rank 0's 60 s timeout: mpirun stopped it when rank 1 exited.
        assert!(elapsed < Duration::from_secs(45), "took {elapsed:?}:\n{output}");
        return;
    }
    if needs_own_job("a_failing_rank_stops_the_job_and_says_which_it_was") {
        return;
    }
    let group =
        ProcessGroup::try_mpi_with(GroupOptions::default().timeout(Duration::from_secs(60)))
            .unwrap();
    let data = batches(10, 2, &[6], DType::F32);
    let ddp = tapegrad_distributed::DistributedDataParallel::new(mlp(1, DType::F32), &group);
    for (step, (x, y)) in data.iter().enumerate() {
        if group.rank() == 1 && step == 2 {
            panic!("rank 1 gives up at step {step}");
        }
        use tapegrad_nn::Forward;
        let loss = tapegrad_ops::functional::cross_entropy(
            &ddp.forward(&shard(x, group.rank())),
            &shard(y, group.rank()),
        );
        ddp.backward(&loss);
    }
}

#[test]
fn a_rank_that_hangs_is_reported_by_the_timeout() {
    if !is_rank() {
        let (ok, output, elapsed) =
            mpirun("a_rank_that_hangs_is_reported_by_the_timeout", 2, Duration::from_secs(120));
        assert!(!ok, "the job should fail:\n{output}");
        assert!(output.contains("did not complete within 3.0 s"), "{output}");
        assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}:\n{output}");
        return;
    }
    if needs_own_job("a_rank_that_hangs_is_reported_by_the_timeout") {
        return;
    }
    let group = ProcessGroup::try_mpi_with(GroupOptions::default().timeout(Duration::from_secs(3)))
        .unwrap();
    group.barrier();
    if group.rank() == 1 {
        // Stuck in a long computation, never reaching the collective.
        std::thread::sleep(Duration::from_secs(100));
    }
    group.all_reduce(&Tensor::ones(&[4]), tapegrad_distributed::ReduceOp::Sum);
}

#[test]
fn a_rank_that_finishes_late_does_not_fail_the_others() {
    if !is_rank() {
        let (ok, output, _) = mpirun(
            "a_rank_that_finishes_late_does_not_fail_the_others",
            2,
            Duration::from_secs(120),
        );
        assert!(ok, "finishing at different times is not a failure:\n{output}");
        assert!(
            output.contains("rank 0 finished") && output.contains("rank 1 finished"),
            "{output}"
        );
        return;
    }
    if needs_own_job("a_rank_that_finishes_late_does_not_fail_the_others") {
        return;
    }
    let group = ProcessGroup::try_mpi_with(GroupOptions::default().timeout(Duration::from_secs(2)))
        .unwrap();
    group.barrier();
    if group.rank() == 0 {
        // A final evaluation on rank 0 alone, longer than the timeout: the other rank waits
        // in MPI's finalisation meanwhile, which is not a collective that failed.
        std::thread::sleep(Duration::from_secs(4));
    }
    println!("rank {} finished", group.rank());
    drop(group);
}
