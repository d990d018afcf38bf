//! 1 x 1 convolutions over every pixel (stride 1, no padding, one group) as plain matrix
//! products on each image's planes.
//!
//! An image `[C, H, W]` is already a row-major `C x HW` matrix, and its output `O x HW`:
//! the forward pass is `W x` per image, the input gradient `Wᵀ dy`, the weight gradient
//! `Σ dy xᵀ`. The packing GEMM runs on the planes in place, without im2col's copies of the
//! columns and of the result, and without the implicit kernels' reading of all the
//! weights for every panel of pixels. Planes narrower than [`MIN_PIXELS`] leave the
//! product too thin; those batch several images through the other forms.

use super::{ChannelBias, Geometry, Images, Split, for_chunks, sum_in_image_order};
use crate::gemm::{Gemm, View, gemm_serial};

/// Output pixels per image from which each image's planes make a product wide enough.
const MIN_PIXELS: usize = 64;

/// Whether `geo` takes this path.
pub(super) fn applies(geo: &Geometry) -> bool {
    geo.kh == 1
        && geo.kw == 1
        && geo.opts.stride == (1, 1)
        && geo.opts.padding == (0, 0)
        && geo.opts.groups == 1
        && geo.ho * geo.wo >= MIN_PIXELS
}

/// `y[n] = w x[n]` for every image (`y` of `[N, O, HW]`).
pub(super) fn conv<T: Gemm>(
    x: &[T],
    weight: &[T],
    geo: &Geometry,
    bias: ChannelBias<'_, T>,
    y: &Images<'_, T>,
) {
    let w = View::row_major(&weight[..geo.o * geo.c], geo.o, geo.c);
    each_image(w, x, y, bias, geo);
}

/// `dx[n] = wᵀ dy[n]` for every image (`dx` of `[N, C, HW]`).
pub(super) fn conv_transpose<T: Gemm>(gy: &[T], weight: &[T], geo: &Geometry, dx: &Images<'_, T>) {
    let w_t = View::row_major(&weight[..geo.o * geo.c], geo.o, geo.c).t();
    each_image(w_t, gy, dx, ChannelBias::none(), geo);
}

/// `out[n] = a src[n]` (plus `bias` on each row) for every image, where `src[n]` is a
/// `a.cols x HW` matrix and `out[n]` an `a.rows x HW` one, images shared among threads.
fn each_image<T: Gemm>(
    a: View<'_, T>,
    src: &[T],
    out: &Images<'_, T>,
    bias: ChannelBias<'_, T>,
    geo: &Geometry,
) {
    let (hw, rows, cols) = (geo.ho * geo.wo, a.rows, a.cols);
    for_chunks(geo, Split::PerThread, |first, count| {
        let chunk = out.take(first, count);
        for (i, out_img) in chunk.chunks_exact_mut(rows * hw).enumerate() {
            let img = first + i;
            let src_img = View::row_major(&src[img * cols * hw..(img + 1) * cols * hw], cols, hw);
            gemm_serial(a, src_img, out_img, false);
            bias.add_to(out_img);
        }
    });
}

/// `dw = Σ dy[n] x[n]ᵀ` (`[O, C]`), each task's images summed in order and the tasks' sums
/// in image order: the same result at every thread count.
pub(super) fn conv_weight<T: Gemm>(x: &[T], gy: &[T], geo: &Geometry) -> Vec<T> {
    let (c, o, hw) = (geo.c, geo.o, geo.ho * geo.wo);
    let partials = std::sync::Mutex::new(Vec::new());
    for_chunks(geo, Split::Fixed, |first, count| {
        let mut sum = vec![T::ZERO; o * c];
        for (i, img) in (first..first + count).enumerate() {
            let gy_img = View::row_major(&gy[img * o * hw..(img + 1) * o * hw], o, hw);
            let x_img = View::row_major(&x[img * c * hw..(img + 1) * c * hw], c, hw);
            gemm_serial(gy_img, x_img.t(), &mut sum, i > 0);
        }
        partials.lock().expect("no task panicked").push((first, sum));
    });
    sum_in_image_order(partials, o * c)
}
