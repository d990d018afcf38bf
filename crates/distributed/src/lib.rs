//! Data-parallel training for tapegrad (PyTorch's `torch.distributed` and
//! `DistributedDataParallel`): every rank holds the same model, reads its own shard of the data
//! (`tapegrad_data::DistributedSampler`), and averages gradients with the others after each
//! backward pass, so all ranks take the same optimizer step.
//!
//! - [`ProcessGroup`]: this rank's handle on the others, with collectives on tensors. Over MPI
//!   (`ProcessGroup::mpi`, feature `mpi`: one process per rank, started by `mpirun`), or over
//!   threads of one process ([`ProcessGroup::threads`], always built: for tests and trials).
//! - [`DistributedDataParallel`]: wraps a model; gradients are averaged in buckets that start
//!   communicating during backward.
//! - [`SyncBatchNorm`]: batch statistics over the global batch; [`all_reduce`]: the
//!   differentiable all-reduce it is built on.
//! - [`main_println!`] and [`ProcessGroup::save_on_main`]: logging and saving from rank 0.
//!
//! docs/DISTRIBUTED.md says how to run over MPI on one machine or several, what each step
//! communicates, and what scaling was measured.
//!
//! ```
//! use tapegrad_distributed::{DistributedDataParallel, ProcessGroup};
//! use tapegrad_nn::{Forward, Linear, Module, Optimizer, SGD};
//! use tapegrad_ops::{functional::mse_loss, prelude::*};
//! use tapegrad_tape::Tensor;
//! // Under mpirun: `let group = ProcessGroup::mpi();` in each process. Here, one rank.
//! let group = ProcessGroup::single();
//! let model = DistributedDataParallel::new(Linear::new(3, 1), &group);
//! let mut opt = SGD::new(model.parameters(), 0.1);
//! let (x, y) = (Tensor::randn(&[8, 3]), Tensor::zeros(&[8, 1]));
//! let loss = mse_loss(&model.forward(&x), &y);
//! opt.zero_grad();
//! model.backward(&loss); // gradients averaged over the ranks
//! opt.step();
//! ```

#![forbid(unsafe_code)]

mod backend;
mod ddp;
mod error;
mod functional;
mod group;
mod main_rank;
#[cfg(feature = "mpi")]
mod mpi_backend;
mod payload;
mod sync_batch_norm;
mod threads;

pub use ddp::{DdpOptions, DistributedDataParallel, NoSyncGuard, ReduceOrder, SyncStats};
pub use error::{DistError, Result};
pub use functional::all_reduce;
pub use group::{GroupOptions, ProcessGroup, ReduceOp, Work};
pub use payload::Payload;
pub use sync_batch_norm::SyncBatchNorm;
