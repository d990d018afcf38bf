//! `Display` and `Debug` for tensors, in PyTorch's print format.

use std::fmt;

use crate::Tensor;

/// Tensors with more elements than this print a summary (first and last three per
/// dimension), as PyTorch does.
const SUMMARY_THRESHOLD: usize = 1000;
const EDGE_ITEMS: usize = 3;

/// How every element of one tensor is printed, chosen from all its values at once so that
/// columns line up (PyTorch's `_Formatter`).
enum NumberStyle {
    Bool,
    Int64,
    Integer,
    Fixed,
    Scientific,
}

fn choose_style(values: &[f64], dtype: crate::DType) -> NumberStyle {
    match dtype {
        crate::DType::Bool => return NumberStyle::Bool,
        crate::DType::I64 => return NumberStyle::Int64,
        _ => {}
    }
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return NumberStyle::Fixed;
    }
    let abs_max = finite.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let nonzero_min =
        finite.iter().filter(|v| **v != 0.0).fold(f64::INFINITY, |m, v| m.min(v.abs()));
    if finite.iter().all(|v| v.fract() == 0.0) {
        return if abs_max > 1e8 { NumberStyle::Scientific } else { NumberStyle::Integer };
    }
    if abs_max > 1e8
        || nonzero_min < 1e-4
        || (nonzero_min.is_finite() && abs_max / nonzero_min > 1e3)
    {
        NumberStyle::Scientific
    } else {
        NumberStyle::Fixed
    }
}

fn format_number(v: f64, style: &NumberStyle) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    match style {
        NumberStyle::Bool => (if v != 0.0 { "True" } else { "False" }).into(),
        NumberStyle::Int64 => format!("{v:.0}"),
        NumberStyle::Integer => format!("{v:.0}."),
        NumberStyle::Fixed => format!("{v:.4}"),
        NumberStyle::Scientific => {
            let s = format!("{v:.4e}");
            // Rust prints `1.2346e0`; PyTorch prints `1.2346e+00`.
            match s.split_once('e') {
                Some((m, e)) => {
                    let (sign, digits) = e.strip_prefix('-').map_or(("+", e), |d| ("-", d));
                    format!("{m}e{sign}{digits:0>2}")
                }
                None => s,
            }
        }
    }
}

/// Indices printed along a dimension of `n`: all of them, or the edges around an ellipsis.
fn shown(n: usize, summarize: bool) -> Vec<Option<usize>> {
    if summarize && n > 2 * EDGE_ITEMS {
        (0..EDGE_ITEMS).map(Some).chain([None]).chain((n - EDGE_ITEMS..n).map(Some)).collect()
    } else {
        (0..n).map(Some).collect()
    }
}

fn collect_shown(values: &[f64], shape: &[usize], summarize: bool, out: &mut Vec<f64>) {
    match shape.split_first() {
        None => out.push(values[0]),
        Some((&n, rest)) => {
            let stride: usize = rest.iter().product();
            for i in shown(n, summarize).into_iter().flatten() {
                collect_shown(&values[i * stride..(i + 1) * stride], rest, summarize, out);
            }
        }
    }
}

struct Printer<'a> {
    style: NumberStyle,
    width: usize,
    summarize: bool,
    indent: usize,
    out: &'a mut String,
}

impl Printer<'_> {
    fn write(&mut self, values: &[f64], shape: &[usize], depth: usize) {
        let Some((&n, rest)) = shape.split_first() else {
            let s = format_number(values[0], &self.style);
            self.out.push_str(&format!("{s:>w$}", w = self.width));
            return;
        };
        self.out.push('[');
        let stride: usize = rest.iter().product();
        for (k, i) in shown(n, self.summarize).into_iter().enumerate() {
            if k > 0 {
                if rest.is_empty() {
                    self.out.push_str(", ");
                } else {
                    self.out.push(',');
                    self.out.push_str(&"\n".repeat(rest.len()));
                    self.out.push_str(&" ".repeat(self.indent + depth + 1));
                }
            }
            match i {
                Some(i) => self.write(&values[i * stride..(i + 1) * stride], rest, depth + 1),
                None => self.out.push_str("..."),
            }
        }
        self.out.push(']');
    }
}

impl Tensor {
    fn render(&self, with_shape: bool) -> String {
        let values = self.to_vec::<f64>();
        let summarize = values.len() > SUMMARY_THRESHOLD;
        let mut visible = Vec::new();
        if !values.is_empty() {
            collect_shown(&values, self.shape(), summarize, &mut visible);
        }
        let style = choose_style(&visible, self.dtype());
        let width = visible.iter().map(|v| format_number(*v, &style).len()).max().unwrap_or(0);
        let mut out = String::from("tensor(");
        if values.is_empty() {
            out.push_str("[]");
        } else {
            let mut printer =
                Printer { style, width, summarize, indent: "tensor(".len(), out: &mut out };
            printer.write(&values, self.shape(), 0);
        }
        if with_shape || summarize || values.is_empty() {
            out.push_str(&format!(", shape={:?}", self.shape()));
        }
        if self.dtype() != crate::DType::F32 {
            out.push_str(&format!(", dtype={}", self.dtype()));
        }
        match self.grad_fn() {
            Some(op) => out.push_str(&format!(", grad_fn=<{op}>")),
            None if self.tracks_grad() => out.push_str(", requires_grad=True"),
            None => {}
        }
        out.push(')');
        out
    }
}

/// Prints like PyTorch: the values (summarised beyond 1000 elements), then the dtype if it
/// is not float32, and `requires_grad=True` or the operation that made the tensor.
///
/// ```
/// use tapegrad_tape::Tensor;
/// let t = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2]);
/// assert_eq!(t.to_string(), "tensor([[1., 2.],\n        [3., 4.]])");
/// let x = Tensor::from_vec(vec![0.5f64], &[1]).requires_grad();
/// assert_eq!(x.to_string(), "tensor([0.5000], dtype=float64, requires_grad=True)");
/// let mask = Tensor::from_vec(vec![true, false], &[2]);
/// assert_eq!(mask.to_string(), "tensor([ True, False], dtype=bool)");
/// ```
impl fmt::Display for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

/// Like `Display`, and always with the shape.
///
/// ```
/// use tapegrad_tape::Tensor;
/// let x = Tensor::ones(&[2]).requires_grad();
/// assert_eq!(format!("{:?}", &x * 2.0), "tensor([2., 2.], shape=[2], grad_fn=<mul_scalar>)");
/// ```
impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(true))
    }
}
