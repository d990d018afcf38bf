//! The connectionist temporal classification loss and its gradient, one sequence per task.
//!
//! The forward and backward variables run in probability space, rescaled to sum to 1 at
//! every step (Graves et al., 2006, section 4.1), in f64: a step costs a few additions and
//! multiplications per state and one logarithm, where the log-space recursion takes a
//! `logsumexp` per state. Each step's probabilities are taken relative to the largest one
//! the sequence reads at that step, so that only states whose share is below f64's range
//! (about `e^-745` of the step's best) round to zero. When a step's total, or the final
//! states' share, falls below f64's normal range (log-probabilities of `-inf`, or spread by
//! more than that range), the functions return `None` and the caller takes the log-space
//! path.

use rayon::prelude::*;

use crate::Real;

/// The extent of the log-probabilities, laid out `[steps, batch, classes]`.
///
/// ```
/// use tapegrad_kernels::ctc::Sizes;
/// let sizes = Sizes { steps: 50, batch: 8, classes: 29 };
/// assert_eq!(sizes.steps * sizes.batch * sizes.classes, 11_600);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    /// Time steps `T`.
    pub steps: usize,
    /// Sequences `N`.
    pub batch: usize,
    /// Classes `C`, the blank included.
    pub classes: usize,
}

/// One sequence's target: its labels (classes other than the blank) and how many of its
/// steps it reads.
///
/// ```
/// use tapegrad_kernels::ctc::Target;
/// let target = Target { labels: &[3, 3, 1], input_length: 10 };
/// assert_eq!(target.steps_needed(), 4); // a blank must separate the repeated 3s
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// The label sequence.
    pub labels: &'a [usize],
    /// Steps read, from the first.
    pub input_length: usize,
}

impl Target<'_> {
    /// The fewest steps an alignment of the labels takes: one per label and one more per
    /// repeat.
    ///
    /// ```
    /// use tapegrad_kernels::ctc::Target;
    /// assert_eq!(Target { labels: &[], input_length: 0 }.steps_needed(), 0);
    /// assert_eq!(Target { labels: &[1, 2, 2, 2], input_length: 0 }.steps_needed(), 6);
    /// ```
    pub fn steps_needed(&self) -> usize {
        self.labels.len() + self.labels.windows(2).filter(|w| w[0] == w[1]).count()
    }

    /// Whether some alignment fits in the input length.
    fn reachable(&self) -> bool {
        self.input_length >= self.steps_needed()
    }
}

/// The class a state of the lattice of `labels` emits: the blank at even states, the
/// labels at odd ones (state `2 i + 1` is label `i`). States past the last label, as in a
/// batch padded to its longest target, are blanks.
///
/// ```
/// use tapegrad_kernels::ctc::state_class;
/// let classes: Vec<usize> = (0..7).map(|s| state_class(&[3, 3], 0, s)).collect();
/// assert_eq!(classes, [0, 3, 0, 3, 0, 0, 0]);
/// ```
pub fn state_class(labels: &[usize], blank: usize, state: usize) -> usize {
    if state % 2 == 1 && state / 2 < labels.len() { labels[state / 2] } else { blank }
}

/// Whether a state may be entered from the state two before it, skipping the blank
/// between: only a label that differs from the label before it (a repeated label needs
/// its blank, and a blank is never skipped to).
///
/// ```
/// use tapegrad_kernels::ctc::state_skips;
/// let skips: Vec<bool> = (0..7).map(|s| state_skips(&[3, 3, 1], 0, s)).collect();
/// assert_eq!(skips, [false, false, false, false, false, true, false]);
/// ```
pub fn state_skips(labels: &[usize], blank: usize, state: usize) -> bool {
    let class = state_class(labels, blank, state);
    state >= 2 && class != blank && class != state_class(labels, blank, state - 2)
}

