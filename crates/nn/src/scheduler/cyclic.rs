//! Schedules that cycle the rate and, inversely, the momentum: [`OneCycleLR`] (one warm-up
//! and a long annealing, the "1cycle" policy) and [`CyclicLR`] (triangles between two rates).
//! Both are stepped after every batch rather than every epoch.

use std::f64::consts::PI;

use tapegrad_tape::{Error, Result};

use super::{LrScheduler, SchedulerState, read_state};
use crate::Optimizer;

/// How [`OneCycleLR`] moves between the ends of a phase (PyTorch's `anneal_strategy`).
///
/// ```
/// use tapegrad_nn::{AnnealStrategy, LrScheduler, OneCycleLR};
/// let cos = OneCycleLR::new(1.0, 11).pct_start(0.5).div_factor(2.0);
/// let linear = OneCycleLR::new(1.0, 11).pct_start(0.5).div_factor(2.0).anneal_strategy(AnnealStrategy::Linear);
/// // Step 1 of a warm-up from 0.5 to 1.0 that ends at step 4.5: 1 / 4.5 of the way up.
/// assert!((linear.lr_at(1) - (0.5 + 0.5 / 4.5)).abs() < 1e-15);
/// assert!(cos.lr_at(1) < linear.lr_at(1)); // the cosine starts slowly
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AnnealStrategy {
    /// Half a cosine from the start value to the end value (PyTorch's `"cos"`, the default).
    #[default]
    Cos,
    /// A straight line (PyTorch's `"linear"`).
    Linear,
}

impl AnnealStrategy {
    /// The value `pct` of the way from `start` to `end`, in PyTorch's order of operations.
    fn at(self, start: f64, end: f64, pct: f64) -> f64 {
        match self {
            AnnealStrategy::Cos => end + (start - end) / 2.0 * ((PI * pct).cos() + 1.0),
            AnnealStrategy::Linear => (end - start) * pct + start,
        }
    }
}

/// The "1cycle" policy (PyTorch's `OneCycleLR`): the rate climbs from
/// `max_lr / div_factor` to `max_lr` over the first `pct_start` of `total_steps`, then
/// anneals to `max_lr / div_factor / final_div_factor`, while the momentum moves the
/// other way, from `max_momentum` down to `base_momentum` and back. Step it after every
/// batch; `total_steps` is PyTorch's `epochs * steps_per_epoch`.
///
/// Call [`LrScheduler::apply`] once before training to set the first rate and momentum (as
/// PyTorch's constructor does). The momentum is SGD's and RMSprop's `momentum` or the
/// first of Adam's `betas`; with an optimizer that has none, turn it off with
/// `.cycle_momentum(false)`.
///
/// ```
/// use tapegrad_nn::{LrScheduler, OneCycleLR, Optimizer, SGD};
/// let mut opt = SGD::new(vec![], 0.1).momentum(0.9);
/// let mut sched = OneCycleLR::new(0.1, 1000);
/// sched.apply(&mut opt);
/// let mut peak = 0.0f64;
/// for _ in 0..1000 {
///     // opt.step() on a batch
///     sched.step(&mut opt);
///     peak = peak.max(opt.param_groups()[0].lr);
/// }
/// assert!((peak - 0.1).abs() < 1e-6);
/// // Annealed to max_lr / 25 / 1e4 = 4e-7 at step 999; the 1000th step (allowed, as in
/// // PyTorch) continues the cosine a little past its end.
/// assert!((sched.lr_at(999) - 4e-7).abs() < 1e-18);
/// assert_eq!(opt.param_groups()[0].lr, sched.lr_at(1000));
/// assert!((opt.current_momentum().unwrap() - 0.95).abs() < 1e-6);
/// ```
#[derive(Clone, Debug)]
pub struct OneCycleLR {
    max_lr: f64,
    total_steps: usize,
    pct_start: f64,
    anneal: AnnealStrategy,
    cycle_momentum: bool,
    base_momentum: f64,
    max_momentum: f64,
    div_factor: f64,
    final_div_factor: f64,
    three_phase: bool,
    epoch: usize,
}

