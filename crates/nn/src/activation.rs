//! Activation functions as layers (PyTorch's `nn.ReLU`, `nn.Hardswish`, ...): the stateless
//! ones declared with `stateless!`, and `PReLU`, whose slope is a parameter.

use tapegrad_ops::SoftplusOptions;
use tapegrad_ops::prelude::*;
use tapegrad_tape::Tensor;

use crate::Module;
use crate::module::Forward;
use crate::stateless::stateless;

stateless!(
    /// `max(x, 0)` as a module.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, Module, ReLU};
    /// assert_eq!(ReLU.forward(&tapegrad_tape::Tensor::full(&[1], -1.0)).item(), 0.0);
    /// ```
    ReLU,
    |_s, x| x.relu()
);
stateless!(
    /// `tanh` as a module.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, Module, Tanh};
    /// assert_eq!(Tanh.forward(&tapegrad_tape::Tensor::zeros(&[1])).item(), 0.0);
    /// ```
    Tanh,
    |_s, x| x.tanh()
);
stateless!(
    /// The logistic function as a module.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, Module, Sigmoid};
    /// assert_eq!(Sigmoid.forward(&tapegrad_tape::Tensor::zeros(&[1])).item(), 0.5);
    /// ```
    Sigmoid,
    |_s, x| x.sigmoid()
);
stateless!(
    /// Exact GELU as a module.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, GELU, Module};
    /// assert_eq!(GELU.forward(&tapegrad_tape::Tensor::zeros(&[1])).item(), 0.0);
    /// ```
    GELU,
    |_s, x| x.gelu()
);
stateless!(
    /// SiLU (swish) as a module.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, Module, SiLU};
    /// assert_eq!(SiLU.forward(&tapegrad_tape::Tensor::zeros(&[1])).item(), 0.0);
    /// ```
    SiLU,
    |_s, x| x.silu()
);
stateless!(
    /// Leaky ReLU: PyTorch's `nn.LeakyReLU` (`negative_slope`, default 0.01).
    ///
    /// ```
    /// use tapegrad_nn::{Forward, LeakyReLU};
    /// let y = LeakyReLU::new().negative_slope(0.5).forward(&tapegrad_tape::Tensor::full(&[1], -2.0));
    /// assert_eq!(y.item(), -1.0);
    /// ```
    LeakyReLU(negative_slope: f64),
    |s, x| x.leaky_relu_with(s.negative_slope)
);
impl Default for LeakyReLU {
    fn default() -> Self {
        LeakyReLU { negative_slope: 0.01 }
    }
}

impl LeakyReLU {
    /// PyTorch's default slope, 0.01.
    ///
    /// ```
    /// assert_eq!(tapegrad_nn::LeakyReLU::new().negative_slope, 0.01);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `negative_slope`.
    ///
    /// ```
    /// assert_eq!(tapegrad_nn::LeakyReLU::new().negative_slope(0.2).negative_slope, 0.2);
    /// ```
    pub fn negative_slope(mut self, negative_slope: f64) -> Self {
        self.negative_slope = negative_slope;
        self
    }
}

stateless!(
    /// ELU as a module: PyTorch's `nn.ELU` (`alpha`, default 1).
    ///
    /// ```
    /// use tapegrad_nn::{ELU, Forward};
    /// let y = ELU::new().alpha(2.0).forward(&tapegrad_tape::Tensor::full(&[1], -50.0));
    /// assert!((y.item() + 2.0).abs() < 1e-6);
    /// ```
    ELU(alpha: f64),
    |s, x| x.elu_with(s.alpha)
);

impl Default for ELU {
    fn default() -> Self {
        ELU { alpha: 1.0 }
    }
}

impl ELU {
    /// PyTorch's default `alpha`, 1.
    ///
    /// ```
    /// assert_eq!(tapegrad_nn::ELU::new().alpha, 1.0);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `alpha`.
    ///
    /// ```
    /// assert_eq!(tapegrad_nn::ELU::new().alpha(0.5).alpha, 0.5);
    /// ```
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
        self
    }
}

stateless!(
    /// CELU as a module: PyTorch's `nn.CELU` (`alpha`, default 1).
    ///
    /// ```
    /// use tapegrad_nn::{CELU, Forward};
    /// let y = CELU::new().alpha(2.0).forward(&tapegrad_tape::Tensor::full(&[1], -50.0));
    /// assert!((y.item() + 2.0).abs() < 1e-6);
    /// ```
    CELU(alpha: f64),
    |s, x| x.celu_with(s.alpha)
);

impl Default for CELU {
    fn default() -> Self {
        CELU { alpha: 1.0 }
    }
}

impl CELU {
    /// PyTorch's default `alpha`, 1.
    ///
    /// ```
    /// assert_eq!(tapegrad_nn::CELU::new().alpha, 1.0);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `alpha` (not 0).
    ///
    /// ```
    /// assert_eq!(tapegrad_nn::CELU::new().alpha(0.5).alpha, 0.5);
    /// ```
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
        self
    }
}

