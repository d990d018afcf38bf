//! Draws whose distribution a tensor gives: `bernoulli` (a coin per element, the tensor
//! its probabilities) and `multinomial` (category indices, the tensor's rows their
//! weights), PyTorch's sampling of actions, tokens and masks. They read the tensor's
//! values and draw from the calling thread's seeded generator; nothing is recorded, as in
//! PyTorch (a sample has no gradient).

use std::panic::Location;

use rand::RngExt;

use crate::error::{Error, Result, ensure_float, or_panic};
use crate::random::with_generator;
use crate::{DType, Storage, Tensor, layout::Layout, tensor::with_capacity};

impl Tensor {
    /// A tensor of zeros and ones in this tensor's shape and dtype, each element 1 with the
    /// probability this tensor holds there (PyTorch's `torch.bernoulli`). Panics unless
    /// every probability is in `[0, 1]`.
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// let p = Tensor::from_vec(vec![0.0f32, 1.0, 0.5], &[3]);
    /// let coins = p.bernoulli().to_vec::<f32>();
    /// assert_eq!((coins[0], coins[1]), (0.0, 1.0));
    /// assert!(coins[2] == 0.0 || coins[2] == 1.0);
    /// ```
    #[track_caller]
    pub fn bernoulli(&self) -> Tensor {
        or_panic(self.try_bernoulli())
    }

    /// [`Tensor::bernoulli`], returning an error instead of panicking.
    ///
    /// ```
    /// let p = tapegrad_tape::Tensor::from_vec(vec![0.5f32, 1.5], &[2]);
    /// assert!(p.try_bernoulli().is_err()); // 1.5 is not a probability
    /// ```
    #[track_caller]
    pub fn try_bernoulli(&self) -> Result<Tensor> {
        let location = Location::caller();
        ensure_float("bernoulli", self, location)?;
        let p = self.to_vec::<f64>();
        if let Some(i) = p.iter().position(|v| !(0.0..=1.0).contains(v)) {
            return Err(Error::InvalidArgument {
                op: "bernoulli",
                message: format!("element {i} is {}, not a probability in [0, 1]", p[i]),
                location,
            });
        }
        let mut coins: Vec<f64> = with_capacity("bernoulli", p.len(), location)?;
        // A uniform draw in [0, 1) is below p with probability p: 0 never fires, 1 always.
        with_generator(|rng| coins.extend(p.iter().map(|&p| f64::from(rng.random::<f64>() < p))));
        let storage = match self.dtype() {
            DType::F32 => {
                Storage::from_vec(coins.into_iter().map(|c| c as f32).collect::<Vec<_>>())
            }
            _ => Storage::from_vec(coins),
        };
        Ok(Tensor::from_storage(storage, Layout::contiguous(self.shape())))
    }

    /// `num_samples` category indices per row, each drawn with probability proportional to
    /// the row's weights (PyTorch's `torch.multinomial(input, num_samples, replacement)`):
    /// sampling tokens from a language model's probabilities or actions from a policy. The
    /// weights need not sum to one. Without replacement a category is drawn at most once
    /// per row. A vector of weights gives `[num_samples]` indices, a matrix
    /// `[rows, num_samples]`, as int64.
    ///
    /// Panics unless the tensor is a float vector or matrix of finite, non-negative weights
    /// with a positive sum in every row, and, without replacement, at least `num_samples`
    /// categories of positive weight in each row.
    ///
    /// ```
    /// use tapegrad_tape::{DType, Tensor};
    /// let probs = Tensor::from_vec(vec![0.0f32, 0.2, 0.8, 0.0, 1.0, 0.0], &[2, 3]);
    /// let drawn = probs.multinomial(2, true);
    /// assert_eq!((drawn.shape(), drawn.dtype()), (&[2, 2][..], DType::I64));
    /// let drawn = drawn.to_vec::<i64>();
    /// assert!(drawn[..2].iter().all(|&c| c == 1 || c == 2)); // category 0 weighs nothing
    /// assert_eq!(&drawn[2..], &[1, 1]);
    /// let weights = Tensor::from_vec(vec![0.0f32, 0.2, 0.8], &[3]);
    /// let mut order = weights.multinomial(2, false).to_vec::<i64>();
    /// order.sort();
    /// assert_eq!(order, vec![1, 2]); // both categories of weight, once each
    /// ```
    #[track_caller]
    pub fn multinomial(&self, num_samples: usize, replacement: bool) -> Tensor {
        or_panic(self.try_multinomial(num_samples, replacement))
    }

