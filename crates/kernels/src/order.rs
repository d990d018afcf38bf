//! The order of the elements of each row: the positions that sort a row (`sort`,
//! `argsort`), or only its first `keep` of them (`topk`).
//!
//! Each element becomes an unsigned key whose integer order is the sort order (NaN above
//! every number and equal to every NaN, `-0.0` equal to `0.0`), packed above its position in
//! the row. Packed values are all distinct and compare as (key, position), so an unstable
//! integer sort gives the stable order, and a selection of the first `keep` followed by a
//! sort of those gives the same first `keep` as a full sort. Rows are split across threads;
//! each row is ordered by one task, so the result is the same at every thread count.

use rayon::prelude::*;

use crate::parallel::start_parallel;

/// An element type the rows can hold, with its order-preserving unsigned key.
///
/// ```
/// use tapegrad_kernels::order::OrderKey;
/// assert!((-1.0f32).order_key() < 0.0f32.order_key());
/// assert_eq!((-0.0f32).order_key(), 0.0f32.order_key());
/// assert!(f32::INFINITY.order_key() < f32::NAN.order_key());
/// assert!((-5i64).order_key() < 3i64.order_key());
/// ```
pub trait OrderKey: Copy + Send + Sync {
    /// The key: `a < b` in the sort order exactly when `a.order_key() < b.order_key()`.
    fn order_key(self) -> u64;
    /// Whether every key fits in 32 bits (positions then pack into one `u64`).
    const NARROW: bool;
}

impl OrderKey for f32 {
    #[inline]
    fn order_key(self) -> u64 {
        if self.is_nan() {
            return u64::from(u32::MAX);
        }
        // `+ 0.0` turns -0.0 into 0.0, which compare equal; flipping the sign bit of
        // positives and every bit of negatives makes the bit patterns ascend with the values.
        let bits = (self + 0.0).to_bits();
        let key = if bits >> 31 == 1 { !bits } else { bits | 1 << 31 };
        u64::from(key)
    }
    const NARROW: bool = true;
}

impl OrderKey for f64 {
    #[inline]
    fn order_key(self) -> u64 {
        if self.is_nan() {
            return u64::MAX;
        }
        let bits = (self + 0.0).to_bits();
        if bits >> 63 == 1 { !bits } else { bits | 1 << 63 }
    }
    const NARROW: bool = false;
}

impl OrderKey for i64 {
    #[inline]
    fn order_key(self) -> u64 {
        (self as u64) ^ 1 << 63
    }
    const NARROW: bool = false;
}

/// For each row of `len` elements in `rows` (one after another), the positions of its first
/// `keep` elements in ascending order (descending when `descending`), equal elements in the
/// order they stand in the row: `keep` positions per row, row after row.
///
/// ```
/// use tapegrad_kernels::order::row_orders;
/// let rows = [3.0f32, 1.0, 2.0, 1.0, /* second row */ 0.0, f32::NAN, -1.0, 0.0];
/// assert_eq!(row_orders(&rows, 4, 4, false), vec![1, 3, 2, 0, 2, 0, 3, 1]);
/// assert_eq!(row_orders(&rows, 4, 2, true), vec![0, 2, 1, 0]);
/// ```
///
/// # Panics
/// If `keep > len`, `rows` is not whole rows, or a row is longer than `u32::MAX` elements.
pub fn row_orders<T: OrderKey>(rows: &[T], len: usize, keep: usize, descending: bool) -> Vec<i64> {
    assert!(keep <= len, "row_orders: keep {keep} exceeds the row length {len}");
    if len == 0 {
        return vec![];
    }
    assert!(
        rows.len().is_multiple_of(len),
        "row_orders: {} elements are not rows of {len}",
        rows.len()
    );
    assert!(len <= u32::MAX as usize, "row_orders: rows of {len} elements are too long");
    let count = rows.len() / len;
    let mut out = vec![0i64; count * keep];
    if keep == 0 {
        return out;
    }
    let per_task = (4096 / len).max(1);
    let work = |(task, part): (usize, &mut [i64])| {
        let first = task * per_task;
        let mut scratch = Scratch::default();
        for (r, dst) in part.chunks_exact_mut(keep).enumerate() {
            let row = &rows[(first + r) * len..(first + r + 1) * len];
            if T::NARROW {
                scratch.narrow.clear();
                scratch.narrow.extend(row.iter().enumerate().map(|(i, &v)| {
                    let key = v.order_key();
                    (if descending { !key & u64::from(u32::MAX) } else { key }) << 32 | i as u64
                }));
                first_in_order(&mut scratch.narrow, keep);
                for (o, &p) in dst.iter_mut().zip(&scratch.narrow[..keep]) {
                    *o = (p & u64::from(u32::MAX)) as i64;
                }
            } else {
                scratch.wide.clear();
                scratch.wide.extend(row.iter().enumerate().map(|(i, &v)| {
                    let key = v.order_key();
                    u128::from(if descending { !key } else { key }) << 64 | i as u128
                }));
                first_in_order(&mut scratch.wide, keep);
                for (o, &p) in dst.iter_mut().zip(&scratch.wide[..keep]) {
                    *o = p as u64 as i64;
                }
            }
        }
    };
    let chunk = per_task * keep;
    if count > per_task && start_parallel(rows.len()) {
        out.par_chunks_mut(chunk).enumerate().for_each(work);
    } else {
        out.chunks_mut(chunk).enumerate().for_each(work);
    }
    out
}

