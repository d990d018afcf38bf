//! The logarithm of the gamma function and its derivatives: `lgamma`, `digamma` and
//! `polygamma(n)` (PyTorch's `torch.lgamma`, `torch.digamma`, `torch.polygamma`), which
//! the log-densities of the gamma, beta, Dirichlet, Poisson and negative binomial
//! distributions are made of.
//!
//! Each rule is the next function of the family on the saved input (`lgamma' = digamma`,
//! `digamma' = polygamma(1)`, `polygamma(n)' = polygamma(n + 1)`), a recorded op, so every
//! derivative is differentiable again. Values are computed in f64 (an f32 tensor's are
//! rounded once at the end):
//! - `lgamma` is libm's;
//! - `digamma` and `polygamma` move a positive argument up by their recurrence
//!   (`psi(x) = psi(x + 1) - 1/x`) until an asymptotic series in Bernoulli numbers is
//!   exact to the last bits, and take a negative one to `1 - x` by the reflection formula,
//!   whose `n`-th derivative of `pi cot(pi x)` is a polynomial in the cotangent.
//!
//! Where PyTorch's values are not the function's, these follow the mathematics:
//! `polygamma(1, x)` (trigamma) is exact to rounding rather than to about 1e-9, is `+inf`
//! at every pole (PyTorch: a large finite number at the negative integers), and
//! `polygamma(n, +inf)` is a signed zero (PyTorch: NaN for `n >= 2`).

use std::f64::consts::PI;

use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{Backward, Tensor};

use crate::elementwise::unary_with;

/// `B_2j / (2j)!` for `j = 1..=8`: the coefficients of the asymptotic series of
/// `psi` and of the Hurwitz zeta function's Euler-Maclaurin tail.
const BERNOULLI_OVER_FACTORIAL: [f64; 8] = [
    1.0 / 12.0,
    -1.0 / 720.0,
    1.0 / 30_240.0,
    -1.0 / 1_209_600.0,
    1.0 / 47_900_160.0,
    -691.0 / 1_307_674_368_000.0,
    7.0 / 523_069_747_200.0,
    -3617.0 / 10_670_622_842_880_000.0,
];

/// `psi(x)`, the derivative of `ln |Gamma(x)|`: `-inf` at `+0` and `+inf` at `-0` (the
/// limits from each side), NaN at the negative integers and at `-inf`.
pub(crate) fn digamma(x: f64) -> f64 {
    if x == 0.0 {
        return if x.is_sign_negative() { f64::INFINITY } else { f64::NEG_INFINITY };
    }
    if x.is_nan() || x == f64::NEG_INFINITY || (x < 0.0 && x == x.floor()) {
        return f64::NAN;
    }
    if x < 0.0 {
        // psi(x) = psi(1 - x) - pi cot(pi x).
        return digamma(1.0 - x) - PI * cot_pi(x);
    }
    if x == f64::INFINITY {
        return x;
    }
    // From 10 on, the first omitted term is below 5e-17 (|B_16| / (16 x^16)).
    let steps = steps_to(x, 10.0);
    let shifted = x + steps as f64;
    let z = 1.0 / (shifted * shifted);
    let series = BERNOULLI_OVER_FACTORIAL
        .iter()
        .enumerate()
        .rev()
        .fold(0.0, |acc, (j, &c)| (acc + c * factorial((2 * j + 1) as u32)) * z);
    // The smallest terms first: the recurrence's 1/x grow as x falls.
    let recurrence: f64 = (0..steps).rev().map(|k| 1.0 / (x + k as f64)).sum();
    shifted.ln() - 0.5 / shifted - series - recurrence
}

/// `psi^(n)(x)`, the `n`-th derivative of `psi` (`n = 0` is [`digamma`]): `+inf` at the
/// poles (`x` a non-positive integer) for odd `n` and `-inf` for even `n`, as PyTorch;
/// `(-1)^(n+1) 0` at `+inf`; NaN at `-inf`.
pub(crate) fn polygamma(n: u32, x: f64) -> f64 {
    if n == 0 {
        return digamma(x);
    }
    let odd = n % 2 == 1;
    if x.is_nan() || x == f64::NEG_INFINITY {
        return f64::NAN;
    }
    if x <= 0.0 && x == x.floor() {
        return if odd { f64::INFINITY } else { f64::NEG_INFINITY };
    }
    if x == f64::INFINITY {
        return if odd { 0.0 } else { -0.0 };
    }
    if x < 0.0 {
        // The reflection formula differentiated n times:
        // psi^(n)(x) = (-1)^n psi^(n)(1 - x) - pi^(n+1) P_n(cot(pi x)), where
        // d^n/dx^n cot(pi x) = pi^n P_n(cot(pi x)).
        let cot = cot_pi(x);
        let reflected = polygamma(n, 1.0 - x);
        let sign = if odd { -1.0 } else { 1.0 };
        return sign * reflected - PI.powi(n as i32 + 1) * cot_derivative_polynomial(n, cot);
    }
    let sign = if odd { 1.0 } else { -1.0 };
    sign * factorial(n) * hurwitz_zeta(f64::from(n + 1), x)
}

