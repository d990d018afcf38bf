//! Hooks on gradients (PyTorch's `register_hook` and
//! `register_post_accumulate_grad_hook`): functions the reverse sweep calls with a
//! tensor's gradient when it is complete, to inspect or replace it, and after a leaf's
//! `.grad` has been accumulated. Kept in a side table, so that a sweep without hooks pays
//! one thread-local read per node.

use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::Location;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::node::NodeKey;
use crate::{Error, Result, Tensor, or_panic};

type GradHook = Rc<dyn Fn(&Tensor) -> Option<Tensor>>;
type AccumulateHook = Rc<dyn Fn(&Tensor)>;

#[derive(Default)]
struct Hooks {
    next_id: u64,
    grad: HashMap<NodeKey, Vec<(u64, GradHook)>>,
    accumulate: HashMap<NodeKey, Vec<(u64, AccumulateHook)>>,
}

thread_local! {
    static HOOKS: RefCell<Hooks> = RefCell::new(Hooks::default());
}

/// Hooks registered on any thread: the sweep's check per node is one plain load of this
/// counter, cheaper than reading the thread's own table.
static REGISTERED: AtomicUsize = AtomicUsize::new(0);

#[inline(always)]
pub(crate) fn any() -> bool {
    REGISTERED.load(Ordering::Relaxed) != 0
}

/// Updates the counter by how many hooks `change` removed from this thread's table.
fn counting(h: &mut Hooks, change: impl FnOnce(&mut Hooks)) {
    let before = total(h);
    change(h);
    let after = total(h);
    if before > after {
        REGISTERED.fetch_sub(before - after, Ordering::Relaxed);
        crate::instrument::remove(before - after);
    }
}

fn total(h: &Hooks) -> usize {
    h.grad.values().map(Vec::len).sum::<usize>()
        + h.accumulate.values().map(Vec::len).sum::<usize>()
}

/// Removes the hook it was returned for (PyTorch's `handle.remove()`); dropping the handle
/// keeps the hook.
///
/// ```
/// use tapegrad_tape::Tensor;
/// let x = Tensor::ones(&[2]).requires_grad();
/// let handle = x.register_hook(|g| Some(g * 0.0));
/// handle.remove();
/// (&x * 3.0).sum_to_shape(&[]).backward();
/// assert_eq!(x.grad().unwrap().to_vec::<f32>(), vec![3.0, 3.0]); // the hook is gone
/// ```
#[must_use = "keep the handle to remove the hook later, or drop it to keep the hook"]
pub struct HookHandle {
    key: NodeKey,
    id: u64,
    accumulate: bool,
    /// Hooks live in their thread's table: the handle stays on that thread.
    _thread: std::marker::PhantomData<*const ()>,
}

impl HookHandle {
    /// Removes the hook.
    ///
    /// ```
    /// let x = tapegrad_tape::Tensor::ones(&[1]).requires_grad();
    /// x.register_post_accumulate_grad_hook(|_| {}).remove();
    /// ```
    pub fn remove(self) {
        HOOKS.with(|h| {
            counting(&mut h.borrow_mut(), |h| {
                if self.accumulate {
                    if let Some(list) = h.accumulate.get_mut(&self.key) {
                        list.retain(|(id, _)| *id != self.id);
                    }
                } else if let Some(list) = h.grad.get_mut(&self.key) {
                    list.retain(|(id, _)| *id != self.id);
                }
                h.grad.retain(|_, l| !l.is_empty());
                h.accumulate.retain(|_, l| !l.is_empty());
            })
        });
    }
}

fn register(key: NodeKey, accumulate: bool, insert: impl FnOnce(&mut Hooks, u64)) -> HookHandle {
    HOOKS.with(|h| {
        let mut h = h.borrow_mut();
        let id = h.next_id;
        h.next_id += 1;
        insert(&mut h, id);
        REGISTERED.fetch_add(1, Ordering::Relaxed);
        crate::instrument::add(1);
        HookHandle { key, id, accumulate, _thread: std::marker::PhantomData }
    })
}

/// Drops the hooks of a node that left the tape.
#[cold]
pub(crate) fn forget(key: NodeKey) {
    HOOKS.with(|h| {
        if let Ok(mut h) = h.try_borrow_mut() {
            counting(&mut h, |h| {
                h.grad.remove(&key);
                h.accumulate.remove(&key);
            });
        }
    });
}

/// Drops the hooks of nodes that left the tape (after a sweep freed them).
pub(crate) fn forget_freed(alive: impl Fn(NodeKey) -> bool) {
    HOOKS.with(|h| {
        counting(&mut h.borrow_mut(), |h| {
            h.grad.retain(|k, _| alive(*k));
            h.accumulate.retain(|k, _| alive(*k));
        })
    });
}

