//! What a communication backend provides: four blocking collectives over the ranks of one
//! group. A backend lives on the group's communication thread and is only called from it.

use crate::error::Result;
use crate::payload::{Combine, Payload};

/// A communication backend: MPI between processes, or threads of one process.
pub(crate) trait Backend {
    /// This process's (or thread's) rank, from 0.
    fn rank(&self) -> usize;
    /// Replaces `data` by the elementwise sum (or maximum, minimum) over the ranks.
    fn all_reduce(&mut self, data: &mut Payload, how: Combine) -> Result<()>;
    /// Replaces `data` by rank `root`'s.
    fn broadcast(&mut self, data: &mut Payload, root: usize) -> Result<()>;
    /// Every rank's `data` (equal lengths), in rank order.
    fn all_gather(&mut self, data: &Payload) -> Result<Vec<Payload>>;
    /// Returns when every rank has called it.
    fn barrier(&mut self) -> Result<()>;
}
