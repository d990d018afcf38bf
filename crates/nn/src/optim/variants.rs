//! Adam's variants: Adamax (the second moment replaced by a decaying maximum of the
//! gradient's size), RAdam (the adaptive step rectified while the second moment's
//! estimate is still short of samples) and NAdam (Nesterov momentum on a rising schedule).

use tapegrad_tape::{Element, Tensor};

use super::{Optim, UpdateRule, c, lerp};

/// Settings of [`Adamax`].
///
/// ```
/// use tapegrad_nn::{AdamaxRule, UpdateRule};
/// let rule = AdamaxRule::default();
/// assert_eq!((rule.betas, rule.buffers()), ((0.9, 0.999), &["exp_avg", "exp_inf"][..]));
/// ```
#[derive(Clone, Debug)]
pub struct AdamaxRule {
    /// Decay rates of the first moment and of the running maximum.
    pub betas: (f64, f64),
    /// Added to the gradient's size before the maximum (PyTorch: 1e-8).
    pub eps: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
}

impl Default for AdamaxRule {
    fn default() -> Self {
        AdamaxRule { betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.0 }
    }
}

/// Adamax: PyTorch's `torch.optim.Adamax` (Adam with the infinity norm; PyTorch's default
/// learning rate is 2e-3).
///
/// ```
/// use tapegrad_nn::{Adamax, Optimizer};
/// use tapegrad_tape::Tensor;
/// let w = Tensor::ones(&[2]).requires_grad();
/// (&w * &Tensor::from_vec(vec![4.0f32, -0.5], &[2])).sum_to_shape(&[]).backward();
/// let mut opt = Adamax::new(vec![w.clone()], 0.1);
/// opt.step(); // the first step is lr against the gradient's sign
/// let w = w.to_vec::<f32>();
/// assert!((w[0] - 0.9).abs() < 1e-6 && (w[1] - 1.1).abs() < 1e-6);
/// ```
pub type Adamax = Optim<AdamaxRule>;

impl Adamax {
    /// Adamax with learning rate `lr`.
    ///
    /// ```
    /// use tapegrad_nn::{Adamax, Optimizer};
    /// assert_eq!(Adamax::new(vec![], 2e-3).param_groups()[0].lr, 2e-3);
    /// ```
    pub fn new(params: Vec<Tensor>, lr: f64) -> Self {
        Optim::with_rule(params, lr, AdamaxRule::default())
    }
}

builder!(
    Adamax,
    AdamaxRule { betas: (f64, f64) = (0.8, 0.99), eps: f64 = 1e-6, weight_decay: f64 = 1e-4 }
);

impl UpdateRule for AdamaxRule {
    const NAME: &'static str = "Adamax";
    fn buffers(&self) -> &'static [&'static str] {
        &["exp_avg", "exp_inf"]
    }
    fn settings(&self) -> Vec<(&'static str, String)> {
        let AdamaxRule { betas, eps, weight_decay } = self;
        vec![
            ("betas", format!("{betas:?}")),
            ("eps", format!("{eps:?}")),
            ("weight_decay", format!("{weight_decay:?}")),
        ]
    }
    fn momentum(&self) -> Option<f64> {
        Some(self.betas.0)
    }
    fn set_momentum(&mut self, momentum: f64) {
        self.betas.0 = momentum;
    }
    #[inline(always)]
    fn update<T: Element>(&self, lr: f64, step: u64, p: &mut [T], g: &[T], state: &mut [&mut [T]]) {
        let (b1, b2) = self.betas;
        let [m, u] = state else { unreachable!("Adamax keeps two buffers") };
        let (one_minus_b1, b2t, eps, wd) =
            (c::<T>(1.0 - b1), c::<T>(b2), c::<T>(self.eps), c::<T>(self.weight_decay));
        let neg_step = c::<T>(-(lr / (1.0 - b1.powf(step as f64))));
        let coupled = self.weight_decay != 0.0;
        for (((w, &g0), mi), ui) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(u.iter_mut()) {
            let d = if coupled { g0 + wd * *w } else { g0 };
            *mi = lerp(*mi, d, one_minus_b1);
            // `torch.maximum`: a NaN on either side stays.
            *ui = (*ui * b2t).max_nan(d.abs() + eps);
            *w += neg_step * *mi / *ui;
        }
    }
}

