//! The thread backend: the ranks are threads of one process, meeting in shared memory. For
//! tests and for trying data parallelism without MPI; every collective gathers the ranks'
//! buffers and reduces them in rank order, so results are deterministic.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::backend::Backend;
use crate::error::{DistError, Result};
use crate::payload::{Combine, Payload, combine_in_order};

/// Why a rank stopped taking part.
#[derive(Clone, Copy, PartialEq)]
enum Gone {
    Finished,
    Failed,
}

/// What a rank put into a round: its collective (with what must agree between the ranks)
/// and its buffer.
#[derive(Clone)]
pub(crate) struct Deposit {
    /// The collective, its root and its buffer's length and type: every rank's must match.
    signature: String,
    data: Payload,
}

struct Round {
    /// Each rank's deposit for the round under way.
    deposits: Vec<Option<Deposit>>,
    /// Rounds completed so far.
    completed: u64,
    /// The last completed round's deposits, in rank order (read by every rank).
    result: Arc<Vec<Deposit>>,
    gone: Vec<Option<Gone>>,
}

/// What the ranks of one thread group share.
pub(crate) struct Meeting {
    round: Mutex<Round>,
    changed: Condvar,
    size: usize,
}

impl Meeting {
    pub(crate) fn new(size: usize) -> Arc<Meeting> {
        Arc::new(Meeting {
            round: Mutex::new(Round {
                deposits: vec![None; size],
                completed: 0,
                result: Arc::new(Vec::new()),
                gone: vec![None; size],
            }),
            changed: Condvar::new(),
            size,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Round> {
        // A rank that panicked while holding the lock left the state consistent (every
        // critical section is a few assignments), so the poison is ignored.
        self.round.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks `rank` as stopped, waking every rank that waits for it (and its own
    /// communication thread, if that is still waiting).
    pub(crate) fn leave(&self, rank: usize, failed: bool) {
        let mut round = self.lock();
        // A failure stays a failure (a rank's thread may report it before its handle drops).
        if round.gone[rank] != Some(Gone::Failed) {
            round.gone[rank] = Some(if failed { Gone::Failed } else { Gone::Finished });
        }
        self.changed.notify_all();
    }

    /// Deposits `rank`'s part and returns every rank's, once all have deposited theirs, or
    /// an error once a rank this one waits for has stopped (or this one has: its handle was
    /// dropped after its caller gave up waiting). No timer here: the caller's `Work` has it.
    fn exchange(&self, rank: usize, deposit: Deposit) -> Result<Arc<Vec<Deposit>>> {
        let mut round = self.lock();
        let target = round.completed + 1;
        round.deposits[rank] = Some(deposit);
        if round.deposits.iter().all(Option::is_some) {
            let deposits = round.deposits.iter_mut().map(|d| d.take().unwrap()).collect();
            round.result = Arc::new(deposits);
            round.completed = target;
            self.changed.notify_all();
            return Ok(round.result.clone());
        }
        loop {
            if round.completed >= target {
                return Ok(round.result.clone());
            }
            let missing =
                (0..self.size).find(|&r| round.deposits[r].is_none() && round.gone[r].is_some());
            let peer = match (missing, round.gone[rank]) {
                (Some(peer), _) => peer,
                (None, Some(_)) => rank,
                (None, None) => {
                    round = self.changed.wait(round).unwrap_or_else(|p| p.into_inner());
                    continue;
                }
            };
            round.deposits[rank] = None;
            return Err(DistError::PeerGone {
                rank,
                peer,
                failed: round.gone[peer] == Some(Gone::Failed),
            });
        }
    }
}

/// One rank's end of a [`Meeting`].
pub(crate) struct ThreadBackend {
    pub(crate) meeting: Arc<Meeting>,
    pub(crate) rank: usize,
}

impl ThreadBackend {
    /// Every rank's buffer, after checking that all called the same collective on buffers
    /// of the same length and type (and, for a broadcast, the same root).
    fn gather(&self, op: &'static str, root: Option<usize>, data: Payload) -> Result<Vec<Payload>> {
        let root = root.map_or(String::new(), |r| format!(" from rank {r}"));
        let signature = format!("{op}{root} of {} x {}", data.len(), data.kind());
        let all = self.meeting.exchange(self.rank, Deposit { signature, data })?;
        if all.iter().any(|d| d.signature != all[self.rank].signature) {
            let ops = all.iter().map(|d| d.signature.clone()).collect();
            return Err(DistError::Mismatch { rank: self.rank, ops });
        }
        Ok(all.iter().map(|d| d.data.clone()).collect())
    }
}

impl Backend for ThreadBackend {
    fn rank(&self) -> usize {
        self.rank
    }

    fn all_reduce(&mut self, data: &mut Payload, how: Combine) -> Result<()> {
        let op = match how {
            Combine::Sum => "all_reduce",
            Combine::Max => "all_reduce(max)",
            Combine::Min => "all_reduce(min)",
        };
        let all = self.gather(op, None, data.clone())?;
        *data = combine_in_order(all, how, "all_reduce")?;
        Ok(())
    }

    fn broadcast(&mut self, data: &mut Payload, root: usize) -> Result<()> {
        let mut all = self.gather("broadcast", Some(root), data.clone())?;
        *data = all.swap_remove(root);
        Ok(())
    }

    fn all_gather(&mut self, data: &Payload) -> Result<Vec<Payload>> {
        self.gather("all_gather", None, data.clone())
    }

    fn barrier(&mut self) -> Result<()> {
        self.gather("barrier", None, Payload::F32(Vec::new())).map(drop)
    }
}
