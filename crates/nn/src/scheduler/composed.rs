//! Schedules made from a function of the epoch ([`LambdaLR`]) or from other schedules one
//! after another ([`SequentialLR`]).

use tapegrad_tape::{Error, Result};

use super::{LrScheduler, SchedulerState, Setting, least, read_state};
use crate::Optimizer;

/// The base rate times a function of the epoch (PyTorch's `LambdaLR` with one function). A
/// checkpoint saves the epoch and the base rate; the function is code, given again when the
/// schedule is made.
///
/// ```
/// use tapegrad_nn::{LambdaLR, LrScheduler};
/// // Linear warm-up over 4 epochs, then inverse square-root decay.
/// let sched = LambdaLR::new(0.1, |e| if e < 4 { (e + 1) as f64 / 4.0 } else { 2.0 / (e as f64).sqrt() });
/// assert_eq!((sched.lr_at(0), sched.lr_at(3), sched.lr_at(16)), (0.025, 0.1, 0.05));
/// ```
pub struct LambdaLR {
    base: f64,
    lr_lambda: Box<dyn Fn(usize) -> f64 + Send + Sync>,
    epoch: usize,
}

impl LambdaLR {
    /// A schedule of `base_lr * lr_lambda(epoch)`.
    ///
    /// ```
    /// use tapegrad_nn::{LambdaLR, LrScheduler, Optimizer, SGD};
    /// let mut opt = SGD::new(vec![], 0.2);
    /// let mut sched = LambdaLR::new(0.2, |e| 0.5f64.powi(e as i32));
    /// sched.step(&mut opt);
    /// assert_eq!(opt.param_groups()[0].lr, 0.1);
    /// ```
    pub fn new(base_lr: f64, lr_lambda: impl Fn(usize) -> f64 + Send + Sync + 'static) -> Self {
        LambdaLR { base: base_lr, lr_lambda: Box::new(lr_lambda), epoch: 0 }
    }
    fn rate(&self, epoch: usize) -> f64 {
        self.base * (self.lr_lambda)(epoch)
    }
}
scheduler!(LambdaLR { "base_lr": base });

/// Schedules one after another: the first until the first milestone, the second from there
/// (counting its epochs from 0 again) until the next, and so on (PyTorch's `SequentialLR`).
///
/// ```
/// use tapegrad_nn::{CosineAnnealingLR, LinearLR, LrScheduler, SequentialLR};
/// // Five epochs of linear warm-up, then cosine annealing over 20.
/// let sched = SequentialLR::new(
///     vec![Box::new(LinearLR::new(0.1, 0.1, 1.0, 5)), Box::new(CosineAnnealingLR::new(0.1, 20, 0.0))],
///     &[5],
/// );
/// assert!((sched.lr_at(0) - 0.01).abs() < 1e-15);
/// assert_eq!(sched.lr_at(5), 0.1); // the cosine's first epoch
/// assert!((sched.lr_at(15) - 0.05).abs() < 1e-12);
/// ```
pub struct SequentialLR {
    schedulers: Vec<Box<dyn LrScheduler>>,
    milestones: Vec<usize>,
    epoch: usize,
}

impl SequentialLR {
    /// `schedulers` in turn, switching at each of `milestones` (one fewer than the
    /// schedules, in order).
    ///
    /// # Panics
    /// If there are no schedules, the milestones are not one fewer, or they decrease.
    ///
    /// ```
    /// use tapegrad_nn::{ConstantLR, ExponentialLR, LrScheduler, Optimizer, SGD, SequentialLR};
    /// let mut opt = SGD::new(vec![], 1.0);
    /// let mut sched = SequentialLR::new(
    ///     vec![Box::new(ConstantLR::new(1.0, 0.5, 10)), Box::new(ExponentialLR::new(1.0, 0.5))],
    ///     &[2],
    /// );
    /// let mut lrs = vec![sched.lr()];
    /// for _ in 0..4 {
    ///     sched.step(&mut opt);
    ///     lrs.push(opt.param_groups()[0].lr);
    /// }
    /// assert_eq!(lrs, [0.5, 0.5, 1.0, 0.5, 0.25]);
    /// ```
    #[track_caller]
    pub fn new(schedulers: Vec<Box<dyn LrScheduler>>, milestones: &[usize]) -> Self {
        assert!(!schedulers.is_empty(), "SequentialLR: no schedules to run in turn");
        assert!(
            milestones.len() + 1 == schedulers.len(),
            "SequentialLR: {} schedules need {} milestones, got {milestones:?}",
            schedulers.len(),
            schedulers.len() - 1
        );
        assert!(
            milestones.windows(2).all(|w| w[0] <= w[1]),
            "SequentialLR: milestones {milestones:?} must not decrease"
        );
        let mut schedulers = schedulers;
        // Each starts from its epoch 0 whatever it was stepped to before (PyTorch undoes the
        // steps its schedulers' constructors took).
        schedulers.iter_mut().for_each(|s| restart(s.as_mut()));
        SequentialLR { schedulers, milestones: milestones.to_vec(), epoch: 0 }
    }

    /// The schedule that runs at `epoch`, and the epoch it counts there.
    fn at(&self, epoch: usize) -> (usize, usize) {
        let index = self.milestones.partition_point(|&m| m <= epoch);
        let start = index.checked_sub(1).map_or(0, |i| self.milestones[i]);
        (index, epoch - start)
    }

