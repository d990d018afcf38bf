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
        let loss = tapegrad_ops::TensorOps::mean(&tapegrad_ops::TensorOps::square(&model.forward(&x)));
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
    save_checkpoint(&path, &model, &opt, 12).unwrap();
    let (mut model2, mut opt2) = {
        tapegrad_tape::manual_seed(99);
        let m = Sequential::new().add(Linear::new(3, 4)).add(ReLU).add(Linear::new(4, 2));
        let o = Adam::new(m.parameters(), 0.5);
        (m, o)
    };
    assert_eq!(load_checkpoint(&path, &mut model2, &mut opt2).unwrap(), 12);
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
    save_checkpoint(&path, &model, &opt, 1).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let cut = temp("cut.safetensors");
    for len in 0..bytes.len() {
        std::fs::write(&cut, &bytes[..len]).unwrap();
        let (mut m, mut o) = trained();
        let err = load_checkpoint(&cut, &mut m, &mut o).unwrap_err();
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
    let mut model = Sequential::new().add(Linear::new(3, 3)).add(Dropout::new(0.5)).add(BatchNorm2d::new(3));
    model.eval();
    let x = Tensor::randn(&[4, 3]);
    assert_eq!(model.forward(&x).to_vec::<f32>(), model.forward(&x).to_vec::<f32>(), "eval is deterministic");
    model.to_dtype(tapegrad_tape::DType::F64);
    assert!(model.parameters().iter().all(|p| p.dtype() == tapegrad_tape::DType::F64 && p.tracks_grad()));
    model.freeze();
    assert!(model.trainable_parameters().is_empty());
    model.unfreeze();
    assert_eq!(model.trainable_parameters().len(), 4);
}
