//! Checkpoints resume exactly: a run interrupted, saved and resumed into fresh objects gives
//! the same losses, bit for bit, as one never interrupted (dropout included); loading is all
//! or nothing; a save killed at any moment never costs the previous checkpoint; optimizers
//! keep only the state their settings use.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tapegrad_nn::*;
use tapegrad_ops::functional::cross_entropy;
use tapegrad_ops::prelude::*;
use tapegrad_tape::{Error, RngState, Tensor, get_rng_state, manual_seed};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("tapegrad-checkpoint-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Linear-ReLU-Dropout-Linear: dropout draws a new mask from the random stream each step.
fn model(hidden: usize) -> Sequential {
    Sequential::new()
        .add(Linear::new(6, hidden))
        .add(ReLU)
        .add(Dropout::new(0.3))
        .add(Linear::new(hidden, 3))
}

/// A fixed batch, made without the random stream so that it cannot shift it.
fn batch() -> (Tensor, Tensor) {
    let x: Vec<f32> = (0..8 * 6).map(|i| ((i * 37 % 17) as f32 - 8.0) / 5.0).collect();
    let y: Vec<i64> = (0..8).map(|i| i % 3).collect();
    (Tensor::from_vec(x, &[8, 6]), Tensor::from_vec(y, &[8]))
}

/// One training step; returns the loss's bits.
fn train_step(model: &Sequential, opt: &mut dyn Optimizer, sched: &mut dyn LrScheduler) -> u32 {
    let (x, y) = batch();
    let loss = cross_entropy(&model.forward(&x), &y);
    opt.zero_grad();
    loss.backward();
    opt.step();
    sched.step(opt);
    (loss.item() as f32).to_bits()
}

fn bits(model: &dyn Module) -> Vec<(String, Vec<u32>)> {
    model
        .state_dict()
        .into_iter()
        .map(|(n, t)| (n, t.to_vec::<f32>().iter().map(|v| v.to_bits()).collect()))
        .collect()
}

fn optimizer_bits(opt: &dyn Optimizer) -> Vec<(String, Vec<u64>)> {
    opt.state_dict()
        .into_iter()
        .map(|(n, t)| (n, t.to_vec::<f64>().iter().map(|v| v.to_bits()).collect()))
        .collect()
}

type MakeOptimizer = fn(Vec<Tensor>) -> Box<dyn Optimizer>;

/// A run's losses and final parameters, as bits.
type Run = (Vec<u32>, Vec<(String, Vec<u32>)>);

/// Trains `n` steps straight, and `k` steps, a checkpoint, and `n - k` more steps in fresh
/// objects built from another seed with the random stream moved on; returns both loss
/// sequences and final parameters. With `restore_rng` false the resumed run keeps its own
/// random stream (what resuming did before checkpoints held it).
fn straight_and_resumed(make: MakeOptimizer, restore_rng: bool) -> [Run; 2] {
    straight_and_resumed_with(make, || Box::new(StepLR::new(0.05, 3, 0.5)), restore_rng)
}

type MakeScheduler = fn() -> Box<dyn LrScheduler>;

/// [`straight_and_resumed`] with another schedule, which is applied to the optimizer before
/// the first step.
fn straight_and_resumed_with(
    make: MakeOptimizer,
    sched: MakeScheduler,
    restore_rng: bool,
) -> [Run; 2] {
    const N: usize = 12;
    const K: usize = 5;

    manual_seed(1);
    let straight = model(16);
    let (mut opt, mut s) = (make(straight.parameters()), sched());
    s.apply(&mut *opt);
    let losses: Vec<u32> = (0..N).map(|_| train_step(&straight, &mut *opt, &mut *s)).collect();
    let straight = (losses, bits(&straight));

    manual_seed(1);
    let first = model(16);
    let (mut opt, mut s) = (make(first.parameters()), sched());
    s.apply(&mut *opt);
    let mut losses: Vec<u32> = (0..K).map(|_| train_step(&first, &mut *opt, &mut *s)).collect();
    let path = temp_dir(&format!("resume-{restore_rng}-{}-{}", opt.kind(), s.kind()))
        .join("ckpt.safetensors");
    Checkpoint::new(&first)
        .optimizer(&*opt)
        .scheduler(&*s)
        .step(K as u64)
        .epoch(1)
        .save(&path)
        .unwrap();
    drop((first, opt, s));

    // A new process, in effect: other initial values, another optimizer and schedule
    // position, and a random stream that has moved on.
    manual_seed(777);
    let mut resumed = model(16);
    let (mut opt, mut s) = (make(resumed.parameters()), sched());
    s.step(&mut *opt);
    let _ = Tensor::randn(&[1000]);
    let info = Checkpoint::resume(&mut resumed)
        .optimizer(&mut *opt)
        .scheduler(&mut *s)
        .restore_rng(restore_rng)
        .load(&path)
        .unwrap();
    assert_eq!((info.step, info.epoch, s.epoch()), (K as u64, 1, K));
    losses.extend((K..N).map(|_| train_step(&resumed, &mut *opt, &mut *s)));
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    [straight, (losses, bits(&resumed))]
}

#[test]
fn resuming_adam_with_dropout_and_step_lr_is_bit_identical() {
    let [straight, resumed] = straight_and_resumed(|p| Box::new(Adam::new(p, 0.05)), true);
    assert_eq!(straight.0, resumed.0, "losses, as f32 bits");
    assert_eq!(straight.1, resumed.1, "final parameters, as f32 bits");
}

#[test]
fn resuming_sgd_with_momentum_is_bit_identical() {
    let [straight, resumed] =
        straight_and_resumed(|p| Box::new(SGD::new(p, 0.05).momentum(0.9).nesterov(true)), true);
    assert_eq!(straight.0, resumed.0, "losses, as f32 bits");
    assert_eq!(straight.1, resumed.1, "final parameters, as f32 bits");
}

/// Schedules that move the momentum (SGD's, Adam's first beta): the checkpoint keeps the
/// moved momentum in the optimizer's state and the settings the optimizer was built with, so
/// the resumed run, built as the first was, continues it bit for bit.
#[test]
fn resuming_a_run_whose_schedule_cycles_the_momentum_is_bit_identical() {
    let cases: [(MakeOptimizer, MakeScheduler); 3] = [
        (|p| Box::new(SGD::new(p, 0.05).momentum(0.9)), || Box::new(OneCycleLR::new(0.1, 12))),
        (
            |p| Box::new(AdamW::new(p, 0.05)),
            || Box::new(OneCycleLR::new(0.1, 12).three_phase(true)),
        ),
        (
            |p| Box::new(RMSprop::new(p, 0.01).momentum(0.5)),
            || Box::new(CyclicLR::new(0.001, 0.01).step_size_up(3)),
        ),
    ];
    for (make, sched) in cases {
        let [straight, resumed] = straight_and_resumed_with(make, sched, true);
        assert_eq!(straight.0, resumed.0, "losses, as f32 bits");
        assert_eq!(straight.1, resumed.1, "final parameters, as f32 bits");
    }
}

/// The test above would pass trivially if dropout drew nothing: without the random state
/// the resumed run's masks, and so its losses, differ.
#[test]
fn without_the_random_state_a_resumed_run_with_dropout_diverges() {
    let [straight, resumed] = straight_and_resumed(|p| Box::new(Adam::new(p, 0.05)), false);
    assert_eq!(straight.0[..5], resumed.0[..5]);
    assert_ne!(straight.0[5..], resumed.0[5..]);
}

/// Everything a failed load could disturb.
#[derive(Debug, PartialEq)]
struct Snapshot {
    model: Vec<(String, Vec<u32>)>,
    optimizer: Vec<(String, Vec<u64>)>,
    lr: f64,
    scheduler: Vec<(String, f64)>,
    rng: RngState,
}

fn snapshot(model: &dyn Module, opt: &dyn Optimizer, sched: &dyn LrScheduler) -> Snapshot {
    Snapshot {
        model: bits(model),
        optimizer: optimizer_bits(opt),
        lr: opt.param_groups()[0].lr,
        scheduler: sched.state_dict(),
        rng: get_rng_state(),
    }
}

/// Rewrites a safetensors file's `__metadata__` (the tensors stay where they are).
fn edit_metadata(path: &Path, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(header["__metadata__"].as_object_mut().unwrap());
    let header = serde_json::to_vec(&header).unwrap();
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(&header);
    out.extend(&bytes[8 + n..]);
    std::fs::write(path, out).unwrap();
}

#[test]
fn a_failed_load_leaves_model_optimizer_scheduler_and_rng_untouched() {
    let dir = temp_dir("untouched");
    manual_seed(5);
    let saved = model(16);
    let mut opt = Adam::new(saved.parameters(), 0.01);
    let mut sched = StepLR::new(0.01, 2, 0.5);
    for _ in 0..3 {
        train_step(&saved, &mut opt, &mut sched);
    }
    let good = dir.join("good.safetensors");
    Checkpoint::new(&saved).optimizer(&opt).scheduler(&sched).step(3).save(&good).unwrap();
    let without_scheduler = dir.join("no-scheduler.safetensors");
    Checkpoint::new(&saved).optimizer(&opt).save(&without_scheduler).unwrap();

    // Files that are bad in one way each, found at different stages of checking.
    let copy = |name: &str, edit: fn(&mut serde_json::Map<String, serde_json::Value>)| {
        let path = dir.join(name);
        std::fs::copy(&good, &path).unwrap();
        edit_metadata(&path, edit);
        path
    };
    let zero_rng = copy("zero-rng.safetensors", |m| {
        m.insert("rng".into(), "0".repeat(64).into());
    });
    let bad_step_size = copy("bad-step-size.safetensors", |m| {
        m.insert("scheduler.step_size".into(), "0.0".into());
    });
    let newer = copy("newer.safetensors", |m| {
        m.insert("version".into(), "2".into());
    });
    let unknown = copy("unknown.safetensors", |m| {
        m.insert("mystery".into(), "1".into());
    });
    let truncated = dir.join("truncated.safetensors");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 3]).unwrap();

    // The objects to (fail to) restore into: trained a little from another seed, so that
    // every part holds state that a partial load would visibly change.
    manual_seed(9);
    let mut target = model(16);
    let mut opt = Adam::new(target.parameters(), 0.02);
    let mut sched = StepLR::new(0.02, 2, 0.5);
    train_step(&target, &mut opt, &mut sched);
    let before = snapshot(&target, &opt, &sched);

    let cases: Vec<(&Path, &str)> = vec![
        (&zero_rng, "metadata `rng` is the all-zero state"),
        (&bad_step_size, "scheduler: entry `step_size` is 0; expected a whole number, at least 1"),
        (&newer, "checkpoint version 2"),
        (&unknown, "unexpected metadata `mystery`"),
        (&truncated, "is the file truncated?"),
        (&without_scheduler, "the checkpoint holds no scheduler state"),
    ];
    for (path, needle) in cases {
        let err = Checkpoint::resume(&mut target)
            .optimizer(&mut opt)
            .scheduler(&mut sched)
            .load(path)
            .unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, Error::Format { .. }), "{message}");
        assert!(message.starts_with(&path.display().to_string()), "names the file: {message}");
        assert!(message.contains(needle), "`{needle}` missing from: {message}");
        assert_eq!(snapshot(&target, &opt, &sched), before, "{needle}");
    }

    // The parts disagree with the file: each is reported, and nothing changes.
    let mut sgd = SGD::new(target.parameters(), 0.1);
    let err =
        Checkpoint::resume(&mut target).optimizer(&mut sgd).load(&good).unwrap_err().to_string();
    assert!(err.contains("the checkpoint's optimizer is Adam, this one is SGD"), "{err}");
    let mut betas = Adam::new(target.parameters(), 0.1).betas((0.8, 0.99));
    let err =
        Checkpoint::resume(&mut target).optimizer(&mut betas).load(&good).unwrap_err().to_string();
    assert!(err.contains("`betas` is (0.9, 0.999) in the checkpoint, (0.8, 0.99) here"), "{err}");
    let mut two_groups = Adam::new(target.parameters()[..2].to_vec(), 0.1);
    two_groups.add_param_group(target.parameters()[2..].to_vec(), 0.1);
    let err = Checkpoint::resume(&mut target)
        .optimizer(&mut two_groups)
        .load(&good)
        .unwrap_err()
        .to_string();
    assert!(err.contains("optimizer: "), "{err}");
    let mut exponential = ExponentialLR::new(0.1, 0.9);
    let err = Checkpoint::resume(&mut target)
        .scheduler(&mut exponential)
        .load(&good)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the checkpoint's scheduler is StepLR, this one is ExponentialLR"),
        "{err}"
    );
    assert_eq!(snapshot(&target, &opt, &sched), before);

    // A model whose parameters have the optimizer's shapes but other names fails last, after
    // the optimizer and scheduler checks passed: still nothing changes.
    manual_seed(9);
    let mut renamed = Sequential::new().add(Linear::new(6, 16)).add(ReLU).add(Linear::new(16, 3));
    let mut opt2 = Adam::new(renamed.parameters(), 0.02);
    let mut sched2 = StepLR::new(0.02, 2, 0.5);
    let before2 = snapshot(&renamed, &opt2, &sched2);
    let err = Checkpoint::resume(&mut renamed)
        .optimizer(&mut opt2)
        .scheduler(&mut sched2)
        .load(&good)
        .unwrap_err();
    assert!(err.to_string().contains("model: missing entry `2.weight`"), "{err}");
    assert_eq!(snapshot(&renamed, &opt2, &sched2), before2);

    // And the good file restores all of it.
    Checkpoint::resume(&mut target).optimizer(&mut opt).scheduler(&mut sched).load(&good).unwrap();
    assert_eq!(bits(&target), bits(&saved));
    assert_eq!((sched.epoch(), opt.param_groups()[0].lr), (3, 0.005));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn adam_keeps_max_exp_avg_sq_only_with_amsgrad() {
    fn names<R: UpdateRule>(opt: &Optim<R>) -> Vec<String> {
        opt.state_dict().into_iter().map(|(n, _)| n).collect()
    }
    fn run<R: UpdateRule>(opt: &mut Optim<R>, w: &Tensor) {
        (w * 3.0).sum().backward();
        opt.step();
    }
    // Adam and AdamW are different types with the same buffers: one body for both.
    macro_rules! check {
        ($adam:path) => {{
            let adam = $adam;
            let w = Tensor::ones(&[4]).requires_grad();
            let mut plain = adam(vec![w.clone()], 0.1);
            run(&mut plain, &w);
            assert_eq!(
                names(&plain),
                [
                    "param_groups.0.lr",
                    "state.0.0.step",
                    "state.0.0.exp_avg",
                    "state.0.0.exp_avg_sq"
                ]
            );
            let w2 = Tensor::ones(&[4]).requires_grad();
            let mut amsgrad = adam(vec![w2.clone()], 0.1).amsgrad(true);
            run(&mut amsgrad, &w2);
            assert_eq!(names(&amsgrad)[4], "state.0.0.max_exp_avg_sq");

            // PyTorch's state without max_exp_avg_sq loads; an older tapegrad state with it
            // loads too (the entry is unused), and amsgrad without it is an error naming it.
            let mut fresh = adam(vec![Tensor::ones(&[4]).requires_grad()], 0.5);
            fresh.load_state_dict(&plain.state_dict()).unwrap();
            assert_eq!(optimizer_bits(&fresh), optimizer_bits(&plain));
            fresh.load_state_dict(&amsgrad.state_dict()).unwrap();
            assert_eq!(names(&fresh).len(), 4);
            let mut strict = adam(vec![Tensor::ones(&[4]).requires_grad()], 0.5).amsgrad(true);
            let err = strict.load_state_dict(&plain.state_dict()).unwrap_err().to_string();
            assert!(err.contains("missing entry `state.0.0.max_exp_avg_sq`"), "{err}");
        }};
    }
    check!(Adam::new);
    check!(AdamW::new);
    // Other optimizers likewise keep only the buffers their settings use.
    let w = Tensor::ones(&[2]).requires_grad();
    let mut sgd = SGD::new(vec![w.clone()], 0.1);
    (&w * 2.0).sum().backward();
    sgd.step();
    let names: Vec<String> = sgd.state_dict().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["param_groups.0.lr", "state.0.0.step"]);
    assert_eq!(
        RMSprop::new(vec![], 0.1).centered(true).rule().buffers(),
        ["square_avg", "grad_avg"]
    );
}

