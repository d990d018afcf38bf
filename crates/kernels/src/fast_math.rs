//! Element functions written to vectorise, where libm's scalar calls dominate an op.
//!
//! No branches and no calls (but fused multiply-adds, single instructions in the kernels' AVX-512
//! and AVX2 copies), so the compiler turns a tensor's loop into SIMD code. `exp` and `tanh` on f32
//! run in f32 arithmetic, sixteen lanes to a 512-bit vector, with the steps ordered so their
//! rounding stays small against the result's last bit: never more than one ulp from the correctly
//! rounded value, and equal to it for more than 99% of inputs (the tests below sweep every
//! exponent; a run over every seventh f32, 611 million inputs, found the same bounds: they are
//! measured, not proved).
//! That is the accuracy of PyTorch's own vectorised `exp` and `tanh` (SLEEF's 1-ulp forms).
//! The normal distribution and density (GELU) carry `x^2 / 2` (their exponent) and the last
//! step of their polynomial as pairs of floats, so their tails keep the relative precision
//! one rounding of a large exponent would lose: within two steps of the correctly rounded
//! value.

/// `e^r - 1` for `r = r_hi - c` with `|r| <= ln 2 / 2`, in f32: `r_hi + (r^2 q(r) - c)`, so
/// the small correction `c` and the polynomial's rounding stay below the sum's last bit.
/// Degree 7 Taylor (truncation below 1e-8 relative).
#[inline(always)]
fn exp_reduced_minus_one(r_hi: f32, c: f32) -> f32 {
    let r = r_hi - c;
    let mut p: f32 = 1.0 / 5_040.0;
    for coefficient in [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5] {
        p = p.mul_add(r, coefficient);
    }
    let q = (r * r).mul_add(p, -c);
    r_hi + q
}

/// `e^x` split as `2^k (1 + s)`: `(k, s)` with `|s| <= 0.42`, for `x` in `[-110, 89]`.
#[inline(always)]
fn exp_parts(x: f32) -> (i32, f32) {
    // ln 2 in two parts: `k * LN2_HI` is exact for |k| < 2^15, and so is `x - k * LN2_HI`
    // (the two are within a factor of two of each other).
    const LN2_HI: f32 = f32::from_bits(0x3f31_8000); // 355 / 512
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Round to nearest by adding 1.5 * 2^23: the integer lands in the low mantissa bits
    // (baseline x86-64 has no vector `round`).
    const SHIFTER: f32 = 12_582_912.0;
    let shifted = x.mul_add(std::f32::consts::LOG2_E, SHIFTER);
    let k = shifted - SHIFTER;
    let k_int = shifted.to_bits().wrapping_sub(SHIFTER.to_bits()) as i32;
    (k_int, exp_reduced_minus_one((-k).mul_add(LN2_HI, x), k * LN2_LO))
}

/// `p 2^k` for `k` in `[-252, 254]`, rounded once: two power-of-two factors, each a normal
/// f32, so results in the subnormal range and at the top of the range come out right.
#[inline(always)]
fn scale_by_power_of_two(p: f32, k: i32) -> f32 {
    let half = k >> 1;
    let first = f32::from_bits(((half + 127) as u32) << 23);
    let second = f32::from_bits(((k - half + 127) as u32) << 23);
    p * first * second
}

/// `tanh(x)` for f32, vectorisable, in f32 arithmetic (sixteen lanes to a 512-bit vector).
/// Below `|x| = 0.9`, an odd polynomial `x + x^3 P(x^2)` (a near-minimax fit, truncation
/// below 2e-9 relative); above, `1 - 2 / (e^{2|x|} + 1)`, where the subtracted term is
/// below 0.29, which keeps its rounding small against the result; beyond `|x| = 9.1` f32's
/// tanh is 1. Within one ulp of the correctly rounded value on every f32 checked (every
/// seventh; 0.09% one ulp off, the rest correctly rounded).
///
/// ```
/// use tapegrad_kernels::fast_math::tanh_f32;
/// assert_eq!(tanh_f32(0.0), 0.0);
/// assert!((tanh_f32(0.5) - 0.5f32.tanh()).abs() <= f32::EPSILON);
/// ```
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    const P: [f32; 7] = [
        -0.333_333_22,
        0.133_329_78,
        -0.053_929_303,
        0.021_663_543,
        -0.008_264_543,
        0.002_582_667_6,
        -0.000_455_459_8,
    ];
    let a = x.abs();
    let u = a * a;
    let mut poly = P[6];
    for coefficient in P[..6].iter().rev() {
        poly = poly.mul_add(u, *coefficient);
    }
    let small = (a * u).mul_add(poly, a);
    // Written as a comparison, the bound lets NaN through (one `vminps`, where `f32::min`
    // needs a NaN test and a blend after it), and NaN then propagates to the result.
    let bounded = if a > 9.1 { 9.1 } else { a };
    let (k, s) = exp_parts(2.0 * bounded);
    // `k <= 27`: one power-of-two factor is exact (`scale_by_power_of_two` takes two so that
    // results near f32's limits round once).
    let e = (1.0 + s) * f32::from_bits(((k + 127) as u32) << 23);
    let large = 1.0 - 2.0 / (e + 1.0);
    let t = if a < 0.9 { small } else { large };
    t.copysign(x)
}

/// `e^x` for f32, vectorisable, in f32 arithmetic: within one ulp of the correctly rounded
/// value on every f32 checked (every seventh; 0.43% one ulp off), 0 below about -103.97,
/// infinity above about
/// 88.72, NaN for NaN.
///
/// ```
/// use tapegrad_kernels::fast_math::exp_f32;
/// assert_eq!(exp_f32(0.0), 1.0);
/// assert!((exp_f32(1.0) - std::f32::consts::E).abs() <= f32::EPSILON * 3.0);
/// assert_eq!((exp_f32(f32::NEG_INFINITY), exp_f32(f32::INFINITY)), (0.0, f32::INFINITY));
/// ```
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    // Past these bounds the result is 0 or infinity already; clamping keeps `k` in
    // `[-150, 128]`. `clamp` passes NaN through (two comparisons, each false for NaN), and
    // the arithmetic after it keeps it.
    let (k, s) = exp_parts(x.clamp(-104.0, 89.0));
    scale_by_power_of_two(1.0 + s, k)
}

/// `e^x - 1` for f32, vectorisable, in f32 arithmetic, keeping the relative precision of
/// small results that `exp_f32(x) - 1` loses to cancellation: with `e^x = 2^k (1 + s)`,
/// the result is `2^k s + (2^k - 1)` in one fused multiply-add, where `2^k - 1` is exact
/// (or rounds to -1 where `2^k` is below the last bit of 1) and `s` itself is `e^r - 1`
/// for the reduced argument. -1 below about -17.3, infinity above about 88.72, NaN for NaN,
/// -0 at -0.
///
/// ```
/// use tapegrad_kernels::fast_math::exp_m1_f32;
/// assert_eq!(exp_m1_f32(0.0), 0.0);
/// assert!((exp_m1_f32(1e-6) - 1e-6).abs() <= 1e-12);
/// assert_eq!((exp_m1_f32(-100.0), exp_m1_f32(f32::INFINITY)), (-1.0, f32::INFINITY));
/// ```
#[inline(always)]
pub fn exp_m1_f32(x: f32) -> f32 {
    // Below -88 the result is -1 and above 89 infinity already; the clamp keeps `k` in
    // [-127, 128], and passes NaN through.
    let (k, s) = exp_parts(x.clamp(-88.0, 89.0));
    // Above 2^24 the 1 subtracted is below half a step of the result: `e^x` is the answer,
    // scaled in two factors so that it reaches the top of the range without overflowing.
    let large = scale_by_power_of_two(1.0 + s, k);
    let two_k = f32::from_bits(((k.clamp(-127, 24) + 127) as u32) << 23);
    let y = s.mul_add(two_k, two_k - 1.0);
    // Where k is 0, `s` is the result with no rounding added; and -0 stays -0.
    let y = if k == 0 { s } else { y };
    let y = if k > 24 { large } else { y };
    if x == 0.0 { x } else { y }
}

