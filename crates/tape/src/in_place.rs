//! In-place updates: `add_`, `sub_`, `mul_`, `div_`, `zero_`, `fill_`, `copy_` and the
//! `+=`-style operators, with PyTorch's rules.
//!
//! - Under [`no_grad`](crate::no_grad) (an optimizer step written by hand) the values
//!   change where they are; the tensor keeps its place in the graph.
//! - While gradients are recorded, a tensor computed by operations is changed by a recorded
//!   operation, and every handle to it moves to that operation's node (PyTorch's
//!   `out += identity` in a residual block). A leaf that requires a gradient refuses, as in
//!   PyTorch: its gradient would describe a value that no longer exists.
//!
//! Values that backward saved are copy-on-write snapshots, so an in-place change never
//! corrupts them: where PyTorch stops with "a variable needed for gradient computation has
//! been modified by an inplace operation", backward here uses the values the forward pass
//! saw, which is the derivative of what was recorded.

use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};
use std::panic::Location;

use crate::grad_mode::is_grad_enabled;
use crate::{Backward, DType, Error, Result, Tensor, no_grad, or_panic};

/// The right-hand side of an in-place arithmetic update: a tensor (broadcast to the
/// updated tensor's shape) or a number.
///
/// ```
/// use tapegrad_tape::{Operand, Tensor};
/// let t = Tensor::ones(&[1]);
/// assert!(matches!(Operand::from(&t), Operand::Tensor(_)));
/// assert!(matches!(Operand::from(2.0), Operand::Scalar(v) if v == 2.0));
/// assert!(matches!(Operand::from(2), Operand::Integer(2)));
/// ```
#[derive(Clone, Copy, Debug)]
pub enum Operand<'a> {
    /// A tensor, broadcast to the updated tensor's shape.
    Tensor(&'a Tensor),
    /// A float number.
    Scalar(f64),
    /// An integer (what an int64 tensor accepts).
    Integer(i64),
}

impl<'a> From<&'a Tensor> for Operand<'a> {
    fn from(t: &'a Tensor) -> Self {
        Operand::Tensor(t)
    }
}

macro_rules! operand_from_numbers {
    ($($t:ty),*) => {$(
        impl From<$t> for Operand<'_> {
            fn from(v: $t) -> Self {
                Operand::Scalar(v as f64)
            }
        }
    )*};
}

operand_from_numbers!(f64, f32);

impl From<i32> for Operand<'_> {
    fn from(v: i32) -> Self {
        Operand::Integer(v.into())
    }
}

impl From<i64> for Operand<'_> {
    fn from(v: i64) -> Self {
        Operand::Integer(v)
    }
}

#[derive(Clone, Copy)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
}

impl Arith {
    fn name(self) -> &'static str {
        match self {
            Arith::Add => "add_",
            Arith::Sub => "sub_",
            Arith::Mul => "mul_",
            Arith::Div => "div_",
        }
    }
}

impl Tensor {
    /// An error naming `op` unless `other` broadcasts to this tensor's own shape.
    fn check_broadcasts_to_self(
        &self,
        op: &'static str,
        other: &Tensor,
        location: &'static Location<'static>,
    ) -> Result<()> {
        let joint = crate::layout::broadcast_shapes(self.shape(), other.shape());
        if joint.as_deref() == Some(self.shape()) {
            return Ok(());
        }
        Err(Error::Shape {
            op,
            message: format!(
                "an operand of shape {:?} does not broadcast to the shape {:?} of the tensor \
                 changed in place",
                other.shape(),
                self.shape()
            ),
            location,
        })
    }
}

#[track_caller]
fn apply(arith: Arith, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    match arith {
        Arith::Add => x.try_add(y),
        Arith::Sub => x.try_sub(y),
        Arith::Mul => x.try_mul(y),
        Arith::Div => x.try_div(y),
    }
}

