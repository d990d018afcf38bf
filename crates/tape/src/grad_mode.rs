//! Grad mode: whether operations on this thread record onto the tape.

use std::cell::Cell;

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether operations on this thread currently record onto the tape.
///
/// ```
/// use tapegrad_tape::{is_grad_enabled, no_grad};
/// assert!(is_grad_enabled());
/// let _guard = no_grad();
/// assert!(!is_grad_enabled());
/// ```
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(Cell::get)
}

/// Restores the previous grad mode when dropped. Made by [`no_grad`], [`enable_grad`] and
/// [`set_grad_enabled`].
///
/// ```
/// use tapegrad_tape::{is_grad_enabled, no_grad};
/// {
///     let _guard = no_grad();
///     assert!(!is_grad_enabled());
/// }
/// assert!(is_grad_enabled());
/// ```
#[must_use = "grad mode reverts as soon as the guard is dropped; bind it with `let _guard = ...`"]
pub struct GradModeGuard {
    previous: bool,
    // Grad mode is per thread: the guard must be dropped on the thread that made it.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for GradModeGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.previous));
    }
}

/// Sets grad mode on this thread until the returned guard is dropped.
///
/// ```
/// use tapegrad_tape::{Tensor, set_grad_enabled};
/// let x = Tensor::ones(&[2]).requires_grad();
/// let _guard = set_grad_enabled(false);
/// assert!(!(&x * 2.0).tracks_grad());
/// ```
pub fn set_grad_enabled(enabled: bool) -> GradModeGuard {
    let previous = GRAD_ENABLED.with(|g| g.replace(enabled));
    GradModeGuard { previous, _not_send: std::marker::PhantomData }
}

/// Stops recording until the guard is dropped: PyTorch's `torch.no_grad()`. Use it for
/// evaluation and for updating parameters by hand.
///
/// ```
/// use tapegrad_tape::{Tensor, no_grad};
/// let w = Tensor::ones(&[3]).requires_grad();
/// let y = {
///     let _guard = no_grad();
///     &w * 3.0
/// };
/// assert!(!y.tracks_grad());
/// ```
pub fn no_grad() -> GradModeGuard {
    set_grad_enabled(false)
}

/// Turns recording back on inside a [`no_grad`] region until the guard is dropped.
///
/// ```
/// use tapegrad_tape::{Tensor, enable_grad, no_grad};
/// let w = Tensor::ones(&[3]).requires_grad();
/// let _off = no_grad();
/// let _on = enable_grad();
/// assert!((&w * 3.0).tracks_grad());
/// ```
pub fn enable_grad() -> GradModeGuard {
    set_grad_enabled(true)
}
