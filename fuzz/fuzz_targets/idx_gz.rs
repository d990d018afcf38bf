//! IDX headers and data inside gzip: the input's first byte chooses a framing, the rest is
//! the decompressed IDX content, which the target compresses with flate2 (so the fuzzer
//! explores IDX headers, not deflate streams) and hands to `read_idx` as a `.gz` file.
//! The result must match `parse_idx` on the uncompressed bytes, except where the framing
//! damages the gzip stream on purpose (truncated, flipped byte), which must be an Err or a
//! result identical to the undamaged one, never a panic. Run with `-malloc_limit_mb`: the
//! reader reserves at most 64 MiB up front, whatever the header declares.
#![no_main]

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

use flate2::Compression;
use flate2::write::GzEncoder;
use libfuzzer_sys::fuzz_target;
use tapegrad_data::{parse_idx, read_idx};

fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let shm = PathBuf::from("/dev/shm");
        let base = if shm.is_dir() { shm } else { std::env::temp_dir() };
        let dir = base.join(format!("tapegrad-fuzz-idx-gz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        dir.join("input-idx-ubyte.gz")
    })
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).expect("write to a Vec");
    e.finish().expect("finish a gzip stream in a Vec")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    // Two more bytes place a split, a cut or a flipped bit.
    let (at, payload) = match rest {
        [a, b, payload @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), payload),
        _ => (0, rest),
    };
    let whole = gzip(payload);
    let (file, damaged) = match mode % 4 {
        // One gzip member.
        0 => (whole, false),
        // Two members, split at `at`: a multi-member stream decodes to their concatenation.
        1 => {
            let cut = at % (payload.len() + 1);
            let mut two = gzip(&payload[..cut]);
            two.extend(gzip(&payload[cut..]));
            (two, false)
        }
        // Truncated compressed stream.
        2 => {
            let cut = at % whole.len();
            (whole[..cut].to_vec(), true)
        }
        // One flipped bit somewhere in the compressed stream (header, deflate data or trailer).
        _ => {
            let mut flipped = whole;
            let i = at % flipped.len();
            flipped[i] ^= 1 << (mode >> 5);
            (flipped, true)
        }
    };
    let path = scratch();
    std::fs::write(path, &file).expect("write the scratch file");
    let read = read_idx(path);
    if let Err(e) = &read {
        assert!(e.to_string().contains("input-idx-ubyte.gz"), "error does not name the file: {e}");
    }
    let expected = parse_idx(payload, "payload");
    match (&expected, &read) {
        (Ok(a), Ok(b)) => {
            assert!(a.dims == b.dims && a.data == b.data, "gzip and raw parses differ")
        }
        (Err(_), Err(_)) => {}
        // A damaged stream may fail (checksum, truncation); it must never produce other data.
        (Ok(_), Err(_)) if damaged => {}
        // A damaged stream that still decodes (a flipped bit in the gzip header's flags or
        // mtime, a cut of nothing) can only be accepted if it decodes to an IDX array; that
        // array may differ from `payload`'s only if the damage was in the deflate data, which
        // the CRC-32 trailer rejects, so any acceptance must equal the raw parse.
        (Err(_), Ok(b)) if damaged => {
            panic!(
                "a damaged gzip stream was accepted although its payload is not valid IDX: {b:?}"
            )
        }
        (a, b) => panic!("raw parse gave {a:?} but the gzip file gave {b:?}"),
    }
});
