//! Each rank of a data-parallel job its own shard of the samples (PyTorch's
//! `torch.utils.data.distributed.DistributedSampler`). Pure index arithmetic: it knows
//! nothing of MPI, only the rank and the number of ranks.

use crate::loader::permutation;

/// The samples one rank of `num_replicas` reads in an epoch: every rank draws the same
/// permutation (from the seed, 0 unless set, and the epoch: shuffled by default, as
/// PyTorch's), pads it by wrapping around to a multiple of
/// `num_replicas` (or drops the tail with [`DistributedSampler::drop_last`]), and takes every
/// `num_replicas`-th index starting at its rank. The shards of one epoch are disjoint, of equal
/// length, and (without padding) cover every sample; a new epoch reshuffles.
///
/// ```
/// use tapegrad_data::DistributedSampler;
/// let shards: Vec<Vec<usize>> =
///     (0..2).map(|rank| DistributedSampler::new(10, 2, rank).shuffle(7).indices(0)).collect();
/// assert_eq!((shards[0].len(), shards[1].len()), (5, 5));
/// let mut all: Vec<usize> = shards.concat();
/// all.sort();
/// assert_eq!(all, (0..10).collect::<Vec<_>>()); // disjoint and complete
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DistributedSampler {
    len: usize,
    num_replicas: usize,
    rank: usize,
    seed: Option<u64>,
    drop_last: bool,
}

impl DistributedSampler {
    /// The shard of rank `rank` of `num_replicas`, of a data set of `len` samples, shuffled
    /// with seed 0 and padded to equal lengths (PyTorch's defaults).
    ///
    /// ```
    /// use tapegrad_data::DistributedSampler;
    /// let (a, b) = (DistributedSampler::new(5, 2, 0), DistributedSampler::new(5, 2, 1));
    /// assert_eq!((a.indices(0).len(), b.indices(0).len()), (3, 3)); // 5 samples padded to 6
    /// assert_eq!(DistributedSampler::new(5, 2, 1).in_order().indices(0), [1, 3, 0]);
    /// ```
    ///
    /// # Panics
    /// If `num_replicas` is 0 or `rank` is not below it.
    #[track_caller]
    pub fn new(len: usize, num_replicas: usize, rank: usize) -> Self {
        assert!(num_replicas > 0, "DistributedSampler: num_replicas must be positive");
        assert!(
            rank < num_replicas,
            "DistributedSampler: rank {rank} is not below num_replicas {num_replicas}"
        );
        DistributedSampler { len, num_replicas, rank, seed: Some(0), drop_last: false }
    }

    /// No shuffling: rank `r` reads samples `r`, `r + num_replicas`, ... in every epoch
    /// (PyTorch's `shuffle=False`).
    ///
    /// ```
    /// use tapegrad_data::DistributedSampler;
    /// assert_eq!(DistributedSampler::new(5, 2, 0).in_order().indices(0), [0, 2, 4]);
    /// ```
    pub fn in_order(mut self) -> Self {
        self.seed = None;
        self
    }

