//! Stride-1 5 x 5 and 3 x 3 convolutions by Winograd's minimal filtering algorithms,
//! F(4 x 4, 5 x 5) and F(2 x 2, 5 x 5), and F(4 x 4, 3 x 3).
//!
//! An `m x m` block of outputs (a tile) of an `r x r` kernel reads an `n x n` window of the
//! input (`n = m + r - 1`: 8 for 4 x 4 tiles of a 5 x 5 kernel, 6 otherwise). Winograd's
//! method maps the window and the kernel to `n²` values each (`V = Bᵀ d B`, `U = G g Gᵀ`),
//! multiplies them point by point and maps the products back (`Y = Aᵀ (U ⊙ V) A`): 64
//! multiplications per pair of channels for 16 outputs of a 5 x 5 kernel, where the direct
//! sum takes 400 (and 2 x 2 tiles 144, for 36 each), or 36 for 16 outputs of a 3 x 3
//! kernel (direct: 144). Windows of six use the points 0, 1, -1, 2, -1/2 and infinity,
//! windows of eight 0, ±1, ±2, ±1/2 and infinity; `G` and `Aᵀ` follow from the points, `m`
//! and `r`. Summed over input channels, the point products of one point `ξ` are a matrix
//! product `M[ξ] = V[ξ] U[ξ]` (tiles x input channels times input channels x output
//! channels), which runs on the implicit GEMM kernel; the transforms are a few vector
//! additions per tile, with the channels of a pixel as the lanes of a vector. Tiles past the
//! output's edge are computed and cropped; a 5 x 5 kernel takes whichever tile side costs
//! fewer multiplications on its output ([`tiling`]), and small outputs are left to the
//! direct sum ([`saves_enough`]).
//!
//! The price is rounding. The transforms scale values by up to 21/4 (`Bᵀ` of windows of
//! eight) and 8 (`Aᵀ` of 4 x 4 tiles) and cancel them again, so f32 results carry more
//! rounding error than the direct sum: on the CNN's second layer the largest error was
//! about 4e-6 of the largest output with 4 x 4 tiles and 1.3e-6 with 2 x 2 ones (direct:
//! 1.7e-7), and 1.3e-6 for a 3 x 3 layer of 32 channels. Among the simple fractions tried,
//! the points above gave the smallest error for 5 x 5 kernels and were within 6% of the
//! best for 3 x 3 ones. So only f32 takes this path, and only while
//! [`set_winograd_enabled`] allows it; f64, what gradient checks use, is always summed
//! directly. A result with an infinity or a NaN is recomputed directly: the transforms
//! would turn one infinite input into NaN across its tile, or overflow where the direct sum
//! does not.

use std::any::TypeId;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{ChannelBias, Geometry, Images, Split, for_chunks, sum_in_image_order};
use rayon::prelude::*;

use crate::implicit_gemm::{B_SLACK, Isa, Lhs, Operands, available, implicit_gemm, isa};
use crate::scratch::Scratch;
use crate::transpose::{RowMajorAt, Transpose, as_uninit, transpose_into};

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Allows or forbids Winograd's algorithm for f32 convolutions (allowed by default) and
/// returns the previous setting.
///
/// It applies on CPUs with AVX-512 or AVX2 to 5 x 5 and 3 x 3 convolutions with stride 1,
/// no dilation, one group, channel counts that are multiples of 16 (8 on AVX2), a
/// transformed kernel of at most 28 MB (up to about 450 channels in and out for 3 x 3
/// kernels, 330 for 5 x 5 ones), enough tiles over the batch (the transformed values of 64 tiles of 36 points), and outputs
/// large enough that whole tiles save a third of the multiplications: their forward pass
/// and weight gradient, and their input gradient when the padding is narrower than the
/// kernel. Those run faster (more so with more channels; docs/BENCHMARKS.md), with more rounding
/// error than the direct sum's 1e-7 to 3e-7 of the largest output: up to about 5e-6 for
/// 5 x 5 kernels (7e-6 for the weight gradient over many tiles) and 2e-6 for 3 x 3 ones.
/// Forbid it for results that must match a direct summation to the last bits; f64
/// convolutions never use it. The
/// setting is global, like PyTorch's `torch.backends` flags.
///
/// ```
/// use tapegrad_kernels::conv::{set_winograd_enabled, winograd_enabled};
/// let before = set_winograd_enabled(false);
/// assert!(!winograd_enabled());
/// set_winograd_enabled(before);
/// ```
pub fn set_winograd_enabled(enabled: bool) -> bool {
    ENABLED.swap(enabled, Ordering::Relaxed)
}

/// Whether f32 convolutions may use Winograd's algorithm (see [`set_winograd_enabled`]).
///
/// ```
/// assert!(tapegrad_kernels::conv::winograd_enabled()); // the default
/// ```
pub fn winograd_enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The widest window side (`n` of [`Shape`]): 4 x 4 tiles of a 5 x 5 kernel.
const MAX_N: usize = 8;
/// Channels per transform step: one f32 vector of the instruction set in use (16 on
/// AVX-512, 8 on AVX2), the implicit GEMM's.
fn lanes() -> usize {
    crate::implicit_gemm::lanes::<f32>()
}
/// Transformed values per round of the point products: 128 tiles of 36 points, or 72 of
/// 64 (or one row of tiles, if longer). Enough rows for the GEMM's register blocks, few
/// enough that a round's transformed inputs and products stay in the core's cache instead
/// of taking a multiple of the image's memory (nine times for 2 x 2 tiles).
const ROUND_POINTS: usize = 128 * 36;

/// Elements (one 64-byte cache line of f32) left between consecutive tiles in a round's
/// buffers. A tile's values are `n²` points of 16 to 64 channels, 4 to 16 KB, a multiple of
/// 4 KB: unpadded, the same point of every tile mapped to one set of the L1 cache, and the
/// point products, which read one row per tile, evicted their own rows (the weight
/// gradient's product went from 105 to 132 GFLOP/s with the pad, the forward one's from
/// 104-108 to 127-129, on an Intel Xeon).
const TILE_PAD: usize = 16;

/// The finite points of a window of six (the last point is infinity).
const POINTS_6: [f64; 5] = [0.0, 1.0, -1.0, 2.0, -0.5];
/// The finite points of a window of eight: 0 and three pairs `±p`, whose transforms share
/// their even and odd parts.
const POINTS_8: [f64; 7] = [0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5];

/// `POWERS_n[k][i] = p_i^k` over a window's finite points. Row `k` of `Aᵀ` is row `k` of
/// the table (and, in its last column, 1 for the last row only), so the output and
/// gradient transforms take their coefficients from here.
const POWERS_6: [[f32; 5]; 4] = powers(POINTS_6);
/// [`POWERS_6`] for a window of eight.
const POWERS_8: [[f32; 7]; 4] = powers(POINTS_8);

/// The first four powers of each point (exact: the points are small dyadic fractions).
const fn powers<const F: usize>(points: [f64; F]) -> [[f32; F]; 4] {
    let mut table = [[1.0; F]; 4];
    let mut k = 1;
    while k < 4 {
        let mut i = 0;
        while i < F {
            table[k][i] = table[k - 1][i] * points[i] as f32;
            i += 1;
        }
        k += 1;
    }
    table
}

/// Entry `(i, j)` of the kernel's transform `G` for a window of side `n` and a kernel of
/// side `r` (the inputs' `Bᵀ` is written out in the vector transforms): `G[i][j] = p_i^j /
/// prod_(k != i) (p_i - p_k)` at the finite points, and the last row, for the point at
/// infinity, picks the last tap. Applied once per convolution, in f64; the products and
/// the quotient are exact but for the quotient's one rounding.
fn g(n: usize, r: usize, i: usize, j: usize) -> f64 {
    let points: &[f64] = if n == 8 { &POINTS_8 } else { &POINTS_6 };
    if let Some(&p) = points.get(i) {
        let scale: f64 = points.iter().filter(|&&q| q != p).map(|&q| p - q).product();
        p.powi(j as i32) / scale
    } else if j + 1 == r {
        1.0
    } else {
        0.0
    }
}

/// The tiles for an `r x r` kernel's `ho x wo` outputs, as (tile side `m`, window side
/// `n`): a 5 x 5 kernel takes 4 x 4 tiles unless 2 x 2 ones need fewer multiplications
/// (outputs one or two pixels high or wide); a 3 x 3 kernel takes 4 x 4 tiles.
pub(super) fn tiling(r: usize, ho: usize, wo: usize) -> (usize, usize) {
    let products = |m: usize, n: usize| ho.div_ceil(m) * wo.div_ceil(m) * n * n;
    match r {
        5 if products(4, 8) <= products(2, 6) => (4, 8),
        5 => (2, 6),
        _ => (4, 6),
    }
}

