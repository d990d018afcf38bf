//! Layers, initialised the way PyTorch initialises them by default.

use tapegrad_ops::functional::{self as F, BatchNormStats};
use tapegrad_ops::prelude::*;
use tapegrad_ops::{
    BatchNormOptions, ConvOptions, GroupNormOptions, InstanceNormOptions, InterpolateMode,
    InterpolateOptions, IntoPair, LayerNormOptions, Padding, UnfoldOptions,
};
use tapegrad_tape::{DType, Tensor};

use crate::Module;
use crate::field::{ModuleField, TrainingFlag};
use crate::init;
use crate::module::{Forward, Layer, Slot};
use crate::stateless::stateless;

/// PyTorch's default bias: uniform in `±1/sqrt(fan_in)`.
fn default_bias(n: usize, fan_in: usize) -> Tensor {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    init::uniform(&[n], -bound, bound).requires_grad()
}

/// A convolution layer's parameters as PyTorch initialises them (Kaiming-uniform weight of
/// `shape`, bias from the weight's fan-in) and its options with `groups`.
fn conv_parameters(
    shape: &[usize],
    out_channels: usize,
    groups: usize,
) -> (Tensor, Option<Tensor>, ConvOptions) {
    let (fan_in, _) = init::fans(shape);
    (
        init::kaiming_uniform(shape, 5f64.sqrt()).requires_grad(),
        Some(default_bias(out_channels, fan_in)),
        ConvOptions::default().groups(groups),
    )
}

/// `y = x W^T + b`: PyTorch's `nn.Linear`.
///
/// ```
/// use tapegrad_nn::{Forward, Linear, Module};
/// use tapegrad_tape::Tensor;
/// let layer = Linear::new(4, 3);
/// assert_eq!(layer.weight.shape(), &[3, 4]);
/// assert_eq!(layer.forward(&Tensor::zeros(&[2, 4])).shape(), &[2, 3]);
/// ```
#[derive(Module)]
pub struct Linear {
    /// `out_features x in_features`.
    pub weight: Tensor,
    /// `out_features`, if the layer has a bias.
    pub bias: Option<Tensor>,
}

impl Linear {
    /// A layer with a bias.
    ///
    /// ```
    /// use tapegrad_nn::{Linear, Module};
    /// let layer = Linear::new(4, 3);
    /// assert_eq!(layer.bias.as_ref().unwrap().shape(), &[3]);
    /// assert_eq!(layer.parameters().len(), 2);
    /// // PyTorch's default initialisation: uniform in ±1/sqrt(in_features).
    /// assert!(layer.weight.to_vec::<f32>().iter().all(|w| w.abs() <= 0.5));
    /// ```
    pub fn new(in_features: usize, out_features: usize) -> Self {
        Linear {
            weight: init::kaiming_uniform(&[out_features, in_features], 5f64.sqrt())
                .requires_grad(),
            bias: Some(default_bias(out_features, in_features)),
        }
    }

    /// A layer without a bias.
    ///
    /// ```
    /// assert!(tapegrad_nn::Linear::no_bias(2, 2).bias.is_none());
    /// ```
    pub fn no_bias(in_features: usize, out_features: usize) -> Self {
        Linear { bias: None, ..Linear::new(in_features, out_features) }
    }
}

impl Forward for Linear {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        F::linear(x, &self.weight, self.bias.as_ref())
    }
}

/// `y = x1^T A x2 + b` for each output feature: PyTorch's `nn.Bilinear`, with its
/// initialisation (uniform in `±1/sqrt(in1_features)`). Two inputs, so it is called with
/// [`forward2`](Bilinear::forward2) rather than through [`Forward`].
///
/// ```
/// use tapegrad_nn::{Bilinear, Module};
/// use tapegrad_tape::Tensor;
/// let layer = Bilinear::new(3, 4, 5);
/// assert_eq!(layer.weight.shape(), &[5, 3, 4]);
/// let y = layer.forward2(&Tensor::randn(&[8, 3]), &Tensor::randn(&[8, 4]));
/// assert_eq!(y.shape(), &[8, 5]);
/// ```
#[derive(Module)]
pub struct Bilinear {
    /// `out_features x in1_features x in2_features`.
    pub weight: Tensor,
    /// `out_features`, if the layer has a bias.
    pub bias: Option<Tensor>,
}

impl Bilinear {
    /// A layer with a bias.
    ///
    /// ```
    /// use tapegrad_nn::{Bilinear, Module};
    /// let layer = Bilinear::new(4, 2, 3);
    /// assert!(layer.weight.to_vec::<f32>().iter().all(|w| w.abs() <= 0.5)); // 1/sqrt(4)
    /// assert_eq!(layer.parameters().len(), 2);
    /// ```
    pub fn new(in1_features: usize, in2_features: usize, out_features: usize) -> Self {
        let bound = 1.0 / (in1_features.max(1) as f64).sqrt();
        Bilinear {
            weight: init::uniform(&[out_features, in1_features, in2_features], -bound, bound)
                .requires_grad(),
            bias: Some(init::uniform(&[out_features], -bound, bound).requires_grad()),
        }
    }

    /// Without the bias.
    ///
    /// ```
    /// assert!(tapegrad_nn::Bilinear::new(2, 2, 2).no_bias().bias.is_none());
    /// ```
    pub fn no_bias(mut self) -> Self {
        self.bias = None;
        self
    }

    /// The layer on `x1` (`[.., in1_features]`) and `x2` (`[.., in2_features]`, the same
    /// leading dimensions).
    ///
    /// ```
    /// use tapegrad_nn::Bilinear;
    /// use tapegrad_ops::prelude::*;
    /// use tapegrad_tape::Tensor;
    /// let layer = Bilinear::new(2, 2, 1).no_bias();
    /// let (x1, x2) = (Tensor::randn(&[3, 2]), Tensor::randn(&[3, 2]));
    /// // One output: x1^T W x2 for each row.
    /// let w = layer.weight.reshape(&[2, 2]);
    /// let direct = (&x1.matmul(&w) * &x2).sum_dim(1, true);
    /// let diff = (&layer.forward2(&x1, &x2) - &direct).abs().max().item();
    /// assert!(diff < 1e-5);
    /// ```
    #[track_caller]
    pub fn forward2(&self, x1: &Tensor, x2: &Tensor) -> Tensor {
        self.try_forward2(x1, x2).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`forward2`](Self::forward2), returning an error for inputs of the wrong widths or
    /// leading dimensions.
    ///
    /// ```
    /// use tapegrad_nn::Bilinear;
    /// use tapegrad_tape::Tensor;
    /// let layer = Bilinear::new(2, 3, 1);
    /// assert!(layer.try_forward2(&Tensor::randn(&[4, 2]), &Tensor::randn(&[4, 2])).is_err());
    /// ```
    #[track_caller]
    pub fn try_forward2(&self, x1: &Tensor, x2: &Tensor) -> tapegrad_tape::Result<Tensor> {
        let (s1, s2, w) = (x1.shape(), x2.shape(), self.weight.shape());
        if s1.is_empty()
            || s2.is_empty()
            || s1[..s1.len() - 1] != s2[..s2.len() - 1]
            || s1[s1.len() - 1] != w[1]
            || s2[s2.len() - 1] != w[2]
        {
            return Err(tapegrad_tape::Error::Shape {
                op: "Bilinear",
                message: format!(
                    "expects inputs [.., {}] and [.., {}] with the same leading dimensions, got \
                    {s1:?} and {s2:?}",
                    w[1], w[2]
                ),
                location: std::panic::Location::caller(),
            });
        }
        let y = tapegrad_ops::try_einsum("...i,oij,...j->...o", &[x1, &self.weight, x2])?;
        match &self.bias {
            Some(b) => y.try_add(b),
            None => Ok(y),
        }
    }
}