/// One task's buffers of packed keys, reused from row to row.
#[derive(Default)]
struct Scratch {
    narrow: Vec<u64>,
    wide: Vec<u128>,
}

/// The `keep` smallest of `packed` moved to its front, in ascending order.
fn first_in_order<P: Ord>(packed: &mut [P], keep: usize) {
    // A selection is linear; it pays when it leaves much of the row unsorted.
    if keep < packed.len() / 2 {
        packed.select_nth_unstable(keep);
        packed[..keep].sort_unstable();
    } else {
        packed.sort_unstable();
    }
}

#[cfg(test)]
mod tests {
    use std::cmp::Ordering;

    use super::*;

    /// The positions by a stable comparison sort on the values, as the reference.
    fn by_comparison<T: OrderKey + PartialOrd>(row: &[T], descending: bool) -> Vec<i64> {
        #[allow(clippy::eq_op)]
        let cmp = |a: T, b: T| match (a != a, b != b) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => a.partial_cmp(&b).expect("neither is NaN"),
        };
        let mut order: Vec<usize> = (0..row.len()).collect();
        if descending {
            order.sort_by(|&i, &j| cmp(row[j], row[i]));
        } else {
            order.sort_by(|&i, &j| cmp(row[i], row[j]));
        }
        order.into_iter().map(|i| i as i64).collect()
    }

    #[test]
    fn keys_follow_the_values() {
        let ascending = [f32::NEG_INFINITY, -3.5, -f32::MIN_POSITIVE, 0.0, 1e-45, 2.0, f32::MAX];
        for pair in ascending.windows(2) {
            assert!(pair[0].order_key() < pair[1].order_key(), "{pair:?}");
            assert!(f64::from(pair[0]).order_key() < f64::from(pair[1]).order_key(), "{pair:?}");
        }
        assert!(f32::INFINITY.order_key() < (-f32::NAN).order_key());
        assert_eq!((-f64::NAN).order_key(), f64::NAN.order_key());
        assert_eq!((-0.0f64).order_key(), 0.0f64.order_key());
        assert!(i64::MIN.order_key() < (-1i64).order_key() && (-1i64).order_key() < 0.order_key());
        assert!((i64::MAX - 1).order_key() < i64::MAX.order_key());
    }

    #[test]
    fn rows_sort_stably_with_ties_and_nan() {
        // Few distinct values, so that ties are everywhere; rows long enough to go parallel.
        let len = 300;
        let values: Vec<f32> = (0..len * 400)
            .map(|k| match (k * 7919) % 13 {
                0 => f32::NAN,
                1 => -0.0,
                m => m as f32 - 6.0,
            })
            .collect();
        for descending in [false, true] {
            let all = row_orders(&values, len, len, descending);
            let top = row_orders(&values, len, 7, descending);
            let wide = row_orders(
                &values.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
                len,
                len,
                descending,
            );
            for (r, row) in values.chunks(len).enumerate() {
                let expected = by_comparison(row, descending);
                assert_eq!(all[r * len..(r + 1) * len], expected[..], "row {r}");
                assert_eq!(wide[r * len..(r + 1) * len], expected[..], "row {r} in f64");
                assert_eq!(top[r * 7..(r + 1) * 7], expected[..7], "row {r}, first 7");
            }
        }
    }

    #[test]
    fn integers_and_empty_rows() {
        let ints = [5i64, i64::MIN, 5, -2, i64::MAX, 0];
        assert_eq!(row_orders(&ints, 6, 6, false), vec![1, 3, 5, 0, 2, 4]);
        assert_eq!(row_orders(&ints, 3, 1, true), vec![0, 1]);
        assert!(row_orders::<f32>(&[], 0, 0, false).is_empty());
        assert_eq!(row_orders(&[1.0f32, 2.0], 2, 0, false), Vec::<i64>::new());
    }
}
