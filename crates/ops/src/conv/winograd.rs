//! Stride-1 5 x 5 convolutions by Winograd's minimal filtering algorithm, F(2 x 2, 5 x 5).
//!
//! A 2 x 2 block of outputs (a tile) reads a 6 x 6 window of the input. Winograd's method
//! maps the window and the 5 x 5 kernel to 36 values each (`V = Bᵀ d B`, `U = G g Gᵀ`),
//! multiplies them point by point and maps the 36 products back (`Y = Aᵀ (U ⊙ V) A`): 36
//! multiplications per pair of channels where the direct sum takes 100. Summed over input
//! channels, the point products of one point `ξ` are a matrix product `M[ξ] = V[ξ] U[ξ]`
//! (tiles x input channels times input channels x output channels), which runs on the
//! implicit GEMM kernel; the transforms are a few vector additions per tile, with the
//! channels of a pixel as the lanes of a vector.
//!
//! The price is rounding. The transforms scale values by up to 5/2 and cancel them again,
//! so f32 results carry about ten times the rounding error of the direct sum: on the CNN's
//! second layer the largest error was 1.3e-6 of the largest output (direct: 1.7e-7). The
//! points 0, 1, -1, 2, -1/2 and infinity gave the smallest error among the simple
//! fractions tried. So only f32 takes this path, and only while [`set_winograd_enabled`]
//! allows it; f64, what gradient checks use, is always summed directly. A result with an
//! infinity or a NaN is recomputed directly: the transforms would turn one infinite input
//! into NaN across its tile, or overflow where the direct sum does not.

use std::any::TypeId;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Geometry, SharedMut, for_chunks};
use crate::implicit_gemm::{B_SLACK, Lhs, Operands, available, implicit_gemm};
use crate::transpose::Transpose;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Allows or forbids Winograd's algorithm for f32 convolutions (allowed by default) and
/// returns the previous setting.
///
/// Stride-1 5 x 5 convolutions whose channel counts are multiples of 16 take it on CPUs with
/// AVX-512: about twice as fast, with about ten times the rounding error of the direct sum
/// (around 1e-6 of the largest output instead of 1e-7). Forbid it for results that must
/// match a direct summation to the last bits; f64 convolutions never use it. The setting is
/// global, like PyTorch's `torch.backends` flags.
///
/// ```
/// use tapegrad_ops::{set_winograd_enabled, winograd_enabled};
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
/// assert!(tapegrad_ops::winograd_enabled()); // the default
/// ```
pub fn winograd_enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Kernel side.
const R: usize = 5;
/// Outputs per tile side.
const M: usize = 2;
/// Input window side: `N x N` points per tile.
const N: usize = M + R - 1;
/// Channels per transform step: one f32 vector.
const LANES: usize = 16;
/// Tiles per round of the 36 products: enough rows for the GEMM's register blocks, few
/// enough that a round's transformed inputs and products stay in the core's cache.
const ROUND_TILES: usize = 128;

/// The kernel's transform `G` (the inputs' `Bᵀ` and the outputs' `Aᵀ` are written out in
/// [`input_1d`] and [`output_1d`]). Applied once per convolution, in f64.
const G: [[f64; R]; N] = [
    [1.0, 0.0, 0.0, 0.0, 0.0],
    [-1.0 / 3.0, -1.0 / 3.0, -1.0 / 3.0, -1.0 / 3.0, -1.0 / 3.0],
    [1.0 / 3.0, -1.0 / 3.0, 1.0 / 3.0, -1.0 / 3.0, 1.0 / 3.0],
    [1.0 / 15.0, 2.0 / 15.0, 4.0 / 15.0, 8.0 / 15.0, 16.0 / 15.0],
    [-16.0 / 15.0, 8.0 / 15.0, -4.0 / 15.0, 2.0 / 15.0, -1.0 / 15.0],
    [0.0, 0.0, 0.0, 0.0, 1.0],
];

/// Whether `conv` may take this path for elements `T` (see the module comment).
pub(super) fn applies<T: 'static>(geo: &Geometry) -> bool {
    TypeId::of::<T>() == TypeId::of::<f32>()
        && winograd_enabled()
        && geo.opts.stride == (1, 1)
        && geo.opts.dilation == (1, 1)
        && geo.opts.groups == 1
        && (geo.kh, geo.kw) == (R, R)
        && geo.c.is_multiple_of(LANES)
        && geo.o.is_multiple_of(LANES)
        && available()
}