/// One phase of [`OneCycleLR`]: where it ends, and its rates and momenta at both ends.
struct Phase {
    end_step: f64,
    lr: (f64, f64),
    momentum: (f64, f64),
}

impl OneCycleLR {
    /// A cycle up to `max_lr` and down over `total_steps` steps, with PyTorch's defaults:
    /// `pct_start` 0.3, cosine annealing, momentum cycled between 0.85 and 0.95,
    /// `div_factor` 25, `final_div_factor` 1e4, two phases.
    ///
    /// # Panics
    /// If `total_steps` is 0.
    ///
    /// ```
    /// use tapegrad_nn::{LrScheduler, OneCycleLR};
    /// let sched = OneCycleLR::new(0.5, 10);
    /// assert!((sched.lr_at(0) - 0.02).abs() < 1e-15); // 0.5 / 25
    /// assert_eq!(sched.lr_at(2), 0.5); // the peak, 30% of the way in
    /// assert_eq!(sched.momentum_at(2), Some(0.85));
    /// ```
    #[track_caller]
    pub fn new(max_lr: f64, total_steps: usize) -> Self {
        assert!(total_steps > 0, "OneCycleLR: total_steps must be at least 1");
        OneCycleLR {
            max_lr,
            total_steps,
            pct_start: 0.3,
            anneal: AnnealStrategy::Cos,
            cycle_momentum: true,
            base_momentum: 0.85,
            max_momentum: 0.95,
            div_factor: 25.0,
            final_div_factor: 1e4,
            three_phase: false,
            epoch: 0,
        }
    }

    /// The fraction of the steps spent climbing to `max_lr` (default 0.3).
    ///
    /// # Panics
    /// If `pct_start` is not in [0, 1].
    ///
    /// ```
    /// use tapegrad_nn::{LrScheduler, OneCycleLR};
    /// let sched = OneCycleLR::new(1.0, 101).pct_start(0.5);
    /// assert!((sched.lr_at(0) - 0.04).abs() < 1e-15);
    /// assert!((sched.lr_at(50) - 1.0).abs() < 0.01);
    /// ```
    #[track_caller]
    pub fn pct_start(mut self, pct_start: f64) -> Self {
        assert!(
            (0.0..=1.0).contains(&pct_start),
            "OneCycleLR: pct_start must be between 0 and 1, got {pct_start}"
        );
        self.pct_start = pct_start;
        self
    }

    /// How the rate and momentum move within a phase (default cosine).
    ///
    /// ```
    /// use tapegrad_nn::{AnnealStrategy, LrScheduler, OneCycleLR};
    /// let sched = OneCycleLR::new(1.0, 10).anneal_strategy(AnnealStrategy::Linear).div_factor(2.0);
    /// assert!((sched.lr_at(1) - 0.75).abs() < 1e-15); // halfway up from 0.5, which ends at step 2
    /// ```
    pub fn anneal_strategy(mut self, anneal: AnnealStrategy) -> Self {
        self.anneal = anneal;
        self
    }

    /// Whether to cycle the momentum (default yes).
    ///
    /// ```
    /// use tapegrad_nn::{Adagrad, LrScheduler, OneCycleLR};
    /// let mut opt = Adagrad::new(vec![], 0.1); // no momentum
    /// let mut sched = OneCycleLR::new(0.1, 10).cycle_momentum(false);
    /// sched.step(&mut opt);
    /// assert_eq!(sched.momentum_at(1), None);
    /// ```
    pub fn cycle_momentum(mut self, cycle: bool) -> Self {
        self.cycle_momentum = cycle;
        self
    }

    /// The momentum at the peak rate (default 0.85).
    ///
    /// ```
    /// use tapegrad_nn::{LrScheduler, OneCycleLR};
    /// assert_eq!(OneCycleLR::new(1.0, 10).base_momentum(0.8).momentum_at(2), Some(0.8));
    /// ```
    pub fn base_momentum(mut self, momentum: f64) -> Self {
        self.base_momentum = momentum;
        self
    }

