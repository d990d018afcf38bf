//! A process group: this rank's handle on the others (PyTorch's `torch.distributed` process
//! group). Collectives run on one communication thread per group, in the order they were
//! asked for, so a backward pass can start an all-reduce and go on computing while it runs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tapegrad_tape::Tensor;

use crate::backend::Backend;
use crate::error::{DistError, Result};
use crate::payload::{Combine, Payload};
use crate::threads::{Meeting, ThreadBackend};

/// How the values of the ranks are combined by [`ProcessGroup::all_reduce`].
///
/// ```
/// use tapegrad_distributed::{ProcessGroup, ReduceOp};
/// use tapegrad_tape::Tensor;
/// let group = ProcessGroup::single();
/// let x = Tensor::full(&[2], 3.0);
/// assert_eq!(group.all_reduce(&x, ReduceOp::Avg).to_vec::<f32>(), vec![3.0, 3.0]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReduceOp {
    /// The elementwise sum.
    #[default]
    Sum,
    /// The elementwise sum divided by the number of ranks (float tensors only).
    Avg,
    /// The elementwise maximum (PyTorch's `MAX`: "stop if any rank wants to").
    Max,
    /// The elementwise minimum.
    Min,
}

/// Settings of a process group (the long form of its constructors).
///
/// ```
/// use std::time::Duration;
/// use tapegrad_distributed::GroupOptions;
/// let options = GroupOptions::default().timeout(Duration::from_secs(60));
/// assert_eq!(options.timeout_duration(), Duration::from_secs(60));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupOptions {
    timeout: Duration,
}

impl Default for GroupOptions {
    /// A timeout of 5 minutes.
    fn default() -> Self {
        GroupOptions { timeout: Duration::from_secs(300) }
    }
}

impl GroupOptions {
    /// How long a rank waits for a collective before it reports the others as failed and
    /// stops (PyTorch's `timeout` of `init_process_group`).
    ///
    /// ```
    /// use std::time::Duration;
    /// let o = tapegrad_distributed::GroupOptions::default().timeout(Duration::from_millis(10));
    /// assert_eq!(o.timeout_duration().as_millis(), 10);
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The timeout set.
    ///
    /// ```
    /// let o = tapegrad_distributed::GroupOptions::default();
    /// assert_eq!(o.timeout_duration().as_secs(), 300);
    /// ```
    pub fn timeout_duration(&self) -> Duration {
        self.timeout
    }
}

/// What a job's result is sent back through.
enum Reply {
    One(Sender<Result<Payload>>),
    Many(Sender<Result<Vec<Payload>>>),
}

enum Op {
    AllReduce(Payload, Combine),
    Broadcast(Payload, usize),
    AllGather(Payload),
    Barrier,
}

struct Job {
    op: Op,
    reply: Reply,
}

/// The communication thread: runs the jobs in the order they came. Returns `false` if a
/// job panicked (the thread then stops serving: the ranks can no longer agree on what comes
/// next).
fn serve(backend: &mut dyn Backend, jobs: Receiver<Job>) -> bool {
    for Job { op, reply } in jobs {
        let name = op.name();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match op {
            Op::AllReduce(mut data, how) => backend.all_reduce(&mut data, how).map(|()| vec![data]),
            Op::Broadcast(mut data, root) => {
                backend.broadcast(&mut data, root).map(|()| vec![data])
            }
            Op::AllGather(data) => backend.all_gather(&data),
            Op::Barrier => backend.barrier().map(|()| Vec::new()),
        }));
        let (result, panicked) = match outcome {
            Ok(result) => (result, false),
            Err(_) => (
                Err(DistError::Invalid {
                    op: name,
                    message: "the communication thread panicked".into(),
                }),
                true,
            ),
        };
        // A receiver that is gone did not want the result (a Work dropped unwaited).
        match reply {
            Reply::One(tx) => {
                let _ = tx.send(result.map(|mut v| v.pop().unwrap_or(Payload::F32(vec![]))));
            }
            Reply::Many(tx) => {
                let _ = tx.send(result);
            }
        }
        if panicked {
            return false;
        }
    }
    true
}

