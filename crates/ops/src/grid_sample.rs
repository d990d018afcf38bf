//! Sampling an image at arbitrary points (PyTorch's `F.grid_sample`) and the sampling grid
//! of an affine map (`F.affine_grid`): the two halves of a spatial transformer.
//!
//! `grid_sample` is one recorded operation: its value and plain gradients come straight
//! from the kernels' loops. Its gradients when a graph of them is asked for, and its
//! forward-mode tangents, come from the same sampling written as recorded ops, so they are
//! differentiable to any order: the (up to) four neighbours of every sample point are
//! picked as rows of channels from the image laid out `[N * H * W, C]`, by one
//! `index_select`, and blended with weights made from the points' coordinates by
//! differentiable arithmetic. Which neighbours, and whether each lies inside the image, is
//! worked out from the coordinates' values (constants of the graph, as the floor is).

use std::panic::Location;

use tapegrad_kernels::grid_sample::{self as kernel, Sizes};
use tapegrad_tape::layout::Layout;
use tapegrad_tape::smallvec::smallvec;
use tapegrad_tape::{Backward, DType, Error, Result, Storage, Tensor, ensure_float, record};

use crate::binary::where_;
use crate::index::{index_add, index_select};
use crate::options::setters;
use crate::shape::cat;
use crate::{MatmulOps, ReduceOps, ShapeOps, UnaryOps};

/// How [`grid_sample_with`](crate::functional::grid_sample_with) reads the image between
/// pixels (PyTorch's `mode`).
///
/// ```
/// assert_eq!(tapegrad_ops::GridSampleMode::default(), tapegrad_ops::GridSampleMode::Bilinear);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GridSampleMode {
    /// The four nearest pixels blended by distance (PyTorch's default).
    #[default]
    Bilinear,
    /// The nearest pixel (halves round to even, as PyTorch's); no gradient to the grid.
    Nearest,
}

/// What [`grid_sample_with`](crate::functional::grid_sample_with) reads outside the image
/// (PyTorch's `padding_mode`; `'reflection'` is not offered).
///
/// ```
/// assert_eq!(tapegrad_ops::GridSamplePadding::default(), tapegrad_ops::GridSamplePadding::Zeros);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GridSamplePadding {
    /// Zeros (PyTorch's default).
    #[default]
    Zeros,
    /// The nearest border pixel: coordinates are clamped into the image first (with no
    /// gradient to a coordinate clamped).
    Border,
}

/// PyTorch's keywords of `F.grid_sample` beside the input and the grid.
///
/// ```
/// use tapegrad_ops::{GridSampleMode, GridSampleOptions, GridSamplePadding};
/// let o = GridSampleOptions::default().mode(GridSampleMode::Nearest).align_corners(true);
/// assert_eq!((o.mode, o.padding_mode, o.align_corners), (GridSampleMode::Nearest, GridSamplePadding::Zeros, true));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GridSampleOptions {
    /// How to read between pixels.
    pub mode: GridSampleMode,
    /// What to read outside the image.
    pub padding_mode: GridSamplePadding,
    /// Whether -1 and 1 are the centres of the corner pixels (`true`) or their outer edges
    /// (`false`, PyTorch's default).
    pub align_corners: bool,
}

setters!(GridSampleOptions {
    /// Sets `mode`.
    mode(GridSampleMode) => mode, example tapegrad_ops::GridSampleMode::Nearest => o.mode == tapegrad_ops::GridSampleMode::Nearest;
    /// Sets `padding_mode`.
    padding_mode(GridSamplePadding) => padding_mode, example tapegrad_ops::GridSamplePadding::Border => o.padding_mode == tapegrad_ops::GridSamplePadding::Border;
    /// Sets `align_corners`.
    align_corners(bool) => align_corners, example true => o.align_corners;
});

