//! The tape's promises where they need real operations from tapegrad-ops (and nn): the
//! tape returning to its baseline over a training loop, freeing long chains, freed-graph
//! errors, fused rules that rewrite gradients in place, grad mode, higher-order gradients,
//! inspection, memory accounting and error messages. What the tape crate can test alone
//! is in crates/tape/tests.

use tapegrad::prelude::*;
use tapegrad::tape::{BackwardOptions, Error, tape_nodes, tape_stats};

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs()))
}

#[test]
fn node_count_returns_to_baseline_after_every_training_step() {
    manual_seed(1);
    let hidden = Linear::new(3, 8);
    let out = Linear::new(8, 1);
    let params: Vec<Tensor> = hidden.parameters().into_iter().chain(out.parameters()).collect();
    let mut opt = SGD::new(params, 0.05);
    let x = Tensor::randn(&[32, 3]);
    let y = x.sum_dim(1, true).tanh();
    let baseline = tape_stats();
    assert_eq!(baseline.interior, 0, "no interior nodes before training");
    let mut first_loss = None;
    let mut last_loss = 0.0;
    for step in 0..1000 {
        let pred = out.forward(&hidden.forward(&x).tanh());
        let loss = (&pred - &y).pow(2.0).mean();
        assert!(tape_stats().interior > 0, "the forward pass records");
        opt.zero_grad();
        loss.backward();
        opt.step();
        last_loss = loss.item();
        first_loss.get_or_insert(last_loss);
        // `loss` and `pred` are still alive here, yet their nodes are gone: backward freed
        // everything it swept.
        assert_eq!(tape_stats(), baseline, "tape grew at step {step}");
    }
    assert!(
        last_loss < first_loss.unwrap() * 0.5,
        "training made progress: {first_loss:?} -> {last_loss}"
    );
}

#[test]
fn graph_built_without_backward_is_freed_when_dropped() {
    let baseline = tape_stats();
    let x = Tensor::ones(&[4]).requires_grad();
    {
        let mut y = x.clone();
        for _ in 0..100_000 {
            y = (&y * 1.0001).tanh();
        }
        assert!(tape_stats().interior >= 200_000);
    }
    // Dropping the last handle of a 200,000-node chain frees it iteratively.
    assert_eq!(tape_stats().interior, baseline.interior);
    assert_eq!(tape_stats().saved_bytes, baseline.saved_bytes);
}

#[test]
fn backward_through_a_freed_graph_is_a_clear_error() {
    let x = Tensor::full(&[1], 2.0).requires_grad();
    let y = &x * &x;
    let z = y.exp();
    z.backward();
    let err = z.try_backward().unwrap_err();
    assert!(matches!(err, Error::FreedGraph { .. }), "{err}");
    assert!(err.to_string().contains("retain_graph"), "says how to keep it: {err}");

    // A new op on a freed tensor records, and its backward names the freed graph's user.
    let w = y.mul_scalar(3.0);
    let err = w.sum().try_backward().unwrap_err();
    let message = err.to_string();
    assert!(message.contains("mul_scalar") && message.contains(file!()), "{message}");
}

