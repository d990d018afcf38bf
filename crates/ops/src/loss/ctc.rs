//! The connectionist temporal classification loss (Graves et al., 2006): the negative log of
//! the total probability of every alignment of a target sequence to a longer sequence of
//! per-step class distributions, blanks between and around the labels.
//!
//! The loss is one recorded op whose value and gradient come from the kernels
//! (`tapegrad_kernels::ctc`: forward and backward variables rescaled at every step). The
//! same recursions are also written here as recorded ops, over the target with a blank
//! before, between and after its labels (`2 L + 1` states), one `logsumexp` step per time
//! step: they carry forward-mode tangents, make the gradient when its own graph is wanted
//! (`create_graph`, to any order), and take over where the kernels' rescaled probabilities
//! round to nothing.

use std::panic::Location;

use tapegrad_kernels::ctc as kernel;
use tapegrad_tape::layout::Layout;
use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{Backward, DType, Error, Result, Storage, Tensor, ensure_float, record};

use super::{Reduction, reduce_loss};
use crate::{BinaryOps, IndexOps, ReduceOps, ShapeOps, UnaryOps, shape, where_};

/// Stands for the log of zero: a state no alignment reaches. Finite, so that a `logsumexp`
/// of unreachable states has a gradient (0) rather than NaN; far below any sum of
/// log-probabilities a real alignment reaches.
const UNREACHABLE: f64 = -1e30;

/// Losses above this are of targets no alignment reaches: infinite, as in PyTorch.
const IMPOSSIBLE: f64 = 1e29;

/// The CTC loss of log-probabilities `[T, N, C]` (time, batch, classes; `[T, C]` for one
/// sequence) against target label sequences: PyTorch's `nn.CTCLoss` (`blank` = 0,
/// `reduction`, `zero_infinity` = false).
///
/// Targets are `i64`, either padded rows `[N, S]` or all sequences one after another in one
/// dimension (`[sum(target_lengths)]`); each label is a class other than `blank`. With
/// `Reduction::Mean`, each sequence's loss is divided by its target length (at least 1)
/// before the mean over the batch, as PyTorch does. A target that no alignment within its
/// input length reaches has an infinite loss (and a gradient of 0), or 0 with
/// `zero_infinity`.
///
/// The gradient is that of the loss as a function of `log_probs` (what central differences
/// measure). PyTorch's own backward adds `exp(log_probs)`, which changes nothing when
/// `log_probs` come from `log_softmax`, as they usually do.
///
/// ```
/// use tapegrad_ops::{CTCLoss, prelude::*};
/// use tapegrad_tape::Tensor;
/// // Two steps, classes {blank, a}: "a" is read from "a a", "a -" and "- a".
/// let p = Tensor::from_vec(vec![0.5f64, 0.5, 0.5, 0.5], &[2, 1, 2]);
/// let target = Tensor::from_vec(vec![1i64], &[1, 1]);
/// let loss = CTCLoss::new().forward(&p.log(), &target, &[2], &[1]);
/// assert!((loss.item() - -(0.75f64).ln()).abs() < 1e-12); // 3 of the 4 paths
/// ```
#[derive(Clone, Debug, Default)]
pub struct CTCLoss {
    /// How per-sequence losses combine.
    pub reduction: Reduction,
    /// The blank class.
    pub blank: usize,
    /// Whether an infinite loss (a target no alignment reaches) counts as 0.
    pub zero_infinity: bool,
}

keywords!(CTCLoss {
    /// Sets `reduction`.
    reduction: Reduction => reduction, example Reduction::Sum;
    /// Sets `blank`, the blank class.
    blank: usize => blank, example 3;
    /// Sets `zero_infinity`.
    zero_infinity: bool => zero_infinity, example true;
});

/// One sequence's labels and lengths, checked.
#[derive(Clone)]
struct Sequence {
    labels: Vec<usize>,
    input_length: usize,
}

