//! Parameter files in the safetensors format (what PyTorch and Hugging Face users exchange
//! weights in), written atomically, read with clear errors.

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use safetensors::tensor::{Dtype, View};
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

/// The dtypes tapegrad reads, with their sizes in bytes.
fn readable_size(dtype: Dtype) -> Option<usize> {
    match dtype {
        Dtype::F32 => Some(4),
        Dtype::F64 | Dtype::I64 => Some(8),
        _ => None,
    }
}

/// Decodes one entry's little-endian bytes (already checked to be `shape`'s worth).
fn decode(path: &Path, name: &str, dtype: Dtype, shape: &[usize], data: &[u8]) -> Result<Tensor> {
    macro_rules! decode {
        ($t:ty, $n:literal) => {
            Tensor::try_from_vec(
                data.chunks_exact($n)
                    .map(|c| <$t>::from_le_bytes(c.try_into().expect("chunk size")))
                    .collect::<Vec<$t>>(),
                shape,
            )
        };
    }
    let tensor = match dtype {
        Dtype::F32 => decode!(f32, 4),
        Dtype::F64 => decode!(f64, 8),
        Dtype::I64 => decode!(i64, 8),
        other => {
            return Err(format_err(path, format!("entry `{name}` has dtype {other}; tapegrad reads F32, F64 and I64")));
        }
    };
    tensor.map_err(|e| format_err(path, format!("entry `{name}`: {e}")))
}

/// The largest header accepted, as in the safetensors crate: a bigger length is corruption.
const MAX_HEADER: u64 = 100_000_000;

/// One validated header entry: its bytes are `begin..end` of the data section.
struct Entry {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    begin: usize,
    end: usize,
}

