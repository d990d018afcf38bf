//! The `Tensor` handle: values, their layout, and the tape node that records their history.

use std::cell::{Cell, OnceCell, RefCell};
use std::panic::Location;
use std::rc::Rc;

use crate::error::{Error, Result, or_panic};
use crate::forward_ad::Tangent;
use crate::layout::{Layout, try_numel};
use crate::node::NodeKey;
use crate::record::{Backward, new_leaf};
use crate::tape::{self, with_tape};
use crate::{DType, Element, Storage, StorageElement, kernels, map_storage, record_with_tangent};

/// An n-dimensional array of `f32` or `f64` that records the operations made with it, so
/// that `backward()` can compute gradients: PyTorch's `torch.Tensor`, in Rust.
///
/// A `Tensor` is a cheap handle (cloning shares the values and the graph node). Handles
/// belong to the thread that made them: the tape is per thread, and the compiler enforces it
/// (`Tensor` is neither `Send` nor `Sync`). To move values across threads, take their
/// [`Storage`] or `to_vec()` and build a new tensor on the other side.
///
/// ```
/// use tapegrad_tape::Tensor;
/// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3]).requires_grad();
/// let y = (&x * &x).sum_to_shape(&[]); // y = sum(x^2)
/// y.backward();
/// assert_eq!(x.grad().unwrap().to_vec::<f32>(), vec![2.0, 4.0, 6.0]);
/// ```
#[derive(Clone)]
pub struct Tensor {
    inner: Rc<Inner>,
}

struct Inner {
    /// Behind a `RefCell` so optimizers can update parameters in place; the `Arc` inside
    /// makes that copy-on-write when backward still holds the old values.
    storage: RefCell<Storage>,
    layout: Layout,
    /// A `Cell` because an in-place operation recorded in grad mode moves every handle of
    /// this tensor to the operation's node (PyTorch's in-place semantics).
    node: Cell<Option<NodeKey>>,
    /// The tangent of a dual tensor (forward mode), set once as the tensor is made.
    tangent: OnceCell<Tangent>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(key) = self.node.get() {
            tape::release(key);
        }
    }
}

fn shape_error(op: &'static str, message: String, location: &'static Location<'static>) -> Error {
    Error::Shape { op, message, location }
}

impl Tensor {
    // ----- construction -------------------------------------------------------------------

    /// A tensor of `shape` holding `data` in row-major order; the dtype follows the element
    /// type. Panics if `data.len()` is not the product of `shape`.
    ///
    /// ```
    /// use tapegrad_tape::{DType, Tensor};
    /// let t = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    /// assert_eq!((t.shape(), t.dtype()), (&[2, 3][..], DType::F64));
    /// ```
    #[track_caller]
    pub fn from_vec<T: StorageElement>(data: Vec<T>, shape: &[usize]) -> Tensor {
        or_panic(Self::try_from_vec(data, shape))
    }

    /// [`Tensor::from_vec`], returning an error instead of panicking.
    ///
    /// ```
    /// assert!(tapegrad_tape::Tensor::try_from_vec(vec![1.0f32; 5], &[2, 3]).is_err());
    /// ```
    #[track_caller]
    pub fn try_from_vec<T: StorageElement>(data: Vec<T>, shape: &[usize]) -> Result<Tensor> {
        let location = Location::caller();
        let n = try_numel("from_vec", shape, location)?;
        if data.len() != n {
            return Err(shape_error(
                "from_vec",
                format!("{} values cannot fill shape {shape:?} ({n} elements)", data.len()),
                location,
            ));
        }
        Ok(Tensor::new(Storage::from_vec(data), Layout::contiguous(shape), None))
    }

    /// A zero-dimensional tensor holding one value.
    ///
    /// ```
    /// let t = tapegrad_tape::Tensor::scalar(2.5f64);
    /// assert_eq!((t.shape().len(), t.item()), (0, 2.5));
    /// ```
    pub fn scalar<T: Element>(value: T) -> Tensor {
        Tensor::new(Storage::from_vec(vec![value]), Layout::contiguous(&[]), None)
    }

    /// A tensor over existing storage, viewed through `layout`. Panics if the layout
    /// reaches outside the storage.
    ///
    /// ```
    /// use tapegrad_tape::{Storage, Tensor, layout::Layout};
    /// let s = Storage::from_vec(vec![1.0f32, 2.0, 3.0, 4.0]);
    /// let t = Tensor::from_storage(s, Layout::contiguous(&[2, 2]).transpose(0, 1));
    /// assert_eq!(t.to_vec::<f32>(), vec![1.0, 3.0, 2.0, 4.0]);
    /// ```
    #[track_caller]
    pub fn from_storage(storage: Storage, layout: Layout) -> Tensor {
        // Layouts never hold more than MAX_NUMEL elements; the sums below are checked too,
        // so that no wrapped offset can pass for one inside the storage.
        let numel = layout.numel();
        if layout.is_contiguous() {
            // The common case (every kernel's result): one comparison instead of a walk.
            let end = layout.offset().checked_add(numel);
            assert!(
                end.is_some_and(|end| end <= storage.len()),
                "from_storage: layout {layout:?} needs {numel} elements from offset {} of a \
                storage of {}",
                layout.offset(),
                storage.len()
            );
        } else if numel > 0 {
            let last = layout
                .shape()
                .iter()
                .zip(layout.strides())
                .try_fold(layout.offset(), |acc, (&n, &s)| {
                    (n - 1).checked_mul(s).and_then(|x| acc.checked_add(x))
                });
            assert!(
                last.is_some_and(|last| last < storage.len()),
                "from_storage: layout {layout:?} reaches outside a storage of {} elements",
                storage.len()
            );
        }
        Tensor::new(storage, layout, None)
    }