/// Settings of [`RAdam`].
///
/// ```
/// use tapegrad_nn::{RAdamRule, UpdateRule};
/// let rule = RAdamRule::default();
/// assert_eq!((rule.eps, rule.decoupled_weight_decay), (1e-8, false));
/// assert_eq!(rule.buffers(), ["exp_avg", "exp_avg_sq"]);
/// ```
#[derive(Clone, Debug)]
pub struct RAdamRule {
    /// Decay rates of the first and second moment estimates.
    pub betas: (f64, f64),
    /// Added to the denominator (PyTorch: 1e-8).
    pub eps: f64,
    /// Weight decay: an L2 term in the gradient, or decoupled (applied to the weights).
    pub weight_decay: f64,
    /// Apply `weight_decay` to the weights directly (as AdamW does).
    pub decoupled_weight_decay: bool,
}

impl Default for RAdamRule {
    fn default() -> Self {
        RAdamRule {
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled_weight_decay: false,
        }
    }
}

/// RAdam: PyTorch's `torch.optim.RAdam`. While the second moment's estimate rests on few
/// steps (its approximated length `rho_t` at most 5), steps follow the bias-corrected first
/// moment alone; after that, Adam's adaptive step scaled by the rectification term.
///
/// ```
/// use tapegrad_nn::{Optimizer, RAdam};
/// use tapegrad_tape::Tensor;
/// let w = Tensor::ones(&[1]).requires_grad();
/// (&w * 2.0).backward();
/// let mut opt = RAdam::new(vec![w.clone()], 0.1);
/// opt.step(); // an early step: lr times the (bias-corrected) momentum, 2
/// assert!((w.item() - 0.8).abs() < 1e-6);
/// ```
pub type RAdam = Optim<RAdamRule>;

impl RAdam {
    /// RAdam with learning rate `lr`.
    ///
    /// ```
    /// use tapegrad_nn::{Optimizer, RAdam};
    /// assert_eq!(RAdam::new(vec![], 1e-3).param_groups()[0].lr, 1e-3);
    /// ```
    pub fn new(params: Vec<Tensor>, lr: f64) -> Self {
        Optim::with_rule(params, lr, RAdamRule::default())
    }
}

builder!(
    RAdam,
    RAdamRule {
        betas: (f64, f64) = (0.8, 0.99),
        eps: f64 = 1e-6,
        weight_decay: f64 = 1e-4,
        decoupled_weight_decay: bool = true
    }
);

impl UpdateRule for RAdamRule {
    const NAME: &'static str = "RAdam";
    fn buffers(&self) -> &'static [&'static str] {
        &["exp_avg", "exp_avg_sq"]
    }
    fn settings(&self) -> Vec<(&'static str, String)> {
        let RAdamRule { betas, eps, weight_decay, decoupled_weight_decay } = self;
        vec![
            ("betas", format!("{betas:?}")),
            ("eps", format!("{eps:?}")),
            ("weight_decay", format!("{weight_decay:?}")),
            ("decoupled_weight_decay", format!("{decoupled_weight_decay:?}")),
        ]
    }
    fn momentum(&self) -> Option<f64> {
        Some(self.betas.0)
    }
    fn set_momentum(&mut self, momentum: f64) {
        self.betas.0 = momentum;
    }
    #[inline(always)]
    fn update<T: Element>(&self, lr: f64, step: u64, p: &mut [T], g: &[T], state: &mut [&mut [T]]) {
        let (b1, b2) = self.betas;
        let [m, v] = state else { unreachable!("RAdam keeps two buffers") };
        let (m, v): (&mut [T], &mut [T]) = (m, v);
        let t = step as f64;
        let (bias1, bias2) = (1.0 - b1.powf(t), 1.0 - b2.powf(t));
        let rho_inf = 2.0 / (1.0 - b2) - 1.0;
        let rho_t = rho_inf - 2.0 * t * b2.powf(t) / bias2;
        let moments =
            Moments::new(self.betas, (self.weight_decay, self.decoupled_weight_decay), lr);
        let (bias1, lr_t, eps) = (c::<T>(bias1), c::<T>(lr), c::<T>(self.eps));
        if rho_t > 5.0 {
            let rect = ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
                / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
                .sqrt();
            let (rect, bias2_sqrt) = (c::<T>(rect), c::<T>(bias2.sqrt()));
            moments.update(p, g, m, v, |w, _, mi, vi| {
                *w = *w - mi / bias1 * lr_t * (bias2_sqrt / (vi.sqrt() + eps)) * rect;
            });
        } else {
            moments.update(p, g, m, v, |w, _, mi, _| *w = *w - mi / bias1 * lr_t);
        }
    }
}

