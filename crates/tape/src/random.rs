//! Random tensors from seedable generators (PyTorch's `manual_seed`).
//!
//! Each thread draws from its own stream, so threads never contend for a lock and never
//! disturb each other's sequences. The streams are cut from one default generator: a thread's
//! first draw takes the default generator's current state and advances it by 2^128 steps
//! (xoshiro256++'s jump), so no two threads share numbers. [`manual_seed`] reseeds the
//! default generator and the calling thread's stream; threads that drew before keep their
//! streams, so a worker thread that must be reproducible calls `manual_seed` itself.

use std::cell::RefCell;
use std::convert::Infallible;
use std::panic::Location;
use std::sync::{Mutex, PoisonError};

use rand::{RngExt, TryRng};

use crate::error::{Error, Result, or_panic};
use crate::{DType, Storage, Tensor, layout::Layout, layout::try_numel, tensor::with_capacity};

/// The seed the default generator starts from, so that runs are reproducible by default.
const DEFAULT_SEED: u64 = 0x7a9e_67ad;

/// The xoshiro256++ generator (Blackman and Vigna), written out so that its state can be
/// saved in a checkpoint and restored. Its numbers are those of `rand`'s
/// `Xoshiro256PlusPlus` for the same seed.
///
/// ```
/// use rand::RngExt;
/// let mut g = tapegrad_tape::Generator::seeded(7);
/// let x: f64 = g.random();
/// assert!((0.0..1.0).contains(&x));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generator {
    s: [u64; 4],
}

/// A generator's whole state, 32 bytes: what a checkpoint saves to resume the random
/// sequence exactly ([`get_rng_state`], [`set_rng_state`]).
///
/// ```
/// use tapegrad_tape::RngState;
/// let state = tapegrad_tape::get_rng_state();
/// assert_eq!(RngState::from_hex(&state.to_hex()).unwrap(), state);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RngState(pub [u64; 4]);

impl RngState {
    /// The state as 64 hexadecimal digits (four 64-bit words), for text metadata.
    ///
    /// ```
    /// assert_eq!(tapegrad_tape::RngState([1, 2, 3, 4]).to_hex().len(), 64);
    /// ```
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|w| format!("{w:016x}")).collect()
    }

    /// Parses [`RngState::to_hex`]'s text; `None` unless it is 64 hexadecimal digits.
    ///
    /// ```
    /// use tapegrad_tape::RngState;
    /// assert!(RngState::from_hex("not hex").is_none());
    /// ```
    pub fn from_hex(text: &str) -> Option<RngState> {
        if text.len() != 64 || !text.is_ascii() {
            return None;
        }
        let mut words = [0u64; 4];
        for (i, w) in words.iter_mut().enumerate() {
            *w = u64::from_str_radix(&text[16 * i..16 * (i + 1)], 16).ok()?;
        }
        Some(RngState(words))
    }
}

impl Generator {
    /// A generator seeded from one number (by SplitMix64, as `rand`'s `seed_from_u64`).
    ///
    /// ```
    /// use tapegrad_tape::Generator;
    /// assert_eq!(Generator::seeded(1), Generator::seeded(1));
    /// assert_ne!(Generator::seeded(1), Generator::seeded(2));
    /// ```
    pub const fn seeded(seed: u64) -> Generator {
        let mut x = seed;
        let mut s = [0u64; 4];
        let mut i = 0;
        while i < 4 {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            s[i] = z ^ (z >> 31);
            i += 1;
        }
        Generator { s }
    }

    /// The generator's state.
    ///
    /// ```
    /// let g = tapegrad_tape::Generator::seeded(3);
    /// assert_eq!(tapegrad_tape::Generator::from_state(g.state()).unwrap(), g);
    /// ```
    pub fn state(&self) -> RngState {
        RngState(self.s)
    }