/// Whether `conv` may take this path for elements `T` (see the module comment).
pub(super) fn applies<T: 'static>(geo: &Geometry) -> bool {
    covers::<T>(geo) && enough_tiles(geo)
}

/// Whether the tiles over all of `geo`'s images repay the transforms ([`MIN_POINTS`]).
fn enough_tiles(geo: &Geometry) -> bool {
    let (m, n) = tiling(geo.kh, geo.ho, geo.wo);
    geo.n * geo.ho.div_ceil(m) * geo.wo.div_ceil(m) * n * n >= MIN_POINTS
}

/// Whether this path can compute `geo`'s convolution for elements `T` and saves work on
/// each image (as [`applies`], whatever the number of images).
pub(super) fn covers<T: 'static>(geo: &Geometry) -> bool {
    TypeId::of::<T>() == TypeId::of::<f32>()
        && winograd_enabled()
        && geo.opts.stride == (1, 1)
        && geo.opts.dilation == (1, 1)
        && geo.opts.groups == 1
        && geo.kh == geo.kw
        && (geo.kh == 3 || geo.kh == 5)
        && available()
        && geo.c.is_multiple_of(lanes())
        && geo.o.is_multiple_of(lanes())
        && geo.n * geo.c * geo.o > 0
        && kernel_fits(geo, geo.ho, geo.wo)
        && saves_enough(geo.kh, geo.ho, geo.wo)
}

/// Whether the kernel transformed for tiles of `ho x wo` outputs stays within
/// [`MAX_TRANSFORMED_KERNEL`].
fn kernel_fits(geo: &Geometry, ho: usize, wo: usize) -> bool {
    let (_, n) = tiling(geo.kh, ho, wo);
    n * n * geo.c * geo.o <= MAX_TRANSFORMED_KERNEL
}

/// The largest transformed kernel (36 or 64 values per pair of channels: 4 times the
/// weights of a 3 x 3 kernel) this path takes, 28 MB of f32, below glibc's largest mmap threshold (32
/// MB): a larger buffer is mapped afresh at every call and faults in page by page, and the
/// weight gradient's (one per task) twice (measured in docs/BENCHMARKS.md, eighteenth
/// session).
const MAX_TRANSFORMED_KERNEL: usize = 7 << 20;

/// Transformed values (tiles times points) over all the images below which the transforms
/// (the kernel's above all) cost more than the multiplications saved: 64 tiles of 36
/// points, set between the batches measured in docs/BENCHMARKS.md (eighteenth session).
const MIN_POINTS: usize = 64 * 36;

/// Whether tiles of an `r x r` kernel's `ho x wo` outputs take at most two thirds of the
/// direct sum's multiplications. Cropped tiles waste theirs: a 2 x 2 output of a 3 x 3
/// kernel is one 4 x 4 tile, as many multiplications as the direct sum plus the
/// transforms (measured 1.6x slower), while 3 x 3 outputs already ran 1.3x faster.
pub(super) fn saves_enough(r: usize, ho: usize, wo: usize) -> bool {
    let (m, n) = tiling(r, ho, wo);
    2 * ho * wo * r * r >= 3 * ho.div_ceil(m) * wo.div_ceil(m) * n * n
}

/// Whether `conv_transpose` may take this path: as [`applies`], with padding narrower than
/// the kernel (the input gradient is then a correlation padded by `r - 1 - padding`).
pub(super) fn applies_transpose<T: 'static>(geo: &Geometry) -> bool {
    covers_transpose::<T>(geo) && enough_tiles(geo)
}

/// [`covers`] for `conv_transpose` (as [`applies_transpose`], whatever the number of
/// images).
pub(super) fn covers_transpose<T: 'static>(geo: &Geometry) -> bool {
    covers::<T>(geo)
        && geo.opts.padding.0 < geo.kh
        && geo.opts.padding.1 < geo.kw
        && kernel_fits(geo, geo.h, geo.w)
        && saves_enough(geo.kh, geo.h, geo.w)
}

/// One correlation as this path sees it: images of `cin` planes of `h x w`, padded by
/// `pad`, correlated with an `r x r` kernel into `cout` planes of `ho x wo`, in tiles of
/// `m x m` outputs, each read from an `n x n` window.
struct Shape {
    r: usize,
    m: usize,
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    pad: (usize, usize),
    ho: usize,
    wo: usize,
}

impl Shape {
    /// The forward convolution (and its weight gradient) of `geo`.
    fn forward(geo: &Geometry) -> Self {
        assert_eq!(geo.kh, geo.kw, "winograd: square kernels only");
        let (m, n) = tiling(geo.kh, geo.ho, geo.wo);
        Shape::checked(Shape {
            r: geo.kh,
            m,
            n,
            cin: geo.c,
            cout: geo.o,
            h: geo.h,
            w: geo.w,
            pad: geo.opts.padding,
            ho: geo.ho,
            wo: geo.wo,
        })
    }

    /// The input gradient of `geo`: a correlation of the output gradient, padded by
    /// `r - 1 - padding`.
    fn transposed(geo: &Geometry) -> Self {
        let ((ph, pw), r) = (geo.opts.padding, geo.kh);
        assert_eq!(geo.kh, geo.kw, "winograd: square kernels only");
        assert!(
            ph < r && pw < r,
            "winograd: padding {:?} too wide for the input gradient",
            geo.opts.padding
        );
        let pad = (r - 1 - ph, r - 1 - pw);
        let (m, n) = tiling(r, geo.h, geo.w);
        Shape::checked(Shape {
            r,
            m,
            n,
            cin: geo.o,
            cout: geo.c,
            h: geo.ho,
            w: geo.wo,
            pad,
            ho: geo.h,
            wo: geo.w,
        })
    }

    /// What the vector code relies on for its bounds: a kernel it has transforms for, vector
    /// transforms, whole vectors of channels.
    fn checked(self) -> Self {
        assert!(available(), "winograd: needs AVX-512F or AVX2");
        assert!(
            matches!((self.r, self.m, self.n), (3, 4, 6) | (5, 2, 6) | (5, 4, 8)),
            "winograd: no transform for {0} x {0} kernels in tiles of {1} x {1}",
            self.r,
            self.m
        );
        assert!(
            self.cin > 0
                && self.cout > 0
                && self.cin.is_multiple_of(lanes())
                && self.cout.is_multiple_of(lanes()),
            "winograd: channel counts {} and {} are not positive multiples of {}",
            self.cin,
            self.cout,
            lanes()
        );
        self
    }

    fn tiles(&self) -> (usize, usize) {
        (self.ho.div_ceil(self.m), self.wo.div_ceil(self.m))
    }
    /// Transformed values per tile and channel.
    fn points(&self) -> usize {
        self.n * self.n
    }
    /// Elements from one tile's transformed values to the next in a round's buffers, for
    /// `channels` values per point: the tile's own, plus [`TILE_PAD`].
    fn tile_stride(&self, channels: usize) -> usize {
        self.points() * channels + TILE_PAD
    }
    /// The padded window the tiles read: their inputs, rounded up to whole tiles.
    fn window(&self) -> (usize, usize) {
        let (th, tw) = self.tiles();
        (self.m * th + self.r - 1, self.m * tw + self.r - 1)
    }
}

/// `y = conv(x, w)`. Returns false, with `y` unspecified, when the result holds an
/// infinity or a NaN (the caller then sums directly).
pub(super) fn conv<T: crate::Real>(
    x: &[T],
    weight: &[T],
    geo: &Geometry,
    bias: ChannelBias<'_, T>,
    y: &Images<'_, T>,
) -> bool {
    let (x, weight) = (as_f32(x), as_f32(weight));
    let bias = ChannelBias { values: bias.values.map(as_f32), plane: bias.plane };
    let shape = Shape::forward(geo);
    let u = transform_kernel(&shape, Taps::Forward(weight));
    correlate(x, &u, &shape, geo, bias, y)
}

/// `dx = conv_transpose(gy, w)`: the correlation of `gy`, padded by `r - 1 - padding`, with
/// the flipped kernel whose channel roles are swapped. Returns false as [`conv`] does.
pub(super) fn conv_transpose<T: crate::Real>(
    gy: &[T],
    weight: &[T],
    geo: &Geometry,
    dx: &Images<'_, T>,
) -> bool {
    let (gy, weight) = (as_f32(gy), as_f32(weight));
    let shape = Shape::transposed(geo);
    let u = transform_kernel(&shape, Taps::Flipped(weight));
    correlate(gy, &u, &shape, geo, ChannelBias::none(), dx)
}

