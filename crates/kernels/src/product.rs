//! Products along rows (`prod`, `prod_dim`) and their gradient, rows split across threads.
//!
//! Each row's product is accumulated in f64 (as PyTorch does on the CPU) in several
//! independent chains (one chain would wait out a multiply's latency for every element),
//! each a mantissa and an integer exponent, so that no order of the factors overflows or
//! underflows before the end: the result is f64's product rounded once. The gradient of a row's product by one factor is the product of the others; a row without
//! zeros gets it by one division per element, a row with zeros by the cases of
//! `tapegrad-ops`' recorded rule, element for element the same arithmetic, so a plain
//! backward and one that records its graph give the same bits.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::Real;
use crate::columns::{STRIP, Strip, by_strips};
use crate::parallel::start_parallel;
use crate::simd::{WidestLoop, run_widest};

/// Input elements a task takes at least.
const BLOCK: usize = 1 << 14;

/// Independent product chains per row: enough 4-lane f64 vectors to cover a multiply's
/// latency on AVX2 (two to four of them with AVX-512).
const CHAINS: usize = 16;

/// Rows longer than this are multiplied in blocks of this many elements, on rayon's threads
/// when there are enough, and the blocks' products multiplied in order; so are their
/// gradients written.
const LONG: usize = 1 << 16;

/// The bits of an f64's exponent field.
const EXPONENT: u64 = 0x7ff << 52;

/// A normal `x` as `m 2^e` with `|m|` in `[1, 2)` and `e` an integer; zero, the infinities
/// and NaN as themselves with `e = 0` (a subnormal as itself, with an exponent of -1023).
#[inline(always)]
fn split_normal(x: f64) -> (f64, i64) {
    let bits = x.to_bits();
    let field = ((bits & EXPONENT) >> 52) as i64;
    let keep = field == 0 || field == 0x7ff;
    let m = f64::from_bits((bits & !EXPONENT) | (1023 << 52));
    (if keep { x } else { m }, if keep { 0 } else { field - 1023 })
}

/// [`split_normal`] for any `x`, a subnormal first scaled into the normal range (exactly).
#[inline(always)]
fn split(x: f64) -> (f64, i64) {
    const TWO_TO_64: f64 = 18_446_744_073_709_551_616.0;
    let tiny = x.abs() < f64::MIN_POSITIVE;
    let (m, e) = split_normal(if tiny { x * TWO_TO_64 } else { x });
    (m, if tiny { e - 64 } else { e })
}

/// A product as `m 2^e`: f64's precision, and no overflow or underflow before the end,
/// whatever the order of its factors.
#[derive(Clone, Copy)]
struct Scaled {
    m: f64,
    e: i64,
}

impl Scaled {
    const ONE: Scaled = Scaled { m: 1.0, e: 0 };

    /// `self` times `other`, its mantissa brought back to `[1, 2)`.
    #[inline(always)]
    fn times(self, other: Scaled) -> Scaled {
        let (m, e) = split(self.m * other.m);
        Scaled { m, e: self.e + other.e + e }
    }

    /// Whether the product is zero or NaN: a zero factor, a NaN, or zero times infinity.
    #[inline(always)]
    fn zero_or_nan(self) -> bool {
        self.m == 0.0 || self.m.is_nan()
    }

    /// The product rounded once to `T`.
    #[inline(always)]
    fn value<T: Real>(self) -> T {
        if self.zero_or_nan() || self.m.is_infinite() {
            return T::round_from(self.m);
        }
        // `|m|` is in `[1, 2)`: past these bounds the result is zero or infinite in f64. The
        // first factor keeps it in the normal range, exactly; the second rounds once.
        let e = self.e.clamp(-1_200, 1_200);
        let first = e.clamp(-1_000, 1_000);
        let power = |k: i64| f64::from_bits(((k + 1023) as u64) << 52);
        T::round_from(self.m * power(first) * power(e - first))
    }
}