/// Whether `conv_transpose` may take this path: as [`applies`], with padding narrower than
/// the kernel (the input gradient is then a correlation padded by `R - 1 - padding`).
pub(super) fn applies_transpose<T: 'static>(geo: &Geometry) -> bool {
    applies::<T>(geo) && geo.opts.padding.0 < R && geo.opts.padding.1 < R
}

/// One correlation as this path sees it: images of `cin` planes of `h x w`, padded by
/// `pad`, correlated with a 5 x 5 kernel into `cout` planes of `ho x wo`.
struct Shape {
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    pad: (usize, usize),
    ho: usize,
    wo: usize,
}

impl Shape {
    fn tiles(&self) -> (usize, usize) {
        (self.ho.div_ceil(M), self.wo.div_ceil(M))
    }
    /// The padded window the tiles read: their inputs, rounded up to whole tiles.
    fn window(&self) -> (usize, usize) {
        let (th, tw) = self.tiles();
        (M * th + R - 1, M * tw + R - 1)
    }
}

/// `y = conv(x, w)`. Returns false, with `y` unspecified, when the result holds an
/// infinity or a NaN (the caller then sums directly).
pub(super) fn conv<T: 'static>(x: &[T], weight: &[T], geo: &Geometry, y: &mut [T]) -> bool {
    let (x, weight, y) = (as_f32(x), as_f32(weight), as_f32_mut(y));
    let shape = Shape { cin: geo.c, cout: geo.o, h: geo.h, w: geo.w, pad: geo.opts.padding, ho: geo.ho, wo: geo.wo };
    let u = transform_kernel(&shape, |o, c, ki, kj| weight[((o * geo.c + c) * R + ki) * R + kj]);
    correlate(x, &u, &shape, geo, y)
}

/// `dx = conv_transpose(gy, w)`: the correlation of `gy`, padded by `R - 1 - padding`, with
/// the flipped kernel whose channel roles are swapped. Returns false as [`conv`] does.
pub(super) fn conv_transpose<T: 'static>(gy: &[T], weight: &[T], geo: &Geometry, dx: &mut [T]) -> bool {
    let (gy, weight, dx) = (as_f32(gy), as_f32(weight), as_f32_mut(dx));
    let (ph, pw) = geo.opts.padding;
    let pad = (R - 1 - ph, R - 1 - pw);
    let shape = Shape { cin: geo.o, cout: geo.c, h: geo.ho, w: geo.wo, pad, ho: geo.h, wo: geo.w };
    let u = transform_kernel(&shape, |c, o, ki, kj| weight[((o * geo.c + c) * R + R - 1 - ki) * R + R - 1 - kj]);
    correlate(gy, &u, &shape, geo, dx)
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

/// `U[ξ][c][o]` (the 36 right operands, one after another) for the kernel whose tap
/// `(ki, kj)` from input channel `c` to output channel `o` is `tap(o, c, ki, kj)`, followed
/// by the GEMM's [`B_SLACK`].
fn transform_kernel(s: &Shape, tap: impl Fn(usize, usize, usize, usize) -> f32) -> Vec<f32> {
    let (cin, cout) = (s.cin, s.cout);
    let mut u = vec![0.0; N * N * cin * cout + B_SLACK];
    for o in 0..cout {
        for c in 0..cin {
            // G g, then (G g) Gᵀ.
            let mut gg = [[0.0f64; R]; N];
            for (i, row) in gg.iter_mut().enumerate() {
                for (kj, value) in row.iter_mut().enumerate() {
                    *value = (0..R).map(|ki| G[i][ki] * f64::from(tap(o, c, ki, kj))).sum();
                }
            }
            for (i, row) in gg.iter().enumerate() {
                for j in 0..N {
                    let value: f64 = (0..R).map(|kj| row[kj] * G[j][kj]).sum();
                    u[((i * N + j) * cin + c) * cout + o] = value as f32;
                }
            }
        }
    }
    u
}