/// A convolution layer type with its builder methods. The builders' examples run
/// `$name::new(2, 4, 3)` on zeros of shape `$input` and check the output shapes: `$plain`
/// as built, then with stride 2, padding 1 and dilation 2.
macro_rules! conv_layer {
    (
        $(#[$doc:meta])* $name:ident, $rank:literal,
        $input:expr => $plain:expr, stride $strided:expr, padding $padded:expr, dilation $dilated:expr
    ) => {
        $(#[$doc])*
        #[derive(Module)]
        pub struct $name {
            /// The kernel.
            pub weight: Tensor,
            /// One bias per output channel, if any.
            pub bias: Option<Tensor>,
            /// Stride, padding, dilation, groups (and output padding when transposed).
            #[module(skip)]
            pub options: ConvOptions,
        }

        impl $name {
            /// Stride of the windows.
            ///
            /// ```
            #[doc = concat!("use tapegrad_nn::{", stringify!($name), ", Forward, Module};")]
            /// use tapegrad_tape::Tensor;
            #[doc = concat!("let x = Tensor::zeros(&", stringify!($input), ");")]
            #[doc = concat!("let conv = ", stringify!($name), "::new(2, 4, 3);")]
            #[doc = concat!("assert_eq!(conv.forward(&x).shape(), &", stringify!($plain), ");")]
            #[doc = concat!("assert_eq!(conv.stride(2).forward(&x).shape(), &", stringify!($strided), ");")]
            /// ```
            pub fn stride(mut self, stride: impl IntoPair) -> Self {
                self.options.stride = stride.into_pair();
                self
            }
            /// Zero padding on every side (a size, a pair, or `Padding::Same`).
            ///
            /// ```
            #[doc = concat!("use tapegrad_nn::{", stringify!($name), ", Forward, Module};")]
            /// use tapegrad_tape::Tensor;
            #[doc = concat!("let x = Tensor::zeros(&", stringify!($input), ");")]
            #[doc = concat!("let conv = ", stringify!($name), "::new(2, 4, 3);")]
            #[doc = concat!("assert_eq!(conv.forward(&x).shape(), &", stringify!($plain), ");")]
            #[doc = concat!("assert_eq!(conv.padding(1).forward(&x).shape(), &", stringify!($padded), ");")]
            /// ```
            pub fn padding(mut self, padding: impl Into<Padding>) -> Self {
                self.options.padding = padding.into();
                self
            }
            /// Spacing between kernel taps.
            ///
            /// ```
            #[doc = concat!("use tapegrad_nn::{", stringify!($name), ", Forward, Module};")]
            /// use tapegrad_tape::Tensor;
            #[doc = concat!("let x = Tensor::zeros(&", stringify!($input), ");")]
            #[doc = concat!("let conv = ", stringify!($name), "::new(2, 4, 3);")]
            #[doc = concat!("assert_eq!(conv.forward(&x).shape(), &", stringify!($plain), ");")]
            #[doc = concat!("assert_eq!(conv.dilation(2).forward(&x).shape(), &", stringify!($dilated), ");")]
            /// ```
            pub fn dilation(mut self, dilation: impl IntoPair) -> Self {
                self.options.dilation = dilation.into_pair();
                self
            }
            /// Without a bias.
            ///
            /// ```
            #[doc = concat!("use tapegrad_nn::{", stringify!($name), ", Forward, Module};")]
            /// use tapegrad_tape::Tensor;
            #[doc = concat!("let conv = ", stringify!($name), "::new(2, 4, 3).no_bias();")]
            /// assert_eq!(conv.parameters().len(), 1); // the weight alone
            #[doc = concat!("let y = conv.forward(&Tensor::zeros(&", stringify!($input), "));")]
            /// assert!(y.to_vec::<f32>().iter().all(|v| *v == 0.0)); // zeros in, zeros out
            /// ```
            pub fn no_bias(mut self) -> Self {
                self.bias = None;
                self
            }
        }

        impl Forward for $name {
            #[track_caller]
            fn forward(&self, x: &Tensor) -> Tensor {
                self.apply(x)
            }
        }
    };
}

conv_layer!(
    /// 2-D convolution: PyTorch's `nn.Conv2d` (kernel `[out, in / groups, k, k]`).
    ///
    /// ```
    /// use tapegrad_nn::{Conv2d, Forward, Module};
    /// use tapegrad_tape::Tensor;
    /// let conv = Conv2d::new(1, 16, 5).padding(2);
    /// assert_eq!(conv.forward(&Tensor::zeros(&[2, 1, 28, 28])).shape(), &[2, 16, 28, 28]);
    /// ```
    Conv2d,
    2,
    [1, 2, 9, 9] => [1, 4, 7, 7], stride [1, 4, 4, 4], padding [1, 4, 9, 9], dilation [1, 4, 5, 5]
);

impl Conv2d {
    /// A square-kernel convolution with a bias, stride 1 and no padding.
    ///
    /// ```
    /// use tapegrad_nn::{Conv2d, Forward, Module};
    /// use tapegrad_tape::Tensor;
    /// let conv = Conv2d::new(3, 8, 5);
    /// assert_eq!(
    ///     (conv.weight.shape(), conv.bias.as_ref().unwrap().shape()),
    ///     (&[8, 3, 5, 5][..], &[8][..])
    /// );
    /// assert_eq!(conv.forward(&Tensor::zeros(&[2, 3, 28, 28])).shape(), &[2, 8, 24, 24]);
    /// ```
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize) -> Self {
        Self::with_groups(in_channels, out_channels, kernel, 1)
    }

    /// A grouped convolution (`groups` must divide both channel counts).
    ///
    /// ```
    /// use tapegrad_nn::{Conv2d, Forward, Module};
    /// use tapegrad_tape::Tensor;
    /// let depthwise = Conv2d::with_groups(4, 8, 3, 4); // each output sees one input channel
    /// assert_eq!(depthwise.weight.shape(), &[8, 1, 3, 3]);
    /// assert_eq!(depthwise.forward(&Tensor::zeros(&[1, 4, 5, 5])).shape(), &[1, 8, 3, 3]);
    /// ```
    pub fn with_groups(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        groups: usize,
    ) -> Self {
        let shape = [out_channels, in_channels / groups.max(1), kernel, kernel];
        let (weight, bias, options) = conv_parameters(&shape, out_channels, groups);
        Conv2d { weight, bias, options }
    }

    #[track_caller]
    fn apply(&self, x: &Tensor) -> Tensor {
        F::conv2d_with(x, &self.weight, self.bias.as_ref(), self.options)
    }
}

conv_layer!(
    /// 1-D convolution: PyTorch's `nn.Conv1d` (kernel `[out, in / groups, k]`).
    ///
    /// ```
    /// use tapegrad_nn::{Conv1d, Forward, Module};
    /// use tapegrad_tape::Tensor;
    /// assert_eq!(Conv1d::new(3, 8, 3).padding(1).forward(&Tensor::zeros(&[2, 3, 10])).shape(), &[2, 8, 10]);
    /// ```
    Conv1d,
    1,
    [1, 2, 9] => [1, 4, 7], stride [1, 4, 4], padding [1, 4, 9], dilation [1, 4, 5]
);

impl Conv1d {
    /// A convolution with a bias, stride 1 and no padding.
    ///
    /// ```
    /// use tapegrad_nn::{Conv1d, Forward, Module};
    /// use tapegrad_tape::Tensor;
    /// let conv = Conv1d::new(3, 8, 5);
    /// assert_eq!(conv.weight.shape(), &[8, 3, 5]);
    /// assert_eq!(conv.forward(&Tensor::zeros(&[2, 3, 20])).shape(), &[2, 8, 16]);
    /// ```
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize) -> Self {
        Self::with_groups(in_channels, out_channels, kernel, 1)
    }

    /// A grouped convolution (`groups` must divide both channel counts): with `groups`
    /// equal to the channels, the depthwise convolution of Conformer and TCN blocks.
    ///
    /// ```
    /// use tapegrad_nn::{Conv1d, Forward, Module};
    /// use tapegrad_tape::Tensor;
    /// let depthwise = Conv1d::with_groups(6, 6, 5, 6).padding(2);
    /// assert_eq!(depthwise.weight.shape(), &[6, 1, 5]);
    /// assert_eq!(depthwise.forward(&Tensor::zeros(&[2, 6, 40])).shape(), &[2, 6, 40]);
    /// ```
    pub fn with_groups(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        groups: usize,
    ) -> Self {
        let shape = [out_channels, in_channels / groups.max(1), kernel];
        let (weight, bias, options) = conv_parameters(&shape, out_channels, groups);
        Conv1d { weight, bias, options }
    }

    #[track_caller]
    fn apply(&self, x: &Tensor) -> Tensor {
        F::conv1d_with(x, &self.weight, self.bias.as_ref(), self.options)
    }
}