    /// Shuffle every epoch with a permutation from `seed` (instead of 0) and the epoch: every
    /// rank must pass the same seed, so that the shards stay disjoint.
    ///
    /// ```
    /// use tapegrad_data::DistributedSampler;
    /// let s = DistributedSampler::new(100, 4, 3).shuffle(1);
    /// assert_eq!(s.indices(2), s.indices(2)); // reproducible
    /// assert_ne!(s.indices(2), s.indices(3)); // reshuffled per epoch
    /// ```
    pub fn shuffle(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Drop the samples past the last multiple of `num_replicas` instead of padding.
    ///
    /// ```
    /// use tapegrad_data::DistributedSampler;
    /// assert_eq!(DistributedSampler::new(5, 2, 1).in_order().drop_last(true).indices(0), [1, 3]);
    /// ```
    pub fn drop_last(mut self, drop: bool) -> Self {
        self.drop_last = drop;
        self
    }

    /// How many samples this rank reads per epoch (the same on every rank).
    ///
    /// ```
    /// use tapegrad_data::DistributedSampler;
    /// assert_eq!(DistributedSampler::new(10, 3, 0).num_samples(), 4); // 12 after padding
    /// assert_eq!(DistributedSampler::new(10, 3, 0).drop_last(true).num_samples(), 3);
    /// ```
    pub fn num_samples(&self) -> usize {
        if self.drop_last {
            self.len / self.num_replicas
        } else {
            self.len.div_ceil(self.num_replicas)
        }
    }

    /// The length of the data set the sampler shards.
    ///
    /// ```
    /// assert_eq!(tapegrad_data::DistributedSampler::new(8, 4, 2).data_len(), 8);
    /// ```
    pub fn data_len(&self) -> usize {
        self.len
    }

    /// The rank this sampler serves.
    ///
    /// ```
    /// assert_eq!(tapegrad_data::DistributedSampler::new(8, 4, 2).rank(), 2);
    /// ```
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of ranks sharing the data set.
    ///
    /// ```
    /// assert_eq!(tapegrad_data::DistributedSampler::new(8, 4, 2).num_replicas(), 4);
    /// ```
    pub fn num_replicas(&self) -> usize {
        self.num_replicas
    }

    /// This rank's sample indices for `epoch`.
    ///
    /// ```
    /// use tapegrad_data::DistributedSampler;
    /// assert_eq!(DistributedSampler::new(6, 3, 2).in_order().indices(0), [2, 5]);
    /// ```
    pub fn indices(&self, epoch: u64) -> Vec<usize> {
        let order = match self.seed {
            Some(seed) => permutation(self.len, epoch_seed(seed, epoch)),
            None => (0..self.len).collect(),
        };
        let total = self.num_samples() * self.num_replicas;
        if self.len == 0 {
            return Vec::new();
        }
        // Padding wraps around the permutation (repeatedly when there are fewer samples than
        // ranks), as PyTorch's sampler does.
        (self.rank..total).step_by(self.num_replicas).map(|i| order[i % self.len]).collect()
    }
}

/// The seed of epoch `epoch`'s permutation: shared by the loader and the sampler.
pub(crate) fn epoch_seed(seed: u64, epoch: u64) -> u64 {
    seed.wrapping_add(epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_disjoint_equal_and_cover_the_data_set() {
        for (len, ranks) in [(10, 2), (11, 3), (7, 4), (2, 5), (100, 7)] {
            for epoch in 0..3 {
                let shards: Vec<Vec<usize>> = (0..ranks)
                    .map(|r| DistributedSampler::new(len, ranks, r).shuffle(9).indices(epoch))
                    .collect();
                let n = len.div_ceil(ranks);
                assert!(shards.iter().all(|s| s.len() == n), "{len} over {ranks}");
                let mut all = shards.concat();
                all.sort();
                all.dedup();
                assert_eq!(all, (0..len).collect::<Vec<_>>(), "{len} over {ranks}");
                if len % ranks == 0 {
                    assert_eq!(shards.concat().len(), len, "no padding needed");
                }
            }
        }
    }

    #[test]
    fn drop_last_shards_are_disjoint() {
        let shards: Vec<Vec<usize>> = (0..3)
            .map(|r| DistributedSampler::new(11, 3, r).shuffle(1).drop_last(true).indices(4))
            .collect();
        let mut all = shards.concat();
        assert_eq!(all.len(), 9);
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 9);
    }

    #[test]
    fn a_loader_shuffles_itself_or_follows_a_sampler_not_both() {
        use tapegrad_tape::Tensor;
        let loader = || crate::DataLoader::new(Tensor::zeros(&[4]), Tensor::zeros(&[4]), 2);
        let sampler = || DistributedSampler::new(4, 2, 0);
        let both = std::panic::catch_unwind(|| loader().shuffle(1).sampler(sampler()));
        let other_way = std::panic::catch_unwind(|| loader().sampler(sampler()).shuffle(1));
        assert!(both.is_err() && other_way.is_err());
        let wrong_length =
            std::panic::catch_unwind(|| loader().sampler(DistributedSampler::new(5, 2, 0)));
        assert!(wrong_length.is_err());
    }

    #[test]
    fn empty_data_set_gives_empty_shards() {
        assert!(DistributedSampler::new(0, 2, 1).shuffle(3).indices(0).is_empty());
    }
}
