//! Forward mode through the public API: dual tensors, levels, how tangents meet reverse
//! mode (both orders), and the refusals. The per-op rules are checked against central
//! differences and reverse mode in `crates/ops/tests/forward_mode.rs`.

use tapegrad::forward_ad::{
    dual_level, is_dual_level_open, make_dual, try_dual_level, try_make_dual, unpack_dual,
};
use tapegrad::ops::func;
use tapegrad::prelude::*;
use tapegrad::tape_stats;

fn f64s(values: &[f64]) -> Tensor {
    Tensor::from_vec(values.to_vec(), &[values.len()])
}

fn assert_close(a: &Tensor, b: &[f64]) {
    let a = a.to_vec::<f64>();
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= 1e-12 * (1.0 + y.abs()), "element {i}: {x} vs {y}");
    }
}

fn panic_message(f: impl FnOnce()) -> String {
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_err();
    err.downcast_ref::<String>().cloned().unwrap_or_default()
}

#[test]
fn a_tangent_follows_the_chain_rule() {
    let (x, v) = (f64s(&[0.3, -1.2, 2.0]), f64s(&[1.0, 0.5, -2.0]));
    let _level = dual_level();
    let y = make_dual(&x, &v).sin() * make_dual(&x, &v).exp();
    let parts = unpack_dual(&y);
    let expected: Vec<f64> = x
        .to_vec::<f64>()
        .iter()
        .zip(v.to_vec::<f64>())
        .map(|(x, v)| (x.cos() + x.sin()) * x.exp() * v)
        .collect();
    assert_close(&parts.tangent.unwrap(), &expected);
    assert!(unpack_dual(&parts.primal).tangent.is_none());
    // A tensor that does not depend on a dual one has no tangent (zero).
    assert!(unpack_dual(&x.exp()).tangent.is_none());
}

#[test]
fn make_dual_checks_its_arguments() {
    let x = f64s(&[1.0, 2.0]);
    let err = try_make_dual(&x, &x).unwrap_err().to_string();
    assert!(err.contains("no dual level is open"), "{err}");
    let _level = dual_level();
    let err = try_make_dual(&x, &f64s(&[1.0])).unwrap_err().to_string();
    assert!(err.contains("shape [1]") && err.contains("[2]"), "{err}");
    assert!(try_make_dual(&x, &Tensor::ones(&[2])).is_err(), "f32 tangent for an f64 primal");
    assert!(try_make_dual(&Tensor::from_vec(vec![1i64, 2], &[2]), &x).is_err(), "int64 primal");
}

#[test]
fn levels_do_not_nest_and_take_their_tangents_with_them() {
    let level = dual_level();
    assert!(try_dual_level().unwrap_err().to_string().contains("do not nest"));
    let y = make_dual(&f64s(&[1.0]), &f64s(&[2.0])).square();
    assert!(unpack_dual(&y).tangent.is_some());
    drop(level);
    assert!(!is_dual_level_open());
    assert!(unpack_dual(&y).tangent.is_none());
    // A new level does not see the old tangents either.
    let _again = dual_level();
    assert!(unpack_dual(&y).tangent.is_none());
    assert!(unpack_dual(&(&y * 2.0)).tangent.is_none());
}

#[test]
fn tangents_propagate_under_no_grad() {
    let _level = dual_level();
    let _no_grad = no_grad();
    let y = make_dual(&f64s(&[3.0]), &f64s(&[1.0])).pow(3.0);
    assert_close(&unpack_dual(&y).tangent.unwrap(), &[27.0]);
}

#[test]
fn reverse_mode_differentiates_a_tangent() {
    // d/dx (f'(x) v) = f''(x) v for f = x^3: 6 x v; and d/dv (f'(x) v) = f'(x) = 3 x^2.
    let x = f64s(&[1.5, -0.5]).requires_grad();
    let v = f64s(&[2.0, 3.0]).requires_grad();
    let _level = dual_level();
    let y = make_dual(&x, &v).pow(3.0);
    let t = unpack_dual(&y).tangent.unwrap();
    t.sum().backward();
    assert_close(&x.grad().unwrap(), &[6.0 * 1.5 * 2.0, 6.0 * -0.5 * 3.0]);
    assert_close(&v.grad().unwrap(), &[3.0 * 1.5 * 1.5, 3.0 * 0.25]);
}

/// The loss of a small network as a function of its input.
fn network_loss(x: &Tensor) -> Tensor {
    manual_seed(3);
    let w1 = Tensor::randn_dtype(&[5, 3], DType::F64);
    let w2 = Tensor::randn_dtype(&[2, 5], DType::F64);
    let h = F::linear(x, &w1, None).tanh();
    let z = F::linear(&h, &w2, None).softmax(-1);
    (&z * &z).sum()
}