impl Op {
    fn name(&self) -> &'static str {
        match self {
            Op::AllReduce(..) => "all_reduce",
            Op::Broadcast(..) => "broadcast",
            Op::AllGather(_) => "all_gather",
            Op::Barrier => "barrier",
        }
    }
}

enum Kind {
    Threads(Arc<Meeting>),
    #[cfg(feature = "mpi")]
    Mpi,
}

struct Inner {
    rank: usize,
    world_size: usize,
    jobs: Mutex<Option<Sender<Job>>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    /// Set by the communication thread when its queue is empty and closed (before MPI is
    /// finalised).
    drained: Arc<AtomicBool>,
    seq: AtomicU64,
    timeout: Duration,
    /// A collective failed or timed out: the group cannot be shut down cleanly.
    broken: AtomicBool,
    kind: Kind,
}

impl Inner {
    /// Ends this MPI rank's process without finalising MPI: finalising would wait for ranks
    /// that wait for this one, while an exit without it makes mpirun stop the whole job,
    /// which is what a failed rank must do.
    #[cfg(feature = "mpi")]
    fn stop_mpi_rank(&self, why: &str) -> ! {
        eprintln!(
            "[rank {} of {}] {why}: stopping this process; mpirun ends the other ranks",
            self.rank, self.world_size
        );
        std::process::exit(1)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let failing = std::thread::panicking() || self.broken.load(Ordering::SeqCst);
        #[cfg(feature = "mpi")]
        if failing && matches!(self.kind, Kind::Mpi) {
            self.stop_mpi_rank("a collective failed or the rank panicked");
        }
        // With the queue closed the thread ends after its last job (for MPI, after
        // finalising); a failed rank does not wait for it.
        drop(self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take());
        let worker = self.worker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let (Some(worker), false) = (worker, failing) {
            // Jobs still queued (a Work dropped unwaited) run first; a collective the
            // others never join would block for ever, so that wait is bounded. Finalising
            // MPI afterwards waits for the slowest rank (one still evaluating, say): not.
            let deadline = Instant::now() + self.timeout;
            while !self.drained.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            if self.drained.load(Ordering::SeqCst) {
                let _ = worker.join();
            } else {
                #[cfg(feature = "mpi")]
                if matches!(self.kind, Kind::Mpi) {
                    self.stop_mpi_rank("a collective started without waiting never completed");
                }
            }
        }
        // Only now: a rank must not be seen as gone while its queued jobs still run.
        #[cfg_attr(not(feature = "mpi"), allow(irrefutable_let_patterns))]
        if let Kind::Threads(meeting) = &self.kind {
            meeting.leave(self.rank, failing);
        }
    }
}

/// A pending collective, started by one of the `_async` methods of [`ProcessGroup`]:
/// PyTorch's `Work`. [`Work::wait`] returns its result, or an error once the group's timeout
/// has passed.
///
/// ```
/// use tapegrad_distributed::{Payload, ProcessGroup};
/// let group = ProcessGroup::single();
/// let work = group.all_reduce_async(Payload::F32(vec![1.0, 2.0]));
/// // ... compute something else while it runs ...
/// assert_eq!(work.wait().unwrap(), Payload::F32(vec![1.0, 2.0]));
/// ```
#[must_use = "a collective's result arrives through wait()"]
pub struct Work<T> {
    result: Receiver<Result<T>>,
    op: &'static str,
    seq: u64,
    /// The group's timeout counts from when the collective was started.
    deadline: Instant,
    /// Whether it reached the other ranks (a refusal before sending breaks nothing).
    sent: bool,
    group: Arc<Inner>,
}

impl<T> Work<T> {
    /// Blocks until the collective is complete.
    ///
    /// ```
    /// use tapegrad_distributed::ProcessGroup;
    /// assert!(ProcessGroup::single().barrier_async().wait().is_ok());
    /// ```
    pub fn wait(self) -> Result<T> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        let outcome = match self.result.recv_timeout(left) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(DistError::Timeout {
                rank: self.group.rank,
                op: self.op,
                seq: self.seq,
                waited: self.group.timeout,
            }),
            Err(RecvTimeoutError::Disconnected) => Err(DistError::Invalid {
                op: self.op,
                message: "the communication thread has stopped".into(),
            }),
        };
        if outcome.is_err() && self.sent {
            self.group.broken.store(true, Ordering::SeqCst);
        }
        outcome
    }
}

