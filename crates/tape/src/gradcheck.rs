//! Checking analytic gradients against central differences in f64 (PyTorch's
//! `torch.autograd.gradcheck` and `gradgradcheck`).

use std::fmt;
use std::panic::Location;

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

use crate::error::{Error, Result};
use crate::{DType, GradOptions, Tensor, enable_grad, try_grad};

/// Tolerances and mode of [`gradcheck`]. The defaults are PyTorch's: `eps = 1e-6`,
/// `atol = 1e-5`, `rtol = 1e-3`, the full Jacobian.
///
/// ```
/// let opts = tapegrad_tape::GradcheckOptions { fast_mode: true, ..Default::default() };
/// assert_eq!(opts.eps, 1e-6);
/// ```
#[derive(Clone, Debug)]
pub struct GradcheckOptions {
    /// The step of the central difference `(f(x + eps) - f(x - eps)) / (2 eps)`.
    pub eps: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance (relative to the numerical value).
    pub rtol: f64,
    /// Compare one random projection `v^T J u` instead of every Jacobian entry: one backward
    /// and two forward passes instead of one per element.
    pub fast_mode: bool,
    /// Seed of the random vectors used by the fast mode and by `gradgradcheck`.
    pub seed: u64,
}

impl Default for GradcheckOptions {
    fn default() -> Self {
        GradcheckOptions { eps: 1e-6, atol: 1e-5, rtol: 1e-3, fast_mode: false, seed: 0 }
    }
}

/// The Jacobian entry (or projection) that came closest to, or went furthest past, the
/// tolerance.
///
/// ```
/// # use tapegrad_tape::{GradcheckOptions, Tensor, gradcheck};
/// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).requires_grad();
/// let r = gradcheck(|xs: &[Tensor]| &xs[0] * 3.0, &[x], &GradcheckOptions::default()).unwrap();
/// let worst = r.worst.unwrap();
/// assert!((worst.analytic - worst.numerical).abs() < 1e-6);
/// ```
#[derive(Clone, Debug)]
pub struct Mismatch {
    /// Which input, or `None` for a fast-mode projection.
    pub input: Option<usize>,
    /// The element of that input (its multi-index).
    pub input_index: Vec<usize>,
    /// Which output, or `None` for a fast-mode projection.
    pub output: Option<usize>,
    /// The element of that output.
    pub output_index: Vec<usize>,
    /// The derivative the backward rules computed.
    pub analytic: f64,
    /// The central-difference estimate.
    pub numerical: f64,
    /// `atol + rtol * |numerical|`.
    pub tolerance: f64,
}

/// The outcome of [`gradcheck`] or [`gradgradcheck`]: whether every compared value is within
/// tolerance, and the worst one. Its `Display` says which element of which input and
/// output, with both values.
///
/// ```
/// # use tapegrad_tape::{GradcheckOptions, Tensor, gradcheck};
/// let x = Tensor::from_vec(vec![1.0f64], &[1]).requires_grad();
/// let r = gradcheck(|xs: &[Tensor]| &xs[0] * &xs[0], &[x], &GradcheckOptions::default()).unwrap();
/// assert!(r.passed);
/// assert!(r.to_string().starts_with("gradcheck passed"));
/// ```
#[derive(Clone, Debug)]
pub struct GradcheckReport {
    /// Whether all compared values agree within tolerance.
    pub passed: bool,
    /// Which check ran: `"gradcheck"` or `"gradgradcheck"`.
    pub check: &'static str,
    /// Whether the fast (projection) mode was used.
    pub fast_mode: bool,
    /// How many values were compared.
    pub compared: usize,
    /// The value with the largest error relative to its tolerance.
    pub worst: Option<Mismatch>,
}

fn index_of(flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    let mut rest = flat;
    for d in (0..shape.len()).rev() {
        index[d] = rest % shape[d];
        rest /= shape[d];
    }
    index
}

impl fmt::Display for GradcheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.passed { "passed" } else { "FAILED" };
        let mode = if self.fast_mode { "fast mode, random projections" } else { "full Jacobian" };
        write!(f, "{} {verdict} ({mode}, {} values compared)", self.check, self.compared)?;
        if let Some(w) = &self.worst {
            let what = match (w.input, w.output) {
                (Some(i), Some(o)) => {
                    format!("d output {o}{:?} / d input {i}{:?}", w.output_index, w.input_index)
                }
                _ => "v^T J u".to_string(),
            };
            let label = if self.passed { "closest to tolerance" } else { "worst mismatch" };
            write!(
                f,
                "; {label}: {what}: analytic {:.10e}, numerical {:.10e}, |difference| {:.3e}, \
                tolerance {:.3e}",
                w.analytic,
                w.numerical,
                (w.analytic - w.numerical).abs(),
                w.tolerance
            )?;
        }
        Ok(())
    }
}

