//! The backward sweep's promises, with the tape crate alone: a second pass through a
//! retained graph, accumulation into `.grad` (shared, repeated and in-place gradients),
//! `retain_grad`, `grad()` of an interior tensor, and saved values that later in-place
//! updates cannot change; and what a backward frees, whether it finishes or stops at an
//! error. Tests that need operations from tapegrad-ops are in the root package's
//! tests/tape_with_ops.rs.

use tapegrad_tape::{BackwardOptions, GradOptions, Tensor, grad};

#[test]
fn retain_graph_allows_a_second_pass_and_gradients_accumulate() {
    let x = Tensor::from_vec(vec![1.0f64, -2.0], &[2]).requires_grad();
    let y = (&x * &x).sum_to_shape(&[]);
    y.backward_with(None, BackwardOptions::new().retain_graph(true));
    assert_eq!(x.grad().unwrap().to_vec::<f64>(), vec![2.0, -4.0]);
    y.backward();
    assert_eq!(x.grad().unwrap().to_vec::<f64>(), vec![4.0, -8.0]);
    x.zero_grad();
    assert!(x.grad().is_none());
    (&x * 3.0).sum_to_shape(&[]).backward();
    assert_eq!(x.grad().unwrap().to_vec::<f64>(), vec![3.0, 3.0]);
}

#[test]
fn accumulation_does_not_alias_gradients_shared_between_leaves() {
    // add's backward hands the same gradient tensor to both inputs; accumulating into one
    // leaf must not change the other.
    let a = Tensor::ones(&[2]).requires_grad();
    let b = Tensor::ones(&[2]).requires_grad();
    (&a + &b).sum_to_shape(&[]).backward();
    (&a * 5.0).sum_to_shape(&[]).backward();
    assert_eq!(a.grad().unwrap().to_vec::<f32>(), vec![6.0, 6.0]);
    assert_eq!(b.grad().unwrap().to_vec::<f32>(), vec![1.0, 1.0]);
}

#[test]
fn an_input_used_twice_by_one_op_gets_both_gradients() {
    // h = x * x reaches x twice from one rule, after x already gathered a gradient from the
    // later product: every contribution must add up (d/dx x^3 = 3x^2, d/dx x^5 = 5x^4).
    let x = Tensor::from_vec(vec![3.0f64, -2.0], &[2]).requires_grad();
    let h = &x * &x;
    (&h * &x).sum_to_shape(&[]).backward();
    assert_eq!(x.grad().unwrap().to_vec::<f64>(), vec![27.0, 12.0]);
    x.zero_grad();
    let h = &x * &x;
    (&(&h * &x) * &h).sum_to_shape(&[]).backward();
    assert_eq!(x.grad().unwrap().to_vec::<f64>(), vec![405.0, 80.0]);
}

#[test]
fn gradients_summed_for_an_interior_tensor_leave_other_holders_alone() {
    // `m` gathers two gradients. The first is the one `n` received (add's rule passes it
    // on unchanged), which `n` keeps as its `.grad` and a hook has seen; the sum is formed
    // in a buffer of its own when one is free, and must not show through those handles.
    let x = Tensor::from_vec(vec![1.0f32, 2.0], &[2]).requires_grad();
    let m = &x * 2.0;
    let n = &m + &Tensor::zeros(&[2]);
    n.retain_grad();
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let log = seen.clone();
    let _hook = n.register_hook(move |g| {
        log.borrow_mut().push(g.clone());
        None
    });
    let out = (&n * 3.0).sum_to_shape(&[]) + (&m * 5.0).sum_to_shape(&[]);
    out.backward();
    assert_eq!(n.grad().unwrap().to_vec::<f32>(), vec![3.0, 3.0]);
    assert_eq!(seen.borrow()[0].to_vec::<f32>(), vec![3.0, 3.0]);
    assert_eq!(x.grad().unwrap().to_vec::<f32>(), vec![16.0, 16.0]);
    // Without anyone else holding the first gradient (an input used three times, by ops
    // whose gradients are new tensors), the sums are exact too, large enough for the
    // threaded kernels.
    let x = Tensor::from_vec((0..10_000).map(f64::from).collect(), &[10_000]).requires_grad();
    let y = (&(&x * &x) * 0.5 + &x * 2.0 + &x * 3.0).sum_to_shape(&[]);
    y.backward();
    let got = x.grad().unwrap().to_vec::<f64>();
    let wrong = (0..10_000).filter(|&i| got[i] != f64::from(i as u32) + 5.0).count();
    assert_eq!(wrong, 0, "x + 5 expected everywhere (integers: exact)");
}

