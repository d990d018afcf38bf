//! The vector operations the hand-written kernels use, one module per instruction set and
//! float type: the same names over 512-bit (AVX-512) or 256-bit (AVX2 with FMA) registers,
//! so that one kernel body, written in a macro over `$ops`, is compiled for both (the
//! implicit GEMM, Winograd's transforms).
//!
//! Every function carries its module's target features, so inside a function compiled
//! for the same features it inlines to one instruction (or a few, for the masks).

macro_rules! vector_ops {
    ($name:ident, $feature:literal, $t:ty, $vec:ty, $mask:ty, $lanes:literal,
     $zero:ident, $set1:ident, $loadu:ident, $storeu:ident,
     $fmadd:ident, $add:ident, $sub:ident, $mul:ident,
     tail_mask: |$tail:ident| $tail_mask:expr,
     load_masked: |$lp:ident, $lm:ident| $load_masked:expr,
     store_masked: |$sp:ident, $sm:ident, $sv:ident| $store_masked:expr,
     any_nan: |$nv:ident| $any_nan:expr) => {
        #[allow(dead_code)] // each kernel uses the operations it needs
        pub(crate) mod $name {
            use std::arch::x86_64::*;
            pub type Vector = $vec;
            pub type Mask = $mask;
            /// Elements per vector.
            pub const LANES: usize = $lanes;

            #[inline]
            #[target_feature(enable = $feature)]
            pub fn zero() -> Vector {
                $zero()
            }

            #[inline]
            #[target_feature(enable = $feature)]
            pub fn splat(x: $t) -> Vector {
                $set1(x)
            }

            /// `a * b + c`, rounded once.
            #[inline]
            #[target_feature(enable = $feature)]
            pub fn fmadd(a: Vector, b: Vector, c: Vector) -> Vector {
                $fmadd(a, b, c)
            }

            #[inline]
            #[target_feature(enable = $feature)]
            pub fn add(a: Vector, b: Vector) -> Vector {
                $add(a, b)
            }

            #[inline]
            #[target_feature(enable = $feature)]
            pub fn sub(a: Vector, b: Vector) -> Vector {
                $sub(a, b)
            }

            #[inline]
            #[target_feature(enable = $feature)]
            pub fn mul(a: Vector, b: Vector) -> Vector {
                $mul(a, b)
            }

            /// Whether any lane is NaN.
            #[inline]
            #[target_feature(enable = $feature)]
            pub fn any_nan($nv: Vector) -> bool {
                $any_nan
            }

            /// # Safety
            /// `LANES` elements from `p` must be readable.
            #[inline]
            #[target_feature(enable = $feature)]
            pub unsafe fn load(p: *const $t) -> Vector {
                // SAFETY: forwarded from the caller.
                unsafe { $loadu(p) }
            }

            /// # Safety
            /// `LANES` elements from `p` must be writable.
            #[inline]
            #[target_feature(enable = $feature)]
            pub unsafe fn store(p: *mut $t, v: Vector) {
                // SAFETY: forwarded from the caller.
                unsafe { $storeu(p, v) }
            }

            /// The first `count` lanes (1 to `LANES`).
            #[inline]
            #[target_feature(enable = $feature)]
            pub fn tail_mask($tail: usize) -> Mask {
                $tail_mask
            }

            /// The lanes of `mask` from `p`, zero elsewhere (lanes outside are not read).
            ///
            /// # Safety
            /// Every lane of `mask` must be readable from `p`.
            #[inline]
            #[target_feature(enable = $feature)]
            pub unsafe fn load_masked($lp: *const $t, $lm: Mask) -> Vector {
                // SAFETY: forwarded from the caller.
                unsafe { $load_masked }
            }

            /// Stores the lanes of `mask` (lanes outside are not written).
            ///
            /// # Safety
            /// Every lane of `mask` must be writable from `p`.
            #[inline]
            #[target_feature(enable = $feature)]
            pub unsafe fn store_masked($sp: *mut $t, $sm: Mask, $sv: Vector) {
                // SAFETY: forwarded from the caller.
                unsafe { $store_masked }
            }
        }
    };
}

vector_ops!(avx512_f32, "avx512f", f32, __m512, __mmask16, 16,
    _mm512_setzero_ps, _mm512_set1_ps, _mm512_loadu_ps, _mm512_storeu_ps,
    _mm512_fmadd_ps, _mm512_add_ps, _mm512_sub_ps, _mm512_mul_ps,
    tail_mask: |count| if count >= 16 { !0 } else { (1 << count) - 1 },
    load_masked: |p, mask| _mm512_maskz_loadu_ps(mask, p),
    store_masked: |p, mask, v| _mm512_mask_storeu_ps(p, mask, v),
    any_nan: |v| _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v) != 0);
vector_ops!(avx512_f64, "avx512f", f64, __m512d, __mmask8, 8,
    _mm512_setzero_pd, _mm512_set1_pd, _mm512_loadu_pd, _mm512_storeu_pd,
    _mm512_fmadd_pd, _mm512_add_pd, _mm512_sub_pd, _mm512_mul_pd,
    tail_mask: |count| if count >= 8 { !0 } else { (1 << count) - 1 },
    load_masked: |p, mask| _mm512_maskz_loadu_pd(mask, p),
    store_masked: |p, mask, v| _mm512_mask_storeu_pd(p, mask, v),
    any_nan: |v| _mm512_cmp_pd_mask::<_CMP_UNORD_Q>(v, v) != 0);
vector_ops!(avx2_f32, "avx2,fma", f32, __m256, __m256i, 8,
    _mm256_setzero_ps, _mm256_set1_ps, _mm256_loadu_ps, _mm256_storeu_ps,
    _mm256_fmadd_ps, _mm256_add_ps, _mm256_sub_ps, _mm256_mul_ps,
    tail_mask: |count| _mm256_cmpgt_epi32(
        _mm256_set1_epi32(count as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)
    ),
    load_masked: |p, mask| _mm256_maskload_ps(p, mask),
    store_masked: |p, mask, v| _mm256_maskstore_ps(p, mask, v),
    any_nan: |v| _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_UNORD_Q>(v, v)) != 0);
vector_ops!(avx2_f64, "avx2,fma", f64, __m256d, __m256i, 4,
    _mm256_setzero_pd, _mm256_set1_pd, _mm256_loadu_pd, _mm256_storeu_pd,
    _mm256_fmadd_pd, _mm256_add_pd, _mm256_sub_pd, _mm256_mul_pd,
    tail_mask: |count| _mm256_cmpgt_epi64(
        _mm256_set1_epi64x(count as i64),
        _mm256_setr_epi64x(0, 1, 2, 3)
    ),
    load_masked: |p, mask| _mm256_maskload_pd(p, mask),
    store_masked: |p, mask, v| _mm256_maskstore_pd(p, mask, v),
    any_nan: |v| _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_UNORD_Q>(v, v)) != 0);
