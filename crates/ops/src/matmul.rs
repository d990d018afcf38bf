//! Matrix products with PyTorch's `matmul` semantics (1-D, 2-D, batched, broadcast batch
//! dimensions) through the kernels crate's GEMM, which takes strides: transposed and
//! broadcast operands are passed as strided views, never copied.
//!
//! The method is at the end of the file: [`MatmulOps`].

use std::panic::Location;

use tapegrad_tape::layout::{Layout, broadcast_shapes, numel, try_numel};
use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{
    Backward, Element, Error, Result, Storage, Tensor, ensure_float, or_panic, record_with_tangent,
};

use crate::shape::{reshape_to, transpose, unsqueeze};
use tapegrad_kernels::gemm::{View, gemm_batched_new, gemm_new};

/// Batched product of views `la` (`[batch.., m, k]`) and `lb` (`[batch.., k, n]`), already
/// broadcast to the same batch shape, into a contiguous `[batch.., m, n]` buffer.
fn batched<T: Element>(a: &[T], la: &Layout, b: &[T], lb: &Layout) -> Vec<T> {
    let nb = la.shape().len() - 2;
    let batch = &la.shape()[..nb];
    let (m, k, n) = (la.shape()[nb], la.shape()[nb + 1], lb.shape()[nb + 1]);
    if m * n == 0 {
        return vec![T::default(); numel(batch) * m * n];
    }
    let (sa, sb) = (la.strides(), lb.strides());
    let (a_at, b_at) = (
        matrix_offsets(batch, &sa[..nb], la.offset()),
        matrix_offsets(batch, &sb[..nb], lb.offset()),
    );
    let views = |i: usize| {
        let va = View { data: a, offset: a_at[i], rows: m, cols: k, rs: sa[nb], cs: sa[nb + 1] };
        let vb = View { data: b, offset: b_at[i], rows: k, cols: n, rs: sb[nb], cs: sb[nb + 1] };
        (va, vb)
    };
    gemm_batched_new(a_at.len(), views)
}

