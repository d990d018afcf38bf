//! The backward sweep: reverse-mode accumulation over the tape, and the functional
//! [`grad`] (PyTorch's `torch.autograd.grad`).

use std::cell::OnceCell;
use std::panic::Location;

use smallvec::SmallVec;

use crate::Tensor;
use crate::error::{Error, Result, or_panic};
use crate::grad_mode::set_grad_enabled;
use crate::layout::Shape;
use crate::tape::{BackwardCtx, Garbage, NodeData, NodeKey, OpRecord, with_tape};

/// Options of [`Tensor::backward_with`].
///
/// ```
/// use tapegrad_tape::{BackwardOptions, Tensor};
/// let x = Tensor::ones(&[1]).requires_grad();
/// let y = &x * 3.0;
/// y.backward_with(None, BackwardOptions::new().retain_graph(true));
/// y.backward(); // allowed: the first pass kept the graph
/// assert_eq!(x.grad().unwrap().item(), 6.0);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct BackwardOptions {
    retain_graph: Option<bool>,
    create_graph: bool,
}

impl BackwardOptions {
    /// The defaults: free the graph, record nothing.
    ///
    /// ```
    /// use tapegrad_tape::{BackwardOptions, Tensor};
    /// let x = Tensor::ones(&[1]).requires_grad();
    /// let y = &x * 2.0;
    /// y.backward_with(None, BackwardOptions::new()); // the same as y.backward()
    /// assert_eq!(x.grad().unwrap().item(), 2.0);
    /// assert!(y.try_backward().is_err()); // the graph was freed
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Keep the graph's nodes and saved tensors so that backward can run through it again.
    /// Defaults to the value of `create_graph`, as in PyTorch.
    ///
    /// ```
    /// use tapegrad_tape::{BackwardOptions, Tensor};
    /// let x = Tensor::ones(&[1]).requires_grad();
    /// let y = &x * 3.0;
    /// y.backward_with(None, BackwardOptions::new().retain_graph(true));
    /// y.backward(); // runs through the kept graph, then frees it
    /// assert!(y.try_backward().is_err());
    /// assert_eq!(x.grad().unwrap().item(), 6.0); // the two passes added up
    /// ```
    pub fn retain_graph(mut self, retain: bool) -> Self {
        self.retain_graph = Some(retain);
        self
    }

    /// Record the backward computation itself, so that the gradients it produces can be
    /// differentiated again (gradients of gradients, Hessian-vector products).
    ///
    /// ```
    /// use tapegrad_tape::{BackwardOptions, GradOptions, Tensor, grad};
    /// let x = Tensor::from_vec(vec![2.0f64], &[1]).requires_grad();
    /// let y = &(&x * &x) * &x; // x^3
    /// y.backward_with(None, BackwardOptions::new().create_graph(true));
    /// let dy = x.grad().unwrap(); // 3x^2 = 12, itself recorded
    /// assert_eq!((dy.item(), dy.tracks_grad()), (12.0, true));
    /// assert_eq!(grad(&[&dy], &[&x], GradOptions::new())[0].as_ref().unwrap().item(), 12.0); // 6x
    /// ```
    pub fn create_graph(mut self, create: bool) -> Self {
        self.create_graph = create;
        self
    }
}

/// Options of [`grad`], mirroring `torch.autograd.grad`'s keyword arguments.
///
/// ```
/// use tapegrad_tape::GradOptions;
/// let opts = GradOptions::new().create_graph(true).allow_unused(true);
/// # let _ = opts;
/// ```
#[derive(Clone, Default)]
pub struct GradOptions {
    grad_outputs: Option<Vec<Tensor>>,
    retain_graph: Option<bool>,
    create_graph: bool,
    allow_unused: bool,
}

