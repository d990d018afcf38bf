//! The values a collective carries: one flat buffer of one element type.

use tapegrad_tape::{DType, Storage, Tensor};

use crate::error::{DistError, Result};

/// A flat buffer sent to or received from the other ranks.
///
/// ```
/// use tapegrad_distributed::Payload;
/// use tapegrad_tape::Tensor;
/// let p = Payload::from_tensor(&Tensor::from_vec(vec![1.0f64, 2.0], &[2]));
/// assert_eq!(p, Payload::F64(vec![1.0, 2.0]));
/// assert_eq!(p.to_tensor(&[2, 1]).shape(), &[2, 1]);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    /// 32-bit floats.
    F32(Vec<f32>),
    /// 64-bit floats.
    F64(Vec<f64>),
    /// 64-bit integers (counters such as `num_batches_tracked`).
    I64(Vec<i64>),
}

impl Payload {
    /// The tensor's values in row-major order.
    ///
    /// ```
    /// use tapegrad_distributed::Payload;
    /// use tapegrad_tape::Tensor;
    /// assert_eq!(Payload::from_tensor(&Tensor::from_vec(vec![3i64], &[])), Payload::I64(vec![3]));
    /// ```
    ///
    /// # Panics
    /// For boolean tensors, which no collective here reduces.
    #[track_caller]
    pub fn from_tensor(t: &Tensor) -> Payload {
        match t.dtype() {
            DType::F32 => Payload::F32(t.to_vec()),
            DType::F64 => Payload::F64(t.to_vec()),
            DType::I64 => Payload::I64(t.to_vec()),
            other => panic!("tapegrad-distributed: {other:?} tensors cannot be communicated"),
        }
    }

    /// An empty buffer of `dtype`'s kind.
    ///
    /// ```
    /// use tapegrad_distributed::Payload;
    /// assert!(Payload::empty(tapegrad_tape::DType::F32).is_empty());
    /// ```
    #[track_caller]
    pub fn empty(dtype: DType) -> Payload {
        match dtype {
            DType::F32 => Payload::F32(Vec::new()),
            DType::F64 => Payload::F64(Vec::new()),
            DType::I64 => Payload::I64(Vec::new()),
            other => panic!("tapegrad-distributed: {other:?} tensors cannot be communicated"),
        }
    }

    /// Appends a tensor's values (of this buffer's element type).
    ///
    /// ```
    /// use tapegrad_distributed::Payload;
    /// use tapegrad_tape::Tensor;
    /// let mut p = Payload::F32(vec![1.0]);
    /// p.extend_from_tensor(&Tensor::ones(&[2]));
    /// assert_eq!(p, Payload::F32(vec![1.0, 1.0, 1.0]));
    /// ```
    ///
    /// # Panics
    /// If the tensor's element type differs from the buffer's.
    #[track_caller]
    pub fn extend_from_tensor(&mut self, t: &Tensor) {
        // Straight from the storage: no intermediate vector.
        match (self, &t.contiguous_storage()) {
            (Payload::F32(v), Storage::F32(s)) => v.extend_from_slice(s),
            (Payload::F64(v), Storage::F64(s)) => v.extend_from_slice(s),
            (Payload::I64(v), Storage::I64(s)) => v.extend_from_slice(s),
            (p, _) => panic!("Payload: a {:?} tensor appended to a {} buffer", t.dtype(), p.kind()),
        }
    }

    /// Appends `n` copies of `value` (converted to the element type).
    ///
    /// ```
    /// use tapegrad_distributed::Payload;
    /// let mut p = Payload::F64(vec![]);
    /// p.extend_with(2, 0.5);
    /// assert_eq!(p, Payload::F64(vec![0.5, 0.5]));
    /// ```
    pub fn extend_with(&mut self, n: usize, value: f64) {
        match self {
            Payload::F32(v) => v.extend(std::iter::repeat_n(value as f32, n)),
            Payload::F64(v) => v.extend(std::iter::repeat_n(value, n)),
            Payload::I64(v) => v.extend(std::iter::repeat_n(value as i64, n)),
        }
    }

