//! Rows picked by index and rows added back by index: the forward and backward loops of
//! `index_select` along any dimension (`embedding` is the first), and `index_add`'s. Each
//! splits its output by rows across threads, so each row is written by one task and the
//! result is the same at every thread count.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::Real;
use crate::parallel::{start_parallel, written_in_chunks};
use crate::simd::{WidestLoop, run_widest};

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
                    let from = &rows[i * inner..(i + 1) * inner];
                    // SAFETY: `row` and `from` are distinct slices of `inner` elements, and
                    // `MaybeUninit<T>` has `T`'s layout.
                    unsafe {
                        std::ptr::copy_nonoverlapping(from.as_ptr(), row.as_mut_ptr().cast(), inner)
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
    let plan = RowSums::new("add_rows_to_zeros", src, idx, (outer, n, inner));
    written_in_chunks(outer * n * inner, plan.chunk, plan.per_task, |c, out| plan.add(c, out))
}

/// `dst` (`outer` blocks of `n` rows of `inner`) with row `k` of each source block (blocks of
/// `idx.len()` rows) added into row `idx[k]` of the same block, in place: `index_add`.
/// Repeated indices add up in the order of `idx`, at every thread count.
///
/// ```
/// use tapegrad_kernels::rows::add_rows;
/// let mut table = vec![1.0f32; 6];
/// add_rows(&mut table, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 0, 2], (1, 3, 2));
/// assert_eq!(table, vec![4.0, 5.0, 1.0, 1.0, 7.0, 9.0]);
/// ```
///
/// # Panics
/// If an index is `n` or more, `src` does not hold `outer` blocks of `idx.len()` rows, or
/// `dst` does not hold `outer` blocks of `n`.
pub fn add_rows<T: Real>(
    dst: &mut [T],
    src: &[T],
    idx: &[usize],
    (outer, n, inner): (usize, usize, usize),
) {
    assert_eq!(dst.len(), outer * n * inner, "add_rows: dst is not {outer} blocks of {n} rows");
    let plan = RowSums::new("add_rows", src, idx, (outer, n, inner));
    if dst.is_empty() {
        return;
    }
    let add = |(c, out): (usize, &mut [T])| plan.add(c, out);
    if dst.len() > plan.chunk && start_parallel(dst.len()) {
        dst.par_chunks_mut(plan.chunk).enumerate().with_min_len(plan.per_task).for_each(add);
    } else {
        dst.chunks_mut(plan.chunk).enumerate().for_each(add);
    }
}

/// `values` as positions into a dimension of `bound`, after checking that every one is in
/// `0..bound`; else the place of the first that is not. Converted by rayon's threads when
/// long: an index tensor is read once, and the check costs no branch per element.
///
/// ```
/// use tapegrad_kernels::rows::checked_positions;
/// assert_eq!(checked_positions(&[2, 0, 1], 3), Ok(vec![2, 0, 1]));
/// assert_eq!(checked_positions(&[2, -1, 3], 3), Err(1));
/// ```
pub fn checked_positions(values: &[i64], bound: usize) -> Result<Vec<usize>, usize> {
    let limit = i64::try_from(bound).unwrap_or(i64::MAX);
    let first_bad = || values.iter().position(|&v| v < 0 || v >= limit).expect("one is out");
    let len = values.len();
    let mut out: Vec<usize> = Vec::with_capacity(len);
    let convert = |(part, from): (&mut [MaybeUninit<usize>], &[i64])| {
        let mut ok = true;
        for (slot, &v) in part.iter_mut().zip(from) {
            ok &= (v >= 0) & (v < limit);
            slot.write(v as usize);
        }
        ok
    };
    let spare = &mut out.spare_capacity_mut()[..len];
    let all_in_range = if start_parallel(len) {
        let pairs = spare.par_chunks_mut(BLOCK).zip(values.par_chunks(BLOCK));
        pairs.map(convert).reduce(|| true, |a, b| a & b)
    } else {
        convert((spare, values))
    };
    if !all_in_range {
        return Err(first_bad());
    }
    // SAFETY: every element of the first `len` was written by one of the chunks above.
    unsafe { out.set_len(len) };
    Ok(out)
}