#[test]
fn gradient_handle_sees_in_place_accumulation_like_pytorch() {
    let a = Tensor::ones(&[1]).requires_grad();
    (&a * 2.0).backward();
    let g = a.grad().unwrap();
    let copy = g.to_vec::<f32>();
    (&a * 2.0).backward();
    assert_eq!(copy, vec![2.0]);
    assert_eq!(a.grad().unwrap().item(), 4.0);
}

#[test]
fn retain_grad_keeps_an_interior_gradient() {
    let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).requires_grad();
    let h = &x * 3.0;
    h.retain_grad();
    let y = (&h * &h).sum_to_shape(&[]);
    y.backward();
    assert_eq!(h.grad().unwrap().to_vec::<f64>(), vec![6.0, 12.0]);
    assert_eq!(x.grad().unwrap().to_vec::<f64>(), vec![18.0, 36.0]);
}

#[test]
fn grad_of_an_interior_tensor() {
    let x = Tensor::from_vec(vec![2.0f64], &[1]).requires_grad();
    let h = &x * 3.0;
    let y = &h * &h;
    let g = grad(&[&y], &[&h], GradOptions::new());
    assert_eq!(g[0].as_ref().unwrap().item(), 12.0);
}

#[test]
fn in_place_update_does_not_corrupt_saved_values() {
    let w = Tensor::full(&[1], 2.0).requires_grad();
    let y = &w * &w; // saves w's values
    w.set_data(&Tensor::full(&[1], 100.0));
    y.backward();
    // The saved copy is the value at record time: d(w^2)/dw = 2 * 2.
    assert_eq!(w.grad().unwrap().item(), 4.0);
    assert_eq!(w.item(), 100.0);
}

#[test]
fn a_leaf_takes_its_gradient_right_after_its_last_user_not_at_the_end() {
    use std::{cell::RefCell, rc::Rc};
    use tapegrad_tape::BackwardTrace;
    // Two "layers": w1 is used first, w2 last. Backward reaches w2's user first, and w2's
    // gradient is complete then: it lands in `.grad` (and its hooks run) before the sweep
    // goes on to w1's layer, as an optimizer-in-backward or a gradient all-reduce needs.
    let w1 = Tensor::full(&[2], 2.0).requires_grad();
    let w2 = Tensor::full(&[2], 3.0).requires_grad();
    let x = Tensor::ones(&[2]);
    let h = &w1 * &x;
    let y = &(&h * &w2) * &w2; // w2 used twice: complete only after both uses
    let seen = Rc::new(RefCell::new(Vec::new()));
    let log = seen.clone();
    let _hook =
        w2.register_post_accumulate_grad_hook(move |_| log.borrow_mut().push("w2 accumulated"));
    let log = seen.clone();
    let _hook1 =
        w1.register_post_accumulate_grad_hook(move |_| log.borrow_mut().push("w1 accumulated"));
    let trace = BackwardTrace::start();
    y.sum_to_shape(&[]).backward();
    let steps = trace.finish();
    let nodes: Vec<(u64, &str)> = steps.iter().map(|s| (s.node, s.op)).collect();
    let w2_step = nodes.iter().position(|&(n, op)| op == "leaf" && n == 1).expect("w2's step");
    let h_step = nodes.iter().position(|&(n, op)| op != "leaf" && n == 2).expect("h's step");
    assert!(w2_step < h_step, "w2 should be done before w1's layer runs: {nodes:?}");
    assert_eq!(*seen.borrow(), ["w2 accumulated", "w1 accumulated"]);
    assert_eq!(w2.grad().unwrap().to_vec::<f32>(), vec![12.0, 12.0]); // 2 w1 w2 x
    assert_eq!(w1.grad().unwrap().to_vec::<f32>(), vec![9.0, 9.0]);
}