/// `ln(x)` for f32, vectorisable, in f32 arithmetic. `x = 2^k m` with `m` in
/// `[sqrt(1/2), sqrt 2)` (subnormals scaled by `2^23` first), and for `f = m - 1` (exact)
/// `ln(1 + f) = f - f^2/2 + s (f^2/2 + R)`, `s = f / (2 + f)`, `R = 2 (s^2/3 + s^4/5 + ...)`:
/// the atanh series rearranged so that the large terms come from the exact `f` and the
/// rounded `s` only scales a term at most a twenty-fifth of the result. `k ln 2` is added in
/// two parts, the first exact for every `k`, and only the last addition rounds the sum.
/// Within one ulp of the correctly rounded value on every f32 checked (every exponent, and
/// densely on [0.5, 2]; 2.7% of them one ulp off); -infinity at 0, NaN below 0 and for NaN,
/// infinity at infinity.
///
/// ```
/// use tapegrad_kernels::fast_math::ln_f32;
/// assert_eq!(ln_f32(1.0), 0.0);
/// assert!((ln_f32(std::f32::consts::E) - 1.0).abs() <= f32::EPSILON);
/// assert_eq!((ln_f32(0.0), ln_f32(f32::INFINITY)), (f32::NEG_INFINITY, f32::INFINITY));
/// assert!(ln_f32(-1.0).is_nan());
/// ```
#[inline(always)]
pub fn ln_f32(x: f32) -> f32 {
    let subnormal = x < f32::MIN_POSITIVE;
    let (k, m) = exponent_and_mantissa(if subnormal { x * 8_388_608.0 } else { x });
    let k = k as f32 - if subnormal { 23.0 } else { 0.0 };
    let result = ln_of_parts(k, m - 1.0, 0.0);
    if x > 0.0 && x < f32::INFINITY {
        result
    } else if x == 0.0 {
        f32::NEG_INFINITY
    } else if x == f32::INFINITY {
        x
    } else {
        f32::NAN
    }
}

/// `ln(1 + x)` for f32, vectorisable, in f32 arithmetic: [`ln_f32`]'s series on `u = 1 + x`
/// rounded, plus the rounding error `c` of that sum as `c / u` (to first order; `1 / u` from
/// a short series in the mantissa, 2% is enough for a term below half a step), and with `x`
/// itself as the series' `f` where `u` needs no scaling, so small `x` keep their relative
/// precision. Within one ulp of the correctly rounded value on every f32 checked; -infinity
/// at -1, NaN below -1 and for NaN, infinity at infinity, -0 at -0.
///
/// ```
/// use tapegrad_kernels::fast_math::ln_1p_f32;
/// assert_eq!(ln_1p_f32(0.0), 0.0);
/// assert_eq!(ln_1p_f32(1e-30), 1e-30);
/// assert!((ln_1p_f32(1.0) - std::f32::consts::LN_2).abs() <= f32::EPSILON);
/// assert_eq!(ln_1p_f32(-1.0), f32::NEG_INFINITY);
/// ```
#[inline(always)]
pub fn ln_1p_f32(x: f32) -> f32 {
    let (u, c) = two_sum(1.0, x);
    let (k, m) = exponent_and_mantissa(u);
    let unscaled = k == 0;
    let f = if unscaled { x } else { m - 1.0 };
    // 1 / m = 1 - f + f^2 - f^3 to within 2% for |f| <= 0.42.
    let inverse_m = f.mul_add(f.mul_add(1.0 - f, -1.0), 1.0);
    let correction = scale_by_power_of_two(c * inverse_m, -k);
    let result = ln_of_parts(k as f32, f, if unscaled { 0.0 } else { correction });
    if x > -1.0 && x < f32::INFINITY && x != 0.0 {
        result
    } else if x == -1.0 {
        f32::NEG_INFINITY
    } else if x == f32::INFINITY || x == 0.0 {
        x
    } else {
        f32::NAN
    }
}

/// `(k, m)` with `x = 2^k m` and `m` in `[sqrt(1/2), sqrt 2)`, for a positive normal `x`.
#[inline(always)]
fn exponent_and_mantissa(x: f32) -> (i32, f32) {
    // The bits of sqrt(1/2) rounded down: subtracted from `x`'s bits, the exponent field
    // gives `k`.
    const SQRT_HALF_BITS: i32 = 0x3f35_04f3;
    let bits = x.to_bits() as i32;
    let k = bits.wrapping_sub(SQRT_HALF_BITS) >> 23;
    (k, f32::from_bits(bits.wrapping_sub(k << 23) as u32))
}

/// `k ln 2 + ln(1 + f) + extra` for an exact `f` in `[sqrt(1/2) - 1, sqrt 2 - 1)`, an integer
/// `k` and a small `extra`, with only the last addition rounding the sum (see [`ln_f32`]).
#[inline(always)]
fn ln_of_parts(k: f32, f: f32, extra: f32) -> f32 {
    const LN2_HI: f32 = f32::from_bits(0x3f31_8000); // 355 / 512: `k * LN2_HI` is exact
    const LN2_LO: f32 = -2.121_944_4e-4;
    let s = f / (2.0 + f);
    let z = s * s;
    // 2/3 z + 2/5 z^2 + ... + 2/11 z^5: |s| <= 0.1716, so the next term is below 1e-10.
    let mut r: f32 = 2.0 / 11.0;
    for coefficient in [2.0 / 9.0, 2.0 / 7.0, 2.0 / 5.0, 2.0 / 3.0] {
        r = r.mul_add(z, coefficient);
    }
    let r = r * z;
    let square = f * f;
    let half_square = 0.5 * square;
    // `f^2 / 2` rounded, and its rounding error (exact, from a fused multiply-add).
    let half_square_lo = 0.5 * f.mul_add(f, -square);
    let small = s.mul_add(half_square + r, k.mul_add(LN2_LO, extra)) - half_square_lo;
    // `k ln2_hi + f` as a rounded sum and its error (exact: for k != 0 the first term is the
    // larger, for k = 0 the sum is `f`).
    let head = k.mul_add(LN2_HI, f);
    let head_lo = (k * LN2_HI - head) + f;
    head + (head_lo - (half_square - small))
}

/// Past this magnitude [`sin_f32`] and [`cos_f32`] do not hold: their reduction by `pi / 2`
/// is exact only for quotients below `2^20`. Callers take libm's functions for tensors with
/// larger values.
///
/// ```
/// use tapegrad_kernels::fast_math::{SIN_COS_BOUND, sin_f32};
/// let x = SIN_COS_BOUND;
/// assert!((sin_f32(x) - f64::from(x).sin() as f32).abs() <= f32::EPSILON);
/// ```
pub const SIN_COS_BOUND: f32 = 1.0e6;