/// `input` `[N, C, H, W]` sampled at the points of `grid` `[N, H_out, W_out, 2]` (x then
/// y, each from -1 to 1 across the image): `[N, C, H_out, W_out]`.
#[track_caller]
pub(crate) fn grid_sample(
    input: &Tensor,
    grid: &Tensor,
    options: GridSampleOptions,
) -> Result<Tensor> {
    let location = Location::caller();
    let invalid = |message: String| Error::InvalidArgument { op: "grid_sample", message, location };
    ensure_float("grid_sample", input, location)?;
    ensure_float("grid_sample", grid, location)?;
    if input.dim() != 4 {
        return Err(invalid(format!(
            "input must be [N, C, H, W] (volumes are not supported), got shape {:?}",
            input.shape()
        )));
    }
    let (n, c, h, w) = (input.shape()[0], input.shape()[1], input.shape()[2], input.shape()[3]);
    if grid.dim() != 4 || grid.shape()[0] != n || grid.shape()[3] != 2 {
        return Err(invalid(format!(
            "grid must be [N, H_out, W_out, 2] with the input's N = {n}, got shape {:?}",
            grid.shape()
        )));
    }
    if grid.dtype() != input.dtype() {
        return Err(invalid(format!(
            "grid is {} but input is {}; they must have one dtype",
            grid.dtype(),
            input.dtype()
        )));
    }
    if h == 0 || w == 0 {
        return Err(invalid(format!("input has no pixels (shape {:?})", input.shape())));
    }
    if h.max(w) > kernel::MAX_SIDE {
        return Err(invalid(format!(
            "input sides go up to {} pixels, got shape {:?}",
            kernel::MAX_SIDE,
            input.shape()
        )));
    }
    let (h_out, w_out) = (grid.shape()[1], grid.shape()[2]);
    let sizes = Sizes { n, c, h, w, points: h_out * w_out };
    let dual = |t: &Tensor| {
        tapegrad_tape::forward_ad::is_dual_level_open()
            && tapegrad_tape::forward_ad::unpack_dual(t).tangent.is_some()
    };
    if dual(input) || dual(grid) {
        // Tangents are carried by the recorded ops the sampling is made of.
        return composed(input, grid, sizes, options);
    }
    let out_shape = [n, c, h_out, w_out];
    let (image, points) = (input.contiguous_storage(), grid.contiguous_storage());
    let storage = match (&image, &points) {
        (Storage::F32(i), Storage::F32(g)) => {
            Storage::from_vec(kernel::sample(i, g, sizes, options.into()))
        }
        (Storage::F64(i), Storage::F64(g)) => {
            Storage::from_vec(kernel::sample(i, g, sizes, options.into()))
        }
        _ => return Err(invalid("grid_sample takes float32 or float64".into())),
    };
    let value = Tensor::from_storage(storage, Layout::contiguous(&out_shape));
    Ok(record("grid_sample", location, &[input, grid], value, || {
        Backward::new(move |ctx| {
            let (input, grid, grad) = (ctx.saved(0), ctx.saved(1), ctx.grad());
            let wanted = [ctx.needs_input_grad(0), ctx.needs_input_grad(1)];
            let [image_grad, grid_grad] = if tapegrad_tape::is_grad_enabled() {
                // A graph of the gradient: the rule as recorded ops, differentiable again.
                composed_backward(input, grid, grad, sizes, options, wanted)
            } else {
                direct_backward(input, grid, grad, sizes, options, wanted)
            };
            smallvec![image_grad, grid_grad]
        })
        .save(input)
        .save(grid)
    }))
}

impl From<GridSampleOptions> for kernel::Sampling {
    fn from(o: GridSampleOptions) -> Self {
        kernel::Sampling {
            nearest: o.mode == GridSampleMode::Nearest,
            border: o.padding_mode == GridSamplePadding::Border,
            align_corners: o.align_corners,
        }
    }
}