/// The slice as f32 (`T` is f32: [`applies`] checked).
fn as_f32<T: 'static>(s: &[T]) -> &[f32] {
    assert_eq!(TypeId::of::<T>(), TypeId::of::<f32>(), "winograd: f32 only");
    // SAFETY: T is f32.
    unsafe { std::slice::from_raw_parts(s.as_ptr().cast(), s.len()) }
}

fn as_f32_mut<T: 'static>(s: &mut [T]) -> &mut [f32] {
    assert_eq!(TypeId::of::<T>(), TypeId::of::<f32>(), "winograd: f32 only");
    // SAFETY: T is f32.
    unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast(), s.len()) }
}

/// Where [`transform_kernel`] reads a layer's taps (`weight`, `[O][C][r][r]`).
#[derive(Clone, Copy)]
enum Taps<'a> {
    /// The forward correlation's: its channels are the layer's, tap `t` of input channel
    /// `c` for output `o` at `weight[o][c][t]`.
    Forward(&'a [f32]),
    /// The input gradient's: the layer's channel roles swapped and the kernel flipped, tap
    /// `t` of the correlation's input `c` (a layer output) for its output `o` (a layer
    /// input) at `weight[c][o][r² - 1 - t]`.
    Flipped(&'a [f32]),
}

impl Taps<'_> {
    /// The taps of the correlation's input channels `first..first + count` as rows of
    /// `cout` values, `rows[(i * r² + t) * cout + o]` for channel `first + i` and tap `t`
    /// in the layer's order ([`Taps::row`] finds a tap of the correlation): transpositions
    /// of the weights (of a whole group of channels at once for [`Taps::Forward`], in
    /// 16 x 16 tiles), where reading them tap by tap would touch a cache line per value.
    fn rows(self, s: &Shape, (first, count): (usize, usize), rows: &mut [f32]) {
        let (rr, cin, cout) = (s.r * s.r, s.cin, s.cout);
        let rows = as_uninit(&mut rows[..count * rr * cout]);
        let to = |start| RowMajorAt { start, row_stride: cout };
        match self {
            Taps::Forward(weight) => {
                let from = RowMajorAt { start: first * rr, row_stride: cin * rr };
                transpose_into(weight, from, cout, count * rr, rows, to(0));
            }
            Taps::Flipped(weight) => {
                for i in 0..count {
                    let from = RowMajorAt { start: (first + i) * cout * rr, row_stride: rr };
                    transpose_into(weight, from, cout, rr, rows, to(i * rr * cout));
                }
            }
        }
    }

    /// Row `t` of [`Taps::rows`] for tap `t` of the correlation.
    fn row(self, rr: usize, t: usize) -> usize {
        match self {
            Taps::Forward(_) => t,
            Taps::Flipped(_) => rr - 1 - t,
        }
    }
}

/// Input channels whose taps [`transform_kernel`] transposes at a time: for the forward
/// correlation, 16 channels' taps are a whole number of the transposition's 16 x 16
/// tiles, and their rows (up to 16 x 9 x 512 floats) stay in the second-level cache.
const TAP_CHANNELS: usize = 16;

/// `U[ξ][c][o]` (the `n²` right operands, one after another) for the kernel `taps`,
/// followed by the GEMM's [`B_SLACK`]. Each task transforms a run of input channels and
/// writes its part of every point's rows in place: gathering the rows afterwards, and
/// clearing `U` first, had taken as long as the transforms.
fn transform_kernel(s: &Shape, taps: Taps<'_>) -> Vec<f32> {
    let (cin, cout, r, n, points) = (s.cin, s.cout, s.r, s.n, s.points());
    let (rr, len) = (r * r, points * cin * cout);
    let g = g_matrix(n, r);
    let per_task = if split_kernel_transform(s) {
        cin.div_ceil(2 * rayon::current_num_threads()).max(1)
    } else {
        cin.max(1)
    };
    let mut u: Vec<f32> = Vec::with_capacity(len + B_SLACK);
    // parts[task][ξ]: the task's input channels in point ξ's rows.
    let mut parts: Vec<Vec<&mut [MaybeUninit<f32>]>> = Vec::new();
    for slab in u.spare_capacity_mut()[..len].chunks_mut(cin * cout) {
        for (task, part) in slab.chunks_mut(per_task * cout).enumerate() {
            if parts.len() <= task {
                parts.push(Vec::with_capacity(points));
            }
            parts[task].push(part);
        }
    }
    let buffers =
        || (vec![0.0f32; TAP_CHANNELS * rr * cout], vec![0.0; rr * cout], vec![0.0; points * cout]);
    let run = |(rows, in_taps, values): &mut (Vec<f32>, Vec<f64>, Vec<f64>),
               (task, mut parts): (usize, Vec<&mut [MaybeUninit<f32>]>)| {
        let (first, count) = (task * per_task, parts[0].len() / cout);
        for group in (first..first + count).step_by(TAP_CHANNELS) {
            let in_group = TAP_CHANNELS.min(first + count - group);
            taps.rows(s, (group, in_group), rows);
            for i in 0..in_group {
                for (t, dst) in in_taps.chunks_exact_mut(cout).enumerate() {
                    let at = (i * rr + taps.row(rr, t)) * cout;
                    dst.iter_mut().zip(&rows[at..at + cout]).for_each(|(d, &v)| *d = f64::from(v));
                }
                two_sided(in_taps, (r, n), |a, j| g[a][j], cout, values);
                let at = (group + i - first) * cout;
                for (part, point) in parts.iter_mut().zip(values.chunks_exact(cout)) {
                    let dst = &mut part[at..at + cout];
                    dst.iter_mut().zip(point).for_each(|(d, &v)| *d = MaybeUninit::new(v as f32));
                }
            }
        }
    };
    if parts.len() > 1 {
        parts.into_par_iter().enumerate().for_each_init(buffers, run);
    } else {
        let mut scratch = buffers();
        parts.into_iter().enumerate().for_each(|task| run(&mut scratch, task));
    }
    u.spare_capacity_mut()[len..len + B_SLACK].fill(MaybeUninit::new(0.0));
    // SAFETY: the tasks wrote every input channel's row of every point (the parts cover
    // the first `len` elements), and the slack was written above; a panicking task unwinds
    // before this, leaving the vector empty.
    unsafe { u.set_len(len + B_SLACK) };
    u
}

/// Whether the kernel-side transforms of `s` (`G g Gᵀ` for every pair of channels, or the
/// weight gradient's `Gᵀ dU G`) run on rayon's threads: a 3 x 3 layer of 256 channels
/// transforms 65,536 kernels per call, a millisecond or more on one thread, while a layer of
/// 16 to 32 channels takes tens of microseconds, less than handing half of it over costs.
/// Each channel runs the same operations on any thread.
fn split_kernel_transform(s: &Shape) -> bool {
    let work = s.cin * s.cout * s.n * s.r * (s.n + s.r);
    crate::parallel::worth_it(work / 32) && crate::parallel::start_parallel(work)
}

/// `out[a][b][o] = sum_(i, j) coef(a, i) coef(b, j) src[i][j][o]`, from `from x from`
/// blocks of `cout` values to `to x to` ones (the sizes of a tiling, [`TwoSided`]), one side at
/// a time, in f64 with the output channels as the innermost loop, in the widest vectors:
/// the kernel's transform `G g Gᵀ` (`coef = G`) and the weight gradient's `Gᵀ dU G`
/// (`coef = Gᵀ`). Products and sums are separate operations on every path, so the
/// result does not depend on the instruction set.
fn two_sided(
    src: &[f64],
    sizes: (usize, usize),
    coef: impl Fn(usize, usize) -> f64,
    cout: usize,
    out: &mut [f64],
) {
    let (from, to) = sizes;
    assert!(
        from <= MAX_N
            && to <= MAX_N
            && src.len() >= from * from * cout
            && out.len() >= to * to * cout,
        "winograd: transform sizes out of range"
    );
    let mut c = [[0.0; MAX_N]; MAX_N];
    for (a, row) in c.iter_mut().enumerate().take(to) {
        for (i, value) in row.iter_mut().enumerate().take(from) {
            *value = coef(a, i);
        }
    }
    crate::simd::run_widest(TwoSided { src, sizes, c, cout, out });
}

/// Output channels [`TwoSided`] keeps in one array: one AVX-512 vector of f64.
const SIDE_LANES: usize = 8;

/// [`two_sided`]'s loops, for [`crate::simd::run_widest`].
struct TwoSided<'a> {
    src: &'a [f64],
    sizes: (usize, usize),
    /// `coef(a, i)` for `a < to`, `i < from`.
    c: [[f64; MAX_N]; MAX_N],
    cout: usize,
    out: &'a mut [f64],
}

