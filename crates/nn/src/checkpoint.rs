//! Training checkpoints: a model, its optimizer and scheduler, the random generator's state
//! and the step, in one safetensors file, so that a run resumes exactly where it stopped.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use tapegrad_tape::{
    DType, Error, Generator, Result, RngState, Tensor, get_rng_state, set_rng_state,
};

use crate::io::{Metadata, format_err, read, serialize, write_atomically};
use crate::{Module, Optimizer, SchedulerState};

/// Saves a training checkpoint of a model and its optimizer at an epoch: shorthand for
/// `Checkpoint::new(model).optimizer(optimizer).epoch(epoch).save(path)` (which also
/// records the random generator's state).
///
/// ```
/// use tapegrad_nn::{Adam, Linear, Module, load_checkpoint, save_checkpoint};
/// let path =
///     std::env::temp_dir().join(format!("tapegrad-doc-ckpt-{}.safetensors", std::process::id()));
/// let model = Linear::new(2, 2);
/// let opt = Adam::new(model.parameters(), 1e-3);
/// save_checkpoint(&model, &opt, 7, &path).unwrap();
/// let mut model2 = Linear::new(2, 2);
/// let mut opt2 = Adam::new(model2.parameters(), 1e-3);
/// assert_eq!(load_checkpoint(&mut model2, &mut opt2, &path).unwrap(), 7);
/// # std::fs::remove_file(&path).unwrap();
/// ```
pub fn save_checkpoint(
    model: &dyn Module,
    optimizer: &dyn Optimizer,
    epoch: usize,
    path: impl AsRef<Path>,
) -> Result<()> {
    Checkpoint::new(model).optimizer(optimizer).epoch(epoch as u64).save(path)
}

/// Restores a model and its optimizer (and the random generator, if recorded) from a
/// checkpoint and returns its epoch: shorthand for
/// `Checkpoint::resume(model).optimizer(optimizer).load(path)`. Reads the files of
/// [`save_checkpoint`], of [`Checkpoint::save`], and of tapegrad before checkpoints had
/// metadata (tensors `model.*`, `optimizer.*` and `epoch`). All or nothing: on an error
/// neither the model nor the optimizer changes.
///
/// ```
/// use tapegrad_nn::{Forward, Linear, Module, Optimizer, SGD, load_checkpoint, save_checkpoint};
/// use tapegrad_tape::Tensor;
/// let dir = std::env::temp_dir().join(format!("tapegrad-doc-load-ckpt-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("checkpoint.safetensors");
/// let model = Linear::new(2, 1);
/// let mut opt = SGD::new(model.parameters(), 0.1).momentum(0.9);
/// model.forward(&Tensor::ones(&[1, 2])).sum_to_shape(&[]).backward();
/// opt.step(); // now there is a momentum buffer to save
/// save_checkpoint(&model, &opt, 3, &path).unwrap();
/// let mut model2 = Linear::new(2, 1);
/// let mut opt2 = SGD::new(model2.parameters(), 0.1).momentum(0.9);
/// assert_eq!(load_checkpoint(&mut model2, &mut opt2, &path).unwrap(), 3);
/// assert_eq!(model2.weight.to_vec::<f32>(), model.weight.to_vec::<f32>());
/// let state = |o: &SGD| {
///     o.state_dict().into_iter().map(|(n, t)| (n, t.to_vec::<f64>())).collect::<Vec<_>>()
/// };
/// assert_eq!(state(&opt2), state(&opt));
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn load_checkpoint(
    model: &mut dyn Module,
    optimizer: &mut dyn Optimizer,
    path: impl AsRef<Path>,
) -> Result<usize> {
    let path = path.as_ref();
    let info = Checkpoint::resume(model).optimizer(optimizer).load(path)?;
    usize::try_from(info.epoch).map_err(|_| {
        format_err(path, format!("metadata `epoch` is {}, too large for this machine", info.epoch))
    })
}

/// What a checkpoint's `__metadata__` says it is.
const FORMAT: &str = "tapegrad.checkpoint";
/// The checkpoint layout this version writes; 0 stands for the older files without metadata.
const VERSION: u32 = 1;

