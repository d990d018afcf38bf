//! Generic element loops over strided views: the building blocks that op kernels share.
//! They know layouts and slices, not tensors.
//!
//! Every loop runs rows (the innermost dimension, merged with the outer ones the views
//! allow; see [`for_each_row`]) as tight loops over slices, with separate paths
//! for unit and zero strides so that the compiler vectorises the common cases; broadcast
//! operands are read through stride-0 views and never materialised.

use std::mem::MaybeUninit;

use rayon::prelude::*;
use smallvec::SmallVec;

use crate::Real;
use crate::layout::{Layout, Shape, numel};
use crate::parallel::{THRESHOLD, start_parallel};
use crate::simd::{ElementFn, ElementFn2, WidestLoop, run_widest};
use crate::transpose::{RowMajorAt, as_uninit, transpose_into};

/// Calls `f(offsets, len, inner_strides)` once per row of `shape` in row-major order,
/// where each layout in `layouts` has that shape. `offsets[k]` is where the row starts in
/// operand `k`'s storage.
///
/// A row is the innermost dimension, merged with the dimensions outside it that every
/// layout steps through as one (outer stride = inner stride x inner size): a contiguous
/// `[N, C, H, W]` plane against a per-channel value broadcast over `H, W` is one row of
/// `H * W` elements, not `H` rows of `W`, so the per-row work is paid less often.
///
/// ```
/// use tapegrad_kernels::{layout::Layout, strided::for_each_row};
/// let l = Layout::contiguous(&[2, 3]);
/// let mut rows = vec![];
/// for_each_row(&[2, 3], [&l], |off, len, _| rows.push((off[0], len)));
/// assert_eq!(rows, vec![(0, 6)]);
/// // A transposed view cannot merge its dimensions: one row per column of the original.
/// let t = l.transpose(0, 1);
/// let mut rows = vec![];
/// for_each_row(&[3, 2], [&t], |off, len, strides| rows.push((off[0], len, strides[0])));
/// assert_eq!(rows, vec![(0, 2, 3), (1, 2, 3), (2, 2, 3)]);
/// ```
pub fn for_each_row<const N: usize>(
    shape: &[usize],
    layouts: [&Layout; N],
    mut f: impl FnMut([usize; N], usize, [usize; N]),
) {
    if numel(shape) == 0 {
        return;
    }
    let mut offsets: [usize; N] = std::array::from_fn(|k| layouts[k].offset());
    let (dims, strides) = merge_dims(shape, layouts);
    let rank = dims.len();
    if rank == 0 {
        f(offsets, 1, [0; N]);
        return;
    }
    let inner = dims[rank - 1];
    let inner_strides: [usize; N] = std::array::from_fn(|k| strides[k][rank - 1]);
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
                offsets[k] += strides[k][d];
            }
            if index[d] < dims[d] {
                break;
            }
            for k in 0..N {
                offsets[k] -= strides[k][d] * dims[d];
            }
            index[d] = 0;
        }
    }
}

/// The dimensions of `shape` merged where every layout steps through two neighbours as one
/// (outer stride = inner stride x inner size), with each layout's strides over them.
/// Size-1 dimensions are dropped: their index never moves.
fn merge_dims<const N: usize>(shape: &[usize], layouts: [&Layout; N]) -> (Shape, [Shape; N]) {
    let mut dims: Shape = SmallVec::new();
    let mut strides: [Shape; N] = std::array::from_fn(|_| SmallVec::new());
    for (d, &size) in shape.iter().enumerate() {
        if size == 1 {
            continue;
        }
        let merges = !dims.is_empty()
            && (0..N).all(|k| strides[k].last() == Some(&(layouts[k].strides()[d] * size)));
        if merges {
            *dims.last_mut().expect("not empty") *= size;
            for k in 0..N {
                *strides[k].last_mut().expect("not empty") = layouts[k].strides()[d];
            }
        } else {
            dims.push(size);
            for k in 0..N {
                strides[k].push(layouts[k].strides()[d]);
            }
        }
    }
    (dims, strides)
}

/// A view whose rows are strided but which has a dimension of adjacent elements (a
/// transposed or permuted tensor), as a batch of matrix transpositions: reading it row by
/// row touches one cache line per element, while square tiles read and write whole lines.
struct Transposition {
    /// The merged dimensions and the view's strides over them.
    dims: Shape,
    strides: Shape,
    /// The dimension whose elements are adjacent in storage.
    unit: usize,
}

impl Transposition {
    /// The plan for `layout`, or `None` when its rows are contiguous or broadcast, or no
    /// dimension has unit stride (then rows are as good as tiles).
    fn of(layout: &Layout) -> Option<Transposition> {
        if layout.numel() == 0 {
            return None;
        }
        let (dims, [strides]) = merge_dims(layout.shape(), [layout]);
        let last = dims.len().checked_sub(1)?;
        if strides[last] <= 1 {
            return None;
        }
        let unit = (0..last).rev().find(|&d| strides[d] == 1)?;
        Some(Transposition { dims, strides, unit })
    }

    /// The view's elements in row-major order, as a new vector of `n` (the view's count).
    fn gathered<T: Copy>(&self, data: &[T], offset: usize, n: usize) -> Vec<T> {
        // SAFETY: `gather` checks that `n` is the view's count and writes every element.
        unsafe { filled(n, |dst| self.gather(data, offset, dst)) }
    }

    /// Writes the view's elements in row-major order into `dst` (one slot per element), as
    /// one transposition per index of the other dimensions: the rows along the unit
    /// dimension become the columns of the output.
    fn gather<T: Copy>(&self, data: &[T], offset: usize, dst: &mut [MaybeUninit<T>]) {
        let (dims, strides, unit) = (&self.dims, &self.strides, self.unit);
        assert_eq!(dst.len(), numel(dims), "gather: one slot per element of the view");
        let last = dims.len() - 1;
        // The output's row-major strides over the merged dimensions.
        let mut out_strides: Shape = SmallVec::from_elem(1, dims.len());
        for d in (0..last).rev() {
            out_strides[d] = out_strides[d + 1] * dims[d + 1];
        }
        let batch: Shape = (0..last).filter(|&d| d != unit).collect();
        let mut index: Shape = SmallVec::from_elem(0, batch.len());
        let (mut from, mut to) = (offset, 0);
        loop {
            transpose_into(
                data,
                RowMajorAt { start: from, row_stride: strides[last] },
                dims[last],
                dims[unit],
                dst,
                RowMajorAt { start: to, row_stride: out_strides[unit] },
            );
            // Advance the batch index like an odometer.
            let mut k = batch.len();
            loop {
                if k == 0 {
                    return;
                }
                k -= 1;
                let d = batch[k];
                index[k] += 1;
                from += strides[d];
                to += out_strides[d];
                if index[k] < dims[d] {
                    break;
                }
                from -= strides[d] * dims[d];
                to -= out_strides[d] * dims[d];
                index[k] = 0;
            }
        }
    }
}

/// Writes the elements of a view in row-major order into `dst`, one slot per element, on
/// the calling thread.
fn gather_into<T: Copy>(data: &[T], layout: &Layout, dst: &mut [MaybeUninit<T>]) {
    assert_eq!(dst.len(), layout.numel(), "gather: one slot per element of the view");
    if let Some(plan) = Transposition::of(layout) {
        return plan.gather(data, layout.offset(), dst);
    }
    let mut at = 0;
    for_each_row(layout.shape(), [layout], |[o], len, [s]| {
        let row = &mut dst[at..at + len];
        at += len;
        match s {
            1 => {
                let from = &data[o..o + len];
                // SAFETY: `row` and `from` are distinct slices of `len` elements, and
                // `MaybeUninit<T>` has `T`'s layout.
                unsafe {
                    std::ptr::copy_nonoverlapping(from.as_ptr(), row.as_mut_ptr().cast(), len)
                }
            }
            0 => row.fill(MaybeUninit::new(data[o])),
            _ => {
                for (j, slot) in row.iter_mut().enumerate() {
                    slot.write(data[o + j * s]);
                }
            }
        }
    });
}

/// The elements of a view in row-major order, as a new vector, on the calling thread.
fn gathered<T: Copy>(data: &[T], layout: &Layout) -> Vec<T> {
    // SAFETY: `gather_into` writes one slot per element of the view.
    unsafe { filled(layout.numel(), |dst| gather_into(data, layout, dst)) }
}

/// A vector of `n` elements that `fill` writes.
///
/// # Safety
/// `fill` must write every one of the `n` slots it is given.
unsafe fn filled<T>(n: usize, fill: impl FnOnce(&mut [MaybeUninit<T>])) -> Vec<T> {
    let mut out = Vec::with_capacity(n);
    fill(&mut out.spare_capacity_mut()[..n]);
    // SAFETY: the caller's contract: `fill` wrote all `n` slots.
    unsafe { out.set_len(n) };
    out
}

/// Splits `dst` (row-major over `shape`) into the parts that `blocks` of the outermost
/// dimension cover.
fn split_blocks<'a, V>(
    mut dst: &'a mut [V],
    shape: &[usize],
    blocks: &[(usize, usize)],
) -> Vec<&'a mut [V]> {
    let inner = numel(&shape[1..]);
    let mut parts = Vec::with_capacity(blocks.len());
    for &(_, rows) in blocks {
        let (head, tail) = dst.split_at_mut(rows * inner);
        parts.push(head);
        dst = tail;
    }
    parts
}