/// A JSON value for a message: its text, shortened if long.
fn show(v: &serde_json::Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

fn as_index(v: &serde_json::Value) -> Option<usize> {
    v.as_u64().and_then(|n| usize::try_from(n).ok())
}

/// Checks one header entry on its own: a dtype tapegrad reads, a shape of non-negative
/// integers, and data offsets inside the data section that hold exactly the shape's bytes.
fn parse_entry(path: &Path, name: &str, value: &serde_json::Value, data_len: usize) -> Result<Entry> {
    let err = |message: String| format_err(path, format!("entry `{name}` {message}"));
    let fields = value
        .as_object()
        .ok_or_else(|| err(format!("is {}, not an object with dtype, shape and data_offsets", show(value))))?;
    let field = |key: &str| fields.get(key).ok_or_else(|| err(format!("has no `{key}`")));
    let dtype_value = field("dtype")?;
    let dtype_name = dtype_value
        .as_str()
        .ok_or_else(|| err(format!("has dtype {}; expected a string such as \"F32\"", show(dtype_value))))?;
    // The safetensors crate knows every dtype the format defines.
    let dtype: Dtype = serde_json::from_value(dtype_value.clone())
        .map_err(|_| err(format!("has unknown dtype \"{dtype_name}\"; tapegrad reads F32, F64 and I64")))?;
    let size =
        readable_size(dtype).ok_or_else(|| err(format!("has dtype {dtype}; tapegrad reads F32, F64 and I64")))?;
    let shape_value = field("shape")?;
    let shape = shape_value
        .as_array()
        .and_then(|dims| dims.iter().map(as_index).collect::<Option<Vec<usize>>>())
        .ok_or_else(|| err(format!("has shape {}; expected a list of non-negative integers", show(shape_value))))?;
    let offsets_value = field("data_offsets")?;
    let (begin, end) = match offsets_value.as_array().map(|o| o.iter().map(as_index).collect::<Vec<_>>()).as_deref() {
        Some(&[Some(begin), Some(end)]) => (begin, end),
        _ => {
            return Err(err(format!(
                "has data_offsets {}; expected [begin, end], two non-negative integers",
                show(offsets_value)
            )));
        }
    };
    if begin > end {
        return Err(err(format!("has data_offsets [{begin}, {end}]: the beginning is past the end")));
    }
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let Some((count, bytes)) = count.and_then(|c| Some((c, c.checked_mul(size)?))) else {
        return Err(err(format!("has shape {shape:?}, whose size overflows")));
    };
    if bytes != end - begin {
        return Err(err(format!(
            "is {dtype} with shape {shape:?}: {count} elements need {bytes} bytes, but data_offsets [{begin}, {end}] \
             hold {}",
            end - begin
        )));
    }
    if end > data_len {
        return Err(err(format!(
            "has data_offsets [{begin}, {end}] but the data section holds only {data_len} bytes; is the file truncated?"
        )));
    }
    Ok(Entry { name: name.to_string(), dtype, shape, begin, end })
}

/// Parses and validates a safetensors file's header: every entry on its own, then that the
/// entries cover the data section exactly once (no gap, no shared bytes, nothing after).
/// Returns the entries in the file's order, by (begin, end, name), and the data section.
/// Every check is deterministic: the same file gives the same message on every run.
fn parse_header<'a>(path: &Path, buffer: &'a [u8]) -> Result<(Vec<Entry>, &'a [u8])> {
    let file_len = buffer.len();
    let Some(length) = buffer.get(..8) else {
        return Err(format_err(
            path,
            format!(
                "{file_len} bytes is too short for a safetensors file (its first 8 bytes give the header's length); is it truncated?"
            ),
        ));
    };
    let n = u64::from_le_bytes(length.try_into().expect("8 bytes"));
    if n > MAX_HEADER {
        return Err(format_err(
            path,
            format!("header length {n} is over the {MAX_HEADER}-byte limit: not a safetensors file, or a corrupt one"),
        ));
    }
    let header_end = 8 + n as usize;
    if header_end > file_len {
        return Err(format_err(
            path,
            format!(
                "header length {n} runs past the end of the file: the header would end at byte {header_end}, the file \
                 has {file_len} bytes; is it truncated?"
            ),
        ));
    }
    let header: serde_json::Value = serde_json::from_slice(&buffer[8..header_end])
        .map_err(|e| format_err(path, format!("the {n}-byte header is not valid JSON ({e}); is the file corrupt?")))?;
    let serde_json::Value::Object(map) = header else {
        return Err(format_err(path, format!("the header is {}, not a JSON object of tensor entries", show(&header))));
    };
    let data = &buffer[header_end..];
    let mut names: Vec<&String> = map.keys().collect();
    names.sort();
    let mut entries = Vec::with_capacity(names.len());
    for name in names {
        let value = &map[name];
        if name == "__metadata__" {
            let all_strings = value.as_object().map(|m| m.iter().find(|(_, v)| !v.is_string()));
            match all_strings {
                Some(None) => continue,
                Some(Some((key, v))) => {
                    return Err(format_err(
                        path,
                        format!("`__metadata__` must map names to strings, but `{key}` is {}", show(v)),
                    ));
                }
                None => {
                    return Err(format_err(
                        path,
                        format!("`__metadata__` must be an object of strings, not {}", show(value)),
                    ));
                }
            }
        }
        entries.push(parse_entry(path, name, value, data.len())?);
    }
    entries.sort_by(|a, b| (a.begin, a.end, &a.name).cmp(&(b.begin, b.end, &b.name)));
    let span = |e: &Entry| format!("`{}` [{}, {}]", e.name, e.begin, e.end);
    // `covered` bytes are accounted for, the last of them by `last`.
    let mut covered = 0;
    let mut last: Option<&Entry> = None;
    for e in &entries {
        if e.begin > covered {
            let after = last.map(|l| format!("after entry {} and ", span(l))).unwrap_or_default();
            return Err(format_err(
                path,
                format!(
                    "bytes {covered}..{} of the data section ({after}before entry {}) belong to no entry; is an entry \
                     missing from the header?",
                    e.begin,
                    span(e)
                ),
            ));
        }
        if e.begin < covered && e.end > e.begin {
            let l = last.expect("bytes are covered by an earlier entry");
            return Err(format_err(
                path,
                format!(
                    "entries {} and {} share bytes {}..{} of the data section; each entry needs bytes of its own",
                    span(l),
                    span(e),
                    e.begin,
                    e.end.min(covered)
                ),
            ));
        }
        if e.end > covered {
            covered = e.end;
            last = Some(e);
        }
    }
    if covered < data.len() {
        let after = last.map(|l| format!(" (after entry {})", span(l))).unwrap_or_default();
        return Err(format_err(
            path,
            format!(
                "bytes {covered}..{} of the data section{after} belong to no entry: trailing bytes, or an entry \
                 missing from the header",
                data.len()
            ),
        ));
    }
    Ok((entries, data))
}

