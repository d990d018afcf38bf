//! The IDX reader: real files, and a clear error for every kind of bad file.

use std::io::Write;

use tapegrad_data::{DataLoader, Mnist, k_fold, parse_idx, read_idx, train_val_split};
use tapegrad_tape::Error;

fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tapegrad-data-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn embedded_digits_are_real_mnist() {
    let data = Mnist::embedded().unwrap();
    assert_eq!((data.train.len(), data.test.len()), (4000, 1000));
    let pixels = data.train.images.to_vec::<f32>();
    assert!(pixels.iter().all(|p| (0.0..=1.0).contains(p)));
    let labels = data.train.labels.to_vec::<i64>();
    for class in 0..10 {
        let count = labels.iter().filter(|&&l| l == class).count();
        assert!((300..500).contains(&count), "class {class}: {count}");
    }
}

#[test]
fn reads_raw_and_gzip_files_from_a_directory() {
    let dir = temp("mnist-copy");
    std::fs::create_dir_all(&dir).unwrap();
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/mnist-5k");
    for name in
        ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    {
        let gz = std::fs::read(format!("{src}/{name}.gz")).unwrap();
        if name.starts_with("train") {
            std::fs::write(dir.join(format!("{name}.gz")), gz).unwrap();
        } else {
            let raw = read_idx(format!("{src}/{name}.gz")).unwrap();
            let mut bytes = vec![0, 0, 8, raw.dims.len() as u8];
            for d in &raw.dims {
                bytes.extend((*d as u32).to_be_bytes());
            }
            bytes.extend(&raw.data);
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    let data = Mnist::from_dir(&dir).unwrap();
    let embedded = Mnist::embedded().unwrap();
    assert_eq!(data.test.labels.to_vec::<i64>(), embedded.test.labels.to_vec::<i64>());
}

#[test]
fn bad_files_give_clear_errors() {
    let err = parse_idx(&[0, 0, 8], "x").unwrap_err();
    assert!(err.to_string().contains("too short"), "{err}");
    let err = parse_idx(&[1, 2, 8, 1, 0, 0, 0, 1, 5], "x").unwrap_err();
    assert!(err.to_string().contains("magic"), "{err}");
    let err = parse_idx(&[0, 0, 0x0d, 1, 0, 0, 0, 1, 5], "x").unwrap_err();
    assert!(err.to_string().contains("unsigned bytes"), "{err}");
    let err = parse_idx(&[0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3], "file.idx").unwrap_err();
    assert!(err.to_string().contains("truncated") && err.to_string().contains("file.idx"), "{err}");

    // A gzip file cut short.
    let gz = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/mnist-5k/t10k-images-idx3-ubyte.gz")).unwrap();
    let path = temp("cut.gz");
    std::fs::File::create(&path).unwrap().write_all(&gz[..gz.len() / 2]).unwrap();
    let err = read_idx(&path).unwrap_err();
    assert!(matches!(err, Error::Format { .. }) && err.to_string().contains("cut.gz"), "{err}");
    // A missing directory names the file it looked for.
    let err = Mnist::from_dir("/nonexistent/dir").unwrap_err();
    assert!(err.to_string().contains("train-images-idx3-ubyte"), "{err}");
}

#[test]
fn loader_shuffles_reproducibly_and_covers_every_sample() {
    let x = tapegrad_tape::Tensor::arange(0.0, 10.0, 1.0);
    let y = tapegrad_tape::Tensor::from_vec((0..10).collect::<Vec<i64>>(), &[10]);
    let loader = DataLoader::new(x, y, 3).shuffle(5);
    let epoch = |e| loader.epoch(e).flat_map(|(_, y)| y.to_vec::<i64>()).collect::<Vec<_>>();
    let (a, b) = (epoch(0), epoch(1));
    assert_eq!(a, epoch(0));
    assert_ne!(a, b);
    let mut sorted = a.clone();
    sorted.sort();
    assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    assert_eq!(loader.clone().drop_last(true).epoch(0).count(), 3);
    let (train, val) = train_val_split(100, 0.1, 0);
    assert_eq!((train.len(), val.len()), (90, 10));
    let folds = k_fold(10, 5, 0);
    assert!(folds.iter().all(|(t, v)| t.len() == 8 && v.len() == 2));
}