impl CTCLoss {
    /// The loss with PyTorch's defaults.
    ///
    /// ```
    /// use tapegrad_ops::{CTCLoss, Reduction};
    /// let loss = CTCLoss::new();
    /// assert_eq!((loss.blank, loss.reduction, loss.zero_infinity), (0, Reduction::Mean, false));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The loss of `log_probs` against `targets`, the first `input_lengths[n]` steps of
    /// sequence `n` against its first `target_lengths[n]` labels; panics naming the caller's
    /// line on bad shapes or values (see [`CTCLoss::try_forward`]).
    ///
    /// ```
    /// use tapegrad_ops::{CTCLoss, Reduction, prelude::*};
    /// use tapegrad_tape::Tensor;
    /// let log_probs = Tensor::zeros(&[5, 2, 4]).log_softmax(2).requires_grad();
    /// let targets = Tensor::from_vec(vec![1i64, 2, 3, 3, 0, 0], &[2, 3]); // padded rows
    /// let each = CTCLoss::new().reduction(Reduction::None);
    /// let loss = each.forward(&log_probs, &targets, &[5, 4], &[3, 1]);
    /// assert_eq!(loss.shape(), &[2]);
    /// loss.sum().backward();
    /// assert_eq!(log_probs.grad().unwrap().shape(), &[5, 2, 4]);
    /// ```
    #[track_caller]
    pub fn forward(
        &self,
        log_probs: &Tensor,
        targets: &Tensor,
        input_lengths: &[usize],
        target_lengths: &[usize],
    ) -> Tensor {
        tapegrad_tape::or_panic(self.try_forward(log_probs, targets, input_lengths, target_lengths))
    }

    /// [`CTCLoss::forward`], returning an error for log-probabilities that are not a float
    /// `[T, N, C]` (or `[T, C]`), targets that are not `i64` `[N, S]` or
    /// `[sum(target_lengths)]` (`[S]` for one sequence), lengths not one per sequence, an
    /// input length above `T`, a target length above `S`, a label out of `0..C` or equal to
    /// `blank`, or a `blank` out of `0..C`.
    ///
    /// ```
    /// use tapegrad_ops::CTCLoss;
    /// use tapegrad_tape::Tensor;
    /// let log_probs = Tensor::zeros(&[4, 1, 3]);
    /// let target = Tensor::from_vec(vec![1i64, 2], &[1, 2]);
    /// assert!(CTCLoss::new().try_forward(&log_probs, &target, &[4], &[2]).is_ok());
    /// assert!(CTCLoss::new().try_forward(&log_probs, &target, &[5], &[2]).is_err()); // > T
    /// assert!(CTCLoss::new().blank(2).try_forward(&log_probs, &target, &[4], &[2]).is_err());
    /// ```
    #[track_caller]
    pub fn try_forward(
        &self,
        log_probs: &Tensor,
        targets: &Tensor,
        input_lengths: &[usize],
        target_lengths: &[usize],
    ) -> Result<Tensor> {
        let location = Location::caller();
        ensure_float(OP, log_probs, location)?;
        let batched = log_probs.dim() == 3;
        let log_probs = match log_probs.dim() {
            3 => log_probs.clone(),
            2 => log_probs.unsqueeze(1),
            _ => {
                return Err(shape_error(
                    format!("expects log_probs [T, N, C] or [T, C], got {:?}", log_probs.shape()),
                    location,
                ));
            }
        };
        let sequences =
            self.sequences(&log_probs, targets, input_lengths, target_lengths, batched, location)?;
        let losses = self.losses(&log_probs, &sequences, location);
        let losses = if batched { losses } else { losses.reshape(&[]) };
        Ok(match self.reduction {
            Reduction::Mean => {
                let lengths: Vec<f64> =
                    sequences.iter().map(|s| s.labels.len().max(1) as f64).collect();
                let lengths =
                    Tensor::from_vec(lengths, &[sequences.len()]).to_dtype(losses.dtype());
                reduce_loss(&losses.reshape(&[-1]) / &lengths, Reduction::Mean)
            }
            reduction => reduce_loss(losses, reduction),
        })
    }

