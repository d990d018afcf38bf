//! Pooling layers: max, average and adaptive pooling of images (`[N, C, H, W]`) and of
//! sequences (`[N, C, L]`), each a setting-only layer over its `functional` form.

use tapegrad_ops::functional as F;
use tapegrad_ops::{
    AvgPool1dOptions, AvgPool2dOptions, IntoPair, MaxPool1dOptions, MaxPool2dOptions,
};
use tapegrad_tape::Tensor;

use crate::Module;
use crate::module::Forward;
use crate::stateless::stateless;

stateless!(
    /// Max pooling: PyTorch's `nn.MaxPool2d` (`stride` defaults to the kernel; `padding`,
    /// `dilation`, `ceil_mode`).
    ///
    /// ```
    /// use tapegrad_nn::{Forward, MaxPool2d};
    /// let y = MaxPool2d::new(2).forward(&tapegrad_tape::Tensor::zeros(&[1, 1, 28, 28]));
    /// assert_eq!(y.shape(), &[1, 1, 14, 14]);
    /// ```
    MaxPool2d(kernel: (usize, usize), options: MaxPool2dOptions),
    |s, x| F::max_pool2d_with(x, s.kernel, s.options)
);

impl MaxPool2d {
    /// Pooling over `kernel` windows (a size or a pair) with stride `kernel`.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, MaxPool2d};
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec((0..16).map(|v| v as f32).collect(), &[1, 1, 4, 4]);
    /// assert_eq!(MaxPool2d::new(2).forward(&x).to_vec::<f32>(), vec![5.0, 7.0, 13.0, 15.0]);
    /// ```
    pub fn new(kernel: impl IntoPair) -> Self {
        MaxPool2d { kernel: kernel.into_pair(), options: MaxPool2dOptions::default() }
    }

    /// Sets `stride`.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, MaxPool2d};
    /// let y = MaxPool2d::new(3).stride(1).forward(&tapegrad_tape::Tensor::zeros(&[1, 1, 5, 5]));
    /// assert_eq!(y.shape(), &[1, 1, 3, 3]);
    /// ```
    pub fn stride(mut self, stride: impl IntoPair) -> Self {
        self.options = self.options.stride(stride);
        self
    }

    /// Sets `padding` (-inf, at most half the kernel).
    ///
    /// ```
    /// use tapegrad_nn::{Forward, MaxPool2d};
    /// let y = MaxPool2d::new(3).stride(1).padding(1).forward(&tapegrad_tape::Tensor::zeros(&[1, 1, 5, 5]));
    /// assert_eq!(y.shape(), &[1, 1, 5, 5]);
    /// ```
    pub fn padding(mut self, padding: impl IntoPair) -> Self {
        self.options = self.options.padding(padding);
        self
    }

    /// Sets `dilation`.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, MaxPool2d};
    /// let y = MaxPool2d::new(2).stride(1).dilation(2).forward(&tapegrad_tape::Tensor::zeros(&[1, 1, 5, 5]));
    /// assert_eq!(y.shape(), &[1, 1, 3, 3]);
    /// ```
    pub fn dilation(mut self, dilation: impl IntoPair) -> Self {
        self.options = self.options.dilation(dilation);
        self
    }

    /// Sets `ceil_mode`.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, MaxPool2d};
    /// let y = MaxPool2d::new(2).ceil_mode(true).forward(&tapegrad_tape::Tensor::zeros(&[1, 1, 5, 5]));
    /// assert_eq!(y.shape(), &[1, 1, 3, 3]);
    /// ```
    pub fn ceil_mode(mut self, ceil_mode: bool) -> Self {
        self.options = self.options.ceil_mode(ceil_mode);
        self
    }
}

stateless!(
    /// Average pooling: PyTorch's `nn.AvgPool2d` (`stride` defaults to the kernel;
    /// `padding`, `ceil_mode`, `count_include_pad`, `divisor_override`).
    ///
    /// ```
    /// use tapegrad_nn::{AvgPool2d, Forward};
    /// let y = AvgPool2d::new(2).forward(&tapegrad_tape::Tensor::ones(&[1, 1, 4, 4]));
    /// assert_eq!(y.to_vec::<f32>(), vec![1.0; 4]);
    /// ```
    AvgPool2d(kernel: (usize, usize), options: AvgPool2dOptions),
    |s, x| F::avg_pool2d_with(x, s.kernel, s.options)
);

