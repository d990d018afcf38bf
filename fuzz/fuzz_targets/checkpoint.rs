//! Arbitrary bytes as a training checkpoint: `Checkpoint::read_info` and
//! `Checkpoint::resume(model).optimizer(..).scheduler(..).load(..)` must return Ok or Err,
//! never panic. Loading is all or nothing: on an error the model's parameters and the
//! optimizer's and scheduler's settings must be exactly as before. A checkpoint that loads
//! must save again and read back.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tapegrad_nn::{Adam, Checkpoint, Linear, LrScheduler, Module, Optimizer, SchedulerState, StepLR};
use tapegrad_tape::manual_seed;

fn scratch() -> &'static (PathBuf, PathBuf) {
    static PATHS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    PATHS.get_or_init(|| {
        let shm = PathBuf::from("/dev/shm");
        let base = if shm.is_dir() { shm } else { std::env::temp_dir() };
        let dir = base.join(format!("tapegrad-fuzz-checkpoint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        (dir.join("input.safetensors"), dir.join("resaved.safetensors"))
    })
}

/// Everything a failed load must leave untouched, as comparable values.
type Snapshot = (Vec<(String, Vec<usize>, Vec<u32>)>, Vec<u64>, Vec<(String, u64)>);

fn snapshot(model: &Linear, opt: &Adam, sched: &StepLR) -> Snapshot {
    let params = model
        .named_parameters()
        .into_iter()
        .map(|(n, t)| {
            (n, t.shape().to_vec(), t.to_vec::<f32>().iter().map(|v| v.to_bits()).collect())
        })
        .collect();
    let lrs = opt.param_groups().iter().map(|g| g.lr.to_bits()).collect();
    let sched = sched.state_dict().into_iter().map(|(k, v)| (k, v.to_bits())).collect();
    (params, lrs, sched)
}

fuzz_target!(|data: &[u8]| {
    let (input, resaved) = scratch();
    std::fs::write(input, data).expect("write the scratch file");
    let _ = Checkpoint::read_info(input);

    // The same starting state every run, whatever a previous run restored.
    manual_seed(0);
    let mut model = Linear::new(3, 2);
    let mut opt = Adam::new(model.parameters(), 1e-3);
    let mut sched = StepLR::new(1e-3, 2, 0.5);
    let before = snapshot(&model, &opt, &sched);
    let loaded =
        Checkpoint::resume(&mut model).optimizer(&mut opt).scheduler(&mut sched).load(input);
    match loaded {
        Err(_) => assert!(
            snapshot(&model, &opt, &sched) == before,
            "a failed load changed the model or optimizer"
        ),
        Ok(info) => {
            Checkpoint::new(&model)
                .optimizer(&opt)
                .scheduler(&sched)
                .step(info.step)
                .epoch(info.epoch)
                .save(resaved)
                .expect("saving a checkpoint that just loaded");
            let again = Checkpoint::read_info(resaved).expect("reading a checkpoint just saved");
            assert_eq!((again.step, again.epoch), (info.step, info.epoch));
        }
    }
});