/// Turning amsgrad on in a used optimizer adds the buffer (from zero, as on a first step)
/// and keeps the others.
#[test]
fn changing_settings_after_steps_keeps_the_buffers_by_name() {
    let w = Tensor::ones(&[3]).requires_grad();
    let mut opt = Adam::new(vec![w.clone()], 0.1);
    (&w * 2.0).sum().backward();
    opt.step();
    let exp_avg = opt.state_dict()[2].1.to_vec::<f32>();
    let mut opt = opt.amsgrad(true);
    opt.step();
    let state = opt.state_dict();
    assert_eq!(state.len(), 5);
    // Adam's first moment moves towards the gradient (2) by 1 - beta1, as PyTorch's lerp.
    let expected: Vec<f32> =
        exp_avg.iter().map(|m| m + (1.0 - 0.9f64) as f32 * (2.0 - m)).collect();
    assert_eq!(state[2].1.to_vec::<f32>(), expected);
    assert_eq!(
        state[4].1.to_vec::<f32>(),
        state[3].1.to_vec::<f32>(),
        "max_exp_avg_sq starts at exp_avg_sq"
    );
}

#[test]
fn schedulers_save_their_epoch_and_settings_with_pytorch_names() {
    let mut opt = SGD::new(vec![], 0.1);
    // A scheduler stepped on, one to restore into (other settings), and the state's names.
    type Case = (Box<dyn LrScheduler>, Box<dyn LrScheduler>, &'static [&'static str]);
    let mut schedulers: Vec<Case> = vec![
        (
            Box::new(StepLR::new(0.1, 3, 0.5)),
            Box::new(StepLR::new(1.0, 1, 0.1)),
            &["last_epoch", "base_lr", "step_size", "gamma"],
        ),
        (
            Box::new(ExponentialLR::new(0.1, 0.9)),
            Box::new(ExponentialLR::new(1.0, 0.5)),
            &["last_epoch", "base_lr", "gamma"],
        ),
        (
            Box::new(CosineAnnealingLR::new(0.1, 10, 0.001)),
            Box::new(CosineAnnealingLR::new(1.0, 2, 0.0)),
            &["last_epoch", "base_lr", "T_max", "eta_min"],
        ),
        (
            Box::new(LinearWarmup::new(0.1, 0.25, 4)),
            Box::new(LinearWarmup::new(1.0, 0.5, 1)),
            &["last_epoch", "base_lr", "start_factor", "total_iters"],
        ),
        (
            Box::new(OneCycleLR::new(0.1, 30).pct_start(0.2)),
            Box::new(OneCycleLR::new(1.0, 8).three_phase(true).cycle_momentum(false)),
            &[
                "last_epoch",
                "total_steps",
                "max_lr",
                "pct_start",
                "anneal_strategy",
                "cycle_momentum",
                "base_momentum",
                "max_momentum",
                "div_factor",
                "final_div_factor",
                "three_phase",
            ],
        ),
        (
            Box::new(
                CyclicLR::new(0.01, 0.1).step_size_up(3).mode(CyclicMode::ExpRange { gamma: 0.9 }),
            ),
            Box::new(CyclicLR::new(1.0, 2.0)),
            &[
                "last_epoch",
                "base_lr",
                "max_lr",
                "step_size_up",
                "step_size_down",
                "mode",
                "gamma",
                "scale_mode",
                "cycle_momentum",
                "base_momentum",
                "max_momentum",
            ],
        ),
        (
            Box::new(LambdaLR::new(0.1, |e| 0.9f64.powi(e as i32))),
            Box::new(LambdaLR::new(1.0, |e| 0.9f64.powi(e as i32))),
            &["last_epoch", "base_lr"],
        ),
        (
            Box::new(SequentialLR::new(
                vec![
                    Box::new(LinearLR::new(0.1, 0.1, 1.0, 5)),
                    Box::new(CosineAnnealingLR::new(0.1, 20, 0.001)),
                ],
                &[5],
            )),
            Box::new(SequentialLR::new(
                vec![
                    Box::new(LinearLR::new(1.0, 0.5, 1.0, 2)),
                    Box::new(CosineAnnealingLR::new(1.0, 3, 0.0)),
                ],
                &[2],
            )),
            &[
                "last_epoch",
                "_milestones.0",
                "_schedulers.0.last_epoch",
                "_schedulers.0.base_lr",
                "_schedulers.0.start_factor",
                "_schedulers.0.end_factor",
                "_schedulers.0.total_iters",
                "_schedulers.1.last_epoch",
                "_schedulers.1.base_lr",
                "_schedulers.1.T_max",
                "_schedulers.1.eta_min",
            ],
        ),
    ];
    for (saved, restored, names) in &mut schedulers {
        for _ in 0..7 {
            saved.step(&mut opt);
        }
        let state = saved.state_dict();
        assert_eq!(state.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), *names);
        restored.load_state_dict(&state).unwrap();
        assert_eq!(restored.state_dict(), state);
        assert_eq!((restored.epoch(), restored.lr()), (7, saved.lr()), "{}", saved.kind());
        for k in 0..20 {
            assert_eq!(restored.lr_at(k), saved.lr_at(k));
        }
        let mut bad = state.clone();
        bad.push(("verbose".into(), 0.0));
        let err = restored.load_state_dict(&bad).unwrap_err().to_string();
        assert!(err.contains("unexpected entry `verbose`"), "{err}");
        let err = restored.load_state_dict(&state[1..]).unwrap_err().to_string();
        assert!(err.contains("missing entry `last_epoch`"), "{err}");
        assert_eq!(restored.state_dict(), state, "a failed load changes nothing");
    }
}