#[test]
fn many_leaves_each_get_their_gradient() {
    // Thousands of leaves, each used twice: placing each after its last user stays linear.
    let leaves: Vec<Tensor> =
        (0..3000).map(|i| Tensor::full(&[1], i as f64).requires_grad()).collect();
    let mut total = Tensor::zeros(&[1]);
    for (i, x) in leaves.iter().enumerate() {
        total = &total + &(x * (i % 7) as f64);
    }
    for x in &leaves {
        total = &total + x;
    }
    total.sum_to_shape(&[]).backward();
    for (i, x) in leaves.iter().enumerate() {
        assert_eq!(x.grad().unwrap().to_vec::<f32>(), vec![(i % 7) as f32 + 1.0], "leaf {i}");
    }
}

/// `grad()` asks each rule only for the gradients that lead to the tensors asked about, as
/// PyTorch's `autograd.grad` does: a gradient penalty's `grad(scores, x)` computes no weight
/// gradients. `backward()` still asks for every input that tracks gradients.
#[test]
fn grad_asks_rules_only_for_inputs_that_lead_to_the_requested_tensors() {
    use std::cell::RefCell;
    use std::panic::Location;
    use std::rc::Rc;
    use tapegrad_tape::{Backward, record};

    let asked: Rc<RefCell<Vec<(bool, bool)>>> = Rc::default();
    // y = x * w, recorded with a rule that notes which gradients it was asked for.
    let product = |x: &Tensor, w: &Tensor| {
        let seen = Rc::clone(&asked);
        record("noted_mul", Location::caller(), &[x, w], &x.detach() * &w.detach(), move || {
            Backward::new(move |ctx| {
                seen.borrow_mut().push((ctx.needs_input_grad(0), ctx.needs_input_grad(1)));
                let (x, w) = (ctx.saved(0), ctx.saved(1));
                smallvec::smallvec![
                    ctx.needs_input_grad(0).then(|| ctx.grad() * w),
                    ctx.needs_input_grad(1).then(|| ctx.grad() * x),
                ]
            })
            .save(x)
            .save(w)
        })
    };
    let x = Tensor::from_vec(vec![2.0f64], &[1]).requires_grad();
    let w = Tensor::from_vec(vec![3.0f64], &[1]).requires_grad();
    let v = Tensor::from_vec(vec![5.0f64], &[1]).requires_grad();
    // Two layers: h = x w, y = h v. Asked about x: the rules skip w and v.
    let y = product(&product(&x, &w), &v).sum_to_shape(&[]);
    let g = grad(&[&y], &[&x], GradOptions::new().retain_graph(true));
    assert_eq!(g[0].as_ref().unwrap().to_vec::<f64>(), vec![15.0]);
    assert_eq!(*asked.borrow(), vec![(true, false), (true, false)]);
    // Asked about w: the outer rule still passes its gradient to h, the inner one skips x.
    asked.borrow_mut().clear();
    let g = grad(&[&y], &[&w], GradOptions::new().retain_graph(true));
    assert_eq!(g[0].as_ref().unwrap().to_vec::<f64>(), vec![10.0]);
    assert_eq!(*asked.borrow(), vec![(true, false), (false, true)]);
    // backward() fills every leaf's .grad.
    asked.borrow_mut().clear();
    y.backward();
    assert_eq!(*asked.borrow(), vec![(true, true), (true, true)]);
    assert_eq!(v.grad().unwrap().to_vec::<f64>(), vec![6.0]);
    assert!(x.grad().is_some() && w.grad().is_some());
}

