//! Hooks: on a tensor's gradient (inspect or replace), after a leaf's accumulation, and on
//! a layer's forward; every one removable.

use std::cell::RefCell;
use std::rc::Rc;

use tapegrad::nn::Hooked;
use tapegrad::prelude::*;

#[test]
fn a_gradient_hook_on_an_interior_tensor_changes_what_flows_upstream() {
    let w = Tensor::from_vec(vec![1.0f64, -2.0], &[2]).requires_grad();
    let h = w.tanh();
    // Gradient clipping on one activation, as a hook.
    let _clip = h.register_hook(|g| Some(g.clamp(Some(-0.1), Some(0.1))));
    (&h * 5.0).sum().backward();
    let dtanh: Vec<f64> = [1.0f64, -2.0].iter().map(|v| 1.0 - v.tanh().powi(2)).collect();
    let got = w.grad().unwrap().to_vec::<f64>();
    assert!((got[0] - 0.1 * dtanh[0]).abs() < 1e-15 && (got[1] - 0.1 * dtanh[1]).abs() < 1e-15);
}

#[test]
fn leaf_hooks_run_before_and_after_accumulation() {
    let w = Tensor::ones(&[2]).requires_grad();
    let before = w.register_hook(|g| Some(g * 2.0));
    let totals = Rc::new(RefCell::new(Vec::new()));
    let seen = totals.clone();
    let _after =
        w.register_post_accumulate_grad_hook(move |g| seen.borrow_mut().push(g.sum().item()));
    (&w * 3.0).sum().backward(); // 3 per element, doubled by the hook
    before.remove();
    (&w * 3.0).sum().backward(); // 3 more, the hook removed
    assert_eq!(w.grad().unwrap().to_vec::<f32>(), vec![9.0, 9.0]);
    assert_eq!(*totals.borrow(), vec![12.0, 18.0]);
}

#[test]
fn hooks_see_gradients_taken_with_grad_and_create_graph() {
    let x = Tensor::from_vec(vec![2.0f64], &[1]).requires_grad();
    let y = x.pow(3.0);
    let seen = Rc::new(RefCell::new(Vec::new()));
    let log = seen.clone();
    let _h = y.register_hook(move |g| {
        log.borrow_mut().push(g.item());
        None
    });
    let g = grad(&[&y.sum()], &[&x], GradOptions::new().create_graph(true)).remove(0).unwrap();
    assert_eq!((g.item(), seen.borrow().clone()), (12.0, vec![1.0]));
    assert!(g.tracks_grad());
}

#[test]
fn hooks_on_a_step_of_a_training_loop_fire_once_each() {
    let w = Tensor::ones(&[3]).requires_grad();
    let count = Rc::new(RefCell::new(0));
    for _ in 0..50 {
        let h = &w * 2.0;
        let c = count.clone();
        let _h = h.register_hook(move |_| {
            *c.borrow_mut() += 1;
            None
        });
        h.sum().backward();
    }
    assert_eq!(*count.borrow(), 50); // one per step: freed steps' hooks never fire again
}

#[test]
fn forward_hooks_capture_and_replace_activations() {
    let model =
        Sequential::new().add(Hooked::new(Linear::new(3, 4))).add(ReLU).add(Linear::new(4, 2));
    // Hooks are registered on the wrapper; here through a second handle kept outside.
    let probe = Hooked::new(ReLU);
    let captured = Rc::new(RefCell::new(None));
    let c = captured.clone();
    let _h = probe.register_forward_hook(move |_, y| {
        *c.borrow_mut() = Some(y.shape().to_vec());
        None
    });
    let x = Tensor::randn(&[5, 3]);
    let y = probe.forward(&model.forward(&x));
    assert_eq!(captured.borrow().clone(), Some(vec![5, 2]));
    assert_eq!(y.shape(), &[5, 2]);
    let names: Vec<String> = model.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
}
