//! Gradient checkpointing (PyTorch's `torch.utils.checkpoint`, non-reentrant): a segment of
//! the forward pass is recorded as usual, then the tensors its operations saved for backward
//! are dropped, keeping only the segment's inputs and the function. When the reverse sweep
//! first reaches one of the segment's nodes, the function runs again (the random state as
//! it was, so dropout draws the same masks) in a mode where each operation, instead of
//! recording a node, hands its saved tensors to the node it recorded the first time. The
//! graph itself never changes, so everything that works without checkpointing (parameters
//! inside the function, `grad`, `create_graph`) works with it.

use std::cell::{Cell, RefCell};
use std::panic::Location;
use std::sync::atomic::{AtomicUsize, Ordering};

use smallvec::SmallVec;

use crate::node::{NodeKey, SavedOutput};
use crate::record::Backward;
use crate::tape::with_tape;
use crate::{Error, RngState, Tensor, enable_grad, get_rng_state, set_rng_state};

/// Segments alive on any thread: the sweep looks for one only while this is non-zero.
static SEGMENTS: AtomicUsize = AtomicUsize::new(0);

#[inline(always)]
pub(crate) fn any_segments() -> bool {
    SEGMENTS.load(Ordering::Relaxed) != 0
}

type SegmentFn = Box<dyn Fn(&[Tensor]) -> Tensor>;

/// One checkpointed segment: what it takes to run it again.
pub(crate) struct Segment {
    f: SegmentFn,
    /// The inputs' values as the first run saw them.
    inputs: Vec<Tensor>,
    rng: RngState,
    /// The nodes the first run recorded, in record order.
    keys: Vec<NodeKey>,
    replayed: Cell<bool>,
    /// What `inputs` hold, in bytes.
    held: usize,
}

impl Drop for Segment {
    fn drop(&mut self) {
        SEGMENTS.fetch_sub(1, Ordering::Relaxed);
        crate::instrument::remove(1);
        HELD.with(|h| h.set(h.get() - self.held));
    }
}

/// What a replay collects for one node: its saved tensors and output.
type Fill = (NodeKey, SmallVec<[Tensor; 2]>, Option<SavedOutput>);

struct Replay {
    keys: Vec<NodeKey>,
    next: usize,
    fills: Vec<Fill>,
}

thread_local! {
    static REPLAY: RefCell<Option<Replay>> = const { RefCell::new(None) };
    static REPLAYING: Cell<bool> = const { Cell::new(false) };
    /// Bytes of the inputs that this thread's segments keep (counted by `tape_stats`).
    static HELD: Cell<usize> = const { Cell::new(0) };
}

/// Bytes of the inputs that this thread's checkpointed segments keep.
pub(crate) fn held_bytes() -> usize {
    HELD.with(|h| h.get())
}

/// Whether a segment is being run again on this thread (then `record` refills nodes).
#[inline(always)]
pub(crate) fn replaying() -> bool {
    any_segments() && REPLAYING.with(|r| r.get())
}

/// `record` during a replay: the next node of the segment receives what this operation
/// saves, and the output is attached to it, as the first run's output was.
#[cold]
#[inline(never)]
pub(crate) fn capture(op: &'static str, output: Tensor, backward: Backward) -> Tensor {
    let key = REPLAY.with(|r| {
        let mut r = r.borrow_mut();
        let replay = r.as_mut().expect("replaying");
        let key = replay.keys.get(replay.next).copied();
        replay.next += 1;
        key
    });
    let expected = key.and_then(|k| with_tape(|t| t.nodes.get(k).map(|n| n.op)));
    let Some(key) = key.filter(|_| expected == Some(op)) else {
        panic!(
            "{}",
            Error::Backward {
                op: "checkpoint",
                message: format!(
                    "running the checkpointed function again took another path (`{op}` where \
                     the first run recorded {}); it must record the same operations each time",
                    expected.map_or("nothing more".to_string(), |e| format!("`{e}`"))
                ),
                location: Location::caller(),
            }
        );
    };
    let Backward { mut data, save_output } = backward;
    let record = data.op.as_mut().expect("a Backward holds its op record");
    let saved = std::mem::take(&mut record.saved);
    let out = save_output.then(|| SavedOutput {
        storage: output.storage(),
        layout: output.layout().clone(),
        tangent: None,
    });
    REPLAY.with(|r| r.borrow_mut().as_mut().expect("replaying").fills.push((key, saved, out)));
    with_tape(|t| t.incref(key));
    output.attach_node(key)
}

