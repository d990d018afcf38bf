//! The reverse sweep: how `backward()` and `grad()` turn the gradient of an output into
//! the gradients of everything it was computed from.
//!
//! [`sweep`] is the whole algorithm. It runs in four phases, and this file is laid out in
//! the same order, one section per phase:
//!
//! 1. **Ordering** ([`reverse_order`]). Follow the edges back from the outputs to every
//!    node they depend on, and sort those nodes by record order, latest first: the Wengert
//!    list read backwards. A node then comes after every node that used it, so the
//!    gradient gathered for it is complete when its turn comes. Leaves (numbered when they
//!    were made, before any operation) go right after their last user rather than at the
//!    end, so a parameter's `.grad` and post-accumulate hooks arrive while the sweep still
//!    has earlier layers to do (what lets a gradient all-reduce overlap backward).
//! 2. **Applying rules** ([`apply_rules`], [`take_step`], [`run_rule`]). For each node in
//!    that order, take the gradient gathered for it (its *pending* gradient) and call its
//!    backward rule with it; the rule returns one gradient per input. The rule runs with
//!    the tape unborrowed, because under `create_graph` the operations it uses are
//!    recorded onto the tape.
//! 3. **Accumulating** ([`pass_to_inputs`], [`accumulate_into_grad`]). Add each returned
//!    gradient to its input's pending gradient. When the sweep reaches a leaf (or a tensor
//!    that asked to `retain_grad`), what reached it is added into its `.grad`; `grad()`
//!    copies it into its result instead (the node's *capture slot*).
//! 4. **Freeing** ([`leaves_tape_at_its_step`], [`after_rule`], [`free_swept`]). What
//!    happens to a node after its rule runs. Unless the caller asked to `retain_graph`,
//!    the rule and the saved tensors are dropped right after the rule runs, and the node
//!    leaves the tape: in a plain backward, an interior node already left when its step
//!    took it; the others leave when the sweep ends. Then the edges to the inputs are
//!    released (not before: an input must not be freed before its own step). Leaves and
//!    `retain_grad` tensors stay, with their `.grad`. With `retain_graph`, the rule goes
//!    back into its node and everything stays for another backward. Afterwards the tape
//!    is back to its leaves, and a tensor still pointing at a freed node holds a stale
//!    key: a second backward through it fails with [`Error::FreedGraph`].
//!
//! A node's whole life, from record to free, is told in `node.rs`.

use std::cell::OnceCell;
use std::collections::HashSet;
use std::panic::Location;

use slotmap::SlotMap;
use smallvec::SmallVec;

use crate::Tensor;
use crate::error::{Error, Result};
use crate::grad_mode::set_grad_enabled;
use crate::node::{Node, NodeData, NodeKey, OpRecord};
use crate::record::{BackwardCtx, BackwardRule, InputGrads};
use crate::tape::{Tape, with_tape};

/// What the caller asked of a sweep.
#[derive(Clone, Copy)]
struct Mode {
    /// Keep the graph (rules, saved tensors, nodes) for another backward: no phase 4.
    retain_graph: bool,
    /// Record what the rules compute, so that the gradients can be differentiated again.
    create_graph: bool,
    /// `grad()`: return the gradients of the capture slots and leave `.grad` alone.
    capturing: bool,
}