impl GradOptions {
    /// The defaults: outputs must be scalars, the graph is freed, nothing is recorded, and
    /// every input must be used.
    ///
    /// ```
    /// use tapegrad_tape::{GradOptions, Tensor, grad};
    /// let x = Tensor::from_vec(vec![3.0f64], &[1]).requires_grad();
    /// let y = &x * &x;
    /// let dy = grad(&[&y], &[&x], GradOptions::new());
    /// let dy = dy[0].as_ref().unwrap();
    /// assert_eq!((dy.item(), dy.tracks_grad()), (6.0, false)); // 2x, not recorded
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The vector in the vector-Jacobian product, one tensor per output, shaped like it.
    /// Without it, every output must have one element and is seeded with 1.
    ///
    /// ```
    /// use tapegrad_tape::{GradOptions, Tensor, grad};
    /// let x = Tensor::ones(&[2]).requires_grad();
    /// let y = &x * 3.0; // not a scalar, so it needs a vector to multiply the Jacobian by
    /// let v = Tensor::from_vec(vec![1.0f32, 10.0], &[2]);
    /// let g = grad(&[&y], &[&x], GradOptions::new().grad_outputs(vec![v]));
    /// assert_eq!(g[0].as_ref().unwrap().to_vec::<f32>(), vec![3.0, 30.0]);
    /// ```
    pub fn grad_outputs(mut self, grad_outputs: Vec<Tensor>) -> Self {
        self.grad_outputs = Some(grad_outputs);
        self
    }

    /// Keep the graph for another pass (defaults to `create_graph`).
    ///
    /// ```
    /// use tapegrad_tape::{GradOptions, Tensor, grad, try_grad};
    /// let x = Tensor::ones(&[1]).requires_grad();
    /// let y = &x * 3.0;
    /// let first = grad(&[&y], &[&x], GradOptions::new().retain_graph(true));
    /// let second = grad(&[&y], &[&x], GradOptions::new()); // the graph was kept; now freed
    /// assert_eq!((first[0].as_ref().unwrap().item(), second[0].as_ref().unwrap().item()), (3.0, 3.0));
    /// assert!(try_grad(&[&y], &[&x], GradOptions::new()).is_err());
    /// ```
    pub fn retain_graph(mut self, retain: bool) -> Self {
        self.retain_graph = Some(retain);
        self
    }

    /// Record the backward computation so the returned gradients are differentiable.
    ///
    /// ```
    /// use tapegrad_tape::{GradOptions, Tensor, grad};
    /// let x = Tensor::from_vec(vec![2.0f64], &[1]).requires_grad();
    /// let y = &x * &x;
    /// let dy = grad(&[&y], &[&x], GradOptions::new().create_graph(true)); // 2x
    /// let dy = dy[0].as_ref().unwrap();
    /// assert!(dy.tracks_grad());
    /// assert_eq!(grad(&[dy], &[&x], GradOptions::new())[0].as_ref().unwrap().item(), 2.0);
    /// ```
    pub fn create_graph(mut self, create: bool) -> Self {
        self.create_graph = create;
        self
    }

    /// Return `None` for an input the outputs do not depend on, instead of an error.
    ///
    /// ```
    /// use tapegrad_tape::{GradOptions, Tensor, grad};
    /// let x = Tensor::ones(&[1]).requires_grad();
    /// let unused = Tensor::ones(&[1]).requires_grad();
    /// let g = grad(&[&(&x * 2.0)], &[&x, &unused], GradOptions::new().allow_unused(true));
    /// assert_eq!((g[0].as_ref().unwrap().item(), g[1].is_none()), (2.0, true));
    /// ```
    pub fn allow_unused(mut self, allow: bool) -> Self {
        self.allow_unused = allow;
        self
    }
}

