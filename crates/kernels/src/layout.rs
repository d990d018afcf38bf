//! Shapes, strides and views: how an n-dimensional index maps into flat storage.

use smallvec::SmallVec;

/// A tensor shape (or a stride vector): inline for up to four dimensions, so that the
/// common case allocates nothing.
///
/// ```
/// use tapegrad_kernels::layout::{Shape, broadcast_shapes};
/// let s: Shape = broadcast_shapes(&[2, 1, 4], &[3, 1]).unwrap();
/// assert_eq!(s.as_slice(), &[2, 3, 4]);
/// assert!(!s.spilled()); // inline: no heap allocation
/// ```
pub type Shape = SmallVec<[usize; 4]>;

/// The most elements a shape may have: what a pointer offset (and a `Vec`) can address.
/// Every [`Layout`] and every tensor stays within it, so element counts never wrap.
///
/// ```
/// assert_eq!(tapegrad_kernels::layout::MAX_NUMEL, isize::MAX as usize);
/// ```
pub const MAX_NUMEL: usize = isize::MAX as usize;

/// Number of elements of a shape (1 for a scalar of shape `[]`), or `None` if the product of
/// its sizes exceeds [`MAX_NUMEL`]. A shape with a zero size is empty, however large the
/// others.
///
/// ```
/// use tapegrad_kernels::layout::checked_numel;
/// assert_eq!(checked_numel(&[2, 3, 4]), Some(24));
/// assert_eq!(checked_numel(&[(1 << 63) + 1, 2]), None); // wraps to 2 in plain arithmetic
/// assert_eq!(checked_numel(&[0, 1 << 40, 1 << 40]), Some(0));
/// ```
#[inline]
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    match shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)) {
        Some(n) if n <= MAX_NUMEL => Some(n),
        _ if shape.contains(&0) => Some(0),
        _ => None,
    }
}

/// Number of elements of a shape (1 for a scalar of shape `[]`).
///
/// # Panics
/// If the product of the sizes exceeds [`MAX_NUMEL`] (it never wraps); operations check
/// their shapes first (tapegrad-tape's `try_numel`) and report which operation asked.
///
/// ```
/// assert_eq!(tapegrad_kernels::layout::numel(&[2, 3, 4]), 24);
/// assert_eq!(tapegrad_kernels::layout::numel(&[]), 1);
/// ```
#[inline]
#[track_caller]
pub fn numel(shape: &[usize]) -> usize {
    match checked_numel(shape) {
        Some(n) => n,
        None => too_many_elements(shape),
    }
}

#[cold]
#[track_caller]
fn too_many_elements(shape: &[usize]) -> ! {
    panic!("{}", too_many_elements_message(shape))
}

/// The message for a shape whose element count exceeds [`MAX_NUMEL`], shared by every
/// error that reports one.
///
/// ```
/// let m = tapegrad_kernels::layout::too_many_elements_message(&[1 << 40, 1 << 40]);
/// assert!(m.contains("has too many elements"));
/// ```
pub fn too_many_elements_message(shape: &[usize]) -> String {
    format!("shape {shape:?} has too many elements (the product of its sizes exceeds {MAX_NUMEL})")
}

