//! Recording: how an operation joins the tape, and how its backward rule is written.
//!
//! An operation computes its value without recording anything, then calls [`record`] with
//! its inputs, that value, and a closure that builds its [`Backward`]: the rule and what
//! the rule will read. The closure runs only if the operation is recorded.
//!
//! The canonical rule is `Backward::new(|ctx| smallvec![...])`, with `.save(t)` for each
//! tensor it reads back: see [`record`] for a whole operation and [`Backward`] for the
//! variants (scalar, saved output, in-place, fused).

use std::cell::OnceCell;
use std::panic::Location;

use smallvec::SmallVec;

use crate::layout::Layout;
use crate::node::{Node, NodeData, NodeKey, OpRecord, SavedOutput};
use crate::tape::with_tape;
use crate::{DType, Storage, Tensor, is_grad_enabled};

/// Records an operation onto this thread's tape and returns its output, attached to the
/// new node. This is how every differentiable operation (and every custom function) joins
/// the graph. It has no forward-mode rule: inside a dual level
/// ([`forward_ad`](crate::forward_ad)) it panics when an input carries a tangent, naming
/// the operation; ops that support forward mode use [`record_with_tangent`].
///
/// The canonical way to define an operation: compute the value without recording, then
/// record it with a rule that maps the output's gradient to one gradient per input,
/// written with tensor operations (so that `create_graph` can differentiate it again):
///
/// ```
/// use std::panic::Location;
/// use tapegrad_tape::smallvec::smallvec;
/// use tapegrad_tape::{Backward, Tensor, record};
///
/// /// y = x^2, whose derivative is 2x.
/// #[track_caller]
/// fn square(x: &Tensor) -> Tensor {
///     let value = &x.detach() * &x.detach(); // detached: computing the value records nothing
///     record("square", Location::caller(), &[x], value, || {
///         Backward::new(|ctx| smallvec![Some(ctx.grad() * ctx.saved(0) * 2.0)]).save(x)
///     })
/// }
///
/// let x = Tensor::from_vec(vec![3.0f64], &[1]).requires_grad();
/// square(&x).backward();
/// assert_eq!(x.grad().unwrap().item(), 6.0);
/// ```
///
/// `output` is the computed value (a tensor without a node). `make_backward` runs only if
/// the operation is recorded, so that code in `no_grad` regions or on constants pays nothing
/// for saving tensors or boxing the rule. `location` is the user's call site, shown in error
/// messages and graph dumps: pass `Location::caller()` from a `#[track_caller]` function.
pub fn record(
    op: &'static str,
    location: &'static Location<'static>,
    inputs: &[&Tensor],
    output: Tensor,
    make_backward: impl FnOnce() -> Backward,
) -> Tensor {
    let instrumented = crate::instrument::active();
    if instrumented && carries_tangents(inputs) {
        panic!(
            "{op} (at {location}) has no forward-mode rule, and an input carries a tangent: \
             record it with `record_with_tangent` (a custom Function: implement `jvp`)"
        );
    }
    record_untangled(op, location, inputs, output, make_backward, instrumented)
}

/// Whether some input carries a tangent that operations propagate now (see `forward_ad`);
/// only asked once the instrument counter says something is active.
#[cold]
fn carries_tangents(inputs: &[&Tensor]) -> bool {
    crate::forward_ad::propagating()
        && !crate::recompute::replaying()
        && inputs.iter().any(|t| t.live_tangent().is_some())
}

