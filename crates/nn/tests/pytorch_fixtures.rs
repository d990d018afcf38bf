//! Reproducing PyTorch: models loaded from PyTorch's safetensors give PyTorch's outputs;
//! optimizers follow PyTorch's 20-step trajectories and schedulers its learning rates.
//! The fixtures (tests/fixtures) were computed by PyTorch 2.15.

use serde_json::Value;
use tapegrad_nn::*;
use tapegrad_ops::prelude::*;
use tapegrad_tape::{DType, Tensor};

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn io(name: &str) -> (Tensor, Tensor) {
    let entries = load_tensors(fixture(&format!("{name}_io.safetensors"))).unwrap();
    let get = |k: &str| entries.iter().find(|(n, _)| n == k).unwrap().1.clone();
    (get("input"), get("output"))
}

fn assert_close(got: &Tensor, expected: &Tensor, rel: f64) {
    assert_eq!(got.shape(), expected.shape());
    let (g, e) = (got.to_vec::<f64>(), expected.to_vec::<f64>());
    let scale = e.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    let worst = g.iter().zip(&e).map(|(a, b)| (a - b).abs()).fold(0.0f64, f64::max) / scale;
    assert!(
        worst <= rel,
        "worst difference {worst:e} relative to the output scale (limit {rel:e})"
    );
}

#[test]
fn mlp_reproduces_pytorch() {
    let mut model = Sequential::new()
        .add(Linear::new(784, 128))
        .add(ReLU)
        .add(Linear::new(128, 64))
        .add(ReLU)
        .add(Linear::new(64, 10));
    load(&mut model, fixture("mlp.safetensors")).unwrap();
    model.eval();
    let (x, y) = io("mlp");
    assert_close(&model.forward(&x), &y, 1e-5);
}

#[test]
fn cnn_reproduces_pytorch() {
    let mut model = Sequential::new()
        .add(Conv2d::new(1, 16, 5).padding(2))
        .add(ReLU)
        .add(MaxPool2d::new(2))
        .add(Conv2d::new(16, 32, 5).padding(2))
        .add(ReLU)
        .add(MaxPool2d::new(2))
        .add(Flatten::default())
        .add(Linear::new(32 * 7 * 7, 10));
    load(&mut model, fixture("cnn.safetensors")).unwrap();
    model.eval();
    let (x, y) = io("cnn");
    assert_close(&model.forward(&x), &y, 1e-5);
}

#[test]
fn conv_batchnorm_block_reproduces_pytorch_in_eval_mode() {
    let mut model =
        Sequential::new().add(Conv2d::new(3, 4, 3).padding(1)).add(BatchNorm2d::new(4)).add(ReLU);
    load(&mut model, fixture("conv_bn.safetensors")).unwrap();
    model.eval();
    let (x, y) = io("conv_bn");
    assert_close(&model.forward(&x), &y, 1e-5);
}

fn matrix(v: &Value) -> Vec<Vec<f64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
        .collect()
}

