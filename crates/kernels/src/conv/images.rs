//! A convolution's output buffer as the tasks of a form write it: whole images at a time.
//!
//! Outputs used to be allocated zeroed and then written, a pass over all of their memory
//! before the form started (and the data left the cache in between). Here each task clears
//! the images it takes just before it writes them, while they are in its cache; images no
//! task took are cleared at the end, so the buffer is initialised in full either way.

use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::Real;
use crate::parallel::cleared;

/// The output of one form: `images` images of `image` elements, each taken (and cleared) at
/// most once.
pub(super) struct Images<'a, T> {
    ptr: *mut T,
    image: usize,
    taken: Vec<AtomicBool>,
    _slots: PhantomData<&'a mut [MaybeUninit<T>]>,
}

// SAFETY: the tasks of a form take disjoint ranges of images (`take` checks it), of a
// buffer borrowed for the whole of `'a`.
unsafe impl<T: Send> Send for Images<'_, T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Images<'_, T> {}

impl<'a, T: Real> Images<'a, T> {
    /// The images of `slots`, `image` elements each (a whole number of them).
    pub(super) fn new(slots: &'a mut [MaybeUninit<T>], image: usize) -> Self {
        assert!(
            image > 0 && slots.len().is_multiple_of(image),
            "conv: the output is not whole images"
        );
        let taken = (0..slots.len() / image).map(|_| AtomicBool::new(false)).collect();
        Images { ptr: slots.as_mut_ptr().cast(), image, taken, _slots: PhantomData }
    }

    /// The images of a buffer that holds values already (a form's second attempt).
    pub(super) fn over(values: &'a mut [T], image: usize) -> Self {
        // SAFETY: `MaybeUninit<T>` has `T`'s layout, and only initialised values (zeros and
        // results) are ever written through the slots.
        let slots = unsafe {
            std::slice::from_raw_parts_mut(
                values.as_mut_ptr().cast::<MaybeUninit<T>>(),
                values.len(),
            )
        };
        Images::new(slots, image)
    }

    /// Images `first..first + count`, cleared, for the calling task to write.
    ///
    /// # Panics
    /// If the range lies outside the buffer or any of its images was taken before.
    #[allow(clippy::mut_from_ref)] // each range is handed out once: checked below
    pub(super) fn take(&self, first: usize, count: usize) -> &mut [T] {
        assert!(first + count <= self.taken.len(), "conv: images out of range");
        for flag in &self.taken[first..first + count] {
            assert!(!flag.swap(true, Ordering::Relaxed), "conv: an output image taken twice");
        }
        // SAFETY: the range lies inside the buffer (asserted above) and no other task holds
        // any of its images (each is taken once); the slice borrows `self`, which borrows
        // the buffer for `'a`.
        let slots = unsafe {
            std::slice::from_raw_parts_mut(
                self.ptr.add(first * self.image).cast::<MaybeUninit<T>>(),
                count * self.image,
            )
        };
        cleared(slots, T::ZERO)
    }

    /// Every image, not cleared, for a form that clears each part of it before it writes
    /// there: the form must clear (or write) every slot, as `written_by_images` then reads
    /// the whole buffer as values.
    pub(super) fn all_uninit(&mut self) -> &mut [MaybeUninit<T>] {
        let len = self.taken.len() * self.image;
        for flag in &self.taken {
            assert!(!flag.swap(true, Ordering::Relaxed), "conv: an output image taken twice");
        }
        // SAFETY: the whole buffer, none of it handed out before (checked above); the
        // slice borrows `self` mutably.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.cast::<MaybeUninit<T>>(), len) }
    }

    /// Clears the images no task took: afterwards every element of the buffer holds a
    /// value.
    pub(super) fn finish(self) {
        for (index, flag) in self.taken.iter().enumerate() {
            if !flag.load(Ordering::Relaxed) {
                self.take(index, 1);
            }
        }
    }
}

/// A vector of `len` elements (whole images of `image` each) written by a form: `first`
/// fills it and says whether its result stands (Winograd's forms refuse a non-finite one);
/// when it does not, `again` writes the whole output once more, over the values `first`
/// left.
pub(super) fn written_by_images<T: Real>(
    len: usize,
    image: usize,
    first: impl FnOnce(&mut Images<'_, T>) -> bool,
    again: impl FnOnce(&Images<'_, T>),
) -> Vec<T> {
    let mut values = Vec::with_capacity(len);
    if len == 0 {
        return values;
    }
    let stands = {
        let mut out = Images::new(&mut values.spare_capacity_mut()[..len], image);
        let stands = first(&mut out);
        out.finish();
        stands
    };
    // SAFETY: every image of the first `len` slots was cleared, by the task that took it, by
    // `finish`, or (a form that took the whole buffer with `all_uninit`, the depthwise
    // ones) plane by plane by that form before it wrote the plane.
    unsafe { values.set_len(len) };
    if !stands {
        let out = Images::over(&mut values, image);
        again(&out);
        out.finish();
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel::THRESHOLD;

    /// Taken images come back as zeros over whatever the memory held, and the ones no task
    /// took are zeros after `finish`.
    #[test]
    fn every_image_is_cleared_once_taken_or_finished() {
        let mut buf = vec![f32::NAN; 12];
        let images = Images::over(&mut buf, 3);
        let middle = images.take(1, 2);
        assert_eq!(middle, &[0.0; 6]);
        middle.fill(5.0);
        images.finish();
        assert_eq!(buf, [0.0, 0.0, 0.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    #[should_panic(expected = "taken twice")]
    fn an_image_is_handed_out_once() {
        let mut buf = vec![0.0f64; 8];
        let images = Images::over(&mut buf, 2);
        images.take(0, 2);
        images.take(1, 1);
    }

    /// A result that does not stand is written again over what the first form left, and
    /// images neither form took read as zeros.
    #[test]
    fn a_refused_result_is_written_again() {
        let got: Vec<f32> = written_by_images(
            6,
            2,
            |out| {
                out.take(0, 3).fill(f32::NAN);
                false
            },
            |out| out.take(1, 1).fill(4.0),
        );
        assert_eq!(got, [0.0, 0.0, 4.0, 4.0, 0.0, 0.0]);
        let kept: Vec<f64> = written_by_images(
            4,
            2,
            |out| {
                out.take(1, 1).fill(1.0);
                true
            },
            |_| unreachable!("the first result stands"),
        );
        assert_eq!(kept, [0.0, 0.0, 1.0, 1.0]);
    }

    /// `all_uninit` hands out the whole buffer, so no image can be taken again.
    #[test]
    #[should_panic(expected = "taken twice")]
    fn all_uninit_takes_every_image() {
        let mut buf = vec![1.0f32; 4 * THRESHOLD];
        let mut images = Images::over(&mut buf, THRESHOLD);
        assert_eq!(images.all_uninit().len(), 4 * THRESHOLD);
        let _ = images.take(3, 1);
    }
}
