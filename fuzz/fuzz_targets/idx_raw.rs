//! Arbitrary bytes as a raw (uncompressed) IDX file: `parse_idx` must return Ok or Err and
//! never panic, and never allocate more than the input's length justifies (run with
//! `-malloc_limit_mb`). What it accepts must be exactly header + data; `read_idx` on the
//! same bytes in a file must agree with it.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tapegrad_data::{parse_idx, read_idx};

fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let shm = PathBuf::from("/dev/shm");
        let base = if shm.is_dir() { shm } else { std::env::temp_dir() };
        let dir = base.join(format!("tapegrad-fuzz-idx-raw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        dir.join("input-idx-ubyte")
    })
}

fuzz_target!(|data: &[u8]| {
    let parsed = parse_idx(data, "fuzz-input");
    match &parsed {
        Ok(a) => {
            // Accepted bytes are exactly the header that describes them plus the values.
            let mut encoded = vec![0, 0, 0x08, a.dims.len() as u8];
            for &d in &a.dims {
                encoded.extend(u32::try_from(d).expect("a dimension wider than u32").to_be_bytes());
            }
            assert_eq!(
                a.data.len(),
                a.dims.iter().product::<usize>(),
                "data length != product of dims"
            );
            encoded.extend(&a.data);
            assert!(encoded == data, "parse_idx accepted bytes that are not header + data");
        }
        Err(e) => {
            assert!(e.to_string().starts_with("fuzz-input"), "error does not name its source: {e}")
        }
    }
    // The file reader takes the gzip path for gzip's magic bytes; otherwise it must agree.
    if !data.starts_with(&[0x1f, 0x8b]) {
        let path = scratch();
        std::fs::write(path, data).expect("write the scratch file");
        match (&parsed, read_idx(path)) {
            (Ok(a), Ok(b)) => {
                assert!(a.dims == b.dims && a.data == b.data, "read_idx and parse_idx differ")
            }
            (Err(_), Err(_)) => {}
            (a, b) => panic!("parse_idx gave {a:?} but read_idx gave {b:?}"),
        }
    }
});