/// The elements of a view in row-major order, as a new vector.
///
/// ```
/// use tapegrad_kernels::{layout::Layout, strided::to_contiguous};
/// let t = Layout::contiguous(&[2, 2]).transpose(0, 1);
/// assert_eq!(to_contiguous(&[1.0f32, 2.0, 3.0, 4.0], &t), vec![1.0, 3.0, 2.0, 4.0]);
/// ```
pub fn to_contiguous<T: Copy + Send + Sync>(data: &[T], layout: &Layout) -> Vec<T> {
    if layout.is_contiguous() {
        return data[layout.offset()..layout.offset() + layout.numel()].to_vec();
    }
    let Some(blocks) = outer_blocks(layout.shape()) else {
        return gathered(data, layout);
    };
    let n = layout.numel();
    let mut out = Vec::with_capacity(n);
    let parts = split_blocks(&mut out.spare_capacity_mut()[..n], layout.shape(), &blocks);
    parts
        .into_par_iter()
        .zip(blocks)
        .for_each(|(part, (start, rows))| gather_into(data, &layout.narrow(0, start, rows), part));
    // SAFETY: the blocks cover the outer dimension, and each part was written whole.
    unsafe { out.set_len(n) };
    out
}

/// Elements per task of a parallel elementwise loop: a few tasks per thread (for balance),
/// each long enough to run in whole vectors.
fn parallel_chunk(n: usize) -> usize {
    (n / (4 * rayon::current_num_threads())).max(THRESHOLD / 4).next_multiple_of(64)
}

/// A function with two results applied to every element of a contiguous slice, both
/// written in the same pass (a value and its derivative, which share their work), on
/// rayon's threads when the slice is long.
///
/// ```
/// use tapegrad_kernels::strided::map_pairs;
/// let (y, dy) = map_pairs(&[1.0f64, 3.0], |x: f64| (x * x, 2.0 * x));
/// assert_eq!((y, dy), (vec![1.0, 9.0], vec![2.0, 6.0]));
/// ```
pub fn map_pairs<T: Copy + Sync, U: Send, V: Send>(
    data: &[T],
    f: impl ElementFn<T, (U, V)>,
) -> (Vec<U>, Vec<V>) {
    let n = data.len();
    let (mut first, mut second) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (a, b) = (&mut first.spare_capacity_mut()[..n], &mut second.spare_capacity_mut()[..n]);
    if start_parallel(n) {
        let chunk = parallel_chunk(n);
        a.par_chunks_mut(chunk)
            .zip(b.par_chunks_mut(chunk))
            .zip(data.par_chunks(chunk))
            .for_each(|((a, b), src)| crate::simd::map_pairs_widest(src, a, b, &f));
    } else {
        crate::simd::map_pairs_widest(data, a, b, &f);
    }
    // SAFETY: both outputs' first `n` slots were written, chunk by chunk or in one pass
    // (`map_pairs_widest` writes every slot of equally long slices).
    unsafe {
        first.set_len(n);
        second.set_len(n);
    }
    (first, second)
}

/// A function of three elements with two results, over three contiguous slices of one
/// length, both results written in the same pass, on rayon's threads when the slices are
/// long: a binary op's two partial gradients from the incoming gradient and its operands.
///
/// ```
/// use tapegrad_kernels::strided::zip3_pairs;
/// let grads_of_product = |(g, a, b): (f64, f64, f64)| (g * b, g * a);
/// let (da, db) = zip3_pairs(&[1.0, 2.0], &[3.0, 4.0], &[5.0, 6.0], grads_of_product);
/// assert_eq!((da, db), (vec![5.0, 12.0], vec![3.0, 8.0]));
/// ```
///
/// # Panics
/// If the slices differ in length.
pub fn zip3_pairs<T: Copy + Sync, U: Send, V: Send>(
    a: &[T],
    b: &[T],
    c: &[T],
    f: impl ElementFn<(T, T, T), (U, V)>,
) -> (Vec<U>, Vec<V>) {
    let n = a.len();
    assert!(b.len() == n && c.len() == n, "zip3_pairs: inputs of {n}, {} and {}", b.len(), c.len());
    let (mut first, mut second) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (d, e) = (&mut first.spare_capacity_mut()[..n], &mut second.spare_capacity_mut()[..n]);
    if start_parallel(n) {
        let chunk = parallel_chunk(n);
        (d.par_chunks_mut(chunk).zip(e.par_chunks_mut(chunk)))
            .zip(a.par_chunks(chunk).zip(b.par_chunks(chunk)).zip(c.par_chunks(chunk)))
            .for_each(|((d, e), ((a, b), c))| crate::simd::zip3_pairs_widest((a, b, c), d, e, &f));
    } else {
        crate::simd::zip3_pairs_widest((a, b, c), d, e, &f);
    }
    // SAFETY: both outputs' first `n` slots were written, chunk by chunk or in one pass
    // (`zip3_pairs_widest` writes every slot of equally long slices).
    unsafe {
        first.set_len(n);
        second.set_len(n);
    }
    (first, second)
}

/// [`zip3_pairs`] where the two operands are the halves of each block of `x`: for every
/// block `b` of `x` (`2 * half` elements, its first half `a` and second `c`) and the same
/// block of `g` (`half` elements), `f((g, a, c))` for each element, its first result
/// written to the block's first half of the output and the second to its second half. The
/// gradient of an op of the two halves of a dimension (`glu`) without splitting or joining
/// copies; long blocks are cut into pieces across threads as well.
///
/// ```
/// use tapegrad_kernels::strided::zip3_pairs_into_halves;
/// // Two blocks [a | c] of two elements each; the results (g * c, g * a).
/// let x = [1.0, 2.0, 3.0, 4.0];
/// let out = zip3_pairs_into_halves(&[10.0, 100.0], &x, 1, |(g, a, c): (f64, f64, f64)| (g * c, g * a));
/// assert_eq!(out, vec![20.0, 10.0, 400.0, 300.0]);
/// ```
///
/// # Panics
/// If `x` is not made of whole blocks, or `g` does not hold a half for each.
pub fn zip3_pairs_into_halves<T: Copy + Send + Sync>(
    g: &[T],
    x: &[T],
    half: usize,
    f: impl ElementFn<(T, T, T), (T, T)>,
) -> Vec<T> {
    let len = x.len();
    let mut out: Vec<T> = Vec::with_capacity(len);
    if len == 0 {
        return out;
    }
    assert!(
        half > 0 && len.is_multiple_of(2 * half) && g.len() * 2 == len,
        "zip3_pairs_into_halves: {len} elements are not blocks of 2 x {half}, or {} gradients \
         are not a half of them",
        g.len()
    );
    let chunk = parallel_chunk(len);
    let piece = chunk.min(half);
    let block = |out: &mut [MaybeUninit<T>], g: &[T], x: &[T]| {
        let (first, second) = out.split_at_mut(half);
        let (a, c) = x.split_at(half);
        let pieces = (first.chunks_mut(piece).zip(second.chunks_mut(piece)))
            .zip(g.chunks(piece).zip(a.chunks(piece)).zip(c.chunks(piece)));
        for ((d, e), ((g, a), c)) in pieces {
            crate::simd::zip3_pairs_widest((g, a, c), d, e, &f);
        }
    };
    let spare = &mut out.spare_capacity_mut()[..len];
    if start_parallel(len) && len > chunk {
        if half > piece {
            // Few long blocks: their pieces on the threads.
            spare.chunks_mut(2 * half).zip(g.chunks(half)).zip(x.chunks(2 * half)).for_each(
                |((out, g), x)| {
                    let (first, second) = out.split_at_mut(half);
                    let (a, c) = x.split_at(half);
                    (first.par_chunks_mut(piece).zip(second.par_chunks_mut(piece)))
                        .zip(g.par_chunks(piece).zip(a.par_chunks(piece)).zip(c.par_chunks(piece)))
                        .for_each(|((d, e), ((g, a), c))| {
                            crate::simd::zip3_pairs_widest((g, a, c), d, e, &f)
                        });
                },
            );
        } else {
            let blocks = (chunk / (2 * half)).max(1);
            spare
                .par_chunks_mut(2 * half * blocks)
                .zip(g.par_chunks(half * blocks))
                .zip(x.par_chunks(2 * half * blocks))
                .for_each(|((out, g), x)| {
                    (out.chunks_mut(2 * half).zip(g.chunks(half)).zip(x.chunks(2 * half)))
                        .for_each(|((out, g), x)| block(out, g, x))
                });
        }
    } else {
        (spare.chunks_mut(2 * half).zip(g.chunks(half)).zip(x.chunks(2 * half)))
            .for_each(|((out, g), x)| block(out, g, x));
    }
    // SAFETY: every block of the output had both halves written, piece by piece
    // (`zip3_pairs_widest` writes every slot of equally long slices).
    unsafe { out.set_len(len) };
    out
}

/// `f` applied to every element of a view, in row-major order.
///
/// ```
/// use tapegrad_kernels::{layout::Layout, strided::map};
/// assert_eq!(map(&[1.0f64, 2.0], &Layout::contiguous(&[2]), |x| x * 10.0), vec![10.0, 20.0]);
/// ```
pub fn map<T: Copy + Sync, U: Send>(
    data: &[T],
    layout: &Layout,
    f: impl Fn(T) -> U + Copy + Sync + Send,
) -> Vec<U> {
    map_elements(data, layout, f)
}

