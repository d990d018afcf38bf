//! Element functions written to vectorise, where libm's scalar calls dominate an op.
//!
//! `exp` and `tanh` on f32 are evaluated in f64 from a polynomial `exp`, with no branches and no calls,
//! so the compiler turns a tensor's loop into SIMD code (the kernels' AVX-512 copy where
//! the CPU has it). The f64 intermediate is accurate
//! to about 1e-13 relative, far below half an f32 ulp (6e-8), so results round to the
//! nearest f32 almost always and are never more than one ulp away (tested below against
//! f64 libm over a sweep of every exponent).

/// `e^y` for `y` in `[-700, 700]`, relative error below 1e-14. No branches: `y = k ln 2 + r`
/// with `|r| <= ln 2 / 2`, a degree-11 Taylor polynomial for `e^r`, and `2^k` built from
/// its exponent bits.
#[inline(always)]
fn exp_small_range(y: f64) -> f64 {
    // ln 2 split in two (fdlibm's): `k * LN2_HI` is exact for the k that occur here.
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    // Round to nearest by adding 1.5 * 2^52: the integer lands in the low mantissa bits.
    // Baseline x86-64 has no vector `round` (it would be a libm call per element).
    const SHIFTER: f64 = 6_755_399_441_055_744.0;
    let shifted = y * std::f64::consts::LOG2_E + SHIFTER;
    let k = shifted - SHIFTER;
    let k_int = shifted.to_bits().wrapping_sub(SHIFTER.to_bits());
    let r = (y - k * LN2_HI) - k * LN2_LO;
    // sum r^i / i!, i = 0..=11, in Estrin's form: pairs, then pairs of pairs, so that one
    // value waits on four multiply-add steps instead of Horner's eleven (what a tensor of
    // one element feels; long tensors overlap the steps of neighbouring elements anyway).
    const C: [f64; 12] = [
        1.0,
        1.0,
        0.5,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5_040.0,
        1.0 / 40_320.0,
        1.0 / 362_880.0,
        1.0 / 3_628_800.0,
        1.0 / 39_916_800.0,
    ];
    let r2 = r * r;
    let r4 = r2 * r2;
    let r8 = r4 * r4;
    let pair = |i: usize| C[i] + C[i + 1] * r;
    let low = (pair(0) + pair(2) * r2) + (pair(4) + pair(6) * r2) * r4;
    let high = pair(8) + pair(10) * r2;
    let p = low + high * r8;
    let scale = f64::from_bits(k_int.wrapping_add(1023) << 52);
    p * scale
}

/// `tanh(x)` for f32, vectorisable. `tanh(a) = 1 - 2 / (e^{2a} + 1)` for `a = |x|`, which
/// loses no relevant precision in f64 down to `a = 1e-3`; below that the series
/// `a - a^3 / 3` is exact to f64 precision. Beyond `|x| = 20` f32's tanh is 1.
///
/// ```
/// use tapegrad_kernels::fast_math::tanh_f32;
/// assert_eq!(tanh_f32(0.0), 0.0);
/// assert!((tanh_f32(0.5) - 0.5f32.tanh()).abs() <= f32::EPSILON);
/// ```
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    let a = (x as f64).abs();
    let e = exp_small_range(2.0 * a.min(20.0));
    let large = 1.0 - 2.0 / (e + 1.0);
    let small = a - a * a * a * (1.0 / 3.0);
    let t = if a < 1e-3 { small } else { large };
    // NaN propagates (`min` above would have turned it into 20).
    if x.is_nan() { x } else { (t as f32).copysign(x) }
}

/// `e^x` for f32, vectorisable: within one ulp of the correctly rounded value, 0 below
/// about -103.97, infinity above about 88.72, NaN for NaN.
///
/// ```
/// use tapegrad_kernels::fast_math::exp_f32;
/// assert_eq!(exp_f32(0.0), 1.0);
/// assert!((exp_f32(1.0) - std::f32::consts::E).abs() <= f32::EPSILON * 3.0);
/// assert_eq!((exp_f32(f32::NEG_INFINITY), exp_f32(f32::INFINITY)), (0.0, f32::INFINITY));
/// ```
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    // Past these bounds the f32 result is 0 or infinity already; clamping keeps `2^k` in
    // f64's normal range.
    let e = exp_small_range((x as f64).clamp(-150.0, 100.0)) as f32;
    if x.is_nan() { x } else { e }
}