/// Runs the correlation over every image of `input` into `output` (both planar), with the
/// kernel transformed into `u`. Returns whether every output is finite.
fn correlate(input: &[f32], u: &[f32], s: &Shape, geo: &Geometry, output: &mut [f32]) -> bool {
    let (th, tw) = s.tiles();
    let tiles = th * tw;
    let per_round = (ROUND_TILES / tiles).max(1);
    let (in_img, out_img) = (s.cin * s.h * s.w, s.cout * s.ho * s.wo);
    // Row t of V[ξ] (tile t's point ξ, every input channel) starts at t * 36 * cin.
    let a_rows: Vec<usize> = (0..per_round * tiles).map(|t| t * N * N * s.cin).collect();
    let a_cols: Vec<usize> = (0..s.cin).collect();
    let b_rows: Vec<usize> = (0..s.cin).map(|c| c * s.cout).collect();
    let finite = AtomicBool::new(true);
    let out = SharedMut(output.as_mut_ptr());
    for_chunks(geo, |first, count| {
        let mut window = Window::new(s);
        let mut v = vec![0.0; per_round * tiles * N * N * s.cin];
        let mut m = vec![0.0; per_round * tiles * N * N * s.cout];
        let mut by_pixel = vec![0.0; s.ho * s.wo * s.cout];
        let mut all_finite = true;
        for round in (first..first + count).step_by(per_round) {
            let images = per_round.min(first + count - round);
            for (i, v_img) in v.chunks_exact_mut(tiles * N * N * s.cin).take(images).enumerate() {
                let img = round + i;
                window.fill(&input[img * in_img..(img + 1) * in_img]);
                window.transform(s, v_img);
            }
            // M[t][ξ][o] = sum_c V[t][ξ][c] U[ξ][c][o], for each point ξ.
            for xi in 0..N * N {
                let lhs = Lhs::Gathered { a: &v[xi * s.cin..], rows: &a_rows[..images * tiles], cols: &a_cols };
                let ops = Operands::new(lhs, u, &b_rows);
                implicit_gemm(&ops, xi * s.cin * s.cout, s.cout, &mut m[xi * s.cout..], N * N * s.cout, false);
            }
            for (i, m_img) in m.chunks_exact(tiles * N * N * s.cout).take(images).enumerate() {
                all_finite &= transform_outputs(m_img, s, &mut by_pixel);
                // SAFETY: this chunk's images are written by this task alone.
                let planes = unsafe { out.slice((round + i) * out_img, out_img) };
                f32::transpose(&by_pixel, s.ho * s.wo, s.cout, planes);
            }
        }
        if !all_finite {
            finite.store(false, Ordering::Relaxed);
        }
    });
    finite.into_inner()
}