    /// The momentum at the lowest rates, at the start and the end (default 0.95).
    ///
    /// ```
    /// use tapegrad_nn::{LrScheduler, OneCycleLR};
    /// assert!((OneCycleLR::new(1.0, 10).max_momentum(0.99).momentum_at(0).unwrap() - 0.99).abs() < 1e-15);
    /// ```
    pub fn max_momentum(mut self, momentum: f64) -> Self {
        self.max_momentum = momentum;
        self
    }

    /// The first rate is `max_lr / div_factor` (default 25).
    ///
    /// # Panics
    /// If `div_factor` is not a finite number above 0.
    ///
    /// ```
    /// use tapegrad_nn::{LrScheduler, OneCycleLR};
    /// assert!((OneCycleLR::new(1.0, 10).div_factor(10.0).lr_at(0) - 0.1).abs() < 1e-15);
    /// ```
    #[track_caller]
    pub fn div_factor(mut self, div_factor: f64) -> Self {
        assert!(
            div_factor.is_finite() && div_factor > 0.0,
            "OneCycleLR: div_factor must be a finite number above 0, got {div_factor}"
        );
        self.div_factor = div_factor;
        self
    }

    /// The last rate is the first divided by `final_div_factor` (default 1e4).
    ///
    /// # Panics
    /// If `final_div_factor` is not a finite number above 0.
    ///
    /// ```
    /// use tapegrad_nn::{LrScheduler, OneCycleLR};
    /// let sched = OneCycleLR::new(1.0, 10).div_factor(10.0).final_div_factor(100.0);
    /// assert!((sched.lr_at(9) - 0.001).abs() < 1e-15);
    /// ```
    #[track_caller]
    pub fn final_div_factor(mut self, final_div_factor: f64) -> Self {
        assert!(
            final_div_factor.is_finite() && final_div_factor > 0.0,
            "OneCycleLR: final_div_factor must be a finite number above 0, got {final_div_factor}"
        );
        self.final_div_factor = final_div_factor;
        self
    }

    /// Three phases instead of two: up to `max_lr`, back down to the first rate over as
    /// many steps, then the annealing to the last rate (default off).
    ///
    /// ```
    /// use tapegrad_nn::{LrScheduler, OneCycleLR};
    /// let sched = OneCycleLR::new(1.0, 20).pct_start(0.25).three_phase(true);
    /// assert!((sched.lr_at(4) - 1.0).abs() < 1e-15); // the peak at step 0.25 * 20 - 1
    /// assert!((sched.lr_at(8) - 0.04).abs() < 1e-15); // back at max_lr / 25
    /// ```
    pub fn three_phase(mut self, three_phase: bool) -> Self {
        self.three_phase = three_phase;
        self
    }

    /// The phases, each ending at its `end_step` (PyTorch's `_schedule_phases`).
    fn phases(&self) -> Vec<Phase> {
        let initial = self.max_lr / self.div_factor;
        let min = initial / self.final_div_factor;
        let (low, high) = (self.base_momentum, self.max_momentum);
        let total = self.total_steps as f64;
        let last = (self.total_steps - 1) as f64;
        let up = self.pct_start * total - 1.0;
        if self.three_phase {
            vec![
                Phase { end_step: up, lr: (initial, self.max_lr), momentum: (high, low) },
                Phase {
                    end_step: 2.0 * self.pct_start * total - 2.0,
                    lr: (self.max_lr, initial),
                    momentum: (low, high),
                },
                Phase { end_step: last, lr: (initial, min), momentum: (high, high) },
            ]
        } else {
            vec![
                Phase { end_step: up, lr: (initial, self.max_lr), momentum: (high, low) },
                Phase { end_step: last, lr: (self.max_lr, min), momentum: (low, high) },
            ]
        }
    }

