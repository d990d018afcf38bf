//! The forward pass of the 2x2, stride-2 max pooling of nearly every CNN.
//!
//! Its windows tile the plane, so each output is four loads and three selects. The f32
//! kernel has an AVX-512 form and an AVX2 one: a CNN's pooled rows are short (7 or 14
//! outputs), too short for the compiler's vectorised loop to start; one masked vector of
//! sixteen covers a whole row, and the AVX2 form takes eight outputs at a time, the last few
//! of a row through a copy on the stack (AVX2's masked loads are slow on AMD cores).

use crate::Real;

use super::pick;

/// Element types with a 2x2 max-pooling forward kernel.
///
/// ```
/// use tapegrad_kernels::pool::MaxPool2x2;
/// let (mut vals, mut idxs) = ([0.0f32; 1], [0i64; 1]);
/// f32::forward_plane(&[1.0, 4.0, 3.0, 2.0], (2, 2), &mut vals, &mut idxs);
/// assert_eq!((vals, idxs), ([4.0], [1]));
/// ```
pub trait MaxPool2x2: Real {
    /// Max of each 2x2 window of one `h x w` plane into `vals` (`h/2 x w/2`), with its flat
    /// position `ih * w + iw` in `idxs`; ties and NaNs as in PyTorch: the first of equal values,
    /// the last of NaNs.
    fn forward_plane(plane: &[Self], (h, w): (usize, usize), vals: &mut [Self], idxs: &mut [i64]) {
        forward_plane_scalar(plane, (h, w), vals, idxs)
    }
}

impl MaxPool2x2 for f64 {}

impl MaxPool2x2 for f32 {
    fn forward_plane(plane: &[f32], (h, w): (usize, usize), vals: &mut [f32], idxs: &mut [i64]) {
        #[cfg(target_arch = "x86_64")]
        if crate::simd::avx512_enabled() && h * w <= i32::MAX as usize {
            assert!(
                plane.len() >= h * w && vals.len() >= (h / 2) * (w / 2) && idxs.len() >= vals.len()
            );
            // SAFETY: the CPU has AVX-512F; the slices were checked to hold the plane and
            // its outputs, and positions fit the kernel's 32-bit lanes.
            return unsafe { forward_plane_avx512(plane, (h, w), vals, idxs) };
        }
        #[cfg(target_arch = "x86_64")]
        if crate::simd::avx2_enabled() && h * w <= i32::MAX as usize {
            assert!(
                plane.len() >= h * w && vals.len() >= (h / 2) * (w / 2) && idxs.len() >= vals.len()
            );
            // SAFETY: the CPU has AVX2; the slices were checked to hold the plane and its
            // outputs, and positions fit the kernel's 32-bit lanes.
            return unsafe { forward_plane_avx2(plane, (h, w), vals, idxs) };
        }
        forward_plane_scalar(plane, (h, w), vals, idxs)
    }
}

fn forward_plane_scalar<T: Real>(
    plane: &[T],
    (h, w): (usize, usize),
    vals: &mut [T],
    idxs: &mut [i64],
) {
    let (ho, wo) = (h / 2, w / 2);
    for oh in 0..ho {
        let (top, bottom) = (2 * oh * w, (2 * oh + 1) * w);
        let (r0, r1) = (&plane[top..top + 2 * wo], &plane[bottom..bottom + 2 * wo]);
        let out = vals[oh * wo..(oh + 1) * wo].iter_mut().zip(&mut idxs[oh * wo..(oh + 1) * wo]);
        for (ow, ((out, out_idx), (upper, lower))) in
            out.zip(r0.chunks_exact(2).zip(r1.chunks_exact(2))).enumerate()
        {
            let j = 2 * ow;
            let a = pick((upper[0], top + j), (upper[1], top + j + 1));
            let b = pick((lower[0], bottom + j), (lower[1], bottom + j + 1));
            let (v, i) = pick(a, b);
            *out = v;
            *out_idx = i as i64;
        }
    }
}

