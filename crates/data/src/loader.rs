//! Batching, shuffling and splitting.

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use tapegrad_tape::Tensor;

use crate::distributed::{DistributedSampler, epoch_seed};

/// Shuffles `0..n` with a seeded generator (Fisher-Yates).
pub(crate) fn permutation(n: usize, seed: u64) -> Vec<usize> {
    use rand::RngExt;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        order.swap(i, j);
    }
    order
}

/// Rows `indices` of `t` along dimension 0, as a new tensor.
///
/// ```
/// use tapegrad_data::select_rows;
/// use tapegrad_tape::Tensor;
/// let t = Tensor::from_vec(vec![0.0f32, 1.0, 10.0, 11.0, 20.0, 21.0], &[3, 2]);
/// let picked = select_rows(&t, &[2, 0, 2]); // any order, repeats allowed
/// assert_eq!(picked.shape(), &[3, 2]);
/// assert_eq!(picked.to_vec::<f32>(), vec![20.0, 21.0, 0.0, 1.0, 20.0, 21.0]);
/// ```
///
/// # Panics
/// If `t` is zero-dimensional or an index is not below its first dimension.
#[track_caller]
pub fn select_rows(t: &Tensor, indices: &[usize]) -> Tensor {
    assert!(t.dim() > 0, "select_rows: a zero-dimensional tensor has no rows");
    if let Some((k, &i)) = indices.iter().enumerate().find(|&(_, &i)| i >= t.shape()[0]) {
        panic!("select_rows: index {i} at position {k} is out of range for {} rows", t.shape()[0]);
    }
    let row: usize = t.shape()[1..].iter().product();
    let mut shape = t.shape().to_vec();
    shape[0] = indices.len();
    let storage = t.contiguous_storage();
    fn gather<T: Copy>(v: &[T], indices: &[usize], row: usize) -> Vec<T> {
        let mut out = Vec::with_capacity(indices.len() * row);
        for &i in indices {
            out.extend_from_slice(&v[i * row..(i + 1) * row]);
        }
        out
    }
    match &storage {
        tapegrad_tape::Storage::F32(v) => Tensor::from_vec(gather(v, indices, row), &shape),
        tapegrad_tape::Storage::F64(v) => Tensor::from_vec(gather(v, indices, row), &shape),
        tapegrad_tape::Storage::I64(v) => Tensor::from_vec(gather(v, indices, row), &shape),
        tapegrad_tape::Storage::Bool(v) => Tensor::from_vec(gather(v, indices, row), &shape),
    }
}

/// Mini-batches of (inputs, targets) pairs: PyTorch's `DataLoader` for in-memory tensors.
/// Each call to [`DataLoader::epoch`] reshuffles (when asked) with a seed derived from the
/// loader's seed and the epoch number, so runs are reproducible.
///
/// ```
/// use tapegrad_data::DataLoader;
/// use tapegrad_tape::Tensor;
/// let x = Tensor::arange(0.0, 10.0, 1.0).to_dtype(tapegrad_tape::DType::F32);
/// let y = Tensor::from_vec((0..10).collect::<Vec<i64>>(), &[10]);
/// let loader = DataLoader::new(x, y, 4).shuffle(7).drop_last(true);
/// let batches: Vec<_> = loader.epoch(0).collect();
/// assert_eq!(batches.len(), 2);
/// assert_eq!(batches[0].0.shape(), &[4]);
/// ```
#[derive(Clone)]
pub struct DataLoader {
    inputs: Tensor,
    targets: Tensor,
    batch_size: usize,
    seed: Option<u64>,
    drop_last: bool,
    sampler: Option<DistributedSampler>,
}

impl DataLoader {
    /// Batches of `batch_size` rows of `inputs` and `targets` (same first dimension), in
    /// order, keeping a last partial batch.
    ///
    /// ```
    /// use tapegrad_data::DataLoader;
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::zeros(&[5, 3]);
    /// let y = Tensor::from_vec((0..5).collect::<Vec<i64>>(), &[5]);
    /// let loader = DataLoader::new(x, y, 2);
    /// let labels: Vec<Vec<i64>> = loader.epoch(0).map(|(_, y)| y.to_vec::<i64>()).collect();
    /// assert_eq!(labels, [vec![0, 1], vec![2, 3], vec![4]]);
    /// ```
    ///
    /// # Panics
    /// If either tensor is zero-dimensional, their first dimensions differ, or `batch_size`
    /// is 0.
    #[track_caller]
    pub fn new(inputs: Tensor, targets: Tensor, batch_size: usize) -> Self {
        assert!(
            inputs.dim() > 0 && targets.dim() > 0,
            "DataLoader: inputs {:?} and targets {:?} need a first (sample) dimension",
            inputs.shape(),
            targets.shape()
        );
        assert_eq!(
            inputs.shape()[0],
            targets.shape()[0],
            "DataLoader: inputs and targets differ in length ({:?} and {:?})",
            inputs.shape(),
            targets.shape()
        );
        assert!(batch_size > 0, "DataLoader: batch size must be positive");
        DataLoader { inputs, targets, batch_size, seed: None, drop_last: false, sampler: None }
    }