/// [`map`] for any [`ElementFn`]: a type with an `#[inline(always)]` method is certain to be
/// inlined into the vector loop.
///
/// ```
/// use tapegrad_kernels::{layout::Layout, simd::ElementFn, strided::map_elements};
/// #[derive(Clone, Copy)]
/// struct Double;
/// impl ElementFn<f32, f32> for Double {
///     #[inline(always)]
///     fn call(&self, x: f32) -> f32 {
///         2.0 * x
///     }
/// }
/// assert_eq!(map_elements(&[1.0f32, 3.0], &Layout::contiguous(&[2]), Double), vec![2.0, 6.0]);
/// ```
pub fn map_elements<T: Copy + Sync, U: Send>(
    data: &[T],
    layout: &Layout,
    f: impl ElementFn<T, U>,
) -> Vec<U> {
    if layout.is_contiguous() {
        let slice = &data[layout.offset()..layout.offset() + layout.numel()];
        if start_parallel(slice.len()) {
            let n = slice.len();
            let mut out = Vec::with_capacity(n);
            let chunk = parallel_chunk(n);
            out.spare_capacity_mut()[..n]
                .par_chunks_mut(chunk)
                .zip(slice.par_chunks(chunk))
                .for_each(|(dst, src)| crate::simd::map_widest(src, dst, &f));
            // SAFETY: the chunks cover the first `n` slots, and `map_widest` wrote each slot
            // of its chunk (`src` is as long as `dst`).
            unsafe { out.set_len(n) };
            return out;
        }
        return crate::simd::map_to_vec(slice, &f);
    }
    let n = layout.numel();
    let mut out = Vec::with_capacity(n);
    let dst = &mut out.spare_capacity_mut()[..n];
    match outer_blocks(layout.shape()) {
        Some(blocks) => {
            let parts = split_blocks(dst, layout.shape(), &blocks);
            parts.into_par_iter().zip(blocks).for_each(|(part, (start, rows))| {
                map_view_into(part, data, &layout.narrow(0, start, rows), &f)
            });
        }
        None => map_view_into(dst, data, layout, &f),
    }
    // SAFETY: `map_view_into` writes one slot per element of its view, and the blocks
    // cover the outer dimension.
    unsafe { out.set_len(n) };
    out
}

/// [`map_elements`] over a view that is not contiguous, into `dst` (one slot per element),
/// on the calling thread: a transposed view is gathered in tiles first, others run row by
/// row.
fn map_view_into<T: Copy, U>(
    dst: &mut [MaybeUninit<U>],
    data: &[T],
    layout: &Layout,
    f: &impl ElementFn<T, U>,
) {
    if let Some(plan) = Transposition::of(layout) {
        let tiles = plan.gathered(data, layout.offset(), dst.len());
        return crate::simd::map_widest(&tiles, dst, f);
    }
    let mut at = 0;
    for_each_row(layout.shape(), [layout], |[o], len, [s]| {
        let row = &mut dst[at..at + len];
        if s == 1 {
            crate::simd::map_widest(&data[o..o + len], row, f);
        } else {
            run_widest(StridedMap { data, first: o, step: s, row, f });
        }
        at += len;
    });
    assert_eq!(at, dst.len(), "map: the rows cover the view");
}

/// `dst[i] = f(dst[i], src[i])` over the common length of two slices, in the widest vectors
/// the CPU has, on the calling thread: the body of the in-place loops below.
fn zip_slices_in_place<T: Copy, F: ElementFn2<T, T, T>>(dst: &mut [T], src: &[T], f: &F) {
    struct InPlace<'a, T, F>(&'a mut [T], &'a [T], &'a F);
    impl<T: Copy, F: ElementFn2<T, T, T>> WidestLoop for InPlace<'_, T, F> {
        type Output = ();
        #[inline(always)]
        fn run(self) {
            let f = *self.2;
            for (d, &v) in self.0.iter_mut().zip(self.1) {
                *d = f.call(*d, v);
            }
        }
    }
    run_widest(InPlace(dst, src, f))
}

/// `dst[i] = f(dst[i], src[i])` over two slices of one length, in place: with the widest
/// vectors the CPU has, and on rayon's threads when long.
///
/// ```
/// let mut acc = vec![1.0f32, 2.0];
/// tapegrad_kernels::strided::zip_in_place(&mut acc, &[10.0, 20.0], |a, b| a * b);
/// assert_eq!(acc, vec![10.0, 40.0]);
/// ```
///
/// # Panics
/// If the slices differ in length.
pub fn zip_in_place<T: Copy + Send + Sync>(dst: &mut [T], src: &[T], f: impl ElementFn2<T, T, T>) {
    assert_eq!(dst.len(), src.len(), "zip_in_place: slices of different lengths");
    let run = |dst: &mut [T], src: &[T]| zip_slices_in_place(dst, src, &f);
    if start_parallel(dst.len()) {
        let chunk = parallel_chunk(dst.len());
        dst.par_chunks_mut(chunk).zip(src.par_chunks(chunk)).for_each(|(d, s)| run(d, s));
    } else {
        run(dst, src);
    }
}

/// `keep[i] ? x[i] : y[i]` over three slices of one length (`is_set` reads a flag), as a
/// new vector: a selection, not arithmetic, so an infinity in the branch not taken cannot
/// turn into NaN. With the widest vectors the CPU has, and on rayon's threads when long.
///
/// ```
/// let keep = [true, false, true];
/// let v = tapegrad_kernels::strided::select(&keep, &[1.0f32, 2.0, 3.0], &[4.0, 5.0, 6.0], |k| k);
/// assert_eq!(v, vec![1.0, 5.0, 3.0]);
/// ```
///
/// # Panics
/// If the slices differ in length.
pub fn select<K: Copy + Sync, T: Copy + Send + Sync>(
    keep: &[K],
    x: &[T],
    y: &[T],
    is_set: impl ElementFn<K, bool>,
) -> Vec<T> {
    let n = keep.len();
    assert!(x.len() == n && y.len() == n, "select: slices of different lengths");
    let mut out = Vec::with_capacity(n);
    let dst = &mut out.spare_capacity_mut()[..n];
    let run = |dst: &mut [MaybeUninit<T>], keep: &[K], x: &[T], y: &[T]| {
        run_widest(Select { keep, x, y, dst, is_set })
    };
    if start_parallel(n) {
        let chunk = parallel_chunk(n);
        dst.par_chunks_mut(chunk)
            .zip(keep.par_chunks(chunk))
            .zip(x.par_chunks(chunk).zip(y.par_chunks(chunk)))
            .for_each(|((dst, keep), (x, y))| run(dst, keep, x, y));
    } else {
        run(dst, keep, x, y);
    }
    // SAFETY: the chunks cover the first `n` slots, and each `Select` wrote every slot of
    // its chunk (its three operands are as long as the chunk).
    unsafe { out.set_len(n) };
    out
}

/// [`select`]'s loop over one chunk.
struct Select<'a, K, T, F> {
    keep: &'a [K],
    x: &'a [T],
    y: &'a [T],
    dst: &'a mut [MaybeUninit<T>],
    is_set: F,
}

impl<K: Copy, T: Copy, F: ElementFn<K, bool>> WidestLoop for Select<'_, K, T, F> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let is_set = self.is_set;
        for (((d, &k), &x), &y) in self.dst.iter_mut().zip(self.keep).zip(self.x).zip(self.y) {
            d.write(if is_set.call(k) { x } else { y });
        }
    }
}

/// `dst[i] = f(dst[i], value)` for every element, as a loop for [`run_widest`]: the value
/// is a field, so the compiler keeps it in a register (a closure capturing it by reference
/// reloads it after every store it cannot prove apart).
struct WithOne<'a, T, F>(&'a mut [T], T, &'a F);

impl<T: Copy, F: ElementFn2<T, T, T>> WidestLoop for WithOne<'_, T, F> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let f = *self.2;
        for d in self.0.iter_mut() {
            *d = f.call(*d, self.1);
        }
    }
}

