//! Shared plumbing for elementwise operations: apply a scalar function to every element,
//! whatever the dtype, and record it.

use std::panic::Location;

use tapegrad_kernels::simd::{ElementFn, ElementFn2};
use tapegrad_kernels::strided::zip_in_place;
use tapegrad_tape::layout::Layout;
use tapegrad_tape::{
    Backward, BackwardCtx, Element, Storage, Tensor, ensure_float, kernels, or_panic,
    record_with_tangent,
};

/// A scalar function of one element, instantiated for each float dtype.
pub(crate) trait UnaryFn {
    fn apply<T: Special>(x: T) -> T;
}

/// Element functions beyond [`Element`] that only ops need.
pub(crate) trait Special: Element {
    /// The error function: vectorisable for f32, libm's for f64.
    fn erf(self) -> Self;
    /// The standard normal distribution function (GELU's factor): vectorisable for f32,
    /// through libm's erf for f64.
    fn normal_cdf(self) -> Self;
    /// GELU's derivative `Phi(x) + x phi(x)`: vectorisable for f32.
    fn gelu_derivative(self) -> Self;
    /// `atan2(self, x)`, the angle of the point `(x, self)`: vectorisable for f32.
    fn angle(self, x: Self) -> Self;
}

impl Special for f32 {
    #[inline(always)]
    fn erf(self) -> Self {
        tapegrad_kernels::fast_math::erf_f32(self)
    }
    #[inline(always)]
    fn normal_cdf(self) -> Self {
        tapegrad_kernels::fast_math::normal_cdf_f32(self)
    }
    #[inline(always)]
    fn gelu_derivative(self) -> Self {
        tapegrad_kernels::fast_math::gelu_derivative_f32(self)
    }
    #[inline(always)]
    fn angle(self, x: Self) -> Self {
        tapegrad_kernels::fast_math::atan2_f32(self, x)
    }
}

impl Special for f64 {
    #[inline(always)]
    fn erf(self) -> Self {
        libm::erf(self)
    }
    #[inline(always)]
    fn normal_cdf(self) -> Self {
        0.5 * (1.0 + libm::erf(self * std::f64::consts::FRAC_1_SQRT_2))
    }
    #[inline(always)]
    fn gelu_derivative(self) -> Self {
        let density = (-0.5 * self * self).exp() / (2.0 * std::f64::consts::PI).sqrt();
        self.mul_add(density, self.normal_cdf())
    }
    #[inline(always)]
    fn angle(self, x: Self) -> Self {
        self.atan2(x)
    }
}

/// A [`UnaryFn`] or [`BinaryFn`] as the kernels' element function: its `#[inline(always)]`
/// methods are certain to be inlined into the vector loops (a function value may not be,
/// for a large body, which then runs scalar with a call per element).
pub(crate) struct Apply<F>(std::marker::PhantomData<fn() -> F>);

impl<F> Apply<F> {
    pub(crate) fn new() -> Self {
        Apply(std::marker::PhantomData)
    }
}

// By hand: a derive would ask `F: Copy` of the marker type.
impl<F> Clone for Apply<F> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F> Copy for Apply<F> {}

impl<F: UnaryFn, T: Special> ElementFn<T, T> for Apply<F> {
    #[inline(always)]
    fn call(&self, x: T) -> T {
        F::apply(x)
    }
}

impl<F: BinaryFn, T: Special> ElementFn2<T, T, T> for Apply<F> {
    #[inline(always)]
    fn call(&self, g: T, v: T) -> T {
        F::apply(g, v)
    }
}

/// `F` applied to every element of `x`, as a new contiguous tensor (nothing recorded).
/// Panics on integer tensors; callers check with `ensure_float` first.
pub(crate) fn map<F: UnaryFn>(x: &Tensor) -> Tensor {
    let storage = x.read_storage(|storage, layout| match storage {
        Storage::F32(v) => kernels::map_elements_into_storage(v, layout, Apply::<F>::new()),
        Storage::F64(v) => kernels::map_elements_into_storage(v, layout, Apply::<F>::new()),
        Storage::I64(_) | Storage::Bool(_) => unreachable!("float dtype checked by the caller"),
    });
    Tensor::from_storage(storage, Layout::contiguous(x.shape()))
}

