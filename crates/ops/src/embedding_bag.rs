//! Bags of embeddings reduced to one vector each (PyTorch's `F.embedding_bag`): the rows of
//! a table for every index of a bag, summed, averaged or maximised.
//!
//! Built from recorded ops, so gradients reach the table (and the per-sample weights) to any
//! order: the kept rows are picked with `index_select` (`[indices, dim]`) and added into
//! their bags with `index_add` (sum and mean); for max, each bag's rows are picked into a
//! `[bags, longest bag, dim]` block, a short bag repeating its first index, and reduced with
//! `max_dim`, so bags of very different lengths cost as many rows as the longest times the
//! bags. A 2-D input with no columns gives zero bags' worth of zeros (PyTorch refuses it).

use std::panic::Location;

use tapegrad_tape::{DType, Error, Result, Tensor};

use crate::index::{index_add, index_select, index_values};
use crate::options::setters;
use crate::reduce::max_dim;
use crate::shape::reshape_to;

/// How [`embedding_bag`](crate::functional::embedding_bag) reduces a bag (PyTorch's `mode`).
///
/// ```
/// assert_eq!(tapegrad_ops::EmbeddingBagMode::default(), tapegrad_ops::EmbeddingBagMode::Mean);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EmbeddingBagMode {
    /// The sum of the bag's rows (times their per-sample weights, if given).
    Sum,
    /// Their mean (PyTorch's default).
    #[default]
    Mean,
    /// Their elementwise maximum.
    Max,
}

/// PyTorch's keywords of `F.embedding_bag` (and `nn.EmbeddingBag`) beside the input and the
/// table: `offsets` (where each bag of a 1-D input starts), `mode`, `per_sample_weights`
/// (with `Sum`), `include_last_offset` and `padding_idx`.
///
/// ```
/// use tapegrad_ops::{EmbeddingBagMode, EmbeddingBagOptions};
/// use tapegrad_tape::Tensor;
/// let o = EmbeddingBagOptions::default()
///     .offsets(&Tensor::from_vec(vec![0i64, 2], &[2]))
///     .mode(EmbeddingBagMode::Sum);
/// assert_eq!((o.mode, o.include_last_offset, o.padding_idx), (EmbeddingBagMode::Sum, false, None));
/// ```
#[derive(Clone, Debug, Default)]
pub struct EmbeddingBagOptions {
    /// For a 1-D input, the position where each bag starts (int64, from 0, not decreasing);
    /// `None` for a 2-D input, whose rows are the bags.
    pub offsets: Option<Tensor>,
    /// How a bag is reduced.
    pub mode: EmbeddingBagMode,
    /// A weight for each index, shaped like the input (mode `Sum` only).
    pub per_sample_weights: Option<Tensor>,
    /// Whether `offsets` ends with the end of the last bag (one entry more than the bags).
    pub include_last_offset: bool,
    /// An index left out of every bag (negative counts from the end of the table).
    pub padding_idx: Option<i64>,
}

setters!(EmbeddingBagOptions {
    /// Sets `offsets`.
    offsets(&Tensor) => Some(offsets.clone()), example &tapegrad_tape::Tensor::zeros_dtype(&[1], tapegrad_tape::DType::I64) => o.offsets.is_some();
    /// Sets `mode`.
    mode(EmbeddingBagMode) => mode, example tapegrad_ops::EmbeddingBagMode::Max => o.mode == tapegrad_ops::EmbeddingBagMode::Max;
    /// Sets `per_sample_weights`.
    per_sample_weights(&Tensor) => Some(per_sample_weights.clone()), example &tapegrad_tape::Tensor::ones(&[3]) => o.per_sample_weights.is_some();
    /// Sets `include_last_offset`.
    include_last_offset(bool) => include_last_offset, example true => o.include_last_offset;
    /// Sets `padding_idx`.
    padding_idx(i64) => Some(padding_idx), example 0 => o.padding_idx == Some(0);
});

