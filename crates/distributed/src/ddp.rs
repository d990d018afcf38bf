//! `DistributedDataParallel`: the same model on every rank, each rank a different part of the
//! batch, gradients averaged after backward (PyTorch's `DistributedDataParallel`).
//!
//! How the averaging overlaps backward: the trainable parameters are split into buckets, in
//! the reverse of their order in the model (roughly the order backward finishes them). Each
//! parameter has a post-accumulate hook; when every parameter of a bucket (and of every
//! bucket before it) has its gradient, the bucket's gradients are copied into one buffer and
//! its all-reduce starts on the group's communication thread, while the sweep goes on with the
//! layers below. When the last bucket has started, the hook waits for all of them and writes
//! the averages back into `.grad`. Buckets start strictly in order, so every rank issues the
//! same collectives in the same order even when their sweeps reach the parameters differently.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use tapegrad_nn::{Forward, Module, Slot};
use tapegrad_tape::{DType, HookHandle, Tensor, is_grad_enabled};

use crate::error::Result;
use crate::group::{ProcessGroup, Work};
use crate::payload::{Payload, sum_in_order};

/// How gradients are summed over the ranks.
///
/// ```
/// use tapegrad_distributed::{DdpOptions, ReduceOrder};
/// let options = DdpOptions::default().reduce_order(ReduceOrder::RankOrder);
/// assert_eq!(options.order(), ReduceOrder::RankOrder);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReduceOrder {
    /// The backend's all-reduce (MPI's; a ring or a tree, chosen by the library): the least
    /// traffic, but for more than two ranks the order of the additions is the library's.
    #[default]
    Backend,
    /// Gather every rank's bucket and add them in rank order: bit-for-bit what one process
    /// adding the ranks' gradients in turn computes, for `world_size` times the traffic.
    RankOrder,
}

/// The settings of [`DistributedDataParallel::new_with`] (PyTorch's keywords).
///
/// ```
/// use tapegrad_distributed::DdpOptions;
/// let options = DdpOptions::default().bucket_cap_mb(4.0).broadcast_buffers(false);
/// assert_eq!(options.bucket_cap_bytes(), 4 << 20);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DdpOptions {
    bucket_cap_mb: f64,
    first_bucket_mb: f64,
    broadcast_buffers: bool,
    reduction: ReduceOrder,
}

impl Default for DdpOptions {
    /// PyTorch's defaults: 25 MiB buckets, a first bucket of 1 MiB, buffers broadcast from
    /// rank 0 at every forward, the backend's all-reduce.
    fn default() -> Self {
        DdpOptions {
            bucket_cap_mb: 25.0,
            first_bucket_mb: 1.0,
            broadcast_buffers: true,
            reduction: ReduceOrder::Backend,
        }
    }
}

impl DdpOptions {
    /// The most gradient bytes in one all-reduce (PyTorch's `bucket_cap_mb`): smaller buckets
    /// start communicating earlier in backward, larger ones pay less latency.
    ///
    /// ```
    /// let o = tapegrad_distributed::DdpOptions::default().bucket_cap_mb(0.5);
    /// assert_eq!(o.bucket_cap_bytes(), 1 << 19);
    /// ```
    pub fn bucket_cap_mb(mut self, mb: f64) -> Self {
        self.bucket_cap_mb = mb;
        self
    }

    /// The cap of the first bucket (the last layers' gradients, ready first), so that
    /// communication starts early.
    ///
    /// ```
    /// let o = tapegrad_distributed::DdpOptions::default().first_bucket_mb(0.25);
    /// assert_eq!(o.first_bucket_cap_bytes(), 1 << 18);
    /// ```
    pub fn first_bucket_mb(mut self, mb: f64) -> Self {
        self.first_bucket_mb = mb;
        self
    }

    /// Whether every training forward first copies rank 0's buffers (BatchNorm's running
    /// statistics) to all ranks (PyTorch's `broadcast_buffers`).
    ///
    /// ```
    /// assert!(!tapegrad_distributed::DdpOptions::default().broadcast_buffers(false).broadcasts_buffers());
    /// ```
    pub fn broadcast_buffers(mut self, on: bool) -> Self {
        self.broadcast_buffers = on;
        self
    }

