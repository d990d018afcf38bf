//! Parameter files: round trips, PyTorch's names, and clear errors for every kind of bad
//! file; a failed or interrupted save never costs the previous file.

use tapegrad_nn::*;
use tapegrad_tape::{Error, Tensor};

fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tapegrad-nn-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn trained() -> (Sequential, Adam) {
    tapegrad_tape::manual_seed(3);
    let model = Sequential::new().add(Linear::new(3, 4)).add(ReLU).add(Linear::new(4, 2));
    let mut opt = Adam::new(model.parameters(), 0.01);
    let x = Tensor::randn(&[8, 3]);
    for _ in 0..3 {
        let loss =
            tapegrad_ops::ReduceOps::mean(&tapegrad_ops::UnaryOps::square(&model.forward(&x)));
        opt.zero_grad();
        loss.backward();
        opt.step();
    }
    (model, opt)
}

#[test]
fn checkpoint_round_trip_restores_model_optimizer_and_epoch() {
    let (model, opt) = trained();
    let path = temp("ckpt.safetensors");
    save_checkpoint(&model, &opt, 12, &path).unwrap();
    let (mut model2, mut opt2) = {
        tapegrad_tape::manual_seed(99);
        let m = Sequential::new().add(Linear::new(3, 4)).add(ReLU).add(Linear::new(4, 2));
        let o = Adam::new(m.parameters(), 0.5);
        (m, o)
    };
    assert_eq!(load_checkpoint(&mut model2, &mut opt2, &path).unwrap(), 12);
    for ((n1, a), (n2, b)) in model.state_dict().iter().zip(model2.state_dict().iter()) {
        assert_eq!((n1, a.to_vec::<f32>()), (n2, b.to_vec::<f32>()));
    }
    for ((n1, a), (n2, b)) in opt.state_dict().iter().zip(opt2.state_dict().iter()) {
        assert_eq!((n1, a.to_vec::<f64>()), (n2, b.to_vec::<f64>()));
    }
    assert_eq!(opt2.param_groups()[0].lr, 0.01);
}

#[test]
fn a_file_truncated_at_any_byte_fails_with_a_clear_error() {
    let (model, opt) = trained();
    let path = temp("full.safetensors");
    save_checkpoint(&model, &opt, 1, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let cut = temp("cut.safetensors");
    for len in 0..bytes.len() {
        std::fs::write(&cut, &bytes[..len]).unwrap();
        let (mut m, mut o) = trained();
        let err = load_checkpoint(&mut m, &mut o, &cut).unwrap_err();
        assert!(matches!(err, Error::Format { .. }), "truncated at {len}: {err}");
        assert!(err.to_string().contains("cut.safetensors"), "{err}");
    }
}

#[test]
fn mismatched_missing_and_unexpected_entries_are_named() {
    let path = temp("linear.safetensors");
    save(&Linear::new(3, 2), &path).unwrap();
    let err = load(&mut Linear::new(4, 2), &path).unwrap_err().to_string();
    assert!(err.contains("`weight` has shape [2, 3], the model expects [2, 4]"), "{err}");
    let err = load(&mut Linear::no_bias(3, 2), &path).unwrap_err().to_string();
    assert!(err.contains("unexpected entry `bias`"), "{err}");
    let mut two = Sequential::new().add(Linear::new(3, 2));
    let err = load(&mut two, &path).unwrap_err().to_string();
    assert!(err.contains("missing entry `0.weight`"), "{err}");
    // A failed load changes nothing.
    let mut m = Linear::new(4, 2);
    let before = m.weight.to_vec::<f32>();
    assert!(load(&mut m, &path).is_err());
    assert_eq!(m.weight.to_vec::<f32>(), before);
}

#[test]
fn a_corrupt_header_is_an_error_not_a_panic() {
    let path = temp("corrupt.safetensors");
    save(&Linear::new(3, 2), &path).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    for i in 8..bytes.len().min(80) {
        bytes[i] = b'#';
        std::fs::write(&path, &bytes).unwrap();
        assert!(load(&mut Linear::new(3, 2), &path).is_err());
    }
}

#[test]
fn an_interrupted_save_never_destroys_the_previous_file() {
    let path = temp("keep.safetensors");
    let good = Linear::new(3, 2);
    save(&good, &path).unwrap();
    // A crash mid-write leaves only a temporary file beside the real one.
    let stale = path.with_file_name(format!(".keep.safetensors.tmp-{}", 4_000_000_000u64));
    std::fs::write(&stale, b"half a file").unwrap();
    let mut back = Linear::new(3, 2);
    load(&mut back, &path).unwrap();
    assert_eq!(back.weight.to_vec::<f32>(), good.weight.to_vec::<f32>());
    // A save that cannot complete reports the error and leaves the good file alone.
    let blocked = temp("no-such-dir").join("x.safetensors");
    assert!(matches!(save(&good, &blocked).unwrap_err(), Error::Io { .. }));
    let dir_in_the_way = temp("dir.safetensors");
    std::fs::create_dir_all(dir_in_the_way.join("occupied")).unwrap();
    assert!(save(&good, &dir_in_the_way).is_err());
    assert!(dir_in_the_way.join("occupied").exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir_in_the_way.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".dir.safetensors.tmp"))
        .collect();
    assert!(leftovers.is_empty(), "the temporary file is cleaned up after a failed save");
}

