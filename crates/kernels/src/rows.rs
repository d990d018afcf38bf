//! Rows picked by index and rows added back by index: the forward and backward loops of
//! `index_select` along the first dimension, which `embedding` is. Both split the output by
//! its rows across threads, so each row is written by one task and the result is the same
//! at every thread count.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::Real;
use crate::parallel::{start_parallel, written_in_chunks};

/// Elements of output a task takes at a time: a block that stays in the core's cache
/// between being cleared and being written.
const BLOCK: usize = 1 << 14;

/// Rows `idx[0], idx[1], ...` of `src` (rows of `inner` elements), one after another.
///
/// ```
/// use tapegrad_kernels::rows::select_rows;
/// let table = [0, 1, 10, 11, 20, 21];
/// assert_eq!(select_rows(&table, &[2, 0, 2], 2), vec![20, 21, 0, 1, 20, 21]);
/// ```
///
/// # Panics
/// If an index names a row past the end of `src`.
pub fn select_rows<T: Copy + Send + Sync>(src: &[T], idx: &[usize], inner: usize) -> Vec<T> {
    let len = idx.len() * inner;
    let mut out: Vec<T> = Vec::with_capacity(len);
    if len == 0 {
        return out;
    }
    let rows_per_task = (BLOCK / inner).max(1);
    let copy = |(task, part): (usize, &mut [MaybeUninit<T>])| {
        let first = task * rows_per_task;
        for (&i, row) in idx[first..].iter().zip(part.chunks_exact_mut(inner)) {
            let from = &src[i * inner..(i + 1) * inner];
            for (slot, &v) in row.iter_mut().zip(from) {
                slot.write(v);
            }
        }
    };
    let spare = &mut out.spare_capacity_mut()[..len];
    if idx.len() > rows_per_task && start_parallel(len) {
        spare.par_chunks_mut(rows_per_task * inner).enumerate().for_each(copy);
    } else {
        spare.chunks_mut(rows_per_task * inner).enumerate().for_each(copy);
    }
    // SAFETY: the chunks cover the first `len` elements, and each chunk's rows (whole rows:
    // the chunk length is a multiple of `inner`, the last chunk `len` minus whole chunks)
    // were all written above; an out-of-range index panics before this line.
    unsafe { out.set_len(len) };
    out
}

/// A `rows` x `inner` block of zeros with row `k` of `src` added into row `idx[k]`, for
/// every `k`: the gradient of [`select_rows`]. Repeated indices add up, in the order of
/// `idx` (so the sums are the same at every thread count).
///
/// ```
/// use tapegrad_kernels::rows::add_rows_to_zeros;
/// let grads = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
/// assert_eq!(add_rows_to_zeros(&grads, &[2, 0, 2], 3, 2), vec![3.0, 4.0, 0.0, 0.0, 6.0, 8.0]);
/// ```
///
/// # Panics
/// If an index is `rows` or more, or `src` does not hold `idx.len()` rows.
pub fn add_rows_to_zeros<T: Real>(src: &[T], idx: &[usize], rows: usize, inner: usize) -> Vec<T> {
    assert_eq!(src.len(), idx.len() * inner, "add_rows_to_zeros: one source row per index");
    let len = rows * inner;
    if len == 0 {
        return Vec::new();
    }
    let rows_per_block = (BLOCK / inner).max(1);
    let blocks = rows.div_ceil(rows_per_block);
    // The source rows grouped by the block they land in, each group in the order of `idx`
    // (a counting sort): every block's task then reads only its own.
    let mut starts = vec![0usize; blocks + 1];
    for &i in idx {
        assert!(i < rows, "add_rows_to_zeros: index {i} is out of range for {rows} rows");
        starts[i / rows_per_block + 1] += 1;
    }
    for b in 0..blocks {
        starts[b + 1] += starts[b];
    }
    let mut next = starts.clone();
    let mut order = vec![0usize; idx.len()];
    for (k, &i) in idx.iter().enumerate() {
        let slot = &mut next[i / rows_per_block];
        order[*slot] = k;
        *slot += 1;
    }
    written_in_chunks(len, rows_per_block * inner, 1, |block, out| {
        let first = block * rows_per_block;
        for &k in &order[starts[block]..starts[block + 1]] {
            let at = (idx[k] - first) * inner;
            for (sum, &g) in out[at..at + inner].iter_mut().zip(&src[k * inner..(k + 1) * inner]) {
                *sum += g;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::{BLOCK, add_rows_to_zeros, select_rows};
    use crate::parallel::THRESHOLD;

    /// Both against the plain loops, on tables big enough to be split across threads (and
    /// rows wider than a block), with repeated and unused rows.
    #[test]
    fn rows_picked_and_added_as_the_plain_loops_do() {
        for (rows, inner, picks) in
            [(5, 3, 7), (1000, 64, 4096), (3000, 256, 1500), (7, BLOCK + 3, 9), (2, 1, 0)]
        {
            let table: Vec<f64> = (0..rows * inner).map(|v| (v % 97) as f64 * 0.5 - 7.0).collect();
            let idx: Vec<usize> = (0..picks).map(|k| (k * 7919 + k * k) % rows).collect();
            let mut want = vec![];
            for &i in &idx {
                want.extend_from_slice(&table[i * inner..(i + 1) * inner]);
            }
            assert_eq!(select_rows(&table, &idx, inner), want, "{rows} x {inner}");

            let grads: Vec<f64> =
                (0..picks * inner).map(|v| ((v * 31) % 113) as f64 - 50.25).collect();
            let mut sums = vec![0.0; rows * inner];
            for (k, &i) in idx.iter().enumerate() {
                for j in 0..inner {
                    sums[i * inner + j] += grads[k * inner + j];
                }
            }
            assert_eq!(add_rows_to_zeros(&grads, &idx, rows, inner), sums, "{rows} x {inner}");
        }
        // One case is large enough to be split across threads.
        const { assert!(3000 * 256 > 2 * THRESHOLD) };
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn an_index_past_the_rows_is_refused() {
        add_rows_to_zeros(&[1.0f32, 2.0], &[0, 2], 2, 1);
    }
}