    /// How gradients are summed.
    ///
    /// ```
    /// use tapegrad_distributed::{DdpOptions, ReduceOrder};
    /// assert_eq!(DdpOptions::default().order(), ReduceOrder::Backend);
    /// ```
    pub fn reduce_order(mut self, order: ReduceOrder) -> Self {
        self.reduction = order;
        self
    }

    /// The bucket cap in bytes.
    ///
    /// ```
    /// assert_eq!(tapegrad_distributed::DdpOptions::default().bucket_cap_bytes(), 25 << 20);
    /// ```
    pub fn bucket_cap_bytes(&self) -> usize {
        (self.bucket_cap_mb * (1 << 20) as f64) as usize
    }

    /// The first bucket's cap in bytes.
    ///
    /// ```
    /// assert_eq!(tapegrad_distributed::DdpOptions::default().first_bucket_cap_bytes(), 1 << 20);
    /// ```
    pub fn first_bucket_cap_bytes(&self) -> usize {
        (self.first_bucket_mb * (1 << 20) as f64) as usize
    }

    /// Whether buffers are broadcast at every training forward.
    ///
    /// ```
    /// assert!(tapegrad_distributed::DdpOptions::default().broadcasts_buffers());
    /// ```
    pub fn broadcasts_buffers(&self) -> bool {
        self.broadcast_buffers
    }

    /// The reduction chosen.
    ///
    /// ```
    /// use tapegrad_distributed::{DdpOptions, ReduceOrder};
    /// assert_eq!(DdpOptions::default().order(), ReduceOrder::Backend);
    /// ```
    pub fn order(&self) -> ReduceOrder {
        self.reduction
    }
}

/// What the last averaging round communicated and how long backward waited for it.
///
/// ```
/// use tapegrad_distributed::{DistributedDataParallel, ProcessGroup};
/// use tapegrad_nn::{Forward, Linear, Module};
/// use tapegrad_ops::prelude::*;
/// use tapegrad_tape::Tensor;
/// let ranks: Vec<_> = ProcessGroup::threads(2)
///     .into_iter()
///     .map(|group| std::thread::spawn(move || {
///         let ddp = DistributedDataParallel::new(Linear::new(3, 2), &group);
///         ddp.backward(&ddp.forward(&Tensor::ones(&[1, 3])).sum());
///         ddp.last_sync()
///     }))
///     .collect();
/// let stats = ranks.into_iter().next().unwrap().join().unwrap();
/// assert_eq!(stats.buckets, 1);
/// assert_eq!(stats.bytes, 4 * (6 + 2 + 2)); // 8 gradient values and 2 used flags, in f32
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SyncStats {
    /// All-reduces made (one per bucket).
    pub buckets: usize,
    /// Bytes this rank contributed (gradients and one flag per parameter); a ring all-reduce
    /// sends and receives about twice this per rank.
    pub bytes: usize,
    /// Buckets whose all-reduce started while backward still had gradients to compute:
    /// communication that overlapped the sweep.
    pub overlapped: usize,
    /// Time backward spent waiting for the all-reduces after its last gradient: the part of
    /// the communication that did not overlap computation.
    pub wait: std::time::Duration,
}

/// Parameters whose gradients travel in one all-reduce.
struct Bucket {
    /// Indices into `GradSync::params`.
    members: Vec<usize>,
    dtype: DType,
}

enum Pending {
    Summed(Work<Payload>),
    Gathered(Work<Vec<Payload>>),
}

/// The state the parameters' hooks share.
struct GradSync {
    group: ProcessGroup,
    reduction: ReduceOrder,
    params: Vec<(String, Tensor)>,
    buckets: Vec<Bucket>,
    bucket_of: Vec<usize>,
    ready: Vec<bool>,
    unready_in_bucket: Vec<usize>,
    next_to_start: usize,
    in_flight: Vec<(usize, Pending)>,
    /// Off inside `no_sync`.
    enabled: Rc<Cell<bool>>,
    /// Completed averaging rounds (one per synchronised backward).
    rounds: u64,
    /// Each bucket's buffer from the last step, for reuse.
    spare: Vec<Option<Payload>>,
    /// The round under way, then the last one.
    stats: SyncStats,
    last: SyncStats,
}