conv_layer!(
    /// Transposed 2-D convolution: PyTorch's `nn.ConvTranspose2d` (kernel
    /// `[in, out / groups, k, k]`), the upsampling layer of GAN generators.
    ///
    /// ```
    /// use tapegrad_nn::{ConvTranspose2d, Forward, Module};
    /// use tapegrad_tape::Tensor;
    /// let up = ConvTranspose2d::new(8, 4, 4).stride(2).padding(1);
    /// assert_eq!(up.forward(&Tensor::zeros(&[1, 8, 7, 7])).shape(), &[1, 4, 14, 14]);
    /// ```
    ConvTranspose2d,
    2,
    [1, 2, 9, 9] => [1, 4, 11, 11], stride [1, 4, 19, 19], padding [1, 4, 9, 9], dilation [1, 4, 13, 13]
);

impl ConvTranspose2d {
    /// A transposed convolution with a bias, stride 1 and no padding.
    ///
    /// ```
    /// use tapegrad_nn::{ConvTranspose2d, Forward, Module};
    /// use tapegrad_tape::Tensor;
    /// let up = ConvTranspose2d::new(8, 3, 5);
    /// assert_eq!(up.weight.shape(), &[8, 3, 5, 5]); // [in, out, k, k]
    /// assert_eq!(up.forward(&Tensor::zeros(&[1, 8, 10, 10])).shape(), &[1, 3, 14, 14]); // grows by k - 1
    /// ```
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize) -> Self {
        Self::with_groups(in_channels, out_channels, kernel, 1)
    }

    /// A grouped transposed convolution (`groups` must divide both channel counts).
    ///
    /// ```
    /// use tapegrad_nn::{ConvTranspose2d, Forward, Module};
    /// use tapegrad_tape::Tensor;
    /// let up = ConvTranspose2d::with_groups(8, 4, 2, 4).stride(2);
    /// assert_eq!(up.weight.shape(), &[8, 1, 2, 2]); // [in, out / groups, k, k]
    /// assert_eq!(up.forward(&Tensor::zeros(&[1, 8, 5, 5])).shape(), &[1, 4, 10, 10]);
    /// ```
    pub fn with_groups(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        groups: usize,
    ) -> Self {
        // PyTorch computes fan-in from dimension 1 here, as for any weight.
        let shape = [in_channels, out_channels / groups.max(1), kernel, kernel];
        let (weight, bias, options) = conv_parameters(&shape, out_channels, groups);
        ConvTranspose2d { weight, bias, options }
    }

    /// Extra size on one side of the output (PyTorch's `output_padding`), to pick among the
    /// input sizes a strided convolution maps to the same output.
    ///
    /// ```
    /// use tapegrad_nn::{ConvTranspose2d, Forward};
    /// use tapegrad_tape::Tensor;
    /// let up = ConvTranspose2d::new(8, 4, 3).stride(2).padding(1).output_padding(1);
    /// assert_eq!(up.forward(&Tensor::zeros(&[1, 8, 7, 7])).shape(), &[1, 4, 14, 14]);
    /// ```
    pub fn output_padding(mut self, output_padding: impl IntoPair) -> Self {
        self.options.output_padding = output_padding.into_pair();
        self
    }

    #[track_caller]
    fn apply(&self, x: &Tensor) -> Tensor {
        F::conv_transpose2d_with(x, &self.weight, self.bias.as_ref(), self.options)
    }
}

conv_layer!(
    /// Transposed 1-D convolution: PyTorch's `nn.ConvTranspose1d` (kernel
    /// `[in, out / groups, k]`), the upsampling layer of sequence and audio decoders.
    ///
    /// ```
    /// use tapegrad_nn::{ConvTranspose1d, Forward, Module};
    /// use tapegrad_tape::Tensor;
    /// let up = ConvTranspose1d::new(8, 4, 4).stride(2).padding(1);
    /// assert_eq!(up.forward(&Tensor::zeros(&[1, 8, 50])).shape(), &[1, 4, 100]);
    /// ```
    ConvTranspose1d,
    1,
    [1, 2, 9] => [1, 4, 11], stride [1, 4, 19], padding [1, 4, 9], dilation [1, 4, 13]
);