/// Whether every element of `v` lies within [`SIN_COS_BOUND`] (NaN counts as within: both
/// functions give NaN for it), so that [`sin_f32`] and [`cos_f32`] may take the whole slice:
/// in vectors and, for a long slice, on rayon's threads.
///
/// ```
/// use tapegrad_kernels::fast_math::{SIN_COS_BOUND, within_sin_cos_bound};
/// assert!(within_sin_cos_bound(&[0.5, -SIN_COS_BOUND, f32::NAN]));
/// assert!(!within_sin_cos_bound(&[0.5, f32::INFINITY]));
/// ```
pub fn within_sin_cos_bound(v: &[f32]) -> bool {
    use rayon::prelude::*;
    struct Outside<'a>(&'a [f32]);
    impl crate::simd::WidestLoop for Outside<'_> {
        type Output = usize;
        #[inline(always)]
        fn run(self) -> usize {
            // A count rather than `any`, so that the loop vectorises.
            self.0.iter().filter(|v| v.abs() > SIN_COS_BOUND).count()
        }
    }
    let inside = |part: &[f32]| crate::simd::run_widest(Outside(part)) == 0;
    const BLOCK: usize = 1 << 16;
    if v.len() > BLOCK && crate::parallel::start_parallel(v.len()) {
        v.par_chunks(BLOCK).all(inside)
    } else {
        v.chunks(BLOCK).all(inside)
    }
}

/// `x = j pi/2 + r` with `|r| <= pi/4` (to within rounding), in f64: the quadrant `j mod 4`
/// and `r`. `pi/2` in two parts, the first of 33 bits, so `j` times it is exact for
/// `|j| < 2^20` and `r` carries f64's precision (f32's `x` has at most 24 significant bits).
#[inline(always)]
fn quarter_turns(x: f32) -> (u64, f64) {
    const PIO2_HI: f64 = f64::from_bits(0x3ff9_21fb_5440_0000);
    const PIO2_LO: f64 = f64::from_bits(0x3dd0_b461_1a62_6331);
    // Round to nearest by adding 1.5 * 2^52: the integer lands in the low mantissa bits.
    const SHIFTER: f64 = 6_755_399_441_055_744.0;
    let x = f64::from(x);
    let shifted = x.mul_add(std::f64::consts::FRAC_2_PI, SHIFTER);
    let j = shifted - SHIFTER;
    let r = (-j).mul_add(PIO2_HI, x);
    (shifted.to_bits() & 3, (-j).mul_add(PIO2_LO, r))
}

/// `sin(r)` and `cos(r)` for `|r| <= pi/4`, in f64: Taylor series to degree 11 and 12, whose
/// truncation is below 1e-11 relative.
#[inline(always)]
fn sin_cos_reduced(r: f64) -> (f64, f64) {
    let z = r * r;
    let mut s: f64 = -1.0 / 39_916_800.0;
    for coefficient in [1.0 / 362_880.0, -1.0 / 5_040.0, 1.0 / 120.0, -1.0 / 6.0] {
        s = s.mul_add(z, coefficient);
    }
    let mut c: f64 = 1.0 / 479_001_600.0;
    for coefficient in [-1.0 / 3_628_800.0, 1.0 / 40_320.0, -1.0 / 720.0, 1.0 / 24.0, -0.5] {
        c = c.mul_add(z, coefficient);
    }
    ((r * z).mul_add(s, r), z.mul_add(c, 1.0))
}

/// `sin(x)` (or, with `cosine`, `cos(x)`) from the quadrant and reduced argument.
#[inline(always)]
fn sine_of_quarter_turns(x: f32, cosine: bool) -> f32 {
    let (quadrant, r) = quarter_turns(x);
    let (sin_r, cos_r) = sin_cos_reduced(r);
    // cos x = sin(x + pi/2): one quadrant on.
    let quadrant = (quadrant + cosine as u64) & 3;
    let value = if quadrant & 1 == 0 { sin_r } else { cos_r };
    let value = if quadrant & 2 == 0 { value } else { -value };
    value as f32
}

/// `sin(x)` for f32 with `|x| <= SIN_COS_BOUND`, vectorisable: the reduction by `pi/2` and the
/// series in f64, rounded to f32 once, so nearly every result is the correctly rounded one
/// (the tests sweep every exponent in range). NaN for NaN. Larger `|x|` (infinity included)
/// is out of its domain: see [`SIN_COS_BOUND`].
///
/// ```
/// use tapegrad_kernels::fast_math::sin_f32;
/// assert_eq!(sin_f32(0.0), 0.0);
/// assert_eq!(sin_f32(1.0), 1.0f64.sin() as f32);
/// assert_eq!(sin_f32(-3.0), (-3.0f64).sin() as f32);
/// ```
#[inline(always)]
pub fn sin_f32(x: f32) -> f32 {
    let value = sine_of_quarter_turns(x, false);
    // sin(-0) = -0 (the series would give +0).
    if x == 0.0 { x } else { value }
}

/// `cos(x)` for f32 with `|x| <= SIN_COS_BOUND`, vectorisable (see [`sin_f32`]).
///
/// ```
/// use tapegrad_kernels::fast_math::cos_f32;
/// assert_eq!(cos_f32(0.0), 1.0);
/// assert_eq!(cos_f32(2.0), 2.0f64.cos() as f32);
/// ```
#[inline(always)]
pub fn cos_f32(x: f32) -> f32 {
    sine_of_quarter_turns(x, true)
}

/// `atan(t)` for `|t| <= tan(pi/8)`, in f64: its Taylor series to degree 23, whose
/// truncation is below 3e-11 relative there.
#[inline(always)]
fn atan_reduced(t: f64) -> f64 {
    let z = t * t;
    let mut p: f64 = -1.0 / 23.0;
    for c in [
        1.0 / 21.0,
        -1.0 / 19.0,
        1.0 / 17.0,
        -1.0 / 15.0,
        1.0 / 13.0,
        -1.0 / 11.0,
        1.0 / 9.0,
        -1.0 / 7.0,
        1.0 / 5.0,
        -1.0 / 3.0,
    ] {
        p = p.mul_add(z, c);
    }
    (t * z).mul_add(p, t)
}

/// `atan2(y, x)` for f32, the angle of the point `(x, y)` in `[-pi, pi]`, vectorisable:
/// reduced in f64 to `atan(t)` with `|t| <= tan(pi/8)` (by the smaller coordinate over the
/// larger, then `atan(a) = pi/4 + atan((a - 1) / (a + 1))` past `tan(pi/8)`), the series in
/// f64, one rounding to f32, so nearly every result is the correctly rounded one (the tests
/// sweep every exponent of both coordinates). Signed zeros, infinities and NaN as libm's.
///
/// ```
/// use tapegrad_kernels::fast_math::atan2_f32;
/// assert_eq!(atan2_f32(1.0, 1.0), std::f32::consts::FRAC_PI_4);
/// assert_eq!(atan2_f32(0.0, -1.0), std::f32::consts::PI);
/// assert_eq!(atan2_f32(-2.0, 3.0), (-2.0f64).atan2(3.0) as f32);
/// ```
#[inline(always)]
pub fn atan2_f32(y: f32, x: f32) -> f32 {
    use std::f64::consts::{FRAC_PI_2, FRAC_PI_4, PI};
    const TAN_PI_8: f64 = 0.414_213_562_373_095_03;
    let (ax, ay) = (f64::from(x.abs()), f64::from(y.abs()));
    let swapped = ay > ax;
    let (small, large) = if swapped { (ax, ay) } else { (ay, ax) };
    // Both infinite: the angle of the diagonal (inf - inf and inf / inf would be NaN).
    let both_infinite = small == f64::INFINITY && large == f64::INFINITY;
    let far = small > TAN_PI_8 * large || both_infinite;
    // Exact in f64 when `far`: the two are within a factor of 2.5 of each other.
    let (num, den) = if far { (small - large, small + large) } else { (small, large) };
    // Both zero: the angle of the positive or negative axis (0 / 0 would be NaN).
    let both_zero = small == 0.0 && large == 0.0;
    let t = if both_zero || both_infinite { 0.0 } else { num / den };
    let mut angle = atan_reduced(t) + if far { FRAC_PI_4 } else { 0.0 };
    angle = if swapped { FRAC_PI_2 - angle } else { angle };
    angle = if x.is_sign_negative() { PI - angle } else { angle };
    (angle as f32).copysign(y)
}