/// The product of `row`'s elements with `map` applied to each: `CHAINS` running products
/// over the elements in turn, then the leftover elements, then the chains in order, each a
/// mantissa in f64 and an integer exponent. An f32 element widened to f64 is normal, with
/// an exponent within 150 of zero, so six of them multiply into a mantissa before it is
/// split again; an f64 element is split as it comes, into a mantissa in `[1, 2)`, and 64 of
/// those stay below `2^64`.
#[inline(always)]
fn chained_product<T: Real>(row: &[T], map: impl Fn(T) -> T) -> Scaled {
    let wide = std::mem::size_of::<T>() > 4;
    let steps = if wide { 64 } else { 6 };
    let mut m = [1.0f64; CHAINS];
    let mut e = [0i64; CHAINS];
    let factor = |x: T| if wide { split(map(x).widen()) } else { (map(x).widen(), 0) };
    // A chain's mantissa stays normal (or zero, infinite or NaN) between splits.
    let renormalise = |m: &mut [f64; CHAINS], e: &mut [i64; CHAINS]| {
        for (m, e) in m.iter_mut().zip(e.iter_mut()) {
            let (mantissa, exponent) = split_normal(*m);
            *m = mantissa;
            *e += exponent;
        }
    };
    let blocks = row.chunks_exact(CHAINS * steps);
    let rest = blocks.remainder();
    for block in blocks {
        for part in block.chunks_exact(CHAINS) {
            for ((m, e), &x) in m.iter_mut().zip(e.iter_mut()).zip(part) {
                let (fm, fe) = factor(x);
                *m *= fm;
                *e += fe;
            }
        }
        renormalise(&mut m, &mut e);
    }
    for part in rest.chunks(CHAINS) {
        for ((m, e), &x) in m.iter_mut().zip(e.iter_mut()).zip(part) {
            let (fm, fe) = factor(x);
            *m *= fm;
            *e += fe;
        }
        renormalise(&mut m, &mut e);
    }
    m.iter().zip(&e).fold(Scaled::ONE, |p, (&m, &e)| p.times(Scaled { m, e }))
}

/// An element as a factor of the product of a row's nonzero elements: zeros count as one.
#[inline(always)]
fn nonzero<T: Real>(x: T) -> T {
    if x == T::ZERO { T::ONE } else { x }
}

/// [`chained_product`] compiled for the widest vectors.
struct Chained<'a, T, F>(&'a [T], F);

impl<T: Real, F: Fn(T) -> T> WidestLoop for Chained<'_, T, F> {
    type Output = Scaled;
    #[inline(always)]
    fn run(self) -> Scaled {
        chained_product(self.0, self.1)
    }
}

/// The product of a row of any length: [`chained_product`] up to `LONG` elements, past it
/// the product of its blocks' products.
fn product<T: Real>(row: &[T], map: impl Fn(T) -> T + Copy + Send + Sync) -> Scaled {
    if row.len() <= LONG {
        return run_widest(Chained(row, map));
    }
    let block = |b: &[T]| run_widest(Chained(b, map));
    let blocks: Vec<Scaled> = if start_parallel(row.len()) {
        row.par_chunks(LONG).map(block).collect()
    } else {
        row.chunks(LONG).map(block).collect()
    };
    blocks.iter().fold(Scaled::ONE, |p, &b| p.times(b))
}