impl GradSync {
    fn new(
        group: ProcessGroup,
        params: Vec<(String, Tensor)>,
        options: &DdpOptions,
        enabled: Rc<Cell<bool>>,
    ) -> Self {
        let mut buckets: Vec<Bucket> = Vec::new();
        let mut bytes = 0usize;
        for i in (0..params.len()).rev() {
            let t = &params[i].1;
            let size = t.numel() * t.dtype().size_in_bytes();
            let cap = if buckets.len() <= 1 {
                options.first_bucket_cap_bytes()
            } else {
                options.bucket_cap_bytes()
            };
            match buckets.last_mut() {
                Some(b) if b.dtype == t.dtype() && bytes + size <= cap.max(1) => {
                    b.members.push(i);
                    bytes += size;
                }
                _ => {
                    buckets.push(Bucket { members: vec![i], dtype: t.dtype() });
                    bytes = size;
                }
            }
        }
        let mut bucket_of = vec![0; params.len()];
        for (b, bucket) in buckets.iter().enumerate() {
            for &i in &bucket.members {
                bucket_of[i] = b;
            }
        }
        let unready_in_bucket = buckets.iter().map(|b| b.members.len()).collect();
        let buckets_len = buckets.len();
        GradSync {
            group,
            reduction: options.reduction,
            ready: vec![false; params.len()],
            params,
            buckets,
            bucket_of,
            unready_in_bucket,
            next_to_start: 0,
            in_flight: Vec::new(),
            enabled,
            rounds: 0,
            spare: (0..buckets_len).map(|_| None).collect(),
            stats: SyncStats::default(),
            last: SyncStats::default(),
        }
    }

    /// Whether a round has started and not finished.
    fn in_progress(&self) -> bool {
        self.ready.iter().any(|&r| r)
    }

    /// A parameter's gradient is complete: start every bucket that is ready, in order.
    fn mark_ready(&mut self, i: usize) {
        if !self.enabled.get() {
            return;
        }
        assert!(
            !self.ready[i],
            "DistributedDataParallel: parameter `{}` received a second gradient before the first \
             was averaged (two backward passes in one step?); accumulate gradients over several \
             backward passes inside `ddp.no_sync()`",
            self.params[i].0
        );
        if self.group.world_size() == 1 {
            // The mean over one rank is its own gradient: nothing to communicate.
            return;
        }
        self.ready[i] = true;
        self.unready_in_bucket[self.bucket_of[i]] -= 1;
        self.start_ready_buckets();
        if self.next_to_start == self.buckets.len() {
            self.finish();
        }
    }

    fn start_ready_buckets(&mut self) {
        while self.next_to_start < self.buckets.len()
            && self.unready_in_bucket[self.next_to_start] == 0
        {
            self.start(self.next_to_start);
            self.next_to_start += 1;
            if self.ready.iter().any(|&r| !r) {
                self.stats.overlapped += 1;
            }
        }
    }

    /// Copies bucket `b`'s gradients into one buffer, followed by one flag per parameter
    /// (1 where this rank has a gradient), and starts its reduction.
    fn start(&mut self, b: usize) {
        let bucket = &self.buckets[b];
        // Last step's buffer, reused: a fresh one costs page faults at every step.
        let mut data = match self.spare[b].take() {
            Some(mut spare) => {
                spare.clear();
                spare
            }
            None => Payload::empty(bucket.dtype),
        };
        let mut used = Vec::with_capacity(bucket.members.len());
        for &i in &bucket.members {
            let p = &self.params[i].1;
            match p.grad() {
                Some(g) => {
                    data.extend_from_tensor(&g);
                    used.push(1.0);
                }
                None => {
                    data.extend_with(p.numel(), 0.0);
                    used.push(0.0);
                }
            }
        }
        for u in used {
            data.extend_with(1, u);
        }
        self.stats.buckets += 1;
        self.stats.bytes += data.bytes();
        let pending = match self.reduction {
            ReduceOrder::Backend => Pending::Summed(self.group.all_reduce_async(data)),
            ReduceOrder::RankOrder => Pending::Gathered(self.group.all_gather_async(data)),
        };
        self.in_flight.push((b, pending));
    }

