//! Constant padding of every dimension at once: one pass over the output, block by block
//! (each block cleared to the value while it is in cache, then its source rows copied in),
//! instead of one full copy per padded dimension.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::parallel::{cleared, start_parallel};
use crate::short_copy::copy_row;

/// Output elements a task takes at least.
const BLOCK: usize = 1 << 14;

/// `src` (a contiguous tensor of `shape`) with `pads[k] = (before, after)` elements of
/// `value` added on either side of dimension `k`: PyTorch's constant `F.pad`, all
/// dimensions in one pass. The leading dimensions without padding are split across threads.
///
/// ```
/// use tapegrad_kernels::pad::pad_constant;
/// // A 2 x 2 image padded by one on the left and top, and by nothing on the right and bottom.
/// let out = pad_constant(&[1, 2, 3, 4], &[2, 2], &[(1, 0), (1, 0)], 0);
/// assert_eq!(out, vec![0, 0, 0, 0, 1, 2, 0, 3, 4]);
/// ```
///
/// # Panics
/// If `pads` and `shape` differ in length, or `src` does not hold `shape`'s elements.
pub fn pad_constant<T: Copy + Send + Sync>(
    src: &[T],
    shape: &[usize],
    pads: &[(usize, usize)],
    value: T,
) -> Vec<T> {
    assert_eq!(pads.len(), shape.len(), "pad_constant: one pair of pads per dimension");
    assert_eq!(src.len(), shape.iter().product::<usize>(), "pad_constant: src is not the shape");
    let padded: Vec<usize> = shape.iter().zip(pads).map(|(&n, &(b, a))| b + n + a).collect();
    let len: usize = padded.iter().product();
    let mut out: Vec<T> = Vec::with_capacity(len);
    if len == 0 {
        return out;
    }
    // Blocks: everything from the first padded dimension on.
    let Some(first) = pads.iter().position(|&p| p != (0, 0)) else {
        out.extend_from_slice(src);
        return out;
    };
    let (out_block, src_block): (usize, usize) =
        (padded[first..].iter().product(), shape[first..].iter().product());
    let (shape, pads) = (&shape[first..], &pads[first..]);
    let per_task = (BLOCK / out_block).max(1);
    let fill = |(task, part): (usize, &mut [MaybeUninit<T>])| {
        for (b, slots) in part.chunks_mut(out_block).enumerate() {
            let block = cleared(slots, value);
            let at = (task * per_task + b) * src_block;
            copy_inside(block, &src[at..at + src_block], shape, pads);
        }
    };
    let spare = &mut out.spare_capacity_mut()[..len];
    if len > out_block * per_task && start_parallel(len) {
        spare.par_chunks_mut(out_block * per_task).enumerate().for_each(fill);
    } else {
        spare.chunks_mut(out_block * per_task).enumerate().for_each(fill);
    }
    // SAFETY: the chunks cover the first `len` elements in whole blocks, and each block was
    // cleared to `value` before its source rows were copied in.
    unsafe { out.set_len(len) };
    out
}

/// `src` (of `shape`) copied into `dst` (of the padded shape), each at its padded place.
fn copy_inside<T: Copy>(dst: &mut [T], src: &[T], shape: &[usize], pads: &[(usize, usize)]) {
    let (n, (before, after)) = (shape[0], pads[0]);
    if shape.len() == 1 {
        copy_row(&mut dst[before..before + n], src);
        return;
    }
    if n == 0 || src.is_empty() {
        return;
    }
    let (dst_inner, src_inner) = (dst.len() / (before + n + after), src.len() / n);
    let dst = &mut dst[before * dst_inner..(before + n) * dst_inner];
    for (d, s) in dst.chunks_exact_mut(dst_inner).zip(src.chunks_exact(src_inner)) {
        copy_inside(d, s, &shape[1..], &pads[1..]);
    }
}

#[cfg(test)]
mod tests {
    use super::pad_constant;

    /// The padded tensor element by element: the source element where the output's
    /// coordinates fall inside it, else the value.
    fn reference(src: &[f64], shape: &[usize], pads: &[(usize, usize)], value: f64) -> Vec<f64> {
        let padded: Vec<usize> = shape.iter().zip(pads).map(|(&n, &(b, a))| b + n + a).collect();
        let len: usize = padded.iter().product();
        (0..len)
            .map(|mut flat| {
                let mut from = 0;
                let mut inside = true;
                let mut stride = 1;
                for k in (0..shape.len()).rev() {
                    let c = flat % padded[k];
                    flat /= padded[k];
                    let (before, n) = (pads[k].0, shape[k]);
                    inside &= c >= before && c < before + n;
                    from += c.saturating_sub(before) * stride;
                    stride *= n;
                }
                if inside { src[from] } else { value }
            })
            .collect()
    }

    #[test]
    fn every_dimension_pads_as_the_reference() {
        type Case = (&'static [usize], &'static [(usize, usize)]);
        let cases: [Case; 7] = [
            (&[5], &[(2, 3)]),
            (&[3, 4], &[(0, 0), (1, 2)]),
            (&[3, 4], &[(2, 0), (0, 1)]),
            (&[2, 3, 4, 5], &[(0, 0), (0, 0), (1, 1), (2, 3)]),
            (&[2, 3, 4], &[(1, 0), (0, 0), (0, 2)]),
            (&[64, 32, 33], &[(0, 0), (1, 1), (1, 1)]), // long enough to split across threads
            (&[2, 0, 3], &[(0, 0), (1, 1), (0, 0)]),    // an empty dimension padded
        ];
        for (shape, pads) in cases {
            let len: usize = shape.iter().product();
            let src: Vec<f64> = (0..len).map(|i| i as f64 + 1.0).collect();
            assert_eq!(
                pad_constant(&src, shape, pads, -7.0),
                reference(&src, shape, pads, -7.0),
                "{shape:?} {pads:?}"
            );
        }
        assert_eq!(pad_constant(&[1.0f32, 2.0], &[2], &[(0, 0)], 0.0), vec![1.0, 2.0]);
        assert!(pad_constant::<f32>(&[], &[0], &[(0, 0)], 0.0).is_empty());
    }
}