#[test]
fn a_sequence_of_schedules_checks_its_milestones_and_inner_states() {
    let make = || -> SequentialLR {
        // The second schedule was stepped before; the sequence starts it from 0 all the same.
        let mut stepped = StepLR::new(0.1, 2, 0.5);
        stepped.step(&mut SGD::new(vec![], 0.1));
        SequentialLR::new(vec![Box::new(ConstantLR::new(0.1, 0.5, 3)), Box::new(stepped)], &[4])
    };
    let wrong_count = std::panic::catch_unwind(|| {
        SequentialLR::new(vec![Box::new(StepLR::new(0.1, 2, 0.5))], &[3])
    });
    let payload = wrong_count.err().expect("one schedule and one milestone is refused");
    let message = payload.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("1 schedules need 0 milestones"), "{message}");

    let mut sched = make();
    let state = sched.state_dict();
    let inner = |state: &[(String, f64)]| {
        state.iter().find(|(n, _)| n == "_schedulers.1.last_epoch").map(|(_, v)| *v)
    };
    assert_eq!(inner(&state), Some(0.0), "the stepped schedule starts from epoch 0");
    let edit = |name: &str, value: f64| {
        let mut s = state.clone();
        s.iter_mut().filter(|(n, _)| n == name).for_each(|(_, v)| *v = value);
        s
    };
    let mut extra = state.clone();
    extra.push(("_schedulers.2.gamma".into(), 0.5));
    for (bad, message) in [
        (edit("_schedulers.1.step_size", 0.0), "`step_size` is 0"),
        (edit("_milestones.0", 2.5), "`_milestones.0` is 2.5"),
        (extra, "schedule 2, but there are 2 schedules"),
        (
            state[..state.len() - 1].to_vec(),
            "schedule 1 (`_schedulers.1.`): StepLR state: missing entry `gamma`",
        ),
    ] {
        let err = sched.load_state_dict(&bad).unwrap_err().to_string();
        assert!(err.contains(message), "expected `{message}` in: {err}");
        assert_eq!(sched.state_dict(), state, "a failed load changes nothing");
    }
    // The second schedule starts from its own epoch 0 at the milestone, and its state says so.
    let mut opt = SGD::new(vec![], 0.1);
    for _ in 0..5 {
        sched.step(&mut opt);
    }
    let inner_epoch = sched.state_dict().into_iter().find(|(n, _)| n == "_schedulers.1.last_epoch");
    assert_eq!(inner_epoch, Some(("_schedulers.1.last_epoch".to_string(), 1.0)));
    assert_eq!((sched.lr(), opt.param_groups()[0].lr), (0.1, 0.1));
}