/// The standard normal distribution function `Phi(x) = (1 + erf(x / sqrt 2)) / 2` for f32,
/// vectorisable (GELU's factor): from Numerical Recipes' Chebyshev fit of erfc,
/// `erfc(a) = t exp(-a^2 + P(t))`, `t = 1 / (1 + a/2)`, relative error below 1.2e-7, taken
/// on the side where it is small (`Phi(x) = erfc(-x / sqrt 2) / 2` for negative `x`), so
/// both tails keep their relative precision; within two f32 steps of the correctly rounded
/// value.
///
/// ```
/// use tapegrad_kernels::fast_math::normal_cdf_f32;
/// assert!((normal_cdf_f32(0.0) - 0.5).abs() < 6e-8); // within one step of 0.5
/// assert!((normal_cdf_f32(1.0) - 0.841_344_7).abs() < 1.2e-7);
/// assert!((normal_cdf_f32(-10.0) / 7.619_853e-24 - 1.0).abs() < 1e-6);
/// ```
#[inline(always)]
pub fn normal_cdf_f32(x: f32) -> f32 {
    // |x| / sqrt 2, clamped where erfc is far below an f32 step of 1 and far into f32's
    // subnormals (the exponent stays finite).
    let a = ((x as f64).abs() * std::f64::consts::FRAC_1_SQRT_2).min(15.0);
    let t = 1.0 / (1.0 + 0.5 * a);
    let p = -1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let half_erfc = 0.5 * t * exp_small_range(-a * a + p);
    let phi = if x < 0.0 { half_erfc } else { 1.0 - half_erfc };
    if x.is_nan() { x } else { phi as f32 }
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
    use super::{exp_f32, normal_cdf_f32, tanh_f32};

    /// Distance in f32 steps between two non-negative values.
    fn steps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn normal_cdf_f32_is_within_two_steps_of_the_correctly_rounded_value() {
        for bits in (0..0x7f80_0000u32).step_by(4099) {
            for x in [f32::from_bits(bits), -f32::from_bits(bits)] {
                let exact =
                    (0.5 * libm::erfc(-(x as f64) * std::f64::consts::FRAC_1_SQRT_2)) as f32;
                let got = normal_cdf_f32(x);
                assert!(
                    steps(got, exact) <= 2,
                    "Phi({x:e}) = {got:e}, correctly rounded {exact:e}"
                );
            }
        }
        assert!(normal_cdf_f32(f32::NAN).is_nan());
        assert_eq!((normal_cdf_f32(f32::NEG_INFINITY), normal_cdf_f32(f32::INFINITY)), (0.0, 1.0));
    }

    #[test]
    fn exp_f32_is_within_one_ulp_of_the_correctly_rounded_value_everywhere() {
        let mut off_by_one = 0usize;
        for bits in (0..0x7f80_0000u32).step_by(4099) {
            for x in [f32::from_bits(bits), -f32::from_bits(bits)] {
                let exact = (x as f64).exp() as f32;
                let got = exp_f32(x);
                let d = ulps(got, exact);
                assert!(d <= 1, "exp({x:e}) = {got:e}, correctly rounded {exact:e}: {d} ulps");
                off_by_one += (d == 1) as usize;
            }
        }
        assert!(off_by_one < 100, "{off_by_one} values one ulp off");
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

    #[test]
    fn tanh_f32_is_within_one_ulp_of_the_correctly_rounded_value_everywhere() {
        let (mut worst, mut off_by_one) = (0, 0usize);
        // Every exponent and a spread of mantissas, positive and negative, subnormals included.
        for bits in (0..0x7f80_0000u32).step_by(4099) {
            for x in [f32::from_bits(bits), -f32::from_bits(bits)] {
                let exact = (x as f64).tanh() as f32;
                let got = tanh_f32(x);
                assert_eq!(got.is_sign_negative(), exact.is_sign_negative(), "sign of tanh({x:e})");
                let d = ulps(got, exact);
                assert!(d <= 1, "tanh({x:e}) = {got:e}, correctly rounded {exact:e}: {d} ulps");
                worst = worst.max(d);
                off_by_one += (d == 1) as usize;
            }
        }
        // Nearly every value is the correctly rounded one.
        assert!(off_by_one < 100, "{off_by_one} values one ulp off (worst {worst})");
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
        let tiny = f32::from_bits(1); // the smallest subnormal: tanh(x) = x
        assert_eq!(tanh_f32(tiny), tiny);
    }
}