    /// Each sequence's labels and input length, after every check.
    fn sequences(
        &self,
        log_probs: &Tensor,
        targets: &Tensor,
        input_lengths: &[usize],
        target_lengths: &[usize],
        batched: bool,
        location: &'static Location<'static>,
    ) -> Result<Vec<Sequence>> {
        let [steps, n, classes] = log_probs.shape() else { unreachable!("made 3-d above") };
        let (steps, n, classes) = (*steps, *n, *classes);
        let invalid = |message: String| Error::InvalidArgument { op: OP, message, location };
        if self.blank >= classes {
            return Err(invalid(format!(
                "blank {} is not one of the {classes} classes",
                self.blank
            )));
        }
        if targets.dtype() != DType::I64 {
            return Err(invalid(format!("expects i64 targets, got {}", targets.dtype())));
        }
        for (name, lengths) in
            [("input_lengths", input_lengths), ("target_lengths", target_lengths)]
        {
            if lengths.len() != n {
                return Err(invalid(format!(
                    "expects one of {name} per sequence ({n}), got {}",
                    lengths.len()
                )));
            }
        }
        if let Some((i, &length)) = input_lengths.iter().enumerate().find(|(_, l)| **l > steps) {
            return Err(invalid(format!(
                "input_lengths[{i}] is {length}, more than the {steps} steps of log_probs"
            )));
        }
        let values = targets.to_vec::<i64>();
        // Where each sequence's labels start in `values`, and how many it may have.
        let (starts, room): (Vec<usize>, usize) = match targets.shape() {
            &[rows, width] if batched && rows == n => ((0..n).map(|i| i * width).collect(), width),
            &[total] if batched || n == 1 => {
                // Checked: lengths that overflow cannot match any tensor's size.
                let wanted = target_lengths.iter().try_fold(0usize, |sum, &l| sum.checked_add(l));
                if !batched {
                    (vec![0], total)
                } else if wanted == Some(total) {
                    let starts = target_lengths
                        .iter()
                        .scan(0, |at, &l| {
                            let start = *at;
                            *at += l;
                            Some(start)
                        })
                        .collect();
                    (starts, usize::MAX)
                } else {
                    let wanted =
                        wanted.map_or("more than usize holds".to_string(), |w| w.to_string());
                    return Err(shape_error(
                        format!(
                            "expects targets [{n}, S] or [sum(target_lengths)] = [{wanted}], got {:?}",
                            targets.shape()
                        ),
                        location,
                    ));
                }
            }
            other => {
                let expected = if batched {
                    format!("[{n}, S] or [sum(target_lengths)]")
                } else {
                    "[S]".to_string()
                };
                return Err(shape_error(
                    format!("expects targets {expected}, got {other:?}"),
                    location,
                ));
            }
        };
        let mut sequences = Vec::with_capacity(n);
        for (i, (&start, (&length, &input_length))) in
            starts.iter().zip(target_lengths.iter().zip(input_lengths)).enumerate()
        {
            if length > room {
                return Err(invalid(format!(
                    "target_lengths[{i}] is {length}, more than the {room} labels a row of targets holds"
                )));
            }
            let mut labels = Vec::with_capacity(length);
            for (j, &label) in values[start..start + length].iter().enumerate() {
                if label < 0 || label as usize >= classes || label as usize == self.blank {
                    return Err(invalid(format!(
                        "label {j} of sequence {i} is {label}; labels are classes 0..{classes} other than the blank ({})",
                        self.blank
                    )));
                }
                labels.push(label as usize);
            }
            sequences.push(Sequence { labels, input_length });
        }
        Ok(sequences)
    }

    /// The loss of each sequence, `[N]`: one recorded op over the kernels' loops, or, for
    /// tangents and where the kernels' rescaled probabilities round to nothing, the
    /// recursion as recorded ops.
    fn losses(
        &self,
        log_probs: &Tensor,
        sequences: &[Sequence],
        location: &'static Location<'static>,
    ) -> Tensor {
        let dual = tapegrad_tape::forward_ad::is_dual_level_open()
            && tapegrad_tape::forward_ad::unpack_dual(log_probs).tangent.is_some();
        let direct = if dual { None } else { direct(log_probs, sequences, self.blank, location) };
        let losses =
            direct.unwrap_or_else(|| match Lattice::new(log_probs, sequences, self.blank) {
                Some(lattice) => lattice.log_likelihood(&lattice.alphas()).neg(),
                None => without_steps(log_probs, sequences),
            });
        self.finish(&losses)
    }

    /// Losses of unreachable targets made infinite (or 0 with `zero_infinity`).
    /// A NaN loss (from NaN log-probabilities) stays NaN.
    fn finish(&self, losses: &Tensor) -> Tensor {
        let impossible = losses.ge(&Tensor::full_dtype(&[1], IMPOSSIBLE, losses.dtype()));
        let instead = if self.zero_infinity { 0.0 } else { f64::INFINITY };
        where_(&impossible, &Tensor::full_dtype(&[1], instead, losses.dtype()), losses)
    }
}

const OP: &str = "ctc_loss";

fn kernel_sizes(log_probs: &Tensor) -> kernel::Sizes {
    let &[steps, batch, classes] = log_probs.shape() else { unreachable!("3-d") };
    kernel::Sizes { steps, batch, classes }
}

