//! Arbitrary bytes as a safetensors parameter file: `load_tensors` must return Ok or Err and
//! never panic; a file it accepts must survive `save_tensors` + `load_tensors` unchanged
//! (same names, dtypes, shapes and bit patterns, NaN payloads included).
//!
//! The loader only takes a path, so each run writes its bytes to one temporary file per
//! process (on /dev/shm when it exists, so the writes and the saver's fsyncs stay in memory).
#![no_main]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tapegrad_nn::{load_tensors, save_tensors};
use tapegrad_tape::{DType, Tensor};

fn scratch() -> &'static (PathBuf, PathBuf) {
    static PATHS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    PATHS.get_or_init(|| {
        let shm = PathBuf::from("/dev/shm");
        let base = if shm.is_dir() { shm } else { std::env::temp_dir() };
        let dir = base.join(format!("tapegrad-fuzz-parameter-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        (dir.join("input.safetensors"), dir.join("resaved.safetensors"))
    })
}

/// A tensor's dtype, shape and exact bits, for comparison.
fn fingerprint(t: &Tensor) -> (DType, Vec<usize>, Vec<u64>) {
    let bits = match t.dtype() {
        DType::F32 => t.to_vec::<f32>().iter().map(|v| u64::from(v.to_bits())).collect(),
        DType::F64 => t.to_vec::<f64>().iter().map(|v| v.to_bits()).collect(),
        DType::I64 => t.to_vec::<i64>().iter().map(|&v| v as u64).collect(),
    };
    (t.dtype(), t.shape().to_vec(), bits)
}

fn by_name(tensors: &[(String, Tensor)]) -> BTreeMap<String, (DType, Vec<usize>, Vec<u64>)> {
    tensors.iter().map(|(n, t)| (n.clone(), fingerprint(t))).collect()
}

fuzz_target!(|data: &[u8]| {
    let (input, resaved) = scratch();
    std::fs::write(input, data).expect("write the scratch file");
    let Ok(tensors) = load_tensors(input) else { return };
    let first = by_name(&tensors);
    assert_eq!(first.len(), tensors.len(), "load_tensors returned a name twice");
    save_tensors(&tensors, resaved).expect("saving tensors that were just loaded");
    let again = load_tensors(resaved).expect("loading a file that save_tensors just wrote");
    assert!(first == by_name(&again), "save + load changed the tensors");
});
