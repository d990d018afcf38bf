//! Batching, shuffling and splitting.

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use tapegrad_tape::Tensor;

/// Shuffles `0..n` with a seeded generator (Fisher-Yates).
fn permutation(n: usize, seed: u64) -> Vec<usize> {
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
pub fn select_rows(t: &Tensor, indices: &[usize]) -> Tensor {
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
}

impl DataLoader {
    /// Batches of `batch_size` rows of `inputs` and `targets` (same first dimension), in
    /// order, keeping a last partial batch.
    pub fn new(inputs: Tensor, targets: Tensor, batch_size: usize) -> Self {
        assert_eq!(inputs.shape()[0], targets.shape()[0], "DataLoader: inputs and targets differ in length");
        assert!(batch_size > 0, "DataLoader: batch size must be positive");
        DataLoader { inputs, targets, batch_size, seed: None, drop_last: false }
    }

    /// Shuffle every epoch, seeded.
    pub fn shuffle(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Skip the last batch if it is smaller than the batch size.
    pub fn drop_last(mut self, drop: bool) -> Self {
        self.drop_last = drop;
        self
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.targets.shape()[0]
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Batches per epoch.
    pub fn batches(&self) -> usize {
        if self.drop_last { self.len() / self.batch_size } else { self.len().div_ceil(self.batch_size) }
    }

    /// The batches of epoch `epoch`.
    pub fn epoch(&self, epoch: u64) -> impl Iterator<Item = (Tensor, Tensor)> + '_ {
        let order = match self.seed {
            Some(seed) => permutation(self.len(), seed.wrapping_add(epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15))),
            None => (0..self.len()).collect(),
        };
        let batches = self.batches();
        (0..batches).map(move |b| {
            let idx = &order[b * self.batch_size..((b + 1) * self.batch_size).min(self.len())];
            (select_rows(&self.inputs, idx), select_rows(&self.targets, idx))
        })
    }
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
