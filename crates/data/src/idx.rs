//! The IDX format of MNIST and Fashion-MNIST (raw or gzip-compressed).
//!
//! Files are read as streams: the header first, then exactly the number of bytes it declares,
//! so a corrupt header or a gzip bomb fails after a few bytes instead of after inflating
//! everything into memory.

use std::io::{BufReader, ErrorKind, Read};
use std::path::Path;

use tapegrad_tape::{Error, Result};

/// An IDX array of unsigned bytes: its dimensions and values in row-major order.
///
/// ```
/// // Magic 0x00000801 (ubyte, 1-D), 3 items.
/// let bytes = [0u8, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9];
/// let a = tapegrad_data::parse_idx(&bytes, "inline").unwrap();
/// assert_eq!((a.dims.as_slice(), a.data.as_slice()), (&[3][..], &[7, 8, 9][..]));
/// ```
#[derive(Clone, Debug)]
pub struct IdxArray {
    /// Size of each dimension.
    pub dims: Vec<usize>,
    /// The values.
    pub data: Vec<u8>,
}

fn bad(source: &str, message: String) -> Error {
    Error::Format { path: source.to_string(), message }
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The most memory reserved up front on the header's word alone; larger arrays grow as their
/// bytes actually arrive. Full MNIST's training images (47 MB) fit in one reservation.
const RESERVE_CAP: usize = 64 << 20;

/// What the bytes being parsed are: raw IDX (with the input's length when it is known, which
/// lets a wrong size fail before any data is read) or the output of a gzip decoder.
#[derive(Clone, Copy)]
enum Stream {
    Raw(Option<u64>),
    Gzip,
}

impl Stream {
    /// "the file" or "the decompressed data", for messages.
    fn what(self) -> &'static str {
        match self {
            Stream::Raw(_) => "the file",
            Stream::Gzip => "the decompressed data",
        }
    }

    /// A read error: the operating system's for raw files, a format error for gzip data
    /// (where a failed read means a corrupt, truncated or wrong-checksum stream).
    fn error(self, source: &str, e: std::io::Error) -> Error {
        match self {
            Stream::Raw(_) => Error::Io { path: source.to_string(), source: e },
            Stream::Gzip => bad(source, format!("corrupt or truncated gzip data: {e}")),
        }
    }
}

/// Reads into `buf` until it is full or the stream ends; returns how many bytes were read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Parses one IDX array from `r`: the header, then exactly the bytes it declares, then a check
/// that nothing follows (which also makes a gzip decoder verify its checksum trailer).
fn read_array(mut r: impl Read, source: &str, stream: Stream) -> Result<IdxArray> {
    let mut head = [0u8; 4];
    let n = read_up_to(&mut r, &mut head).map_err(|e| stream.error(source, e))?;
    if n < 4 {
        return Err(bad(
            source,
            format!("{n} bytes is too short for an IDX header (4 bytes at least)"),
        ));
    }
    if head[0] != 0 || head[1] != 0 {
        return Err(bad(source, format!("bad magic number {head:02x?}: not an IDX file")));
    }
    if head[2] != 0x08 {
        return Err(bad(
            source,
            format!("element type 0x{:02x} is not unsigned bytes (0x08)", head[2]),
        ));
    }
    let rank = head[3] as usize;
    if rank == 0 {
        return Err(bad(
            source,
            "the header declares a 0-dimensional array; IDX arrays have 1 to 255".into(),
        ));
    }
    let header = 4 + 4 * rank;
    let mut sizes = vec![0u8; 4 * rank];
    let n = read_up_to(&mut r, &mut sizes).map_err(|e| stream.error(source, e))?;
    if n < sizes.len() {
        return Err(bad(
            source,
            format!(
                "header of a {rank}-dimensional array is truncated: it needs {header} bytes, {} \
                has {}",
                stream.what(),
                4 + n
            ),
        ));
    }
    let dims: Vec<usize> = sizes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes(c.try_into().expect("4 bytes")) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&e| e.checked_add(header).is_some())
        .ok_or_else(|| {
            bad(
                source,
                format!("dimensions {dims:?} overflow: their product does not fit in memory"),
            )
        })?;
    let size_error = |actual: String, short: bool| {
        let hint = if short { " (truncated?)" } else { "" };
        bad(
            source,
            format!(
                "dimensions {dims:?} need {expected} bytes of data but {} has {actual}{hint}",
                stream.what()
            ),
        )
    };
    if let Stream::Raw(Some(len)) = stream {
        // The whole length is known: check it before reading (or reserving) anything.
        let data_len = len.saturating_sub(header as u64);
        if data_len != expected as u64 {
            return Err(if data_len < expected as u64 {
                size_error(data_len.to_string(), true)
            } else {
                size_error(
                    format!(
                        "{data_len}: {} bytes of trailing data after the declared size",
                        data_len - expected as u64
                    ),
                    false,
                )
            });
        }
    }
    let mut data = Vec::with_capacity(expected.min(RESERVE_CAP));
    (&mut r).take(expected as u64).read_to_end(&mut data).map_err(|e| stream.error(source, e))?;
    if data.len() < expected {
        return Err(size_error(data.len().to_string(), true));
    }
    if read_up_to(&mut r, &mut [0u8; 1]).map_err(|e| stream.error(source, e))? != 0 {
        return Err(size_error(
            format!(
                "more bytes than the header declares (trailing data after byte {})",
                header + expected
            ),
            false,
        ));
    }
    Ok(IdxArray { dims, data })
}