/// Gradients of `outputs` with respect to `inputs`, returned rather than accumulated into
/// `.grad`: PyTorch's `torch.autograd.grad`. `inputs` may be leaves or interior tensors.
/// Panics with a clear message on misuse; see [`try_grad`].
///
/// ```
/// use tapegrad_tape::{GradOptions, Tensor, grad};
/// let x = Tensor::full(&[1], 3.0f64).to_dtype(tapegrad_tape::DType::F64).requires_grad();
/// let y = &(&x * &x) * &x; // x^3
/// let dy = grad(&[&y], &[&x], GradOptions::new().create_graph(true));
/// let dy = dy[0].as_ref().unwrap();
/// assert_eq!(dy.item(), 27.0); // 3x^2
/// let d2y = grad(&[dy], &[&x], GradOptions::new());
/// assert_eq!(d2y[0].as_ref().unwrap().item(), 18.0); // 6x
/// assert!(x.grad().is_none()); // nothing was accumulated
/// ```
#[track_caller]
pub fn grad(outputs: &[&Tensor], inputs: &[&Tensor], options: GradOptions) -> Vec<Option<Tensor>> {
    or_panic(try_grad(outputs, inputs, options))
}

/// [`grad`], returning an error instead of panicking.
///
/// ```
/// use tapegrad_tape::{GradOptions, Tensor, try_grad};
/// let x = Tensor::ones(&[1]).requires_grad();
/// let unused = Tensor::ones(&[1]).requires_grad();
/// let y = &x * 2.0;
/// assert!(try_grad(&[&y], &[&unused], GradOptions::new()).is_err());
/// ```
#[track_caller]
pub fn try_grad(outputs: &[&Tensor], inputs: &[&Tensor], options: GradOptions) -> Result<Vec<Option<Tensor>>> {
    let location = Location::caller();
    let seeds = seeds("grad", outputs, options.grad_outputs.as_deref(), location)?;
    let mut captures = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        let Some(key) = input.node_key() else {
            return Err(Error::Backward {
                op: "grad",
                message: format!("input {i} does not require a gradient (call requires_grad() on it)"),
                location,
            });
        };
        captures.push(key);
    }
    let retain = options.retain_graph.unwrap_or(options.create_graph);
    let grads = sweep(&seeds, Some(&captures), retain, options.create_graph, location)?;
    if !options.allow_unused
        && let Some(i) = grads.iter().position(Option::is_none)
    {
        return Err(Error::Backward {
            op: "grad",
            message: format!(
                "input {i} was not used to compute the outputs; pass allow_unused(true) to get None for it"
            ),
            location,
        });
    }
    Ok(grads)
}

impl Tensor {
    /// Computes the gradient of this one-element tensor with respect to every leaf that
    /// requires a gradient, adding it to their `.grad`. Frees the graph afterwards.
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// let w = Tensor::full(&[2], 2.0).requires_grad();
    /// let loss = (&w * &w).sum_to_shape(&[]);
    /// loss.backward();
    /// assert_eq!(w.grad().unwrap().to_vec::<f32>(), vec![4.0, 4.0]);
    /// ```
    #[track_caller]
    pub fn backward(&self) {
        or_panic(self.try_backward_with(None, BackwardOptions::new()))
    }

    /// [`Tensor::backward`], returning an error instead of panicking.
    ///
    /// ```
    /// // A tensor that does not track gradients has nothing to differentiate.
    /// assert!(tapegrad_tape::Tensor::ones(&[1]).try_backward().is_err());
    /// ```
    #[track_caller]
    pub fn try_backward(&self) -> Result<()> {
        self.try_backward_with(None, BackwardOptions::new())
    }

    /// Backward with an explicit output gradient (required unless this tensor has one
    /// element) and options.
    ///
    /// ```
    /// use tapegrad_tape::{BackwardOptions, Tensor};
    /// let x = Tensor::ones(&[2]).requires_grad();
    /// let y = &x * 3.0;
    /// y.backward_with(Some(&Tensor::from_vec(vec![1.0f32, 10.0], &[2])), BackwardOptions::new());
    /// assert_eq!(x.grad().unwrap().to_vec::<f32>(), vec![3.0, 30.0]);
    /// ```
    #[track_caller]
    pub fn backward_with(&self, gradient: Option<&Tensor>, options: BackwardOptions) {
        or_panic(self.try_backward_with(gradient, options))
    }

