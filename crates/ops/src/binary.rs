//! Elementwise functions of two broadcast tensors: maximum, minimum, comparisons, `where_`.
//!
//! The methods are at the end of the file: [`BinaryOps`], and the free functions
//! [`where_`] and [`try_where`].

use std::panic::Location;

use tapegrad_kernels::simd::ElementFn2;

use tapegrad_tape::arith::broadcast_pair;
use tapegrad_tape::layout::Layout;
use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{
    Backward, DType, Error, Result, Storage, StorageElement, Tensor, kernels, or_panic,
    record_with_tangent,
};

/// `f(a, b)` over the broadcast of two float tensors of one dtype (nothing recorded).
pub(crate) fn zip_value(
    a: &Tensor,
    b: &Tensor,
    shape: &[usize],
    f32f: impl Fn(f32, f32) -> f32 + Copy + Sync + Send,
    f64f: impl Fn(f64, f64) -> f64 + Copy + Sync + Send,
) -> Tensor {
    zip_elements(a, b, shape, f32f, f64f)
}

/// [`zip_value`] for any [`ElementFn2`]s, such as the types of `elementwise::zip` whose
/// `#[inline(always)]` methods are certain to be inlined into the vector loop.
pub(crate) fn zip_elements(
    a: &Tensor,
    b: &Tensor,
    shape: &[usize],
    f32f: impl ElementFn2<f32, f32, f32>,
    f64f: impl ElementFn2<f64, f64, f64>,
) -> Tensor {
    let la = a.layout().broadcast_to(shape).expect("shapes checked by the caller");
    let lb = b.layout().broadcast_to(shape).expect("shapes checked by the caller");
    let storage = a.read_storage(|a, _| {
        b.read_storage(|b, _| match (a, b) {
            (Storage::F32(x), Storage::F32(y)) => {
                kernels::zip_elements_into_storage(x, &la, y, &lb, shape, f32f)
            }
            (Storage::F64(x), Storage::F64(y)) => {
                kernels::zip_elements_into_storage(x, &la, y, &lb, shape, f64f)
            }
            _ => unreachable!("float dtypes checked by the caller"),
        })
    });
    Tensor::from_storage(storage, Layout::contiguous(shape))
}

/// The larger (`max == true`) or smaller of two tensors, elementwise; NaN if either is NaN.
/// The gradient is PyTorch's: where they tie it is split evenly between them, and where
/// either is NaN both get all of it (`where(a == b, g/2, g).masked_fill(a < b, 0)` for `a`
/// and the mirror for `b`: no comparison with a NaN is true). A loser gets exactly 0, even
/// when the incoming gradient is infinite or NaN.
#[track_caller]
pub(crate) fn extremum(a: &Tensor, b: &Tensor, max: bool) -> Result<Tensor> {
    let location = Location::caller();
    let op = if max { "maximum" } else { "minimum" };
    let shape = broadcast_pair(op, a, b, location)?;
    let pick32 = move |x: f32, y: f32| {
        if x.is_nan() || y.is_nan() {
            f32::NAN
        } else if (x > y) == max {
            x
        } else {
            y
        }
    };
    let pick64 = move |x: f64, y: f64| {
        if x.is_nan() || y.is_nan() {
            f64::NAN
        } else if (x > y) == max {
            x
        } else {
            y
        }
    };
    let value = zip_value(a, b, &shape, pick32, pick64);
    // Weight of `x` (against `y`) in the output: 1/2 on ties, 1 where it wins or either is
    // NaN, 0 where it loses; a constant of the output's shape.
    let weight_of = move |x: &Tensor, y: &Tensor, shape: &[usize]| {
        let weight = move |x: f64, y: f64| {
            if x == y {
                0.5
            } else if x.is_nan() || y.is_nan() || (x > y) == max {
                1.0
            } else {
                0.0
            }
        };
        zip_value(x, y, shape, move |p, q| weight(p as f64, q as f64) as f32, weight)
    };
    let make_backward = || {
        Backward::new(move |ctx| {
            let (g, a, b) = (ctx.grad(), ctx.saved(0), ctx.saved(1));
            let shape = g.shape().to_vec();
            let share = |x: &Tensor, y: &Tensor| {
                select_scaled(g, &weight_of(x, y, &shape)).sum_to_shape(x.shape())
            };
            smallvec![
                ctx.needs_input_grad(0).then(|| share(a, b)),
                ctx.needs_input_grad(1).then(|| share(b, a))
            ]
        })
        .save(a)
        .save(b)
    };
    Ok(record_with_tangent(op, location, &[a, b], value, make_backward, |ctx| {
        ctx.sum(|i, v| {
            let (x, y) = if i == 0 { (a, b) } else { (b, a) };
            select_scaled(&v.broadcast_to(&shape), &weight_of(x, y, &shape))
        })
    }))
}