    /// [`Tensor::multinomial`], returning an error instead of panicking.
    ///
    /// ```
    /// let probs = tapegrad_tape::Tensor::from_vec(vec![0.3f32, 0.7], &[2]);
    /// assert!(probs.try_multinomial(3, false).is_err()); // 3 draws from 2 categories
    /// ```
    #[track_caller]
    pub fn try_multinomial(&self, num_samples: usize, replacement: bool) -> Result<Tensor> {
        let location = Location::caller();
        let fail =
            |message: String| Error::InvalidArgument { op: "multinomial", message, location };
        ensure_float("multinomial", self, location)?;
        let (rows, categories) = match *self.shape() {
            [c] => (1, c),
            [r, c] => (r, c),
            _ => {
                return Err(fail(format!(
                    "expects a vector or a matrix of weights, got shape {:?}",
                    self.shape()
                )));
            }
        };
        let weights = self.to_vec::<f64>();
        for (r, row) in weights.chunks(categories.max(1)).take(rows).enumerate() {
            if let Some(c) = row.iter().position(|w| !(w.is_finite() && *w >= 0.0)) {
                return Err(fail(format!(
                    "row {r} has weight {} at category {c}: weights must be finite and \
                    non-negative",
                    row[c]
                )));
            }
            let positive = row.iter().filter(|&&w| w > 0.0).count();
            if positive == 0 && num_samples > 0 {
                return Err(fail(format!("row {r} has no category of positive weight")));
            }
            if !replacement && positive < num_samples {
                return Err(fail(format!(
                    "row {r} has {positive} categories of positive weight, fewer than the \
                    {num_samples} draws without replacement"
                )));
            }
        }
        let mut drawn: Vec<i64> = with_capacity("multinomial", rows * num_samples, location)?;
        with_generator(|rng| {
            for row in weights.chunks(categories.max(1)).take(rows) {
                let mut row = row.to_vec();
                for _ in 0..num_samples {
                    let c = draw_category(&row, rng.random::<f64>());
                    drawn.push(c as i64);
                    if !replacement {
                        row[c] = 0.0;
                    }
                }
            }
        });
        let shape: &[usize] = if self.dim() == 1 { &[num_samples] } else { &[rows, num_samples] };
        Ok(Tensor::from_storage(Storage::from_vec(drawn), Layout::contiguous(shape)))
    }
}