/// A training checkpoint: everything needed to resume a run exactly, in one safetensors
/// file. PyTorch users write
/// `torch.save({'model': ..., 'optimizer': ..., 'scheduler': ..., 'rng': ..., 'step': ...}, path)`;
/// here a builder names the parts and [`Checkpoint::save`] writes them, and
/// [`Checkpoint::resume`] names the parts to restore and [`Resume::load`] restores them.
///
/// Resuming from a checkpoint gives bit-identical results to a run that was never
/// interrupted: the model's parameters and buffers, the optimizer's state and learning
/// rates, the scheduler's epoch and settings, and the calling thread's random stream (what
/// dropout masks and `randn` draw) all come back. The file's layout:
///
/// - tensors `model.{name}` (the model's [`Module::state_dict`]) and `optimizer.{name}` (the
///   optimizer's [`Optimizer::state_dict`], PyTorch's names: `state.0.0.exp_avg`, ...);
/// - text in the safetensors `__metadata__`: `format` (`tapegrad.checkpoint`), `version`,
///   `step`, `epoch`, `rng` (the generator's state as 64 hex digits), `optimizer.kind` and
///   the optimizer's settings (`optimizer.betas`, ...), `scheduler.kind` and the
///   scheduler's state (`scheduler.last_epoch`, ...), and the user's `extra.{key}`.
///
/// Saving is atomic: the file is written under a temporary name beside the destination,
/// flushed to disk and renamed over it, so a crash or kill at any moment leaves either the
/// previous checkpoint or the new one, whole. A killed save leaves its temporary file
/// (`.{name}.tmp-{pid}-{n}`) behind; loading never looks at it, and on Linux the next save
/// to the same path removes it.
///
/// Only the calling thread's random stream is saved (threads draw from their own streams);
/// a worker thread that draws random numbers must save and restore its own with
/// [`get_rng_state`] and [`set_rng_state`].
///
/// ```
/// use tapegrad_nn::{Adam, Checkpoint, Dropout, Forward, Linear, LrScheduler, Module, Optimizer, ReLU, Sequential, StepLR};
/// use tapegrad_ops::prelude::*;
/// use tapegrad_tape::{Tensor, manual_seed};
/// let path = std::env::temp_dir().join(format!("tapegrad-doc-checkpoint-{}.safetensors", std::process::id()));
/// let build = || {
///     let model = Sequential::new().add(Linear::new(4, 8)).add(ReLU).add(Dropout::new(0.5)).add(Linear::new(8, 1));
///     let opt = Adam::new(model.parameters(), 0.01);
///     (model, opt, StepLR::new(0.01, 2, 0.5))
/// };
/// let x = Tensor::ones(&[3, 4]);
/// let train = |model: &Sequential, opt: &mut Adam, sched: &mut StepLR| {
///     let loss = model.forward(&x).square().mean();
///     opt.zero_grad();
///     loss.backward();
///     opt.step();
///     sched.step(opt);
///     loss.item()
/// };
///
/// manual_seed(0);
/// let (model, mut opt, mut sched) = build();
/// for _ in 0..3 {
///     train(&model, &mut opt, &mut sched);
/// }
/// Checkpoint::new(&model).optimizer(&opt).scheduler(&sched).step(3).extra("run", "demo").save(&path).unwrap();
/// let next = train(&model, &mut opt, &mut sched); // the run goes on...
///
/// // ...and a new process resumes it from the file.
/// manual_seed(42);
/// let (mut model2, mut opt2, mut sched2) = build();
/// let info = Checkpoint::resume(&mut model2).optimizer(&mut opt2).scheduler(&mut sched2).load(&path).unwrap();
/// assert_eq!((info.step, info.extra["run"].as_str()), (3, "demo"));
/// assert_eq!(train(&model2, &mut opt2, &mut sched2).to_bits(), next.to_bits()); // same dropout mask too
/// # std::fs::remove_file(&path).unwrap();
/// ```
pub struct Checkpoint<'a> {
    model: &'a dyn Module,
    optimizer: Option<&'a dyn Optimizer>,
    scheduler: Option<&'a dyn SchedulerState>,
    step: u64,
    epoch: u64,
    rng: Option<RngState>,
    extra: BTreeMap<String, String>,
}