/// `g * w` where `w` is non-zero and exactly 0 elsewhere (a selection, so that an infinite
/// or NaN `g` does not become NaN where the rule drops it, as in PyTorch's masked rules).
/// `w` is a constant weight of `g`'s shape (or broadcast to it); recorded, so it is
/// differentiable in `g`.
pub(crate) fn select_scaled(g: &Tensor, w: &Tensor) -> Tensor {
    let zero = Tensor::zeros_dtype(&[], g.dtype());
    try_where(w, &(g * w), &zero).expect("the weight broadcasts with the gradient")
}

/// `g` where `keep` is non-zero, 0 elsewhere: [`select_scaled`] with a 0/1 mask.
pub(crate) fn select_grad(keep: &Tensor, g: &Tensor) -> Tensor {
    let zero = Tensor::zeros_dtype(&[], g.dtype());
    try_where(keep, g, &zero).expect("the mask broadcasts with the gradient")
}

/// An element of a `where` condition: a bool, or a number taken as true when non-zero
/// (NaN included).
trait Flag: StorageElement {
    fn is_set(self) -> bool;
}

impl Flag for bool {
    #[inline(always)]
    fn is_set(self) -> bool {
        self
    }
}

impl Flag for f32 {
    #[inline(always)]
    fn is_set(self) -> bool {
        self != 0.0
    }
}

impl Flag for f64 {
    #[inline(always)]
    fn is_set(self) -> bool {
        self != 0.0
    }
}

/// `keep ? a : b` over `shape` (nothing recorded), `keep` of element type `K`, `a` and `b`
/// of `T`. A one-element operand (the zero of a masked gradient, a fill value) is passed by
/// value into a broadcasting zip with the other, so it is never spread into a buffer;
/// three full operands go through the kernels' `select`.
fn select_value<K: Flag, T: StorageElement>(
    keep: &Tensor,
    a: &Tensor,
    b: &Tensor,
    shape: &[usize],
) -> Storage {
    let storage = |t: &Tensor| t.storage();
    let (ks, as_, bs) = (storage(keep), storage(a), storage(b));
    let scalar = |t: &Tensor, s: &Storage| {
        (t.numel() == 1).then(|| s.as_slice::<T>().expect("dtypes checked")[t.layout().offset()])
    };
    let k = ks.as_slice::<K>().expect("condition dtype checked");
    let lk = keep.layout().broadcast_to(shape).expect("shapes checked");
    let la = a.layout().broadcast_to(shape).expect("shapes checked");
    let lb = b.layout().broadcast_to(shape).expect("shapes checked");
    let xs = as_.as_slice::<T>().expect("dtypes checked");
    let ys = bs.as_slice::<T>().expect("dtypes checked");
    match (scalar(a, &as_), scalar(b, &bs)) {
        (_, Some(y)) => {
            kernels::zip_map_into_storage(
                k,
                &lk,
                xs,
                &la,
                shape,
                move |k: K, x| {
                    if k.is_set() { x } else { y }
                },
            )
        }
        (Some(x), None) => {
            kernels::zip_map_into_storage(
                k,
                &lk,
                ys,
                &lb,
                shape,
                move |k: K, y| {
                    if k.is_set() { x } else { y }
                },
            )
        }
        (None, None) => {
            let full = |t: &Tensor| t.broadcast_to(shape).contiguous_storage();
            let (k, x, y) = (full(keep), full(a), full(b));
            let k = k.as_slice::<K>().expect("condition dtype checked");
            let (x, y) = (x.as_slice::<T>(), y.as_slice::<T>());
            Storage::from_vec(tapegrad_kernels::strided::select(
                k,
                x.expect("dtypes checked"),
                y.expect("dtypes checked"),
                |k: K| k.is_set(),
            ))
        }
    }
}

