//! Shared plumbing for elementwise operations: apply a scalar function to every element,
//! whatever the dtype.

use tapegrad_tape::layout::Layout;
use tapegrad_tape::{Element, Storage, Tensor, kernels};

/// A scalar function of one element, instantiated for each dtype.
pub(crate) trait UnaryFn {
    fn apply<T: Element>(x: T) -> T;
}

/// `F` applied to every element of `x`, as a new contiguous tensor (nothing recorded).
pub(crate) fn map<F: UnaryFn>(x: &Tensor) -> Tensor {
    let layout = x.layout();
    let storage = match x.storage() {
        Storage::F32(v) => Storage::from_vec(kernels::map(&v, layout, F::apply::<f32>)),
        Storage::F64(v) => Storage::from_vec(kernels::map(&v, layout, F::apply::<f64>)),
    };
    Tensor::from_storage(storage, Layout::contiguous(x.shape()))
}

/// Like [`map`] with a closure taking and returning `f64`: for functions with a parameter,
/// evaluated in the tensor's own precision by the caller's closure pair.
pub(crate) fn map_with(x: &Tensor, f32f: impl Fn(f32) -> f32, f64f: impl Fn(f64) -> f64) -> Tensor {
    let layout = x.layout();
    let storage = match x.storage() {
        Storage::F32(v) => Storage::from_vec(kernels::map(&v, layout, f32f)),
        Storage::F64(v) => Storage::from_vec(kernels::map(&v, layout, f64f)),
    };
    Tensor::from_storage(storage, Layout::contiguous(x.shape()))
}

/// Defines a zero-sized [`UnaryFn`] from an expression in `x`.
macro_rules! unary_fn {
    ($name:ident, |$x:ident| $body:expr) => {
        pub(crate) struct $name;
        impl $crate::elementwise::UnaryFn for $name {
            #[inline(always)]
            fn apply<T: tapegrad_tape::Element>($x: T) -> T {
                $body
            }
        }
    };
}
pub(crate) use unary_fn;
