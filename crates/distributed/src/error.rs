//! What can go wrong between ranks.

use std::fmt;
use std::time::Duration;

/// A collective that did not complete.
///
/// ```
/// use std::time::Duration;
/// use tapegrad_distributed::DistError;
/// let e = DistError::Timeout { rank: 1, op: "all_reduce", seq: 7, waited: Duration::from_secs(30) };
/// assert!(e.to_string().contains("rank 1"));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum DistError {
    /// The collective did not finish in time: another rank failed, hangs, or called a
    /// different collective.
    Timeout {
        /// This rank.
        rank: usize,
        /// The collective waited for.
        op: &'static str,
        /// Its number in this rank's sequence of collectives (from 0).
        seq: u64,
        /// How long this rank waited.
        waited: Duration,
    },
    /// Another rank stopped (failed, or left the group) while this one waited for it (the
    /// thread backend; under MPI, mpirun stops the job instead).
    PeerGone {
        /// This rank.
        rank: usize,
        /// The rank that stopped.
        peer: usize,
        /// Whether it stopped by failing (a panic) rather than finishing.
        failed: bool,
    },
    /// The ranks called different collectives at the same point of their sequences, or the
    /// same one with different roots or buffer lengths (checked by the thread backend; MPI
    /// does not check).
    Mismatch {
        /// This rank.
        rank: usize,
        /// Each rank's collective, in rank order.
        ops: Vec<String>,
    },
    /// Bad arguments, or the communication backend reported an error.
    Invalid {
        /// The collective.
        op: &'static str,
        /// What was wrong.
        message: String,
    },
}

impl fmt::Display for DistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DistError::Timeout { rank, op, seq, waited } => write!(
                f,
                "rank {rank}: collective #{seq} ({op}) did not complete within {:.1} s: another \
                 rank has failed, hangs, or called a different collective",
                waited.as_secs_f64()
            ),
            DistError::PeerGone { rank, peer, failed: true } => {
                write!(f, "rank {rank}: rank {peer} failed while this rank waited for it")
            }
            DistError::PeerGone { rank, peer, failed: false } => write!(
                f,
                "rank {rank}: rank {peer} left the group while this rank waited for it in a \
                 collective (the ranks ran different numbers of collectives)"
            ),
            DistError::Mismatch { rank, ops } => write!(
                f,
                "rank {rank}: the ranks called different collectives at the same step (by rank: \
                 {})",
                ops.join(", ")
            ),
            DistError::Invalid { op, message } => write!(f, "{op}: {message}"),
        }
    }
}

impl std::error::Error for DistError {}

/// The result of a collective.
///
/// ```
/// use tapegrad_distributed::{ProcessGroup, Result};
/// fn total(group: &ProcessGroup) -> Result<f64> {
///     let x = tapegrad_tape::Tensor::ones(&[1]);
///     Ok(group.try_all_reduce(&x, tapegrad_distributed::ReduceOp::Sum)?.item())
/// }
/// assert_eq!(total(&ProcessGroup::single()).unwrap(), 1.0);
/// ```
pub type Result<T> = std::result::Result<T, DistError>;