/// Runs reverse-mode accumulation from `seeds` (each output's node and the gradient to
/// start it with). With `capture`, returns the gradients of those nodes and leaves `.grad`
/// alone; without, accumulates into leaves' `.grad` and returns nothing.
pub(crate) fn sweep(
    seeds: &[(NodeKey, Tensor)],
    capture: Option<&[NodeKey]>,
    retain_graph: bool,
    create_graph: bool,
    location: &'static Location<'static>,
) -> Result<Vec<Option<Tensor>>> {
    let mode = Mode { retain_graph, create_graph, capturing: capture.is_some() };

    // 1. Ordering: the nodes the outputs depend on, latest first.
    let order = match with_tape(|tape| reverse_order(tape, seeds, capture, location)) {
        Ok(order) => order,
        Err(e) => {
            clear_capture_slots(capture);
            return Err(e);
        }
    };
    let leading = capture.map(|_| with_tape(|tape| leading_to_captures(tape, &order)));
    seed_outputs(seeds);

    // 2 and 3, node by node: run each rule and pass what it returns to the inputs; what
    // reaches a leaf goes into its `.grad` (or, for grad(), into `captured`).
    let mut captured: Vec<Option<Tensor>> = vec![None; capture.map_or(0, <[_]>::len)];
    let _mode = set_grad_enabled(create_graph);
    // Without create_graph the rules' results are plain values (some rules compute them
    // straight from buffers), so no tangent is carried through them.
    let _tangents =
        (!create_graph && crate::instrument::active() && crate::forward_ad::is_dual_level_open())
            .then(crate::forward_ad::pause);
    // Only nodes that leave the tape at their step have edges to release here: in a plain
    // backward, nearly all of them; none when the graph is kept or recorded.
    let edges = if retain_graph || create_graph { 0 } else { order.len() };
    let mut swept = Swept { edges: Vec::with_capacity(edges), stayed: Vec::new() };
    let result = apply_rules(&order, mode, leading.as_ref(), &mut captured, &mut swept);
    clear_capture_slots(capture);

    // 4. Freeing: unless the graph is kept, what the sweep went through leaves the tape.
    if !retain_graph {
        free_swept(swept, &order, result.is_ok());
        if crate::hooks::any() {
            with_tape(|tape| crate::hooks::forget_freed(|key| tape.nodes.contains_key(key)));
        }
    }
    result.map(|()| captured)
}

// ----- 1. Ordering ---------------------------------------------------------------------

/// The nodes `seeds` depend on, in reverse record order. Also marks the capture slots of
/// `grad()`'s inputs, and fails if the walk meets a node that an earlier backward freed.
fn reverse_order(
    tape: &mut Tape,
    seeds: &[(NodeKey, Tensor)],
    capture: Option<&[NodeKey]>,
    location: &'static Location<'static>,
) -> Result<Vec<NodeKey>> {
    let stamp = new_visit_stamp(tape);
    mark_capture_slots(tape, capture);
    let mut order = dependencies(tape, seeds, stamp, location)?;
    order.sort_unstable_by_key(|&(when, _)| std::cmp::Reverse(when));
    Ok(order.into_iter().map(|(_, k)| k).collect())
}

/// Where a node goes in the sweep: interior nodes by their sequence number, latest first;
/// a leaf right after the last of its users (the earliest recorded), when its gradient is
/// complete, rather than at the end: its `.grad` and post-accumulate hooks (an optimizer
/// step or a gradient all-reduce) then come while the sweep goes on with earlier layers.
/// The key is twice that number, plus one for an interior node: a user before its leaves.
type SweepKey = (u64, NodeKey);

/// A number no earlier sweep used. Marking a node visited by writing it into the node
/// spares the walk a set of seen keys, and the tape a pass to clear the marks afterwards.
fn new_visit_stamp(tape: &mut Tape) -> u64 {
    let stamp = tape.next_sweep;
    tape.next_sweep += 1;
    stamp
}