#[test]
fn gradients_rewritten_in_place_never_change_what_someone_else_holds() {
    // Rules may overwrite the incoming gradient when no one else can see it. Everyone who
    // can must keep their values: the caller's seed, a retained interior gradient, a
    // captured one, and leaves' `.grad`, tiny (inline) and larger (shared buffer) alike.
    for n in [1, 5] {
        let xs: Vec<f64> = (0..n).map(|i| 0.1 + 0.2 * i as f64).collect();
        let x = Tensor::from_vec(xs.clone(), &[n]).requires_grad();
        let h = &x * 3.0;
        h.retain_grad();
        let y = (&h.tanh() * 2.0).neg();
        let seed = Tensor::from_vec(vec![1.5f64; n], &[n]);
        y.backward_with(Some(&seed), BackwardOptions::new());
        assert_eq!(seed.to_vec::<f64>(), vec![1.5; n], "the caller's seed is untouched");
        let dh: Vec<f64> = xs.iter().map(|v| -3.0 * (1.0 - (3.0 * v).tanh().powi(2))).collect();
        assert!(
            close(&h.grad().unwrap().to_vec::<f64>(), &dh, 1e-15),
            "retained gradient of h (n = {n})"
        );
        let dx: Vec<f64> = dh.iter().map(|d| 3.0 * d).collect();
        assert!(close(&x.grad().unwrap().to_vec::<f64>(), &dx, 1e-15), "gradient of x (n = {n})");

        // A gradient captured by grad() for an interior tensor keeps its value while the
        // sweep goes on below it.
        let h = &x * 3.0;
        let y = (&h * 2.0).sum();
        let g = grad(&[&y, &h.sum()], &[&h, &x], GradOptions::new());
        assert_eq!(g[0].as_ref().unwrap().to_vec::<f64>(), vec![3.0; n]);
        assert_eq!(g[1].as_ref().unwrap().to_vec::<f64>(), vec![9.0; n]);
    }
}

#[test]
fn no_grad_records_nothing_and_detach_cuts_the_graph() {
    let x = Tensor::ones(&[3]).requires_grad();
    let before = tape_stats();
    {
        let _guard = no_grad();
        let y = (&x * 2.0).exp().sum();
        assert!(!y.tracks_grad());
        assert_eq!(tape_stats(), before);
    }
    assert!((&x * 2.0).tracks_grad(), "grad mode is back on after the guard");

    let y = &x.detach() * &x; // only the second factor is differentiated
    y.sum().backward();
    assert_eq!(x.grad().unwrap().to_vec::<f32>(), vec![1.0; 3]);
}

#[test]
fn functional_grad_returns_without_accumulating() {
    let x = Tensor::from_vec(vec![0.5f64, 1.5], &[2]).requires_grad();
    let unused = Tensor::ones_dtype(&[2], DType::F64).requires_grad();
    let y = x.exp().sum();
    let g = grad(&[&y], &[&x, &unused], GradOptions::new().allow_unused(true).retain_graph(true));
    assert!(close(&g[0].as_ref().unwrap().to_vec::<f64>(), &[0.5f64.exp(), 1.5f64.exp()], 1e-15));
    assert!(g[1].is_none());
    assert!(x.grad().is_none(), "grad() leaves .grad alone");
    let err = tapegrad::try_grad(&[&y], &[&unused], GradOptions::new()).unwrap_err();
    assert!(err.to_string().contains("allow_unused"), "{err}");
}

#[test]
fn hessian_vector_product_of_sum_tanh_wx_matches_the_formula() {
    // f(x) = sum(tanh(W x)); grad f = W^T (1 - t^2) with t = tanh(W x);
    // H v = W^T diag(-2 t (1 - t^2)) W v.
    manual_seed(3);
    let (m, n) = (4, 3);
    let w = Tensor::randn_dtype(&[m, n], DType::F64);
    let x = Tensor::randn_dtype(&[n, 1], DType::F64).requires_grad();
    let v = Tensor::randn_dtype(&[n, 1], DType::F64);

    let f = w.matmul(&x).tanh().sum();
    let g = grad(&[&f], &[&x], GradOptions::new().create_graph(true));
    let g = g[0].as_ref().unwrap();
    assert!(g.tracks_grad(), "create_graph makes the gradient differentiable");
    let gv = (g * &v).sum();
    let hv = grad(&[&gv], &[&x], GradOptions::new())[0].clone().unwrap().to_vec::<f64>();

    let wv = w.to_vec::<f64>();
    let xv = x.to_vec::<f64>();
    let vv = v.to_vec::<f64>();
    let mut expected = vec![0.0; n];
    for i in 0..m {
        let z: f64 = (0..n).map(|j| wv[i * n + j] * xv[j]).sum();
        let t = z.tanh();
        let wvi: f64 = (0..n).map(|j| wv[i * n + j] * vv[j]).sum();
        let d = -2.0 * t * (1.0 - t * t) * wvi;
        for (j, e) in expected.iter_mut().enumerate() {
            *e += wv[i * n + j] * d;
        }
    }
    assert!(close(&hv, &expected, 1e-12), "{hv:?} vs {expected:?}");
}

