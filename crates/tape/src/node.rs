//! A node of the tape: one recorded operation (or one leaf), and its life from record to
//! free.
//!
//! # What a node holds
//!
//! - `inputs`: the keys of the nodes its inputs came from (its *edges*), `None` for inputs
//!   that take no part in differentiation (constants);
//! - `op` and `location`: the operation's name and the user's call site, for errors and
//!   graph dumps; `seq`: its position in record order;
//! - `data`: its output's shape and its [`OpRecord`]: the backward rule and what the rule
//!   reads (saved tensors, a scalar, the saved output); a leaf has no record;
//! - `pending`: the gradient the backward sweep under way has gathered for it so far;
//! - `grad`: `.grad` of a leaf, or of an interior tensor that asked to `retain_grad()`.
//!
//! # Its life
//!
//! 1. **Recorded.** `record` (in `record.rs`) appends the node with the next sequence number
//!    and one reference, held by the output tensor's handle; each input node gains a
//!    reference too, held by the new node's edge.
//! 2. **Alive.** `refs` counts tensor handles that point at the node plus edges from later
//!    nodes. When it reaches zero the node leaves the tape, and its own edges are released
//!    in turn (`Tape::decref` in `tape.rs`): a graph that is never differentiated is freed
//!    when its last tensor is dropped.
//! 3. **Swept.** `backward()` takes the node's pending gradient, runs its rule, and passes
//!    the results to its inputs (`sweep.rs`). Right after its rule runs, unless the caller
//!    asked to `retain_graph`, the rule and the saved tensors are dropped and the node
//!    leaves the tape; its edges are released once the sweep is over. Leaves stay: they
//!    hold `.grad`.
//! 4. **Gone.** Tensors may still hold the key of a node that left. Keys are generational
//!    (slotmap's), so a stale key never names the node that reuses its slot: a later
//!    backward through it reports `Error::FreedGraph` instead of reading someone else's node.

use std::panic::Location;

use slotmap::new_key_type;
use smallvec::SmallVec;

use crate::layout::{Layout, Shape};
use crate::record::BackwardRule;
use crate::{DType, Storage, Tensor};

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

/// One entry of the Wengert list.
pub(crate) struct Node {
    pub op: &'static str,
    pub location: &'static Location<'static>,
    /// Record order, which slot reuse would otherwise lose: the sweep sorts by it.
    pub seq: u64,
    /// Tensor handles plus edges from later nodes that point here.
    pub refs: u32,
    pub dtype: DType,
    pub retains_grad: bool,
    /// Whether the op's rule is gone (freed by a backward pass, or running). Kept here, not
    /// in `data`, so that the sweep's walk over the graph need not reach into the box.
    pub released: bool,
    /// `None` for inputs that do not take part in differentiation.
    pub inputs: SmallVec<[Option<NodeKey>; 2]>,
    /// Taken only as the node leaves the tape (see [`Node::data`]).
    pub data: Option<Box<NodeData>>,
    /// `.grad` of a leaf, or of an interior tensor that asked to `retain_grad()`.
    pub grad: Option<Tensor>,
    /// The gradient gathered so far in the sweep under way.
    pub pending: Option<Tensor>,
    /// The visit stamp of the last sweep that walked through this node.
    pub visit: u64,
    /// Where `grad(...)` wants this node's gradient (its capture slot), if it does.
    pub capture: Option<u32>,
}

/// The part of a node that the sweep reads once per node, behind one pointer so that the
/// node stays small: nodes are moved in and out of the slotmap, a copy each time.
pub(crate) struct NodeData {
    pub shape: Shape,
    pub saved_bytes: usize,
    /// `None` for a leaf.
    pub op: Option<OpRecord>,
}

/// What a recorded operation keeps for its backward pass.
pub(crate) struct OpRecord {
    /// `None` once a backward pass has released the node (or while its rule runs).
    pub rule: Option<BackwardRule>,
    pub scalar: f64,
    pub saved: SmallVec<[Tensor; 2]>,
    /// The output's value, without its node (holding the node would be a cycle).
    pub output: Option<SavedOutput>,
    /// The checkpointed segment that brings back `saved` and `output`, which it dropped.
    pub replay: Option<std::rc::Rc<crate::recompute::Segment>>,
}

