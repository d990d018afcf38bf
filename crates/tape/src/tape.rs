//! The tape itself: this thread's Wengert list, its nodes in a generational slotmap, and
//! the reference counts that free a node when nothing can reach it any more.
//!
//! Everything that touches the tape goes through [`with_tape`], which borrows it for the
//! length of one closure. Values freed during a borrow are dropped after it ends (see
//! [`DropLater`]), because dropping them can release further nodes and so need the tape
//! again.

use std::cell::{Cell, RefCell};

use slotmap::SlotMap;
use smallvec::SmallVec;

use crate::Tensor;
use crate::node::{Node, NodeData, NodeKey};
use crate::record::BackwardRule;

pub(crate) struct Tape {
    pub nodes: SlotMap<NodeKey, Node>,
    /// The sequence number of the next node recorded.
    pub next_seq: u64,
    /// The visit stamp of the next backward sweep.
    pub next_sweep: u64,
    pub leaves: usize,
    pub saved_bytes: usize,
    pub drop_later: DropLater,
}

thread_local! {
    static TAPE: RefCell<Tape> = RefCell::new(Tape {
        nodes: SlotMap::with_key(),
        next_seq: 0,
        next_sweep: 1,
        leaves: 0,
        saved_bytes: 0,
        drop_later: DropLater { queue: Vec::new(), draining: false },
    });
    /// Releases that arrived while the tape was borrowed (see [`defer_release`]).
    static DEFERRED: RefCell<Vec<NodeKey>> = const { RefCell::new(Vec::new()) };
    /// Whether `DEFERRED` may hold keys (see [`apply_deferred_releases`]).
    static HAS_DEFERRED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` on this thread's tape, then drops whatever it freed outside the borrow.
pub(crate) fn with_tape<R>(f: impl FnOnce(&mut Tape) -> R) -> R {
    TAPE.with(|cell| {
        let (result, mut freed) = {
            let mut tape = cell.borrow_mut();
            apply_deferred_releases(&mut tape);
            let result = f(&mut tape);
            (result, tape.drop_later.take_first_round())
        };
        while !freed.is_empty() {
            drop_round(freed);
            freed = cell.borrow_mut().drop_later.take_next_round();
        }
        result
    })
}

/// Values freed while the tape is borrowed, to be dropped by [`with_tape`] once the borrow
/// ends: dropping a node drops the tensors it saved, which may free their nodes in turn.
///
/// Dropped round by round in a loop, not recursively, so that freeing a chain of a million
/// nodes cannot overflow the stack.
pub(crate) struct DropLater {
    queue: Vec<Droppable>,
    /// Whether a `with_tape` further up the stack is already dropping rounds.
    draining: bool,
}

/// Things whose drop may release further nodes.
// Nodes dominate the queue, so boxing them would only add an allocation per freed node.
#[allow(clippy::large_enum_variant)]
enum Droppable {
    Node(#[allow(dead_code)] Node),
    Tensors(#[allow(dead_code)] SmallVec<[Tensor; 2]>),
    Rule(#[allow(dead_code)] BackwardRule),
}

impl DropLater {
    pub fn node(&mut self, node: Node) {
        self.queue.push(Droppable::Node(node));
    }

    pub fn tensors(&mut self, tensors: SmallVec<[Tensor; 2]>) {
        self.queue.push(Droppable::Tensors(tensors));
    }

    pub fn rule(&mut self, rule: BackwardRule) {
        self.queue.push(Droppable::Rule(rule));
    }

    /// What the borrow that ends now must drop; nothing if an outer `with_tape` is already
    /// dropping, whose loop will take it (one loop, however deep the nesting).
    #[inline(always)]
    fn take_first_round(&mut self) -> Vec<Droppable> {
        if self.draining || self.queue.is_empty() {
            Vec::new()
        } else {
            self.draining = true;
            std::mem::take(&mut self.queue)
        }
    }

    /// What the last round's drops freed in turn; empty when the loop is done.
    fn take_next_round(&mut self) -> Vec<Droppable> {
        let next = std::mem::take(&mut self.queue);
        if next.is_empty() {
            self.draining = false;
        }
        next
    }
}

/// Drops one round of freed values, keeping the boxes of freed nodes for new ones.
fn drop_round(freed: Vec<Droppable>) {
    for item in freed {
        if let Droppable::Node(mut node) = item
            && let Some(data) = node.data.take()
        {
            NodeData::recycle(data);
        }
    }
}

/// Drops one handle's reference to `key` (called when a tensor handle is dropped).
pub(crate) fn release(key: NodeKey) {
    let _ = TAPE.try_with(|cell| {
        let Ok(mut tape) = cell.try_borrow_mut() else {
            defer_release(key);
            return;
        };
        // Fast path for the common case, a handle to a node that something later still
        // uses: one count down under one borrow. Anything that frees goes the long way.
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

/// Queues a release that cannot count down now, because it comes from a drop inside a
/// borrow of the tape; the next borrow applies it.
fn defer_release(key: NodeKey) {
    DEFERRED.with(|d| d.borrow_mut().push(key));
    HAS_DEFERRED.with(|h| h.set(true));
}

/// Applies the releases [`defer_release`] queued. A flag is checked first so that every
/// borrow with nothing queued (nearly all of them) skips borrowing the queue.
// Always inlined: it is part of every `with_tape`, which is on every op's path.
#[inline(always)]
fn apply_deferred_releases(tape: &mut Tape) {
    if HAS_DEFERRED.with(|h| h.replace(false)) {
        for key in DEFERRED.with(|d| std::mem::take(&mut *d.borrow_mut())) {
            tape.decref(key);
        }
    }
}

impl Tape {
    pub fn incref(&mut self, key: NodeKey) {
        if let Some(node) = self.nodes.get_mut(key) {
            node.refs += 1;
        }
    }

    /// Drops one reference; frees the node (and, transitively, its inputs) at zero.
    pub fn decref(&mut self, key: NodeKey) {
        // Fast path: most counts stay above zero, and keys of nodes already gone need
        // nothing; neither needs the work list.
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
                self.drop_removed(node);
                if crate::hooks::any() {
                    crate::hooks::forget(k);
                }
            }
        }
    }

    /// Accounts for a node that has left the slotmap and queues it to be dropped.
    pub fn drop_removed(&mut self, node: Node) {
        self.saved_bytes -= node.data().saved_bytes;
        if node.is_leaf() {
            self.leaves -= 1;
        }
        self.drop_later.node(node);
    }

    /// Appends a node built by `make` from its sequence number. Built inside the slotmap's
    /// insertion, because a node built outside is copied on its way in.
    #[inline]
    pub fn insert_with(&mut self, make: impl FnOnce(u64) -> Node) -> NodeKey {
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
        // Checkpointed segments keep their inputs instead of their saved tensors.
        saved_bytes: tape.saved_bytes + crate::recompute::held_bytes(),
    })
}
