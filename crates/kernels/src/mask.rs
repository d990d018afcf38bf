//! The elements a boolean mask marks, picked out in order (`masked_select`), and the
//! reverse: picked values put back where the mask marks, zeros elsewhere (its gradient).
//!
//! Both split the mask into pieces. The marks in each piece are counted on the threads
//! first, so that each piece knows where its values start in the picked sequence; then the
//! pieces are done on the threads independently. Within a piece nothing branches on a
//! mark, which a random mask would mispredict half the time (compilers turn a select on
//! one into a branch): the piece goes in blocks, and each block's values, or the places of
//! its marks, are written at a place that moves on by one per mark.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::Real;
use crate::parallel::start_parallel;

/// Mask elements per piece (one task's share).
const PIECE: usize = 1 << 15;
/// Elements per block of the branch-free copy (the picking buffer's size).
const BLOCK: usize = 256;
// A block's places are u16.
const _: () = assert!(BLOCK <= 1 << 16);

/// The values of `values` whose `mask` element is true, in order: PyTorch's
/// `masked_select` on tensors already broadcast to one shape and laid out alike.
///
/// ```
/// use tapegrad_kernels::mask::select;
/// let picked = select(&[1.5f32, -2.0, 3.0, 4.0], &[true, false, false, true]);
/// assert_eq!(picked, vec![1.5, 4.0]);
/// ```
///
/// # Panics
/// If `values` and `mask` differ in length.
pub fn select<T: Copy + Default + Send + Sync>(values: &[T], mask: &[bool]) -> Vec<T> {
    assert_eq!(values.len(), mask.len(), "mask::select: one mask element per value");
    let starts = piece_starts(mask);
    let total = *starts.last().expect("piece_starts always holds the total");
    let mut out: Vec<T> = Vec::with_capacity(total);
    let mut rest = &mut out.spare_capacity_mut()[..total];
    let destinations: Vec<&mut [MaybeUninit<T>]> = starts
        .windows(2)
        .map(|bounds| {
            let (piece, tail) = std::mem::take(&mut rest).split_at_mut(bounds[1] - bounds[0]);
            rest = tail;
            piece
        })
        .collect();
    let pick = |((v, m), dst)| select_piece(v, m, dst);
    if start_parallel(values.len()) && destinations.len() > 1 {
        let pieces = values.par_chunks(PIECE).zip(mask.par_chunks(PIECE));
        pieces.zip(destinations).for_each(pick);
    } else {
        values.chunks(PIECE).zip(mask.chunks(PIECE)).zip(destinations).for_each(pick);
    }
    // SAFETY: each piece wrote exactly as many values as its mask marks (`select_piece`),
    // and the pieces' destinations tile the first `total` slots.
    unsafe { out.set_len(total) };
    out
}

/// `picked` put back at the positions `mask` marks, in order, with zeros elsewhere: the
/// gradient of [`select`], and PyTorch's `masked_scatter` into zeros.
///
/// ```
/// use tapegrad_kernels::mask::{scatter, select};
/// let mask = [true, false, false, true];
/// assert_eq!(scatter(&[1.5f32, 4.0], &mask), vec![1.5, 0.0, 0.0, 4.0]);
/// assert_eq!(select(&scatter(&[1.5f32, 4.0], &mask), &mask), vec![1.5, 4.0]);
/// ```
///
/// # Panics
/// If `picked` does not hold one value per true element of `mask`.
pub fn scatter<T: Real>(picked: &[T], mask: &[bool]) -> Vec<T> {
    let starts = piece_starts(mask);
    let total = *starts.last().expect("piece_starts always holds the total");
    assert_eq!(picked.len(), total, "mask::scatter: one value per true mask element");
    let len = mask.len();
    let mut out: Vec<T> = Vec::with_capacity(len);
    let place = |(p, dst): (usize, &mut [MaybeUninit<T>])| {
        let m = &mask[p * PIECE..p * PIECE + dst.len()];
        scatter_piece(&picked[starts[p]..starts[p + 1]], m, dst);
    };
    let slots = &mut out.spare_capacity_mut()[..len];
    if start_parallel(len) && len > PIECE {
        slots.par_chunks_mut(PIECE).enumerate().for_each(place);
    } else {
        slots.chunks_mut(PIECE).enumerate().for_each(place);
    }
    // SAFETY: `scatter_piece` wrote every slot of every piece, and the pieces tile `len`.
    unsafe { out.set_len(len) };
    out
}

