//! Flat, reference-counted element buffers, shareable across threads.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use crate::DType;

/// Elements a [`Buffer`] holds in place, without a heap allocation.
const INLINE: usize = 2;

/// The elements of one storage: up to two kept in place (a scalar loss, one step of a
/// scalar chain), more in a shared heap vector.
///
/// Small tensors are where per-op overhead shows: keeping their values inline saves the two
/// allocations (the vector and its reference count) that every result would otherwise cost.
/// Clones of an inline buffer copy it; clones of a heap buffer share it, and
/// [`Storage::make_mut`] copies first if anyone else still holds it. Either way, writing
/// through one handle is never seen through another.
///
/// ```
/// use tapegrad_tape::{Buffer, Storage};
/// let s = Storage::from_vec(vec![1.0f32, 2.0, 3.0]);
/// let Storage::F32(buffer) = &s else { unreachable!() };
/// let values: &Buffer<f32> = buffer;
/// assert_eq!(&values[..], &[1.0, 2.0, 3.0]); // a buffer derefs to a slice
/// ```
#[derive(Clone)]
pub struct Buffer<T>(Repr<T>);

#[derive(Clone)]
enum Repr<T> {
    Inline {
        len: u8,
        values: [T; INLINE],
    },
    /// Elements beside their counts, in one allocation: what kernels build for results
    /// below the threading threshold ([`Buffer::from_fn`]).
    Slice(Arc<[T]>),
    /// A vector handed over whole: large results are not copied.
    Shared(Arc<Vec<T>>),
}

impl<T: StorageElement> Buffer<T> {
    /// Takes ownership of `values`, moving a short vector's elements in place.
    ///
    /// ```
    /// use tapegrad_tape::Buffer;
    /// assert_eq!(&Buffer::from_vec(vec![7i64])[..], &[7]);
    /// ```
    pub fn from_vec(values: Vec<T>) -> Self {
        if values.len() <= INLINE {
            Self::from_small_iter(values.len(), values.into_iter())
        } else {
            Buffer(Repr::Shared(Arc::new(values)))
        }
    }

    /// The first `len` items of `iter` kept in place; `len` is at most [`Buffer::INLINE`].
    fn from_small_iter(len: usize, iter: impl Iterator<Item = T>) -> Self {
        debug_assert!(len <= INLINE);
        let mut values = [T::cast_from_f64(0.0); INLINE];
        for (slot, v) in values.iter_mut().zip(iter) {
            *slot = v;
        }
        Buffer(Repr::Inline { len: len as u8, values })
    }

    /// The `n` values `f(0), ..., f(n - 1)`; without an allocation when `n` fits in place.
    ///
    /// ```
    /// use tapegrad_tape::Buffer;
    /// assert_eq!(&Buffer::from_fn(3, |i| i as f64 * 0.5)[..], &[0.0, 0.5, 1.0]);
    /// ```
    pub fn from_fn(n: usize, f: impl FnMut(usize) -> T) -> Self {
        if n <= INLINE {
            Self::from_small_iter(n, (0..n).map(f))
        } else {
            Buffer(Repr::Slice((0..n).map(f).collect()))
        }
    }

    /// A buffer over values already in one shared allocation (what the kernels' `*_to_arc`
    /// loops write), without copying them.
    pub(crate) fn from_arc(values: Arc<[T]>) -> Self {
        Buffer(Repr::Slice(values))
    }

    /// How many elements fit in place: results this small cost no allocation.
    ///
    /// ```
    /// assert!(tapegrad_tape::Buffer::<f32>::INLINE >= 1);
    /// ```
    pub const INLINE: usize = INLINE;

    /// Mutable access to the elements, copying them first if another storage shares them.
    ///
    /// ```
    /// use tapegrad_tape::Buffer;
    /// let mut b = Buffer::from_vec(vec![1.0f32; 4]);
    /// let shared = b.clone();
    /// b.make_mut()[0] = 5.0;
    /// assert_eq!((b[0], shared[0]), (5.0, 1.0));
    /// // The same for a buffer built in place (one allocation) and for an inline one.
    /// for n in [1, 4] {
    ///     let mut c = Buffer::from_fn(n, |i| i as f64);
    ///     let shared = c.clone();
    ///     c.make_mut()[0] = 9.0;
    ///     assert_eq!((c[0], shared[0]), (9.0, 0.0));
    /// }
    /// ```
    pub fn make_mut(&mut self) -> &mut [T] {
        match &mut self.0 {
            Repr::Inline { len, values } => &mut values[..*len as usize],
            Repr::Slice(v) => Arc::make_mut(v),
            Repr::Shared(v) => Arc::make_mut(v).as_mut_slice(),
        }
    }