/// Parses IDX bytes (already decompressed). `source` names the file in errors.
///
/// ```
/// use tapegrad_data::parse_idx;
/// // Two zero bytes, type 0x08 (unsigned bytes), rank 2; the sizes as big-endian u32s.
/// let mut bytes = vec![0, 0, 0x08, 2];
/// bytes.extend(2u32.to_be_bytes());
/// bytes.extend(3u32.to_be_bytes());
/// bytes.extend([1, 2, 3, 4, 5, 6]);
/// let a = parse_idx(&bytes, "inline").unwrap();
/// assert_eq!((a.dims, a.data), (vec![2, 3], vec![1, 2, 3, 4, 5, 6]));
/// let err = parse_idx(&bytes[..bytes.len() - 1], "inline").unwrap_err(); // one byte short
/// assert!(err.to_string().starts_with("inline: "));
/// ```
pub fn parse_idx(bytes: &[u8], source: &str) -> Result<IdxArray> {
    read_array(bytes, source, Stream::Raw(Some(bytes.len() as u64)))
}

/// Reads an IDX array from `input`, decompressing it on the fly if it starts with gzip's magic
/// bytes. `len` is the input's length when known (used for raw data only).
pub(crate) fn read_stream(
    mut input: impl Read,
    source: &str,
    len: Option<u64>,
) -> Result<IdxArray> {
    let mut magic = [0u8; 2];
    let n = read_up_to(&mut input, &mut magic)
        .map_err(|e| Error::Io { path: source.to_string(), source: e })?;
    let input = (&magic[..n]).chain(input);
    if magic[..n] == GZIP_MAGIC {
        read_array(flate2::read::MultiGzDecoder::new(input), source, Stream::Gzip)
    } else {
        read_array(input, source, Stream::Raw(len))
    }
}

/// Reads an IDX file, raw or gzip-compressed.
///
/// ```
/// let err = tapegrad_data::read_idx("/no/such/file-idx3-ubyte").unwrap_err();
/// assert!(err.to_string().contains("/no/such/file-idx3-ubyte"));
/// ```
pub fn read_idx(path: impl AsRef<Path>) -> Result<IdxArray> {
    let path = path.as_ref();
    let source = path.display().to_string();
    let io = |e| Error::Io { path: source.clone(), source: e };
    let file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    read_stream(BufReader::new(file), &source, Some(len))
}