/// Whether two shapes are equal, compared in line: slices' `==` calls `memcmp`, which costs
/// more than the comparison itself for the few dimensions of a shape, and the backward
/// sweep compares shapes at every step.
///
/// ```
/// use tapegrad_kernels::layout::same_shape;
/// assert!(
///     same_shape(&[2, 3], &[2, 3]) && !same_shape(&[2, 3], &[3, 2]) && !same_shape(&[1], &[])
/// );
/// ```
#[inline]
pub fn same_shape(a: &[usize], b: &[usize]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// Row-major strides of a contiguous tensor of `shape`.
///
/// ```
/// assert_eq!(tapegrad_kernels::layout::contiguous_strides(&[2, 3, 4]).as_slice(), &[12, 4, 1]);
/// ```
#[inline]
pub fn contiguous_strides(shape: &[usize]) -> Shape {
    // Every recorded op builds one of these; for the usual ranks the strides are written
    // into a plain array and handed over whole, which costs a fraction of pushing.
    if shape.len() <= INLINE_RANK {
        let mut buf = [0; INLINE_RANK];
        let mut stride: usize = 1;
        for (s, &n) in buf[..shape.len()].iter_mut().zip(shape).rev() {
            *s = stride;
            stride = stride.wrapping_mul(n); // wraps only past an empty dimension's product
        }
        return SmallVec::from_buf_and_len(buf, shape.len());
    }
    let mut strides = Shape::new();
    let mut stride: usize = 1;
    for &n in shape.iter().rev() {
        strides.push(stride);
        stride = stride.wrapping_mul(n); // wraps only past an empty dimension's product
    }
    strides.reverse();
    strides
}

/// Dimensions a [`Shape`] holds without allocating.
const INLINE_RANK: usize = 4;

/// `dims` as a [`Shape`]: a straight array copy for the usual ranks.
///
/// ```
/// assert_eq!(tapegrad_kernels::layout::shape_of(&[2, 3]).as_slice(), &[2, 3]);
/// ```
#[inline]
pub fn shape_of(dims: &[usize]) -> Shape {
    // Spelled out per rank: a copy of `dims.len()` elements would be a `memcpy` call.
    let buf = match *dims {
        [] => [0; INLINE_RANK],
        [a] => [a, 0, 0, 0],
        [a, b] => [a, b, 0, 0],
        [a, b, c] => [a, b, c, 0],
        [a, b, c, d] => [a, b, c, d],
        _ => return SmallVec::from_slice(dims),
    };
    SmallVec::from_buf_and_len(buf, dims.len())
}

/// The shape two shapes broadcast to under NumPy's rules, or `None` if they are
/// incompatible. Dimensions are aligned from the right; a size-1 dimension stretches.
///
/// ```
/// use tapegrad_kernels::layout::broadcast_shapes;
/// assert_eq!(broadcast_shapes(&[3, 1], &[4]).unwrap().as_slice(), &[3, 4]);
/// assert!(broadcast_shapes(&[3], &[4]).is_none());
/// ```
#[inline]
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Shape> {
    let n = a.len().max(b.len());
    let mut out: Shape = SmallVec::from_elem(0, n);
    for i in 0..n {
        let da = if i < n - a.len() { 1 } else { a[i - (n - a.len())] };
        let db = if i < n - b.len() { 1 } else { b[i - (n - b.len())] };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}
/// Strides for `new` over the elements of a layout of `(shape, strides)` (at least two
/// elements), if there are any: the old dimensions are taken in runs that are one
/// arithmetic sequence (each dimension's stride the next one's stride times its size;
/// dimensions of size 1 join any run), from the last, and the new dimensions must split each
/// run exactly, the last of them taking the run's own stride.
fn view_strides((shape, strides): (&[usize], &[usize]), new: &[usize]) -> Option<Vec<usize>> {
    let mut out = vec![0; new.len()];
    // New dimensions still to place, from the last.
    let mut next = new.len();
    let mut run_stride = *strides.last()?;
    let (mut run_len, mut placed) = (1usize, 1usize);
    for d in (0..shape.len()).rev() {
        run_len *= shape[d];
        let run_ends = d == 0 || (shape[d - 1] != 1 && strides[d - 1] != run_len * run_stride);
        if !run_ends {
            continue;
        }
        while next > 0 && (placed < run_len || new[next - 1] == 1) {
            next -= 1;
            out[next] = placed * run_stride;
            placed *= new[next];
        }
        if placed != run_len {
            return None;
        }
        if d > 0 {
            (run_stride, run_len, placed) = (strides[d - 1], 1, 1);
        }
    }
    (next == 0).then_some(out)
}

/// How a tensor's elements sit in its storage: shape, strides (in elements) and offset.
///
/// Views such as transpose and broadcast share storage and only change the layout; a
/// stride of 0 repeats an element along a broadcast dimension.
///
/// ```
/// use tapegrad_kernels::layout::Layout;
/// let l = Layout::contiguous(&[2, 3]);
/// assert!(l.is_contiguous());
/// assert!(!l.transpose(0, 1).is_contiguous());
/// ```
#[derive(Debug, PartialEq, Eq)]
pub struct Layout {
    shape: Shape,
    strides: Shape,
    offset: usize,
}

impl Clone for Layout {
    // By slice copy: `SmallVec`'s own `clone` goes element by element, and layouts are
    // cloned on every recorded op.
    #[inline]
    fn clone(&self) -> Self {
        Layout {
            shape: shape_of(&self.shape),
            strides: shape_of(&self.strides),
            offset: self.offset,
        }
    }
}

impl Layout {
    /// The row-major layout of `shape` starting at offset 0.
    ///
    /// ```
    /// let l = tapegrad_kernels::layout::Layout::contiguous(&[4, 5]);
    /// assert_eq!(l.strides(), &[5, 1]);
    /// ```
    ///
    /// # Panics
    /// If `shape` has more than [`MAX_NUMEL`] elements.
    #[inline]
    #[track_caller]
    pub fn contiguous(shape: &[usize]) -> Self {
        let rank = shape.len();
        if rank > INLINE_RANK {
            numel(shape);
            return Layout {
                shape: shape_of(shape),
                strides: contiguous_strides(shape),
                offset: 0,
            };
        }
        // Every recorded op's result takes this path: sizes, strides and the element count's
        // check in one pass over fixed-size arrays, with no call and no per-rank dispatch.
        let (mut dims, mut strides) = ([0; INLINE_RANK], [0; INLINE_RANK]);
        let mut count: usize = 1;
        let mut overflowed = false;
        for i in (0..INLINE_RANK).rev() {
            if i < rank {
                dims[i] = shape[i];
                strides[i] = count;
                let (next, o) = count.overflowing_mul(shape[i]);
                (count, overflowed) = (next, overflowed | o);
            }
        }
        if overflowed || count > MAX_NUMEL {
            // Panics unless an empty dimension makes the count zero (the strides past it
            // wrapped, as `contiguous_strides` lets them).
            numel(shape);
        }
        Layout {
            shape: SmallVec::from_buf_and_len(dims, rank),
            strides: SmallVec::from_buf_and_len(strides, rank),
            offset: 0,
        }
    }

    /// A layout from its parts. The caller guarantees every index stays inside the storage.
    ///
    /// ```
    /// let l = tapegrad_kernels::layout::Layout::from_parts(&[2], &[3], 1);
    /// assert_eq!(l.offset(), 1);
    /// ```
    ///
    /// # Panics
    /// If the ranks differ or `shape` has more than [`MAX_NUMEL`] elements.
    #[track_caller]
    pub fn from_parts(shape: &[usize], strides: &[usize], offset: usize) -> Self {
        assert_eq!(shape.len(), strides.len(), "layout: shape and strides differ in rank");
        numel(shape);
        Layout { shape: shape_of(shape), strides: shape_of(strides), offset }
    }

    /// The shape.
    ///
    /// ```
    /// assert_eq!(tapegrad_kernels::layout::Layout::contiguous(&[2, 3]).shape(), &[2, 3]);
    /// ```
    #[inline]
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Strides in elements, one per dimension.
    ///
    /// ```
    /// assert_eq!(tapegrad_kernels::layout::Layout::contiguous(&[2, 3]).strides(), &[3, 1]);
    /// ```
    #[inline]
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    /// Offset of the first element in the storage.
    ///
    /// ```
    /// assert_eq!(tapegrad_kernels::layout::Layout::contiguous(&[2]).offset(), 0);
    /// ```
    #[inline]
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Number of elements.
    ///
    /// ```
    /// assert_eq!(tapegrad_kernels::layout::Layout::contiguous(&[2, 3]).numel(), 6);
    /// ```
    #[inline]
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    /// Whether the elements occupy `storage[offset..offset + numel]` in row-major order.
    /// Strides of size-1 dimensions do not matter.
    ///
    /// ```
    /// use tapegrad_kernels::layout::Layout;
    /// assert!(Layout::from_parts(&[1, 3], &[0, 1], 2).is_contiguous());
    /// ```
    #[inline]
    pub fn is_contiguous(&self) -> bool {
        let mut expected: usize = 1;
        for (&n, &s) in self.shape.iter().zip(&self.strides).rev() {
            if n != 1 && s != expected {
                return false;
            }
            expected = expected.wrapping_mul(n);
        }
        true
    }

    /// Whether two positions of this view reach the same element: a dimension of size
    /// above 1 with stride 0, as broadcasting makes (the only overlapping views tapegrad
    /// builds; permutes, narrows and steps never overlap).
    ///
    /// ```
    /// use tapegrad_kernels::layout::Layout;
    /// assert!(Layout::from_parts(&[2, 3], &[0, 1], 0).overlaps());
    /// assert!(!Layout::from_parts(&[1, 3], &[0, 1], 0).overlaps());
    /// assert!(!Layout::contiguous(&[2, 3]).permute(&[1, 0]).overlaps());
    /// ```
    #[inline]
    pub fn overlaps(&self) -> bool {
        self.shape.iter().zip(&self.strides).any(|(&n, &s)| n > 1 && s == 0)
    }

    /// The view of this layout broadcast to `target` (stride 0 on stretched dimensions),
    /// or `None` if the shapes are not broadcast-compatible in that direction.
    ///
    /// ```
    /// use tapegrad_kernels::layout::Layout;
    /// let l = Layout::contiguous(&[3, 1]).broadcast_to(&[2, 3, 4]).unwrap();
    /// assert_eq!(l.strides(), &[0, 1, 0]);
    /// ```
    ///
    /// # Panics
    /// If `target` has more than [`MAX_NUMEL`] elements.
    #[track_caller]
    pub fn broadcast_to(&self, target: &[usize]) -> Option<Layout> {
        numel(target);
        if target.len() < self.shape.len() {
            return None;
        }
        let lead = target.len() - self.shape.len();
        let mut strides: Shape = SmallVec::from_elem(0, target.len());
        for (i, &t) in target.iter().enumerate() {
            if i < lead {
                continue;
            }
            let (n, s) = (self.shape[i - lead], self.strides[i - lead]);
            strides[i] = if n == t {
                s
            } else if n == 1 {
                0
            } else {
                return None;
            };
        }
        Some(Layout { shape: shape_of(target), strides, offset: self.offset })
    }

    /// The view with dimensions `a` and `b` swapped. Panics if either is out of range.
    ///
    /// ```
    /// let l = tapegrad_kernels::layout::Layout::contiguous(&[2, 3]).transpose(0, 1);
    /// assert_eq!((l.shape(), l.strides()), (&[3, 2][..], &[1, 3][..]));
    /// ```
    #[track_caller]
    pub fn transpose(&self, a: usize, b: usize) -> Layout {
        let mut l = self.clone();
        l.shape.swap(a, b);
        l.strides.swap(a, b);
        l
    }

    /// The view whose dimension `i` is this layout's dimension `dims[i]`.
    /// `dims` must be a permutation of `0..rank`.
    ///
    /// ```
    /// let l = tapegrad_kernels::layout::Layout::contiguous(&[2, 3, 4]).permute(&[2, 0, 1]);
    /// assert_eq!(l.shape(), &[4, 2, 3]);
    /// ```
    ///
    /// # Panics
    /// If `dims` is not a permutation of `0..rank`.
    #[track_caller]
    pub fn permute(&self, dims: &[usize]) -> Layout {
        let rank = self.shape.len();
        let mut seen: Shape = SmallVec::from_elem(0, rank);
        for &d in dims {
            assert!(d < rank && seen[d] == 0, "layout: {dims:?} is not a permutation of 0..{rank}");
            seen[d] = 1;
        }
        assert_eq!(dims.len(), rank, "layout: {dims:?} is not a permutation of 0..{rank}");
        Layout {
            shape: dims.iter().map(|&d| self.shape[d]).collect(),
            strides: dims.iter().map(|&d| self.strides[d]).collect(),
            offset: self.offset,
        }
    }

    /// The same elements under a new shape, as a view of the same storage where strides can
    /// express it (as PyTorch's `view`): always for a contiguous layout, and for others when
    /// each run of dimensions that the new shape merges or splits is evenly strided (the
    /// time-major rows of a recurrent layer's output, a broadcast row split in two); `None`
    /// otherwise, and when the element counts differ.
    ///
    /// ```
    /// use tapegrad_kernels::layout::Layout;
    /// let l = Layout::contiguous(&[2, 3]).reshaped(&[3, 2]).unwrap();
    /// assert_eq!(l.strides(), &[2, 1]);
    /// // Every other row of a [4, 3] matrix, merged into one run of six: rows 2 apart, no
    /// // view of them is one run; split into [2, 3, 1] it is.
    /// let rows = Layout::from_parts(&[2, 3], &[6, 1], 0);
    /// assert!(rows.reshaped(&[6]).is_none());
    /// assert_eq!(rows.reshaped(&[2, 3, 1]).unwrap().strides(), &[6, 1, 1]);
    /// // [35, 32, 512] rows of a buffer that interleaves two such tensors: one [1120, 512] view.
    /// let h = Layout::from_parts(&[35, 32, 512], &[32 * 1024, 1024, 1], 0);
    /// assert_eq!(h.reshaped(&[1120, 512]).unwrap().strides(), &[1024, 1]);
    /// ```
    pub fn reshaped(&self, shape: &[usize]) -> Option<Layout> {
        if checked_numel(shape)? != self.numel() {
            return None;
        }
        if self.numel() == 0 {
            // No element is reached, so no offset is needed (and a view's offset into an empty
            // storage could be past its end).
            return Some(Layout::contiguous(shape));
        }
        if self.is_contiguous() || self.numel() == 1 {
            let mut l = Layout::contiguous(shape);
            l.offset = self.offset;
            return Some(l);
        }
        let strides = view_strides((&self.shape, &self.strides), shape)?;
        Some(Layout { shape: shape_of(shape), strides: shape_of(&strides), offset: self.offset })
    }

    /// The view of `len` elements of dimension `dim` starting at `start`.
    ///
    /// ```
    /// let l = tapegrad_kernels::layout::Layout::contiguous(&[4, 3]).narrow(0, 1, 2);
    /// assert_eq!((l.shape(), l.offset()), (&[2, 3][..], 3));
    /// ```
    ///
    /// # Panics
    /// If `dim` is out of range or `start + len` exceeds the dimension's size.
    #[track_caller]
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Layout {
        assert!(
            dim < self.shape.len()
                && start.checked_add(len).is_some_and(|end| end <= self.shape[dim]),
            "layout: narrow({dim}, {start}, {len}) is outside shape {:?}",
            self.shape
        );
        let mut l = self.clone();
        l.offset += start * l.strides[dim];
        l.shape[dim] = len;
        l
    }

    /// Storage offsets of every element in row-major order of the view.
    ///
    /// ```
    /// let l = tapegrad_kernels::layout::Layout::contiguous(&[2, 2]).transpose(0, 1);
    /// assert_eq!(l.offsets().collect::<Vec<_>>(), vec![0, 2, 1, 3]);
    /// ```
    pub fn offsets(&self) -> Offsets<'_> {
        Offsets {
            layout: self,
            index: SmallVec::from_elem(0, self.shape.len()),
            next: if self.numel() == 0 { None } else { Some(self.offset) },
        }
    }
}

/// Iterator over the storage offsets of a [`Layout`], in row-major order.
///
/// ```
/// let l = tapegrad_kernels::layout::Layout::contiguous(&[3]);
/// assert_eq!(l.offsets().count(), 3);
/// ```
pub struct Offsets<'a> {
    layout: &'a Layout,
    index: Shape,
    next: Option<usize>,
}