/// Writes `buffer` to `path` atomically: a new temporary file beside it (a name no other save,
/// in this process or another, uses), flushed to disk, renamed over `path`, and on Unix the
/// directory flushed too so the rename itself survives a crash.
fn write_atomically(path: &Path, buffer: &[u8]) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file_name = path.file_name().ok_or_else(|| format_err(path, "not a file path"))?;
    let (tmp, mut file) = loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{}.tmp-{}-{n}", file_name.to_string_lossy(), std::process::id()));
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(file) => break (tmp, file),
            // Left by a crashed process that had our pid: not ours to remove; try the next name.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(path, e)),
        }
    };
    let write = || -> std::io::Result<()> {
        file.write_all(buffer)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(path, e)
    })?;
    #[cfg(unix)]
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_err(path, e))?;
    Ok(())
}

/// Writes named tensors to a safetensors file. The file is written next to its destination
/// under a temporary name, flushed to disk and then renamed over it, so a crash midway never
/// leaves a half-written file in place of a good one. Names must be unique.
///
/// ```
/// use tapegrad_nn::{load_tensors, save_tensors};
/// use tapegrad_tape::Tensor;
/// let path = std::env::temp_dir().join(format!("tapegrad-doc-{}.safetensors", std::process::id()));
/// save_tensors(&path, &[("w".into(), Tensor::ones(&[2, 3]))]).unwrap();
/// let back = load_tensors(&path).unwrap();
/// assert_eq!((back[0].0.as_str(), back[0].1.shape()), ("w", &[2, 3][..]));
/// let twice = vec![("w".to_string(), Tensor::ones(&[1])), ("w".to_string(), Tensor::zeros(&[1]))];
/// assert!(save_tensors(&path, &twice).unwrap_err().to_string().contains("`w`"));
/// # std::fs::remove_file(&path).unwrap();
/// ```
pub fn save_tensors(path: impl AsRef<Path>, tensors: &[(String, Tensor)]) -> Result<()> {
    let path = path.as_ref();
    // The safetensors crate panics on a repeated name; the header cannot hold one anyway.
    let mut names: Vec<(&str, usize)> = tensors.iter().enumerate().map(|(i, (n, _))| (n.as_str(), i)).collect();
    names.sort();
    if let Some(pair) = names.windows(2).find(|p| p[0].0 == p[1].0) {
        return Err(format_err(
            path,
            format!("tensors {} and {} are both named `{}`; names must be unique", pair[0].1, pair[1].1, pair[0].0),
        ));
    }
    if names.iter().any(|(n, _)| *n == "__metadata__") {
        return Err(format_err(path, "the name `__metadata__` is reserved by the safetensors format"));
    }
    let bytes: Vec<(String, Bytes)> = tensors.iter().map(|(n, t)| (n.clone(), to_bytes(t))).collect();
    let views: Vec<(&str, &Bytes)> = bytes.iter().map(|(n, b)| (n.as_str(), b)).collect();
    let buffer = safetensors::serialize(views, None).map_err(|e| format_err(path, e.to_string()))?;
    write_atomically(path, &buffer)
}

/// Reads every tensor of a safetensors file, in the file's order. A truncated or corrupt
/// file is an error that names the file, the entry and the numbers that disagree.
///
/// ```
/// let err = tapegrad_nn::load_tensors("/nonexistent/weights.safetensors").unwrap_err();
/// assert!(err.to_string().contains("/nonexistent/weights.safetensors"));
/// ```
pub fn load_tensors(path: impl AsRef<Path>) -> Result<Vec<(String, Tensor)>> {
    let path = path.as_ref();
    let buffer = std::fs::read(path).map_err(|e| io_err(path, e))?;
    let (entries, data) = parse_header(path, &buffer)?;
    entries
        .into_iter()
        .map(|e| {
            let tensor = decode(path, &e.name, e.dtype, &e.shape, &data[e.begin..e.end])?;
            Ok((e.name, tensor))
        })
        .collect()
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
        .ok_or_else(|| format_err(path, "missing entry `epoch`: not a tapegrad checkpoint"))?;
    let epoch = match (epoch.1.dtype(), epoch.1.numel()) {
        (DType::I64, 1) => epoch.1.to_vec::<i64>()[0],
        (dtype, _) => {
            return Err(format_err(
                path,
                format!("entry `epoch` is {dtype} with shape {:?}; a checkpoint's epoch is one int64", epoch.1.shape()),
            ));
        }
    };
    let epoch = usize::try_from(epoch)
        .map_err(|_| format_err(path, format!("entry `epoch` is {epoch}; an epoch is a non-negative count")))?;
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
