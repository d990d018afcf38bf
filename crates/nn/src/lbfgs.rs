//! L-BFGS (PyTorch's `torch.optim.LBFGS`): a quasi-Newton method that builds an estimate of
//! the inverse Hessian from the last few steps and their gradient changes, for full-batch
//! problems (fitting a physics-informed network, a small regression, a function of a few
//! variables) where each step may evaluate the loss several times.
//!
//! Unlike the other optimizers, a step needs to evaluate the loss again, so
//! [`LBFGS::step`] takes a closure that clears the gradients, computes the loss, runs
//! `backward` and returns the loss. The parameters are treated as one flat vector; the
//! history of steps and gradient changes is kept in the parameters' dtype, and dot
//! products and step lengths are computed in `f64` (PyTorch computes them in the
//! parameters' dtype: with `f32` parameters the two can take a different branch of a
//! tolerance test, and so differ in their counts of evaluations; with `f64` they follow
//! the same path).

use std::collections::VecDeque;

use rayon::prelude::*;
use tapegrad_kernels::simd::{WidestLoop, run_widest};
use tapegrad_tape::{DType, Element, Error, Result, Storage, Tensor, enable_grad};

use crate::{Optimizer, ParamGroup};

/// The line search L-BFGS may run along each direction (PyTorch's `line_search_fn`).
///
/// ```
/// use tapegrad_nn::{LBFGS, LineSearch};
/// let opt = LBFGS::new(vec![], 1.0).line_search_fn(Some(LineSearch::StrongWolfe));
/// assert_eq!(opt.options().line_search_fn, Some(LineSearch::StrongWolfe));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineSearch {
    /// A step length satisfying the strong Wolfe conditions (sufficient decrease with
    /// `c1 = 1e-4`, curvature with `c2 = 0.9`), found by bracketing and cubic interpolation
    /// (PyTorch's `"strong_wolfe"`).
    StrongWolfe,
}

/// The settings of [`LBFGS`], PyTorch's keywords other than `lr`.
///
/// ```
/// use tapegrad_nn::LBFGS;
/// let opt = LBFGS::new(vec![], 1.0).max_iter(8);
/// let options = opt.options();
/// assert_eq!((options.max_iter, options.max_eval(), options.history_size), (8, 10, 100));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct LbfgsOptions {
    /// Iterations per [`LBFGS::step`] at most (20).
    pub max_iter: usize,
    /// Loss evaluations per step at most; `None` (the default) means `max_iter * 5 / 4`.
    pub max_eval: Option<usize>,
    /// A step ends once the largest gradient element is at most this (1e-7).
    pub tolerance_grad: f64,
    /// A step ends once the loss changes by less than this, the parameters by at most this,
    /// or the directional derivative along the search direction rises above minus this
    /// (1e-9).
    pub tolerance_change: f64,
    /// Steps and gradient changes remembered (100).
    pub history_size: usize,
    /// The line search, if any (none: a fixed step of `lr`).
    pub line_search_fn: Option<LineSearch>,
    /// Maximise the loss instead of minimising it.
    pub maximize: bool,
}

impl Default for LbfgsOptions {
    fn default() -> Self {
        LbfgsOptions {
            max_iter: 20,
            max_eval: None,
            tolerance_grad: 1e-7,
            tolerance_change: 1e-9,
            history_size: 100,
            line_search_fn: None,
            maximize: false,
        }
    }
}

impl LbfgsOptions {
    /// The evaluations per step at most: `max_eval`, or `max_iter * 5 / 4` without one.
    ///
    /// ```
    /// use tapegrad_nn::LbfgsOptions;
    /// let options = LbfgsOptions { max_iter: 20, ..LbfgsOptions::default() };
    /// assert_eq!(options.max_eval(), 25);
    /// ```
    pub fn max_eval(&self) -> usize {
        self.max_eval.unwrap_or(self.max_iter * 5 / 4)
    }
}

/// What L-BFGS carries from one step to the next, in the parameters' element type.
#[derive(Clone, Debug)]
struct Memory<T> {
    /// The last search direction and its step length.
    d: Vec<T>,
    t: f64,
    /// The remembered gradient changes `y`, steps `s`, and `1 / (y . s)`, oldest first.
    old_dirs: VecDeque<Vec<T>>,
    old_stps: VecDeque<Vec<T>>,
    ro: VecDeque<f64>,
    /// The scale of the initial inverse Hessian estimate.
    h_diag: f64,
    prev_flat_grad: Vec<T>,
    prev_loss: f64,
}

/// [`Memory`] in the dtype the parameters had when it was made.
#[derive(Clone, Debug)]
enum History {
    F32(Memory<f32>),
    F64(Memory<f64>),
}

/// The element types L-BFGS runs in, and how their [`Memory`] is kept.
trait Flat: Element {
    fn take(history: &mut Option<History>) -> Option<Memory<Self>>;
    fn keep(memory: Memory<Self>) -> History;
}