    /// A handle over parts known to fit together (taken from another tensor).
    pub(crate) fn from_parts(storage: Storage, layout: Layout, node: Option<NodeKey>) -> Tensor {
        Tensor::new(storage, layout, node)
    }

    /// Every handle is made here.
    fn new(storage: Storage, layout: Layout, node: Option<NodeKey>) -> Tensor {
        // Once per process: freed buffers are then reused instead of returned to the system
        // and faulted in again (see tapegrad_kernels::allocator).
        tapegrad_kernels::allocator::keep_freed_buffers();
        // In place: `Rc::new` would build the value on the stack and copy it over.
        let inner = tapegrad_kernels::in_place::rc(|| Inner {
            storage: RefCell::new(storage),
            layout,
            node: Cell::new(node),
            tangent: OnceCell::new(),
        });
        Tensor { inner }
    }

    /// Another handle to the same values and node, carrying `tangent` (none: a plain one).
    pub(crate) fn alias(&self, tangent: Option<Tangent>) -> Tensor {
        if let Some(key) = self.inner.node.get() {
            with_tape(|t| t.incref(key));
        }
        let t = Tensor::new(self.storage(), self.inner.layout.clone(), self.inner.node.get());
        if let Some(tangent) = tangent {
            let _ = t.inner.tangent.set(tangent);
        }
        t
    }

    /// This tensor carrying `tangent`: the same handle when nothing else shares it and it
    /// has no tangent yet (an op's fresh output), else a new handle to the same values.
    pub(crate) fn with_tangent(mut self, tangent: Tangent) -> Tensor {
        match Rc::get_mut(&mut self.inner) {
            Some(inner) if inner.tangent.get().is_none() => {
                let _ = inner.tangent.set(tangent);
                self
            }
            _ => self.alias(Some(tangent)),
        }
    }

    /// Whether a tangent was ever set on this handle (in any level, open or closed).
    pub(crate) fn has_tangent(&self) -> bool {
        self.inner.tangent.get().is_some()
    }

    /// The tangent in the open dual level, paused or not.
    pub(crate) fn tangent_in_level(&self) -> Option<&Tensor> {
        self.inner.tangent.get().and_then(Tangent::in_level)
    }

    /// The tangent operations propagate now: in the open level, and not paused.
    pub(crate) fn live_tangent(&self) -> Option<&Tensor> {
        self.inner.tangent.get().and_then(Tangent::live)
    }

    /// A second handle to the same values and node whose storage cannot be swapped by an
    /// in-place update of this one: what backward rules save, so that `set_data` or an
    /// optimizer step after the forward pass never changes the values backward sees.
    pub(crate) fn snapshot(&self) -> Tensor {
        // The tangent goes along, so that a rule run with `create_graph` inside a dual level
        // carries tangents through the values it reads (forward-over-reverse).
        self.alias(self.inner.tangent.get().cloned())
    }

    /// Whether this is the only handle to its tensor (clones share one handle allocation).
    pub(crate) fn is_sole_handle(&self) -> bool {
        Rc::strong_count(&self.inner) == 1 && Rc::weak_count(&self.inner) == 0
    }

    /// This value attached to a freshly recorded node, reusing the handle's allocation when
    /// nothing else shares it (the common case: the op just built the value).
    pub(crate) fn attach_node(mut self, key: NodeKey) -> Tensor {
        match Rc::get_mut(&mut self.inner) {
            Some(inner) if inner.node.get().is_none() => {
                inner.node.set(Some(key));
                self
            }
            _ => Tensor::new(self.storage(), self.inner.layout.clone(), Some(key)),
        }
    }

    /// A tensor of `shape` filled with `value` (f32, PyTorch's default dtype).
    ///
    /// ```
    /// assert_eq!(tapegrad_tape::Tensor::full(&[2], 7.0).to_vec::<f32>(), vec![7.0, 7.0]);
    /// ```
    #[track_caller]
    pub fn full(shape: &[usize], value: f64) -> Tensor {
        Self::full_dtype(shape, value, DType::F32)
    }

    /// A tensor of `shape` and `dtype` filled with `value`.
    ///
    /// ```
    /// use tapegrad_tape::{DType, Tensor};
    /// assert_eq!(Tensor::full_dtype(&[1], 0.1, DType::F64).item(), 0.1);
    /// ```
    ///
    /// # Panics
    /// If `shape` has more than [`MAX_NUMEL`](crate::layout::MAX_NUMEL) elements or the
    /// memory cannot be allocated; [`Tensor::try_full_dtype`] returns the error instead.
    #[track_caller]
    pub fn full_dtype(shape: &[usize], value: f64, dtype: DType) -> Tensor {
        or_panic(Self::try_full_dtype(shape, value, dtype))
    }

