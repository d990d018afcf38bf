//! A tensor reversed along any set of its dimensions (`flip`), in one pass: the output is
//! written row by row (a row is its last dimension), each row copied from its mirrored
//! source row straight or, when the last dimension is flipped, back to front.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::parallel::start_parallel;

/// Output elements a task takes at least.
const BLOCK: usize = 1 << 14;

/// `src` (a contiguous tensor of `shape`) reversed along every dimension `d` with
/// `flipped[d]` true: PyTorch's `flip`.
///
/// ```
/// use tapegrad_kernels::flip::flip;
/// let m = [1, 2, 3, 4, 5, 6]; // a 2 x 3 matrix
/// assert_eq!(flip(&m, &[2, 3], &[false, true]), vec![3, 2, 1, 6, 5, 4]);
/// assert_eq!(flip(&m, &[2, 3], &[true, false]), vec![4, 5, 6, 1, 2, 3]);
/// assert_eq!(flip(&m, &[2, 3], &[true, true]), vec![6, 5, 4, 3, 2, 1]);
/// ```
///
/// # Panics
/// If `flipped` and `shape` differ in length, or `src` does not hold `shape`'s elements.
pub fn flip<T: Copy + Send + Sync>(src: &[T], shape: &[usize], flipped: &[bool]) -> Vec<T> {
    assert_eq!(flipped.len(), shape.len(), "flip: one flag per dimension");
    let len = src.len();
    assert_eq!(len, shape.iter().product::<usize>(), "flip: src is not the shape");
    let mut out: Vec<T> = Vec::with_capacity(len);
    if len == 0 {
        return out;
    }
    // Dimensions of size 1 dropped and neighbours with the same flag merged: [4096, 512]
    // flipped along 0 is 4096 rows of 512 read in reverse row order.
    let mut dims: Vec<(usize, bool)> = Vec::with_capacity(shape.len());
    for (&n, &f) in shape.iter().zip(flipped).filter(|(n, _)| **n > 1) {
        match dims.last_mut() {
            Some((m, g)) if *g == f => *m *= n,
            _ => dims.push((n, f)),
        }
    }
    let Some(&(row_len, reversed)) = dims.last() else {
        out.extend_from_slice(src);
        return out;
    };
    let outer = &dims[..dims.len() - 1];
    // The source row that output row `r` mirrors.
    let source_row = |mut r: usize| {
        let (mut from, mut stride) = (0, 1);
        for &(n, f) in outer.iter().rev() {
            let c = r % n;
            r /= n;
            from += if f { n - 1 - c } else { c } * stride;
            stride *= n;
        }
        from
    };
    let rows_per_task = (BLOCK / row_len).max(1);
    let fill = |(task, part): (usize, &mut [MaybeUninit<T>])| {
        for (r, slots) in part.chunks_exact_mut(row_len).enumerate() {
            let at = source_row(task * rows_per_task + r) * row_len;
            let row = &src[at..at + row_len];
            if reversed {
                for (slot, &v) in slots.iter_mut().zip(row.iter().rev()) {
                    slot.write(v);
                }
            } else {
                for (slot, &v) in slots.iter_mut().zip(row) {
                    slot.write(v);
                }
            }
        }
    };
    let spare = &mut out.spare_capacity_mut()[..len];
    if len > rows_per_task * row_len && start_parallel(len) {
        spare.par_chunks_mut(rows_per_task * row_len).enumerate().for_each(fill);
    } else {
        spare.chunks_mut(rows_per_task * row_len).enumerate().for_each(fill);
    }
    // SAFETY: the chunks are whole rows covering the first `len` elements, and every slot
    // of every row was written from its source row.
    unsafe { out.set_len(len) };
    out
}

#[cfg(test)]
mod tests {
    use super::flip;

    /// The flipped tensor element by element: each output coordinate mirrored where flipped.
    fn reference(src: &[i64], shape: &[usize], flipped: &[bool]) -> Vec<i64> {
        (0..src.len())
            .map(|mut flat| {
                let (mut from, mut stride) = (0, 1);
                for k in (0..shape.len()).rev() {
                    let c = flat % shape[k];
                    flat /= shape[k];
                    from += if flipped[k] { shape[k] - 1 - c } else { c } * stride;
                    stride *= shape[k];
                }
                src[from]
            })
            .collect()
    }

    #[test]
    fn every_set_of_dimensions_flips_as_the_reference() {
        let shapes: [&[usize]; 6] =
            [&[7], &[3, 4], &[2, 1, 3, 4], &[2, 3, 1], &[64, 33, 40], &[3, 0, 2]];
        for shape in shapes {
            let src: Vec<i64> = (0..shape.iter().product::<usize>() as i64).collect();
            for mask in 0..1u32 << shape.len() {
                let flipped: Vec<bool> = (0..shape.len()).map(|d| mask >> d & 1 == 1).collect();
                assert_eq!(
                    flip(&src, shape, &flipped),
                    reference(&src, shape, &flipped),
                    "{shape:?} {flipped:?}"
                );
            }
        }
        assert_eq!(flip(&[5.0f32], &[], &[]), vec![5.0]);
    }
}