fn kernel_targets(sequences: &[Sequence]) -> Vec<kernel::Target<'_>> {
    sequences
        .iter()
        .map(|s| kernel::Target { labels: &s.labels, input_length: s.input_length })
        .collect()
}

/// The losses as one recorded op over the kernels' loops; `None` where they cannot say.
fn direct(
    log_probs: &Tensor,
    sequences: &[Sequence],
    blank: usize,
    location: &'static Location<'static>,
) -> Option<Tensor> {
    let (sizes, targets) = (kernel_sizes(log_probs), kernel_targets(sequences));
    let losses = match &log_probs.contiguous_storage() {
        Storage::F32(lp) => kernel::losses(lp, sizes, blank, &targets)?,
        Storage::F64(lp) => kernel::losses(lp, sizes, blank, &targets)?,
        _ => return None,
    };
    let value = Tensor::from_vec(losses, &[sizes.batch]).to_dtype(log_probs.dtype());
    let sequences = sequences.to_vec();
    Some(record(OP, location, &[log_probs], value, || {
        Backward::new(move |ctx| {
            let (log_probs, grad) = (ctx.saved(0), ctx.grad());
            let composed = || match Lattice::new(log_probs, &sequences, blank) {
                Some(lattice) => lattice.gradient(grad),
                None => log_probs.zeros_like(),
            };
            let gradient = if tapegrad_tape::is_grad_enabled() {
                // A graph of the gradient: the rule as recorded ops, differentiable again.
                composed()
            } else {
                direct_gradient(log_probs, &sequences, blank, grad).unwrap_or_else(composed)
            };
            smallvec![Some(gradient)]
        })
        .save(log_probs)
    }))
}

/// The gradient to the log-probabilities from the kernels' loops, each sequence's weighted
/// by its entry of `grad`.
fn direct_gradient(
    log_probs: &Tensor,
    sequences: &[Sequence],
    blank: usize,
    grad: &Tensor,
) -> Option<Tensor> {
    let (sizes, targets) = (kernel_sizes(log_probs), kernel_targets(sequences));
    let storage = match (&log_probs.contiguous_storage(), &grad.contiguous_storage()) {
        (Storage::F32(lp), Storage::F32(g)) => {
            Storage::from_vec(kernel::gradient(lp, sizes, blank, &targets, g)?)
        }
        (Storage::F64(lp), Storage::F64(g)) => {
            Storage::from_vec(kernel::gradient(lp, sizes, blank, &targets, g)?)
        }
        _ => return None,
    };
    Some(Tensor::from_storage(storage, Layout::contiguous(log_probs.shape())))
}

/// The losses when no sequence has a step: 0 for an empty target (the empty alignment),
/// unreachable for any other. The sum over no steps keeps them on the tape, with a
/// gradient of 0.
fn without_steps(log_probs: &Tensor, sequences: &[Sequence]) -> Tensor {
    let each: Vec<f64> =
        sequences.iter().map(|s| if s.labels.is_empty() { 0.0 } else { -UNREACHABLE }).collect();
    let none = log_probs.narrow(0, 0, 0).sum().reshape(&[1]);
    &Tensor::from_vec(each, &[sequences.len()]).to_dtype(log_probs.dtype()) + &none
}

/// The recursions as recorded ops, over the states of every sequence at once (`[N, S']`,
/// `S' = 2 L + 1` for the longest target `L`; states past a shorter target's end are never
/// read).
struct Lattice<'a> {
    sequences: &'a [Sequence],
    blank: usize,
    /// The longest input length.
    steps: usize,
    /// The log-probabilities' steps and classes.
    total_steps: usize,
    total_classes: usize,
    states: usize,
    dtype: DType,
    /// `[steps, N, S']`: each state's class.
    classes: Tensor,
    /// `[steps, N, S']`: each state's log-probability, `UNREACHABLE` for `-inf`.
    emitted: Tensor,
    /// `[N, S']`: whether a state may be entered from two states back.
    skips: Tensor,
    /// `[steps, N, 1]`: whether each sequence reads each step; `None` when all read every
    /// step.
    running: Option<Tensor>,
    unreachable: Tensor,
}

/// `[N, S']` for `sequences` in `dtype`, 1 where `f(sequence, state)`.
fn mask(
    sequences: &[Sequence],
    states: usize,
    dtype: DType,
    f: impl Fn(&Sequence, usize) -> bool,
) -> Tensor {
    let values: Vec<f64> =
        sequences.iter().flat_map(|s| (0..states).map(|state| f(s, state) as u8 as f64)).collect();
    Tensor::from_vec(values, &[sequences.len(), states]).to_dtype(dtype)
}

