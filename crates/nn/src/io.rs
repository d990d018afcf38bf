//! Parameter files in the safetensors format (what PyTorch and
//! Hugging Face users exchange weights in), written atomically, read with clear errors.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use safetensors::tensor::{Dtype, View};
use tapegrad_tape::{DType, Error, Result, Tensor};

use crate::Module;
use crate::module::LoadReport;

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io { path: path.display().to_string(), source }
}

pub(crate) fn format_err(path: &Path, message: impl Into<String>) -> Error {
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
        DType::F32 => {
            (Dtype::F32, t.to_vec::<f32>().iter().flat_map(|v| v.to_le_bytes()).collect())
        }
        DType::F64 => {
            (Dtype::F64, t.to_vec::<f64>().iter().flat_map(|v| v.to_le_bytes()).collect())
        }
        DType::I64 => {
            (Dtype::I64, t.to_vec::<i64>().iter().flat_map(|v| v.to_le_bytes()).collect())
        }
        DType::Bool => (Dtype::BOOL, t.to_vec::<bool>().iter().map(|&b| b as u8).collect()),
    };
    Bytes { dtype, shape: t.shape().to_vec(), data }
}

/// The dtypes tapegrad reads, with their sizes in bytes.
fn readable_size(dtype: Dtype) -> Option<usize> {
    match dtype {
        Dtype::BOOL => Some(1),
        Dtype::F16 | Dtype::BF16 => Some(2),
        Dtype::F32 => Some(4),
        Dtype::F64 | Dtype::I64 => Some(8),
        _ => None,
    }
}

/// An IEEE half-precision number's value as f32 (exact: every f16 is an f32).
fn f16_to_f32(bits: u16) -> f32 {
    let sign = if bits & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let exponent = ((bits >> 10) & 0x1f) as i32;
    let mantissa = (bits & 0x3ff) as f32;
    match exponent {
        0 => sign * mantissa * 2f32.powi(-24),
        31 if mantissa == 0.0 => sign * f32::INFINITY,
        31 => f32::NAN,
        e => sign * (1.0 + mantissa / 1024.0) * 2f32.powi(e - 15),
    }
}

/// A bfloat16 number's value as f32: its bits are the top half of the f32's.
fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
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
        Dtype::BOOL => match data.iter().find(|&&b| b > 1) {
            Some(b) => {
                return Err(format_err(
                    path,
                    format!("entry `{name}` is BOOL but holds the byte {b}; booleans are 0 or 1"),
                ));
            }
            None => {
                Tensor::try_from_vec(data.iter().map(|&b| b == 1).collect::<Vec<bool>>(), shape)
            }
        },
        Dtype::F16 | Dtype::BF16 => {
            let widen = if dtype == Dtype::F16 { f16_to_f32 } else { bf16_to_f32 };
            Tensor::try_from_vec(
                data.chunks_exact(2)
                    .map(|c| widen(u16::from_le_bytes([c[0], c[1]])))
                    .collect::<Vec<f32>>(),
                shape,
            )
        }
        other => {
            return Err(format_err(
                path,
                format!(
                    "entry `{name}` has dtype {other}; tapegrad reads F32, F64, I64, BOOL, F16 and BF16"
                ),
            ));
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
fn parse_entry(
    path: &Path,
    name: &str,
    value: &serde_json::Value,
    data_len: usize,
) -> Result<Entry> {
    let err = |message: String| format_err(path, format!("entry `{name}` {message}"));
    let fields = value.as_object().ok_or_else(|| {
        err(format!("is {}, not an object with dtype, shape and data_offsets", show(value)))
    })?;
    let field = |key: &str| fields.get(key).ok_or_else(|| err(format!("has no `{key}`")));
    let dtype_value = field("dtype")?;
    let dtype_name = dtype_value.as_str().ok_or_else(|| {
        err(format!("has dtype {}; expected a string such as \"F32\"", show(dtype_value)))
    })?;
    // The safetensors crate knows every dtype the format defines.
    let dtype: Dtype = serde_json::from_value(dtype_value.clone()).map_err(|_| {
        err(format!(
            "has unknown dtype \"{dtype_name}\"; tapegrad reads F32, F64, I64, BOOL, F16 and BF16"
        ))
    })?;
    let size = readable_size(dtype).ok_or_else(|| {
        err(format!("has dtype {dtype}; tapegrad reads F32, F64, I64, BOOL, F16 and BF16"))
    })?;
    let shape_value = field("shape")?;
    let shape = shape_value
        .as_array()
        .and_then(|dims| dims.iter().map(as_index).collect::<Option<Vec<usize>>>())
        .ok_or_else(|| {
            err(format!(
                "has shape {}; expected a list of non-negative integers",
                show(shape_value)
            ))
        })?;
    let offsets_value = field("data_offsets")?;
    let (begin, end) = match offsets_value
        .as_array()
        .map(|o| o.iter().map(as_index).collect::<Vec<_>>())
        .as_deref()
    {
        Some(&[Some(begin), Some(end)]) => (begin, end),
        _ => {
            return Err(err(format!(
                "has data_offsets {}; expected [begin, end], two non-negative integers",
                show(offsets_value)
            )));
        }
    };
    if begin > end {
        return Err(err(format!(
            "has data_offsets [{begin}, {end}]: the beginning is past the end"
        )));
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
            "has data_offsets [{begin}, {end}] but the data section holds only {data_len} bytes; \
            is the file truncated?"
        )));
    }
    Ok(Entry { name: name.to_string(), dtype, shape, begin, end })
}