    /// The rate and momentum at `epoch`. A phase of no length (PyTorch divides by zero
    /// there) gives its end values.
    fn at(&self, epoch: usize) -> (f64, f64) {
        let step = epoch as f64;
        let phases = self.phases();
        let mut start = 0.0;
        for (i, phase) in phases.iter().enumerate() {
            if step <= phase.end_step || i == phases.len() - 1 {
                let length = phase.end_step - start;
                let pct = if length == 0.0 { 1.0 } else { (step - start) / length };
                let lr = self.anneal.at(phase.lr.0, phase.lr.1, pct);
                let momentum = self.anneal.at(phase.momentum.0, phase.momentum.1, pct);
                return (lr, momentum);
            }
            start = phase.end_step;
        }
        unreachable!("the last phase takes every step")
    }

    fn spec() -> [(&'static str, Option<usize>); 11] {
        [
            ("last_epoch", Some(0)),
            ("total_steps", Some(1)),
            ("max_lr", None),
            ("pct_start", None),
            ("anneal_strategy", Some(0)),
            ("cycle_momentum", Some(0)),
            ("base_momentum", None),
            ("max_momentum", None),
            ("div_factor", None),
            ("final_div_factor", None),
            ("three_phase", Some(0)),
        ]
    }

    /// The schedule `state` describes (see [`OneCycleLR::spec`]), checked.
    fn read(&self, state: &[(String, f64)]) -> Result<OneCycleLR> {
        let v = read_state("OneCycleLR", state, &Self::spec())?;
        let bad = |message: String| Error::Format { path: "OneCycleLR state".into(), message };
        let flag = |i: usize| -> Result<bool> {
            match v[i] {
                0.0 => Ok(false),
                1.0 => Ok(true),
                other => {
                    Err(bad(format!("entry `{}` is {other}; expected 0 or 1", Self::spec()[i].0)))
                }
            }
        };
        let schedule = OneCycleLR {
            max_lr: v[2],
            total_steps: v[1] as usize,
            pct_start: v[3],
            anneal: if flag(4)? { AnnealStrategy::Linear } else { AnnealStrategy::Cos },
            cycle_momentum: flag(5)?,
            base_momentum: v[6],
            max_momentum: v[7],
            div_factor: v[8],
            final_div_factor: v[9],
            three_phase: flag(10)?,
            epoch: v[0] as usize,
        };
        for (name, value) in
            [("div_factor", schedule.div_factor), ("final_div_factor", schedule.final_div_factor)]
        {
            if value <= 0.0 {
                return Err(bad(format!("entry `{name}` is {value}; expected a number above 0")));
            }
        }
        if !(0.0..=1.0).contains(&schedule.pct_start) {
            return Err(bad(format!(
                "entry `pct_start` is {}; expected 0 to 1",
                schedule.pct_start
            )));
        }
        if schedule.epoch > schedule.total_steps {
            return Err(bad(format!(
                "entry `last_epoch` is {}, past `total_steps` {}",
                schedule.epoch, schedule.total_steps
            )));
        }
        Ok(schedule)
    }
}

impl LrScheduler for OneCycleLR {
    /// The rate at `epoch`; past `total_steps` the last phase's curve goes on (`step`
    /// refuses to go there).
    fn lr_at(&self, epoch: usize) -> f64 {
        self.at(epoch).0
    }

    fn momentum_at(&self, epoch: usize) -> Option<f64> {
        self.cycle_momentum.then(|| self.at(epoch).1)
    }

    fn epoch(&self) -> usize {
        self.epoch
    }

    /// # Panics
    /// Past `total_steps` steps, as PyTorch's does; and if the momentum is cycled and the
    /// optimizer has none.
    #[track_caller]
    fn step(&mut self, optimizer: &mut dyn Optimizer) {
        assert!(
            self.epoch < self.total_steps,
            "OneCycleLR: stepped {} times, but total_steps is {}",
            self.epoch + 1,
            self.total_steps
        );
        self.epoch += 1;
        self.apply(optimizer);
    }
}

impl SchedulerState for OneCycleLR {
    fn kind(&self) -> &'static str {
        "OneCycleLR"
    }

