//! Flat, reference-counted element buffers, shareable across threads.

use std::sync::Arc;

use crate::{DType, Element};

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
}

impl Storage {
    /// Wraps a vector of any element type.
    ///
    /// ```
    /// assert_eq!(tapegrad_tape::Storage::from_vec(vec![0f32; 3]).len(), 3);
    /// ```
    pub fn from_vec<T: Element>(data: Vec<T>) -> Storage {
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
    pub fn as_slice<T: Element>(&self) -> Option<&[T]> {
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
    pub fn make_mut<T: Element>(&mut self) -> Option<&mut Vec<T>> {
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
            _ => false,
        }
    }
}

/// Moves element vectors in and out of [`Storage`]; implemented for `f32` and `f64`.
///
/// ```
/// use tapegrad_tape::{StorageElement, Storage};
/// let s = f64::wrap(vec![1.0]);
/// assert_eq!(f64::unwrap(&s).unwrap(), &[1.0]);
/// ```
pub trait StorageElement: Sized {
    /// Wraps a vector into storage.
    fn wrap(data: Vec<Self>) -> Storage;
    /// Borrows the elements if the storage holds this type.
    fn unwrap(storage: &Storage) -> Option<&[Self]>;
    /// Mutably borrows the elements (copy-on-write) if the storage holds this type.
    fn unwrap_mut(storage: &mut Storage) -> Option<&mut Vec<Self>>;
}

macro_rules! impl_storage_element {
    ($t:ty, $variant:ident) => {
        impl StorageElement for $t {
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
        }
    };
}

impl_storage_element!(f32, F32);
impl_storage_element!(f64, F64);

/// Runs `$body` with `$v` bound to the storage's `Arc<Vec<T>>` for whichever `T` it holds,
/// and wraps the `Vec` the body returns back into storage of the same dtype. This is the one
/// `match` per op that turns the run-time dtype into a generic kernel call.
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
        }
    };
}