impl<'a> Checkpoint<'a> {
    /// A checkpoint of `model`, at step 0 and epoch 0, with no optimizer or scheduler yet.
    ///
    /// ```
    /// use tapegrad_nn::{Checkpoint, Linear};
    /// let path = std::env::temp_dir()
    ///     .join(format!("tapegrad-doc-ckpt-new-{}.safetensors", std::process::id()));
    /// Checkpoint::new(&Linear::new(2, 2)).save(&path).unwrap(); // weights and random state only
    /// let info = Checkpoint::read_info(&path).unwrap();
    /// assert_eq!((info.step, info.optimizer), (0, None));
    /// # std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn new(model: &'a dyn Module) -> Checkpoint<'a> {
        Checkpoint {
            model,
            optimizer: None,
            scheduler: None,
            step: 0,
            epoch: 0,
            rng: None,
            extra: BTreeMap::new(),
        }
    }

    /// Includes the optimizer: its state, learning rates, kind and settings.
    ///
    /// ```
    /// use tapegrad_nn::{Checkpoint, Linear, Module, SGD};
    /// let path = std::env::temp_dir()
    ///     .join(format!("tapegrad-doc-ckpt-opt-{}.safetensors", std::process::id()));
    /// let model = Linear::new(2, 2);
    /// let opt = SGD::new(model.parameters(), 0.1).momentum(0.9);
    /// Checkpoint::new(&model).optimizer(&opt).save(&path).unwrap();
    /// assert_eq!(Checkpoint::read_info(&path).unwrap().optimizer.as_deref(), Some("SGD"));
    /// # std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn optimizer(mut self, optimizer: &'a dyn Optimizer) -> Self {
        self.optimizer = Some(optimizer);
        self
    }

    /// Includes the learning-rate scheduler: its kind and state (epoch and settings).
    ///
    /// ```
    /// use tapegrad_nn::{Checkpoint, CosineAnnealingLR, Linear};
    /// let path = std::env::temp_dir()
    ///     .join(format!("tapegrad-doc-ckpt-sched-{}.safetensors", std::process::id()));
    /// let sched = CosineAnnealingLR::new(0.1, 10, 0.0);
    /// Checkpoint::new(&Linear::new(2, 2)).scheduler(&sched).save(&path).unwrap();
    /// assert_eq!(
    ///     Checkpoint::read_info(&path).unwrap().scheduler.as_deref(),
    ///     Some("CosineAnnealingLR")
    /// );
    /// # std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn scheduler(mut self, scheduler: &'a dyn SchedulerState) -> Self {
        self.scheduler = Some(scheduler);
        self
    }

    /// Records the training step (the count of optimizer steps or batches done, as the
    /// training loop counts them), to resume the loop from.
    ///
    /// ```
    /// use tapegrad_nn::{Checkpoint, Linear};
    /// let path = std::env::temp_dir()
    ///     .join(format!("tapegrad-doc-ckpt-step-{}.safetensors", std::process::id()));
    /// Checkpoint::new(&Linear::new(2, 2)).step(1500).save(&path).unwrap();
    /// assert_eq!(Checkpoint::read_info(&path).unwrap().step, 1500);
    /// # std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn step(mut self, step: u64) -> Self {
        self.step = step;
        self
    }

    /// Records the epoch.
    ///
    /// ```
    /// use tapegrad_nn::{Checkpoint, Linear};
    /// let path = std::env::temp_dir()
    ///     .join(format!("tapegrad-doc-ckpt-epoch-{}.safetensors", std::process::id()));
    /// Checkpoint::new(&Linear::new(2, 2)).epoch(4).save(&path).unwrap();
    /// assert_eq!(Checkpoint::read_info(&path).unwrap().epoch, 4);
    /// # std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn epoch(mut self, epoch: u64) -> Self {
        self.epoch = epoch;
        self
    }

    /// Records a value of the user's own (a best score, a config hash, a data-loader
    /// position) under `key`; setting a key again replaces its value.
    ///
    /// ```
    /// use tapegrad_nn::{Checkpoint, Linear};
    /// let path = std::env::temp_dir()
    ///     .join(format!("tapegrad-doc-ckpt-extra-{}.safetensors", std::process::id()));
    /// Checkpoint::new(&Linear::new(2, 2))
    ///     .extra("best_accuracy", format!("{}", 0.975))
    ///     .save(&path)
    ///     .unwrap();
    /// let info = Checkpoint::read_info(&path).unwrap();
    /// assert_eq!(info.extra["best_accuracy"].parse::<f64>().unwrap(), 0.975);
    /// # std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn extra(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// Records `state` as the random generator's state instead of the calling thread's
    /// state at [`Checkpoint::save`] (for a checkpoint written by another thread, or a state
    /// taken earlier with [`get_rng_state`]).
    ///
    /// ```
    /// use tapegrad_nn::{Checkpoint, Linear};
    /// use tapegrad_tape::get_rng_state;
    /// let path = std::env::temp_dir()
    ///     .join(format!("tapegrad-doc-ckpt-rng-{}.safetensors", std::process::id()));
    /// let state = get_rng_state();
    /// let model = Linear::new(2, 2); // draws random numbers
    /// Checkpoint::new(&model).rng_state(state).save(&path).unwrap();
    /// assert_eq!(Checkpoint::read_info(&path).unwrap().rng, Some(state));
    /// # std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn rng_state(mut self, state: RngState) -> Self {
        self.rng = Some(state);
        self
    }

    /// Writes the checkpoint to `path` atomically (see [`Checkpoint`]), with the calling
    /// thread's random state unless [`Checkpoint::rng_state`] gave one.
    ///
    /// ```
    /// use tapegrad_nn::{Checkpoint, Linear};
    /// let model = Linear::new(2, 2);
    /// let err = Checkpoint::new(&model).save("/nonexistent/dir/ckpt.safetensors").unwrap_err();
    /// assert!(err.to_string().contains("/nonexistent/dir/ckpt.safetensors"));
    /// ```
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let rng = self.rng.unwrap_or_else(get_rng_state);
        let mut meta: HashMap<String, String> = [
            ("format", FORMAT.to_string()),
            ("version", VERSION.to_string()),
            ("step", self.step.to_string()),
            ("epoch", self.epoch.to_string()),
            ("rng", rng.to_hex()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let mut tensors: Vec<(String, Tensor)> =
            self.model.state_dict().into_iter().map(|(n, t)| (format!("model.{n}"), t)).collect();
        if let Some(optimizer) = self.optimizer {
            meta.insert("optimizer.kind".into(), optimizer.kind().into());
            for (key, value) in optimizer.settings() {
                if key == "kind" {
                    return Err(format_err(
                        path,
                        "an optimizer setting named `kind` clashes with `optimizer.kind`",
                    ));
                }
                meta.insert(format!("optimizer.{key}"), value);
            }
            tensors.extend(
                optimizer.state_dict().into_iter().map(|(n, t)| (format!("optimizer.{n}"), t)),
            );
        }
        if let Some(scheduler) = self.scheduler {
            meta.insert("scheduler.kind".into(), scheduler.kind().into());
            for (key, value) in scheduler.state_dict() {
                if key == "kind" {
                    return Err(format_err(
                        path,
                        "a scheduler state entry named `kind` clashes with `scheduler.kind`",
                    ));
                }
                // `Debug` gives the shortest text that parses back to the same f64.
                meta.insert(format!("scheduler.{key}"), format!("{value:?}"));
            }
        }
        for (key, value) in &self.extra {
            meta.insert(format!("extra.{key}"), value.clone());
        }
        write_atomically(path, &serialize(path, &tensors, Some(meta))?)
    }

    /// Starts restoring a checkpoint into `model`: name the optimizer and scheduler to
    /// restore too, then [`Resume::load`] the file. The counterpart of
    /// [`Checkpoint::new`]'s builder.
    ///
    /// ```
    /// use tapegrad_nn::{Checkpoint, Linear};
    /// let path = std::env::temp_dir()
    ///     .join(format!("tapegrad-doc-ckpt-resume-{}.safetensors", std::process::id()));
    /// let model = Linear::new(3, 2);
    /// Checkpoint::new(&model).step(10).save(&path).unwrap();
    /// let mut copy = Linear::new(3, 2);
    /// assert_eq!(Checkpoint::resume(&mut copy).load(&path).unwrap().step, 10);
    /// assert_eq!(copy.weight.to_vec::<f32>(), model.weight.to_vec::<f32>());
    /// # std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn resume(model: &'a mut dyn Module) -> Resume<'a> {
        Resume { model, optimizer: None, scheduler: None, restore_rng: true }
    }

    /// Reads and checks a checkpoint file and returns what it records (step, epoch, extras,
    /// which parts it holds) without restoring anything: to pick a checkpoint, or to read a
    /// step before building the model.
    ///
    /// ```
    /// use tapegrad_nn::{Checkpoint, Linear};
    /// let path = std::env::temp_dir()
    ///     .join(format!("tapegrad-doc-ckpt-info-{}.safetensors", std::process::id()));
    /// Checkpoint::new(&Linear::new(2, 2)).step(7).epoch(1).save(&path).unwrap();
    /// let info = Checkpoint::read_info(&path).unwrap();
    /// assert_eq!((info.version, info.step, info.epoch, info.scheduler), (1, 7, 1, None));
    /// assert!(info.rng.is_some());
    /// # std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn read_info(path: impl AsRef<Path>) -> Result<CheckpointInfo> {
        let path = path.as_ref();
        let (tensors, metadata) = read(path)?;
        Ok(parse_checkpoint(path, tensors, metadata)?.info)
    }
}

