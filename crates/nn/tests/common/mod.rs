//! What the PyTorch-fixture tests share: a fixture file's cases, and closeness relative
//! to a reference's scale.

#![allow(dead_code)]

use tapegrad_nn::*;
use tapegrad_ops::prelude::*;
use tapegrad_tape::{DType, Tensor};

/// One case of a fixture file: its entries named `prefix.name`.
pub struct Case {
    entries: Vec<(String, Tensor)>,
    prefix: &'static str,
}

impl Case {
    /// The case `prefix` of `tests/fixtures/{file}`.
    pub fn new(file: &str, prefix: &'static str) -> Case {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(file);
        Case { entries: load_tensors(path).unwrap(), prefix }
    }

    /// The case's entry `name`.
    pub fn get(&self, name: &str) -> Tensor {
        let full = format!("{}.{name}", self.prefix);
        let found = self.entries.iter().find(|(n, _)| *n == full);
        found.unwrap_or_else(|| panic!("fixture has no `{full}`")).1.clone()
    }

    /// A float input in `dtype`, as a leaf that takes gradients.
    pub fn input(&self, name: &str, dtype: DType) -> Tensor {
        self.get(name).to_dtype(dtype).requires_grad()
    }

    /// Loads the case's parameters (PyTorch's names after the prefix) into `model`.
    pub fn load(&self, model: &mut dyn Module, dtype: DType) {
        let prefix = format!("{}.", self.prefix);
        let state: Vec<(String, Tensor)> = self
            .entries
            .iter()
            .filter_map(|(n, t)| Some((n.strip_prefix(&prefix)?.to_string(), t.clone())))
            .filter(|(n, _)| !n.starts_with("expected.") && !n.starts_with("grad."))
            .filter(|(n, _)| model.state_dict().iter().any(|(m, _)| m == n))
            .collect();
        assert_eq!(state.len(), model.state_dict().len(), "every parameter is in the fixture");
        model.load_state_dict(&state).unwrap();
        model.to_dtype(dtype);
    }

    /// Backward of `sum(out * c)` with PyTorch's `c`.
    pub fn backward(&self, out: &Tensor) {
        let n = out.numel();
        let c: Vec<f64> = (0..n).map(|i| ((i * 11) % 17) as f64 / 17.0 - 0.5).collect();
        // PyTorch's c was rounded to float32 before it went to float64.
        let c = Tensor::from_vec(c, out.shape()).to_dtype(DType::F32).to_dtype(out.dtype());
        (out * &c).sum().backward();
    }
}

/// Worst difference relative to the largest reference magnitude.
pub fn assert_close(what: &str, got: &Tensor, expected: &Tensor, tolerance: f64) {
    assert_eq!(got.shape(), expected.shape(), "{what}: shape");
    let (g, e) = (got.to_vec::<f64>(), expected.to_vec::<f64>());
    let scale = e.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    let worst = g.iter().zip(&e).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max) / scale;
    assert!(
        worst <= tolerance,
        "{what}: worst difference {worst:e} of the scale (limit {tolerance:e})"
    );
}

/// Tolerances: float64 agrees to rounding, float32 to its own precision.
pub const DTYPES: [(DType, f64); 2] = [(DType::F64, 1e-12), (DType::F32, 2e-5)];