fn make(class: &str, kwargs: &Value, params: Vec<Tensor>) -> Box<dyn Optimizer> {
    let f = |k: &str, d: f64| kwargs.get(k).and_then(Value::as_f64).unwrap_or(d);
    let b = |k: &str| kwargs.get(k).and_then(Value::as_bool).unwrap_or(false);
    let betas = |default: (f64, f64)| match kwargs.get("betas").and_then(Value::as_array) {
        Some(pair) => (pair[0].as_f64().unwrap(), pair[1].as_f64().unwrap()),
        None => default,
    };
    let lr = f("lr", 0.0);
    match class {
        "SGD" => Box::new(
            SGD::new(params, lr)
                .momentum(f("momentum", 0.0))
                .dampening(f("dampening", 0.0))
                .nesterov(b("nesterov"))
                .weight_decay(f("weight_decay", 0.0)),
        ),
        "Adagrad" => Box::new(
            Adagrad::new(params, lr)
                .lr_decay(f("lr_decay", 0.0))
                .weight_decay(f("weight_decay", 0.0)),
        ),
        "Adadelta" => Box::new(
            Adadelta::new(params, lr).rho(f("rho", 0.9)).weight_decay(f("weight_decay", 0.0)),
        ),
        "RMSprop" => Box::new(
            RMSprop::new(params, lr)
                .alpha(f("alpha", 0.99))
                .momentum(f("momentum", 0.0))
                .centered(b("centered"))
                .weight_decay(f("weight_decay", 0.0)),
        ),
        "Adam" => Box::new(
            Adam::new(params, lr).amsgrad(b("amsgrad")).weight_decay(f("weight_decay", 0.0)),
        ),
        "AdamW" => Box::new(AdamW::new(params, lr).weight_decay(f("weight_decay", 0.01))),
        "Adamax" => Box::new(
            Adamax::new(params, lr)
                .betas(betas((0.9, 0.999)))
                .eps(f("eps", 1e-8))
                .weight_decay(f("weight_decay", 0.0)),
        ),
        "RAdam" => Box::new(
            RAdam::new(params, lr)
                .betas(betas((0.9, 0.999)))
                .eps(f("eps", 1e-8))
                .weight_decay(f("weight_decay", 0.0))
                .decoupled_weight_decay(b("decoupled_weight_decay")),
        ),
        "NAdam" => Box::new(
            NAdam::new(params, lr)
                .betas(betas((0.9, 0.999)))
                .eps(f("eps", 1e-8))
                .weight_decay(f("weight_decay", 0.0))
                .momentum_decay(f("momentum_decay", 4e-3))
                .decoupled_weight_decay(b("decoupled_weight_decay")),
        ),
        other => panic!("fixture optimizer {other} is not mapped"),
    }
}

#[test]
fn optimizers_follow_pytorch_trajectories() {
    follows_trajectories("optimizers.json", 10);
    // Written by tools/optimizer_reference.py: Adamax, RAdam and NAdam.
    follows_trajectories("more_optimizers.json", 8);
}

/// A momentum switched on after two steps without one: PyTorch starts the new buffer at the
/// gradient, not at `(1 - dampening)` of it. Values printed by PyTorch 2.15 for
/// `SGD([w], lr=0.1, momentum=0, dampening=0.5)` on `sum(w^2)`, with `momentum` set to 0.9 in
/// the param group before the third step.
#[test]
fn sgd_starts_a_momentum_buffer_that_appears_mid_run_at_the_gradient() {
    let w = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).requires_grad();
    let mut opt = SGD::new(vec![w.clone()], 0.1).dampening(0.5);
    let expected = [[0.8, 1.6], [0.64, 1.28], [0.512, 1.024], [0.3456, 0.6912]];
    let buffers = [None, None, Some([1.28, 2.56]), Some([1.664, 3.328])];
    for (step, (want, buffer)) in expected.iter().zip(buffers).enumerate() {
        if step == 2 {
            opt.set_momentum(0.9);
        }
        opt.zero_grad();
        w.square().sum().backward();
        opt.step();
        for (g, e) in w.to_vec::<f64>().iter().zip(want) {
            assert!((g - e).abs() <= 1e-14, "step {step}: w {g} vs {e}");
        }
        let state = opt.state_dict();
        let found = state.iter().find(|(name, _)| name == "state.0.0.momentum_buffer");
        match (found, buffer) {
            (Some((_, t)), Some(want)) => {
                for (g, e) in t.to_vec::<f64>().iter().zip(want) {
                    assert!((g - e).abs() <= 1e-14, "step {step}: buffer {g} vs {e}");
                }
            }
            // Before the momentum is switched on there is no buffer to save.
            (None, None) => {}
            (found, _) => panic!("step {step}: momentum buffer {found:?}, expected {buffer:?}"),
        }
    }
}