/// An output of `out_per_row` elements for each of `rows` rows of `n` input elements, written
/// by `write(first_row, slots)` task by task, each task a run of whole rows; tasks go to
/// rayon's threads when the input is large. `write` must write every slot it is given.
fn by_rows<T: Real>(
    rows: usize,
    n: usize,
    out_per_row: usize,
    write: impl Fn(usize, &mut [MaybeUninit<T>]) + Sync + Send,
) -> Vec<T> {
    let len = rows * out_per_row;
    let mut out: Vec<T> = Vec::with_capacity(len);
    if len == 0 {
        return out;
    }
    let rows_per_task = (BLOCK / n.max(1)).max(1);
    let chunk = rows_per_task * out_per_row;
    let task = |(index, part): (usize, &mut [MaybeUninit<T>])| write(index * rows_per_task, part);
    let spare = &mut out.spare_capacity_mut()[..len];
    if rows > rows_per_task && start_parallel(rows * n) {
        spare.par_chunks_mut(chunk).enumerate().for_each(task);
    } else {
        spare.chunks_mut(chunk).enumerate().for_each(task);
    }
    // SAFETY: the chunks cover the first `len` elements, and each writer fills every slot of
    // its chunk (both callers write one value per slot, row by row).
    unsafe { out.set_len(len) };
    out
}

/// The product of each of `rows` rows of `n` elements of `src` (1 for rows of no elements).
///
/// ```
/// use tapegrad_kernels::product::row_products;
/// assert_eq!(row_products(&[1.0f32, 2.0, 3.0, -1.0, 0.5, 4.0], (2, 3)), vec![6.0, -2.0]);
/// assert_eq!(row_products::<f64>(&[], (2, 0)), vec![1.0, 1.0]);
/// ```
///
/// # Panics
/// If `src` holds fewer than `rows * n` elements.
pub fn row_products<T: Real>(src: &[T], (rows, n): (usize, usize)) -> Vec<T> {
    assert!(src.len() >= rows * n, "row_products: fewer than {rows} rows of {n} elements");
    if n > LONG {
        return src.chunks_exact(n).take(rows).map(|row| product(row, |x| x).value()).collect();
    }
    struct Products<'a, T> {
        src: &'a [T],
        n: usize,
        first: usize,
        out: &'a mut [MaybeUninit<T>],
    }
    impl<T: Real> WidestLoop for Products<'_, T> {
        type Output = ();
        #[inline(always)]
        fn run(self) {
            for (r, slot) in self.out.iter_mut().enumerate() {
                let at = (self.first + r) * self.n;
                slot.write(chained_product(&self.src[at..at + self.n], |x| x).value());
            }
        }
    }
    by_rows(rows, n, 1, |first, out| run_widest(Products { src, n, first, out }))
}

/// What a row's gradient needs besides the incoming gradient: `p`, the product of its nonzero
/// elements rounded to `T`, how many zeros it has, and (with one zero) `z`, the sum of `x`
/// times whether `x` is zero.
#[derive(Clone, Copy)]
enum Others<T> {
    NoZero { p: T },
    OneZero { p: T, z: T },
    Zeros,
}

impl<T: Real> Others<T> {
    /// From the row's product `whole` and, when that is zero or NaN (a zero in the row, or
    /// a NaN), another look at the row.
    #[inline(always)]
    fn of(row: &[T], whole: Scaled) -> Self {
        if !whole.zero_or_nan() {
            return Others::NoZero { p: whole.value() };
        }
        Self::with_zeros(row, || product(row, nonzero).value())
    }

    /// From the row's elements and `p`, which gives the product of its nonzero elements the
    /// way the forward pass multiplies them.
    #[inline(never)]
    fn with_zeros(row: &[T], p: impl Fn() -> T) -> Self {
        let is_zero = |x: T| x == T::ZERO;
        match row.iter().filter(|&&x| is_zero(x)).count() {
            0 => Others::NoZero { p: p() },
            // The recorded rule sums `x * (x == 0)`: zeros of either sign from +0, so +0,
            // unless an element is infinite or NaN (`x * 0` is NaN there), then NaN.
            1 => {
                let finite = row.iter().all(|&x| x * T::ZERO == T::ZERO);
                let z = if finite { T::ZERO } else { T::round_from(f64::NAN) };
                Others::OneZero { p: p(), z }
            }
            _ => Others::Zeros,
        }
    }

