//! Rows picked by index and rows added back by index: the forward and backward loops of
//! `index_select` along any dimension (`embedding` is the first). Both split the output by
//! its rows across threads, so each row is written by one task and the result is the same
//! at every thread count.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::Real;
use crate::parallel::{start_parallel, written_in_chunks};

/// Elements of output a task takes at a time: a block that stays in the core's cache
/// between being cleared and being written.
const BLOCK: usize = 1 << 14;

/// Row `idx[k]` of each of `outer` blocks of `src` (blocks of `n` rows of `inner` elements),
/// for `k` in order, block after block: `index_select` of the middle dimension of an
/// `[outer, n, inner]` tensor.
///
/// ```
/// use tapegrad_kernels::rows::select_rows;
/// // One block of three rows of two (an embedding table), and two blocks of two.
/// let table = [0, 1, 10, 11, 20, 21];
/// assert_eq!(select_rows(&table, &[2, 0, 2], (1, 3, 2)), vec![20, 21, 0, 1, 20, 21]);
/// assert_eq!(select_rows(&table[..4], &[1], (2, 2, 1)), vec![1, 11]);
/// ```
///
/// # Panics
/// If an index is `n` or more, or `src` holds fewer than `outer` blocks.
pub fn select_rows<T: Copy + Send + Sync>(
    src: &[T],
    idx: &[usize],
    (outer, n, inner): (usize, usize, usize),
) -> Vec<T> {
    assert!(idx.iter().all(|&i| i < n), "select_rows: an index is out of range for {n} rows");
    assert!(src.len() >= outer * n * inner, "select_rows: fewer than {outer} blocks");
    let picks = idx.len();
    let len = outer * picks * inner;
    let mut out: Vec<T> = Vec::with_capacity(len);
    if len == 0 {
        return out;
    }
    let rows_per_task = (BLOCK / inner).max(1);
    let copy = |(task, part): (usize, &mut [MaybeUninit<T>])| {
        // Output row `r` is pick `r % picks` of block `r / picks`: the task's rows taken as
        // runs of picks within one block, so that single elements are a plain gather.
        let mut r = task * rows_per_task;
        let mut rest = part;
        while !rest.is_empty() {
            let (block, k0) = (r / picks, r % picks);
            let count = (picks - k0).min(rest.len() / inner);
            let (head, tail) = rest.split_at_mut(count * inner);
            let rows = &src[block * n * inner..(block + 1) * n * inner];
            let picked = &idx[k0..k0 + count];
            if inner == 1 {
                for (slot, &i) in head.iter_mut().zip(picked) {
                    slot.write(rows[i]);
                }
            } else {
                for (row, &i) in head.chunks_exact_mut(inner).zip(picked) {
                    for (slot, &v) in row.iter_mut().zip(&rows[i * inner..(i + 1) * inner]) {
                        slot.write(v);
                    }
                }
            }
            (r, rest) = (r + count, tail);
        }
    };
    let spare = &mut out.spare_capacity_mut()[..len];
    if outer * picks > rows_per_task && start_parallel(len) {
        spare.par_chunks_mut(rows_per_task * inner).enumerate().for_each(copy);
    } else {
        spare.chunks_mut(rows_per_task * inner).enumerate().for_each(copy);
    }
    // SAFETY: the chunks cover the first `len` elements, and each chunk's rows (whole rows:
    // the chunk length is a multiple of `inner`, the last chunk `len` minus whole chunks)
    // were all written above; the indices and `src` were checked before anything was.
    unsafe { out.set_len(len) };
    out
}