/// [`grid_sample`]'s gradients straight from the buffers (the kernels' loops).
fn direct_backward(
    input: &Tensor,
    grid: &Tensor,
    grad: &Tensor,
    sizes: Sizes,
    options: GridSampleOptions,
    [image_wanted, grid_wanted]: [bool; 2],
) -> [Option<Tensor>; 2] {
    let how = kernel::Sampling::from(options);
    let (g, points) = (grad.contiguous_storage(), grid.contiguous_storage());
    let as_tensor =
        |v: Storage, like: &Tensor| Tensor::from_storage(v, Layout::contiguous(like.shape()));
    if image_wanted && grid_wanted {
        // Both in one pass over the points.
        let image = input.contiguous_storage();
        let (by_image, by_grid) = match (&image, &points, &g) {
            (Storage::F32(i), Storage::F32(p), Storage::F32(g)) => {
                let (a, b) = kernel::gradients(i, p, g, sizes, how);
                (Storage::from_vec(a), Storage::from_vec(b))
            }
            (Storage::F64(i), Storage::F64(p), Storage::F64(g)) => {
                let (a, b) = kernel::gradients(i, p, g, sizes, how);
                (Storage::from_vec(a), Storage::from_vec(b))
            }
            _ => unreachable!("grid_sample's tensors share one float dtype"),
        };
        return [Some(as_tensor(by_image, input)), Some(as_tensor(by_grid, grid))];
    }
    let image_grad = image_wanted.then(|| {
        let storage = match (&points, &g) {
            (Storage::F32(p), Storage::F32(g)) => {
                Storage::from_vec(kernel::image_gradient(p, g, sizes, how))
            }
            (Storage::F64(p), Storage::F64(g)) => {
                Storage::from_vec(kernel::image_gradient(p, g, sizes, how))
            }
            _ => unreachable!("grid_sample's tensors share one float dtype"),
        };
        as_tensor(storage, input)
    });
    let grid_grad = grid_wanted.then(|| {
        let image = input.contiguous_storage();
        let storage = match (&image, &points, &g) {
            (Storage::F32(i), Storage::F32(p), Storage::F32(g)) => {
                Storage::from_vec(kernel::grid_gradient(i, p, g, sizes, how))
            }
            (Storage::F64(i), Storage::F64(p), Storage::F64(g)) => {
                Storage::from_vec(kernel::grid_gradient(i, p, g, sizes, how))
            }
            _ => unreachable!("grid_sample's tensors share one float dtype"),
        };
        as_tensor(storage, grid)
    });
    [image_grad, grid_grad]
}

/// The recorded form of a sampling: which rows of the image laid out `[N * H * W, C]` are
/// each point's neighbours, and their weights as functions of the grid.
struct Neighbourhood {
    /// Neighbours per point (4, or 1 for nearest).
    k: usize,
    /// `[N * k * points]` rows of the image, ordered (image, neighbour, point); 0 for a
    /// neighbour outside.
    index: Tensor,
    /// `[N, k, points]`, bool: whether each neighbour lies inside the image.
    inside: Tensor,
    /// The input's dtype.
    dtype: DType,
    /// Bilinear only: the distances to the far side (west, east, north, south), `[N, 1,
    /// points]` each, recorded from the grid.
    distances: Option<[Tensor; 4]>,
    /// Bilinear only: how each pixel coordinate moves with the grid's (constants, 0 where
    /// the border clamps it).
    slopes: Option<[Tensor; 2]>,
}