#[test]
fn checkpoints_from_before_metadata_still_load() {
    let dir = temp_dir("version-0");
    manual_seed(2);
    let saved = model(8);
    let mut opt = Adam::new(saved.parameters(), 0.01);
    train_step(&saved, &mut opt, &mut ExponentialLR::new(0.01, 0.9));
    // The old layout: model.*, optimizer.* (with max_exp_avg_sq, kept then even without
    // amsgrad) and an int64 `epoch`.
    let mut entries: Vec<(String, Tensor)> =
        saved.state_dict().into_iter().map(|(n, t)| (format!("model.{n}"), t)).collect();
    for (n, t) in opt.state_dict() {
        if n.ends_with("exp_avg_sq") {
            entries.push((
                format!("optimizer.{}", n.replace("exp_avg_sq", "max_exp_avg_sq")),
                t.zeros_like(),
            ));
        }
        entries.push((format!("optimizer.{n}"), t));
    }
    entries.push(("epoch".into(), Tensor::from_vec(vec![4i64], &[])));
    let path = dir.join("old.safetensors");
    save_tensors(&entries, &path).unwrap();

    let mut model2 = model(8);
    let mut opt2 = Adam::new(model2.parameters(), 0.5);
    let info = Checkpoint::resume(&mut model2).optimizer(&mut opt2).load(&path).unwrap();
    assert_eq!((info.version, info.epoch, info.step, info.rng), (0, 4, 0, None));
    assert_eq!(bits(&model2), bits(&saved));
    assert_eq!(optimizer_bits(&opt2), optimizer_bits(&opt));
    let err = Checkpoint::resume(&mut model2)
        .scheduler(&mut StepLR::new(0.1, 1, 0.5))
        .load(&path)
        .unwrap_err();
    assert!(err.to_string().contains("holds no scheduler state"), "{err}");
    assert_eq!(load_checkpoint(&mut model2, &mut opt2, &path).unwrap(), 4);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Set in a child process of the test below: the checkpoint path to write to forever.
const WRITER: &str = "TAPEGRAD_TEST_CHECKPOINT_WRITER";
/// The first version the child writes.
const FIRST_VERSION: &str = "TAPEGRAD_TEST_CHECKPOINT_FIRST_VERSION";

/// A model and Adam state of about 12 MB, so that a save takes a while to write.
fn big() -> (Linear, Adam) {
    let model = Linear::new(1024, 1024);
    let mut opt = Adam::new(model.parameters(), 1e-3);
    model.forward(&Tensor::ones(&[1, 1024])).sum().backward();
    opt.step();
    (model, opt)
}

/// Saves version `v`: every parameter filled with `v`, and `v` as the step.
fn save_version(path: &Path, model: &Linear, opt: &Adam, v: u64) {
    for p in model.parameters() {
        p.set_data(&Tensor::full(p.shape(), v as f64));
    }
    Checkpoint::new(model)
        .optimizer(opt)
        .step(v)
        .extra("version", v.to_string())
        .save(path)
        .unwrap();
}

/// Loads the checkpoint and checks it is one whole version; returns the version.
fn load_version(path: &Path) -> u64 {
    let (mut model, mut opt) = big();
    let info = Checkpoint::resume(&mut model)
        .optimizer(&mut opt)
        .load(path)
        .unwrap_or_else(|e| panic!("the checkpoint must always load: {e}"));
    let v = info.step;
    assert_eq!(info.extra["version"], v.to_string());
    for p in model.parameters() {
        assert!(p.to_vec::<f32>().iter().all(|x| *x == v as f32), "parameters of one version, {v}");
    }
    v
}

fn temporaries(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".tmp-"))
        .count()
}

