//! Anomaly mode (PyTorch's `detect_anomaly`): while a guard is alive, the first NaN (and,
//! unless asked otherwise, infinity) that an operation's forward or a backward rule
//! produces stops the program with an error naming the operation and the line where it was
//! recorded. Off by default; when off, each operation pays one thread-local read.

use std::cell::Cell;
use std::panic::Location;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::{Error, Tensor};

/// Guards alive on any thread: while there are none, the check per operation is one plain
/// load of this counter, cheaper than reading the thread's own mode.
static GUARDS: AtomicUsize = AtomicUsize::new(0);

/// Whether anomaly mode might be on for this thread (it is off on all threads when this
/// is false).
#[inline(always)]
pub(crate) fn maybe_enabled() -> bool {
    GUARDS.load(Ordering::Relaxed) != 0
}

thread_local! {
    /// `None`: off. `Some(infinities)`: on, also flagging infinities when `infinities`.
    static MODE: Cell<Option<bool>> = const { Cell::new(None) };
    /// Whether a backward rule is running: its inner operations are not checked one by
    /// one, the gradients it returns are (so the error names the rule's forward op).
    static IN_RULE: Cell<bool> = const { Cell::new(false) };
}

/// Marks a backward rule as running until dropped.
pub(crate) struct RuleGuard(bool);

impl Drop for RuleGuard {
    fn drop(&mut self) {
        IN_RULE.with(|r| r.set(self.0));
    }
}

/// Marks a backward rule as running (see `IN_RULE`) until the guard drops.
#[cold]
pub(crate) fn in_rule() -> RuleGuard {
    RuleGuard(IN_RULE.with(|r| r.replace(true)))
}

/// Restores the previous anomaly mode when dropped.
///
/// ```
/// let guard = tapegrad_tape::detect_anomaly();
/// assert!(tapegrad_tape::is_anomaly_enabled());
/// drop(guard);
/// assert!(!tapegrad_tape::is_anomaly_enabled());
/// ```
#[must_use = "anomaly mode lasts as long as the guard"]
pub struct AnomalyGuard {
    previous: Option<bool>,
    /// The mode is the thread's: the guard stays on that thread.
    _thread: std::marker::PhantomData<*const ()>,
}

impl Drop for AnomalyGuard {
    fn drop(&mut self) {
        MODE.with(|m| m.set(self.previous));
        GUARDS.fetch_sub(1, Ordering::Relaxed);
        crate::instrument::remove(1);
    }
}

/// Turns anomaly mode on for this thread until the guard drops: every operation's output
/// and every gradient a backward rule returns is checked for NaN and infinities.
///
/// ```
/// use tapegrad_tape::{Tensor, detect_anomaly};
/// let x = Tensor::from_vec(vec![1.0f32, -1.0], &[2]);
/// let _anomaly = detect_anomaly();
/// let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| x.div_scalar(0.0))).unwrap_err();
/// let message = err.downcast_ref::<String>().unwrap();
/// assert!(message.contains("`div_scalar` produced inf"), "{message}");
/// ```
#[track_caller]
pub fn detect_anomaly() -> AnomalyGuard {
    detect_anomaly_with(true)
}

/// [`detect_anomaly`] with its one keyword: whether infinities count as anomalies (false:
/// NaN only, as PyTorch's own anomaly mode checks, for models that mask with `-inf`).
///
/// ```
/// use tapegrad_tape::{Tensor, detect_anomaly_with};
/// let _anomaly = detect_anomaly_with(false);
/// let y = Tensor::from_vec(vec![1.0f32], &[1]).div_scalar(0.0); // inf: allowed
/// assert!(y.item().is_infinite());
/// ```
pub fn detect_anomaly_with(infinities: bool) -> AnomalyGuard {
    GUARDS.fetch_add(1, Ordering::Relaxed);
    crate::instrument::add(1);
    AnomalyGuard {
        previous: MODE.with(|m| m.replace(Some(infinities))),
        _thread: std::marker::PhantomData,
    }
}

/// Whether anomaly mode is on for this thread.
///
/// ```
/// assert!(!tapegrad_tape::is_anomaly_enabled());
/// ```
pub fn is_anomaly_enabled() -> bool {
    maybe_enabled() && MODE.with(|m| m.get().is_some())
}

/// The first anomalous element of `t` as `(what, flat index)`, if anomaly mode is on and
/// there is one.
#[inline]
pub(crate) fn find(t: &Tensor) -> Option<(&'static str, usize)> {
    let infinities = MODE.with(|m| m.get())?;
    scan(t, infinities)
}

#[cold]
fn scan(t: &Tensor, infinities: bool) -> Option<(&'static str, usize)> {
    if !t.dtype().is_float() {
        return None;
    }
    t.to_vec::<f64>().iter().enumerate().find_map(|(i, v)| {
        if v.is_nan() {
            Some(("NaN", i))
        } else if infinities && v.is_infinite() {
            Some((if *v > 0.0 { "inf" } else { "-inf" }, i))
        } else {
            None
        }
    })
}

/// Panics if `output`, just computed by `op` at `location`, holds an anomaly. Only the
/// counter's load is inlined into every operation; the rest stays out of their code.
#[inline(always)]
pub(crate) fn check_forward(
    op: &'static str,
    location: &'static Location<'static>,
    output: &Tensor,
) {
    if maybe_enabled() {
        check_forward_slow(op, location, output);
    }
}

#[cold]
#[inline(never)]
fn check_forward_slow(op: &'static str, location: &'static Location<'static>, output: &Tensor) {
    if MODE.with(|m| m.get()).is_none() || IN_RULE.with(|r| r.get()) {
        return;
    }
    if let Some((what, index)) = find(output) {
        panic!(
            "{}",
            Error::Anomaly {
                op,
                message: format!(
                    "`{op}` produced {what} in its output (element {index} of shape {:?})",
                    output.shape()
                ),
                location,
            }
        );
    }
}

/// An error if a gradient a backward rule of `op` returned holds an anomaly.
#[cold]
pub(crate) fn check_gradients(
    op: &'static str,
    location: &'static Location<'static>,
    grads: &[Option<Tensor>],
) -> Result<(), Error> {
    for (input, grad) in grads.iter().enumerate() {
        let Some(grad) = grad else { continue };
        if let Some((what, index)) = find(grad) {
            return Err(Error::Anomaly {
                op,
                message: format!(
                    "the backward rule of `{op}` produced {what} in the gradient of its input \
                     {input} (element {index} of shape {:?})",
                    grad.shape()
                ),
                location,
            });
        }
    }
    Ok(())
}
