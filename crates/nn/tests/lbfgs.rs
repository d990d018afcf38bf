//! L-BFGS against PyTorch's trajectories (tests/fixtures/lbfgs.json, written by
//! tools/lbfgs_reference.py), its state saved and restored, and its errors.

use serde_json::Value;
use tapegrad_nn::*;
use tapegrad_ops::prelude::*;
use tapegrad_tape::Tensor;

fn fixture(name: &str) -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn numbers(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(items) => items.iter().flat_map(numbers).collect(),
        v => vec![v.as_f64().unwrap()],
    }
}

/// A problem's parameters and its loss of them.
type Problem = (Vec<Tensor>, Box<dyn Fn(&[Tensor]) -> Tensor>);

/// A fixture problem: its parameters (fresh, at the starting point) and its loss.
fn problem(name: &str) -> Problem {
    problem_with(name, &Value::Null)
}

/// [`problem`] with the fixture's `args` for the problems that take them.
fn problem_with(name: &str, args: &Value) -> Problem {
    let data = fixture("optimizers.json");
    let p = &data["problem"];
    let x = Tensor::from_vec(numbers(&p["X"]), &[16, 5]);
    let y = Tensor::from_vec(numbers(&p["Y"]), &[16, 3]);
    let least_squares =
        move |ps: &[Tensor]| (&(&x.matmul(&ps[0].t()) + &ps[1]) - &y).square().mean();
    let w0 = || Tensor::from_vec(numbers(&p["W0"]), &[3, 5]).requires_grad();
    let b0 = || Tensor::from_vec(numbers(&p["b0"]), &[3]).requires_grad();
    match name {
        "least_squares" => (vec![w0(), b0()], Box::new(least_squares)),
        "negated_least_squares" => (vec![w0(), b0()], Box::new(move |ps| -least_squares(ps))),
        "rosenbrock" => {
            let x = Tensor::from_vec(vec![-1.5f64, 2.0, -0.5, 1.2], &[4]).requires_grad();
            let f = |ps: &[Tensor]| {
                let (head, tail) = (ps[0].narrow(0, 0, 3), ps[0].narrow(0, 1, 3));
                ((&tail - &head.square()).square() * 100.0 + (-&head + 1.0).square()).sum()
            };
            (vec![x], Box::new(f))
        }
        "wavy" => {
            let x = Tensor::from_vec(vec![0.3f64, -1.1, 2.4], &[3]).requires_grad();
            (
                vec![x],
                Box::new(|ps: &[Tensor]| ((&ps[0] * 3.0).sin() + ps[0].square() * 0.05).sum()),
            )
        }
        "tilted" => {
            let arg = |k: &str| args[k].as_f64().unwrap();
            let (a, b, c) = (arg("a"), arg("b"), arg("c"));
            let x0 = numbers(&args["x0"]);
            let x = Tensor::from_vec(x0.clone(), &[x0.len()]).requires_grad();
            let f = move |ps: &[Tensor]| {
                (&ps[0] * c + (&ps[0] * b).sin() * a + ps[0].square() * 0.01).sum()
            };
            (vec![x], Box::new(f))
        }
        other => panic!("no problem {other}"),
    }
}

fn optimizer(params: Vec<Tensor>, kwargs: &Value) -> LBFGS {
    let f = |k: &str| kwargs.get(k).and_then(Value::as_f64);
    let mut opt = LBFGS::new(params, f("lr").unwrap_or(1.0));
    if let Some(v) = f("max_iter") {
        opt = opt.max_iter(v as usize);
    }
    if let Some(v) = f("max_eval") {
        opt = opt.max_eval(Some(v as usize));
    }
    if let Some(v) = f("history_size") {
        opt = opt.history_size(v as usize);
    }
    if let Some(v) = f("tolerance_grad") {
        opt = opt.tolerance_grad(v);
    }
    if let Some(v) = f("tolerance_change") {
        opt = opt.tolerance_change(v);
    }
    match kwargs.get("line_search_fn").and_then(Value::as_str) {
        Some("strong_wolfe") => opt = opt.line_search_fn(Some(LineSearch::StrongWolfe)),
        Some(other) => panic!("no line search {other}"),
        None => {}
    }
    opt.maximize(kwargs.get("maximize").and_then(Value::as_bool).unwrap_or(false))
}

/// One step with the usual closure.
fn step(opt: &mut LBFGS, params: &[Tensor], loss: &dyn Fn(&[Tensor]) -> Tensor) -> f64 {
    opt.step(|| {
        params.iter().for_each(Tensor::zero_grad);
        let l = loss(params);
        l.backward();
        l
    })
    .item()
}