/// `f` applied in place to one block of every row of `dst`, with the blocks of `src`: for
/// each row `o` of `dst` (rows `row_len` long), elements `at..at + src.block` of it and
/// block `o` of `src`, as [`zip_in_place`] does to whole slices. The gradient of a slice of
/// a tensor added into the gradient of the whole; the slice's blocks may lie apart (a
/// slice of a larger gradient) or repeat one value (a broadcast gradient), and are read
/// where they lie.
///
/// ```
/// use tapegrad_kernels::strided::{Blocks, zip_block_in_place};
/// let mut whole = vec![0.0f32; 6]; // two rows of three
/// let src = [1.0, 2.0, 3.0, 4.0];
/// let rows = Blocks { data: &src[..], start: 0, stride: 2, block: 2, step: 1 };
/// zip_block_in_place(&mut whole, 3, 1, rows, |a, b| a + b);
/// assert_eq!(whole, vec![0.0, 1.0, 2.0, 0.0, 3.0, 4.0]);
/// // The first element of each row of a [2, 2] source, into the last column.
/// let firsts = Blocks { data: &src[..], start: 0, stride: 2, block: 1, step: 1 };
/// zip_block_in_place(&mut whole, 3, 2, firsts, |a, b| a - b);
/// assert_eq!(whole, vec![0.0, 1.0, 1.0, 0.0, 3.0, 1.0]);
/// // One value per row, broadcast along the block.
/// let ones = Blocks { data: &[1.0, 2.0][..], start: 0, stride: 1, block: 3, step: 0 };
/// zip_block_in_place(&mut whole, 3, 0, ones, |a, b| a + b);
/// assert_eq!(whole, vec![1.0, 2.0, 2.0, 2.0, 5.0, 3.0]);
/// ```
///
/// # Panics
/// If the blocks do not fit in `dst`'s rows, or `src` does not hold one block per row.
pub fn zip_block_in_place<T: Copy + Send + Sync>(
    dst: &mut [T],
    row_len: usize,
    at: usize,
    src: Blocks<'_, T>,
    f: impl ElementFn2<T, T, T>,
) {
    let block = src.block;
    assert!(at + block <= row_len, "zip_block_in_place: the block passes the row's end");
    if row_len == 0 || block == 0 || dst.is_empty() {
        return;
    }
    let rows = dst.len() / row_len;
    assert!(
        src.holds(rows),
        "zip_block_in_place: src holds fewer than {rows} blocks of {block}, {} apart",
        src.stride
    );
    // Rows `first..` of `dst`, as `d`.
    let run = |first: usize, d: &mut [T]| {
        for (o, row) in d.chunks_mut(row_len).enumerate() {
            let row = &mut row[at..at + block];
            let from = src.start + (first + o) * src.stride;
            match src.step {
                1 => zip_slices_in_place(row, &src.data[from..from + block], &f),
                0 => run_widest(WithOne(row, src.data[from], &f)),
                step => {
                    for (j, x) in row.iter_mut().enumerate() {
                        *x = f.call(*x, src.data[from + j * step]);
                    }
                }
            }
        }
    };
    if rows > 1 && start_parallel(rows * block) {
        let per_task = parallel_chunk(rows * block).div_ceil(block).max(1);
        dst.par_chunks_mut(per_task * row_len).enumerate().for_each(|(i, d)| run(i * per_task, d));
    } else {
        run(0, dst);
    }
}

/// `block` elements for each outer row `o`, the first at `data[start + o * stride]` and
/// each next one `step` further: an input of [`join_blocks`] or the source of
/// [`zip_block_in_place`]. A step of 1 is a run of adjacent elements (a contiguous tensor
/// or a slice of one), 0 one value repeated (a broadcast).
#[derive(Clone, Copy, Debug)]
pub struct Blocks<'a, T> {
    /// The storage the blocks lie in.
    pub data: &'a [T],
    /// Where the block of row 0 starts.
    pub start: usize,
    /// From one row's block to the next.
    pub stride: usize,
    /// Elements per block.
    pub block: usize,
    /// From one element of a block to the next.
    pub step: usize,
}

impl<T> Blocks<'_, T> {
    /// Whether `data` holds `rows` blocks.
    fn holds(&self, rows: usize) -> bool {
        rows == 0
            || self.block == 0
            || self.start + (rows - 1) * self.stride + (self.block - 1) * self.step
                < self.data.len()
    }
}

/// Tensors joined along a dimension (`cat`): for each of `outer` rows, the row's block of
/// every input in turn, written once each into a new vector (on rayon's threads when
/// long). Inputs are read where they lie, so a slice of a larger tensor is not copied
/// first.
///
/// ```
/// use tapegrad_kernels::strided::{Blocks, join_blocks};
/// let a = [1, 2, 3, 4]; // two rows of two
/// let b = [9, 5, 9, 6]; // the second column of two rows of two
/// let parts = [
///     Blocks { data: &a[..], start: 0, stride: 2, block: 2, step: 1 },
///     Blocks { data: &b[..], start: 1, stride: 2, block: 1, step: 1 },
/// ];
/// assert_eq!(join_blocks(&parts, 2), vec![1, 2, 5, 3, 4, 6]);
/// ```
///
/// # Panics
/// If an input holds fewer than `outer` blocks.
pub fn join_blocks<T: Copy + Send + Sync>(parts: &[Blocks<'_, T>], outer: usize) -> Vec<T> {
    let row: usize = parts.iter().map(|p| p.block).sum();
    for (i, p) in parts.iter().enumerate() {
        assert!(
            p.holds(outer),
            "join_blocks: input {i} holds fewer than {outer} blocks of {}",
            p.block
        );
    }
    let n = outer * row;
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    // Rows `first..` of the output, into `dst`.
    let write = |first: usize, dst: &mut [MaybeUninit<T>]| {
        for (o, out_row) in dst.chunks_mut(row).enumerate() {
            let mut at = 0;
            for p in parts.iter().filter(|p| p.block > 0) {
                let from = p.start + (first + o) * p.stride;
                let to = &mut out_row[at..at + p.block];
                if p.step == 1 {
                    let from = &p.data[from..from + p.block];
                    // SAFETY: distinct slices of `p.block` elements; `MaybeUninit<T>` has
                    // `T`'s layout.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            from.as_ptr(),
                            to.as_mut_ptr().cast(),
                            p.block,
                        )
                    };
                } else {
                    for (j, slot) in to.iter_mut().enumerate() {
                        slot.write(p.data[from + j * p.step]);
                    }
                }
                at += p.block;
            }
        }
    };
    let dst = &mut out.spare_capacity_mut()[..n];
    if outer > 1 && start_parallel(n) {
        let per_task = parallel_chunk(n).div_ceil(row).max(1);
        dst.par_chunks_mut(per_task * row).enumerate().for_each(|(i, d)| write(i * per_task, d));
    } else {
        write(0, dst);
    }
    // SAFETY: every row's blocks fill it (the blocks add up to `row`), and the rows cover
    // the `n` slots.
    unsafe { out.set_len(n) };
    out
}

/// `dst[i] = f(dst[i], v[i])` where `v` is the view of `src` through `layout`, of `dst`'s
/// shape, in place: any strides (a broadcast or transposed gradient added into a contiguous
/// one). A contiguous view takes [`zip_in_place`]; otherwise each row ([`for_each_row`])
/// runs in the widest vectors where the view's row has unit or zero stride.
///
/// ```
/// use tapegrad_kernels::{layout::Layout, strided::zip_view_in_place};
/// let mut acc = vec![1.0f32; 4];
/// let column = Layout::contiguous(&[2, 1]).broadcast_to(&[2, 2]).unwrap();
/// zip_view_in_place(&mut acc, &[10.0, 20.0], &column, |a, b| a + b);
/// assert_eq!(acc, vec![11.0, 11.0, 21.0, 21.0]);
/// ```
///
/// # Panics
/// If `dst` and the view differ in length.
pub fn zip_view_in_place<T: Copy + Send + Sync>(
    dst: &mut [T],
    src: &[T],
    layout: &Layout,
    f: impl ElementFn2<T, T, T>,
) {
    assert_eq!(dst.len(), layout.numel(), "zip_view_in_place: view and destination differ");
    if layout.is_contiguous() {
        let start = layout.offset();
        return zip_in_place(dst, &src[start..start + dst.len()], f);
    }
    let shape = layout.shape();
    let outer = shape.first().copied().unwrap_or(1);
    if outer > 1 && start_parallel(dst.len()) {
        // Blocks of whole leading slices, each its own view.
        let inner = dst.len() / outer;
        let slices = parallel_chunk(dst.len()).div_ceil(inner.max(1)).max(1);
        dst.par_chunks_mut(slices * inner).enumerate().for_each(|(i, block)| {
            let first = i * slices;
            let view = layout.narrow(0, first, block.len() / inner);
            view_rows_in_place(block, src, &view, &f);
        });
    } else {
        view_rows_in_place(dst, src, layout, &f);
    }
}

/// [`zip_view_in_place`]'s rows, on the calling thread.
fn view_rows_in_place<T: Copy, F: ElementFn2<T, T, T>>(
    dst: &mut [T],
    src: &[T],
    layout: &Layout,
    f: &F,
) {
    if let Some(plan) = Transposition::of(layout) {
        return zip_slices_in_place(dst, &plan.gathered(src, layout.offset(), layout.numel()), f);
    }
    let whole = Layout::contiguous(layout.shape());
    for_each_row(layout.shape(), [&whole, layout], |[d, s], len, [_, stride]| {
        let row = &mut dst[d..d + len];
        match stride {
            1 => zip_slices_in_place(row, &src[s..s + len], f),
            0 => run_widest(WithOne(row, src[s], f)),
            _ => {
                for (j, x) in row.iter_mut().enumerate() {
                    *x = f.call(*x, src[s + j * stride]);
                }
            }
        }
    });
}

/// `f(a, b)` over two views already broadcast to the same `shape`, in row-major order.
///
/// ```
/// use tapegrad_kernels::{layout::Layout, strided::zip_map};
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
    f: impl Fn(T, U) -> V + Copy + Sync + Send,
) -> Vec<V> {
    zip_elements(a, la, b, lb, shape, f)
}