/// `dw = conv_weight(x, gy)`, the adjoint of [`conv`] in the weight: each tile's output
/// gradient `e` (2 x 2) is mapped to 36 values `Z = A e Aᵀ`, the point products
/// `dU[ξ] = sum_t V[t][ξ]ᵀ Z[t][ξ]` run over every tile of every image (36 products of
/// input channels x tiles times tiles x output channels), and `dw = Gᵀ dU G`. Returns
/// `None` when the result holds an infinity or a NaN (the caller then sums directly).
pub(super) fn conv_weight<T: 'static>(x: &[T], gy: &[T], geo: &Geometry) -> Option<Vec<T>> {
    let (x, gy) = (as_f32(x), as_f32(gy));
    let s = Shape { cin: geo.c, cout: geo.o, h: geo.h, w: geo.w, pad: geo.opts.padding, ho: geo.ho, wo: geo.wo };
    let (cin, cout) = (s.cin, s.cout);
    let (th, tw) = s.tiles();
    let tiles = th * tw;
    let per_round = (ROUND_TILES / tiles).max(1);
    let (in_img, out_img) = (cin * s.h * s.w, cout * s.ho * s.wo);
    // A(c, t) = V[t][ξ][c] (rows are input channels, columns tiles); B's row t is Z[t][ξ].
    let a_rows: Vec<usize> = (0..cin).collect();
    let a_cols: Vec<usize> = (0..per_round * tiles).map(|t| t * N * N * cin).collect();
    let b_rows: Vec<usize> = (0..per_round * tiles).map(|t| t * N * N * cout).collect();
    let partials = std::sync::Mutex::new(Vec::new());
    for_chunks(geo, |first, count| {
        let mut window = Window::new(&s);
        let mut v = vec![0.0; per_round * tiles * N * N * cin];
        let mut z = vec![0.0; per_round * tiles * N * N * cout + B_SLACK];
        let mut by_pixel = vec![0.0; s.ho * s.wo * cout];
        // dU[ξ][c][o]
        let mut du = vec![0.0f32; N * N * cin * cout];
        for round in (first..first + count).step_by(per_round) {
            let images = per_round.min(first + count - round);
            let per_v = tiles * N * N * cin;
            let per_z = tiles * N * N * cout;
            for i in 0..images {
                let img = round + i;
                window.fill(&x[img * in_img..(img + 1) * in_img]);
                window.transform(&s, &mut v[i * per_v..(i + 1) * per_v]);
                f32::transpose(&gy[img * out_img..(img + 1) * out_img], cout, s.ho * s.wo, &mut by_pixel);
                transform_gradients(&by_pixel, &s, &mut z[i * per_z..(i + 1) * per_z]);
            }
            for xi in 0..N * N {
                let lhs = Lhs::Gathered { a: &v[xi * cin..], rows: &a_rows, cols: &a_cols[..images * tiles] };
                let ops = Operands::new(lhs, &z, &b_rows[..images * tiles]);
                implicit_gemm(&ops, xi * cout, cout, &mut du[xi * cin * cout..], cout, true);
            }
        }
        partials.lock().expect("no task panicked").push((first, du));
    });
    // Summed in image order, so results do not depend on thread timing.
    let mut partials = partials.into_inner().expect("no task panicked");
    partials.sort_by_key(|(first, _)| *first);
    let mut partials = partials.into_iter().map(|(_, du)| du);
    let mut total = partials.next()?;
    for du in partials {
        total.iter_mut().zip(&du).for_each(|(t, &d)| *t += d);
    }
    // dw = Gᵀ dU G for each pair of channels, in f64.
    let mut dw = vec![0.0f32; cout * cin * R * R];
    for o in 0..cout {
        for c in 0..cin {
            let du = |i: usize, j: usize| f64::from(total[((i * N + j) * cin + c) * cout + o]);
            let mut gt_du = [[0.0f64; N]; R];
            for (a, row) in gt_du.iter_mut().enumerate() {
                for (j, value) in row.iter_mut().enumerate() {
                    *value = (0..N).map(|i| G[i][a] * du(i, j)).sum();
                }
            }
            for (a, row) in gt_du.iter().enumerate() {
                for b in 0..R {
                    let value: f64 = (0..N).map(|j| row[j] * G[j][b]).sum();
                    dw[((o * cin + c) * R + a) * R + b] = value as f32;
                }
            }
        }
    }
    dw.iter().all(|v| v.is_finite()).then(|| from_f32(dw))
}

/// The f32 vector as a `Vec<T>` (`T` is f32: [`applies`] checked).
fn from_f32<T: 'static>(v: Vec<f32>) -> Vec<T> {
    assert_eq!(TypeId::of::<T>(), TypeId::of::<f32>(), "winograd: f32 only");
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: T is f32, so pointer, length and capacity describe the same allocation.
    unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast(), v.len(), v.capacity()) }
}

/// `Z[t][ξ][o] = (A e Aᵀ)` for every tile of one image's output gradient `by_pixel`
/// (`[ho * wo][cout]`, channels last), outputs past the image's edge read as zero.
fn transform_gradients(by_pixel: &[f32], s: &Shape, z: &mut [f32]) {
    let (th, tw) = s.tiles();
    assert!(
        by_pixel.len() >= s.ho * s.wo * s.cout && z.len() >= th * tw * N * N * s.cout,
        "winograd: buffers too short"
    );
    // SAFETY: the CPU has AVX-512F (`applies`); the lengths were checked above.
    unsafe { transform_gradients_avx512(by_pixel, s, z) }
}