impl Flat for f32 {
    fn take(history: &mut Option<History>) -> Option<Memory<f32>> {
        match history.take() {
            Some(History::F32(m)) => Some(m),
            other => {
                *history = other;
                None
            }
        }
    }
    fn keep(memory: Memory<f32>) -> History {
        History::F32(memory)
    }
}

impl Flat for f64 {
    fn take(history: &mut Option<History>) -> Option<Memory<f64>> {
        match history.take() {
            Some(History::F64(m)) => Some(m),
            other => {
                *history = other;
                None
            }
        }
    }
    fn keep(memory: Memory<f64>) -> History {
        History::F64(memory)
    }
}

/// L-BFGS with PyTorch's update, stopping rules and strong-Wolfe line search
/// (`torch.optim.LBFGS`). It has one parameter group, and [`LBFGS::step`] takes a closure
/// that evaluates the loss (PyTorch's `step(closure)`); the [`Optimizer`] trait's `step()`
/// without one panics.
///
/// ```
/// use tapegrad_nn::{LBFGS, LineSearch};
/// use tapegrad_ops::prelude::*;
/// use tapegrad_tape::Tensor;
/// // Minimise (x - 3)^2 + (y + 1)^2.
/// let p = Tensor::from_vec(vec![0.0f64, 0.0], &[2]).requires_grad();
/// let target = Tensor::from_vec(vec![3.0f64, -1.0], &[2]);
/// let mut opt = LBFGS::new(vec![p.clone()], 1.0).line_search_fn(Some(LineSearch::StrongWolfe));
/// opt.step(|| {
///     p.zero_grad();
///     let loss = (&p - &target).square().sum();
///     loss.backward();
///     loss
/// });
/// let v = p.to_vec::<f64>();
/// assert!((v[0] - 3.0).abs() < 1e-6 && (v[1] + 1.0).abs() < 1e-6);
/// ```
pub struct LBFGS {
    groups: Vec<ParamGroup>,
    options: LbfgsOptions,
    /// Loss evaluations and iterations over all steps (PyTorch's `func_evals`, `n_iter`).
    func_evals: u64,
    n_iter: u64,
    history: Option<History>,
}

impl LBFGS {
    /// L-BFGS over `params` with step length `lr` (PyTorch's default is 1) and the default
    /// [`LbfgsOptions`].
    ///
    /// ```
    /// use tapegrad_nn::{LBFGS, Optimizer};
    /// use tapegrad_tape::Tensor;
    /// let opt = LBFGS::new(vec![Tensor::ones(&[3]).requires_grad()], 1.0);
    /// assert_eq!(opt.param_groups()[0].lr, 1.0);
    /// ```
    pub fn new(params: Vec<Tensor>, lr: f64) -> Self {
        LBFGS {
            groups: vec![ParamGroup { params, lr }],
            options: LbfgsOptions::default(),
            func_evals: 0,
            n_iter: 0,
            history: None,
        }
    }

    /// The settings.
    ///
    /// ```
    /// use tapegrad_nn::LBFGS;
    /// assert_eq!(LBFGS::new(vec![], 1.0).options().tolerance_grad, 1e-7);
    /// ```
    pub fn options(&self) -> &LbfgsOptions {
        &self.options
    }

    /// Loss evaluations and iterations so far, over all steps (PyTorch's `func_evals` and
    /// `n_iter` in the optimizer's state).
    ///
    /// ```
    /// use tapegrad_nn::LBFGS;
    /// use tapegrad_ops::prelude::*;
    /// use tapegrad_tape::Tensor;
    /// let p = Tensor::from_vec(vec![1.0f64], &[1]).requires_grad();
    /// let mut opt = LBFGS::new(vec![p.clone()], 1.0).max_iter(3);
    /// opt.step(|| {
    ///     p.zero_grad();
    ///     let loss = (&p * &p).sum();
    ///     loss.backward();
    ///     loss
    /// });
    /// // The first iteration steps to 0, whose evaluation finds a zero gradient: done.
    /// assert_eq!(opt.counts(), (2, 1));
    /// ```
    pub fn counts(&self) -> (u64, u64) {
        (self.func_evals, self.n_iter)
    }