/// This rank's handle on a group of ranks that train together: collectives on tensors, and
/// what [`DistributedDataParallel`](crate::DistributedDataParallel) and
/// [`SyncBatchNorm`](crate::SyncBatchNorm) communicate through. Cloning gives another handle
/// on the same group.
///
/// Backends: `ProcessGroup::mpi` (one process per rank, started by `mpirun`; the `mpi`
/// feature), and [`ProcessGroup::threads`] (ranks as threads of one process; always built).
/// Every rank must call the same collectives in the same order; a rank that waits longer
/// than the timeout reports which collective it waited for and stops.
///
/// ```
/// use tapegrad_distributed::{ProcessGroup, ReduceOp};
/// use tapegrad_tape::Tensor;
/// let handles: Vec<_> = ProcessGroup::threads(2)
///     .into_iter()
///     .map(|group| {
///         std::thread::spawn(move || {
///             let x = Tensor::full(&[3], group.rank() as f64 + 1.0);
///             group.all_reduce(&x, ReduceOp::Sum).to_vec::<f32>()
///         })
///     })
///     .collect();
/// for h in handles {
///     assert_eq!(h.join().unwrap(), vec![3.0, 3.0, 3.0]); // 1 + 2 on both ranks
/// }
/// ```
#[derive(Clone)]
pub struct ProcessGroup {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessGroup")
            .field("rank", &self.inner.rank)
            .field("world_size", &self.inner.world_size)
            .finish()
    }
}

/// Masks are not reduced or gathered (convert them to integers first).
fn refuse_bool(op: &'static str, x: &Tensor) -> Result<()> {
    if x.dtype() == tapegrad_tape::DType::Bool {
        return Err(DistError::Invalid {
            op,
            message: "boolean tensors are not reduced or gathered: convert to i64 first".into(),
        });
    }
    Ok(())
}

fn start_worker(
    mut backend: ThreadBackend,
    drained: Arc<AtomicBool>,
) -> (Sender<Job>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let rank = backend.rank();
    let worker = std::thread::Builder::new()
        .name(format!("tapegrad-comm-{rank}"))
        .spawn(move || {
            let ok = serve(&mut backend, rx);
            drained.store(true, Ordering::SeqCst);
            if !ok {
                // The others must not wait for a rank whose thread has stopped.
                backend.meeting.leave(rank, true);
            }
        })
        .expect("tapegrad-distributed: could not start the communication thread");
    (tx, worker)
}

impl ProcessGroup {
    /// `world_size` ranks that are threads of this process: move each handle to its own
    /// thread (tensors and tapes are per thread). Collectives sum in rank order, so results
    /// are deterministic and the same on every rank.
    ///
    /// ```
    /// let groups = tapegrad_distributed::ProcessGroup::threads(3);
    /// assert_eq!(groups.iter().map(|g| g.rank()).collect::<Vec<_>>(), [0, 1, 2]);
    /// assert!(groups.iter().all(|g| g.world_size() == 3));
    /// ```
    ///
    /// # Panics
    /// If `world_size` is 0.
    pub fn threads(world_size: usize) -> Vec<ProcessGroup> {
        ProcessGroup::threads_with(world_size, GroupOptions::default())
    }

    /// [`ProcessGroup::threads`] with settings.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tapegrad_distributed::{GroupOptions, ProcessGroup};
    /// let g = ProcessGroup::threads_with(2, GroupOptions::default().timeout(Duration::from_secs(9)));
    /// assert_eq!(g[1].timeout(), Duration::from_secs(9));
    /// ```
    ///
    /// # Panics
    /// If `world_size` is 0.
    #[track_caller]
    pub fn threads_with(world_size: usize, options: GroupOptions) -> Vec<ProcessGroup> {
        assert!(world_size > 0, "ProcessGroup::threads: a group needs at least one rank");
        let meeting = Meeting::new(world_size);
        (0..world_size)
            .map(|rank| {
                let backend = ThreadBackend { meeting: meeting.clone(), rank };
                let drained = Arc::new(AtomicBool::new(false));
                let (jobs, worker) = start_worker(backend, drained.clone());
                ProcessGroup::from_parts(
                    rank,
                    world_size,
                    (jobs, worker, drained),
                    options,
                    Kind::Threads(meeting.clone()),
                )
            })
            .collect()
    }

