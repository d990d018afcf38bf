//! Sampling an image at arbitrary points (PyTorch's `F.grid_sample`) and the sampling grid
//! of an affine map (`F.affine_grid`): the two halves of a spatial transformer.
//!
//! Built from recorded ops, so gradients reach both the image and the grid, to any order:
//! the (up to) four neighbours of every sample point are picked as rows of channels from the
//! image laid out `[N * H * W, C]`, by one `index_select`, and blended with weights made from
//! the points' coordinates by differentiable arithmetic. Which neighbours, and whether each lies inside the image, is
//! worked out from the coordinates' values (constants of the graph, as the floor is).

use std::panic::Location;

use tapegrad_tape::layout::Layout;
use tapegrad_tape::{Element, Error, Result, Storage, Tensor, ensure_float};

use crate::index::index_select;
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
    let (h_out, w_out) = (grid.shape()[1], grid.shape()[2]);
    let points = h_out * w_out;
    let dual = |t: &Tensor| {
        tapegrad_tape::forward_ad::is_dual_level_open()
            && tapegrad_tape::forward_ad::unpack_dual(t).tangent.is_some()
    };
    let graph = tapegrad_tape::is_grad_enabled() && (input.tracks_grad() || grid.tracks_grad());
    if !graph && !dual(input) && !dual(grid) {
        // Nothing to differentiate: the same arithmetic in one pass, without the graph.
        let (image, points_xy) = (input.contiguous_storage(), grid.contiguous_storage());
        let storage = match (&image, &points_xy) {
            (Storage::F32(i), Storage::F32(g)) => {
                Storage::from_vec(sample::<f32>(i, g, [n, c, h, w], points, options))
            }
            (Storage::F64(i), Storage::F64(g)) => {
                Storage::from_vec(sample::<f64>(i, g, [n, c, h, w], points, options))
            }
            _ => return Err(invalid("grid_sample takes float32 or float64".into())),
        };
        let out = Tensor::from_storage(storage, Layout::contiguous(&[n, c, h_out, w_out]));
        return Ok(out);
    }
    let coord = |axis: usize, size: usize| -> Tensor {
        let g = grid.narrow(3, axis, 1).reshape(&[n as isize, 1, points as isize]);
        let size_f = size as f64;
        let pixel = if options.align_corners {
            &(&(&g + 1.0) / 2.0) * (size_f - 1.0)
        } else {
            &(&(&g + 1.0) * size_f - 1.0) / 2.0
        };
        match options.padding_mode {
            GridSamplePadding::Zeros => pixel,
            GridSamplePadding::Border => pixel.clamp(Some(0.0), Some(size_f - 1.0)),
        }
    };
    let (x, y) = (coord(0, w), coord(1, h));
    let (xs, ys) = (x.detach().to_vec::<f64>(), y.detach().to_vec::<f64>());
    // The image as rows of channels, `[N * H * W, C]`: each neighbour of a point is one row,
    // picked by `index_select` (whose backward adds rows back), so the index holds one entry
    // per point and neighbour, not per channel.
    let rows = input.permute(&[0, 2, 3, 1]).reshape(&[(n * h * w) as isize, c as isize]);
    // The neighbours (whole-pixel positions, one list per neighbour, one entry per point) and
    // their weights (`[N, 1, points]` each; `None`: 1): returns `[N, C, points]`, the
    // neighbours' rows times their weights, summed, with zero for a position outside.
    let blend =
        |positions: &[(Vec<f64>, Vec<f64>)], weights: Vec<Option<Tensor>>| -> Result<Tensor> {
            let k = positions.len();
            let mut index = Vec::with_capacity(n * k * points);
            let mut inside = Vec::with_capacity(n * k * points);
            for b in 0..n {
                for (px, py) in positions {
                    for p in 0..points {
                        let (xi, yi) = (px[b * points + p], py[b * points + p]);
                        let ok = xi >= 0.0 && xi < w as f64 && yi >= 0.0 && yi < h as f64;
                        inside.push(if ok { 1.0 } else { 0.0 });
                        index.push(if ok {
                            (b * h * w + yi as usize * w + xi as usize) as i64
                        } else {
                            0
                        });
                    }
                }
            }
            let index = Tensor::from_vec(index, &[n * k * points]);
            let picked = index_select(&rows, 0, &index)?; // [N * k * points, C], ordered (b, k, p)
            let inside = Tensor::from_vec(inside, &[n, k, points]).to_dtype(input.dtype());
            let weight = match weights.iter().all(Option::is_none) {
                true => inside,
                false => {
                    let ones = || Tensor::ones_dtype(&[n, 1, points], input.dtype());
                    let parts: Vec<Tensor> =
                        weights.into_iter().map(|w| w.unwrap_or_else(ones)).collect();
                    &cat(&parts.iter().collect::<Vec<_>>(), 1) * &inside
                }
            };
            let weighted = &picked * &weight.reshape(&[(n * k * points) as isize, 1]);
            let summed = weighted
                .reshape(&[n as isize, k as isize, points as isize, c as isize])
                .sum_dim(1, false);
            Ok(summed.permute(&[0, 2, 1]))
        };
    let out = match options.mode {
        GridSampleMode::Nearest => {
            let round = |v: &[f64]| v.iter().map(|v| v.round_ties_even()).collect::<Vec<_>>();
            blend(&[(round(&xs), round(&ys))], vec![None])?
        }
        GridSampleMode::Bilinear => {
            let floor = |v: &[f64]| v.iter().map(|v| v.floor()).collect::<Vec<_>>();
            let (x0, y0) = (floor(&xs), floor(&ys));
            let (x1, y1): (Vec<f64>, Vec<f64>) =
                (x0.iter().map(|v| v + 1.0).collect(), y0.iter().map(|v| v + 1.0).collect());
            let constant =
                |v: &[f64]| Tensor::from_vec(v.to_vec(), &[n, 1, points]).to_dtype(input.dtype());
            // The distances to the far corner, as PyTorch's weights: (x1 - x) to the left
            // neighbour, (x - x0) to the right.
            let (east, west) = (&x - &constant(&x0), &constant(&x1) - &x);
            let (south, north) = (&y - &constant(&y0), &constant(&y1) - &y);
            let corners = [(x0.clone(), y0.clone()), (x1.clone(), y0), (x0, y1.clone()), (x1, y1)];
            let weights = vec![
                Some(&west * &north),
                Some(&east * &north),
                Some(&west * &south),
                Some(&east * &south),
            ];
            blend(&corners, weights)?
        }
    };
    Ok(out.reshape(&[n as isize, c as isize, h_out as isize, w_out as isize]))
}