impl AvgPool2d {
    /// Pooling over `kernel` windows (a size or a pair) with stride `kernel`.
    ///
    /// ```
    /// use tapegrad_nn::{AvgPool2d, Forward};
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec((0..16).map(|v| v as f32).collect(), &[1, 1, 4, 4]);
    /// assert_eq!(AvgPool2d::new(2).forward(&x).to_vec::<f32>(), vec![2.5, 4.5, 10.5, 12.5]);
    /// ```
    pub fn new(kernel: impl IntoPair) -> Self {
        AvgPool2d { kernel: kernel.into_pair(), options: AvgPool2dOptions::default() }
    }

    /// Sets `stride`.
    ///
    /// ```
    /// use tapegrad_nn::{AvgPool2d, Forward};
    /// let y = AvgPool2d::new(3).stride(1).forward(&tapegrad_tape::Tensor::zeros(&[1, 1, 5, 5]));
    /// assert_eq!(y.shape(), &[1, 1, 3, 3]);
    /// ```
    pub fn stride(mut self, stride: impl IntoPair) -> Self {
        self.options = self.options.stride(stride);
        self
    }

    /// Sets `padding` (zeros, at most half the kernel).
    ///
    /// ```
    /// use tapegrad_nn::{AvgPool2d, Forward};
    /// let y = AvgPool2d::new(3).stride(1).padding(1).forward(&tapegrad_tape::Tensor::zeros(&[1, 1, 5, 5]));
    /// assert_eq!(y.shape(), &[1, 1, 5, 5]);
    /// ```
    pub fn padding(mut self, padding: impl IntoPair) -> Self {
        self.options = self.options.padding(padding);
        self
    }

    /// Sets `ceil_mode`.
    ///
    /// ```
    /// use tapegrad_nn::{AvgPool2d, Forward};
    /// let y = AvgPool2d::new(2).ceil_mode(true).forward(&tapegrad_tape::Tensor::ones(&[1, 1, 5, 5]));
    /// assert_eq!(y.shape(), &[1, 1, 3, 3]);
    /// ```
    pub fn ceil_mode(mut self, ceil_mode: bool) -> Self {
        self.options = self.options.ceil_mode(ceil_mode);
        self
    }

    /// Sets `count_include_pad`.
    ///
    /// ```
    /// use tapegrad_nn::{AvgPool2d, Forward};
    /// let pool = AvgPool2d::new(2).padding(1).count_include_pad(false);
    /// assert_eq!(pool.forward(&tapegrad_tape::Tensor::ones(&[1, 1, 2, 2])).to_vec::<f32>(), vec![1.0; 4]);
    /// ```
    pub fn count_include_pad(mut self, count_include_pad: bool) -> Self {
        self.options = self.options.count_include_pad(count_include_pad);
        self
    }

    /// Sets `divisor_override`.
    ///
    /// ```
    /// use tapegrad_nn::{AvgPool2d, Forward};
    /// let pool = AvgPool2d::new(2).divisor_override(1); // window sums
    /// assert_eq!(pool.forward(&tapegrad_tape::Tensor::ones(&[1, 1, 2, 2])).item(), 4.0);
    /// ```
    pub fn divisor_override(mut self, divisor: usize) -> Self {
        self.options = self.options.divisor_override(divisor);
        self
    }
}

stateless!(
    /// Average pooling to a fixed output size: PyTorch's `nn.AdaptiveAvgPool2d`.
    ///
    /// ```
    /// use tapegrad_nn::{AdaptiveAvgPool2d, Forward};
    /// let y = AdaptiveAvgPool2d::new(1).forward(&tapegrad_tape::Tensor::ones(&[2, 3, 5, 5]));
    /// assert_eq!(y.shape(), &[2, 3, 1, 1]);
    /// ```
    AdaptiveAvgPool2d(height: usize, width: usize),
    |s, x| F::adaptive_avg_pool2d(x, (s.height, s.width))
);

impl AdaptiveAvgPool2d {
    /// Pooling to `output_size` (a size or a pair).
    ///
    /// ```
    /// use tapegrad_nn::{AdaptiveAvgPool2d, Forward};
    /// let y = AdaptiveAvgPool2d::new((2, 3)).forward(&tapegrad_tape::Tensor::ones(&[1, 1, 7, 7]));
    /// assert_eq!(y.shape(), &[1, 1, 2, 3]);
    /// ```
    pub fn new(output_size: impl IntoPair) -> Self {
        let (height, width) = output_size.into_pair();
        AdaptiveAvgPool2d { height, width }
    }
}

stateless!(
    /// Adaptive max pooling to a fixed output size: PyTorch's `nn.AdaptiveMaxPool2d`.
    ///
    /// ```
    /// use tapegrad_nn::{AdaptiveMaxPool2d, Forward};
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec((0..16).map(|v| v as f32).collect(), &[1, 1, 4, 4]);
    /// assert_eq!(AdaptiveMaxPool2d::new(1).forward(&x).to_vec::<f32>(), vec![15.0]);
    /// ```
    AdaptiveMaxPool2d(height: usize, width: usize),
    |s, x| F::adaptive_max_pool2d(x, (s.height, s.width))
);