/// A safetensors file's `__metadata__`: text by name.
pub(crate) type Metadata = BTreeMap<String, String>;

/// Parses and validates a safetensors file's header: every entry on its own, then that the
/// entries cover the data section exactly once (no gap, no shared bytes, nothing after).
/// Returns the entries in the file's order, by (begin, end, name), the data section and the
/// metadata. Every check is deterministic: the same file gives the same message on every run.
fn parse_header<'a>(path: &Path, buffer: &'a [u8]) -> Result<(Vec<Entry>, &'a [u8], Metadata)> {
    let file_len = buffer.len();
    let Some(length) = buffer.get(..8) else {
        return Err(format_err(
            path,
            format!(
                "{file_len} bytes is too short for a safetensors file (its first 8 bytes give the \
                header's length); is it truncated?"
            ),
        ));
    };
    let n = u64::from_le_bytes(length.try_into().expect("8 bytes"));
    if n > MAX_HEADER {
        return Err(format_err(
            path,
            format!(
                "header length {n} is over the {MAX_HEADER}-byte limit: not a safetensors file, \
                or a corrupt one"
            ),
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
    let header: serde_json::Value =
        serde_json::from_slice(&buffer[8..header_end]).map_err(|e| {
            format_err(
                path,
                format!("the {n}-byte header is not valid JSON ({e}); is the file corrupt?"),
            )
        })?;
    let serde_json::Value::Object(map) = header else {
        return Err(format_err(
            path,
            format!("the header is {}, not a JSON object of tensor entries", show(&header)),
        ));
    };
    let data = &buffer[header_end..];
    let mut names: Vec<&String> = map.keys().collect();
    names.sort();
    let mut entries = Vec::with_capacity(names.len());
    let mut metadata = Metadata::new();
    for name in names {
        let value = &map[name];
        if name == "__metadata__" {
            let all_strings = value.as_object().map(|m| m.iter().find(|(_, v)| !v.is_string()));
            match all_strings {
                Some(None) => {
                    let strings = value.as_object().expect("an object").iter();
                    metadata = strings
                        .map(|(k, v)| (k.clone(), v.as_str().expect("a string").to_string()))
                        .collect();
                    continue;
                }
                Some(Some((key, v))) => {
                    return Err(format_err(
                        path,
                        format!(
                            "`__metadata__` must map names to strings, but `{key}` is {}",
                            show(v)
                        ),
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
                    "entries {} and {} share bytes {}..{} of the data section; each entry needs \
                    bytes of its own",
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
    Ok((entries, data, metadata))
}

/// Writes `buffer` to `path` atomically: a new temporary file beside it,
/// `.{name}.tmp-{pid}-{n}` (a name no other save, in this process or another, uses), flushed
/// to disk, renamed over `path`, and on Unix the directory flushed too so the rename itself
/// survives a crash. A process killed mid-save leaves its temporary file behind and `path`
/// as it was; on Linux the next save to `path` removes such leftovers.
pub(crate) fn write_atomically(path: &Path, buffer: &[u8]) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file_name = path.file_name().ok_or_else(|| format_err(path, "not a file path"))?;
    let file_name = file_name.to_string_lossy();
    #[cfg(target_os = "linux")]
    remove_stale_temporaries(dir, &file_name);
    let (tmp, mut file) = loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{file_name}.tmp-{}-{n}", std::process::id()));
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

/// Removes the temporary files of saves to `file_name` in `dir` whose process no longer
/// runs: what a save killed mid-write (SIGKILL, out of memory, power loss) leaves. Whether
/// a process runs is read from /proc, so this is Linux only, and a save running in another
/// PID namespace (another container writing to the same directory) would look dead: its
/// save then fails with an error, never a damaged file. Failures here are ignored; the
/// leftovers only cost disk space.
#[cfg(target_os = "linux")]
fn remove_stale_temporaries(dir: &Path, file_name: &str) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let prefix = format!(".{file_name}.tmp-");
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((pid, n)) =
            name.to_str().and_then(|n| n.strip_prefix(&prefix)).and_then(|r| r.split_once('-'))
        else {
            continue;
        };
        let (Ok(pid), Ok(_)) = (pid.parse::<u32>(), n.parse::<u64>()) else { continue };
        if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The bytes of a safetensors file holding `tensors` and `metadata`, after checking the
/// names (the safetensors crate panics on a repeated one).
pub(crate) fn serialize(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let mut names: Vec<(&str, usize)> =
        tensors.iter().enumerate().map(|(i, (n, _))| (n.as_str(), i)).collect();
    names.sort();
    if let Some(pair) = names.windows(2).find(|p| p[0].0 == p[1].0) {
        return Err(format_err(
            path,
            format!(
                "tensors {} and {} are both named `{}`; names must be unique",
                pair[0].1, pair[1].1, pair[0].0
            ),
        ));
    }
    if names.iter().any(|(n, _)| *n == "__metadata__") {
        return Err(format_err(
            path,
            "the name `__metadata__` is reserved by the safetensors format",
        ));
    }
    let bytes: Vec<(String, Bytes)> =
        tensors.iter().map(|(n, t)| (n.clone(), to_bytes(t))).collect();
    let views: Vec<(&str, &Bytes)> = bytes.iter().map(|(n, b)| (n.as_str(), b)).collect();
    safetensors::serialize(views, metadata).map_err(|e| format_err(path, e.to_string()))
}

/// Reads a safetensors file: its tensors, in the file's order, and its metadata.
pub(crate) fn read(path: &Path) -> Result<(Vec<(String, Tensor)>, Metadata)> {
    let buffer = std::fs::read(path).map_err(|e| io_err(path, e))?;
    let (entries, data, metadata) = parse_header(path, &buffer)?;
    let tensors = entries
        .into_iter()
        .map(|e| {
            let tensor = decode(path, &e.name, e.dtype, &e.shape, &data[e.begin..e.end])?;
            Ok((e.name, tensor))
        })
        .collect::<Result<_>>()?;
    Ok((tensors, metadata))
}

/// Writes named tensors to a safetensors file. The file is written next to its destination
/// under a temporary name, flushed to disk and then renamed over it, so a crash midway never
/// leaves a half-written file in place of a good one. Names must be unique.
///
/// ```
/// use tapegrad_nn::{load_tensors, save_tensors};
/// use tapegrad_tape::Tensor;
/// let path =
///     std::env::temp_dir().join(format!("tapegrad-doc-{}.safetensors", std::process::id()));
/// save_tensors(&[("w".into(), Tensor::ones(&[2, 3]))], &path).unwrap();
/// let back = load_tensors(&path).unwrap();
/// assert_eq!((back[0].0.as_str(), back[0].1.shape()), ("w", &[2, 3][..]));
/// let twice = vec![("w".to_string(), Tensor::ones(&[1])), ("w".to_string(), Tensor::zeros(&[1]))];
/// assert!(save_tensors(&twice, &path).unwrap_err().to_string().contains("`w`"));
/// # std::fs::remove_file(&path).unwrap();
/// ```
pub fn save_tensors(tensors: &[(String, Tensor)], path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    write_atomically(path, &serialize(path, tensors, None)?)
}

/// Reads every tensor of a safetensors file, in the file's order. F16 and BF16 entries (how
/// most downloaded weights come) are converted to f32, exactly. A truncated or corrupt file
/// is an error that names the file, the entry and the numbers that disagree.
///
/// ```
/// let err = tapegrad_nn::load_tensors("/nonexistent/weights.safetensors").unwrap_err();
/// assert!(err.to_string().contains("/nonexistent/weights.safetensors"));
/// ```
pub fn load_tensors(path: impl AsRef<Path>) -> Result<Vec<(String, Tensor)>> {
    read(path.as_ref()).map(|(tensors, _)| tensors)
}

/// Saves a module's parameters and buffers (its state dict) with PyTorch's names.
///
/// ```
/// use tapegrad_nn::{Linear, Module, load, save};
/// let path =
///     std::env::temp_dir().join(format!("tapegrad-doc-save-{}.safetensors", std::process::id()));
/// let a = Linear::new(3, 2);
/// save(&a, &path).unwrap();
/// let mut b = Linear::new(3, 2);
/// load(&mut b, &path).unwrap();
/// assert_eq!(a.weight.to_vec::<f32>(), b.weight.to_vec::<f32>());
/// # std::fs::remove_file(&path).unwrap();
/// ```
pub fn save(module: &dyn Module, path: impl AsRef<Path>) -> Result<()> {
    save_tensors(&module.state_dict(), path)
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
    load_with(module, path, true).map(drop)
}

/// [`load`] with PyTorch's `strict` keyword: with `strict` false, entries the module lacks
/// and tensors the file lacks are skipped and reported instead of refused (a shape or dtype
/// mismatch is still an error, as in PyTorch).
///
/// ```
/// use tapegrad_nn::{Linear, load_with, save_tensors};
/// use tapegrad_tape::Tensor;
/// let dir = std::env::temp_dir().join(format!("tapegrad-doc-load-with-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("partial.safetensors");
/// save_tensors(&[("weight".into(), Tensor::ones(&[2, 3])), ("extra".into(), Tensor::ones(&[1]))], &path)
///     .unwrap();
/// let mut layer = Linear::new(3, 2);
/// let report = load_with(&mut layer, &path, false).unwrap();
/// assert_eq!((report.missing_keys, report.unexpected_keys), (vec!["bias".to_string()], vec!["extra".to_string()]));
/// assert_eq!(layer.weight.to_vec::<f32>(), vec![1.0; 6]);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub fn load_with(
    module: &mut dyn Module,
    path: impl AsRef<Path>,
    strict: bool,
) -> Result<LoadReport> {
    let path = path.as_ref();
    let entries = load_tensors(path)?;
    module.load_state_dict_with(&entries, strict).map_err(|e| match e {
        Error::Format { message, .. } => format_err(path, message),
        other => other,
    })
}