    /// One L-BFGS step: up to `max_iter` iterations, evaluating the loss by `closure`
    /// (which must clear the parameters' gradients, compute the loss with gradients
    /// recorded, call `backward` and return the loss, one element) at most `max_eval`
    /// times. Returns the loss of the first evaluation, before the parameters moved.
    ///
    /// # Panics
    /// If the closure returns more than one element, a parameter is a non-contiguous view,
    /// the parameters are not all `f32` or all `f64`, or their dtype changed since the
    /// last step.
    ///
    /// ```
    /// use tapegrad_nn::LBFGS;
    /// use tapegrad_ops::prelude::*;
    /// use tapegrad_tape::Tensor;
    /// let w = Tensor::from_vec(vec![2.0f32, -1.0], &[2]).requires_grad();
    /// let mut opt = LBFGS::new(vec![w.clone()], 1.0);
    /// let first = opt.step(|| {
    ///     w.zero_grad();
    ///     let loss = w.square().sum();
    ///     loss.backward();
    ///     loss
    /// });
    /// assert_eq!(first.item(), 5.0);
    /// assert!(w.to_vec::<f32>().iter().all(|v| v.abs() < 1e-3));
    /// ```
    #[track_caller]
    pub fn step(&mut self, closure: impl FnMut() -> Tensor) -> Tensor {
        let params = self.groups[0].params.clone();
        let Some(first) = params.first() else {
            let mut closure = closure;
            let _grad = enable_grad();
            return closure();
        };
        let dtype = first.dtype();
        for (i, p) in params.iter().enumerate() {
            assert!(
                p.dtype() == dtype,
                "LBFGS: parameter {i} is {} but parameter 0 is {dtype}; L-BFGS treats the \
                 parameters as one vector of one dtype",
                p.dtype()
            );
            assert!(
                p.layout().is_contiguous(),
                "LBFGS: parameter {i} is a non-contiguous view; pass a contiguous tensor"
            );
        }
        let kept = match &self.history {
            Some(History::F32(_)) => Some(DType::F32),
            Some(History::F64(_)) => Some(DType::F64),
            None => None,
        };
        assert!(
            kept.is_none_or(|kept| kept == dtype),
            "LBFGS: the parameters are {dtype} but the optimizer's history is {}; convert a \
             model's dtype before creating its optimizer",
            kept.unwrap_or(dtype)
        );
        match dtype {
            DType::F32 => self.run::<f32>(&params, closure),
            DType::F64 => self.run::<f64>(&params, closure),
            other => panic!("LBFGS: parameters must be f32 or f64, not {other}"),
        }
    }

    fn run<T: Flat>(&mut self, params: &[Tensor], mut closure: impl FnMut() -> Tensor) -> Tensor {
        let lr = self.groups[0].lr;
        let o = self.options.clone();
        let max_eval = o.max_eval();
        let sign = if o.maximize { -1.0 } else { 1.0 };
        let mut evaluate = || {
            let _grad = enable_grad();
            let loss = closure();
            let value = loss.try_item().unwrap_or_else(|_| {
                panic!(
                    "LBFGS: the closure must return the loss, one element; it returned shape {:?}",
                    loss.shape()
                )
            });
            (loss, sign * value)
        };
        let flat_grad = |params: &[Tensor]| -> Vec<T> {
            let mut g = gather_grad::<T>(params);
            if o.maximize {
                g.iter_mut().for_each(|v| *v = -*v);
            }
            g
        };

        let (orig_loss, mut loss) = evaluate();
        let mut current_evals = 1;
        self.func_evals += 1;
        let mut grad = flat_grad(params);
        if abs_max(&grad) <= o.tolerance_grad {
            return orig_loss;
        }
        let memory = T::take(&mut self.history).unwrap_or_else(|| Memory {
            d: Vec::new(),
            t: lr,
            old_dirs: VecDeque::new(),
            old_stps: VecDeque::new(),
            ro: VecDeque::new(),
            h_diag: 1.0,
            prev_flat_grad: Vec::new(),
            prev_loss: loss,
        });
        // Put back when the step ends, and also if the closure panics partway, so that the
        // counts never outlive the memory they go with.
        let mut kept = KeepOnDrop { slot: &mut self.history, memory: Some(memory) };
        let m = kept.memory.as_mut().expect("set above");

        let mut n_iter = 0;
        while n_iter < o.max_iter {
            n_iter += 1;
            self.n_iter += 1;
            if self.n_iter == 1 {
                m.d = grad.iter().map(|&g| -g).collect();
                m.old_dirs.clear();
                m.old_stps.clear();
                m.ro.clear();
                m.h_diag = 1.0;
            } else {
                m.d = m.direction(&grad, o.history_size);
            }
            m.prev_flat_grad.clone_from(&grad);
            m.prev_loss = loss;
            m.t = if self.n_iter == 1 { py_min(1.0, 1.0 / abs_sum(&grad)) * lr } else { lr };
            let gtd = dot(&grad, &m.d);
            if gtd > -o.tolerance_change {
                break;
            }
            let evals;
            let opt_cond;
            match o.line_search_fn {
                Some(LineSearch::StrongWolfe) => {
                    let start: Vec<Vec<T>> = params.iter().map(|p| p.to_vec::<T>()).collect();
                    let mut along = |t: f64| {
                        add_to_params(params, t, &m.d);
                        let (_, loss) = evaluate();
                        let grad = flat_grad(params);
                        set_params(params, &start);
                        (loss, grad)
                    };
                    let max_ls = max_eval.saturating_sub(current_evals);
                    let found = strong_wolfe(&mut along, &m.d, m.t, (loss, &grad, gtd), max_ls);
                    (loss, grad, m.t, evals) = found;
                    add_to_params(params, m.t, &m.d);
                    opt_cond = abs_max(&grad) <= o.tolerance_grad;
                }
                None => {
                    add_to_params(params, m.t, &m.d);
                    if n_iter != o.max_iter {
                        loss = evaluate().1;
                        grad = flat_grad(params);
                        opt_cond = abs_max(&grad) <= o.tolerance_grad;
                        evals = 1;
                    } else {
                        opt_cond = false;
                        evals = 0;
                    }
                }
            }
            current_evals += evals;
            self.func_evals += evals as u64;
            if n_iter == o.max_iter || current_evals >= max_eval || opt_cond {
                break;
            }
            if abs_max(&m.d) * m.t.abs() <= o.tolerance_change
                || (loss - m.prev_loss).abs() < o.tolerance_change
            {
                break;
            }
        }
        drop(kept);
        orig_loss
    }
}