    /// Waits for every bucket and writes the averaged gradients back.
    fn finish(&mut self) {
        if let Err(e) = self.try_finish() {
            panic!("DistributedDataParallel: averaging gradients failed: {e}");
        }
    }

    fn try_finish(&mut self) -> Result<()> {
        if self.group.world_size() == 1 {
            self.rounds += 1;
            return Ok(());
        }
        // Every bucket still waiting: parameters this backward did not reach contribute zeros.
        for b in self.next_to_start..self.buckets.len() {
            self.start(b);
        }
        self.next_to_start = self.buckets.len();
        let world = self.group.world_size();
        for (b, pending) in std::mem::take(&mut self.in_flight) {
            let waiting = std::time::Instant::now();
            let sum = match pending {
                Pending::Summed(work) => work.wait()?,
                Pending::Gathered(work) => sum_in_order(work.wait()?, "all_reduce")?,
            };
            self.stats.wait += waiting.elapsed();
            let members = &self.buckets[b].members;
            let flags = sum.len() - members.len();
            let mut start = 0;
            for (k, &i) in members.iter().enumerate() {
                let p = &self.params[i].1;
                // No rank had a gradient: leave `.grad` empty, as one process would.
                if sum.get(flags + k) > 0.0 {
                    let in_place =
                        p.grad().is_some_and(|g| sum.write_quotient_into(start, world, &g));
                    if !in_place {
                        let mut part = Payload::from_tensor(&sum.slice_to_tensor(start, p.shape()));
                        part.divide(world);
                        p.set_grad(Some(&part.to_tensor(p.shape())));
                    }
                }
                start += p.numel();
            }
            self.spare[b] = Some(sum);
        }
        self.ready.iter_mut().for_each(|r| *r = false);
        for (b, bucket) in self.buckets.iter().enumerate() {
            self.unready_in_bucket[b] = bucket.members.len();
        }
        self.next_to_start = 0;
        self.rounds += 1;
        self.last = std::mem::take(&mut self.stats);
        Ok(())
    }
}

/// Data-parallel training of `M` (PyTorch's `DistributedDataParallel`): rank 0's parameters
/// and buffers are copied to every rank when it is made, and each backward pass averages the
/// gradients over the ranks, overlapped with the rest of the sweep (see the module notes
/// in the crate documentation). Each rank then takes the same optimizer step and the
/// models stay identical.
///
/// Call [`DistributedDataParallel::backward`] on the loss (or `loss.backward()`, when every
/// trainable parameter takes part in the loss on every rank). Names and state dicts are the
/// inner module's. Replace no parameter tensor after wrapping: the hooks are on the tensors.
///
/// ```
/// use tapegrad_distributed::{DistributedDataParallel, ProcessGroup};
/// use tapegrad_nn::{Forward, Linear, Module, Optimizer, SGD};
/// use tapegrad_ops::{functional::mse_loss, prelude::*};
/// use tapegrad_tape::Tensor;
/// // Two ranks as two threads; under mpirun each process would call ProcessGroup::mpi().
/// let ranks: Vec<_> = ProcessGroup::threads(2)
///     .into_iter()
///     .map(|group| {
///         std::thread::spawn(move || {
///             tapegrad_tape::manual_seed(group.rank() as u64); // different initial weights...
///             let model = DistributedDataParallel::new(Linear::new(3, 1), &group); // ...made equal
///             let mut opt = SGD::new(model.parameters(), 0.1);
///             let x = Tensor::randn(&[4, 3]); // this rank's half of the batch
///             for _ in 0..3 {
///                 let loss = mse_loss(&model.forward(&x), &Tensor::zeros(&[4, 1]));
///                 opt.zero_grad();
///                 model.backward(&loss);
///                 opt.step();
///             }
///             model.parameters()[0].to_vec::<f32>()
///         })
///     })
///     .collect();
/// let weights: Vec<Vec<f32>> = ranks.into_iter().map(|h| h.join().unwrap()).collect();
/// assert_eq!(weights[0], weights[1]); // the same model on both ranks
/// ```
pub struct DistributedDataParallel<M: Module> {
    /// `None` only inside `into_inner`.
    module: Option<M>,
    group: ProcessGroup,
    sync: Rc<RefCell<GradSync>>,
    hooks: Vec<HookHandle>,
    options: DdpOptions,
}