impl Tensor {
    /// Replaces this tensor's values (every handle's) with `compute(self)`, following the
    /// rules in the module documentation; `other` is the other input, if any.
    #[track_caller]
    fn update_with(
        &self,
        op: &'static str,
        other: Option<&Tensor>,
        compute: impl FnOnce(&Tensor) -> Result<Tensor>,
    ) -> Result<&Tensor> {
        let location = Location::caller();
        if self.layout().overlaps() {
            return Err(Error::InvalidArgument {
                op,
                message: format!(
                    "this tensor of shape {:?} is an expanded view whose elements share memory; \
                     an in-place update would write several results to one place (call \
                     `contiguous()` first)",
                    self.shape()
                ),
                location,
            });
        }
        if crate::instrument::active()
            && crate::forward_ad::propagating()
            && (self.live_tangent().is_some() || other.is_some_and(|o| o.live_tangent().is_some()))
        {
            return Err(Error::InvalidArgument {
                op,
                message: "in-place operations do not take dual tensors (forward mode): use \
                          the out-of-place form, whose tangent is computed"
                    .into(),
                location,
            });
        }
        // A computed tensor whose graph an earlier backward freed is a plain value now.
        if self.tracks_grad() && !self.node_alive() {
            self.rebind_node(None);
        }
        let recording =
            is_grad_enabled() && (self.tracks_grad() || other.is_some_and(Tensor::tracks_grad));
        if recording && self.tracks_grad() && self.is_leaf() {
            return Err(Error::InvalidArgument {
                op,
                message: "a leaf tensor that requires grad cannot be changed in place while \
                          gradients are recorded; update it under `no_grad()`, as an \
                          optimizer step does"
                    .into(),
                location,
            });
        }
        let value = if recording {
            compute(self)?
        } else {
            let _no_grad = no_grad();
            compute(&self.detach())?
        };
        if value.shape() != self.shape() {
            return Err(Error::Shape {
                op,
                message: format!(
                    "the result has shape {:?}, but the tensor changed in place has shape {:?} \
                     (an in-place operation cannot broadcast the tensor it changes)",
                    value.shape(),
                    self.shape()
                ),
                location,
            });
        }
        if value.dtype().is_float() && !self.dtype().is_float() {
            return Err(Error::DType { op, lhs: self.dtype(), rhs: value.dtype(), location });
        }
        let value =
            if value.dtype() == self.dtype() { value } else { value.to_dtype(self.dtype()) };
        self.write_values(value.contiguous_storage());
        if recording {
            self.rebind_node(value.node_key());
        }
        Ok(self)
    }

    #[track_caller]
    fn arith_in_place(&self, arith: Arith, other: Operand) -> Result<&Tensor> {
        let op = arith.name();
        let location = Location::caller();
        if let (Operand::Scalar(v), true) = (other, self.dtype().is_float()) {
            // A number on a float tensor: the scalar ops, no tensor made for it.
            return self.update_with(op, None, |x| {
                Ok(match arith {
                    Arith::Add => x.add_scalar(v),
                    Arith::Sub => x.sub_scalar(v),
                    Arith::Mul => x.mul_scalar(v),
                    Arith::Div => x.div_scalar(v),
                })
            });
        }
        let other = match other {
            Operand::Tensor(t) => t.clone(),
            Operand::Scalar(s) => Tensor::full_dtype(&[], s, DType::F64),
            Operand::Integer(i) => Tensor::from_vec(vec![i], &[]),
        };
        if !self.dtype().is_float() {
            // Integer tensors (counters, indices) stay integral, as in PyTorch: only integer
            // operands, no division; computed in f64 (exact below 2^53). Bool tensors take
            // no arithmetic (use the logical operations).
            if matches!(arith, Arith::Div)
                || other.dtype().is_float()
                || self.dtype() == DType::Bool
            {
                return Err(Error::DType { op, lhs: self.dtype(), rhs: other.dtype(), location });
            }
            self.check_broadcasts_to_self(op, &other, location)?;
            let (x, y) = (self.to_dtype(DType::F64), other.to_dtype(DType::F64));
            let value = apply(arith, &x, &y)?.to_dtype(self.dtype());
            return self.update_with(op, None, |_| Ok(value));
        }
        let other =
            if other.dtype() == self.dtype() { other } else { other.to_dtype(self.dtype()) };
        self.check_broadcasts_to_self(op, &other, location)?;
        self.update_with(op, Some(&other), |x| apply(arith, x, &other))
    }