impl AdaptiveMaxPool2d {
    /// Pooling to `output_size` (a size or a pair).
    ///
    /// ```
    /// use tapegrad_nn::{AdaptiveMaxPool2d, Forward};
    /// let y = AdaptiveMaxPool2d::new((2, 3)).forward(&tapegrad_tape::Tensor::ones(&[1, 1, 7, 7]));
    /// assert_eq!(y.shape(), &[1, 1, 2, 3]);
    /// ```
    pub fn new(output_size: impl IntoPair) -> Self {
        let (height, width) = output_size.into_pair();
        AdaptiveMaxPool2d { height, width }
    }
}

stateless!(
    /// Max pooling of sequences: PyTorch's `nn.MaxPool1d` (`stride` defaults to the kernel;
    /// `padding`, `dilation`, `ceil_mode`).
    ///
    /// ```
    /// use tapegrad_nn::{Forward, MaxPool1d};
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f32, 5.0, 2.0, 0.0], &[1, 1, 4]);
    /// assert_eq!(MaxPool1d::new(2).forward(&x).to_vec::<f32>(), vec![5.0, 2.0]);
    /// ```
    MaxPool1d(kernel: usize, options: MaxPool1dOptions),
    |s, x| F::max_pool1d_with(x, s.kernel, s.options)
);

impl MaxPool1d {
    /// Pooling over windows of `kernel` with stride `kernel`.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, MaxPool1d};
    /// assert_eq!(MaxPool1d::new(3).forward(&tapegrad_tape::Tensor::ones(&[2, 4, 9])).shape(), &[2, 4, 3]);
    /// ```
    pub fn new(kernel: usize) -> Self {
        MaxPool1d { kernel, options: MaxPool1dOptions::default() }
    }

    /// Sets `stride`.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, MaxPool1d};
    /// assert_eq!(MaxPool1d::new(3).stride(1).forward(&tapegrad_tape::Tensor::ones(&[1, 1, 5])).shape(), &[1, 1, 3]);
    /// ```
    pub fn stride(mut self, stride: usize) -> Self {
        self.options = self.options.stride(stride);
        self
    }

    /// Sets `padding` (-inf, at most half the kernel).
    ///
    /// ```
    /// use tapegrad_nn::{Forward, MaxPool1d};
    /// let pool = MaxPool1d::new(3).stride(1).padding(1);
    /// assert_eq!(pool.forward(&tapegrad_tape::Tensor::ones(&[1, 1, 5])).shape(), &[1, 1, 5]);
    /// ```
    pub fn padding(mut self, padding: usize) -> Self {
        self.options = self.options.padding(padding);
        self
    }

    /// Sets `dilation`.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, MaxPool1d};
    /// let pool = MaxPool1d::new(2).stride(1).dilation(2);
    /// assert_eq!(pool.forward(&tapegrad_tape::Tensor::ones(&[1, 1, 5])).shape(), &[1, 1, 3]);
    /// ```
    pub fn dilation(mut self, dilation: usize) -> Self {
        self.options = self.options.dilation(dilation);
        self
    }

    /// Sets `ceil_mode`.
    ///
    /// ```
    /// use tapegrad_nn::{Forward, MaxPool1d};
    /// let pool = MaxPool1d::new(2).ceil_mode(true);
    /// assert_eq!(pool.forward(&tapegrad_tape::Tensor::ones(&[1, 1, 5])).shape(), &[1, 1, 3]);
    /// ```
    pub fn ceil_mode(mut self, ceil_mode: bool) -> Self {
        self.options = self.options.ceil_mode(ceil_mode);
        self
    }
}

stateless!(
    /// Average pooling of sequences: PyTorch's `nn.AvgPool1d` (`stride` defaults to the
    /// kernel; `padding`, `ceil_mode`, `count_include_pad`).
    ///
    /// ```
    /// use tapegrad_nn::{AvgPool1d, Forward};
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f32, 3.0, 2.0, 6.0], &[1, 1, 4]);
    /// assert_eq!(AvgPool1d::new(2).forward(&x).to_vec::<f32>(), vec![2.0, 4.0]);
    /// ```
    AvgPool1d(kernel: usize, options: AvgPool1dOptions),
    |s, x| F::avg_pool1d_with(x, s.kernel, s.options)
);