/// `a + b` as the rounded sum and its rounding error (Knuth's two-sum: no condition on the
/// operands' sizes).
#[inline(always)]
fn two_sum(a: f32, b: f32) -> (f32, f32) {
    let sum = a + b;
    let b_part = sum - a;
    (sum, (a - (sum - b_part)) + (b - b_part))
}

/// `x^2 / 2` as an unevaluated sum `hi + lo` (exact: the square's rounding error comes
/// back from a fused multiply-add, and halving is exact), so that `e^(-x^2/2)` keeps its
/// relative precision where `x^2` is large and one rounding of it would be many steps of
/// the result.
#[inline(always)]
fn half_square(x: f32) -> (f32, f32) {
    let square = x * x;
    (0.5 * square, 0.5 * x.mul_add(x, -square))
}

/// The lower tail `Phi(-|x|)` of the standard normal distribution and its density
/// `phi(x) = e^(-x^2/2) / sqrt(2 pi)`, in f32 arithmetic: GELU's factor and its derivative,
/// which share the exponential.
///
/// `erfc(a) = e^(-a^2) t Q(t)` for `a = |x| / sqrt 2` and `t = 1 / (1 + a/2)`, where `Q`, a
/// degree-12 polynomial fitted here for f32 coefficients (relative error 6e-9 for `a` up to
/// 15), takes `erfc`'s asymptotic `1 / (a sqrt pi)` through `t`. The tail is taken on the side
/// where it is small, so both tails keep their relative precision. Where a single rounding
/// would cost the result several steps, the error is recovered and folded in: `x^2 / 2` is
/// carried exactly as two floats, `Q`'s last step as two, and the roundings of `a` and `t`
/// (the largest, near 0, where `Q t` moves 2.3 times as fast as `t`) by first-order terms.
#[inline(always)]
fn normal_tail_and_density(x: f32) -> NormalParts {
    // Past |x| = 14.8 the tail, the density and `x` times it are below half of f32's
    // smallest subnormal; the bound keeps `2^k` inside `scale_by_power_of_two`'s range and
    // `a` inside the fit's.
    let xc = x.clamp(-14.8, 14.8);
    // a = |x| / sqrt 2 with `1/sqrt 2` in two parts.
    const INV_SQRT2_HI: f32 = std::f32::consts::FRAC_1_SQRT_2;
    const INV_SQRT2_LO: f32 = 1.210_161_75e-8;
    let magnitude = xc.abs();
    let a = magnitude * INV_SQRT2_HI;
    let a_lo = magnitude.mul_add(INV_SQRT2_HI, -a) + magnitude * INV_SQRT2_LO;
    let square = half_square(xc);
    let HalfErfc { k, s, tail } = half_erfc(a, a_lo, square);
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let density = square.1.mul_add(-INV_SQRT_2PI, INV_SQRT_2PI);
    NormalParts { x: xc, k, s, tail, density }
}

/// `erfc(a) / 2` as `2^k (1 + s) tail`, before its power of two (see [`half_erfc`]).
struct HalfErfc {
    k: i32,
    s: f32,
    tail: f32,
}

/// `erfc(a) / 2` for `a` in `[0, 10.5]`, given as `a + a_lo` (`a_lo` the rounding error of
/// an `a` computed from something else, or 0) and with `a^2` as the unevaluated sum
/// `hi + lo` (the method is [`normal_tail_and_density`]'s).
#[inline(always)]
fn half_erfc(a: f32, a_lo: f32, (hi, lo): (f32, f32)) -> HalfErfc {
    // `1 + a/2` and its reciprocal rounded, with their errors recovered exactly.
    let (d, d_lo) = two_sum(1.0, 0.5 * a);
    let d_lo = 0.5f32.mul_add(a_lo, d_lo);
    let t = 1.0 / d;
    // 1 / (d + d_lo) = t (1 + t_error), to first order.
    let t_error = (-t).mul_add(d_lo, (-t).mul_add(d, 1.0));
    // Q in powers of `u = t - T_MID` (the fit's t is in [0.1176, 1]), so no partial sum is much
    // larger than the result; the constant in two parts.
    const T_MID: f32 = 0.558_823_5;
    const Q: [f32; 12] = [
        -0.019_858_899,
        -0.026_234_46,
        0.050_378_185,
        0.021_297_656,
        -0.080_292_284,
        0.014_781_048_5,
        0.112_841_144,
        -0.065_866_83,
        -0.197_135_06,
        0.102_113_59,
        0.580_902_93,
        0.754_286_1,
    ];
    const Q0_HI: f32 = 0.553_174_14;
    const Q0_LO: f32 = 2.963_845_5e-8;
    let u = t - T_MID;
    // Estrin's scheme for the terms of degree 4 and up (four dependent steps instead of
    // eight: the chain from `a` to the result bounds the loop, the exponential runs beside
    // it), Horner's for the last three, whose roundings weigh most.
    let pair = |high: f32, low: f32| high.mul_add(u, low);
    let u2 = u * u;
    let u4 = u2 * u2;
    let upper = u2.mul_add(pair(Q[5], Q[6]), pair(Q[7], Q[8]));
    let top = u2.mul_add(pair(Q[1], Q[2]), pair(Q[3], Q[4]));
    let upper = u4.mul_add(u4.mul_add(Q[0], top), upper);
    let inner = pair(pair(pair(upper, Q[9]), Q[10]), Q[11]);
    // `Q0 + u inner` as `q + q_lo` (|Q0| exceeds |u inner| everywhere: fast two-sum).
    let product = u * inner;
    let q = Q0_HI + product;
    let q_lo = ((Q0_HI - q) + product) + (u.mul_add(inner, -product) + Q0_LO);
    // e^(-a^2) = 2^k (1 + s) (1 - lo); 2^k is applied last, so a subnormal result is not
    // first rounded as a normal one.
    let (k, s) = exp_parts(-hi);
    // The tail: t/2 (1 + t_error d(ln tQ)/d(ln t)) (1 - lo) Q 2^k (1 + s), the derivative
    // (between 1.13 and 2.26) to 4%, enough for a term of 1e-7.
    let slope = u.mul_add(u.mul_add(-0.364_210_46, 1.359_317_8), 1.760_773_1);
    let half_t = 0.5 * t;
    let corrections = slope.mul_add(t_error, -lo);
    // half_t q (1 + corrections) + half_t q_lo with the product's rounding recovered: the
    // final sum's rounding is the one that counts.
    let tq = half_t * q;
    let tq_lo = half_t.mul_add(q, -tq) + half_t * q_lo;
    let tail = tq.mul_add(corrections, tq_lo) + tq;
    HalfErfc { k, s, tail }
}

/// [`normal_tail_and_density`]'s results before their common factor `2^k (1 + s)`, so that
/// sums of the two (GELU's derivative) are formed before it, where they cancel and in the
/// subnormal range.
struct NormalParts {
    /// `x` within the bounds the parts were computed for.
    x: f32,
    k: i32,
    s: f32,
    tail: f32,
    density: f32,
}