    /// `g` times the product of the elements other than `x`.
    #[inline(always)]
    fn at(self, g: T, x: T) -> T {
        match self {
            Others::NoZero { p } => g * (p / x),
            Others::OneZero { p, z } => g * if x == T::ZERO { p } else { z * (p / x) },
            Others::Zeros => g * T::ZERO,
        }
    }

    /// [`Others::at`] for each of `xs` (a run of the row).
    #[inline(always)]
    fn write(self, g: T, xs: &[T], slots: &mut [MaybeUninit<T>]) {
        let pairs = slots.iter_mut().zip(xs);
        match self {
            // The common case, as a loop the compiler vectorises.
            Others::NoZero { p } => pairs.for_each(|(slot, &x)| {
                slot.write(g * (p / x));
            }),
            _ => pairs.for_each(|(slot, &x)| {
                slot.write(self.at(g, x));
            }),
        }
    }
}

/// The gradient of each row's product by each of its elements: `grad[r]` times the product
/// of row `r`'s other elements, computed as `tapegrad-ops` records it. With `p` the product
/// of the row's nonzero elements (rounded to `T`):
/// - no zero in the row: `p / x`;
/// - one zero: `p` for the zero; for each other element `z (p / x)`, where `z` is the row's
///   sum of `x` times whether `x` is zero (zero, or NaN if an element is infinite or NaN);
/// - more zeros: zero;
///
/// each multiplied by `grad[r]`.
///
/// ```
/// use tapegrad_kernels::product::row_product_gradient;
/// let x = [2.0f64, 3.0, 4.0, 0.0, 5.0, 2.0];
/// let g = row_product_gradient(&[1.0, 10.0], &x, (2, 3));
/// assert_eq!(g, vec![12.0, 8.0, 6.0, 100.0, 0.0, 0.0]);
/// ```
///
/// # Panics
/// If `grad` holds fewer than `rows` elements or `src` fewer than `rows * n`.
pub fn row_product_gradient<T: Real>(grad: &[T], src: &[T], (rows, n): (usize, usize)) -> Vec<T> {
    assert!(grad.len() >= rows, "row_product_gradient: fewer than {rows} gradients");
    assert!(src.len() >= rows * n, "row_product_gradient: fewer than {rows} rows of {n}");
    if n > LONG {
        return long_rows_gradient(grad, src, (rows, n));
    }
    struct Gradient<'a, T> {
        grad: &'a [T],
        src: &'a [T],
        n: usize,
        first: usize,
        out: &'a mut [MaybeUninit<T>],
    }
    impl<T: Real> WidestLoop for Gradient<'_, T> {
        type Output = ();
        #[inline(always)]
        fn run(self) {
            let n = self.n;
            for (r, slots) in self.out.chunks_exact_mut(n).enumerate() {
                let row = &self.src[(self.first + r) * n..][..n];
                let others = Others::of(row, chained_product(row, |x| x));
                others.write(self.grad[self.first + r], row, slots);
            }
        }
    }
    if n == 0 {
        return Vec::new();
    }
    by_rows(rows, n, n, |first, out| run_widest(Gradient { grad, src, n, first, out }))
}

/// [`row_product_gradient`] for rows past `LONG` elements: each row's product from its
/// blocks, then its gradient written in blocks on rayon's threads.
fn long_rows_gradient<T: Real>(grad: &[T], src: &[T], (rows, n): (usize, usize)) -> Vec<T> {
    struct Run<'a, T> {
        others: Others<T>,
        g: T,
        xs: &'a [T],
        slots: &'a mut [MaybeUninit<T>],
    }
    impl<T: Real> WidestLoop for Run<'_, T> {
        type Output = ();
        #[inline(always)]
        fn run(self) {
            self.others.write(self.g, self.xs, self.slots);
        }
    }
    let len = rows * n;
    let mut out: Vec<T> = Vec::with_capacity(len);
    let spare = &mut out.spare_capacity_mut()[..len];
    for ((row, slots), &g) in src.chunks_exact(n).zip(spare.chunks_exact_mut(n)).zip(grad) {
        let others = Others::of(row, product(row, |x| x));
        let block = |(slots, xs): (&mut [MaybeUninit<T>], &[T])| {
            run_widest(Run { others, g, xs, slots });
        };
        if start_parallel(n) {
            slots.par_chunks_mut(LONG).zip(row.par_chunks(LONG)).for_each(block);
        } else {
            slots.chunks_mut(LONG).zip(row.chunks(LONG)).for_each(block);
        }
    }
    // SAFETY: the rows cover the first `len` elements, and each row's blocks cover it, every
    // slot written by `Others::write`.
    unsafe { out.set_len(len) };
    out
}