/// What a checkpoint records besides the tensors, as [`Resume::load`] and
/// [`Checkpoint::read_info`] return it.
///
/// ```
/// use tapegrad_nn::{Checkpoint, Linear};
/// let path = std::env::temp_dir()
///     .join(format!("tapegrad-doc-ckpt-struct-{}.safetensors", std::process::id()));
/// Checkpoint::new(&Linear::new(2, 2)).extra("note", "warm start").save(&path).unwrap();
/// let info = Checkpoint::read_info(&path).unwrap();
/// assert_eq!(info.extra.get("note").map(String::as_str), Some("warm start"));
/// # std::fs::remove_file(&path).unwrap();
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckpointInfo {
    /// The file's layout version: 1, or 0 for a file from before checkpoints had metadata.
    pub version: u32,
    /// The training step recorded by [`Checkpoint::step`] (0 in version 0 files).
    pub step: u64,
    /// The epoch recorded by [`Checkpoint::epoch`].
    pub epoch: u64,
    /// The optimizer's kind (`"Adam"`, ...), if the file holds an optimizer and says which
    /// (version 0 files hold one but do not say).
    pub optimizer: Option<String>,
    /// The scheduler's kind (`"StepLR"`, ...), if the file holds a scheduler.
    pub scheduler: Option<String>,
    /// The random generator's state, if the file holds it.
    pub rng: Option<RngState>,
    /// The user's values from [`Checkpoint::extra`].
    pub extra: BTreeMap<String, String>,
}

