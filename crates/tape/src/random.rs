//! Random tensors from a seedable per-thread generator (PyTorch's `manual_seed`).

use std::cell::RefCell;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{Rng, RngExt, SeedableRng};

use crate::{DType, Storage, Tensor, layout::Layout, layout::numel};

/// The seed every thread's generator starts from, so that runs are reproducible by default.
const DEFAULT_SEED: u64 = 0x7a9e_67ad;

thread_local! {
    static GENERATOR: RefCell<Xoshiro256PlusPlus> =
        RefCell::new(Xoshiro256PlusPlus::seed_from_u64(DEFAULT_SEED));
}

/// Reseeds this thread's generator, which `randn`, `rand`, initialisers and dropout draw
/// from: PyTorch's `torch.manual_seed`.
///
/// ```
/// use tapegrad_tape::{Tensor, manual_seed};
/// manual_seed(7);
/// let a = Tensor::randn(&[3]).to_vec::<f32>();
/// manual_seed(7);
/// assert_eq!(a, Tensor::randn(&[3]).to_vec::<f32>());
/// ```
pub fn manual_seed(seed: u64) {
    GENERATOR.with(|g| *g.borrow_mut() = Xoshiro256PlusPlus::seed_from_u64(seed));
}

/// Runs `f` with this thread's generator, for code that draws its own random numbers
/// (initialisers, dropout masks, shuffling) from the same seeded stream.
///
/// ```
/// use rand::RngExt;
/// let x: f64 = tapegrad_tape::with_generator(|rng| rng.random());
/// assert!((0.0..1.0).contains(&x));
/// ```
pub fn with_generator<R>(f: impl FnOnce(&mut Xoshiro256PlusPlus) -> R) -> R {
    GENERATOR.with(|g| f(&mut g.borrow_mut()))
}

/// One standard normal sample (Box-Muller on two uniforms; the second value is discarded
/// so that each sample costs a fixed amount of the stream).
fn normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // in (0, 1]: ln(u1) is finite
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn sample(shape: &[usize], dtype: DType, draw: impl Fn(&mut Xoshiro256PlusPlus) -> f64) -> Tensor {
    let n = numel(shape);
    let storage = with_generator(|rng| match dtype {
        DType::F32 => Storage::from_vec((0..n).map(|_| draw(rng) as f32).collect::<Vec<_>>()),
        DType::F64 => Storage::from_vec((0..n).map(|_| draw(rng)).collect::<Vec<_>>()),
        DType::I64 => panic!("random sampling needs a float dtype, not int64"),
    });
    Tensor::from_storage(storage, Layout::contiguous(shape))
}

impl Tensor {
    /// Samples from the standard normal distribution N(0, 1) (f32).
    ///
    /// ```
    /// let t = tapegrad_tape::Tensor::randn(&[1000]);
    /// let mean: f32 = t.to_vec::<f32>().iter().sum::<f32>() / 1000.0;
    /// assert!(mean.abs() < 0.2);
    /// ```
    pub fn randn(shape: &[usize]) -> Tensor {
        Self::randn_dtype(shape, DType::F32)
    }

    /// [`Tensor::randn`] with a chosen dtype.
    ///
    /// ```
    /// use tapegrad_tape::{DType, Tensor};
    /// assert_eq!(Tensor::randn_dtype(&[2], DType::F64).dtype(), DType::F64);
    /// ```
    pub fn randn_dtype(shape: &[usize], dtype: DType) -> Tensor {
        sample(shape, dtype, normal)
    }

    /// Samples uniformly from `[0, 1)` (f32).
    ///
    /// ```
    /// let t = tapegrad_tape::Tensor::rand(&[100]);
    /// assert!(t.to_vec::<f32>().iter().all(|v| (0.0..1.0).contains(v)));
    /// ```
    pub fn rand(shape: &[usize]) -> Tensor {
        Self::rand_dtype(shape, DType::F32)
    }

    /// [`Tensor::rand`] with a chosen dtype.
    ///
    /// ```
    /// use tapegrad_tape::{DType, Tensor};
    /// assert_eq!(Tensor::rand_dtype(&[2], DType::F64).dtype(), DType::F64);
    /// ```
    pub fn rand_dtype(shape: &[usize], dtype: DType) -> Tensor {
        sample(shape, dtype, |rng| rng.random::<f64>())
    }

    /// Samples uniformly from `[low, high)` (f32), e.g. for PyTorch's default initialisers.
    ///
    /// ```
    /// let t = tapegrad_tape::Tensor::uniform(&[100], -2.0, 2.0);
    /// assert!(t.to_vec::<f32>().iter().all(|v| (-2.0..2.0).contains(v)));
    /// ```
    pub fn uniform(shape: &[usize], low: f64, high: f64) -> Tensor {
        Self::uniform_dtype(shape, low, high, DType::F32)
    }

    /// [`Tensor::uniform`] with a chosen dtype.
    ///
    /// ```
    /// use tapegrad_tape::{DType, Tensor};
    /// assert_eq!(Tensor::uniform_dtype(&[1], 0.0, 1.0, DType::F64).dtype(), DType::F64);
    /// ```
    pub fn uniform_dtype(shape: &[usize], low: f64, high: f64, dtype: DType) -> Tensor {
        sample(shape, dtype, |rng| low + (high - low) * rng.random::<f64>())
    }
}