/// A child process saves checkpoints in a loop and is killed (SIGKILL on Unix) at 30
/// moments; after each kill the checkpoint loads, whole, at the same or a newer version.
/// Killed saves leave temporary files beside it, which loading ignores and later saves
/// remove (Linux).
#[test]
fn a_save_killed_at_any_moment_never_damages_the_previous_checkpoint() {
    if let Ok(path) = std::env::var(WRITER) {
        let first: u64 = std::env::var(FIRST_VERSION).unwrap().parse().unwrap();
        let (model, opt) = big();
        println!("ready");
        for v in first.. {
            save_version(Path::new(&path), &model, &opt, v);
        }
        unreachable!("the parent kills this process");
    }
    let dir = temp_dir("killed");
    let path = dir.join("ckpt.safetensors");
    let (model, opt) = big();
    let start = Instant::now();
    save_version(&path, &model, &opt, 0);
    let save_time = start.elapsed().max(Duration::from_millis(2));
    let (mut last, mut interrupted) = (0, 0);
    for i in 0..30u64 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "a_save_killed_at_any_moment_never_damages_the_previous_checkpoint",
                "--exact",
                "--nocapture",
            ])
            .args(["--test-threads", "1"])
            .env(WRITER, &path)
            .env(FIRST_VERSION, (last + 1).to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        // The harness may print `test {name} ... ` on the same line first.
        while !line.trim_end().ends_with("ready") {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "the writer exited: {:?}", child.wait());
        }
        // Pseudo-random moments spread over about three saves.
        let fraction = (i * 7919 % 101) as f64 / 100.0;
        std::thread::sleep(save_time.mul_f64(3.0 * fraction));
        child.kill().unwrap();
        child.wait().unwrap();
        if temporaries(&dir) > 0 {
            interrupted += 1;
        }
        let v = load_version(&path);
        assert!(v >= last, "version {v} after {last}: an older checkpoint replaced a newer one");
        last = v;
    }
    eprintln!(
        "30 kills: {interrupted} left a partial temporary file; the checkpoint reached version \
        {last}"
    );
    assert!(interrupted > 0, "no kill landed during a save; the test did not test anything");
    assert!(last > 0, "no child finished a save");
    // Only the checkpoint and temporaries are in the directory: nothing partial replaced it.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(name == "ckpt.safetensors" || name.starts_with(".ckpt.safetensors.tmp-"), "{name}");
    }
    if cfg!(target_os = "linux") {
        save_version(&path, &model, &opt, last + 1);
        assert_eq!(temporaries(&dir), 0, "a save removes the temporaries of killed saves");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn a_save_removes_only_temporaries_of_processes_that_are_gone() {
    let dir = temp_dir("stale");
    let path = dir.join("m.safetensors");
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let stale = dir.join(format!(".m.safetensors.tmp-{dead}-0"));
    let ours = dir.join(format!(".m.safetensors.tmp-{}-999999", std::process::id()));
    let other_file = dir.join(format!(".other.safetensors.tmp-{dead}-0"));
    for p in [&stale, &ours, &other_file] {
        std::fs::write(p, b"partial").unwrap();
    }
    save(&Linear::new(2, 2), &path).unwrap();
    assert!(!stale.exists(), "left by a process that is gone");
    assert!(ours.exists(), "this process may still be writing it");
    assert!(other_file.exists(), "another file's temporary");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// What a schedule that moves the momentum refuses, and what the optimizer's state of a
/// moved momentum holds.
#[test]
fn cycled_momentum_errors_and_state() {
    // An optimizer without momentum: the schedule says so, naming the optimizer.
    let mut adagrad = Adagrad::new(vec![], 0.1);
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        OneCycleLR::new(0.1, 10).apply(&mut adagrad)
    }))
    .unwrap_err();
    let message = err.downcast_ref::<String>().unwrap();
    assert!(message.contains("Adagrad has no momentum to set"), "{message}");
    OneCycleLR::new(0.1, 10).cycle_momentum(false).apply(&mut adagrad); // fine without

    // Stepping past total_steps, as PyTorch's.
    let mut sgd = SGD::new(vec![], 0.1);
    let mut sched = OneCycleLR::new(0.1, 3);
    for _ in 0..3 {
        sched.step(&mut sgd);
    }
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sched.step(&mut sgd)))
        .unwrap_err();
    let message = err.downcast_ref::<String>().unwrap();
    assert!(message.contains("stepped 4 times, but total_steps is 3"), "{message}");

    // The moved momentum is state, saved per group; the settings stay as built.
    let (a, b) = (Tensor::ones(&[2]).requires_grad(), Tensor::ones(&[1]).requires_grad());
    let mut opt = SGD::new(vec![a.clone()], 0.1).momentum(0.9);
    opt.add_param_group(vec![b.clone()], 0.2);
    assert!(!opt.state_dict().iter().any(|(n, _)| n.contains("momentum")));
    opt.set_momentum(0.8);
    let names: Vec<String> = opt.state_dict().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "param_groups.0.lr",
            "param_groups.0.momentum",
            "param_groups.1.lr",
            "param_groups.1.momentum"
        ]
    );
    assert_eq!(opt.settings()[0], ("momentum", "0.9".to_string()));
    let mut fresh = SGD::new(vec![a.clone()], 0.1).momentum(0.9);
    fresh.add_param_group(vec![b.clone()], 0.2);
    fresh.load_state_dict(&opt.state_dict()).unwrap();
    assert_eq!(fresh.current_momentum(), Some(0.8));
    assert_eq!(fresh.state_dict().len(), 4);
    // A state from before any move puts the built momentum back.
    let before = SGD::new(vec![a.clone()], 0.1).momentum(0.9);
    let mut two = SGD::new(vec![a.clone()], 0.1).momentum(0.9);
    two.set_momentum(0.5);
    two.load_state_dict(&before.state_dict()).unwrap();
    assert_eq!((two.current_momentum(), two.state_dict().len()), (Some(0.9), 1));

    // Refused: groups that disagree or lack one, a momentum for an optimizer without one.
    let mut state = opt.state_dict();
    state[3].1 = Tensor::from_vec(vec![0.7f64], &[]);
    let err = fresh.load_state_dict(&state).unwrap_err().to_string();
    assert!(err.contains("the groups' momenta differ ([0.8, 0.7])"), "{err}");
    state.remove(3);
    let err = fresh.load_state_dict(&state).unwrap_err().to_string();
    assert!(err.contains("missing entry `param_groups.1.momentum`"), "{err}");
    assert_eq!(fresh.current_momentum(), Some(0.8), "a failed load changes nothing");
    let with_momentum = [
        ("param_groups.0.lr".to_string(), Tensor::from_vec(vec![0.1f64], &[])),
        ("param_groups.0.momentum".to_string(), Tensor::from_vec(vec![0.9f64], &[])),
    ];
    let err = Adagrad::new(vec![], 0.1).load_state_dict(&with_momentum).unwrap_err().to_string();
    assert!(err.contains("Adagrad has no momentum to restore"), "{err}");

    // Schedule states that cannot be: past the end, a fraction out of range, a flag of 2,
    // a custom scale function on one side only.
    let mut one = OneCycleLR::new(0.1, 10);
    let mut state = one.state_dict();
    state[0].1 = 11.0;
    let err = one.load_state_dict(&state).unwrap_err().to_string();
    assert!(err.contains("`last_epoch` is 11, past `total_steps` 10"), "{err}");
    let mut state = one.state_dict();
    state[3].1 = 1.5;
    let err = one.load_state_dict(&state).unwrap_err().to_string();
    assert!(err.contains("`pct_start` is 1.5"), "{err}");
    let mut state = one.state_dict();
    state[10].1 = 2.0;
    let err = one.load_state_dict(&state).unwrap_err().to_string();
    assert!(err.contains("entry `three_phase` is 2; expected 0 or 1"), "{err}");
    let custom = CyclicLR::new(0.1, 1.0).scale_fn(|c| 1.0 / c, ScaleMode::Cycle);
    let err =
        CyclicLR::new(0.1, 1.0).load_state_dict(&custom.state_dict()).unwrap_err().to_string();
    assert!(err.contains("custom scale function"), "{err}");
    let err = CyclicLR::new(0.1, 1.0)
        .scale_fn(|c| c, ScaleMode::Cycle)
        .load_state_dict(&CyclicLR::new(0.1, 1.0).state_dict())
        .unwrap_err()
        .to_string();
    assert!(err.contains("this schedule has a custom scale function"), "{err}");

    // Once moved, SGD keeps its momentum buffer whatever the momentum (PyTorch keeps it at
    // 0): a state saved with the momentum at 0 resumes into an optimizer built with 0.9, and
    // one built with momentum 0 takes the buffer back before any schedule runs.
    let w = Tensor::from_vec(vec![1.0f64, -2.0], &[2]).requires_grad();
    let step = |opt: &mut dyn Optimizer| {
        opt.zero_grad();
        (&w * &w).sum().backward();
        opt.step();
    };
    let mut opt = SGD::new(vec![w.clone()], 0.1).momentum(0.9);
    let mut cyclic = CyclicLR::new(0.01, 0.1).step_size_up(2).base_momentum(0.0);
    cyclic.apply(&mut opt);
    for _ in 0..2 {
        step(&mut opt);
        cyclic.step(&mut opt);
    }
    assert_eq!(opt.current_momentum(), Some(0.0));
    let buffer = |opt: &dyn Optimizer| -> Vec<f64> {
        let state = opt.state_dict();
        state.iter().find(|(n, _)| n == "state.0.0.momentum_buffer").unwrap().1.to_vec::<f64>()
    };
    let kept = buffer(&opt);
    step(&mut opt); // at momentum 0: the buffer is neither used nor dropped
    assert_eq!(buffer(&opt), kept);
    let mut resumed = SGD::new(vec![w.clone()], 0.1).momentum(0.9);
    resumed.load_state_dict(&opt.state_dict()).unwrap();
    assert_eq!((resumed.current_momentum(), buffer(&resumed)), (Some(0.0), kept.clone()));
    let mut plain = SGD::new(vec![w.clone()], 0.1);
    let one = OneCycleLR::new(0.1, 10);
    one.apply(&mut plain);
    step(&mut plain);
    let mut plain_resumed = SGD::new(vec![w.clone()], 0.1);
    plain_resumed.load_state_dict(&plain.state_dict()).unwrap();
    assert_eq!(buffer(&plain_resumed), buffer(&plain));
    assert_eq!(plain_resumed.settings()[0], ("momentum", "0.0".to_string()));

    // In a sequence, the inner schedule's momentum comes through, and starts at its milestone.
    let mut opt = SGD::new(vec![], 0.1).momentum(0.9);
    let mut seq = SequentialLR::new(
        vec![Box::new(ConstantLR::new(0.01, 1.0, 5)), Box::new(OneCycleLR::new(0.1, 10))],
        &[2],
    );
    assert_eq!(seq.momentum_at(1), None);
    seq.step(&mut opt);
    seq.step(&mut opt);
    assert_eq!(opt.current_momentum(), seq.momentum_at(2));
    assert!((opt.current_momentum().unwrap() - 0.95).abs() < 1e-15);
}