/// [`record`] with a forward-mode rule beside the backward one: `tangent` computes the
/// output's tangent `J v` from the inputs' tangents `v` (see [`TangentCtx`]), written with
/// tensor operations like a backward rule. It runs only while a dual level is open
/// ([`forward_ad`](crate::forward_ad)) and some input carries a tangent; every other call
/// costs what `record` costs. `make_backward` may be called again to give the tangent rule
/// the backward rule ([`TangentCtx::vjp`]), so it must be `Fn`.
///
/// ```
/// use std::panic::Location;
/// use tapegrad_tape::smallvec::smallvec;
/// use tapegrad_tape::forward_ad::{dual_level, make_dual, unpack_dual};
/// use tapegrad_tape::{Backward, Tensor, record_with_tangent};
///
/// /// y = x^2: backward g 2x, forward 2x v.
/// #[track_caller]
/// fn square(x: &Tensor) -> Tensor {
///     let value = &x.detach() * &x.detach();
///     record_with_tangent(
///         "square",
///         Location::caller(),
///         &[x],
///         value,
///         || Backward::new(|ctx| smallvec![Some(ctx.grad() * ctx.saved(0) * 2.0)]).save(x),
///         |ctx| ctx.tangent(0).unwrap() * ctx.input(0) * 2.0,
///     )
/// }
///
/// let _level = dual_level();
/// let x = make_dual(&Tensor::from_vec(vec![3.0f64], &[1]), &Tensor::from_vec(vec![0.5f64], &[1]));
/// assert_eq!(unpack_dual(&square(&x)).tangent.unwrap().item(), 3.0);
/// ```
pub fn record_with_tangent(
    op: &'static str,
    location: &'static Location<'static>,
    inputs: &[&Tensor],
    output: Tensor,
    make_backward: impl Fn() -> Backward,
    tangent: impl FnOnce(&TangentCtx<'_>) -> Tensor,
) -> Tensor {
    let instrumented = crate::instrument::active();
    if instrumented && carries_tangents(inputs) {
        return record_dual(op, location, inputs, output, &make_backward, tangent);
    }
    record_untangled(op, location, inputs, output, make_backward, instrumented)
}

/// Records the op, then computes and attaches its output's tangent.
#[cold]
#[inline(never)]
fn record_dual(
    op: &'static str,
    location: &'static Location<'static>,
    inputs: &[&Tensor],
    output: Tensor,
    make_backward: &dyn Fn() -> Backward,
    tangent: impl FnOnce(&TangentCtx<'_>) -> Tensor,
) -> Tensor {
    let tangents: SmallVec<[Option<Tensor>; 2]> =
        inputs.iter().map(|t| t.live_tangent().cloned()).collect();
    let output = record_untangled(op, location, inputs, output, make_backward, true);
    let value = {
        // The rule's own operations carry no tangents of their own.
        let _pause = crate::forward_ad::pause();
        let ctx = TangentCtx { inputs, tangents: &tangents, output: &output, make_backward };
        let value = tangent(&ctx);
        fit_tangent(op, location, &output, value)
    };
    if let Some(key) = output.node_key() {
        // A rule reading its saved output under `create_graph` sees the tangent too. Its
        // values only: the tangent was computed from this node's output, and keeping that
        // graph in the node would be a reference cycle (the node would never be freed).
        let values = crate::forward_ad::Tangent::current(value.detach());
        with_tape(|tape| {
            let saved = tape.nodes.get_mut(key).and_then(|node| node.data.as_mut());
            if let Some(out) = saved.and_then(|d| d.op.as_mut()).and_then(|r| r.output.as_mut()) {
                out.tangent = Some(values);
            }
        });
    }
    output.with_tangent(crate::forward_ad::Tangent::current(value))
}

/// A tangent rule's result checked against the output: same dtype, and the output's shape
/// (a tangent that broadcasts to it, such as one input's of a broadcasting op, is expanded).
fn fit_tangent(
    op: &'static str,
    location: &'static Location<'static>,
    output: &Tensor,
    value: Tensor,
) -> Tensor {
    assert_eq!(
        value.dtype(),
        output.dtype(),
        "the tangent rule of {op} (at {location}) returned a {} tangent for a {} output",
        value.dtype(),
        output.dtype()
    );
    if value.shape() == output.shape() {
        return value;
    }
    match value.try_broadcast_to(output.shape()) {
        Ok(t) => t,
        Err(_) => panic!(
            "the tangent rule of {op} (at {location}) returned shape {:?} for an output of \
             shape {:?}",
            value.shape(),
            output.shape()
        ),
    }
}

/// Records without looking at tangents: [`record`]'s body.
#[inline(always)]
fn record_untangled(
    op: &'static str,
    location: &'static Location<'static>,
    inputs: &[&Tensor],
    output: Tensor,
    make_backward: impl FnOnce() -> Backward,
    instrumented: bool,
) -> Tensor {
    if instrumented {
        crate::anomaly::check_forward(op, location, &output);
    }
    if !will_record(inputs) {
        return output;
    }
    let backward = make_backward();
    if instrumented && crate::recompute::replaying() {
        return crate::recompute::capture(op, output, backward);
    }
    let Backward { mut data, save_output } = backward;
    let record = data.op.as_mut().expect("a Backward always holds its op record");
    let mut saved_bytes: usize = record.saved.iter().map(Tensor::storage_nbytes).sum();
    if save_output {
        saved_bytes += output.storage_nbytes();
        let storage = output.storage();
        record.output =
            Some(SavedOutput { storage, layout: output.layout().clone(), tangent: None });
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
        tape.insert_with(|seq| Node::new(op, location, seq, input_keys, dtype, data))
    });
    output.attach_node(key)
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

/// What an operation hands the tape so it can run backward later: the rule and what it
/// reads. Built only when the operation is actually recorded (inside [`record`]'s closure).
///
/// **The canonical form** is `Backward::new(rule)` plus one `.save(t)` per tensor the rule
/// reads back, the rule returning one `Option<Tensor>` per input (`None` for an input that
/// gets no gradient; [`BackwardCtx::needs_input_grad`] says which ones may be skipped):
///
/// ```
/// use std::panic::Location;
/// use tapegrad_tape::smallvec::smallvec;
/// use tapegrad_tape::{Backward, Tensor, record};
/// // y = a * b: each input's gradient is the output's gradient times the other input.
/// let a = Tensor::from_vec(vec![2.0f32], &[1]).requires_grad();
/// let b = Tensor::from_vec(vec![5.0f32], &[1]).requires_grad();
/// let value = &a.detach() * &b.detach();
/// let y = record("mul", Location::caller(), &[&a, &b], value, || {
///     Backward::new(|ctx| {
///         let (g, a, b) = (ctx.grad(), ctx.saved(0), ctx.saved(1));
///         smallvec![
///             ctx.needs_input_grad(0).then(|| g * b),
///             ctx.needs_input_grad(1).then(|| g * a),
///         ]
///     })
///     .save(&a)
///     .save(&b)
/// });
/// y.backward();
/// assert_eq!((a.grad().unwrap().item(), b.grad().unwrap().item()), (5.0, 2.0));
/// ```
///
/// Variants, each for one situation:
///
/// - **scalar**: a rule that needs a number (a factor, an exponent) keeps it with
///   [`Backward::scalar`] and reads [`BackwardCtx::scalar`], instead of capturing it: a
///   closure that captures nothing is stored without an allocation.
/// - **saved output**: a rule whose derivative is best written in the output (e^x, tanh)
///   saves it with [`Backward::save_output`] and reads [`BackwardCtx::output`], or
///   [`BackwardCtx::output_parts`] for the bare values.
/// - **in-place**: a single-input elementwise rule on a hot path may overwrite the
///   incoming gradient when no one else can see it ([`BackwardCtx::grad_for_reuse`]; the
///   scalar arithmetic's rules do, through a private `map_grad` helper).
/// - **fused**: when nothing is recorded (grad mode off, a plain backward), a rule may
///   compute its whole product in one pass over the values instead of composing recorded
///   operations; it must keep the composed form for `create_graph`. tapegrad-ops does this
///   for tanh, sigmoid and relu with its `fused_rule` helper, which also reuses the
///   gradient's buffer.
///
/// Code outside the tapegrad crates can also implement [`Function`](crate::Function), which
/// records through this same path.
pub struct Backward {
    /// The node's data under construction: the rule, saved values and scalar are written
    /// once, where the node will keep them, because moving them later costs copies.
    pub(crate) data: Box<NodeData>,
    pub(crate) save_output: bool,
}

impl Backward {
    /// A backward rule that saves nothing yet.
    ///
    /// ```
    /// use std::panic::Location;
    /// use tapegrad_tape::{Backward, Tensor, record};
    /// // y = -x: the rule needs nothing but the incoming gradient.
    /// let x = Tensor::ones(&[2]).requires_grad();
    /// let y = record("neg", Location::caller(), &[&x], Tensor::full(&[2], -1.0), || {
    ///     Backward::new(|ctx| smallvec::smallvec![Some(ctx.grad() * -1.0)])
    /// });
    /// y.sum_to_shape(&[]).backward();
    /// assert_eq!(x.grad().unwrap().to_vec::<f32>(), vec![-1.0, -1.0]);
    /// ```
    pub fn new(rule: impl Fn(&BackwardCtx<'_>) -> InputGrads + 'static) -> Self {
        Backward { data: node_data_for(Box::new(rule)), save_output: false }
    }

    /// Keeps `t` for the rule (read back with [`BackwardCtx::saved`], in the order saved).
    /// The values are kept as they are now: a later in-place update of `t` copies first.
    ///
    /// ```
    /// use std::panic::Location;
    /// use tapegrad_tape::{Backward, Tensor, record};
    /// // y = x^2 saves x = 3; overwriting x afterwards leaves the gradient at 2 * 3.
    /// let x = Tensor::from_vec(vec![3.0f32], &[1]).requires_grad();
    /// let value = Tensor::from_vec(vec![9.0f32], &[1]);
    /// let y = record("square", Location::caller(), &[&x], value, || {
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
    /// use std::panic::Location;
    /// use tapegrad_tape::{Backward, Tensor, record};
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

    /// Keeps the operation's own output for the rule (read back with
    /// [`BackwardCtx::output`]). The tape holds it without a reference cycle.
    ///
    /// ```
    /// use std::panic::Location;
    /// use tapegrad_tape::{Backward, Tensor, record, tape_stats};
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

    fn record(&mut self) -> &mut OpRecord {
        self.data.op.as_mut().expect("a Backward always holds its op record")
    }
}

/// A node's data holding `rule`.
#[inline]
fn node_data_for(rule: BackwardRule) -> Box<NodeData> {
    NodeData::with_rule(rule)
}

/// Gradients for each input of an operation, `None` where an input gets none.
///
/// ```
/// use std::panic::Location;
/// use tapegrad_tape::{Backward, InputGrads, Tensor, record};
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
/// use tapegrad_tape::{Backward, BackwardCtx, BackwardRule, InputGrads, Tensor, record};
/// // The same rule (d/dx 2x = 2) for two recorded operations: z = 2(2x).
/// fn double(ctx: &BackwardCtx<'_>) -> InputGrads {
///     smallvec::smallvec![Some(ctx.grad() * 2.0)]
/// }
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
/// use std::panic::Location;
/// use tapegrad_tape::{Backward, Tensor, record};
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
    /// Set when a tangent rule runs this rule ([`TangentCtx::vjp`]): which inputs carry a
    /// tangent. The sweep's in-place variants are then off.
    pub(crate) for_tangent: Option<&'a [bool]>,
}

impl BackwardCtx<'_> {
    /// The gradient of the loss with respect to this operation's output.
    ///
    /// ```
    /// use std::panic::Location;
    /// use tapegrad_tape::{Backward, BackwardOptions, Tensor, record};
    /// // y = 3x; the gradient seeded into y is what the rule sees.
    /// let x = Tensor::ones(&[2]).requires_grad();
    /// let y = record("times_three", Location::caller(), &[&x], Tensor::full(&[2], 3.0), || {
    ///     Backward::new(|ctx| smallvec::smallvec![Some(ctx.grad() * 3.0)])
    /// });
    /// let seed = Tensor::from_vec(vec![1.0f32, 10.0], &[2]);
    /// y.backward_with(Some(&seed), BackwardOptions::new());
    /// assert_eq!(x.grad().unwrap().to_vec::<f32>(), vec![3.0, 30.0]);
    /// ```
    pub fn grad(&self) -> &Tensor {
        self.grad
    }

    /// The `i`-th tensor the operation saved with [`Backward::save`].
    ///
    /// ```
    /// use std::panic::Location;
    /// use tapegrad_tape::{Backward, Tensor, record};
    /// // y = ab: each input's gradient is the other input, read back in the order saved.
    /// let a = Tensor::from_vec(vec![2.0f32], &[1]).requires_grad();
    /// let b = Tensor::from_vec(vec![5.0f32], &[1]).requires_grad();
    /// let value = Tensor::from_vec(vec![10.0f32], &[1]);
    /// let y = record("mul", Location::caller(), &[&a, &b], value, || {
    ///     Backward::new(|ctx| {
    ///         let (g, a, b) = (ctx.grad(), ctx.saved(0), ctx.saved(1));
    ///         smallvec::smallvec![Some(g * b), Some(g * a)]
    ///     })
    ///     .save(&a)
    ///     .save(&b)
    /// });
    /// y.backward();
    /// assert_eq!((a.grad().unwrap().item(), b.grad().unwrap().item()), (5.0, 2.0));
    /// ```
    #[track_caller]
    pub fn saved(&self, i: usize) -> &Tensor {
        match self.saved.get(i) {
            Some(t) => t,
            None => panic!(
                "backward rule asked for saved tensor {i}, but the op saved {}",
                self.saved.len()
            ),
        }
    }

    /// The operation's output, if it was saved with [`Backward::save_output`].
    ///
    /// Panics if the output was not saved: that is a bug in the operation.
    ///
    /// ```
    /// use std::panic::Location;
    /// use tapegrad_tape::{Backward, Tensor, record};
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
        self.output_tensor.get_or_init(|| saved.to_tensor(None))
    }

    /// The operation's saved output as its storage and layout, without building a tensor:
    /// for rules that compute their gradient in one pass when nothing is recorded.
    ///
    /// Panics if the output was not saved, as [`BackwardCtx::output`] does.
    ///
    /// ```
    /// use std::panic::Location;
    /// use tapegrad_tape::{Backward, Storage, Tensor, record};
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
    /// use std::panic::Location;
    /// use tapegrad_tape::{Backward, Storage, Tensor, record};
    /// // y = 3x, whose rule scales the incoming gradient where it lies when it can.
    /// let x = Tensor::ones(&[2]).requires_grad();
    /// let y = record("times_three", Location::caller(), &[&x], Tensor::full(&[2], 3.0), || {
    ///     Backward::new(|ctx| {
    ///         let g = match ctx.grad_for_reuse() {
    ///             Some(g) => {
    ///                 g.update_storage(|s, _| {
    ///                     s.make_mut::<f32>().unwrap().iter_mut().for_each(|v| *v *= 3.0)
    ///                 });
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
        let unseen = || g.is_sole_handle() && g.node_key().is_none() && g.is_contiguous();
        (!is_grad_enabled() && self.for_tangent.is_none() && unseen()).then_some(g)
    }

    /// The gradient the sweep has gathered so far for input `i`, handed over for the rule to
    /// add its own into, in place: the in-place accumulation variant, for rules whose
    /// gradient covers only part of their input (`narrow`, `select`), which would otherwise
    /// build a zero tensor of the whole input each time. `None` unless it is safe: a plain
    /// backward (grad mode off) and a contiguous buffer no other handle holds. A rule that
    /// takes it must return it, with its contribution added, as input `i`'s gradient.
    ///
    /// ```
    /// use std::panic::Location;
    /// use tapegrad_tape::{Backward, Tensor, record};
    /// // y = 2x, whose rule adds into x's gathered gradient when it may.
    /// let double = |x: &Tensor| {
    ///     record("double", Location::caller(), &[x], &x.detach() * 2.0, || {
    ///         Backward::new(|ctx| {
    ///             let g = match ctx.take_input_grad(0) {
    ///                 Some(acc) => {
    ///                     let add = ctx.grad().to_vec::<f32>();
    ///                     acc.update_storage(|s, _| {
    ///                         let acc = s.make_mut::<f32>().unwrap();
    ///                         acc.iter_mut().zip(add).for_each(|(a, g)| *a += 2.0 * g)
    ///                     });
    ///                     acc
    ///                 }
    ///                 None => ctx.grad() * 2.0,
    ///             };
    ///             smallvec::smallvec![Some(g)]
    ///         })
    ///     })
    /// };
    /// let x = Tensor::ones(&[2]).requires_grad();
    /// (&double(&x) + &double(&x)).sum_to_shape(&[]).backward();
    /// assert_eq!(x.grad().unwrap().to_vec::<f32>(), vec![4.0, 4.0]);
    /// ```
    pub fn take_input_grad(&self, i: usize) -> Option<Tensor> {
        if is_grad_enabled() || self.for_tangent.is_some() {
            return None;
        }
        let key = (*self.inputs.get(i)?)?;
        with_tape(|tape| {
            let node = tape.nodes.get_mut(key)?;
            let gathered = node.pending.take()?;
            if gathered.is_sole_handle()
                && gathered.node_key().is_none()
                && gathered.is_contiguous()
            {
                Some(gathered)
            } else {
                node.pending = Some(gathered);
                None
            }
        })
    }

    /// The number the operation kept with [`Backward::scalar`] (0 if it kept none).
    ///
    /// ```
    /// use std::panic::Location;
    /// use tapegrad_tape::{Backward, Tensor, record};
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
    /// use std::panic::Location;
    /// use tapegrad_tape::{Backward, Tensor, record};
    /// // y = a + b with `b` a constant: the rule only builds a gradient for `a`.
    /// let (a, b) = (Tensor::ones(&[1]).requires_grad(), Tensor::ones(&[1]));
    /// let y = record("add", Location::caller(), &[&a, &b], Tensor::full(&[1], 2.0), || {
    ///     Backward::new(|ctx| {
    ///         (0..2).map(|i| ctx.needs_input_grad(i).then(|| ctx.grad().clone())).collect()
    ///     })
    /// });
    /// y.backward();
    /// assert_eq!(a.grad().unwrap().item(), 1.0);
    /// ```
    #[track_caller]
    pub fn needs_input_grad(&self, i: usize) -> bool {
        if let Some(&wanted) = self.for_tangent.and_then(|w| w.get(i)) {
            return wanted;
        }
        match self.inputs.get(i) {
            Some(input) => input.is_some(),
            None => panic!(
                "backward rule asked about input {i}, but the op has {} inputs",
                self.inputs.len()
            ),
        }
    }
}