impl Neighbourhood {
    fn of(grid: &Tensor, sizes: Sizes, options: GridSampleOptions, dtype: DType) -> Self {
        let Sizes { n, h, w, points, .. } = sizes;
        let coord = |axis: usize, size: usize| -> (Tensor, Tensor) {
            let g = grid.narrow(3, axis, 1).reshape(&[n as isize, 1, points as isize]);
            let size_f = size as f64;
            let (pixel, slope) = if options.align_corners {
                (&(&(&g + 1.0) / 2.0) * (size_f - 1.0), (size_f - 1.0) / 2.0)
            } else {
                (&(&(&g + 1.0) * size_f - 1.0) / 2.0, size_f / 2.0)
            };
            match options.padding_mode {
                GridSamplePadding::Zeros => {
                    let slope = Tensor::full(&[n, 1, points], slope).to_dtype(dtype);
                    (pixel, slope)
                }
                GridSamplePadding::Border => {
                    let free: Vec<f64> = pixel
                        .detach()
                        .to_vec::<f64>()
                        .iter()
                        .map(|&p| if p > 0.0 && p < size_f - 1.0 { slope } else { 0.0 })
                        .collect();
                    let slope = Tensor::from_vec(free, &[n, 1, points]).to_dtype(dtype);
                    (pixel.clamp(Some(0.0), Some(size_f - 1.0)), slope)
                }
            }
        };
        let ((x, slope_x), (y, slope_y)) = (coord(0, w), coord(1, h));
        let (xs, ys) = (x.detach().to_vec::<f64>(), y.detach().to_vec::<f64>());
        let pick = |positions: &[(Vec<f64>, Vec<f64>)]| -> (Tensor, Tensor) {
            let k = positions.len();
            let mut index = Vec::with_capacity(n * k * points);
            let mut inside = Vec::with_capacity(n * k * points);
            for b in 0..n {
                for (px, py) in positions {
                    for p in 0..points {
                        let (xi, yi) = (px[b * points + p], py[b * points + p]);
                        let ok = xi >= 0.0 && xi < w as f64 && yi >= 0.0 && yi < h as f64;
                        inside.push(ok);
                        index.push(if ok {
                            (b * h * w + yi as usize * w + xi as usize) as i64
                        } else {
                            0
                        });
                    }
                }
            }
            (Tensor::from_vec(index, &[n * k * points]), Tensor::from_vec(inside, &[n, k, points]))
        };
        match options.mode {
            GridSampleMode::Nearest => {
                let round = |v: &[f64]| v.iter().map(|v| v.round_ties_even()).collect::<Vec<_>>();
                let (index, inside) = pick(&[(round(&xs), round(&ys))]);
                Neighbourhood { k: 1, index, inside, dtype, distances: None, slopes: None }
            }
            GridSampleMode::Bilinear => {
                let floor = |v: &[f64]| v.iter().map(|v| v.floor()).collect::<Vec<_>>();
                let (x0, y0) = (floor(&xs), floor(&ys));
                let (x1, y1): (Vec<f64>, Vec<f64>) =
                    (x0.iter().map(|v| v + 1.0).collect(), y0.iter().map(|v| v + 1.0).collect());
                let constant =
                    |v: &[f64]| Tensor::from_vec(v.to_vec(), &[n, 1, points]).to_dtype(dtype);
                // The distances to the far side, as PyTorch's weights: (x1 - x) to the left
                // neighbour, (x - x0) to the right.
                let (east, west) = (&x - &constant(&x0), &constant(&x1) - &x);
                let (south, north) = (&y - &constant(&y0), &constant(&y1) - &y);
                let corners =
                    [(x0.clone(), y0.clone()), (x1.clone(), y0), (x0, y1.clone()), (x1, y1)];
                let (index, inside) = pick(&corners);
                Neighbourhood {
                    k: 4,
                    index,
                    inside,
                    dtype,
                    distances: Some([west, east, north, south]),
                    slopes: Some([slope_x, slope_y]),
                }
            }
        }
    }

    /// `[N, k, points]`: each neighbour's weight, 0 outside the image.
    fn weights(&self) -> Tensor {
        match &self.distances {
            None => self.inside.to_dtype(self.dtype),
            Some([west, east, north, south]) => {
                let products = [west * north, east * north, west * south, east * south];
                self.only_inside(&cat(&products.iter().collect::<Vec<_>>(), 1))
            }
        }
    }

    /// `values` (`[N, k, points]`) where the neighbour lies inside, 0 elsewhere: selected,
    /// not multiplied, so that what a point at infinity makes NaN stays out.
    fn only_inside(&self, values: &Tensor) -> Tensor {
        where_(&self.inside, values, &Tensor::zeros_dtype(&[], self.dtype))
    }

    /// `[N, k, points, C]`: the neighbours' channels, read from `input` by one
    /// `index_select` (whose backward adds the rows back).
    fn picked(&self, input: &Tensor, Sizes { n, c, h, w, points }: Sizes) -> Tensor {
        let rows = input.permute(&[0, 2, 3, 1]).reshape(&[(n * h * w) as isize, c as isize]);
        let picked = index_select(&rows, 0, &self.index).expect("indices inside the image");
        picked.reshape(&[n as isize, self.k as isize, points as isize, c as isize])
    }
}

/// [`grid_sample`] as recorded ops (carrying tangents, and differentiable to any order):
/// the neighbours' rows times their weights, summed.
fn composed(
    input: &Tensor,
    grid: &Tensor,
    sizes: Sizes,
    options: GridSampleOptions,
) -> Result<Tensor> {
    let Sizes { n, c, points, .. } = sizes;
    let near = Neighbourhood::of(grid, sizes, options, input.dtype());
    let k = near.k as isize;
    let weights = near.weights().reshape(&[n as isize, k, points as isize, 1]);
    let summed = (&near.picked(input, sizes) * &weights).sum_dim(1, false); // [N, points, C]
    let (h_out, w_out) = (grid.shape()[1], grid.shape()[2]);
    Ok(summed.permute(&[0, 2, 1]).reshape(&[
        n as isize,
        c as isize,
        h_out as isize,
        w_out as isize,
    ]))
}

