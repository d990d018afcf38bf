//! The benchmark harness in its tiny form, so that it cannot rot (no timings are asserted:
//! benchmarks are not tests).

#[path = "../benches/workloads.rs"]
#[allow(dead_code)]
mod workloads;

#[test]
fn the_benchmark_harness_runs_every_workload() {
    let s = workloads::Settings { quick: true, runs: 1 };
    let measures = workloads::run_all(
        &["w1", "w2", "w3", "w4", "w5", "w7", "w8", "w9", "w10", "ops"],
        s,
        1,
        None,
    );
    // Two rows each for w1, w2, w8 (the block and the encoder layer) and w9, one for each
    // of the others (w5 has one size when quick), and one per operation of `ops`.
    let operations = measures.iter().filter(|m| m.workload == "ops").count();
    assert_eq!(operations, 60);
    assert_eq!(measures.len(), 13 + operations);
    assert!(measures.iter().all(|m| m.ours.len() == 1 && m.ours[0].is_finite() && m.ours[0] > 0.0));
    let text = workloads::table(&measures, false);
    assert!(text.contains("w3") && text.contains("sgemm n=64"), "{text}");
    assert!(text.contains("conv 3x3 depthwise fwd+bwd") && text.contains("gru fwd+bwd"), "{text}");
    assert!(text.contains("elu fwd+bwd") && text.contains("where(x > 0, x, 0) fwd+bwd"), "{text}");
    assert!(
        text.contains("max_pool 3x3 stride 2 fwd+bwd")
            && text.contains("max_pool1d 4")
            && text.contains("grid_sample, affine warp fwd+bwd")
            && text.contains("ctc_loss fwd+bwd"),
        "{text}"
    );
    for row in [
        "sort(1)",
        "topk(10, 1)",
        "gather(1)",
        "masked_select",
        "logsumexp(1)",
        "amax(1)",
        "flip(1)",
        "tril",
        "pad 1 (zeros)",
    ] {
        assert!(text.contains(&format!("{row} fwd+bwd")), "{row} missing from {text}");
    }
    assert!(text.contains("smooth_l1_loss fwd+bwd") && text.contains("atan2 fwd+bwd"), "{text}");
    assert!(text.starts_with("machine: ") && text.contains("vectors: "), "{text}");
    assert_eq!(workloads::table(&measures, true).lines().count(), measures.len());
}

#[test]
fn the_benchmark_rejects_arguments_it_does_not_know() {
    let check = |line: &str| {
        workloads::check_args(&line.split_whitespace().map(String::from).collect::<Vec<_>>())
    };
    assert_eq!(check("--bench --only w4,conv --threads 1 --runs 3 --json --no-torch"), Ok(()));
    assert!(check("--only w4,w11").unwrap_err().contains("\"w11\""));
    assert!(check("--threads two").unwrap_err().contains("--threads"));
    assert!(check("--runs 0").unwrap_err().contains("positive"));
    assert!(check("--runs").unwrap_err().contains("needs a value"));
    assert!(check("--run 3").unwrap_err().contains("\"--run\""));
}