impl<'a> Lattice<'a> {
    /// `None` when no sequence has a step.
    fn new(log_probs: &Tensor, sequences: &'a [Sequence], blank: usize) -> Option<Self> {
        let steps = sequences.iter().map(|s| s.input_length).max().unwrap_or(0);
        if steps == 0 {
            return None;
        }
        let longest = sequences.iter().map(|s| s.labels.len()).max().unwrap_or(0);
        let (n, states, dtype) = (sequences.len(), 2 * longest + 1, log_probs.dtype());
        let class = |s: &Sequence, state: usize| kernel::state_class(&s.labels, blank, state);
        let index: Vec<i64> = (0..steps)
            .flat_map(|_| {
                sequences
                    .iter()
                    .flat_map(move |s| (0..states).map(move |state| class(s, state) as i64))
            })
            .collect();
        let classes = Tensor::from_vec(index, &[steps, n, states]);
        // log(0) as UNREACHABLE, so that no state is ever -inf.
        let emitted =
            log_probs.narrow(0, 0, steps).gather(2, &classes).clamp(Some(UNREACHABLE), None);
        let skips =
            mask(sequences, states, dtype, |s, state| kernel::state_skips(&s.labels, blank, state));
        // Per step, which sequences still run: only needed when some end early.
        let running = sequences.iter().any(|s| s.input_length < steps).then(|| {
            let values: Vec<f64> = (0..steps)
                .flat_map(|t| sequences.iter().map(move |s| (s.input_length > t) as u8 as f64))
                .collect();
            Tensor::from_vec(values, &[steps, n, 1]).to_dtype(dtype)
        });
        Some(Lattice {
            sequences,
            blank,
            steps,
            total_steps: log_probs.shape()[0],
            total_classes: log_probs.shape()[2],
            states,
            dtype,
            classes,
            emitted,
            skips,
            running,
            unreachable: Tensor::full_dtype(&[1], UNREACHABLE, dtype),
        })
    }

    /// `[N, S']`, 1 where `f(sequence, state)`.
    fn mask(&self, f: impl Fn(&Sequence, usize) -> bool) -> Tensor {
        mask(self.sequences, self.states, self.dtype, f)
    }

    /// `[N, 1]`, 1 for the sequences that read step `t` (`None`: all do).
    fn running(&self, t: usize) -> Option<Tensor> {
        self.running.as_ref().map(|running| running.select(0, t as isize))
    }

    /// The forward variable at every step, `[N, S']` each, including the step's
    /// emission; a sequence's stays as it was after its last step.
    fn alphas(&self) -> Vec<Tensor> {
        let starts = self.mask(|s, state| {
            s.input_length > 0 && (state == 0 || (state == 1 && !s.labels.is_empty()))
        });
        let mut alphas = vec![where_(&starts, &self.emitted.select(0, 0), &self.unreachable)];
        let padding = Tensor::full_dtype(&[self.sequences.len(), 2], UNREACHABLE, self.dtype);
        for t in 1..self.steps {
            let alpha = alphas.last().expect("the first step");
            let padded = shape::cat(&[&padding, alpha], 1);
            let before = padded.narrow(1, 1, self.states);
            let skipped = where_(&self.skips, &padded.narrow(1, 0, self.states), &self.unreachable);
            let next = shape::stack(&[alpha, &before, &skipped], 0).logsumexp(0, false)
                + self.emitted.select(0, t as isize);
            alphas.push(match self.running(t) {
                None => next,
                Some(running) => where_(&running, &next, alpha),
            });
        }
        alphas
    }