impl NormalParts {
    /// `2^k (1 + s) m`: one rounding, and one more only where `2^k` makes it subnormal.
    #[inline(always)]
    fn scaled(&self, m: f32) -> f32 {
        scale_by_power_of_two(self.s.mul_add(m, m), self.k)
    }
}

/// The standard normal distribution function `Phi(x) = erfc(-x / sqrt 2) / 2` for f32,
/// vectorisable (GELU's factor), in f32 arithmetic (eight lanes to a 256-bit vector):
/// within two f32 steps of the correctly rounded value, both tails to their relative
/// precision (the tests sweep every exponent).
///
/// ```
/// use tapegrad_kernels::fast_math::normal_cdf_f32;
/// assert!((normal_cdf_f32(0.0) - 0.5).abs() < 6e-8); // within one step of 0.5
/// assert!((normal_cdf_f32(1.0) - 0.841_344_7).abs() < 1.2e-7);
/// assert!((normal_cdf_f32(-10.0) / 7.619_853e-24 - 1.0).abs() < 1e-6);
/// ```
#[inline(always)]
pub fn normal_cdf_f32(x: f32) -> f32 {
    let parts = normal_tail_and_density(x);
    let tail = parts.scaled(parts.tail);
    let phi = if x < 0.0 { tail } else { 1.0 - tail };
    if x.is_nan() { x } else { phi }
}

/// The standard normal density `e^(-x^2/2) / sqrt(2 pi)` for f32, vectorisable, with
/// `x^2 / 2` carried exactly: within two f32 steps of the correctly rounded value.
///
/// ```
/// use tapegrad_kernels::fast_math::normal_pdf_f32;
/// assert!((normal_pdf_f32(0.0) - 0.398_942_3).abs() < 3e-8);
/// assert!((normal_pdf_f32(10.0) / 7.694_599e-23 - 1.0).abs() < 3e-7);
/// ```
#[inline(always)]
pub fn normal_pdf_f32(x: f32) -> f32 {
    let parts = normal_tail_and_density(x);
    let density = parts.scaled(parts.density);
    if x.is_nan() { x } else { density }
}

/// GELU's derivative `Phi(x) + x phi(x)` for f32, vectorisable, sharing the exponential of
/// [`normal_cdf_f32`] and [`normal_pdf_f32`] (each within two steps): its error is within
/// three times f32's epsilon of the larger term (relative to the result it grows near
/// x = -0.752, where the terms cancel). NaN at the infinities, where `x phi(x)` is infinity
/// times 0, as in PyTorch.
///
/// ```
/// use tapegrad_kernels::fast_math::gelu_derivative_f32;
/// assert_eq!(gelu_derivative_f32(0.0), 0.5);
/// assert!((gelu_derivative_f32(1.0) - 1.083_315_5).abs() < 3e-7);
/// ```
#[inline(always)]
pub fn gelu_derivative_f32(x: f32) -> f32 {
    let parts = normal_tail_and_density(x);
    // Below 0, `Phi(-|x|) + x phi(x)` (the terms cancel near x = -0.75); above, 1 plus
    // `x phi(x) - Phi(-|x|)`: either way the two terms share `2^k (1 + s)` and are summed
    // before it, in one fused multiply-add.
    let tail = if x < 0.0 { parts.tail } else { -parts.tail };
    let small = parts.scaled(parts.x.mul_add(parts.density, tail));
    let derivative = if x < 0.0 { small } else { 1.0 + small };
    // NaN for NaN and for the infinities, where `x phi(x)` is infinity times 0 (PyTorch's
    // values).
    if x.is_finite() { derivative } else { f32::NAN }
}

/// The error function for f32, vectorisable, in f32 arithmetic: below `|x| = 0.9` an odd
/// polynomial `x + x Q(x^2)` (a near-minimax fit of degree 6, relative error below 1e-9,
/// whose added term is at most 13% of `x`), above `1 - erfc(|x|)` from the normal
/// distribution's tail ([`normal_cdf_f32`]'s method, fed `|x|` and `x^2` exactly), where
/// `erfc` is below 0.21; 1 from `|x| = 4` on. Within one ulp of the correctly rounded value
/// on every f32 checked (the tests sweep every exponent and, densely, `[-4, 4]`).
///
/// ```
/// use tapegrad_kernels::fast_math::erf_f32;
/// assert_eq!(erf_f32(0.0), 0.0);
/// assert!((erf_f32(0.5) - 0.520_499_9).abs() <= 6e-8);
/// assert_eq!((erf_f32(4.0), erf_f32(f32::NEG_INFINITY)), (1.0, -1.0));
/// ```
#[inline(always)]
pub fn erf_f32(x: f32) -> f32 {
    const Q: [f32; 7] = [
        0.128_379_17,
        -0.376_126_35,
        0.112_837_15,
        -0.026_860_509,
        0.005_203_859,
        -0.000_817_563_85,
        8.513_101e-5,
    ];
    let a = x.abs();
    let u = a * a;
    let mut q = Q[6];
    for coefficient in Q[..6].iter().rev() {
        q = q.mul_add(u, *coefficient);
    }
    let small = a.mul_add(q, a);
    // erfc(4) is below half of f32's step under 1. Written as a comparison, the bound
    // lets NaN through to the result.
    let bounded = if a > 4.0 { 4.0 } else { a };
    let square = bounded * bounded;
    let half = half_erfc(bounded, 0.0, (square, bounded.mul_add(bounded, -square)));
    let tail = 2.0 * half.tail;
    let large = 1.0 - scale_by_power_of_two(half.s.mul_add(tail, tail), half.k);
    let e = if a < 0.9 { small } else { large };
    e.copysign(x)
}

/// `ln(1 + t)` for `t` in [0, 1], in f32: `2 atanh(s)` for `s = t / (2 + t)` (at most 1/3),
/// summed as `2 s (1 + s²/3 + ... + s^16/17)`. No calls, so it vectorises; within 2 f32
/// steps of the correctly rounded value.
///
/// ```
/// use tapegrad_kernels::fast_math::ln_1p_unit_f32;
/// assert_eq!(ln_1p_unit_f32(0.0), 0.0);
/// assert!((ln_1p_unit_f32(1.0) - std::f32::consts::LN_2).abs() <= f32::EPSILON);
/// ```
#[inline(always)]
pub fn ln_1p_unit_f32(t: f32) -> f32 {
    let s = t / (2.0 + t);
    let z = s * s;
    let mut p = 1.0 / 17.0;
    for k in (0..8).rev() {
        p = p * z + 1.0 / (2 * k + 1) as f32;
    }
    2.0 * s * p
}

/// `softplus(x) = ln(1 + e^x)` without overflow, as `max(x, 0) + ln(1 + e^-|x|)`, in a form
/// that vectorises: [`exp_f32`] and [`ln_1p_unit_f32`] for f32, the standard library's
/// `exp` and `ln_1p` for f64 (whose precision gradient checks rely on).
///
/// ```
/// use tapegrad_kernels::fast_math::Softplus;
/// assert_eq!(0.0f64.softplus_vectorisable(), 2f64.ln());
/// assert_eq!((1e4f32.softplus_vectorisable(), (-1e4f32).softplus_vectorisable()), (1e4, 0.0));
/// ```
pub trait Softplus: Copy {
    /// `ln(1 + e^self)`.
    fn softplus_vectorisable(self) -> Self;
}

impl Softplus for f32 {
    #[inline(always)]
    fn softplus_vectorisable(self) -> Self {
        let m = if self > 0.0 { self } else { 0.0 };
        m + ln_1p_unit_f32(exp_f32(-self.abs()))
    }
}