#[test]
fn lbfgs_follows_pytorch_trajectories() {
    let data = fixture("lbfgs.json");
    let cases = data["cases"].as_array().unwrap();
    for case in cases {
        let name = format!("{} {}", case["problem"], case["kwargs"]);
        let (params, loss) = problem_with(case["problem"].as_str().unwrap(), &case["args"]);
        let mut opt = optimizer(params.clone(), &case["kwargs"]);
        // Rosenbrock's narrow valley magnifies the last bits of the sums (PyTorch's dot
        // products add in another order) over dozens of iterations: 1e-5 apart after 40.
        // The counts of evaluations and iterations, which every branch of the search
        // decides, must still agree exactly.
        let tol = if case["problem"] == "rosenbrock" { 1e-4 } else { 1e-10 };
        for (i, want) in case["steps"].as_array().unwrap().iter().enumerate() {
            let got = step(&mut opt, &params, &*loss);
            let expected = want["loss"].as_f64().unwrap();
            assert!(
                (got - expected).abs() <= tol * expected.abs().max(1.0),
                "{name} step {i}: loss {got} vs {expected}"
            );
            let counts = (want["func_evals"].as_u64().unwrap(), want["n_iter"].as_u64().unwrap());
            assert_eq!(opt.counts(), counts, "{name} step {i}: (func_evals, n_iter)");
            for (p, values) in params.iter().zip(want["params"].as_array().unwrap()) {
                for (g, e) in p.to_vec::<f64>().iter().zip(numbers(values)) {
                    assert!(
                        (g - e).abs() <= tol * e.abs().max(1.0),
                        "{name} step {i}: parameter {g} vs {e}"
                    );
                }
            }
        }
    }
    assert_eq!(cases.len(), 18);
}

#[test]
fn lbfgs_fits_f32_parameters_and_leaves_unused_ones_alone() {
    // Least squares in f32 reaches the f64 optimum's loss; a parameter the loss never reads
    // gets a zero gradient slot and does not move.
    let (params64, loss64) = problem("least_squares");
    let mut opt = LBFGS::new(params64.clone(), 1.0).line_search_fn(Some(LineSearch::StrongWolfe));
    step(&mut opt, &params64, &*loss64);
    let best = step(&mut opt, &params64, &*loss64);

    let data = fixture("optimizers.json");
    let p = &data["problem"];
    let f32s = |v: &Value| numbers(v).into_iter().map(|x| x as f32).collect::<Vec<f32>>();
    let (x, y) =
        (Tensor::from_vec(f32s(&p["X"]), &[16, 5]), Tensor::from_vec(f32s(&p["Y"]), &[16, 3]));
    let w = Tensor::from_vec(f32s(&p["W0"]), &[3, 5]).requires_grad();
    let b = Tensor::from_vec(f32s(&p["b0"]), &[3]).requires_grad();
    let unused = Tensor::from_vec(vec![7.0f32, 8.0], &[2]).requires_grad();
    let params = vec![w.clone(), unused.clone(), b.clone()];
    let loss = move |ps: &[Tensor]| (&(&x.matmul(&ps[0].t()) + &ps[2]) - &y).square().mean();
    let mut opt = LBFGS::new(params.clone(), 1.0).line_search_fn(Some(LineSearch::StrongWolfe));
    for _ in 0..3 {
        step(&mut opt, &params, &loss);
    }
    let reached = loss(&params).item();
    assert!((reached - best).abs() <= 1e-5 * best, "f32 reached {reached}, f64 {best}");
    assert_eq!(unused.to_vec::<f32>(), [7.0, 8.0]);
}

#[test]
fn lbfgs_state_resumes_the_same_run() {
    let (params, loss) = problem("rosenbrock");
    let mut opt = LBFGS::new(params.clone(), 1.0)
        .max_iter(5)
        .history_size(3)
        .line_search_fn(Some(LineSearch::StrongWolfe));
    step(&mut opt, &params, &*loss);
    step(&mut opt, &params, &*loss);
    let saved = opt.state_dict();
    let names: Vec<&str> = saved.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names[..4],
        ["param_groups.0.lr", "state.0.0.func_evals", "state.0.0.n_iter", "state.0.0.d"]
    );
    assert_eq!(saved.iter().find(|(n, _)| n == "state.0.0.old_dirs").unwrap().1.shape(), [3, 4]);

    let (copy, copy_loss) = problem("rosenbrock");
    copy[0].update_storage(|s, _| {
        s.make_mut::<f64>().unwrap().copy_from_slice(&params[0].to_vec::<f64>())
    });
    let mut resumed = LBFGS::new(copy.clone(), 0.5)
        .max_iter(5)
        .history_size(3)
        .line_search_fn(Some(LineSearch::StrongWolfe));
    resumed.load_state_dict(&saved).unwrap();
    assert_eq!((resumed.param_groups()[0].lr, resumed.counts()), (1.0, opt.counts()));
    step(&mut opt, &params, &*loss);
    step(&mut resumed, &copy, &*copy_loss);
    let bits = |t: &Tensor| t.to_vec::<f64>().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&copy[0]), bits(&params[0]));
    assert_eq!(resumed.counts(), opt.counts());

    // A fresh optimizer saves only its learning rate, and loads it back.
    let fresh = LBFGS::new(params.clone(), 0.25);
    assert_eq!(fresh.state_dict().len(), 1);
    opt.load_state_dict(&fresh.state_dict()).unwrap();
    assert_eq!((opt.counts(), opt.param_groups()[0].lr), ((0, 0), 0.25));
}