    /// [`Tensor::full_dtype`], returning an error instead of panicking: for a shape with too
    /// many elements, or memory that cannot be allocated.
    ///
    /// ```
    /// use tapegrad_tape::{DType, Tensor};
    /// assert!(Tensor::try_full_dtype(&[1 << 40, 1 << 40], 0.0, DType::F32).is_err());
    /// assert_eq!(
    ///     Tensor::try_full_dtype(&[2], 1.5, DType::F64).unwrap().to_vec::<f64>(),
    ///     vec![1.5, 1.5]
    /// );
    /// ```
    #[track_caller]
    pub fn try_full_dtype(shape: &[usize], value: f64, dtype: DType) -> Result<Tensor> {
        let location = Location::caller();
        let n = try_numel("full", shape, location)?;
        let storage = match dtype {
            DType::F32 => Storage::from_vec(filled_vec("full", n, value as f32, location)?),
            DType::F64 => Storage::from_vec(filled_vec("full", n, value, location)?),
            DType::I64 => Storage::from_vec(filled_vec("full", n, value as i64, location)?),
            DType::Bool => Storage::from_vec(filled_vec("full", n, value != 0.0, location)?),
        };
        Ok(Tensor::new(storage, Layout::contiguous(shape), None))
    }

    /// Zeros of `shape` (f32).
    ///
    /// ```
    /// assert_eq!(tapegrad_tape::Tensor::zeros(&[2, 2]).to_vec::<f32>(), vec![0.0; 4]);
    /// ```
    #[track_caller]
    pub fn zeros(shape: &[usize]) -> Tensor {
        Self::full_dtype(shape, 0.0, DType::F32)
    }

    /// Zeros of `shape` and `dtype`.
    ///
    /// ```
    /// use tapegrad_tape::{DType, Tensor};
    /// assert_eq!(Tensor::zeros_dtype(&[3], DType::F64).dtype(), DType::F64);
    /// ```
    #[track_caller]
    pub fn zeros_dtype(shape: &[usize], dtype: DType) -> Tensor {
        Self::full_dtype(shape, 0.0, dtype)
    }

    /// Ones of `shape` (f32).
    ///
    /// ```
    /// assert_eq!(tapegrad_tape::Tensor::ones(&[2]).to_vec::<f32>(), vec![1.0, 1.0]);
    /// ```
    #[track_caller]
    pub fn ones(shape: &[usize]) -> Tensor {
        Self::full_dtype(shape, 1.0, DType::F32)
    }

    /// Ones of `shape` and `dtype`.
    ///
    /// ```
    /// use tapegrad_tape::{DType, Tensor};
    /// assert_eq!(Tensor::ones_dtype(&[2], DType::F64).to_vec::<f64>(), vec![1.0, 1.0]);
    /// ```
    #[track_caller]
    pub fn ones_dtype(shape: &[usize], dtype: DType) -> Tensor {
        Self::full_dtype(shape, 1.0, dtype)
    }

    /// The `n x n` identity matrix (f32; PyTorch's `torch.eye(n)`).
    ///
    /// ```
    /// let eye = tapegrad_tape::Tensor::eye(2);
    /// assert_eq!(eye.to_vec::<f32>(), vec![1.0, 0.0, 0.0, 1.0]);
    /// ```
    #[track_caller]
    pub fn eye(n: usize) -> Tensor {
        Self::eye_dtype(n, DType::F32)
    }

    /// The `n x n` identity matrix in `dtype`.
    ///
    /// ```
    /// use tapegrad_tape::{DType, Tensor};
    /// assert_eq!(Tensor::eye_dtype(2, DType::I64).to_vec::<i64>(), vec![1, 0, 0, 1]);
    /// ```
    #[track_caller]
    pub fn eye_dtype(n: usize, dtype: DType) -> Tensor {
        fn identity<T: Copy>(
            n: usize,
            zero: T,
            one: T,
            location: &'static Location<'static>,
        ) -> Result<Vec<T>> {
            let mut values = filled_vec("eye", n * n, zero, location)?;
            values.iter_mut().step_by(n + 1).for_each(|v| *v = one);
            Ok(values)
        }
        let location = Location::caller();
        or_panic(try_numel("eye", &[n, n], location));
        let storage = or_panic(match dtype {
            DType::F32 => identity(n, 0.0f32, 1.0, location).map(Storage::from_vec),
            DType::F64 => identity(n, 0.0f64, 1.0, location).map(Storage::from_vec),
            DType::I64 => identity(n, 0i64, 1, location).map(Storage::from_vec),
            DType::Bool => identity(n, false, true, location).map(Storage::from_vec),
        });
        Tensor::new(storage, Layout::contiguous(&[n, n]), None)
    }

    /// Zeros with this tensor's shape and dtype.
    ///
    /// ```
    /// let t = tapegrad_tape::Tensor::ones(&[2, 3]);
    /// assert_eq!(t.zeros_like().shape(), &[2, 3]);
    /// ```
    #[track_caller]
    pub fn zeros_like(&self) -> Tensor {
        Self::full_dtype(self.shape(), 0.0, self.dtype())
    }

    /// Ones with this tensor's shape and dtype.
    ///
    /// ```
    /// let t = tapegrad_tape::Tensor::zeros(&[2]);
    /// assert_eq!(t.ones_like().to_vec::<f32>(), vec![1.0, 1.0]);
    /// ```
    #[track_caller]
    pub fn ones_like(&self) -> Tensor {
        Self::full_dtype(self.shape(), 1.0, self.dtype())
    }