#[test]
fn forward_over_reverse_gives_hessian_vector_products() {
    let x = Tensor::from_vec(vec![0.1f64, -0.4, 0.7, 1.1, 0.2, -0.9], &[2, 3]);
    let v = Tensor::from_vec(vec![1.0f64, 0.0, -1.0, 0.5, 2.0, 0.3], &[2, 3]);
    let (_, hv) =
        func::hvp(|t| network_loss(&t[0]), std::slice::from_ref(&x), std::slice::from_ref(&v));
    // The tangent of the gradient, computed with create_graph inside a level.
    let leaf = x.detach().requires_grad();
    let _level = dual_level();
    let dual = make_dual(&leaf, &v);
    let g = grad(&[&network_loss(&dual)], &[&dual], GradOptions::new().create_graph(true));
    let tangent = unpack_dual(g[0].as_ref().unwrap()).tangent.unwrap();
    assert_close(&tangent, &hv[0].to_vec::<f64>());
}

#[test]
fn a_plain_backward_inside_a_level_gives_plain_gradients() {
    let x = f64s(&[0.5, 1.5]).requires_grad();
    let _level = dual_level();
    let y = make_dual(&x, &f64s(&[1.0, 1.0])).tanh().sum();
    y.backward();
    let g = x.grad().unwrap();
    assert!(unpack_dual(&g).tangent.is_none());
    let expected: Vec<f64> = [0.5f64, 1.5].iter().map(|x| 1.0 - x.tanh().powi(2)).collect();
    assert_close(&g, &expected);
}

#[test]
fn jvp_and_jacfwd_inside_an_open_level_still_work() {
    // Levels cannot nest, so these fall back to reverse mode through the transposed graph.
    let x = Tensor::from_vec(vec![0.1f64, -0.4, 0.7, 1.1, 0.2, -0.9], &[2, 3]);
    let v = Tensor::from_vec(vec![1.0f64, 0.0, -1.0, 0.5, 2.0, 0.3], &[2, 3]);
    let f = |t: &[Tensor]| network_loss(&t[0]);
    let (_, outside) = func::jvp(f, std::slice::from_ref(&x), std::slice::from_ref(&v));
    let jac_outside = func::jacfwd(f, std::slice::from_ref(&x));
    let _level = dual_level();
    let (_, inside) = func::jvp(f, std::slice::from_ref(&x), std::slice::from_ref(&v));
    assert_close(&inside, &outside.to_vec::<f64>());
    assert_close(&func::jacfwd(f, &[x])[0], &jac_outside[0].to_vec::<f64>());
}

#[test]
fn models_built_from_layers_carry_tangents() {
    // jvp through Conv2d, BatchNorm2d (training), ReLU, max pooling, an LSTM and Linear,
    // against the Jacobian built by reverse mode, times v.
    manual_seed(11);
    let mut conv = Conv2d::new(2, 3, 3).padding(1);
    let mut bn = BatchNorm2d::new(3);
    let mut lstm = LSTM::new(4, 4, 1);
    let mut head = Linear::new(4, 2);
    conv.to_dtype(DType::F64);
    bn.to_dtype(DType::F64);
    lstm.to_dtype(DType::F64);
    head.to_dtype(DType::F64);
    let f = |t: &[Tensor]| {
        let x = F::max_pool2d(&bn.forward(&conv.forward(&t[0])).relu(), 2); // [2, 3, 2, 2]
        // Three steps (the channels) of four features, for a batch of two: [T, B, F].
        let seq = x.reshape(&[2, 3, 4]).transpose(0, 1);
        let (out, _) = lstm.forward_with_state(&seq, None);
        head.forward(&out.select(0, -1))
    };
    let x = Tensor::randn_dtype(&[2, 2, 4, 4], DType::F64);
    let v = Tensor::randn_dtype(&[2, 2, 4, 4], DType::F64);
    let (_, jv) = func::jvp(f, std::slice::from_ref(&x), std::slice::from_ref(&v));
    let j = func::jacrev(f, &[x])[0].reshape(&[4, 64]);
    let expected = j.matmul(&v.reshape(&[64]));
    assert_close(&jv.reshape(&[4]), &expected.to_vec::<f64>());
}

#[test]
fn in_place_operations_refuse_dual_tensors() {
    let _level = dual_level();
    let x = make_dual(&f64s(&[1.0, 2.0]), &f64s(&[1.0, 1.0]));
    let y = &x * 2.0;
    let err = y.try_add_(1.0).unwrap_err().to_string();
    assert!(err.contains("dual tensors"), "{err}");
    let plain = f64s(&[0.0, 0.0]);
    assert!(plain.try_add_(&y).is_err(), "a dual operand");
    assert!(plain.try_add_(1.0).is_ok(), "plain tensors are unaffected");
}