/// The category whose share of the running sum holds `u * total`: category `c` is chosen
/// for `u` in a range of width `row[c] / total`, so never one of weight zero.
fn draw_category(row: &[f64], u: f64) -> usize {
    let total: f64 = row.iter().sum();
    let target = u * total;
    let mut running = 0.0;
    let mut last_positive = 0;
    for (c, &w) in row.iter().enumerate() {
        if w > 0.0 {
            running += w;
            last_positive = c;
            if target < running {
                return c;
            }
        }
    }
    // Rounding can leave `target` at or just past the last running sum.
    last_positive
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manual_seed;

    #[test]
    fn bernoulli_fires_at_each_elements_rate_in_its_dtype() {
        manual_seed(1);
        let p = Tensor::from_vec(vec![0.25f64; 8000], &[8000]);
        let coins = p.bernoulli();
        assert_eq!(coins.dtype(), DType::F64);
        let coins = coins.to_vec::<f64>();
        assert!(coins.iter().all(|&c| c == 0.0 || c == 1.0));
        // 2000 expected; 5 standard deviations is about 195.
        let ones: f64 = coins.iter().sum();
        assert!((1805.0..2195.0).contains(&ones), "{ones}");
        let edges = Tensor::from_vec(vec![0.0f32, 1.0, 0.0, 1.0], &[2, 2]).bernoulli();
        assert_eq!(edges.to_vec::<f32>(), vec![0.0, 1.0, 0.0, 1.0]);
        for bad in [-0.1f32, 1.1, f32::NAN] {
            let message = Tensor::from_vec(vec![0.5, bad], &[2]).try_bernoulli().unwrap_err();
            assert!(message.to_string().contains("element 1"), "{message}");
        }
        assert!(Tensor::from_vec(vec![1i64], &[1]).try_bernoulli().is_err());
    }

    #[test]
    fn multinomial_draws_in_proportion_to_the_weights() {
        manual_seed(2);
        let weights = Tensor::from_vec(vec![1.0f32, 0.0, 3.0, 6.0], &[4]);
        let drawn = weights.multinomial(10_000, true).to_vec::<i64>();
        let mut counts = [0usize; 4];
        drawn.iter().for_each(|&c| counts[c as usize] += 1);
        // Expected 1000, 0, 3000, 6000; 5 standard deviations are at most about 245.
        assert_eq!(counts[1], 0, "a weight of zero is never drawn");
        for (count, expected) in [(counts[0], 1000), (counts[2], 3000), (counts[3], 6000)] {
            assert!(count.abs_diff(expected) < 250, "{counts:?}");
        }
    }

    #[test]
    fn multinomial_without_replacement_draws_each_category_once_heaviest_first_most_often() {
        manual_seed(4);
        let weights = Tensor::from_vec(vec![1.0f64, 8.0, 1.0, 0.0, 2.0, 2.0], &[2, 3]);
        let mut heavy_first = 0;
        for _ in 0..1000 {
            let drawn = weights.multinomial(2, false).to_vec::<i64>();
            let mut first_row = drawn[..2].to_vec();
            first_row.sort_unstable();
            assert!(first_row[0] != first_row[1]);
            heavy_first += usize::from(drawn[0] == 1);
            let mut second_row = drawn[2..].to_vec();
            second_row.sort_unstable();
            assert_eq!(second_row, vec![1, 2], "the two categories of weight");
        }
        // Category 1 comes first with probability 0.8: 800 expected, 5 deviations 63.
        assert!((737..863).contains(&heavy_first), "{heavy_first}");
        let all = Tensor::from_vec(vec![0.5f32, 0.2, 0.3], &[3]).multinomial(3, false);
        let mut all = all.to_vec::<i64>();
        all.sort_unstable();
        assert_eq!(all, vec![0, 1, 2]);
    }

    #[test]
    fn multinomial_names_the_row_that_cannot_be_drawn_from() {
        let message =
            |t: &Tensor, n, replacement| t.try_multinomial(n, replacement).unwrap_err().to_string();
        let negative = Tensor::from_vec(vec![0.5f32, 0.5, 0.5, -1.0], &[2, 2]);
        let text = message(&negative, 1, true);
        assert!(text.contains("row 1") && text.contains("category 1"), "{text}");
        let empty_row = Tensor::from_vec(vec![1.0f32, 0.0, 0.0, 0.0], &[2, 2]);
        assert!(message(&empty_row, 1, true).contains("row 1 has no category"));
        let few = Tensor::from_vec(vec![1.0f32, 0.0, 1.0], &[3]);
        assert!(message(&few, 3, false).contains("2 categories of positive weight"));
        assert!(few.try_multinomial(3, true).is_ok(), "with replacement, any number");
        let cube = Tensor::ones(&[2, 2, 2]);
        assert!(message(&cube, 1, true).contains("vector or a matrix"));
        assert!(message(&Tensor::from_vec(vec![1i64], &[1]), 1, true).contains("float"));
    }
}