    /// [`Tensor::backward_with`], returning an error instead of panicking.
    ///
    /// ```
    /// use tapegrad_tape::{BackwardOptions, Tensor};
    /// let y = &Tensor::ones(&[2]).requires_grad() * 3.0;
    /// assert!(y.try_backward_with(None, BackwardOptions::new()).is_err()); // not a scalar
    /// ```
    #[track_caller]
    pub fn try_backward_with(&self, gradient: Option<&Tensor>, options: BackwardOptions) -> Result<()> {
        let location = Location::caller();
        let grad_outputs = gradient.map(|g| vec![g.clone()]);
        let seeds = seeds("backward", &[self], grad_outputs.as_deref(), location)?;
        let retain = options.retain_graph.unwrap_or(options.create_graph);
        sweep(&seeds, None, retain, options.create_graph, location)?;
        Ok(())
    }
}

/// Pairs each output's node with its seed gradient, checking shapes and dtypes.
fn seeds(
    op: &'static str,
    outputs: &[&Tensor],
    grad_outputs: Option<&[Tensor]>,
    location: &'static Location<'static>,
) -> Result<Vec<(NodeKey, Tensor)>> {
    let err = |message: String| Error::Backward { op, message, location };
    if let Some(g) = grad_outputs
        && g.len() != outputs.len()
    {
        return Err(err(format!("{} gradients given for {} outputs", g.len(), outputs.len())));
    }
    let mut seeds: Vec<(NodeKey, Tensor)> = Vec::with_capacity(outputs.len());
    for (i, out) in outputs.iter().enumerate() {
        let Some(key) = out.node_key() else {
            return Err(err(format!(
                "output {i} does not require a gradient: nothing that requires one was used to compute \
                 it, or it was computed under no_grad"
            )));
        };
        let seed = match grad_outputs {
            Some(g) => {
                let g = &g[i];
                if g.shape() != out.shape() || g.dtype() != out.dtype() {
                    return Err(err(format!(
                        "gradient for output {i} has shape {:?} and dtype {}, but the output has shape {:?} \
                         and dtype {}",
                        g.shape(),
                        g.dtype(),
                        out.shape(),
                        out.dtype()
                    )));
                }
                g.clone()
            }
            None => {
                if out.numel() != 1 {
                    return Err(err(format!(
                        "a gradient can be created implicitly only for one-element outputs; output {i} has \
                         shape {:?}: pass the output gradient explicitly",
                        out.shape()
                    )));
                }
                out.ones_like()
            }
        };
        match seeds.iter_mut().find(|(k, _)| *k == key) {
            Some((_, prev)) => *prev = &*prev + &seed,
            None => seeds.push((key, seed)),
        }
    }
    Ok(seeds)
}

/// Everything a step of the sweep needs from a node, moved out so that the backward rule
/// runs without the tape borrowed (it records onto the tape under `create_graph`).
struct Step {
    op: &'static str,
    location: &'static Location<'static>,
    is_leaf: bool,
    retains_grad: bool,
    capture: Option<u32>,
    inputs: SmallVec<[Option<NodeKey>; 2]>,
    /// The op's rule and saved values (`None` for a leaf): the node's own data when the
    /// node leaves the tape at this step, otherwise the rule taken out and the saved
    /// values taken or, if the graph is kept, cloned.
    data: Option<Box<NodeData>>,
    /// The output as a tensor carrying its node, built up front under `create_graph`.
    output_tensor: Option<Tensor>,
}