    /// `last_epoch`, PyTorch's settings by name, and three choices as numbers:
    /// `anneal_strategy` (0 cosine, 1 linear), `cycle_momentum` and `three_phase` (0 or 1).
    fn state_dict(&self) -> Vec<(String, f64)> {
        let values = [
            self.epoch as f64,
            self.total_steps as f64,
            self.max_lr,
            self.pct_start,
            f64::from(u8::from(self.anneal == AnnealStrategy::Linear)),
            f64::from(u8::from(self.cycle_momentum)),
            self.base_momentum,
            self.max_momentum,
            self.div_factor,
            self.final_div_factor,
            f64::from(u8::from(self.three_phase)),
        ];
        Self::spec().iter().zip(values).map(|((name, _), v)| (name.to_string(), v)).collect()
    }

    fn load_state_dict(&mut self, state: &[(String, f64)]) -> Result<()> {
        *self = self.read(state)?;
        Ok(())
    }

    fn check_state_dict(&self, state: &[(String, f64)]) -> Result<()> {
        self.read(state).map(drop)
    }
}

/// The shape of [`CyclicLR`]'s cycles (PyTorch's `mode`).
///
/// ```
/// use tapegrad_nn::{CyclicLR, CyclicMode, LrScheduler};
/// let halving = CyclicLR::new(0.0, 1.0).step_size_up(2).mode(CyclicMode::Triangular2);
/// assert_eq!((halving.lr_at(2), halving.lr_at(6)), (1.0, 0.5)); // the second peak is half
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum CyclicMode {
    /// Every cycle the same triangle (the default).
    #[default]
    Triangular,
    /// Each cycle's height half the last one's.
    Triangular2,
    /// The height scaled by `gamma` to the power of the step count.
    ExpRange {
        /// The factor per step.
        gamma: f64,
    },
}

/// What a custom scale function of [`CyclicLR`] is given: the cycle number (from 1) or
/// the step count (PyTorch's `scale_mode`).
///
/// ```
/// use tapegrad_nn::{CyclicLR, LrScheduler, ScaleMode};
/// let sched = CyclicLR::new(0.0, 1.0).step_size_up(1).scale_fn(|c| 1.0 / c, ScaleMode::Cycle);
/// assert_eq!((sched.lr_at(1), sched.lr_at(3)), (1.0, 0.5));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleMode {
    /// The function gets the cycle number, 1 for the first.
    Cycle,
    /// The function gets the number of steps taken.
    Iterations,
}

/// A custom scale function of [`CyclicLR`] and what it is given.
type ScaleFn = (Box<dyn Fn(f64) -> f64 + Send + Sync>, ScaleMode);

/// The cyclical learning rate policy (PyTorch's `CyclicLR`): the rate goes from `base_lr`
/// up to `max_lr` over `step_size_up` steps and back over `step_size_down`, again and
/// again, the height of each cycle scaled by the mode; the momentum moves the other way,
/// between `max_momentum` and `base_momentum`. Step it after every batch.
///
/// Call [`LrScheduler::apply`] once before training to set the first rate and momentum (as
/// PyTorch's constructor does). With an optimizer without momentum, turn cycling it off
/// with `.cycle_momentum(false)`.
///
/// ```
/// use tapegrad_nn::{CyclicLR, LrScheduler, Optimizer, SGD};
/// let mut opt = SGD::new(vec![], 0.1).momentum(0.9);
/// let mut sched = CyclicLR::new(0.01, 0.1).step_size_up(4);
/// sched.apply(&mut opt);
/// let mut lrs = vec![];
/// for _ in 0..8 {
///     sched.step(&mut opt);
///     lrs.push(opt.param_groups()[0].lr);
/// }
/// assert!((lrs[3] - 0.1).abs() < 1e-15 && (lrs[7] - 0.01).abs() < 1e-15);
/// assert_eq!(opt.current_momentum(), Some(0.9)); // back at max_momentum with the lowest rate
/// ```
pub struct CyclicLR {
    base_lr: f64,
    max_lr: f64,
    step_size_up: usize,
    step_size_down: Option<usize>,
    mode: CyclicMode,
    scale_fn: Option<ScaleFn>,
    cycle_momentum: bool,
    base_momentum: f64,
    max_momentum: f64,
    epoch: usize,
}

