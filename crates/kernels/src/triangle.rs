//! The lower or upper triangle of every matrix in a batch, the rest zero (`tril`, `triu`):
//! one pass that copies each row's kept run and writes zeros over the rest, rows split
//! across threads.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::parallel::start_parallel;

/// Output elements a task takes at least.
const BLOCK: usize = 1 << 14;

/// Which triangle [`triangle`] keeps.
///
/// ```
/// use tapegrad_kernels::triangle::{Triangle, triangle};
/// let ones = [1.0f32; 4]; // one 2 x 2 matrix
/// assert_eq!(triangle(&ones, (2, 2), 0, Triangle::Upper), vec![1.0, 1.0, 0.0, 1.0]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Triangle {
    /// Elements with `column - row <= diagonal` (PyTorch's `tril`).
    Lower,
    /// Elements with `column - row >= diagonal` (PyTorch's `triu`).
    Upper,
}

impl Triangle {
    /// The columns `first..end` that row `row` of a matrix of `cols` columns keeps.
    fn kept(self, row: usize, cols: usize, diagonal: i64) -> (usize, usize) {
        // Rows and columns are below 2^63 (they count elements of one allocation).
        let edge = (row as i64).saturating_add(diagonal);
        match self {
            Triangle::Lower => (0, edge.saturating_add(1).clamp(0, cols as i64) as usize),
            Triangle::Upper => (edge.clamp(0, cols as i64) as usize, cols),
        }
    }
}

/// `src`, matrices of `rows x cols` one after another, with every element outside `which`
/// triangle of its matrix replaced by `T::default()` (zero): `diagonal` 0 is the main
/// diagonal, positive above it, negative below.
///
/// ```
/// use tapegrad_kernels::triangle::{Triangle, triangle};
/// let m = [1, 2, 3, 4, 5, 6]; // one 2 x 3 matrix
/// assert_eq!(triangle(&m, (2, 3), 0, Triangle::Lower), vec![1, 0, 0, 4, 5, 0]);
/// assert_eq!(triangle(&m, (2, 3), 1, Triangle::Upper), vec![0, 2, 3, 0, 0, 6]);
/// ```
///
/// # Panics
/// If `src` is not made of whole `rows x cols` matrices.
pub fn triangle<T: Copy + Default + Send + Sync>(
    src: &[T],
    (rows, cols): (usize, usize),
    diagonal: i64,
    which: Triangle,
) -> Vec<T> {
    let len = src.len();
    let mut out: Vec<T> = Vec::with_capacity(len);
    if len == 0 {
        return out;
    }
    assert!(
        rows * cols > 0 && len.is_multiple_of(rows * cols),
        "triangle: {len} elements are not whole {rows} x {cols} matrices"
    );
    let rows_per_task = (BLOCK / cols).max(1);
    let fill = |(task, part): (usize, &mut [MaybeUninit<T>])| {
        for (r, slots) in part.chunks_exact_mut(cols).enumerate() {
            let at = (task * rows_per_task + r) * cols;
            let (first, end) = which.kept((at / cols) % rows, cols, diagonal);
            let (first, end) = (first, end.max(first));
            let (before, rest) = slots.split_at_mut(first);
            let (inside, after) = rest.split_at_mut(end - first);
            before.fill(MaybeUninit::new(T::default()));
            for (slot, &v) in inside.iter_mut().zip(&src[at + first..at + end]) {
                slot.write(v);
            }
            after.fill(MaybeUninit::new(T::default()));
        }
    };
    let spare = &mut out.spare_capacity_mut()[..len];
    if len > rows_per_task * cols && start_parallel(len) {
        spare.par_chunks_mut(rows_per_task * cols).enumerate().for_each(fill);
    } else {
        spare.chunks_mut(rows_per_task * cols).enumerate().for_each(fill);
    }
    // SAFETY: the chunks are whole rows covering the first `len` elements, and every slot
    // of every row was written: the zeros before and after its kept run, the run from `src`.
    unsafe { out.set_len(len) };
    out
}

#[cfg(test)]
mod tests {
    use super::{Triangle, triangle};

    fn reference(
        src: &[i64],
        (rows, cols): (usize, usize),
        diagonal: i64,
        lower: bool,
    ) -> Vec<i64> {
        (0..src.len())
            .map(|flat| {
                let (i, j) = (((flat / cols) % rows) as i64, (flat % cols) as i64);
                let keep = if lower { j - i <= diagonal } else { j - i >= diagonal };
                if keep { src[flat] } else { 0 }
            })
            .collect()
    }

    #[test]
    fn every_diagonal_of_every_shape_matches_the_reference() {
        for (batch, rows, cols) in [(1, 1, 1), (1, 3, 5), (2, 5, 3), (3, 4, 4), (40, 33, 65)] {
            let src: Vec<i64> = (1..=(batch * rows * cols) as i64).collect();
            for diagonal in
                [-100, -(rows as i64), -2, -1, 0, 1, 2, cols as i64, 100, i64::MIN, i64::MAX]
            {
                for (lower, which) in [(true, Triangle::Lower), (false, Triangle::Upper)] {
                    assert_eq!(
                        triangle(&src, (rows, cols), diagonal, which),
                        reference(&src, (rows, cols), diagonal, lower),
                        "{batch} x {rows} x {cols}, diagonal {diagonal}, {which:?}"
                    );
                }
            }
        }
        assert!(triangle::<f32>(&[], (0, 3), 0, Triangle::Lower).is_empty());
    }
}