/// Where each matrix of a batch starts in its storage, in row-major order of the batch
/// dimensions `batch` (with `strides`): built a dimension at a time, since a batch of small
/// products spends as long finding its matrices as multiplying them.
fn matrix_offsets(batch: &[usize], strides: &[usize], offset: usize) -> Vec<usize> {
    let mut offsets = vec![offset];
    for (&len, &stride) in batch.iter().zip(strides) {
        let mut next = Vec::with_capacity(offsets.len() * len);
        for &start in &offsets {
            next.extend((0..len).map(|i| start + i * stride));
        }
        offsets = next;
    }
    offsets
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
    let full = |rows: usize, cols: usize| -> Vec<usize> {
        batch.iter().copied().chain([rows, cols]).collect()
    };
    // Broadcast batch dimensions can make views, and a product, of more elements than
    // either operand holds.
    for shape in [full(m, k), full(k, n), full(m, n)] {
        try_numel("matmul", &shape, location)?;
    }
    let la = a.layout().broadcast_to(&full(m, k)).expect("batch dims broadcast");
    let lb = b.layout().broadcast_to(&full(k, n)).expect("batch dims broadcast");
    let storage = match (a.storage(), b.storage()) {
        (Storage::F32(x), Storage::F32(y)) => Storage::from_vec(batched(&x, &la, &y, &lb)),
        (Storage::F64(x), Storage::F64(y)) => Storage::from_vec(batched(&x, &la, &y, &lb)),
        _ => unreachable!("dtypes checked"),
    };
    let value = Tensor::from_storage(storage, Layout::contiguous(&full(m, n)));
    let make_backward = || {
        Backward::new(move |ctx| {
            let (g, a, b) = (ctx.grad(), ctx.saved(0), ctx.saved(1));
            let mt = |t: &Tensor| transpose(t, -1, -2).expect("rank >= 2");
            smallvec![
                ctx.needs_input_grad(0).then(|| bmm(g, &mt(b), location)
                    .expect("shapes agree")
                    .sum_to_shape(a.shape())),
                ctx.needs_input_grad(1).then(|| bmm(&mt(a), g, location)
                    .expect("shapes agree")
                    .sum_to_shape(b.shape())),
            ]
        })
        .save(a)
        .save(b)
    };
    Ok(record_with_tangent("matmul", location, &[a, b], value, make_backward, |ctx| {
        ctx.sum(|i, v| {
            let product = if i == 0 { bmm(v, b, location) } else { bmm(a, v, location) };
            product.expect("shapes agree")
        })
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
            message: format!(
                "both operands need at least one dimension, got {:?} and {:?}",
                a.shape(),
                b.shape()
            ),
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

/// `x W^T + b` for `x` `[..., in]`, `weight` `[out, in]`, `bias` `[out]`.
#[track_caller]
pub(crate) fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let location = Location::caller();
    ensure_float("linear", x, location)?;
    for t in [Some(weight), bias].into_iter().flatten() {
        if t.dtype() != x.dtype() {
            return Err(Error::DType { op: "linear", lhs: x.dtype(), rhs: t.dtype(), location });
        }
    }
    let bad = |message: String| Error::Shape { op: "linear", message, location };
    if weight.dim() != 2 || x.dim() == 0 || x.shape()[x.dim() - 1] != weight.shape()[1] {
        return Err(bad(format!(
            "input {:?} and weight {:?} do not fit (need [..., in] and [out, in])",
            x.shape(),
            weight.shape()
        )));
    }
    let (out, inp) = (weight.shape()[0], weight.shape()[1]);
    if let Some(b) = bias.filter(|b| b.shape() != [out]) {
        return Err(bad(format!("bias has shape {:?}, expected [{out}]", b.shape())));
    }
    // From the shape, not numel / in: with no input features the rows still exist (and get
    // the bias).
    let rows: usize = x.shape()[..x.dim() - 1].iter().product();
    let out_shape: Vec<usize> = x.shape()[..x.dim() - 1].iter().copied().chain([out]).collect();
    try_numel("linear", &out_shape, location)?;
    let x2 = reshape_to(x, &[rows, inp]);
    fn kernel<T: Element>(
        x: &[T],
        lx: &Layout,
        w: &[T],
        lw: &Layout,
        b: Option<&[T]>,
        rows: usize,
    ) -> Vec<T> {
        let (sx, sw) = (lx.strides(), lw.strides());
        let vx =
            View { data: x, offset: lx.offset(), rows, cols: lx.shape()[1], rs: sx[0], cs: sx[1] };
        let vw = View {
            data: w,
            offset: lw.offset(),
            rows: lw.shape()[0],
            cols: lw.shape()[1],
            rs: sw[0],
            cs: sw[1],
        };
        // The bias is added as the product's result is stored: no pass over the output
        // before the product.
        gemm_new(vx, vw.t(), b)
    }
    let bias_storage = bias.map(|b| b.contiguous_storage());
    let storage = match (x2.storage(), weight.storage(), &bias_storage) {
        (Storage::F32(xs), Storage::F32(ws), b) => Storage::from_vec(kernel(
            &xs,
            x2.layout(),
            &ws,
            weight.layout(),
            b.as_ref().map(|b| b.as_slice::<f32>().expect("dtype checked")),
            rows,
        )),
        (Storage::F64(xs), Storage::F64(ws), b) => Storage::from_vec(kernel(
            &xs,
            x2.layout(),
            &ws,
            weight.layout(),
            b.as_ref().map(|b| b.as_slice::<f64>().expect("dtype checked")),
            rows,
        )),
        _ => unreachable!("dtypes checked"),
    };
    let value = Tensor::from_storage(storage, Layout::contiguous(&out_shape));
    let inputs: Vec<&Tensor> = [Some(x), Some(weight), bias].into_iter().flatten().collect();
    let has_bias = bias.is_some();
    let make_backward = || {
        let x_shape = x.shape().to_vec();
        Backward::new(move |ctx| {
            let (x, w) = (ctx.saved(0), ctx.saved(1));
            let g = reshape_to(ctx.grad(), &[rows, out]);
            // dx = g W; dW = g^T x, already in W's [out, in] layout; db = column sums of g.
            let mut grads: tapegrad_tape::InputGrads = smallvec![
                ctx.needs_input_grad(0)
                    .then(|| reshape_to(&matmul(&g, w).expect("shapes agree"), &x_shape)),
                ctx.needs_input_grad(1).then(|| {
                    let x2 = reshape_to(x, &[rows, inp]);
                    matmul(&transpose(&g, 0, 1).expect("2-D"), &x2).expect("shapes agree")
                }),
            ];
            if has_bias {
                grads.push(
                    ctx.needs_input_grad(2)
                        .then(|| crate::reduce::sum_dim(&g, 0, false).expect("2-D")),
                );
            }
            grads
        })
        .save(x)
        .save(weight)
    };
    Ok(record_with_tangent("linear", location, &inputs, value, make_backward, |ctx| {
        ctx.sum(|i, v| match i {
            0 => linear(v, weight, None).expect("shapes agree"),
            1 => linear(x, v, None).expect("shapes agree"),
            _ => v.clone(), // the bias, broadcast over the rows
        })
    }))
}

/// Matrix products, as a method. In the prelude.
///
/// ```
/// use tapegrad_ops::prelude::*;
/// use tapegrad_tape::Tensor;
/// let a = Tensor::from_vec(vec![1.0f32, 2.0], &[1, 2]);
/// let b = Tensor::from_vec(vec![3.0f32, 4.0], &[2, 1]);
/// assert_eq!(a.matmul(&b).item(), 11.0);
/// ```
pub trait MatmulOps {
    /// The matrix product with PyTorch's `matmul` semantics: vector-vector (dot),
    /// matrix-vector, matrix-matrix, and batched with broadcast batch dimensions.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let a = Tensor::ones(&[5, 2, 3]);
    /// assert_eq!(a.matmul(&Tensor::ones(&[3, 4])).shape(), &[5, 2, 4]);
    /// assert_eq!(Tensor::ones(&[3]).matmul(&Tensor::ones(&[3])).item(), 3.0);
    /// ```
    #[track_caller]
    fn matmul(&self, rhs: &Tensor) -> Tensor {
        or_panic(self.try_matmul(rhs))
    }

    /// [`MatmulOps::matmul`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let err = Tensor::ones(&[2, 3]).try_matmul(&Tensor::ones(&[2, 3])).unwrap_err();
    /// assert!(err.to_string().contains("[2, 3] and [2, 3]"));
    /// ```
    #[track_caller]
    fn try_matmul(&self, rhs: &Tensor) -> Result<Tensor>;

    /// The product of two matrices, `[n, k] x [k, m]`, and nothing else (PyTorch's `mm`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::ones(&[2, 3]).mm(&Tensor::ones(&[3, 4])).shape(), &[2, 4]);
    /// assert!(Tensor::ones(&[3]).try_mm(&Tensor::ones(&[3, 4])).is_err()); // not a matrix
    /// ```
    #[track_caller]
    fn mm(&self, rhs: &Tensor) -> Tensor {
        or_panic(self.try_mm(rhs))
    }

    /// [`MatmulOps::mm`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[2, 3]).try_mm(&Tensor::ones(&[2, 3])).is_err());
    /// ```
    #[track_caller]
    fn try_mm(&self, rhs: &Tensor) -> Result<Tensor>;

    /// Batched matrix products of equal batches, `[b, n, k] x [b, k, m]`, no broadcasting
    /// (PyTorch's `bmm`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::ones(&[5, 2, 3]).bmm(&Tensor::ones(&[5, 3, 4])).shape(), &[5, 2, 4]);
    /// ```
    #[track_caller]
    fn bmm(&self, rhs: &Tensor) -> Tensor {
        or_panic(self.try_bmm(rhs))
    }

    /// [`MatmulOps::bmm`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[5, 2, 3]).try_bmm(&Tensor::ones(&[1, 3, 4])).is_err()); // batches differ
    /// ```
    #[track_caller]
    fn try_bmm(&self, rhs: &Tensor) -> Result<Tensor>;

    /// A matrix times a vector, `[n, k] x [k]` (PyTorch's `mv`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let m = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2]);
    /// assert_eq!(m.mv(&Tensor::ones(&[2])).to_vec::<f32>(), vec![3.0, 7.0]);
    /// ```
    #[track_caller]
    fn mv(&self, vec: &Tensor) -> Tensor {
        or_panic(self.try_mv(vec))
    }

    /// [`MatmulOps::mv`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[2, 2]).try_mv(&Tensor::ones(&[2, 1])).is_err());
    /// ```
    #[track_caller]
    fn try_mv(&self, vec: &Tensor) -> Result<Tensor>;

    /// The inner product of two vectors of one length, a 0-d tensor (PyTorch's `dot`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]);
    /// assert_eq!(a.dot(&a).item(), 14.0);
    /// ```
    #[track_caller]
    fn dot(&self, other: &Tensor) -> Tensor {
        or_panic(self.try_dot(other))
    }

    /// [`MatmulOps::dot`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[3]).try_dot(&Tensor::ones(&[4])).is_err());
    /// ```
    #[track_caller]
    fn try_dot(&self, other: &Tensor) -> Result<Tensor>;

    /// The outer product of two vectors, `[n] x [m] -> [n, m]` (PyTorch's `outer`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f32, 2.0], &[2]);
    /// let b = Tensor::from_vec(vec![3.0f32, 4.0, 5.0], &[3]);
    /// assert_eq!(a.outer(&b).to_vec::<f32>(), vec![3.0, 4.0, 5.0, 6.0, 8.0, 10.0]);
    /// ```
    #[track_caller]
    fn outer(&self, other: &Tensor) -> Tensor {
        or_panic(self.try_outer(other))
    }

    /// [`MatmulOps::outer`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[2, 1]).try_outer(&Tensor::ones(&[3])).is_err());
    /// ```
    #[track_caller]
    fn try_outer(&self, other: &Tensor) -> Result<Tensor>;
}

/// An error unless `a` and `b` have the ranks `op` takes (`ranks`, for its message).
#[track_caller]
fn expect_ranks(op: &'static str, a: &Tensor, b: &Tensor, ranks: (usize, usize)) -> Result<()> {
    if (a.dim(), b.dim()) == ranks {
        return Ok(());
    }
    Err(tapegrad_tape::Error::Shape {
        op,
        message: format!(
            "takes tensors of {} and {} dimensions, got {:?} and {:?}",
            ranks.0,
            ranks.1,
            a.shape(),
            b.shape()
        ),
        location: Location::caller(),
    })
}

impl MatmulOps for Tensor {
    #[track_caller]
    fn try_matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        matmul(self, rhs)
    }
    #[track_caller]
    fn try_mm(&self, rhs: &Tensor) -> Result<Tensor> {
        expect_ranks("mm", self, rhs, (2, 2))?;
        matmul(self, rhs)
    }
    #[track_caller]
    fn try_bmm(&self, rhs: &Tensor) -> Result<Tensor> {
        expect_ranks("bmm", self, rhs, (3, 3))?;
        if self.shape()[0] != rhs.shape()[0] {
            return Err(tapegrad_tape::Error::Shape {
                op: "bmm",
                message: format!(
                    "batches of {:?} and {:?} differ (bmm does not broadcast; matmul does)",
                    self.shape(),
                    rhs.shape()
                ),
                location: Location::caller(),
            });
        }
        matmul(self, rhs)
    }
    #[track_caller]
    fn try_mv(&self, vec: &Tensor) -> Result<Tensor> {
        expect_ranks("mv", self, vec, (2, 1))?;
        matmul(self, vec)
    }
    #[track_caller]
    fn try_dot(&self, other: &Tensor) -> Result<Tensor> {
        expect_ranks("dot", self, other, (1, 1))?;
        matmul(self, other)
    }
    #[track_caller]
    fn try_outer(&self, other: &Tensor) -> Result<Tensor> {
        expect_ranks("outer", self, other, (1, 1))?;
        let (n, m) = (self.shape()[0], other.shape()[0]);
        let column = crate::shape::reshape_to(self, &[n, 1]);
        let row = crate::shape::reshape_to(other, &[1, m]);
        column.try_mul(&row)
    }
}