/// Restores a checkpoint into a model and the optimizer and scheduler named, made by
/// [`Checkpoint::resume`].
///
/// Everything is checked before anything changes: the file itself, that it holds each
/// part asked for, that the optimizer and scheduler are the same kinds with the same
/// optimizer settings, and that every state fits. On any error the model, optimizer,
/// scheduler and random generator are as they were, and the message names the file and
/// what disagrees. Parts of the file that were not asked for are left alone (a model alone
/// can be restored from a full checkpoint, for evaluation).
///
/// ```
/// use tapegrad_nn::{Adam, Checkpoint, Linear, Module, SGD};
/// let path = std::env::temp_dir()
///     .join(format!("tapegrad-doc-resume-{}.safetensors", std::process::id()));
/// let model = Linear::new(2, 2);
/// Checkpoint::new(&model).optimizer(&Adam::new(model.parameters(), 1e-3)).save(&path).unwrap();
/// let mut other = Linear::new(2, 2);
/// let before = other.weight.to_vec::<f32>();
/// let mut sgd = SGD::new(other.parameters(), 0.1);
/// let err =
///     Checkpoint::resume(&mut other).optimizer(&mut sgd).load(&path).unwrap_err().to_string();
/// assert!(err.contains("the checkpoint's optimizer is Adam, this one is SGD"), "{err}");
/// assert_eq!(other.weight.to_vec::<f32>(), before); // nothing changed
///     
/// # std::fs::remove_file(&path).unwrap();
/// ```
#[must_use = "nothing is restored until `load` is called"]
pub struct Resume<'a> {
    model: &'a mut dyn Module,
    optimizer: Option<&'a mut dyn Optimizer>,
    scheduler: Option<&'a mut dyn SchedulerState>,
    restore_rng: bool,
}

