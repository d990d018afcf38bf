//! Generic element loops over strided views: the building blocks that op kernels share.
//!
//! Every loop runs the innermost dimension as a tight loop over slices, with separate paths
//! for unit and zero strides so that the compiler vectorises the common cases; broadcast
//! operands are read through stride-0 views and never materialised.

use rayon::prelude::*;
use smallvec::SmallVec;

use crate::layout::{Layout, Shape, numel};

/// Calls `f(offsets, len, inner_strides)` once per row of the innermost dimension of
/// `shape`, where each layout in `layouts` has that shape. `offsets[k]` is where the row
/// starts in operand `k`'s storage.
///
/// ```
/// use tapegrad_tape::{kernels::for_each_row, layout::Layout};
/// let l = Layout::contiguous(&[2, 3]);
/// let mut rows = vec![];
/// for_each_row(&[2, 3], [&l], |off, len, _| rows.push((off[0], len)));
/// assert_eq!(rows, vec![(0, 3), (3, 3)]);
/// ```
pub fn for_each_row<const N: usize>(
    shape: &[usize],
    layouts: [&Layout; N],
    mut f: impl FnMut([usize; N], usize, [usize; N]),
) {
    if numel(shape) == 0 {
        return;
    }
    let rank = shape.len();
    let mut offsets: [usize; N] = std::array::from_fn(|k| layouts[k].offset());
    if rank == 0 {
        f(offsets, 1, [0; N]);
        return;
    }
    let inner = shape[rank - 1];
    let inner_strides: [usize; N] = std::array::from_fn(|k| layouts[k].strides()[rank - 1]);
    let mut index: Shape = SmallVec::from_elem(0, rank - 1);
    loop {
        f(offsets, inner, inner_strides);
        // Advance the outer multi-index like an odometer.
        let mut d = rank - 1;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            index[d] += 1;
            for k in 0..N {
                offsets[k] += layouts[k].strides()[d];
            }
            if index[d] < shape[d] {
                break;
            }
            for k in 0..N {
                offsets[k] -= layouts[k].strides()[d] * shape[d];
            }
            index[d] = 0;
        }
    }
}

/// The elements of a view in row-major order, as a new vector.
///
/// ```
/// use tapegrad_tape::{kernels::to_contiguous, layout::Layout};
/// let t = Layout::contiguous(&[2, 2]).transpose(0, 1);
/// assert_eq!(to_contiguous(&[1.0f32, 2.0, 3.0, 4.0], &t), vec![1.0, 3.0, 2.0, 4.0]);
/// ```
pub fn to_contiguous<T: Copy>(data: &[T], layout: &Layout) -> Vec<T> {
    if layout.is_contiguous() {
        return data[layout.offset()..layout.offset() + layout.numel()].to_vec();
    }
    let mut out = Vec::with_capacity(layout.numel());
    for_each_row(layout.shape(), [layout], |[o], len, [s]| {
        if s == 1 {
            out.extend_from_slice(&data[o..o + len]);
        } else {
            out.extend((0..len).map(|j| data[o + j * s]));
        }
    });
    out
}

/// Contiguous element counts at or above this run on rayon's threads; below it, waking a
/// worker costs more than the loop.
pub const PARALLEL_ELEMENTS: usize = 1 << 16;

fn parallel(n: usize) -> bool {
    n >= PARALLEL_ELEMENTS && rayon::current_num_threads() > 1
}

/// `f` applied to every element of a view, in row-major order.
///
/// ```
/// use tapegrad_tape::{kernels::map, layout::Layout};
/// assert_eq!(map(&[1.0f64, 2.0], &Layout::contiguous(&[2]), |x| x * 10.0), vec![10.0, 20.0]);
/// ```
pub fn map<T: Copy + Sync, U: Send>(data: &[T], layout: &Layout, f: impl Fn(T) -> U + Sync + Send) -> Vec<U> {
    if layout.is_contiguous() {
        let slice = &data[layout.offset()..layout.offset() + layout.numel()];
        if parallel(slice.len()) {
            let mut out = Vec::with_capacity(slice.len());
            out.par_extend(slice.par_iter().with_min_len(PARALLEL_ELEMENTS / 4).map(|&x| f(x)));
            return out;
        }
        return slice.iter().map(|&x| f(x)).collect();
    }
    let mut out = Vec::with_capacity(layout.numel());
    for_each_row(layout.shape(), [layout], |[o], len, [s]| {
        out.extend((0..len).map(|j| f(data[o + j * s])));
    });
    out
}