/// A comparison, as a bool mask that carries no gradient. IEEE semantics, as PyTorch:
/// every comparison with NaN is false except `!=`, and `-0 == 0`. Integer and bool operands
/// compare by value (exactly, below 2^53).
#[track_caller]
pub(crate) fn compare(
    op: &'static str,
    a: &Tensor,
    b: &Tensor,
    f: impl Fn(f64, f64) -> bool + Copy + Send + Sync,
) -> Result<Tensor> {
    let location = Location::caller();
    let (a, b) = if a.dtype().is_float() && a.dtype() == b.dtype() {
        (a.detach(), b.detach())
    } else {
        (a.detach().to_dtype(DType::F64), b.detach().to_dtype(DType::F64))
    };
    let shape = broadcast_pair(op, &a, &b, location)?;
    let mask = zip_value(
        &a,
        &b,
        &shape,
        move |x, y| f(x as f64, y as f64) as u8 as f32,
        move |x, y| f(x, y) as u8 as f64,
    );
    Ok(mask.to_dtype(DType::Bool))
}

/// A logical operation of bool masks, broadcasting.
#[track_caller]
fn logical(
    op: &'static str,
    a: &Tensor,
    b: &Tensor,
    f: impl Fn(bool, bool) -> bool + Copy + Send + Sync,
) -> Result<Tensor> {
    let location = Location::caller();
    for t in [a, b] {
        if t.dtype() != DType::Bool {
            return Err(Error::DType { op, lhs: DType::Bool, rhs: t.dtype(), location });
        }
    }
    compare(op, a, b, move |x, y| f(x != 0.0, y != 0.0))
}

/// `cond ? a : b`, elementwise with broadcasting (PyTorch's `torch.where`). `cond` is a bool
/// mask (from a comparison such as [`BinaryOps::gt`]) or, as well, a numeric one where
/// non-zero means true; the gradient flows to `a` and `b`.
///
/// ```
/// use tapegrad_ops::{prelude::*, where_};
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![-1.0f32, 2.0], &[2]);
/// let y = where_(&x.gt(&Tensor::zeros(&[1])), &x, &Tensor::zeros(&[1]));
/// assert_eq!(y.to_vec::<f32>(), vec![0.0, 2.0]);
/// ```
#[track_caller]
pub fn where_(cond: &Tensor, a: &Tensor, b: &Tensor) -> Tensor {
    or_panic(try_where(cond, a, b))
}