#[test]
fn create_graph_through_backward_gives_a_differentiable_grad() {
    let x = Tensor::from_vec(vec![1.5f64], &[1]).requires_grad();
    let y = x.pow(3.0);
    y.backward_with(None, BackwardOptions::new().create_graph(true));
    let dx = x.grad().unwrap(); // 3x^2, itself recorded
    assert_eq!(dx.item(), 6.75);
    let d2 = grad(&[&dx], &[&x], GradOptions::new());
    assert_eq!(d2[0].as_ref().unwrap().item(), 9.0); // 6x
}

#[test]
fn memory_accounting_shows_what_backward_holds() {
    let x = Tensor::randn(&[1000]).requires_grad();
    let base = tape_stats();
    let y = (&x * &x).exp();
    let held = tape_stats().saved_bytes - base.saved_bytes;
    // mul saves both inputs (the same 4,000-byte buffer twice), exp saves its output.
    assert_eq!(held, 3 * 4000);
    y.sum().backward();
    assert_eq!(tape_stats().saved_bytes, base.saved_bytes);
    assert_eq!(tape_stats().nodes, base.nodes);
}

#[test]
fn nodes_keep_the_callers_location() {
    let x = Tensor::ones(&[2]).requires_grad();
    let line = line!() + 1;
    let y = (&x * 2.0).exp();
    let loc = y.location().unwrap();
    assert_eq!((loc.file(), loc.line()), (file!(), line));
    let nodes = tape_nodes();
    let exp_node = nodes.iter().rev().find(|n| n.op == "exp").unwrap();
    assert_eq!(exp_node.location.line(), line);
    let listing = y.graph().to_string();
    assert!(
        listing.contains("exp") && listing.contains("mul_scalar") && listing.contains("leaf"),
        "{listing}"
    );
    assert!(listing.contains(&format!("{}:{line}", file!())), "{listing}");
    let dot = y.graph().to_dot();
    assert!(dot.starts_with("digraph") && dot.matches("->").count() == 2, "{dot}");
}

fn panic_message(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
    let payload = std::panic::catch_unwind(f).expect_err("should panic");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap()
}

#[test]
fn shape_errors_name_the_op_the_shapes_and_the_callers_line() {
    let a = Tensor::zeros(&[2, 3]);
    let b = Tensor::zeros(&[4]);
    let line = line!() + 1;
    let err = a.try_add(&b).unwrap_err();
    let m = err.to_string();
    assert!(m.starts_with("add:") && m.contains("[2, 3] and [4]"), "{m}");
    assert!(m.contains(&format!("{}:{line}", file!())), "{m}");

    let line = line!() + 1;
    let m = panic_message(|| drop(Tensor::zeros(&[2, 3]) * Tensor::zeros(&[4])));
    assert!(m.starts_with("mul:") && m.contains(&format!("{}:{line}", file!())), "{m}");

    let line = line!() + 1;
    let m = panic_message(|| drop(Tensor::zeros(&[2, 3]).matmul(&Tensor::zeros(&[2, 3]))));
    assert!(m.starts_with("matmul:") && m.contains("[2, 3] and [2, 3]"), "{m}");
    assert!(m.contains(&format!("{}:{line}", file!())), "{m}");
}

