//! Matrix products with PyTorch's `matmul` semantics (1-D, 2-D, batched, broadcast batch
//! dimensions) through `matrixmultiply`'s GEMM, which takes strides: transposed and
//! broadcast operands are passed as strided views, never copied.

use std::panic::Location;

use tapegrad_tape::layout::{Layout, broadcast_shapes, numel};
use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{Backward, Error, Result, Storage, Tensor, ensure_float, record};

use crate::gemm::{Gemm, View, gemm_into};
use crate::shape::{reshape_to, transpose, unsqueeze};

/// Batched product of views `la` (`[batch.., m, k]`) and `lb` (`[batch.., k, n]`), already
/// broadcast to the same batch shape, into a contiguous `[batch.., m, n]` buffer.
fn batched<T: Gemm>(a: &[T], la: &Layout, b: &[T], lb: &Layout) -> Vec<T> {
    let nb = la.shape().len() - 2;
    let batch = &la.shape()[..nb];
    let (m, k, n) = (la.shape()[nb], la.shape()[nb + 1], lb.shape()[nb + 1]);
    let mut c = vec![T::default(); numel(batch) * m * n];
    if m * n == 0 {
        return c;
    }
    let (sa, sb) = (la.strides(), lb.strides());
    let ba = Layout::from_parts(batch, &sa[..nb], la.offset());
    let bb = Layout::from_parts(batch, &sb[..nb], lb.offset());
    for ((oa, ob), out) in ba.offsets().zip(bb.offsets()).zip(c.chunks_mut(m * n)) {
        let va = View { data: a, offset: oa, rows: m, cols: k, rs: sa[nb], cs: sa[nb + 1] };
        let vb = View { data: b, offset: ob, rows: k, cols: n, rs: sb[nb], cs: sb[nb + 1] };
        gemm_into(va, vb, out, false);
    }
    c
}

/// `a @ b` for tensors of rank >= 2 whose batch dimensions broadcast.
#[track_caller]
fn bmm(a: &Tensor, b: &Tensor, location: &'static Location<'static>) -> Result<Tensor> {
    let (ra, rb) = (a.dim(), b.dim());
    let (m, k) = (a.shape()[ra - 2], a.shape()[ra - 1]);
    let (k2, n) = (b.shape()[rb - 2], b.shape()[rb - 1]);
    let batch = broadcast_shapes(&a.shape()[..ra - 2], &b.shape()[..rb - 2]);
    let (Some(batch), true) = (batch, k == k2) else {
        return Err(Error::Shape {
            op: "matmul",
            message: format!("shapes {:?} and {:?} cannot be multiplied", a.shape(), b.shape()),
            location,
        });
    };
    let full = |rows: usize, cols: usize| -> Vec<usize> { batch.iter().copied().chain([rows, cols]).collect() };
    let la = a.layout().broadcast_to(&full(m, k)).expect("batch dims broadcast");
    let lb = b.layout().broadcast_to(&full(k, n)).expect("batch dims broadcast");
    let storage = match (a.storage(), b.storage()) {
        (Storage::F32(x), Storage::F32(y)) => Storage::from_vec(batched(&x, &la, &y, &lb)),
        (Storage::F64(x), Storage::F64(y)) => Storage::from_vec(batched(&x, &la, &y, &lb)),
        _ => unreachable!("dtypes checked"),
    };
    let value = Tensor::from_storage(storage, Layout::contiguous(&full(m, n)));
    Ok(record("matmul", location, &[a, b], value, || {
        Backward::new(move |ctx| {
            let (g, a, b) = (ctx.grad(), ctx.saved(0), ctx.saved(1));
            let mt = |t: &Tensor| transpose(t, -1, -2).expect("rank >= 2");
            smallvec![
                ctx.needs_input_grad(0)
                    .then(|| bmm(g, &mt(b), location).expect("shapes agree").sum_to_shape(a.shape())),
                ctx.needs_input_grad(1)
                    .then(|| bmm(&mt(a), g, location).expect("shapes agree").sum_to_shape(b.shape())),
            ]
        })
        .save(a)
        .save(b)
    }))
}

#[track_caller]
pub(crate) fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let location = Location::caller();
    if a.dtype() != b.dtype() {
        return Err(Error::DType { op: "matmul", lhs: a.dtype(), rhs: b.dtype(), location });
    }
    ensure_float("matmul", a, location)?;
    let shape_error = || Error::Shape {
        op: "matmul",
        message: format!("shapes {:?} and {:?} cannot be multiplied", a.shape(), b.shape()),
        location,
    };
    match (a.dim(), b.dim()) {
        (0, _) | (_, 0) => Err(Error::Shape {
            op: "matmul",
            message: format!("both operands need at least one dimension, got {:?} and {:?}", a.shape(), b.shape()),
            location,
        }),
        (1, 1) => {
            if a.shape() != b.shape() {
                return Err(shape_error());
            }
            let p = bmm(&unsqueeze(a, 0)?, &unsqueeze(b, 1)?, location)?;
            Ok(reshape_to(&p, &[]))
        }
        (1, _) => {
            let p = bmm(&unsqueeze(a, 0)?, b, location)?;
            let mut shape = p.shape().to_vec();
            shape.remove(shape.len() - 2);
            Ok(reshape_to(&p, &shape))
        }
        (_, 1) => {
            let p = bmm(a, &unsqueeze(b, 1)?, location)?;
            let shape = p.shape()[..p.dim() - 1].to_vec();
            Ok(reshape_to(&p, &shape))
        }
        _ => bmm(a, b, location),
    }
}