#[test]
fn modules_switch_modes_convert_and_freeze() {
    let mut model =
        Sequential::new().add(Linear::new(3, 3)).add(Dropout::new(0.5)).add(BatchNorm2d::new(3));
    model.eval();
    let x = Tensor::randn(&[4, 3]);
    assert_eq!(
        model.forward(&x).to_vec::<f32>(),
        model.forward(&x).to_vec::<f32>(),
        "eval is deterministic"
    );
    model.to_dtype(tapegrad_tape::DType::F64);
    assert!(
        model
            .parameters()
            .iter()
            .all(|p| p.dtype() == tapegrad_tape::DType::F64 && p.tracks_grad())
    );
    model.freeze();
    assert!(model.trainable_parameters().is_empty());
    model.unfreeze();
    assert_eq!(model.trainable_parameters().len(), 4);
}

/// Writes a safetensors file by hand: the header's length, the header, `data_len` bytes.
fn handmade(name: &str, header: &str, data_len: usize) -> std::path::PathBuf {
    let path = temp(name);
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header.as_bytes());
    bytes.extend((0..data_len).map(|i| i as u8));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Loading `path` into a `Linear(3, 2)` fails with a format error naming the file and
/// containing every one of `needles`, and leaves the layer as it was.
fn load_fails(path: &std::path::Path, needles: &[&str]) -> String {
    let mut layer = Linear::new(3, 2);
    let before: Vec<_> = layer.state_dict().iter().map(|(_, t)| t.to_vec::<f32>()).collect();
    let err = load(&mut layer, path).unwrap_err();
    assert!(matches!(err, Error::Format { .. }), "{err}");
    let message = err.to_string();
    assert!(message.starts_with(&format!("{}: ", path.display())), "names the file: {message}");
    for needle in needles {
        assert!(message.contains(needle), "`{needle}` missing from: {message}");
    }
    let after: Vec<_> = layer.state_dict().iter().map(|(_, t)| t.to_vec::<f32>()).collect();
    assert_eq!(before, after, "a failed load changes nothing");
    message
}

const BIAS: &str = r#""bias":{"dtype":"F32","shape":[2],"data_offsets":[24,32]}"#;

#[test]
fn handmade_files_load_and_metadata_is_accepted() {
    let header = format!(
        r#"{{"__metadata__":{{"format":"pt"}},"weight":{{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}},{BIAS}}}"#
    );
    let path = handmade("good.safetensors", &header, 32);
    let mut layer = Linear::new(3, 2);
    load(&mut layer, &path).unwrap();
    assert_eq!(
        layer.bias.as_ref().unwrap().to_vec::<f32>()[0],
        f32::from_le_bytes([24, 25, 26, 27])
    );
    let header = format!(
        r#"{{"__metadata__":{{"epoch":3}},"weight":{{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}},{BIAS}}}"#
    );
    let path = handmade("metadata.safetensors", &header, 32);
    load_fails(&path, &["`__metadata__` must map names to strings, but `epoch` is 3"]);
}