#[test]
fn dtype_dim_and_argument_errors_are_clear() {
    let line = line!() + 1;
    let err = Tensor::zeros(&[2]).try_mul(&Tensor::zeros_dtype(&[2], DType::F64)).unwrap_err();
    let m = err.to_string();
    assert!(
        matches!(err, Error::DType { .. })
            && m.contains("float32 and float64")
            && m.contains("to_dtype"),
        "{m}"
    );
    assert!(m.contains(&format!("{}:{line}", file!())), "{m}");

    let err = Tensor::zeros(&[2, 3]).try_sum_dim(2, false).unwrap_err();
    assert!(
        matches!(err, Error::Dim { dim: 2, .. }) && err.to_string().contains("[2, 3]"),
        "{err}"
    );

    let err = Tensor::zeros(&[2]).try_reshape(&[3]).unwrap_err();
    assert!(err.to_string().starts_with("reshape:"), "{err}");

    let err = Tensor::zeros(&[2]).try_item().unwrap_err();
    assert!(err.to_string().contains("[2]"), "{err}");

    let err = Tensor::try_from_vec(vec![1.0f32; 5], &[2, 3]).unwrap_err();
    assert!(err.to_string().contains("5 values") && err.to_string().contains("[2, 3]"), "{err}");

    let y = &Tensor::ones(&[2]).requires_grad() * 2.0;
    let err = y.try_backward().unwrap_err();
    assert!(err.to_string().contains("one-element"), "{err}");
    let err = y.clone().try_requires_grad().unwrap_err();
    assert!(err.to_string().contains("leaf"), "{err}");
    let err = Tensor::ones(&[1]).try_backward().unwrap_err();
    assert!(err.to_string().contains("does not require a gradient"), "{err}");
}

#[test]
fn f32_and_f64_both_differentiate_and_to_dtype_is_differentiable() {
    for dtype in [DType::F32, DType::F64] {
        let x = Tensor::full_dtype(&[3], 0.5, dtype).requires_grad();
        x.sigmoid().sum().backward();
        let g = x.grad().unwrap();
        assert_eq!(g.dtype(), dtype);
        let s = 1.0 / (1.0 + (-0.5f64).exp());
        assert!(close(&g.to_vec::<f64>(), &[s * (1.0 - s); 3], 1e-6));
    }
    let x = Tensor::ones(&[2]).requires_grad();
    (x.to_dtype(DType::F64) * 4.0).sum().backward();
    assert_eq!(x.grad().unwrap().dtype(), DType::F32);
    assert_eq!(x.grad().unwrap().to_vec::<f32>(), vec![4.0, 4.0]);
}

/// Views are values in tapegrad: writing through a view changes the view only (docs/API.md
/// names this difference from PyTorch, where `x[0].add_(1)` changes `x`).
#[test]
fn a_view_written_in_place_does_not_write_through() {
    let x = Tensor::zeros(&[2, 3]);
    let row = x.i(0);
    row.add_(1.0);
    assert_eq!(row.to_vec::<f32>(), vec![1.0; 3]);
    assert_eq!(x.to_vec::<f32>(), vec![0.0; 6]);
}

/// The residual block's `out += identity`, recorded, gives the gradient of the sum.
#[test]
fn in_place_residual_addition_through_ops() {
    let x = Tensor::randn(&[2, 3]).to_dtype(DType::F64).requires_grad();
    let w = Tensor::randn(&[3, 3]).to_dtype(DType::F64).requires_grad();
    let mut out = x.matmul(&w).tanh();
    out += &x;
    out.relu().sum().backward();
    let (gx, gw) = (x.grad().unwrap(), w.grad().unwrap());
    x.zero_grad();
    w.zero_grad();
    (&x.matmul(&w).tanh() + &x).relu().sum().backward();
    assert_eq!(gx.to_vec::<f64>(), x.grad().unwrap().to_vec::<f64>());
    assert_eq!(gw.to_vec::<f64>(), w.grad().unwrap().to_vec::<f64>());
}
