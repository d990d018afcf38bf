//! The maximum (or minimum) along one dimension and where it is: `torch.max(x, dim)`.
//!
//! A contiguous buffer of shape `[outer, n, inner]` holds `outer * inner` rows of `n`
//! elements, `inner` apart (as in [`crate::softmax`]). A NaN wins over any number, and
//! among equal values (or NaNs) the first is chosen, as PyTorch chooses. Rows along the last
//! dimension run in sixteen lanes; rows `inner` apart run side by side, which vectorises
//! across them. Blocks are independent and shared among threads without changing a result.

use rayon::prelude::*;

use crate::Real;
use crate::parallel::start_parallel;
use crate::simd::{WidestLoop, run_widest};

/// The extremum of each row along the middle dimension of `x` (shape `[outer, n, inner]`,
/// `n >= 1`) and its position in the row: `outer * inner` of each.
///
/// ```
/// use tapegrad_kernels::extremum::extremum_along;
/// // Rows [1, 5, 5] and [NaN, 2, NaN]: the first 5, and the first NaN.
/// let x = [1.0f32, 5.0, 5.0, f32::NAN, 2.0, f32::NAN];
/// let (values, at) = extremum_along(&x, (2, 3, 1), true);
/// assert_eq!((values[0], at), (5.0, vec![1, 0]));
/// assert!(values[1].is_nan());
/// // The minimum down the columns of a 2 x 2 block.
/// assert_eq!(extremum_along(&[3.0f64, 1.0, 2.0, 4.0], (1, 2, 2), false), (vec![2.0, 1.0], vec![1, 0]));
/// ```
///
/// # Panics
/// If `n` is 0 or `x` does not hold `outer * n * inner` elements.
pub fn extremum_along<T: Real>(
    x: &[T],
    (outer, n, inner): (usize, usize, usize),
    max: bool,
) -> (Vec<T>, Vec<i64>) {
    let len = outer.checked_mul(n).and_then(|v| v.checked_mul(inner));
    assert!(n > 0 && len == Some(x.len()), "extremum_along: buffer size");
    let mut values = vec![T::ZERO; outer * inner];
    let mut positions = vec![0i64; outer * inner];
    if x.is_empty() {
        return (values, positions);
    }
    let run = |((values, positions), x): ((&mut [T], &mut [i64]), &[T])| {
        run_widest(Block { x, values, positions, n, max });
    };
    let block = n * inner;
    if outer > 1 && start_parallel(x.len()) {
        let per_task = (outer / (4 * rayon::current_num_threads())).max(1);
        values
            .par_chunks_mut(inner)
            .zip(positions.par_chunks_mut(inner))
            .zip(x.par_chunks(block))
            .with_min_len(per_task)
            .for_each(run);
    } else {
        values
            .chunks_mut(inner)
            .zip(positions.chunks_mut(inner))
            .zip(x.chunks(block))
            .for_each(run);
    }
    (values, positions)
}

/// Whether `candidate`, met after `best` in a row, takes its place: NaN wins, and only a
/// strictly better value replaces an earlier one.
#[inline(always)]
fn replaces<T: Real>(candidate: T, best: T, max: bool) -> bool {
    let better = if max { candidate > best } else { candidate < best };
    !best.is_nan() && (candidate.is_nan() || better)
}

/// One block `[n, inner]` reduced to `inner` extrema.
struct Block<'a, T> {
    x: &'a [T],
    values: &'a mut [T],
    positions: &'a mut [i64],
    n: usize,
    max: bool,
}

impl<T: Real> WidestLoop for Block<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let Block { x, values, positions, n, max } = self;
        if values.len() == 1 {
            (values[0], positions[0]) = row(x, max);
        } else {
            across_rows(x, values, positions, n, max);
        }
    }
}

/// One contiguous row: sixteen lanes, each the extremum of every sixteenth element, then
/// the lanes and the remainder combined so that the earliest of equals still wins.
#[inline(always)]
fn row<T: Real>(x: &[T], max: bool) -> (T, i64) {
    const LANES: usize = 16;
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    let mut best = (x[0], 0usize);
    if x.len() >= LANES {
        let mut lanes = [T::ZERO; LANES];
        lanes.copy_from_slice(&x[..LANES]);
        let mut at: [usize; LANES] = std::array::from_fn(|k| k);
        for (c, chunk) in chunks.enumerate().skip(1) {
            for k in 0..LANES {
                if replaces(chunk[k], lanes[k], max) {
                    lanes[k] = chunk[k];
                    at[k] = c * LANES + k;
                }
            }
        }
        best = (lanes[0], at[0]);
        for k in 1..LANES {
            let (v, i) = (lanes[k], at[k]);
            let equal = v == best.0 || (v.is_nan() && best.0.is_nan());
            if replaces(v, best.0, max) || (equal && i < best.1) {
                best = (v, i);
            }
        }
    }
    let start = x.len() - rest.len();
    for (i, &v) in rest.iter().enumerate() {
        if replaces(v, best.0, max) {
            best = (v, start + i);
        }
    }
    (best.0, best.1 as i64)
}

/// `values.len()` rows of `n` elements, that far apart, side by side.
#[inline(always)]
fn across_rows<T: Real>(x: &[T], values: &mut [T], positions: &mut [i64], n: usize, max: bool) {
    let inner = values.len();
    values.copy_from_slice(&x[..inner]);
    positions.fill(0);
    for j in 1..n {
        let row = &x[j * inner..(j + 1) * inner];
        for ((best, at), &v) in values.iter_mut().zip(positions.iter_mut()).zip(row) {
            if replaces(v, *best, max) {
                *best = v;
                *at = j as i64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::extremum_along;

    /// The definition, one row at a time.
    fn reference(
        x: &[f64],
        (outer, n, inner): (usize, usize, usize),
        max: bool,
    ) -> Vec<(f64, i64)> {
        let mut out = Vec::new();
        for o in 0..outer {
            for i in 0..inner {
                let row: Vec<f64> = (0..n).map(|j| x[(o * n + j) * inner + i]).collect();
                let pick = match row.iter().position(|v| v.is_nan()) {
                    Some(p) => p,
                    None => {
                        let best = row
                            .iter()
                            .copied()
                            .fold(row[0], |a, b| if max { a.max(b) } else { a.min(b) });
                        row.iter().position(|&v| v == best).expect("present")
                    }
                };
                out.push((row[pick], pick as i64));
            }
        }
        out
    }

    #[test]
    fn every_layout_picks_the_first_extremum_or_the_first_nan() {
        // Few distinct values, so that ties are common; NaNs in some rows.
        for sizes in
            [(1, 1, 1), (3, 15, 1), (2, 16, 1), (2, 37, 1), (3, 100, 1), (2, 7, 5), (1, 40, 33)]
        {
            for with_nan in [false, true] {
                let len = sizes.0 * sizes.1 * sizes.2;
                let x: Vec<f64> = (0..len)
                    .map(|i| match (i * 7919) % 23 {
                        0 if with_nan => f64::NAN,
                        r => (r % 5) as f64 - 2.0,
                    })
                    .collect();
                for max in [true, false] {
                    let (values, at) = extremum_along(&x, sizes, max);
                    let want = reference(&x, sizes, max);
                    for (k, &(v, i)) in want.iter().enumerate() {
                        assert_eq!(at[k], i, "{sizes:?} nan {with_nan} max {max} row {k}");
                        assert!(values[k] == v || (v.is_nan() && values[k].is_nan()));
                    }
                }
            }
        }
    }
}