/// [`where_`], returning an error instead of panicking.
///
/// `cond ? a : b` elementwise, broadcasting all three; `cond` is a mask (non-zero is true,
/// NaN included) and carries no gradient. Each operand's gradient is selected, not
/// multiplied by the mask: exactly 0 where the other was taken, even for an infinite or
/// NaN incoming gradient (as PyTorch).
///
/// ```
/// use tapegrad_tape::Tensor;
/// assert!(
///     tapegrad_ops::try_where(&Tensor::ones(&[3]), &Tensor::ones(&[2]), &Tensor::ones(&[2]))
///         .is_err()
/// );
/// ```
#[track_caller]
pub fn try_where(cond: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let location = Location::caller();
    let shape = broadcast_pair("where", a, b, location)?;
    let shape = tapegrad_tape::layout::broadcast_shapes(&shape, cond.shape()).ok_or_else(|| {
        Error::Shape {
            op: "where",
            message: format!(
                "condition shape {:?} does not broadcast with operand shapes {:?} and {:?}",
                cond.shape(),
                a.shape(),
                b.shape()
            ),
            location,
        }
    })?;
    // A bool condition (what comparisons give) or one of the operands' dtype is read as it
    // is; any other is converted to the operands' dtype.
    let keep = match cond.dtype() {
        DType::Bool => cond.detach(),
        d if d == a.dtype() => cond.detach(),
        _ => cond.detach().to_dtype(a.dtype()),
    };
    let (ad, bd) = (a.detach(), b.detach());
    let selected = match (keep.dtype(), a.dtype()) {
        (DType::Bool, DType::F32) => select_value::<bool, f32>(&keep, &ad, &bd, &shape),
        (DType::Bool, DType::F64) => select_value::<bool, f64>(&keep, &ad, &bd, &shape),
        (DType::F32, DType::F32) => select_value::<f32, f32>(&keep, &ad, &bd, &shape),
        (DType::F64, DType::F64) => select_value::<f64, f64>(&keep, &ad, &bd, &shape),
        _ => unreachable!("float dtypes checked"),
    };
    let value = Tensor::from_storage(selected, Layout::contiguous(&shape));
    let make_backward = || {
        let (sa, sb) = (a.shape().to_vec(), b.shape().to_vec());
        Backward::new(move |ctx| {
            let (g, keep) = (ctx.grad(), ctx.saved(0));
            let zero = Tensor::zeros_dtype(&[], g.dtype());
            let pick = |a: &Tensor, b: &Tensor| try_where(keep, a, b).expect("shapes checked");
            smallvec![
                ctx.needs_input_grad(0).then(|| pick(g, &zero).sum_to_shape(&sa)),
                ctx.needs_input_grad(1).then(|| pick(&zero, g).sum_to_shape(&sb)),
            ]
        })
        .save(&keep)
    };
    Ok(record_with_tangent("where", location, &[a, b], value, make_backward, |ctx| {
        let zero = Tensor::zeros_dtype(&[], a.dtype());
        ctx.sum(|i, v| {
            let (x, y) = if i == 0 { (v, &zero) } else { (&zero, v) };
            try_where(&keep, x, y).expect("shapes checked")
        })
    }))
}

/// Elementwise functions of two tensors that broadcast (beyond the `+ - * /` operators):
/// `maximum`, `minimum` and the comparisons, as methods. In the prelude.
///
/// ```
/// use tapegrad_ops::prelude::*;
/// use tapegrad_tape::Tensor;
/// let a = Tensor::from_vec(vec![1.0f32, 5.0], &[2]);
/// let b = Tensor::from_vec(vec![3.0f32], &[1]);
/// assert_eq!(a.maximum(&b).to_vec::<f32>(), vec![3.0, 5.0]);
/// assert_eq!(a.gt(&b).to_vec::<bool>(), vec![false, true]);
/// ```
pub trait BinaryOps {
    /// The larger of two tensors, elementwise with broadcasting (ties split the gradient;
    /// with a NaN, the result is NaN and both get all of it).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f32, 5.0], &[2]);
    /// assert_eq!(a.maximum(&Tensor::full(&[1], 3.0)).to_vec::<f32>(), vec![3.0, 5.0]);
    /// ```
    #[track_caller]
    fn maximum(&self, other: &Tensor) -> Tensor {
        or_panic(self.try_maximum(other))
    }

    /// [`BinaryOps::maximum`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[2]).try_maximum(&Tensor::ones(&[3])).is_err());
    /// ```
    #[track_caller]
    fn try_maximum(&self, other: &Tensor) -> Result<Tensor>;

    /// The smaller of two tensors, elementwise with broadcasting.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f32, 5.0], &[2]);
    /// assert_eq!(a.minimum(&Tensor::full(&[1], 3.0)).to_vec::<f32>(), vec![1.0, 3.0]);
    /// ```
    #[track_caller]
    fn minimum(&self, other: &Tensor) -> Tensor {
        or_panic(self.try_minimum(other))
    }

    /// [`BinaryOps::minimum`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[2]).try_minimum(&Tensor::ones(&[3])).is_err());
    /// ```
    #[track_caller]
    fn try_minimum(&self, other: &Tensor) -> Result<Tensor>;