/// `sum over k >= 0 of (q + k)^-s` for `s > 1`, `q > 0`: the terms below a start
/// `q + m >= 20 + 2s` summed directly, the rest by the Euler-Maclaurin formula with eight
/// Bernoulli terms (the first omitted one is below 1e-20 of the sum there).
fn hurwitz_zeta(s: f64, q: f64) -> f64 {
    let steps = steps_to(q, 20.0 + 2.0 * s);
    let a = q + steps as f64;
    let mut tail = a.powf(1.0 - s) / (s - 1.0) + 0.5 * a.powf(-s);
    // s (s + 1) ... (s + 2j - 2) a^(-s - 2j + 1), one pair of factors more per term.
    let inv_square = 1.0 / (a * a);
    let mut rising = s * a.powf(-s - 1.0);
    for (j, &c) in BERNOULLI_OVER_FACTORIAL.iter().enumerate() {
        tail += c * rising;
        let k = 2.0 * j as f64;
        rising *= (s + k + 1.0) * (s + k + 2.0) * inv_square;
    }
    // The smallest terms first.
    (0..steps).rev().fold(tail, |sum, k| sum + (q + k as f64).powf(-s))
}

/// `cot(pi x)`, taken of `x`'s distance to the nearest integer (exact, and the cotangent
/// has period 1): near a pole the product with pi then keeps all its digits, where
/// `pi (x - floor(x))` close to `pi` would lose them.
fn cot_pi(x: f64) -> f64 {
    1.0 / (PI * (x - x.round())).tan()
}

/// How many steps of 1 take a positive `x` to `bound` or beyond.
fn steps_to(x: f64, bound: f64) -> u32 {
    if x >= bound { 0 } else { (bound - x).ceil() as u32 }
}

/// `P_n(c)` with `d^n/dx^n cot(pi x) = pi^n P_n(cot(pi x))`: `P_0 = c`,
/// `P_(k+1) = -(1 + c^2) P_k'(c)`, evaluated from its coefficients.
fn cot_derivative_polynomial(n: u32, c: f64) -> f64 {
    // Coefficients of c^0, c^1, ...; P_k has degree k + 1.
    let mut coefficients = vec![0.0, 1.0];
    for _ in 0..n {
        let derivative: Vec<f64> =
            coefficients.iter().enumerate().skip(1).map(|(i, &a)| i as f64 * a).collect();
        let mut next = vec![0.0; derivative.len() + 2];
        for (i, &d) in derivative.iter().enumerate() {
            next[i] -= d;
            next[i + 2] -= d;
        }
        coefficients = next;
    }
    coefficients.iter().rev().fold(0.0, |acc, &a| acc * c + a)
}

fn factorial(n: u32) -> f64 {
    (1..=n).map(f64::from).product()
}

/// `ln |Gamma(x)|` of every element (PyTorch's `torch.lgamma`); rule `g * digamma(x)`.
#[track_caller]
pub(crate) fn lgamma(x: &Tensor) -> Tensor {
    unary_with(
        "lgamma",
        x,
        |v| libm::lgamma(f64::from(v)) as f32,
        libm::lgamma,
        || Backward::new(|ctx| smallvec![Some(ctx.grad() * &digamma_op(ctx.saved(0)))]).save(x),
    )
}

/// `psi(x)` of every element (PyTorch's `torch.digamma`); rule `g * polygamma(1, x)`.
#[track_caller]
pub(crate) fn digamma_op(x: &Tensor) -> Tensor {
    polygamma_op(0, x)
}