/// Elements picked one by one along the middle dimension of `src` (`outer` blocks of `n`
/// rows of `inner`): for each element `(o, j, i)` of an index of `outer` blocks of
/// `idx.len() / (outer * inner)` rows of `inner`, element `(o, idx[(o, j, i)], i)`. This is
/// `gather` with an index whose other sizes are the tensor's; split across threads by rows
/// of the output.
///
/// ```
/// use tapegrad_kernels::rows::gather_along;
/// // Two blocks of three rows of one: each index row picks within its own block.
/// let src = [10, 11, 12, 20, 21, 22];
/// assert_eq!(gather_along(&src, &[2, 2, 0, 1], (2, 3, 1)), vec![12, 12, 20, 21]);
/// // One block of two rows of two: column `i` picks from column `i`.
/// assert_eq!(gather_along(&[1, 2, 3, 4], &[1, 0, 0, 0], (1, 2, 2)), vec![3, 2, 1, 2]);
/// ```
///
/// # Panics
/// If an index is `n` or more, or `idx` is not `outer` blocks of whole rows of `inner`.
pub fn gather_along<T: Copy + Send + Sync>(
    src: &[T],
    idx: &[usize],
    (outer, n, inner): (usize, usize, usize),
) -> Vec<T> {
    let m = picks_per_block("gather_along", src.len(), idx, (outer, n, inner));
    let len = idx.len();
    let mut out: Vec<T> = Vec::with_capacity(len);
    if len == 0 {
        return out;
    }
    let rows_per_task = (BLOCK / inner).max(1);
    let fill = |(task, part): (usize, &mut [MaybeUninit<T>])| {
        // The task's rows taken as runs within one index block, each reading one block of
        // `src`.
        let (mut r, mut rest) = (task * rows_per_task, part);
        while !rest.is_empty() {
            let (o, j) = (r / m, r % m);
            let count = (m - j).min(rest.len() / inner);
            let (head, tail) = rest.split_at_mut(count * inner);
            let block = &src[o * n * inner..(o + 1) * n * inner];
            let picks = &idx[r * inner..(r + count) * inner];
            if inner == 1 {
                for (slot, &p) in head.iter_mut().zip(picks) {
                    slot.write(block[p]);
                }
            } else {
                for (row, picks) in head.chunks_exact_mut(inner).zip(picks.chunks_exact(inner)) {
                    for (i, (slot, &p)) in row.iter_mut().zip(picks).enumerate() {
                        slot.write(block[p * inner + i]);
                    }
                }
            }
            (r, rest) = (r + count, tail);
        }
    };
    let spare = &mut out.spare_capacity_mut()[..len];
    if outer * m > rows_per_task && start_parallel(len) {
        spare.par_chunks_mut(rows_per_task * inner).enumerate().for_each(fill);
    } else {
        spare.chunks_mut(rows_per_task * inner).enumerate().for_each(fill);
    }
    // SAFETY: the chunks cover the first `len` elements in whole rows of `inner`, and every
    // element of every row was written above (an index of `n` or more fails its block's
    // bounds check and unwinds before this line, leaving the vector empty).
    unsafe { out.set_len(len) };
    out
}

/// `outer` blocks of `n` rows of `inner` zeros, with each element of `src` (shaped as the
/// index) added at the place [`gather_along`] reads it from: `gather_along`'s gradient.
/// Repeated places add up in the order of `idx`, at every thread count.
///
/// ```
/// use tapegrad_kernels::rows::add_along_to_zeros;
/// let grads = [1.0f32, 2.0, 3.0, 4.0];
/// assert_eq!(add_along_to_zeros(&grads, &[2, 2, 0, 1], (2, 3, 1)), vec![0.0, 0.0, 3.0, 3.0, 4.0, 0.0]);
/// ```
///
/// # Panics
/// As [`gather_along`]; also if `src` is not as long as `idx`.
pub fn add_along_to_zeros<T: Real>(
    src: &[T],
    idx: &[usize],
    (outer, n, inner): (usize, usize, usize),
) -> Vec<T> {
    let m = picks_per_block("add_along_to_zeros", outer * n * inner, idx, (outer, n, inner));
    assert_eq!(src.len(), idx.len(), "add_along_to_zeros: one source element per index");
    let block = (n * inner).max(1);
    let per_task = (BLOCK / block).max(1);
    written_in_chunks(outer * n * inner, block, per_task, |o, out| {
        add_block_along(out, src, idx, o, m, inner)
    })
}