impl<'a> Resume<'a> {
    /// Restores the optimizer too (its state, learning rates and step counts). The file must
    /// hold an optimizer of the same kind and settings.
    ///
    /// ```
    /// use tapegrad_nn::{Checkpoint, Linear, Module, Optimizer, SGD};
    /// let path = std::env::temp_dir()
    ///     .join(format!("tapegrad-doc-resume-opt-{}.safetensors", std::process::id()));
    /// let model = Linear::new(2, 2);
    /// Checkpoint::new(&model).optimizer(&SGD::new(model.parameters(), 0.05)).save(&path).unwrap();
    /// let mut model2 = Linear::new(2, 2);
    /// let mut opt2 = SGD::new(model2.parameters(), 0.1);
    /// Checkpoint::resume(&mut model2).optimizer(&mut opt2).load(&path).unwrap();
    /// assert_eq!(opt2.param_groups()[0].lr, 0.05);
    /// # std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn optimizer(mut self, optimizer: &'a mut dyn Optimizer) -> Self {
        self.optimizer = Some(optimizer);
        self
    }

    /// Restores the scheduler too (its epoch and settings). The file must hold a scheduler
    /// of the same kind.
    ///
    /// ```
    /// use tapegrad_nn::{Checkpoint, Linear, LrScheduler, SGD, StepLR};
    /// let path = std::env::temp_dir()
    ///     .join(format!("tapegrad-doc-resume-sched-{}.safetensors", std::process::id()));
    /// let mut sched = StepLR::new(0.1, 2, 0.5);
    /// for _ in 0..5 {
    ///     sched.step(&mut SGD::new(vec![], 0.1));
    /// }
    /// Checkpoint::new(&Linear::new(2, 2)).scheduler(&sched).save(&path).unwrap();
    /// let mut sched2 = StepLR::new(0.1, 2, 0.5);
    /// Checkpoint::resume(&mut Linear::new(2, 2)).scheduler(&mut sched2).load(&path).unwrap();
    /// assert_eq!((sched2.epoch(), sched2.lr()), (5, 0.025));
    /// # std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn scheduler(mut self, scheduler: &'a mut dyn SchedulerState) -> Self {
        self.scheduler = Some(scheduler);
        self
    }

    /// Whether to restore the calling thread's random generator from the file (the default
    /// is yes, when the file holds a state: dropout masks and other random draws then
    /// continue as in the saved run). Pass `false` to load for evaluation without touching
    /// the random stream.
    ///
    /// ```
    /// use tapegrad_nn::{Checkpoint, Linear};
    /// use tapegrad_tape::get_rng_state;
    /// let path = std::env::temp_dir()
    ///     .join(format!("tapegrad-doc-resume-rng-{}.safetensors", std::process::id()));
    /// Checkpoint::new(&Linear::new(2, 2)).save(&path).unwrap();
    /// let mut model = Linear::new(2, 2); // draws from the random stream
    /// let state = get_rng_state();
    /// Checkpoint::resume(&mut model).restore_rng(false).load(&path).unwrap();
    /// assert_eq!(get_rng_state(), state);
    /// # std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn restore_rng(mut self, restore: bool) -> Self {
        self.restore_rng = restore;
        self
    }

    /// Reads `path`, checks everything, then restores the model, the optimizer and scheduler
    /// named and the random generator, and returns what else the file records. All or
    /// nothing (see [`Resume`]).
    ///
    /// ```
    /// use tapegrad_nn::{Checkpoint, Linear, Sequential};
    /// let path = std::env::temp_dir()
    ///     .join(format!("tapegrad-doc-resume-load-{}.safetensors", std::process::id()));
    /// Checkpoint::new(&Linear::new(3, 2)).save(&path).unwrap();
    /// let mut wrong = Sequential::new().add(Linear::new(3, 2));
    /// let err = Checkpoint::resume(&mut wrong).load(&path).unwrap_err().to_string();
    /// assert!(err.contains("model: missing entry `0.weight`"), "{err}");
    /// assert!(err.starts_with(&path.display().to_string()));
    /// # std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn load(self, path: impl AsRef<Path>) -> Result<CheckpointInfo> {
        let path = path.as_ref();
        let (tensors, metadata) = read(path)?;
        let file = parse_checkpoint(path, tensors, metadata)?;
        let Resume { model, optimizer, scheduler, restore_rng } = self;
        // In `part`'s terms: an error from a state dict, with the file's name.
        let in_file = |part: &'static str| {
            move |e: Error| match e {
                Error::Format { message, .. } => format_err(path, format!("{part}: {message}")),
                other => other,
            }
        };
        // First every check, in an order that reports the most basic disagreement first.
        if let Some(optimizer) = &optimizer {
            let Some(saved) = &file.optimizer else {
                return Err(format_err(
                    path,
                    "the checkpoint holds no optimizer state (it was saved without one)",
                ));
            };
            if let Some(kind) = &saved.kind {
                if kind != optimizer.kind() {
                    return Err(format_err(
                        path,
                        format!(
                            "the checkpoint's optimizer is {kind}, this one is {}",
                            optimizer.kind()
                        ),
                    ));
                }
                let ours: BTreeMap<String, String> =
                    optimizer.settings().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                let differences: Vec<String> = saved
                    .settings
                    .keys()
                    .chain(ours.keys())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .filter(|key| saved.settings.get(*key) != ours.get(*key))
                    .map(|key| {
                        let show =
                            |v: Option<&String>| v.map_or("not set".to_string(), |v| v.clone());
                        format!(
                            "`{key}` is {} in the checkpoint, {} here",
                            show(saved.settings.get(key)),
                            show(ours.get(key))
                        )
                    })
                    .collect();
                if !differences.is_empty() {
                    return Err(format_err(
                        path,
                        format!(
                            "the {kind} settings differ: {}; build the optimizer with the checkpoint's settings to \
                             resume the same run",
                            differences.join(", ")
                        ),
                    ));
                }
            }
            optimizer.check_state_dict(&saved.state).map_err(in_file("optimizer"))?;
        }
        if let Some(scheduler) = &scheduler {
            let Some((kind, state)) = &file.scheduler else {
                return Err(format_err(
                    path,
                    "the checkpoint holds no scheduler state (it was saved without one)",
                ));
            };
            if kind != scheduler.kind() {
                return Err(format_err(
                    path,
                    format!(
                        "the checkpoint's scheduler is {kind}, this one is {}",
                        scheduler.kind()
                    ),
                ));
            }
            scheduler.check_state_dict(state).map_err(in_file("scheduler"))?;
        }
        // Then the changes. The model checks its entries before it changes any, and nothing
        // after it can fail on a state that passed the checks above.
        model.load_state_dict(&file.model).map_err(in_file("model"))?;
        if let (Some(optimizer), Some(saved)) = (optimizer, &file.optimizer) {
            optimizer.load_state_dict(&saved.state).map_err(in_file("optimizer"))?;
        }
        if let (Some(scheduler), Some((_, state))) = (scheduler, &file.scheduler) {
            scheduler.load_state_dict(state).map_err(in_file("scheduler"))?;
        }
        if let (true, Some(state)) = (restore_rng, file.info.rng) {
            set_rng_state(state).map_err(|e| format_err(path, format!("rng: {e}")))?;
        }
        Ok(file.info)
    }
}