/// Settings of [`NAdam`].
///
/// ```
/// use tapegrad_nn::{NAdamRule, UpdateRule};
/// let rule = NAdamRule::default();
/// assert_eq!((rule.momentum_decay, rule.buffers()), (4e-3, &["exp_avg", "exp_avg_sq"][..]));
/// ```
#[derive(Debug)]
pub struct NAdamRule {
    /// Decay rates of the first and second moment estimates.
    pub betas: (f64, f64),
    /// Added to the denominator (PyTorch: 1e-8).
    pub eps: f64,
    /// Weight decay: an L2 term in the gradient, or decoupled (applied to the weights).
    pub weight_decay: f64,
    /// How fast the momentum schedule `mu_t = beta1 (1 - 0.96^(t psi) / 2)` rises (`psi`).
    pub momentum_decay: f64,
    /// Apply `weight_decay` to the weights directly (as AdamW does).
    pub decoupled_weight_decay: bool,
    /// `mu_1 mu_2 ... mu_t` for each step so far, and the `(beta1, momentum_decay)` they are
    /// for: PyTorch keeps this product in each parameter's state; it depends on the step
    /// alone, so one list serves every parameter and a resumed run rebuilds it.
    products: std::sync::Mutex<(f64, f64, Vec<f64>)>,
}

impl Default for NAdamRule {
    fn default() -> Self {
        NAdamRule {
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            momentum_decay: 4e-3,
            decoupled_weight_decay: false,
            products: Default::default(),
        }
    }
}

impl Clone for NAdamRule {
    fn clone(&self) -> Self {
        let NAdamRule { betas, eps, weight_decay, momentum_decay, decoupled_weight_decay, .. } =
            *self;
        NAdamRule {
            betas,
            eps,
            weight_decay,
            momentum_decay,
            decoupled_weight_decay,
            ..Default::default()
        }
    }
}

impl NAdamRule {
    /// The momentum factor of step `t`.
    fn mu(&self, t: f64) -> f64 {
        self.betas.0 * (1.0 - 0.5 * 0.96f64.powf(t * self.momentum_decay))
    }

    /// `mu_1 ... mu_step`, multiplied in step order as PyTorch's running product is.
    fn mu_product(&self, step: u64) -> f64 {
        let mut cache = self.products.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (beta1, decay, products) = &mut *cache;
        if (*beta1, *decay) != (self.betas.0, self.momentum_decay) {
            (*beta1, *decay) = (self.betas.0, self.momentum_decay);
            products.clear();
        }
        while (products.len() as u64) < step {
            let last = products.last().copied().unwrap_or(1.0);
            products.push(last * self.mu((products.len() + 1) as f64));
        }
        if step == 0 { 1.0 } else { products[step as usize - 1] }
    }
}

/// NAdam: PyTorch's `torch.optim.NAdam` (Adam with Nesterov momentum on a rising momentum
/// schedule; PyTorch's default learning rate is 2e-3).
///
/// ```
/// use tapegrad_nn::{NAdam, Optimizer};
/// use tapegrad_tape::Tensor;
/// let w = Tensor::ones(&[1]).requires_grad();
/// (&w * 2.0).backward();
/// let mut opt = NAdam::new(vec![w.clone()], 0.1);
/// opt.step(); // about lr against the gradient's sign on the first step
/// assert!((w.item() - 0.9).abs() < 0.01);
/// ```
pub type NAdam = Optim<NAdamRule>;

impl NAdam {
    /// NAdam with learning rate `lr`.
    ///
    /// ```
    /// use tapegrad_nn::{NAdam, Optimizer};
    /// assert_eq!(NAdam::new(vec![], 2e-3).param_groups()[0].lr, 2e-3);
    /// ```
    pub fn new(params: Vec<Tensor>, lr: f64) -> Self {
        Optim::with_rule(params, lr, NAdamRule::default())
    }
}