impl ConvTranspose1d {
    /// A transposed convolution with a bias, stride 1 and no padding.
    ///
    /// ```
    /// use tapegrad_nn::{ConvTranspose1d, Forward, Module};
    /// use tapegrad_tape::Tensor;
    /// let up = ConvTranspose1d::new(8, 3, 5);
    /// assert_eq!(up.weight.shape(), &[8, 3, 5]); // [in, out, k]
    /// assert_eq!(up.forward(&Tensor::zeros(&[2, 8, 10])).shape(), &[2, 3, 14]); // grows by k - 1
    /// ```
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize) -> Self {
        Self::with_groups(in_channels, out_channels, kernel, 1)
    }

    /// A grouped transposed convolution (`groups` must divide both channel counts).
    ///
    /// ```
    /// use tapegrad_nn::{ConvTranspose1d, Forward, Module};
    /// use tapegrad_tape::Tensor;
    /// let up = ConvTranspose1d::with_groups(6, 6, 4, 3).stride(2).padding(1);
    /// assert_eq!(up.weight.shape(), &[6, 2, 4]); // [in, out / groups, k]
    /// assert_eq!(up.forward(&Tensor::zeros(&[1, 6, 20])).shape(), &[1, 6, 40]);
    /// ```
    pub fn with_groups(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        groups: usize,
    ) -> Self {
        // As for ConvTranspose2d, PyTorch's fan-in is from dimension 1.
        let shape = [in_channels, out_channels / groups.max(1), kernel];
        let (weight, bias, options) = conv_parameters(&shape, out_channels, groups);
        ConvTranspose1d { weight, bias, options }
    }

    /// Extra size on one side of the output (PyTorch's `output_padding`).
    ///
    /// ```
    /// use tapegrad_nn::{ConvTranspose1d, Forward};
    /// use tapegrad_tape::Tensor;
    /// let up = ConvTranspose1d::new(8, 4, 3).stride(2).padding(1).output_padding(1);
    /// assert_eq!(up.forward(&Tensor::zeros(&[1, 8, 7])).shape(), &[1, 4, 14]);
    /// ```
    pub fn output_padding(mut self, output_padding: usize) -> Self {
        self.options.output_padding = (output_padding, output_padding);
        self
    }

    #[track_caller]
    fn apply(&self, x: &Tensor) -> Tensor {
        F::conv_transpose1d_with(x, &self.weight, self.bias.as_ref(), self.options)
    }
}

stateless!(
    /// Sub-pixel upsampling, `[*, C r², H, W]` to `[*, C, H r, W r]`: PyTorch's
    /// `nn.PixelShuffle(upscale_factor)`.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, PixelShuffle};
    /// let y = PixelShuffle { upscale_factor: 3 }.forward(&tapegrad_tape::Tensor::zeros(&[1, 18, 4, 4]));
    /// assert_eq!(y.shape(), &[1, 2, 12, 12]);
    /// ```
    PixelShuffle(upscale_factor: usize),
    |s, x| F::pixel_shuffle(x, s.upscale_factor)
);
stateless!(
    /// The inverse of [`PixelShuffle`], `[*, C, H r, W r]` to `[*, C r², H, W]`: PyTorch's
    /// `nn.PixelUnshuffle(downscale_factor)`.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, PixelUnshuffle};
    /// let y = PixelUnshuffle { downscale_factor: 2 }.forward(&tapegrad_tape::Tensor::zeros(&[1, 3, 8, 8]));
    /// assert_eq!(y.shape(), &[1, 12, 4, 4]);
    /// ```
    PixelUnshuffle(downscale_factor: usize),
    |s, x| F::pixel_unshuffle(x, s.downscale_factor)
);
stateless!(
    /// The input unchanged (PyTorch's `nn.Identity`): a placeholder where a model takes a
    /// layer, such as a residual block's shortcut.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, Identity};
    /// let x = tapegrad_tape::Tensor::randn(&[2, 3]);
    /// assert_eq!(Identity.forward(&x).to_vec::<f32>(), x.to_vec::<f32>());
    /// ```
    Identity,
    |_s, x| x.clone()
);
stateless!(
    /// Resizing as a layer (PyTorch's `nn.Upsample`): [`F::interpolate_with`] with the
    /// layer's options. Build it with [`Upsample::scale_factor`] or [`Upsample::size`].
    ///
    /// ```
    /// use tapegrad_nn::{Forward, Upsample};
    /// use tapegrad_ops::InterpolateMode;
    /// let up = Upsample::scale_factor(2.0).mode(InterpolateMode::Bilinear);
    /// assert_eq!(up.forward(&tapegrad_tape::Tensor::zeros(&[1, 3, 4, 5])).shape(), &[1, 3, 8, 10]);
    /// ```
    Upsample(options: InterpolateOptions),
    |s, x| F::interpolate_with(x, s.options.clone())
);

stateless!(
    /// Every block of a kernel as a column, `[N, C, H, W]` to `[N, C kh kw, L]`: PyTorch's
    /// `nn.Unfold(kernel_size, dilation, padding, stride)` ([`F::unfold_with`]).
    ///
    /// ```
    /// use tapegrad_nn::{Forward, Unfold};
    /// let patches = Unfold::new(4).stride(4); // 4 x 4 patches, as a vision transformer cuts
    /// let y = patches.forward(&tapegrad_tape::Tensor::zeros(&[2, 3, 32, 32]));
    /// assert_eq!(y.shape(), &[2, 48, 64]);
    /// ```
    Unfold(kernel_size: (usize, usize), options: UnfoldOptions),
    |s, x| F::unfold_with(x, s.kernel_size, s.options)
);

stateless!(
    /// Columns summed back into an image, `[N, C kh kw, L]` to `[N, C, H, W]`: PyTorch's
    /// `nn.Fold(output_size, kernel_size, dilation, padding, stride)` ([`F::fold_with`]).
    ///
    /// ```
    /// use tapegrad_nn::{Fold, Forward, Unfold};
    /// let x = tapegrad_tape::Tensor::randn(&[1, 2, 8, 8]);
    /// let cols = Unfold::new(2).stride(2).forward(&x);
    /// let back = Fold::new(8, 2).stride(2).forward(&cols); // non-overlapping: x again
    /// assert_eq!(back.to_vec::<f32>(), x.to_vec::<f32>());
    /// ```
    Fold(output_size: (usize, usize), kernel_size: (usize, usize), options: UnfoldOptions),
    |s, x| F::fold_with(x, s.output_size, s.kernel_size, s.options)
);