/// Runs reverse-mode accumulation from `seeds`. With `capture`, returns the gradients of
/// those nodes and leaves `.grad` alone; without, accumulates into leaves' `.grad`.
fn sweep(
    seeds: &[(NodeKey, Tensor)],
    capture: Option<&[NodeKey]>,
    retain_graph: bool,
    create_graph: bool,
    location: &'static Location<'static>,
) -> Result<Vec<Option<Tensor>>> {
    // 1. The nodes the outputs depend on, in reverse record order.
    let order = with_tape(|tape| -> Result<Vec<NodeKey>> {
        let stamp = tape.next_sweep;
        tape.next_sweep += 1;
        if let Some(keys) = capture {
            for (i, &k) in keys.iter().enumerate() {
                if let Some(n) = tape.nodes.get_mut(k) {
                    n.capture = Some(u32::try_from(i).expect("fewer than 2^32 captured inputs"));
                }
            }
        }
        // Sized for the whole tape up front: a long chain would otherwise regrow it many times.
        let mut order: Vec<(u64, NodeKey)> = Vec::with_capacity(tape.nodes.len());
        let mut stack: Vec<(NodeKey, Option<NodeKey>)> = seeds.iter().map(|(k, _)| (*k, None)).collect();
        while let Some((key, consumer)) = stack.pop() {
            let Some(node) = tape.nodes.get_mut(key) else {
                let (op, at) =
                    consumer.and_then(|c| tape.nodes.get(c)).map_or(("backward", location), |c| (c.op, c.location));
                return Err(Error::FreedGraph { op, location: at });
            };
            if node.visit == stamp {
                continue;
            }
            node.visit = stamp;
            node.pending = None;
            if node.released {
                return Err(Error::FreedGraph { op: node.op, location: node.location });
            }
            order.push((node.seq, key));
            stack.extend(node.inputs.iter().flatten().map(|&k| (k, Some(key))));
        }
        order.sort_unstable_by_key(|&(seq, _)| std::cmp::Reverse(seq));
        Ok(order.into_iter().map(|(_, k)| k).collect())
    });
    let order = match order {
        Ok(order) => order,
        Err(e) => {
            clear_captures(capture);
            return Err(e);
        }
    };
    for (key, seed) in seeds {
        with_tape(|tape| tape.nodes[*key].pending = Some(seed.clone()));
    }

    let mut captured: Vec<Option<Tensor>> = vec![None; capture.map_or(0, <[_]>::len)];
    let _mode = set_grad_enabled(create_graph);
    let mut edges = Vec::with_capacity(order.len());
    let result = run_steps(&order, capture.is_some(), &mut captured, retain_graph, create_graph, &mut edges);
    clear_captures(capture);
    if !retain_graph {
        free_swept(&order, edges);
    }
    result.map(|()| captured)
}

fn clear_captures(capture: Option<&[NodeKey]>) {
    if let Some(keys) = capture {
        with_tape(|tape| {
            for &k in keys {
                if let Some(n) = tape.nodes.get_mut(k) {
                    n.capture = None;
                }
            }
        });
    }
}

fn run_steps(
    order: &[NodeKey],
    capturing: bool,
    captured: &mut [Option<Tensor>],
    retain_graph: bool,
    create_graph: bool,
    edges: &mut Vec<NodeKey>,
) -> Result<()> {
    // One step's worth of node parts, rewritten in place by each `take_step`.
    let mut step = Step {
        op: "",
        location: Location::caller(),
        is_leaf: false,
        retains_grad: false,
        capture: None,
        inputs: SmallVec::new(),
        data: None,
        output_tensor: None,
    };
    for &key in order {
        let Some(grad) = with_tape(|tape| take_step(tape, key, retain_graph, create_graph, edges, &mut step)) else {
            continue;
        };

        if let Some(slot) = step.capture {
            captured[slot as usize] = Some(grad.clone());
        }
        if step.is_leaf || step.retains_grad {
            if !capturing {
                accumulate_grad(key, &grad, create_graph);
            }
            if step.is_leaf {
                continue;
            }
        }

        let mut data = step.data.take().expect("swept op nodes have their data");
        let record = data.op.as_mut().expect("swept op nodes have their record");
        let rule = record.rule.take().expect("swept op nodes have their rule");
        let ctx = BackwardCtx {
            grad: &grad,
            saved: &record.saved,
            output: record.output.as_ref(),
            output_tensor: step.output_tensor.take().map(OnceCell::from).unwrap_or_default(),
            inputs: &step.inputs,
            scalar: record.scalar,
        };
        let grads = rule(&ctx);
        drop(ctx);
        if retain_graph {
            with_tape(|tape| {
                if let Some(node) = tape.nodes.get_mut(key)
                    && let Some(op) = node.data_mut().op.as_mut()
                {
                    op.rule = Some(rule);
                    node.released = false;
                }
            });
        } else {
            drop(rule);
        }
        drop(data);
        drop(grad);
        if grads.len() != step.inputs.len() {
            return Err(Error::Backward {
                op: step.op,
                message: format!(
                    "the backward rule returned {} gradients for {} inputs",
                    grads.len(),
                    step.inputs.len()
                ),
                location: step.location,
            });
        }
        pass_to_inputs(grads, &step.inputs).map_err(|message| Error::Backward {
            op: step.op,
            message,
            location: step.location,
        })?;
    }
    Ok(())
}