/// While alive, backward passes accumulate gradients locally without averaging them
/// (PyTorch's `no_sync()`); returned by [`DistributedDataParallel::no_sync`]. Bind it to a
/// name (`let _local = ...`): `let _ = ...` drops it at once.
///
/// ```
/// use tapegrad_distributed::{DistributedDataParallel, NoSyncGuard, ProcessGroup};
/// let ddp = DistributedDataParallel::new(tapegrad_nn::Linear::new(2, 1), &ProcessGroup::single());
/// let local: NoSyncGuard = ddp.no_sync();
/// drop(local); // averaging is back on
/// ```
#[must_use = "gradients are averaged again as soon as the guard is dropped"]
pub struct NoSyncGuard {
    /// The switch the wrapper's averaging state reads (shared, so that it survives the
    /// state being rebuilt when parameters are replaced).
    enabled: Rc<Cell<bool>>,
    previous: bool,
}

impl Drop for NoSyncGuard {
    fn drop(&mut self) {
        self.enabled.set(self.previous);
    }
}

/// The parameters gradients are averaged for: those that track gradients.
fn trainable(module: &impl Module) -> Vec<(String, Tensor)> {
    module.named_parameters().into_iter().filter(|(_, p)| p.tracks_grad()).collect()
}

/// The averaging state for `module`'s trainable parameters and a post-accumulate hook on each.
fn attach(
    module: &impl Module,
    group: &ProcessGroup,
    options: &DdpOptions,
    enabled: Rc<Cell<bool>>,
) -> (Rc<RefCell<GradSync>>, Vec<HookHandle>) {
    let params = trainable(module);
    let sync =
        Rc::new(RefCell::new(GradSync::new(group.clone(), params.clone(), options, enabled)));
    let hooks = params
        .iter()
        .enumerate()
        .map(|(i, (_, p))| {
            let sync = Rc::downgrade(&sync);
            p.register_post_accumulate_grad_hook(move |_| {
                if let Some(sync) = sync.upgrade() {
                    sync.borrow_mut().mark_ready(i);
                }
            })
        })
        .collect();
    (sync, hooks)
}

impl<M: Module> DistributedDataParallel<M> {
    /// Wraps `module` with PyTorch's defaults; collective (every rank must call it), as it
    /// copies rank 0's parameters and buffers to the others.
    ///
    /// ```
    /// use tapegrad_distributed::{DistributedDataParallel, ProcessGroup};
    /// use tapegrad_nn::{Linear, Module};
    /// let ddp = DistributedDataParallel::new(Linear::new(4, 2), &ProcessGroup::single());
    /// assert_eq!(ddp.parameters().len(), 2); // the inner module's, same names
    /// ```
    pub fn new(module: M, group: &ProcessGroup) -> Self {
        DistributedDataParallel::new_with(module, group, DdpOptions::default())
    }

    /// [`DistributedDataParallel::new`] with settings.
    ///
    /// ```
    /// use tapegrad_distributed::{DdpOptions, DistributedDataParallel, ProcessGroup};
    /// use tapegrad_nn::Linear;
    /// let group = ProcessGroup::single();
    /// let options = DdpOptions::default().first_bucket_mb(1e-5).bucket_cap_mb(1e-5);
    /// let ddp = DistributedDataParallel::new_with(Linear::new(4, 2), &group, options);
    /// assert_eq!(ddp.bucket_count(), 2); // 10-byte caps: weight and bias apart
    /// ```
    pub fn new_with(module: M, group: &ProcessGroup, options: DdpOptions) -> Self {
        // The module's own handles (a state dict's are detached copies-on-write).
        let mut state = Vec::new();
        module.visit("", &mut |_, t, _| state.push(t.clone()));
        group.broadcast_into(&state, 0);
        let (sync, hooks) = attach(&module, group, &options, Rc::new(Cell::new(true)));
        DistributedDataParallel { module: Some(module), group: group.clone(), sync, hooks, options }
    }

