//! Work down the columns of row-major `[outer, n, inner]` blocks: a scan or a reduction
//! along a dimension that is not last, done where the elements lie instead of after a
//! transposing copy that moves the dimension last (and another that moves the result back).
//!
//! Each block's `inner` columns are cut into strips of at most 256 adjacent columns. A
//! task walks the `n` rows of one strip in order, so its running values (one per column)
//! stay in L1 while every row it reads and writes is a contiguous run of memory that the
//! compiler vectorises across the columns. Columns never meet, so how the strips are split
//! among threads does not change a bit of the result.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::Real;
use crate::parallel::start_parallel;
use crate::simd::{WidestLoop, run_widest};

/// The fewest columns (elements after the dimension) for which the kernels here are the
/// faster way: each row of a strip then fills at least a vector. With fewer, moving the
/// dimension last and working along rows is faster.
///
/// ```
/// assert_eq!(tapegrad_kernels::columns::MIN_COLUMNS, 16);
/// ```
pub const MIN_COLUMNS: usize = 16;

/// Columns a task walks side by side: their running values (an f64 or two each) fit in L1
/// with room for the rows streaming past.
pub(crate) const STRIP: usize = 256;

/// One strip of one block: which block, its first column, and the part of each of the
/// block's `rows` output rows that falls in the strip.
pub(crate) struct Strip<'a, T> {
    /// The block (`0..outer`).
    pub(crate) block: usize,
    /// The strip's first column (`0..inner`).
    pub(crate) first: usize,
    /// For each output row of the block, the slots of the strip's columns.
    pub(crate) rows: Vec<&'a mut [MaybeUninit<T>]>,
}

/// A vector of `outer * rows * inner` elements (`rows` output rows per block), written strip
/// by strip by `write`, on rayon's threads when the `work` (input elements) is large. Strips
/// are [`STRIP`] columns wide, narrower when a block has too few strips to share among the
/// threads. `write` must write every slot of its strip.
pub(crate) fn by_strips<T: Real>(
    (outer, rows, inner): (usize, usize, usize),
    work: usize,
    write: impl Fn(Strip<'_, T>) + Sync + Send,
) -> Vec<T> {
    let len = outer * rows * inner;
    let mut out: Vec<T> = Vec::with_capacity(len);
    if len == 0 {
        return out;
    }
    let parallel = start_parallel(work);
    let threads = if parallel { rayon::current_num_threads() } else { 1 };
    // Enough strips per thread to balance, but never narrower than a few vectors.
    let wanted = (4 * threads).div_ceil(outer);
    let width = inner.div_ceil(wanted).clamp(32, STRIP);
    let per_block = inner.div_ceil(width);
    let mut strips: Vec<Strip<'_, T>> = (0..outer * per_block)
        .map(|i| Strip {
            block: i / per_block,
            first: (i % per_block) * width,
            rows: Vec::with_capacity(rows),
        })
        .collect();
    let spare = &mut out.spare_capacity_mut()[..len];
    for (row, slots) in spare.chunks_exact_mut(inner).enumerate() {
        let block = row / rows;
        for (s, part) in slots.chunks_mut(width).enumerate() {
            strips[block * per_block + s].rows.push(part);
        }
    }
    if parallel {
        strips.into_par_iter().for_each(write);
    } else {
        strips.into_iter().for_each(write);
    }
    // SAFETY: the strips' rows cover every slot of the first `len` once, and each writer
    // fills every slot it is given (the contract above).
    unsafe { out.set_len(len) };
    out
}

/// Running sums down the columns of each of `outer` row-major blocks of `n` rows of `inner`
/// elements (`cumsum` along a dimension followed by `inner` elements), from the first row or
/// from the last, accumulated in f64 and rounded once per element: the bits of
/// [`crate::strided::running_sums`] on the transposed rows.
///
/// ```
/// use tapegrad_kernels::columns::running_sums_down;
/// // One block of three rows of two columns.
/// let x = [1.0f32, 10.0, 2.0, 20.0, 3.0, 30.0];
/// assert_eq!(running_sums_down(&x, (1, 3, 2), false), vec![1.0, 10.0, 3.0, 30.0, 6.0, 60.0]);
/// assert_eq!(running_sums_down(&x, (1, 3, 2), true), vec![6.0, 60.0, 5.0, 50.0, 3.0, 30.0]);
/// ```
///
/// # Panics
/// If `x` does not hold `outer * n * inner` elements.
pub fn running_sums_down<T: Real>(
    x: &[T],
    (outer, n, inner): (usize, usize, usize),
    from_back: bool,
) -> Vec<T> {
    assert_eq!(x.len(), outer * n * inner, "running_sums_down: {outer} x {n} x {inner} elements");
    struct Sums<'a, 'b, T> {
        x: &'a [T],
        shape: (usize, usize),
        strip: Strip<'b, T>,
        from_back: bool,
    }
    impl<T: Real> WidestLoop for Sums<'_, '_, T> {
        type Output = ();
        #[inline(always)]
        fn run(self) {
            let (n, inner) = self.shape;
            let Strip { block, first, mut rows } = self.strip;
            let mut total = [0.0f64; STRIP];
            for step in 0..n {
                let i = if self.from_back { n - 1 - step } else { step };
                let slots = &mut *rows[i];
                let src = &self.x[(block * n + i) * inner + first..][..slots.len()];
                for ((t, slot), &v) in total.iter_mut().zip(slots.iter_mut()).zip(src) {
                    *t += v.widen();
                    slot.write(T::round_from(*t));
                }
            }
        }
    }
    by_strips((outer, n, inner), x.len(), |strip| {
        run_widest(Sums { x, shape: (n, inner), strip, from_back })
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::running_sums_down;
    use crate::strided::running_sums;

    /// `[outer, n, inner]` with `n` moved last: `[outer, inner, n]`.
    pub(crate) fn rows_last<T: Copy>(x: &[T], (outer, n, inner): (usize, usize, usize)) -> Vec<T> {
        let mut out = Vec::with_capacity(x.len());
        for o in 0..outer {
            for j in 0..inner {
                out.extend((0..n).map(|i| x[(o * n + i) * inner + j]));
            }
        }
        out
    }

    #[test]
    fn sums_down_columns_have_the_bits_of_sums_along_rows() {
        let shapes = [
            (1, 1, 1),
            (1, 5, 3),
            (3, 7, 16),
            (2, 300, 33),
            (1, 4096, 512),
            (64, 40, 700),
            (5, 0, 9),
        ];
        for (outer, n, inner) in shapes {
            let x: Vec<f32> = (0..outer * n * inner)
                .map(|i| ((i * 7919) % 1013) as f32 / 97.0 - 5.0 + 1e-3 * (i % 7) as f32)
                .collect();
            for from_back in [false, true] {
                let got = running_sums_down(&x, (outer, n, inner), from_back);
                let want = running_sums(&rows_last(&x, (outer, n, inner)), n, from_back);
                // `want` holds each column as a row: move it back to compare.
                let want_in_place = rows_last(&want, (outer, inner, n));
                assert_eq!(got, want_in_place, "{outer} x {n} x {inner}, from back: {from_back}");
            }
        }
    }
}