/// The products of `width` adjacent columns of a row-major block of `n` rows of `inner`
/// elements whose first column starts at `x[start]`, with `map` applied to each element, into
/// `out`: one chain per column, down its rows in order, each a mantissa in f64 and an integer
/// exponent split as in [`chained_product`] (an f32 chain every six rows and at the end, an
/// f64 factor as it comes). A column's bits depend on its elements alone, not on `width`.
#[inline(always)]
fn column_chains<T: Real>(
    x: &[T],
    start: usize,
    (n, inner): (usize, usize),
    map: impl Fn(T) -> T,
    out: &mut [Scaled],
) {
    let width = out.len();
    let wide = std::mem::size_of::<T>() > 4;
    let steps = if wide { 64 } else { 6 };
    let mut m = [1.0f64; STRIP];
    let mut e = [0i64; STRIP];
    for i in 0..n {
        let row = &x[start + i * inner..][..width];
        for ((m, e), &v) in m.iter_mut().zip(e.iter_mut()).zip(row) {
            let (fm, fe) = if wide { split(map(v).widen()) } else { (map(v).widen(), 0) };
            *m *= fm;
            *e += fe;
        }
        if (i + 1) % steps == 0 || i + 1 == n {
            for (m, e) in m[..width].iter_mut().zip(e[..width].iter_mut()) {
                let (mantissa, exponent) = split_normal(*m);
                *m = mantissa;
                *e += exponent;
            }
        }
    }
    for ((slot, &m), &e) in out.iter_mut().zip(&m).zip(&e) {
        *slot = Scaled { m, e };
    }
}

/// The product of each column of each of `outer` row-major blocks of `n` rows of `inner`
/// elements (`prod_dim` along a dimension followed by `inner` elements), as `outer x inner`
/// values; computed in place, column by column (see [`crate::columns`]), in f64 with an
/// integer exponent and rounded once, as [`row_products`] does along rows.
///
/// ```
/// use tapegrad_kernels::product::column_products;
/// // One block of three rows of two columns.
/// let x = [1.0f32, -1.0, 2.0, 0.5, 3.0, 4.0];
/// assert_eq!(column_products(&x, (1, 3, 2)), vec![6.0, -2.0]);
/// ```
///
/// # Panics
/// If `src` does not hold `outer * n * inner` elements.
pub fn column_products<T: Real>(src: &[T], (outer, n, inner): (usize, usize, usize)) -> Vec<T> {
    assert_eq!(src.len(), outer * n * inner, "column_products: {outer} x {n} x {inner} elements");
    struct Products<'a, 'b, T> {
        src: &'a [T],
        shape: (usize, usize),
        strip: Strip<'b, T>,
    }
    impl<T: Real> WidestLoop for Products<'_, '_, T> {
        type Output = ();
        #[inline(always)]
        fn run(self) {
            let (n, inner) = self.shape;
            let Strip { block, first, mut rows } = self.strip;
            let slots = &mut *rows[0];
            let mut chains = [Scaled::ONE; STRIP];
            let chains = &mut chains[..slots.len()];
            column_chains(self.src, block * n * inner + first, (n, inner), |x| x, chains);
            for (slot, chain) in slots.iter_mut().zip(chains.iter()) {
                slot.write(chain.value());
            }
        }
    }
    by_strips((outer, 1, inner), src.len(), |strip| {
        run_widest(Products { src, shape: (n, inner), strip })
    })
}