    /// Elements `start..start + len` as a tensor of `shape`.
    ///
    /// ```
    /// use tapegrad_distributed::Payload;
    /// let p = Payload::F32(vec![0.0, 1.0, 2.0, 3.0]);
    /// assert_eq!(p.slice_to_tensor(1, &[2]).to_vec::<f32>(), vec![1.0, 2.0]);
    /// ```
    pub fn slice_to_tensor(&self, start: usize, shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        match self {
            Payload::F32(v) => Tensor::from_vec(v[start..start + n].to_vec(), shape),
            Payload::F64(v) => Tensor::from_vec(v[start..start + n].to_vec(), shape),
            Payload::I64(v) => Tensor::from_vec(v[start..start + n].to_vec(), shape),
        }
    }

    /// All of it as a tensor of `shape`.
    ///
    /// ```
    /// use tapegrad_distributed::Payload;
    /// assert_eq!(Payload::I64(vec![1, 2]).to_tensor(&[2]).to_vec::<i64>(), vec![1, 2]);
    /// ```
    pub fn to_tensor(&self, shape: &[usize]) -> Tensor {
        self.slice_to_tensor(0, shape)
    }

    /// Element `i` as an `f64`.
    ///
    /// ```
    /// assert_eq!(tapegrad_distributed::Payload::I64(vec![4]).get(0), 4.0);
    /// ```
    pub fn get(&self, i: usize) -> f64 {
        match self {
            Payload::F32(v) => v[i] as f64,
            Payload::F64(v) => v[i],
            Payload::I64(v) => v[i] as f64,
        }
    }

