//! In-place updates: values change for every handle, the graph follows PyTorch's rules, and
//! what backward saved is never corrupted.

use tapegrad_tape::{Tensor, no_grad};

#[test]
fn a_hand_written_sgd_step_updates_every_handle() {
    let w = Tensor::from_vec(vec![1.0f64, -2.0], &[2]).requires_grad();
    let held_by_optimizer = w.clone();
    (&w * &w).sum_to_shape(&[]).backward();
    {
        let _no_grad = no_grad();
        let g = w.grad().unwrap();
        let mut p = w.clone();
        p -= &(&g * 0.1); // PyTorch's `p -= lr * p.grad`
    }
    assert_eq!(held_by_optimizer.to_vec::<f64>(), vec![0.8, -1.6]);
    assert!(w.is_leaf() && w.tracks_grad());
    // The parameter keeps learning: a second step's gradient is at the new values.
    w.zero_grad();
    (&w * &w).sum_to_shape(&[]).backward();
    assert_eq!(w.grad().unwrap().to_vec::<f64>(), vec![1.6, -3.2]);
}

#[test]
fn a_parameter_refuses_in_place_changes_while_recording() {
    let w = Tensor::ones(&[2]).requires_grad();
    let err = w.try_add_(1.0).unwrap_err().to_string();
    assert!(err.contains("add_") && err.contains("leaf tensor that requires grad"), "{err}");
    assert!(err.contains("no_grad"), "{err}");
    assert_eq!(w.to_vec::<f32>(), vec![1.0, 1.0]); // unchanged
}

#[test]
fn a_computed_tensor_changed_in_place_is_recorded() {
    // out = 2x; out += x (the residual `out += identity`); d sum(out) / dx = 3.
    let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).requires_grad();
    let mut out = &x * 2.0;
    let alias = out.clone();
    out += &x;
    assert_eq!(alias.to_vec::<f64>(), vec![3.0, 6.0]); // every handle sees the change
    assert_eq!(alias.grad_fn(), Some("add"));
    alias.sum_to_shape(&[]).backward();
    assert_eq!(x.grad().unwrap().to_vec::<f64>(), vec![3.0, 3.0]);
}

#[test]
fn in_place_products_differentiate_twice() {
    // y = x^2 (computed), y *= x -> x^3; dy/dx = 3x^2, d2y/dx2 = 6x.
    let x = Tensor::from_vec(vec![2.0f64], &[1]).requires_grad();
    let y = &x * &x;
    y.mul_(&x);
    let opts = tapegrad_tape::GradOptions::new().create_graph(true);
    let g = tapegrad_tape::grad(&[&y], &[&x], opts).remove(0).unwrap();
    assert_eq!(g.item(), 12.0);
    g.backward();
    assert_eq!(x.grad().unwrap().item(), 12.0);
}

#[test]
fn saved_values_are_never_corrupted() {
    // The product saves its inputs; changing the parameter in place afterwards (an
    // optimizer step before backward) leaves the recorded product's gradient at the values
    // the forward pass used.
    let x = Tensor::from_vec(vec![1.0f64, 3.0], &[2]).requires_grad();
    let y = &x * &x;
    {
        let _no_grad = no_grad();
        x.mul_(100.0);
    }
    y.sum_to_shape(&[]).backward();
    assert_eq!(x.grad().unwrap().to_vec::<f64>(), vec![2.0, 6.0]);
    assert_eq!(x.to_vec::<f64>(), vec![100.0, 300.0]);
}

#[test]
fn fill_zero_and_copy() {
    let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2]);
    x.fill_(5.0);
    assert_eq!(x.to_vec::<f32>(), vec![5.0; 4]);
    x.zero_();
    assert_eq!(x.to_vec::<f32>(), vec![0.0; 4]);
    // copy_ broadcasts and converts; while recording, the gradient reaches the source.
    let src = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).requires_grad();
    x.copy_(&src);
    assert_eq!(x.to_vec::<f32>(), vec![1.0, 2.0, 1.0, 2.0]);
    (&x * 3.0).sum_to_shape(&[]).backward();
    assert_eq!(src.grad().unwrap().to_vec::<f64>(), vec![6.0, 6.0]);
    // A computed tensor filled with constants stays in the graph with a zero gradient for
    // what it was (PyTorch's FillBackward).
    src.zero_grad();
    let h = &src * 2.0;
    h.fill_(1.0);
    assert!(h.tracks_grad());
    (&h * 3.0).sum_to_shape(&[]).backward();
    assert_eq!(src.grad().unwrap().to_vec::<f64>(), vec![0.0, 0.0]);
}

#[test]
fn copying_a_parameter_makes_a_node_of_its_own() {
    let w = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).requires_grad();
    let buf = Tensor::zeros_dtype(&[2], tapegrad_tape::DType::F64);
    buf.copy_(&w);
    assert!(!buf.is_leaf() && buf.grad_fn() == Some("copy_"));
    buf.add_(1.0); // a computed tensor: allowed, recorded
    (&buf * 2.0).sum_to_shape(&[]).backward();
    assert_eq!(w.grad().unwrap().to_vec::<f64>(), vec![2.0, 2.0]);
    // Float into int64 truncates, as in PyTorch.
    let counts = Tensor::from_vec(vec![0i64, 0], &[2]);
    counts.copy_(&Tensor::from_vec(vec![1.7f64, -2.5], &[2]));
    assert_eq!(counts.to_vec::<i64>(), vec![1, -2]);
}

#[test]
fn a_computed_tensor_after_backward_is_a_value_again() {
    let x = Tensor::from_vec(vec![1.0f64], &[1]).requires_grad();
    let h = &x * 2.0;
    h.sum_to_shape(&[]).backward();
    h.mul_(0.5); // its graph was freed: a plain update, not a refused parameter
    assert_eq!(h.to_vec::<f64>(), vec![1.0]);
    let mask = Tensor::from_vec(vec![true], &[1]);
    assert!(mask.try_add_(1).is_err()); // no arithmetic on bool
}

#[test]
fn in_place_errors_name_the_operation_and_the_shapes() {
    let x = Tensor::zeros(&[1, 3]);
    let err = x.try_mul_(&Tensor::ones(&[2, 3])).unwrap_err().to_string();
    assert!(err.contains("mul_") && err.contains("[2, 3]") && err.contains("[1, 3]"), "{err}");
    let counts = Tensor::from_vec(vec![1i64, 2], &[2]);
    assert!(counts.try_add_(&Tensor::ones(&[2])).is_err()); // float into int64
    counts.add_(&Tensor::from_vec(vec![1i64, 1], &[2]));
    counts.mul_(3);
    assert_eq!(counts.to_vec::<i64>(), vec![6, 9]);
}

#[test]
fn an_expanded_view_refuses_in_place_updates() {
    let x = Tensor::zeros(&[4]);
    let expanded = x.broadcast_to(&[2, 4]);
    let err = expanded.try_add_(1.0).unwrap_err().to_string();
    assert!(err.contains("expanded view"), "{err}");
    assert_eq!(x.to_vec::<f32>(), vec![0.0; 4]);
}