/// The builder methods `Unfold` and `Fold` share, one per keyword of `UnfoldOptions`.
macro_rules! block_keywords {
    ($name:ident, $made:expr) => {
        impl $name {
            /// Sets `dilation` (one value or a pair).
            ///
            /// ```
            #[doc = concat!("use tapegrad_nn::", stringify!($name), ";")]
            #[doc = concat!("assert_eq!(", stringify!($made), ".dilation(2).options.dilation, (2, 2));")]
            /// ```
            pub fn dilation(mut self, dilation: impl IntoPair) -> Self {
                self.options.dilation = dilation.into_pair();
                self
            }

            /// Sets `padding` (one value or a pair).
            ///
            /// ```
            #[doc = concat!("use tapegrad_nn::", stringify!($name), ";")]
            #[doc = concat!("assert_eq!(", stringify!($made), ".padding((1, 0)).options.padding, (1, 0));")]
            /// ```
            pub fn padding(mut self, padding: impl IntoPair) -> Self {
                self.options.padding = padding.into_pair();
                self
            }

            /// Sets `stride` (one value or a pair).
            ///
            /// ```
            #[doc = concat!("use tapegrad_nn::", stringify!($name), ";")]
            #[doc = concat!("assert_eq!(", stringify!($made), ".stride(3).options.stride, (3, 3));")]
            /// ```
            pub fn stride(mut self, stride: impl IntoPair) -> Self {
                self.options.stride = stride.into_pair();
                self
            }
        }
    };
}

block_keywords!(Unfold, Unfold::new(2));
block_keywords!(Fold, Fold::new(6, 2));

impl Unfold {
    /// Blocks of `kernel_size` (one value or a pair), with dilation 1, no padding, stride 1.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, Unfold};
    /// let y = Unfold::new((2, 3)).forward(&tapegrad_tape::Tensor::zeros(&[1, 1, 4, 5]));
    /// assert_eq!(y.shape(), &[1, 6, 9]); // 3 x 3 blocks of 6 taps
    /// ```
    pub fn new(kernel_size: impl IntoPair) -> Self {
        Unfold { kernel_size: kernel_size.into_pair(), options: UnfoldOptions::default() }
    }
}

impl Fold {
    /// Columns of blocks of `kernel_size` summed into an image of `output_size` (each one
    /// value or a pair), with dilation 1, no padding, stride 1.
    ///
    /// ```
    /// use tapegrad_nn::{Fold, Forward};
    /// let y = Fold::new((3, 4), 2).forward(&tapegrad_tape::Tensor::ones(&[1, 8, 6]));
    /// assert_eq!(y.shape(), &[1, 2, 3, 4]);
    /// assert_eq!(y.to_vec::<f32>()[..4], [1.0, 2.0, 2.0, 1.0]); // blocks overlap in the middle
    /// ```
    pub fn new(output_size: impl IntoPair, kernel_size: impl IntoPair) -> Self {
        Fold {
            output_size: output_size.into_pair(),
            kernel_size: kernel_size.into_pair(),
            options: UnfoldOptions::default(),
        }
    }
}

impl Upsample {
    /// Resizes every spatial dimension by `factor` (nearest by default).
    ///
    /// ```
    /// use tapegrad_nn::{Forward, Upsample};
    /// let y = Upsample::scale_factor(3.0).forward(&tapegrad_tape::Tensor::ones(&[1, 1, 2]));
    /// assert_eq!(y.to_vec::<f32>(), vec![1.0; 6]);
    /// ```
    pub fn scale_factor(factor: f64) -> Self {
        Upsample { options: InterpolateOptions::scale_factor(factor) }
    }

    /// Resizes to `size` (one value for every spatial dimension, or one each).
    ///
    /// ```
    /// use tapegrad_nn::{Forward, Upsample};
    /// let y = Upsample::size(&[3, 4]).forward(&tapegrad_tape::Tensor::ones(&[2, 1, 2, 2]));
    /// assert_eq!(y.shape(), &[2, 1, 3, 4]);
    /// ```
    pub fn size(size: &[usize]) -> Self {
        Upsample { options: InterpolateOptions::size(size) }
    }

    /// Sets `mode`.
    ///
    /// ```
    /// use tapegrad_nn::Upsample;
    /// use tapegrad_ops::InterpolateMode;
    /// let up = Upsample::scale_factor(2.0).mode(InterpolateMode::Bilinear);
    /// assert_eq!(up.options.mode, InterpolateMode::Bilinear);
    /// ```
    pub fn mode(mut self, mode: InterpolateMode) -> Self {
        self.options.mode = mode;
        self
    }

    /// Sets `align_corners` (linear modes only).
    ///
    /// ```
    /// use tapegrad_nn::{Forward, Upsample};
    /// use tapegrad_ops::InterpolateMode;
    /// let up = Upsample::size(&[3]).mode(InterpolateMode::Linear).align_corners(true);
    /// let x = tapegrad_tape::Tensor::from_vec(vec![0.0f32, 2.0], &[1, 1, 2]);
    /// assert_eq!(up.forward(&x).to_vec::<f32>(), vec![0.0, 1.0, 2.0]);
    /// ```
    pub fn align_corners(mut self, align_corners: bool) -> Self {
        self.options.align_corners = Some(align_corners);
        self
    }
}

stateless!(
    /// Flattens dimensions `start..=end` (PyTorch's default: 1 to -1).
    ///
    /// ```
    /// use tapegrad_nn::{Flatten, Forward, Module};
    /// let y = Flatten::default().forward(&tapegrad_tape::Tensor::zeros(&[2, 3, 4]));
    /// assert_eq!(y.shape(), &[2, 12]);
    /// ```
    Flatten(start: isize, end: isize),
    |s, x| x.flatten(s.start, s.end)
);

stateless!(
    /// Splits dimension `dim` into `sizes` (one may be -1, inferred): PyTorch's
    /// `nn.Unflatten`, the inverse of [`Flatten`].
    ///
    /// ```
    /// use tapegrad_nn::{Forward, Unflatten};
    /// let y = Unflatten::new(1, &[4, -1]).forward(&tapegrad_tape::Tensor::zeros(&[2, 12]));
    /// assert_eq!(y.shape(), &[2, 4, 3]);
    /// ```
    Unflatten(dim: isize, sizes: Vec<isize>),
    |s, x| {
        let d = if s.dim < 0 { s.dim + x.dim() as isize } else { s.dim };
        assert!(
            (0..x.dim() as isize).contains(&d),
            "Unflatten: dimension {} is out of range for a tensor of shape {:?}",
            s.dim,
            x.shape()
        );
        let d = d as usize;
        let shape: Vec<isize> = x.shape()[..d]
            .iter()
            .map(|&n| n as isize)
            .chain(s.sizes.iter().copied())
            .chain(x.shape()[d + 1..].iter().map(|&n| n as isize))
            .collect();
        x.reshape(&shape)
    }
);

