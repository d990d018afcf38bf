//! Forward-mode differentiation (PyTorch's `torch.autograd.forward_ad`): a dual tensor
//! carries a tangent `v` beside its value, and every operation on dual tensors computes
//! its output's tangent `J v` as it computes its value, so one forward pass gives a
//! Jacobian-vector product: cheaper than reverse mode when a function has fewer inputs
//! than outputs, and with no backward pass (nothing is recorded for one unless inputs
//! track gradients).
//!
//! ```
//! use tapegrad_tape::Tensor;
//! use tapegrad_tape::forward_ad::{dual_level, make_dual, unpack_dual};
//! let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
//! let v = Tensor::from_vec(vec![1.0f64, 0.5], &[2]);
//! let _level = dual_level();
//! let y = (&make_dual(&x, &v) * &make_dual(&x, &v)).sum_to_shape(&[]); // sum(x^2) along v: 2 x . v
//! assert_eq!(unpack_dual(&y).tangent.unwrap().item(), 4.0);
//! ```
//!
//! How it works: each operation gives [`record_with_tangent`](crate::record_with_tangent)
//! a tangent rule beside its backward rule, written with tensor operations like the
//! backward one. While a level is open, an operation that has an input carrying a tangent
//! runs that rule on its inputs' tangents (with tangent propagation paused inside, so the
//! rule's own operations carry none). The tangents are ordinary tensors, recorded on the
//! tape when their inputs track gradients: reverse mode can differentiate them (a
//! gradient of a Jacobian-vector product), and a backward sweep with `create_graph` run
//! inside a level carries tangents through its rules (forward-over-reverse: the tangent of
//! a gradient is a Hessian-vector product).
//!
//! As in PyTorch: one level at a time (no forward-over-forward); tangents propagate
//! whatever the grad mode, but not through a backward sweep without `create_graph` (its
//! gradients are plain values); in-place operations refuse dual tensors; `detach` drops
//! the tangent (`requires_grad` keeps it). When the level closes, no tangent made in it
//! is seen again (each is freed with the tensor that holds it). Inside a level,
//! `checkpoint` keeps its function's graph instead of recomputing it.

use std::cell::Cell;
use std::panic::Location;

use crate::error::{Error, Result, or_panic};
use crate::{Tensor, ensure_float};

thread_local! {
    /// The open level's number (0: none).
    static LEVEL: Cell<u64> = const { Cell::new(0) };
    /// Levels opened so far on this thread: each gets a new number, so a tangent left
    /// on a tensor by a closed level is never read again.
    static OPENED: Cell<u64> = const { Cell::new(0) };
    /// Pauses in force (inside tangent rules and backward sweeps without `create_graph`).
    static PAUSED: Cell<u32> = const { Cell::new(0) };
}

/// A tangent as a tensor keeps it: the value and the level it belongs to, behind one
/// pointer so that tensors without one (all but dual ones) grow by a word only.
#[derive(Clone)]
pub(crate) struct Tangent(std::rc::Rc<(u64, Tensor)>);

impl Tangent {
    pub(crate) fn current(value: Tensor) -> Tangent {
        Tangent(std::rc::Rc::new((LEVEL.with(Cell::get), value)))
    }

    /// The value, if its level is the open one and propagation is not paused.
    pub(crate) fn live(&self) -> Option<&Tensor> {
        self.in_level().filter(|_| PAUSED.with(Cell::get) == 0)
    }

    /// The value, if its level is the open one.
    pub(crate) fn in_level(&self) -> Option<&Tensor> {
        let (level, value) = &*self.0;
        (*level != 0 && *level == LEVEL.with(Cell::get)).then_some(value)
    }
}

/// Whether operations compute tangents now: a level is open and not paused. Only called
/// once the instrument counter says something is active.
pub(crate) fn propagating() -> bool {
    LEVEL.with(Cell::get) != 0 && PAUSED.with(Cell::get) == 0
}

/// Pauses tangent propagation on this thread until dropped.
pub(crate) struct Pause(());

impl Drop for Pause {
    fn drop(&mut self) {
        PAUSED.with(|p| p.set(p.get() - 1));
    }
}

pub(crate) fn pause() -> Pause {
    PAUSED.with(|p| p.set(p.get() + 1));
    Pause(())
}

/// An open dual level: dual tensors made while it lives carry tangents through every
/// operation; dropping it closes the level and every tangent made in it is forgotten.
///
/// ```
/// use tapegrad_tape::Tensor;
/// use tapegrad_tape::forward_ad::{dual_level, make_dual, unpack_dual};
/// let level = dual_level();
/// let x = make_dual(&Tensor::ones(&[2]), &Tensor::full(&[2], 3.0));
/// assert!(unpack_dual(&x).tangent.is_some());
/// drop(level);
/// assert!(unpack_dual(&x).tangent.is_none());
/// ```
#[derive(Debug)]
#[must_use = "the level closes as soon as the guard is dropped; bind it with `let _level = ...`"]
pub struct DualLevel {
    /// The pauses in force when the level opened (inside a backward rule, say): lifted
    /// while it is open, so that it propagates, and restored when it closes.
    paused_outside: u32,
    /// The level is the thread's: the guard stays on that thread.
    _thread: std::marker::PhantomData<*const ()>,
}

impl Drop for DualLevel {
    fn drop(&mut self) {
        LEVEL.with(|l| l.set(0));
        PAUSED.with(|p| p.set(self.paused_outside));
        crate::instrument::remove(1);
    }
}

