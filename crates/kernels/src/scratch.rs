//! Per-thread buffers for a kernel's intermediate values, kept between calls.
//!
//! Winograd's convolutions transform a round of tiles into buffers of a megabyte or more
//! per task and call. Allocating them zeroed each time costs a `memset` of every byte,
//! though the kernels overwrite every element they later read.
//! A [`Scratch`] buffer comes from this thread's spares instead, holding whatever values it
//! held before. So do the column matrices of the im2col convolutions.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};
use std::thread::LocalKey;

thread_local! {
    static SPARE_F32: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    static SPARE_F64: RefCell<Vec<Vec<f64>>> = const { RefCell::new(Vec::new()) };
}

/// Spare buffers kept per thread and element type.
const MAX_KEPT: usize = 8;
/// Bytes of the largest buffer kept (16 MiB): a rare huge one is freed, not held.
const MAX_KEPT_BYTES: usize = 16 << 20;

/// Element types with per-thread spare buffers.
pub(crate) trait ScratchElement: Copy + Default + 'static {
    fn spares() -> &'static LocalKey<RefCell<Vec<Vec<Self>>>>;
}

impl ScratchElement for f32 {
    fn spares() -> &'static LocalKey<RefCell<Vec<Vec<Self>>>> {
        &SPARE_F32
    }
}

impl ScratchElement for f64 {
    fn spares() -> &'static LocalKey<RefCell<Vec<Vec<Self>>>> {
        &SPARE_F64
    }
}

/// A buffer whose values are unspecified: left from earlier use on this thread (or
/// zero). For buffers a kernel writes in full before it reads them.
///
/// The vector keeps every element it ever held (its length is the most it was asked for),
/// and the buffer is its first `len`: a spare serves a shorter request and then a longer
/// one again without zeroing what it already holds.
pub(crate) struct Scratch<T: ScratchElement = f32> {
    values: Vec<T>,
    len: usize,
}

impl<T: ScratchElement> Scratch<T> {
    /// A buffer of `len` elements.
    pub fn new(len: usize) -> Scratch<T> {
        let spare = T::spares().with(|spare| {
            let mut spare = spare.borrow_mut();
            // The first that holds enough, else the largest (grown below).
            let fits = spare.iter().position(|v| v.len() >= len);
            let pick = fits.or_else(|| (0..spare.len()).max_by_key(|&i| spare[i].len()));
            pick.map(|i| spare.swap_remove(i))
        });
        let mut values = spare.unwrap_or_default();
        if values.len() < len {
            values.resize(len, T::default());
        }
        Scratch { values, len }
    }
}

impl<T: ScratchElement> Deref for Scratch<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.values[..self.len]
    }
}

impl<T: ScratchElement> DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.values[..self.len]
    }
}

impl<T: ScratchElement> Drop for Scratch<T> {
    fn drop(&mut self) {
        let values = std::mem::take(&mut self.values);
        if values.capacity() > MAX_KEPT_BYTES / std::mem::size_of::<T>() {
            return;
        }
        // A thread being torn down has no spares left to keep it in.
        let _ = T::spares().try_with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < MAX_KEPT {
                spare.push(values);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_have_their_length_and_come_back() {
        let first = Scratch::<f32>::new(1000);
        assert_eq!(first.len(), 1000);
        let at = first.as_ptr();
        drop(first);
        // The same allocation serves a request it can hold, at the requested length.
        let again = Scratch::<f32>::new(10);
        assert_eq!((again.len(), again.as_ptr()), (10, at));
        // A request up to what it held before takes it as it is; a larger one grows it,
        // with zeros past what it held.
        drop(again);
        let mut longer = Scratch::<f32>::new(1000);
        assert_eq!((longer.len(), longer.as_ptr()), (1000, at));
        longer.fill(1.0);
        drop(longer);
        let grown = Scratch::<f32>::new(2000);
        assert_eq!(grown.len(), 2000);
        assert!(grown[..1000].iter().all(|&v| v == 1.0));
        assert!(grown[1000..].iter().all(|&v| v == 0.0));
    }
}