impl CyclicLR {
    /// Cycles between `base_lr` and `max_lr` with PyTorch's defaults: 2000 steps up and as
    /// many down, triangular, momentum between 0.8 and 0.9.
    ///
    /// ```
    /// use tapegrad_nn::{CyclicLR, LrScheduler};
    /// let sched = CyclicLR::new(0.001, 0.006);
    /// assert_eq!((sched.lr_at(0), sched.lr_at(4000)), (0.001, 0.001));
    /// assert!((sched.lr_at(2000) - 0.006).abs() < 1e-15);
    /// ```
    pub fn new(base_lr: f64, max_lr: f64) -> Self {
        CyclicLR {
            base_lr,
            max_lr,
            step_size_up: 2000,
            step_size_down: None,
            mode: CyclicMode::Triangular,
            scale_fn: None,
            cycle_momentum: true,
            base_momentum: 0.8,
            max_momentum: 0.9,
            epoch: 0,
        }
    }

    /// Steps from `base_lr` up to `max_lr` (default 2000).
    ///
    /// # Panics
    /// If `steps` is 0.
    ///
    /// ```
    /// use tapegrad_nn::{CyclicLR, LrScheduler};
    /// assert_eq!(CyclicLR::new(0.0, 1.0).step_size_up(4).lr_at(2), 0.5);
    /// ```
    #[track_caller]
    pub fn step_size_up(mut self, steps: usize) -> Self {
        assert!(steps > 0, "CyclicLR: step_size_up must be at least 1");
        self.step_size_up = steps;
        self
    }

    /// Steps from `max_lr` back down (default: as many as up).
    ///
    /// ```
    /// use tapegrad_nn::{CyclicLR, LrScheduler};
    /// let sched = CyclicLR::new(0.0, 1.0).step_size_up(1).step_size_down(4);
    /// assert_eq!(sched.lr_at(5), 0.0);
    /// assert!((sched.lr_at(1) - 1.0).abs() < 1e-15 && (sched.lr_at(3) - 0.5).abs() < 1e-15);
    /// ```
    pub fn step_size_down(mut self, steps: usize) -> Self {
        self.step_size_down = Some(steps);
        self
    }

    /// The shape of the cycles (default [`CyclicMode::Triangular`]); ignored when a
    /// [`CyclicLR::scale_fn`] is given, as in PyTorch.
    ///
    /// ```
    /// use tapegrad_nn::{CyclicLR, CyclicMode, LrScheduler};
    /// let sched = CyclicLR::new(0.0, 1.0).step_size_up(2).mode(CyclicMode::ExpRange { gamma: 0.5 });
    /// assert_eq!(sched.lr_at(2), 0.25); // the height times 0.5^2
    /// ```
    pub fn mode(mut self, mode: CyclicMode) -> Self {
        self.mode = mode;
        self
    }

    /// A custom scale of each cycle's height, in place of the mode's (whichever was set
    /// first): `scale_fn` of the
    /// cycle number or the step count, as `scale_mode` says. A checkpoint saves the rest;
    /// the function is code, given again when the schedule is made.
    ///
    /// ```
    /// use tapegrad_nn::{CyclicLR, LrScheduler, ScaleMode};
    /// let sched = CyclicLR::new(0.0, 1.0).step_size_up(2).scale_fn(|s| 1.0 / (1.0 + s), ScaleMode::Iterations);
    /// assert_eq!(sched.lr_at(2), 1.0 / 3.0);
    /// ```
    pub fn scale_fn(
        mut self,
        scale_fn: impl Fn(f64) -> f64 + Send + Sync + 'static,
        scale_mode: ScaleMode,
    ) -> Self {
        self.scale_fn = Some((Box::new(scale_fn), scale_mode));
        self
    }

    /// Whether to cycle the momentum (default yes).
    ///
    /// ```
    /// use tapegrad_nn::{CyclicLR, LrScheduler};
    /// assert_eq!(CyclicLR::new(0.1, 1.0).cycle_momentum(false).momentum_at(0), None);
    /// ```
    pub fn cycle_momentum(mut self, cycle: bool) -> Self {
        self.cycle_momentum = cycle;
        self
    }

