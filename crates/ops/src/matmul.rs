//! Matrix products with PyTorch's `matmul` semantics (1-D, 2-D, batched, broadcast batch
//! dimensions) through `matrixmultiply`'s GEMM, which takes strides: transposed and
//! broadcast operands are passed as strided views, never copied.

use std::panic::Location;

use tapegrad_tape::layout::{Layout, broadcast_shapes, numel};
use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{Backward, Error, Result, Storage, Tensor, ensure_float, record};

use crate::shape::{reshape_to, transpose, unsqueeze};

/// The GEMM kernel for one element type.
pub(crate) trait Gemm: tapegrad_tape::Element + Default {
    /// `c = a b` for an `m x k` and a `k x n` strided matrix into row-major `c`.
    ///
    /// # Safety
    /// `a` and `b` must be valid for every element their strides reach; `c` must hold
    /// `m * n` elements.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        c: *mut Self,
    );
}

impl Gemm for f32 {
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: *const f32,
        rsa: isize,
        csa: isize,
        b: *const f32,
        rsb: isize,
        csb: isize,
        c: *mut f32,
    ) {
        // SAFETY: forwarded from the caller.
        unsafe { matrixmultiply::sgemm(m, k, n, 1.0, a, rsa, csa, b, rsb, csb, 0.0, c, n as isize, 1) }
    }
}

impl Gemm for f64 {
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: *const f64,
        rsa: isize,
        csa: isize,
        b: *const f64,
        rsb: isize,
        csb: isize,
        c: *mut f64,
    ) {
        // SAFETY: forwarded from the caller.
        unsafe { matrixmultiply::dgemm(m, k, n, 1.0, a, rsa, csa, b, rsb, csb, 0.0, c, n as isize, 1) }
    }
}

/// `a b` for an `m x k` and a `k x n` strided matrix (strides in elements), as a new
/// row-major `m x n` buffer.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm<T: Gemm>(
    m: usize,
    k: usize,
    n: usize,
    a: &[T],
    rsa: usize,
    csa: usize,
    b: &[T],
    rsb: usize,
    csb: usize,
) -> Vec<T> {
    let mut c = vec![T::default(); m * n];
    if m * n == 0 || k == 0 {
        return c;
    }
    assert!(
        (m - 1) * rsa + (k - 1) * csa < a.len() && (k - 1) * rsb + (n - 1) * csb < b.len(),
        "gemm: operand out of bounds"
    );
    // SAFETY: the assertion above keeps every strided access inside `a` and `b`; `c` holds
    // m * n elements.
    unsafe {
        T::gemm(m, k, n, a.as_ptr(), rsa as isize, csa as isize, b.as_ptr(), rsb as isize, csb as isize, c.as_mut_ptr())
    }
    c
}

/// Batched product of views `la` (`[batch.., m, k]`) and `lb` (`[batch.., k, n]`), already
/// broadcast to the same batch shape, into a contiguous `[batch.., m, n]` buffer.
fn batched<T: Gemm>(a: &[T], la: &Layout, b: &[T], lb: &Layout) -> Vec<T> {
    let nb = la.shape().len() - 2;
    let batch = &la.shape()[..nb];
    let (m, k, n) = (la.shape()[nb], la.shape()[nb + 1], lb.shape()[nb + 1]);
    let mut c = vec![T::default(); numel(batch) * m * n];
    if m * n == 0 || k == 0 {
        return c;
    }
    let (sa, sb) = (la.strides(), lb.strides());
    let (rsa, csa) = (sa[nb] as isize, sa[nb + 1] as isize);
    let (rsb, csb) = (sb[nb] as isize, sb[nb + 1] as isize);
    let ba = Layout::from_parts(batch, &sa[..nb], la.offset());
    let bb = Layout::from_parts(batch, &sb[..nb], lb.offset());
    for ((oa, ob), out) in ba.offsets().zip(bb.offsets()).zip(c.chunks_mut(m * n)) {
        // SAFETY: the layouts were checked against their storages when the tensors were
        // built, so every offset the strides reach from `oa`/`ob` is in bounds; `out` holds
        // exactly m * n elements.
        unsafe { T::gemm(m, k, n, a.as_ptr().add(oa), rsa, csa, b.as_ptr().add(ob), rsb, csb, out.as_mut_ptr()) }
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