/// [`zip_map`] for any [`ElementFn2`]: a type with an `#[inline(always)]` method is certain
/// to be inlined into the vector loop (a large closure may not be, and then runs with a
/// call per element).
///
/// ```
/// use tapegrad_kernels::{layout::Layout, simd::ElementFn2, strided::zip_elements};
/// #[derive(Clone, Copy)]
/// struct Hypot;
/// impl ElementFn2<f64, f64, f64> for Hypot {
///     #[inline(always)]
///     fn call(&self, x: f64, y: f64) -> f64 {
///         (x * x + y * y).sqrt()
///     }
/// }
/// let scalar = Layout::contiguous(&[]).broadcast_to(&[2]).unwrap();
/// let out = zip_elements(&[3.0], &scalar, &[4.0, 0.0], &Layout::contiguous(&[2]), &[2], Hypot);
/// assert_eq!(out, vec![5.0, 3.0]);
/// ```
pub fn zip_elements<T: Copy + Sync, U: Copy + Sync, V: Send>(
    a: &[T],
    la: &Layout,
    b: &[U],
    lb: &Layout,
    shape: &[usize],
    f: impl ElementFn2<T, U, V>,
) -> Vec<V> {
    let n = numel(shape);
    if la.is_contiguous() && lb.is_contiguous() && la.numel() == n && lb.numel() == n {
        let a = &a[la.offset()..la.offset() + n];
        let b = &b[lb.offset()..lb.offset() + n];
        if start_parallel(n) {
            let mut out = Vec::with_capacity(n);
            let chunk = parallel_chunk(n);
            out.spare_capacity_mut()[..n]
                .par_chunks_mut(chunk)
                .zip(a.par_chunks(chunk).zip(b.par_chunks(chunk)))
                .for_each(|(dst, (a, b))| crate::simd::zip_widest(a, b, dst, &f));
            // SAFETY: the chunks cover the first `n` slots, and `zip_widest` wrote each slot
            // of its chunk (both operands are as long as `dst`).
            unsafe { out.set_len(n) };
            return out;
        }
        return crate::simd::zip_to_vec(a, b, &f);
    }
    let mut out = Vec::with_capacity(n);
    let dst = &mut out.spare_capacity_mut()[..n];
    match outer_blocks(shape) {
        Some(blocks) => {
            let parts = split_blocks(dst, shape, &blocks);
            parts.into_par_iter().zip(blocks).for_each(|(part, (start, rows))| {
                let mut sub: Shape = shape.into();
                sub[0] = rows;
                zip_rows_into(
                    part,
                    a,
                    &la.narrow(0, start, rows),
                    b,
                    &lb.narrow(0, start, rows),
                    &sub,
                    &f,
                );
            });
        }
        None => zip_rows_into(dst, a, la, b, lb, shape, &f),
    }
    // SAFETY: zip_rows_into wrote all n elements (one per element of `shape`).
    unsafe { out.set_len(n) };
    out
}

/// The rows of `zip_map` written into `dst`, which has one slot per element of `shape`.
fn zip_rows_into<T: Copy + Sync, U: Copy + Sync, V>(
    dst: &mut [MaybeUninit<V>],
    a: &[T],
    la: &Layout,
    b: &[U],
    lb: &Layout,
    shape: &[usize],
    f: &impl ElementFn2<T, U, V>,
) {
    assert_eq!(dst.len(), numel(shape), "zip_map: output slots");
    // A transposed operand is gathered in tiles first (see `Transposition`).
    if let Some(plan) = Transposition::of(la) {
        let tiles = plan.gathered(a, la.offset(), dst.len());
        return zip_rows_into(dst, &tiles, &Layout::contiguous(shape), b, lb, shape, f);
    }
    if let Some(plan) = Transposition::of(lb) {
        let tiles = plan.gathered(b, lb.offset(), dst.len());
        return zip_rows_into(dst, a, la, &tiles, &Layout::contiguous(shape), shape, f);
    }
    let mut at = 0;
    for_each_row(shape, [la, lb], |[oa, ob], len, [sa, sb]| {
        let row = &mut dst[at..at + len];
        at += len;
        // Rows along which an operand is contiguous or repeats one value (a broadcast: a
        // gradient flowing back from `sum`, a bias) run in the widest vectors.
        match (sa, sb) {
            (1, 1) => crate::simd::zip_widest(&a[oa..oa + len], &b[ob..ob + len], row, f),
            (1, 0) => run_widest(WithSecond(&a[oa..oa + len], b[ob], row, f)),
            (0, 1) => run_widest(WithFirst(a[oa], &b[ob..ob + len], row, f)),
            _ => run_widest(StridedZip { a: (a, oa, sa), b: (b, ob, sb), row, f }),
        }
    });
}

/// `row[j] = f(data[first + j * step])`: a row of a map over a view whose elements are
/// not adjacent (a transposed or permuted tensor). Compiled for the widest vectors like the
/// others, so element functions with fused multiply-adds take the FMA instructions rather
/// than a library call per operation, even where the loads do not vectorise.
struct StridedMap<'a, T, U, F> {
    data: &'a [T],
    first: usize,
    step: usize,
    row: &'a mut [MaybeUninit<U>],
    f: &'a F,
}

impl<T: Copy, U, F: ElementFn<T, U>> WidestLoop for StridedMap<'_, T, U, F> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let f = *self.f;
        for (j, slot) in self.row.iter_mut().enumerate() {
            slot.write(f.call(self.data[self.first + j * self.step]));
        }
    }
}

/// `row[j] = f(a[oa + j sa], b[ob + j sb])`: a row of a zip over views with other strides
/// (see [`StridedMap`]).
struct StridedZip<'a, T, U, V, F> {
    a: (&'a [T], usize, usize),
    b: (&'a [U], usize, usize),
    row: &'a mut [MaybeUninit<V>],
    f: &'a F,
}

impl<T: Copy, U: Copy, V, F: ElementFn2<T, U, V>> WidestLoop for StridedZip<'_, T, U, V, F> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let f = *self.f;
        let ((a, oa, sa), (b, ob, sb)) = (self.a, self.b);
        for (j, d) in self.row.iter_mut().enumerate() {
            d.write(f.call(a[oa + j * sa], b[ob + j * sb]));
        }
    }
}

/// `dst[j] = f(a[j], y)`: a row of a zip whose second operand repeats one value. The value
/// is held by value, so the vector loop keeps it in a register.
struct WithSecond<'a, T, U, V, F>(&'a [T], U, &'a mut [MaybeUninit<V>], &'a F);

impl<T: Copy, U: Copy, V, F: ElementFn2<T, U, V>> WidestLoop for WithSecond<'_, T, U, V, F> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let f = *self.3;
        let y = self.1;
        for (d, &x) in self.2.iter_mut().zip(self.0) {
            d.write(f.call(x, y));
        }
    }
}

/// `dst[j] = f(x, b[j])`: a row of a zip whose first operand repeats one value.
struct WithFirst<'a, T, U, V, F>(T, &'a [U], &'a mut [MaybeUninit<V>], &'a F);

impl<T: Copy, U: Copy, V, F: ElementFn2<T, U, V>> WidestLoop for WithFirst<'_, T, U, V, F> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let f = *self.3;
        let x = self.0;
        for (d, &y) in self.2.iter_mut().zip(self.1) {
            d.write(f.call(x, y));
        }
    }
}

/// Splits the outermost dimension of a loop over `shape` into blocks `(first, count)` for
/// rayon's threads, or `None` when the loop is too small to share.
fn outer_blocks(shape: &[usize]) -> Option<Vec<(usize, usize)>> {
    if shape.len() < 2 || shape[0] < 2 || !start_parallel(numel(shape)) {
        return None;
    }
    // A few blocks per thread, so an uneven split still balances.
    let blocks = shape[0].min(4 * rayon::current_num_threads());
    Some(
        (0..blocks)
            .map(|i| (i * shape[0] / blocks, (i + 1) * shape[0] / blocks - i * shape[0] / blocks))
            .collect(),
    )
}

/// Blocks of outer rows for a reduction: as [`outer_blocks`], but the split depends only on
/// the shape (never on the number of threads), so partial sums, and their rounding, are the
/// same at any thread count.
fn reduction_blocks(shape: &[usize]) -> Option<Vec<(usize, usize)>> {
    /// Enough blocks to share among the threads of a large machine.
    const BLOCKS: usize = 16;
    if shape.len() < 2 || shape[0] < 2 || numel(shape) < THRESHOLD {
        return None;
    }
    // At least a quarter of the threshold's elements per block: a task's cost beside its
    // work stays small (a property of the shape, so the same blocks at any thread count).
    let blocks = shape[0].min(BLOCKS).min(numel(shape) / (THRESHOLD / 4));
    Some(
        (0..blocks)
            .map(|i| (i * shape[0] / blocks, (i + 1) * shape[0] / blocks - i * shape[0] / blocks))
            .collect(),
    )
}