/// The bags: for each, the positions in the flattened input of the indices it keeps.
struct Bags {
    /// `starts[b]..starts[b + 1]` are bag `b`'s entries of `positions`.
    starts: Vec<usize>,
    positions: Vec<usize>,
}

/// `input`'s bags (rows of a 2-D input, or slices of a 1-D one between `offsets`), leaving
/// out the positions whose index is `padding`.
fn bags(
    input: &Tensor,
    indices: &[usize],
    options: &EmbeddingBagOptions,
    padding: Option<usize>,
    location: &'static Location<'static>,
) -> Result<Bags> {
    let invalid =
        |message: String| Error::InvalidArgument { op: "embedding_bag", message, location };
    let bounds: Vec<usize> = match (input.dim(), &options.offsets) {
        (2, None) => {
            let (count, length) = (input.shape()[0], input.shape()[1]);
            (0..=count).map(|b| b * length).collect()
        }
        (2, Some(_)) => {
            return Err(invalid(
                "offsets must be None for a 2-D input, whose rows are the bags".into(),
            ));
        }
        (1, None) => {
            return Err(invalid("a 1-D input needs offsets: where each bag starts".into()));
        }
        (1, Some(offsets)) => {
            if offsets.dim() != 1 || offsets.dtype() != DType::I64 {
                return Err(invalid(format!(
                    "offsets must be a 1-D int64 tensor, got {} of shape {:?}",
                    offsets.dtype(),
                    offsets.shape()
                )));
            }
            let mut bounds: Vec<i64> = offsets.to_vec::<i64>();
            let len = indices.len() as i64;
            if bounds.is_empty() {
                return Err(invalid(
                    "offsets is empty; it needs 0, where the first bag starts".into(),
                ));
            }
            if !options.include_last_offset {
                bounds.push(len);
            } else if bounds[bounds.len() - 1] != len {
                // PyTorch's kernels disagree here (some end the last bag at the input's end,
                // some at the offset): an error rather than either guess.
                return Err(invalid(format!(
                    "with include_last_offset, the last offset ends the last bag and must be the \
                     input's length {len}, got {}",
                    bounds[bounds.len() - 1]
                )));
            }
            if bounds.first().is_some_and(|&first| first != 0) {
                return Err(invalid(format!("offsets must start at 0, got {}", bounds[0])));
            }
            if let Some(w) = bounds.windows(2).find(|w| w[1] < w[0] || w[1] > len) {
                return Err(invalid(format!(
                    "offsets must not decrease nor pass the input's {len} indices, got {} then {}",
                    w[0], w[1]
                )));
            }
            bounds.into_iter().map(|b| b as usize).collect()
        }
        (rank, _) => {
            return Err(invalid(format!(
                "input must be 1-D (with offsets) or 2-D (one bag per row), got shape {:?} (rank {rank})",
                input.shape()
            )));
        }
    };
    let mut starts = Vec::with_capacity(bounds.len());
    let mut positions = Vec::with_capacity(indices.len());
    for bag in bounds.windows(2) {
        starts.push(positions.len());
        positions.extend((bag[0]..bag[1]).filter(|&p| Some(indices[p]) != padding));
    }
    starts.push(positions.len());
    Ok(Bags { starts, positions })
}

