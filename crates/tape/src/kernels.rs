//! The element loops of tapegrad-kernels (strided maps, broadcasting zips, reductions to a
//! shape), re-exported, and two that write straight into a tensor's [`Storage`].

use tapegrad_kernels::parallel::worth_it;
use tapegrad_kernels::simd::{self, ElementFn, ElementFn2};
pub use tapegrad_kernels::strided::*;

use crate::layout::{Layout, numel};
use crate::{Buffer, Storage, StorageElement};

/// [`map`] straight into [`Storage`]: a result of at most [`Buffer::INLINE`] elements is
/// written in place, so tiny tensors (scalar chains, losses) cost no buffer allocation, and
/// one below the threading threshold straight into a single allocation.
///
/// ```
/// use tapegrad_tape::{kernels::map_into_storage, layout::Layout};
/// let s = map_into_storage(&[1.0f32, 2.0, 3.0], &Layout::contiguous(&[3]), |x| x * 2.0);
/// assert_eq!(s.as_slice::<f32>().unwrap(), &[2.0, 4.0, 6.0]);
/// ```
#[inline]
pub fn map_into_storage<T: Copy + Sync, U: StorageElement>(
    data: &[T],
    layout: &Layout,
    f: impl Fn(T) -> U + Copy + Sync + Send,
) -> Storage {
    map_elements_into_storage(data, layout, f)
}

/// [`map_into_storage`] for any [`ElementFn`] (a type whose `#[inline(always)]` method is
/// certain to be inlined into the vector loop).
///
/// ```
/// use tapegrad_kernels::simd::ElementFn;
/// use tapegrad_tape::{kernels::map_elements_into_storage, layout::Layout};
/// #[derive(Clone, Copy)]
/// struct Square;
/// impl ElementFn<f64, f64> for Square {
///     #[inline(always)]
///     fn call(&self, x: f64) -> f64 {
///         x * x
///     }
/// }
/// let s = map_elements_into_storage(&[3.0f64], &Layout::contiguous(&[1]), Square);
/// assert_eq!(s.as_slice::<f64>().unwrap(), &[9.0]);
/// ```
#[inline]
pub fn map_elements_into_storage<T: Copy + Sync, U: StorageElement>(
    data: &[T],
    layout: &Layout,
    f: impl ElementFn<T, U>,
) -> Storage {
    let n = layout.numel();
    if n <= Buffer::<U>::INLINE && layout.is_contiguous() {
        let data = &data[layout.offset()..layout.offset() + n];
        return U::wrap_buffer(Buffer::from_fn(n, |i| f.call(data[i])));
    }
    if layout.is_contiguous() && !worth_it(n) {
        let data = &data[layout.offset()..layout.offset() + n];
        return U::wrap_buffer(Buffer::from_arc(simd::map_to_arc(data, &f)));
    }
    U::wrap(map_elements(data, layout, f))
}

/// [`map_pairs`] of a contiguous slice straight into two [`Storage`]s.
///
/// ```
/// use tapegrad_tape::kernels::map_pairs_into_storage;
/// let (y, dy) = map_pairs_into_storage(&[3.0f64], |x: f64| (x * x, 2.0 * x));
/// assert_eq!((y.as_slice::<f64>().unwrap(), dy.as_slice::<f64>().unwrap()), (&[9.0][..], &[6.0][..]));
/// ```
#[inline]
pub fn map_pairs_into_storage<T: Copy + Sync, U: StorageElement, V: StorageElement>(
    data: &[T],
    f: impl ElementFn<T, (U, V)>,
) -> (Storage, Storage) {
    let (first, second) = map_pairs(data, f);
    (U::wrap(first), V::wrap(second))
}

/// [`zip_map`] straight into [`Storage`], tiny results in place and small ones in a single
/// allocation (see [`map_into_storage`]).
///
/// ```
/// use tapegrad_tape::{kernels::zip_map_into_storage, layout::Layout};
/// let l = Layout::contiguous(&[1]);
/// let s = zip_map_into_storage(&[2.0f64], &l, &[3.0], &l, &[1], |a, b| a * b);
/// assert_eq!(s.as_slice::<f64>().unwrap(), &[6.0]);
/// ```
#[inline]
pub fn zip_map_into_storage<T: Copy + Sync, U: Copy + Sync, V: StorageElement>(
    a: &[T],
    la: &Layout,
    b: &[U],
    lb: &Layout,
    shape: &[usize],
    f: impl Fn(T, U) -> V + Copy + Sync + Send,
) -> Storage {
    zip_elements_into_storage(a, la, b, lb, shape, f)
}

/// [`zip_map_into_storage`] for any [`ElementFn2`] (a type whose `#[inline(always)]` method
/// is certain to be inlined into the vector loop).
///
/// ```
/// use tapegrad_kernels::simd::ElementFn2;
/// use tapegrad_tape::{kernels::zip_elements_into_storage, layout::Layout};
/// #[derive(Clone, Copy)]
/// struct Scale;
/// impl ElementFn2<f32, f32, f32> for Scale {
///     #[inline(always)]
///     fn call(&self, g: f32, x: f32) -> f32 {
///         g * x
///     }
/// }
/// let g = Layout::contiguous(&[]).broadcast_to(&[3]).unwrap(); // what `sum` sends back
/// let s = zip_elements_into_storage(&[2.0], &g, &[1.0, 2.0, 3.0], &Layout::contiguous(&[3]), &[3], Scale);
/// assert_eq!(s.as_slice::<f32>().unwrap(), &[2.0, 4.0, 6.0]);
/// ```
#[inline]
pub fn zip_elements_into_storage<T: Copy + Sync, U: Copy + Sync, V: StorageElement>(
    a: &[T],
    la: &Layout,
    b: &[U],
    lb: &Layout,
    shape: &[usize],
    f: impl ElementFn2<T, U, V>,
) -> Storage {
    let n = numel(shape);
    if n <= Buffer::<V>::INLINE
        && la.is_contiguous()
        && lb.is_contiguous()
        && la.numel() == n
        && lb.numel() == n
    {
        let (a, b) = (&a[la.offset()..la.offset() + n], &b[lb.offset()..lb.offset() + n]);
        return V::wrap_buffer(Buffer::from_fn(n, |i| f.call(a[i], b[i])));
    }
    if !worth_it(n)
        && la.is_contiguous()
        && lb.is_contiguous()
        && la.numel() == n
        && lb.numel() == n
    {
        let (a, b) = (&a[la.offset()..la.offset() + n], &b[lb.offset()..lb.offset() + n]);
        return V::wrap_buffer(Buffer::from_arc(simd::zip_to_arc(a, b, &f)));
    }
    V::wrap(zip_elements(a, la, b, lb, shape, f))
}
