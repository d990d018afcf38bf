//! The tape: a Wengert list of recorded operations in a generational slotmap.
//!
//! Each recorded operation appends a [`Node`] with a sequence number, so record order survives
//! slot reuse. A node lives while anything can still reach it: tensor handles that point at
//! it and edges from later nodes both count as references. `backward()` frees every interior
//! node it swept (unless asked to retain the graph), so the tape returns to its baseline of
//! leaves after each training step; a handle to a freed node holds a stale generational key,
//! which later backward calls detect and report.

use std::cell::{OnceCell, RefCell};
use std::panic::Location;

use slotmap::{SlotMap, new_key_type};
use smallvec::SmallVec;

use crate::layout::{Layout, Shape};
use crate::{DType, Storage, Tensor, is_grad_enabled};

new_key_type! {
    /// A generational key of a node on this thread's tape.
    ///
    /// ```
    /// use std::collections::HashSet;
    /// use tapegrad_tape::NodeKey;
    /// // Keys are small `Copy` values; the default key is the null key, naming no node.
    /// let null = NodeKey::default();
    /// assert!(slotmap::Key::is_null(&null));
    /// assert_eq!([null, null].into_iter().collect::<HashSet<_>>().len(), 1);
    /// ```
    pub struct NodeKey;
}

/// Gradients for each input of an operation, `None` where an input gets none.
///
/// ```
/// use tapegrad_tape::{Backward, InputGrads, Tensor, record};
/// use std::panic::Location;
/// // y = a, with `b` passed along but treated as a constant: it gets no gradient.
/// let (a, b) = (Tensor::ones(&[1]).requires_grad(), Tensor::ones(&[1]).requires_grad());
/// let y = record("first", Location::caller(), &[&a, &b], a.detach(), || {
///     Backward::new(|ctx| -> InputGrads { smallvec::smallvec![Some(ctx.grad().clone()), None] })
/// });
/// y.backward();
/// assert_eq!((a.grad().map(|g| g.item()), b.grad().is_none()), (Some(1.0), true));
/// ```
pub type InputGrads = SmallVec<[Option<Tensor>; 2]>;

/// A backward rule: the vector-Jacobian product of one recorded operation.
///
/// It is written with differentiable tensor operations, so that under `create_graph` the
/// gradients it returns are themselves recorded and can be differentiated again.
///
/// Each recorded op owns its rule (a closure that captures nothing costs no allocation).
///
/// ```
/// use std::panic::Location;
/// use tapegrad_tape::{Backward, BackwardRule, BackwardCtx, InputGrads, Tensor, record};
/// // The same rule (d/dx 2x = 2) for two recorded operations: z = 2(2x).
/// fn double(ctx: &BackwardCtx<'_>) -> InputGrads { smallvec::smallvec![Some(ctx.grad() * 2.0)] }
/// let _boxed: BackwardRule = Box::new(double); // what `Backward::new(double)` stores
/// let backward = || Backward::new(double);
/// let x = Tensor::ones(&[1]).requires_grad();
/// let y = record("double", Location::caller(), &[&x], Tensor::full(&[1], 2.0), backward);
/// let z = record("double", Location::caller(), &[&y], Tensor::full(&[1], 4.0), backward);
/// z.backward();
/// assert_eq!(x.grad().unwrap().item(), 4.0);
/// ```
pub type BackwardRule = Box<dyn Fn(&BackwardCtx<'_>) -> InputGrads>;

/// What a backward rule sees: the gradient of the output, the tensors the operation saved,
/// and (if it asked for it) its own output.
///
/// ```
/// use tapegrad_tape::{Backward, Tensor, record};
/// use std::panic::Location;
/// // y = 3x, recorded by hand; its rule scales the incoming gradient.
/// let x = Tensor::ones(&[2]).requires_grad();
/// let value = Tensor::full(&[2], 3.0);
/// let y = record("times_three", Location::caller(), &[&x], value, || {
///     Backward::new(|ctx| smallvec::smallvec![Some(ctx.grad() * 3.0)])
/// });
/// y.sum_to_shape(&[]).backward();
/// assert_eq!(x.grad().unwrap().to_vec::<f32>(), vec![3.0, 3.0]);
/// ```
pub struct BackwardCtx<'a> {
    pub(crate) grad: &'a Tensor,
    pub(crate) saved: &'a [Tensor],
    pub(crate) output: Option<&'a SavedOutput>,
    /// The output as a tensor, built on the first call to [`BackwardCtx::output`] (or
    /// beforehand, carrying its node, under `create_graph`).
    pub(crate) output_tensor: OnceCell<Tensor>,
    pub(crate) inputs: &'a [Option<NodeKey>],
    pub(crate) scalar: f64,
}