/// Running sums of each row of `n` elements (`cumsum` along the last dimension), from the
/// front or from the back, accumulated in f64 as PyTorch does on the CPU: each row's sums
/// are added in order, one element after another. Sixteen rows at a time are transposed
/// into columns, so that their sixteen running sums advance side by side in vector lanes;
/// blocks of rows run on rayon's threads when long. The same bits at any thread count.
///
/// ```
/// use tapegrad_kernels::strided::running_sums;
/// let x = [1.0f32, 2.0, 3.0, 10.0, 20.0, 30.0];
/// assert_eq!(running_sums(&x, 3, false), vec![1.0, 3.0, 6.0, 10.0, 30.0, 60.0]);
/// assert_eq!(running_sums(&x, 3, true), vec![6.0, 5.0, 3.0, 60.0, 50.0, 30.0]);
/// ```
///
/// # Panics
/// If `x` is not a whole number of rows.
pub fn running_sums<T: Real>(x: &[T], n: usize, from_back: bool) -> Vec<T> {
    if n == 0 || x.is_empty() {
        return vec![T::ZERO; x.len()];
    }
    assert_eq!(x.len() % n, 0, "running_sums: {} elements are not rows of {n}", x.len());
    // Every slot is written below, so the output is not cleared first.
    let mut out: Vec<T> = Vec::with_capacity(x.len());
    let block = |x: &[T], out: &mut [MaybeUninit<T>]| {
        let (mut columns, mut sums) = (vec![T::ZERO; LANES * n], vec![T::ZERO; LANES * n]);
        for (x, out) in x.chunks(LANES * n).zip(out.chunks_mut(LANES * n)) {
            if x.len() < LANES * n {
                for (row, sums) in x.chunks(n).zip(out.chunks_mut(n)) {
                    let mut total = 0.0f64;
                    for step in 0..n {
                        let i = if from_back { n - 1 - step } else { step };
                        total += row[i].widen();
                        sums[i].write(T::round_from(total));
                    }
                }
                continue;
            }
            let dense = |cols| RowMajorAt { start: 0, row_stride: cols };
            transpose_into(x, dense(n), LANES, n, as_uninit(&mut columns), dense(LANES));
            run_widest(ColumnSums { columns: &columns, sums: &mut sums, from_back });
            transpose_into(&sums, dense(LANES), n, LANES, out, dense(n));
        }
    };
    let rows = x.len() / n;
    let slots = &mut out.spare_capacity_mut()[..x.len()];
    if rows > LANES && start_parallel(x.len()) {
        let per_task = (parallel_chunk(x.len()) / n).max(1).next_multiple_of(LANES);
        x.par_chunks(per_task * n)
            .zip(slots.par_chunks_mut(per_task * n))
            .for_each(|(x, o)| block(x, o));
    } else {
        block(x, slots);
    }
    // SAFETY: `block` wrote every slot: each whole group of LANES rows through the
    // transpose of its sums, each row of a short last group element by element.
    unsafe { out.set_len(x.len()) };
    out
}

/// Running products along rows of `n` contiguous elements (`x` is a whole number of rows),
/// each accumulated in f64 and rounded once per element, as PyTorch does on the CPU; rows
/// run on rayon's threads when there are many. The same bits at any thread count.
///
/// ```
/// use tapegrad_kernels::strided::running_products;
/// let x = [1.0f32, 2.0, 3.0, 2.0, 0.0, 5.0];
/// assert_eq!(running_products(&x, 3), vec![1.0, 2.0, 6.0, 2.0, 0.0, 0.0]);
/// ```
///
/// # Panics
/// If `x` is not a whole number of rows.
pub fn running_products<T: Real>(x: &[T], n: usize) -> Vec<T> {
    let mut out = vec![T::ZERO; x.len()];
    if n == 0 || x.is_empty() {
        return out;
    }
    assert_eq!(x.len() % n, 0, "running_products: {} elements are not rows of {n}", x.len());
    let block = |x: &[T], out: &mut [T]| {
        for (row, products) in x.chunks(n).zip(out.chunks_mut(n)) {
            let mut total = 1.0f64;
            for (v, p) in row.iter().zip(products) {
                total *= v.widen();
                *p = T::round_from(total);
            }
        }
    };
    if x.len() / n > 1 && start_parallel(x.len()) {
        let per_task = (parallel_chunk(x.len()) / n).max(1);
        x.par_chunks(per_task * n)
            .zip(out.par_chunks_mut(per_task * n))
            .for_each(|(x, o)| block(x, o));
    } else {
        block(x, &mut out);
    }
    out
}

/// Running sums down `LANES` columns stored side by side (`columns[i * LANES + r]` is
/// element `i` of row `r`), in f64 lanes.
struct ColumnSums<'a, T> {
    columns: &'a [T],
    sums: &'a mut [T],
    from_back: bool,
}

impl<T: Real> WidestLoop for ColumnSums<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let n = self.columns.len() / LANES;
        let mut total = [0.0f64; LANES];
        for step in 0..n {
            let i = if self.from_back { n - 1 - step } else { step };
            let from: &[T; LANES] =
                self.columns[i * LANES..(i + 1) * LANES].try_into().expect("one row of lanes");
            let to: &mut [T; LANES] =
                (&mut self.sums[i * LANES..(i + 1) * LANES]).try_into().expect("one row of lanes");
            for r in 0..LANES {
                total[r] += from[r].widen();
                to[r] = T::round_from(total[r]);
            }
        }
    }
}

/// Running sums kept by the vectorised reductions: one AVX-512 vector of f32. They are
/// combined in a fixed order ([`combine_lanes`]), so every vector width gives the same bits.
pub(crate) const LANES: usize = 16;

/// The sum of [`LANES`] running sums, combined pairwise.
#[inline(always)]
pub(crate) fn combine_lanes<T: Real>(lanes: [T; LANES]) -> T {
    combine_lanes_with(lanes, |a, b| a + b)
}

/// [`LANES`] running results (sums, maxima) combined pairwise by `op`: four dependent
/// steps, where a fold from one end takes fifteen.
#[inline(always)]
pub(crate) fn combine_lanes_with<T: Copy>(lanes: [T; LANES], op: impl Fn(T, T) -> T) -> T {
    // Opaque to the optimiser: seen through, this pairwise tree leads the compiler to build
    // the loop that accumulated `lanes` from two-float vectors, loading the data one or two
    // floats at a time, instead of whole 16-lane vectors.
    let mut lanes = std::hint::black_box(lanes);
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for k in 0..width {
            lanes[k] = op(lanes[k], lanes[k + width]);
        }
    }
    lanes[0]
}

/// A sum that the compiler vectorises: sixteen running sums, combined at the end (a
/// different rounding order from a sequential sum, and usually a more accurate one).
#[inline(always)]
pub(crate) fn lane_sum<T: Real>(x: &[T]) -> T {
    let mut acc = [T::ZERO; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for k in 0..LANES {
            acc[k] += chunk[k];
        }
    }
    rest.iter().fold(combine_lanes(acc), |s, &v| s + v)
}

/// Sums a view of shape `layout.shape()` down to `target`, a shape that broadcasts to it
/// (the reduction that undoes broadcasting). Returns `target`'s elements in row-major order.
///
/// ```
/// use tapegrad_kernels::{layout::Layout, strided::sum_to};
/// let x = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0];
/// assert_eq!(sum_to(&x, &Layout::contiguous(&[2, 3]), &[3]), vec![5.0, 7.0, 9.0]);
/// assert_eq!(sum_to(&x, &Layout::contiguous(&[2, 3]), &[2, 1]), vec![6.0, 15.0]);
/// ```
pub fn sum_to<T: Real>(data: &[T], layout: &Layout, target: &[usize]) -> Vec<T> {
    let size = numel(target);
    if size == 1 && layout.is_contiguous() {
        let all = &data[layout.offset()..layout.offset() + layout.numel()];
        let total = if all.len() >= THRESHOLD {
            // Fixed-size blocks summed in order, whether or not threads share them: the
            // result does not depend on the number of threads.
            let parts: Vec<T> = all.par_chunks(THRESHOLD / 4).map(lane_sum).collect();
            parts.into_iter().fold(T::ZERO, |s, p| s + p)
        } else {
            lane_sum(all)
        };
        return vec![total];
    }
    let lo = Layout::contiguous(target)
        .broadcast_to(layout.shape())
        .expect("sum_to: target must broadcast to the input shape");
    let shape = layout.shape();
    if let Some(blocks) = reduction_blocks(shape).filter(|b| size * b.len() <= numel(shape) / 8) {
        // One partial result per block of outer rows, added in block order.
        let parts: Vec<Vec<T>> = blocks
            .into_par_iter()
            .map(|(start, rows)| {
                let mut sub: Shape = shape.into();
                sub[0] = rows;
                let mut part = vec![T::ZERO; size];
                sum_rows_into(
                    &mut part,
                    data,
                    &layout.narrow(0, start, rows),
                    &lo.narrow(0, start, rows),
                    &sub,
                );
                part
            })
            .collect();
        let mut parts = parts.into_iter();
        let mut out = parts.next().expect("at least one block");
        for part in parts {
            zip_slices_in_place(&mut out, &part, &|o: T, p: T| o + p);
        }
        return out;
    }
    let mut out = vec![T::ZERO; size];
    sum_rows_into(&mut out, data, layout, &lo, shape);
    out
}