    /// `self == other` as a bool mask, with no gradient (PyTorch's `torch.eq`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::{DType, Tensor};
    /// let a = Tensor::from_vec(vec![1.0f32, 2.0], &[2]);
    /// let same = a.eq(&Tensor::full(&[1], 2.0));
    /// assert_eq!((same.dtype(), same.to_vec::<bool>()), (DType::Bool, vec![false, true]));
    /// let labels = Tensor::from_vec(vec![1i64, 0], &[2]); // int64 compares too
    /// assert_eq!(labels.eq(&Tensor::from_vec(vec![1i64], &[1])).to_vec::<bool>(), vec![true, false]);
    /// ```
    #[track_caller]
    fn eq(&self, other: &Tensor) -> Tensor;
    /// `self != other` as a bool mask.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3]);
    /// assert_eq!(a.ne(&Tensor::full(&[1], 2.0)).to_vec::<bool>(), vec![true, false, true]);
    /// ```
    #[track_caller]
    fn ne(&self, other: &Tensor) -> Tensor;
    /// `self > other` as a bool mask.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3]);
    /// assert_eq!(a.gt(&Tensor::full(&[1], 2.0)).to_vec::<bool>(), vec![false, false, true]);
    /// ```
    #[track_caller]
    fn gt(&self, other: &Tensor) -> Tensor;
    /// `self >= other` as a bool mask.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3]);
    /// assert_eq!(a.ge(&Tensor::full(&[1], 2.0)).to_vec::<bool>(), vec![false, true, true]);
    /// ```
    #[track_caller]
    fn ge(&self, other: &Tensor) -> Tensor;
    /// `self < other` as a bool mask.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3]);
    /// assert_eq!(a.lt(&Tensor::full(&[1], 2.0)).to_vec::<bool>(), vec![true, false, false]);
    /// ```
    #[track_caller]
    fn lt(&self, other: &Tensor) -> Tensor;
    /// `self <= other` as a bool mask.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3]);
    /// assert_eq!(a.le(&Tensor::full(&[1], 2.0)).to_vec::<bool>(), vec![true, true, false]);
    /// ```
    #[track_caller]
    fn le(&self, other: &Tensor) -> Tensor;

    /// Where the elements are NaN, as a bool mask with no gradient (PyTorch's
    /// `torch.isnan`); integer and bool tensors have none.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f32, f32::NAN, f32::INFINITY], &[3]);
    /// assert_eq!(x.isnan().to_vec::<bool>(), vec![false, true, false]);
    /// ```
    fn isnan(&self) -> Tensor;
    /// Where the elements are `inf` or `-inf`, as a bool mask with no gradient (PyTorch's
    /// `torch.isinf`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![f64::NEG_INFINITY, f64::NAN, 1e308], &[3]);
    /// assert_eq!(x.isinf().to_vec::<bool>(), vec![true, false, false]);
    /// ```
    fn isinf(&self) -> Tensor;
    /// Where the elements are neither NaN nor infinite, as a bool mask with no gradient
    /// (PyTorch's `torch.isfinite`): the check for a loss or gradient that diverged.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f32, f32::NAN, -f32::INFINITY], &[3]);
    /// assert_eq!(x.isfinite().to_vec::<bool>(), vec![true, false, false]);
    /// assert!(Tensor::from_vec(vec![7i64], &[1]).isfinite().to_vec::<bool>()[0]); // integers are
    /// ```
    fn isfinite(&self) -> Tensor;

    /// Elementwise `and` of two bool masks, broadcasting (PyTorch's `logical_and`, `&`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let (a, b) = (Tensor::from_vec(vec![true, true, false], &[3]), Tensor::from_vec(vec![true, false, false], &[3]));
    /// assert_eq!(a.logical_and(&b).to_vec::<bool>(), vec![true, false, false]);
    /// assert!(Tensor::ones(&[3]).try_logical_and(&b).is_err()); // masks only
    /// ```
    #[track_caller]
    fn logical_and(&self, other: &Tensor) -> Tensor {
        or_panic(self.try_logical_and(other))
    }