impl crate::simd::WidestLoop for TwoSided<'_> {
    type Output = ();

    /// The sizes the tilings use as constants, so that both sides unroll in full.
    #[inline(always)]
    fn run(self) {
        let TwoSided { src, sizes, c, cout, out } = self;
        match sizes {
            (3, 6) => sides::<3, 6>(src, &c, cout, out),
            (5, 8) => sides::<5, 8>(src, &c, cout, out),
            (5, 6) => sides::<5, 6>(src, &c, cout, out),
            (6, 3) => sides::<6, 3>(src, &c, cout, out),
            (8, 5) => sides::<8, 5>(src, &c, cout, out),
            (6, 5) => sides::<6, 5>(src, &c, cout, out),
            _ => unreachable!("winograd: no tiling transforms {sizes:?}"),
        }
    }
}

/// [`TwoSided`]'s loops for `FROM x FROM` blocks to `TO x TO` ones: [`SIDE_LANES`] output
/// channels at a time, one row of each side at a time in registers. Each sum starts at zero and
/// adds every term in index order, the zero coefficients' too (a branch per term had cost
/// more than the terms; adding a zero product leaves a sum of finite terms as it was, and a
/// non-finite one sends the convolution to the direct sum anyway).
#[inline(always)]
#[allow(clippy::needless_range_loop)] // the indices pick coefficients as well as values
fn sides<const FROM: usize, const TO: usize>(
    src: &[f64],
    c: &[[f64; MAX_N]; MAX_N],
    cout: usize,
    out: &mut [f64],
) {
    const L: usize = SIDE_LANES;
    assert!(
        src.len() >= FROM * FROM * cout && out.len() >= TO * TO * cout,
        "winograd: transform buffers too short"
    );
    let mut k = 0;
    while k < cout {
        let lanes = L.min(cout - k);
        // One block of channels: a whole vector, or the last few, read into zeros.
        let load = |at: usize| -> [f64; L] {
            if lanes == L {
                src[at..at + L].try_into().expect("a whole block")
            } else {
                std::array::from_fn(|l| if l < lanes { src[at + l] } else { 0.0 })
            }
        };
        // Row `a` of the first side's block, then the row of outputs it makes: the block
        // itself, kept whole, spilled to the stack and was cleared there for every step.
        for a in 0..TO {
            let mut half = [[0.0; L]; FROM];
            for (j, acc) in half.iter_mut().enumerate() {
                for i in 0..FROM {
                    let column = load((i * FROM + j) * cout + k);
                    for l in 0..L {
                        acc[l] += c[a][i] * column[l];
                    }
                }
            }
            for b in 0..TO {
                let mut acc = [0.0; L];
                for j in 0..FROM {
                    for l in 0..L {
                        acc[l] += half[j][l] * c[b][j];
                    }
                }
                let at = (a * TO + b) * cout + k;
                if lanes == L {
                    out[at..at + L].copy_from_slice(&acc);
                } else {
                    out[at..at + lanes].iter_mut().zip(acc).for_each(|(dst, v)| *dst = v);
                }
            }
        }
        k += lanes;
    }
}

/// `G` for a window of side `n` and a kernel of side `r` (its first `n` rows and `r`
/// columns hold it).
fn g_matrix(n: usize, r: usize) -> [[f64; 5]; MAX_N] {
    std::array::from_fn(|i| {
        std::array::from_fn(|j| if i < n && j < r { g(n, r, i, j) } else { 0.0 })
    })
}

/// Rows `rows` of the tiles of image `image`: what a round of products is made of.
#[derive(Clone, Copy)]
struct Band {
    image: usize,
    rows: (usize, usize),
}

impl Band {
    fn tiles(&self, s: &Shape) -> usize {
        (self.rows.1 - self.rows.0) * s.tiles().1
    }
}

/// The tiles of images `first..first + count`, in order, as rounds of bands of at most
/// [`ROUND_POINTS`] transformed values per channel (or one row of tiles): small images
/// share a round, large ones are split over several.
fn rounds(s: &Shape, first: usize, count: usize) -> Vec<Vec<Band>> {
    let th = s.tiles().0;
    let rows_per_round = rows_per_round(s);
    let (mut rounds, mut round, mut room) = (Vec::new(), Vec::new(), rows_per_round);
    for image in first..first + count {
        let mut row = 0;
        while row < th {
            let rows = room.min(th - row);
            round.push(Band { image, rows: (row, row + rows) });
            (row, room) = (row + rows, room - rows);
            if room == 0 {
                rounds.push(std::mem::take(&mut round));
                room = rows_per_round;
            }
        }
    }
    if !round.is_empty() {
        rounds.push(round);
    }
    rounds
}

/// Rows of tiles per round ([`ROUND_POINTS`]).
fn rows_per_round(s: &Shape) -> usize {
    (ROUND_POINTS / s.points() / s.tiles().1).max(1)
}

/// Tiles in the largest round.
fn round_tiles(s: &Shape) -> usize {
    rows_per_round(s) * s.tiles().1
}

/// Runs the correlation over every image of `input` into `output` (both planar; `T` is
/// f32), with the kernel transformed into `u`, plus `bias` on each output channel. Returns
/// whether every output is finite.
fn correlate<T: crate::Real>(
    input: &[f32],
    u: &[f32],
    s: &Shape,
    geo: &Geometry,
    bias: ChannelBias<'_, f32>,
    output: &Images<'_, T>,
) -> bool {
    let in_img = s.cin * s.h * s.w;
    let (last_row, most) = (s.tiles().0, round_tiles(s));
    let (v_tile, m_tile) = (s.tile_stride(s.cin), s.tile_stride(s.cout));
    // Row t of V[ξ] (tile t's point ξ, every input channel) starts at t * v_tile.
    let a_rows: Vec<usize> = (0..most).map(|t| t * v_tile).collect();
    let a_cols: Vec<usize> = (0..s.cin).collect();
    let b_rows: Vec<usize> = (0..s.cin).map(|c| c * s.cout).collect();
    let finite = AtomicBool::new(true);
    for_chunks(geo, Split::PerThread, |first, count| {
        let mut window = Window::new(s);
        // Written in full before they are read: transformed inputs and products for the
        // round's tiles, and every output pixel before its image is transposed.
        let mut v = Scratch::new(most * v_tile);
        let mut m = Scratch::new(most * m_tile);
        let mut by_pixel = Scratch::new(s.ho * s.wo * s.cout);
        let mut all_finite = true;
        for round in rounds(s, first, count) {
            let mut tile = 0;
            for band in &round {
                window.fill(&input[band.image * in_img..(band.image + 1) * in_img], band.image);
                window.transform(s, band.rows, &mut v[tile * v_tile..], v_tile);
                tile += band.tiles(s);
            }
            // M[t][ξ][o] = sum_c V[t][ξ][c] U[ξ][c][o], for each point ξ.
            let round_ops = Operands::new(
                Lhs::Gathered { a: &v, rows: &a_rows[..tile], cols: &a_cols },
                u,
                &b_rows,
            );
            for xi in 0..s.points() {
                let ops = round_ops.with_a(&v[xi * s.cin..]);
                implicit_gemm(
                    &ops,
                    xi * s.cin * s.cout,
                    s.cout,
                    &mut m[xi * s.cout..],
                    m_tile,
                    false,
                );
            }
            tile = 0;
            for band in &round {
                all_finite &=
                    transform_outputs(&m[tile * m_tile..], m_tile, s, band.rows, &mut by_pixel);
                tile += band.tiles(s);
                if band.rows.1 == last_row {
                    let planes = as_f32_mut(output.take(band.image, 1));
                    f32::transpose(&by_pixel, s.ho * s.wo, s.cout, planes);
                    bias.add_to(planes);
                }
            }
        }
        if !all_finite {
            finite.store(false, Ordering::Relaxed);
        }
    });
    finite.into_inner()
}