    /// `value` everywhere, with this tensor's shape and dtype.
    ///
    /// ```
    /// let t = tapegrad_tape::Tensor::zeros(&[2]);
    /// assert_eq!(t.full_like(3.0).to_vec::<f32>(), vec![3.0, 3.0]);
    /// ```
    #[track_caller]
    pub fn full_like(&self, value: f64) -> Tensor {
        Self::full_dtype(self.shape(), value, self.dtype())
    }

    /// Values `start, start + step, ...` up to but excluding `end`, as a 1-D f32 tensor.
    /// Panics if `step` is zero or has the wrong sign to reach `end`.
    ///
    /// ```
    /// let t = tapegrad_tape::Tensor::arange(0.0, 5.0, 2.0);
    /// assert_eq!(t.to_vec::<f32>(), vec![0.0, 2.0, 4.0]);
    /// ```
    #[track_caller]
    pub fn arange(start: f64, end: f64, step: f64) -> Tensor {
        Self::arange_dtype(start, end, step, DType::F32)
    }

    /// [`Tensor::arange`] with a chosen dtype.
    ///
    /// ```
    /// use tapegrad_tape::{DType, Tensor};
    /// assert_eq!(Tensor::arange_dtype(1.0, 0.0, -0.5, DType::F64).to_vec::<f64>(), vec![1.0, 0.5]);
    /// ```
    #[track_caller]
    pub fn arange_dtype(start: f64, end: f64, step: f64, dtype: DType) -> Tensor {
        let ok = step != 0.0 && step.is_finite() && (end - start) * step.signum() >= 0.0;
        if !ok {
            panic!(
                "{}",
                Error::InvalidArgument {
                    op: "arange",
                    message: format!("step {step} cannot go from {start} to {end}"),
                    location: Location::caller(),
                }
            );
        }
        let location = Location::caller();
        let count = ((end - start) / step).ceil().max(0.0);
        if count > crate::layout::MAX_NUMEL as f64 {
            panic!(
                "{}",
                Error::InvalidArgument {
                    op: "arange",
                    message: format!(
                        "from {start} to {end} in steps of {step} is {count} values, too many"
                    ),
                    location,
                }
            );
        }
        let n = count as usize;
        let mut values = or_panic(with_capacity("arange", n, location));
        values.extend((0..n).map(|i| start + i as f64 * step));
        Tensor::from_vec(values, &[n]).to_dtype_value(dtype)
    }

    // ----- inspection ---------------------------------------------------------------------

    /// The shape.
    ///
    /// ```
    /// assert_eq!(tapegrad_tape::Tensor::zeros(&[4, 5]).shape(), &[4, 5]);
    /// ```
    pub fn shape(&self) -> &[usize] {
        self.inner.layout.shape()
    }

    /// The number of dimensions (PyTorch's `dim()`).
    ///
    /// ```
    /// assert_eq!(tapegrad_tape::Tensor::zeros(&[4, 5]).dim(), 2);
    /// ```
    pub fn dim(&self) -> usize {
        self.shape().len()
    }

    /// The number of elements.
    ///
    /// ```
    /// assert_eq!(tapegrad_tape::Tensor::zeros(&[4, 5]).numel(), 20);
    /// ```
    pub fn numel(&self) -> usize {
        self.inner.layout.numel()
    }

    /// The element type.
    ///
    /// ```
    /// use tapegrad_tape::{DType, Tensor};
    /// assert_eq!(Tensor::scalar(1.0f64).dtype(), DType::F64);
    /// ```
    pub fn dtype(&self) -> DType {
        self.inner.storage.borrow().dtype()
    }

    /// How the elements sit in storage (shape, strides, offset).
    ///
    /// ```
    /// assert!(tapegrad_tape::Tensor::zeros(&[2, 3]).layout().is_contiguous());
    /// ```
    pub fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    /// A shared handle to the underlying buffer (which a view may only partly use).
    ///
    /// ```
    /// assert_eq!(tapegrad_tape::Tensor::zeros(&[3]).storage().len(), 3);
    /// ```
    pub fn storage(&self) -> Storage {
        self.inner.storage.borrow().clone()
    }

    /// Runs `f` on the underlying buffer and this tensor's layout, without taking a handle
    /// to the buffer: how a kernel reads its operands. Within `f`, the tensor cannot be
    /// updated in place ([`Tensor::update_storage`] panics).
    ///
    /// ```
    /// let t = tapegrad_tape::Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3]);
    /// let sum: f32 = t.read_storage(|s, _layout| s.as_slice::<f32>().unwrap().iter().sum());
    /// assert_eq!(sum, 6.0);
    /// ```
    pub fn read_storage<R>(&self, f: impl FnOnce(&Storage, &Layout) -> R) -> R {
        f(&self.inner.storage.borrow(), &self.inner.layout)
    }

    /// Bytes of the underlying buffer, without taking a handle to it.
    pub(crate) fn storage_nbytes(&self) -> usize {
        self.inner.storage.borrow().nbytes()
    }

    /// Whether the elements are laid out row-major without gaps.
    ///
    /// ```
    /// assert!(tapegrad_tape::Tensor::zeros(&[2, 3]).is_contiguous());
    /// ```
    pub fn is_contiguous(&self) -> bool {
        self.inner.layout.is_contiguous()
    }