#[test]
fn lbfgs_refuses_bad_state_and_keeps_its_own() {
    let (params, loss) = problem("rosenbrock");
    let mut opt = LBFGS::new(params.clone(), 1.0).history_size(2);
    step(&mut opt, &params, &*loss);
    step(&mut opt, &params, &*loss);
    let good = opt.state_dict();
    let before = opt.counts();
    let edit = |name: &str, t: Option<Tensor>| -> Vec<(String, Tensor)> {
        let mut s: Vec<_> = good.iter().filter(|(n, _)| n != name).cloned().collect();
        if let Some(t) = t {
            s.push((name.to_string(), t));
        }
        s
    };
    let cases = [
        (edit("state.0.0.d", None), "missing entry `state.0.0.d`"),
        (
            edit("state.0.0.d", Some(Tensor::zeros(&[5]))),
            "`state.0.0.d` has shape [5]; expected [4]",
        ),
        (edit("state.0.0.n_iter", None), "go together"),
        (edit("state.0.0.n_iter", Some(Tensor::full(&[], 1.5))), "non-negative whole number"),
        (
            edit("state.0.0.ro", Some(Tensor::zeros(&[3]))),
            "remembers 3 steps; this optimizer's history_size is 2",
        ),
        (
            edit("state.0.0.mystery", Some(Tensor::zeros(&[]))),
            "unexpected entry `state.0.0.mystery`",
        ),
        (edit("param_groups.0.lr", None), "missing entry `param_groups.0.lr`"),
        (
            vec![
                ("param_groups.0.lr".into(), Tensor::full(&[], 1.0)),
                ("state.0.0.func_evals".into(), Tensor::full(&[], 3.0)),
                ("state.0.0.n_iter".into(), Tensor::full(&[], 2.0)),
            ],
            "counts 2 iterations but holds no memory",
        ),
    ];
    for (state, message) in cases {
        let err = opt.load_state_dict(&state).unwrap_err().to_string();
        assert!(err.contains(message), "expected `{message}` in: {err}");
        assert!(opt.check_state_dict(&state).is_err());
        assert_eq!(opt.counts(), before);
    }
    assert!(opt.check_state_dict(&good).is_ok());
}

#[test]
fn lbfgs_names_its_settings_and_needs_a_closure() {
    let opt = LBFGS::new(vec![], 1.0).max_iter(8).line_search_fn(Some(LineSearch::StrongWolfe));
    assert_eq!(opt.kind(), "LBFGS");
    let settings = opt.settings();
    assert!(settings.contains(&("max_eval", "10".to_string())));
    assert!(settings.contains(&("line_search_fn", "Some(StrongWolfe)".to_string())));

    let p = Tensor::ones(&[2]).requires_grad();
    let mut opt = LBFGS::new(vec![p.clone()], 1.0);
    let plain =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Optimizer::step(&mut opt)));
    let payload = plain.unwrap_err();
    let message = payload.downcast_ref::<&str>().copied().unwrap_or_default();
    assert!(message.contains("LBFGS::step(closure)"), "{message}");
    let wide = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        opt.step(|| {
            p.zero_grad();
            let loss = p.square();
            loss.sum().backward();
            loss
        })
    }));
    let message = *wide.unwrap_err().downcast::<String>().unwrap();
    assert!(message.contains("returned shape [2]"), "{message}");

    // No parameters: the closure still runs and its loss comes back.
    let mut empty = LBFGS::new(vec![], 1.0);
    assert_eq!(empty.step(|| Tensor::full(&[], 3.0)).item(), 3.0);
}