impl Unflatten {
    /// Splitting dimension `dim` into `sizes`.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, Unflatten};
    /// let y = Unflatten::new(-1, &[2, 2]).forward(&tapegrad_tape::Tensor::zeros(&[3, 4]));
    /// assert_eq!(y.shape(), &[3, 2, 2]);
    /// ```
    pub fn new(dim: isize, sizes: &[isize]) -> Self {
        Unflatten { dim, sizes: sizes.to_vec() }
    }
}

impl Default for Flatten {
    fn default() -> Self {
        Flatten { start: 1, end: -1 }
    }
}

impl Flatten {
    /// Flattening from dimension 1 to the last (PyTorch's defaults).
    ///
    /// ```
    /// use tapegrad_nn::Flatten;
    /// let f = Flatten::new();
    /// assert_eq!((f.start, f.end), (1, -1));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `start_dim`.
    ///
    /// ```
    /// use tapegrad_nn::{Flatten, Forward};
    /// let y = Flatten::new().start_dim(0).forward(&tapegrad_tape::Tensor::zeros(&[2, 3]));
    /// assert_eq!(y.shape(), &[6]);
    /// ```
    pub fn start_dim(mut self, start: isize) -> Self {
        self.start = start;
        self
    }

    /// Sets `end_dim`.
    ///
    /// ```
    /// use tapegrad_nn::{Flatten, Forward};
    /// let y = Flatten::new().end_dim(2).forward(&tapegrad_tape::Tensor::zeros(&[2, 3, 4, 5]));
    /// assert_eq!(y.shape(), &[2, 12, 5]);
    /// ```
    pub fn end_dim(mut self, end: isize) -> Self {
        self.end = end;
        self
    }
}

/// Inverted dropout with probability `p`, active only in training mode.
///
/// ```
/// use tapegrad_nn::{Dropout, Forward, Module};
/// use tapegrad_tape::Tensor;
/// let d = Dropout::new(0.5);
/// d.eval();
/// assert_eq!(d.forward(&Tensor::ones(&[4])).to_vec::<f32>(), vec![1.0; 4]);
/// ```
#[derive(Module)]
pub struct Dropout {
    /// Probability of zeroing an element.
    pub p: f64,
    training: TrainingFlag,
}

impl Dropout {
    /// Dropout with probability `p`, starting in training mode.
    ///
    /// ```
    /// use tapegrad_nn::{Dropout, Forward, Module};
    /// use tapegrad_tape::Tensor;
    /// let d = Dropout::new(0.5);
    /// let y = d.forward(&Tensor::ones(&[100])).to_vec::<f32>();
    /// // Training: each element is zeroed or scaled by 1 / (1 - p).
    /// assert!(y.iter().all(|v| *v == 0.0 || *v == 2.0));
    /// ```
    pub fn new(p: f64) -> Self {
        Dropout { p, training: TrainingFlag::default() }
    }
}

impl Forward for Dropout {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        F::dropout_with(x, F::DropoutOptions { p: self.p, training: self.training.get() })
    }
}

/// Batch normalisation over channels (dimension 1) with running statistics: PyTorch's
/// `nn.BatchNorm1d` and `nn.BatchNorm2d` (one type serves both).
///
/// ```
/// use tapegrad_nn::{BatchNorm2d, Forward, Module};
/// use tapegrad_tape::Tensor;
/// let bn = BatchNorm2d::new(3);
/// let y = bn.forward(&Tensor::randn(&[4, 3, 5, 5]));
/// assert_eq!(y.shape(), &[4, 3, 5, 5]);
/// let names: Vec<_> = bn.state_dict().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]);
/// ```
#[derive(Module)]
pub struct BatchNorm2d {
    /// Scale per channel (starts at 1).
    pub weight: Tensor,
    /// Shift per channel (starts at 0).
    pub bias: Tensor,
    /// Running mean per channel (starts at 0).
    #[module(buffer)]
    pub running_mean: Tensor,
    /// Running unbiased variance per channel (starts at 1).
    #[module(buffer)]
    pub running_var: Tensor,
    /// Batches seen in training (saved as PyTorch does).
    #[module(buffer)]
    pub num_batches_tracked: Tensor,
    /// Weight of the newest batch in the running statistics.
    pub momentum: f64,
    /// Added to the variance.
    pub eps: f64,
    training: TrainingFlag,
}

/// Batch normalisation of `[N, C]` or `[N, C, L]` inputs (the same layer as
/// [`BatchNorm2d`]).
///
/// ```
/// use tapegrad_nn::{BatchNorm1d, Forward, Module};
/// use tapegrad_tape::Tensor;
/// let bn = BatchNorm1d::new(2);
/// let x = Tensor::from_vec(vec![1.0f32, 10.0, 3.0, 30.0], &[2, 2]); // [N, C]
/// // In training each channel is normalised over the batch: -1 and 1 (up to eps).
/// let y = bn.forward(&x).to_vec::<f32>();
/// assert!(y.iter().zip([-1.0, -1.0, 1.0, 1.0]).all(|(a, b)| (a - b).abs() < 1e-4));
/// ```
pub type BatchNorm1d = BatchNorm2d;

impl BatchNorm2d {
    /// Batch norm over `channels` with PyTorch's defaults (momentum 0.1, eps 1e-5).
    ///
    /// ```
    /// use tapegrad_nn::{BatchNorm2d, Forward, Module};
    /// use tapegrad_tape::Tensor;
    /// let bn = BatchNorm2d::new(1);
    /// bn.forward(&Tensor::full(&[2, 1, 2, 2], 5.0)); // a training batch of mean 5
    /// // The running mean moves from 0 toward 5 by momentum 0.1.
    /// assert_eq!(bn.running_mean.to_vec::<f32>(), vec![0.5]);
    /// assert_eq!(bn.num_batches_tracked.to_vec::<i64>(), vec![1]);
    /// ```
    pub fn new(channels: usize) -> Self {
        BatchNorm2d {
            weight: Tensor::ones(&[channels]).requires_grad(),
            bias: Tensor::zeros(&[channels]).requires_grad(),
            running_mean: Tensor::zeros_dtype(&[channels], DType::F32),
            running_var: Tensor::ones_dtype(&[channels], DType::F32),
            num_batches_tracked: Tensor::from_vec(vec![0i64], &[]),
            momentum: 0.1,
            eps: 1e-5,
            training: TrainingFlag::default(),
        }
    }
}

impl BatchNorm2d {
    /// Whether the layer normalises with batch statistics (training) or the running ones.
    ///
    /// ```
    /// use tapegrad_nn::{BatchNorm2d, Module};
    /// let bn = BatchNorm2d::new(2);
    /// assert!(bn.is_training());
    /// bn.eval();
    /// assert!(!bn.is_training());
    /// ```
    pub fn is_training(&self) -> bool {
        self.training.get()
    }
}