/// One vector per bag of `input`'s indices into `weight` (`[num_embeddings, dim]`):
/// `[bags, dim]`. An empty bag (or one of padding only) gives zeros.
#[track_caller]
pub(crate) fn embedding_bag(
    input: &Tensor,
    weight: &Tensor,
    options: EmbeddingBagOptions,
) -> Result<Tensor> {
    let location = Location::caller();
    let invalid =
        |message: String| Error::InvalidArgument { op: "embedding_bag", message, location };
    if weight.dim() != 2 || !weight.dtype().is_float() {
        return Err(invalid(format!(
            "weight must be a float [num_embeddings, dim] table, got {} of shape {:?}",
            weight.dtype(),
            weight.shape()
        )));
    }
    let (rows, dim) = (weight.shape()[0], weight.shape()[1]);
    let indices = index_values("embedding_bag", input, rows, location)?;
    let padding = match options.padding_idx {
        None => None,
        Some(p) if p >= 0 && (p as usize) < rows => Some(p as usize),
        Some(p) if p < 0 && p.unsigned_abs() as usize <= rows => {
            Some(rows - p.unsigned_abs() as usize)
        }
        Some(p) => {
            return Err(invalid(format!("padding_idx {p} is outside a table of {rows} rows")));
        }
    };
    let bags = bags(input, &indices, &options, padding, location)?;
    let count = bags.starts.len() - 1;
    let weights = match &options.per_sample_weights {
        None => None,
        Some(_) if options.mode != EmbeddingBagMode::Sum => {
            return Err(invalid(format!(
                "per_sample_weights need mode Sum, got {:?}",
                options.mode
            )));
        }
        Some(w) if w.shape() != input.shape() || w.dtype() != weight.dtype() => {
            return Err(invalid(format!(
                "per_sample_weights must be {} shaped like the input {:?}, got {} of shape {:?}",
                weight.dtype(),
                input.shape(),
                w.dtype(),
                w.shape()
            )));
        }
        Some(w) => Some(w),
    };
    let int64 = |values: Vec<usize>| {
        let n = values.len();
        Tensor::from_vec(values.into_iter().map(|v| v as i64).collect::<Vec<_>>(), &[n])
    };
    let sizes: Vec<usize> = bags.starts.windows(2).map(|s| s[1] - s[0]).collect();

    if options.mode == EmbeddingBagMode::Max {
        // Each bag's rows in a block of the longest bag's length, shorter bags repeating their
        // first index: the maximum is unchanged, and so is where its gradient goes.
        let longest = sizes.iter().copied().max().unwrap_or(0);
        if longest == 0 {
            // Every bag empty: zeros that still lead back to the table, as PyTorch's do.
            let none = index_select(weight, 0, &int64(Vec::new()))?;
            let zeros = Tensor::zeros_dtype(&[count, dim], weight.dtype());
            return index_add(&zeros, 0, &int64(Vec::new()), &none);
        }
        let mut picks = Vec::with_capacity(count * longest);
        for bag in bags.starts.windows(2) {
            let kept = &bags.positions[bag[0]..bag[1]];
            let first = kept.first().map_or(0, |&p| indices[p]);
            picks.extend((0..longest).map(|k| kept.get(k).map_or(first, |&p| indices[p])));
        }
        let block = reshape_to(&index_select(weight, 0, &int64(picks))?, &[count, longest, dim]);
        let (largest, _) = max_dim(&block, 1, false, true)?;
        if sizes.iter().all(|&s| s > 0) {
            return Ok(largest);
        }
        // Chosen, not multiplied by a mask: an empty bag's stand-in row may hold an infinity.
        let nonempty: Vec<bool> = sizes.iter().map(|&s| s > 0).collect();
        let mask = Tensor::from_vec(nonempty, &[count, 1]);
        let zeros = Tensor::zeros_dtype(&[1, 1], weight.dtype());
        return crate::binary::try_where(&mask, &largest, &zeros);
    }

    let kept: Vec<usize> = bags.positions.iter().map(|&p| indices[p]).collect();
    let mut picked = index_select(weight, 0, &int64(kept))?;
    if let Some(w) = weights {
        let flat = reshape_to(w, &[w.numel()]);
        let scale = index_select(&flat, 0, &int64(bags.positions.clone()))?;
        picked = &picked * &reshape_to(&scale, &[bags.positions.len(), 1]);
    }
    let owner: Vec<usize> = (0..count).flat_map(|b| std::iter::repeat_n(b, sizes[b])).collect();
    let zeros = Tensor::zeros_dtype(&[count, dim], weight.dtype());
    let sums = index_add(&zeros, 0, &int64(owner), &picked)?;
    if options.mode == EmbeddingBagMode::Sum {
        return Ok(sums);
    }
    let divisors: Vec<f64> = sizes.iter().map(|&s| s.max(1) as f64).collect();
    Ok(&sums / &Tensor::from_vec(divisors, &[count, 1]).to_dtype(weight.dtype()))
}