    /// The momentum at the peak rate (default 0.8).
    ///
    /// ```
    /// use tapegrad_nn::{CyclicLR, LrScheduler};
    /// let sched = CyclicLR::new(0.1, 1.0).step_size_up(2).base_momentum(0.7);
    /// assert!((sched.momentum_at(2).unwrap() - 0.7).abs() < 1e-15);
    /// ```
    pub fn base_momentum(mut self, momentum: f64) -> Self {
        self.base_momentum = momentum;
        self
    }

    /// The momentum at `base_lr` (default 0.9).
    ///
    /// ```
    /// use tapegrad_nn::{CyclicLR, LrScheduler};
    /// assert_eq!(CyclicLR::new(0.1, 1.0).max_momentum(0.95).momentum_at(0), Some(0.95));
    /// ```
    pub fn max_momentum(mut self, momentum: f64) -> Self {
        self.max_momentum = momentum;
        self
    }

    /// The rate and momentum at `epoch`, in PyTorch's order of operations.
    fn at(&self, epoch: usize) -> (f64, f64) {
        let up = self.step_size_up as f64;
        let total = up + self.step_size_down.map_or(up, |d| d as f64);
        let step_ratio = up / total;
        let e = epoch as f64;
        let cycle = (1.0 + e / total).floor();
        let x = 1.0 + e / total - cycle;
        let scale_factor =
            if x <= step_ratio { x / step_ratio } else { (x - 1.0) / (step_ratio - 1.0) };
        let scale = match &self.scale_fn {
            Some((f, ScaleMode::Cycle)) => f(cycle),
            Some((f, ScaleMode::Iterations)) => f(e),
            None => match self.mode {
                CyclicMode::Triangular => 1.0,
                CyclicMode::Triangular2 => 1.0 / 2f64.powf(cycle - 1.0),
                CyclicMode::ExpRange { gamma } => gamma.powf(e),
            },
        };
        let lr = self.base_lr + (self.max_lr - self.base_lr) * scale_factor * scale;
        let momentum =
            self.max_momentum - (self.max_momentum - self.base_momentum) * scale_factor * scale;
        (lr, momentum)
    }

    fn spec() -> [(&'static str, Option<usize>); 11] {
        [
            ("last_epoch", Some(0)),
            ("base_lr", None),
            ("max_lr", None),
            ("step_size_up", Some(1)),
            ("step_size_down", Some(0)),
            ("mode", Some(0)),
            ("gamma", None),
            ("scale_mode", Some(0)),
            ("cycle_momentum", Some(0)),
            ("base_momentum", None),
            ("max_momentum", None),
        ]
    }

    /// The mode as a number: 0 triangular, 1 triangular2, 2 exp_range, 3 a custom function.
    fn mode_code(&self) -> (f64, f64) {
        let gamma = match self.mode {
            CyclicMode::ExpRange { gamma } => gamma,
            _ => 1.0,
        };
        match (&self.scale_fn, self.mode) {
            (Some(_), _) => (3.0, gamma),
            (None, CyclicMode::Triangular) => (0.0, gamma),
            (None, CyclicMode::Triangular2) => (1.0, gamma),
            (None, CyclicMode::ExpRange { .. }) => (2.0, gamma),
        }
    }

    /// Checks `state` (see [`CyclicLR::spec`]) and returns what it sets: the epoch, the
    /// rates, the step sizes, the mode (unless custom), the scale mode, and the momentum's.
    fn read(&self, state: &[(String, f64)]) -> Result<CyclicState> {
        let v = read_state("CyclicLR", state, &Self::spec())?;
        let bad = |message: String| Error::Format { path: "CyclicLR state".into(), message };
        let mode = match (v[5], &self.scale_fn) {
            (3.0, Some(_)) => None,
            (3.0, None) => {
                return Err(bad(
                    "the state is of a schedule with a custom scale function (`mode` 3); make this one with \
                     `.scale_fn(...)` too"
                        .into(),
                ));
            }
            (_, Some(_)) => {
                return Err(bad(format!(
                    "the state's `mode` is {}, but this schedule has a custom scale function (3)",
                    v[5]
                )));
            }
            (0.0, None) => Some(CyclicMode::Triangular),
            (1.0, None) => Some(CyclicMode::Triangular2),
            (2.0, None) => Some(CyclicMode::ExpRange { gamma: v[6] }),
            (other, None) => {
                return Err(bad(format!("entry `mode` is {other}; expected 0, 1, 2 or 3")));
            }
        };
        let scale_mode = match v[7] {
            0.0 => ScaleMode::Cycle,
            1.0 => ScaleMode::Iterations,
            other => return Err(bad(format!("entry `scale_mode` is {other}; expected 0 or 1"))),
        };
        let cycle_momentum = match v[8] {
            0.0 => false,
            1.0 => true,
            other => {
                return Err(bad(format!("entry `cycle_momentum` is {other}; expected 0 or 1")));
            }
        };
        Ok(CyclicState {
            epoch: v[0] as usize,
            rates: (v[1], v[2]),
            steps: (v[3] as usize, v[4] as usize),
            mode,
            scale_mode,
            cycle_momentum,
            momenta: (v[9], v[10]),
        })
    }
}

/// A [`CyclicLR`] state that [`CyclicLR::read`] accepted.
struct CyclicState {
    epoch: usize,
    rates: (f64, f64),
    steps: (usize, usize),
    /// `None` for a custom scale function, which stays the schedule's own.
    mode: Option<CyclicMode>,
    scale_mode: ScaleMode,
    cycle_momentum: bool,
    momenta: (f64, f64),
}

impl LrScheduler for CyclicLR {
    fn lr_at(&self, epoch: usize) -> f64 {
        self.at(epoch).0
    }