/// `dw = conv_weight(x, gy)`, the adjoint of [`conv`] in the weight: each tile's output
/// gradient `e` (`m x m`) is mapped to `n²` values `Z = A e Aᵀ`, the point products
/// `dU[ξ] = sum_t V[t][ξ]ᵀ Z[t][ξ]` run over every tile of every image (`n²` products of
/// input channels x tiles times tiles x output channels), and `dw = Gᵀ dU G`. Returns
/// `None` when the result holds an infinity or a NaN (the caller then sums directly).
pub(super) fn conv_weight<T: 'static>(x: &[T], gy: &[T], geo: &Geometry) -> Option<Vec<T>> {
    let (x, gy) = (as_f32(x), as_f32(gy));
    let s = Shape::forward(geo);
    let (cin, cout) = (s.cin, s.cout);
    let (in_img, out_img) = (cin * s.h * s.w, cout * s.ho * s.wo);
    let most = round_tiles(&s);
    // A(c, t) = V[t][ξ][c] (rows are input channels, columns tiles); B's row t is Z[t][ξ].
    let a_rows: Vec<usize> = (0..cin).collect();
    let (v_tile, z_tile) = (s.tile_stride(cin), s.tile_stride(cout));
    let a_cols: Vec<usize> = (0..most).map(|t| t * v_tile).collect();
    let b_rows: Vec<usize> = (0..most).map(|t| t * z_tile).collect();
    let partials = std::sync::Mutex::new(Vec::new());
    for_chunks(geo, Split::Fixed, |first, count| {
        let mut window = Window::new(&s);
        // Written in full before they are read (for the round's tiles, and the image's
        // pixels); the values of `z`'s slack only reach columns that are not stored.
        let mut v = Scratch::new(most * v_tile);
        let mut z = Scratch::new(most * z_tile + B_SLACK);
        let (mut by_pixel, mut transposed) = (Scratch::new(s.ho * s.wo * cout), None);
        // dU[ξ][c][o], summed over this task's tiles.
        let mut du = vec![0.0f32; s.points() * cin * cout];
        for round in rounds(&s, first, count) {
            let mut tile = 0;
            for band in &round {
                let img = band.image;
                window.fill(&x[img * in_img..(img + 1) * in_img], img);
                window.transform(&s, band.rows, &mut v[tile * v_tile..], v_tile);
                if transposed != Some(img) {
                    f32::transpose(
                        &gy[img * out_img..(img + 1) * out_img],
                        cout,
                        s.ho * s.wo,
                        &mut by_pixel,
                    );
                    transposed = Some(img);
                }
                let z = &mut z[tile * z_tile..];
                transform_gradients(&by_pixel, &s, band.rows, z, z_tile);
                tile += band.tiles(&s);
            }
            let round_ops = Operands::new(
                Lhs::Gathered { a: &v, rows: &a_rows, cols: &a_cols[..tile] },
                &z,
                &b_rows[..tile],
            );
            for xi in 0..s.points() {
                let ops = round_ops.with_a(&v[xi * cin..]);
                implicit_gemm(&ops, xi * cout, cout, &mut du[xi * cin * cout..], cout, true);
            }
        }
        partials.lock().expect("no task panicked").push((first, du));
    });
    let total = sum_in_image_order(partials, s.points() * cin * cout);
    // dw = Gᵀ dU G, one input channel at a time.
    let r = s.r;
    let g = g_matrix(s.n, r);
    // dw[c][t][o], written in rows and transposed to dw[o][c][t] at the end: written in
    // place, each value would land on its own cache line.
    let mut by_channel = vec![0.0f32; cin * r * r * cout];
    let buffers = || (vec![0.0; s.points() * cout], vec![0.0; r * r * cout]);
    let one_channel = |(du, taps): &mut (Vec<f64>, Vec<f64>), (c, dw_c): (usize, &mut [f32])| {
        for (point, values) in du.chunks_exact_mut(cout).enumerate() {
            let at = (point * cin + c) * cout;
            values.iter_mut().zip(&total[at..at + cout]).for_each(|(dst, &v)| *dst = f64::from(v));
        }
        two_sided(du, (s.n, r), |a, i| g[i][a], cout, taps);
        dw_c.iter_mut().zip(taps.iter()).for_each(|(dst, &v)| *dst = v as f32);
    };
    if split_kernel_transform(&s) {
        by_channel.par_chunks_mut(r * r * cout).enumerate().for_each_init(buffers, one_channel);
    } else {
        let mut scratch = buffers();
        by_channel.chunks_mut(r * r * cout).enumerate().for_each(|c| one_channel(&mut scratch, c));
    }
    let mut dw = vec![0.0f32; cout * cin * r * r];
    f32::transpose(&by_channel, cin * r * r, cout, &mut dw);
    dw.iter().all(|v| v.is_finite()).then(|| from_f32(dw))
}

/// The f32 vector as a `Vec<T>` (`T` is f32: [`applies`] checked).
fn from_f32<T: 'static>(v: Vec<f32>) -> Vec<T> {
    assert_eq!(TypeId::of::<T>(), TypeId::of::<f32>(), "winograd: f32 only");
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: T is f32, so pointer, length and capacity describe the same allocation.
    unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast(), v.len(), v.capacity()) }
}

/// What a transform of a band relies on: rows of tiles within the image, and a buffer of
/// `len` elements holding the band's tiles `stride` apart, each `n²` points of `channels`
/// values.
fn check_tiles(s: &Shape, rows: (usize, usize), channels: usize, len: usize, stride: usize) {
    let (th, tw) = s.tiles();
    let tiles = rows.1.saturating_sub(rows.0) * tw;
    let own = s.points() * channels;
    assert!(
        rows.0 <= rows.1
            && rows.1 <= th
            && stride >= own
            && (tiles == 0 || len >= (tiles - 1) * stride + own),
        "winograd: buffers too short"
    );
}

/// [`check_tiles`] for the output-side transforms, plus an image of `ho * wo` pixels of
/// `cout` channels (`pixels` elements).
fn check_band(s: &Shape, rows: (usize, usize), pixels: usize, len: usize, stride: usize) {
    assert!(pixels >= s.ho * s.wo * s.cout, "winograd: buffers too short");
    check_tiles(s, rows, s.cout, len, stride);
}

