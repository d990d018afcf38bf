//! PyTorch's `nn.EmbeddingBag`: a lookup table whose rows are reduced per bag (summed,
//! averaged or maximised) as they are looked up.

use tapegrad_ops::functional::{self as F, EmbeddingBagMode, EmbeddingBagOptions};
use tapegrad_tape::{Result, Tensor};

use crate::module::Forward;
use crate::{Module, init};

/// A table of `num_embeddings` vectors, initialised N(0, 1) (the padding row, if any, at
/// zero), reduced per bag: [`Forward::forward`] takes a 2-D input whose rows are the bags,
/// [`EmbeddingBag::forward_bags`] a 1-D input with offsets and per-sample weights.
///
/// ```
/// use tapegrad_nn::{EmbeddingBag, Forward};
/// use tapegrad_tape::Tensor;
/// let bag = EmbeddingBag::new(100, 8); // averages by default
/// let tokens = Tensor::from_vec(vec![3i64, 14, 15, 92, 65, 35], &[2, 3]);
/// assert_eq!(bag.forward(&tokens).shape(), &[2, 8]);
/// ```
#[derive(Module)]
pub struct EmbeddingBag {
    /// `num_embeddings x dim`.
    pub weight: Tensor,
    /// How a bag is reduced.
    #[module(skip)]
    pub mode: EmbeddingBagMode,
    /// Whether the offsets given to [`EmbeddingBag::forward_bags`] end with the end of the
    /// last bag.
    pub include_last_offset: bool,
    /// The index left out of every bag (its row starts at zero).
    pub padding_idx: Option<i64>,
}

impl EmbeddingBag {
    /// A table of `num_embeddings` vectors of size `dim`, averaging each bag.
    ///
    /// ```
    /// let bag = tapegrad_nn::EmbeddingBag::new(10, 3);
    /// assert_eq!(bag.weight.shape(), &[10, 3]);
    /// ```
    pub fn new(num_embeddings: usize, dim: usize) -> Self {
        EmbeddingBag {
            weight: init::normal(&[num_embeddings, dim], 0.0, 1.0).requires_grad(),
            mode: EmbeddingBagMode::Mean,
            include_last_offset: false,
            padding_idx: None,
        }
    }

    /// Sets `mode`.
    ///
    /// ```
    /// use tapegrad_nn::EmbeddingBag;
    /// use tapegrad_ops::EmbeddingBagMode;
    /// assert_eq!(EmbeddingBag::new(4, 2).mode(EmbeddingBagMode::Sum).mode, EmbeddingBagMode::Sum);
    /// ```
    pub fn mode(mut self, mode: EmbeddingBagMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets `include_last_offset`.
    ///
    /// ```
    /// assert!(tapegrad_nn::EmbeddingBag::new(4, 2).include_last_offset(true).include_last_offset);
    /// ```
    pub fn include_last_offset(mut self, include: bool) -> Self {
        self.include_last_offset = include;
        self
    }

    /// Sets `padding_idx` and zeroes that row of the table, as PyTorch does at construction
    /// (negative counts from the end).
    ///
    /// # Panics
    /// If the index is outside the table.
    ///
    /// ```
    /// let bag = tapegrad_nn::EmbeddingBag::new(4, 2).padding_idx(-1);
    /// assert_eq!(bag.weight.to_vec::<f32>()[6..], [0.0, 0.0]);
    /// ```
    #[track_caller]
    pub fn padding_idx(mut self, index: i64) -> Self {
        let rows = self.weight.shape()[0] as i64;
        assert!(
            (-rows..rows).contains(&index),
            "EmbeddingBag: padding_idx {index} is outside a table of {rows} rows"
        );
        let row = index.rem_euclid(rows) as usize;
        let dim = self.weight.shape()[1];
        self.weight.update_storage(|storage, layout| {
            let at = layout.offset() + row * dim;
            match storage {
                tapegrad_tape::Storage::F32(_) => {
                    storage.make_mut::<f32>().expect("f32")[at..at + dim].fill(0.0)
                }
                _ => storage.make_mut::<f64>().expect("a float table")[at..at + dim].fill(0.0),
            }
        });
        self.padding_idx = Some(index);
        self
    }

    /// The bags of a 1-D `input` starting at `offsets` (or of a 2-D input's rows, with no
    /// offsets), each index's row scaled by its `per_sample_weights` (mode `Sum` only):
    /// PyTorch's `forward(input, offsets, per_sample_weights)`.
    ///
    /// ```
    /// use tapegrad_nn::EmbeddingBag;
    /// use tapegrad_ops::EmbeddingBagMode;
    /// use tapegrad_tape::Tensor;
    /// let bag = EmbeddingBag::new(10, 4).mode(EmbeddingBagMode::Sum);
    /// let input = Tensor::from_vec(vec![1i64, 2, 5], &[3]);
    /// let offsets = Tensor::from_vec(vec![0i64, 2], &[2]); // bags [1, 2] and [5]
    /// let weights = Tensor::from_vec(vec![1.0f32, 0.5, 2.0], &[3]);
    /// let out = bag.forward_bags(&input, Some(&offsets), Some(&weights));
    /// let row_5 = &bag.weight.to_vec::<f32>()[20..24];
    /// assert_eq!(out.to_vec::<f32>()[4..], row_5.iter().map(|v| 2.0 * v).collect::<Vec<_>>());
    /// ```
    #[track_caller]
    pub fn forward_bags(
        &self,
        input: &Tensor,
        offsets: Option<&Tensor>,
        per_sample_weights: Option<&Tensor>,
    ) -> Tensor {
        tapegrad_tape::or_panic(self.try_forward_bags(input, offsets, per_sample_weights))
    }

    /// [`EmbeddingBag::forward_bags`], returning an error instead of panicking.
    ///
    /// ```
    /// use tapegrad_nn::EmbeddingBag;
    /// use tapegrad_tape::Tensor;
    /// let flat = Tensor::from_vec(vec![1i64, 2], &[2]);
    /// assert!(EmbeddingBag::new(10, 4).try_forward_bags(&flat, None, None).is_err());
    /// ```
    #[track_caller]
    pub fn try_forward_bags(
        &self,
        input: &Tensor,
        offsets: Option<&Tensor>,
        per_sample_weights: Option<&Tensor>,
    ) -> Result<Tensor> {
        let mut options = EmbeddingBagOptions::default()
            .mode(self.mode)
            .include_last_offset(self.include_last_offset);
        options.offsets = offsets.cloned();
        options.per_sample_weights = per_sample_weights.cloned();
        options.padding_idx = self.padding_idx;
        F::try_embedding_bag_with(input, &self.weight, options)
    }
}

impl Forward for EmbeddingBag {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_bags(x, None, None)
    }
}