builder!(
    NAdam,
    NAdamRule {
        betas: (f64, f64) = (0.8, 0.99),
        eps: f64 = 1e-6,
        weight_decay: f64 = 1e-4,
        momentum_decay: f64 = 5e-3,
        decoupled_weight_decay: bool = true
    }
);

impl UpdateRule for NAdamRule {
    const NAME: &'static str = "NAdam";
    fn buffers(&self) -> &'static [&'static str] {
        &["exp_avg", "exp_avg_sq"]
    }
    fn settings(&self) -> Vec<(&'static str, String)> {
        let NAdamRule { betas, eps, weight_decay, momentum_decay, decoupled_weight_decay, .. } =
            self;
        vec![
            ("betas", format!("{betas:?}")),
            ("eps", format!("{eps:?}")),
            ("weight_decay", format!("{weight_decay:?}")),
            ("momentum_decay", format!("{momentum_decay:?}")),
            ("decoupled_weight_decay", format!("{decoupled_weight_decay:?}")),
        ]
    }
    #[inline(always)]
    fn update<T: Element>(&self, lr: f64, step: u64, p: &mut [T], g: &[T], state: &mut [&mut [T]]) {
        let b2 = self.betas.1;
        let [m, v] = state else { unreachable!("NAdam keeps two buffers") };
        let (m, v): (&mut [T], &mut [T]) = (m, v);
        let t = step as f64;
        let (mu, mu_next) = (self.mu(t), self.mu(t + 1.0));
        let product = self.mu_product(step);
        let product_next = product * mu_next;
        let grad_scale = c::<T>(-lr * (1.0 - mu) / (1.0 - product));
        let momentum_scale = c::<T>((-lr * mu_next) / (1.0 - product_next));
        let bias2 = c::<T>(1.0 - b2.powf(t));
        let moments =
            Moments::new(self.betas, (self.weight_decay, self.decoupled_weight_decay), lr);
        let eps = c::<T>(self.eps);
        moments.update(p, g, m, v, |w, d, mi, vi| {
            let denom = (vi / bias2).sqrt() + eps;
            *w += grad_scale * d / denom;
            *w += momentum_scale * mi / denom;
        });
    }
}

/// The moment updates RAdam and NAdam share with Adam: weight decay (decoupled: the weights
/// shrink by `1 - lr weight_decay` first; else `weight_decay` times the weights joins the
/// gradient), then `m` moves towards the gradient by `1 - beta1` and `v` towards its square
/// by `1 - beta2`.
struct Moments<T> {
    one_minus_b1: T,
    b2: T,
    weight_decay: T,
    /// `1 - lr weight_decay` when the decay is decoupled, else `None`.
    shrink: Option<T>,
    coupled: bool,
}

impl<T: Element> Moments<T> {
    fn new((b1, b2): (f64, f64), (weight_decay, decoupled): (f64, bool), lr: f64) -> Self {
        let decays = weight_decay != 0.0;
        Moments {
            one_minus_b1: c(1.0 - b1),
            b2: c(b2),
            weight_decay: c(weight_decay),
            shrink: (decays && decoupled).then(|| c(1.0 - lr * weight_decay)),
            coupled: decays && !decoupled,
        }
    }

    /// Updates `m` and `v` from `g` element by element, each followed by `step(w, d, m, v)`
    /// with the gradient `d` it used and the new moments.
    #[inline(always)]
    fn update(
        &self,
        p: &mut [T],
        g: &[T],
        m: &mut [T],
        v: &mut [T],
        mut step: impl FnMut(&mut T, T, T, T),
    ) {
        if let Some(shrink) = self.shrink {
            p.iter_mut().for_each(|w| *w = *w * shrink);
        }
        for (((w, &g0), mi), vi) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let d = if self.coupled { g0 + self.weight_decay * *w } else { g0 };
            *mi = lerp(*mi, d, self.one_minus_b1);
            *vi = *vi * self.b2 + (T::ONE - self.b2) * d * d;
            step(w, d, *mi, *vi);
        }
    }
}