    /// Shuffle every epoch, seeded.
    ///
    /// ```
    /// use tapegrad_data::DataLoader;
    /// use tapegrad_tape::Tensor;
    /// let y = Tensor::from_vec((0..10).collect::<Vec<i64>>(), &[10]);
    /// let loader = DataLoader::new(Tensor::zeros(&[10]), y, 10).shuffle(42);
    /// let order = |epoch: u64| loader.epoch(epoch).next().unwrap().1.to_vec::<i64>();
    /// assert_eq!(order(0), order(0)); // reproducible
    /// assert_ne!(order(0), order(1)); // a new order every epoch
    /// let mut all = order(1);
    /// all.sort();
    /// assert_eq!(all, (0..10).collect::<Vec<i64>>()); // every sample once
    /// ```
    ///
    /// # Panics
    /// If the loader has a [`DataLoader::sampler`] (which shuffles, or not, itself).
    #[track_caller]
    pub fn shuffle(mut self, seed: u64) -> Self {
        refuse_shuffle_with_sampler(self.sampler.is_some());
        self.seed = Some(seed);
        self
    }

    /// Read only the samples `sampler` gives this rank, in its order (PyTorch's
    /// `DataLoader(..., sampler=DistributedSampler(...))`): each epoch's batches come from
    /// `sampler.indices(epoch)`.
    ///
    /// ```
    /// use tapegrad_data::{DataLoader, DistributedSampler};
    /// use tapegrad_tape::Tensor;
    /// let y = Tensor::from_vec((0..10).collect::<Vec<i64>>(), &[10]);
    /// let rank1 = DistributedSampler::new(10, 2, 1).in_order(); // the second of two ranks
    /// let loader = DataLoader::new(Tensor::zeros(&[10, 3]), y, 2).sampler(rank1);
    /// assert_eq!((loader.len(), loader.batches()), (5, 3));
    /// let labels: Vec<i64> = loader.epoch(0).flat_map(|(_, y)| y.to_vec::<i64>()).collect();
    /// assert_eq!(labels, [1, 3, 5, 7, 9]);
    /// ```
    ///
    /// # Panics
    /// If the sampler was made for a data set of another length, or the loader shuffles.
    #[track_caller]
    pub fn sampler(mut self, sampler: DistributedSampler) -> Self {
        refuse_shuffle_with_sampler(self.seed.is_some());
        assert_eq!(
            sampler.data_len(),
            self.targets.shape()[0],
            "DataLoader: the sampler was made for {} samples, the data set has {}",
            sampler.data_len(),
            self.targets.shape()[0]
        );
        self.sampler = Some(sampler);
        self
    }

    /// Skip the last batch if it is smaller than the batch size.
    ///
    /// ```
    /// use tapegrad_data::DataLoader;
    /// use tapegrad_tape::Tensor;
    /// let loader = DataLoader::new(Tensor::zeros(&[5]), Tensor::zeros(&[5]), 2);
    /// let sizes = |l: &DataLoader| l.epoch(0).map(|(x, _)| x.numel()).collect::<Vec<_>>();
    /// assert_eq!(sizes(&loader), [2, 2, 1]);
    /// assert_eq!(sizes(&loader.drop_last(true)), [2, 2]);
    /// ```
    pub fn drop_last(mut self, drop: bool) -> Self {
        self.drop_last = drop;
        self
    }

    /// Number of samples an epoch reads (this rank's share, with a sampler).
    ///
    /// ```
    /// use tapegrad_data::DataLoader;
    /// use tapegrad_tape::Tensor;
    /// let loader = DataLoader::new(Tensor::zeros(&[10, 3]), Tensor::zeros(&[10]), 4);
    /// assert_eq!((loader.len(), loader.batches()), (10, 3)); // samples, not batches
    /// ```
    pub fn len(&self) -> usize {
        match &self.sampler {
            Some(sampler) => sampler.num_samples(),
            None => self.targets.shape()[0],
        }
    }