/// `dst` (`outer` blocks of `n` rows of `inner`) with each element of `src` added in place
/// at the place [`gather_along`] reads it from: `scatter_add` with an index whose other
/// sizes are the tensor's. Repeated places add up in the order of `idx`.
///
/// ```
/// use tapegrad_kernels::rows::add_along;
/// let mut dst = vec![1.0f64; 4];
/// add_along(&mut dst, &[1.0, 2.0, 3.0, 4.0], &[1, 0, 1, 1], (1, 2, 2));
/// assert_eq!(dst, vec![1.0, 3.0, 5.0, 5.0]);
/// ```
///
/// # Panics
/// As [`add_along_to_zeros`], and if `dst` is not `outer` blocks of `n` rows of `inner`.
pub fn add_along<T: Real>(
    dst: &mut [T],
    src: &[T],
    idx: &[usize],
    (outer, n, inner): (usize, usize, usize),
) {
    assert_eq!(dst.len(), outer * n * inner, "add_along: dst is not {outer} blocks of {n} rows");
    let m = picks_per_block("add_along", dst.len(), idx, (outer, n, inner));
    assert_eq!(src.len(), idx.len(), "add_along: one source element per index");
    if dst.is_empty() {
        return;
    }
    let block = n * inner;
    let add = |(o, out): (usize, &mut [T])| add_block_along(out, src, idx, o, m, inner);
    if outer > 1 && start_parallel(dst.len()) {
        let per_task = (BLOCK / block).max(1);
        dst.par_chunks_mut(block).enumerate().with_min_len(per_task).for_each(add);
    } else {
        dst.chunks_mut(block).enumerate().for_each(add);
    }
}

/// Checks that `idx` is `outer` blocks of rows of `inner` and that `src` (of `src_len`
/// elements) holds `outer` blocks of `n` rows; returns the rows per block. (An index of `n`
/// or more fails the bounds check of the block it reads or writes.)
fn picks_per_block(
    op: &str,
    src_len: usize,
    idx: &[usize],
    (outer, n, inner): (usize, usize, usize),
) -> usize {
    assert!(src_len >= outer * n * inner, "{op}: fewer than {outer} blocks of {n} rows");
    let per_block = outer * inner;
    assert!(
        per_block > 0 && idx.len().is_multiple_of(per_block) || idx.is_empty(),
        "{op}: {} indices are not {outer} blocks of rows of {inner}",
        idx.len()
    );
    idx.len().checked_div(per_block).unwrap_or(0)
}

/// Block `o` of the index's elements added into `out` (block `o` of the destination).
fn add_block_along<T: Real>(
    out: &mut [T],
    src: &[T],
    idx: &[usize],
    o: usize,
    m: usize,
    inner: usize,
) {
    let range = o * m * inner..(o + 1) * m * inner;
    let (src, idx) = (&src[range.clone()], &idx[range]);
    if inner == 1 {
        for (&p, &g) in idx.iter().zip(src) {
            out[p] += g;
        }
        return;
    }
    for (picks, grads) in idx.chunks_exact(inner).zip(src.chunks_exact(inner)) {
        for (i, (&p, &g)) in picks.iter().zip(grads).enumerate() {
            out[p * inner + i] += g;
        }
    }
}

/// How [`add_rows`] and [`add_rows_to_zeros`] split their output: into chunks of whole
/// destination rows, each added to by one task, reading the source rows that land in it in
/// the order of `idx` (so every row's sum is in that order however the rows are split).
struct RowSums<'a, T> {
    src: &'a [T],
    idx: &'a [usize],
    picks: usize,
    inner: usize,
    /// Elements of output per chunk: whole blocks when `outer > 1`, else a run of rows.
    chunk: usize,
    /// Chunks a task takes at least.
    per_task: usize,
    /// With one block split into runs of rows: the picks `k` that land in each run, grouped
    /// run by run (`order[starts[c]..starts[c + 1]]` for run `c`), each group in the order of
    /// `idx` (a counting sort). Empty when the chunks are whole blocks or there is one run.
    order: Vec<usize>,
    starts: Vec<usize>,
}