/// The gradient of [`column_products`]: for each element, `grad` at its column times the
/// product of the column's other elements, computed as [`row_product_gradient`] does for a
/// row (the cases of `tapegrad-ops`' recorded rule), with `grad` holding `outer x inner`
/// values.
///
/// ```
/// use tapegrad_kernels::product::column_product_gradient;
/// let x = [2.0f64, 0.0, 3.0, 5.0, 4.0, 2.0]; // three rows of two columns
/// let g = column_product_gradient(&[1.0, 10.0], &x, (1, 3, 2));
/// assert_eq!(g, vec![12.0, 100.0, 8.0, 0.0, 6.0, 0.0]);
/// ```
///
/// # Panics
/// If `grad` does not hold `outer * inner` elements or `src` `outer * n * inner`.
pub fn column_product_gradient<T: Real>(
    grad: &[T],
    src: &[T],
    (outer, n, inner): (usize, usize, usize),
) -> Vec<T> {
    assert_eq!(grad.len(), outer * inner, "column_product_gradient: {outer} x {inner} gradients");
    assert_eq!(src.len(), outer * n * inner, "column_product_gradient: {outer} x {n} x {inner}");
    struct Gradient<'a, 'b, T> {
        grad: &'a [T],
        src: &'a [T],
        shape: (usize, usize),
        strip: Strip<'b, T>,
    }
    impl<T: Real> WidestLoop for Gradient<'_, '_, T> {
        type Output = ();
        #[inline(always)]
        fn run(self) {
            let (n, inner) = self.shape;
            let Strip { block, first, mut rows } = self.strip;
            let width = rows.first().map_or(0, |r| r.len());
            let start = block * n * inner + first;
            let mut chains = [Scaled::ONE; STRIP];
            let chains = &mut chains[..width];
            column_chains(self.src, start, (n, inner), |x| x, chains);
            let g = &self.grad[block * inner + first..][..width];
            if chains.iter().all(|c| !c.zero_or_nan()) {
                let mut p = [T::ZERO; STRIP];
                for (p, c) in p.iter_mut().zip(chains.iter()) {
                    *p = c.value();
                }
                for (i, slots) in rows.iter_mut().enumerate() {
                    let xs = &self.src[start + i * inner..][..width];
                    for (((slot, &x), &p), &g) in slots.iter_mut().zip(xs).zip(&p).zip(g) {
                        slot.write(g * (p / x));
                    }
                }
                return;
            }
            let others: Vec<Others<T>> = (0..width)
                .map(|j| {
                    if !chains[j].zero_or_nan() {
                        return Others::NoZero { p: chains[j].value() };
                    }
                    let column: Vec<T> = (0..n).map(|i| self.src[start + i * inner + j]).collect();
                    Others::with_zeros(&column, || {
                        let mut one = [Scaled::ONE];
                        column_chains(&column, 0, (n, 1), nonzero, &mut one);
                        one[0].value()
                    })
                })
                .collect();
            for (i, slots) in rows.iter_mut().enumerate() {
                let xs = &self.src[start + i * inner..][..width];
                for (j, (slot, &x)) in slots.iter_mut().zip(xs).enumerate() {
                    slot.write(others[j].at(g[j], x));
                }
            }
        }
    }
    by_strips((outer, n, inner), src.len(), |strip| {
        run_widest(Gradient { grad, src, shape: (n, inner), strip })
    })
}

#[cfg(test)]
mod tests {
    use super::{
        LONG, column_product_gradient, column_products, row_product_gradient, row_products,
    };
    use crate::columns::tests::rows_last;

    fn sequential(row: &[f64]) -> f64 {
        row.iter().product()
    }