    /// [`BinaryOps::logical_and`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let m = Tensor::from_vec(vec![true, false], &[2]);
    /// assert!(m.try_logical_and(&Tensor::from_vec(vec![true; 3], &[3])).is_err());
    /// ```
    #[track_caller]
    fn try_logical_and(&self, other: &Tensor) -> Result<Tensor>;

    /// Elementwise `or` of two bool masks, broadcasting (PyTorch's `logical_or`, `|`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let (a, b) = (Tensor::from_vec(vec![true, false], &[2]), Tensor::from_vec(vec![false], &[1]));
    /// assert_eq!(a.logical_or(&b).to_vec::<bool>(), vec![true, false]);
    /// ```
    #[track_caller]
    fn logical_or(&self, other: &Tensor) -> Tensor {
        or_panic(self.try_logical_or(other))
    }

    /// [`BinaryOps::logical_or`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::from_vec(vec![1i64], &[1]).try_logical_or(&Tensor::from_vec(vec![true], &[1])).is_err());
    /// ```
    #[track_caller]
    fn try_logical_or(&self, other: &Tensor) -> Result<Tensor>;

    /// The elementwise negation of a bool mask (PyTorch's `logical_not`, `~`).
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// let m = Tensor::from_vec(vec![true, false], &[2]);
    /// assert_eq!(m.logical_not().to_vec::<bool>(), vec![false, true]);
    /// ```
    #[track_caller]
    fn logical_not(&self) -> Tensor {
        or_panic(self.try_logical_not())
    }

    /// [`BinaryOps::logical_not`], returning an error instead of panicking.
    ///
    /// ```
    /// # use tapegrad_ops::prelude::*; use tapegrad_tape::Tensor;
    /// assert!(Tensor::ones(&[2]).try_logical_not().is_err());
    /// ```
    #[track_caller]
    fn try_logical_not(&self) -> Result<Tensor>;
}

impl BinaryOps for Tensor {
    #[track_caller]
    fn try_maximum(&self, other: &Tensor) -> Result<Tensor> {
        extremum(self, other, true)
    }
    #[track_caller]
    fn try_minimum(&self, other: &Tensor) -> Result<Tensor> {
        extremum(self, other, false)
    }
    #[track_caller]
    fn eq(&self, other: &Tensor) -> Tensor {
        or_panic(compare("eq", self, other, |a, b| a == b))
    }
    #[track_caller]
    fn ne(&self, other: &Tensor) -> Tensor {
        or_panic(compare("ne", self, other, |a, b| a != b))
    }
    #[track_caller]
    fn gt(&self, other: &Tensor) -> Tensor {
        or_panic(compare("gt", self, other, |a, b| a > b))
    }
    #[track_caller]
    fn ge(&self, other: &Tensor) -> Tensor {
        or_panic(compare("ge", self, other, |a, b| a >= b))
    }
    #[track_caller]
    fn lt(&self, other: &Tensor) -> Tensor {
        or_panic(compare("lt", self, other, |a, b| a < b))
    }
    #[track_caller]
    fn le(&self, other: &Tensor) -> Tensor {
        or_panic(compare("le", self, other, |a, b| a <= b))
    }
    fn isnan(&self) -> Tensor {
        or_panic(compare("isnan", self, self, |a, _| a.is_nan()))
    }
    fn isinf(&self) -> Tensor {
        or_panic(compare("isinf", self, self, |a, _| a.is_infinite()))
    }
    fn isfinite(&self) -> Tensor {
        or_panic(compare("isfinite", self, self, |a, _| a.is_finite()))
    }
    #[track_caller]
    fn try_logical_and(&self, other: &Tensor) -> Result<Tensor> {
        logical("logical_and", self, other, |a, b| a && b)
    }
    #[track_caller]
    fn try_logical_or(&self, other: &Tensor) -> Result<Tensor> {
        logical("logical_or", self, other, |a, b| a || b)
    }
    #[track_caller]
    fn try_logical_not(&self) -> Result<Tensor> {
        logical("logical_not", self, self, |a, _| !a)
    }
}