    /// Whether there are no samples.
    ///
    /// ```
    /// use tapegrad_data::DataLoader;
    /// use tapegrad_tape::Tensor;
    /// let empty = DataLoader::new(Tensor::zeros(&[0, 3]), Tensor::zeros(&[0]), 4);
    /// assert!(empty.is_empty());
    /// assert_eq!(empty.epoch(0).count(), 0);
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Batches per epoch.
    ///
    /// ```
    /// use tapegrad_data::DataLoader;
    /// use tapegrad_tape::Tensor;
    /// let loader = DataLoader::new(Tensor::zeros(&[10]), Tensor::zeros(&[10]), 4);
    /// assert_eq!(loader.batches(), 3); // 4 + 4 + 2
    /// assert_eq!(loader.drop_last(true).batches(), 2);
    /// ```
    pub fn batches(&self) -> usize {
        if self.drop_last {
            self.len() / self.batch_size
        } else {
            self.len().div_ceil(self.batch_size)
        }
    }

    /// The batches of epoch `epoch`.
    ///
    /// ```
    /// use tapegrad_data::DataLoader;
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::from_vec((0..6).map(|v| v as f32).collect(), &[6]);
    /// let y = Tensor::from_vec((0..6).collect::<Vec<i64>>(), &[6]);
    /// let loader = DataLoader::new(x, y, 4).shuffle(3);
    /// for (xb, yb) in loader.epoch(5) {
    ///     // Inputs and targets are shuffled together.
    ///     assert_eq!(
    ///         xb.to_vec::<f32>(),
    ///         yb.to_vec::<i64>().iter().map(|&v| v as f32).collect::<Vec<_>>()
    ///     );
    /// }
    /// assert_eq!(loader.epoch(5).map(|(_, y)| y.numel()).collect::<Vec<_>>(), [4, 2]);
    /// ```
    pub fn epoch(&self, epoch: u64) -> impl Iterator<Item = (Tensor, Tensor)> + '_ {
        let order = match (&self.sampler, self.seed) {
            (Some(sampler), _) => sampler.indices(epoch),
            (None, Some(seed)) => permutation(self.len(), epoch_seed(seed, epoch)),
            (None, None) => (0..self.len()).collect(),
        };
        let batches = self.batches();
        (0..batches).map(move |b| {
            let idx = &order[b * self.batch_size..((b + 1) * self.batch_size).min(self.len())];
            (select_rows(&self.inputs, idx), select_rows(&self.targets, idx))
        })
    }
}

/// PyTorch's rule: a loader shuffles itself or follows a sampler, not both.
#[track_caller]
fn refuse_shuffle_with_sampler(both: bool) {
    assert!(
        !both,
        "DataLoader: shuffle and sampler are mutually exclusive (shuffle with the sampler's own \
         `shuffle`)"
    );
}

/// Splits `0..n` into shuffled train and validation indices, `validation` of them held out.
///
/// ```
/// let (train, val) = tapegrad_data::train_val_split(10, 0.2, 1);
/// assert_eq!((train.len(), val.len()), (8, 2));
/// ```
pub fn train_val_split(n: usize, validation: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let order = permutation(n, seed);
    let held = ((n as f64) * validation.clamp(0.0, 1.0)).round() as usize;
    (order[held..].to_vec(), order[..held].to_vec())
}

/// `k` (train, validation) index pairs for k-fold cross-validation of `n` shuffled samples;
/// the folds partition the samples.
///
/// ```
/// let folds = tapegrad_data::k_fold(10, 3, 0);
/// assert_eq!(folds.len(), 3);
/// assert_eq!(folds.iter().map(|(_, v)| v.len()).sum::<usize>(), 10);
/// ```
pub fn k_fold(n: usize, k: usize, seed: u64) -> Vec<(Vec<usize>, Vec<usize>)> {
    let order = permutation(n, seed);
    let k = k.max(1);
    (0..k)
        .map(|f| {
            let (start, end) = (f * n / k, (f + 1) * n / k);
            let val = order[start..end].to_vec();
            let train = order[..start].iter().chain(&order[end..]).copied().collect();
            (train, val)
        })
        .collect()
}