    /// The state split into this schedule's own entries (its epoch and milestones, checked)
    /// and each inner schedule's (`_schedulers.{i}.` taken off).
    fn read(&self, state: &[(String, f64)]) -> Result<Read> {
        let mut own = Vec::new();
        let mut inner = vec![Vec::new(); self.schedulers.len()];
        for (name, value) in state {
            let nested = name.strip_prefix("_schedulers.").and_then(|rest| {
                let (index, entry) = rest.split_once('.')?;
                Some((index.parse::<usize>().ok()?, entry))
            });
            match nested {
                Some((i, entry)) if i < inner.len() => inner[i].push((entry.to_string(), *value)),
                Some((i, _)) => {
                    return Err(Error::Format {
                        path: "SequentialLR state".to_string(),
                        message: format!(
                            "entry `{name}` is for schedule {i}, but there are {} schedules",
                            inner.len()
                        ),
                    });
                }
                None => own.push((name.clone(), *value)),
            }
        }
        let names: Vec<String> =
            (0..self.milestones.len()).map(|i| format!("_milestones.{i}")).collect();
        let mut spec = vec![("last_epoch", Some(0))];
        spec.extend(names.iter().map(|n| (n.as_str(), Some(0))));
        let values = read_state("SequentialLR", &own, &spec)?;
        let milestones: Vec<usize> = values[1..].iter().map(|&m| m as usize).collect();
        if milestones.windows(2).any(|w| w[0] > w[1]) {
            return Err(Error::Format {
                path: "SequentialLR state".to_string(),
                message: format!("milestones {milestones:?} decrease"),
            });
        }
        for (i, (schedule, state)) in self.schedulers.iter().zip(&inner).enumerate() {
            schedule.check_state_dict(state).map_err(|e| Error::Format {
                path: "SequentialLR state".to_string(),
                message: format!("schedule {i} (`_schedulers.{i}.`): {e}"),
            })?;
        }
        Ok(Read { epoch: values[0] as usize, milestones, inner })
    }
}

/// A [`SequentialLR`] state that [`SequentialLR::read`] accepted.
struct Read {
    epoch: usize,
    milestones: Vec<usize>,
    /// Each inner schedule's entries, without their prefix.
    inner: Vec<Vec<(String, f64)>>,
}

/// Sets `schedule` back to its epoch 0, its settings unchanged.
fn restart(schedule: &mut dyn LrScheduler) {
    let mut state = schedule.state_dict();
    state.iter_mut().filter(|(name, _)| name == "last_epoch").for_each(|(_, v)| *v = 0.0);
    schedule.load_state_dict(&state).expect("a schedule's own state with its epoch at 0");
}

impl LrScheduler for SequentialLR {
    fn lr_at(&self, epoch: usize) -> f64 {
        let (index, local) = self.at(epoch);
        self.schedulers[index].lr_at(local)
    }

    fn momentum_at(&self, epoch: usize) -> Option<f64> {
        let (index, local) = self.at(epoch);
        self.schedulers[index].momentum_at(local)
    }

    fn epoch(&self) -> usize {
        self.epoch
    }

    /// Steps the schedule that runs at the next epoch; at a milestone, the next schedule
    /// starts over from its epoch 0, as PyTorch's `_update_lr(0)` does, and sets its rate and
    /// (for [`OneCycleLR`](crate::OneCycleLR) and [`CyclicLR`](crate::CyclicLR)) momentum.
    /// A schedule's momentum applies from its milestone on: before it, the optimizer keeps
    /// its own (PyTorch's constructors of those two set it at once, so a sequence there runs
    /// its first schedules with the later one's `max_momentum`).
    ///
    /// # Panics
    /// If the schedule now running sets a momentum and the optimizer has none.
    #[track_caller]
    fn step(&mut self, optimizer: &mut dyn Optimizer) {
        self.epoch += 1;
        let (index, local) = self.at(self.epoch);
        let schedule = &mut self.schedulers[index];
        if local == 0 {
            restart(schedule.as_mut());
            schedule.apply(optimizer);
        } else {
            schedule.step(optimizer);
        }
    }
}

impl SchedulerState for SequentialLR {
    fn kind(&self) -> &'static str {
        "SequentialLR"
    }

    fn state_dict(&self) -> Vec<(String, f64)> {
        let mut state = vec![("last_epoch".to_string(), self.epoch as f64)];
        let milestones = self.milestones.iter().enumerate();
        state.extend(milestones.map(|(i, &m)| (format!("_milestones.{i}"), m as f64)));
        for (i, schedule) in self.schedulers.iter().enumerate() {
            let inner = schedule.state_dict().into_iter();
            state.extend(inner.map(|(name, v)| (format!("_schedulers.{i}.{name}"), v)));
        }
        state
    }

    fn load_state_dict(&mut self, state: &[(String, f64)]) -> Result<()> {
        let Read { epoch, milestones, inner } = self.read(state)?;
        for (schedule, state) in self.schedulers.iter_mut().zip(&inner) {
            schedule.load_state_dict(state).expect("checked by read");
        }
        (self.epoch, self.milestones) = (epoch, milestones);
        Ok(())
    }

    fn check_state_dict(&self, state: &[(String, f64)]) -> Result<()> {
        self.read(state).map(drop)
    }
}
