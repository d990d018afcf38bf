//! Heap values written straight into their allocation.
//!
//! `Rc::new(value)` and `Box::new(value)` assemble the value on the stack and copy it over,
//! reading back what was just stored; recording an operation builds two such values, and
//! the copy showed in the per-operation cost (docs/BENCHMARKS.md). These write the fields
//! into the fresh allocation instead.

use std::rc::Rc;

/// `Rc::new(make())`, with `make`'s value written into the allocation.
///
/// ```
/// let rc = tapegrad_kernels::in_place::rc(|| [1u64, 2, 3]);
/// assert_eq!(*rc, [1, 2, 3]);
/// ```
#[inline(always)]
pub fn rc<T>(make: impl FnOnce() -> T) -> Rc<T> {
    // `Rc::new_uninit` computes its allocation's layout in a call at run time; an `Rc` of
    // an uninitialised value has it as a constant, and once optimised nothing is copied.
    let mut rc = Rc::new(std::mem::MaybeUninit::<T>::uninit());
    Rc::get_mut(&mut rc).expect("a fresh allocation has no other owner").write(make());
    // SAFETY: written on the line above.
    unsafe { rc.assume_init() }
}

/// `Box::new(make())`, with `make`'s value written into the allocation.
///
/// ```
/// let b = tapegrad_kernels::in_place::boxed(|| (1u8, 2.5f64));
/// assert_eq!(*b, (1, 2.5));
/// ```
#[inline(always)]
pub fn boxed<T>(make: impl FnOnce() -> T) -> Box<T> {
    let mut b = Box::<T>::new_uninit();
    b.write(make());
    // SAFETY: written on the line above.
    unsafe { b.assume_init() }
}
