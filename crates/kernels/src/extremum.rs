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
fn replaces<T: Real, const MAX: bool>(candidate: T, best: T) -> bool {
    let better = if MAX { candidate > best } else { candidate < best };
    // Without short-circuits: a branch per element would keep the loops scalar.
    !best.is_nan() & (candidate.is_nan() | better)
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
        // The direction as a constant, so that the compare in the inner loops is one
        // instruction the vector loop can use.
        match (values.len() == 1, max) {
            (true, true) => (values[0], positions[0]) = row::<T, true>(x),
            (true, false) => (values[0], positions[0]) = row::<T, false>(x),
            (false, true) => across_rows::<T, true>(x, values, positions, n),
            (false, false) => across_rows::<T, false>(x, values, positions, n),
        }
    }
}

/// One contiguous row: sixteen lanes, each the extremum of every sixteenth element, then
/// the lanes and the remainder combined so that the earliest of equals still wins. Lanes
/// remember the chunk their value came from as a `u32` (as wide as an f32, so values and
/// positions share the vector registers' lanes) unless the row has more chunks than that
/// counts.
#[inline(always)]
fn row<T: Real, const MAX: bool>(x: &[T]) -> (T, i64) {
    if x.len() / LANES < u32::MAX as usize {
        row_lanes::<T, u32, MAX>(x)
    } else {
        row_lanes::<T, usize, MAX>(x)
    }
}

const LANES: usize = 16;

/// A chunk number kept in a lane.
trait Chunk: Copy {
    fn new(c: usize) -> Self;
    fn get(self) -> usize;
}

impl Chunk for u32 {
    #[inline(always)]
    fn new(c: usize) -> Self {
        c as u32
    }
    #[inline(always)]
    fn get(self) -> usize {
        self as usize
    }
}

impl Chunk for usize {
    #[inline(always)]
    fn new(c: usize) -> Self {
        c
    }
    #[inline(always)]
    fn get(self) -> usize {
        self
    }
}

/// The row in lanes for finite values: the per-lane compare and two selects vectorise.
/// A lane that meets an infinity or a NaN turns its `poison` sum NaN (`v * 0`), and the
/// row is then taken element by element ([`row_exact`]), which orders NaNs as PyTorch does.
#[inline(always)]
fn row_lanes<T: Real, C: Chunk, const MAX: bool>(x: &[T]) -> (T, i64) {
    let chunks = x.chunks_exact(LANES);
    if x.len() < LANES {
        return row_exact::<T, MAX>(x);
    }
    let mut lanes = [T::ZERO; LANES];
    lanes.copy_from_slice(&x[..LANES]);
    let mut at = [C::new(0); LANES];
    let mut poison = [T::ZERO; LANES];
    for k in 0..LANES {
        poison[k] += lanes[k] * T::ZERO;
    }
    for (c, chunk) in chunks.enumerate().skip(1) {
        let chunk: &[T; LANES] = chunk.try_into().expect("one chunk");
        let c = C::new(c);
        for k in 0..LANES {
            let v = chunk[k];
            let take = if MAX { v > lanes[k] } else { v < lanes[k] };
            lanes[k] = if take { v } else { lanes[k] };
            at[k] = if take { c } else { at[k] };
            poison[k] += v * T::ZERO;
        }
    }
    if poison.iter().any(|p| p.is_nan()) {
        return row_exact::<T, MAX>(x);
    }
    // The best lane, the earliest position among equals, then the remainder after them.
    let mut best = (lanes[0], at[0].get() * LANES);
    for k in 1..LANES {
        let (v, i) = (lanes[k], at[k].get() * LANES + k);
        if replaces::<T, MAX>(v, best.0) || (v == best.0 && i < best.1) {
            best = (v, i);
        }
    }
    let start = x.len() - x.len() % LANES;
    for (i, &v) in x[start..].iter().enumerate() {
        if replaces::<T, MAX>(v, best.0) {
            best = (v, start + i);
        }
    }
    (best.0, best.1 as i64)
}

/// The row element by element.
fn row_exact<T: Real, const MAX: bool>(x: &[T]) -> (T, i64) {
    let mut best = (x[0], 0);
    for (i, &v) in x.iter().enumerate().skip(1) {
        if replaces::<T, MAX>(v, best.0) {
            best = (v, i);
        }
    }
    (best.0, best.1 as i64)
}

/// `values.len()` rows of `n` elements, that far apart, side by side.
#[inline(always)]
fn across_rows<T: Real, const MAX: bool>(
    x: &[T],
    values: &mut [T],
    positions: &mut [i64],
    n: usize,
) {
    let inner = values.len();
    values.copy_from_slice(&x[..inner]);
    positions.fill(0);
    for j in 1..n {
        let row = &x[j * inner..(j + 1) * inner];
        for ((best, at), &v) in values.iter_mut().zip(positions.iter_mut()).zip(row) {
            if replaces::<T, MAX>(v, *best) {
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
        // Few distinct values, so that ties are common; NaNs and infinities in some rows.
        for sizes in
            [(1, 1, 1), (3, 15, 1), (2, 16, 1), (2, 37, 1), (3, 100, 1), (2, 7, 5), (1, 40, 33)]
        {
            for with_nan in [false, true] {
                let len = sizes.0 * sizes.1 * sizes.2;
                let x: Vec<f64> = (0..len)
                    .map(|i| match (i * 7919) % 23 {
                        0 if with_nan => f64::NAN,
                        1 if with_nan => f64::INFINITY,
                        2 if with_nan => f64::NEG_INFINITY,
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