    /// A generator resuming from `state`; `None` for the all-zero state, which xoshiro
    /// cannot leave.
    ///
    /// ```
    /// assert!(tapegrad_tape::Generator::from_state(tapegrad_tape::RngState([0; 4])).is_none());
    /// ```
    pub fn from_state(state: RngState) -> Option<Generator> {
        (state.0 != [0; 4]).then_some(Generator { s: state.0 })
    }

    /// Advances the generator by 2^128 draws: the start of a stream that no draw from the
    /// current position will reach.
    ///
    /// ```
    /// let mut g = tapegrad_tape::Generator::seeded(3);
    /// let before = g.clone();
    /// g.jump();
    /// assert_ne!(g, before);
    /// ```
    pub fn jump(&mut self) {
        const JUMP: [u64; 4] = [
            0x180e_c6d3_3cfd_0aba,
            0xd5a6_1266_f0c9_392c,
            0xa958_2618_e03f_c9aa,
            0x39ab_dc45_29b1_661c,
        ];
        let mut acc = [0u64; 4];
        for word in JUMP {
            for bit in 0..64 {
                if word & (1 << bit) != 0 {
                    for (a, s) in acc.iter_mut().zip(self.s) {
                        *a ^= s;
                    }
                }
                self.step();
            }
        }
        self.s = acc;
    }

    #[inline]
    fn step(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }
}

impl TryRng for Generator {
    type Error = Infallible;

    #[inline]
    fn try_next_u32(&mut self) -> std::result::Result<u32, Infallible> {
        // The upper bits: xoshiro's lowest bits are its weakest.
        Ok((self.step() >> 32) as u32)
    }