/// Stores `memory` back into `slot` when dropped.
struct KeepOnDrop<'a, T: Flat> {
    slot: &'a mut Option<History>,
    memory: Option<Memory<T>>,
}

impl<T: Flat> Drop for KeepOnDrop<'_, T> {
    fn drop(&mut self) {
        if let Some(memory) = self.memory.take() {
            *self.slot = Some(T::keep(memory));
        }
    }
}

impl<T: Element> Memory<T> {
    /// The new search direction from the gradient `grad`: the remembered pairs updated
    /// with the last step (kept only when it curved upwards, `y . s > 1e-10`), then the
    /// two-loop recursion applied to `-grad`.
    fn direction(&mut self, grad: &[T], history_size: usize) -> Vec<T> {
        let y: Vec<T> = grad.iter().zip(&self.prev_flat_grad).map(|(&g, &p)| g - p).collect();
        let s: Vec<T> = self.d.iter().map(|&d| d * T::from_f64(self.t)).collect();
        let ys = dot(&y, &s);
        if ys > 1e-10 {
            if self.old_dirs.len() == history_size {
                self.old_dirs.pop_front();
                self.old_stps.pop_front();
                self.ro.pop_front();
            }
            self.h_diag = ys / dot(&y, &y);
            self.old_dirs.push_back(y);
            self.old_stps.push_back(s);
            self.ro.push_back(1.0 / ys);
        }
        let count = self.old_dirs.len();
        let mut al = vec![0.0; count];
        let mut q: Vec<T> = grad.iter().map(|&g| -g).collect();
        for i in (0..count).rev() {
            al[i] = dot(&self.old_stps[i], &q) * self.ro[i];
            add_scaled(&mut q, -al[i], &self.old_dirs[i]);
        }
        let h = T::from_f64(self.h_diag);
        let mut r: Vec<T> = q.iter().map(|&v| v * h).collect();
        for (((y, s), ro), al) in self.old_dirs.iter().zip(&self.old_stps).zip(&self.ro).zip(al) {
            let be = dot(y, &r) * ro;
            add_scaled(&mut r, al - be, s);
        }
        r
    }
}

/// A point of the line search: step length, loss, gradient and directional derivative.
#[derive(Clone)]
struct Point<T> {
    t: f64,
    f: f64,
    g: Vec<T>,
    gtd: f64,
}

/// The strong-Wolfe line search along `d` from a point with loss, gradient and
/// directional derivative `start`, trying `t` first and evaluating at most `max_ls` more
/// times after the first try (PyTorch's `_strong_wolfe` with its defaults). Returns the
/// loss, gradient and step length found, and the evaluations it made.
fn strong_wolfe<T: Element>(
    along: &mut impl FnMut(f64) -> (f64, Vec<T>),
    d: &[T],
    mut t: f64,
    (f, g, gtd): (f64, &[T], f64),
    max_ls: usize,
) -> (f64, Vec<T>, f64, usize) {
    const C1: f64 = 1e-4;
    const C2: f64 = 0.9;
    const TOLERANCE_CHANGE: f64 = 1e-9;
    let d_norm = abs_max(d);
    let mut evals = 1;
    let (f_new, g_new) = along(t);
    let mut new = Point { t, f: f_new, gtd: dot(&g_new, d), g: g_new };
    let mut prev = Point { t: 0.0, f, g: g.to_vec(), gtd };
    let mut done = false;
    let mut ls_iter = 0;
    let mut bracket: Vec<Point<T>> = Vec::new();
    while ls_iter < max_ls {
        if new.f > f + C1 * t * gtd || (ls_iter > 1 && new.f >= prev.f) {
            bracket = vec![prev, new.clone()];
            break;
        }
        if new.gtd.abs() <= -C2 * gtd {
            bracket = vec![new.clone()];
            done = true;
            break;
        }
        if new.gtd >= 0.0 {
            bracket = vec![prev, new.clone()];
            break;
        }
        let (min_step, max_step) = (t + 0.01 * (t - prev.t), t * 10.0);
        t = cubic_interpolate(
            (prev.t, prev.f, prev.gtd),
            (t, new.f, new.gtd),
            Some((min_step, max_step)),
        );
        let (f_next, g_next) = along(t);
        evals += 1;
        ls_iter += 1;
        prev = std::mem::replace(&mut new, Point { t, f: f_next, gtd: dot(&g_next, d), g: g_next });
    }
    if ls_iter == max_ls {
        bracket = vec![Point { t: 0.0, f, g: g.to_vec(), gtd }, new];
    }

    // Zoom: shrink the bracket around a point that satisfies both conditions.
    let order = |b: &[Point<T>]| if b[0].f <= b[b.len() - 1].f { (0, 1) } else { (1, 0) };
    let (mut low, mut high) = order(&bracket);
    let mut insufficient_progress = false;
    while !done && ls_iter < max_ls {
        let (lo, hi) = (py_min(bracket[0].t, bracket[1].t), py_max(bracket[0].t, bracket[1].t));
        if (bracket[1].t - bracket[0].t).abs() * d_norm < TOLERANCE_CHANGE {
            break;
        }
        let (a, b) = (&bracket[0], &bracket[1]);
        t = cubic_interpolate((a.t, a.f, a.gtd), (b.t, b.f, b.gtd), None);
        // Too close to an end of the bracket: move a tenth of its width inside, at once if
        // the last trial was also close or `t` is outside, else on the next close trial.
        let eps = 0.1 * (hi - lo);
        if py_min(hi - t, t - lo) < eps {
            if insufficient_progress || t >= hi || t <= lo {
                t = if (t - hi).abs() < (t - lo).abs() { hi - eps } else { lo + eps };
                insufficient_progress = false;
            } else {
                insufficient_progress = true;
            }
        } else {
            insufficient_progress = false;
        }
        let (f_new, g_new) = along(t);
        evals += 1;
        ls_iter += 1;
        let trial = Point { t, f: f_new, gtd: dot(&g_new, d), g: g_new };
        if trial.f > f + C1 * t * gtd || trial.f >= bracket[low].f {
            bracket[high] = trial;
            (low, high) = order(&bracket);
        } else {
            if trial.gtd.abs() <= -C2 * gtd {
                done = true;
            } else if trial.gtd * (bracket[high].t - bracket[low].t) >= 0.0 {
                bracket[high] = bracket[low].clone();
            }
            bracket[low] = trial;
        }
    }
    let best = bracket.swap_remove(low);
    (best.f, best.g, best.t, evals)
}