impl Forward for BatchNorm2d {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        let training = self.training.get();
        if training {
            let n = self.num_batches_tracked.to_vec::<i64>()[0];
            self.num_batches_tracked.set_data(&Tensor::from_vec(vec![n + 1], &[]));
        }
        // The statistics share storage with the fields, so their update lands in the layer.
        let stats = BatchNormStats {
            running_mean: self.running_mean.clone(),
            running_var: self.running_var.clone(),
        };
        let options = BatchNormOptions::default()
            .weight(&self.weight)
            .bias(&self.bias)
            .training(training)
            .momentum(self.momentum)
            .eps(self.eps);
        F::batch_norm_with(x, Some(&stats), options)
    }
}

/// Layer normalisation over the trailing `shape`, with an elementwise affine: PyTorch's
/// `nn.LayerNorm`.
///
/// ```
/// use tapegrad_nn::{Forward, LayerNorm, Module};
/// use tapegrad_tape::Tensor;
/// assert_eq!(LayerNorm::new(&[8]).forward(&Tensor::randn(&[2, 8])).shape(), &[2, 8]);
/// ```
#[derive(Module)]
pub struct LayerNorm {
    /// Scale (starts at 1).
    pub weight: Tensor,
    /// Shift (starts at 0).
    pub bias: Tensor,
    /// The normalised trailing shape.
    pub shape: Vec<usize>,
    /// Added to the variance.
    pub eps: f64,
}

impl LayerNorm {
    /// Layer norm over `shape` with eps 1e-5.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, LayerNorm, Module};
    /// use tapegrad_tape::Tensor;
    /// let ln = LayerNorm::new(&[4]);
    /// let y = ln.forward(&Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[1, 4])).to_vec::<f32>();
    /// // Weight 1 and bias 0 at the start: each row gets mean 0 and variance 1.
    /// assert!(y.iter().sum::<f32>().abs() < 1e-5);
    /// assert!((y.iter().map(|v| v * v).sum::<f32>() / 4.0 - 1.0).abs() < 1e-4);
    /// ```
    pub fn new(shape: &[usize]) -> Self {
        LayerNorm {
            weight: Tensor::ones(shape).requires_grad(),
            bias: Tensor::zeros(shape).requires_grad(),
            shape: shape.to_vec(),
            eps: 1e-5,
        }
    }
}

impl Forward for LayerNorm {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        let options =
            LayerNormOptions::default().weight(&self.weight).bias(&self.bias).eps(self.eps);
        F::layer_norm_with(x, &self.shape, options)
    }
}

/// Group normalisation of `[N, C, ...]` over `num_groups` groups of channels, with a
/// per-channel affine: PyTorch's `nn.GroupNorm`.
///
/// ```
/// use tapegrad_nn::{Forward, GroupNorm, Module};
/// use tapegrad_tape::Tensor;
/// let gn = GroupNorm::new(2, 8);
/// assert_eq!(gn.forward(&Tensor::randn(&[4, 8, 5, 5])).shape(), &[4, 8, 5, 5]);
/// assert_eq!(gn.parameters().len(), 2);
/// ```
#[derive(Module)]
pub struct GroupNorm {
    /// Per-channel scale (starts at 1).
    pub weight: Tensor,
    /// Per-channel shift (starts at 0).
    pub bias: Tensor,
    /// Groups the channels are split into.
    pub num_groups: usize,
    /// Added to the variance.
    pub eps: f64,
}

impl GroupNorm {
    /// Group norm of `num_channels` channels in `num_groups` groups, eps 1e-5.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, GroupNorm, Module};
    /// use tapegrad_tape::Tensor;
    /// let gn = GroupNorm::new(1, 2);
    /// let y = gn.forward(&Tensor::from_vec(vec![1.0f32, 3.0, 5.0, 7.0], &[1, 2, 2]));
    /// // One group: the sample's four values standardised together.
    /// let y = y.to_vec::<f32>();
    /// assert!(y.iter().sum::<f32>().abs() < 1e-5 && y[0] < y[1] && y[1] < y[2]);
    /// ```
    ///
    /// # Panics
    /// If `num_channels` does not split into `num_groups` groups.
    pub fn new(num_groups: usize, num_channels: usize) -> Self {
        assert!(
            num_groups > 0 && num_channels.is_multiple_of(num_groups),
            "GroupNorm: {num_channels} channels do not split into {num_groups} groups"
        );
        GroupNorm {
            weight: Tensor::ones(&[num_channels]).requires_grad(),
            bias: Tensor::zeros(&[num_channels]).requires_grad(),
            num_groups,
            eps: 1e-5,
        }
    }
}

impl Forward for GroupNorm {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        let options =
            GroupNormOptions::default().weight(&self.weight).bias(&self.bias).eps(self.eps);
        F::group_norm_with(x, self.num_groups, options)
    }
}