/// `grad` after every hook of `key`, in the order they were registered (each may replace
/// it). Called by the sweep outside the tape's borrow: hooks may compute with tensors.
pub(crate) fn apply_grad_hooks(key: NodeKey, grad: Tensor) -> Tensor {
    let hooks: Vec<GradHook> = HOOKS.with(|h| {
        h.borrow()
            .grad
            .get(&key)
            .map(|l| l.iter().map(|(_, f)| f.clone()).collect())
            .unwrap_or_default()
    });
    hooks.iter().fold(grad, |g, hook| hook(&g).unwrap_or(g))
}

/// Calls the post-accumulate hooks of leaf `key` with its `.grad`.
pub(crate) fn after_accumulate(key: NodeKey, grad: &Tensor) {
    let hooks: Vec<AccumulateHook> = HOOKS.with(|h| {
        h.borrow()
            .accumulate
            .get(&key)
            .map(|l| l.iter().map(|(_, f)| f.clone()).collect())
            .unwrap_or_default()
    });
    for hook in hooks {
        hook(grad);
    }
}

impl Tensor {
    /// Registers `hook`, called with this tensor's gradient each time a backward pass
    /// computes it; returning `Some(g)` replaces the gradient (for everything upstream, and
    /// in `.grad` for a leaf), `None` keeps it (PyTorch's `register_hook`). Panics if the
    /// tensor does not track gradients.
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc};
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f32, 2.0], &[2]).requires_grad();
    /// let h = &x * 3.0;
    /// let seen = Rc::new(Cell::new(0.0));
    /// let seen2 = seen.clone();
    /// let _inspect = h.register_hook(move |g| { seen2.set(g.to_vec::<f32>()[0]); None });
    /// let _clip = h.register_hook(|g| Some(g.mul_scalar(0.5))); // halve what flows back
    /// (&h * 2.0).sum_to_shape(&[]).backward();
    /// assert_eq!(seen.get(), 2.0);
    /// assert_eq!(x.grad().unwrap().to_vec::<f32>(), vec![3.0, 3.0]); // 2 * 0.5 * 3
    /// ```
    #[track_caller]
    pub fn register_hook(&self, hook: impl Fn(&Tensor) -> Option<Tensor> + 'static) -> HookHandle {
        or_panic(self.try_register_hook(hook))
    }

    /// [`Tensor::register_hook`], returning an error instead of panicking.
    ///
    /// ```
    /// assert!(tapegrad_tape::Tensor::ones(&[1]).try_register_hook(|_| None).is_err());
    /// ```
    #[track_caller]
    pub fn try_register_hook(
        &self,
        hook: impl Fn(&Tensor) -> Option<Tensor> + 'static,
    ) -> Result<HookHandle> {
        let key = self.hook_key("register_hook", Location::caller())?;
        Ok(register(key, false, |h, id| h.grad.entry(key).or_default().push((id, Rc::new(hook)))))
    }

    /// Registers `hook`, called with a leaf's `.grad` after a backward pass has added to it
    /// (PyTorch's `register_post_accumulate_grad_hook`: where an optimizer step per
    /// parameter, or a gradient all-reduce, can start). Panics unless this is a leaf that
    /// requires a gradient.
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc};
    /// use tapegrad_tape::Tensor;
    /// let w = Tensor::ones(&[2]).requires_grad();
    /// let log = Rc::new(RefCell::new(Vec::new()));
    /// let log2 = log.clone();
    /// let _h = w.register_post_accumulate_grad_hook(move |g| log2.borrow_mut().push(g.to_vec::<f32>()));
    /// (&w * 2.0).sum_to_shape(&[]).backward();
    /// (&w * 2.0).sum_to_shape(&[]).backward();
    /// assert_eq!(*log.borrow(), vec![vec![2.0, 2.0], vec![4.0, 4.0]]); // after each accumulation
    /// ```
    #[track_caller]
    pub fn register_post_accumulate_grad_hook(
        &self,
        hook: impl Fn(&Tensor) + 'static,
    ) -> HookHandle {
        let location = Location::caller();
        let key = or_panic(self.hook_key("register_post_accumulate_grad_hook", location));
        if !self.is_leaf() {
            or_panic::<()>(Err(Error::InvalidArgument {
                op: "register_post_accumulate_grad_hook",
                message: "only leaves accumulate gradients; use register_hook on computed tensors"
                    .into(),
                location,
            }));
        }
        register(key, true, |h, id| h.accumulate.entry(key).or_default().push((id, Rc::new(hook))))
    }

    fn hook_key(&self, op: &'static str, location: &'static Location<'static>) -> Result<NodeKey> {
        self.node_key().ok_or_else(|| Error::InvalidArgument {
            op,
            message: "this tensor does not track gradients, so no gradient will reach a hook \
                      (call requires_grad() on a leaf)"
                .into(),
            location,
        })
    }
}