/// Where each piece's values begin among the picked ones, and their total last: one entry
/// per piece of `PIECE` mask elements, plus one.
fn piece_starts(mask: &[bool]) -> Vec<usize> {
    let count = |m: &[bool]| m.iter().map(|&b| usize::from(b)).sum::<usize>();
    let counts: Vec<usize> = if start_parallel(mask.len()) && mask.len() > PIECE {
        mask.par_chunks(PIECE).map(count).collect()
    } else {
        mask.chunks(PIECE).map(count).collect()
    };
    let mut starts = Vec::with_capacity(counts.len() + 1);
    let mut total = 0;
    starts.push(0);
    for c in counts {
        total += c;
        starts.push(total);
    }
    starts
}

/// One piece of [`select`]: `dst` holds exactly as many slots as `mask` marks.
fn select_piece<T: Copy + Default>(values: &[T], mask: &[bool], dst: &mut [MaybeUninit<T>]) {
    let mut buffer = [T::default(); BLOCK];
    let mut written = 0;
    for (v, m) in values.chunks(BLOCK).zip(mask.chunks(BLOCK)) {
        // Every value is written at the next free place, which moves on only past a pick:
        // at most one place per value, so a block never fills more than the buffer.
        let mut filled = 0;
        for (&value, &keep) in v.iter().zip(m) {
            buffer[filled] = value;
            filled += usize::from(keep);
        }
        for (slot, &value) in dst[written..written + filled].iter_mut().zip(&buffer) {
            slot.write(value);
        }
        written += filled;
    }
    debug_assert_eq!(written, dst.len());
}

/// One piece of [`scatter`]: every slot of `dst` written, from `picked` where `mask` marks
/// and with zero elsewhere. A block is cleared, then the places of its marks are listed
/// (each written at the next free place, which moves on only past a mark), then the picked
/// values are written there.
fn scatter_piece<T: Real>(picked: &[T], mask: &[bool], dst: &mut [MaybeUninit<T>]) {
    let mut places = [0u16; BLOCK];
    let mut next = 0;
    for (d, m) in dst.chunks_mut(BLOCK).zip(mask.chunks(BLOCK)) {
        let d = crate::parallel::cleared(d, T::ZERO);
        let mut marked = 0;
        for (place, &keep) in (0u16..).zip(m) {
            places[marked] = place;
            marked += usize::from(keep);
        }
        for (&place, &value) in places[..marked].iter().zip(&picked[next..next + marked]) {
            d[usize::from(place)] = value;
        }
        next += marked;
    }
    debug_assert_eq!(next, picked.len());
}

#[cfg(test)]
mod tests {
    use super::{PIECE, scatter, select};

    /// A mask with runs and isolated marks, different in every piece.
    fn mask(len: usize, seed: u64) -> Vec<bool> {
        let mut state = seed;
        (0..len)
            .map(|i| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                match (i / 1000) % 4 {
                    0 => true,
                    1 => false,
                    _ => state >> 63 == 1,
                }
            })
            .collect()
    }

    #[test]
    fn select_keeps_the_marked_values_in_order() {
        for len in [0, 1, 7, 255, 256, 257, 3 * PIECE + 11] {
            let values: Vec<i64> = (0..len as i64).collect();
            let m = mask(len, len as u64);
            let expected: Vec<i64> =
                values.iter().zip(&m).filter(|(_, k)| **k).map(|(v, _)| *v).collect();
            assert_eq!(select(&values, &m), expected, "length {len}");
        }
    }

    #[test]
    fn scatter_puts_the_values_back_and_zeros_elsewhere() {
        for len in [0, 1, 7, 255, 256, 257, 3 * PIECE + 11] {
            let m = mask(len, 3 + len as u64);
            let picked: Vec<f64> =
                (0..m.iter().filter(|k| **k).count()).map(|i| i as f64 + 0.5).collect();
            let mut next = 0;
            let expected: Vec<f64> = m
                .iter()
                .map(|&k| {
                    if k {
                        next += 1;
                        picked[next - 1]
                    } else {
                        0.0
                    }
                })
                .collect();
            assert_eq!(scatter(&picked, &m), expected, "length {len}");
            assert_eq!(select(&expected, &m), picked, "length {len}");
        }
    }

    #[test]
    fn all_or_nothing_marked() {
        let values = vec![2.0f32; PIECE + 3];
        assert_eq!(select(&values, &vec![true; PIECE + 3]), values);
        assert!(select(&values, &vec![false; PIECE + 3]).is_empty());
        assert_eq!(scatter::<f32>(&[], &[false; 5]), vec![0.0; 5]);
    }

    #[test]
    #[should_panic(expected = "one value per true mask element")]
    fn scatter_rejects_a_count_that_does_not_match() {
        scatter(&[1.0f32], &[true, true]);
    }
}