#[test]
fn a_dtype_or_shape_that_disagrees_with_the_bytes_is_named() {
    let header =
        format!(r#"{{"weight":{{"dtype":"F64","shape":[2,3],"data_offsets":[0,24]}},{BIAS}}}"#);
    let path = handmade("dtype-size.safetensors", &header, 32);
    load_fails(
        &path,
        &["entry `weight` is F64 with shape [2, 3]: 6 elements need 48 bytes, but data_offsets \
            [0, 24] hold 24"],
    );
    let header =
        format!(r#"{{"weight":{{"dtype":"F32","shape":[3,3],"data_offsets":[0,24]}},{BIAS}}}"#);
    let path = handmade("shape.safetensors", &header, 32);
    load_fails(
        &path,
        &["entry `weight` is F32 with shape [3, 3]: 9 elements need 36 bytes, but data_offsets \
            [0, 24] hold 24"],
    );
    let header =
        format!(r#"{{"weight":{{"dtype":"F32","shape":[2,-3],"data_offsets":[0,24]}},{BIAS}}}"#);
    let path = handmade("negative.safetensors", &header, 32);
    load_fails(
        &path,
        &["entry `weight` has shape [2,-3]; expected a list of non-negative integers"],
    );
    let header = format!(
        r#"{{"weight":{{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,24]}},{BIAS}}}"#
    );
    let path = handmade("overflow.safetensors", &header, 32);
    load_fails(
        &path,
        &["entry `weight` has shape [4294967296, 4294967296, 4294967296], whose size overflows"],
    );
}

#[test]
fn unknown_and_unreadable_dtypes_are_named() {
    let header =
        format!(r#"{{"weight":{{"dtype":"Q4","shape":[2,3],"data_offsets":[0,24]}},{BIAS}}}"#);
    let path = handmade("unknown-dtype.safetensors", &header, 32);
    load_fails(
        &path,
        &[
            "entry `weight` has unknown dtype \"Q4\"; tapegrad reads F32, F64, I64, BOOL, F16 and BF16",
        ],
    );
    let header = r#"{"weight":{"dtype":"I8","shape":[2,3],"data_offsets":[0,6]},"bias":{"dtype":"F32","shape":[2],"data_offsets":[6,14]}}"#;
    let path = handmade("i8.safetensors", header, 14);
    load_fails(
        &path,
        &["entry `weight` has dtype I8; tapegrad reads F32, F64, I64, BOOL, F16 and BF16"],
    );
    let header =
        format!(r#"{{"weight":{{"dtype":7,"shape":[2,3],"data_offsets":[0,24]}},{BIAS}}}"#);
    let path = handmade("number-dtype.safetensors", &header, 32);
    load_fails(&path, &["entry `weight` has dtype 7; expected a string"]);
}

#[test]
fn offsets_past_the_end_gaps_and_trailing_bytes_are_named() {
    let header =
        format!(r#"{{"weight":{{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}},{BIAS}}}"#);
    let path = handmade("past-end.safetensors", &header, 28);
    load_fails(
        &path,
        &["entry `bias` has data_offsets [24, 32] but the data section holds only 28 bytes"],
    );
    let path = handmade("trailing.safetensors", &header, 40);
    load_fails(
        &path,
        &["bytes 32..40 of the data section (after entry `bias` [24, 32]) belong to no entry"],
    );
    // A missing entry: `weight`'s bytes are there, the header does not mention them.
    let path = handmade("gap.safetensors", &format!("{{{BIAS}}}"), 32);
    load_fails(
        &path,
        &["bytes 0..24 of the data section (before entry `bias` [24, 32]) belong to no entry"],
    );
    let header = r#"{"weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"bias":{"dtype":"F32","shape":[2],"data_offsets":[28,36]}}"#;
    let path = handmade("middle-gap.safetensors", header, 36);
    load_fails(
        &path,
        &["bytes 24..28 of the data section (after entry `weight` [0, 24] and before entry \
            `bias` [28, 36])"],
    );
    let header =
        format!(r#"{{"weight":{{"dtype":"F32","shape":[2,3],"data_offsets":[24,0]}},{BIAS}}}"#);
    let path = handmade("backwards.safetensors", &header, 32);
    load_fails(&path, &["entry `weight` has data_offsets [24, 0]: the beginning is past the end"]);
    let header =
        format!(r#"{{"weight":{{"dtype":"F32","shape":[2,3],"data_offsets":[0]}},{BIAS}}}"#);
    let path = handmade("one-offset.safetensors", &header, 32);
    load_fails(&path, &["entry `weight` has data_offsets [0]; expected [begin, end]"]);
}

#[test]
fn aliased_entries_give_the_same_message_every_time() {
    let weight = r#""weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}"#;
    let alias = r#""alias":{"dtype":"F32","shape":[6],"data_offsets":[0,24]}"#;
    let orders = [
        format!("{{{weight},{alias},{BIAS}}}"),
        format!("{{{alias},{weight},{BIAS}}}"),
        format!("{{{BIAS},{alias},{weight}}}"),
    ];
    let expected =
        "entries `alias` [0, 24] and `weight` [0, 24] share bytes 0..24 of the data section";
    for header in &orders {
        let path = handmade("alias.safetensors", header, 32);
        for _ in 0..5 {
            load_fails(&path, &[expected]);
        }
    }
    // Partly overlapping entries name both and the shared bytes.
    let header = r#"{"weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"bias":{"dtype":"F32","shape":[2],"data_offsets":[20,28]}}"#;
    let path = handmade("overlap.safetensors", header, 28);
    load_fails(&path, &["entries `weight` [0, 24] and `bias` [20, 28] share bytes 20..24"]);
}

#[test]
fn a_bad_header_length_or_header_is_named() {
    let header =
        format!(r#"{{"weight":{{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}},{BIAS}}}"#);
    let path = temp("long-header.safetensors");
    let mut bytes = 1000u64.to_le_bytes().to_vec();
    bytes.extend(header.as_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let file_len = bytes.len().to_string();
    load_fails(
        &path,
        &["header length 1000 runs past the end of the file", "byte 1008", &file_len],
    );
    bytes[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    load_fails(&path, &["header length 1099511627776 is over the 100000000-byte limit"]);
    std::fs::write(&path, [1, 2, 3]).unwrap();
    load_fails(&path, &["3 bytes is too short for a safetensors file"]);
    let path = handmade("not-json.safetensors", "{weight: F32}", 32);
    load_fails(&path, &["the 13-byte header is not valid JSON"]);
    let path = handmade("array.safetensors", "[1, 2]", 32);
    load_fails(&path, &["the header is [1,2], not a JSON object"]);
}

#[test]
fn a_checkpoint_epoch_that_is_not_one_integer_is_an_error_not_a_panic() {
    let (model, opt) = trained();
    let entries = |epoch: Tensor| {
        let mut e: Vec<(String, Tensor)> =
            model.state_dict().into_iter().map(|(n, t)| (format!("model.{n}"), t)).collect();
        e.extend(opt.state_dict().into_iter().map(|(n, t)| (format!("optimizer.{n}"), t)));
        e.push(("epoch".into(), epoch));
        e
    };
    let path = temp("bad-epoch.safetensors");
    for (epoch, needle) in [
        (Tensor::from_vec(vec![1i64, 2], &[2]), "entry `epoch` is int64 with shape [2]"),
        (Tensor::from_vec(vec![1.5f32], &[]), "entry `epoch` is float32 with shape []"),
        (Tensor::from_vec(vec![-1i64], &[]), "entry `epoch` is -1"),
    ] {
        save_tensors(&entries(epoch), &path).unwrap();
        let (mut m, mut o) = trained();
        let err = load_checkpoint(&mut m, &mut o, &path).unwrap_err();
        assert!(matches!(err, Error::Format { .. }), "{err}");
        assert!(
            err.to_string().contains(needle) && err.to_string().contains("bad-epoch.safetensors"),
            "{err}"
        );
    }
}

#[test]
fn saving_checks_names_and_concurrent_saves_never_collide() {
    let path = temp("names.safetensors");
    let twice = [
        ("w".to_string(), Tensor::ones(&[1])),
        ("b".to_string(), Tensor::ones(&[1])),
        ("w".to_string(), Tensor::zeros(&[2])),
    ];
    let err = save_tensors(&twice, &path).unwrap_err();
    assert!(err.to_string().contains("tensors 0 and 2 are both named `w`"), "{err}");
    assert!(!path.exists());
    let reserved = [("__metadata__".to_string(), Tensor::ones(&[1]))];
    assert!(save_tensors(&reserved, &path).unwrap_err().to_string().contains("reserved"));

    // Threads saving to the same path each write their own temporary file.
    let dir = temp("concurrent");
    std::fs::create_dir_all(&dir).unwrap();
    let target = dir.join("shared.safetensors");
    std::thread::scope(|s| {
        for t in 0..4 {
            let target = &target;
            s.spawn(move || {
                for _ in 0..5 {
                    save_tensors(&[("t".to_string(), Tensor::full(&[64], t as f64))], target)
                        .unwrap();
                }
            });
        }
    });
    let back = load_tensors(&target).unwrap();
    assert_eq!(back.len(), 1);
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["shared.safetensors"], "no temporary file is left behind");
}

/// Half-precision files (how most downloaded weights come) load as f32, exactly.
#[test]
fn f16_and_bf16_entries_load_as_f32() {
    let f16_bits: [u16; 8] = [0x3c00, 0xc000, 0x3800, 0x0001, 0x7bff, 0x7c00, 0xfc00, 0x8000];
    let f16_values =
        [1.0f32, -2.0, 0.5, 2f32.powi(-24), 65504.0, f32::INFINITY, f32::NEG_INFINITY, -0.0];
    let bf16_bits: [u16; 3] = [0x3f80, 0xc000, 0x4049];
    let bf16_values = [1.0f32, -2.0, 3.140625];
    let header = r#"{"a":{"dtype":"F16","shape":[8],"data_offsets":[0,16]},"b":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]},"nan":{"dtype":"F16","shape":[],"data_offsets":[22,24]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header.as_bytes());
    for b in f16_bits.iter().chain(&bf16_bits).chain(&[0x7e00u16]) {
        bytes.extend(b.to_le_bytes());
    }
    let path = temp("half.safetensors");
    std::fs::write(&path, bytes).unwrap();
    let loaded = load_tensors(&path).unwrap();
    let a = loaded[0].1.to_vec::<f32>();
    assert_eq!(loaded[0].1.dtype(), tapegrad_tape::DType::F32);
    assert_eq!(a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), f16_values.map(f32::to_bits));
    assert_eq!(loaded[1].1.to_vec::<f32>(), bf16_values);
    assert!(loaded[2].1.item().is_nan());
    // All 65536 f16 values, against the bit-level conversion (exponent rebased from 15 to
    // 127, subnormals normalised): a second derivation of the same numbers.
    let oracle = |h: u16| -> u32 {
        let sign = ((h >> 15) as u32) << 31;
        let (e, m) = (((h >> 10) & 0x1f) as i32, (h & 0x3ff) as u32);
        match (e, m) {
            (0, 0) => sign,
            (0, _) => {
                let shift = m.leading_zeros() - 21; // bring the top set bit to bit 10
                sign | (((113 - shift as i32) as u32) << 23) | (((m << shift) & 0x3ff) << 13)
            }
            (31, 0) => sign | 0x7f80_0000,
            (31, _) => 0x7fc0_0000,
            _ => sign | (((e + 112) as u32) << 23) | (m << 13),
        }
    };
    let header = r#"{"all":{"dtype":"F16","shape":[65536],"data_offsets":[0,131072]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header.as_bytes());
    bytes.extend((0..=u16::MAX).flat_map(u16::to_le_bytes));
    let path = temp("all-f16.safetensors");
    std::fs::write(&path, bytes).unwrap();
    let all = load_tensors(&path).unwrap().remove(0).1.to_vec::<f32>();
    for (h, v) in (0..=u16::MAX).zip(all) {
        let want = f32::from_bits(oracle(h));
        assert!(
            v.to_bits() == want.to_bits() || (v.is_nan() && want.is_nan()),
            "{h:#06x}: {v} vs {want}"
        );
    }
}

/// Bool tensors (masks kept as buffers) survive a file, stored as safetensors' BOOL.
#[test]
fn bool_tensors_round_trip() {
    let path = temp("bool.safetensors");
    let mask = Tensor::from_vec(vec![true, false, true], &[3]);
    save_tensors(&[("mask".to_string(), mask)], &path).unwrap();
    let back = load_tensors(&path).unwrap();
    assert_eq!(back[0].1.to_vec::<bool>(), vec![true, false, true]);
    let header = r#"{"mask":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header.as_bytes());
    bytes.extend([1u8, 7]);
    std::fs::write(&path, bytes).unwrap();
    let err = load_tensors(&path).unwrap_err().to_string();
    assert!(err.contains("holds the byte 7"), "{err}");
}