impl Segment {
    /// Runs the segment again and gives its nodes back their saved tensors.
    fn replay(&self) {
        self.replayed.set(true);
        let now = get_rng_state();
        set_rng_state(self.rng).expect("a state the generator had");
        REPLAY.with(|r| {
            *r.borrow_mut() = Some(Replay { keys: self.keys.clone(), next: 0, fills: Vec::new() })
        });
        REPLAYING.with(|r| r.set(true));
        let result = {
            let _grad = enable_grad();
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop((self.f)(&self.inputs))))
        };
        REPLAYING.with(|r| r.set(false));
        let replay = REPLAY.with(|r| r.borrow_mut().take()).expect("replaying");
        set_rng_state(now).expect("a state the generator had");
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
        with_tape(|t| {
            for (key, saved, output) in replay.fills {
                let bytes: usize = saved.iter().map(Tensor::storage_nbytes).sum::<usize>()
                    + output.as_ref().map_or(0, |o| o.storage.nbytes());
                let Some(node) = t.nodes.get_mut(key) else { continue };
                let data = node.data_mut();
                if let Some(record) = data.op.as_mut() {
                    record.saved = saved;
                    record.output = output;
                    data.saved_bytes = bytes;
                    t.saved_bytes += bytes;
                }
            }
        });
    }
}

/// Before the sweep takes `key`: if it belongs to a checkpointed segment not yet run again,
/// run it.
#[cold]
pub(crate) fn replay_if_needed(key: NodeKey) {
    let segment = with_tape(|t| {
        t.nodes
            .get(key)
            .and_then(|n| n.data.as_ref())
            .and_then(|d| d.op.as_ref())
            .and_then(|op| op.replay.clone())
    });
    if let Some(segment) = segment
        && !segment.replayed.get()
    {
        segment.replay();
    }
}

/// `f(inputs)` with the memory of its intermediate values traded for a second run during
/// backward (PyTorch's `torch.utils.checkpoint.checkpoint`, non-reentrant): the operations
/// `f` records keep nothing for backward until the sweep reaches them, when `f` runs again
/// on the same inputs with the same random state. `f` must record the same operations each
/// time (a different path stops backward with an error). Gradients, including those of
/// parameters `f` uses and those taken with `create_graph`, are exactly those without
/// checkpointing. Inside a dual level ([`forward_ad`](crate::forward_ad)) `f`'s graph is
/// kept as recorded (tangent rules' operations are not replayed), so nothing is saved.
///
/// ```
/// use tapegrad_tape::{Tensor, checkpoint, tape_stats};
/// let w = Tensor::from_vec(vec![0.5f64, -1.0], &[2]).requires_grad();
/// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
/// let w2 = w.clone();
/// let deep = move |t: &[Tensor]| {
///     let mut h = t[0].clone();
///     for _ in 0..10 {
///         h = &(&h * &w2) * &h; // each step saves its inputs for backward
///     }
///     h
/// };
/// let plain = deep(&[x.clone()]).sum_to_shape(&[]);
/// let held = tape_stats().saved_bytes;
/// drop(plain);
/// let y = checkpoint(deep, &[x]).sum_to_shape(&[]);
/// assert!(tape_stats().saved_bytes < held / 4); // the segment keeps almost nothing
/// y.backward();
/// assert!(w.grad().is_some());
/// ```
#[track_caller]
pub fn checkpoint(f: impl Fn(&[Tensor]) -> Tensor + 'static, inputs: &[Tensor]) -> Tensor {
    let rng = get_rng_state();
    let first = with_tape(|t| t.next_seq);
    let out = f(inputs);
    let last = with_tape(|t| t.next_seq);
    // Inside a dual level the segment is kept as recorded: its tangent rules' operations
    // would not be recorded again by a replay (tangents do not propagate there).
    if !out.tracks_grad() || replaying() || crate::forward_ad::is_dual_level_open() {
        return out;
    }
    SEGMENTS.fetch_add(1, Ordering::Relaxed);
    crate::instrument::add(1);
    let mut keys: Vec<(u64, NodeKey)> = with_tape(|t| {
        t.nodes
            .iter()
            .filter(|(_, n)| {
                (first..last).contains(&n.seq) && n.data.as_ref().is_some_and(|d| d.op.is_some())
            })
            .map(|(k, n)| (n.seq, k))
            .collect()
    });
    keys.sort_unstable();
    let inputs: Vec<Tensor> = inputs.iter().map(Tensor::snapshot).collect();
    let held = inputs.iter().map(Tensor::storage_nbytes).sum();
    HELD.with(|h| h.set(h.get() + held));
    let segment = std::rc::Rc::new(Segment {
        f: Box::new(f),
        inputs,
        rng,
        keys: keys.iter().map(|&(_, k)| k).collect(),
        replayed: Cell::new(false),
        held,
    });
    // Drop what the segment's operations saved (queued: dropping tensors may reach the
    // tape), and point each node at the segment that can bring it back.
    with_tape(|t| {
        for &(_, key) in &keys {
            let Some(node) = t.nodes.get_mut(key) else { continue };
            let data = node.data_mut();
            let bytes = data.saved_bytes;
            if let Some(record) = data.op.as_mut() {
                let saved = std::mem::take(&mut record.saved);
                record.output = None;
                record.replay = Some(segment.clone());
                data.saved_bytes = 0;
                t.saved_bytes -= bytes;
                if !saved.is_empty() {
                    t.drop_later.tensors(saved);
                }
            }
        }
    });
    out
}
