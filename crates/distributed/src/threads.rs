//! The thread backend: the ranks are threads of one process, meeting in shared memory. For
//! tests and for trying data parallelism without MPI; every collective gathers the ranks'
//! buffers and reduces them in rank order, so results are deterministic.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::backend::Backend;
use crate::error::{DistError, Result};
use crate::payload::{Payload, sum_in_order};

/// Why a rank stopped taking part.
#[derive(Clone, Copy, PartialEq)]
enum Gone {
    Finished,
    Failed,
}

struct Round {
    /// Each rank's collective and buffer for the round under way.
    deposits: Vec<Option<(&'static str, Payload)>>,
    /// Rounds completed so far.
    completed: u64,
    /// The last completed round's buffers, in rank order (read by every rank).
    result: Arc<Vec<(&'static str, Payload)>>,
    gone: Vec<Option<Gone>>,
}

/// What the ranks of one thread group share.
pub(crate) struct Meeting {
    round: Mutex<Round>,
    changed: Condvar,
    size: usize,
    timeout: Duration,
}

impl Meeting {
    pub(crate) fn new(size: usize, timeout: Duration) -> Arc<Meeting> {
        Arc::new(Meeting {
            round: Mutex::new(Round {
                deposits: vec![None; size],
                completed: 0,
                result: Arc::new(Vec::new()),
                gone: vec![None; size],
            }),
            changed: Condvar::new(),
            size,
            timeout,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Round> {
        // A rank that panicked while holding the lock left the state consistent (every
        // critical section is a few assignments), so the poison is ignored.
        self.round.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks `rank` as stopped, waking every rank that waits for it.
    pub(crate) fn leave(&self, rank: usize, failed: bool) {
        let mut round = self.lock();
        round.gone[rank] = Some(if failed { Gone::Failed } else { Gone::Finished });
        self.changed.notify_all();
    }

    /// Deposits `rank`'s buffer and returns every rank's, once all have deposited theirs.
    fn exchange(
        &self,
        rank: usize,
        op: &'static str,
        data: Payload,
    ) -> Result<Arc<Vec<(&'static str, Payload)>>> {
        let mut round = self.lock();
        let target = round.completed + 1;
        round.deposits[rank] = Some((op, data));
        if round.deposits.iter().all(Option::is_some) {
            let deposits = round.deposits.iter_mut().map(|d| d.take().unwrap()).collect();
            round.result = Arc::new(deposits);
            round.completed = target;
            self.changed.notify_all();
            return Ok(round.result.clone());
        }
        let start = Instant::now();
        loop {
            if round.completed >= target {
                return Ok(round.result.clone());
            }
            let missing =
                (0..self.size).find(|&r| round.deposits[r].is_none() && round.gone[r].is_some());
            if let Some(peer) = missing {
                round.deposits[rank] = None;
                return Err(DistError::PeerGone {
                    rank,
                    peer,
                    failed: round.gone[peer] == Some(Gone::Failed),
                });
            }
            let waited = start.elapsed();
            if waited >= self.timeout {
                round.deposits[rank] = None;
                return Err(DistError::Timeout { rank, op, seq: round.completed, waited });
            }
            round = self
                .changed
                .wait_timeout(round, self.timeout - waited)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }
}

/// One rank's end of a [`Meeting`].
pub(crate) struct ThreadBackend {
    pub(crate) meeting: Arc<Meeting>,
    pub(crate) rank: usize,
}

impl ThreadBackend {
    /// Every rank's buffer, after checking that all called the same collective.
    fn gather(&self, op: &'static str, data: Payload) -> Result<Vec<Payload>> {
        let all = self.meeting.exchange(self.rank, op, data)?;
        if all.iter().any(|(other, _)| *other != op) {
            let ops = all.iter().map(|(o, _)| o.to_string()).collect();
            return Err(DistError::Mismatch { rank: self.rank, ops });
        }
        Ok(all.iter().map(|(_, p)| p.clone()).collect())
    }
}

impl Backend for ThreadBackend {
    fn rank(&self) -> usize {
        self.rank
    }

    fn all_reduce_sum(&mut self, data: &mut Payload) -> Result<()> {
        let all = self.gather("all_reduce", data.clone())?;
        *data = sum_in_order(all, "all_reduce")?;
        Ok(())
    }

    fn broadcast(&mut self, data: &mut Payload, root: usize) -> Result<()> {
        let mut all = self.gather("broadcast", data.clone())?;
        *data = all.swap_remove(root);
        Ok(())
    }

    fn all_gather(&mut self, data: &Payload) -> Result<Vec<Payload>> {
        self.gather("all_gather", data.clone())
    }

    fn barrier(&mut self) -> Result<()> {
        self.gather("barrier", Payload::F32(Vec::new())).map(drop)
    }
}