/// What a tangent rule sees (see [`record_with_tangent`]): the operation's inputs, their
/// tangents (`None` for an input without one: its tangent is zero), and the output. The
/// rule returns the output's tangent `J v`; tangent propagation is paused while it runs.
///
/// Three shapes of rule cover most operations:
/// - **linear** in an input (reshape, sum, matmul in one factor): the operation applied to
///   the tangent, summed over inputs with [`TangentCtx::sum`];
/// - **elementwise** with one input (exp, tanh, x + 2): the Jacobian is diagonal, so
///   `J v = Jᵀ v`, the backward rule applied to the tangent ([`TangentCtx::elementwise`],
///   PyTorch's `auto_element_wise`);
/// - **a reduction to one value per group** (a loss, logsumexp over a dimension): each
///   output element's row of `J` is the backward rule applied to ones ([`TangentCtx::vjp`]),
///   dotted with the tangent over the group.
///
/// ```
/// use std::panic::Location;
/// use tapegrad_tape::forward_ad::{dual_level, make_dual, unpack_dual};
/// use tapegrad_tape::{Backward, Tensor, record_with_tangent};
/// // y = a * b: the tangent is va b + a vb, each term present when its input has one.
/// let mul = |a: &Tensor, b: &Tensor| {
///     let value = &a.detach() * &b.detach();
///     record_with_tangent(
///         "mul",
///         Location::caller(),
///         &[a, b],
///         value,
///         || {
///             Backward::new(|ctx| {
///                 smallvec::smallvec![Some(ctx.grad() * ctx.saved(1)), Some(ctx.grad() * ctx.saved(0))]
///             })
///             .save(a)
///             .save(b)
///         },
///         |ctx| ctx.sum(|i, v| v * ctx.input(1 - i)),
///     )
/// };
/// let _level = dual_level();
/// let a = make_dual(&Tensor::full(&[1], 2.0), &Tensor::ones(&[1]));
/// let b = Tensor::full(&[1], 5.0);
/// assert_eq!(unpack_dual(&mul(&a, &b)).tangent.unwrap().item(), 5.0);
/// ```
pub struct TangentCtx<'a> {
    inputs: &'a [&'a Tensor],
    tangents: &'a [Option<Tensor>],
    output: &'a Tensor,
    make_backward: &'a dyn Fn() -> Backward,
}