    #[inline]
    fn try_next_u64(&mut self) -> std::result::Result<u64, Infallible> {
        Ok(self.step())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> std::result::Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.step().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

/// The generator that threads' streams are cut from.
static DEFAULT_GENERATOR: Mutex<Generator> = Mutex::new(Generator::seeded(DEFAULT_SEED));

thread_local! {
    /// This thread's stream, cut from the default generator at its first draw.
    static THREAD_GENERATOR: RefCell<Option<Generator>> = const { RefCell::new(None) };
}

/// The next unused stream of the default generator.
fn next_stream() -> Generator {
    let mut default = DEFAULT_GENERATOR.lock().unwrap_or_else(PoisonError::into_inner);
    let stream = default.clone();
    default.jump();
    stream
}

/// Seeds the random numbers that `randn`, `rand`, initialisers and dropout draw: PyTorch's
/// `torch.manual_seed`. The calling thread's stream restarts from `seed`, and threads that
/// draw for the first time afterwards get streams cut from the same seed. Threads that have
/// drawn already keep their own streams (call `manual_seed` in each worker thread that must
/// be reproducible).
///
/// ```
/// use tapegrad_tape::{Tensor, manual_seed};
/// manual_seed(7);
/// let a = Tensor::randn(&[3]).to_vec::<f32>();
/// manual_seed(7);
/// assert_eq!(a, Tensor::randn(&[3]).to_vec::<f32>());
/// ```
pub fn manual_seed(seed: u64) {
    let stream = {
        let mut default = DEFAULT_GENERATOR.lock().unwrap_or_else(PoisonError::into_inner);
        *default = Generator::seeded(seed);
        let stream = default.clone();
        default.jump();
        stream
    };
    THREAD_GENERATOR.with(|g| *g.borrow_mut() = Some(stream));
}

/// The state of the calling thread's stream, to save in a checkpoint.
///
/// ```
/// use tapegrad_tape::{Tensor, get_rng_state, set_rng_state};
/// let state = get_rng_state();
/// let a = Tensor::rand(&[4]).to_vec::<f32>();
/// set_rng_state(state).unwrap();
/// assert_eq!(a, Tensor::rand(&[4]).to_vec::<f32>());
/// ```
pub fn get_rng_state() -> RngState {
    with_generator(|g| g.state())
}

/// Resumes the calling thread's stream from a state [`get_rng_state`] returned. The
/// all-zero state, which no generator reaches, is an error.
///
/// ```
/// assert!(tapegrad_tape::set_rng_state(tapegrad_tape::RngState([0; 4])).is_err());
/// ```
#[track_caller]
pub fn set_rng_state(state: RngState) -> Result<()> {
    let generator = Generator::from_state(state).ok_or_else(|| Error::InvalidArgument {
        op: "set_rng_state",
        message: "the all-zero state is not a state of the generator".into(),
        location: Location::caller(),
    })?;
    THREAD_GENERATOR.with(|g| *g.borrow_mut() = Some(generator));
    Ok(())
}

/// Runs `f` with the calling thread's generator, for code that draws its own random numbers
/// (initialisers, dropout masks, shuffling) from the same seeded stream. `f` must not draw
/// through `with_generator` again (the generator is borrowed while it runs).
///
/// ```
/// use rand::RngExt;
/// let x: f64 = tapegrad_tape::with_generator(|rng| rng.random());
/// assert!((0.0..1.0).contains(&x));
/// ```
#[track_caller]
pub fn with_generator<R>(f: impl FnOnce(&mut Generator) -> R) -> R {
    THREAD_GENERATOR.with(|g| {
        let Ok(mut slot) = g.try_borrow_mut() else {
            panic!(
                "with_generator: the generator is already in use by an enclosing \
                with_generator call"
            )
        };
        f(slot.get_or_insert_with(next_stream))
    })
}

/// `n` standard normal samples, handed to `take` a block at a time: Box-Muller on pairs of
/// uniforms drawn in order, each pair giving two samples (the block's cosine halves, then
/// its sine halves; an odd count leaves the last sine unused), the logarithms, cosines and
/// sines computed a block at a time in vector instructions.
fn normal_blocks(n: usize, mut take: impl FnMut(&[f64])) {
    const BLOCK: usize = 4096;
    let size = BLOCK.min(n);
    let pairs = size.div_ceil(2);
    let (mut u1, mut u2, mut z) = (vec![0.0; pairs], vec![0.0; pairs], vec![0.0; 2 * pairs]);
    with_generator(|rng| {
        for start in (0..n).step_by(BLOCK) {
            let len = BLOCK.min(n - start);
            let pairs = len.div_ceil(2);
            for (a, b) in u1[..pairs].iter_mut().zip(&mut u2[..pairs]) {
                *a = 1.0 - rng.random::<f64>(); // in (0, 1]: ln(u1) is finite
                *b = rng.random::<f64>();
            }
            let (cosines, sines) = z[..2 * pairs].split_at_mut(pairs);
            tapegrad_kernels::random::box_muller(&u1[..pairs], &u2[..pairs], cosines, sines);
            take(&z[..len]);
        }
    });
}

/// Panics unless `dtype` is F32 or F64: random sampling fills float tensors only.
#[track_caller]
fn ensure_float_dtype(op: &'static str, dtype: DType, location: &'static Location<'static>) {
    if dtype != DType::F32 && dtype != DType::F64 {
        or_panic(Err(Error::InvalidArgument {
            op,
            message: format!(
                "random sampling needs a float dtype (float32 or float64), got {dtype}"
            ),
            location,
        }))
    }
}

#[track_caller]
fn sample(
    op: &'static str,
    shape: &[usize],
    dtype: DType,
    draw: impl Fn(&mut Generator) -> f64,
) -> Tensor {
    let location = Location::caller();
    ensure_float_dtype(op, dtype, location);
    let n = or_panic(try_numel(op, shape, location));
    let storage = match dtype {
        DType::F32 => {
            let mut values = or_panic(with_capacity(op, n, location));
            with_generator(|rng| values.extend((0..n).map(|_| draw(rng) as f32)));
            Storage::from_vec(values)
        }
        _ => {
            let mut values = or_panic(with_capacity(op, n, location));
            with_generator(|rng| values.extend((0..n).map(|_| draw(rng))));
            Storage::from_vec(values)
        }
    };
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
    #[track_caller]
    pub fn randn(shape: &[usize]) -> Tensor {
        Self::randn_dtype(shape, DType::F32)
    }

    /// [`Tensor::randn`] with a chosen dtype.
    ///
    /// ```
    /// use tapegrad_tape::{DType, Tensor};
    /// assert_eq!(Tensor::randn_dtype(&[2], DType::F64).dtype(), DType::F64);
    /// ```
    #[track_caller]
    pub fn randn_dtype(shape: &[usize], dtype: DType) -> Tensor {
        let location = Location::caller();
        ensure_float_dtype("randn", dtype, location);
        let n = or_panic(try_numel("randn", shape, location));
        let storage = if dtype == DType::F32 {
            let mut values = or_panic(with_capacity("randn", n, location));
            normal_blocks(n, |z| values.extend(z.iter().map(|&v| v as f32)));
            Storage::from_vec(values)
        } else {
            let mut values = or_panic(with_capacity("randn", n, location));
            normal_blocks(n, |z| values.extend_from_slice(z));
            Storage::from_vec(values)
        };
        Tensor::from_storage(storage, Layout::contiguous(shape))
    }

    /// Samples uniformly from `[0, 1)` (f32).
    ///
    /// ```
    /// let t = tapegrad_tape::Tensor::rand(&[100]);
    /// assert!(t.to_vec::<f32>().iter().all(|v| (0.0..1.0).contains(v)));
    /// ```
    #[track_caller]
    pub fn rand(shape: &[usize]) -> Tensor {
        Self::rand_dtype(shape, DType::F32)
    }

    /// [`Tensor::rand`] with a chosen dtype.
    ///
    /// ```
    /// use tapegrad_tape::{DType, Tensor};
    /// assert_eq!(Tensor::rand_dtype(&[2], DType::F64).dtype(), DType::F64);
    /// ```
    #[track_caller]
    pub fn rand_dtype(shape: &[usize], dtype: DType) -> Tensor {
        sample("rand", shape, dtype, |rng| rng.random::<f64>())
    }

    /// Samples uniformly from `[low, high)` (f32), e.g. for PyTorch's default initialisers.
    ///
    /// ```
    /// let t = tapegrad_tape::Tensor::uniform(&[100], -2.0, 2.0);
    /// assert!(t.to_vec::<f32>().iter().all(|v| (-2.0..2.0).contains(v)));
    /// ```
    #[track_caller]
    pub fn uniform(shape: &[usize], low: f64, high: f64) -> Tensor {
        Self::uniform_dtype(shape, low, high, DType::F32)
    }

    /// [`Tensor::uniform`] with a chosen dtype.
    ///
    /// ```
    /// use tapegrad_tape::{DType, Tensor};
    /// assert_eq!(Tensor::uniform_dtype(&[1], 0.0, 1.0, DType::F64).dtype(), DType::F64);
    /// ```
    #[track_caller]
    pub fn uniform_dtype(shape: &[usize], low: f64, high: f64, dtype: DType) -> Tensor {
        sample("uniform", shape, dtype, |rng| low + (high - low) * rng.random::<f64>())
    }

    /// Integers drawn uniformly from `[low, high)`, as an int64 tensor: PyTorch's
    /// `torch.randint(low, high, size)`, for random labels and indices. Every value of the
    /// range is equally likely (no modulo bias). Panics if `low >= high`.
    ///
    /// ```
    /// use tapegrad_tape::{DType, Tensor};
    /// let labels = Tensor::randint(0, 10, &[64]);
    /// assert_eq!((labels.shape(), labels.dtype()), (&[64][..], DType::I64));
    /// assert!(labels.to_vec::<i64>().iter().all(|v| (0..10).contains(v)));
    /// ```
    #[track_caller]
    pub fn randint(low: i64, high: i64, shape: &[usize]) -> Tensor {
        or_panic(Self::try_randint(low, high, shape))
    }

    /// [`Tensor::randint`], returning an error instead of panicking.
    ///
    /// ```
    /// assert!(tapegrad_tape::Tensor::try_randint(3, 3, &[2]).is_err()); // an empty range
    /// ```
    #[track_caller]
    pub fn try_randint(low: i64, high: i64, shape: &[usize]) -> Result<Tensor> {
        let location = Location::caller();
        if low >= high {
            return Err(Error::InvalidArgument {
                op: "randint",
                message: format!("the range [{low}, {high}) is empty: low must be below high"),
                location,
            });
        }
        let n = try_numel("randint", shape, location)?;
        let mut values = with_capacity("randint", n, location)?;
        with_generator(|rng| values.extend((0..n).map(|_| rng.random_range(low..high))));
        Ok(Tensor::from_storage(Storage::from_vec(values), Layout::contiguous(shape)))
    }

    /// The integers `0..n` in a random order, as an int64 tensor: PyTorch's
    /// `torch.randperm(n)`, for shuffling a data set or drawing minibatch indices
    /// (`x.index_select(0, &perm.narrow(0, 0, 64))`). Every order is equally likely
    /// (Fisher-Yates over the seeded generator).
    ///
    /// ```
    /// use tapegrad_tape::{DType, Tensor};
    /// let perm = Tensor::randperm(5);
    /// assert_eq!((perm.shape(), perm.dtype()), (&[5][..], DType::I64));
    /// let mut sorted = perm.to_vec::<i64>();
    /// sorted.sort();
    /// assert_eq!(sorted, vec![0, 1, 2, 3, 4]);
    /// ```
    #[track_caller]
    pub fn randperm(n: usize) -> Tensor {
        or_panic(Self::try_randperm(n))
    }

    /// [`Tensor::randperm`], returning an error instead of panicking.
    ///
    /// ```
    /// assert!(tapegrad_tape::Tensor::try_randperm(usize::MAX).is_err()); // too many to hold
    /// ```
    #[track_caller]
    pub fn try_randperm(n: usize) -> Result<Tensor> {
        let location = Location::caller();
        try_numel("randperm", &[n], location)?;
        let mut values: Vec<i64> = with_capacity("randperm", n, location)?;
        values.extend((0..n).map(|i| i as i64));
        with_generator(|rng| {
            for i in (1..n).rev() {
                values.swap(i, rng.random_range(0..=i));
            }
        });
        Ok(Tensor::from_storage(Storage::from_vec(values), Layout::contiguous(&[n])))
    }

    /// Uniform samples from `[0, 1)` in this tensor's shape and float dtype (PyTorch's
    /// `torch.rand_like`). Panics unless the tensor is float32 or float64.
    ///
    /// ```
    /// use tapegrad_tape::{DType, Tensor};
    /// let noise = Tensor::zeros_dtype(&[2, 3], DType::F64).rand_like();
    /// assert_eq!((noise.shape(), noise.dtype()), (&[2, 3][..], DType::F64));
    /// ```
    #[track_caller]
    pub fn rand_like(&self) -> Tensor {
        Self::rand_dtype(self.shape(), self.dtype())
    }

    /// Standard normal samples in this tensor's shape and float dtype (PyTorch's
    /// `torch.randn_like`), e.g. the noise of a Langevin step or a reparameterised sample.
    /// Panics unless the tensor is float32 or float64.
    ///
    /// ```
    /// let x = tapegrad_tape::Tensor::ones(&[4, 2]);
    /// assert_eq!(x.randn_like().shape(), &[4, 2]);
    /// ```
    #[track_caller]
    pub fn randn_like(&self) -> Tensor {
        Self::randn_dtype(self.shape(), self.dtype())
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::Xoshiro256PlusPlus;
    use rand::{Rng, SeedableRng};

    use super::*;

    #[test]
    fn generator_matches_rand_xoshiro256plusplus() {
        for seed in [0, 1, DEFAULT_SEED, u64::MAX] {
            let (mut ours, mut theirs) =
                (Generator::seeded(seed), Xoshiro256PlusPlus::seed_from_u64(seed));
            for _ in 0..100 {
                assert_eq!(ours.next_u64(), theirs.next_u64());
            }
        }
    }

    #[test]
    fn randint_covers_its_range_evenly_and_follows_the_seed() {
        manual_seed(11);
        let a = Tensor::randint(-3, 4, &[7000]).to_vec::<i64>();
        let mut counts = [0usize; 7];
        for v in &a {
            counts[usize::try_from(v + 3).expect("at least low")] += 1;
        }
        // 1000 expected per value; 5 standard deviations is about 150.
        assert!(counts.iter().all(|&c| (850..1150).contains(&c)), "{counts:?}");
        manual_seed(11);
        assert_eq!(Tensor::randint(-3, 4, &[7000]).to_vec::<i64>(), a);
        let extremes = Tensor::randint(i64::MIN, i64::MAX, &[4]).to_vec::<i64>();
        assert!(extremes.iter().all(|&v| v < i64::MAX));
        assert_eq!(Tensor::randint(5, 6, &[3]).to_vec::<i64>(), vec![5, 5, 5]);
        let message = Tensor::try_randint(2, 1, &[1]).unwrap_err().to_string();
        assert!(message.contains("randint") && message.contains("[2, 1)"), "{message}");
    }

    #[test]
    fn randperm_is_a_permutation_that_follows_the_seed_and_moves_every_position() {
        manual_seed(3);
        let a = Tensor::randperm(1000).to_vec::<i64>();
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<i64>>());
        manual_seed(3);
        assert_eq!(Tensor::randperm(1000).to_vec::<i64>(), a);
        // Where element 0 lands, over many shuffles of 4: each place a quarter of the time
        // (1000 expected, 5 standard deviations about 140).
        let mut places = [0usize; 4];
        for _ in 0..4000 {
            let perm = Tensor::randperm(4).to_vec::<i64>();
            places[perm.iter().position(|&v| v == 0).expect("0 is in it")] += 1;
        }
        assert!(places.iter().all(|&c| (860..1140).contains(&c)), "{places:?}");
        assert_eq!(Tensor::randperm(0).shape(), &[0]);
        assert_eq!(Tensor::randperm(1).to_vec::<i64>(), vec![0]);
        let message = Tensor::try_randperm(usize::MAX).unwrap_err().to_string();
        assert!(message.contains("randperm"), "{message}");
    }

    #[test]
    fn samples_like_a_tensor_take_its_shape_and_dtype() {
        let x = Tensor::zeros_dtype(&[3, 5], DType::F64);
        for sample in [x.rand_like(), x.randn_like()] {
            assert_eq!((sample.shape(), sample.dtype()), (&[3, 5][..], DType::F64));
        }
        assert!(x.rand_like().to_vec::<f64>().iter().all(|v| (0.0..1.0).contains(v)));
        let labels = Tensor::zeros_dtype(&[2], DType::I64);
        let labels = std::panic::AssertUnwindSafe(labels);
        assert!(std::panic::catch_unwind(|| labels.randn_like()).is_err());
    }

    #[test]
    fn sampling_other_dtypes_is_a_clear_error() {
        for dtype in [DType::I64, DType::Bool] {
            let panic = std::panic::catch_unwind(|| Tensor::randn_dtype(&[2], dtype))
                .expect_err("only float tensors are sampled");
            let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
            assert!(message.contains("randn") && message.contains(&dtype.to_string()), "{message}");
            assert!(std::panic::catch_unwind(|| Tensor::rand_dtype(&[2], dtype)).is_err());
        }
    }

    /// The jump is a power of the step's linear map, so it commutes with a step; and the
    /// jumped stream shares none of the first draws of the original.
    #[test]
    fn jump_is_a_power_of_the_step() {
        let mut a = Generator::seeded(5);
        let mut b = a.clone();
        a.jump();
        a.step();
        b.step();
        b.jump();
        assert_eq!(a, b, "the jump commutes with a step");
        let mut original = Generator::seeded(5);
        let first: Vec<u64> = (0..1000).map(|_| original.next_u64()).collect();
        let mut jumped = Generator::seeded(5);
        jumped.jump();
        assert!((0..1000).all(|_| !first.contains(&jumped.next_u64())));
    }
}
