//! Parameter files in the safetensors format (what PyTorch and Hugging Face users exchange
//! weights in), written atomically, read with clear errors.

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView, View};
use tapegrad_tape::{DType, Error, Result, Tensor};

use crate::{Module, Optimizer};

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io { path: path.display().to_string(), source }
}

fn format_err(path: &Path, message: impl Into<String>) -> Error {
    Error::Format { path: path.display().to_string(), message: message.into() }
}

/// A tensor's bytes in little-endian order, as safetensors stores them.
struct Bytes {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Bytes {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn to_bytes(t: &Tensor) -> Bytes {
    let (dtype, data) = match t.dtype() {
        DType::F32 => (Dtype::F32, t.to_vec::<f32>().iter().flat_map(|v| v.to_le_bytes()).collect()),
        DType::F64 => (Dtype::F64, t.to_vec::<f64>().iter().flat_map(|v| v.to_le_bytes()).collect()),
        DType::I64 => (Dtype::I64, t.to_vec::<i64>().iter().flat_map(|v| v.to_le_bytes()).collect()),
    };
    Bytes { dtype, shape: t.shape().to_vec(), data }
}

fn from_view(path: &Path, name: &str, v: &TensorView<'_>) -> Result<Tensor> {
    let shape = v.shape().to_vec();
    let data = v.data();
    macro_rules! decode {
        ($t:ty, $n:literal) => {
            Tensor::from_vec(
                data.chunks_exact($n)
                    .map(|c| <$t>::from_le_bytes(c.try_into().expect("chunk size")))
                    .collect::<Vec<$t>>(),
                &shape,
            )
        };
    }
    Ok(match v.dtype() {
        Dtype::F32 => decode!(f32, 4),
        Dtype::F64 => decode!(f64, 8),
        Dtype::I64 => decode!(i64, 8),
        other => {
            return Err(format_err(
                path,
                format!("entry `{name}` has dtype {other:?}; tapegrad reads F32, F64 and I64"),
            ));
        }
    })
}

/// Writes named tensors to a safetensors file. The file is written next to its destination
/// under a temporary name, flushed to disk and then renamed over it, so a crash midway never
/// leaves a half-written file in place of a good one.
///
/// ```
/// use tapegrad_nn::{load_tensors, save_tensors};
/// use tapegrad_tape::Tensor;
/// let path = std::env::temp_dir().join(format!("tapegrad-doc-{}.safetensors", std::process::id()));
/// save_tensors(&path, &[("w".into(), Tensor::ones(&[2, 3]))]).unwrap();
/// let back = load_tensors(&path).unwrap();
/// assert_eq!((back[0].0.as_str(), back[0].1.shape()), ("w", &[2, 3][..]));
/// # std::fs::remove_file(&path).unwrap();
/// ```
pub fn save_tensors(path: impl AsRef<Path>, tensors: &[(String, Tensor)]) -> Result<()> {
    let path = path.as_ref();
    let bytes: Vec<(String, Bytes)> = tensors.iter().map(|(n, t)| (n.clone(), to_bytes(t))).collect();
    let views: Vec<(&str, &Bytes)> = bytes.iter().map(|(n, b)| (n.as_str(), b)).collect();
    let buffer = safetensors::serialize(views, None).map_err(|e| format_err(path, e.to_string()))?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file_name = path.file_name().ok_or_else(|| format_err(path, "not a file path"))?;
    let tmp = dir.join(format!(".{}.tmp-{}", file_name.to_string_lossy(), std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&buffer)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(path, e)
    })
}

/// Reads every tensor of a safetensors file, in the file's order. A truncated or corrupt
/// file is an error that says so.
///
/// ```
/// let err = tapegrad_nn::load_tensors("/nonexistent/weights.safetensors").unwrap_err();
/// assert!(err.to_string().contains("/nonexistent/weights.safetensors"));
/// ```
pub fn load_tensors(path: impl AsRef<Path>) -> Result<Vec<(String, Tensor)>> {
    let path = path.as_ref();
    let buffer = std::fs::read(path).map_err(|e| io_err(path, e))?;
    let file = SafeTensors::deserialize(&buffer)
        .map_err(|e| format_err(path, format!("not a valid safetensors file ({e}); is it truncated or corrupt?")))?;
    let mut entries: Vec<(String, TensorView<'_>)> = file.tensors();
    // `tensors()` does not promise an order; the data offsets give the file's.
    entries.sort_by_key(|(_, v)| v.data().as_ptr() as usize);
    entries.iter().map(|(n, v)| Ok((n.clone(), from_view(path, n, v)?))).collect()
}

/// Saves a module's parameters and buffers (its state dict) with PyTorch's names.
///
/// ```
/// use tapegrad_nn::{Linear, Module, load, save};
/// let path = std::env::temp_dir().join(format!("tapegrad-doc-save-{}.safetensors", std::process::id()));
/// let a = Linear::new(3, 2);
/// save(&a, &path).unwrap();
/// let mut b = Linear::new(3, 2);
/// load(&mut b, &path).unwrap();
/// assert_eq!(a.weight.to_vec::<f32>(), b.weight.to_vec::<f32>());
/// # std::fs::remove_file(&path).unwrap();
/// ```
pub fn save(module: &dyn Module, path: impl AsRef<Path>) -> Result<()> {
    save_tensors(path, &module.state_dict())
}

/// Loads parameters and buffers into a module, checking that names, shapes and dtypes match
/// exactly (a missing, unexpected or mis-shaped entry is an error naming it; nothing is
/// changed then).
///
/// ```
/// use tapegrad_nn::{Linear, load, save};
/// let dir = std::env::temp_dir().join(format!("tapegrad-doc-load-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("linear.safetensors");
/// save(&Linear::new(3, 2), &path).unwrap();
/// let mut wrong = Linear::new(4, 2);
/// let before = wrong.weight.to_vec::<f32>();
/// let err = load(&mut wrong, &path).unwrap_err();
/// assert!(err.to_string().contains("weight")); // names the mis-shaped entry...
/// assert_eq!(wrong.weight.to_vec::<f32>(), before); // ...and changes nothing
/// assert!(load(&mut Linear::new(3, 2), &path).is_ok());
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn load(module: &mut dyn Module, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let entries = load_tensors(path)?;
    module.load_state_dict(&entries).map_err(|e| match e {
        Error::Format { message, .. } => format_err(path, message),
        other => other,
    })
}

/// Saves a training checkpoint: model, optimizer state and epoch in one file (entries
/// `model.*`, `optimizer.*` and `epoch`).
///
/// ```
/// use tapegrad_nn::{Adam, Linear, Module, load_checkpoint, save_checkpoint};
/// let path = std::env::temp_dir().join(format!("tapegrad-doc-ckpt-{}.safetensors", std::process::id()));
/// let model = Linear::new(2, 2);
/// let opt = Adam::new(model.parameters(), 1e-3);
/// save_checkpoint(&path, &model, &opt, 7).unwrap();
/// let mut model2 = Linear::new(2, 2);
/// let mut opt2 = Adam::new(model2.parameters(), 1e-3);
/// assert_eq!(load_checkpoint(&path, &mut model2, &mut opt2).unwrap(), 7);
/// # std::fs::remove_file(&path).unwrap();
/// ```
pub fn save_checkpoint(
    path: impl AsRef<Path>,
    model: &dyn Module,
    optimizer: &dyn Optimizer,
    epoch: usize,
) -> Result<()> {
    let mut entries: Vec<(String, Tensor)> =
        model.state_dict().into_iter().map(|(n, t)| (format!("model.{n}"), t)).collect();
    entries.extend(optimizer.state_dict().into_iter().map(|(n, t)| (format!("optimizer.{n}"), t)));
    entries.push(("epoch".into(), Tensor::from_vec(vec![epoch as i64], &[])));
    save_tensors(path, &entries)
}

/// Restores a checkpoint written by [`save_checkpoint`] and returns its epoch.
///
/// ```
/// use tapegrad_nn::{Linear, Module, Optimizer, SGD, load_checkpoint, save_checkpoint};
/// use tapegrad_tape::Tensor;
/// let dir = std::env::temp_dir().join(format!("tapegrad-doc-load-ckpt-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("checkpoint.safetensors");
/// let model = Linear::new(2, 1);
/// let mut opt = SGD::new(model.parameters(), 0.1).momentum(0.9);
/// model.forward(&Tensor::ones(&[1, 2])).sum_to_shape(&[]).backward();
/// opt.step(); // now there is a momentum buffer to save
/// save_checkpoint(&path, &model, &opt, 3).unwrap();
/// let mut model2 = Linear::new(2, 1);
/// let mut opt2 = SGD::new(model2.parameters(), 0.1).momentum(0.9);
/// assert_eq!(load_checkpoint(&path, &mut model2, &mut opt2).unwrap(), 3);
/// assert_eq!(model2.weight.to_vec::<f32>(), model.weight.to_vec::<f32>());
/// let state = |o: &SGD| o.state_dict().into_iter().map(|(n, t)| (n, t.to_vec::<f64>())).collect::<Vec<_>>();
/// assert_eq!(state(&opt2), state(&opt));
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn load_checkpoint(path: impl AsRef<Path>, model: &mut dyn Module, optimizer: &mut dyn Optimizer) -> Result<usize> {
    let path = path.as_ref();
    let entries = load_tensors(path)?;
    let part = |prefix: &str| -> Vec<(String, Tensor)> {
        entries.iter().filter_map(|(n, t)| n.strip_prefix(prefix).map(|s| (s.to_string(), t.clone()))).collect()
    };
    let epoch = entries
        .iter()
        .find(|(n, _)| n == "epoch")
        .map(|(_, t)| t.item() as usize)
        .ok_or_else(|| format_err(path, "missing entry `epoch`: not a tapegrad checkpoint"))?;
    model.load_state_dict(&part("model.")).map_err(|e| match e {
        Error::Format { message, .. } => format_err(path, message),
        other => other,
    })?;
    optimizer.load_state_dict(&part("optimizer.")).map_err(|e| match e {
        Error::Format { message, .. } => format_err(path, message),
        other => other,
    })?;
    Ok(epoch)
}
