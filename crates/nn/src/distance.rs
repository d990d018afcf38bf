//! Layers comparing two inputs row by row: PyTorch's `nn.PairwiseDistance` and
//! `nn.CosineSimilarity`. They hold only their settings, and take both inputs through
//! `forward2` (as [`crate::Bilinear`] does).

use tapegrad_ops::functional as F;
use tapegrad_ops::{CosineSimilarityOptions, PairwiseDistanceOptions};
use tapegrad_tape::{Result, Tensor};

use crate::Module;

/// `||x1 - x2 + eps||_p` along the last dimension: PyTorch's `nn.PairwiseDistance`
/// (`p = 2`, `eps = 1e-6`, `keepdim = false` by default).
///
/// ```
/// use tapegrad_nn::PairwiseDistance;
/// use tapegrad_tape::Tensor;
/// let d = PairwiseDistance::new().forward2(&Tensor::zeros(&[5, 4]), &Tensor::ones(&[5, 4]));
/// assert_eq!(d.shape(), &[5]);
/// assert!(d.to_vec::<f32>().iter().all(|v| (v - 2.0).abs() < 1e-5));
/// ```
#[derive(Clone, Debug, Default, Module)]
pub struct PairwiseDistance {
    /// The order, `eps` and `keepdim`.
    #[module(skip)]
    pub options: PairwiseDistanceOptions,
}

impl PairwiseDistance {
    /// The Euclidean distance with PyTorch's defaults.
    ///
    /// ```
    /// assert_eq!(tapegrad_nn::PairwiseDistance::new().options.p, 2.0);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the norm's order (any number but 0; infinite for the largest difference).
    ///
    /// ```
    /// use tapegrad_nn::PairwiseDistance;
    /// use tapegrad_tape::Tensor;
    /// let (a, b) = (Tensor::from_vec(vec![1.0f32, -3.0], &[1, 2]), Tensor::zeros(&[1, 2]));
    /// let d = PairwiseDistance::new().p(f64::INFINITY).eps(0.0).forward2(&a, &b);
    /// assert_eq!(d.to_vec::<f32>(), vec![3.0]);
    /// ```
    pub fn p(mut self, p: f64) -> Self {
        self.options.p = p;
        self
    }

    /// Sets the `eps` added to every difference.
    ///
    /// ```
    /// assert_eq!(tapegrad_nn::PairwiseDistance::new().eps(0.0).options.eps, 0.0);
    /// ```
    pub fn eps(mut self, eps: f64) -> Self {
        self.options.eps = eps;
        self
    }

    /// Keeps the reduced last dimension, with size 1.
    ///
    /// ```
    /// use tapegrad_nn::PairwiseDistance;
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::zeros(&[3, 4]);
    /// assert_eq!(PairwiseDistance::new().keepdim(true).forward2(&x, &x).shape(), &[3, 1]);
    /// ```
    pub fn keepdim(mut self, keepdim: bool) -> Self {
        self.options.keepdim = keepdim;
        self
    }

    /// The distances between `x1` and `x2`, broadcast together.
    ///
    /// ```
    /// use tapegrad_nn::PairwiseDistance;
    /// use tapegrad_tape::Tensor;
    /// let anchor = Tensor::zeros(&[4]);
    /// let d = PairwiseDistance::new().forward2(&Tensor::randn(&[6, 4]), &anchor);
    /// assert_eq!(d.shape(), &[6]);
    /// ```
    #[track_caller]
    pub fn forward2(&self, x1: &Tensor, x2: &Tensor) -> Tensor {
        F::pairwise_distance_with(x1, x2, self.options)
    }

    /// [`forward2`](Self::forward2), returning an error for inputs that do not broadcast,
    /// a non-float input or an order of 0.
    ///
    /// ```
    /// use tapegrad_nn::PairwiseDistance;
    /// use tapegrad_tape::Tensor;
    /// let layer = PairwiseDistance::new();
    /// assert!(layer.try_forward2(&Tensor::zeros(&[2, 3]), &Tensor::zeros(&[2, 4])).is_err());
    /// ```
    #[track_caller]
    pub fn try_forward2(&self, x1: &Tensor, x2: &Tensor) -> Result<Tensor> {
        F::try_pairwise_distance_with(x1, x2, self.options)
    }
}

/// The cosine of the angle between `x1` and `x2` along dimension `dim` (1), each norm
/// raised to at least `eps` (1e-8): PyTorch's `nn.CosineSimilarity`.
///
/// ```
/// use tapegrad_nn::CosineSimilarity;
/// use tapegrad_tape::Tensor;
/// let x = Tensor::randn(&[3, 8]);
/// let c = CosineSimilarity::new().forward2(&x, &x.mul_scalar(2.0));
/// assert!(c.to_vec::<f32>().iter().all(|v| (v - 1.0).abs() < 1e-6));
/// ```
#[derive(Clone, Debug, Default, Module)]
pub struct CosineSimilarity {
    /// The dimension and `eps`.
    #[module(skip)]
    pub options: CosineSimilarityOptions,
}

impl CosineSimilarity {
    /// Along dimension 1, with `eps = 1e-8`.
    ///
    /// ```
    /// assert_eq!(tapegrad_nn::CosineSimilarity::new().options.dim, 1);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the dimension the vectors lie along (negative counts from the end).
    ///
    /// ```
    /// use tapegrad_nn::CosineSimilarity;
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::randn(&[2, 3, 4]);
    /// assert_eq!(CosineSimilarity::new().dim(-1).forward2(&x, &x).shape(), &[2, 3]);
    /// ```
    pub fn dim(mut self, dim: isize) -> Self {
        self.options.dim = dim;
        self
    }

    /// Sets the smallest norm divided by.
    ///
    /// ```
    /// assert_eq!(tapegrad_nn::CosineSimilarity::new().eps(1e-6).options.eps, 1e-6);
    /// ```
    pub fn eps(mut self, eps: f64) -> Self {
        self.options.eps = eps;
        self
    }

    /// The similarities of `x1` and `x2`, broadcast together.
    ///
    /// ```
    /// use tapegrad_nn::CosineSimilarity;
    /// use tapegrad_tape::Tensor;
    /// let (a, b) = (Tensor::from_vec(vec![1.0f32, 0.0], &[1, 2]), Tensor::from_vec(vec![0.0f32, 1.0], &[1, 2]));
    /// assert_eq!(CosineSimilarity::new().forward2(&a, &b).to_vec::<f32>(), vec![0.0]);
    /// ```
    #[track_caller]
    pub fn forward2(&self, x1: &Tensor, x2: &Tensor) -> Tensor {
        F::cosine_similarity_with(x1, x2, self.options)
    }

    /// [`forward2`](Self::forward2), returning an error for inputs that do not broadcast
    /// or a dimension out of range.
    ///
    /// ```
    /// use tapegrad_nn::CosineSimilarity;
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::zeros(&[2, 3]);
    /// assert!(CosineSimilarity::new().dim(2).try_forward2(&x, &x).is_err());
    /// ```
    #[track_caller]
    pub fn try_forward2(&self, x1: &Tensor, x2: &Tensor) -> Result<Tensor> {
        F::try_cosine_similarity_with(x1, x2, self.options)
    }
}
