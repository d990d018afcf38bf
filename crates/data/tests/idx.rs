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
    for name in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
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
    let gz =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/mnist-5k/t10k-images-idx3-ubyte.gz"))
            .unwrap();
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

/// An IDX header for unsigned bytes with these dimensions.
fn header(dims: &[u32]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        bytes.extend(d.to_be_bytes());
    }
    bytes
}

fn gzip(parts: &[&[u8]]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for part in parts {
        enc.write_all(part).unwrap();
    }
    enc.finish().unwrap()
}

fn read_err(name: &str, bytes: &[u8]) -> String {
    let path = temp(name);
    std::fs::write(&path, bytes).unwrap();
    let err = read_idx(&path).unwrap_err();
    assert!(matches!(err, Error::Format { .. }), "{err}");
    let message = err.to_string();
    assert!(message.starts_with(&format!("{}: ", path.display())), "names the file: {message}");
    message
}

#[test]
fn a_gzip_bomb_fails_after_the_declared_bytes_without_inflating_the_rest() {
    // 10 declared bytes, then 64 MiB of zeros: about 64 KiB compressed.
    let zeros = vec![0u8; 64 << 20];
    let bomb = gzip(&[&header(&[10]), &[7; 10], &zeros]);
    assert!(bomb.len() < 256 << 10, "{}", bomb.len());
    let err = read_err("bomb-idx1-ubyte.gz", &bomb);
    assert!(
        err.contains("dimensions [10] need 10 bytes of data")
            && err.contains("more bytes than the header declares (trailing data after byte 18)"),
        "{err}"
    );
    // Proof that the reader stopped early: with the checksum trailer spoilt, inflating to the
    // end would report a corrupt stream; stopping after the first extra byte never sees it.
    let mut spoilt = bomb.clone();
    let n = spoilt.len();
    spoilt[n - 8..].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0]);
    let err = read_err("spoilt-bomb-idx1-ubyte.gz", &spoilt);
    assert!(err.contains("trailing data after byte 18"), "{err}");
    // Likewise with the compressed stream cut in half.
    let err = read_err("cut-bomb-idx1-ubyte.gz", &bomb[..bomb.len() / 2]);
    assert!(err.contains("trailing data after byte 18"), "{err}");
}

#[test]
fn a_header_declaring_more_than_fits_fails_cleanly() {
    let mut bytes = header(&[u32::MAX, u32::MAX, u32::MAX]);
    bytes.extend([1, 2, 3]);
    let err = parse_idx(&bytes, "huge.idx").unwrap_err().to_string();
    assert!(
        err.starts_with("huge.idx: ")
            && err.contains("[4294967295, 4294967295, 4294967295] overflow"),
        "{err}"
    );
    let err = read_err("huge-idx3-ubyte.gz", &gzip(&[&bytes]));
    assert!(err.contains("overflow"), "{err}");
    // A size that fits but is absurd is neither allocated nor inflated for: 2^48 declared,
    // 3 bytes present.
    let mut bytes = header(&[1 << 16, 1 << 16, 1 << 16]);
    bytes.extend([1, 2, 3]);
    let err = read_err("absurd-idx3-ubyte.gz", &gzip(&[&bytes]));
    assert!(
        err.contains(
            "need 281474976710656 bytes of data but the decompressed data has 3 (truncated?)"
        ),
        "{err}"
    );
    let err = read_err("absurd-idx3-ubyte", &bytes);
    assert!(
        err.contains("need 281474976710656 bytes of data but the file has 3 (truncated?)"),
        "{err}"
    );
}

#[test]
fn truncated_and_overlong_files_name_the_numbers() {
    let mut good = header(&[2, 3]);
    good.extend([1, 2, 3, 4, 5, 6]);
    let path = temp("good-idx2-ubyte.gz");
    std::fs::write(&path, gzip(&[&good])).unwrap();
    assert_eq!(read_idx(&path).unwrap().data, [1, 2, 3, 4, 5, 6]);

    // Raw: one byte short, two bytes over, header cut.
    let err = read_err("short-idx2-ubyte", &good[..good.len() - 1]);
    assert!(
        err.contains("dimensions [2, 3] need 6 bytes of data but the file has 5 (truncated?)"),
        "{err}"
    );
    let mut long = good.clone();
    long.extend([0, 0]);
    let err = read_err("long-idx2-ubyte", &long);
    assert!(
        err.contains("need 6 bytes of data but the file has 8: 2 bytes of trailing data"),
        "{err}"
    );
    let err = read_err("cut-header-idx2-ubyte", &good[..7]);
    assert!(
        err.contains("2-dimensional array is truncated: it needs 12 bytes, the file has 7"),
        "{err}"
    );

    // Gzip: complete streams whose contents are short or long, and a stream cut short.
    let err = read_err("short-idx2-ubyte.gz", &gzip(&[&good[..good.len() - 1]]));
    assert!(
        err.contains("need 6 bytes of data but the decompressed data has 5 (truncated?)"),
        "{err}"
    );
    let err = read_err("long-idx2-ubyte.gz", &gzip(&[&long]));
    assert!(
        err.contains("more bytes than the header declares (trailing data after byte 18)"),
        "{err}"
    );
    let gz = gzip(&[&good]);
    for cut in [5, 12, gz.len() - 4, gz.len() - 1] {
        let err = read_err("cut-idx2-ubyte.gz", &gz[..cut]);
        assert!(
            err.contains("corrupt or truncated gzip data") || err.contains("truncated"),
            "cut at {cut}: {err}"
        );
    }
    // A wrong checksum is caught even when the sizes agree.
    let mut spoilt = gz.clone();
    let n = spoilt.len();
    spoilt[n - 8] ^= 1;
    let err = read_err("crc-idx2-ubyte.gz", &spoilt);
    assert!(err.contains("corrupt or truncated gzip data"), "{err}");
    // Garbage after the gzip member is trailing data too.
    let mut garbage = gz.clone();
    garbage.extend(b"junk");
    let err = read_err("garbage-idx2-ubyte.gz", &garbage);
    assert!(err.contains("corrupt or truncated gzip data"), "{err}");
    // Two gzip members (what `cat a.gz b.gz` makes) are one stream.
    let mut two = gzip(&[&good[..10]]);
    two.extend(gzip(&[&good[10..]]));
    let path = temp("two-members-idx2-ubyte.gz");
    std::fs::write(&path, two).unwrap();
    assert_eq!(read_idx(&path).unwrap().data, [1, 2, 3, 4, 5, 6]);
}