impl Iterator for Offsets<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let current = self.next?;
        let shape = &self.layout.shape;
        let strides = &self.layout.strides;
        let mut off = current;
        let mut d = shape.len();
        loop {
            if d == 0 {
                self.next = None;
                break;
            }
            d -= 1;
            self.index[d] += 1;
            off += strides[d];
            if self.index[d] < shape[d] {
                self.next = Some(off);
                break;
            }
            off -= strides[d] * shape[d];
            self.index[d] = 0;
        }
        Some(current)
    }
}

#[cfg(test)]
mod tests {
    use super::{Layout, MAX_NUMEL, contiguous_strides};

    /// The short path for ranks up to four and the general one agree, on every rank, on
    /// empty dimensions (strides past one whose products would overflow) and on the limit.
    #[test]
    fn contiguous_layouts_of_every_rank_have_row_major_strides() {
        let shapes: [&[usize]; 10] = [
            &[],
            &[7],
            &[3, 5],
            &[2, 3, 4],
            &[2, 1, 3, 4],
            &[2, 3, 1, 4, 5],
            &[0, 5],
            &[usize::MAX, 0, usize::MAX, 2],
            &[0, usize::MAX, usize::MAX, 2, 3, 7],
            &[MAX_NUMEL],
        ];
        for shape in shapes {
            let layout = Layout::contiguous(shape);
            assert_eq!(layout.shape(), shape);
            assert_eq!(layout.strides(), &contiguous_strides(shape)[..], "{shape:?}");
            assert_eq!(layout.offset(), 0);
            assert!(layout.is_contiguous(), "{shape:?}");
        }
        for too_many in [&[MAX_NUMEL, 2][..], &[2, 2, 2, MAX_NUMEL], &[1, 1, 1, 1, MAX_NUMEL, 3]] {
            let panicked = std::panic::catch_unwind(|| Layout::contiguous(too_many));
            assert!(panicked.is_err(), "{too_many:?} was accepted");
        }
    }