/// `outer` blocks of `n` rows of `inner` zeros, with row `k` of each source block (blocks
/// of `idx.len()` rows) added into row `idx[k]` of the same block: the gradient of
/// [`select_rows`]. Repeated indices add up, in the order of `idx` (so the sums are the same
/// at every thread count).
///
/// ```
/// use tapegrad_kernels::rows::add_rows_to_zeros;
/// let grads = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
/// assert_eq!(add_rows_to_zeros(&grads, &[2, 0, 2], (1, 3, 2)), vec![3.0, 4.0, 0.0, 0.0, 6.0, 8.0]);
/// assert_eq!(add_rows_to_zeros(&grads, &[1, 1, 0], (2, 2, 1)), vec![3.0, 3.0, 6.0, 9.0]);
/// ```
///
/// # Panics
/// If an index is `n` or more, or `src` does not hold `outer` blocks of `idx.len()` rows.
pub fn add_rows_to_zeros<T: Real>(
    src: &[T],
    idx: &[usize],
    (outer, n, inner): (usize, usize, usize),
) -> Vec<T> {
    let picks = idx.len();
    assert_eq!(src.len(), outer * picks * inner, "add_rows_to_zeros: one source row per pick");
    assert!(idx.iter().all(|&i| i < n), "add_rows_to_zeros: an index is out of range for {n} rows");
    let len = outer * n * inner;
    if len == 0 {
        return Vec::new();
    }
    // Source rows `picked` (in order) added into rows `rows` of `out`.
    let add = |out: &mut [T], rows: &[usize], picked: &[T]| {
        if inner == 1 {
            for (&i, &g) in rows.iter().zip(picked) {
                out[i] += g;
            }
        } else {
            for (&i, g) in rows.iter().zip(picked.chunks_exact(inner)) {
                out[i * inner..(i + 1) * inner].iter_mut().zip(g).for_each(|(s, &g)| *s += g);
            }
        }
    };
    if outer > 1 {
        // The blocks are disjoint: a task takes whole blocks, a few to a task when small.
        let per_task = (BLOCK / (n * inner)).max(1);
        return written_in_chunks(len, n * inner, per_task, |block, out| {
            add(out, idx, &src[block * picks * inner..(block + 1) * picks * inner]);
        });
    }
    // One block (embedding's table): split by rows, the source rows grouped by the block of
    // rows they land in, each group in the order of `idx` (a counting sort), so that every
    // task reads only its own.
    let rows_per_block = (BLOCK / inner).max(1);
    let blocks = n.div_ceil(rows_per_block);
    let mut starts = vec![0usize; blocks + 1];
    for &i in idx {
        starts[i / rows_per_block + 1] += 1;
    }
    for b in 0..blocks {
        starts[b + 1] += starts[b];
    }
    let mut next = starts.clone();
    let mut order = vec![0usize; picks];
    for (k, &i) in idx.iter().enumerate() {
        let slot = &mut next[i / rows_per_block];
        order[*slot] = k;
        *slot += 1;
    }
    written_in_chunks(len, rows_per_block * inner, 1, |block, out| {
        let first = block * rows_per_block;
        for &k in &order[starts[block]..starts[block + 1]] {
            let at = (idx[k] - first) * inner;
            let from = &src[k * inner..(k + 1) * inner];
            out[at..at + inner].iter_mut().zip(from).for_each(|(s, &g)| *s += g);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::{BLOCK, add_rows_to_zeros, select_rows};
    use crate::parallel::THRESHOLD;

    /// Both against the plain loops, on tables big enough to be split across threads (and
    /// rows wider than a block), in one block and in several, with repeated and unused rows.
    #[test]
    fn rows_picked_and_added_as_the_plain_loops_do() {
        let cases = [
            (1, 5, 3, 7),
            (1, 1000, 64, 4096),
            (1, 3000, 256, 1500),
            (1, 7, BLOCK + 3, 9),
            (1, 2, 1, 0),
            (3, 5, 4, 6),
            (512, 300, 1, 200),
            (40, 50, 100, 70),
            (2, 3, BLOCK + 1, 4),
        ];
        for (outer, n, inner, picks) in cases {
            let table: Vec<f64> =
                (0..outer * n * inner).map(|v| (v % 97) as f64 * 0.5 - 7.0).collect();
            let idx: Vec<usize> = (0..picks).map(|k| (k * 7919 + k * k) % n).collect();
            let mut want = vec![];
            for b in 0..outer {
                for &i in &idx {
                    want.extend_from_slice(&table[(b * n + i) * inner..(b * n + i + 1) * inner]);
                }
            }
            let dims = (outer, n, inner);
            assert_eq!(select_rows(&table, &idx, dims), want, "{dims:?}");

            let grads: Vec<f64> =
                (0..outer * picks * inner).map(|v| ((v * 31) % 113) as f64 - 50.25).collect();
            let mut sums = vec![0.0; outer * n * inner];
            for b in 0..outer {
                for (k, &i) in idx.iter().enumerate() {
                    for j in 0..inner {
                        sums[(b * n + i) * inner + j] += grads[(b * picks + k) * inner + j];
                    }
                }
            }
            assert_eq!(add_rows_to_zeros(&grads, &idx, dims), sums, "{dims:?}");
        }
        // Cases large enough to be split across threads, in one block and in several.
        const { assert!(3000 * 256 > 2 * THRESHOLD && 512 * 200 > THRESHOLD) };
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn an_index_past_the_rows_is_refused() {
        add_rows_to_zeros(&[1.0f32, 2.0], &[0, 2], (1, 2, 1));
    }
}