/// Every node reachable from the seeds through inputs, with its sequence number; each
/// one's pending gradient is cleared of anything an interrupted sweep left behind.
fn dependencies(
    tape: &mut Tape,
    seeds: &[(NodeKey, Tensor)],
    stamp: u64,
    location: &'static Location<'static>,
) -> Result<Vec<SweepKey>> {
    // Sized for the whole tape up front: a long chain would otherwise regrow it many times.
    let mut found: Vec<SweepKey> = Vec::with_capacity(tape.nodes.len());
    // Each leaf's place in `found` and the nodes that used it: placed after the walk.
    let mut leaves: Vec<(NodeKey, usize)> = Vec::new();
    let mut leaf_users: Vec<(NodeKey, NodeKey)> = Vec::new();
    // Depth-first, with the node that led to each key, to name it if the key is stale.
    let mut stack: Vec<(NodeKey, Option<NodeKey>)> =
        seeds.iter().map(|(k, _)| (*k, None)).collect();
    while let Some((key, user)) = stack.pop() {
        let Some(node) = tape.nodes.get_mut(key) else {
            let (op, at) = user
                .and_then(|u| tape.nodes.get(u))
                .map_or(("backward", location), |u| (u.op, u.location));
            return Err(Error::FreedGraph { op, location: at });
        };
        // Only leaves have no inputs: a node is recorded for an input that tracks gradients.
        let leaf = node.inputs.is_empty();
        if let (true, Some(u)) = (leaf, user) {
            leaf_users.push((key, u));
        }
        if node.visit == stamp {
            continue;
        }
        node.visit = stamp;
        node.pending = None;
        if node.released {
            return Err(Error::FreedGraph { op: node.op, location: node.location });
        }
        if leaf {
            leaves.push((key, found.len()));
            found.push((2 * node.seq, key));
        } else {
            found.push((2 * node.seq + 1, key));
        }
        stack.extend(node.inputs.iter().flatten().map(|&k| (k, Some(key))));
    }
    // A leaf goes right after its earliest user (a leaf nothing used, a seed, stays at its
    // own number). Pairs sorted by leaf, so each leaf's users are one run: linear in them
    // however many leaves there are.
    leaves.sort_unstable();
    leaf_users.sort_unstable();
    let mut users = leaf_users.iter().peekable();
    for &(leaf, slot) in &leaves {
        let mut earliest: Option<u64> = None;
        while let Some(&&(l, user)) = users.peek() {
            if l != leaf {
                break;
            }
            if let Some(n) = tape.nodes.get(user) {
                earliest = Some(earliest.map_or(n.seq, |e| e.min(n.seq)));
            }
            users.next();
        }
        if let Some(seq) = earliest {
            found[slot].0 = 2 * seq;
        }
    }
    Ok(found)
}

/// Tells each node `grad()` asked about which slot of the result its gradient goes to.
fn mark_capture_slots(tape: &mut Tape, capture: Option<&[NodeKey]>) {
    if let Some(keys) = capture {
        for (i, &k) in keys.iter().enumerate() {
            if let Some(n) = tape.nodes.get_mut(k) {
                n.capture = Some(u32::try_from(i).expect("fewer than 2^32 captured inputs"));
            }
        }
    }
}

/// For `grad()`: the nodes of `order` from which a captured node can be reached through
/// inputs (the captured nodes among them). A rule computes no gradient for an input outside
/// this set: it would reach none of the tensors asked about. That is, a gradient penalty's
/// `grad(scores, x)` skips the weights' gradients, as PyTorch's `autograd.grad` does.
fn leading_to_captures(tape: &Tape, order: &[NodeKey]) -> HashSet<NodeKey> {
    let mut leading = HashSet::new();
    // Latest first: read backwards, every input comes before its users.
    for &key in order.iter().rev() {
        let Some(node) = tape.nodes.get(key) else { continue };
        if node.capture.is_some() || node.inputs.iter().flatten().any(|i| leading.contains(i)) {
            leading.insert(key);
        }
    }
    leading
}