/// Like [`map`] with a pair of closures, for functions with run-time parameters.
pub(crate) fn map_with(
    x: &Tensor,
    f32f: impl Fn(f32) -> f32 + Copy + Sync + Send,
    f64f: impl Fn(f64) -> f64 + Copy + Sync + Send,
) -> Tensor {
    let storage = x.read_storage(|storage, layout| match storage {
        Storage::F32(v) => kernels::map_into_storage(v, layout, f32f),
        Storage::F64(v) => kernels::map_into_storage(v, layout, f64f),
        Storage::I64(_) | Storage::Bool(_) => unreachable!("float dtype checked by the caller"),
    });
    Tensor::from_storage(storage, Layout::contiguous(x.shape()))
}

/// A function of two elements: of the incoming gradient and one saved tensor for
/// [`fused_rule`], or of two operands for [`zip`].
pub(crate) trait BinaryFn {
    fn apply<T: Special>(a: T, b: T) -> T;
}

/// Defines a zero-sized [`BinaryFn`] from an expression in its two arguments.
macro_rules! binary_fn {
    ($name:ident, |$a:ident, $b:ident| $body:expr) => {
        pub(crate) struct $name;
        impl $crate::elementwise::BinaryFn for $name {
            #[inline(always)]
            fn apply<T: $crate::elementwise::Special>($a: T, $b: T) -> T {
                #[allow(unused_imports)]
                use tapegrad_tape::Element as _;
                $body
            }
        }
    };
}
pub(crate) use binary_fn;

/// `F` over the elements of `a` and `b` broadcast to `shape`, as a new contiguous tensor
/// (nothing recorded): [`crate::binary::zip_value`] for element functions too large for
/// a closure to be inlined into the vector loop. Both must be of one float dtype.
pub(crate) fn zip<F: BinaryFn>(a: &Tensor, b: &Tensor, shape: &[usize]) -> Tensor {
    crate::binary::zip_elements(a, b, shape, Apply::<F>::new(), Apply::<F>::new())
}

/// `F(g, v)` over the elements of the incoming gradient `g` and saved values `v` (a storage
/// and its layout) of its shape, in one pass, when the result will not be differentiated
/// (grad mode is off: a backward without `create_graph`); `None` otherwise, and the rule
/// composes recorded ops instead. The result is written over `g` when the rule may reuse it
/// ([`BackwardCtx::grad_for_reuse`]), else into one fresh tensor where the composed rule
/// would allocate three.
pub(crate) fn fused_rule<F: BinaryFn>(
    ctx: &BackwardCtx<'_>,
    saved: (&Storage, &Layout),
) -> Option<Tensor> {
    fused_zip(ctx, saved, Apply::<F>::new(), Apply::<F>::new())
}

/// `f(g, v)` over the incoming gradient `g` and a saved tensor `v` of its shape, in one
/// pass (`f32f` or `f64f` by dtype): [`fused_rule`] for rules with parameters (bounds,
/// coefficients), which closures capture.
pub(crate) fn fused_rule_with(
    ctx: &BackwardCtx<'_>,
    v: &Tensor,
    f32f: impl Fn(f32, f32) -> f32 + Copy + Sync + Send,
    f64f: impl Fn(f64, f64) -> f64 + Copy + Sync + Send,
) -> Option<Tensor> {
    v.read_storage(|storage, layout| fused_zip(ctx, (storage, layout), f32f, f64f))
}

/// The one pass of [`fused_rule`] and [`fused_rule_with`]: over `g` in place when it may be
/// reused and `v` is contiguous, else into a fresh tensor; `None` under grad mode, for a
/// `v` of another shape, or for a `v` of another dtype than `g`.
fn fused_zip(
    ctx: &BackwardCtx<'_>,
    (v, v_layout): (&Storage, &Layout),
    f32f: impl ElementFn2<f32, f32, f32>,
    f64f: impl ElementFn2<f64, f64, f64>,
) -> Option<Tensor> {
    let g = ctx.grad();
    if tapegrad_tape::is_grad_enabled()
        || !tapegrad_tape::layout::same_shape(g.shape(), v_layout.shape())
        || g.dtype() != v.dtype()
    {
        return None;
    }
    if let Some(g) = ctx.grad_for_reuse()
        && v_layout.is_contiguous()
    {
        let vs = v_layout.offset()..v_layout.offset() + v_layout.numel();
        let written = g.update_storage(|dst, layout| {
            let gs = layout.offset()..layout.offset() + layout.numel();
            match v {
                Storage::F32(v) => zip_in_place(&mut dst.make_mut::<f32>()?[gs], &v[vs], f32f),
                Storage::F64(v) => zip_in_place(&mut dst.make_mut::<f64>()?[gs], &v[vs], f64f),
                Storage::I64(_) | Storage::Bool(_) => return None,
            }
            Some(())
        });
        if written.is_some() {
            return Some(g.clone());
        }
    }
    zip_fresh(g, (v, v_layout), f32f, f64f)
}