/// An instance norm layer type: `$spatial` dimensions after the channels, batched
/// (`[N, C, ...]`) or not (`[C, ...]`).
macro_rules! instance_norm_layer {
    ($(#[$doc:meta])* $name:ident, $spatial:literal, $input:expr) => {
        $(#[$doc])*
        #[derive(Module)]
        pub struct $name {
            /// Per-channel scale (starts at 1), with `affine`.
            pub weight: Option<Tensor>,
            /// Per-channel shift (starts at 0), with `affine`.
            pub bias: Option<Tensor>,
            /// The number of channels (checked against the input's with `affine`, as PyTorch
            /// does).
            pub num_features: usize,
            /// Added to the variance.
            pub eps: f64,
        }

        impl $name {
            /// Instance norm of `num_features` channels, without affine parameters, eps 1e-5.
            ///
            /// ```
            #[doc = concat!("use tapegrad_nn::{", stringify!($name), ", Forward};")]
            /// use tapegrad_ops::prelude::*;
            /// use tapegrad_tape::Tensor;
            #[doc = concat!("let norm = ", stringify!($name), "::new(2);")]
            #[doc = concat!("let x = Tensor::randn(&", stringify!($input), ");")]
            /// assert_eq!(norm.forward(&x).shape(), x.shape());
            /// // Unbatched: the same as a batch of one.
            /// let one = x.select(0, 0);
            /// assert_eq!(norm.forward(&one).to_vec::<f32>(), norm.forward(&x).select(0, 0).to_vec::<f32>());
            /// ```
            pub fn new(num_features: usize) -> Self {
                $name { weight: None, bias: None, num_features, eps: 1e-5 }
            }

            /// With a learnable per-channel weight (ones) and bias (zeros): PyTorch's
            /// `affine=True`.
            ///
            /// ```
            #[doc = concat!("use tapegrad_nn::{", stringify!($name), ", Module};")]
            #[doc = concat!("let norm = ", stringify!($name), "::new(3).affine(true);")]
            /// let names: Vec<_> = norm.state_dict().into_iter().map(|(n, _)| n).collect();
            /// assert_eq!(names, ["weight", "bias"]);
            /// ```
            pub fn affine(mut self, affine: bool) -> Self {
                let c = self.num_features;
                (self.weight, self.bias) = if affine {
                    let weight = Tensor::ones(&[c]).requires_grad();
                    (Some(weight), Some(Tensor::zeros(&[c]).requires_grad()))
                } else {
                    (None, None)
                };
                self
            }

            /// Sets eps (PyTorch's `eps`).
            ///
            /// ```
            #[doc = concat!("assert_eq!(tapegrad_nn::", stringify!($name), "::new(2).eps(1e-3).eps, 1e-3);")]
            /// ```
            pub fn eps(mut self, eps: f64) -> Self {
                self.eps = eps;
                self
            }
        }

        impl Forward for $name {
            #[track_caller]
            fn forward(&self, x: &Tensor) -> Tensor {
                let batched = x.dim() == $spatial + 2;
                if !batched && x.dim() != $spatial + 1 {
                    panic!(
                        "{}: expects a {}-D or {}-D input, got shape {:?}",
                        stringify!($name),
                        $spatial + 2,
                        $spatial + 1,
                        x.shape()
                    );
                }
                let x = if batched { x.clone() } else { x.unsqueeze(0) };
                if self.weight.is_some() && x.shape()[1] != self.num_features {
                    panic!(
                        "{}: expects {} channels, got input of shape {:?}",
                        stringify!($name),
                        self.num_features,
                        x.shape()
                    );
                }
                let mut options = InstanceNormOptions::default().eps(self.eps);
                options.weight = self.weight.clone();
                options.bias = self.bias.clone();
                let y = F::instance_norm_with(&x, options);
                if batched { y } else { y.squeeze_dim(0) }
            }
        }
    };
}

instance_norm_layer!(
    /// Instance normalisation of images, `[N, C, H, W]` or unbatched `[C, H, W]`: each
    /// channel of each sample standardised over its positions, with a per-channel affine
    /// if [`affine`](Self::affine): PyTorch's `nn.InstanceNorm2d` with its defaults (no
    /// affine, eps 1e-5). PyTorch's `track_running_stats` is not offered: training and
    /// evaluation both use the input's own statistics, PyTorch's default.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, InstanceNorm2d, Module};
    /// use tapegrad_tape::Tensor;
    /// let norm = InstanceNorm2d::new(3);
    /// assert_eq!(norm.forward(&Tensor::randn(&[2, 3, 5, 5])).shape(), &[2, 3, 5, 5]);
    /// assert!(norm.parameters().is_empty());
    /// ```
    InstanceNorm2d,
    2,
    [4, 2, 3, 3]
);

instance_norm_layer!(
    /// Instance normalisation of sequences, `[N, C, L]` or unbatched `[C, L]`: PyTorch's
    /// `nn.InstanceNorm1d`, as [`InstanceNorm2d`] is for images.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, InstanceNorm1d};
    /// use tapegrad_tape::Tensor;
    /// assert_eq!(InstanceNorm1d::new(4).forward(&Tensor::randn(&[2, 4, 7])).shape(), &[2, 4, 7]);
    /// ```
    InstanceNorm1d,
    1,
    [4, 2, 5]
);

/// A lookup table of `num_embeddings` vectors (int64 indices in, vectors out), initialised
/// N(0, 1): PyTorch's `nn.Embedding`.
///
/// ```
/// use tapegrad_nn::{Embedding, Forward, Module};
/// use tapegrad_tape::Tensor;
/// let e = Embedding::new(10, 3);
/// assert_eq!(e.forward(&Tensor::from_vec(vec![1i64, 9], &[2])).shape(), &[2, 3]);
/// ```
#[derive(Module)]
pub struct Embedding {
    /// `num_embeddings x dim`.
    pub weight: Tensor,
}

impl Embedding {
    /// A table of `num_embeddings` vectors of size `dim`.
    ///
    /// ```
    /// use tapegrad_nn::{Embedding, Forward, Module};
    /// use tapegrad_tape::Tensor;
    /// let e = Embedding::new(10, 3);
    /// assert_eq!(e.weight.shape(), &[10, 3]);
    /// let row = e.forward(&Tensor::from_vec(vec![2i64], &[1])); // row 2 of the table
    /// assert_eq!(row.to_vec::<f32>(), &e.weight.to_vec::<f32>()[6..9]);
    /// ```
    pub fn new(num_embeddings: usize, dim: usize) -> Self {
        Embedding { weight: init::normal(&[num_embeddings, dim], 0.0, 1.0).requires_grad() }
    }
}

impl Forward for Embedding {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        F::embedding(x, &self.weight)
    }
}

/// Modules applied in order, named `0`, `1`, ... as in PyTorch's `nn.Sequential`.
///
/// ```
/// use tapegrad_nn::{Linear, Module, ReLU, Sequential};
/// let mlp = Sequential::new().add(Linear::new(784, 128)).add(ReLU).add(Linear::new(128, 10));
/// assert_eq!(mlp.len(), 3);
/// ```
#[derive(Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Layer>>,
}

impl Sequential {
    /// An empty sequence, which passes its input through unchanged.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, Module, Sequential};
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f32, -2.0], &[2]);
    /// assert_eq!(Sequential::new().forward(&x).to_vec::<f32>(), vec![1.0, -2.0]);
    /// ```
    pub fn new() -> Self {
        Sequential { layers: Vec::new() }
    }

    /// This sequence with `layer` appended.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, LeakyReLU, Module, ReLU, Sequential};
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![-2.0f32, 2.0], &[2]);
    /// let leaky = Sequential::new().add(LeakyReLU::new().negative_slope(0.5));
    /// assert_eq!(leaky.forward(&x).to_vec::<f32>(), vec![-1.0, 2.0]);
    /// let then_relu = leaky.add(ReLU); // layers run in the order added
    /// assert_eq!(then_relu.forward(&x).to_vec::<f32>(), vec![0.0, 2.0]);
    /// ```
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, layer: impl Layer + 'static) -> Self {
        self.layers.push(Box::new(layer));
        self
    }

    /// Number of layers.
    ///
    /// ```
    /// use tapegrad_nn::{Linear, ReLU, Sequential};
    /// assert_eq!(Sequential::new().add(Linear::new(2, 2)).add(ReLU).len(), 2); // with or without parameters
    /// ```
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether there are no layers.
    ///
    /// ```
    /// use tapegrad_nn::{ReLU, Sequential};
    /// assert!(Sequential::new().is_empty());
    /// assert!(!Sequential::new().add(ReLU).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl Forward for Sequential {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        let mut y = x.clone();
        for layer in &self.layers {
            y = layer.forward(&y);
        }
        y
    }
}

/// Written by hand because PyTorch names a sequence's layers `0`, `1`, ... directly under
/// the sequence's own name (a derived field would add `layers.`).
impl Module for Sequential {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, Slot)) {
        self.layers.visit_field(prefix, Slot::Parameter, f)
    }
    fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor, Slot)) {
        self.layers.visit_field_mut(prefix, Slot::Parameter, f)
    }
    fn set_training(&self, training: bool) {
        self.layers.set_training_field(training)
    }
}