/// `Z[t][ξ][o] = (A e Aᵀ)` for the tiles in rows `rows` of tiles (counted from the first
/// of them, tile `t` at `t * stride`) of one image's output gradient `by_pixel` (`[ho *
/// wo][cout]`, channels last); outputs past the image's edge read as zero.
fn transform_gradients(
    by_pixel: &[f32],
    s: &Shape,
    rows: (usize, usize),
    z: &mut [f32],
    stride: usize,
) {
    check_band(s, rows, by_pixel.len(), z.len(), stride);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has the instruction set, whole vectors of its channels and one of
    // the tilings (`Shape::checked`); the lengths were checked above.
    unsafe {
        match (isa(), s.n, s.m) {
            (Some(Isa::Avx512), 6, 2) => avx512::gradients::<6, 2>(by_pixel, s, rows, z, stride),
            (Some(Isa::Avx512), 6, _) => avx512::gradients::<6, 4>(by_pixel, s, rows, z, stride),
            (Some(Isa::Avx512), _, _) => avx512::gradients::<8, 4>(by_pixel, s, rows, z, stride),
            (Some(Isa::Avx2), 6, 2) => avx2::gradients::<6, 2>(by_pixel, s, rows, z, stride),
            (Some(Isa::Avx2), 6, _) => avx2::gradients::<6, 4>(by_pixel, s, rows, z, stride),
            (Some(Isa::Avx2), _, _) => avx2::gradients::<8, 4>(by_pixel, s, rows, z, stride),
            (None, _, _) => unreachable!("Shape::checked found vector transforms"),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("Shape::checked found vector transforms")
}

/// One image at a time, zero-padded to the tiles' window with its channels last (a pixel's
/// channels side by side, as the transforms' vectors), and its input transform. Every
/// image fills the same positions, so the zero border is written once.
struct Window {
    buf: Vec<f32>,
    /// The image with its channels last, before padding.
    pixels: Vec<f32>,
    /// One row of tiles' window transformed down its columns (`Bᵀ d`), a vector of
    /// channels for each of a column's `n` values: the tiles of the row share these.
    columns: Vec<f32>,
    cin: usize,
    size: (usize, usize),
    padded_width: usize,
    pad: (usize, usize),
    /// The image the window holds.
    image: Option<usize>,
}

impl Window {
    fn new(s: &Shape) -> Self {
        let (hp, wp) = s.window();
        let buf = vec![0.0; hp * wp * s.cin];
        let (pixels, columns) = (vec![0.0; s.h * s.w * s.cin], vec![0.0; wp * s.n * lanes()]);
        Window {
            buf,
            pixels,
            columns,
            cin: s.cin,
            size: (s.h, s.w),
            padded_width: wp,
            pad: s.pad,
            image: None,
        }
    }

    /// Fills the window with the padded, channels-last copy of the planar image `img`
    /// (the batch's image `index`), unless it holds that image already (a large image's
    /// bands come one after another).
    fn fill(&mut self, img: &[f32], index: usize) {
        if self.image == Some(index) {
            return;
        }
        self.image = Some(index);
        let ((h, w), cin) = (self.size, self.cin);
        f32::transpose(img, cin, h * w, &mut self.pixels);
        for r in 0..h {
            // The window holds the padded image: m * ceil(ho / m) + r - 1 >= h + 2 * pad.
            let at = ((r + self.pad.0) * self.padded_width + self.pad.1) * cin;
            self.buf[at..at + w * cin]
                .copy_from_slice(&self.pixels[r * w * cin..(r + 1) * w * cin]);
        }
    }

    /// `V[t][ξ][c]` for the tiles `t` of the window's image in rows `rows` of tiles,
    /// counted from the first of those rows, tile `t` at `t * stride`.
    fn transform(&mut self, s: &Shape, rows: (usize, usize), v: &mut [f32], stride: usize) {
        let (hp, wp) = s.window();
        assert!(
            self.buf.len() >= hp * wp * s.cin && self.columns.len() >= wp * s.n * lanes(),
            "winograd: buffers too short"
        );
        check_tiles(s, rows, s.cin, v.len(), stride);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has the instruction set and whole vectors of its channels
        // (`Shape::checked`); the lengths were checked above.
        unsafe {
            let (buf, columns) = (&self.buf, &mut self.columns);
            match (isa(), s.n) {
                (Some(Isa::Avx512), 6) => avx512::inputs::<6>(buf, columns, s, rows, v, stride),
                (Some(Isa::Avx512), _) => avx512::inputs::<8>(buf, columns, s, rows, v, stride),
                (Some(Isa::Avx2), 6) => avx2::inputs::<6>(buf, columns, s, rows, v, stride),
                (Some(Isa::Avx2), _) => avx2::inputs::<8>(buf, columns, s, rows, v, stride),
                (None, _) => unreachable!("Shape::checked found vector transforms"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("Shape::checked found vector transforms")
    }
}

/// The tiles in rows `rows` of tiles of one image from their products `M[t][ξ][o]`
/// (counted from the first of those rows, tile `t` at `t * stride`), channels last, into
/// `by_pixel` (`[ho * wo][cout]`). Returns whether every output is finite.
fn transform_outputs(
    m: &[f32],
    stride: usize,
    s: &Shape,
    rows: (usize, usize),
    by_pixel: &mut [f32],
) -> bool {
    check_band(s, rows, by_pixel.len(), m.len(), stride);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has the instruction set, whole vectors of its channels and one of
    // the tilings (`Shape::checked`); the lengths were checked above.
    unsafe {
        match (isa(), s.n, s.m) {
            (Some(Isa::Avx512), 6, 2) => avx512::outputs::<6, 2>(m, stride, s, rows, by_pixel),
            (Some(Isa::Avx512), 6, _) => avx512::outputs::<6, 4>(m, stride, s, rows, by_pixel),
            (Some(Isa::Avx512), _, _) => avx512::outputs::<8, 4>(m, stride, s, rows, by_pixel),
            (Some(Isa::Avx2), 6, 2) => avx2::outputs::<6, 2>(m, stride, s, rows, by_pixel),
            (Some(Isa::Avx2), 6, _) => avx2::outputs::<6, 4>(m, stride, s, rows, by_pixel),
            (Some(Isa::Avx2), _, _) => avx2::outputs::<8, 4>(m, stride, s, rows, by_pixel),
            (None, _, _) => unreachable!("Shape::checked found vector transforms"),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("Shape::checked found vector transforms")
}

/// The vector transforms of one instruction set: `$ops` is its module of
/// [`crate::vectors`] (the channels of a pixel are the lanes of its vectors), `$feature`
/// its target features.
macro_rules! transforms {
    ($name:ident, $ops:ident, $feature:literal) => {
        #[cfg(target_arch = "x86_64")]
        mod $name {
            use super::{POWERS_6, POWERS_8, Shape};
            use crate::vectors::$ops as v;
            use std::mem::MaybeUninit;

            /// The gradient transform of the band's tiles of `M x M` outputs (windows of
            /// `N x N`).
            ///
            /// # Safety The CPU must have the module's target features, `N` and `M` must be
            /// the shape's window and tile sides, and the slices must hold what
            /// [`super::transform_gradients`] checks.
            #[target_feature(enable = $feature)]
            pub(super) unsafe fn gradients<const N: usize, const M: usize>(
                by_pixel: &[f32],
                s: &Shape,
                (first_row, end_row): (usize, usize),
                z: &mut [f32],
                stride: usize,
            ) {
                let ((_, tw), cout) = (s.tiles(), s.cout);
                let (src, dst) = (by_pixel.as_ptr(), z.as_mut_ptr());
                for ti in first_row..end_row {
                    for tj in 0..tw {
                        for k in (0..cout).step_by(v::LANES) {
                            let mut e = [[v::zero(); M]; M];
                            for (a, row) in e.iter_mut().enumerate() {
                                for (b, value) in row.iter_mut().enumerate() {
                                    let (oh, ow) = (M * ti + a, M * tj + b);
                                    if oh < s.ho && ow < s.wo {
                                        // SAFETY: pixel (oh, ow) lies in the image, channels k..k +
                                        // LANES <= cout.
                                        *value = unsafe {
                                            v::load(src.add((oh * s.wo + ow) * cout + k))
                                        };
                                    }
                                }
                            }
                            // A e: the columns, then (A e) Aᵀ: the rows. Plain loops: `array::map`
                            // and `from_fn` are not always inlined, and a call passes every
                            // vector through memory.
                            let mut columns = [[v::zero(); N]; M];
                            for (b, column) in columns.iter_mut().enumerate() {
                                let mut values = [v::zero(); M];
                                for (value, row) in values.iter_mut().zip(&e) {
                                    *value = row[b];
                                }
                                *column = gradient_1d::<N, M>(values);
                            }
                            let at = ((ti - first_row) * tw + tj) * stride + k;
                            // SAFETY: the band's tile < (end_row - first_row) * tw, point < N²,
                            // channels k..k + LANES <= cout.
                            let mut out = unsafe { dst.add(at) };
                            for i in 0..N {
                                let mut values = [v::zero(); M];
                                for (value, column) in values.iter_mut().zip(&columns) {
                                    *value = column[i];
                                }
                                for value in gradient_1d::<N, M>(values) {
                                    // SAFETY: point i * N + j < N² of this tile, channels k..k +
                                    // LANES <= cout.
                                    unsafe { v::store(out, value) };
                                    // SAFETY: the next point of the same tile (or one past its
                                    // last).
                                    out = unsafe { out.add(cout) };
                                }
                            }
                        }
                    }
                }
            }

            /// `A e` for one column (or row) of a tile's output gradient, the transpose of
            /// [`output_1d`]: `z_i = sum_k p_i^k e_k` at the finite points, and the last value of
            /// `e` at infinity.
            #[target_feature(enable = $feature)]
            #[inline]
            fn gradient_1d<const N: usize, const M: usize>(e: [v::Vector; M]) -> [v::Vector; N] {
                if N == 8 { resize(gradient_1d_8(e)) } else { resize(gradient_1d_6(e)) }
            }

            /// [`gradient_1d`] for windows of six.
            #[target_feature(enable = $feature)]
            #[inline]
            fn gradient_1d_6<const M: usize>(e: [v::Vector; M]) -> [v::Vector; 6] {
                // At p = 0 only e_0 counts; p = 1 and p = -1 add and subtract.
                let (mut plus, mut alternating, mut twos, mut halves) = (e[0], e[0], e[0], e[0]);
                for (k, &value) in e.iter().enumerate().skip(1) {
                    plus = v::add(plus, value);
                    alternating = if k % 2 == 0 {
                        v::add(alternating, value)
                    } else {
                        v::sub(alternating, value)
                    };
                    twos = v::fmadd(v::splat(POWERS_6[k][3]), value, twos);
                    halves = v::fmadd(v::splat(POWERS_6[k][4]), value, halves);
                }
                [e[0], plus, alternating, twos, halves, e[M - 1]]
            }

            /// [`gradient_1d`] for windows of eight: each pair of points `±p` shares the
            /// even powers' sum `E` and the odd powers' `O`, `z(±p) = E ± O`.
            #[target_feature(enable = $feature)]
            #[inline]
            fn gradient_1d_8<const M: usize>(e: [v::Vector; M]) -> [v::Vector; 8] {
                // Columns 1, 3 and 5 of the powers hold p = 1, 2 and 1/2.
                let pair = |p: usize| {
                    let (mut even, mut odd) = (e[0], v::zero());
                    for (k, &value) in e.iter().enumerate().skip(1) {
                        let c = v::splat(POWERS_8[k][p]);
                        if k % 2 == 0 {
                            even = v::fmadd(c, value, even);
                        } else {
                            odd = v::fmadd(c, value, odd);
                        }
                    }
                    (v::add(even, odd), v::sub(even, odd))
                };
                let ((one, minus_one), (two, minus_two), (half, minus_half)) =
                    (pair(1), pair(3), pair(5));
                [e[0], one, minus_one, two, minus_two, half, minus_half, e[M - 1]]
            }

            /// `x` as an array of `B` vectors, where `B` is `A` (a generic caller's view of a
            /// transform written for one size).
            #[target_feature(enable = $feature)]
            #[inline]
            fn resize<const A: usize, const B: usize>(x: [v::Vector; A]) -> [v::Vector; B] {
                assert_eq!(A, B, "winograd: transform of the wrong size");
                let mut out = [v::zero(); B];
                for (dst, &value) in out.iter_mut().zip(&x) {
                    *dst = value;
                }
                out
            }

            /// The input transform of every tile, a row of tiles and LANES channels at a time: `Bᵀ
            /// d` down every column of the row's window (adjacent tiles share `N - M` of their
            /// `N` columns), then `(Bᵀ d) B` along each tile's rows.
            ///
            /// # Safety The CPU must have the module's target features, `N` must be the
            /// shape's window side, and the slices must hold what
            /// [`super::Window::transform`] checks.
            #[target_feature(enable = $feature)]
            pub(super) unsafe fn inputs<const N: usize>(
                padded: &[f32],
                columns: &mut [f32],
                s: &Shape,
                (first_row, end_row): (usize, usize),
                v: &mut [f32],
                stride: usize,
            ) {
                let ((_, tw), (_, wp), cin) = (s.tiles(), s.window(), s.cin);
                let (src, dst, cols) = (padded.as_ptr(), v.as_mut_ptr(), columns.as_mut_ptr());
                let row_stride = wp * cin;
                for ti in first_row..end_row {
                    for k in (0..cin).step_by(v::LANES) {
                        // SAFETY: window row m * ti < hp (the band's rows fit the padded image),
                        // channel k < cin.
                        let mut at = unsafe { src.add(s.m * ti * row_stride + k) };
                        for x in 0..wp {
                            let mut column = [v::zero(); N];
                            for (r, value) in column.iter_mut().enumerate() {
                                // SAFETY: window row m * ti + r < hp, column x < wp, channels k..k
                                // + LANES.
                                *value = unsafe { v::load(at.add(r * row_stride)) };
                            }
                            for (r, value) in input_1d::<N>(column).into_iter().enumerate() {
                                // SAFETY: `columns` holds wp * N vectors.
                                unsafe { v::store(cols.add((x * N + r) * v::LANES), value) };
                            }
                            // SAFETY: the next window column (or one past the last).
                            at = unsafe { at.add(cin) };
                        }
                        for tj in 0..tw {
                            let offset = ((ti - first_row) * tw + tj) * stride + k;
                            // SAFETY: the band's tile < (end_row - first_row) * tw, channels
                            // k..k + LANES.
                            let mut out = unsafe { dst.add(offset) };
                            for r in 0..N {
                                let mut row = [v::zero(); N];
                                for (c, value) in row.iter_mut().enumerate() {
                                    // SAFETY: window column m * tj + c < wp of `columns`.
                                    *value = unsafe {
                                        v::load(cols.add(((s.m * tj + c) * N + r) * v::LANES))
                                    };
                                }
                                for value in input_1d::<N>(row) {
                                    // SAFETY: point < N² of this tile.
                                    unsafe { v::store(out, value) };
                                    // SAFETY: the next point of the same tile (or one past its
                                    // last).
                                    out = unsafe { out.add(cin) };
                                }
                            }
                        }
                    }
                }
            }

            /// `Bᵀ d` for one column (or row) of a window.
            #[target_feature(enable = $feature)]
            #[inline]
            fn input_1d<const N: usize>(d: [v::Vector; N]) -> [v::Vector; N] {
                if N == 8 { resize(input_1d_8(resize(d))) } else { resize(input_1d_6(resize(d))) }
            }

            /// [`input_1d`] for windows of eight: the points 0, 1, -1, 2, -2, 1/2, -1/2,
            /// infinity. Each pair `±p` shares the even positions' sum `E` and the odd
            /// ones' `O`: `v(±p) = E ± O`.
            #[target_feature(enable = $feature)]
            #[inline]
            fn input_1d_8([d0, d1, d2, d3, d4, d5, d6, d7]: [v::Vector; 8]) -> [v::Vector; 8] {
                let c = |value: f32| v::splat(value);
                // Bᵀ row by row: [-1 0 21/4 0 -21/4 0 1 0], [0 1 1 -17/4 -17/4 1 1 0],
                // [0 -1 1 17/4 -17/4 -1 1 0], [0 1/2 1/4 -5/2 -5/4 2 1 0],
                // [0 -1/2 1/4 5/2 -5/4 -2 1 0], [0 2 4 -5/2 -5 1/2 1 0],
                // [0 -2 4 5/2 -5 -1/2 1 0], [0 -1 0 21/4 0 -21/4 0 1].
                let first = v::fmadd(c(5.25), v::sub(d2, d4), v::sub(d6, d0));
                let last = v::fmadd(c(5.25), v::sub(d3, d5), v::sub(d7, d1));
                let pair = |even: v::Vector, odd: v::Vector| (v::add(even, odd), v::sub(even, odd));
                let ones = pair(
                    v::fmadd(c(-4.25), d4, v::add(d2, d6)),
                    v::fmadd(c(-4.25), d3, v::add(d1, d5)),
                );
                let twos = pair(
                    v::fmadd(c(0.25), d2, v::fmadd(c(-1.25), d4, d6)),
                    v::fmadd(c(0.5), d1, v::fmadd(c(-2.5), d3, v::mul(c(2.0), d5))),
                );
                let halves = pair(
                    v::fmadd(c(4.0), d2, v::fmadd(c(-5.0), d4, d6)),
                    v::fmadd(c(2.0), d1, v::fmadd(c(-2.5), d3, v::mul(c(0.5), d5))),
                );
                [first, ones.0, ones.1, twos.0, twos.1, halves.0, halves.1, last]
            }

            /// [`input_1d`] for windows of six: the points 0, 1, -1, 2, -1/2, infinity.
            #[target_feature(enable = $feature)]
            #[inline]
            fn input_1d_6([d0, d1, d2, d3, d4, d5]: [v::Vector; 6]) -> [v::Vector; 6] {
                let c = |value: f32| v::splat(value);
                let (d1_d3, d4_d2, d4_d1) = (v::sub(d1, d3), v::sub(d4, d2), v::sub(d4, d1));
                // Bᵀ row by row: [1 3/2 -2 -3/2 1 0], [0 -1 -5/2 -1/2 1 0],
                // [0 1 1/2 -5/2 1 0], [0 -1/2 -1 1/2 1 0], [0 2 -1 -2 1 0], [0 1 3/2 -2 -3/2 1].
                let v0 = v::fmadd(c(-2.0), d2, v::fmadd(c(1.5), d1_d3, v::add(d0, d4)));
                let v1 = v::add(d4_d1, v::fmadd(c(-2.5), d2, v::mul(c(-0.5), d3)));
                let v2 = v::add(v::add(d4, d1), v::fmadd(c(0.5), d2, v::mul(c(-2.5), d3)));
                let v3 = v::fmadd(c(-0.5), d1_d3, d4_d2);
                let v4 = v::fmadd(c(2.0), d1_d3, d4_d2);
                let v5 =
                    v::add(v::add(d1, d5), v::fmadd(c(1.5), v::sub(d2, d4), v::mul(c(-2.0), d3)));
                [v0, v1, v2, v3, v4, v5]
            }

            /// The output transform of the band's tiles of `M x M` outputs (windows of
            /// `N x N`).
            ///
            /// # Safety The CPU must have the module's target features, `N` and `M` must be
            /// the shape's window and tile sides, and the slices must hold what
            /// [`super::transform_outputs`] checks.
            #[target_feature(enable = $feature)]
            #[allow(clippy::needless_range_loop)] // walks the products' columns
            pub(super) unsafe fn outputs<const N: usize, const M: usize>(
                m: &[f32],
                stride: usize,
                s: &Shape,
                (first_row, end_row): (usize, usize),
                by_pixel: &mut [f32],
            ) -> bool {
                let ((_, tw), cout) = (s.tiles(), s.cout);
                let (src, dst) = (m.as_ptr(), by_pixel.as_mut_ptr());
                // Stays zero while every output is finite (x * 0 is NaN for an infinite or NaN x).
                let mut probe = v::zero();
                for ti in first_row..end_row {
                    for tj in 0..tw {
                        let tile = ((ti - first_row) * tw + tj) * stride;
                        for k in (0..cout).step_by(v::LANES) {
                            // Aᵀ m: the columns, then (Aᵀ m) A: the rows. Uninitialised:
                            // too large for the registers, zeroing it was a `memset` per tile.
                            let mut half = [[MaybeUninit::<v::Vector>::uninit(); N]; M];
                            for c in 0..N {
                                let mut column = [v::zero(); N];
                                for (r, value) in column.iter_mut().enumerate() {
                                    let at = tile + (r * N + c) * cout + k;
                                    // SAFETY: the band's tile < (end_row - first_row) * tw,
                                    // point r * N + c < N², channels k..k + LANES <= cout.
                                    *value = unsafe { v::load(src.add(at)) };
                                }
                                for (i, value) in output_1d::<N, M>(column).into_iter().enumerate()
                                {
                                    half[i][c].write(value);
                                }
                            }
                            for (i, row) in half.iter().enumerate() {
                                let row: [v::Vector; N] =
                                    // SAFETY: every (i, c) of `half` was written just above,
                                    // and `[MaybeUninit<T>; N]` has the layout of `[T; N]`.
                                    unsafe { std::ptr::read(row.as_ptr().cast()) };
                                for (j, value) in output_1d::<N, M>(row).into_iter().enumerate() {
                                    let (oh, ow) = (M * ti + i, M * tj + j);
                                    if oh < s.ho && ow < s.wo {
                                        probe = v::add(probe, v::mul(value, v::zero()));
                                        // SAFETY: pixel (oh, ow) lies in the image, channels k..k +
                                        // LANES <= cout.
                                        unsafe {
                                            v::store(dst.add((oh * s.wo + ow) * cout + k), value)
                                        };
                                    }
                                }
                            }
                        }
                    }
                }
                !v::any_nan(probe)
            }

            /// `Aᵀ m` for one column (or row) of a tile's products: `y_k = sum_i p_i^k m_i` over
            /// the finite points, plus the value at infinity in the last output (for `M = 2`
            /// and windows of six: `Aᵀ = [1 1 1 1 1 0], [0 1 -1 2 -1/2 1]`).
            #[target_feature(enable = $feature)]
            #[inline]
            fn output_1d<const N: usize, const M: usize>(m: [v::Vector; N]) -> [v::Vector; M] {
                if N == 8 { output_1d_8(resize(m)) } else { output_1d_6(resize(m)) }
            }

            /// [`output_1d`] for windows of six.
            #[target_feature(enable = $feature)]
            #[inline]
            fn output_1d_6<const M: usize>(m: [v::Vector; 6]) -> [v::Vector; M] {
                let mut out = [v::zero(); M];
                for (k, dst) in out.iter_mut().enumerate() {
                    // p = 0 counts in the first output only; p = 1 and p = -1 add and subtract.
                    let mut y = if k == 0 { v::add(m[0], m[1]) } else { m[1] };
                    y = if k % 2 == 0 { v::add(y, m[2]) } else { v::sub(y, m[2]) };
                    y = v::fmadd(v::splat(POWERS_6[k][3]), m[3], y);
                    y = v::fmadd(v::splat(POWERS_6[k][4]), m[4], y);
                    *dst = if k + 1 == M { v::add(y, m[5]) } else { y };
                }
                out
            }

            /// [`output_1d`] for windows of eight: the pairs of points `±p` meet the even
            /// powers through their sums and the odd ones through their differences.
            #[target_feature(enable = $feature)]
            #[inline]
            fn output_1d_8<const M: usize>(m: [v::Vector; 8]) -> [v::Vector; M] {
                let sums = [v::add(m[1], m[2]), v::add(m[3], m[4]), v::add(m[5], m[6])];
                let differences = [v::sub(m[1], m[2]), v::sub(m[3], m[4]), v::sub(m[5], m[6])];
                let mut out = [v::zero(); M];
                for (k, dst) in out.iter_mut().enumerate() {
                    let part = if k % 2 == 0 { sums } else { differences };
                    // p = 0 counts in the first output only; p = 1 has every power 1.
                    let mut y = if k == 0 { v::add(m[0], part[0]) } else { part[0] };
                    y = v::fmadd(v::splat(POWERS_8[k][3]), part[1], y);
                    y = v::fmadd(v::splat(POWERS_8[k][5]), part[2], y);
                    *dst = if k + 1 == M { v::add(y, m[7]) } else { y };
                }
                out
            }
        }
    };
}

transforms!(avx512, avx512_f32, "avx512f");
transforms!(avx2, avx2_f32, "avx2,fma");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::{Conv2dOptions, Geometry};

    /// A layer wide enough for the kernel-side transforms to be split across threads gives
    /// the same bits on one thread and on three: the kernel's transform, its transposed
    /// form, and the weight gradient (whose per-task partial sums are added in image order).
    #[test]
    fn wide_kernel_transforms_do_not_depend_on_the_thread_count() {
        let geo = Geometry::new([4, 128, 8, 8], [128, 128, 3, 3], padded(1));
        if !covers::<f32>(&geo) {
            return; // no vector transforms on this CPU
        }
        let mut values = crate::testing::uniform(11);
        let mut next = move |n: usize| (0..n).map(|_| values() as f32).collect::<Vec<f32>>();
        let (x, w, gy) = (next(4 * 128 * 64), next(128 * 128 * 9), next(4 * 128 * 64));
        let run = || {
            let s = Shape::forward(&geo);
            let u = transform_kernel(&s, Taps::Forward(&w));
            let ut = transform_kernel(&Shape::transposed(&geo), Taps::Flipped(&w));
            (u, ut, conv_weight(&x, &gy, &geo).expect("finite"))
        };
        let pool = |threads| rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let one = pool(1).install(run);
        let three = pool(3).install(|| {
            assert!(split_kernel_transform(&Shape::forward(&geo)), "the transform is split");
            run()
        });
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&one.0), bits(&three.0), "U");
        assert_eq!(bits(&one.1), bits(&three.1), "U of the transposed form");
        assert_eq!(bits(&one.2), bits(&three.2), "weight gradient");
    }

    /// The transformed kernel, forward and flipped, against `G g Gᵀ` summed in f64 from
    /// the taps as the correlations read them, for channel counts that differ (so that a
    /// swapped role or a tap read from the wrong place shows), on one thread and split
    /// over three (tasks of 19 or 24 channels: groups of transposed taps cut short, and a
    /// last task shorter than the others).
    #[test]
    fn transformed_kernels_match_their_definition() {
        let geo = Geometry::new([1, 112, 8, 8], [144, 112, 3, 3], padded(1));
        if !covers::<f32>(&geo) {
            return; // no vector transforms on this CPU
        }
        let (c, o, r) = (112, 144, 3);
        let mut values = crate::testing::uniform(5);
        let w: Vec<f32> = (0..o * c * r * r).map(|_| values() as f32).collect();
        let g = g_matrix(6, r);
        let check = |s: &Shape, u: &[f32], tap: &dyn Fn(usize, usize, usize, usize) -> f32| {
            assert_eq!(u.len(), s.points() * s.cin * s.cout + B_SLACK);
            assert!(u[u.len() - B_SLACK..].iter().all(|&v| v == 0.0), "the slack is zero");
            for (ci, co, a, b) in (0..s.cin * s.cout * 36)
                .map(|i| (i / (s.cout * 36), i / 36 % s.cout, i / 6 % 6, i % 6))
            {
                let mut want = 0.0;
                for (ki, kj) in (0..r * r).map(|t| (t / r, t % r)) {
                    want += g[a][ki] * g[b][kj] * f64::from(tap(co, ci, ki, kj));
                }
                let got = u[((a * 6 + b) * s.cin + ci) * s.cout + co];
                assert!(
                    (f64::from(got) - want).abs() <= 1e-6 * (1.0 + want.abs()),
                    "U[{a}, {b}][{ci}][{co}] = {got}, want {want}"
                );
            }
        };
        let forward =
            |o_: usize, c_: usize, ki: usize, kj: usize| w[((o_ * c + c_) * r + ki) * r + kj];
        let flipped = |c_: usize, o_: usize, ki: usize, kj: usize| {
            w[((o_ * c + c_) * r + r - 1 - ki) * r + r - 1 - kj]
        };
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let s = Shape::forward(&geo);
                assert_eq!(split_kernel_transform(&s), threads > 1, "split on {threads}");
                check(&s, &transform_kernel(&s, Taps::Forward(&w)), &forward);
                let t = Shape::transposed(&geo);
                check(&t, &transform_kernel(&t, Taps::Flipped(&w)), &flipped);
            });
        }
    }

    fn padded(p: usize) -> Conv2dOptions {
        Conv2dOptions { padding: (p, p), ..Default::default() }
    }
}