/// Up to 16 outputs of a row per step: the two input rows' 32 values are split into even
/// and odd columns, picked pairwise (left before right, then top before bottom: the same
/// order as [`pick`] in the scalar loop, so ties resolve identically).
///
/// # Safety
/// The CPU must have AVX-512F; `plane` must hold `h * w` values, `vals` and `idxs` the
/// `h/2 * w/2` outputs, and `h * w` must fit in an `i32`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn forward_plane_avx512(
    plane: &[f32],
    (h, w): (usize, usize),
    vals: &mut [f32],
    idxs: &mut [i64],
) {
    use std::arch::x86_64::*;
    crate::simd::debug_assert_avx512_on();
    let (ho, wo) = (h / 2, w / 2);
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));

    /// The pairwise pick of the 16 (even, odd) column pairs in `x0, x1`, whose first value
    /// sits at flat position `base`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn pairs(
        x0: __m512,
        x1: __m512,
        base: usize,
        even: __m512i,
        odd: __m512i,
    ) -> (__m512, __m512i) {
        let left = _mm512_permutex2var_ps(x0, even, x1);
        let right = _mm512_permutex2var_ps(x0, odd, x1);
        let at = _mm512_add_epi32(_mm512_set1_epi32(base as i32), even);
        // `pick`'s test: right > left, or right is NaN (ordered greater-than or a NaN check).
        let take = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(right, left)
            | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(right, right);
        (
            _mm512_mask_blend_ps(take, left, right),
            _mm512_mask_blend_epi32(take, at, _mm512_add_epi32(at, _mm512_set1_epi32(1))),
        )
    }

    let src = plane.as_ptr();
    for oh in 0..ho {
        let (top, bottom) = (2 * oh * w, (2 * oh + 1) * w);
        let mut ow = 0;
        while ow < wo {
            let count = (wo - ow).min(16);
            let inputs = 2 * count as u32;
            let lo: __mmask16 = if inputs >= 16 { !0 } else { (1 << inputs) - 1 };
            let hi: __mmask16 =
                if inputs >= 32 { !0 } else { ((1u32 << inputs.saturating_sub(16)) - 1) as u16 };
            // SAFETY: masked loads touch only the 2 * count values of this window row,
            // inside the plane; masked stores only this row's count outputs. The second
            // halves' addresses are formed with `wrapping_add` because they may lie past
            // the end of the slices when their masks are empty (a 7-output row).
            unsafe {
                let (t, b) = (src.add(top + 2 * ow), src.add(bottom + 2 * ow));
                let t =
                    (_mm512_maskz_loadu_ps(lo, t), _mm512_maskz_loadu_ps(hi, t.wrapping_add(16)));
                let b =
                    (_mm512_maskz_loadu_ps(lo, b), _mm512_maskz_loadu_ps(hi, b.wrapping_add(16)));
                let (upper, upper_at) = pairs(t.0, t.1, top + 2 * ow, even, odd);
                let (lower, lower_at) = pairs(b.0, b.1, bottom + 2 * ow, even, odd);
                let take = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(lower, upper)
                    | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(lower, lower);
                let value = _mm512_mask_blend_ps(take, upper, lower);
                let at = _mm512_mask_blend_epi32(take, upper_at, lower_at);
                let out: __mmask16 = if count == 16 { !0 } else { (1 << count) - 1 };
                let o = oh * wo + ow;
                _mm512_mask_storeu_ps(vals.as_mut_ptr().add(o), out, value);
                let first = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(at));
                let second = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64::<1>(at));
                _mm512_mask_storeu_epi64(idxs.as_mut_ptr().add(o), out as u8, first);
                _mm512_mask_storeu_epi64(
                    idxs.as_mut_ptr().wrapping_add(o + 8),
                    (out >> 8) as u8,
                    second,
                );
            }
            ow += count;
        }
    }
}