/// [`grid_sample`]'s gradients as recorded ops, for a graph of the gradient: each output
/// gradient spread onto the neighbours by their weights, and the grid moved by how the
/// weights move with it.
fn composed_backward(
    input: &Tensor,
    grid: &Tensor,
    grad: &Tensor,
    sizes: Sizes,
    options: GridSampleOptions,
    [image_wanted, grid_wanted]: [bool; 2],
) -> [Option<Tensor>; 2] {
    let Sizes { n, c, h, w, points } = sizes;
    let near = Neighbourhood::of(grid, sizes, options, input.dtype());
    let k = near.k as isize;
    // [N, 1, points, C]: the gradient of each point's channels.
    let per_point =
        grad.reshape(&[n as isize, c as isize, 1, points as isize]).permute(&[0, 2, 3, 1]);
    let image_grad = image_wanted.then(|| {
        let weights = near.weights().reshape(&[n as isize, k, points as isize, 1]);
        let spread = (&per_point * &weights).reshape(&[(n * near.k * points) as isize, c as isize]);
        let zeros = Tensor::zeros_dtype(&[n * h * w, c], input.dtype());
        let rows = index_add(&zeros, 0, &near.index, &spread).expect("shapes agree");
        rows.reshape(&[n as isize, h as isize, w as isize, c as isize]).permute(&[0, 3, 1, 2])
    });
    let grid_grad = grid_wanted.then(|| match (&near.distances, &near.slopes) {
        (Some([west, east, north, south]), Some([slope_x, slope_y])) => {
            // Each neighbour's channels dotted with the point's gradient: [N, k, points].
            let dots =
                near.only_inside(&(&near.picked(input, sizes) * &per_point).sum_dim(3, false));
            let d = |i: usize| dots.narrow(1, i, 1);
            let by_x = &(north * &(&d(1) - &d(0))) + &(south * &(&d(3) - &d(2)));
            let by_y = &(west * &(&d(2) - &d(0))) + &(east * &(&d(3) - &d(1)));
            let pair = cat(&[&(&by_x * slope_x), &(&by_y * slope_y)], 1); // [N, 2, points]
            pair.permute(&[0, 2, 1])
                .reshape(&grid.shape().iter().map(|&d| d as isize).collect::<Vec<_>>())
        }
        _ => Tensor::zeros_dtype(grid.shape(), grid.dtype()), // nearest: piecewise constant
    });
    [image_grad, grid_grad]
}

/// The sampling grid `[N, H, W, 2]` of the affine maps `theta` `[N, 2, 3]` for an output of
/// `size` `[N, C, H, W]`: each output pixel's normalised (x, y, 1) times `theta`'s
/// transpose.
#[track_caller]
pub(crate) fn affine_grid(theta: &Tensor, size: &[usize], align_corners: bool) -> Result<Tensor> {
    let location = Location::caller();
    let invalid = |message: String| Error::InvalidArgument { op: "affine_grid", message, location };
    ensure_float("affine_grid", theta, location)?;
    if size.len() != 4 {
        return Err(invalid(format!(
            "size must be [N, C, H, W] (volumes are not supported), got {size:?}"
        )));
    }
    let (n, h, w) = (size[0], size[2], size[3]);
    if theta.shape() != [n, 2, 3] {
        return Err(invalid(format!(
            "theta must be [N, 2, 3] with size's N = {n}, got shape {:?}",
            theta.shape()
        )));
    }
    // PyTorch's `linspace(-1, 1, steps)`, scaled to the pixel centres without align_corners.
    let positions = |steps: usize| -> Vec<f64> {
        if steps <= 1 {
            return vec![0.0; steps]; // PyTorch's single position is the centre
        }
        let step = 2.0 / (steps - 1) as f64;
        (0..steps)
            .map(|i| {
                let v = if i < steps / 2 {
                    -1.0 + i as f64 * step
                } else {
                    1.0 - (steps - 1 - i) as f64 * step
                };
                if align_corners { v } else { v * (steps - 1) as f64 / steps as f64 }
            })
            .collect()
    };
    let (xs, ys) = (positions(w), positions(h));
    let mut base = Vec::with_capacity(h * w * 3);
    for y in &ys {
        for x in &xs {
            base.extend_from_slice(&[*x, *y, 1.0]);
        }
    }
    let base = Tensor::from_vec(base, &[1, h * w, 3]).to_dtype(theta.dtype());
    let grid = base.matmul(&theta.transpose(1, 2));
    Ok(grid.reshape(&[n as isize, h as isize, w as isize, 2]))
}
