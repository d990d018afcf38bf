//! Pooling: max (with the chosen positions), average (a depthwise convolution with a
//! constant kernel) and adaptive average (separable averaging matrices).

use std::panic::Location;

use tapegrad_tape::layout::{Layout, checked_size, try_numel};
use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{Backward, Error, Result, Storage, Tensor, ensure_float, record};

use crate::conv::Conv2dOptions;

use crate::shape::reshape_to;

use tapegrad_kernels::pool;

fn check_4d(
    op: &'static str,
    x: &Tensor,
    location: &'static Location<'static>,
) -> Result<[usize; 4]> {
    ensure_float(op, x, location)?;
    match *x.shape() {
        [n, c, h, w] => Ok([n, c, h, w]),
        _ => Err(Error::Shape {
            op,
            message: format!("expects input [N, C, H, W], got {:?}", x.shape()),
            location,
        }),
    }
}

fn pooled_size(
    op: &'static str,
    input: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    location: &'static Location<'static>,
) -> Result<usize> {
    if kernel == 0 || stride == 0 || padding > kernel / 2 {
        return Err(Error::InvalidArgument {
            op,
            message: format!(
                "kernel {kernel}, stride {stride} and padding {padding} are invalid (padding may \
                be at most half the kernel)"
            ),
            location,
        });
    }
    // 2 * padding <= kernel, so only the sum with the input can overflow.
    let what = format!("input size {input} with padding {padding}");
    let padded = checked_size(op, &what, input.checked_add(2 * padding), location)?;
    padded.checked_sub(kernel).map(|r| r / stride + 1).ok_or_else(|| Error::Shape {
        op,
        message: format!("kernel {kernel} is larger than the padded input size {padded}"),
        location,
    })
}

/// The gradient of max pooling: each output gradient added at the input position it was
/// taken from. Recorded, so that double backward (a gather) works too.
#[track_caller]
fn max_pool_backward(g: &Tensor, index: &Tensor, input_shape: [usize; 4]) -> Tensor {
    let [n, c, h, w] = input_shape;
    let plane_out = index.numel() / (n * c).max(1);
    let index_storage = index.contiguous_storage();
    let Storage::I64(idx) = &index_storage else { unreachable!("pooling indices are i64") };
    let gs = g.contiguous_storage();
    let storage = match &gs {
        Storage::F32(v) => {
            Storage::from_vec(pool::max_pool2d_scatter(v, idx, n * c, h * w, plane_out))
        }
        Storage::F64(v) => {
            Storage::from_vec(pool::max_pool2d_scatter(v, idx, n * c, h * w, plane_out))
        }
        Storage::I64(_) => unreachable!("gradients are float"),
    };
    let value = Tensor::from_storage(storage, Layout::contiguous(&input_shape));
    let index = index.clone();
    let out_shape = g.shape().to_vec();
    record("max_pool2d_backward", Location::caller(), &[g], value, || {
        Backward::new(move |ctx| {
            // d/dg of a scatter is the gather at the same positions.
            let gg = reshape_to(ctx.grad(), &[n, c, h * w]);
            let picked = crate::index::gather(&gg, 2, &reshape_to(&index, &[n, c, plane_out]))
                .expect("valid indices");
            smallvec![Some(reshape_to(&picked, &out_shape))]
        })
    })
}

#[track_caller]
pub(crate) fn max_pool2d(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<(Tensor, Tensor)> {
    let location = Location::caller();
    let op = "max_pool2d";
    let dims = check_4d(op, x, location)?;
    let ho = pooled_size(op, dims[2], kernel.0, stride.0, padding.0, location)?;
    let wo = pooled_size(op, dims[3], kernel.1, stride.1, padding.1, location)?;
    let storage = x.contiguous_storage();
    let (values, indices) = match &storage {
        Storage::F32(v) => {
            let (a, i) = pool::max_pool2d(v, dims, (ho, wo), kernel, stride, padding);
            (Storage::from_vec(a), i)
        }
        Storage::F64(v) => {
            let (a, i) = pool::max_pool2d(v, dims, (ho, wo), kernel, stride, padding);
            (Storage::from_vec(a), i)
        }
        Storage::I64(_) => unreachable!("float dtype checked"),
    };
    let [n, c, h, w] = dims;
    let out_shape = [n, c, ho, wo];
    let value = Tensor::from_storage(values, Layout::contiguous(&out_shape));
    let flat_index = Tensor::from_vec(indices, &[n, c, ho * wo]);
    let index = flat_index.clone();
    let out = record(op, location, &[x], value, || {
        Backward::new(move |ctx| {
            smallvec![Some(max_pool_backward(ctx.grad(), &index, [n, c, h, w]))]
        })
    });
    Ok((out, reshape_to(&flat_index, &out_shape)))
}

#[track_caller]
pub(crate) fn avg_pool2d(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<Tensor> {
    let location = Location::caller();
    let op = "avg_pool2d";
    let [_, c, h, w] = check_4d(op, x, location)?;
    pooled_size(op, h, kernel.0, stride.0, padding.0, location)?;
    pooled_size(op, w, kernel.1, stride.1, padding.1, location)?;
    // PyTorch's default count_include_pad=True: every window divides by the full kernel
    // area, which is exactly a depthwise convolution with a constant kernel.
    let area = try_numel(op, &[kernel.0, kernel.1], location)?;
    let weight = Tensor::try_full_dtype(&[c, 1, kernel.0, kernel.1], 1.0 / area as f64, x.dtype())?;
    let opts = Conv2dOptions { stride, padding, dilation: (1, 1), groups: c };
    crate::conv::conv2d(x, &weight, None, opts)
}

/// The `[out, input]` matrix that averages PyTorch's adaptive windows
/// `floor(i * input / out) .. ceil((i + 1) * input / out)`.
fn averaging_matrix(input: usize, out: usize) -> Vec<f64> {
    let mut m = vec![0.0; out * input];
    for i in 0..out {
        let start = i * input / out;
        let end = ((i + 1) * input).div_ceil(out);
        for j in start..end {
            m[i * input + j] = 1.0 / (end - start) as f64;
        }
    }
    m
}

#[track_caller]
pub(crate) fn adaptive_avg_pool2d(x: &Tensor, output: (usize, usize)) -> Result<Tensor> {
    let location = Location::caller();
    let op = "adaptive_avg_pool2d";
    let [_, _, h, w] = check_4d(op, x, location)?;
    if output.0 == 0 || output.1 == 0 {
        return Err(Error::InvalidArgument {
            op,
            message: format!("output size {output:?} must be positive"),
            location,
        });
    }
    for shape in
        [&[output.0, h][..], &[output.1, w], &[x.shape()[0], x.shape()[1], output.0, output.1]]
    {
        try_numel(op, shape, location)?;
    }
    let ah = Tensor::from_vec(averaging_matrix(h, output.0), &[output.0, h]).to_dtype(x.dtype());
    let aw = Tensor::from_vec(averaging_matrix(w, output.1), &[output.1, w]).to_dtype(x.dtype());
    // Separable: rows then columns, as two (broadcast batched) matrix products.
    let rows = crate::matmul::matmul(&ah, x)?;
    crate::matmul::matmul(&rows, &crate::shape::transpose(&aw, 0, 1)?)
}
