//! The connectionist temporal classification loss (Graves et al., 2006): the negative log of
//! the total probability of every alignment of a target sequence to a longer sequence of
//! per-step class distributions, blanks between and around the labels.
//!
//! The forward variable `alpha` runs over the target with a blank before, between and after
//! its labels (`2 L + 1` states), one recorded step per time step: each state takes the
//! `logsumexp` of itself, the state before it and, where the label differs from the one two
//! states back, that one too, plus the log-probability of its own class. Written with
//! recorded ops, the loss has gradients of every order.

use std::panic::Location;

use tapegrad_tape::{DType, Error, Result, Tensor, ensure_float};

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
        let losses = self.losses(&log_probs, &sequences);
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
                let wanted: usize = target_lengths.iter().sum();
                if !batched {
                    (vec![0], total)
                } else if total == wanted {
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
                    return Err(shape_error(
                        format!(
                            "expects targets [N, S] or [sum(target_lengths)] = [{wanted}], got {:?}",
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

    /// The loss of each sequence, `[N]`, by the forward variable's recursion.
    fn losses(&self, log_probs: &Tensor, sequences: &[Sequence]) -> Tensor {
        let [_, n, _] = log_probs.shape() else { unreachable!("3-d") };
        let n = *n;
        let dtype = log_probs.dtype();
        let longest = sequences.iter().map(|s| s.labels.len()).max().unwrap_or(0);
        let states = 2 * longest + 1;
        let steps = sequences.iter().map(|s| s.input_length).max().unwrap_or(0);
        // Each state's class: blanks at even states, the labels at odd ones (blanks past a
        // sequence's end, where nothing is read).
        let class = |s: &Sequence, state: usize| {
            if state % 2 == 1 && state / 2 < s.labels.len() {
                s.labels[state / 2]
            } else {
                self.blank
            }
        };
        let mask = |f: &dyn Fn(&Sequence, usize) -> bool| {
            let values: Vec<f64> = sequences
                .iter()
                .flat_map(|s| (0..states).map(move |state| f(s, state) as u8 as f64))
                .collect();
            Tensor::from_vec(values, &[n, states]).to_dtype(dtype)
        };
        let unreachable = Tensor::full_dtype(&[1], UNREACHABLE, dtype);
        if steps == 0 {
            // No sequence has a step: only empty targets have an alignment (the empty one).
            // The sum over no steps keeps the losses on the tape, with a gradient of 0.
            let each: Vec<f64> = sequences
                .iter()
                .map(|s| if s.labels.is_empty() { 0.0 } else { -UNREACHABLE })
                .collect();
            let none = log_probs.narrow(0, 0, 0).sum().reshape(&[1]);
            return self.finish(&(&Tensor::from_vec(each, &[n]).to_dtype(dtype) + &none));
        }
        let index: Vec<i64> = (0..steps)
            .flat_map(|_| {
                sequences
                    .iter()
                    .flat_map(move |s| (0..states).map(move |state| class(s, state) as i64))
            })
            .collect();
        let index = Tensor::from_vec(index, &[steps, n, states]);
        // log(0) as UNREACHABLE, so that no state is ever -inf.
        let emitted =
            log_probs.narrow(0, 0, steps).gather(2, &index).clamp(Some(UNREACHABLE), None);
        let skips = mask(&|s, state| {
            state >= 2 && class(s, state) != self.blank && class(s, state) != class(s, state - 2)
        });
        let starts = mask(&|s, state| {
            s.input_length > 0 && (state == 0 || (state == 1 && !s.labels.is_empty()))
        });
        let mut alpha = where_(&starts, &emitted.select(0, 0), &unreachable);
        let padding = Tensor::full_dtype(&[n, 2], UNREACHABLE, dtype);
        for t in 1..steps {
            let padded = shape::cat(&[&padding, &alpha], 1);
            let before = padded.narrow(1, 1, states);
            let skipped = where_(&skips, &padded.narrow(1, 0, states), &unreachable);
            let next = shape::stack(&[&alpha, &before, &skipped], 0).logsumexp(0, false)
                + emitted.select(0, t as isize);
            alpha = if sequences.iter().all(|s| s.input_length > t) {
                next
            } else {
                let running = mask(&|s, _| s.input_length > t);
                where_(&running, &next, &alpha)
            };
        }
        // The alignment ends in the last label or the blank after it.
        let ends: Vec<i64> = sequences
            .iter()
            .flat_map(|s| [2 * s.labels.len() as i64, (2 * s.labels.len()).max(1) as i64 - 1])
            .collect();
        let ends = Tensor::from_vec(ends, &[n, 2]);
        let two_ends: Vec<f64> = sequences
            .iter()
            .flat_map(|s| [1.0, if s.labels.is_empty() { 0.0 } else { 1.0 }])
            .collect();
        let two_ends = Tensor::from_vec(two_ends, &[n, 2]).to_dtype(dtype);
        // A sequence without steps has the empty alignment only.
        let no_steps: Vec<f64> =
            sequences.iter().flat_map(|s| [(s.input_length == 0) as u8 as f64; 2]).collect();
        let final_alpha = where_(&two_ends, &alpha.gather(1, &ends), &unreachable);
        let final_alpha = if sequences.iter().any(|s| s.input_length == 0) {
            let no_steps = Tensor::from_vec(no_steps, &[n, 2]).to_dtype(dtype);
            let empty: Vec<f64> = sequences
                .iter()
                .flat_map(|s| [if s.labels.is_empty() { 0.0 } else { UNREACHABLE }, UNREACHABLE])
                .collect();
            where_(&no_steps, &Tensor::from_vec(empty, &[n, 2]).to_dtype(dtype), &final_alpha)
        } else {
            final_alpha
        };
        self.finish(&final_alpha.logsumexp(1, false).neg())
    }

    /// Losses of unreachable targets made infinite (or 0 with `zero_infinity`).
    fn finish(&self, losses: &Tensor) -> Tensor {
        let reachable = losses.lt(&Tensor::full_dtype(&[1], IMPOSSIBLE, losses.dtype()));
        let instead = if self.zero_infinity { 0.0 } else { f64::INFINITY };
        where_(&reachable, losses, &Tensor::full_dtype(&[1], instead, losses.dtype()))
    }
}

const OP: &str = "ctc_loss";

fn shape_error(message: String, location: &'static Location<'static>) -> Error {
    Error::Shape { op: OP, message, location }
}