    #[test]
    fn products_of_long_and_short_rows_match_one_chain() {
        for n in [1, 2, 15, 16, 17, 33, 100, 1000, LONG + 1, 2 * LONG + 17] {
            let rows = 140_000 / n + 1;
            let src: Vec<f64> =
                (0..rows * n).map(|i| 1.0 + ((i * 7919) % 101) as f64 / 1000.0 - 0.05).collect();
            let got = row_products(&src, (rows, n));
            for (r, &p) in got.iter().enumerate() {
                let want = sequential(&src[r * n..(r + 1) * n]);
                assert!((p - want).abs() <= 1e-10 * want.abs(), "row {r} of {n}: {p} vs {want}");
            }
        }
    }

    #[test]
    fn rows_with_zeros_infinities_and_nans_follow_the_cases() {
        let nan = f64::NAN;
        let inf = f64::INFINITY;
        let rows: [&[f64]; 6] = [
            &[2.0, 3.0, 4.0],
            &[2.0, 0.0, 4.0],
            &[0.0, 3.0, 0.0],
            &[2.0, nan, 4.0],
            &[inf, 0.0, 4.0],
            &[-0.0, -3.0, -4.0],
        ];
        let src: Vec<f64> = rows.concat();
        let g = row_product_gradient(&[1.0; 6], &src, (6, 3));
        assert_eq!(&g[..3], &[12.0, 8.0, 6.0]);
        assert_eq!(&g[3..6], &[0.0, 8.0, 0.0]);
        assert_eq!(&g[6..9], &[0.0, 0.0, 0.0]);
        assert!(g[9..12].iter().all(|v| v.is_nan()));
        // The infinite element's derivative would be 0 * 4 in exact arithmetic; the recorded
        // rule's masked sum is NaN there (inf * 0), and so is this.
        assert!(g[12].is_nan() && g[13] == 4.0 * inf && g[14].is_nan());
        assert_eq!(g[15], 12.0);
        assert_eq!(row_products(&src, (6, 3))[..3], [24.0, 0.0, 0.0]);
    }

    #[test]
    fn long_rows_are_multiplied_and_differentiated_in_blocks() {
        // Powers of two and signs: every product is exact, whatever the order.
        let n = 2 * LONG + 3;
        let row: Vec<f64> = (0..n).map(|i| [2.0, 0.5, -1.0, 1.0][i % 4]).collect();
        let p: f64 = row.iter().product();
        let mut one_zero = row.clone();
        one_zero[LONG + 7] = 0.0;
        let mut two_zeros = one_zero.clone();
        two_zeros[5] = -0.0;
        let src = [row.clone(), one_zero, two_zeros].concat();
        assert_eq!(row_products(&src, (3, n)), vec![p, 0.0, 0.0]);
        let g = row_product_gradient(&[3.0, 1.0, 1.0], &src, (3, n));
        assert!(g[..n].iter().zip(&row).all(|(&d, &x)| d == 3.0 * (p / x)));
        let without = p / row[LONG + 7];
        assert_eq!(g[n + LONG + 7], without);
        assert!(g[n..2 * n].iter().enumerate().all(|(i, &d)| i == LONG + 7 || d == 0.0));
        assert!(g[2 * n..].iter().all(|&d| d == 0.0));
    }