/// The gradient transform of every tile.
///
/// # Safety
/// The CPU must have AVX-512F, and the slices must hold what [`transform_gradients`] checks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transform_gradients_avx512(by_pixel: &[f32], s: &Shape, z: &mut [f32]) {
    use std::arch::x86_64::*;
    let ((th, tw), cout) = (s.tiles(), s.cout);
    let (src, dst) = (by_pixel.as_ptr(), z.as_mut_ptr());
    for ti in 0..th {
        for tj in 0..tw {
            for k in (0..cout).step_by(LANES) {
                let mut e = [[_mm512_setzero_ps(); M]; M];
                for (a, row) in e.iter_mut().enumerate() {
                    for (b, value) in row.iter_mut().enumerate() {
                        let (oh, ow) = (M * ti + a, M * tj + b);
                        if oh < s.ho && ow < s.wo {
                            // SAFETY: pixel (oh, ow) lies in the image, channel k + 15 < cout.
                            *value = unsafe { _mm512_loadu_ps(src.add((oh * s.wo + ow) * cout + k)) };
                        }
                    }
                }
                // A e: the columns, then (A e) Aᵀ: the rows.
                let (left, right) = (gradient_1d([e[0][0], e[1][0]]), gradient_1d([e[0][1], e[1][1]]));
                // SAFETY: tile < th * tw, point < 36, channel k + 15 < cout.
                let mut out = unsafe { dst.add((ti * tw + tj) * N * N * cout + k) };
                for i in 0..N {
                    for value in gradient_1d([left[i], right[i]]) {
                        unsafe { _mm512_storeu_ps(out, value) };
                        out = unsafe { out.add(cout) };
                    }
                }
            }
        }
    }
}

/// `A e` for one column (or row) of a tile's output gradient: the transpose of [`output_1d`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn gradient_1d([e0, e1]: [std::arch::x86_64::__m512; M]) -> [std::arch::x86_64::__m512; N] {
    use std::arch::x86_64::*;
    let (plus, minus) = (_mm512_add_ps(e0, e1), _mm512_sub_ps(e0, e1));
    let twice = _mm512_fmadd_ps(_mm512_set1_ps(2.0), e1, e0);
    let half = _mm512_fmadd_ps(_mm512_set1_ps(-0.5), e1, e0);
    [e0, plus, minus, twice, half, e1]
}

/// One image at a time, zero-padded to the tiles' window with its channels last (a pixel's
/// channels side by side, as the transforms' vectors), and its input transform. Every
/// image fills the same positions, so the zero border is written once.
struct Window {
    buf: Vec<f32>,
    /// The image with its channels last, before padding.
    pixels: Vec<f32>,
    /// One row of tiles' window transformed down its columns (`Bᵀ d`), 16 channels of
    /// each column's six values: the tiles of the row share these.
    columns: Vec<f32>,
    cin: usize,
    size: (usize, usize),
    padded_width: usize,
    pad: (usize, usize),
}

impl Window {
    fn new(s: &Shape) -> Self {
        let (hp, wp) = s.window();
        let buf = vec![0.0; hp * wp * s.cin];
        let (pixels, columns) = (vec![0.0; s.h * s.w * s.cin], vec![0.0; wp * N * LANES]);
        Window { buf, pixels, columns, cin: s.cin, size: (s.h, s.w), padded_width: wp, pad: s.pad }
    }

    /// Fills the window with the padded, channels-last copy of the planar image `img`.
    fn fill(&mut self, img: &[f32]) {
        let ((h, w), cin) = (self.size, self.cin);
        f32::transpose(img, cin, h * w, &mut self.pixels);
        for r in 0..h {
            // The window holds the padded image: M * ceil(ho / M) + R - 1 >= h + 2 * pad.
            let at = ((r + self.pad.0) * self.padded_width + self.pad.1) * cin;
            self.buf[at..at + w * cin].copy_from_slice(&self.pixels[r * w * cin..(r + 1) * w * cin]);
        }
    }