/// What the tape holds beyond this test's leaves: other tests run on other threads, and
/// each thread has its own tape.
fn interior_nodes() -> usize {
    tapegrad_tape::tape_stats().interior
}

#[test]
fn backward_frees_every_node_it_went_through_and_only_those() {
    use std::panic::Location;
    use tapegrad_tape::{Backward, record, smallvec::smallvec};
    let start = interior_nodes();
    let a = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).requires_grad();
    let b = Tensor::from_vec(vec![3.0f64, 4.0], &[2]).requires_grad();
    // A rule that gives its second input no gradient: the sweep reaches `b * 2` with none.
    let b2 = &b * 2.0;
    let first_only = record("first_only", Location::caller(), &[&a, &b2], a.detach(), || {
        Backward::new(|ctx| smallvec![Some(ctx.grad().clone()), None])
    });
    let kept = &first_only * 3.0;
    kept.retain_grad();
    // A long chain, and `a` used again at its end: its gradient comes from two users.
    let mut y = &kept + &a;
    for _ in 0..1000 {
        y = &y * 1.0;
    }
    let loss = y.sum_to_shape(&[]);
    assert_eq!(interior_nodes(), start + 1005);
    loss.backward();
    // Everything the sweep went through leaves the tape, held by a handle or not (a second
    // backward through them fails), except `kept`, which keeps its gradient.
    assert_eq!(interior_nodes(), start + 1);
    assert_eq!(a.grad().unwrap().to_vec::<f64>(), vec![4.0, 4.0]);
    assert_eq!(kept.grad().unwrap().to_vec::<f64>(), vec![1.0, 1.0]);
    assert!(b.grad().is_none());
    assert!(b2.sum_to_shape(&[]).try_backward().is_err());
    drop((b2, first_only, y, loss));
    assert_eq!(interior_nodes(), start + 1);
    drop(kept);
    assert_eq!(interior_nodes(), start);
    // The leaves lost the references the graph held: dropping their handles frees them.
    let leaves = tapegrad_tape::tape_stats().leaves;
    drop((a, b));
    assert_eq!(tapegrad_tape::tape_stats().leaves, leaves - 2);
}

#[test]
fn a_backward_stopped_by_a_bad_rule_still_frees_the_graph() {
    use std::panic::Location;
    use tapegrad_tape::{Backward, Error, record, smallvec::smallvec};
    let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]).requires_grad();
    let before = interior_nodes();
    let mut h = &x * 2.0;
    for _ in 0..100 {
        h = &h + 1.0;
    }
    // Its rule returns a gradient of the wrong shape, halfway down the graph.
    let bad = record("bad_rule", Location::caller(), &[&h], h.detach(), || {
        Backward::new(|_| smallvec![Some(Tensor::zeros(&[2]).to_dtype(tapegrad_tape::DType::F64))])
    });
    let mut y = &bad * 1.0;
    for _ in 0..100 {
        y = &y * 1.0;
    }
    let err = y.sum_to_shape(&[]).try_backward().unwrap_err();
    assert!(matches!(err, Error::Backward { op: "bad_rule", .. }), "{err}");
    // The nodes after the bad rule were freed at their steps, and those before it, which
    // the sweep never reached, when it stopped: all of them while `h`, `bad` and `y` still
    // hold their keys (a second backward through them fails). `x` kept no gradient.
    assert_eq!(interior_nodes(), before);
    assert!(x.grad().is_none());
    assert!(matches!(h.sum_to_shape(&[]).try_backward(), Err(Error::FreedGraph { .. })));
    drop((h, bad, y));
    assert_eq!(interior_nodes(), before);
}