impl BackwardCtx<'_> {
    /// The gradient of the loss with respect to this operation's output.
    ///
    /// ```
    /// use tapegrad_tape::{Backward, BackwardOptions, Tensor, record};
    /// use std::panic::Location;
    /// // y = 3x; the gradient seeded into y is what the rule sees.
    /// let x = Tensor::ones(&[2]).requires_grad();
    /// let y = record("times_three", Location::caller(), &[&x], Tensor::full(&[2], 3.0), || {
    ///     Backward::new(|ctx| smallvec::smallvec![Some(ctx.grad() * 3.0)])
    /// });
    /// y.backward_with(Some(&Tensor::from_vec(vec![1.0f32, 10.0], &[2])), BackwardOptions::new());
    /// assert_eq!(x.grad().unwrap().to_vec::<f32>(), vec![3.0, 30.0]);
    /// ```
    pub fn grad(&self) -> &Tensor {
        self.grad
    }

    /// The `i`-th tensor the operation saved with [`Backward::save`].
    ///
    /// ```
    /// use tapegrad_tape::{Backward, Tensor, record};
    /// use std::panic::Location;
    /// // y = ab: each input's gradient is the other input, read back in the order saved.
    /// let a = Tensor::from_vec(vec![2.0f32], &[1]).requires_grad();
    /// let b = Tensor::from_vec(vec![5.0f32], &[1]).requires_grad();
    /// let y = record("mul", Location::caller(), &[&a, &b], Tensor::from_vec(vec![10.0f32], &[1]), || {
    ///     Backward::new(|ctx| smallvec::smallvec![Some(ctx.grad() * ctx.saved(1)), Some(ctx.grad() * ctx.saved(0))])
    ///         .save(&a)
    ///         .save(&b)
    /// });
    /// y.backward();
    /// assert_eq!((a.grad().unwrap().item(), b.grad().unwrap().item()), (5.0, 2.0));
    /// ```
    #[track_caller]
    pub fn saved(&self, i: usize) -> &Tensor {
        match self.saved.get(i) {
            Some(t) => t,
            None => panic!("backward rule asked for saved tensor {i}, but the op saved {}", self.saved.len()),
        }
    }

    /// The operation's output, if it was saved with [`Backward::save_output`].
    ///
    /// Panics if the output was not saved: that is a bug in the operation.
    ///
    /// ```
    /// use tapegrad_tape::{Backward, Tensor, record};
    /// use std::panic::Location;
    /// // y = e^x, whose derivative is its own output.
    /// let x = Tensor::from_vec(vec![0.0f64, 1.0], &[2]).requires_grad();
    /// let value = Tensor::from_vec(x.to_vec::<f64>().iter().map(|v| v.exp()).collect(), &[2]);
    /// let y = record("exp", Location::caller(), &[&x], value, || {
    ///     Backward::new(|ctx| smallvec::smallvec![Some(ctx.grad() * ctx.output())]).save_output()
    /// });
    /// y.sum_to_shape(&[]).backward();
    /// assert_eq!(x.grad().unwrap().to_vec::<f64>(), vec![1.0, 1f64.exp()]);
    /// ```
    #[track_caller]
    pub fn output(&self) -> &Tensor {
        let saved = self.saved_output();
        self.output_tensor.get_or_init(|| Tensor::from_parts(saved.storage.clone(), saved.layout.clone(), None))
    }

    /// The operation's saved output as its storage and layout, without building a tensor:
    /// for rules that compute their gradient in one pass when nothing is recorded.
    ///
    /// Panics if the output was not saved, as [`BackwardCtx::output`] does.
    ///
    /// ```
    /// use tapegrad_tape::{Backward, Storage, Tensor, record};
    /// use std::panic::Location;
    /// // y = e^x: the rule reads e^x straight from the saved values.
    /// let x = Tensor::from_vec(vec![0.0f64, 1.0], &[2]).requires_grad();
    /// let value = Tensor::from_vec(x.to_vec::<f64>().iter().map(|v| v.exp()).collect(), &[2]);
    /// let y = record("exp", Location::caller(), &[&x], value, || {
    ///     Backward::new(|ctx| {
    ///         let (storage, layout) = ctx.output_parts();
    ///         let y = Tensor::from_storage(storage.clone(), layout.clone());
    ///         smallvec::smallvec![Some(ctx.grad() * &y)]
    ///     })
    ///     .save_output()
    /// });
    /// y.sum_to_shape(&[]).backward();
    /// assert_eq!(x.grad().unwrap().to_vec::<f64>(), vec![1.0, 1f64.exp()]);
    /// ```
    #[track_caller]
    pub fn output_parts(&self) -> (&Storage, &Layout) {
        let saved = self.saved_output();
        (&saved.storage, &saved.layout)
    }

    #[track_caller]
    fn saved_output(&self) -> &SavedOutput {
        self.output.expect("backward rule asked for its output, but the op did not save it")
    }

    /// The incoming gradient, to be overwritten in place, when nothing else can see it: no
    /// other handle points at it, it is contiguous, and nothing is being recorded (a
    /// backward without `create_graph`). A rule computes its result into it with
    /// [`Tensor::update_storage`] and returns a clone of the handle, instead of allocating
    /// a fresh tensor; `None` means compute a new one as usual.
    ///
    /// Overwrite it only at the rule's last read of the gradient. The buffer is still
    /// copy-on-write: values another tensor shares are copied before they change.
    ///
    /// ```
    /// use tapegrad_tape::{Backward, Storage, Tensor, record};
    /// use std::panic::Location;
    /// // y = 3x, whose rule scales the incoming gradient where it lies when it can.
    /// let x = Tensor::ones(&[2]).requires_grad();
    /// let y = record("times_three", Location::caller(), &[&x], Tensor::full(&[2], 3.0), || {
    ///     Backward::new(|ctx| {
    ///         let g = match ctx.grad_for_reuse() {
    ///             Some(g) => {
    ///                 g.update_storage(|s, _| s.make_mut::<f32>().unwrap().iter_mut().for_each(|v| *v *= 3.0));
    ///                 g.clone()
    ///             }
    ///             None => ctx.grad() * 3.0,
    ///         };
    ///         smallvec::smallvec![Some(g)]
    ///     })
    /// });
    /// (&y * 1.0).sum_to_shape(&[]).backward();
    /// assert_eq!(x.grad().unwrap().to_vec::<f32>(), vec![3.0, 3.0]);
    /// ```
    pub fn grad_for_reuse(&self) -> Option<&Tensor> {
        let g = self.grad;
        (!is_grad_enabled() && g.is_sole_handle() && g.node_key().is_none() && g.is_contiguous()).then_some(g)
    }

    /// The number the operation kept with [`Backward::scalar`] (0 if it kept none).
    ///
    /// ```
    /// use tapegrad_tape::{Backward, Tensor, record};
    /// use std::panic::Location;
    /// // y = 2.5x: the factor travels with the node, and the rule captures nothing.
    /// let x = Tensor::ones(&[1]).requires_grad();
    /// let y = record("scale", Location::caller(), &[&x], Tensor::full(&[1], 2.5), || {
    ///     Backward::new(|ctx| smallvec::smallvec![Some(ctx.grad() * ctx.scalar())]).scalar(2.5)
    /// });
    /// y.backward();
    /// assert_eq!(x.grad().unwrap().item(), 2.5);
    /// ```
    pub fn scalar(&self) -> f64 {
        self.scalar
    }

    /// Whether input `i` needs a gradient; rules may skip the work for inputs that do not.
    ///
    /// ```
    /// use tapegrad_tape::{Backward, Tensor, record};
    /// use std::panic::Location;
    /// // y = a + b with `b` a constant: the rule only builds a gradient for `a`.
    /// let (a, b) = (Tensor::ones(&[1]).requires_grad(), Tensor::ones(&[1]));
    /// let y = record("add", Location::caller(), &[&a, &b], Tensor::full(&[1], 2.0), || {
    ///     Backward::new(|ctx| (0..2).map(|i| ctx.needs_input_grad(i).then(|| ctx.grad().clone())).collect())
    /// });
    /// y.backward();
    /// assert_eq!(a.grad().unwrap().item(), 1.0);
    /// ```
    #[track_caller]
    pub fn needs_input_grad(&self, i: usize) -> bool {
        match self.inputs.get(i) {
            Some(input) => input.is_some(),
            None => panic!("backward rule asked about input {i}, but the op has {} inputs", self.inputs.len()),
        }
    }
}