/// The minimiser of the cubic through two points with their values and slopes, clamped to
/// `bounds` (default: between the points); the middle of the bounds when the cubic has no
/// minimum.
fn cubic_interpolate(
    (x1, f1, g1): (f64, f64, f64),
    (x2, f2, g2): (f64, f64, f64),
    bounds: Option<(f64, f64)>,
) -> f64 {
    let (lo, hi) = bounds.unwrap_or(if x1 <= x2 { (x1, x2) } else { (x2, x1) });
    let d1 = g1 + g2 - 3.0 * (f1 - f2) / (x1 - x2);
    let d2_square = d1 * d1 - g1 * g2;
    if d2_square >= 0.0 {
        let d2 = d2_square.sqrt();
        let min_pos = if x1 <= x2 {
            x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2.0 * d2))
        } else {
            x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2.0 * d2))
        };
        py_min(py_max(min_pos, lo), hi)
    } else {
        (lo + hi) / 2.0
    }
}

/// Python's `max(a, b)`: `a` unless `b` is larger (a NaN `a` stays, as in PyTorch's search).
fn py_max(a: f64, b: f64) -> f64 {
    if b > a { b } else { a }
}

/// Python's `min(a, b)`: `a` unless `b` is smaller.
fn py_min(a: f64, b: f64) -> f64 {
    if b < a { b } else { a }
}

/// Elements per block of the long vector operations: blocks run on the thread pool, and a
/// dot product adds its blocks' sums in block order, so it gives the same bits at every
/// thread count.
const BLOCK: usize = 1 << 14;

/// `a . b`, summed in `f64`.
fn dot<T: Element>(a: &[T], b: &[T]) -> f64 {
    if a.len() <= BLOCK {
        return run_widest(Dot(a, b));
    }
    let blocks: Vec<f64> =
        a.par_chunks(BLOCK).zip(b.par_chunks(BLOCK)).map(|(a, b)| run_widest(Dot(a, b))).collect();
    blocks.iter().sum()
}

/// A block's dot product over eight interleaved partial sums: independent chains that fill
/// a vector register, where one running sum waits on each addition.
struct Dot<'a, T>(&'a [T], &'a [T]);

impl<T: Element> WidestLoop for Dot<'_, T> {
    type Output = f64;
    #[inline(always)]
    fn run(self) -> f64 {
        const LANES: usize = 8;
        let mut sums = [0.0f64; LANES];
        let (a, b) = (self.0.chunks_exact(LANES), self.1.chunks_exact(LANES));
        let tail: f64 =
            a.remainder().iter().zip(b.remainder()).map(|(&x, &y)| x.to_f64() * y.to_f64()).sum();
        for (x, y) in a.zip(b) {
            for ((sum, &x), &y) in sums.iter_mut().zip(x).zip(y) {
                *sum += x.to_f64() * y.to_f64();
            }
        }
        sums.iter().sum::<f64>() + tail
    }
}

/// `y += alpha * x`.
fn add_scaled<T: Element>(y: &mut [T], alpha: f64, x: &[T]) {
    let alpha = T::from_f64(alpha);
    if y.len() <= BLOCK {
        return run_widest(AddScaled(y, alpha, x));
    }
    y.par_chunks_mut(BLOCK)
        .zip(x.par_chunks(BLOCK))
        .for_each(|(y, x)| run_widest(AddScaled(y, alpha, x)));
}