    /// `V[t][ξ][c]` for every tile `t` of the window's image.
    fn transform(&mut self, s: &Shape, v: &mut [f32]) {
        let ((th, tw), (hp, wp)) = (s.tiles(), s.window());
        assert!(
            self.buf.len() >= hp * wp * s.cin
                && self.columns.len() >= wp * N * LANES
                && v.len() >= th * tw * N * N * s.cin,
            "winograd: buffers too short"
        );
        // SAFETY: the CPU has AVX-512F (`applies`); the lengths were checked above.
        unsafe { transform_inputs_avx512(&self.buf, &mut self.columns, s, v) }
    }
}

/// The input transform of every tile, a row of tiles and 16 channels at a time: `Bᵀ d` down
/// every column of the row's window (adjacent tiles share four of their six columns), then
/// `(Bᵀ d) B` along each tile's rows.
///
/// # Safety
/// The CPU must have AVX-512F, and the slices must hold what [`Window::transform`] checks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transform_inputs_avx512(padded: &[f32], columns: &mut [f32], s: &Shape, v: &mut [f32]) {
    use std::arch::x86_64::*;
    let ((th, tw), (_, wp), cin) = (s.tiles(), s.window(), s.cin);
    let (src, dst, cols) = (padded.as_ptr(), v.as_mut_ptr(), columns.as_mut_ptr());
    let row_stride = wp * cin;
    for ti in 0..th {
        for k in (0..cin).step_by(LANES) {
            // SAFETY (all pointer arithmetic): window rows M * ti + r < hp, columns x < wp
            // and channels k + 15 < cin; `columns` holds wp * N vectors; tiles below th *
            // tw, points below 36.
            let mut at = unsafe { src.add(M * ti * row_stride + k) };
            for x in 0..wp {
                let mut column = [_mm512_setzero_ps(); N];
                for (r, value) in column.iter_mut().enumerate() {
                    *value = unsafe { _mm512_loadu_ps(at.add(r * row_stride)) };
                }
                for (r, value) in input_1d(column).into_iter().enumerate() {
                    unsafe { _mm512_storeu_ps(cols.add((x * N + r) * LANES), value) };
                }
                at = unsafe { at.add(cin) };
            }
            for tj in 0..tw {
                let mut out = unsafe { dst.add((ti * tw + tj) * N * N * cin + k) };
                for r in 0..N {
                    let mut row = [_mm512_setzero_ps(); N];
                    for (c, value) in row.iter_mut().enumerate() {
                        *value = unsafe { _mm512_loadu_ps(cols.add(((M * tj + c) * N + r) * LANES)) };
                    }
                    for value in input_1d(row) {
                        unsafe { _mm512_storeu_ps(out, value) };
                        out = unsafe { out.add(cin) };
                    }
                }
            }
        }
    }
}

/// `Bᵀ d` for one column (or row) of a window: the points 0, 1, -1, 2, -1/2, infinity.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn input_1d([d0, d1, d2, d3, d4, d5]: [std::arch::x86_64::__m512; N]) -> [std::arch::x86_64::__m512; N] {
    use std::arch::x86_64::*;
    let c = |value: f32| _mm512_set1_ps(value);
    let (d1_d3, d4_d2, d4_d1) = (_mm512_sub_ps(d1, d3), _mm512_sub_ps(d4, d2), _mm512_sub_ps(d4, d1));
    // Bᵀ row by row: [1 3/2 -2 -3/2 1 0], [0 -1 -5/2 -1/2 1 0], [0 1 1/2 -5/2 1 0],
    // [0 -1/2 -1 1/2 1 0], [0 2 -1 -2 1 0], [0 1 3/2 -2 -3/2 1].
    let v0 = _mm512_fmadd_ps(c(-2.0), d2, _mm512_fmadd_ps(c(1.5), d1_d3, _mm512_add_ps(d0, d4)));
    let v1 = _mm512_add_ps(d4_d1, _mm512_fmadd_ps(c(-2.5), d2, _mm512_mul_ps(c(-0.5), d3)));
    let v2 = _mm512_add_ps(_mm512_add_ps(d4, d1), _mm512_fmadd_ps(c(0.5), d2, _mm512_mul_ps(c(-2.5), d3)));
    let v3 = _mm512_fmadd_ps(c(-0.5), d1_d3, d4_d2);
    let v4 = _mm512_fmadd_ps(c(2.0), d1_d3, d4_d2);
    let v5 = _mm512_add_ps(
        _mm512_add_ps(d1, d5),
        _mm512_fmadd_ps(c(1.5), _mm512_sub_ps(d2, d4), _mm512_mul_ps(c(-2.0), d3)),
    );
    [v0, v1, v2, v3, v4, v5]
}