#[test]
fn sgd_momentum_buffer_saved_while_new_is_new_after_loading() {
    // A schedule holds the momentum at 0 for two steps, then raises it: the buffer is kept
    // from the first step but unused, so it is still new at the save and must start at the
    // gradient after the load, as it does without one.
    let run = |reload: bool| {
        let w = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).requires_grad();
        let mut opt = SGD::new(vec![w.clone()], 0.1).dampening(0.5);
        opt.set_momentum(0.0);
        for step in 0..4 {
            if step == 2 {
                if reload {
                    let saved = opt.state_dict();
                    let names: Vec<&str> = saved.iter().map(|(name, _)| name.as_str()).collect();
                    assert_eq!(
                        names,
                        ["param_groups.0.lr", "param_groups.0.momentum", "state.0.0.step"]
                    );
                    let mut resumed = SGD::new(vec![w.clone()], 0.1).dampening(0.5);
                    resumed.load_state_dict(&saved).unwrap();
                    opt = resumed;
                }
                opt.set_momentum(0.9);
            }
            opt.zero_grad();
            w.square().sum().backward();
            opt.step();
        }
        w.to_vec::<f64>()
    };
    for reload in [false, true] {
        for (g, e) in run(reload).iter().zip([0.3456, 0.6912]) {
            assert!((g - e).abs() <= 1e-14, "reload {reload}: w {g} vs {e}");
        }
    }
}

#[test]
fn a_state_without_a_buffer_that_is_never_new_is_refused() {
    let w = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).requires_grad();
    let mut opt = Adam::new(vec![w.clone()], 0.1);
    w.square().sum().backward();
    opt.step();
    let saved: Vec<_> =
        opt.state_dict().into_iter().filter(|(name, _)| name != "state.0.0.exp_avg").collect();
    let err = Adam::new(vec![w.clone()], 0.1).load_state_dict(&saved).unwrap_err().to_string();
    assert!(err.contains("missing entry `state.0.0.exp_avg`"), "{err}");
}