    /// `self += other` in place (PyTorch's `add_`); `other` is a tensor that broadcasts
    /// to this shape, or a number. Returns `self` for chaining. See the rules in
    /// [`Tensor::sub_`].
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::ones(&[2, 2]);
    /// x.add_(&Tensor::from_vec(vec![1.0f32, 2.0], &[2])).add_(0.5);
    /// assert_eq!(x.to_vec::<f32>(), vec![2.5, 3.5, 2.5, 3.5]);
    /// ```
    #[track_caller]
    pub fn add_<'a>(&self, other: impl Into<Operand<'a>>) -> &Tensor {
        or_panic(self.try_add_(other))
    }

    /// [`Tensor::add_`], returning an error instead of panicking.
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[2]).try_add_(&Tensor::ones(&[3])).is_err()); // shapes
    /// assert!(Tensor::ones(&[1]).try_add_(&Tensor::ones(&[2])).is_err()); // no broadcasting of self
    /// ```
    #[track_caller]
    pub fn try_add_<'a>(&self, other: impl Into<Operand<'a>>) -> Result<&Tensor> {
        self.arith_in_place(Arith::Add, other.into())
    }

    /// `self -= other` in place (PyTorch's `sub_`): the hand-written SGD step.
    ///
    /// Under `no_grad` the values change where they are (every handle, every optimizer
    /// holding a clone, sees them). While gradients are recorded, a computed tensor is
    /// changed by a recorded operation; a leaf that requires a gradient refuses.
    ///
    /// ```
    /// use tapegrad_tape::{Tensor, no_grad};
    /// let w = Tensor::from_vec(vec![1.0f32, 2.0], &[2]).requires_grad();
    /// (&w * &w).sum_to_shape(&[]).backward();
    /// {
    ///     let _no_grad = no_grad();
    ///     w.sub_(&(&w.grad().unwrap() * 0.25)); // w -= lr * grad
    /// }
    /// assert_eq!(w.to_vec::<f32>(), vec![0.5, 1.0]);
    /// assert!(w.is_leaf() && w.tracks_grad()); // still the same parameter
    /// assert!(w.try_sub_(1.0).is_err()); // outside no_grad, a parameter refuses
    /// ```
    #[track_caller]
    pub fn sub_<'a>(&self, other: impl Into<Operand<'a>>) -> &Tensor {
        or_panic(self.try_sub_(other))
    }

    /// [`Tensor::sub_`], returning an error instead of panicking.
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// let counts = Tensor::from_vec(vec![3i64], &[1]);
    /// assert!(counts.try_sub_(1).is_ok());
    /// assert!(counts.try_sub_(0.5).is_err()); // a float into an int64 tensor
    /// assert_eq!(counts.to_vec::<i64>(), vec![2]);
    /// ```
    #[track_caller]
    pub fn try_sub_<'a>(&self, other: impl Into<Operand<'a>>) -> Result<&Tensor> {
        self.arith_in_place(Arith::Sub, other.into())
    }

    /// `self *= other` in place (PyTorch's `mul_`).
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::full(&[2], 3.0);
    /// x.mul_(0.5);
    /// assert_eq!(x.to_vec::<f32>(), vec![1.5, 1.5]);
    /// ```
    #[track_caller]
    pub fn mul_<'a>(&self, other: impl Into<Operand<'a>>) -> &Tensor {
        or_panic(self.try_mul_(other))
    }

    /// [`Tensor::mul_`], returning an error instead of panicking.
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[2, 1]).try_mul_(&Tensor::ones(&[2, 3])).is_err());
    /// ```
    #[track_caller]
    pub fn try_mul_<'a>(&self, other: impl Into<Operand<'a>>) -> Result<&Tensor> {
        self.arith_in_place(Arith::Mul, other.into())
    }

    /// `self /= other` in place (PyTorch's `div_`).
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::full(&[2], 3.0f64);
    /// x.div_(&Tensor::from_vec(vec![1.0f64, 3.0], &[2]));
    /// assert_eq!(x.to_vec::<f64>(), vec![3.0, 1.0]);
    /// ```
    #[track_caller]
    pub fn div_<'a>(&self, other: impl Into<Operand<'a>>) -> &Tensor {
        or_panic(self.try_div_(other))
    }

    /// [`Tensor::div_`], returning an error instead of panicking.
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// assert!(Tensor::from_vec(vec![4i64], &[1]).try_div_(2).is_err()); // int64 stays integral
    /// ```
    #[track_caller]
    pub fn try_div_<'a>(&self, other: impl Into<Operand<'a>>) -> Result<&Tensor> {
        self.arith_in_place(Arith::Div, other.into())
    }

    /// Sets every element to `value` in place (PyTorch's `fill_`).
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::zeros(&[3]);
    /// x.fill_(7.0);
    /// assert_eq!(x.to_vec::<f32>(), vec![7.0; 3]);
    /// ```
    #[track_caller]
    pub fn fill_(&self, value: f64) -> &Tensor {
        or_panic(self.try_fill_(value))
    }

    /// [`Tensor::fill_`], returning an error instead of panicking.
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// let w = Tensor::ones(&[2]).requires_grad();
    /// assert!(w.try_fill_(0.0).is_err()); // a parameter, outside no_grad
    /// ```
    #[track_caller]
    pub fn try_fill_(&self, value: f64) -> Result<&Tensor> {
        let (shape, dtype) = (self.shape().to_vec(), self.dtype());
        let location = Location::caller();
        // The new values depend on nothing, but a computed tensor stays in the graph with a
        // zero gradient for what it was (PyTorch's FillBackward).
        self.update_with("fill_", None, |x| {
            let filled = Tensor::full_dtype(&shape, value, dtype);
            Ok(crate::record("fill_", location, &[x], filled, || {
                Backward::new(|ctx| smallvec::smallvec![Some(ctx.grad().zeros_like())])
            }))
        })
    }

    /// Sets every element to zero in place (PyTorch's `zero_`).
    ///
    /// ```
    /// use tapegrad_tape::{Tensor, no_grad};
    /// let w = Tensor::ones(&[2]).requires_grad();
    /// {
    ///     let _no_grad = no_grad();
    ///     w.zero_();
    /// }
    /// assert_eq!(w.to_vec::<f32>(), vec![0.0, 0.0]);
    /// ```
    #[track_caller]
    pub fn zero_(&self) -> &Tensor {
        or_panic(self.try_fill_(0.0))
    }

    /// Copies `src` into this tensor in place (PyTorch's `copy_`): `src` broadcasts to this
    /// shape and converts to this dtype. While gradients are recorded, the gradient flows
    /// to `src`.
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::zeros(&[2, 2]);
    /// x.copy_(&Tensor::from_vec(vec![1.0f64, 2.0], &[2])); // f64 into f32, broadcast
    /// assert_eq!(x.to_vec::<f32>(), vec![1.0, 2.0, 1.0, 2.0]);
    /// ```
    #[track_caller]
    pub fn copy_(&self, src: &Tensor) -> &Tensor {
        or_panic(self.try_copy_(src))
    }

    /// [`Tensor::copy_`], returning an error instead of panicking.
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[2]).try_copy_(&Tensor::ones(&[3])).is_err());
    /// ```
    #[track_caller]
    pub fn try_copy_(&self, src: &Tensor) -> Result<&Tensor> {
        let location = Location::caller();
        let shape = self.shape().to_vec();
        // Converted as PyTorch's copy_ does (float into int64 truncates).
        let src =
            if src.dtype() == self.dtype() { src.clone() } else { src.to_dtype(self.dtype()) };
        self.check_broadcasts_to_self("copy_", &src, location)?;
        self.update_with("copy_", Some(&src), |x| {
            let value = src.try_broadcast_to(&shape)?;
            if !crate::will_record(&[x, &value]) {
                return Ok(value);
            }
            // A node of its own (never the source's): the gradient goes to the source, and
            // the tensor's old value gets zero (PyTorch's CopyBackwards).
            let copied = value.detach();
            Ok(crate::record("copy_", location, &[x, &value], copied, || {
                Backward::new(|ctx| {
                    let g = ctx.grad();
                    smallvec::smallvec![
                        ctx.needs_input_grad(0).then(|| g.zeros_like()),
                        ctx.needs_input_grad(1).then(|| g.clone())
                    ]
                })
            }))
        })
    }
}

macro_rules! assign_operator {
    ($trait:ident, $method:ident, $in_place:ident) => {
        /// The in-place update of this handle's tensor (every clone sees it), as PyTorch's
        /// `x op= y`.
        impl $trait<&Tensor> for Tensor {
            #[track_caller]
            fn $method(&mut self, rhs: &Tensor) {
                self.$in_place(rhs);
            }
        }
        /// The in-place update by a number.
        impl $trait<f64> for Tensor {
            #[track_caller]
            fn $method(&mut self, rhs: f64) {
                self.$in_place(rhs);
            }
        }
    };
}

assign_operator!(AddAssign, add_assign, add_);
assign_operator!(SubAssign, sub_assign, sub_);
assign_operator!(MulAssign, mul_assign, mul_);
assign_operator!(DivAssign, div_assign, div_);
