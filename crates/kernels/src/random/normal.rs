//! Standard normal samples from uniform ones, many at a time: Box-Muller's two halves,
//! `r cos(2π u2)` and `r sin(2π u2)` for `r = sqrt(-2 ln u1)`, so that each pair of
//! uniforms gives two samples for one logarithm, one square root and one series. The
//! logarithm and the cosine and sine are polynomials here, which vectorise; libm's are
//! calls, one value at a time.

use crate::simd::{WidestLoop, run_widest};

/// `cosines[i] = r cos(2π u2[i])` and `sines[i] = r sin(2π u2[i])` for
/// `r = sqrt(-2 ln u1[i])`: two independent standard normal samples from each pair of
/// uniforms, for `u1` in (0, 1] (normal numbers: at least 2^-1022) and `u2` in [0, 1);
/// within a few units in the last place of the exact values.
///
/// ```
/// use tapegrad_kernels::random::box_muller;
/// let (mut cosines, mut sines) = ([0.0; 3], [0.0; 3]);
/// let u1 = [1.0, (-0.5f64).exp(), (-2.0f64).exp()];
/// box_muller(&u1, &[0.3, 0.0, 0.25], &mut cosines, &mut sines);
/// assert_eq!((cosines[0], sines[0]), (0.0, 0.0)); // ln 1 = 0
/// assert!((cosines[1] - 1.0).abs() < 1e-15 && sines[1] == 0.0);
/// assert!(cosines[2].abs() < 1e-15 && (sines[2] - 2.0).abs() < 1e-15);
/// ```
///
/// # Panics
/// If the four slices differ in length.
pub fn box_muller(u1: &[f64], u2: &[f64], cosines: &mut [f64], sines: &mut [f64]) {
    let len = u1.len();
    assert!(
        u2.len() == len && cosines.len() == len && sines.len() == len,
        "box_muller: slice lengths"
    );
    run_widest(Samples { u1, u2, cosines, sines });
}

struct Samples<'a> {
    u1: &'a [f64],
    u2: &'a [f64],
    cosines: &'a mut [f64],
    sines: &'a mut [f64],
}

impl WidestLoop for Samples<'_> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let outputs = self.cosines.iter_mut().zip(self.sines.iter_mut());
        for ((c, s), (&a, &b)) in outputs.zip(self.u1.iter().zip(self.u2)) {
            let r = (-2.0 * ln(a)).sqrt();
            let (cos, sin) = cos_sin_two_pi(b);
            (*c, *s) = (r * cos, r * sin);
        }
    }
}

/// `1.5 * 2^52`: adding it to a number of magnitude below 2^51 rounds it to an integer,
/// which then sits in the sum's lowest mantissa bits.
const SHIFT: f64 = 6_755_399_441_055_744.0;

/// The integer `n` (below 2^52) as an f64, through its bits: a vector conversion from 64-bit
/// integers needs AVX-512DQ, which the widest copy does not assume.
#[inline(always)]
fn small_integer(n: u64) -> f64 {
    f64::from_bits(n | 0x4330_0000_0000_0000) - 4_503_599_627_370_496.0
}

/// The natural logarithm of a positive normal number: `x = 2^e m` with `m` in
/// [√½, √2), and `ln m = 2 atanh(s)` for `s = (m - 1) / (m + 1)`, |s| < 0.172, summed as
/// `2 s (1 + s²/3 + s⁴/5 + ...)` to the term below 1e-17.
#[inline(always)]
fn ln(x: f64) -> f64 {
    const MANTISSA: u64 = (1 << 52) - 1;
    let bits = x.to_bits();
    let m = f64::from_bits((bits & MANTISSA) | (1023 << 52));
    let high = m > std::f64::consts::SQRT_2;
    let m = if high { 0.5 * m } else { m };
    let e = small_integer(bits >> 52) - 1023.0 + if high { 1.0 } else { 0.0 };
    let s = (m - 1.0) / (m + 1.0);
    let z = s * s;
    // 1/23, 1/21, ..., 1/3, 1: the series' coefficients in z, highest first.
    let mut p = 1.0 / 23.0;
    for k in (0..11).rev() {
        p = p * z + 1.0 / (2 * k + 1) as f64;
    }
    e * std::f64::consts::LN_2 + 2.0 * s * p
}