impl AvgPool1d {
    /// Pooling over windows of `kernel` with stride `kernel`.
    ///
    /// ```
    /// use tapegrad_nn::{AvgPool1d, Forward};
    /// assert_eq!(AvgPool1d::new(2).forward(&tapegrad_tape::Tensor::ones(&[1, 2, 6])).shape(), &[1, 2, 3]);
    /// ```
    pub fn new(kernel: usize) -> Self {
        AvgPool1d { kernel, options: AvgPool1dOptions::default() }
    }

    /// Sets `stride`.
    ///
    /// ```
    /// use tapegrad_nn::{AvgPool1d, Forward};
    /// assert_eq!(AvgPool1d::new(2).stride(1).forward(&tapegrad_tape::Tensor::ones(&[1, 1, 4])).shape(), &[1, 1, 3]);
    /// ```
    pub fn stride(mut self, stride: usize) -> Self {
        self.options = self.options.stride(stride);
        self
    }

    /// Sets `padding` (zeros, at most half the kernel).
    ///
    /// ```
    /// use tapegrad_nn::{AvgPool1d, Forward};
    /// let pool = AvgPool1d::new(2).padding(1);
    /// assert_eq!(pool.forward(&tapegrad_tape::Tensor::ones(&[1, 1, 2])).to_vec::<f32>(), vec![0.5, 0.5]);
    /// ```
    pub fn padding(mut self, padding: usize) -> Self {
        self.options = self.options.padding(padding);
        self
    }

    /// Sets `ceil_mode`.
    ///
    /// ```
    /// use tapegrad_nn::{AvgPool1d, Forward};
    /// let pool = AvgPool1d::new(2).ceil_mode(true);
    /// assert_eq!(pool.forward(&tapegrad_tape::Tensor::ones(&[1, 1, 5])).shape(), &[1, 1, 3]);
    /// ```
    pub fn ceil_mode(mut self, ceil_mode: bool) -> Self {
        self.options = self.options.ceil_mode(ceil_mode);
        self
    }

    /// Sets `count_include_pad`.
    ///
    /// ```
    /// use tapegrad_nn::{AvgPool1d, Forward};
    /// let pool = AvgPool1d::new(2).padding(1).count_include_pad(false);
    /// assert_eq!(pool.forward(&tapegrad_tape::Tensor::ones(&[1, 1, 2])).to_vec::<f32>(), vec![1.0, 1.0]);
    /// ```
    pub fn count_include_pad(mut self, count_include_pad: bool) -> Self {
        self.options = self.options.count_include_pad(count_include_pad);
        self
    }
}

stateless!(
    /// Average pooling of sequences to a fixed length: PyTorch's `nn.AdaptiveAvgPool1d`.
    ///
    /// ```
    /// use tapegrad_nn::{AdaptiveAvgPool1d, Forward};
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f32, 3.0, 5.0, 7.0], &[1, 1, 4]);
    /// assert_eq!(AdaptiveAvgPool1d::new(2).forward(&x).to_vec::<f32>(), vec![2.0, 6.0]);
    /// ```
    AdaptiveAvgPool1d(output_size: usize),
    |s, x| F::adaptive_avg_pool1d(x, s.output_size)
);

impl AdaptiveAvgPool1d {
    /// Pooling to `output_size` positions.
    ///
    /// ```
    /// use tapegrad_nn::{AdaptiveAvgPool1d, Forward};
    /// assert_eq!(AdaptiveAvgPool1d::new(1).forward(&tapegrad_tape::Tensor::ones(&[2, 3, 7])).shape(), &[2, 3, 1]);
    /// ```
    pub fn new(output_size: usize) -> Self {
        AdaptiveAvgPool1d { output_size }
    }
}

stateless!(
    /// Max pooling of sequences to a fixed length: PyTorch's `nn.AdaptiveMaxPool1d` (`1`
    /// is the max over time of a text convnet).
    ///
    /// ```
    /// use tapegrad_nn::{AdaptiveMaxPool1d, Forward};
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f32, 3.0, 5.0, 7.0], &[1, 1, 4]);
    /// assert_eq!(AdaptiveMaxPool1d::new(2).forward(&x).to_vec::<f32>(), vec![3.0, 7.0]);
    /// ```
    AdaptiveMaxPool1d(output_size: usize),
    |s, x| F::adaptive_max_pool1d(x, s.output_size)
);

impl AdaptiveMaxPool1d {
    /// Pooling to `output_size` positions.
    ///
    /// ```
    /// use tapegrad_nn::{AdaptiveMaxPool1d, Forward};
    /// assert_eq!(AdaptiveMaxPool1d::new(1).forward(&tapegrad_tape::Tensor::ones(&[2, 3, 7])).shape(), &[2, 3, 1]);
    /// ```
    pub fn new(output_size: usize) -> Self {
        AdaptiveMaxPool1d { output_size }
    }
}