struct AddScaled<'a, T>(&'a mut [T], T, &'a [T]);

impl<T: Element> WidestLoop for AddScaled<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let alpha = self.1;
        self.0.iter_mut().zip(self.2).for_each(|(y, &x)| *y += alpha * x);
    }
}

/// The largest `|a_i|`, NaN if any is (as PyTorch's `abs().max()`: a diverged gradient must
/// not pass for a converged one).
fn abs_max<T: Element>(a: &[T]) -> f64 {
    a.iter().map(|v| v.to_f64().abs()).fold(0.0, |m, v| if v.is_nan() || v > m { v } else { m })
}

fn abs_sum<T: Element>(a: &[T]) -> f64 {
    a.iter().map(|v| v.to_f64().abs()).sum()
}

/// The parameters' gradients as one vector (zeros for a parameter without one).
fn gather_grad<T: Element>(params: &[Tensor]) -> Vec<T> {
    let mut flat = Vec::with_capacity(params.iter().map(Tensor::numel).sum());
    for p in params {
        match p.grad() {
            Some(g) => flat.extend(g.to_vec::<T>()),
            None => flat.resize(flat.len() + p.numel(), T::ZERO),
        }
    }
    flat
}

/// Writes `f(values, part of the flat vector)` into each parameter, in place.
fn update_params<T: Element>(params: &[Tensor], mut f: impl FnMut(&mut [T], usize)) {
    let mut offset = 0;
    for p in params {
        let n = p.numel();
        p.update_storage(|storage, layout| {
            let range = layout.offset()..layout.offset() + n;
            let values: &mut [T] = match storage {
                Storage::F32(_) | Storage::F64(_) => {
                    &mut storage.make_mut::<T>().expect("checked dtype")[range]
                }
                _ => unreachable!("checked dtype"),
            };
            f(values, offset);
        });
        offset += n;
    }
}

/// `params += t * d`, `d` flat.
fn add_to_params<T: Element>(params: &[Tensor], t: f64, d: &[T]) {
    let t = T::from_f64(t);
    update_params::<T>(params, |p, at| {
        p.iter_mut().zip(&d[at..]).for_each(|(p, &d)| *p += t * d);
    });
}

/// Sets each parameter to its saved values.
fn set_params<T: Element>(params: &[Tensor], values: &[Vec<T>]) {
    let mut i = 0;
    update_params::<T>(params, |p, _| {
        p.copy_from_slice(&values[i]);
        i += 1;
    });
}

/// Builder methods for each of PyTorch's keywords.
impl LBFGS {
    /// Sets `max_iter`, the iterations per step at most.
    ///
    /// ```
    /// use tapegrad_nn::LBFGS;
    /// assert_eq!(LBFGS::new(vec![], 1.0).max_iter(5).options().max_iter, 5);
    /// ```
    ///
    /// # Panics
    /// If `value` is 0.
    #[track_caller]
    pub fn max_iter(mut self, value: usize) -> Self {
        assert!(value > 0, "LBFGS: max_iter must be at least 1");
        self.options.max_iter = value;
        self
    }

    /// Sets `max_eval`, the loss evaluations per step at most (`None`: `max_iter * 5 / 4`).
    ///
    /// ```
    /// use tapegrad_nn::LBFGS;
    /// assert_eq!(LBFGS::new(vec![], 1.0).max_eval(Some(7)).options().max_eval(), 7);
    /// ```
    pub fn max_eval(mut self, value: Option<usize>) -> Self {
        self.options.max_eval = value;
        self
    }

    /// Sets `tolerance_grad`.
    ///
    /// ```
    /// use tapegrad_nn::LBFGS;
    /// assert_eq!(LBFGS::new(vec![], 1.0).tolerance_grad(1e-5).options().tolerance_grad, 1e-5);
    /// ```
    pub fn tolerance_grad(mut self, value: f64) -> Self {
        self.options.tolerance_grad = value;
        self
    }

    /// Sets `tolerance_change`.
    ///
    /// ```
    /// use tapegrad_nn::LBFGS;
    /// let opt = LBFGS::new(vec![], 1.0).tolerance_change(1e-6);
    /// assert_eq!(opt.options().tolerance_change, 1e-6);
    /// ```
    pub fn tolerance_change(mut self, value: f64) -> Self {
        self.options.tolerance_change = value;
        self
    }

    /// Sets `history_size`, the steps remembered.
    ///
    /// ```
    /// use tapegrad_nn::LBFGS;
    /// assert_eq!(LBFGS::new(vec![], 1.0).history_size(10).options().history_size, 10);
    /// ```
    ///
    /// # Panics
    /// If `value` is 0 (PyTorch fails at the first update then).
    #[track_caller]
    pub fn history_size(mut self, value: usize) -> Self {
        assert!(value > 0, "LBFGS: history_size must be at least 1");
        self.options.history_size = value;
        self
    }