stateless!(
    /// SELU as a module: PyTorch's `nn.SELU`.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, SELU};
    /// assert_eq!(SELU.forward(&tapegrad_tape::Tensor::zeros(&[1])).item(), 0.0);
    /// ```
    SELU,
    |_s, x| x.selu()
);
stateless!(
    /// `min(max(x, 0), 6)` as a module: PyTorch's `nn.ReLU6`.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, ReLU6};
    /// assert_eq!(ReLU6.forward(&tapegrad_tape::Tensor::full(&[1], 9.0)).item(), 6.0);
    /// ```
    ReLU6,
    |_s, x| x.relu6()
);
stateless!(
    /// `x` clamped to `[min_val, max_val]` as a module: PyTorch's `nn.Hardtanh` (-1 and 1).
    ///
    /// ```
    /// use tapegrad_nn::{Forward, Hardtanh};
    /// let y = Hardtanh::new().forward(&tapegrad_tape::Tensor::full(&[1], -3.0));
    /// assert_eq!(y.item(), -1.0);
    /// ```
    Hardtanh(min_val: f64, max_val: f64),
    |s, x| x.hardtanh_with(s.min_val, s.max_val)
);

impl Default for Hardtanh {
    fn default() -> Self {
        Hardtanh { min_val: -1.0, max_val: 1.0 }
    }
}

impl Hardtanh {
    /// PyTorch's defaults, [-1, 1].
    ///
    /// ```
    /// let h = tapegrad_nn::Hardtanh::new();
    /// assert_eq!((h.min_val, h.max_val), (-1.0, 1.0));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `min_val` and `max_val`.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, Hardtanh};
    /// let y = Hardtanh::new().bounds(0.0, 2.0).forward(&tapegrad_tape::Tensor::full(&[1], 3.0));
    /// assert_eq!(y.item(), 2.0);
    /// ```
    pub fn bounds(mut self, min_val: f64, max_val: f64) -> Self {
        (self.min_val, self.max_val) = (min_val, max_val);
        self
    }
}

stateless!(
    /// The piecewise-linear logistic function as a module: PyTorch's `nn.Hardsigmoid`.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, Hardsigmoid};
    /// assert_eq!(Hardsigmoid.forward(&tapegrad_tape::Tensor::zeros(&[1])).item(), 0.5);
    /// ```
    Hardsigmoid,
    |_s, x| x.hardsigmoid()
);
stateless!(
    /// `x hardsigmoid(x)` as a module: PyTorch's `nn.Hardswish`.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, Hardswish};
    /// assert_eq!(Hardswish.forward(&tapegrad_tape::Tensor::full(&[1], 4.0)).item(), 4.0);
    /// ```
    Hardswish,
    |_s, x| x.hardswish()
);
stateless!(
    /// `x tanh(softplus(x))` as a module: PyTorch's `nn.Mish`.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, Mish};
    /// assert_eq!(Mish.forward(&tapegrad_tape::Tensor::zeros(&[1])).item(), 0.0);
    /// ```
    Mish,
    |_s, x| x.mish()
);
stateless!(
    /// Softplus as a module: PyTorch's `nn.Softplus` (`beta` 1, `threshold` 20).
    ///
    /// ```
    /// use tapegrad_nn::{Forward, Softplus};
    /// let y = Softplus::new().forward(&tapegrad_tape::Tensor::zeros(&[1]));
    /// assert!((y.item() - 2f64.ln()).abs() < 1e-6);
    /// ```
    #[derive(Default)]
    Softplus(options: SoftplusOptions),
    |s, x| x.softplus_with(s.options)
);

impl Softplus {
    /// PyTorch's defaults: `beta` 1, `threshold` 20.
    ///
    /// ```
    /// assert_eq!(tapegrad_nn::Softplus::new().options.beta, 1.0);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `beta`.
    ///
    /// ```
    /// assert_eq!(tapegrad_nn::Softplus::new().beta(2.0).options.beta, 2.0);
    /// ```
    pub fn beta(mut self, beta: f64) -> Self {
        self.options.beta = beta;
        self
    }

    /// Sets `threshold`.
    ///
    /// ```
    /// assert_eq!(tapegrad_nn::Softplus::new().threshold(5.0).options.threshold, 5.0);
    /// ```
    pub fn threshold(mut self, threshold: f64) -> Self {
        self.options.threshold = threshold;
        self
    }
}

