//! Copies (and fills) of short rows (an image row of a few dozen pixels) without a call to
//! the C library's `memmove` (`memset`): `copy_from_slice` (`fill`) of a length known only
//! at run time is such a call, whose entry and size dispatch cost more than the copy of a
//! 32-pixel row, and the convolutions' padded copies and column matrices make one per row
//! of every plane.

/// Elements per fixed-size block: 64 bytes of f32, 128 of f64.
const BLOCK: usize = 16;

/// `dst.copy_from_slice(src)` in blocks of fixed sizes that the compiler copies inline
/// (vector moves): whole blocks of 16, then one block ending at the last element (which
/// may copy a few elements twice, the same values); rows shorter than a block take two
/// overlapping blocks of 8, 4 or 2.
///
/// # Panics
/// If the two lengths differ.
#[inline(always)]
pub(crate) fn copy_row<T: Copy>(dst: &mut [T], src: &[T]) {
    let len = dst.len();
    assert_eq!(len, src.len(), "copy_row: the rows have different lengths");
    if len >= BLOCK {
        let mut at = 0;
        while at + BLOCK <= len {
            copy_block::<T, BLOCK>(&mut dst[at..at + BLOCK], &src[at..at + BLOCK]);
            at += BLOCK;
        }
        if at < len {
            copy_block::<T, BLOCK>(&mut dst[len - BLOCK..], &src[len - BLOCK..]);
        }
    } else if len >= 8 {
        copy_ends::<T, 8>(dst, src);
    } else if len >= 4 {
        copy_ends::<T, 4>(dst, src);
    } else if len >= 2 {
        copy_ends::<T, 2>(dst, src);
    } else if len == 1 {
        dst[0] = src[0];
    }
}

/// `dst.fill(value)` in blocks of fixed sizes, as [`copy_row`] copies.
#[inline(always)]
pub(crate) fn fill_row<T: Copy>(dst: &mut [T], value: T) {
    let len = dst.len();
    if len >= BLOCK {
        let block = [value; BLOCK];
        let mut at = 0;
        while at + BLOCK <= len {
            copy_block::<T, BLOCK>(&mut dst[at..at + BLOCK], &block);
            at += BLOCK;
        }
        if at < len {
            copy_block::<T, BLOCK>(&mut dst[len - BLOCK..], &block);
        }
    } else if len >= 8 {
        copy_ends::<T, 8>(dst, &[value; 16][..len]);
    } else if len >= 4 {
        copy_ends::<T, 4>(dst, &[value; 8][..len]);
    } else if len >= 2 {
        copy_ends::<T, 2>(dst, &[value; 4][..len]);
    } else if len == 1 {
        dst[0] = value;
    }
}

/// The first and the last `N` elements (`N <= len <= 2 N`: together, all of them).
#[inline(always)]
fn copy_ends<T: Copy, const N: usize>(dst: &mut [T], src: &[T]) {
    let len = dst.len();
    copy_block::<T, N>(&mut dst[..N], &src[..N]);
    copy_block::<T, N>(&mut dst[len - N..], &src[len - N..]);
}

#[inline(always)]
fn copy_block<T: Copy, const N: usize>(dst: &mut [T], src: &[T]) {
    let dst: &mut [T; N] = dst.try_into().expect("a block of N elements");
    let src: &[T; N] = src.try_into().expect("a block of N elements");
    *dst = *src;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length up to three blocks and a bit, at several offsets: the row arrives
    /// whole, and nothing around it is touched.
    #[test]
    fn copies_every_length_exactly() {
        for len in 0..60 {
            for offset in [0, 1, 5] {
                let src: Vec<f32> = (0..len + offset).map(|i| i as f32 + 0.5).collect();
                let mut dst = vec![-1.0f32; len + offset + 3];
                copy_row(&mut dst[offset..offset + len], &src[offset..]);
                assert!(dst[..offset].iter().all(|&v| v == -1.0), "before the row, len {len}");
                assert_eq!(&dst[offset..offset + len], &src[offset..], "len {len}");
                assert!(dst[offset + len..].iter().all(|&v| v == -1.0), "after the row, len {len}");
            }
        }
        let src = [1.0f64, 2.0, 3.0];
        let mut dst = [0.0f64; 3];
        copy_row(&mut dst, &src);
        assert_eq!(dst, src);
    }

    /// Every length up to three blocks and a bit, at several offsets: the row holds the
    /// value, and nothing around it is touched.
    #[test]
    fn fills_every_length_exactly() {
        for len in 0..60 {
            for offset in [0, 1, 5] {
                let mut dst = vec![-1.0f32; len + offset + 3];
                fill_row(&mut dst[offset..offset + len], 2.5);
                assert!(dst[..offset].iter().all(|&v| v == -1.0), "before the row, len {len}");
                assert!(dst[offset..offset + len].iter().all(|&v| v == 2.5), "len {len}");
                assert!(dst[offset + len..].iter().all(|&v| v == -1.0), "after the row, len {len}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "different lengths")]
    fn rows_of_different_lengths_panic() {
        copy_row(&mut [0.0f32; 3], &[1.0f32; 4]);
    }
}
