//! Matrix products through `matrixmultiply`'s GEMM, which takes strides: a transposed
//! operand is passed as a strided view, never copied.

use std::panic::Location;

use tapegrad_tape::layout::Layout;
use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{Backward, Error, Result, Storage, Tensor, record};

/// `C = A B` for 2-D views `a` (m x k) and `b` (k x n) into a new contiguous m x n buffer.
fn gemm(a: &Tensor, b: &Tensor) -> Tensor {
    let (m, k, n) = (a.shape()[0], a.shape()[1], b.shape()[1]);
    let (la, lb) = (a.layout(), b.layout());
    let (rsa, csa) = (la.strides()[0] as isize, la.strides()[1] as isize);
    let (rsb, csb) = (lb.strides()[0] as isize, lb.strides()[1] as isize);
    let storage = match (a.storage(), b.storage()) {
        (Storage::F32(x), Storage::F32(y)) => {
            let mut c = vec![0f32; m * n];
            if m * n > 0 && k > 0 {
                // SAFETY: the views lie inside their storages (checked when the tensors were
                // built), and `c` is a fresh m x n row-major buffer.
                unsafe {
                    matrixmultiply::sgemm(
                        m,
                        k,
                        n,
                        1.0,
                        x.as_ptr().add(la.offset()),
                        rsa,
                        csa,
                        y.as_ptr().add(lb.offset()),
                        rsb,
                        csb,
                        0.0,
                        c.as_mut_ptr(),
                        n as isize,
                        1,
                    );
                }
            }
            Storage::from_vec(c)
        }
        (Storage::F64(x), Storage::F64(y)) => {
            let mut c = vec![0f64; m * n];
            if m * n > 0 && k > 0 {
                // SAFETY: as above.
                unsafe {
                    matrixmultiply::dgemm(
                        m,
                        k,
                        n,
                        1.0,
                        x.as_ptr().add(la.offset()),
                        rsa,
                        csa,
                        y.as_ptr().add(lb.offset()),
                        rsb,
                        csb,
                        0.0,
                        c.as_mut_ptr(),
                        n as isize,
                        1,
                    );
                }
            }
            Storage::from_vec(c)
        }
        _ => unreachable!("dtypes checked by the caller"),
    };
    Tensor::from_storage(storage, Layout::contiguous(&[m, n]))
}

/// The transposed view of a matrix, recorded (so backward stays differentiable).
#[track_caller]
fn t(x: &Tensor) -> Tensor {
    crate::shape::transpose(x, 0, 1).expect("2-D")
}

#[track_caller]
pub(crate) fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let location = Location::caller();
    if a.dtype() != b.dtype() {
        return Err(Error::DType { op: "matmul", lhs: a.dtype(), rhs: b.dtype(), location });
    }
    if a.dim() != 2 || b.dim() != 2 || a.shape()[1] != b.shape()[0] {
        return Err(Error::Shape {
            op: "matmul",
            message: format!("shapes {:?} and {:?} cannot be multiplied (need m x k and k x n)", a.shape(), b.shape()),
            location,
        });
    }
    let value = gemm(a, b);
    Ok(record("matmul", location, &[a, b], value, || {
        Backward::new(|ctx| {
            let (g, a, b) = (ctx.grad(), ctx.saved(0), ctx.saved(1));
            smallvec![
                ctx.needs_input_grad(0).then(|| matmul(g, &t(b)).expect("shapes agree")),
                ctx.needs_input_grad(1).then(|| matmul(&t(a), g).expect("shapes agree")),
            ]
        })
        .save(a)
        .save(b)
    }))
}
