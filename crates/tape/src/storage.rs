//! Flat, reference-counted element buffers, shareable across threads.

use std::sync::Arc;

use crate::DType;

/// A tensor's elements in one flat buffer, f32 or f64.
///
/// Clones share the buffer (`Arc`), so views cost no copy; writing through
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
    F32(Arc<Vec<f32>>),
    /// 64-bit elements.
    F64(Arc<Vec<f64>>),
    /// 64-bit integers (indices and labels).
    I64(Arc<Vec<i64>>),
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
    pub fn make_mut<T: StorageElement>(&mut self) -> Option<&mut Vec<T>> {
        T::unwrap_mut(self)
    }

    /// Whether two storages are the same buffer.
    ///
    /// ```
    /// let s = tapegrad_tape::Storage::from_vec(vec![1f32]);
    /// assert!(s.same_buffer(&s.clone()));
    /// ```
    pub fn same_buffer(&self, other: &Storage) -> bool {
        match (self, other) {
            (Storage::F32(a), Storage::F32(b)) => Arc::ptr_eq(a, b),
            (Storage::F64(a), Storage::F64(b)) => Arc::ptr_eq(a, b),
            (Storage::I64(a), Storage::I64(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// Moves element vectors in and out of [`Storage`]; implemented for `f32`, `f64` and `i64`.
///
/// ```
/// use tapegrad_tape::{StorageElement, Storage};
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
    fn wrap(data: Vec<Self>) -> Storage;

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
    /// f64::unwrap_mut(&mut s).unwrap()[0] = 2.0; // copies: `shared` still holds the buffer
    /// assert_eq!((f64::unwrap(&s).unwrap(), f64::unwrap(&shared).unwrap()), (&[2.0][..], &[1.0][..]));
    /// ```
    fn unwrap_mut(storage: &mut Storage) -> Option<&mut Vec<Self>>;

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
        impl StorageElement for $t {
            const STORAGE_DTYPE: DType = DType::$variant;
            fn wrap(data: Vec<Self>) -> Storage {
                Storage::$variant(Arc::new(data))
            }
            fn unwrap(storage: &Storage) -> Option<&[Self]> {
                match storage {
                    Storage::$variant(v) => Some(v.as_slice()),
                    _ => None,
                }
            }
            fn unwrap_mut(storage: &mut Storage) -> Option<&mut Vec<Self>> {
                match storage {
                    Storage::$variant(v) => Some(Arc::make_mut(v)),
                    _ => None,
                }
            }
            #[inline(always)]
            fn cast_from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn cast_to_f64(self) -> f64 {
                self as f64
            }
        }
    };
}

impl_storage_element!(f32, F32);
impl_storage_element!(f64, F64);
impl_storage_element!(i64, I64);

/// Runs `$body` with `$v` bound to the storage's `Arc<Vec<T>>` for whichever `T` it holds,
/// and wraps the `Vec` the body returns back into storage of the same dtype. This is the one
/// `match` per op that turns the run-time dtype into a generic kernel call. The body must
/// compile for `f32`, `f64` and `i64` (element moves only); see [`map_float_storage!`](crate::map_float_storage) for
/// arithmetic.
///
/// ```
/// use tapegrad_tape::{map_storage, Storage};
/// let s = Storage::from_vec(vec![1.0f32, 2.0]);
/// let doubled = map_storage!(&s, v => v.iter().map(|x| *x + *x).collect::<Vec<_>>());
/// assert_eq!(doubled.as_slice::<f32>().unwrap(), &[2.0, 4.0]);
/// ```
#[macro_export]
macro_rules! map_storage {
    ($storage:expr, $v:ident => $body:expr) => {
        match $storage {
            $crate::Storage::F32($v) => $crate::Storage::from_vec::<f32>($body),
            $crate::Storage::F64($v) => $crate::Storage::from_vec::<f64>($body),
            $crate::Storage::I64($v) => $crate::Storage::from_vec::<i64>($body),
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
            $crate::Storage::I64(_) => {
                panic!("this operation takes float32 or float64 tensors, not int64; convert with to_dtype")
            }
        }
    };
}