    /// The values in row-major order, converted to `T`.
    ///
    /// ```
    /// let t = tapegrad_tape::Tensor::from_vec(vec![1.0f32, 2.0], &[2]);
    /// assert_eq!(t.to_vec::<f64>(), vec![1.0, 2.0]);
    /// ```
    pub fn to_vec<T: StorageElement>(&self) -> Vec<T> {
        let storage = self.inner.storage.borrow();
        let layout = &self.inner.layout;
        match &*storage {
            Storage::F32(v) => kernels::map(v, layout, |x| T::cast_from_f64(x as f64)),
            Storage::F64(v) => kernels::map(v, layout, T::cast_from_f64),
            Storage::I64(v) => kernels::map(v, layout, |x| T::cast_from_f64(x as f64)),
            Storage::Bool(v) => kernels::map(v, layout, |x| T::cast_from_f64(x.cast_to_f64())),
        }
    }

    /// The value of a one-element tensor, as `f64` (exact for both dtypes).
    /// Panics if the tensor has more than one element.
    ///
    /// ```
    /// assert_eq!(tapegrad_tape::Tensor::full(&[1, 1], 0.5).item(), 0.5);
    /// ```
    #[track_caller]
    pub fn item(&self) -> f64 {
        or_panic(self.try_item())
    }

    /// [`Tensor::item`], returning an error instead of panicking.
    ///
    /// ```
    /// assert!(tapegrad_tape::Tensor::zeros(&[2]).try_item().is_err());
    /// ```
    #[track_caller]
    pub fn try_item(&self) -> Result<f64> {
        if self.numel() != 1 {
            return Err(shape_error(
                "item",
                format!(
                    "only one-element tensors convert to a number; this one has shape {:?}",
                    self.shape()
                ),
                Location::caller(),
            ));
        }
        Ok(self.to_vec::<f64>()[0])
    }

    // ----- the graph ----------------------------------------------------------------------

    pub(crate) fn node_key(&self) -> Option<NodeKey> {
        self.inner.node.get()
    }

    /// Whether this tensor's node is still on the tape (an earlier backward frees the nodes
    /// of computed tensors).
    pub(crate) fn node_alive(&self) -> bool {
        self.inner.node.get().is_some_and(|key| with_tape(|t| t.nodes.contains_key(key)))
    }

    /// Whether this tensor takes part in differentiation: it is a leaf that requires a
    /// gradient, or was computed from one while grad mode was on (PyTorch's
    /// `tensor.requires_grad`).
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// assert!(!Tensor::ones(&[1]).tracks_grad());
    /// assert!(Tensor::ones(&[1]).requires_grad().tracks_grad());
    /// ```
    pub fn tracks_grad(&self) -> bool {
        self.inner.node.get().is_some()
    }

    /// This tensor as a leaf that requires a gradient: after `backward()`, its gradient
    /// accumulates in [`Tensor::grad`]. Returns the tensor unchanged if it already is such a
    /// leaf; panics if it was computed by a recorded operation (only leaves can be made to
    /// require gradients, as in PyTorch: use `detach().requires_grad()` for a new leaf).
    ///
    /// ```
    /// let w = tapegrad_tape::Tensor::randn(&[3, 3]).requires_grad();
    /// assert!(w.is_leaf() && w.tracks_grad());
    /// ```
    #[track_caller]
    pub fn requires_grad(self) -> Tensor {
        or_panic(self.try_requires_grad())
    }

    /// [`Tensor::requires_grad`], returning an error instead of panicking.
    ///
    /// ```
    /// let x = tapegrad_tape::Tensor::ones(&[1]).requires_grad();
    /// assert!((&x * 2.0).try_requires_grad().is_err());
    /// ```
    #[track_caller]
    pub fn try_requires_grad(self) -> Result<Tensor> {
        if !self.dtype().is_float() {
            return Err(Error::InvalidArgument {
                op: "requires_grad",
                message: format!(
                    "only float tensors can require gradients; this one is {}",
                    self.dtype()
                ),
                location: Location::caller(),
            });
        }
        match self.inner.node.get() {
            None => {
                let key = new_leaf(self.shape(), self.dtype(), Location::caller());
                let leaf = Tensor::new(self.storage(), self.inner.layout.clone(), Some(key));
                // A dual tensor stays dual.
                if let Some(tangent) = self.inner.tangent.get() {
                    let _ = leaf.inner.tangent.set(tangent.clone());
                }
                Ok(leaf)
            }
            Some(_) if self.is_leaf() => Ok(self),
            Some(_) => Err(Error::InvalidArgument {
                op: "requires_grad",
                message: format!(
                    "only leaf tensors can be made to require a gradient; this one was computed by \
                     `{}`; use `detach().requires_grad()` for a new leaf",
                    self.grad_fn().unwrap_or("an operation")
                ),
                location: Location::caller(),
            }),
        }
    }

    /// Whether this tensor is a leaf of the graph: it was not computed by a recorded
    /// operation (tensors that do not track gradients are leaves too, as in PyTorch).
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::ones(&[1]).requires_grad();
    /// assert!(x.is_leaf() && !(&x + 1.0).is_leaf());
    /// ```
    pub fn is_leaf(&self) -> bool {
        match self.inner.node.get() {
            None => true,
            Some(key) => with_tape(|t| t.nodes.get(key).is_none_or(|n| n.is_leaf())),
        }
    }