    /// The number of elements.
    ///
    /// ```
    /// assert_eq!(tapegrad_distributed::Payload::F32(vec![0.0; 3]).len(), 3);
    /// ```
    pub fn len(&self) -> usize {
        match self {
            Payload::F32(v) => v.len(),
            Payload::F64(v) => v.len(),
            Payload::I64(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    ///
    /// ```
    /// assert!(tapegrad_distributed::Payload::F64(vec![]).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The size in bytes (what one copy of it costs to send).
    ///
    /// ```
    /// assert_eq!(tapegrad_distributed::Payload::F32(vec![0.0; 3]).bytes(), 12);
    /// ```
    pub fn bytes(&self) -> usize {
        match self {
            Payload::F32(v) => 4 * v.len(),
            Payload::F64(v) => 8 * v.len(),
            Payload::I64(v) => 8 * v.len(),
        }
    }

    /// The element type's name, for messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Payload::F32(_) => "f32",
            Payload::F64(_) => "f64",
            Payload::I64(_) => "i64",
        }
    }

    /// Divides every element by `divisor` (integers round toward zero).
    pub(crate) fn divide(&mut self, divisor: usize) {
        match self {
            Payload::F32(v) => v.iter_mut().for_each(|x| *x /= divisor as f32),
            Payload::F64(v) => v.iter_mut().for_each(|x| *x /= divisor as f64),
            Payload::I64(v) => v.iter_mut().for_each(|x| *x /= divisor as i64),
        }
    }

    /// Empties the buffer, keeping its allocation for the next bucket.
    pub(crate) fn clear(&mut self) {
        match self {
            Payload::F32(v) => v.clear(),
            Payload::F64(v) => v.clear(),
            Payload::I64(v) => v.clear(),
        }
    }

    /// Writes elements `start..start + t.numel()`, divided by `divisor`, over `t`'s values in
    /// place (copy-on-write if the storage is shared). `false` if `t` is a view, or of
    /// another element type, and was left alone.
    pub(crate) fn write_quotient_into(&self, start: usize, divisor: usize, t: &Tensor) -> bool {
        fn quotient<T: Copy + std::ops::Div<Output = T>>(dst: &mut [T], src: &[T], d: T) {
            dst.iter_mut().zip(src).for_each(|(x, &y)| *x = y / d);
        }
        let n = t.numel();
        t.update_storage(|storage, layout| {
            if !(layout.is_contiguous() && layout.offset() == 0 && storage.len() == n) {
                return false;
            }
            match (self, storage) {
                (Payload::F32(v), Storage::F32(b)) => {
                    quotient(b.make_mut(), &v[start..start + n], divisor as f32)
                }
                (Payload::F64(v), Storage::F64(b)) => {
                    quotient(b.make_mut(), &v[start..start + n], divisor as f64)
                }
                (Payload::I64(v), Storage::I64(b)) => {
                    quotient(b.make_mut(), &v[start..start + n], divisor as i64)
                }
                _ => return false,
            }
            true
        })
    }

    /// Keeps the larger (or smaller) of each pair of elements.
    fn extreme_assign(&mut self, other: &Payload, larger: bool, op: &'static str) -> Result<()> {
        // A NaN wins from whichever rank it comes (`b != b` only for NaN).
        #[allow(clippy::eq_op)]
        fn pick<T: PartialOrd + Copy>(a: &mut [T], b: &[T], larger: bool) {
            for (a, &b) in a.iter_mut().zip(b) {
                let nan = b != b;
                if nan || (larger && b > *a) || (!larger && b < *a) {
                    *a = b;
                }
            }
        }
        if self.len() != other.len() {
            return Err(DistError::Invalid {
                op,
                message: "the ranks sent buffers of different lengths".into(),
            });
        }
        match (&mut *self, other) {
            (Payload::F32(a), Payload::F32(b)) => pick(a, b, larger),
            (Payload::F64(a), Payload::F64(b)) => pick(a, b, larger),
            (Payload::I64(a), Payload::I64(b)) => pick(a, b, larger),
            _ => {
                return Err(DistError::Invalid {
                    op,
                    message: "the ranks sent buffers of different types".into(),
                });
            }
        }
        Ok(())
    }

    /// Adds `other` elementwise: the one reduction every backend agrees on.
    pub(crate) fn add_assign(&mut self, other: &Payload, op: &'static str) -> Result<()> {
        let message = format!(
            "the ranks sent different buffers ({} x {} and {} x {})",
            self.len(),
            self.kind(),
            other.len(),
            other.kind()
        );
        let mismatch = || DistError::Invalid { op, message: message.clone() };
        if self.len() != other.len() {
            return Err(mismatch());
        }
        match (&mut *self, other) {
            (Payload::F32(a), Payload::F32(b)) => a.iter_mut().zip(b).for_each(|(a, b)| *a += b),
            (Payload::F64(a), Payload::F64(b)) => a.iter_mut().zip(b).for_each(|(a, b)| *a += b),
            (Payload::I64(a), Payload::I64(b)) => {
                a.iter_mut().zip(b).for_each(|(a, b)| *a = a.wrapping_add(*b))
            }
            _ => return Err(mismatch()),
        }
        Ok(())
    }
}

/// How an all-reduce combines the ranks' elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Combine {
    Sum,
    Max,
    Min,
}

/// The sum of `parts` taken in order: the same association on every rank.
pub(crate) fn sum_in_order(parts: Vec<Payload>, op: &'static str) -> Result<Payload> {
    combine_in_order(parts, Combine::Sum, op)
}

/// `parts` combined elementwise, in rank order.
pub(crate) fn combine_in_order(
    parts: Vec<Payload>,
    how: Combine,
    op: &'static str,
) -> Result<Payload> {
    let mut parts = parts.into_iter();
    let mut total = parts.next().ok_or(DistError::Invalid { op, message: "no ranks".into() })?;
    for part in parts {
        match how {
            Combine::Sum => total.add_assign(&part, op)?,
            Combine::Max | Combine::Min => total.extreme_assign(&part, how == Combine::Max, op)?,
        }
    }
    Ok(total)
}