    /// Whether two buffers are one allocation (inline buffers never are: clones copy them).
    fn same_allocation(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Repr::Shared(a), Repr::Shared(b)) => Arc::ptr_eq(a, b),
            (Repr::Slice(a), Repr::Slice(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl<T> Deref for Buffer<T> {
    type Target = [T];

    #[inline]
    fn deref(&self) -> &[T] {
        match &self.0 {
            Repr::Inline { len, values } => &values[..*len as usize],
            Repr::Slice(v) => v,
            Repr::Shared(v) => v.as_slice(),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Buffer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// A tensor's elements in one flat buffer, f32 or f64.
///
/// Clones share a heap buffer, so views cost no copy; writing through
/// [`Storage::make_mut`] copies first if anyone else still holds the buffer. `Storage` is
/// `Send + Sync`: kernels split work across threads and values move between threads.
///
/// ```
/// use tapegrad_tape::Storage;
/// let s = Storage::from_vec(vec![1.0f64, 2.0]);
/// assert_eq!(s.len(), 2);
/// assert_eq!(s.as_slice::<f64>().unwrap(), &[1.0, 2.0]);
/// ```
#[derive(Clone, Debug)]
pub enum Storage {
    /// 32-bit elements.
    F32(Buffer<f32>),
    /// 64-bit elements.
    F64(Buffer<f64>),
    /// 64-bit integers (indices and labels).
    I64(Buffer<i64>),
    /// Booleans (masks).
    Bool(Buffer<bool>),
}

impl Storage {
    /// Wraps a vector of any element type.
    ///
    /// ```
    /// assert_eq!(tapegrad_tape::Storage::from_vec(vec![0f32; 3]).len(), 3);
    /// ```
    pub fn from_vec<T: StorageElement>(data: Vec<T>) -> Storage {
        T::wrap(data)
    }

    /// The element type.
    ///
    /// ```
    /// use tapegrad_tape::{DType, Storage};
    /// assert_eq!(Storage::from_vec(vec![0f32]).dtype(), DType::F32);
    /// ```
    pub fn dtype(&self) -> DType {
        match self {
            Storage::F32(_) => DType::F32,
            Storage::F64(_) => DType::F64,
            Storage::I64(_) => DType::I64,
            Storage::Bool(_) => DType::Bool,
        }
    }

    /// Number of elements in the buffer (which may exceed a view's element count).
    ///
    /// ```
    /// assert_eq!(tapegrad_tape::Storage::from_vec(vec![0f64; 4]).len(), 4);
    /// ```
    pub fn len(&self) -> usize {
        match self {
            Storage::F32(v) => v.len(),
            Storage::F64(v) => v.len(),
            Storage::I64(v) => v.len(),
            Storage::Bool(v) => v.len(),
        }
    }

    /// Whether the buffer holds no elements.
    ///
    /// ```
    /// assert!(tapegrad_tape::Storage::from_vec(Vec::<f32>::new()).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Size of the buffer in bytes.
    ///
    /// ```
    /// assert_eq!(tapegrad_tape::Storage::from_vec(vec![0f32; 4]).nbytes(), 16);
    /// ```
    pub fn nbytes(&self) -> usize {
        self.len() * self.dtype().size_in_bytes()
    }

    /// The elements as a slice of `T`, or `None` if the dtype is not `T`.
    ///
    /// ```
    /// let s = tapegrad_tape::Storage::from_vec(vec![1f32]);
    /// assert!(s.as_slice::<f64>().is_none());
    /// ```
    pub fn as_slice<T: StorageElement>(&self) -> Option<&[T]> {
        T::unwrap(self)
    }

    /// Mutable access to the elements, copying the buffer first if it is shared.
    /// `None` if the dtype is not `T`.
    ///
    /// ```
    /// let mut s = tapegrad_tape::Storage::from_vec(vec![1f32]);
    /// s.make_mut::<f32>().unwrap()[0] = 2.0;
    /// assert_eq!(s.as_slice::<f32>().unwrap(), &[2.0]);
    /// ```
    pub fn make_mut<T: StorageElement>(&mut self) -> Option<&mut [T]> {
        T::unwrap_mut(self)
    }

    /// Whether two storages share one heap buffer. Storages of at most
    /// [`Buffer::INLINE`] elements keep their values in place and never share.
    ///
    /// ```
    /// let s = tapegrad_tape::Storage::from_vec(vec![1f32; 8]);
    /// assert!(s.same_buffer(&s.clone()));
    /// let tiny = tapegrad_tape::Storage::from_vec(vec![1f32]);
    /// assert!(!tiny.same_buffer(&tiny.clone())); // copied, not shared
    /// ```
    pub fn same_buffer(&self, other: &Storage) -> bool {
        match (self, other) {
            (Storage::F32(a), Storage::F32(b)) => a.same_allocation(b),
            (Storage::F64(a), Storage::F64(b)) => a.same_allocation(b),
            (Storage::I64(a), Storage::I64(b)) => a.same_allocation(b),
            (Storage::Bool(a), Storage::Bool(b)) => a.same_allocation(b),
            _ => false,
        }
    }
}

/// Moves element vectors in and out of [`Storage`]; implemented for `f32`, `f64`, `i64` and
/// `bool`.
///
/// ```
/// use tapegrad_tape::{Storage, StorageElement};
/// let s = f64::wrap(vec![1.0]);
/// assert_eq!(f64::unwrap(&s).unwrap(), &[1.0]);
/// ```
pub trait StorageElement: Sized + Copy + Send + Sync + 'static {
    /// The run-time tag of this element type.
    ///
    /// ```
    /// use tapegrad_tape::{DType, StorageElement};
    /// assert_eq!((f32::STORAGE_DTYPE, i64::STORAGE_DTYPE), (DType::F32, DType::I64));
    /// ```
    const STORAGE_DTYPE: DType;

    /// Wraps a vector into storage.
    ///
    /// ```
    /// use tapegrad_tape::{DType, StorageElement};
    /// let s = i64::wrap(vec![3, 4]);
    /// assert_eq!((s.dtype(), s.as_slice::<i64>().unwrap()), (DType::I64, &[3i64, 4][..]));
    /// ```
    fn wrap(data: Vec<Self>) -> Storage {
        Self::wrap_buffer(Buffer::from_vec(data))
    }

    /// Wraps a buffer into storage.
    ///
    /// ```
    /// use tapegrad_tape::{Buffer, DType, StorageElement};
    /// assert_eq!(f32::wrap_buffer(Buffer::from_fn(2, |i| i as f32)).dtype(), DType::F32);
    /// ```
    fn wrap_buffer(buffer: Buffer<Self>) -> Storage;

    /// Borrows the elements if the storage holds this type.
    ///
    /// ```
    /// use tapegrad_tape::{Storage, StorageElement};
    /// let s = Storage::from_vec(vec![1.0f32, 2.0]);
    /// assert_eq!(f32::unwrap(&s), Some(&[1.0f32, 2.0][..]));
    /// assert!(f64::unwrap(&s).is_none()); // another element type
    /// ```
    fn unwrap(storage: &Storage) -> Option<&[Self]>;

    /// Mutably borrows the elements (copy-on-write) if the storage holds this type.
    ///
    /// ```
    /// use tapegrad_tape::StorageElement;
    /// let mut s = f64::wrap(vec![1.0]);
    /// let shared = s.clone();
    /// f64::unwrap_mut(&mut s).unwrap()[0] = 2.0; // `shared` keeps the old value
    /// assert_eq!((f64::unwrap(&s).unwrap(), f64::unwrap(&shared).unwrap()), (&[2.0][..], &[1.0][..]));
    /// ```
    fn unwrap_mut(storage: &mut Storage) -> Option<&mut [Self]>;

    /// Converts from `f64` as Rust's `as` does (integers truncate toward zero).
    ///
    /// ```
    /// use tapegrad_tape::StorageElement;
    /// assert_eq!((i64::cast_from_f64(-2.7), i64::cast_from_f64(2.7)), (-2, 2));
    /// assert_eq!(f32::cast_from_f64(0.5), 0.5);
    /// ```
    fn cast_from_f64(v: f64) -> Self;

    /// Converts to `f64` as Rust's `as` does.
    ///
    /// ```
    /// use tapegrad_tape::StorageElement;
    /// assert_eq!((7i64.cast_to_f64(), 0.25f32.cast_to_f64()), (7.0, 0.25));
    /// ```
    fn cast_to_f64(self) -> f64;
}

macro_rules! impl_storage_element {
    ($t:ty, $variant:ident) => {
        impl_storage_element!($t, $variant, |v| v as $t, |x: $t| x as f64);
    };
    ($t:ty, $variant:ident, $from:expr, $to:expr) => {
        impl StorageElement for $t {
            const STORAGE_DTYPE: DType = DType::$variant;
            fn wrap_buffer(buffer: Buffer<Self>) -> Storage {
                Storage::$variant(buffer)
            }
            fn unwrap(storage: &Storage) -> Option<&[Self]> {
                match storage {
                    Storage::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn unwrap_mut(storage: &mut Storage) -> Option<&mut [Self]> {
                match storage {
                    Storage::$variant(v) => Some(v.make_mut()),
                    _ => None,
                }
            }
            #[inline(always)]
            fn cast_from_f64(v: f64) -> Self {
                $from(v)
            }
            #[inline(always)]
            fn cast_to_f64(self) -> f64 {
                $to(self)
            }
        }
    };
}

impl_storage_element!(f32, F32);
impl_storage_element!(f64, F64);
impl_storage_element!(i64, I64);
// Nonzero is true, as PyTorch's conversions to bool; true is 1.
impl_storage_element!(bool, Bool, |v: f64| v != 0.0, |b: bool| if b { 1.0 } else { 0.0 });

/// Runs `$body` with `$v` bound to the storage's [`Buffer<T>`] for whichever `T` it holds,
/// and wraps the `Vec` the body returns back into storage of the same dtype. This is the one
/// `match` per op that turns the run-time dtype into a generic kernel call. The body must
/// compile for `f32`, `f64`, `i64` and `bool` (element moves only); see
/// [`map_float_storage!`](crate::map_float_storage) for arithmetic.
///
/// ```
/// use tapegrad_tape::{map_storage, Storage};
/// let s = Storage::from_vec(vec![1.0f32, 2.0]);
/// let reversed = map_storage!(&s, v => v.iter().rev().copied().collect::<Vec<_>>());
/// assert_eq!(reversed.as_slice::<f32>().unwrap(), &[2.0, 1.0]);
/// ```
#[macro_export]
macro_rules! map_storage {
    ($storage:expr, $v:ident => $body:expr) => {
        match $storage {
            $crate::Storage::F32($v) => $crate::Storage::from_vec::<f32>($body),
            $crate::Storage::F64($v) => $crate::Storage::from_vec::<f64>($body),
            $crate::Storage::I64($v) => $crate::Storage::from_vec::<i64>($body),
            $crate::Storage::Bool($v) => $crate::Storage::from_vec::<bool>($body),
        }
    };
}

/// Like [`map_storage!`] for bodies that do floating-point arithmetic. Integer storage is a
/// caller bug (ops check dtypes first) and panics.
///
/// ```
/// use tapegrad_tape::{map_float_storage, Storage};
/// let s = Storage::from_vec(vec![1.0f64, 4.0]);
/// let roots = map_float_storage!(&s, v => v.iter().map(|x| x.sqrt()).collect::<Vec<_>>());
/// assert_eq!(roots.as_slice::<f64>().unwrap(), &[1.0, 2.0]);
/// ```
#[macro_export]
macro_rules! map_float_storage {
    ($storage:expr, $v:ident => $body:expr) => {
        match $storage {
            $crate::Storage::F32($v) => $crate::Storage::from_vec::<f32>($body),
            $crate::Storage::F64($v) => $crate::Storage::from_vec::<f64>($body),
            $crate::Storage::I64(_) | $crate::Storage::Bool(_) => {
                panic!(
                    "this operation takes float32 or float64 tensors, not int64 or bool; convert \
                    with to_dtype"
                )
            }
        }
    };
}