/// `-ln p(labels | log_probs)` for each target: infinite where no alignment fits in its
/// input length. `None` when the rescaled recursion rounds a reachable step to nothing;
/// the log-space recursion then gives the answer.
///
/// ```
/// use tapegrad_kernels::ctc::{Sizes, Target, losses};
/// // Two steps, classes {blank, a}, each 1/2: "a" is read by 3 of the 4 paths.
/// let log_probs = vec![0.5f64.ln(); 4];
/// let sizes = Sizes { steps: 2, batch: 1, classes: 2 };
/// let target = [Target { labels: &[1], input_length: 2 }];
/// let loss = losses(&log_probs, sizes, 0, &target).unwrap();
/// assert!((loss[0] + 0.75f64.ln()).abs() < 1e-15);
/// ```
pub fn losses<T: Real>(
    log_probs: &[T],
    sizes: Sizes,
    blank: usize,
    targets: &[Target<'_>],
) -> Option<Vec<f64>> {
    check(log_probs, sizes, blank, targets);
    targets
        .par_iter()
        .enumerate()
        .map(|(n, target)| {
            if !target.reachable() {
                return Some(f64::INFINITY);
            }
            Lattice::new(log_probs, sizes, blank, n, target).forward(None)
        })
        .collect()
}

/// The gradient of `sum_n weights[n] * loss_n` to the log-probabilities, laid out like
/// them: `-weights[n]` times the posterior probability of each class at each step of
/// sequence `n` (zero past its input length and for targets no alignment reaches). `None`
/// as for [`losses`].
///
/// ```
/// use tapegrad_kernels::ctc::{Sizes, Target, gradient};
/// let log_probs = vec![0.5f64.ln(); 4];
/// let sizes = Sizes { steps: 2, batch: 1, classes: 2 };
/// let target = [Target { labels: &[1], input_length: 2 }];
/// let grad = gradient(&log_probs, sizes, 0, &target, &[1.0]).unwrap();
/// // Of the paths "a a", "a -", "- a": step 0 reads the blank in one of three.
/// assert!((grad[0] + 1.0 / 3.0).abs() < 1e-15 && (grad[1] + 2.0 / 3.0).abs() < 1e-15);
/// ```
pub fn gradient<T: Real>(
    log_probs: &[T],
    sizes: Sizes,
    blank: usize,
    targets: &[Target<'_>],
    weights: &[T],
) -> Option<Vec<T>> {
    check(log_probs, sizes, blank, targets);
    assert_eq!(weights.len(), sizes.batch, "one weight per sequence");
    let Sizes { steps, batch, classes } = sizes;
    // Each sequence's gradient as `[input_length, classes]`, then interleaved.
    let per_sequence: Option<Vec<Vec<f64>>> = targets
        .par_iter()
        .enumerate()
        .map(|(n, target)| {
            let weight = weights[n].widen();
            if !target.reachable() || weight == 0.0 {
                return Some(Vec::new());
            }
            let lattice = Lattice::new(log_probs, sizes, blank, n, target);
            let mut alphas = Vec::with_capacity(target.input_length * lattice.states);
            lattice.forward(Some(&mut alphas))?;
            lattice.posteriors(&alphas, -weight)
        })
        .collect();
    let per_sequence = per_sequence?;
    let mut grad = vec![T::ZERO; steps * batch * classes];
    for (n, g) in per_sequence.iter().enumerate() {
        for (t, row) in g.chunks_exact(classes.max(1)).enumerate() {
            let out = &mut grad[(t * batch + n) * classes..][..classes];
            for (o, &v) in out.iter_mut().zip(row) {
                *o = T::round_from(v);
            }
        }
    }
    Some(grad)
}

fn check<T>(log_probs: &[T], sizes: Sizes, blank: usize, targets: &[Target<'_>]) {
    let Sizes { steps, batch, classes } = sizes;
    assert_eq!(log_probs.len(), steps * batch * classes, "log_probs is [steps, batch, classes]");
    assert_eq!(targets.len(), batch, "one target per sequence");
    assert!(blank < classes, "the blank is a class");
    for target in targets {
        assert!(target.input_length <= steps, "an input length within the steps");
        assert!(target.labels.iter().all(|&l| l < classes && l != blank), "labels are classes");
    }
}

/// One sequence's states (blank, label, blank, ..., label, blank) and its probabilities
/// per step, relative to the step's largest.
struct Lattice {
    states: usize,
    steps: usize,
    /// `[steps, states]`: each state's class's probability over the step's largest.
    emitted: Vec<f64>,
    /// `[steps]`: the log of each step's largest probability.
    scales: Vec<f64>,
    /// `[states]`: whether the state may be entered from two states back (a label that
    /// differs from the label before it).
    skips: Vec<bool>,
    /// `[states]`: each state's class.
    classes: Vec<usize>,
    total_classes: usize,
}

impl Lattice {
    fn new<T: Real>(
        log_probs: &[T],
        sizes: Sizes,
        blank: usize,
        n: usize,
        target: &Target,
    ) -> Self {
        let states = 2 * target.labels.len() + 1;
        let classes: Vec<usize> =
            (0..states).map(|s| state_class(target.labels, blank, s)).collect();
        let skips: Vec<bool> = (0..states).map(|s| state_skips(target.labels, blank, s)).collect();
        let steps = target.input_length;
        let mut emitted = vec![0.0; steps * states];
        let mut scales = vec![0.0; steps];
        for t in 0..steps {
            let row = &log_probs[(t * sizes.batch + n) * sizes.classes..][..sizes.classes];
            let largest = classes.iter().map(|&c| row[c].widen()).fold(f64::NEG_INFINITY, f64::max);
            scales[t] = largest;
            // Every even state is the blank: one exponential for all of them.
            let blank = (row[blank].widen() - largest).exp();
            for (s, (e, &c)) in emitted[t * states..][..states].iter_mut().zip(&classes).enumerate()
            {
                *e = if s % 2 == 0 { blank } else { (row[c].widen() - largest).exp() };
            }
        }
        Lattice { states, steps, emitted, scales, skips, classes, total_classes: sizes.classes }
    }

    /// `-ln p`, keeping each step's rescaled forward variable in `alphas` when given.
    fn forward(&self, mut alphas: Option<&mut Vec<f64>>) -> Option<f64> {
        let states = self.states;
        if self.steps == 0 {
            // Reachable without steps: the empty target, read by the empty alignment.
            return Some(0.0);
        }
        let mut alpha = vec![0.0; states];
        let mut next = vec![0.0; states];
        let mut log_p = 0.0;
        for t in 0..self.steps {
            let emitted = &self.emitted[t * states..][..states];
            if t == 0 {
                next.iter_mut().for_each(|v| *v = 0.0);
                next[0] = emitted[0];
                if states > 1 {
                    next[1] = emitted[1];
                }
            } else {
                for s in 0..states {
                    let mut reach = alpha[s];
                    if s >= 1 {
                        reach += alpha[s - 1];
                    }
                    if self.skips[s] {
                        reach += alpha[s - 2];
                    }
                    next[s] = reach * emitted[s];
                }
            }
            let total: f64 = next.iter().sum();
            if !(total >= f64::MIN_POSITIVE && total.is_finite() && self.scales[t].is_finite()) {
                return None;
            }
            next.iter_mut().for_each(|v| *v /= total);
            log_p += total.ln() + self.scales[t];
            std::mem::swap(&mut alpha, &mut next);
            if let Some(alphas) = alphas.as_deref_mut() {
                alphas.extend_from_slice(&alpha);
            }
        }
        let ends = alpha[states - 1] + if states > 1 { alpha[states - 2] } else { 0.0 };
        if ends.is_nan() || ends < f64::MIN_POSITIVE {
            return None;
        }
        Some(-(log_p + ends.ln()))
    }

    /// `scale` times each class's posterior probability at each step, `[steps, classes]`,
    /// from the rescaled forward variables and a backward pass.
    fn posteriors(&self, alphas: &[f64], scale: f64) -> Option<Vec<f64>> {
        let (states, classes) = (self.states, self.total_classes);
        let mut out = vec![0.0; self.steps * classes];
        // The backward variable excludes its own step's emission: 1 in the two final states.
        let mut beta = vec![0.0; states];
        beta[states - 1] = 1.0;
        if states > 1 {
            beta[states - 2] = 1.0;
        }
        let mut previous = vec![0.0; states];
        for t in (0..self.steps).rev() {
            if t + 1 < self.steps {
                let emitted = &self.emitted[(t + 1) * states..][..states];
                for s in 0..states {
                    let mut reach = beta[s] * emitted[s];
                    if s + 1 < states {
                        reach += beta[s + 1] * emitted[s + 1];
                    }
                    if s + 2 < states && self.skips[s + 2] {
                        reach += beta[s + 2] * emitted[s + 2];
                    }
                    previous[s] = reach;
                }
                let total: f64 = previous.iter().sum();
                if !(total >= f64::MIN_POSITIVE && total.is_finite()) {
                    return None;
                }
                previous.iter_mut().for_each(|v| *v /= total);
                std::mem::swap(&mut beta, &mut previous);
            }
            let alpha = &alphas[t * states..][..states];
            let total: f64 = alpha.iter().zip(&beta).map(|(a, b)| a * b).sum();
            if !(total >= f64::MIN_POSITIVE && total.is_finite()) {
                return None;
            }
            let row = &mut out[t * classes..][..classes];
            for s in 0..states {
                row[self.classes[s]] += scale * alpha[s] * beta[s] / total;
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `-ln p` by listing every path of `steps` steps over `classes` and collapsing it.
    fn by_enumeration(log_probs: &[f64], classes: usize, blank: usize, labels: &[usize]) -> f64 {
        let steps = log_probs.len() / classes;
        let mut total = 0.0;
        for code in 0..classes.pow(steps as u32) {
            let path: Vec<usize> =
                (0..steps).map(|t| code / classes.pow(t as u32) % classes).collect();
            let mut collapsed = Vec::new();
            for (t, &c) in path.iter().enumerate() {
                if c != blank && (t == 0 || path[t - 1] != c) {
                    collapsed.push(c);
                }
            }
            if collapsed == labels {
                total += path
                    .iter()
                    .enumerate()
                    .map(|(t, &c)| log_probs[t * classes + c])
                    .sum::<f64>()
                    .exp();
            }
        }
        -total.ln()
    }

    fn wave(len: usize, rate: f64) -> Vec<f64> {
        (0..len).map(|k| 1.5 * (rate * k as f64 + 0.3).sin()).collect()
    }

    #[test]
    fn losses_equal_the_sum_over_every_path() {
        for (labels, blank) in
            [(&[1usize, 2][..], 0), (&[2, 2][..], 0), (&[0, 1, 0][..], 3), (&[][..], 1)]
        {
            let (steps, classes) = (5, 4);
            let log_probs = wave(steps * classes, 0.71);
            let sizes = Sizes { steps, batch: 1, classes };
            let target = [Target { labels, input_length: steps }];
            let got = losses(&log_probs, sizes, blank, &target).unwrap()[0];
            let want = by_enumeration(&log_probs, classes, blank, labels);
            assert!(
                (got - want).abs() < 1e-12 * want.abs().max(1.0),
                "{labels:?}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn the_gradient_matches_central_differences() {
        let (steps, batch, classes) = (6, 2, 4);
        let log_probs = wave(steps * batch * classes, 0.43);
        let sizes = Sizes { steps, batch, classes };
        let targets = [
            Target { labels: &[1, 1, 3], input_length: 6 },
            Target { labels: &[2], input_length: 4 },
        ];
        let weights = [0.7, -1.3];
        let weighted = |lp: &[f64]| {
            let l = losses(lp, sizes, 0, &targets).unwrap();
            l[0] * weights[0] + l[1] * weights[1]
        };
        let grad = gradient(&log_probs, sizes, 0, &targets, &weights).unwrap();
        for i in 0..log_probs.len() {
            let (mut up, mut down) = (log_probs.clone(), log_probs.clone());
            up[i] += 1e-6;
            down[i] -= 1e-6;
            let numeric = (weighted(&up) - weighted(&down)) / 2e-6;
            assert!((grad[i] - numeric).abs() < 1e-7, "[{i}]: {} vs {numeric}", grad[i]);
        }
    }

    #[test]
    fn unreachable_targets_and_underflow() {
        let sizes = Sizes { steps: 2, batch: 1, classes: 3 };
        let log_probs = vec![-1.0f32; 6];
        // A repeat in two steps needs three.
        let repeat = [Target { labels: &[1, 1], input_length: 2 }];
        assert_eq!(losses(&log_probs, sizes, 0, &repeat).unwrap(), [f64::INFINITY]);
        assert_eq!(gradient(&log_probs, sizes, 0, &repeat, &[1.0]).unwrap(), [0.0; 6]);
        // A class never emitted: the rescaled recursion cannot tell, and says so.
        let mut masked = log_probs.clone();
        masked[1] = f32::NEG_INFINITY;
        masked[4] = f32::NEG_INFINITY;
        let one = [Target { labels: &[1], input_length: 2 }];
        assert!(losses(&masked, sizes, 0, &one).is_none());
        assert!(gradient(&masked, sizes, 0, &one, &[1.0]).is_none());
        // Without steps, only the empty target.
        let none = [Target { labels: &[], input_length: 0 }];
        assert_eq!(losses(&log_probs, sizes, 0, &none).unwrap(), [0.0]);
    }

    #[test]
    fn every_thread_count_gives_the_same_bits() {
        let (steps, batch, classes) = (30, 8, 6);
        let log_probs: Vec<f32> =
            wave(steps * batch * classes, 0.37).iter().map(|&v| v as f32).collect();
        let labels: Vec<Vec<usize>> =
            (0..batch).map(|n| (0..n % 5 + 1).map(|j| 1 + (n + 2 * j) % 5).collect()).collect();
        let targets: Vec<Target> = labels
            .iter()
            .enumerate()
            .map(|(n, l)| Target { labels: l, input_length: steps - n })
            .collect();
        let sizes = Sizes { steps, batch, classes };
        let weights = vec![1.0f32; batch];
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                (
                    losses(&log_probs, sizes, 0, &targets).unwrap(),
                    gradient(&log_probs, sizes, 0, &targets, &weights).unwrap(),
                )
            })
        };
        assert_eq!(run(1), run(3));
    }
}