    /// The name of the operation that computed this tensor (PyTorch's `grad_fn`), or `None`
    /// for leaves and for tensors whose node an earlier backward freed.
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::ones(&[1]).requires_grad();
    /// assert_eq!((&x * &x).grad_fn(), Some("mul"));
    /// assert_eq!((&x * 2.0).grad_fn(), Some("mul_scalar"));
    /// ```
    pub fn grad_fn(&self) -> Option<&'static str> {
        let key = self.inner.node.get()?;
        with_tape(|t| t.nodes.get(key).filter(|n| !n.is_leaf()).map(|n| n.op))
    }

    /// Where the operation that computed this tensor was called, if it was recorded and
    /// its node is still alive.
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::ones(&[1]).requires_grad();
    /// let y = &x * 2.0;
    /// assert_eq!(y.location().unwrap().file(), file!());
    /// ```
    pub fn location(&self) -> Option<&'static Location<'static>> {
        let key = self.inner.node.get()?;
        with_tape(|t| t.nodes.get(key).map(|n| n.location))
    }

    /// The accumulated gradient: of a leaf after `backward()`, or of an interior tensor that
    /// called [`Tensor::retain_grad`]. `None` until a backward pass reaches it.
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::full(&[2], 3.0).requires_grad();
    /// (&x * &x).sum_to_shape(&[]).backward();
    /// assert_eq!(x.grad().unwrap().to_vec::<f32>(), vec![6.0, 6.0]);
    /// ```
    pub fn grad(&self) -> Option<Tensor> {
        let key = self.inner.node.get()?;
        with_tape(|t| t.nodes.get(key).and_then(|n| n.grad.clone()))
    }

    /// Clears the accumulated gradient (PyTorch's `zero_grad(set_to_none=True)`).
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::ones(&[1]).requires_grad();
    /// (&x * 2.0).backward();
    /// x.zero_grad();
    /// assert!(x.grad().is_none());
    /// ```
    pub fn zero_grad(&self) {
        if let Some(key) = self.inner.node.get() {
            let old = with_tape(|t| t.nodes.get_mut(key).and_then(|n| n.grad.take()));
            drop(old);
        }
    }

    /// Replaces the accumulated gradient (PyTorch's `p.grad = g`; `None` clears it): what a
    /// gradient all-reduce writes back. The gradient is stored detached. Panics if this
    /// tensor does not track gradients, or `grad` differs from it in shape or dtype.
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// let w = Tensor::ones(&[2]).requires_grad();
    /// w.set_grad(Some(&Tensor::full(&[2], 0.5)));
    /// assert_eq!(w.grad().unwrap().to_vec::<f32>(), vec![0.5, 0.5]);
    /// (&w * 2.0).sum_to_shape(&[]).backward(); // later backward passes add to it
    /// assert_eq!(w.grad().unwrap().to_vec::<f32>(), vec![2.5, 2.5]);
    /// ```
    #[track_caller]
    pub fn set_grad(&self, grad: Option<&Tensor>) {
        or_panic(self.try_set_grad(grad))
    }

    /// [`Tensor::set_grad`], returning an error instead of panicking.
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// let w = Tensor::ones(&[2]).requires_grad();
    /// assert!(w.try_set_grad(Some(&Tensor::ones(&[3]))).is_err()); // shape
    /// assert!(Tensor::ones(&[2]).try_set_grad(None).is_err()); // tracks no gradient
    /// ```
    #[track_caller]
    pub fn try_set_grad(&self, grad: Option<&Tensor>) -> Result<()> {
        let location = Location::caller();
        let Some(key) = self.inner.node.get() else {
            return Err(Error::InvalidArgument {
                op: "set_grad",
                message: "this tensor does not track gradients; call requires_grad() on a leaf"
                    .into(),
                location,
            });
        };
        if let Some(g) = grad {
            self.check_same_kind("set_grad", "gradient", g, location)?;
        }
        let new = grad.map(Tensor::detach);
        let old = with_tape(|t| t.nodes.get_mut(key).map(|n| std::mem::replace(&mut n.grad, new)));
        // Dropped outside the tape's borrow: a gradient may hold the last handle of a node.
        drop(old);
        Ok(())
    }

    /// Asks backward to keep this interior tensor's gradient in [`Tensor::grad`], as PyTorch's
    /// `retain_grad()` does. Has no effect on leaves, which always keep theirs. Panics if the
    /// tensor does not track gradients.
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::ones(&[1]).requires_grad();
    /// let h = &x * 3.0;
    /// h.retain_grad();
    /// (&h * 2.0).backward();
    /// assert_eq!(h.grad().unwrap().item(), 2.0);
    /// ```
    #[track_caller]
    pub fn retain_grad(&self) {
        let Some(key) = self.inner.node.get() else {
            panic!(
                "{}",
                Error::InvalidArgument {
                    op: "retain_grad",
                    message: "this tensor does not track gradients; call requires_grad() on a leaf"
                        .into(),
                    location: Location::caller(),
                }
            );
        };
        with_tape(|t| {
            if let Some(n) = t.nodes.get_mut(key) {
                n.retains_grad = !n.is_leaf();
            }
        });
    }

    /// The same values cut from the graph: the result never tracks gradients. Shares storage.
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// let x = Tensor::ones(&[1]).requires_grad();
    /// assert!(!(&x * 2.0).detach().tracks_grad());
    /// ```
    pub fn detach(&self) -> Tensor {
        Tensor::new(self.storage(), self.inner.layout.clone(), None)
    }

    // ----- in-place updates ---------------------------------------------------------------

    /// Runs `f` on this tensor's storage for an in-place update, as optimizers do with
    /// parameters. Nothing is recorded. If backward still holds these values, the storage is
    /// copied first (copy-on-write), so gradients computed later stay correct.
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// let w = Tensor::ones(&[2]).requires_grad();
    /// w.update_storage(|s, _layout| {
    ///     for v in s.make_mut::<f32>().unwrap().iter_mut() {
    ///         *v -= 0.5;
    ///     }
    /// });
    /// assert_eq!(w.to_vec::<f32>(), vec![0.5, 0.5]);
    /// ```
    #[track_caller]
    pub fn update_storage<R>(&self, f: impl FnOnce(&mut Storage, &Layout) -> R) -> R {
        let Ok(mut storage) = self.inner.storage.try_borrow_mut() else {
            panic!(
                "update_storage: this tensor's values are already borrowed (by an enclosing \
                update_storage or read_storage?)"
            )
        };
        f(&mut storage, &self.inner.layout)
    }

    /// Overwrites this tensor's values with `src`'s (same shape and dtype), in place and
    /// unrecorded: PyTorch's `tensor.data.copy_(src)`. Panics on a shape or dtype mismatch.
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// let w = Tensor::zeros(&[2]).requires_grad();
    /// w.set_data(&Tensor::ones(&[2]));
    /// assert_eq!(w.to_vec::<f32>(), vec![1.0, 1.0]);
    /// ```
    #[track_caller]
    pub fn set_data(&self, src: &Tensor) {
        or_panic(self.try_set_data(src))
    }

    /// [`Tensor::set_data`], returning an error instead of panicking.
    ///
    /// ```
    /// use tapegrad_tape::Tensor;
    /// assert!(Tensor::zeros(&[2]).try_set_data(&Tensor::ones(&[3])).is_err());
    /// ```
    #[track_caller]
    pub fn try_set_data(&self, src: &Tensor) -> Result<()> {
        let location = Location::caller();
        self.check_same_kind("set_data", "source", src, location)?;
        if self.layout().overlaps() {
            return Err(Error::InvalidArgument {
                op: "set_data",
                message: format!(
                    "this tensor of shape {:?} is an expanded view whose elements share memory",
                    self.shape()
                ),
                location,
            });
        }
        self.write_values(src.contiguous_storage());
        Ok(())
    }

    /// That `other` (the `what` of `op`) has this tensor's shape and dtype.
    fn check_same_kind(
        &self,
        op: &'static str,
        what: &str,
        other: &Tensor,
        location: &'static Location<'static>,
    ) -> Result<()> {
        if other.shape() != self.shape() {
            return Err(shape_error(
                op,
                format!(
                    "{what} shape {:?} differs from this tensor's shape {:?}",
                    other.shape(),
                    self.shape()
                ),
                location,
            ));
        }
        if other.dtype() != self.dtype() {
            return Err(Error::DType { op, lhs: self.dtype(), rhs: other.dtype(), location });
        }
        Ok(())
    }

    /// Overwrites this tensor's elements with `values` (row-major, this shape and dtype),
    /// through its layout; copy-on-write, so what backward saved keeps the old values.
    pub(crate) fn write_values(&self, values: Storage) {
        self.update_storage(|dst, layout| {
            if layout.is_contiguous() && layout.offset() == 0 && dst.len() == layout.numel() {
                *dst = values;
                return;
            }
            fn copy<T: StorageElement>(dst: &mut Storage, layout: &Layout, src: &Storage) {
                let src = src.as_slice::<T>().expect("dtype checked");
                let dst = dst.make_mut::<T>().expect("dtype checked");
                for (o, &v) in layout.offsets().zip(src) {
                    dst[o] = v;
                }
            }
            match values.dtype() {
                DType::F32 => copy::<f32>(dst, layout, &values),
                DType::F64 => copy::<f64>(dst, layout, &values),
                DType::I64 => copy::<i64>(dst, layout, &values),
                DType::Bool => copy::<bool>(dst, layout, &values),
            }
        });
    }

    /// Moves this tensor (every handle of it) to `key`'s node, as an in-place operation
    /// recorded in grad mode does.
    pub(crate) fn rebind_node(&self, key: Option<NodeKey>) {
        if let Some(key) = key {
            with_tape(|t| t.incref(key));
        }
        if let Some(old) = self.inner.node.replace(key) {
            tape::release(old);
        }
    }

    // ----- conversions --------------------------------------------------------------------

    /// Storage holding exactly this tensor's elements in row-major order (shared, not
    /// copied, when the tensor is already contiguous and fills its buffer).
    ///
    /// ```
    /// let t = tapegrad_tape::Tensor::zeros(&[2, 3]);
    /// assert_eq!(t.contiguous_storage().len(), 6);
    /// ```
    pub fn contiguous_storage(&self) -> Storage {
        let storage = self.storage();
        let layout = self.layout();
        if layout.is_contiguous() && layout.offset() == 0 && storage.len() == layout.numel() {
            return storage;
        }
        map_storage!(&storage, v => kernels::to_contiguous(v, layout))
    }

    /// This tensor with its elements laid out row-major (a copy only if they are not
    /// already). Differentiable.
    ///
    /// ```
    /// use tapegrad_tape::{Tensor, layout::Layout};
    /// let t = Tensor::from_storage(
    ///     Tensor::arange(0.0, 4.0, 1.0).storage(),
    ///     Layout::contiguous(&[2, 2]).transpose(0, 1),
    /// );
    /// assert!(t.contiguous().is_contiguous());
    /// ```
    #[track_caller]
    pub fn contiguous(&self) -> Tensor {
        if self.is_contiguous() {
            return self.clone();
        }
        let value = Tensor::new(self.contiguous_storage(), Layout::contiguous(self.shape()), None);
        record_with_tangent(
            "contiguous",
            Location::caller(),
            &[self],
            value,
            || Backward::new(|ctx| smallvec::smallvec![Some(ctx.grad().clone())]),
            |ctx| ctx.map(Tensor::contiguous),
        )
    }

    fn to_dtype_value(&self, dtype: DType) -> Tensor {
        if self.dtype() == dtype {
            return self.detach();
        }
        let converted = match dtype {
            DType::F32 => Storage::from_vec(self.to_vec::<f32>()),
            DType::F64 => Storage::from_vec(self.to_vec::<f64>()),
            DType::I64 => Storage::from_vec(self.to_vec::<i64>()),
            DType::Bool => Storage::from_vec(self.to_vec::<bool>()),
        };
        Tensor::new(converted, Layout::contiguous(self.shape()), None)
    }

    /// This tensor converted to `dtype` (the same tensor if it already has it).
    /// Differentiable between float types: the gradient converts back. Converting to int64
    /// truncates toward zero and cuts the graph, as in PyTorch.
    ///
    /// ```
    /// use tapegrad_tape::{DType, Tensor};
    /// let x = Tensor::ones(&[2]).requires_grad();
    /// let y = x.to_dtype(DType::F64);
    /// (&y * 3.0).sum_to_shape(&[]).backward();
    /// assert_eq!(x.grad().unwrap().dtype(), DType::F32);
    /// ```
    #[track_caller]
    pub fn to_dtype(&self, dtype: DType) -> Tensor {
        if self.dtype() == dtype {
            return self.clone();
        }
        if !dtype.is_float() || !self.dtype().is_float() {
            return self.to_dtype_value(dtype);
        }
        let from = self.dtype();
        record_with_tangent(
            "to_dtype",
            Location::caller(),
            &[self],
            self.to_dtype_value(dtype),
            || Backward::new(move |ctx| smallvec::smallvec![Some(ctx.grad().to_dtype(from))]),
            |ctx| ctx.map(|v| v.to_dtype(dtype)),
        )
    }

    /// Whether two handles are the same tensor (same values and node), like Python's `is`.
    ///
    /// ```
    /// let a = tapegrad_tape::Tensor::zeros(&[1]);
    /// assert!(a.is_same(&a.clone()));
    /// assert!(!a.is_same(&a.detach()));
    /// ```
    pub fn is_same(&self, other: &Tensor) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }

    /// Adds `g` into this gradient's own buffer and returns true, or returns false where
    /// that is not safe. For speed: accumulating into `.grad` then allocates nothing.
    pub(crate) fn accumulate_in_place(&self, g: &Tensor) -> bool {
        // Only a plain, contiguous, untracked gradient buffer is updated in place.
        if self.tracks_grad()
            || !self.is_contiguous()
            || !crate::layout::same_shape(g.shape(), self.shape())
            || g.dtype() != self.dtype()
        {
            return false;
        }
        let addend = g.storage();
        let gl = g.layout().clone();
        self.update_storage(|dst, layout| {
            fn add<T: Element>(dst: &mut Storage, layout: &Layout, src: &Storage, sl: &Layout) {
                let src = src.as_slice::<T>().expect("dtype checked");
                let n = layout.numel();
                let off = layout.offset();
                let dst = &mut dst.make_mut::<T>().expect("dtype checked")[off..off + n];
                tapegrad_kernels::strided::zip_view_in_place(dst, src, sl, |d: T, s: T| d + s);
            }
            match addend.dtype() {
                DType::F32 => add::<f32>(dst, layout, &addend, &gl),
                DType::F64 => add::<f64>(dst, layout, &addend, &gl),
                DType::I64 | DType::Bool => unreachable!("integer tensors have no gradients"),
            }
        });
        true
    }
}

/// An empty vector with room for `n` elements, or an error naming `op` if that much memory
/// cannot be had (instead of the allocator's abort).
#[track_caller]
pub(crate) fn with_capacity<T>(
    op: &'static str,
    n: usize,
    location: &'static Location<'static>,
) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| Error::InvalidArgument {
        op,
        message: format!(
            "cannot allocate {n} elements ({} bytes)",
            (n as u128) * std::mem::size_of::<T>() as u128
        ),
        location,
    })?;
    Ok(v)
}

/// `n` copies of `value`, or an error naming `op` if the memory cannot be had.
fn filled_vec<T: Clone>(
    op: &'static str,
    n: usize,
    value: T,
    location: &'static Location<'static>,
) -> Result<Vec<T>> {
    let mut v = with_capacity(op, n, location)?;
    v.resize(n, value);
    Ok(v)
}