/// What a checked function may return: one tensor or several.
///
/// ```
/// use tapegrad_tape::{CheckOutputs, Tensor};
/// assert_eq!(Tensor::zeros(&[1]).into_outputs().len(), 1);
/// ```
pub trait CheckOutputs {
    /// The outputs as a list.
    ///
    /// ```
    /// use tapegrad_tape::{CheckOutputs, Tensor};
    /// assert_eq!(Tensor::ones(&[3]).into_outputs().len(), 1); // one tensor: a list of one
    /// let outs = vec![Tensor::zeros(&[1]), Tensor::ones(&[2])].into_outputs();
    /// assert_eq!((outs.len(), outs[1].shape()), (2, &[2][..]));
    /// ```
    fn into_outputs(self) -> Vec<Tensor>;
}

impl CheckOutputs for Tensor {
    fn into_outputs(self) -> Vec<Tensor> {
        vec![self]
    }
}

impl CheckOutputs for Vec<Tensor> {
    fn into_outputs(self) -> Vec<Tensor> {
        self
    }
}

struct Tally {
    worst: Option<Mismatch>,
    worst_ratio: f64,
    passed: bool,
    compared: usize,
}

impl Tally {
    fn new() -> Self {
        Tally { worst: None, worst_ratio: -1.0, passed: true, compared: 0 }
    }

    fn compare(
        &mut self,
        analytic: f64,
        numerical: f64,
        atol: f64,
        rtol: f64,
        at: impl FnOnce() -> Mismatch,
    ) {
        let tolerance = atol + rtol * numerical.abs();
        let diff = (analytic - numerical).abs();
        let ok = diff <= tolerance;
        let ratio = if diff.is_nan() { f64::INFINITY } else { diff / tolerance };
        self.compared += 1;
        self.passed &= ok;
        if ratio > self.worst_ratio {
            self.worst_ratio = ratio;
            self.worst = Some(Mismatch { analytic, numerical, tolerance, ..at() });
        }
    }
}

/// Compares the gradients that `f`'s backward rules compute with central differences, for
/// every input that requires a gradient. Inputs must be f64 (numerical differences need its
/// precision). Returns an error only for misuse (no input requires a gradient, an f32 input,
/// an output that is not f64); a wrong gradient gives a report with `passed == false`.
///
/// ```
/// use tapegrad_tape::{GradcheckOptions, Tensor, gradcheck};
/// let a = Tensor::from_vec(vec![0.3f64, -1.2, 2.0], &[3]).requires_grad();
/// let b = Tensor::from_vec(vec![1.5f64], &[1]).requires_grad();
/// let report = gradcheck(
///     |x: &[Tensor]| &(&x[0] * &x[1]) / &x[1].add_scalar(1.0),
///     &[a, b],
///     &GradcheckOptions::default(),
/// )
/// .unwrap();
/// assert!(report.passed, "{report}");
/// ```
#[track_caller]
pub fn gradcheck<F, O>(
    f: F,
    inputs: &[Tensor],
    options: &GradcheckOptions,
) -> Result<GradcheckReport>
where
    F: Fn(&[Tensor]) -> O,
    O: CheckOutputs,
{
    check("gradcheck", &|xs: &[Tensor]| f(xs).into_outputs(), inputs, options, Location::caller())
}