/// What an operation hands the tape so it can run backward later: the tensors to keep and
/// the rule. Built only when the operation is actually recorded.
///
/// ```
/// use tapegrad_tape::Backward;
/// let b = Backward::new(|ctx| smallvec::smallvec![Some(ctx.grad().clone())]).save_output();
/// # let _ = b;
/// ```
pub struct Backward {
    /// The node's data under construction: the rule, saved values and scalar are written
    /// once, where the node will keep them (moving them later cost copies that stalled).
    pub(crate) data: Box<NodeData>,
    pub(crate) save_output: bool,
}

impl Backward {
    /// A backward rule that saves nothing yet.
    ///
    /// ```
    /// use tapegrad_tape::{Backward, Tensor, record};
    /// use std::panic::Location;
    /// // y = -x: the rule needs nothing but the incoming gradient.
    /// let x = Tensor::ones(&[2]).requires_grad();
    /// let y = record("neg", Location::caller(), &[&x], Tensor::full(&[2], -1.0), || {
    ///     Backward::new(|ctx| smallvec::smallvec![Some(ctx.grad() * -1.0)])
    /// });
    /// y.sum_to_shape(&[]).backward();
    /// assert_eq!(x.grad().unwrap().to_vec::<f32>(), vec![-1.0, -1.0]);
    /// ```
    pub fn new(rule: impl Fn(&BackwardCtx<'_>) -> InputGrads + 'static) -> Self {
        let rule: BackwardRule = Box::new(rule);
        // In place: `Box::new` would build the value on the stack and copy it over.
        let data = tapegrad_kernels::in_place::boxed(|| NodeData {
            shape: Shape::new(),
            saved_bytes: 0,
            op: Some(OpRecord { rule: Some(rule), scalar: 0.0, saved: SmallVec::new(), output: None }),
        });
        Backward { data, save_output: false }
    }

    /// Keeps `t` for the rule (read back with [`BackwardCtx::saved`], in the order saved).
    /// The values are kept as they are now: a later in-place update of `t` copies first.
    ///
    /// ```
    /// use tapegrad_tape::{Backward, Tensor, record};
    /// use std::panic::Location;
    /// // y = x^2 saves x = 3; overwriting x afterwards leaves the gradient at 2 * 3.
    /// let x = Tensor::from_vec(vec![3.0f32], &[1]).requires_grad();
    /// let y = record("square", Location::caller(), &[&x], Tensor::from_vec(vec![9.0f32], &[1]), || {
    ///     Backward::new(|ctx| smallvec::smallvec![Some(ctx.grad() * ctx.saved(0) * 2.0)]).save(&x)
    /// });
    /// x.set_data(&Tensor::zeros(&[1]));
    /// y.backward();
    /// assert_eq!(x.grad().unwrap().item(), 6.0);
    /// ```
    pub fn save(mut self, t: &Tensor) -> Self {
        self.record().saved.push(t.snapshot());
        self
    }

    /// Keeps one number for the rule (read back with [`BackwardCtx::scalar`]): a factor or
    /// an exponent kept this way, instead of captured by the closure, saves the closure its
    /// allocation (a closure that captures nothing is stored for free).
    ///
    /// ```
    /// use tapegrad_tape::{Backward, Tensor, record};
    /// use std::panic::Location;
    /// // y = x^3 keeps x and the exponent 3.
    /// let x = Tensor::from_vec(vec![2.0f64], &[1]).requires_grad();
    /// let y = record("cube", Location::caller(), &[&x], Tensor::from_vec(vec![8.0f64], &[1]), || {
    ///     Backward::new(|ctx| {
    ///         let n = ctx.scalar();
    ///         smallvec::smallvec![Some(ctx.grad() * &(ctx.saved(0) * ctx.saved(0)) * n)]
    ///     })
    ///     .save(&x)
    ///     .scalar(3.0)
    /// });
    /// y.backward();
    /// assert_eq!(x.grad().unwrap().item(), 12.0);
    /// ```
    pub fn scalar(mut self, value: f64) -> Self {
        self.record().scalar = value;
        self
    }

    fn record(&mut self) -> &mut OpRecord {
        self.data.op.as_mut().expect("a Backward always holds its op record")
    }

    /// Keeps the operation's own output for the rule (read back with
    /// [`BackwardCtx::output`]). The tape holds it without a reference cycle.
    ///
    /// ```
    /// use tapegrad_tape::{Backward, Tensor, record, tape_stats};
    /// use std::panic::Location;
    /// // y = e^x keeps its output (the derivative e^x is y) and nothing else.
    /// let before = tape_stats().saved_bytes;
    /// let x = Tensor::zeros(&[2]).requires_grad();
    /// let y = record("exp", Location::caller(), &[&x], Tensor::ones(&[2]), || {
    ///     Backward::new(|ctx| smallvec::smallvec![Some(ctx.grad() * ctx.output())]).save_output()
    /// });
    /// assert_eq!(tape_stats().saved_bytes - before, 8); // y's two f32 values
    /// y.sum_to_shape(&[]).backward();
    /// assert_eq!(x.grad().unwrap().to_vec::<f32>(), vec![1.0, 1.0]);
    /// ```
    pub fn save_output(mut self) -> Self {
        self.save_output = true;
        self
    }
}

/// An operation's output kept for its backward rule: the values without a tensor handle
/// (a handle would cost an allocation per op; rules that want a tensor get one built).
#[derive(Clone)]
pub(crate) struct SavedOutput {
    pub storage: Storage,
    pub layout: Layout,
}

/// What a recorded operation keeps for its backward pass.
pub(crate) struct OpRecord {
    /// `None` once a backward pass has released the node (or while its rule runs).
    pub rule: Option<BackwardRule>,
    pub scalar: f64,
    pub saved: SmallVec<[Tensor; 2]>,
    /// The output's value, without its node (holding the node would be a cycle).
    pub output: Option<SavedOutput>,
}

/// The part of a node that the sweep reads once per node, kept behind one pointer so that
/// the node itself stays small: nodes are moved into and out of the slotmap's slots, and
/// moving a large struct costs a copy each time.
pub(crate) struct NodeData {
    pub shape: Shape,
    pub saved_bytes: usize,
    /// `None` for a leaf.
    pub op: Option<OpRecord>,
}

/// One entry of the Wengert list.
pub(crate) struct Node {
    pub op: &'static str,
    pub location: &'static Location<'static>,
    pub seq: u64,
    /// Tensor handles plus edges from later nodes that point here.
    pub refs: u32,
    pub dtype: DType,
    pub retains_grad: bool,
    /// Whether the op's rule is gone (freed by a backward pass, or running): kept here so
    /// that the sweep's walk over the graph need not reach into the node's data.
    pub released: bool,
    /// `None` for inputs that do not take part in differentiation.
    pub inputs: SmallVec<[Option<NodeKey>; 2]>,
    /// Taken only as the node leaves the tape (see [`Node::data`]).
    pub data: Option<Box<NodeData>>,
    /// `.grad` of a leaf, or of an interior tensor that asked to `retain_grad()`.
    pub grad: Option<Tensor>,
    /// The gradient gathered so far in the sweep under way.
    pub pending: Option<Tensor>,
    /// The sweep that last visited this node.
    pub visit: u64,
    /// Where `grad(...)` wants this node's gradient, if it does.
    pub capture: Option<u32>,
}

impl Node {
    /// The node's data; present for as long as the node is on the tape.
    pub fn data(&self) -> &NodeData {
        self.data.as_deref().expect("a node on the tape has its data")
    }