    /// The backward variable at every step, `[N, S']` each, excluding the step's emission;
    /// from a sequence's last step on, 0 in its two final states.
    fn betas(&self) -> Vec<Tensor> {
        let finals = self.mask(|s, state| {
            state == 2 * s.labels.len() || (!s.labels.is_empty() && state == 2 * s.labels.len() - 1)
        });
        let terminal = where_(&finals, &Tensor::zeros_dtype(&[1], self.dtype), &self.unreachable);
        let skips_ahead = self.mask(|s, state| {
            state + 2 < self.states && kernel::state_skips(&s.labels, self.blank, state + 2)
        });
        let padding = Tensor::full_dtype(&[self.sequences.len(), 2], UNREACHABLE, self.dtype);
        let mut betas = vec![terminal.clone()];
        for t in (0..self.steps - 1).rev() {
            let beta = betas.last().expect("the last step");
            let ahead = beta + &self.emitted.select(0, t as isize + 1);
            let padded = shape::cat(&[&ahead, &padding], 1);
            let after = padded.narrow(1, 1, self.states);
            let skipped =
                where_(&skips_ahead, &padded.narrow(1, 2, self.states), &self.unreachable);
            let previous = shape::stack(&[&ahead, &after, &skipped], 0).logsumexp(0, false);
            betas.push(match self.running(t + 1) {
                None => previous,
                Some(running) => where_(&running, &previous, &terminal),
            });
        }
        betas.reverse();
        betas
    }

    /// `ln p` of each sequence, `[N]`, from the forward variables: the alignments end in
    /// the last label or the blank after it (a sequence without steps has the empty
    /// alignment only).
    fn log_likelihood(&self, alphas: &[Tensor]) -> Tensor {
        let (n, dtype) = (self.sequences.len(), self.dtype);
        let last = alphas.last().expect("a step");
        let ends: Vec<i64> = self
            .sequences
            .iter()
            .flat_map(|s| [2 * s.labels.len() as i64, (2 * s.labels.len()).max(1) as i64 - 1])
            .collect();
        let ends = Tensor::from_vec(ends, &[n, 2]);
        let two_ends: Vec<f64> = self
            .sequences
            .iter()
            .flat_map(|s| [1.0, (!s.labels.is_empty()) as u8 as f64])
            .collect();
        let two_ends = Tensor::from_vec(two_ends, &[n, 2]).to_dtype(dtype);
        let final_alpha = where_(&two_ends, &last.gather(1, &ends), &self.unreachable);
        let final_alpha = if self.sequences.iter().any(|s| s.input_length == 0) {
            let no_steps: Vec<f64> = self
                .sequences
                .iter()
                .flat_map(|s| [(s.input_length == 0) as u8 as f64; 2])
                .collect();
            let no_steps = Tensor::from_vec(no_steps, &[n, 2]).to_dtype(dtype);
            let empty: Vec<f64> = self
                .sequences
                .iter()
                .flat_map(|s| [if s.labels.is_empty() { 0.0 } else { UNREACHABLE }, UNREACHABLE])
                .collect();
            where_(&no_steps, &Tensor::from_vec(empty, &[n, 2]).to_dtype(dtype), &final_alpha)
        } else {
            final_alpha
        };
        final_alpha.logsumexp(1, false)
    }

    /// The gradient of `sum_n grad[n] * loss_n` to the log-probabilities `[T, N, C]`:
    /// `-grad[n]` times each class's posterior probability at each step, the posteriors
    /// `exp(alpha + beta - ln p)` summed into their classes; zero past a sequence's input
    /// length and for targets no alignment reaches.
    fn gradient(&self, grad: &Tensor) -> Tensor {
        let (n, dtype) = (self.sequences.len(), self.dtype);
        let alphas = self.alphas();
        let log_p = self.log_likelihood(&alphas).unsqueeze(1);
        // NaN log-probabilities keep a NaN gradient.
        let impossible = log_p.le(&Tensor::full_dtype(&[1], -IMPOSSIBLE, dtype));
        let posteriors: Vec<Tensor> = alphas
            .iter()
            .zip(self.betas())
            .enumerate()
            .map(|(t, (alpha, beta))| {
                let log_posterior =
                    where_(&impossible, &self.unreachable, &(&(alpha + &beta) - &log_p));
                match self.running(t) {
                    None => log_posterior.exp(),
                    Some(running) => where_(&running, &log_posterior, &self.unreachable).exp(),
                }
            })
            .collect();
        let by_state = shape::stack(&posteriors.iter().collect::<Vec<_>>(), 0);
        let by_class = Tensor::zeros_dtype(&[self.steps, n, self.total_classes], dtype)
            .scatter_add(2, &self.classes, &by_state);
        let weighted = &by_class * &grad.reshape(&[1, n as isize, 1]).neg();
        if self.steps == self.total_steps {
            return weighted;
        }
        let unread = [self.total_steps - self.steps, n, self.total_classes];
        shape::cat(&[&weighted, &Tensor::zeros_dtype(&unread, dtype)], 0)
    }
}

fn shape_error(message: String, location: &'static Location<'static>) -> Error {
    Error::Shape { op: OP, message, location }
}
