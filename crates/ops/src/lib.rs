//! The differentiable operations of tapegrad and their CPU kernels.
//!
//! Operations are methods of the [`TensorOps`] extension trait (in tapegrad's prelude), named
//! as in PyTorch. Each one computes its value with a kernel over the tensor's storage and
//! records a backward rule written with the same operations, so that every rule can itself
//! be differentiated.
//!
//! ```
//! use tapegrad_ops::TensorOps;
//! use tapegrad_tape::Tensor;
//! let w = Tensor::from_vec(vec![0.5f32, -1.0, 2.0, 0.0], &[2, 2]).requires_grad();
//! let x = Tensor::from_vec(vec![1.0f32, 2.0], &[2, 1]);
//! let loss = w.matmul(&x).tanh().sum();
//! loss.backward();
//! assert_eq!(w.grad().unwrap().shape(), &[2, 2]);
//! ```

mod dims;
mod elementwise;
mod matmul;
mod reduce;
mod shape;
mod unary;

use tapegrad_tape::{Tensor, or_panic};

/// What [`TensorOps::pow`] accepts as an exponent: a number or a tensor.
///
/// ```
/// use tapegrad_ops::TensorOps;
/// use tapegrad_tape::Tensor;
/// let x = Tensor::full(&[2], 3.0);
/// assert_eq!(x.pow(2.0).to_vec::<f32>(), vec![9.0, 9.0]);
/// assert_eq!(x.pow(&Tensor::full(&[1], 2.0)).to_vec::<f32>(), vec![9.0, 9.0]);
/// ```
pub trait Exponent {
    /// `base` raised to this exponent.
    #[track_caller]
    fn raise(self, base: &Tensor) -> tapegrad_tape::Result<Tensor>;
}

impl Exponent for f64 {
    #[track_caller]
    fn raise(self, base: &Tensor) -> tapegrad_tape::Result<Tensor> {
        Ok(unary::pow_scalar(base, self))
    }
}

impl Exponent for &Tensor {
    #[track_caller]
    fn raise(self, base: &Tensor) -> tapegrad_tape::Result<Tensor> {
        unary::pow_tensor(base, self)
    }
}

/// The operations of tapegrad as methods on [`Tensor`], named as in PyTorch.
///
/// Every method panics on bad arguments with a message that names the operation, the
/// shapes and the caller's line; `try_` forms return [`tapegrad_tape::Result`] instead.
///
/// ```
/// use tapegrad_ops::TensorOps;
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
/// assert_eq!(x.sum_dim(0, false).to_vec::<f64>(), vec![4.0, 6.0]);
/// assert!(x.try_sum_dim(2, false).is_err());
/// ```
pub trait TensorOps {
    /// `e^x`, elementwise.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::zeros(&[1]).exp().item(), 1.0);
    /// ```
    fn exp(&self) -> Tensor;