    /// A group of one rank (every collective returns its input): for code written for data
    /// parallelism, run alone.
    ///
    /// ```
    /// let g = tapegrad_distributed::ProcessGroup::single();
    /// assert_eq!((g.rank(), g.world_size()), (0, 1));
    /// ```
    pub fn single() -> ProcessGroup {
        ProcessGroup::threads(1).pop().unwrap()
    }

    /// Joins the MPI job this process was started in (`mpirun -np N program`): MPI is
    /// initialised on the group's communication thread. Panics if MPI cannot be initialised;
    /// see [`ProcessGroup::try_mpi_with`].
    ///
    /// A panic on any rank afterwards prints which rank failed and ends the process without
    /// finalising MPI, so that mpirun stops the other ranks instead of leaving them waiting.
    ///
    /// ```no_run
    /// // Run as `mpirun -np 2 program`.
    /// let group = tapegrad_distributed::ProcessGroup::mpi();
    /// println!("rank {} of {}", group.rank(), group.world_size());
    /// ```
    #[cfg(feature = "mpi")]
    #[track_caller]
    pub fn mpi() -> ProcessGroup {
        match ProcessGroup::try_mpi_with(GroupOptions::default()) {
            Ok(group) => group,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`ProcessGroup::mpi`] with settings, returning an error instead of panicking.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use tapegrad_distributed::{GroupOptions, ProcessGroup};
    /// let options = GroupOptions::default().timeout(Duration::from_secs(60));
    /// let group = ProcessGroup::try_mpi_with(options).expect("started by mpirun");
    /// ```
    #[cfg(feature = "mpi")]
    pub fn try_mpi_with(options: GroupOptions) -> Result<ProcessGroup> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (tx, rx) = mpsc::channel();
        let drained = Arc::new(AtomicBool::new(false));
        let done = drained.clone();
        let worker = std::thread::Builder::new()
            .name("tapegrad-comm-mpi".into())
            .spawn(move || match crate::mpi_backend::MpiBackend::init() {
                Ok(mut backend) => {
                    let _ = ready_tx.send(Ok((backend.rank(), backend.world_size())));
                    let ok = serve(&mut backend, rx);
                    // Finalising (when `backend` drops) waits for every rank: not a hang.
                    done.store(true, Ordering::SeqCst);
                    if !ok {
                        eprintln!(
                            "[rank {} of {}] the communication thread panicked: stopping this \
                             process; mpirun ends the other ranks",
                            backend.rank(),
                            backend.world_size()
                        );
                        std::process::exit(1);
                    }
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| DistError::Invalid { op: "init", message: e.to_string() })?;
        let (rank, world_size) = ready_rx.recv().map_err(|_| DistError::Invalid {
            op: "init",
            message: "the MPI communication thread stopped while initialising".into(),
        })??;
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            eprintln!("[rank {rank} of {world_size}] failed:");
            previous(info);
        }));
        Ok(ProcessGroup::from_parts(rank, world_size, (tx, worker, drained), options, Kind::Mpi))
    }

    fn from_parts(
        rank: usize,
        world_size: usize,
        (jobs, worker, drained): (Sender<Job>, JoinHandle<()>, Arc<AtomicBool>),
        options: GroupOptions,
        kind: Kind,
    ) -> ProcessGroup {
        ProcessGroup {
            inner: Arc::new(Inner {
                rank,
                world_size,
                jobs: Mutex::new(Some(jobs)),
                worker: Mutex::new(Some(worker)),
                drained,
                seq: AtomicU64::new(0),
                timeout: options.timeout,
                broken: AtomicBool::new(false),
                kind,
            }),
        }
    }

    /// This rank, from 0.
    ///
    /// ```
    /// assert_eq!(tapegrad_distributed::ProcessGroup::single().rank(), 0);
    /// ```
    pub fn rank(&self) -> usize {
        self.inner.rank
    }

    /// The number of ranks.
    ///
    /// ```
    /// assert_eq!(tapegrad_distributed::ProcessGroup::single().world_size(), 1);
    /// ```
    pub fn world_size(&self) -> usize {
        self.inner.world_size
    }

    /// Whether this is rank 0, the one that logs and saves.
    ///
    /// ```
    /// assert!(tapegrad_distributed::ProcessGroup::single().is_main());
    /// ```
    pub fn is_main(&self) -> bool {
        self.inner.rank == 0
    }

    /// How long a collective may take before this rank gives up.
    ///
    /// ```
    /// assert_eq!(tapegrad_distributed::ProcessGroup::single().timeout().as_secs(), 300);
    /// ```
    pub fn timeout(&self) -> std::time::Duration {
        self.inner.timeout
    }

    fn submit<T>(
        &self,
        op_name: &'static str,
        op: Op,
        reply: impl FnOnce(Sender<Result<T>>) -> Reply,
    ) -> Work<T> {
        let (tx, rx) = mpsc::channel();
        let deadline = Instant::now() + self.inner.timeout;
        let work = |result, seq| Work {
            result,
            op: op_name,
            seq,
            deadline,
            sent: true,
            group: self.inner.clone(),
        };
        let jobs = self.inner.jobs.lock().unwrap_or_else(|p| p.into_inner());
        // Numbered under the queue's lock, so numbers follow the queue's order.
        let seq = self.inner.seq.fetch_add(1, Ordering::SeqCst);
        if self.inner.broken.load(Ordering::SeqCst) {
            // After a failure the ranks' sequences of collectives no longer line up.
            let _ = tx.send(Err(DistError::Invalid {
                op: op_name,
                message: format!(
                    "rank {}: an earlier collective of this group failed; no more can run",
                    self.inner.rank
                ),
            }));
            return work(rx, seq);
        }
        let sent = match &*jobs {
            Some(queue) => queue.send(Job { op, reply: reply(tx) }).is_ok(),
            None => false,
        };
        if !sent {
            // The receiver sees a closed channel: wait() reports the stopped thread.
            let (_, closed) = mpsc::channel();
            return work(closed, seq);
        }
        work(rx, seq)
    }

    /// A collective refused before it was queued (nothing was sent to the other ranks).
    fn refused<T>(&self, error: DistError) -> Work<T> {
        let (tx, rx) = mpsc::channel();
        let _ = tx.send(Err(error));
        Work {
            result: rx,
            op: "refused",
            seq: self.inner.seq.load(Ordering::SeqCst),
            deadline: Instant::now() + self.inner.timeout,
            sent: false,
            group: self.inner.clone(),
        }
    }

    /// Starts an all-reduce (sum) of `data` and returns at once.
    ///
    /// ```
    /// use tapegrad_distributed::{Payload, ProcessGroup};
    /// let w = ProcessGroup::single().all_reduce_async(Payload::F64(vec![2.0]));
    /// assert_eq!(w.wait().unwrap(), Payload::F64(vec![2.0]));
    /// ```
    pub fn all_reduce_async(&self, data: Payload) -> Work<Payload> {
        self.submit("all_reduce", Op::AllReduce(data, Combine::Sum), Reply::One)
    }

    /// Starts a broadcast of rank `root`'s `data` (every rank passes the same root and a
    /// buffer of the same length and type) and returns at once.
    ///
    /// ```
    /// use tapegrad_distributed::{Payload, ProcessGroup};
    /// let w = ProcessGroup::single().broadcast_async(Payload::I64(vec![4]), 0);
    /// assert_eq!(w.wait().unwrap(), Payload::I64(vec![4]));
    /// ```
    pub fn broadcast_async(&self, data: Payload, root: usize) -> Work<Payload> {
        if let Err(e) = self.check_root("broadcast", root) {
            return self.refused(e);
        }
        self.submit("broadcast", Op::Broadcast(data, root), Reply::One)
    }

    /// Starts gathering every rank's `data` (equal lengths), in rank order, and returns at once.
    ///
    /// ```
    /// use tapegrad_distributed::{Payload, ProcessGroup};
    /// let w = ProcessGroup::single().all_gather_async(Payload::F32(vec![1.0]));
    /// assert_eq!(w.wait().unwrap(), vec![Payload::F32(vec![1.0])]);
    /// ```
    pub fn all_gather_async(&self, data: Payload) -> Work<Vec<Payload>> {
        if data.len().saturating_mul(self.world_size()) > i32::MAX as usize {
            return self.refused(DistError::Invalid {
                op: "all_gather",
                message: format!(
                    "{} elements from each of {} ranks is more than one gather carries",
                    data.len(),
                    self.world_size()
                ),
            });
        }
        self.submit("all_gather", Op::AllGather(data), Reply::Many)
    }

    /// Starts a barrier and returns at once.
    ///
    /// ```
    /// assert!(tapegrad_distributed::ProcessGroup::single().barrier_async().wait().is_ok());
    /// ```
    pub fn barrier_async(&self) -> Work<Vec<Payload>> {
        self.submit("barrier", Op::Barrier, Reply::Many)
    }

    /// The sum (or mean) of `x` over the ranks, on every rank (PyTorch's `all_reduce`; not
    /// recorded: see [`all_reduce`](crate::all_reduce) for the differentiable form). Panics
    /// on failure (see [`ProcessGroup::try_all_reduce`]).
    ///
    /// ```
    /// use tapegrad_distributed::{ProcessGroup, ReduceOp};
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1i64, 2], &[2]);
    /// assert_eq!(ProcessGroup::single().all_reduce(&x, ReduceOp::Sum).to_vec::<i64>(), vec![1, 2]);
    /// ```
    #[track_caller]
    pub fn all_reduce(&self, x: &Tensor, op: ReduceOp) -> Tensor {
        match self.try_all_reduce(x, op) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`ProcessGroup::all_reduce`], returning an error instead of panicking.
    ///
    /// ```
    /// use tapegrad_distributed::{ProcessGroup, ReduceOp};
    /// use tapegrad_tape::Tensor;
    /// let g = ProcessGroup::single();
    /// assert!(g.try_all_reduce(&Tensor::ones(&[2]), ReduceOp::Avg).is_ok());
    /// ```
    pub fn try_all_reduce(&self, x: &Tensor, op: ReduceOp) -> Result<Tensor> {
        refuse_bool("all_reduce", x)?;
        if op == ReduceOp::Avg && x.dtype() == tapegrad_tape::DType::I64 {
            // Checked on every rank alike, before anything is sent.
            return Err(DistError::Invalid {
                op: "all_reduce",
                message: "ReduceOp::Avg needs a float tensor (an integer mean would be truncated)"
                    .into(),
            });
        }
        let how = match op {
            ReduceOp::Sum | ReduceOp::Avg => Combine::Sum,
            ReduceOp::Max => Combine::Max,
            ReduceOp::Min => Combine::Min,
        };
        let work =
            self.submit("all_reduce", Op::AllReduce(Payload::from_tensor(x), how), Reply::One);
        let mut result = work.wait()?;
        if op == ReduceOp::Avg {
            result.divide(self.world_size());
        }
        Ok(result.to_tensor(x.shape()))
    }

    /// Rank `root`'s `x` on every rank (`x` gives the shape and dtype elsewhere). Panics on
    /// failure (see [`ProcessGroup::try_broadcast`]).
    ///
    /// ```
    /// use tapegrad_distributed::ProcessGroup;
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::full(&[2], 7.0);
    /// assert_eq!(ProcessGroup::single().broadcast(&x, 0).to_vec::<f32>(), vec![7.0, 7.0]);
    /// ```
    #[track_caller]
    pub fn broadcast(&self, x: &Tensor, root: usize) -> Tensor {
        match self.try_broadcast(x, root) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`ProcessGroup::broadcast`], returning an error instead of panicking.
    ///
    /// ```
    /// use tapegrad_distributed::ProcessGroup;
    /// use tapegrad_tape::Tensor;
    /// assert!(ProcessGroup::single().try_broadcast(&Tensor::ones(&[1]), 1).is_err()); // no rank 1
    /// ```
    pub fn try_broadcast(&self, x: &Tensor, root: usize) -> Result<Tensor> {
        self.check_root("broadcast", root)?;
        let data = self.broadcast_async(Payload::from_tensor(x), root).wait()?;
        Ok(data.to_tensor(x.shape()))
    }

    fn check_root(&self, op: &'static str, root: usize) -> Result<()> {
        if root >= self.world_size() {
            return Err(DistError::Invalid {
                op,
                message: format!("root {root} is not a rank of a group of {}", self.world_size()),
            });
        }
        Ok(())
    }

    /// Overwrites each of `tensors` with rank `root`'s values, in one broadcast per element
    /// type: how a model's parameters and buffers start equal on every rank.
    ///
    /// ```
    /// use tapegrad_distributed::ProcessGroup;
    /// use tapegrad_tape::Tensor;
    /// let (w, steps) = (Tensor::ones(&[2]), Tensor::from_vec(vec![3i64], &[]));
    /// ProcessGroup::single().broadcast_into(&[w.clone(), steps.clone()], 0);
    /// assert_eq!(steps.to_vec::<i64>(), vec![3]);
    /// ```
    #[track_caller]
    pub fn broadcast_into(&self, tensors: &[Tensor], root: usize) {
        if let Err(e) = self.try_broadcast_into(tensors, root) {
            panic!("{e}");
        }
    }

    /// [`ProcessGroup::broadcast_into`], returning an error instead of panicking.
    ///
    /// ```
    /// use tapegrad_distributed::ProcessGroup;
    /// assert!(ProcessGroup::single().try_broadcast_into(&[], 0).is_ok());
    /// ```
    pub fn try_broadcast_into(&self, tensors: &[Tensor], root: usize) -> Result<()> {
        self.check_root("broadcast", root)?;
        let mut kinds: Vec<tapegrad_tape::DType> = Vec::new();
        for t in tensors {
            if !kinds.contains(&t.dtype()) {
                kinds.push(t.dtype());
            }
        }
        for dtype in kinds {
            // Masks travel as integers.
            let wire =
                if dtype == tapegrad_tape::DType::Bool { tapegrad_tape::DType::I64 } else { dtype };
            let members: Vec<&Tensor> = tensors.iter().filter(|t| t.dtype() == dtype).collect();
            let mut data = Payload::empty(wire);
            for t in &members {
                data.extend_from_tensor(&t.to_dtype(wire));
            }
            let data = self.broadcast_async(data, root).wait()?;
            let mut start = 0;
            for t in members {
                t.set_data(&data.slice_to_tensor(start, t.shape()).to_dtype(dtype));
                start += t.numel();
            }
        }
        Ok(())
    }

    /// Every rank's `x` (same shape on every rank), in rank order. Panics on failure (see
    /// [`ProcessGroup::try_all_gather`]).
    ///
    /// ```
    /// use tapegrad_distributed::ProcessGroup;
    /// use tapegrad_tape::Tensor;
    /// let all = ProcessGroup::single().all_gather(&Tensor::ones(&[2]));
    /// assert_eq!(all.len(), 1);
    /// ```
    #[track_caller]
    pub fn all_gather(&self, x: &Tensor) -> Vec<Tensor> {
        match self.try_all_gather(x) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`ProcessGroup::all_gather`], returning an error instead of panicking.
    ///
    /// ```
    /// use tapegrad_distributed::ProcessGroup;
    /// use tapegrad_tape::Tensor;
    /// assert!(ProcessGroup::single().try_all_gather(&Tensor::ones(&[2])).is_ok());
    /// ```
    pub fn try_all_gather(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        refuse_bool("all_gather", x)?;
        let all = self.all_gather_async(Payload::from_tensor(x)).wait()?;
        Ok(all.iter().map(|p| p.to_tensor(x.shape())).collect())
    }

    /// Returns once every rank has called it. Panics on failure (a timeout).
    ///
    /// ```
    /// tapegrad_distributed::ProcessGroup::single().barrier();
    /// ```
    #[track_caller]
    pub fn barrier(&self) {
        if let Err(e) = self.barrier_async().wait() {
            panic!("{e}");
        }
    }
}