/// The tiles of one image from its products `M[t][ξ][o]`, channels last, into `by_pixel`
/// (`[ho * wo][cout]`). Returns whether every output is finite.
fn transform_outputs(m: &[f32], s: &Shape, by_pixel: &mut [f32]) -> bool {
    let (th, tw) = s.tiles();
    assert!(
        m.len() >= th * tw * N * N * s.cout && by_pixel.len() >= s.ho * s.wo * s.cout,
        "winograd: buffers too short"
    );
    // SAFETY: the CPU has AVX-512F (`applies`); the lengths were checked above.
    unsafe { transform_outputs_avx512(m, s, by_pixel) }
}

/// The output transform of every tile.
///
/// # Safety
/// The CPU must have AVX-512F, and the slices must hold what [`transform_outputs`] checks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::needless_range_loop)] // walks the products' columns
unsafe fn transform_outputs_avx512(m: &[f32], s: &Shape, by_pixel: &mut [f32]) -> bool {
    use std::arch::x86_64::*;
    let ((th, tw), cout) = (s.tiles(), s.cout);
    let (src, dst) = (m.as_ptr(), by_pixel.as_mut_ptr());
    // Stays zero while every output is finite (x * 0 is NaN for an infinite or NaN x).
    let mut probe = _mm512_setzero_ps();
    for ti in 0..th {
        for tj in 0..tw {
            let tile = (ti * tw + tj) * N * N * cout;
            for k in (0..cout).step_by(LANES) {
                // Aᵀ m: the columns, then (Aᵀ m) A: the rows.
                let mut half = [[_mm512_setzero_ps(); N]; M];
                for c in 0..N {
                    let mut column = [_mm512_setzero_ps(); N];
                    for (r, value) in column.iter_mut().enumerate() {
                        // SAFETY: tile < th * tw, point r * N + c < 36, channel k + 15 < cout.
                        *value = unsafe { _mm512_loadu_ps(src.add(tile + (r * N + c) * cout + k)) };
                    }
                    let [y0, y1] = output_1d(column);
                    (half[0][c], half[1][c]) = (y0, y1);
                }
                for (i, row) in half.iter().enumerate() {
                    for (j, value) in output_1d(*row).into_iter().enumerate() {
                        let (oh, ow) = (M * ti + i, M * tj + j);
                        if oh < s.ho && ow < s.wo {
                            probe = _mm512_add_ps(probe, _mm512_mul_ps(value, _mm512_setzero_ps()));
                            // SAFETY: pixel (oh, ow) lies in the image, channel k + 15 < cout.
                            unsafe { _mm512_storeu_ps(dst.add((oh * s.wo + ow) * cout + k), value) };
                        }
                    }
                }
            }
        }
    }
    _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(probe, probe) == 0
}

/// `Aᵀ m` for one column (or row) of a tile's products: `Aᵀ = [1 1 1 1 1 0], [0 1 -1 2 -1/2 1]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn output_1d([m0, m1, m2, m3, m4, m5]: [std::arch::x86_64::__m512; N]) -> [std::arch::x86_64::__m512; M] {
    use std::arch::x86_64::*;
    let y0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(m0, m1), _mm512_add_ps(m2, m3)), m4);
    let y1 = _mm512_fmadd_ps(
        _mm512_set1_ps(-0.5),
        m4,
        _mm512_fmadd_ps(_mm512_set1_ps(2.0), m3, _mm512_add_ps(_mm512_sub_ps(m1, m2), m5)),
    );
    [y0, y1]
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn transform_inputs_avx512(_: &[f32], _: &mut [f32], _: &Shape, _: &mut [f32]) {
    unreachable!("available() is false off x86_64")
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn transform_gradients_avx512(_: &[f32], _: &Shape, _: &mut [f32]) {
    unreachable!("available() is false off x86_64")
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn transform_outputs_avx512(_: &[f32], _: &Shape, _: &mut [f32]) -> bool {
    unreachable!("available() is false off x86_64")
}