    pub fn data_mut(&mut self) -> &mut NodeData {
        self.data.as_deref_mut().expect("a node on the tape has its data")
    }

    pub fn is_leaf(&self) -> bool {
        self.data().op.is_none()
    }

    /// Whether dropping this node would drop tensor handles (and so touch the tape).
    pub fn holds_tensors(&self) -> bool {
        self.data.as_ref().is_some_and(|d| d.holds_tensors()) || self.grad.is_some() || self.pending.is_some()
    }
}

impl NodeData {
    /// Whether dropping this would drop tensor handles (and so touch the tape).
    pub fn holds_tensors(&self) -> bool {
        self.op.as_ref().is_some_and(|op| op.rule.is_some() || !op.saved.is_empty())
    }
}

/// Things whose drop may release further nodes; they are dropped after the tape borrow ends.
// Nodes dominate the graveyard, so boxing them would only add an allocation per freed node.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Garbage {
    Node(#[allow(dead_code)] Node),
    Tensors(#[allow(dead_code)] SmallVec<[Tensor; 2]>),
    Rule(#[allow(dead_code)] BackwardRule),
}

pub(crate) struct Tape {
    pub nodes: SlotMap<NodeKey, Node>,
    pub next_seq: u64,
    pub next_sweep: u64,
    pub leaves: usize,
    pub saved_bytes: usize,
    pub graveyard: Vec<Garbage>,
    draining: bool,
}

thread_local! {
    static TAPE: RefCell<Tape> = RefCell::new(Tape {
        nodes: SlotMap::with_key(),
        next_seq: 0,
        next_sweep: 1,
        leaves: 0,
        saved_bytes: 0,
        graveyard: Vec::new(),
        draining: false,
    });
    /// Releases that arrived while the tape was borrowed; applied at the next borrow.
    static DEFERRED: RefCell<Vec<NodeKey>> = const { RefCell::new(Vec::new()) };
    /// Whether `DEFERRED` may hold keys, so that the common path skips it.
    static HAS_DEFERRED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` on this thread's tape, then drops whatever it freed outside the borrow.
///
/// Dropping a freed node drops the tensors it saved, which may free their nodes in turn; this
/// unwinds iteratively (nested releases only add to the graveyard) so that freeing a chain of
/// a million nodes cannot overflow the stack.
pub(crate) fn with_tape<R>(f: impl FnOnce(&mut Tape) -> R) -> R {
    TAPE.with(|cell| {
        let (result, mut garbage) = {
            let mut tape = cell.borrow_mut();
            if HAS_DEFERRED.with(|h| h.replace(false)) {
                for key in DEFERRED.with(|d| std::mem::take(&mut *d.borrow_mut())) {
                    tape.decref(key);
                }
            }
            let result = f(&mut tape);
            if tape.draining || tape.graveyard.is_empty() {
                (result, Vec::new())
            } else {
                tape.draining = true;
                (result, std::mem::take(&mut tape.graveyard))
            }
        };
        while !garbage.is_empty() {
            drop(garbage);
            let mut tape = cell.borrow_mut();
            garbage = std::mem::take(&mut tape.graveyard);
            if garbage.is_empty() {
                tape.draining = false;
            }
        }
        result
    })
}

/// Drops one handle's reference to `key` (called when a tensor handle is dropped).
pub(crate) fn release(key: NodeKey) {
    let _ = TAPE.try_with(|cell| {
        let Ok(mut tape) = cell.try_borrow_mut() else {
            DEFERRED.with(|d| d.borrow_mut().push(key));
            HAS_DEFERRED.with(|h| h.set(true));
            return;
        };
        // The common case, a handle to a node that something later still uses: one count
        // down under one borrow. Anything that frees goes the long way round.
        if let Some(node) = tape.nodes.get_mut(key)
            && node.refs > 1
        {
            node.refs -= 1;
            return;
        }
        drop(tape);
        with_tape(|tape| tape.decref(key));
    });
}

impl Tape {
    pub fn incref(&mut self, key: NodeKey) {
        if let Some(node) = self.nodes.get_mut(key) {
            node.refs += 1;
        }
    }

    /// Drops one reference; frees the node (and, transitively, its inputs) at zero.
    pub fn decref(&mut self, key: NodeKey) {
        // Most counts stay above zero, and keys of nodes already gone need nothing: no
        // work list for those.
        match self.nodes.get_mut(key) {
            None => return,
            Some(node) if node.refs > 1 => {
                node.refs -= 1;
                return;
            }
            Some(_) => {}
        }
        let mut stack: SmallVec<[NodeKey; 8]> = SmallVec::new();
        stack.push(key);
        while let Some(k) = stack.pop() {
            let Some(node) = self.nodes.get_mut(k) else { continue };
            node.refs -= 1;
            if node.refs == 0 {
                let node = self.nodes.remove(k).expect("node present");
                stack.extend(node.inputs.iter().flatten().copied());
                self.forget(node);
            }
        }
    }

    /// Accounts for a node that has left the slotmap and queues it to be dropped.
    pub fn forget(&mut self, node: Node) {
        self.saved_bytes -= node.data().saved_bytes;
        if node.is_leaf() {
            self.leaves -= 1;
        }
        self.graveyard.push(Garbage::Node(node));
    }

    /// Frees what a node kept for backward, leaving the node itself in place.
    pub fn release_saved(&mut self, key: NodeKey) {
        let Some(node) = self.nodes.get_mut(key) else { return };
        node.released = !node.is_leaf();
        let data = node.data_mut();
        if let Some(OpRecord { rule, saved, output, .. }) = &mut data.op {
            let rule = rule.take();
            let saved = std::mem::take(saved);
            // Plain values: dropping them cannot reach back into the tape.
            *output = None;
            self.saved_bytes -= data.saved_bytes;
            data.saved_bytes = 0;
            if let Some(rule) = rule {
                self.graveyard.push(Garbage::Rule(rule));
            }
            if !saved.is_empty() {
                self.graveyard.push(Garbage::Tensors(saved));
            }
        }
    }

    /// Appends a node built by `make` from its sequence number, inside the slotmap's
    /// insertion, so that the node is moved as few times as possible on its way in.
    #[inline]
    fn insert_with(&mut self, make: impl FnOnce(u64) -> Node) -> NodeKey {
        let seq = self.next_seq;
        self.next_seq += 1;
        let key = self.nodes.insert_with_key(|_| make(seq));
        let node = &self.nodes[key];
        self.saved_bytes += node.data().saved_bytes;
        if node.is_leaf() {
            self.leaves += 1;
        }
        key
    }
}

#[inline]
fn new_node(
    op: &'static str,
    location: &'static Location<'static>,
    seq: u64,
    inputs: SmallVec<[Option<NodeKey>; 2]>,
    dtype: DType,
    data: Box<NodeData>,
) -> Node {
    Node {
        op,
        location,
        seq,
        refs: 1,
        dtype,
        retains_grad: false,
        released: false,
        inputs,
        data: Some(data),
        grad: None,
        pending: None,
        visit: 0,
        capture: None,
    }
}

/// Adds a leaf node for a tensor that starts requiring a gradient; returns its key with
/// one reference, owned by the tensor handle that will hold it.
pub(crate) fn new_leaf(shape: &[usize], dtype: DType, location: &'static Location<'static>) -> NodeKey {
    let data = Box::new(NodeData { shape: crate::layout::shape_of(shape), saved_bytes: 0, op: None });
    with_tape(|tape| tape.insert_with(|seq| new_node("leaf", location, seq, SmallVec::new(), dtype, data)))
}

/// Whether an operation on `inputs` would be recorded now: grad mode is on and at least one
/// input takes part in differentiation.
///
/// ```
/// use tapegrad_tape::{Tensor, will_record};
/// let x = Tensor::ones(&[1]);
/// assert!(!will_record(&[&x]));
/// assert!(will_record(&[&x.clone().requires_grad()]));
/// ```
pub fn will_record(inputs: &[&Tensor]) -> bool {
    is_grad_enabled() && inputs.iter().any(|t| t.tracks_grad())
}

/// Records an operation onto this thread's tape and returns its output, attached to the
/// new node. This is how every differentiable operation (and every custom function) joins
/// the graph.
///
/// `output` is the computed value (a tensor without a node). `make_backward` runs only if the
/// operation is recorded, so that code in `no_grad` regions or on constants pays nothing for
/// saving tensors or boxing the rule. `location` is the user's call site, shown in error
/// messages and graph dumps: pass `Location::caller()` from a `#[track_caller]` function.
///
/// ```
/// use tapegrad_tape::{Backward, Tensor, record};
/// use std::panic::Location;
/// let x = Tensor::from_vec(vec![2.0f64], &[1]).requires_grad();
/// let square = x.to_vec::<f64>()[0].powi(2);
/// let y = record("square", Location::caller(), &[&x], Tensor::from_vec(vec![square], &[1]), || {
///     Backward::new(|ctx| smallvec::smallvec![Some(ctx.grad() * ctx.saved(0) * 2.0)]).save(&x)
/// });
/// y.backward();
/// assert_eq!(x.grad().unwrap().item(), 4.0);
/// ```
pub fn record(
    op: &'static str,
    location: &'static Location<'static>,
    inputs: &[&Tensor],
    output: Tensor,
    make_backward: impl FnOnce() -> Backward,
) -> Tensor {
    if !will_record(inputs) {
        return output;
    }
    let Backward { mut data, save_output } = make_backward();
    let record = data.op.as_mut().expect("a Backward always holds its op record");
    let mut saved_bytes: usize = record.saved.iter().map(Tensor::storage_nbytes).sum();
    if save_output {
        saved_bytes += output.storage_nbytes();
        record.output = Some(SavedOutput { storage: output.storage(), layout: output.layout().clone() });
    }
    data.shape = crate::layout::shape_of(output.shape());
    data.saved_bytes = saved_bytes;
    let dtype = output.dtype();
    let key = with_tape(|tape| {
        // Built in here, not moved in: a list assembled outside would be copied on its way.
        let mut input_keys: SmallVec<[Option<NodeKey>; 2]> = SmallVec::new();
        for t in inputs {
            let key = t.node_key();
            // Each input gains an edge from the new node.
            if let Some(key) = key {
                tape.incref(key);
            }
            input_keys.push(key);
        }
        tape.insert_with(|seq| new_node(op, location, seq, input_keys, dtype, data))
    });
    output.attach_node(key)
}

/// Counts of what the tape holds on this thread, so that a leak is visible.
///
/// ```
/// use tapegrad_tape::{Tensor, tape_stats};
/// let before = tape_stats();
/// let w = Tensor::ones(&[3]).requires_grad();
/// assert_eq!(tape_stats().leaves, before.leaves + 1);
/// drop(w);
/// assert_eq!(tape_stats().nodes, before.nodes);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TapeStats {
    /// Nodes alive: leaves plus recorded operations.
    pub nodes: usize,
    /// Leaf nodes (tensors that require a gradient and were not computed by an op).
    pub leaves: usize,
    /// Recorded operations still alive.
    pub interior: usize,
    /// Bytes of tensor storage the recorded operations hold for backward.
    pub saved_bytes: usize,
}

/// What this thread's tape holds now.
///
/// ```
/// let s = tapegrad_tape::tape_stats();
/// assert_eq!(s.nodes, s.leaves + s.interior);
/// ```
pub fn tape_stats() -> TapeStats {
    with_tape(|tape| TapeStats {
        nodes: tape.nodes.len(),
        leaves: tape.leaves,
        interior: tape.nodes.len() - tape.leaves,
        saved_bytes: tape.saved_bytes,
    })
}