/// `(cos(2π u), sin(2π u))` for `u` in [0, 1): `4u` is split exactly into the nearest whole
/// quarter turn `k` and the rest `r` in [-½, ½], and for `x = r π/2` (|x| <= π/4) the
/// results are `± cos x` and `± sin x`, Taylor series to the term below 1e-17.
#[inline(always)]
fn cos_sin_two_pi(u: f64) -> (f64, f64) {
    let t = 4.0 * u;
    let shifted = t + SHIFT;
    let k = shifted - SHIFT;
    let quadrant = shifted.to_bits() & 3;
    let x = (t - k) * std::f64::consts::FRAC_PI_2;
    let x2 = x * x;
    // cos x = 1 - x²/2! + ... + x^18/18!, sin x = x (1 - x²/3! + ... + x^18/19!).
    let (mut c, mut s) = (1.0, 1.0);
    for k in (1..10).rev() {
        let (even, odd) = ((2 * k - 1) * 2 * k, 2 * k * (2 * k + 1));
        // Multiplied by the reciprocals, which fold to constants: no division per term.
        c = 1.0 - x2 * c * (1.0 / even as f64);
        s = 1.0 - x2 * s * (1.0 / odd as f64);
    }
    let s = x * s;
    // Quarter turns 0, 1, 2, 3: the cosine is cos x, -sin x, -cos x, sin x, and the sine
    // sin x, cos x, -sin x, -cos x.
    let odd = quadrant & 1 == 1;
    let (cos, sin) = if odd { (s, c) } else { (c, s) };
    let cos = if (quadrant + 1) & 2 == 2 { -cos } else { cos };
    let sin = if quadrant & 2 == 2 { -sin } else { sin };
    (cos, sin)
}

#[cfg(test)]
mod tests {
    use super::{box_muller, cos_sin_two_pi, ln};

    #[test]
    fn the_polynomials_match_libm_to_a_few_ulps() {
        let ulps = |a: f64, b: f64| (a - b).abs() / (b.abs() * f64::EPSILON).max(f64::MIN_POSITIVE);
        for i in 0..100_000u64 {
            let u =
                ((i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
            assert!(ulps(ln(u), u.ln()) <= 4.0, "ln {u}: {} vs {}", ln(u), u.ln());
            let (cos, sin) = cos_sin_two_pi(u);
            let (c, s) = ((std::f64::consts::TAU * u).cos(), (std::f64::consts::TAU * u).sin());
            // Near a zero the libm values carry TAU * u's rounding: compare absolutely.
            assert!((cos - c).abs() <= 4.0 * f64::EPSILON, "cos {u}: {cos} vs {c}");
            assert!((sin - s).abs() <= 4.0 * f64::EPSILON, "sin {u}: {sin} vs {s}");
        }
        assert_eq!(
            (ln(1.0), cos_sin_two_pi(0.0), cos_sin_two_pi(0.5)),
            (0.0, (1.0, 0.0), (-1.0, 0.0))
        );
        assert_eq!((cos_sin_two_pi(0.25).1, cos_sin_two_pi(0.75).1), (1.0, -1.0));
        assert!((ln(2f64.powi(-53)) + 53.0 * std::f64::consts::LN_2).abs() < 1e-13);
    }

    #[test]
    fn both_halves_have_the_normal_moments_and_are_uncorrelated() {
        let n = 200_000;
        let u1: Vec<f64> = (0..n).map(|i| 1.0 - (i as f64 + 0.5) / n as f64).collect();
        // A second sequence independent of the first: the golden ratio's multiples.
        let u2: Vec<f64> = (0..n).map(|i| (i as f64 * 0.618_033_988_749_894_9).fract()).collect();
        let (mut cosines, mut sines) = (vec![0.0; n], vec![0.0; n]);
        box_muller(&u1, &u2, &mut cosines, &mut sines);
        let mean = |z: &[f64]| z.iter().sum::<f64>() / n as f64;
        for z in [&cosines, &sines] {
            let m = mean(z);
            let var = z.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n as f64;
            assert!(m.abs() < 0.01 && (var - 1.0).abs() < 0.01, "{m} {var}");
        }
        let products: Vec<f64> = cosines.iter().zip(&sines).map(|(c, s)| c * s).collect();
        assert!(mean(&products).abs() < 0.01, "correlation {}", mean(&products));
    }
}