/// Takes what the step for `key` needs off the tape, or `None` if no gradient reached it.
///
/// Without `retain_graph` an interior node is removed from the tape here, its rule and
/// saved tensors moved out rather than cloned; its edges go to `edges`, to be released once
/// the sweep is done (releasing them now could free an input before its own step).
fn take_step(
    tape: &mut crate::tape::Tape,
    key: NodeKey,
    retain_graph: bool,
    create_graph: bool,
    edges: &mut Vec<NodeKey>,
    step: &mut Step,
) -> Option<Tensor> {
    let node = tape.nodes.get_mut(key)?;
    let grad = node.pending.take()?;
    if !retain_graph && !create_graph && !node.is_leaf() && !node.retains_grad {
        // Everything is taken out in place, and the emptied node is then forgotten rather
        // than read back: reading fields of the copy `remove` returns stalled on the stores
        // that had just made it.
        let data = node.data.take().expect("a node on the tape has its data");
        let inputs = std::mem::take(&mut node.inputs);
        let (op, location, capture) = (node.op, node.location, node.capture);
        // An interior node without `retain_grad` keeps no gradient; dropped outside the borrow.
        if let Some(kept) = node.grad.take() {
            tape.graveyard.push(Garbage::Tensors(smallvec::smallvec![kept]));
        }
        let emptied = tape.nodes.remove(key).expect("looked up above");
        debug_assert!(!emptied.holds_tensors() && !emptied.inputs.spilled(), "a removed node kept something to drop");
        std::mem::forget(emptied);
        tape.saved_bytes -= data.saved_bytes;
        edges.extend(inputs.iter().flatten().copied());
        // Written field by field into the caller's step: a whole `Step` returned through
        // the tape's closure would be copied on the way, each copy stalling on the stores
        // it reads back.
        step.op = op;
        step.location = location;
        step.is_leaf = false;
        step.retains_grad = false;
        step.capture = capture;
        step.inputs = inputs;
        step.data = Some(data);
        step.output_tensor = None;
        return Some(grad);
    }
    // The rule is taken out to run outside the tape's borrow (it may record) and put back
    // afterwards if the graph is kept; saved values are only copied when kept.
    node.released = !node.is_leaf();
    let data = node.data_mut().op.as_mut().map(|op| {
        let (rule, saved, output) = if retain_graph {
            (op.rule.take(), op.saved.clone(), op.output.clone())
        } else {
            (op.rule.take(), std::mem::take(&mut op.saved), op.output.take())
        };
        let scalar = op.scalar;
        // Only the record is read from a step's data; the shape stays with the node.
        Box::new(NodeData { shape: Shape::new(), saved_bytes: 0, op: Some(OpRecord { rule, scalar, saved, output }) })
    });
    if !retain_graph {
        tape.saved_bytes -= node.data().saved_bytes;
        node.data_mut().saved_bytes = 0;
    }
    // Under create_graph the output must carry its node, so that a rule built on it
    // differentiates through it; otherwise the plain values are enough.
    let output = data.as_ref().and_then(|d| d.op.as_ref()).and_then(|op| op.output.as_ref());
    let output_tensor = match output {
        Some(out) if create_graph => Some(Tensor::from_parts(out.storage.clone(), out.layout.clone(), Some(key))),
        _ => None,
    };
    let incref = output_tensor.is_some();
    *step = Step {
        op: node.op,
        location: node.location,
        is_leaf: node.is_leaf(),
        retains_grad: node.retains_grad,
        capture: node.capture,
        inputs: node.inputs.clone(),
        data,
        output_tensor,
    };
    if incref {
        tape.incref(key);
    }
    Some(grad)
}