    /// Sets `line_search_fn` (`None`: a fixed step).
    ///
    /// ```
    /// use tapegrad_nn::{LBFGS, LineSearch};
    /// let opt = LBFGS::new(vec![], 1.0).line_search_fn(Some(LineSearch::StrongWolfe));
    /// assert!(opt.options().line_search_fn.is_some());
    /// ```
    pub fn line_search_fn(mut self, value: Option<LineSearch>) -> Self {
        self.options.line_search_fn = value;
        self
    }

    /// Sets `maximize`.
    ///
    /// ```
    /// use tapegrad_nn::LBFGS;
    /// assert!(LBFGS::new(vec![], 1.0).maximize(true).options().maximize);
    /// ```
    pub fn maximize(mut self, value: bool) -> Self {
        self.options.maximize = value;
        self
    }
}

impl Optimizer for LBFGS {
    /// Always panics: L-BFGS evaluates the loss several times per step, so its step takes a
    /// closure ([`LBFGS::step`]), as PyTorch's does.
    #[track_caller]
    fn step(&mut self) {
        panic!(
            "LBFGS: a step evaluates the loss several times; call LBFGS::step(closure) with a \
             closure that clears the gradients, computes the loss, calls backward and returns it"
        )
    }

    fn zero_grad(&self) {
        self.groups[0].params.iter().for_each(Tensor::zero_grad);
    }

    fn param_groups(&self) -> &[ParamGroup] {
        &self.groups
    }

    fn set_lr(&mut self, lr: f64) {
        self.groups[0].lr = lr;
    }

    fn state_dict(&self) -> Vec<(String, Tensor)> {
        let scalar =
            |name: &str, v: f64| (format!("state.0.0.{name}"), Tensor::from_vec(vec![v], &[]));
        let mut out =
            vec![("param_groups.0.lr".to_string(), Tensor::from_vec(vec![self.groups[0].lr], &[]))];
        if self.func_evals == 0 && self.n_iter == 0 && self.history.is_none() {
            return out;
        }
        out.push(scalar("func_evals", self.func_evals as f64));
        out.push(scalar("n_iter", self.n_iter as f64));
        fn memory<T: Element>(m: &Memory<T>, out: &mut Vec<(String, Tensor)>) {
            let n = m.d.len();
            let vector = |v: &[T]| Tensor::from_vec(v.to_vec(), &[v.len()]);
            let rows = |rows: &VecDeque<Vec<T>>| {
                Tensor::from_vec(
                    rows.iter().flatten().copied().collect::<Vec<T>>(),
                    &[rows.len(), n],
                )
            };
            let scalar = |v: f64| Tensor::from_vec(vec![v], &[]);
            let ro: Vec<f64> = m.ro.iter().copied().collect();
            for (name, t) in [
                ("d", vector(&m.d)),
                ("t", scalar(m.t)),
                ("old_dirs", rows(&m.old_dirs)),
                ("old_stps", rows(&m.old_stps)),
                ("ro", Tensor::from_vec(ro, &[m.ro.len()])),
                ("H_diag", scalar(m.h_diag)),
                ("prev_flat_grad", vector(&m.prev_flat_grad)),
                ("prev_loss", scalar(m.prev_loss)),
            ] {
                out.push((format!("state.0.0.{name}"), t));
            }
        }
        match &self.history {
            Some(History::F32(m)) => memory(m, &mut out),
            Some(History::F64(m)) => memory(m, &mut out),
            None => {}
        }
        out
    }

    fn load_state_dict(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        let loaded = self.check(state)?;
        self.groups[0].lr = loaded.lr;
        (self.func_evals, self.n_iter) = loaded.counts;
        self.history = loaded.history;
        Ok(())
    }

    fn check_state_dict(&self, state: &[(String, Tensor)]) -> Result<()> {
        self.check(state).map(drop)
    }

    fn kind(&self) -> &'static str {
        "LBFGS"
    }

    fn settings(&self) -> Vec<(&'static str, String)> {
        let o = &self.options;
        vec![
            ("max_iter", format!("{:?}", o.max_iter)),
            ("max_eval", format!("{:?}", o.max_eval())),
            ("tolerance_grad", format!("{:?}", o.tolerance_grad)),
            ("tolerance_change", format!("{:?}", o.tolerance_change)),
            ("history_size", format!("{:?}", o.history_size)),
            ("line_search_fn", format!("{:?}", o.line_search_fn)),
            ("maximize", format!("{:?}", o.maximize)),
        ]
    }
}

/// A state dict that [`LBFGS::check`] accepted.
struct Loaded {
    lr: f64,
    counts: (u64, u64),
    history: Option<History>,
}

/// The entries of L-BFGS's memory in a state dict, after the two counts.
const MEMORY: [&str; 8] =
    ["d", "t", "old_dirs", "old_stps", "ro", "H_diag", "prev_flat_grad", "prev_loss"];