#[test]
fn an_op_without_a_forward_rule_says_so() {
    struct Twice;
    impl Function for Twice {
        fn name(&self) -> &'static str {
            "twice"
        }
        fn forward(&self, x: &[Tensor]) -> Tensor {
            &x[0] * 2.0
        }
        fn backward(&self, _: &FunctionCtx<'_>, g: &Tensor) -> Vec<Option<Tensor>> {
            vec![Some(g * 2.0)]
        }
    }
    let x = f64s(&[1.0]);
    // Without a level, or on plain tensors, no forward rule is needed.
    assert_eq!(apply(Twice, &[&x]).item(), 2.0);
    let _level = dual_level();
    assert_eq!(apply(Twice, &[&x]).item(), 2.0);
    let dual = make_dual(&x, &f64s(&[1.0]));
    let message = panic_message(|| {
        apply(Twice, &[&dual]);
    });
    assert!(message.contains("`twice`") && message.contains("Function::jvp"), "{message}");
}

#[test]
fn forward_mode_leaves_nothing_on_the_tape() {
    let x = f64s(&[0.5, 1.0, -0.25]).requires_grad();
    let v = f64s(&[1.0, -1.0, 0.5]);
    let before = tape_stats().nodes;
    for _ in 0..3 {
        // exp, tanh and softmax save their outputs; their tangents are built on them.
        let f = |t: &[Tensor]| t[0].exp().tanh().softmax(0);
        let (_, jv) = func::jvp(f, std::slice::from_ref(&x), std::slice::from_ref(&v));
        drop(jv);
        let _level = dual_level();
        drop(f(&[make_dual(&x, &v)]));
    }
    assert_eq!(tape_stats().nodes, before);
}

#[test]
fn checkpoint_inside_a_level_keeps_its_graph() {
    let w = f64s(&[0.5, -1.5]).requires_grad();
    let (x, v) = (f64s(&[1.0, 2.0]), f64s(&[1.0, 0.0]));
    let w2 = w.clone();
    let _level = dual_level();
    let y = tapegrad::tape::checkpoint(move |t| (&t[0] * &w2).tanh(), &[make_dual(&x, &v)]);
    // d tanh(x w) along v = (1 - tanh^2) w v
    let expected: Vec<f64> = [(1.0f64, 0.5f64, 1.0f64), (2.0, -1.5, 0.0)]
        .iter()
        .map(|(x, w, v)| (1.0 - (x * w).tanh().powi(2)) * w * v)
        .collect();
    assert_close(&unpack_dual(&y).tangent.unwrap(), &expected);
    y.sum().backward();
    let grads: Vec<f64> = [(1.0f64, 0.5f64), (2.0, -1.5)]
        .iter()
        .map(|(x, w)| (1.0 - (x * w).tanh().powi(2)) * x)
        .collect();
    assert_close(&w.grad().unwrap(), &grads);
}

#[test]
fn a_level_opened_during_backward_propagates() {
    // A gradient hook (which makes the sweep watched) computes a jvp: the sweep's own
    // pause on tangents does not reach the hook's level.
    let x = f64s(&[0.5, -1.0]).requires_grad();
    let seen = std::rc::Rc::new(std::cell::RefCell::new(None));
    let seen2 = seen.clone();
    let y = x.tanh();
    let _handle = y.register_hook(move |g| {
        let (_, jv) = func::jvp(|t| t[0].exp(), &[g.detach()], &[g.ones_like()]);
        *seen2.borrow_mut() = Some(jv.to_vec::<f64>());
        None
    });
    y.sum().backward();
    let jv = seen.borrow().clone().unwrap();
    assert_eq!(jv, vec![1f64.exp(), 1f64.exp()]);
}

#[test]
fn transforms_and_requires_grad_keep_tangents_of_dual_inputs() {
    let (x, v) = (f64s(&[0.5, 2.0]), f64s(&[1.0, 3.0]));
    let _level = dual_level();
    let dual = make_dual(&x, &v);
    assert!(unpack_dual(&dual.clone().requires_grad()).tangent.is_some());
    // The gradient of sum(x^3) is 3 x^2, whose tangent along v is 6 x v.
    let (_, g) =
        func::vjp(|t| t[0].pow(3.0).sum(), std::slice::from_ref(&dual), &Tensor::scalar(1.0f64));
    assert_close(&unpack_dual(&g[0]).tangent.unwrap(), &[6.0 * 0.5, 6.0 * 2.0 * 3.0]);
}

#[test]
fn jacfwd_runs_every_column_from_the_same_random_state() {
    let f = |t: &[Tensor]| F::dropout(&t[0].exp());
    let x = f64s(&[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]);
    manual_seed(9);
    let forward = func::jacfwd(f, std::slice::from_ref(&x));
    manual_seed(9);
    let reverse = func::jacrev(f, std::slice::from_ref(&x));
    assert_eq!(forward[0].to_vec::<f64>(), reverse[0].to_vec::<f64>());
}
