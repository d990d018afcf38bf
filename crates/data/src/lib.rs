//! Data sets for tapegrad: the IDX reader for MNIST and Fashion-MNIST, 5,000 embedded MNIST
//! digits so examples need no download, mini-batching with seeded shuffles, and splits.
//!
//! ```
//! use tapegrad_data::{DataLoader, Mnist};
//! let data = Mnist::embedded().unwrap();
//! let loader = DataLoader::new(data.train.images, data.train.labels, 128).shuffle(0);
//! let (x, y) = loader.epoch(0).next().unwrap();
//! assert_eq!((x.shape(), y.shape()), (&[128, 1, 28, 28][..], &[128][..]));
//! ```

#![forbid(unsafe_code)]

mod distributed;
mod idx;
mod loader;
mod mnist;

pub use distributed::DistributedSampler;
pub use idx::{IdxArray, parse_idx, read_idx};
pub use loader::{DataLoader, k_fold, select_rows, train_val_split};
pub use mnist::{Mnist, Split};