impl Softplus for f64 {
    #[inline(always)]
    fn softplus_vectorisable(self) -> Self {
        let m = if self > 0.0 { self } else { 0.0 };
        m + (-self.abs()).exp().ln_1p()
    }
}

/// `exp` in a form that vectorises: [`exp_f32`] for f32, the standard library's for f64
/// (whose precision gradient checks rely on).
///
/// ```
/// use tapegrad_kernels::fast_math::Exp;
/// assert_eq!(0.5f64.exp_vectorisable(), 0.5f64.exp());
/// ```
pub trait Exp: Copy {
    /// `e^self`.
    fn exp_vectorisable(self) -> Self;
}

impl Exp for f32 {
    #[inline(always)]
    fn exp_vectorisable(self) -> Self {
        exp_f32(self)
    }
}

impl Exp for f64 {
    #[inline(always)]
    fn exp_vectorisable(self) -> Self {
        self.exp()
    }
}

/// `e^x - 1` in a form that vectorises: [`exp_m1_f32`] for f32, the standard library's
/// `exp_m1` for f64 (whose precision gradient checks rely on).
///
/// ```
/// use tapegrad_kernels::fast_math::ExpM1;
/// assert_eq!(0.5f64.exp_m1_vectorisable(), 0.5f64.exp_m1());
/// ```
pub trait ExpM1: Copy {
    /// `e^self - 1`.
    fn exp_m1_vectorisable(self) -> Self;
}

impl ExpM1 for f32 {
    #[inline(always)]
    fn exp_m1_vectorisable(self) -> Self {
        exp_m1_f32(self)
    }
}

impl ExpM1 for f64 {
    #[inline(always)]
    fn exp_m1_vectorisable(self) -> Self {
        self.exp_m1()
    }
}

/// The natural logarithm and `ln(1 + x)` in forms that vectorise: [`ln_f32`] and
/// [`ln_1p_f32`] for f32, the standard library's for f64 (whose precision gradient checks
/// rely on).
///
/// ```
/// use tapegrad_kernels::fast_math::Ln;
/// assert_eq!(2.0f64.ln_vectorisable(), 2.0f64.ln());
/// assert_eq!(1e-3f64.ln_1p_vectorisable(), 1e-3f64.ln_1p());
/// ```
pub trait Ln: Copy {
    /// `ln(self)`.
    fn ln_vectorisable(self) -> Self;
    /// `ln(1 + self)`.
    fn ln_1p_vectorisable(self) -> Self;
}

impl Ln for f32 {
    #[inline(always)]
    fn ln_vectorisable(self) -> Self {
        ln_f32(self)
    }
    #[inline(always)]
    fn ln_1p_vectorisable(self) -> Self {
        ln_1p_f32(self)
    }
}

impl Ln for f64 {
    #[inline(always)]
    fn ln_vectorisable(self) -> Self {
        self.ln()
    }
    #[inline(always)]
    fn ln_1p_vectorisable(self) -> Self {
        self.ln_1p()
    }
}

/// `sin` and `cos` in a form that vectorises, for arguments within [`SIN_COS_BOUND`]:
/// [`sin_f32`] and [`cos_f32`] for f32, the standard library's for f64 (any argument).
///
/// ```
/// use tapegrad_kernels::fast_math::SinCos;
/// assert_eq!(1.0f64.sin_in_range(), 1.0f64.sin());
/// assert_eq!(1.0f32.cos_in_range(), 1.0f64.cos() as f32);
/// ```
pub trait SinCos: Copy {
    /// `sin(self)`, for `|self| <= SIN_COS_BOUND` in f32.
    fn sin_in_range(self) -> Self;
    /// `cos(self)`, for `|self| <= SIN_COS_BOUND` in f32.
    fn cos_in_range(self) -> Self;
}

impl SinCos for f32 {
    #[inline(always)]
    fn sin_in_range(self) -> Self {
        sin_f32(self)
    }
    #[inline(always)]
    fn cos_in_range(self) -> Self {
        cos_f32(self)
    }
}

impl SinCos for f64 {
    #[inline(always)]
    fn sin_in_range(self) -> Self {
        self.sin()
    }
    #[inline(always)]
    fn cos_in_range(self) -> Self {
        self.cos()
    }
}

/// `tanh` in a form that vectorises: [`tanh_f32`] for f32, the standard library's for f64
/// (whose precision gradient checks rely on).
///
/// ```
/// use tapegrad_kernels::fast_math::Tanh;
/// assert_eq!(1.0f64.tanh_vectorisable(), 1.0f64.tanh());
/// ```
pub trait Tanh: Copy {
    /// `tanh(self)`.
    fn tanh_vectorisable(self) -> Self;
}

impl Tanh for f32 {
    #[inline(always)]
    fn tanh_vectorisable(self) -> Self {
        tanh_f32(self)
    }
}

impl Tanh for f64 {
    #[inline(always)]
    fn tanh_vectorisable(self) -> Self {
        self.tanh()
    }
}

#[cfg(test)]
mod tests {
    use super::{
        Softplus, cos_f32, erf_f32, exp_f32, exp_m1_f32, gelu_derivative_f32, ln_1p_unit_f32,
        ln_f32, normal_cdf_f32, normal_pdf_f32, sin_f32, tanh_f32,
    };

    #[test]
    fn ln_1p_unit_f32_is_within_two_steps_over_its_range() {
        for i in 0..=(1 << 20) {
            let t = i as f32 / (1 << 20) as f32;
            let exact = (t as f64).ln_1p() as f32;
            let got = ln_1p_unit_f32(t);
            assert!(steps(got, exact) <= 2, "ln_1p({t:e}) = {got:e}, correctly rounded {exact:e}");
        }
        for t in [1e-30f32, 1e-10, 3e-8, f32::MIN_POSITIVE] {
            assert!(steps(ln_1p_unit_f32(t), t) <= 1, "{t:e}");
        }
    }

    #[test]
    fn softplus_f32_matches_f64_and_keeps_its_limits() {
        for bits in (0..0x7f80_0000u32).step_by(8191) {
            for x in [f32::from_bits(bits), -f32::from_bits(bits)] {
                let exact = f64::from(x).softplus_vectorisable() as f32;
                let got = x.softplus_vectorisable();
                assert!(steps(got, exact) <= 3, "softplus({x:e}) = {got:e}, rounded {exact:e}");
            }
        }
        assert!(f32::NAN.softplus_vectorisable().is_nan());
        assert_eq!(f32::INFINITY.softplus_vectorisable(), f32::INFINITY);
        assert_eq!(f32::NEG_INFINITY.softplus_vectorisable(), 0.0);
    }