    fn momentum_at(&self, epoch: usize) -> Option<f64> {
        self.cycle_momentum.then(|| self.at(epoch).1)
    }

    fn epoch(&self) -> usize {
        self.epoch
    }

    /// # Panics
    /// If the momentum is cycled and the optimizer has none.
    #[track_caller]
    fn step(&mut self, optimizer: &mut dyn Optimizer) {
        self.epoch += 1;
        self.apply(optimizer);
    }
}

impl SchedulerState for CyclicLR {
    fn kind(&self) -> &'static str {
        "CyclicLR"
    }

    /// `last_epoch`, PyTorch's settings by name (`step_size_down` in full), and choices as
    /// numbers: `mode` (0 triangular, 1 triangular2, 2 exp_range, 3 a custom function, whose
    /// `scale_mode` is 0 for cycles or 1 for iterations) and `cycle_momentum` (0 or 1).
    fn state_dict(&self) -> Vec<(String, f64)> {
        let (mode, gamma) = self.mode_code();
        let scale_mode = match &self.scale_fn {
            Some((_, ScaleMode::Iterations)) => 1.0,
            _ => 0.0,
        };
        let values = [
            self.epoch as f64,
            self.base_lr,
            self.max_lr,
            self.step_size_up as f64,
            self.step_size_down.unwrap_or(self.step_size_up) as f64,
            mode,
            gamma,
            scale_mode,
            f64::from(u8::from(self.cycle_momentum)),
            self.base_momentum,
            self.max_momentum,
        ];
        Self::spec().iter().zip(values).map(|((name, _), v)| (name.to_string(), v)).collect()
    }

    fn load_state_dict(&mut self, state: &[(String, f64)]) -> Result<()> {
        let read = self.read(state)?;
        self.epoch = read.epoch;
        (self.base_lr, self.max_lr) = read.rates;
        (self.step_size_up, self.step_size_down) = (read.steps.0, Some(read.steps.1));
        match read.mode {
            Some(mode) => self.mode = mode,
            None => {
                if let Some((_, scale_mode)) = &mut self.scale_fn {
                    *scale_mode = read.scale_mode;
                }
            }
        }
        self.cycle_momentum = read.cycle_momentum;
        (self.base_momentum, self.max_momentum) = read.momenta;
        Ok(())
    }

    fn check_state_dict(&self, state: &[(String, f64)]) -> Result<()> {
        self.read(state).map(drop)
    }
}
