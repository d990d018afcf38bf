//! Arithmetic with NumPy broadcasting, and the reduction that undoes a broadcast.
//!
//! These live in the tape crate, not in tapegrad-ops, for two reasons: Rust's orphan rule
//! ties `impl Add for &Tensor` to the crate that defines `Tensor`, and the backward sweep
//! needs addition (to accumulate gradients) and broadcasting's inverse anyway.

use std::ops::{Add, Div, Mul, Neg, Sub};
use std::panic::Location;

use smallvec::smallvec;
use tapegrad_kernels::simd::map_in_place_widest;

use crate::error::{Error, Result, or_panic};
use crate::layout::{Layout, broadcast_shapes};
use crate::{
    Backward, BackwardCtx, Element, Storage, Tensor, kernels, map_float_storage,
    record_with_tangent,
};

/// An elementwise function of two values, instantiated for each dtype.
trait BinaryFn {
    const NAME: &'static str;
    fn apply<T: Element>(a: T, b: T) -> T;
}

macro_rules! binary_fn {
    ($name:ident, $op:literal, |$a:ident, $b:ident| $body:expr) => {
        struct $name;
        impl BinaryFn for $name {
            const NAME: &'static str = $op;
            #[inline(always)]
            fn apply<T: Element>($a: T, $b: T) -> T {
                $body
            }
        }
    };
}

binary_fn!(AddFn, "add", |a, b| a + b);
binary_fn!(SubFn, "sub", |a, b| a - b);
binary_fn!(MulFn, "mul", |a, b| a * b);
binary_fn!(DivFn, "div", |a, b| a / b);

/// Checks dtypes and broadcast shapes of a binary operation; returns the output shape.
///
/// ```
/// use tapegrad_tape::{Tensor, arith::broadcast_pair};
/// let s = broadcast_pair(
///     "add",
///     &Tensor::zeros(&[2, 1]),
///     &Tensor::zeros(&[3]),
///     std::panic::Location::caller(),
/// )
/// .unwrap();
/// assert_eq!(s.as_slice(), &[2, 3]);
/// ```
pub fn broadcast_pair(
    op: &'static str,
    a: &Tensor,
    b: &Tensor,
    location: &'static Location<'static>,
) -> Result<crate::layout::Shape> {
    if a.dtype() != b.dtype() {
        return Err(Error::DType { op, lhs: a.dtype(), rhs: b.dtype(), location });
    }
    crate::error::ensure_float(op, a, location)?;
    let shape = broadcast_shapes(a.shape(), b.shape()).ok_or_else(|| Error::Shape {
        op,
        message: format!("shapes {:?} and {:?} cannot be broadcast together", a.shape(), b.shape()),
        location,
    })?;
    // Two views can broadcast to more elements than either has ([n, 1] with [1, n]).
    crate::layout::try_numel(op, &shape, location)?;
    Ok(shape)
}

fn binary_value<F: BinaryFn>(a: &Tensor, b: &Tensor, shape: &[usize]) -> Tensor {
    let la = a.layout().broadcast_to(shape).expect("shape checked");
    let lb = b.layout().broadcast_to(shape).expect("shape checked");
    let storage = a.read_storage(|a, _| {
        b.read_storage(|b, _| match (a, b) {
            (Storage::F32(x), Storage::F32(y)) => {
                kernels::zip_map_into_storage(x, &la, y, &lb, shape, F::apply)
            }
            (Storage::F64(x), Storage::F64(y)) => {
                kernels::zip_map_into_storage(x, &la, y, &lb, shape, F::apply)
            }
            _ => unreachable!("dtypes checked"),
        })
    });
    Tensor::from_storage(storage, Layout::contiguous(shape))
}

/// The gradient `g` summed down to `shape`, if broadcasting stretched the input.
fn unbroadcast(g: &Tensor, shape: &[usize]) -> Tensor {
    g.sum_to_shape(shape)
}