stateless!(
    /// `ln sigmoid(x)` as a module: PyTorch's `nn.LogSigmoid`.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, LogSigmoid};
    /// let y = LogSigmoid.forward(&tapegrad_tape::Tensor::zeros(&[1]));
    /// assert!((y.item() + 2f64.ln()).abs() < 1e-6);
    /// ```
    LogSigmoid,
    |_s, x| x.logsigmoid()
);
stateless!(
    /// `x / (1 + |x|)` as a module: PyTorch's `nn.Softsign`.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, Softsign};
    /// assert_eq!(Softsign.forward(&tapegrad_tape::Tensor::full(&[1], 1.0)).item(), 0.5);
    /// ```
    Softsign,
    |_s, x| x.softsign()
);
stateless!(
    /// `x - tanh(x)` as a module: PyTorch's `nn.Tanhshrink`.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, Tanhshrink};
    /// assert_eq!(Tanhshrink.forward(&tapegrad_tape::Tensor::zeros(&[1])).item(), 0.0);
    /// ```
    Tanhshrink,
    |_s, x| x.tanhshrink()
);
stateless!(
    /// The gated linear unit along `dim` as a module: PyTorch's `nn.GLU` (`dim` -1).
    ///
    /// ```
    /// use tapegrad_nn::{Forward, GLU};
    /// let y = GLU::new().forward(&tapegrad_tape::Tensor::zeros(&[3, 8]));
    /// assert_eq!(y.shape(), &[3, 4]);
    /// ```
    GLU(dim: isize),
    |s, x| x.glu(s.dim)
);

impl Default for GLU {
    fn default() -> Self {
        GLU { dim: -1 }
    }
}

impl GLU {
    /// Halving the last dimension (PyTorch's default).
    ///
    /// ```
    /// assert_eq!(tapegrad_nn::GLU::new().dim, -1);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `dim`.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, GLU};
    /// let y = GLU::new().dim(1).forward(&tapegrad_tape::Tensor::zeros(&[3, 8, 5]));
    /// assert_eq!(y.shape(), &[3, 4, 5]);
    /// ```
    pub fn dim(mut self, dim: isize) -> Self {
        self.dim = dim;
        self
    }
}

stateless!(
    /// Softmax along `dim` as a module: PyTorch's `nn.Softmax(dim)`.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, Softmax};
    /// let y = Softmax { dim: 1 }.forward(&tapegrad_tape::Tensor::zeros(&[2, 4]));
    /// assert_eq!(y.to_vec::<f32>(), vec![0.25; 8]);
    /// ```
    Softmax(dim: isize),
    |s, x| x.softmax(s.dim)
);
stateless!(
    /// Log-softmax along `dim` as a module: PyTorch's `nn.LogSoftmax(dim)`.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, LogSoftmax};
    /// let y = LogSoftmax { dim: -1 }.forward(&tapegrad_tape::Tensor::zeros(&[1, 2]));
    /// assert!((y.to_vec::<f32>()[0] + 2f32.ln()).abs() < 1e-6);
    /// ```
    LogSoftmax(dim: isize),
    |s, x| x.log_softmax(s.dim)
);

/// `x > 0 ? x : w x` with a learned slope `w`, one for all channels or one per channel
/// (dimension 1): PyTorch's `nn.PReLU` (`num_parameters` 1, `init` 0.25).
///
/// ```
/// use tapegrad_nn::{Forward, Module, PReLU};
/// let prelu = PReLU::new().num_parameters(3);
/// let y = prelu.forward(&tapegrad_tape::Tensor::full(&[2, 3, 4], -4.0));
/// assert_eq!(y.to_vec::<f32>(), vec![-1.0; 24]);
/// assert_eq!(prelu.parameters().len(), 1);
/// ```
#[derive(Module)]
pub struct PReLU {
    /// The negative slopes, `[num_parameters]`.
    pub weight: Tensor,
}

impl Default for PReLU {
    fn default() -> Self {
        PReLU { weight: Tensor::full(&[1], 0.25).requires_grad() }
    }
}

impl PReLU {
    /// One slope shared by every channel, starting at 0.25.
    ///
    /// ```
    /// assert_eq!(tapegrad_nn::PReLU::new().weight.to_vec::<f32>(), vec![0.25]);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// One slope per channel, `n` of them, each at the current initial value.
    ///
    /// ```
    /// let p = tapegrad_nn::PReLU::new().num_parameters(4);
    /// assert_eq!(p.weight.to_vec::<f32>(), vec![0.25; 4]);
    /// ```
    pub fn num_parameters(self, n: usize) -> Self {
        let init = self.weight.to_vec::<f32>().first().copied().unwrap_or(0.25);
        PReLU { weight: Tensor::full(&[n], init as f64).requires_grad() }
    }

    /// Sets every slope to `init`.
    ///
    /// ```
    /// let p = tapegrad_nn::PReLU::new().num_parameters(2).init(0.1);
    /// assert_eq!(p.weight.to_vec::<f32>(), vec![0.1; 2]);
    /// ```
    pub fn init(self, init: f64) -> Self {
        PReLU { weight: Tensor::full(&[self.weight.numel()], init).requires_grad() }
    }
}

impl Forward for PReLU {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        x.prelu(&self.weight)
    }
}
