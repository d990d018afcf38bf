//! The MPI backend (rsmpi over the system's MPI library, Open MPI on Debian). MPI is
//! initialised on the group's communication thread, and only that thread calls it; the
//! universe is finalised when the thread ends.

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use crate::backend::Backend;
use crate::error::{DistError, Result};
use crate::payload::{Combine, Payload};

/// MPI counts are C ints: longer buffers go in pieces of this many elements.
const PIECE: usize = 1 << 28;

pub(crate) struct MpiBackend {
    world: SimpleCommunicator,
    send_f32: Vec<f32>,
    send_f64: Vec<f64>,
    send_i64: Vec<i64>,
    // Dropped last: finalising MPI ends every communicator.
    _universe: Universe,
}

impl MpiBackend {
    /// Initialises MPI on the calling thread (the communication thread).
    pub(crate) fn init() -> Result<MpiBackend> {
        let (universe, granted) =
            mpi::initialize_with_threading(mpi::Threading::Funneled).ok_or(DistError::Invalid {
                op: "init",
                message: "MPI was already initialised (and perhaps finalised) in this process: \
                          make one ProcessGroup::mpi() per process and keep it"
                    .into(),
            })?;
        // The communication thread is not the process's main thread: with "single" the
        // library may not be called from it at all.
        if granted < mpi::Threading::Funneled {
            return Err(DistError::Invalid {
                op: "init",
                message: format!(
                    "the MPI library grants thread support {granted:?}; at least Funneled is needed"
                ),
            });
        }
        let world = universe.world();
        Ok(MpiBackend {
            world,
            send_f32: Vec::new(),
            send_f64: Vec::new(),
            send_i64: Vec::new(),
            _universe: universe,
        })
    }

    pub(crate) fn world_size(&self) -> usize {
        self.world.size() as usize
    }
}

fn root_at(world: &SimpleCommunicator, root: usize) -> Result<mpi::topology::Process<'_>> {
    if root >= world.size() as usize {
        return Err(DistError::Invalid {
            op: "broadcast",
            message: format!("root {root} is not a rank of a world of {}", world.size()),
        });
    }
    Ok(world.process_at_rank(root as i32))
}

impl Backend for MpiBackend {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn all_reduce(&mut self, data: &mut Payload, how: Combine) -> Result<()> {
        // The send side is a copy kept from call to call: MPI reads it while it writes the
        // result over the caller's buffer.
        fn reduce<T: Equivalence + Copy>(
            world: &SimpleCommunicator,
            v: &mut [T],
            send: &mut Vec<T>,
            how: Combine,
        ) {
            for piece in v.chunks_mut(PIECE) {
                send.clear();
                send.extend_from_slice(piece);
                let op = match how {
                    Combine::Sum => SystemOperation::sum(),
                    Combine::Max => SystemOperation::max(),
                    Combine::Min => SystemOperation::min(),
                };
                world.all_reduce_into(&send[..], piece, op);
            }
        }
        match data {
            Payload::F32(v) => reduce(&self.world, v, &mut self.send_f32, how),
            Payload::F64(v) => reduce(&self.world, v, &mut self.send_f64, how),
            Payload::I64(v) => reduce(&self.world, v, &mut self.send_i64, how),
        }
        Ok(())
    }

    fn broadcast(&mut self, data: &mut Payload, root: usize) -> Result<()> {
        let root = root_at(&self.world, root)?;
        match data {
            Payload::F32(v) => v.chunks_mut(PIECE).for_each(|p| root.broadcast_into(p)),
            Payload::F64(v) => v.chunks_mut(PIECE).for_each(|p| root.broadcast_into(p)),
            Payload::I64(v) => v.chunks_mut(PIECE).for_each(|p| root.broadcast_into(p)),
        }
        Ok(())
    }

    fn all_gather(&mut self, data: &Payload) -> Result<Vec<Payload>> {
        fn gather<T: Equivalence + Copy + Default>(
            world: &SimpleCommunicator,
            v: &[T],
            wrap: fn(Vec<T>) -> Payload,
        ) -> Result<Vec<Payload>> {
            let size = world.size() as usize;
            if v.len().saturating_mul(size) > i32::MAX as usize {
                return Err(DistError::Invalid {
                    op: "all_gather",
                    message: format!("{} elements from each of {size} ranks is too many", v.len()),
                });
            }
            let mut all = vec![T::default(); v.len() * size];
            world.all_gather_into(v, &mut all[..]);
            Ok(all.chunks(v.len().max(1)).take(size).map(|c| wrap(c.to_vec())).collect::<Vec<_>>())
        }
        match data {
            Payload::F32(v) if v.is_empty() => {
                Ok(vec![Payload::F32(Vec::new()); self.world_size()])
            }
            Payload::F64(v) if v.is_empty() => {
                Ok(vec![Payload::F64(Vec::new()); self.world_size()])
            }
            Payload::I64(v) if v.is_empty() => {
                Ok(vec![Payload::I64(Vec::new()); self.world_size()])
            }
            Payload::F32(v) => gather(&self.world, v, Payload::F32),
            Payload::F64(v) => gather(&self.world, v, Payload::F64),
            Payload::I64(v) => gather(&self.world, v, Payload::I64),
        }
    }

    fn barrier(&mut self) -> Result<()> {
        self.world.barrier();
        Ok(())
    }
}