/// `f(a, b)` over two views already broadcast to the same `shape`, in row-major order.
///
/// ```
/// use tapegrad_tape::{kernels::zip_map, layout::Layout};
/// let a = Layout::contiguous(&[2, 1]).broadcast_to(&[2, 3]).unwrap();
/// let b = Layout::contiguous(&[3]).broadcast_to(&[2, 3]).unwrap();
/// let out = zip_map(&[10.0f32, 20.0], &a, &[1.0, 2.0, 3.0], &b, &[2, 3], |x, y| x + y);
/// assert_eq!(out, vec![11.0, 12.0, 13.0, 21.0, 22.0, 23.0]);
/// ```
pub fn zip_map<T: Copy + Sync, U: Copy + Sync, V: Send>(
    a: &[T],
    la: &Layout,
    b: &[U],
    lb: &Layout,
    shape: &[usize],
    f: impl Fn(T, U) -> V + Sync + Send,
) -> Vec<V> {
    let n = numel(shape);
    if la.is_contiguous() && lb.is_contiguous() && la.numel() == n && lb.numel() == n {
        let a = &a[la.offset()..la.offset() + n];
        let b = &b[lb.offset()..lb.offset() + n];
        if parallel(n) {
            let mut out = Vec::with_capacity(n);
            out.par_extend(a.par_iter().zip(b).with_min_len(PARALLEL_ELEMENTS / 4).map(|(&x, &y)| f(x, y)));
            return out;
        }
        return a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect();
    }
    let mut out = Vec::with_capacity(n);
    for_each_row(shape, [la, lb], |[oa, ob], len, [sa, sb]| match (sa, sb) {
        (1, 1) => out.extend(a[oa..oa + len].iter().zip(&b[ob..ob + len]).map(|(&x, &y)| f(x, y))),
        (1, 0) => {
            let y = b[ob];
            out.extend(a[oa..oa + len].iter().map(|&x| f(x, y)));
        }
        (0, 1) => {
            let x = a[oa];
            out.extend(b[ob..ob + len].iter().map(|&y| f(x, y)));
        }
        _ => out.extend((0..len).map(|j| f(a[oa + j * sa], b[ob + j * sb]))),
    });
    out
}

/// Sums a view of shape `layout.shape()` down to `target`, a shape that broadcasts to it
/// (the reduction that undoes broadcasting). Returns `target`'s elements in row-major order.
///
/// ```
/// use tapegrad_tape::{kernels::sum_to, layout::Layout};
/// let x = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0];
/// assert_eq!(sum_to(&x, &Layout::contiguous(&[2, 3]), &[3]), vec![5.0, 7.0, 9.0]);
/// assert_eq!(sum_to(&x, &Layout::contiguous(&[2, 3]), &[2, 1]), vec![6.0, 15.0]);
/// ```
pub fn sum_to<T: crate::Element>(data: &[T], layout: &Layout, target: &[usize]) -> Vec<T> {
    let mut out = vec![T::ZERO; numel(target)];
    if numel(target) == 1 && layout.is_contiguous() {
        out[0] = data[layout.offset()..layout.offset() + layout.numel()].iter().copied().sum();
        return out;
    }
    let lo = Layout::contiguous(target)
        .broadcast_to(layout.shape())
        .expect("sum_to: target must broadcast to the input shape");
    for_each_row(layout.shape(), [layout, &lo], |[i, o], len, [si, so]| {
        if so == 0 {
            let row: T =
                if si == 1 { data[i..i + len].iter().copied().sum() } else { (0..len).map(|j| data[i + j * si]).sum() };
            out[o] += row;
        } else if si == 1 && so == 1 {
            for (acc, &x) in out[o..o + len].iter_mut().zip(&data[i..i + len]) {
                *acc += x;
            }
        } else {
            for j in 0..len {
                out[o + j * so] += data[i + j * si];
            }
        }
    });
    out
}