#[test]
fn lbfgs_checkpoint_resumes_a_model_fit() {
    // A small f32 model fitted by L-BFGS, saved mid-run and resumed into a fresh model and
    // optimizer: the next step gives the same bits as the run that never stopped, and an
    // optimizer with other settings is refused.
    let dir = std::env::temp_dir().join(format!("tapegrad-lbfgs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("fit.safetensors");
    tapegrad_tape::manual_seed(3);
    let x = Tensor::randn(&[32, 2]);
    let y = (x.narrow(1, 0, 1) * 2.0 - x.narrow(1, 1, 1)).tanh();
    let make = || Sequential::new().add(Linear::new(2, 8)).add(Tanh).add(Linear::new(8, 1));
    let fit = |model: &Sequential, opt: &mut LBFGS| {
        opt.step(|| {
            model.zero_grad();
            let loss = (&model.forward(&x) - &y).square().mean();
            loss.backward();
            loss
        })
        .item()
    };
    let settings =
        |params| LBFGS::new(params, 1.0).max_iter(5).line_search_fn(Some(LineSearch::StrongWolfe));
    let model = make();
    let mut opt = settings(model.parameters());
    let first = fit(&model, &mut opt);
    save_checkpoint(&model, &opt, 1, &path).unwrap();

    let mut resumed_model = make();
    let mut resumed = settings(resumed_model.parameters());
    assert_eq!(load_checkpoint(&mut resumed_model, &mut resumed, &path).unwrap(), 1);
    let (a, b) = (fit(&model, &mut opt), fit(&resumed_model, &mut resumed));
    assert_eq!(a.to_bits(), b.to_bits());
    assert!(a < first, "the loss fell: {first} -> {a}");
    let bits = |m: &Sequential| {
        m.parameters().iter().flat_map(|p| p.to_vec::<f32>()).map(f32::to_bits).collect::<Vec<_>>()
    };
    assert_eq!(bits(&resumed_model), bits(&model));

    let mut other_model = make();
    let mut other = settings(other_model.parameters()).history_size(5);
    let err = load_checkpoint(&mut other_model, &mut other, &path).unwrap_err().to_string();
    assert!(err.contains("history_size"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn lbfgs_does_not_take_a_nan_gradient_for_convergence() {
    // sqrt at 0 has an infinite slope and 0 * inf is NaN: the gradient is NaN from the start.
    // PyTorch's test `abs().max() <= tolerance_grad` is false for NaN, so it iterates (and
    // the NaN reaches the parameters); it must not return at once as if at a minimum.
    let p = Tensor::zeros_dtype(&[2], tapegrad_tape::DType::F64).requires_grad();
    let mut opt = LBFGS::new(vec![p.clone()], 1.0).max_iter(3);
    opt.step(|| {
        p.zero_grad();
        let loss = (p.sqrt() * 0.0).sum();
        loss.backward();
        loss
    });
    assert!(opt.counts().1 > 0, "no iteration ran: {:?}", opt.counts());
    assert!(p.to_vec::<f64>().iter().all(|v| v.is_nan()));
}

#[test]
fn lbfgs_keeps_its_memory_when_the_closure_panics() {
    let (params, loss) = problem("rosenbrock");
    let mut opt = LBFGS::new(params.clone(), 1.0).max_iter(4);
    step(&mut opt, &params, &*loss);
    let mut calls = 0;
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        opt.step(|| {
            calls += 1;
            assert!(calls < 3, "the closure fails on its third call");
            params[0].zero_grad();
            let l = loss(&params);
            l.backward();
            l
        })
    }));
    assert!(failed.is_err());
    // The counts moved on, and the state still holds the memory that goes with them.
    let state = opt.state_dict();
    assert!(state.iter().any(|(n, _)| n == "state.0.0.d"));
    LBFGS::new(params.clone(), 1.0).max_iter(4).load_state_dict(&state).unwrap();
    step(&mut opt, &params, &*loss);
}

#[test]
fn lbfgs_refuses_an_empty_history_or_no_iterations() {
    for (make, message) in [
        (
            Box::new(|| drop(LBFGS::new(vec![], 1.0).history_size(0))) as Box<dyn Fn()>,
            "history_size must be at least 1",
        ),
        (Box::new(|| drop(LBFGS::new(vec![], 1.0).max_iter(0))), "max_iter must be at least 1"),
    ] {
        let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(make)).unwrap_err();
        let got = payload.downcast_ref::<&str>().copied().unwrap_or_default();
        assert!(got.contains(message), "{got}");
    }
    let (params, loss) = problem("least_squares");
    let mut opt = LBFGS::new(params.clone(), 1.0);
    step(&mut opt, &params, &*loss);
    let mut twice = opt.state_dict();
    twice.push(twice[1].clone());
    let err = opt.load_state_dict(&twice).unwrap_err().to_string();
    assert!(err.contains("entry `state.0.0.func_evals` appears twice"), "{err}");
}