/// An operation's output kept for its backward rule: the values without a tensor handle,
/// which would cost an allocation per op (rules that want a tensor get one built).
#[derive(Clone)]
pub(crate) struct SavedOutput {
    pub storage: Storage,
    pub layout: Layout,
    /// The output's tangent, when it was computed in a dual level (forward-over-reverse).
    pub tangent: Option<crate::forward_ad::Tangent>,
}

impl SavedOutput {
    /// The output as a tensor on `node` (none: plain values), with its tangent if it had one.
    pub fn to_tensor(&self, node: Option<NodeKey>) -> crate::Tensor {
        let t = crate::Tensor::from_parts(self.storage.clone(), self.layout.clone(), node);
        match &self.tangent {
            Some(tangent) => t.with_tangent(tangent.clone()),
            None => t,
        }
    }
}

impl Node {
    /// A node just recorded: one reference, held by its output's handle.
    #[inline]
    pub fn new(
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
        self.data.as_ref().is_some_and(|d| d.holds_tensors())
            || self.grad.is_some()
            || self.pending.is_some()
    }
}

thread_local! {
    /// Emptied boxes of nodes that left the tape, for the next operations recorded.
    // The boxes themselves are what is kept: a vector of values would mean a copy in and out.
    #[allow(clippy::vec_box)]
    static SPARE_DATA: std::cell::RefCell<Vec<Box<NodeData>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Boxes kept at most: the box of every node of a graph this large is reused by the next
/// one; larger graphs get the rest from the allocator.
const MAX_SPARE_DATA: usize = 1 << 16;

/// A kept box, if this thread has one (and still has its spares).
fn take_spare() -> Option<Box<NodeData>> {
    SPARE_DATA.try_with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.pop())).ok().flatten()
}

impl NodeData {
    /// A box holding `op` for a node of unknown shape: a spare one when there is one.
    ///
    /// Every recorded operation takes a box and backward frees them all, oldest last; the
    /// allocator then serves the next step's boxes from chunks it has just coalesced, the
    /// slow path of both calls. Boxes handed back by [`NodeData::recycle`] skip that.
    #[inline]
    pub fn boxed(op: OpRecord) -> Box<NodeData> {
        match take_spare() {
            Some(mut data) => {
                data.op = Some(op);
                data
            }
            None => tapegrad_kernels::in_place::boxed(|| NodeData {
                shape: Shape::new(),
                saved_bytes: 0,
                op: Some(op),
            }),
        }
    }

    /// A box holding a record with `rule` and nothing saved yet, for a node of unknown
    /// shape: a spare one when there is one, whose emptied record only needs the rule.
    #[inline]
    pub fn with_rule(rule: BackwardRule) -> Box<NodeData> {
        let record = |rule| OpRecord {
            rule: Some(rule),
            scalar: 0.0,
            saved: SmallVec::new(),
            output: None,
            replay: None,
        };
        match take_spare() {
            Some(mut data) => {
                match data.op.as_mut() {
                    Some(kept) => kept.rule = Some(rule),
                    // A leaf's box: no record to keep.
                    None => data.op = Some(record(rule)),
                }
                data
            }
            None => NodeData::boxed(record(rule)),
        }
    }

    /// Empties `data` and keeps its box (and its record, emptied) for [`NodeData::boxed`]
    /// and [`NodeData::with_rule`]. Dropping what it holds may release nodes, so this must
    /// not run inside a borrow of the tape.
    pub fn recycle(mut data: Box<NodeData>) {
        if let Some(record) = data.op.as_mut() {
            record.rule = None;
            record.scalar = 0.0;
            record.saved.clear();
            record.output = None;
            record.replay = None;
        }
        data.shape.clear();
        data.saved_bytes = 0;
        // A thread being torn down may have lost its spares already: the box is then freed.
        let _ = SPARE_DATA.try_with(|s| {
            if let Ok(mut s) = s.try_borrow_mut()
                && s.len() < MAX_SPARE_DATA
            {
                s.push(data);
            }
        });
    }

    /// Whether dropping this would drop tensor handles (and so touch the tape).
    pub fn holds_tensors(&self) -> bool {
        self.op.as_ref().is_some_and(|op| op.rule.is_some() || !op.saved.is_empty())
    }
}