/// Adds the elements of `data` (viewed through `layout`, of `shape`) into `out` at the
/// positions `lo` (the target broadcast to `shape`) gives them.
fn sum_rows_into<T: Real>(
    out: &mut [T],
    data: &[T],
    layout: &Layout,
    lo: &Layout,
    shape: &[usize],
) {
    for_each_row(shape, [layout, lo], |[i, o], len, [si, so]| {
        if so == 0 {
            out[o] += if si == 1 {
                lane_sum(&data[i..i + len])
            } else {
                (0..len).map(|j| data[i + j * si]).sum()
            };
        } else if si == 1 && so == 1 {
            zip_slices_in_place(&mut out[o..o + len], &data[i..i + len], &|acc: T, x: T| acc + x);
        } else if si == 0 && so == 1 {
            // A broadcast gradient (the ones `sum()` sends back, say) summed to a row.
            let x = data[i];
            crate::simd::map_in_place_widest(&mut out[o..o + len], &move |acc: T| acc + x);
        } else {
            for j in 0..len {
                out[o + j * so] += data[i + j * si];
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every block length, short (many blocks to a task) and long (one block cut into
    /// pieces across threads), gives each element's two results at their places.
    #[test]
    fn zip3_pairs_into_halves_writes_both_halves_of_every_block() {
        for (blocks, half) in
            [(1, 1), (3, 5), (1, 3 * THRESHOLD + 7), (5000, 3), (2, THRESHOLD + 1)]
        {
            let x: Vec<f64> = (0..2 * blocks * half).map(|i| i as f64).collect();
            let g: Vec<f64> = (0..blocks * half).map(|i| (i % 11) as f64 - 5.0).collect();
            let out =
                zip3_pairs_into_halves(&g, &x, half, |(g, a, c): (f64, f64, f64)| (g * c, g - a));
            for b in 0..blocks {
                for i in 0..half {
                    let (gi, a, c) =
                        (g[b * half + i], x[2 * b * half + i], x[(2 * b + 1) * half + i]);
                    assert_eq!(out[2 * b * half + i], gi * c, "{blocks} x {half}: block {b}, {i}");
                    assert_eq!(out[(2 * b + 1) * half + i], gi - a, "{blocks} x {half}: {b}, {i}");
                }
            }
        }
        assert!(zip3_pairs_into_halves::<f32>(&[], &[], 4, |(g, _, _)| (g, g)).is_empty());
    }

    /// Long enough to be split across threads, with a tail shorter than a vector: every
    /// element picks its own side, infinities and NaN included, whatever the flag's type.
    #[test]
    fn select_picks_each_side_across_chunks() {
        let n = 3 * THRESHOLD + 5;
        let keep: Vec<bool> = (0..n).map(|i| i % 3 == 0).collect();
        let x: Vec<f32> =
            (0..n).map(|i| if i % 7 == 0 { f32::INFINITY } else { i as f32 }).collect();
        let y: Vec<f32> = (0..n).map(|i| if i % 5 == 0 { f32::NAN } else { -(i as f32) }).collect();
        let flags: Vec<f64> = keep.iter().map(|&k| f64::from(u8::from(k))).collect();
        let by_bool = select(&keep, &x, &y, |k| k);
        let by_float = select(&flags, &x, &y, |k: f64| k != 0.0);
        for i in 0..n {
            let want = if keep[i] { x[i] } else { y[i] }.to_bits();
            assert_eq!((by_bool[i].to_bits(), by_float[i].to_bits()), (want, want), "element {i}");
        }
    }

    /// A block of every row, short and long enough to be split across threads, against the
    /// loop over rows.
    #[test]
    fn blocks_of_rows_accumulate_in_place() {
        for (rows, row_len, at, block) in [(1, 10, 3, 4), (7, 10, 0, 10), (5000, 48, 16, 24)] {
            // Rows of the source twice a block apart, read as adjacent elements, as one value
            // repeated (a broadcast), and as every other element.
            let stride = 2 * block;
            let src: Vec<f64> = (0..rows * stride).map(|i| ((i * 37) % 101) as f64).collect();
            let start: Vec<f64> = (0..rows * row_len).map(|i| i as f64).collect();
            for step in [1, 0, 2] {
                let blocks = Blocks { data: &src[..], start: 0, stride, block, step };
                let mut got = start.clone();
                zip_block_in_place(&mut got, row_len, at, blocks, |a: f64, b: f64| a - b);
                let mut want = start.clone();
                for o in 0..rows {
                    for j in 0..block {
                        want[o * row_len + at + j] -= src[o * stride + j * step];
                    }
                }
                assert_eq!(
                    got, want,
                    "{rows} rows of {row_len}, block {block} at {at}, step {step}"
                );
            }
        }
    }

    /// Views with unit, zero and other strides, added into a contiguous destination, against
    /// the element-by-element sum over the view's offsets.
    #[test]
    fn views_of_any_strides_accumulate_in_place() {
        let base = Layout::contiguous(&[6, 5, 7]);
        let views = [
            base.clone(),
            base.permute(&[2, 0, 1]),
            base.transpose(0, 2),
            Layout::contiguous(&[5, 1]).broadcast_to(&[6, 5, 7]).unwrap(),
            Layout::contiguous(&[7]).broadcast_to(&[6, 5, 7]).unwrap(),
            Layout::contiguous(&[]).broadcast_to(&[3, 4]).unwrap(),
        ];
        let src: Vec<f32> = (0..210).map(|i| ((i * 37) % 101) as f32 - 50.0).collect();
        for view in views {
            let start: Vec<f32> = (0..view.numel()).map(|i| i as f32 * 0.25).collect();
            let mut got = start.clone();
            zip_view_in_place(&mut got, &src, &view, |a: f32, b: f32| a - 2.0 * b);
            let want: Vec<f32> =
                start.iter().zip(view.offsets()).map(|(&a, o)| a - 2.0 * src[o]).collect();
            assert_eq!(got, want, "view {:?} strides {:?}", view.shape(), view.strides());
        }
        // Long enough to be split across threads by leading slices.
        let big = Layout::contiguous(&[120, 50, 70]);
        let src: Vec<f64> = (0..big.numel()).map(|i| ((i * 37) % 101) as f64).collect();
        for view in [
            big.permute(&[1, 0, 2]),
            Layout::contiguous(&[1, 70]).broadcast_to(&[50, 120, 70]).unwrap(),
        ] {
            let mut got = vec![1.0; view.numel()];
            zip_view_in_place(&mut got, &src, &view, |a: f64, b: f64| a + b);
            let want: Vec<f64> = view.offsets().map(|o| 1.0 + src[o]).collect();
            assert_eq!(got, want, "view {:?}", view.strides());
        }
    }

    /// Transposed and permuted views (tiles and their edges, offsets, broadcast and size-1
    /// dimensions, threaded and not) through every loop that gathers them in tiles, against
    /// the elements at the view's offsets.
    #[test]
    fn transposed_views_match_their_offsets() {
        let mut views = vec![];
        for (rows, cols) in [(2, 3), (16, 16), (17, 33), (64, 40), (700, 300)] {
            let t = Layout::contiguous(&[rows + 1, cols + 2]).narrow(0, 1, rows).narrow(1, 2, cols);
            views.push(t.transpose(0, 1));
        }
        let four = Layout::contiguous(&[6, 19, 5, 21]);
        for dims in [[0, 3, 2, 1], [2, 0, 3, 1], [1, 3, 0, 2], [0, 2, 1, 3]] {
            views.push(four.permute(&dims));
        }
        views.push(
            Layout::contiguous(&[1, 40, 50]).broadcast_to(&[3, 40, 50]).unwrap().transpose(1, 2),
        );
        views.push(Layout::contiguous(&[40, 1, 50]).transpose(0, 2));
        views.push(Layout::contiguous(&[96, 64, 40]).permute(&[2, 1, 0]));
        for empty in [Layout::contiguous(&[0, 5, 7]), Layout::contiguous(&[5, 0, 7])] {
            let view = empty.permute(&[0, 2, 1]);
            assert!(Transposition::of(&view).is_none());
            assert_eq!(to_contiguous::<f32>(&[], &view), Vec::<f32>::new());
            assert_eq!(map::<f32, f32>(&[], &view, |v| v), Vec::<f32>::new());
        }
        for view in &views {
            let len = view.offsets().max().unwrap() + 1;
            let x: Vec<f32> = (0..len).map(|i| ((i * 37) % 1001) as f32 - 500.0).collect();
            let at = |o: usize| x[o];
            let want: Vec<f32> = view.offsets().map(at).collect();
            let label = format!("view {:?} strides {:?}", view.shape(), view.strides());
            assert!(
                Transposition::of(view).is_some() || view.strides().last() == Some(&1),
                "{label}"
            );
            assert_eq!(to_contiguous(&x, view), want, "to_contiguous, {label}");
            let ints: Vec<i64> = (0..len as i64).collect();
            let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            assert_eq!(
                to_contiguous(&ints, view),
                view.offsets().map(|o| o as i64).collect::<Vec<_>>()
            );
            assert_eq!(
                to_contiguous(&bytes, view),
                view.offsets().map(|o| bytes[o]).collect::<Vec<_>>()
            );
            let doubled: Vec<f32> = want.iter().map(|v| v * 2.0).collect();
            assert_eq!(map(&x, view, |v| v * 2.0), doubled, "map, {label}");
            let whole = Layout::contiguous(view.shape());
            let ramp: Vec<f32> = (0..view.numel()).map(|i| i as f32).collect();
            let minus: Vec<f32> = want.iter().zip(&ramp).map(|(w, r)| w - r).collect();
            let shape = view.shape();
            assert_eq!(
                zip_map(&x, view, &ramp, &whole, shape, |a, b| a - b),
                minus,
                "zip, {label}"
            );
            assert_eq!(
                zip_map(&ramp, &whole, &x, view, shape, |b, a| a - b),
                minus,
                "zip, {label}"
            );
            let mut acc = ramp.clone();
            zip_view_in_place(&mut acc, &x, view, |r: f32, v: f32| v - r);
            assert_eq!(acc, minus, "in place, {label}");
        }
    }

    /// Inputs read in place (slices of wider rows), contiguous ones and empty ones, joined
    /// on one thread and on several, against the rows put together one by one.
    #[test]
    fn joined_blocks_match_the_rows_of_each_input() {
        for outer in [1usize, 3, 2000] {
            let wide: Vec<i32> = (0..outer as i32 * 10).collect();
            let narrow: Vec<i32> = (0..outer as i32 * 3).map(|v| -v).collect();
            let parts = [
                Blocks { data: &wide[..], start: 4, stride: 10, block: 5, step: 1 },
                Blocks { data: &[][..], start: 7, stride: 3, block: 0, step: 1 },
                Blocks { data: &narrow[..], start: 0, stride: 3, block: 3, step: 1 },
                Blocks { data: &wide[..], start: 0, stride: 10, block: 1, step: 1 },
                // One value repeated, and every other element.
                Blocks { data: &narrow[..], start: 1, stride: 3, block: 4, step: 0 },
                Blocks { data: &wide[..], start: 1, stride: 10, block: 3, step: 3 },
            ];
            let mut want = vec![];
            for o in 0..outer {
                want.extend_from_slice(&wide[o * 10 + 4..o * 10 + 9]);
                want.extend_from_slice(&narrow[o * 3..o * 3 + 3]);
                want.push(wide[o * 10]);
                want.extend([narrow[o * 3 + 1]; 4]);
                want.extend([wide[o * 10 + 1], wide[o * 10 + 4], wide[o * 10 + 7]]);
            }
            assert_eq!(join_blocks(&parts, outer), want, "{outer} rows");
        }
    }

    /// Running sums through the transposed blocks of sixteen rows and the rows left over,
    /// on one thread and on several, against one f64 sum per row in order: the same bits.
    #[test]
    fn running_sums_match_a_sum_in_order() {
        for (rows, n) in [(1usize, 1usize), (3, 40), (16, 5), (37, 17), (2000, 300)] {
            let x: Vec<f32> =
                (0..rows * n).map(|i| ((i * 7919) % 1013) as f32 / 7.0 - 70.0).collect();
            for from_back in [false, true] {
                let mut want = vec![0.0f32; x.len()];
                for (row, out) in x.chunks(n).zip(want.chunks_mut(n)) {
                    let mut total = 0.0f64;
                    for step in 0..n {
                        let i = if from_back { n - 1 - step } else { step };
                        total += row[i] as f64;
                        out[i] = total as f32;
                    }
                }
                let got = running_sums(&x, n, from_back);
                assert_eq!(got, want, "{rows} rows of {n}, from the back: {from_back}");
                let x64: Vec<f64> = x.iter().map(|&v| v as f64 * 1.1).collect();
                let got64 = running_sums(&x64, n, from_back);
                let mut want64 = vec![0.0; x.len()];
                for (row, out) in x64.chunks(n).zip(want64.chunks_mut(n)) {
                    let mut total = 0.0;
                    for step in 0..n {
                        let i = if from_back { n - 1 - step } else { step };
                        total += row[i];
                        out[i] = total;
                    }
                }
                assert_eq!(got64, want64, "f64, {rows} rows of {n}");
            }
        }
    }

    /// Sums over the rows or along them, small and large enough for blocks of rows on
    /// threads: the same bits on one thread and on two, and the sums to f32's precision.
    #[test]
    fn sums_to_a_shape_are_the_same_at_any_thread_count() {
        let pools = [1, 2].map(|n| rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap());
        for (rows, cols) in [(7usize, 5usize), (256, 256), (64, 1024), (3000, 40), (5, 20_000)] {
            let x: Vec<f32> =
                (0..rows * cols).map(|i| ((i * 7919) % 1013) as f32 / 100.0 - 5.0).collect();
            let layout = Layout::contiguous(&[rows, cols]);
            for target in [[1, cols], [rows, 1]] {
                let [one, two] =
                    pools.each_ref().map(|p| p.install(|| sum_to(&x, &layout, &target)));
                let what = format!("[{rows}, {cols}] to {target:?}");
                assert_eq!(one, two, "{what}");
                let mut want = vec![0.0f64; numel(&target)];
                for (i, &v) in x.iter().enumerate() {
                    let (r, c) = (i / cols, i % cols);
                    want[if target[0] == 1 { c } else { r }] += v as f64;
                }
                for (k, (&got, &w)) in one.iter().zip(&want).enumerate() {
                    let bound = 1e-6 * (rows * cols) as f64 / numel(&target) as f64 * 5.0;
                    assert!((got as f64 - w).abs() <= bound, "{what}: [{k}] {got} vs {w}");
                }
            }
        }
    }

    /// Broadcast inputs (a gradient `sum()` sent back, a per-row value) summed to a row, a
    /// column and a total: the same bits at any thread count, the value times the count.
    #[test]
    fn broadcast_inputs_sum_to_a_shape() {
        let pools = [1, 2].map(|n| rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap());
        for (rows, cols) in [(3usize, 5usize), (1024, 512), (5000, 20)] {
            let column: Vec<f32> = (0..rows).map(|r| (r % 7) as f32 * 0.25 - 0.5).collect();
            let inputs = [
                (vec![0.75f32], Layout::contiguous(&[]).broadcast_to(&[rows, cols]).unwrap()),
                (
                    column.clone(),
                    Layout::contiguous(&[rows, 1]).broadcast_to(&[rows, cols]).unwrap(),
                ),
            ];
            for (data, layout) in &inputs {
                let value = |r: usize| if data.len() == 1 { data[0] } else { data[r] };
                for target in [vec![1, cols], vec![cols], vec![rows, 1], vec![1]] {
                    let [one, two] =
                        pools.each_ref().map(|p| p.install(|| sum_to(data, layout, &target)));
                    let what = format!("{} values over [{rows}, {cols}] to {target:?}", data.len());
                    assert_eq!(one, two, "{what}");
                    let want: Vec<f64> = match target.as_slice() {
                        [_, 1] => (0..rows).map(|r| value(r) as f64 * cols as f64).collect(),
                        [1] => vec![(0..rows).map(|r| value(r) as f64).sum::<f64>() * cols as f64],
                        _ => vec![(0..rows).map(|r| value(r) as f64).sum(); cols],
                    };
                    for (&got, &w) in one.iter().zip(&want) {
                        assert!(
                            (got as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()),
                            "{what}: {got} vs {w}"
                        );
                    }
                }
            }
        }
    }

    /// Large enough for the threaded paths, with a broadcast operand and a permuted one.
    #[test]
    fn threaded_paths_match_plain_loops() {
        let shape = [64usize, 16, 9, 9];
        let n = numel(&shape);
        assert!(crate::parallel::worth_it(n) || rayon::current_num_threads() == 1);
        let x: Vec<f64> = (0..n).map(|i| ((i * 7919) % 1000) as f64 / 100.0 - 5.0).collect();
        let bias: Vec<f64> = (0..16).map(|c| c as f64 * 0.5).collect();
        let lx = Layout::contiguous(&shape);
        // The same elements seen as [16, 64, 9, 9] transposed back: non-contiguous.
        let lt = Layout::contiguous(&[16, 64, 9, 9]).transpose(0, 1);
        let lb = Layout::contiguous(&[1, 16, 1, 1]).broadcast_to(&shape).unwrap();
        let plain = |i: usize| {
            let c = (i / 81) % 16;
            (c, ((c * 64 + i / (16 * 81)) * 81) + i % 81)
        };

        let sum = zip_map(&x, &lx, &bias, &lb, &shape, |a, b| a + b);
        let from_t = zip_map(&x, &lt, &bias, &lb, &shape, |a, b| a * b);
        for i in 0..n {
            let (c, t) = plain(i);
            assert_eq!(sum[i], x[i] + bias[c]);
            assert_eq!(from_t[i], x[t] * bias[c]);
        }

        let per_channel = sum_to(&x, &lx, &[1, 16, 1, 1]);
        let per_image = sum_to(&x, &lx, &[64, 1, 1, 1]);
        let total = sum_to(&x, &lx, &[1]);
        let mut want_c = [0.0; 16];
        let mut want_i = [0.0; 64];
        for (i, &v) in x.iter().enumerate() {
            want_c[(i / 81) % 16] += v;
            want_i[i / (16 * 81)] += v;
        }
        for (got, want) in per_channel.iter().zip(&want_c).chain(per_image.iter().zip(&want_i)) {
            assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        }
        assert!((total[0] - x.iter().sum::<f64>()).abs() < 1e-9);
    }

    /// Rows where one operand repeats a value (the gradient `sum` sends back, a per-row
    /// scale) run in vectors: same bits as the function applied element by element.
    #[test]
    fn rows_with_a_repeated_operand_match_the_scalar_function() {
        let f = |g: f32, x: f32| g * crate::fast_math::exp_f32(-0.5 * x * x);
        let (rows, cols) = (37usize, 101usize);
        let x: Vec<f32> = (0..rows * cols).map(|i| (i % 97) as f32 * 0.11 - 5.0).collect();
        let lx = Layout::contiguous(&[rows, cols]);
        let per_row: Vec<f32> = (0..rows).map(|r| r as f32 * 0.25 - 3.0).collect();
        let scalar = Layout::contiguous(&[]).broadcast_to(&[rows, cols]).unwrap();
        let column = Layout::contiguous(&[rows, 1]).broadcast_to(&[rows, cols]).unwrap();
        let expect = |g: &dyn Fn(usize) -> f32| -> Vec<u32> {
            (0..rows * cols).map(|i| f(g(i), x[i]).to_bits()).collect()
        };
        let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
        let shape = [rows, cols];
        assert_eq!(bits(zip_map(&[1.5], &scalar, &x, &lx, &shape, f)), expect(&|_| 1.5));
        assert_eq!(
            bits(zip_map(&per_row, &column, &x, &lx, &shape, f)),
            expect(&|i| per_row[i / cols])
        );
        // The repeated operand second.
        let swapped = |x: f32, g: f32| f(g, x);
        assert_eq!(
            bits(zip_map(&x, &lx, &per_row, &column, &shape, swapped)),
            expect(&|i| per_row[i / cols])
        );
    }
}