impl TangentCtx<'_> {
    /// Input `i`, as the operation received it.
    ///
    /// ```
    /// # use std::panic::Location;
    /// # use tapegrad_tape::forward_ad::{dual_level, make_dual, unpack_dual};
    /// # use tapegrad_tape::{Backward, Tensor, record_with_tangent};
    /// // y = 3x recorded by hand: the rule reads nothing but the tangent; here it checks
    /// // that input 0 is x.
    /// let _level = dual_level();
    /// let x = make_dual(&Tensor::full(&[1], 2.0), &Tensor::ones(&[1]));
    /// let y = record_with_tangent("triple", Location::caller(), &[&x], &x.detach() * 3.0,
    ///     || Backward::new(|ctx| smallvec::smallvec![Some(ctx.grad() * 3.0)]),
    ///     |ctx| { assert_eq!(ctx.input(0).item(), 2.0); ctx.tangent(0).unwrap() * 3.0 });
    /// assert_eq!(unpack_dual(&y).tangent.unwrap().item(), 3.0);
    /// ```
    #[track_caller]
    pub fn input(&self, i: usize) -> &Tensor {
        match self.inputs.get(i) {
            Some(t) => t,
            None => panic!(
                "tangent rule asked for input {i}, but the op has {} inputs",
                self.inputs.len()
            ),
        }
    }

    /// The tangent of input `i`, `None` if it has none (zero).
    ///
    /// ```
    /// # use std::panic::Location;
    /// # use tapegrad_tape::forward_ad::{dual_level, make_dual, unpack_dual};
    /// # use tapegrad_tape::{Backward, Tensor, record_with_tangent};
    /// // y = a + b with only `a` dual: b's tangent is None.
    /// let _level = dual_level();
    /// let a = make_dual(&Tensor::ones(&[1]), &Tensor::full(&[1], 4.0));
    /// let b = Tensor::ones(&[1]);
    /// let y = record_with_tangent("add", Location::caller(), &[&a, &b], &a.detach() + &b,
    ///     || Backward::new(|ctx| smallvec::smallvec![Some(ctx.grad().clone()), Some(ctx.grad().clone())]),
    ///     |ctx| { assert!(ctx.tangent(1).is_none()); ctx.sum(|_, v| v.clone()) });
    /// assert_eq!(unpack_dual(&y).tangent.unwrap().item(), 4.0);
    /// ```
    #[track_caller]
    pub fn tangent(&self, i: usize) -> Option<&Tensor> {
        match self.tangents.get(i) {
            Some(t) => t.as_ref(),
            None => panic!(
                "tangent rule asked for tangent {i}, but the op has {} inputs",
                self.inputs.len()
            ),
        }
    }

    /// The operation's output (its value, in the graph if it was recorded).
    ///
    /// ```
    /// # use std::panic::Location;
    /// # use tapegrad_tape::forward_ad::{dual_level, make_dual, unpack_dual};
    /// # use tapegrad_tape::{Backward, Tensor, record_with_tangent};
    /// // y = e^x, whose tangent is y v.
    /// let _level = dual_level();
    /// let x = make_dual(&Tensor::zeros(&[1]), &Tensor::full(&[1], 2.0));
    /// let y = record_with_tangent("exp", Location::caller(), &[&x], Tensor::ones(&[1]),
    ///     || Backward::new(|ctx| smallvec::smallvec![Some(ctx.grad() * ctx.output())]).save_output(),
    ///     |ctx| ctx.tangent(0).unwrap() * ctx.output());
    /// assert_eq!(unpack_dual(&y).tangent.unwrap().item(), 2.0);
    /// ```
    pub fn output(&self) -> &Tensor {
        self.output
    }

    /// `Σᵢ f(i, vᵢ)` over the inputs that carry a tangent `vᵢ`: the sum of a linear rule's
    /// terms, each already in the output's shape or broadcasting to it.
    ///
    /// ```
    /// # use std::panic::Location;
    /// # use tapegrad_tape::forward_ad::{dual_level, make_dual, unpack_dual};
    /// # use tapegrad_tape::{Backward, Tensor, record_with_tangent};
    /// // y = a - b: the tangent is va - vb.
    /// let _level = dual_level();
    /// let a = make_dual(&Tensor::ones(&[1]), &Tensor::full(&[1], 4.0));
    /// let b = make_dual(&Tensor::ones(&[1]), &Tensor::full(&[1], 1.0));
    /// let y = record_with_tangent("sub", Location::caller(), &[&a, &b], &a.detach() - &b.detach(),
    ///     || Backward::new(|ctx| smallvec::smallvec![Some(ctx.grad().clone()), Some(-ctx.grad())]),
    ///     |ctx| ctx.sum(|i, v| if i == 0 { v.clone() } else { -v }));
    /// assert_eq!(unpack_dual(&y).tangent.unwrap().item(), 3.0);
    /// ```
    pub fn sum(&self, mut f: impl FnMut(usize, &Tensor) -> Tensor) -> Tensor {
        let mut terms =
            self.tangents.iter().enumerate().filter_map(|(i, t)| t.as_ref().map(|t| (i, t)));
        let (i, first) = terms.next().expect("a tangent rule runs only when an input has one");
        terms.fold(f(i, first), |total, (i, t)| &total + &f(i, t))
    }

    /// `f` applied to the tangent of input 0: the rule of a one-input operation linear in
    /// it (a reshape, a sum, a slice), which is the operation itself applied to the tangent.
    ///
    /// ```
    /// # use std::panic::Location;
    /// # use tapegrad_tape::forward_ad::{dual_level, make_dual, unpack_dual};
    /// # use tapegrad_tape::{Backward, Tensor, record_with_tangent};
    /// // y = sum(x): the tangent is sum(v).
    /// let _level = dual_level();
    /// let x = make_dual(&Tensor::ones(&[3]), &Tensor::full(&[3], 2.0));
    /// let y = record_with_tangent("sum", Location::caller(), &[&x], x.detach().sum_to_shape(&[]),
    ///     || Backward::new(|ctx| smallvec::smallvec![Some(ctx.grad().broadcast_to(&[3]))]),
    ///     |ctx| ctx.map(|v| v.sum_to_shape(&[])));
    /// assert_eq!(unpack_dual(&y).tangent.unwrap().item(), 6.0);
    /// ```
    pub fn map(&self, f: impl FnOnce(&Tensor) -> Tensor) -> Tensor {
        f(self.tangent(0).expect("a one-input tangent rule runs when its input has one"))
    }

    /// The operation's backward rule applied to `grad` (shaped like the output): the
    /// vector-Jacobian products `gradᵀ J` for each input that carries a tangent (`None`
    /// for the others).
    ///
    /// ```
    /// # use std::panic::Location;
    /// # use tapegrad_tape::forward_ad::{dual_level, make_dual, unpack_dual};
    /// # use tapegrad_tape::{Backward, Tensor, record_with_tangent};
    /// // y = sum(x^2) has one output: J v = (1ᵀ J) . v, the backward rule at 1 dotted with v.
    /// let _level = dual_level();
    /// let x0 = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
    /// let x = make_dual(&x0, &Tensor::from_vec(vec![1.0f64, 1.0], &[2]));
    /// let value = (&x0 * &x0).sum_to_shape(&[]);
    /// let y = record_with_tangent("sum_of_squares", Location::caller(), &[&x], value,
    ///     || Backward::new(|ctx| smallvec::smallvec![Some(ctx.grad() * ctx.saved(0) * 2.0)]).save(&x),
    ///     |ctx| {
    ///         let row = ctx.vjp(&ctx.output().ones_like())[0].clone().unwrap();
    ///         (&row * ctx.tangent(0).unwrap()).sum_to_shape(&[])
    ///     });
    /// assert_eq!(unpack_dual(&y).tangent.unwrap().item(), 6.0);
    /// ```
    pub fn vjp(&self, grad: &Tensor) -> InputGrads {
        let Backward { data, save_output } = (self.make_backward)();
        let record = data.op.as_ref().expect("a Backward always holds its op record");
        let saved_output = save_output.then(|| SavedOutput {
            storage: self.output.storage(),
            layout: self.output.layout().clone(),
            tangent: None,
        });
        let keys: SmallVec<[Option<NodeKey>; 2]> =
            self.inputs.iter().map(|t| t.node_key()).collect();
        let wanted: SmallVec<[bool; 2]> = self.tangents.iter().map(Option::is_some).collect();
        let ctx = BackwardCtx {
            grad,
            saved: &record.saved,
            output: saved_output.as_ref(),
            output_tensor: OnceCell::from(self.output.clone()),
            inputs: &keys,
            scalar: record.scalar,
            for_tangent: Some(&wanted),
        };
        let rule = record.rule.as_ref().expect("a new Backward holds its rule");
        let mut grads = rule(&ctx);
        for (g, &w) in grads.iter_mut().zip(&wanted) {
            if !w {
                *g = None;
            }
        }
        grads
    }

    /// The tangent of a one-input elementwise operation: its Jacobian is diagonal, so
    /// `J v = Jᵀ v`, the backward rule applied to the input's tangent.
    ///
    /// ```
    /// # use std::panic::Location;
    /// # use tapegrad_tape::forward_ad::{dual_level, make_dual, unpack_dual};
    /// # use tapegrad_tape::{Backward, Tensor, record_with_tangent};
    /// // y = x^2 with backward rule g 2x: its tangent is v 2x.
    /// let _level = dual_level();
    /// let x = make_dual(&Tensor::full(&[1], 3.0), &Tensor::ones(&[1]));
    /// let y = record_with_tangent("square", Location::caller(), &[&x], Tensor::full(&[1], 9.0),
    ///     || Backward::new(|ctx| smallvec::smallvec![Some(ctx.grad() * ctx.saved(0) * 2.0)]).save(&x),
    ///     |ctx| ctx.elementwise());
    /// assert_eq!(unpack_dual(&y).tangent.unwrap().item(), 6.0);
    /// ```
    pub fn elementwise(&self) -> Tensor {
        let v = self.tangent(0).expect("an elementwise tangent rule runs when its input has one");
        self.vjp(v).into_iter().next().flatten().expect("an elementwise rule returns a gradient")
    }
}

/// Adds a leaf node for a tensor that starts requiring a gradient; returns its key with
/// one reference, owned by the tensor handle that will hold it.
pub(crate) fn new_leaf(
    shape: &[usize],
    dtype: DType,
    location: &'static Location<'static>,
) -> NodeKey {
    let shape = crate::layout::shape_of(shape);
    let data = Box::new(NodeData { shape, saved_bytes: 0, op: None });
    with_tape(|tape| {
        tape.insert_with(|seq| Node::new("leaf", location, seq, SmallVec::new(), dtype, data))
    })
}