/// The scalar op `f(x, s)` on f32 elements, evaluated in f32 as PyTorch does: the scalar is
/// rounded to f32 first, and `f` on widened values rounds identically for + - * / because
/// f64 holds every f32 product and sum exactly before the final rounding.
#[inline(always)]
fn in_f32(f: impl Fn(f64, f64) -> f64 + Copy, s: f64) -> impl Fn(f32) -> f32 + Copy {
    let s = s as f32 as f64;
    move |x| f(x as f64, s) as f32
}

/// `f(g, s)` over the incoming gradient `g`, rounded as the scalar ops round: written over
/// `g` when the rule may reuse it ([`BackwardCtx::grad_for_reuse`]), otherwise `fallback(g)`.
/// The in-place variant of a rule, for speed: a chain of scalar ops then allocates nothing
/// per backward step.
fn map_grad(
    ctx: &BackwardCtx<'_>,
    f: impl Fn(f64, f64) -> f64 + Copy + Sync + Send,
    s: f64,
    fallback: impl FnOnce(&Tensor) -> Tensor,
) -> Tensor {
    match ctx.grad_for_reuse() {
        Some(g) => {
            g.scalar_op_in_place(f, s);
            g.clone()
        }
        None => fallback(ctx.grad()),
    }
}

impl Tensor {
    /// Elementwise `self + rhs` with broadcasting. Panics on incompatible shapes or dtypes.
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f32, 2.0], &[2, 1]);
    /// let b = Tensor::from_vec(vec![10.0f32, 20.0, 30.0], &[3]);
    /// assert_eq!(a.add(&b).to_vec::<f32>(), vec![11.0, 21.0, 31.0, 12.0, 22.0, 32.0]);
    /// ```
    #[track_caller]
    pub fn add(&self, rhs: &Tensor) -> Tensor {
        or_panic(self.try_add(rhs))
    }

    /// [`Tensor::add`], returning an error instead of panicking.
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[2]).try_add(&Tensor::zeros(&[3])).is_err());
    /// ```
    #[track_caller]
    pub fn try_add(&self, rhs: &Tensor) -> Result<Tensor> {
        let location = Location::caller();
        let shape = broadcast_pair(AddFn::NAME, self, rhs, location)?;
        let value = binary_value::<AddFn>(self, rhs, &shape);
        Ok(record_with_tangent(
            AddFn::NAME,
            location,
            &[self, rhs],
            value,
            || {
                let (sa, sb) = (self.shape().to_vec(), rhs.shape().to_vec());
                Backward::new(move |ctx| {
                    let g = ctx.grad();
                    smallvec![
                        ctx.needs_input_grad(0).then(|| unbroadcast(g, &sa)),
                        ctx.needs_input_grad(1).then(|| unbroadcast(g, &sb)),
                    ]
                })
            },
            |ctx| ctx.sum(|_, v| v.clone()),
        ))
    }

    /// Elementwise `self - rhs` with broadcasting.
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::ones(&[2]).sub(&Tensor::full(&[1], 3.0)).to_vec::<f32>(), vec![-2.0, -2.0]);
    /// ```
    #[track_caller]
    pub fn sub(&self, rhs: &Tensor) -> Tensor {
        or_panic(self.try_sub(rhs))
    }

    /// [`Tensor::sub`], returning an error instead of panicking.
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[2]).try_sub(&Tensor::zeros(&[3])).is_err());
    /// ```
    #[track_caller]
    pub fn try_sub(&self, rhs: &Tensor) -> Result<Tensor> {
        let location = Location::caller();
        let shape = broadcast_pair(SubFn::NAME, self, rhs, location)?;
        let value = binary_value::<SubFn>(self, rhs, &shape);
        Ok(record_with_tangent(
            SubFn::NAME,
            location,
            &[self, rhs],
            value,
            || {
                let (sa, sb) = (self.shape().to_vec(), rhs.shape().to_vec());
                Backward::new(move |ctx| {
                    let g = ctx.grad();
                    smallvec![
                        ctx.needs_input_grad(0).then(|| unbroadcast(g, &sa)),
                        ctx.needs_input_grad(1).then(|| unbroadcast(&-g, &sb)),
                    ]
                })
            },
            |ctx| ctx.sum(|i, v| if i == 0 { v.clone() } else { -v }),
        ))
    }

    /// Elementwise `self * rhs` with broadcasting.
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// assert_eq!(
    ///     Tensor::full(&[2], 2.0).mul(&Tensor::full(&[2], 3.0)).to_vec::<f32>(),
    ///     vec![6.0, 6.0]
    /// );
    /// ```
    #[track_caller]
    pub fn mul(&self, rhs: &Tensor) -> Tensor {
        or_panic(self.try_mul(rhs))
    }

    /// [`Tensor::mul`], returning an error instead of panicking.
    ///
    /// ```
    /// use tapegrad_tape::{DType, Tensor};
    /// assert!(Tensor::zeros(&[2]).try_mul(&Tensor::zeros_dtype(&[2], DType::F64)).is_err());
    /// ```
    #[track_caller]
    pub fn try_mul(&self, rhs: &Tensor) -> Result<Tensor> {
        let location = Location::caller();
        let shape = broadcast_pair(MulFn::NAME, self, rhs, location)?;
        let value = binary_value::<MulFn>(self, rhs, &shape);
        Ok(record_with_tangent(
            MulFn::NAME,
            location,
            &[self, rhs],
            value,
            || {
                Backward::new(|ctx| {
                    let (g, a, b) = (ctx.grad(), ctx.saved(0), ctx.saved(1));
                    smallvec![
                        ctx.needs_input_grad(0).then(|| unbroadcast(&(g * b), a.shape())),
                        ctx.needs_input_grad(1).then(|| unbroadcast(&(g * a), b.shape())),
                    ]
                })
                .save(self)
                .save(rhs)
            },
            |ctx| ctx.sum(|i, v| v * ctx.input(1 - i)),
        ))
    }

    /// Elementwise `self / rhs` with broadcasting (IEEE semantics: `x / 0` is infinite).
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// assert_eq!(Tensor::full(&[1], 3.0).div(&Tensor::full(&[1], 2.0)).item(), 1.5);
    /// ```
    #[track_caller]
    pub fn div(&self, rhs: &Tensor) -> Tensor {
        or_panic(self.try_div(rhs))
    }

    /// [`Tensor::div`], returning an error instead of panicking.
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[2]).try_div(&Tensor::zeros(&[3])).is_err());
    /// ```
    #[track_caller]
    pub fn try_div(&self, rhs: &Tensor) -> Result<Tensor> {
        let location = Location::caller();
        let shape = broadcast_pair(DivFn::NAME, self, rhs, location)?;
        let value = binary_value::<DivFn>(self, rhs, &shape);
        Ok(record_with_tangent(
            DivFn::NAME,
            location,
            &[self, rhs],
            value,
            || {
                Backward::new(|ctx| {
                    let (g, a, b) = (ctx.grad(), ctx.saved(0), ctx.saved(1));
                    smallvec![
                        ctx.needs_input_grad(0).then(|| unbroadcast(&(g / b), a.shape())),
                        // d(a/b)/db = -a / b^2
                        ctx.needs_input_grad(1)
                            .then(|| unbroadcast(&-(g * a / (b * b)), b.shape())),
                    ]
                })
                .save(self)
                .save(rhs)
            },
            // d(a/b) = va / b - (a/b) vb / b
            |ctx| {
                let b = ctx.input(1);
                ctx.sum(|i, v| if i == 0 { v / b } else { -(&(v * ctx.output()) / b) })
            },
        ))
    }

    /// `f(x, s)` over this tensor's elements, rounded as [`Tensor::scalar_op`] rounds them,
    /// written over them: what backward rules do to a gradient they may reuse.
    fn scalar_op_in_place(&self, f: impl Fn(f64, f64) -> f64 + Copy + Sync + Send, s: f64) {
        self.update_storage(|storage, layout| {
            let range = layout.offset()..layout.offset() + layout.numel();
            if let Some(v) = storage.make_mut::<f32>() {
                map_in_place_widest(&mut v[range], &in_f32(&f, s));
            } else if let Some(v) = storage.make_mut::<f64>() {
                map_in_place_widest(&mut v[range], &|x| f(x, s));
            } else {
                unreachable!("gradients are float tensors");
            }
        })
    }

    #[track_caller]
    fn scalar_op(
        &self,
        op: &'static str,
        location: &'static Location<'static>,
        // Generic rather than a `fn` pointer, so that each op's kernel inlines its arithmetic
        // and vectorises instead of making a call per element.
        f: impl Fn(f64, f64) -> f64 + Copy + Send + Sync,
        s: f64,
        make: impl Fn() -> Backward,
    ) -> Tensor {
        // Read in place: a handle to the buffer would be a copy (or a count up and down).
        let storage = self.read_storage(|storage, layout| match storage {
            Storage::F32(v) => Some(kernels::map_into_storage(v, layout, in_f32(f, s))),
            Storage::F64(v) => Some(kernels::map_into_storage(v, layout, |x| f(x, s))),
            Storage::I64(_) | Storage::Bool(_) => None,
        });
        let Some(storage) = storage else {
            or_panic(crate::error::ensure_float(op, self, location));
            unreachable!("integer and bool tensors fail the float check")
        };
        let value = Tensor::from_storage(storage, Layout::contiguous(self.shape()));
        record_with_tangent(op, location, &[self], value, make, |ctx| ctx.elementwise())
    }

    /// `self + s` for a scalar `s`.
    ///
    /// ```
    /// assert_eq!(tapegrad_tape::Tensor::ones(&[1]).add_scalar(2.0).item(), 3.0);
    /// ```
    #[track_caller]
    pub fn add_scalar(&self, s: f64) -> Tensor {
        self.scalar_op(
            "add_scalar",
            Location::caller(),
            |x, s| x + s,
            s,
            || Backward::new(|ctx| smallvec![Some(ctx.grad().clone())]),
        )
    }

    /// `self - s` for a scalar `s`.
    ///
    /// ```
    /// assert_eq!(tapegrad_tape::Tensor::ones(&[1]).sub_scalar(2.0).item(), -1.0);
    /// ```
    #[track_caller]
    pub fn sub_scalar(&self, s: f64) -> Tensor {
        self.scalar_op(
            "sub_scalar",
            Location::caller(),
            |x, s| x - s,
            s,
            || Backward::new(|ctx| smallvec![Some(ctx.grad().clone())]),
        )
    }

    /// `s - self` for a scalar `s` (PyTorch's `rsub`).
    ///
    /// ```
    /// assert_eq!(tapegrad_tape::Tensor::ones(&[1]).rsub_scalar(3.0).item(), 2.0);
    /// ```
    #[track_caller]
    pub fn rsub_scalar(&self, s: f64) -> Tensor {
        self.scalar_op(
            "rsub_scalar",
            Location::caller(),
            |x, s| s - x,
            s,
            || Backward::new(|ctx| smallvec![Some(map_grad(ctx, |g, _| -g, 0.0, |g| -g))]),
        )
    }

    /// `self * s` for a scalar `s`.
    ///
    /// ```
    /// assert_eq!(tapegrad_tape::Tensor::ones(&[1]).mul_scalar(2.5).item(), 2.5);
    /// ```
    #[track_caller]
    pub fn mul_scalar(&self, s: f64) -> Tensor {
        self.scalar_op(
            "mul_scalar",
            Location::caller(),
            |x, s| x * s,
            s,
            || {
                Backward::new(|ctx| {
                    let s = ctx.scalar();
                    smallvec![Some(map_grad(ctx, |g, s| g * s, s, |g| g.mul_scalar(s)))]
                })
                .scalar(s)
            },
        )
    }

    /// `self / s` for a scalar `s`.
    ///
    /// ```
    /// assert_eq!(tapegrad_tape::Tensor::ones(&[1]).div_scalar(4.0).item(), 0.25);
    /// ```
    #[track_caller]
    pub fn div_scalar(&self, s: f64) -> Tensor {
        self.scalar_op(
            "div_scalar",
            Location::caller(),
            |x, s| x / s,
            s,
            || {
                Backward::new(|ctx| {
                    let s = ctx.scalar();
                    smallvec![Some(map_grad(ctx, |g, s| g / s, s, |g| g.div_scalar(s)))]
                })
                .scalar(s)
            },
        )
    }

    /// `s / self` for a scalar `s`.
    ///
    /// ```
    /// assert_eq!(tapegrad_tape::Tensor::full(&[1], 4.0).rdiv_scalar(2.0).item(), 0.5);
    /// ```
    #[track_caller]
    pub fn rdiv_scalar(&self, s: f64) -> Tensor {
        self.scalar_op(
            "rdiv_scalar",
            Location::caller(),
            |x, s| s / x,
            s,
            || {
                // d(s/x)/dx = -s / x^2
                Backward::new(move |ctx| {
                    let x = ctx.saved(0);
                    smallvec![Some(-(ctx.grad().mul_scalar(s) / (x * x)))]
                })
                .save(self)
            },
        )
    }

    /// `-self`.
    ///
    /// ```
    /// assert_eq!(tapegrad_tape::Tensor::ones(&[1]).neg().item(), -1.0);
    /// ```
    #[track_caller]
    pub fn neg(&self) -> Tensor {
        or_panic(crate::error::ensure_float("neg", self, Location::caller()));
        let storage =
            map_float_storage!(&self.storage(), v => kernels::map(v, self.layout(), |x| -x));
        let value = Tensor::from_storage(storage, Layout::contiguous(self.shape()));
        record_with_tangent(
            "neg",
            Location::caller(),
            &[self],
            value,
            || Backward::new(|ctx| smallvec![Some(map_grad(ctx, |g, _| -g, 0.0, |g| -g))]),
            |ctx| ctx.map(|v| -v),
        )
    }

    /// This tensor broadcast to `shape` (PyTorch's `expand` / `broadcast_to`): a view that
    /// repeats elements along stretched dimensions without copying. Differentiable: the
    /// gradient sums back over the stretched dimensions.
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// let t = Tensor::from_vec(vec![1.0f32, 2.0], &[2, 1]).broadcast_to(&[2, 3]);
    /// assert_eq!(t.to_vec::<f32>(), vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
    /// ```
    #[track_caller]
    pub fn broadcast_to(&self, shape: &[usize]) -> Tensor {
        or_panic(self.try_broadcast_to(shape))
    }

    /// [`Tensor::broadcast_to`], returning an error instead of panicking.
    ///
    /// ```
    /// assert!(tapegrad_tape::Tensor::zeros(&[3]).try_broadcast_to(&[2, 4]).is_err());
    /// ```
    #[track_caller]
    pub fn try_broadcast_to(&self, shape: &[usize]) -> Result<Tensor> {
        let location = Location::caller();
        if self.shape() == shape {
            return Ok(self.clone());
        }
        crate::layout::try_numel("broadcast_to", shape, location)?;
        let layout = self.layout().broadcast_to(shape).ok_or_else(|| Error::Shape {
            op: "broadcast_to",
            message: format!("shape {:?} cannot be broadcast to {shape:?}", self.shape()),
            location,
        })?;
        let value = Tensor::from_storage(self.storage(), layout);
        Ok(record_with_tangent(
            "broadcast_to",
            location,
            &[self],
            value,
            || {
                let from = self.shape().to_vec();
                Backward::new(move |ctx| smallvec![Some(ctx.grad().sum_to_shape(&from))])
            },
            |ctx| ctx.map(|v| v.broadcast_to(shape)),
        ))
    }

    /// The sum of this tensor down to `shape`, a shape that broadcasts to this tensor's:
    /// the inverse of [`Tensor::broadcast_to`] for gradients. `sum_to_shape(&[])` sums
    /// everything. Differentiable.
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// let t = Tensor::ones(&[2, 3]);
    /// assert_eq!(t.sum_to_shape(&[1, 3]).to_vec::<f32>(), vec![2.0, 2.0, 2.0]);
    /// assert_eq!(t.sum_to_shape(&[]).item(), 6.0);
    /// ```
    #[track_caller]
    pub fn sum_to_shape(&self, shape: &[usize]) -> Tensor {
        or_panic(self.try_sum_to_shape(shape))
    }

    /// [`Tensor::sum_to_shape`], returning an error instead of panicking.
    ///
    /// ```
    /// assert!(tapegrad_tape::Tensor::zeros(&[2, 3]).try_sum_to_shape(&[2]).is_err());
    /// ```
    #[track_caller]
    pub fn try_sum_to_shape(&self, shape: &[usize]) -> Result<Tensor> {
        let location = Location::caller();
        if self.shape() == shape {
            return Ok(self.clone());
        }
        crate::error::ensure_float("sum_to_shape", self, location)?;
        crate::layout::try_numel("sum_to_shape", shape, location)?;
        if Layout::contiguous(shape).broadcast_to(self.shape()).is_none() {
            return Err(Error::Shape {
                op: "sum_to_shape",
                message: format!(
                    "shape {shape:?} does not broadcast to the input's shape {:?}",
                    self.shape()
                ),
                location,
            });
        }
        let storage =
            map_float_storage!(&self.storage(), v => kernels::sum_to(v, self.layout(), shape));
        let value = Tensor::from_storage(storage, Layout::contiguous(shape));
        Ok(record_with_tangent(
            "sum_to_shape",
            location,
            &[self],
            value,
            || {
                let from = self.shape().to_vec();
                Backward::new(move |ctx| smallvec![Some(ctx.grad().broadcast_to(&from))])
            },
            |ctx| ctx.map(|v| v.sum_to_shape(shape)),
        ))
    }
}