    /// Shapes of `numel` elements with up to four dimensions (sizes from its divisors).
    fn shapes_of(numel: usize) -> Vec<Vec<usize>> {
        let divisors: Vec<usize> = (1..=numel).filter(|&d| numel.is_multiple_of(d)).collect();
        let mut out = vec![vec![numel]];
        for &a in &divisors {
            for &b in divisors.iter().filter(|&&b| (numel / a).is_multiple_of(b)) {
                out.push(vec![a, numel / a / b, b]);
                for &c in divisors.iter().filter(|&&c| (numel / a / b).is_multiple_of(c)) {
                    out.push(vec![a, b, c, numel / a / b / c]);
                }
            }
            out.push(vec![a, numel / a]);
        }
        out
    }

    /// Wherever a reshaped view exists, it lists the same storage offsets in the same order
    /// as the layout it was made from (which a copy would hold in row-major order); and the
    /// evenly strided cases the views are for do get one.
    #[test]
    fn reshaped_views_visit_the_same_elements_in_order() {
        let base = Layout::contiguous(&[4, 6, 2]);
        let layouts = [
            base.clone(),
            base.transpose(0, 1),
            base.permute(&[2, 0, 1]),
            base.narrow(1, 1, 4),
            base.narrow(2, 0, 1),
            base.narrow(0, 1, 2).transpose(1, 2),
            Layout::contiguous(&[1, 6]).broadcast_to(&[4, 6]).unwrap(),
            Layout::contiguous(&[4, 1, 3]).broadcast_to(&[4, 2, 3]).unwrap(),
            Layout::from_parts(&[3, 4, 5], &[40, 10, 1], 7),
            Layout::from_parts(&[3, 1, 4], &[4, 99, 1], 0),
        ];
        let mut views = 0;
        for layout in &layouts {
            let want: Vec<usize> = layout.offsets().collect();
            for shape in shapes_of(layout.numel()) {
                if let Some(view) = layout.reshaped(&shape) {
                    assert_eq!(view.shape(), &shape[..]);
                    let got: Vec<usize> = view.offsets().collect();
                    assert_eq!(got, want, "{layout:?} as {shape:?}");
                    views += 1;
                }
            }
        }
        assert!(views > 100, "only {views} views");
        // Runs the new shape only splits or merges evenly.
        let rows = Layout::from_parts(&[3, 4, 5], &[40, 10, 1], 7);
        assert_eq!(rows.reshaped(&[12, 5]).unwrap().strides(), &[10, 1]);
        assert_eq!(rows.reshaped(&[3, 2, 2, 5]).unwrap().strides(), &[40, 20, 10, 1]);
        assert!(rows.reshaped(&[3, 20]).is_none());
        assert!(rows.reshaped(&[7, 5]).is_none(), "element counts differ");
        let broadcast = Layout::contiguous(&[1, 6]).broadcast_to(&[4, 6]).unwrap();
        assert_eq!(broadcast.reshaped(&[4, 2, 3]).unwrap().strides(), &[0, 3, 1]);
        assert!(broadcast.reshaped(&[24]).is_none());
    }
}