/// An optimizer's part of a checkpoint.
struct SavedOptimizer {
    /// `None` in version 0 files, which did not record it.
    kind: Option<String>,
    settings: BTreeMap<String, String>,
    state: Vec<(String, Tensor)>,
}

/// A checkpoint file, checked on its own and split into its parts.
struct CheckpointFile {
    info: CheckpointInfo,
    model: Vec<(String, Tensor)>,
    optimizer: Option<SavedOptimizer>,
    scheduler: Option<(String, Vec<(String, f64)>)>,
}

/// Splits a checkpoint's tensors and metadata into its parts, checking every metadata value
/// and that every entry belongs to a part.
fn parse_checkpoint(
    path: &Path,
    tensors: Vec<(String, Tensor)>,
    mut meta: Metadata,
) -> Result<CheckpointFile> {
    match meta.remove("format") {
        Some(format) if format == FORMAT => {}
        Some(other) => {
            return Err(format_err(
                path,
                format!("metadata `format` is `{other}`: not a tapegrad checkpoint (`{FORMAT}`)"),
            ));
        }
        None if tensors.iter().any(|(n, _)| n == "epoch") => return parse_version_0(path, tensors),
        None => {
            return Err(format_err(
                path,
                "not a tapegrad checkpoint: no `format` metadata (nor the `epoch` entry of older checkpoints); a \
                 parameter file loads with `load`",
            ));
        }
    }
    let number = |meta: &mut Metadata, key: &str| -> Result<u64> {
        let text = meta
            .remove(key)
            .ok_or_else(|| format_err(path, format!("missing metadata `{key}`")))?;
        text.parse::<u64>().map_err(|_| {
            format_err(path, format!("metadata `{key}` is `{text}`; expected a whole number"))
        })
    };
    let version = number(&mut meta, "version")?;
    if version != u64::from(VERSION) {
        return Err(format_err(
            path,
            format!(
                "checkpoint version {version}: this tapegrad reads version {VERSION} (and files \
                without a version)"
            ),
        ));
    }
    let step = number(&mut meta, "step")?;
    let epoch = number(&mut meta, "epoch")?;
    let rng = match meta.remove("rng") {
        None => None,
        Some(hex) => {
            let state = RngState::from_hex(&hex).ok_or_else(|| {
                format_err(
                    path,
                    format!("metadata `rng` is `{hex}`; expected 64 hexadecimal digits"),
                )
            })?;
            if Generator::from_state(state).is_none() {
                return Err(format_err(
                    path,
                    "metadata `rng` is the all-zero state, which no generator reaches",
                ));
            }
            Some(state)
        }
    };
    let optimizer_kind = meta.remove("optimizer.kind");
    let scheduler_kind = meta.remove("scheduler.kind");
    let (mut settings, mut scheduler_state, mut extra) =
        (BTreeMap::new(), Vec::new(), BTreeMap::new());
    for (key, value) in meta {
        if let Some(name) = key.strip_prefix("extra.") {
            extra.insert(name.to_string(), value);
        } else if let (Some(name), Some(_)) = (key.strip_prefix("optimizer."), &optimizer_kind) {
            settings.insert(name.to_string(), value);
        } else if let (Some(name), Some(_)) = (key.strip_prefix("scheduler."), &scheduler_kind) {
            let number = value.parse::<f64>().map_err(|_| {
                format_err(path, format!("metadata `{key}` is `{value}`; expected a number"))
            })?;
            scheduler_state.push((name.to_string(), number));
        } else {
            return Err(format_err(path, format!("unexpected metadata `{key}`")));
        }
    }
    let (mut model, mut optimizer_state) = (Vec::new(), Vec::new());
    for (name, tensor) in tensors {
        if let Some(rest) = name.strip_prefix("model.") {
            model.push((rest.to_string(), tensor));
        } else if let (Some(rest), Some(_)) = (name.strip_prefix("optimizer."), &optimizer_kind) {
            optimizer_state.push((rest.to_string(), tensor));
        } else {
            return Err(format_err(
                path,
                format!(
                    "unexpected entry `{name}`; a checkpoint holds `model.*` entries, and `optimizer.*` entries \
                     with metadata `optimizer.kind`"
                ),
            ));
        }
    }
    let info = CheckpointInfo {
        version: VERSION,
        step,
        epoch,
        optimizer: optimizer_kind.clone(),
        scheduler: scheduler_kind.clone(),
        rng,
        extra,
    };
    let optimizer = optimizer_kind.map(|kind| SavedOptimizer {
        kind: Some(kind),
        settings,
        state: optimizer_state,
    });
    Ok(CheckpointFile {
        info,
        model,
        optimizer,
        scheduler: scheduler_kind.map(|kind| (kind, scheduler_state)),
    })
}