/// Opens a dual level on this thread (PyTorch's `with fwAD.dual_level():`). Panics if one
/// is open already: as in PyTorch, levels do not nest.
///
/// ```
/// let _level = tapegrad_tape::forward_ad::dual_level();
/// assert!(tapegrad_tape::forward_ad::is_dual_level_open());
/// ```
#[track_caller]
pub fn dual_level() -> DualLevel {
    or_panic(try_dual_level())
}

/// [`dual_level`], returning an error if a level is open already.
///
/// ```
/// use tapegrad_tape::forward_ad::try_dual_level;
/// let _outer = try_dual_level().unwrap();
/// assert!(try_dual_level().is_err());
/// ```
#[track_caller]
pub fn try_dual_level() -> Result<DualLevel> {
    if is_dual_level_open() {
        return Err(Error::InvalidArgument {
            op: "dual_level",
            message: "a dual level is open already on this thread, and levels do not nest \
                      (forward-over-forward is not supported)"
                .into(),
            location: Location::caller(),
        });
    }
    let number = OPENED.with(|n| {
        n.set(n.get() + 1);
        n.get()
    });
    LEVEL.with(|l| l.set(number));
    let paused_outside = PAUSED.with(|p| p.replace(0));
    crate::instrument::add(1);
    Ok(DualLevel { paused_outside, _thread: std::marker::PhantomData })
}

/// Whether a dual level is open on this thread.
///
/// ```
/// assert!(!tapegrad_tape::forward_ad::is_dual_level_open());
/// ```
pub fn is_dual_level_open() -> bool {
    LEVEL.with(Cell::get) != 0
}

/// `primal` carrying `tangent` (PyTorch's `make_dual`): operations on the result compute
/// the derivative of their output along `tangent`. The result shares `primal`'s values and
/// its place in the graph (gradients reach `primal`'s history), and `tangent` is kept as
/// it is (a tangent that tracks gradients can be differentiated through). Panics outside
/// a dual level, or if `tangent` does not match `primal`'s shape and float dtype.
///
/// ```
/// use tapegrad_tape::Tensor;
/// use tapegrad_tape::forward_ad::{dual_level, make_dual, unpack_dual};
/// let _level = dual_level();
/// let x = make_dual(&Tensor::full(&[1], 2.0), &Tensor::ones(&[1]));
/// let y = &(&x * &x) * &x; // x^3: tangent 3 x^2 = 12
/// assert_eq!(unpack_dual(&y).tangent.unwrap().item(), 12.0);
/// ```
#[track_caller]
pub fn make_dual(primal: &Tensor, tangent: &Tensor) -> Tensor {
    or_panic(try_make_dual(primal, tangent))
}

/// [`make_dual`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_tape::Tensor;
/// use tapegrad_tape::forward_ad::{dual_level, try_make_dual};
/// assert!(try_make_dual(&Tensor::ones(&[2]), &Tensor::ones(&[2])).is_err()); // no level
/// let _level = dual_level();
/// assert!(try_make_dual(&Tensor::ones(&[2]), &Tensor::ones(&[3])).is_err()); // shape
/// ```
#[track_caller]
pub fn try_make_dual(primal: &Tensor, tangent: &Tensor) -> Result<Tensor> {
    let location = Location::caller();
    if !is_dual_level_open() {
        return Err(Error::InvalidArgument {
            op: "make_dual",
            message: "no dual level is open: call `forward_ad::dual_level()` first".into(),
            location,
        });
    }
    ensure_float("make_dual", primal, location)?;
    if tangent.shape() != primal.shape() {
        return Err(Error::Shape {
            op: "make_dual",
            message: format!(
                "the tangent has shape {:?}, the primal {:?}",
                tangent.shape(),
                primal.shape()
            ),
            location,
        });
    }
    if tangent.dtype() != primal.dtype() {
        return Err(Error::DType {
            op: "make_dual",
            lhs: primal.dtype(),
            rhs: tangent.dtype(),
            location,
        });
    }
    Ok(primal.alias(Some(Tangent::current(tangent.clone()))))
}

/// A dual tensor taken apart by [`unpack_dual`].
///
/// ```
/// use tapegrad_tape::Tensor;
/// let parts = tapegrad_tape::forward_ad::unpack_dual(&Tensor::ones(&[1]));
/// assert!(parts.tangent.is_none() && parts.primal.item() == 1.0);
/// ```
#[derive(Debug, Clone)]
pub struct UnpackedDual {
    /// The values, in the same place of the graph, without the tangent.
    pub primal: Tensor,
    /// The tangent in the open level; `None` when the tensor has none (its tangent is
    /// zero: it does not depend on any dual input) or no level is open.
    pub tangent: Option<Tensor>,
}

/// The primal and tangent of `t` (PyTorch's `unpack_dual`).
///
/// ```
/// use tapegrad_tape::Tensor;
/// use tapegrad_tape::forward_ad::{dual_level, make_dual, unpack_dual};
/// let _level = dual_level();
/// let x = make_dual(&Tensor::full(&[1], 0.0), &Tensor::full(&[1], 2.0));
/// let y = &x * 3.0;
/// let parts = unpack_dual(&y);
/// assert_eq!((parts.primal.item(), parts.tangent.unwrap().item()), (0.0, 6.0));
/// ```
pub fn unpack_dual(t: &Tensor) -> UnpackedDual {
    let tangent = t.tangent_in_level().cloned();
    let primal = if t.has_tangent() { t.alias(None) } else { t.clone() };
    UnpackedDual { primal, tangent }
}