/// [`grid_sample`]'s value alone, for inputs that need no graph: per point, the same
/// coordinates, neighbours and weights as the recorded ops, in the same order, so both give
/// the same bits.
fn sample<T: Element>(
    image: &[T],
    grid: &[T],
    [n, c, h, w]: [usize; 4],
    points: usize,
    options: GridSampleOptions,
) -> Vec<T> {
    let pixel = |g: T, size: usize| -> T {
        let (one, two, size_t) = (T::from_f64(1.0), T::from_f64(2.0), T::from_f64(size as f64));
        let p = if options.align_corners {
            (g + one) / two * T::from_f64(size as f64 - 1.0)
        } else {
            ((g + one) * size_t - one) / two
        };
        match options.padding_mode {
            GridSamplePadding::Zeros => p,
            GridSamplePadding::Border => {
                let top = T::from_f64(size as f64 - 1.0);
                if p < T::from_f64(0.0) {
                    T::from_f64(0.0)
                } else if p > top {
                    top
                } else {
                    p
                }
            }
        }
    };
    let mut out = vec![T::from_f64(0.0); n * c * points];
    for (b, out) in out.chunks_mut((c * points).max(1)).enumerate().take(n) {
        let plane = &image[b * c * h * w..(b + 1) * c * h * w];
        let at = |x: f64, y: f64| -> Option<usize> {
            (x >= 0.0 && x < w as f64 && y >= 0.0 && y < h as f64)
                .then(|| y as usize * w + x as usize)
        };
        for p in 0..points {
            let g = (b * points + p) * 2;
            let (x, y) = (pixel(grid[g], w), pixel(grid[g + 1], h));
            let (xf, yf) = (x.to_f64(), y.to_f64());
            // (position, weight) of each neighbour, in the recorded path's order.
            let mut corners: [(Option<usize>, T); 4] = [(None, T::from_f64(0.0)); 4];
            let count = match options.mode {
                GridSampleMode::Nearest => {
                    corners[0] = (at(xf.round_ties_even(), yf.round_ties_even()), T::from_f64(1.0));
                    1
                }
                GridSampleMode::Bilinear => {
                    let (x0, y0) = (xf.floor(), yf.floor());
                    let (x0t, y0t) = (T::from_f64(x0), T::from_f64(y0));
                    let (x1t, y1t) = (T::from_f64(x0 + 1.0), T::from_f64(y0 + 1.0));
                    let (east, west) = (x - x0t, x1t - x);
                    let (south, north) = (y - y0t, y1t - y);
                    corners = [
                        (at(x0, y0), west * north),
                        (at(x0 + 1.0, y0), east * north),
                        (at(x0, y0 + 1.0), west * south),
                        (at(x0 + 1.0, y0 + 1.0), east * south),
                    ];
                    4
                }
            };
            for ch in 0..c {
                let channel = &plane[ch * h * w..(ch + 1) * h * w];
                let mut acc = T::from_f64(0.0);
                for &(position, weight) in &corners[..count] {
                    if let Some(i) = position {
                        acc += channel[i] * weight;
                    }
                }
                out[ch * points + p] = acc;
            }
        }
    }
    out
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