/// `F(g, v)` over the elements of `g` and of the saved values `v` (a storage and its layout)
/// of `g`'s shape, as a new contiguous tensor (nothing recorded); `None` if `v` is not of
/// `g`'s float dtype.
pub(crate) fn grad_value<F: BinaryFn>(g: &Tensor, saved: (&Storage, &Layout)) -> Option<Tensor> {
    zip_fresh(g, saved, Apply::<F>::new(), Apply::<F>::new())
}

/// `f(g, v)` over the elements of `g` and of saved values `v` (a storage and its layout) of
/// `g`'s shape, as a new contiguous tensor (nothing recorded); `None` unless both are of one
/// float dtype.
pub(crate) fn zip_fresh(
    g: &Tensor,
    (v, v_layout): (&Storage, &Layout),
    f32f: impl ElementFn2<f32, f32, f32>,
    f64f: impl ElementFn2<f64, f64, f64>,
) -> Option<Tensor> {
    let shape = g.shape();
    let storage = g.read_storage(|g, g_layout| match (g, v) {
        (Storage::F32(a), Storage::F32(b)) => {
            Some(kernels::zip_elements_into_storage(a, g_layout, b, v_layout, shape, f32f))
        }
        (Storage::F64(a), Storage::F64(b)) => {
            Some(kernels::zip_elements_into_storage(a, g_layout, b, v_layout, shape, f64f))
        }
        _ => None,
    })?;
    Some(Tensor::from_storage(storage, Layout::contiguous(shape)))
}

/// A 0/1 mask of `pred` over `x`'s elements, in `x`'s dtype: a constant for backward rules.
/// f32 elements are widened to f64 for the test.
pub(crate) fn mask(x: &Tensor, pred: impl Fn(f64) -> bool + Copy + Sync + Send + Copy) -> Tensor {
    mask_with(x, move |v| pred(f64::from(v)), pred)
}

/// [`mask`] with a test per dtype (`test32` for f32 elements, `test64` for f64), for tests
/// against f32 parameters that must compare as the f32 forward did.
pub(crate) fn mask_with(
    x: &Tensor,
    test32: impl Fn(f32) -> bool + Copy + Sync + Send,
    test64: impl Fn(f64) -> bool + Copy + Sync + Send,
) -> Tensor {
    map_with(x, move |v| f32::from(u8::from(test32(v))), move |v| f64::from(u8::from(test64(v))))
}

/// Records the elementwise op `F` on `x`, after checking that `x` is a float tensor.
#[track_caller]
pub(crate) fn unary<F: UnaryFn>(
    op: &'static str,
    x: &Tensor,
    make: impl Fn() -> Backward,
) -> Tensor {
    let location = Location::caller();
    or_panic(ensure_float(op, x, location));
    record_with_tangent(op, location, &[x], map::<F>(x), make, |ctx| ctx.elementwise())
}

/// Records an elementwise op computed by a closure pair, after the float check.
#[track_caller]
pub(crate) fn unary_with(
    op: &'static str,
    x: &Tensor,
    f32f: impl Fn(f32) -> f32 + Copy + Sync + Send,
    f64f: impl Fn(f64) -> f64 + Copy + Sync + Send,
    make: impl Fn() -> Backward,
) -> Tensor {
    let location = Location::caller();
    or_panic(ensure_float(op, x, location));
    record_with_tangent(op, location, &[x], map_with(x, f32f, f64f), make, |ctx| ctx.elementwise())
}

/// Defines a zero-sized [`UnaryFn`] from an expression in `x`.
macro_rules! unary_fn {
    ($name:ident, |$x:ident| $body:expr) => {
        pub(crate) struct $name;
        impl $crate::elementwise::UnaryFn for $name {
            #[inline(always)]
            fn apply<T: $crate::elementwise::Special>($x: T) -> T {
                #[allow(unused_imports)]
                use tapegrad_tape::Element as _;
                $body
            }
        }
    };
}
pub(crate) use unary_fn;