/// Every configuration of a trajectory file (`count` of them) reproduced step by step.
fn follows_trajectories(file: &str, count: usize) {
    let text = std::fs::read_to_string(fixture(file)).unwrap();
    let data: Value = serde_json::from_str(&text).unwrap();
    let p = &data["problem"];
    let (x, y, w0) = (matrix(&p["X"]), matrix(&p["Y"]), matrix(&p["W0"]));
    let b0: Vec<f64> = p["b0"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let flat = |m: &Vec<Vec<f64>>| m.iter().flatten().copied().collect::<Vec<f64>>();
    let xt = Tensor::from_vec(flat(&x), &[x.len(), x[0].len()]);
    let yt = Tensor::from_vec(flat(&y), &[y.len(), y[0].len()]);
    let mut checked = 0;
    for (name, cfg) in data["optimizers"].as_object().unwrap() {
        let w = Tensor::from_vec(flat(&w0), &[w0.len(), w0[0].len()]).requires_grad();
        let b = Tensor::from_vec(b0.clone(), &[b0.len()]).requires_grad();
        let mut opt =
            make(cfg["class"].as_str().unwrap(), &cfg["kwargs"], vec![w.clone(), b.clone()]);
        for (step, expected) in cfg["steps"].as_array().unwrap().iter().enumerate() {
            let loss = (&(&xt.matmul(&w.t()) + &b) - &yt).square().mean();
            let want = expected["loss_before_step"].as_f64().unwrap();
            assert!(
                (loss.item() - want).abs() <= 1e-10 * want.abs().max(1.0),
                "{name} step {step}: loss {} vs {want}",
                loss.item()
            );
            opt.zero_grad();
            loss.backward();
            opt.step();
            for (t, key) in [(&w, "W"), (&b, "b")] {
                let want: Vec<f64> = match &expected[key] {
                    Value::Array(rows) if rows.first().is_some_and(Value::is_array) => {
                        flat(&matrix(&expected[key]))
                    }
                    v => v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect(),
                };
                for (g, e) in t.to_vec::<f64>().iter().zip(&want) {
                    assert!(
                        (g - e).abs() <= 1e-10 * e.abs().max(1.0),
                        "{name} step {step} {key}: {g} vs {e}"
                    );
                }
            }
        }
        checked += 1;
    }
    assert_eq!(checked, count);
}

#[test]
fn schedulers_follow_pytorch() {
    let text = std::fs::read_to_string(fixture("schedulers.json")).unwrap();
    let data: Value = serde_json::from_str(&text).unwrap();
    for (name, rates) in data.as_object().unwrap() {
        let mut sched: Box<dyn LrScheduler> = match name.as_str() {
            "StepLR(step_size=7,gamma=0.5)" => Box::new(StepLR::new(0.1, 7, 0.5)),
            "ExponentialLR(gamma=0.9)" => Box::new(ExponentialLR::new(0.1, 0.9)),
            "CosineAnnealingLR(T_max=10,eta_min=0.001)" => {
                Box::new(CosineAnnealingLR::new(0.1, 10, 0.001))
            }
            other => panic!("scheduler {other} is not mapped"),
        };
        let mut opt = SGD::new(vec![Tensor::zeros_dtype(&[1], DType::F64).requires_grad()], 0.1);
        for (epoch, want) in rates.as_array().unwrap().iter().enumerate() {
            let want = want.as_f64().unwrap();
            assert!(
                (sched.lr() - want).abs() <= 1e-10,
                "{name} epoch {epoch}: {} vs {want}",
                sched.lr()
            );
            if epoch > 0 {
                assert!((opt.param_groups()[0].lr - want).abs() <= 1e-10);
            }
            sched.step(&mut opt);
        }
    }
}

/// PyTorch's `SequentialLR` of ConstantLR, ExponentialLR and StepLR, switching at epochs 6
/// and 15.
fn three_in_turn() -> SequentialLR {
    SequentialLR::new(
        vec![
            Box::new(ConstantLR::new(0.1, 0.5, 3)),
            Box::new(ExponentialLR::new(0.1, 0.9)),
            Box::new(StepLR::new(0.1, 4, 0.5)),
        ],
        &[6, 15],
    )
}

#[test]
fn gru_reproduces_pytorch() {
    let mut gru = GRU::new(6, 8, 2).batch_first(true);
    load(&mut gru, fixture("gru.safetensors")).unwrap();
    let (x, y) = io("gru");
    assert_close(&gru.forward(&x), &y, 1e-5);
}

#[test]
fn lstm_reproduces_pytorch() {
    let mut lstm = LSTM::new(6, 8, 1).batch_first(true);
    load(&mut lstm, fixture("lstm.safetensors")).unwrap();
    let (x, y) = io("lstm");
    assert_close(&lstm.forward(&x), &y, 1e-5);
}

#[test]
fn recurrent_layers_pass_gradcheck_through_time() {
    use tapegrad_tape::{GradcheckOptions, gradcheck};
    for kind in 0..3 {
        let x = Tensor::randn_dtype(&[2, 3, 2], DType::F64).requires_grad();
        let f = move |xs: &[Tensor]| -> Tensor {
            tapegrad_tape::manual_seed(11);
            match kind {
                0 => {
                    let mut m = RNN::new(2, 3, 2).batch_first(true);
                    m.to_dtype(DType::F64);
                    m.forward(&xs[0])
                }
                1 => {
                    let mut m = GRU::new(2, 3, 2).batch_first(true);
                    m.to_dtype(DType::F64);
                    m.forward(&xs[0])
                }
                _ => {
                    let mut m = LSTM::new(2, 3, 1).batch_first(true);
                    m.to_dtype(DType::F64);
                    m.forward_with_state(&xs[0], None).1.1
                }
            }
        };
        let report = gradcheck(f, &[x], &GradcheckOptions::default()).unwrap();
        assert!(report.passed, "{report}");
    }
}

/// The schedules of `tools/scheduler_reference.py`: for each epoch the rate the schedule
/// reports and, after the first step, the rate it set on the optimizer.
#[test]
fn more_schedulers_follow_pytorch() {
    let text = std::fs::read_to_string(fixture("lr_schedules.json")).unwrap();
    let data: Value = serde_json::from_str(&text).unwrap();
    let schedules = data["schedules"].as_object().unwrap();
    assert_eq!(schedules.len(), 12);
    for (name, entry) in schedules {
        let rates: Vec<f64> =
            entry["lr"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let mut opt = SGD::new(vec![Tensor::zeros_dtype(&[1], DType::F64).requires_grad()], 0.1);
        let close = |got: f64, want: f64, epoch: usize| {
            assert!((got - want).abs() <= 1e-12, "{name} epoch {epoch}: {got} vs {want}");
        };
        if let Some(metrics) = entry.get("metrics") {
            let metrics: Vec<f64> =
                metrics.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            let mut plateau = match name.as_str() {
                "ReduceLROnPlateau(patience=2)" => ReduceLROnPlateau::new().patience(2),
                "ReduceLROnPlateau(factor=0.5,patience=1,cooldown=2,min_lr=0.02)" => {
                    ReduceLROnPlateau::new().factor(0.5).patience(1).cooldown(2).min_lr(0.02)
                }
                "ReduceLROnPlateau(mode=max,threshold=0.05,threshold_mode=abs,patience=0)" => {
                    ReduceLROnPlateau::new()
                        .mode(PlateauMode::Max)
                        .threshold(0.05, ThresholdMode::Abs)
                        .patience(0)
                }
                other => panic!("scheduler {other} is not mapped"),
            };
            for (epoch, (&want, &metric)) in rates.iter().zip(&metrics).enumerate() {
                close(opt.param_groups()[0].lr, want, epoch);
                plateau.step(metric, &mut opt);
                if epoch == 20 {
                    // Halfway, the state moves to a fresh schedule, which carries on.
                    let mut resumed = ReduceLROnPlateau::new();
                    resumed.load_state_dict(&plateau.state_dict()).unwrap();
                    plateau = resumed;
                }
            }
            continue;
        }
        let mut sched: Box<dyn LrScheduler> = match name.as_str() {
            "MultiStepLR(milestones=[5,12,12,30],gamma=0.5)" => {
                Box::new(MultiStepLR::new(0.1, &[5, 12, 12, 30], 0.5))
            }
            "LinearLR(start_factor=0.25,end_factor=0.75,total_iters=8)" => {
                Box::new(LinearLR::new(0.1, 0.25, 0.75, 8))
            }
            "ConstantLR(factor=0.3,total_iters=6)" => Box::new(ConstantLR::new(0.1, 0.3, 6)),
            "PolynomialLR(total_iters=25,power=1.7)" => Box::new(PolynomialLR::new(0.1, 25, 1.7)),
            "CosineAnnealingWarmRestarts(T_0=3,T_mult=2,eta_min=0.002)" => {
                Box::new(CosineAnnealingWarmRestarts::new(0.1, 3, 2, 0.002))
            }
            "CosineAnnealingWarmRestarts(T_0=7)" => {
                Box::new(CosineAnnealingWarmRestarts::new(0.1, 7, 1, 0.0))
            }
            "LambdaLR(lr_lambda=0.95**epoch)" => {
                Box::new(LambdaLR::new(0.1, |e| 0.95f64.powf(e as f64)))
            }
            "SequentialLR([LinearLR(start_factor=0.1,total_iters=5),CosineAnnealingLR(T_max=20,eta_min=0.001)],milestones=[5])" => {
                Box::new(SequentialLR::new(
                    vec![
                        Box::new(LinearLR::new(0.1, 0.1, 1.0, 5)),
                        Box::new(CosineAnnealingLR::new(0.1, 20, 0.001)),
                    ],
                    &[5],
                ))
            }
            "SequentialLR([ConstantLR(factor=0.5,total_iters=3),ExponentialLR(gamma=0.9),StepLR(step_size=4,gamma=0.5)],milestones=[6,15])" => {
                Box::new(three_in_turn())
            }
            other => panic!("scheduler {other} is not mapped"),
        };
        for (epoch, &want) in rates.iter().enumerate() {
            close(sched.lr(), want, epoch);
            if epoch > 0 {
                close(opt.param_groups()[0].lr, want, epoch);
            }
            sched.step(&mut opt);
        }
        // The state resumes the schedule where it stopped, milestones included.
        let mut resumed: Box<dyn LrScheduler> = match sched.kind() {
            "MultiStepLR" => Box::new(MultiStepLR::new(1.0, &[1], 0.9)),
            // Other settings and milestones: the state brings the fixture's back.
            "SequentialLR" if name.contains("StepLR(step_size=4") => Box::new(SequentialLR::new(
                vec![
                    Box::new(ConstantLR::new(1.0, 0.9, 1)),
                    Box::new(ExponentialLR::new(1.0, 0.5)),
                    Box::new(StepLR::new(1.0, 2, 0.1)),
                ],
                &[1, 2],
            )),
            _ => continue,
        };
        resumed.load_state_dict(&sched.state_dict()).unwrap();
        assert_eq!((resumed.epoch(), resumed.lr()), (sched.epoch(), sched.lr()));
        assert_eq!(resumed.lr_at(12), sched.lr_at(12));
    }
}

/// The schedule of a `cyclic_schedules.json` entry, built from its name (after the
/// optimizer's): `other` gives it settings a loaded state must replace.
fn cycling_schedule(name: &str, other: bool) -> Box<dyn LrScheduler> {
    let schedule = name.split_once('|').unwrap().1;
    if other {
        return match schedule.split('(').next().unwrap() {
            "OneCycleLR" => Box::new(OneCycleLR::new(3.0, 7).pct_start(0.5).three_phase(true)),
            // The function is code: the same, with the other settings and its scale mode
            // from the state.
            _ if schedule.contains("scale_fn") => Box::new(
                CyclicLR::new(1.0, 2.0).scale_fn(|x| 1.0 / (1.0 + 0.1 * x), ScaleMode::Cycle),
            ),
            _ => Box::new(CyclicLR::new(1.0, 2.0).step_size_up(2).mode(CyclicMode::Triangular2)),
        };
    }
    match schedule {
        "OneCycleLR(max_lr=0.1,total_steps=40)" => Box::new(OneCycleLR::new(0.1, 40)),
        "OneCycleLR(max_lr=0.05,total_steps=40,pct_start=0.25,anneal_strategy=linear,three_phase=True,\
         div_factor=10,final_div_factor=100,base_momentum=0.8,max_momentum=0.9)" => Box::new(
            OneCycleLR::new(0.05, 40)
                .pct_start(0.25)
                .anneal_strategy(AnnealStrategy::Linear)
                .three_phase(true)
                .div_factor(10.0)
                .final_div_factor(100.0)
                .base_momentum(0.8)
                .max_momentum(0.9),
        ),
        "OneCycleLR(max_lr=0.2,epochs=4,steps_per_epoch=10,pct_start=0.4,cycle_momentum=False)" => {
            Box::new(OneCycleLR::new(0.2, 4 * 10).pct_start(0.4).cycle_momentum(false))
        }
        "CyclicLR(base_lr=0.01,max_lr=0.1,step_size_up=5)" => {
            Box::new(CyclicLR::new(0.01, 0.1).step_size_up(5))
        }
        "CyclicLR(base_lr=0.01,max_lr=0.1,step_size_up=3,step_size_down=7,mode=triangular2)" => {
            Box::new(
                CyclicLR::new(0.01, 0.1)
                    .step_size_up(3)
                    .step_size_down(7)
                    .mode(CyclicMode::Triangular2),
            )
        }
        "CyclicLR(base_lr=0.01,max_lr=0.1,step_size_up=4,mode=exp_range,gamma=0.97,base_momentum=0.7,\
         max_momentum=0.95)" => Box::new(
            CyclicLR::new(0.01, 0.1)
                .step_size_up(4)
                .mode(CyclicMode::ExpRange { gamma: 0.97 })
                .base_momentum(0.7)
                .max_momentum(0.95),
        ),
        "CyclicLR(base_lr=0.01,max_lr=0.1,step_size_up=4,scale_fn=1/(1+0.1x),scale_mode=iterations,\
         cycle_momentum=False)" => Box::new(
            CyclicLR::new(0.01, 0.1)
                .step_size_up(4)
                .scale_fn(|x| 1.0 / (1.0 + 0.1 * x), ScaleMode::Iterations)
                .cycle_momentum(false),
        ),
        other => panic!("schedule {other} is not mapped"),
    }
}

/// The schedules of `tools/scheduler_reference.py` that cycle the momentum, each driving a
/// small fit in f64 (SGD with momentum 0.9, or Adam): the rate and momentum in the optimizer
/// before every step and the weights after it, as PyTorch's; halfway, the optimizer's and
/// the schedule's states move to fresh ones (built with other schedule settings), which
/// carry on.
#[test]
fn cycling_schedules_follow_pytorch() {
    let text = std::fs::read_to_string(fixture("cyclic_schedules.json")).unwrap();
    let data: Value = serde_json::from_str(&text).unwrap();
    let schedules = data["schedules"].as_object().unwrap();
    assert_eq!(schedules.len(), 7);
    let floats = |v: &Value| -> Vec<f64> {
        v.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
    };
    for (name, entry) in schedules {
        let (rates, momenta) = (floats(&entry["lr"]), floats(&entry["momentum"]));
        let weights: Vec<Vec<f64>> =
            entry["weights"].as_array().unwrap().iter().map(floats).collect();
        let w = Tensor::from_vec(vec![1.0f64, -2.0, 0.5], &[3]).requires_grad();
        let coeffs = Tensor::from_vec(vec![0.5f64, 1.5, 3.0], &[3]);
        let make_opt = |w: &Tensor| -> Box<dyn Optimizer> {
            if name.starts_with("SGD|") {
                Box::new(SGD::new(vec![w.clone()], 0.1).momentum(0.9))
            } else {
                Box::new(Adam::new(vec![w.clone()], 0.1))
            }
        };
        let mut opt = make_opt(&w);
        let mut sched = cycling_schedule(name, false);
        sched.apply(opt.as_mut());
        let close = |got: f64, want: f64, what: &str, step: usize| {
            assert!((got - want).abs() <= 1e-12, "{name} step {step} {what}: {got} vs {want}");
        };
        for step in 0..weights.len() {
            close(opt.param_groups()[0].lr, rates[step], "lr", step);
            close(opt.current_momentum().unwrap(), momenta[step], "momentum", step);
            opt.zero_grad();
            (&coeffs * &w * &w).sum_to_shape(&[]).backward();
            opt.step();
            sched.step(opt.as_mut());
            for (got, want) in w.to_vec::<f64>().iter().zip(&weights[step]) {
                close(*got, *want, "weight", step);
            }
            if step == weights.len() / 2 {
                let mut fresh_opt = make_opt(&w);
                fresh_opt.load_state_dict(&opt.state_dict()).unwrap();
                assert_eq!(fresh_opt.settings(), opt.settings(), "{name}: the settings as built");
                let mut fresh = cycling_schedule(name, true);
                fresh.load_state_dict(&sched.state_dict()).unwrap();
                (opt, sched) = (fresh_opt, fresh);
            }
        }
        close(opt.param_groups()[0].lr, rates[weights.len()], "lr", weights.len());
        close(opt.current_momentum().unwrap(), momenta[weights.len()], "momentum", weights.len());
    }
}