/// `psi^(n)(x)` of every element (PyTorch's `torch.polygamma(n, x)`); rule
/// `g * polygamma(n + 1, x)`.
#[track_caller]
pub(crate) fn polygamma_op(n: u32, x: &Tensor) -> Tensor {
    let op = match n {
        0 => "digamma",
        _ => "polygamma",
    };
    unary_with(
        op,
        x,
        move |v| polygamma(n, f64::from(v)) as f32,
        move |v| polygamma(n, v),
        || {
            Backward::new(move |ctx| {
                smallvec![Some(ctx.grad() * &polygamma_op(n + 1, ctx.saved(0)))]
            })
            .save(x)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;
    const ZETA_3: f64 = 1.202_056_903_159_594_3;

    fn close(a: f64, b: f64, ulps: f64) -> bool {
        (a - b).abs() <= ulps * f64::EPSILON * b.abs()
    }

    #[test]
    fn digamma_and_polygamma_have_their_closed_forms() {
        let ln2 = std::f64::consts::LN_2;
        for (got, want) in [
            (digamma(1.0), -EULER_GAMMA),
            (digamma(0.5), -EULER_GAMMA - 2.0 * ln2),
            (digamma(2.0), 1.0 - EULER_GAMMA),
            (digamma(-0.5), 2.0 - EULER_GAMMA - 2.0 * ln2),
            (polygamma(1, 1.0), PI * PI / 6.0),
            (polygamma(1, 0.5), PI * PI / 2.0),
            (polygamma(1, -0.5), PI * PI / 2.0 + 4.0),
            (polygamma(2, 1.0), -2.0 * ZETA_3),
            (polygamma(2, 0.5), -14.0 * ZETA_3),
            (polygamma(3, 1.0), PI.powi(4) / 15.0),
            (polygamma(3, 0.5), PI.powi(4)),
        ] {
            assert!(close(got, want, 8.0), "{got:e} against {want:e}");
        }
    }

    /// `psi^(n)(x + 1) = psi^(n)(x) + (-1)^n n! / x^(n+1)`, on both sides of zero, across
    /// the switch to the series and the reflection.
    #[test]
    fn every_order_follows_the_recurrence() {
        for n in 0..6u32 {
            for &x in &[-7.3f64, -2.5, -0.75, -0.1, 0.05, 0.3, 1.7, 8.9, 9.5, 10.0, 25.0, 300.5] {
                let step =
                    (if n % 2 == 0 { 1.0 } else { -1.0 }) * factorial(n) / x.powi(n as i32 + 1);
                let (left, right) = (polygamma(n, x + 1.0), polygamma(n, x) + step);
                let scale = left.abs().max(step.abs());
                assert!(
                    (left - right).abs() <= 64.0 * f64::EPSILON * scale,
                    "n {n} x {x}: {left:e} {right:e}"
                );
            }
        }
    }

    #[test]
    fn poles_infinities_and_nan_take_the_limits() {
        assert_eq!(digamma(0.0), f64::NEG_INFINITY);
        assert_eq!(digamma(-0.0), f64::INFINITY);
        assert!(digamma(-3.0).is_nan() && digamma(f64::NEG_INFINITY).is_nan());
        assert_eq!(digamma(f64::INFINITY), f64::INFINITY);
        for x in [0.0, -1.0, -4.0] {
            assert_eq!(polygamma(1, x), f64::INFINITY);
            assert_eq!(polygamma(2, x), f64::NEG_INFINITY);
        }
        assert_eq!(polygamma(3, f64::INFINITY), 0.0);
        assert!(polygamma(2, f64::INFINITY).is_sign_negative());
        assert!(polygamma(1, f64::NAN).is_nan() && polygamma(1, f64::NEG_INFINITY).is_nan());
        // Large arguments: psi(x) ~ ln x - 1/(2x), psi'(x) ~ 1/x.
        assert!(close(digamma(1e10), 1e10f64.ln() - 0.5e-10, 4.0));
        assert!(close(polygamma(1, 1e10), 1e-10 + 0.5e-20, 4.0));
    }

    #[test]
    fn the_cotangent_polynomials_are_the_derivatives_of_cot() {
        // P_1 = -(1 + c^2), P_2 = 2c (1 + c^2), P_3 = -2 (1 + c^2)(1 + 3c^2).
        let c = 0.7;
        assert!(close(cot_derivative_polynomial(1, c), -(1.0 + c * c), 2.0));
        assert!(close(cot_derivative_polynomial(2, c), 2.0 * c * (1.0 + c * c), 2.0));
        let p3 = -2.0 * (1.0 + c * c) * (1.0 + 3.0 * c * c);
        assert!(close(cot_derivative_polynomial(3, c), p3, 4.0));
    }
}