    #[test]
    fn no_order_of_the_factors_overflows_or_underflows_on_the_way() {
        // Reciprocal pairs, alternating: each chain alone would overflow f64 (and in f32 the
        // product is near one).
        let big = 3.0e30f32;
        let row: Vec<f32> = (0..1000).map(|i| if i % 2 == 0 { big } else { 1.0 / big }).collect();
        let pair = f64::from(big) * f64::from(1.0 / big);
        let want = pair.powi(500) as f32;
        assert_eq!(row_products(&row, (1, 1000)), vec![want]);
        // f64: two large, two small; and a subnormal factor times a large one.
        let row: Vec<f64> = (0..1000).map(|i| if i % 4 < 2 { 1e300 } else { 1e-300 }).collect();
        let want = (1e300f64 * 1e-300).powi(500);
        let got = row_products(&row, (1, 1000))[0];
        assert!((got - want).abs() <= 1e-12 * want, "{got} vs {want}");
        let tiny = 4e-320f64;
        let scale = 18_446_744_073_709_551_616.0f64;
        let want = tiny * scale * 1e300 * 1e20 / scale;
        assert_eq!(row_products(&[tiny, 1e300, 1e20], (1, 3)), vec![want]);
        // Underflow and overflow at the end only.
        assert_eq!(row_products(&[1e-30f32; 10], (1, 10)), vec![0.0]);
        assert_eq!(row_products(&[-1e30f32; 9], (1, 9)), vec![f32::NEG_INFINITY]);
        assert_eq!(row_products(&[1e-200f64, 1e-200, 1e-200], (1, 3)), vec![0.0]);
        assert_eq!(row_products(&[1e-200f64, 1e-108, 1e-8], (1, 3)), vec![1e-200 * 1e-116]);
    }

    #[test]
    fn column_products_match_products_along_rows() {
        // Powers of two and signs, zeros in some columns (one, or two): every product and
        // every gradient is exact whatever the order, so the two kernels agree bit for bit.
        for (outer, n, inner) in [(1, 1, 16), (2, 7, 16), (3, 40, 33), (1, 300, 600), (4, 13, 1000)]
        {
            let len = outer * n * inner;
            let mut x: Vec<f32> =
                (0..len).map(|i| [2.0, 0.5, -1.0, 1.0][(i / inner + i % inner) % 4]).collect();
            x[3 * inner % len] = 0.0;
            x[(5 * inner + 1) % len] = -0.0;
            x[(6 * inner + 1) % len] = 0.0;
            let g: Vec<f32> = (0..outer * inner).map(|i| (i % 9) as f32 - 4.0).collect();
            let rows = rows_last(&x, (outer, n, inner));
            let same = |a: &[f32], b: &[f32]| {
                a.len() == b.len() && a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits())
            };
            let products = column_products(&x, (outer, n, inner));
            let shape = format!("{outer} x {n} x {inner}");
            assert!(same(&products, &row_products(&rows, (outer * inner, n))), "{shape}");
            let along_rows = row_product_gradient(&g, &rows, (outer * inner, n));
            let got = column_product_gradient(&g, &x, (outer, n, inner));
            assert!(same(&rows_last(&got, (outer, n, inner)), &along_rows), "{shape}");
        }
        assert_eq!(column_products::<f64>(&[], (2, 0, 3)), vec![1.0; 6]);
        assert!(column_product_gradient::<f64>(&[1.0; 6], &[], (2, 0, 3)).is_empty());
    }

    #[test]
    fn column_products_are_f64_products_rounded_once() {
        let (outer, n, inner) = (3, 500, 70);
        let x: Vec<f32> = (0..outer * n * inner)
            .map(|i| 1.0 + ((i * 7919) % 101) as f32 / 1000.0 - 0.05)
            .collect();
        let got = column_products(&x, (outer, n, inner));
        for o in 0..outer {
            for j in 0..inner {
                let want: f64 = (0..n).map(|i| f64::from(x[(o * n + i) * inner + j])).product();
                let p = got[o * inner + j];
                assert!(
                    (f64::from(p) - want).abs() <= 1e-6 * want.abs(),
                    "{o}, {j}: {p} vs {want}"
                );
            }
        }
        // Reciprocal pairs down a column: no chain leaves f64's range on the way.
        let big = 3.0e30f32;
        let x: Vec<f32> =
            (0..1000 * 16).map(|i| if (i / 16) % 2 == 0 { big } else { 1.0 / big }).collect();
        let pair = f64::from(big) * f64::from(1.0 / big);
        assert_eq!(column_products(&x, (1, 1000, 16)), vec![pair.powi(500) as f32; 16]);
    }
}