/// Checks second derivatives: the gradients of `f`'s vector-Jacobian product (computed with
/// `create_graph`, for a fixed random vector) against central differences of that product.
/// This verifies that backward rules are themselves differentiable and correct.
///
/// ```
/// use tapegrad_tape::{GradcheckOptions, Tensor, gradgradcheck};
/// let x = Tensor::from_vec(vec![0.3f64, -1.2], &[2]).requires_grad();
/// let report =
///     gradgradcheck(|x: &[Tensor]| &(&x[0] * &x[0]) * &x[0], &[x], &GradcheckOptions::default())
///         .unwrap();
/// assert!(report.passed, "{report}");
/// ```
#[track_caller]
pub fn gradgradcheck<F, O>(
    f: F,
    inputs: &[Tensor],
    options: &GradcheckOptions,
) -> Result<GradcheckReport>
where
    F: Fn(&[Tensor]) -> O,
    O: CheckOutputs,
{
    let location = Location::caller();
    let diff: Vec<usize> = (0..inputs.len()).filter(|&i| inputs[i].tracks_grad()).collect();
    // Random output vectors, fixed for the whole check, so the checked function is the
    // deterministic map x -> J(x)^T v.
    let probe = {
        let _on = enable_grad();
        f(&fresh_leaves(inputs)).into_outputs()
    };
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(options.seed ^ 0x9e37_79b9);
    let v: Vec<Tensor> = probe.iter().map(|o| random_like(o, &mut rng)).collect();
    drop(probe);
    // An error in the first backward is returned, not panicked at a line of this file.
    let failure = std::cell::RefCell::new(None);
    let vjp = |xs: &[Tensor]| -> Vec<Tensor> {
        let outputs = f(xs).into_outputs();
        let (outs, seeds): (Vec<&Tensor>, Vec<Tensor>) = outputs
            .iter()
            .zip(&v)
            .filter(|(o, _)| o.tracks_grad())
            .map(|(o, v)| (o, v.clone()))
            .unzip();
        let wrt: Vec<&Tensor> = diff.iter().map(|&i| &xs[i]).collect();
        if outs.is_empty() {
            return wrt.iter().map(|x| x.zeros_like()).collect();
        }
        match try_grad(
            &outs,
            &wrt,
            GradOptions::new().grad_outputs(seeds).create_graph(true).allow_unused(true),
        ) {
            Ok(grads) => grads
                .into_iter()
                .zip(&wrt)
                .map(|(g, x)| g.unwrap_or_else(|| x.zeros_like()))
                .collect(),
            Err(e) => {
                failure.borrow_mut().get_or_insert(e);
                wrt.iter().map(|x| x.zeros_like()).collect()
            }
        }
    };
    let report = check("gradgradcheck", &vjp, inputs, options, location);
    match failure.into_inner() {
        Some(e) => Err(e),
        None => report,
    }
}

fn random_like(t: &Tensor, rng: &mut Xoshiro256PlusPlus) -> Tensor {
    use rand::RngExt;
    let values: Vec<f64> = (0..t.numel()).map(|_| rng.random::<f64>() * 2.0 - 1.0).collect();
    Tensor::from_vec(values, t.shape()).to_dtype(t.dtype())
}

/// New leaves with the inputs' values, so that a check never touches the caller's tensors'
/// gradients or graphs.
fn fresh_leaves(inputs: &[Tensor]) -> Vec<Tensor> {
    inputs
        .iter()
        .map(|x| if x.tracks_grad() { x.detach().requires_grad() } else { x.clone() })
        .collect()
}

fn flat_outputs(f: &dyn Fn(&[Tensor]) -> Vec<Tensor>, xs: &[Tensor]) -> Vec<Vec<f64>> {
    let _on = enable_grad();
    f(xs).iter().map(|o| o.to_vec::<f64>()).collect()
}