macro_rules! impl_binary_operator {
    ($trait:ident, $method:ident, $scalar:ident, $rscalar:ident) => {
        impl $trait<&Tensor> for &Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: &Tensor) -> Tensor {
                Tensor::$method(self, rhs)
            }
        }
        impl $trait<Tensor> for &Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: Tensor) -> Tensor {
                Tensor::$method(self, &rhs)
            }
        }
        impl $trait<&Tensor> for Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: &Tensor) -> Tensor {
                Tensor::$method(&self, rhs)
            }
        }
        impl $trait<Tensor> for Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: Tensor) -> Tensor {
                Tensor::$method(&self, &rhs)
            }
        }
        impl $trait<f64> for &Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: f64) -> Tensor {
                self.$scalar(rhs)
            }
        }
        impl $trait<f64> for Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: f64) -> Tensor {
                self.$scalar(rhs)
            }
        }
        impl $trait<&Tensor> for f64 {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: &Tensor) -> Tensor {
                rhs.$rscalar(self)
            }
        }
        impl $trait<Tensor> for f64 {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: Tensor) -> Tensor {
                rhs.$rscalar(self)
            }
        }
    };
}

impl_binary_operator!(Add, add, add_scalar, add_scalar);
impl_binary_operator!(Sub, sub, sub_scalar, rsub_scalar);
impl_binary_operator!(Mul, mul, mul_scalar, mul_scalar);
impl_binary_operator!(Div, div, div_scalar, rdiv_scalar);

impl Neg for &Tensor {
    type Output = Tensor;
    #[track_caller]
    fn neg(self) -> Tensor {
        Tensor::neg(self)
    }
}

impl Neg for Tensor {
    type Output = Tensor;
    #[track_caller]
    fn neg(self) -> Tensor {
        Tensor::neg(&self)
    }
}