    /// Natural logarithm, elementwise (`-inf` at 0, NaN below, as in IEEE arithmetic).
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::ones(&[1]).log().item(), 0.0);
    /// ```
    fn log(&self) -> Tensor;

    /// Hyperbolic tangent, elementwise.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::zeros(&[1]).tanh().item(), 0.0);
    /// ```
    fn tanh(&self) -> Tensor;

    /// The logistic function `1 / (1 + e^-x)`, elementwise, computed without overflow.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::zeros(&[1]).sigmoid().item(), 0.5);
    /// assert_eq!(Tensor::full(&[1], -1e4).sigmoid().item(), 0.0);
    /// ```
    fn sigmoid(&self) -> Tensor;

    /// `max(x, 0)`, elementwise (gradient 0 at 0, as in PyTorch).
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![-1.0f32, 2.0], &[2]);
    /// assert_eq!(x.relu().to_vec::<f32>(), vec![0.0, 2.0]);
    /// ```
    fn relu(&self) -> Tensor;

    /// `x` raised to a number or, with broadcasting, to a tensor of exponents.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::full(&[1], 4.0).pow(0.5).item(), 2.0);
    /// ```
    #[track_caller]
    fn pow<E: Exponent>(&self, exponent: E) -> Tensor {
        or_panic(self.try_pow(exponent))
    }

    /// [`TensorOps::pow`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[2]).try_pow(&Tensor::ones(&[3])).is_err());
    /// ```
    fn try_pow<E: Exponent>(&self, exponent: E) -> tapegrad_tape::Result<Tensor>;

    /// The sum of all elements, as a zero-dimensional tensor.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::ones(&[2, 3]).sum().item(), 6.0);
    /// ```
    fn sum(&self) -> Tensor;

    /// The mean of all elements, as a zero-dimensional tensor.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::arange(0.0, 4.0, 1.0).mean().item(), 1.5);
    /// ```
    fn mean(&self) -> Tensor;

    /// The sum along `dim` (negative counts from the end), keeping it as size 1 if `keepdim`.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let x = Tensor::ones(&[2, 3]);
    /// assert_eq!(x.sum_dim(-1, true).shape(), &[2, 1]);
    /// ```
    #[track_caller]
    fn sum_dim(&self, dim: isize, keepdim: bool) -> Tensor {
        or_panic(self.try_sum_dim(dim, keepdim))
    }

    /// [`TensorOps::sum_dim`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[2]).try_sum_dim(1, false).is_err());
    /// ```
    fn try_sum_dim(&self, dim: isize, keepdim: bool) -> tapegrad_tape::Result<Tensor>;

    /// The mean along `dim`, keeping it as size 1 if `keepdim`.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f32, 3.0], &[1, 2]);
    /// assert_eq!(x.mean_dim(1, false).to_vec::<f32>(), vec![2.0]);
    /// ```
    #[track_caller]
    fn mean_dim(&self, dim: isize, keepdim: bool) -> Tensor {
        or_panic(self.try_mean_dim(dim, keepdim))
    }

    /// [`TensorOps::mean_dim`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[2]).try_mean_dim(-2, false).is_err());
    /// ```
    fn try_mean_dim(&self, dim: isize, keepdim: bool) -> tapegrad_tape::Result<Tensor>;

    /// The matrix product of two 2-D tensors (`m x k` times `k x n`).
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let a = Tensor::ones(&[2, 3]);
    /// assert_eq!(a.matmul(&Tensor::ones(&[3, 4])).to_vec::<f32>(), vec![3.0; 8]);
    /// ```
    #[track_caller]
    fn matmul(&self, rhs: &Tensor) -> Tensor {
        or_panic(self.try_matmul(rhs))
    }

    /// [`TensorOps::matmul`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// let err = Tensor::ones(&[2, 3]).try_matmul(&Tensor::ones(&[2, 3])).unwrap_err();
    /// assert!(err.to_string().contains("[2, 3] and [2, 3]"));
    /// ```
    fn try_matmul(&self, rhs: &Tensor) -> tapegrad_tape::Result<Tensor>;

    /// The same elements in a new shape; one size may be `-1` to be inferred.
    /// A view when the tensor is contiguous.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::zeros(&[2, 6]).reshape(&[3, -1]).shape(), &[3, 4]);
    /// ```
    #[track_caller]
    fn reshape(&self, shape: &[isize]) -> Tensor {
        or_panic(self.try_reshape(shape))
    }

    /// [`TensorOps::reshape`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[2, 6]).try_reshape(&[5, -1]).is_err());
    /// ```
    fn try_reshape(&self, shape: &[isize]) -> tapegrad_tape::Result<Tensor>;

    /// The view with dimensions `a` and `b` swapped (no copy).
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::zeros(&[2, 3, 4]).transpose(0, -1).shape(), &[4, 3, 2]);
    /// ```
    #[track_caller]
    fn transpose(&self, a: isize, b: isize) -> Tensor {
        or_panic(self.try_transpose(a, b))
    }

    /// [`TensorOps::transpose`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[2, 3]).try_transpose(0, 2).is_err());
    /// ```
    fn try_transpose(&self, a: isize, b: isize) -> tapegrad_tape::Result<Tensor>;

    /// The transpose of a matrix (PyTorch's `t()`); vectors are returned unchanged.
    ///
    /// ```
    /// # use tapegrad_ops::TensorOps; use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::zeros(&[2, 3]).t().shape(), &[3, 2]);
    /// ```
    #[track_caller]
    fn t(&self) -> Tensor {
        self.transpose(0, -1)
    }
}

impl TensorOps for Tensor {
    #[track_caller]
    fn exp(&self) -> Tensor {
        unary::exp(self)
    }
    #[track_caller]
    fn log(&self) -> Tensor {
        unary::log(self)
    }
    #[track_caller]
    fn tanh(&self) -> Tensor {
        unary::tanh(self)
    }
    #[track_caller]
    fn sigmoid(&self) -> Tensor {
        unary::sigmoid_op(self)
    }
    #[track_caller]
    fn relu(&self) -> Tensor {
        unary::relu(self)
    }
    #[track_caller]
    fn try_pow<E: Exponent>(&self, exponent: E) -> tapegrad_tape::Result<Tensor> {
        exponent.raise(self)
    }
    #[track_caller]
    fn sum(&self) -> Tensor {
        reduce::sum(self)
    }
    #[track_caller]
    fn mean(&self) -> Tensor {
        reduce::mean(self)
    }
    #[track_caller]
    fn try_sum_dim(&self, dim: isize, keepdim: bool) -> tapegrad_tape::Result<Tensor> {
        reduce::sum_dim(self, dim, keepdim)
    }
    #[track_caller]
    fn try_mean_dim(&self, dim: isize, keepdim: bool) -> tapegrad_tape::Result<Tensor> {
        reduce::mean_dim(self, dim, keepdim)
    }
    #[track_caller]
    fn try_matmul(&self, rhs: &Tensor) -> tapegrad_tape::Result<Tensor> {
        matmul::matmul(self, rhs)
    }
    #[track_caller]
    fn try_reshape(&self, shape: &[isize]) -> tapegrad_tape::Result<Tensor> {
        shape::reshape(self, shape)
    }
    #[track_caller]
    fn try_transpose(&self, a: isize, b: isize) -> tapegrad_tape::Result<Tensor> {
        shape::transpose(self, a, b)
    }
}