fn check(
    name: &'static str,
    f: &dyn Fn(&[Tensor]) -> Vec<Tensor>,
    inputs: &[Tensor],
    options: &GradcheckOptions,
    location: &'static Location<'static>,
) -> Result<GradcheckReport> {
    let misuse = |message: String| Error::InvalidArgument { op: name, message, location };
    let diff: Vec<usize> = (0..inputs.len()).filter(|&i| inputs[i].tracks_grad()).collect();
    if diff.is_empty() {
        return Err(misuse(
            "no input requires a gradient; call requires_grad() on those to check".into(),
        ));
    }
    if let Some(&i) = diff.iter().find(|&&i| inputs[i].dtype() != DType::F64) {
        return Err(misuse(format!(
            "input {i} is {}; numerical gradients need float64 (use .to_dtype(DType::F64))",
            inputs[i].dtype()
        )));
    }
    let leaves = fresh_leaves(inputs);
    let outputs = {
        let _on = enable_grad();
        f(&leaves)
    };
    if let Some(o) = outputs.iter().position(|o| o.dtype() != DType::F64) {
        return Err(misuse(format!(
            "output {o} is {}; a checked function must compute in float64",
            outputs[o].dtype()
        )));
    }
    let perturbed = |i: usize, delta: &dyn Fn(usize) -> f64| -> Vec<Tensor> {
        let mut xs = fresh_leaves(inputs);
        let values: Vec<f64> =
            inputs[i].to_vec::<f64>().iter().enumerate().map(|(k, v)| v + delta(k)).collect();
        xs[i] = Tensor::from_vec(values, inputs[i].shape()).requires_grad();
        xs
    };
    let tracked: Vec<usize> = (0..outputs.len()).filter(|&o| outputs[o].tracks_grad()).collect();
    let wrt: Vec<&Tensor> = diff.iter().map(|&i| &leaves[i]).collect();
    let vjp = |seeds: Vec<Tensor>| -> Result<Vec<Vec<f64>>> {
        let outs: Vec<&Tensor> = tracked.iter().map(|&o| &outputs[o]).collect();
        let grads = if outs.is_empty() {
            vec![None; wrt.len()]
        } else {
            let seeds = tracked.iter().map(|&o| seeds[o].clone()).collect();
            try_grad(
                &outs,
                &wrt,
                GradOptions::new().grad_outputs(seeds).retain_graph(true).allow_unused(true),
            )?
        };
        Ok(grads
            .into_iter()
            .zip(&wrt)
            .map(|(g, x)| g.map_or_else(|| vec![0.0; x.numel()], |g| g.to_vec::<f64>()))
            .collect())
    };

    let mut tally = Tally::new();
    let eps = options.eps;
    if options.fast_mode {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(options.seed);
        let u: Vec<Vec<f64>> =
            diff.iter().map(|&i| random_like(&inputs[i], &mut rng).to_vec::<f64>()).collect();
        let v: Vec<Tensor> = outputs.iter().map(|o| random_like(o, &mut rng)).collect();
        let v_flat: Vec<Vec<f64>> = v.iter().map(|t| t.to_vec::<f64>()).collect();
        let grads = vjp(v)?;
        let analytic: f64 = grads.iter().zip(&u).map(|(g, u)| dot(g, u)).sum();
        let project = |sign: f64| -> f64 {
            let mut xs = fresh_leaves(inputs);
            for (j, &i) in diff.iter().enumerate() {
                let values: Vec<f64> = inputs[i]
                    .to_vec::<f64>()
                    .iter()
                    .zip(&u[j])
                    .map(|(x, u)| x + sign * eps * u)
                    .collect();
                xs[i] = Tensor::from_vec(values, inputs[i].shape()).requires_grad();
            }
            flat_outputs(f, &xs).iter().zip(&v_flat).map(|(y, v)| dot(y, v)).sum()
        };
        let numerical = (project(1.0) - project(-1.0)) / (2.0 * eps);
        tally.compare(analytic, numerical, options.atol, options.rtol, || Mismatch {
            input: None,
            input_index: vec![],
            output: None,
            output_index: vec![],
            analytic: 0.0,
            numerical: 0.0,
            tolerance: 0.0,
        });
    } else {
        // Analytic Jacobian, one row per output element: analytic[o][k][j][e] is
        // d output o element k / d input diff[j] element e.
        let mut analytic: Vec<Vec<Vec<Vec<f64>>>> = Vec::with_capacity(outputs.len());
        for (o, out) in outputs.iter().enumerate() {
            let mut rows = Vec::with_capacity(out.numel());
            for k in 0..out.numel() {
                if !out.tracks_grad() {
                    rows.push(wrt.iter().map(|x| vec![0.0; x.numel()]).collect());
                    continue;
                }
                let seeds: Vec<Tensor> = outputs
                    .iter()
                    .enumerate()
                    .map(|(p, t)| {
                        let mut e = vec![0.0f64; t.numel()];
                        if p == o {
                            e[k] = 1.0;
                        }
                        Tensor::from_vec(e, t.shape())
                    })
                    .collect();
                rows.push(vjp(seeds)?);
            }
            analytic.push(rows);
        }
        for (j, &i) in diff.iter().enumerate() {
            for (e, _) in inputs[i].to_vec::<f64>().iter().enumerate() {
                let plus = flat_outputs(f, &perturbed(i, &|k| if k == e { eps } else { 0.0 }));
                let minus = flat_outputs(f, &perturbed(i, &|k| if k == e { -eps } else { 0.0 }));
                for (o, (yp, ym)) in plus.iter().zip(&minus).enumerate() {
                    for k in 0..yp.len() {
                        let numerical = (yp[k] - ym[k]) / (2.0 * eps);
                        let a = analytic[o][k][j][e];
                        tally.compare(a, numerical, options.atol, options.rtol, || Mismatch {
                            input: Some(i),
                            input_index: index_of(e, inputs[i].shape()),
                            output: Some(o),
                            output_index: index_of(k, outputs[o].shape()),
                            analytic: 0.0,
                            numerical: 0.0,
                            tolerance: 0.0,
                        });
                    }
                }
            }
        }
    }
    Ok(GradcheckReport {
        passed: tally.passed,
        check: name,
        fast_mode: options.fast_mode,
        compared: tally.compared,
        worst: tally.worst,
    })
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