    #[test]
    fn exp_m1_f32_is_within_one_step_of_the_correctly_rounded_value() {
        let mut off = 0usize;
        let mut total = 0usize;
        for bits in (0..0x7f80_0000u32).step_by(997) {
            for x in [f32::from_bits(bits), -f32::from_bits(bits)] {
                let exact = f64::from(x).exp_m1() as f32;
                let got = exp_m1_f32(x);
                let distance = if exact.is_infinite() || got.is_infinite() {
                    u32::from(exact != got)
                } else {
                    (got.to_bits() as i64 - exact.to_bits() as i64).unsigned_abs() as u32
                };
                assert!(distance <= 1, "expm1({x:e}) = {got:e}, correctly rounded {exact:e}");
                off += usize::from(distance != 0);
                total += 1;
            }
        }
        assert!(off * 50 < total, "{off} of {total} one step off");
        assert!(exp_m1_f32(f32::NAN).is_nan());
        assert_eq!(exp_m1_f32(-0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(
            (exp_m1_f32(f32::NEG_INFINITY), exp_m1_f32(f32::INFINITY)),
            (-1.0, f32::INFINITY)
        );
        assert_eq!(exp_m1_f32(f32::MIN_POSITIVE / 4.0), f32::MIN_POSITIVE / 4.0);
    }

    /// Distance in f32 steps between two non-negative values.
    fn steps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    /// `f` within two steps of the correctly rounded `exact` on every exponent (every 4099th
    /// bit pattern) and, densely, on [-15, 15] (past which both functions are 0 or 1); the
    /// share of inputs not correctly rounded.
    fn sweep(f: impl Fn(f32) -> f32, exact: impl Fn(f64) -> f64) -> f64 {
        let dense = (0..=(1 << 21)).map(|i| (i as f32 / (1 << 21) as f32 - 0.5) * 30.0);
        let every_exponent = (0..0x7f80_0000u32)
            .step_by(4099)
            .flat_map(|bits| [f32::from_bits(bits), -f32::from_bits(bits)]);
        let (mut off, mut count) = (0, 0);
        for x in dense.chain(every_exponent) {
            let (got, want) = (f(x), exact(f64::from(x)) as f32);
            let distance = steps(got, want);
            assert!(distance <= 2, "f({x:e}) = {got:e}, correctly rounded {want:e}");
            off += usize::from(distance > 0);
            count += 1;
        }
        off as f64 / count as f64
    }

    #[test]
    fn normal_cdf_f32_is_within_two_steps_of_the_correctly_rounded_value() {
        let off = sweep(normal_cdf_f32, |x| 0.5 * libm::erfc(-x * std::f64::consts::FRAC_1_SQRT_2));
        assert!(off < 0.2, "{off} not correctly rounded"); // 0.17 measured
        assert!(normal_cdf_f32(f32::NAN).is_nan());
        assert_eq!((normal_cdf_f32(f32::NEG_INFINITY), normal_cdf_f32(f32::INFINITY)), (0.0, 1.0));
    }

    #[test]
    fn normal_pdf_f32_is_within_two_steps_of_the_correctly_rounded_value() {
        let density = |x: f64| (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
        let off = sweep(normal_pdf_f32, density);
        assert!(off < 0.25, "{off} not correctly rounded"); // 0.22 measured
        assert!(normal_pdf_f32(f32::NAN).is_nan());
        assert_eq!((normal_pdf_f32(f32::NEG_INFINITY), normal_pdf_f32(f32::INFINITY)), (0.0, 0.0));
    }

    /// `Phi(x) + x phi(x)` is 0 near x = -0.75, where its two terms cancel: the error is
    /// bounded against the larger term instead.
    #[test]
    fn gelu_derivative_f32_is_as_accurate_as_its_terms() {
        for i in 0..=(1 << 20) {
            let x = (i as f32 / (1 << 20) as f32 - 0.5) * 40.0;
            let xd = f64::from(x);
            let cdf = 0.5 * libm::erfc(-xd * std::f64::consts::FRAC_1_SQRT_2);
            let term = xd * (-0.5 * xd * xd).exp() / (2.0 * std::f64::consts::PI).sqrt();
            let error = (f64::from(gelu_derivative_f32(x)) - (cdf + term)).abs();
            // f32's steps are absolute below its normal range.
            let step = f64::from(f32::EPSILON) * cdf.max(term.abs()).max(1.2e-38);
            assert!(error <= 3.0 * step, "x = {x:e}: error {error:e}");
        }
        assert!(gelu_derivative_f32(f32::NAN).is_nan());
        assert!(gelu_derivative_f32(f32::INFINITY).is_nan());
        assert!(gelu_derivative_f32(f32::NEG_INFINITY).is_nan());
        assert_eq!((gelu_derivative_f32(-1e30), gelu_derivative_f32(1e30)), (0.0, 1.0));
    }

    #[test]
    fn exp_f32_is_within_one_ulp_of_the_correctly_rounded_value_everywhere() {
        let (mut off_by_one, mut samples) = (0usize, 0usize);
        for bits in (0..0x7f80_0000u32).step_by(4099) {
            for x in [f32::from_bits(bits), -f32::from_bits(bits)] {
                samples += 1;
                let exact = (x as f64).exp() as f32;
                let got = exp_f32(x);
                let d = ulps(got, exact);
                assert!(d <= 1, "exp({x:e}) = {got:e}, correctly rounded {exact:e}: {d} ulps");
                off_by_one += (d == 1) as usize;
            }
        }
        assert!(off_by_one * 100 < samples, "{off_by_one} of {samples} values one ulp off");
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!((exp_f32(-104.0), exp_f32(89.0)), (0.0, f32::INFINITY));
        let tiny = exp_f32(-100.0); // a subnormal result
        assert_eq!(tiny, (-100.0f64).exp() as f32);
        // The vector copy agrees with the scalar one.
        let xs: Vec<f32> = (0..1000).map(|i| (i as f32 - 700.0) * 0.15).collect();
        let ys = crate::strided::map(&xs, &crate::layout::Layout::contiguous(&[xs.len()]), exp_f32);
        assert!(xs.iter().zip(&ys).all(|(&x, &y)| exp_f32(x).to_bits() == y.to_bits()));
    }

    /// Distance in f32 steps between two finite values of the same sign.
    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    /// Asserts `f` within one step of `exact` (in f64, rounded to f32) on every input, and
    /// that at most `1 / per` of them are a step off.
    fn within_one_ulp(
        name: &str,
        inputs: impl Iterator<Item = f32>,
        f: impl Fn(f32) -> f32,
        exact: impl Fn(f64) -> f64,
        per: usize,
    ) {
        let (mut off_by_one, mut samples) = (0usize, 0usize);
        for x in inputs {
            let (got, want) = (f(x), exact(f64::from(x)) as f32);
            assert_eq!(got.is_sign_negative(), want.is_sign_negative(), "sign of {name}({x:e})");
            let d = ulps(got, want);
            assert!(d <= 1, "{name}({x:e}) = {got:e}, correctly rounded {want:e}: {d} ulps");
            off_by_one += (d == 1) as usize;
            samples += 1;
        }
        assert!(off_by_one * per < samples, "{name}: {off_by_one} of {samples} one ulp off");
    }

    #[test]
    fn erf_f32_is_within_one_ulp_of_the_correctly_rounded_value_everywhere() {
        // Every exponent, subnormals included, both signs, and densely over [-4, 4], past
        // which the result is 1 or -1.
        let every_exponent = (0..0x7f80_0000u32).step_by(4099).flat_map(|b| {
            let x = f32::from_bits(b);
            [x, -x]
        });
        let dense = (0..=(1 << 21)).map(|i| -4.0 + 8.0 * i as f32 / (1 << 21) as f32);
        within_one_ulp("erf", every_exponent.chain(dense), erf_f32, libm::erf, 50);
    }

    #[test]
    fn erf_f32_special_values() {
        assert_eq!(erf_f32(0.0).to_bits(), 0.0f32.to_bits());
        assert_eq!(erf_f32(-0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!((erf_f32(f32::INFINITY), erf_f32(f32::NEG_INFINITY)), (1.0, -1.0));
        assert_eq!((erf_f32(4.0), erf_f32(-1e30)), (1.0, -1.0));
        assert!(erf_f32(f32::NAN).is_nan());
        let tiniest = f32::from_bits(1);
        assert_eq!(erf_f32(tiniest), libm::erf(f64::from(tiniest)) as f32);
        // The kernels' vector copy agrees with the scalar one, element for element.
        let xs: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) * 0.011).collect();
        let ys = crate::strided::map(&xs, &crate::layout::Layout::contiguous(&[1000]), erf_f32);
        assert!(xs.iter().zip(&ys).all(|(&x, &y)| erf_f32(x).to_bits() == y.to_bits()));
    }

    #[test]
    fn tanh_f32_is_within_one_ulp_of_the_correctly_rounded_value_everywhere() {
        // Every exponent and a spread of mantissas, positive and negative, subnormals included;
        // nearly every value is the correctly rounded one.
        let inputs = (0..0x7f80_0000u32).step_by(4099).flat_map(|b| {
            let x = f32::from_bits(b);
            [x, -x]
        });
        within_one_ulp("tanh", inputs, tanh_f32, f64::tanh, 200);
    }

    #[test]
    fn ln_f32_is_within_one_ulp_of_the_correctly_rounded_value_everywhere() {
        // Every exponent, subnormals included, and densely around 1, where the result is
        // small. 2.7% one ulp off when this was written (SLEEF's `logf`, which PyTorch uses,
        // has the same one-ulp bound).
        let every_exponent = (1..0x7f80_0000u32).step_by(4099).map(f32::from_bits);
        let near_one = (0..=(1 << 20)).map(|i| 0.5 + 1.5 * i as f32 / (1 << 20) as f32);
        within_one_ulp("ln", every_exponent.chain(near_one), ln_f32, f64::ln, 25);
    }

    #[test]
    fn ln_f32_special_values() {
        assert_eq!(ln_f32(1.0).to_bits(), 0.0f32.to_bits());
        assert_eq!(ln_f32(0.0), f32::NEG_INFINITY);
        assert_eq!(ln_f32(-0.0), f32::NEG_INFINITY);
        assert_eq!(ln_f32(f32::INFINITY), f32::INFINITY);
        for x in [-1.0, -f32::MIN_POSITIVE, f32::NEG_INFINITY, f32::NAN] {
            assert!(ln_f32(x).is_nan(), "ln({x})");
        }
        let tiniest = f32::from_bits(1);
        assert_eq!(ln_f32(tiniest), ((tiniest as f64).ln()) as f32);
        assert_eq!(ln_f32(f32::MAX), (f32::MAX as f64).ln() as f32);
    }

    #[test]
    fn sin_and_cos_f32_are_correctly_rounded_nearly_everywhere_in_range() {
        let bound = super::SIN_COS_BOUND.to_bits();
        let inputs = || {
            let every_exponent = (0..=bound).step_by(1031).map(f32::from_bits);
            let dense = (0..=(1 << 20)).map(|i| (i as f32 / (1 << 20) as f32 - 0.5) * 40.0);
            every_exponent.chain(dense).flat_map(|x| [x, -x])
        };
        within_one_ulp("sin", inputs(), sin_f32, f64::sin, 10_000);
        within_one_ulp("cos", inputs(), cos_f32, f64::cos, 10_000);
        assert_eq!(sin_f32(-0.0).to_bits(), (-0.0f32).to_bits());
        assert!(sin_f32(f32::NAN).is_nan() && cos_f32(f32::NAN).is_nan());
    }

    #[test]
    fn ln_1p_f32_is_within_one_ulp_of_the_correctly_rounded_value_everywhere() {
        let positive = (1..0x7f80_0000u32).step_by(4099).map(f32::from_bits);
        let negative = (1..0x3f80_0000u32).step_by(4099).map(|b| -f32::from_bits(b));
        let dense = (1..(1 << 20)).map(|i| -1.0 + 4.0 * i as f32 / (1 << 20) as f32);
        let inputs = positive.chain(negative).chain(dense);
        within_one_ulp("ln_1p", inputs, super::ln_1p_f32, f64::ln_1p, 25);
        let ln_1p = super::ln_1p_f32;
        assert_eq!(ln_1p(-0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!((ln_1p(-1.0), ln_1p(f32::INFINITY)), (f32::NEG_INFINITY, f32::INFINITY));
        assert!(
            ln_1p(-1.5).is_nan() && ln_1p(f32::NAN).is_nan() && ln_1p(f32::NEG_INFINITY).is_nan()
        );
        assert_eq!(ln_1p(f32::MAX), f64::from(f32::MAX).ln_1p() as f32);
    }

    #[test]
    fn atan2_f32_is_within_one_ulp_everywhere_and_keeps_libms_special_values() {
        use super::atan2_f32;
        // Every 262147th bit pattern of each coordinate against every 2^23rd of the other
        // exponents, both signs, and a dense grid around the origin.
        let some = |step: usize| (0..0x7f80_0000u32).step_by(step).map(f32::from_bits);
        let pairs = some(262_147)
            .flat_map(|y| some(1 << 23).map(move |x| (y, x)))
            .chain(some(1 << 23).flat_map(|y| some(262_147).map(move |x| (y, x))))
            .chain(
                (0..400 * 400)
                    .map(|i| ((i / 400) as f32 / 40.0 - 5.0, (i % 400) as f32 / 40.0 - 5.0)),
            )
            .flat_map(|(y, x)| [(y, x), (-y, x), (y, -x), (-y, -x)]);
        let (mut off_by_one, mut samples) = (0usize, 0usize);
        for (y, x) in pairs {
            let (got, want) = (atan2_f32(y, x), f64::from(y).atan2(f64::from(x)) as f32);
            let d = ulps(got, want);
            assert!(d <= 1, "atan2({y:e}, {x:e}) = {got:e}, correctly rounded {want:e}");
            off_by_one += (d == 1) as usize;
            samples += 1;
        }
        assert!(off_by_one * 10_000 < samples, "{off_by_one} of {samples} one ulp off");
        let special = [0.0, -0.0, 1.0, -1.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 1e-45];
        for y in special {
            for x in special {
                let (got, want) = (atan2_f32(y, x), f64::from(y).atan2(f64::from(x)) as f32);
                assert!(
                    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                    "atan2({y:e}, {x:e}) = {got:e}, libm {want:e}"
                );
            }
        }
    }

    #[test]
    fn tanh_f32_special_values() {
        assert_eq!(tanh_f32(0.0).to_bits(), 0.0f32.to_bits());
        assert_eq!(tanh_f32(-0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!((tanh_f32(f32::INFINITY), tanh_f32(f32::NEG_INFINITY)), (1.0, -1.0));
        assert_eq!((tanh_f32(1e4), tanh_f32(-9.5)), (1.0, -1.0));
        assert!(tanh_f32(f32::NAN).is_nan());
        // The kernels' vector copy (AVX-512 where the CPU has it) agrees with the scalar
        // one, element for element.
        let xs: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) * 0.037).collect();
        let layout = crate::layout::Layout::contiguous(&[xs.len()]);
        let ys = crate::strided::map(&xs, &layout, tanh_f32);
        assert!(xs.iter().zip(&ys).all(|(&x, &y)| tanh_f32(x).to_bits() == y.to_bits()));
        let special = [f32::NAN, -f32::NAN, f32::INFINITY, f32::NEG_INFINITY];
        let ys = crate::strided::map(&special, &crate::layout::Layout::contiguous(&[4]), tanh_f32);
        assert!(ys[0].is_nan() && ys[1].is_nan() && ys[2..] == [1.0, -1.0], "{ys:?}");
        let tiny = f32::from_bits(1); // the smallest subnormal: tanh(x) = x
        assert_eq!(tanh_f32(tiny), tiny);
    }
}