    /// Hooks the parameters again if a `visit_mut` replaced any (`to_dtype`, `freeze`): the
    /// old hooks are on tensors the module no longer holds.
    fn reattach_if_replaced(&mut self) {
        let Some(module) = &self.module else { return };
        let now = trainable(module);
        let same = {
            let sync = self.sync.borrow();
            now.len() == sync.params.len()
                && now.iter().zip(&sync.params).all(|((_, a), (_, b))| a.is_same(b))
        };
        if !same {
            let (in_progress, enabled) = {
                let sync = self.sync.borrow();
                (sync.in_progress(), sync.enabled.clone())
            };
            assert!(
                !in_progress,
                "DistributedDataParallel: parameters were replaced while a backward pass's \
                 gradients were still being averaged"
            );
            for hook in self.hooks.drain(..) {
                hook.remove();
            }
            // The same switch: a `no_sync` guard alive now still turns it back on.
            (self.sync, self.hooks) = attach(module, &self.group, &self.options, enabled);
        }
    }

    /// The wrapped module.
    ///
    /// ```
    /// use tapegrad_distributed::{DistributedDataParallel, ProcessGroup};
    /// let ddp = DistributedDataParallel::new(tapegrad_nn::Linear::new(2, 3), &ProcessGroup::single());
    /// assert_eq!(ddp.module().weight.shape(), &[3, 2]);
    /// ```
    pub fn module(&self) -> &M {
        self.inner()
    }

    /// Unwraps the module (removing the hooks).
    ///
    /// ```
    /// use tapegrad_distributed::{DistributedDataParallel, ProcessGroup};
    /// let ddp = DistributedDataParallel::new(tapegrad_nn::Linear::new(2, 3), &ProcessGroup::single());
    /// let linear = ddp.into_inner();
    /// assert_eq!(linear.bias.unwrap().shape(), &[3]);
    /// ```
    pub fn into_inner(mut self) -> M {
        self.module.take().expect("the module is present until into_inner")
    }

    fn inner(&self) -> &M {
        self.module.as_ref().expect("the module is present until into_inner")
    }

    /// The group the gradients are averaged over.
    ///
    /// ```
    /// use tapegrad_distributed::{DistributedDataParallel, ProcessGroup};
    /// let ddp = DistributedDataParallel::new(tapegrad_nn::Linear::new(1, 1), &ProcessGroup::single());
    /// assert_eq!(ddp.group().world_size(), 1);
    /// ```
    pub fn group(&self) -> &ProcessGroup {
        &self.group
    }

    /// How many all-reduces a backward pass makes.
    ///
    /// ```
    /// use tapegrad_distributed::{DistributedDataParallel, ProcessGroup};
    /// let ddp = DistributedDataParallel::new(tapegrad_nn::Linear::new(8, 8), &ProcessGroup::single());
    /// assert_eq!(ddp.bucket_count(), 1); // 288 bytes fit one 1 MiB bucket
    /// ```
    pub fn bucket_count(&self) -> usize {
        self.sync.borrow().buckets.len()
    }

    /// What the last completed averaging communicated, and how long it was waited for.
    ///
    /// ```
    /// use tapegrad_distributed::{DistributedDataParallel, ProcessGroup};
    /// let ddp = DistributedDataParallel::new(tapegrad_nn::Linear::new(2, 2), &ProcessGroup::single());
    /// assert_eq!(ddp.last_sync().buckets, 0); // no backward yet
    /// ```
    pub fn last_sync(&self) -> SyncStats {
        self.sync.borrow().last
    }

    /// `loss.backward()`, then the averaging of any bucket the sweep did not complete
    /// (parameters that took no part in this rank's loss count as zero gradients). When this
    /// returns (outside [`DistributedDataParallel::no_sync`]), every trainable parameter that
    /// some rank used has its `.grad` set to the mean over the ranks; one that no rank used
    /// keeps no gradient, as in one process.
    ///
    /// ```
    /// use tapegrad_distributed::{DistributedDataParallel, ProcessGroup};
    /// use tapegrad_nn::{Forward, Linear, Module};
    /// use tapegrad_ops::prelude::*;
    /// use tapegrad_tape::Tensor;
    /// let ddp = DistributedDataParallel::new(Linear::new(2, 1), &ProcessGroup::single());
    /// let loss = ddp.forward(&Tensor::ones(&[1, 2])).sum();
    /// ddp.backward(&loss);
    /// assert_eq!(ddp.module().weight.grad().unwrap().to_vec::<f32>(), vec![1.0, 1.0]);
    /// ```
    #[track_caller]
    pub fn backward(&self, loss: &Tensor) {
        let rounds = self.sync.borrow().rounds;
        loss.backward();
        let mut sync = self.sync.borrow_mut();
        if sync.enabled.get() && sync.rounds == rounds {
            sync.finish();
        }
    }