fn clear_capture_slots(capture: Option<&[NodeKey]>) {
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

/// Starts the sweep: each output's pending gradient is its seed.
fn seed_outputs(seeds: &[(NodeKey, Tensor)]) {
    for (key, seed) in seeds {
        with_tape(|tape| tape.nodes[*key].pending = Some(seed.clone()));
    }
}

// ----- 2. Applying rules ---------------------------------------------------------------

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

/// What the steps of a sweep leave for phase 4.
struct Swept {
    /// The inputs of the nodes that left the tape at their step: one reference each.
    edges: Vec<NodeKey>,
    /// The nodes that stayed on the tape through their step, in sweep order: leaves,
    /// `retain_grad` tensors, nodes no gradient reached, and every node when the graph is
    /// recorded. Not kept when the graph is kept: nothing is freed then.
    stayed: Vec<NodeKey>,
}

/// Takes each node of `order` in turn: hands its gradient to its capture slot or `.grad`
/// if it is a node the caller wants, then runs its rule and passes the results on. What
/// phase 4 needs to know of each step is gathered in `swept`.
fn apply_rules(
    order: &[NodeKey],
    mode: Mode,
    leading: Option<&HashSet<NodeKey>>,
    captured: &mut [Option<Tensor>],
    swept: &mut Swept,
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
    // Anomaly checks, hooks, traces and checkpoints alive when the sweep starts take part in
    // it; with none, the steps below pay for this one load.
    let instrumented = crate::instrument::active();
    let tracing = instrumented && crate::trace::enabled();
    for &key in order {
        if instrumented && crate::recompute::any_segments() {
            crate::recompute::replay_if_needed(key);
        }
        let traced_seq = if tracing { crate::trace::seq_before_step(key) } else { None };
        let Some(grad) = with_tape(|tape| take_step(tape, key, mode, swept, &mut step)) else {
            continue; // no gradient reached this node
        };
        let grad = if instrumented && crate::hooks::any() {
            crate::hooks::apply_grad_hooks(key, grad)
        } else {
            grad
        };

        // 3. A gradient the caller asked for stops here (and goes on, for an interior node).
        if let Some(slot) = step.capture {
            captured[slot as usize] = Some(grad.clone());
        }
        if step.is_leaf || step.retains_grad {
            if !mode.capturing {
                accumulate_into_grad(key, &grad, mode.create_graph);
                if instrumented
                    && crate::hooks::any()
                    && let Some(total) =
                        with_tape(|t| t.nodes.get(key).and_then(|n| n.grad.clone()))
                {
                    crate::hooks::after_accumulate(key, &total);
                }
            }
            if step.is_leaf {
                if tracing {
                    crate::trace::record_step(traced_seq, "leaf", step.location, &grad, &[], &[]);
                }
                continue;
            }
        }

        if let Some(leading) = leading {
            // Inputs that lead to no captured tensor get no gradient (the edges stay, for
            // freeing: only this step's view of them changes).
            for input in &mut step.inputs {
                if input.is_some_and(|k| !leading.contains(&k)) {
                    *input = None;
                }
            }
        }
        let in_rule =
            (instrumented && crate::anomaly::maybe_enabled()).then(crate::anomaly::in_rule);
        let traced_grad = tracing.then(|| grad.clone());
        let grads = run_rule(key, grad, &mut step, mode.retain_graph);
        if let Some(g) = traced_grad {
            crate::trace::record_step(traced_seq, step.op, step.location, &g, &step.inputs, &grads);
        }
        if let Some(in_rule) = in_rule {
            drop(in_rule);
            crate::anomaly::check_gradients(step.op, step.location, &grads)?;
        }
        // 3. Each input gets its share.
        pass_to_inputs(grads, &step)?;
    }
    Ok(())
}

/// Takes what the step for `key` needs off the tape into `step`, and returns the node's
/// pending gradient; `None` if no gradient reached it.
fn take_step(
    tape: &mut Tape,
    key: NodeKey,
    mode: Mode,
    swept: &mut Swept,
    step: &mut Step,
) -> Option<Tensor> {
    // Split, so that the node is looked up once and the rest of the tape stays at hand.
    let Tape { nodes, saved_bytes, drop_later, .. } = tape;
    let node = nodes.get_mut(key)?;
    let Some(grad) = node.pending.take() else {
        if !mode.retain_graph {
            swept.stayed.push(key);
        }
        return None;
    };
    if leaves_tape_at_its_step(node, mode) {
        // 4. Freeing starts here for most nodes: emptied and removed before their rule
        // runs. Rule and saved values move out in their box instead of being cloned, and
        // the slotmap is walked once instead of again by `free_swept`. Inline and in this
        // order (removed right after emptying) because every other arrangement measured
        // slower on this, the hottest loop of backward (see docs/BENCHMARKS.md).
        let data = node.data.take().expect("a node on the tape has its data");
        let inputs = std::mem::take(&mut node.inputs);
        let (op, location, capture) = (node.op, node.location, node.capture);
        // An interior node without `retain_grad` keeps no gradient; dropped after the borrow.
        if let Some(kept) = node.grad.take() {
            drop_later.tensors(smallvec::smallvec![kept]);
        }
        remove_emptied_node(nodes, key);
        *saved_bytes -= data.saved_bytes;
        // Released once the sweep is done: now, they could free an input before its step.
        swept.edges.extend(inputs.iter().flatten().copied());
        // Written field by field, because a whole `Step` returned through the tape's
        // closure would be copied on the way, each copy stalling on the stores it reads.
        step.op = op;
        step.location = location;
        step.is_leaf = false;
        step.retains_grad = false;
        step.capture = capture;
        step.inputs = inputs;
        step.data = Some(data);
        step.output_tensor = None;
    } else {
        take_rule_keeping_node(node, key, mode, saved_bytes, step);
        if !mode.retain_graph {
            swept.stayed.push(key);
        }
    }
    Some(grad)
}

/// The step of a node that stays on the tape: a leaf, a `retain_grad` tensor, or any
/// node when the graph is kept or recorded. The rule is taken out, to run outside the
/// tape's borrow, and put back afterwards if the graph is kept; the saved values are
/// taken, or copied if the graph is kept.
fn take_rule_keeping_node(
    node: &mut Node,
    key: NodeKey,
    mode: Mode,
    saved_bytes: &mut usize,
    step: &mut Step,
) {
    node.released = !node.is_leaf();
    let data = node.data_mut().op.as_mut().map(|op| {
        let (rule, saved, output) = if mode.retain_graph {
            (op.rule.take(), op.saved.clone(), op.output.clone())
        } else {
            (op.rule.take(), std::mem::take(&mut op.saved), op.output.take())
        };
        let scalar = op.scalar;
        // Only the record is read from a step's data; the shape stays with the node.
        NodeData::boxed(OpRecord { rule, scalar, saved, output, replay: None })
    });
    if !mode.retain_graph {
        *saved_bytes -= node.data().saved_bytes;
        node.data_mut().saved_bytes = 0;
    }
    // Under create_graph the output must carry its node, so that a rule built on it
    // differentiates through it; otherwise the plain values are enough.
    let output = data.as_ref().and_then(|d| d.op.as_ref()).and_then(|op| op.output.as_ref());
    let output_tensor = match output {
        Some(out) if mode.create_graph => Some(out.to_tensor(Some(key))),
        _ => None,
    };
    // The output tensor holds a reference to its node, like any handle.
    if output_tensor.is_some() {
        node.refs += 1;
    }
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
}

/// Calls the rule of the node whose parts are in `step` with its output's gradient, and
/// returns the gradients of its inputs; then the rule is put back or dropped (phase 4).
fn run_rule(key: NodeKey, grad: Tensor, step: &mut Step, retain_graph: bool) -> InputGrads {
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
        for_tangent: None,
    };
    let grads = rule(&ctx);
    drop(ctx);
    after_rule(key, rule, retain_graph);
    NodeData::recycle(data);
    drop(grad);
    grads
}

