//! The IDX format of MNIST and Fashion-MNIST (raw or gzip-compressed).

use std::io::Read;
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
    if bytes.len() < 4 {
        return Err(bad(source, format!("{} bytes is too short for an IDX header", bytes.len())));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad(source, format!("bad magic number {:02x?}: not an IDX file", &bytes[..4])));
    }
    if bytes[2] != 0x08 {
        return Err(bad(source, format!("element type 0x{:02x} is not unsigned bytes (0x08)", bytes[2])));
    }
    let rank = bytes[3] as usize;
    let header = 4 + 4 * rank;
    if rank == 0 || bytes.len() < header {
        return Err(bad(source, format!("header of a {rank}-dimensional array is truncated")));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|d| u32::from_be_bytes(bytes[4 + 4 * d..8 + 4 * d].try_into().expect("4 bytes")) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(source, "dimensions overflow".into()))?;
    let data = &bytes[header..];
    if data.len() != expected {
        return Err(bad(
            source,
            format!(
                "dimensions {dims:?} need {expected} bytes of data but the file has {}{}",
                data.len(),
                if data.len() < expected { " (truncated?)" } else { "" }
            ),
        ));
    }
    Ok(IdxArray { dims, data: data.to_vec() })
}

/// Decompresses gzip data if it starts with gzip's magic bytes, else returns it unchanged.
pub(crate) fn maybe_gunzip(bytes: Vec<u8>, source: &str) -> Result<Vec<u8>> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| bad(source, format!("corrupt or truncated gzip data: {e}")))?;
        Ok(out)
    } else {
        Ok(bytes)
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
    let bytes = std::fs::read(path).map_err(|e| Error::Io { path: source.clone(), source: e })?;
    parse_idx(&maybe_gunzip(bytes, &source)?, &source)
}