    /// Stops averaging until the guard is dropped, for gradient accumulation: backward passes
    /// inside add to `.grad` locally, and the first synchronised backward after it averages
    /// the accumulated gradients (PyTorch's `no_sync`).
    ///
    /// ```
    /// use tapegrad_distributed::{DistributedDataParallel, ProcessGroup};
    /// use tapegrad_nn::{Forward, Linear, Module};
    /// use tapegrad_ops::prelude::*;
    /// use tapegrad_tape::Tensor;
    /// let ddp = DistributedDataParallel::new(Linear::new(2, 1), &ProcessGroup::single());
    /// let x = Tensor::ones(&[1, 2]);
    /// {
    ///     let _local = ddp.no_sync();
    ///     ddp.backward(&ddp.forward(&x).sum()); // accumulated, not averaged
    /// }
    /// ddp.backward(&ddp.forward(&x).sum()); // averaged: both micro-batches
    /// assert_eq!(ddp.module().bias.as_ref().unwrap().grad().unwrap().to_vec::<f32>(), vec![2.0]);
    /// ```
    pub fn no_sync(&self) -> NoSyncGuard {
        let enabled = self.sync.borrow().enabled.clone();
        let previous = enabled.replace(false);
        NoSyncGuard { enabled, previous }
    }

    /// Checks that the last backward's averaging finished, then copies rank 0's buffers
    /// when asked to.
    #[track_caller]
    fn before_forward(&self) {
        let sync = self.sync.borrow();
        if sync.in_progress() {
            let missing: Vec<&str> = (0..sync.params.len())
                .filter(|&i| !sync.ready[i])
                .map(|i| sync.params[i].0.as_str())
                .take(5)
                .collect();
            panic!(
                "DistributedDataParallel: the last backward pass left gradients unaveraged: \
                 parameters {missing:?} took no part in the loss. Call `ddp.backward(&loss)` \
                 instead of `loss.backward()`, which averages them as zeros"
            );
        }
        drop(sync);
        // Forwards under `no_grad` (evaluation, perhaps on rank 0 alone) communicate nothing.
        if self.options.broadcast_buffers && self.group.world_size() > 1 && is_grad_enabled() {
            let buffers: Vec<Tensor> =
                self.inner().named_buffers().into_iter().map(|(_, b)| b).collect();
            if !buffers.is_empty() {
                self.group.broadcast_into(&buffers, 0);
            }
        }
    }
}

/// Removes the gradient hooks: the parameters train alone again.
impl<M: Module> Drop for DistributedDataParallel<M> {
    fn drop(&mut self) {
        for hook in self.hooks.drain(..) {
            hook.remove();
        }
    }
}

/// The inner module's names, tensors and training switch.
impl<M: Module> Module for DistributedDataParallel<M> {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, Slot)) {
        self.inner().visit(prefix, f)
    }

    /// Visits the inner module's tensors; if `f` replaced a parameter (as `to_dtype` and
    /// `freeze` do), the new ones are hooked for averaging instead.
    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor, Slot)) {
        if let Some(module) = &mut self.module {
            module.visit_mut(prefix, f)
        }
        self.reattach_if_replaced();
    }

    fn set_training(&self, training: bool) {
        self.inner().set_training(training)
    }
}

/// The inner module's forward, after checking that the last step's gradients were averaged
/// and (with `broadcast_buffers`, when gradients are recorded) copying rank 0's buffers.
impl<M: Module + Forward> Forward for DistributedDataParallel<M> {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        self.before_forward();
        self.inner().forward(x)
    }
}
