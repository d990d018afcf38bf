//! A backward trace for learners: while a [`BackwardTrace`] is alive, every step of the
//! reverse sweep is written down (the node, its op and call site, the gradient that reached
//! it, and what its rule sent to each input), so the chain rule can be watched running on
//! one's own model.

use std::cell::RefCell;
use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::Tensor;
use crate::node::NodeKey;
use crate::tape::with_tape;

/// Traces alive on any thread (the sweep's check per step is one load of this).
static TRACING: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static STEPS: RefCell<Option<Vec<TraceStep>>> = const { RefCell::new(None) };
}

#[inline(always)]
pub(crate) fn enabled() -> bool {
    TRACING.load(Ordering::Relaxed) != 0
}

/// A tensor's shape and 2-norm, as the trace shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct GradSummary {
    /// Its shape.
    pub shape: Vec<usize>,
    /// `sqrt(sum of squares)`.
    pub norm: f64,
}

impl GradSummary {
    fn of(t: &Tensor) -> GradSummary {
        let norm = t.to_vec::<f64>().iter().map(|v| v * v).sum::<f64>().sqrt();
        GradSummary { shape: t.shape().to_vec(), norm }
    }
}

impl fmt::Display for GradSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} |g| = {:.4e}", self.shape, self.norm)
    }
}

/// One step of a reverse sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceStep {
    /// The node's number in record order (as in `tape_nodes` listings).
    pub node: u64,
    /// Its operation (`"leaf"` for a leaf receiving its gradient).
    pub op: &'static str,
    /// Where the operation was called.
    pub location: &'static Location<'static>,
    /// The gradient that reached the node.
    pub grad: GradSummary,
    /// What the rule sent to each input: the input's node number (`None` for an input that
    /// does not track gradients) and the gradient, if any.
    pub sent: Vec<(Option<u64>, Option<GradSummary>)>,
}

impl fmt::Display for TraceStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} {} (at {}) got {}", self.node, self.op, self.location, self.grad)?;
        for (input, grad) in &self.sent {
            match (input, grad) {
                (Some(n), Some(g)) => write!(f, "\n    -> #{n}: {g}")?,
                (Some(n), None) => write!(f, "\n    -> #{n}: nothing")?,
                (None, _) => {}
            }
        }
        Ok(())
    }
}

/// Records the steps of every reverse sweep on this thread until [`BackwardTrace::finish`].
///
/// ```
/// use tapegrad_tape::{BackwardTrace, Tensor};
/// let x = Tensor::from_vec(vec![3.0f64], &[1]).requires_grad();
/// let trace = BackwardTrace::start();
/// (&(&x * &x) * 2.0).sum_to_shape(&[]).backward(); // 2 x^2
/// let steps = trace.finish();
/// let ops: Vec<&str> = steps.iter().map(|s| s.op).collect();
/// assert_eq!(ops, ["sum_to_shape", "mul_scalar", "mul", "leaf"]);
/// assert_eq!(steps[2].grad.norm, 2.0); // d(2 y)/dy reaches x * x
/// assert_eq!(steps[3].grad.norm, 12.0); // 4 x at the leaf
/// for step in &steps {
///     println!("{step}");
/// }
/// ```
#[must_use = "the trace records until `finish`"]
pub struct BackwardTrace {
    previous: Option<Vec<TraceStep>>,
    /// The steps are the thread's: the trace stays on that thread.
    _thread: std::marker::PhantomData<*const ()>,
}

impl BackwardTrace {
    /// Starts recording.
    ///
    /// ```
    /// let steps = tapegrad_tape::BackwardTrace::start().finish();
    /// assert!(steps.is_empty()); // no backward ran
    /// ```
    pub fn start() -> BackwardTrace {
        TRACING.fetch_add(1, Ordering::Relaxed);
        crate::instrument::add(1);
        BackwardTrace {
            previous: STEPS.with(|s| s.borrow_mut().replace(Vec::new())),
            _thread: std::marker::PhantomData,
        }
    }

    /// Stops recording and returns the steps, in the order the sweeps took them.
    ///
    /// ```
    /// let trace = tapegrad_tape::BackwardTrace::start();
    /// assert!(trace.finish().is_empty());
    /// ```
    pub fn finish(mut self) -> Vec<TraceStep> {
        let previous = self.previous.take();
        let steps = STEPS.with(|s| std::mem::replace(&mut *s.borrow_mut(), previous));
        TRACING.fetch_sub(1, Ordering::Relaxed);
        crate::instrument::remove(1);
        std::mem::forget(self);
        steps.unwrap_or_default()
    }
}

impl Drop for BackwardTrace {
    fn drop(&mut self) {
        let previous = self.previous.take();
        STEPS.with(|s| *s.borrow_mut() = previous);
        TRACING.fetch_sub(1, Ordering::Relaxed);
        crate::instrument::remove(1);
    }
}

fn seq_of(key: NodeKey) -> Option<u64> {
    with_tape(|t| t.nodes.get(key).map(|n| n.seq))
}

/// Writes down one step, if this thread is tracing. `seq` is the node's number, taken
/// before its step (a node may leave the tape during its step).
#[cold]
pub(crate) fn record_step(
    seq: Option<u64>,
    op: &'static str,
    location: &'static Location<'static>,
    grad: &Tensor,
    inputs: &[Option<NodeKey>],
    sent: &[Option<Tensor>],
) {
    let active = STEPS.with(|s| s.borrow().is_some());
    if !active {
        return;
    }
    let step = TraceStep {
        node: seq.unwrap_or(0),
        op,
        location,
        grad: GradSummary::of(grad),
        sent: inputs
            .iter()
            .zip(sent.iter().map(Some).chain(std::iter::repeat(None)))
            .map(|(k, g)| (k.and_then(seq_of), g.and_then(|g| g.as_ref().map(GradSummary::of))))
            .collect(),
    };
    STEPS.with(|s| {
        if let Some(steps) = s.borrow_mut().as_mut() {
            steps.push(step);
        }
    });
}

/// The sequence number of `key`, for a step about to be taken (only when tracing).
#[cold]
pub(crate) fn seq_before_step(key: NodeKey) -> Option<u64> {
    seq_of(key)
}