impl LBFGS {
    /// Everything `load_state_dict` checks, without changing anything: the learning rate;
    /// the two counts together; the memory whole when an iteration has run and absent
    /// otherwise, its vectors as long as the parameters together and at most
    /// `history_size` remembered pairs.
    fn check(&self, entries: &[(String, Tensor)]) -> Result<Loaded> {
        let bad = |message: String| Error::Format { path: "LBFGS state".to_string(), message };
        let mut found: Vec<Option<&Tensor>> = vec![None; 3 + MEMORY.len()];
        for (name, t) in entries {
            let slot = match name.strip_prefix("state.0.0.") {
                _ if name == "param_groups.0.lr" => 0,
                Some("func_evals") => 1,
                Some("n_iter") => 2,
                Some(rest) if MEMORY.contains(&rest) => {
                    3 + MEMORY.iter().position(|m| *m == rest).expect("contains")
                }
                _ => {
                    return Err(bad(format!(
                        "unexpected entry `{name}`; L-BFGS's state holds `param_groups.0.lr` and \
                         `state.0.0.{{func_evals, n_iter, {}}}`",
                        MEMORY.join(", ")
                    )));
                }
            };
            if !t.dtype().is_float() {
                return Err(bad(format!("entry `{name}` is {}; expected floats", t.dtype())));
            }
            if found[slot].replace(t).is_some() {
                return Err(bad(format!("entry `{name}` appears twice")));
            }
        }
        let scalar = |slot: usize, name: &str| -> Result<Option<f64>> {
            found[slot]
                .map(|t| {
                    t.try_item().map_err(|_| {
                        bad(format!("entry `{name}` has shape {:?}; expected one value", t.shape()))
                    })
                })
                .transpose()
        };
        let count = |slot: usize, name: &str| -> Result<Option<u64>> {
            scalar(slot, name)?
                .map(|v| {
                    if v >= 0.0 && v.fract() == 0.0 && v <= (1u64 << 53) as f64 {
                        Ok(v as u64)
                    } else {
                        Err(bad(format!(
                            "entry `{name}` is {v}; a count is a non-negative whole number"
                        )))
                    }
                })
                .transpose()
        };
        let lr = scalar(0, "param_groups.0.lr")?
            .ok_or_else(|| bad("missing entry `param_groups.0.lr`".to_string()))?;
        let counts = match (count(1, "state.0.0.func_evals")?, count(2, "state.0.0.n_iter")?) {
            (Some(evals), Some(iters)) => (evals, iters),
            (None, None) => (0, 0),
            _ => {
                return Err(bad(
                    "`state.0.0.func_evals` and `state.0.0.n_iter` go together".to_string()
                ));
            }
        };
        let memory = &found[3..];
        let history = if memory.iter().all(Option::is_none) {
            if counts.1 > 0 {
                return Err(bad(format!(
                    "the state counts {} iterations but holds no memory (`state.0.0.d` and the rest)",
                    counts.1
                )));
            }
            None
        } else {
            if let Some(i) = memory.iter().position(Option::is_none) {
                return Err(bad(format!("missing entry `state.0.0.{}`", MEMORY[i])));
            }
            let memory: Vec<&Tensor> = memory.iter().map(|t| t.expect("all present")).collect();
            let dtype = self.groups[0].params.first().map_or(DType::F32, Tensor::dtype);
            match dtype {
                DType::F64 => Some(History::F64(self.memory::<f64>(&memory, &bad)?)),
                _ => Some(History::F32(self.memory::<f32>(&memory, &bad)?)),
            }
        };
        Ok(Loaded { lr, counts, history })
    }

    /// The memory from its entries (in [`MEMORY`]'s order), checked against the parameters.
    fn memory<T: Element>(
        &self,
        entries: &[&Tensor],
        bad: &impl Fn(String) -> Error,
    ) -> Result<Memory<T>> {
        let n: usize = self.groups[0].params.iter().map(Tensor::numel).sum();
        let shaped = |i: usize, shape: &[usize]| -> Result<&Tensor> {
            let t = entries[i];
            if t.shape() == shape {
                Ok(t)
            } else {
                Err(bad(format!(
                    "entry `state.0.0.{}` has shape {:?}; expected {shape:?} (the parameters hold {n} \
                     elements together)",
                    MEMORY[i],
                    t.shape()
                )))
            }
        };
        let k = entries[4].shape().first().copied().unwrap_or(0);
        if k > self.options.history_size {
            return Err(bad(format!(
                "the state remembers {k} steps; this optimizer's history_size is {}",
                self.options.history_size
            )));
        }
        let rows = |i: usize| -> Result<VecDeque<Vec<T>>> {
            let values = shaped(i, &[k, n])?.to_vec::<T>();
            Ok((0..k).map(|r| values[r * n..(r + 1) * n].to_vec()).collect())
        };
        let value = |i: usize| shaped(i, &[]).map(Tensor::item);
        Ok(Memory {
            d: shaped(0, &[n])?.to_vec(),
            t: value(1)?,
            old_dirs: rows(2)?,
            old_stps: rows(3)?,
            ro: shaped(4, &[k])?.to_vec::<f64>().into(),
            h_diag: value(5)?,
            prev_flat_grad: shaped(6, &[n])?.to_vec(),
            prev_loss: value(7)?,
        })
    }
}