/// Hands each input its gradient: checked against the input, stored if it is the first,
/// otherwise added to the one gathered so far (the sum is computed outside the tape's
/// borrow, as it may be recorded). Errors name the input and the mismatch.
fn pass_to_inputs(grads: crate::tape::InputGrads, inputs: &[Option<NodeKey>]) -> std::result::Result<(), String> {
    let mut sums: SmallVec<[(NodeKey, Tensor, Tensor); 1]> = SmallVec::new();
    with_tape(|tape| {
        for (i, (g, input)) in grads.into_iter().zip(inputs).enumerate() {
            let (Some(g), Some(input)) = (g, input) else { continue };
            let Some(n) = tape.nodes.get_mut(*input) else { continue };
            if !crate::layout::same_shape(g.shape(), &n.data().shape) || g.dtype() != n.dtype {
                let message = format!(
                    "the backward rule returned a gradient of shape {:?} and dtype {} for input {i}, which has \
                     shape {:?} and dtype {}",
                    g.shape(),
                    g.dtype(),
                    n.data().shape.as_slice(),
                    n.dtype
                );
                tape.graveyard.push(Garbage::Tensors(smallvec::smallvec![g]));
                return Err(message);
            }
            match n.pending.take() {
                None => n.pending = Some(g),
                Some(prev) => sums.push((*input, prev, g)),
            }
        }
        Ok(())
    })?;
    for (input, prev, g) in sums {
        let mut sum = &prev + &g;
        drop((prev, g));
        // Another gradient of this rule for the same input (y = x * x) may have been stored
        // meanwhile: add until the slot is found empty.
        while let Some(other) = with_tape(|tape| {
            let n = tape.nodes.get_mut(input)?;
            match n.pending.take() {
                None => {
                    n.pending = Some(sum.clone());
                    None
                }
                other => other,
            }
        }) {
            sum = &sum + &other;
        }
    }
    Ok(())
}

/// Adds `g` to the `.grad` of the node at `key`, in place when nothing needs the old value.
fn accumulate_grad(key: NodeKey, g: &Tensor, create_graph: bool) {
    let prev = with_tape(|tape| tape.nodes.get_mut(key).and_then(|n| n.grad.take()));
    let new = match prev {
        None if create_graph => g.clone(),
        // A handle of its own: `g` may also be the gradient of another input, and later
        // accumulation writes into the stored gradient (copy-on-write protects the buffer).
        None => g.detach(),
        Some(prev) if !create_graph && prev.accumulate_in_place(g) => prev,
        Some(prev) => &prev + g,
    };
    with_tape(|tape| {
        if let Some(n) = tape.nodes.get_mut(key) {
            n.grad = Some(new);
        }
    });
}

/// Frees the interior nodes a sweep went through (those its steps did not already remove),
/// then releases the edges of all of them; leaves and `retain_grad` nodes stay.
fn free_swept(order: &[NodeKey], mut edges: Vec<NodeKey>) {
    with_tape(|tape| {
        for &key in order {
            // Nodes the sweep's steps removed are gone already.
            let Some(node) = tape.nodes.get(key) else { continue };
            if node.is_leaf() || node.retains_grad {
                tape.release_saved(key);
                continue;
            }
            let mut node = tape.nodes.remove(key).expect("checked above");
            edges.extend(node.inputs.drain(..).flatten());
            // Nodes the sweep already released hold no tensors, so dropping them here
            // cannot re-enter the tape; the rest go through the graveyard.
            if node.holds_tensors() {
                tape.forget(node);
            } else {
                tape.saved_bytes -= node.data().saved_bytes;
            }
        }
        for input in edges {
            tape.decref(input);
        }
    });
}