/// Eight outputs of a row per step: the two input rows' sixteen values are split into
/// even and odd columns and picked pairwise in [`pick`]'s order, as in the AVX-512 form.
/// The last outputs of a row (fewer than eight) go through copies of their inputs and
/// outputs on the stack.
///
/// # Safety
/// The CPU must have AVX2; `plane` must hold `h * w` values, `vals` and `idxs` the
/// `h/2 * w/2` outputs, and `h * w` must fit in an `i32`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn forward_plane_avx2(
    plane: &[f32],
    (h, w): (usize, usize),
    vals: &mut [f32],
    idxs: &mut [i64],
) {
    use std::arch::x86_64::*;
    crate::simd::debug_assert_avx2_on();
    let (ho, wo) = (h / 2, w / 2);
    let lanes_twice = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);

    /// The pairwise pick of the eight (even, odd) column pairs of sixteen values at `x`,
    /// whose first value sits at flat position `base`.
    ///
    /// # Safety
    /// Sixteen floats must be readable at `x`.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn pairs(x: *const f32, base: usize, lanes_twice: __m256i) -> (__m256, __m256i) {
        // SAFETY: the caller's sixteen floats.
        let (x0, x1) = unsafe { (_mm256_loadu_ps(x), _mm256_loadu_ps(x.add(8))) };
        // Within each 128-bit half: [x0 0 2, x1 0 2 | x0 4 6, x1 4 6]; then the middle
        // quarters swapped to order the columns.
        let order = |v: __m256| {
            _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)))
        };
        let left = order(_mm256_shuffle_ps::<0b10_00_10_00>(x0, x1));
        let right = order(_mm256_shuffle_ps::<0b11_01_11_01>(x0, x1));
        let at = _mm256_add_epi32(_mm256_set1_epi32(base as i32), lanes_twice);
        // `pick`'s test: right > left, or right is NaN.
        let take = _mm256_or_ps(
            _mm256_cmp_ps::<_CMP_GT_OQ>(right, left),
            _mm256_cmp_ps::<_CMP_UNORD_Q>(right, right),
        );
        let right_at = _mm256_add_epi32(at, _mm256_set1_epi32(1));
        (_mm256_blendv_ps(left, right, take), blend_positions(at, right_at, take))
    }

    /// Lanes of `second` where `take` is set, else of `first`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn blend_positions(first: __m256i, second: __m256i, take: __m256) -> __m256i {
        _mm256_castps_si256(_mm256_blendv_ps(
            _mm256_castsi256_ps(first),
            _mm256_castsi256_ps(second),
            take,
        ))
    }

    let src = plane.as_ptr();
    for oh in 0..ho {
        let (top, bottom) = (2 * oh * w, (2 * oh + 1) * w);
        let mut ow = 0;
        while ow < wo {
            let count = (wo - ow).min(8);
            // A partial step reads sixteen values per row where the plane has them (the
            // lanes past its window pick from the next row and are never kept), otherwise
            // copies of its 2 * count inputs, padded.
            let (mut top_copy, mut bottom_copy) = ([0.0f32; 16], [0.0f32; 16]);
            let (t, b) = if count == 8 || bottom + 2 * ow + 16 <= plane.len() {
                // SAFETY: the window rows' sixteen values lie inside the plane (the top row's
                // end before the bottom row's).
                unsafe { (src.add(top + 2 * ow), src.add(bottom + 2 * ow)) }
            } else {
                let inputs = 2 * count;
                top_copy[..inputs].copy_from_slice(&plane[top + 2 * ow..][..inputs]);
                bottom_copy[..inputs].copy_from_slice(&plane[bottom + 2 * ow..][..inputs]);
                (top_copy.as_ptr(), bottom_copy.as_ptr())
            };
            // SAFETY: sixteen floats at each of t and b (in the plane or the copies).
            let ((upper, upper_at), (lower, lower_at)) = unsafe {
                (pairs(t, top + 2 * ow, lanes_twice), pairs(b, bottom + 2 * ow, lanes_twice))
            };
            let take = _mm256_or_ps(
                _mm256_cmp_ps::<_CMP_GT_OQ>(lower, upper),
                _mm256_cmp_ps::<_CMP_UNORD_Q>(lower, lower),
            );
            let value = _mm256_blendv_ps(upper, lower, take);
            let at = blend_positions(upper_at, lower_at, take);
            let (first, second) = (
                _mm256_cvtepi32_epi64(_mm256_castsi256_si128(at)),
                _mm256_cvtepi32_epi64(_mm256_extracti128_si256::<1>(at)),
            );
            let o = oh * wo + ow;
            // A partial step stores eight outputs where the buffers have room: those past
            // this row are the next row's first ones, written again when it comes.
            if count == 8 || o + 8 <= vals.len().min(idxs.len()) {
                // SAFETY: outputs o..o + 8 lie inside `vals` and `idxs`.
                unsafe {
                    _mm256_storeu_ps(vals.as_mut_ptr().add(o), value);
                    _mm256_storeu_si256(idxs.as_mut_ptr().add(o).cast(), first);
                    _mm256_storeu_si256(idxs.as_mut_ptr().add(o + 4).cast(), second);
                }
            } else {
                let (mut v, mut i) = ([0.0f32; 8], [0i64; 8]);
                // SAFETY: stores into the local arrays, of eight values each.
                unsafe {
                    _mm256_storeu_ps(v.as_mut_ptr(), value);
                    _mm256_storeu_si256(i.as_mut_ptr().cast(), first);
                    _mm256_storeu_si256(i.as_mut_ptr().add(4).cast(), second);
                }
                vals[o..o + count].copy_from_slice(&v[..count]);
                idxs[o..o + count].copy_from_slice(&i[..count]);
            }
            ow += count;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The window maximum as PyTorch's CPU kernel scans it: the last NaN in row-major order,
    /// else the first of the largest values.
    fn reference(plane: &[f32], w: usize, oh: usize, ow: usize) -> (f32, i64) {
        let positions = [
            (2 * oh) * w + 2 * ow,
            (2 * oh) * w + 2 * ow + 1,
            (2 * oh + 1) * w + 2 * ow,
            (2 * oh + 1) * w + 2 * ow + 1,
        ];
        if let Some(&p) = positions.iter().rev().find(|&&p| plane[p].is_nan()) {
            return (plane[p], p as i64);
        }
        let best = positions
            .iter()
            .copied()
            .fold(positions[0], |b, p| if plane[p] > plane[b] { p } else { b });
        (plane[best], best as i64)
    }

    /// Every width the vector kernel splits differently (partial vectors, several steps per
    /// row, odd edges), with values drawn from a few levels, signed zeros, infinities and
    /// NaNs, so ties (also between -0 and +0) are common.
    #[test]
    fn kernels_pick_the_first_maximum_and_the_last_nan() {
        let mut seed = 11u64;
        let mut level = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            match (seed >> 40) % 8 {
                4 => f32::NAN,
                5 => -0.0,
                6 => f32::INFINITY,
                7 => f32::NEG_INFINITY,
                l => l as f32 - 1.0,
            }
        };
        for (h, w) in [
            (2, 2),
            (3, 5),
            (4, 14),
            (6, 28),
            (2, 31),
            (4, 32),
            (2, 33),
            (5, 64),
            (2, 70),
            (4, 16),
            (2, 18),
            // Partial steps that read from and store into the rows after their own.
            (6, 6),
            (7, 15),
            (8, 14),
            (14, 14),
        ] {
            let plane: Vec<f32> = (0..h * w).map(|_| level()).collect();
            let (ho, wo) = (h / 2, w / 2);
            let mut fast = (vec![0.0f32; ho * wo], vec![0i64; ho * wo]);
            f32::forward_plane(&plane, (h, w), &mut fast.0, &mut fast.1);
            let mut scalar = (vec![0.0f32; ho * wo], vec![0i64; ho * wo]);
            forward_plane_scalar(&plane, (h, w), &mut scalar.0, &mut scalar.1);
            // The AVX2 form too where AVX-512 would take the dispatch.
            let mut narrow = scalar.clone();
            #[cfg(target_arch = "x86_64")]
            if crate::simd::avx2_enabled() {
                // SAFETY: the CPU has AVX2; the slices hold the plane and its outputs.
                unsafe { forward_plane_avx2(&plane, (h, w), &mut narrow.0, &mut narrow.1) };
            }
            for oh in 0..ho {
                for ow in 0..wo {
                    let (v, at) = reference(&plane, w, oh, ow);
                    let o = oh * wo + ow;
                    for (kernel, (vals, idxs)) in
                        [("dispatched", &fast), ("scalar", &scalar), ("AVX2", &narrow)]
                    {
                        assert_eq!(
                            idxs[o], at,
                            "{kernel} kernel, {h}x{w} plane, output ({oh}, {ow})"
                        );
                        assert!(
                            vals[o].to_bits() == v.to_bits(),
                            "{kernel} kernel, {h}x{w}, output ({oh}, {ow})"
                        );
                    }
                }
            }
        }
    }
}