impl<'a, T: Real> RowSums<'a, T> {
    fn new(
        op: &str,
        src: &'a [T],
        idx: &'a [usize],
        (outer, n, inner): (usize, usize, usize),
    ) -> Self {
        let picks = idx.len();
        assert_eq!(src.len(), outer * picks * inner, "{op}: one source row per pick");
        assert!(idx.iter().all(|&i| i < n), "{op}: an index is out of range for {n} rows");
        let (mut order, mut starts) = (Vec::new(), Vec::new());
        if outer > 1 || n * inner == 0 {
            // The blocks are disjoint: a task takes whole blocks, a few to a task when small.
            let per_task = (BLOCK / (n * inner).max(1)).max(1);
            let chunk = (n * inner).max(1);
            return RowSums { src, idx, picks, inner, chunk, per_task, order, starts };
        }
        // One block (embedding's table, index_add along the first dimension): runs of rows,
        // as many as keep every thread busy, none smaller than a cache-sized block; a
        // single run reads the source in order.
        let len = n * inner;
        let threads = rayon::current_num_threads();
        let runs = match threads > 1 && start_parallel(len) {
            true => (2 * threads).min(len / BLOCK).max(1),
            false => 1,
        };
        let rows_per_run = n.div_ceil(runs);
        let runs = n.div_ceil(rows_per_run);
        if runs > 1 {
            starts = vec![0usize; runs + 1];
            for &i in idx {
                starts[i / rows_per_run + 1] += 1;
            }
            for r in 0..runs {
                starts[r + 1] += starts[r];
            }
            let mut next = starts.clone();
            order = vec![0usize; picks];
            for (k, &i) in idx.iter().enumerate() {
                let slot = &mut next[i / rows_per_run];
                order[*slot] = k;
                *slot += 1;
            }
        }
        RowSums { src, idx, picks, inner, chunk: rows_per_run * inner, per_task: 1, order, starts }
    }

    /// Adds into `out`, chunk `c` of the output, every source row that lands in it.
    fn add(&self, c: usize, out: &mut [T]) {
        let inner = self.inner;
        if !self.starts.is_empty() {
            let first = c * (self.chunk / inner);
            let picks = &self.order[self.starts[c]..self.starts[c + 1]];
            run_widest(AddPicked { out, src: self.src, idx: self.idx, picks, first, inner });
        } else {
            // Whole blocks (block `c`'s source rows are the `c`-th `picks` rows), or the
            // single run of one block (`c` = 0).
            let src = &self.src[c * self.picks * inner..(c + 1) * self.picks * inner];
            run_widest(AddAll { out, src, idx: self.idx, inner });
        }
    }
}

/// Source row `k` added into row `idx[k] - first` of `out`, for each `k` of `picks`.
struct AddPicked<'a, T> {
    out: &'a mut [T],
    src: &'a [T],
    idx: &'a [usize],
    picks: &'a [usize],
    first: usize,
    inner: usize,
}

impl<T: Real> WidestLoop for AddPicked<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let inner = self.inner;
        for &k in self.picks {
            let at = (self.idx[k] - self.first) * inner;
            let from = &self.src[k * inner..(k + 1) * inner];
            self.out[at..at + inner].iter_mut().zip(from).for_each(|(s, &g)| *s += g);
        }
    }
}

/// Source row `k` added into row `idx[k]` of `out`, for every `k` in order.
struct AddAll<'a, T> {
    out: &'a mut [T],
    src: &'a [T],
    idx: &'a [usize],
    inner: usize,
}

impl<T: Real> WidestLoop for AddAll<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let inner = self.inner;
        if inner == 1 {
            for (&i, &g) in self.idx.iter().zip(self.src) {
                self.out[i] += g;
            }
            return;
        }
        for (&i, from) in self.idx.iter().zip(self.src.chunks_exact(inner)) {
            self.out[i * inner..(i + 1) * inner].iter_mut().zip(from).for_each(|(s, &g)| *s += g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{BLOCK, add_rows, add_rows_to_zeros, select_rows};
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
            let added_into = |mut sums: Vec<f64>| {
                for b in 0..outer {
                    for (k, &i) in idx.iter().enumerate() {
                        for j in 0..inner {
                            sums[(b * n + i) * inner + j] += grads[(b * picks + k) * inner + j];
                        }
                    }
                }
                sums
            };
            let sums = added_into(vec![0.0; outer * n * inner]);
            assert_eq!(add_rows_to_zeros(&grads, &idx, dims), sums, "{dims:?}");
            let mut in_place = table.clone();
            add_rows(&mut in_place, &grads, &idx, dims);
            assert_eq!(in_place, added_into(table), "{dims:?}");
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