/// A checkpoint from before checkpoints had metadata: tensors `model.*`, `optimizer.*` and
/// `epoch`, no step, scheduler or random state.
fn parse_version_0(path: &Path, tensors: Vec<(String, Tensor)>) -> Result<CheckpointFile> {
    let (mut model, mut state, mut epoch) = (Vec::new(), Vec::new(), None);
    for (name, tensor) in tensors {
        if let Some(rest) = name.strip_prefix("model.") {
            model.push((rest.to_string(), tensor));
        } else if let Some(rest) = name.strip_prefix("optimizer.") {
            state.push((rest.to_string(), tensor));
        } else if name == "epoch" {
            epoch = Some(tensor);
        } else {
            return Err(format_err(
                path,
                format!(
                    "unexpected entry `{name}`; this older checkpoint holds `model.*`, \
                    `optimizer.*` and `epoch`"
                ),
            ));
        }
    }
    let epoch = epoch.expect("the caller found `epoch`");
    let value = match (epoch.dtype(), epoch.numel()) {
        (DType::I64, 1) => epoch.to_vec::<i64>()[0],
        (dtype, _) => {
            return Err(format_err(
                path,
                format!(
                    "entry `epoch` is {dtype} with shape {:?}; a checkpoint's epoch is one int64",
                    epoch.shape()
                ),
            ));
        }
    };
    let epoch = u64::try_from(value).map_err(|_| {
        format_err(path, format!("entry `epoch` is {value}; an epoch is a non-negative count"))
    })?;
    let info = CheckpointInfo {
        version: 0,
        step: 0,
        epoch,
        optimizer: None,
        scheduler: None,
        rng: None,
        extra: BTreeMap::new(),
    };
    let optimizer = Some(SavedOptimizer { kind: None, settings: BTreeMap::new(), state });
    Ok(CheckpointFile { info, model, optimizer, scheduler: None })
}