// ----- 3. Accumulating -----------------------------------------------------------------

/// Hands each input of the node in `step` its gradient: checked against the input,
/// stored if it is the first, otherwise added to the one gathered so far. Errors name the
/// operation, the input and the mismatch.
fn pass_to_inputs(grads: InputGrads, step: &Step) -> Result<()> {
    let err = |message| Error::Backward { op: step.op, message, location: step.location };
    if grads.len() != step.inputs.len() {
        return Err(err(format!(
            "the backward rule returned {} gradients for {} inputs",
            grads.len(),
            step.inputs.len()
        )));
    }
    add_to_pending(grads, &step.inputs).map_err(err)
}

/// Adds each gradient to its input's pending gradient. The sums are computed outside the
/// tape's borrow, because under `create_graph` they are recorded.
fn add_to_pending(
    grads: InputGrads,
    inputs: &[Option<NodeKey>],
) -> std::result::Result<(), String> {
    let mut sums: SmallVec<[(NodeKey, Tensor, Tensor); 1]> = SmallVec::new();
    with_tape(|tape| {
        for (i, (g, input)) in grads.into_iter().zip(inputs).enumerate() {
            let (Some(g), Some(input)) = (g, input) else { continue };
            let Some(n) = tape.nodes.get_mut(*input) else { continue };
            if !crate::layout::same_shape(g.shape(), &n.data().shape) || g.dtype() != n.dtype {
                let message = format!(
                    "the backward rule returned a gradient of shape {:?} and dtype {} for input \
                     {i}, which has shape {:?} and dtype {}",
                    g.shape(),
                    g.dtype(),
                    n.data().shape.as_slice(),
                    n.dtype
                );
                tape.drop_later.tensors(smallvec::smallvec![g]);
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
        // In a plain backward (nothing recorded) a pending gradient no one else holds takes
        // the addend in its own buffer (copied first if the buffer is shared), instead of a
        // new tensor of the same size.
        let in_place =
            !crate::is_grad_enabled() && prev.is_sole_handle() && prev.accumulate_in_place(&g);
        let mut sum = if in_place {
            prev
        } else {
            let sum = &prev + &g;
            drop(prev);
            sum
        };
        drop(g);
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
fn accumulate_into_grad(key: NodeKey, g: &Tensor, create_graph: bool) {
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

// ----- 4. Freeing ----------------------------------------------------------------------

/// What happens to a rule once it has run: put back into its node if the graph is kept
/// (the node is then whole again), dropped otherwise.
fn after_rule(key: NodeKey, rule: BackwardRule, retain_graph: bool) {
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
}

/// Whether the node leaves the tape as its step takes it, before its rule runs: in a
/// plain backward, an interior node that no one asked to keep a gradient for.
fn leaves_tape_at_its_step(node: &Node, mode: Mode) -> bool {
    !mode.retain_graph && !mode.create_graph && !node.is_leaf() && !node.retains_grad
}

/// Removes a node that `take_step` emptied, without dropping it. Forgotten, because it
/// holds nothing to drop and a drop would read back the copy `remove` just made, stalling
/// on the stores that made it.
fn remove_emptied_node(nodes: &mut SlotMap<NodeKey, Node>, key: NodeKey) {
    let emptied = nodes.remove(key).expect("looked up above");
    debug_assert!(
        !emptied.holds_tensors() && !emptied.inputs.spilled(),
        "a removed node kept something to drop"
    );
    std::mem::forget(emptied);
}

/// Frees the interior nodes a sweep went through (those its steps did not already take
/// off the tape), then releases the edges of all of them; leaves and `retain_grad` nodes
/// stay, with what they saved dropped. A sweep that did not reach the end of its `order`
/// (an error stopped it) left nodes that are in neither of `swept`'s lists.
fn free_swept(swept: Swept, order: &[NodeKey], reached_the_end: bool) {
    let Swept { mut edges, mut stayed } = swept;
    with_tape(|tape| {
        for &key in if reached_the_end { &stayed } else { order } {
            // Nodes the sweep's steps removed are gone already.
            let Some(node) = tape.nodes.get(key) else { continue };
            if node.is_leaf() || node.retains_grad {
                drop_saved(tape, key);
                continue;
            }
            let mut node = tape.nodes.remove(key).expect("checked above");
            edges.extend(node.inputs.drain(..).flatten());
            // Nodes the sweep already released hold no tensors, so dropping them here
            // cannot re-enter the tape; the rest are dropped after the borrow.
            if node.holds_tensors() {
                tape.drop_removed(node);
            } else {
                tape.saved_bytes -= node.data().saved_bytes;
            }
        }
        // Every edge points into `order`, and a node of it that did not stay through its
        // step is gone: when few stayed (a plain backward: the leaves), only edges to them
        // count down, found by a search of those few rather than by looking each key up in
        // the slotmap, a cache miss per edge once the graph outgrows the cache.
        if reached_the_end && stayed.len() <= order.len() / 4 {
            stayed.sort_unstable();
            edges.retain(|input| stayed.binary_search(input).is_ok());
        }
        for input in edges {
            tape.decref(input);
        }
    });
}

/// Frees what a node kept for backward, leaving the node itself in place.
fn drop_saved(tape: &mut Tape, key: NodeKey) {
    let Some(node) = tape.nodes.get_mut(key) else { return };
    node.released = !node.is_leaf();
    let data = node.data_mut();
    if let Some(OpRecord { rule, saved, output, .. }) = &mut data.op {
        let rule = rule.take();
        let saved = std::mem::take(saved);
        // Plain values (a tangent kept with them is detached): dropping them cannot reach
        // back into the tape.
        *output = None;
        tape.saved_bytes -= data.saved_bytes;
        data.saved_bytes = 0;
        if let Some(rule) = rule {
            tape.drop_later.rule(rule);
        }
        if !saved.is_empty() {
            tape.drop_later.tensors(saved);
        }
    }
}
