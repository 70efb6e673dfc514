//! AVX-512F primitives on 16 f32 lanes (zmm), for Zen4-class CPUs. Only
//! AVX-512F instructions: no DQ/BW/VL, so the path runs on every AVX-512 CPU.

use std::arch::x86_64::*;

pub(crate) type V = __m512;
/// One bit per lane.
pub(crate) type M = __mmask16;
pub(crate) const LANES: usize = 16;

const SIGN_BIT: i32 = i32::MIN;

isa_fns! { "avx512f";
    fn splat(v: f32) -> V { _mm512_set1_ps(v) }
    fn zero() -> V { _mm512_setzero_ps() }
    fn add(a: V, b: V) -> V { _mm512_add_ps(a, b) }
    fn sub(a: V, b: V) -> V { _mm512_sub_ps(a, b) }
    fn mul(a: V, b: V) -> V { _mm512_mul_ps(a, b) }
    fn div(a: V, b: V) -> V { _mm512_div_ps(a, b) }
    /// a·b + c, rounded once.
    fn fmadd(a: V, b: V, c: V) -> V { _mm512_fmadd_ps(a, b, c) }
    /// a·b − c, rounded once.
    fn fmsub(a: V, b: V, c: V) -> V { _mm512_fmsub_ps(a, b, c) }
    /// c − a·b, rounded once.
    fn fnmadd(a: V, b: V, c: V) -> V { _mm512_fnmadd_ps(a, b, c) }
    /// `a < b ? a : b`: `b` when either is NaN.
    fn min(a: V, b: V) -> V { _mm512_min_ps(a, b) }
    /// `a > b ? a : b`: `b` when either is NaN.
    fn max(a: V, b: V) -> V { _mm512_max_ps(a, b) }
    fn abs(a: V) -> V { _mm512_abs_ps(a) }
    fn neg(a: V) -> V {
        _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a), _mm512_set1_epi32(SIGN_BIT)))
    }
    /// `a` with its sign flipped where `s` is negative.
    fn xor_sign(a: V, s: V) -> V {
        let sign = _mm512_and_si512(_mm512_castps_si512(s), _mm512_set1_epi32(SIGN_BIT));
        _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a), sign))
    }
    /// Nearest integer, ties to even.
    fn round(a: V) -> V { _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a) }
    fn lt(a: V, b: V) -> M { _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, b) }
    fn eq(a: V, b: V) -> M { _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(a, b) }
    /// !(a >= b): also set where either is NaN.
    fn nge(a: V, b: V) -> M { _mm512_cmp_ps_mask::<_CMP_NGE_UQ>(a, b) }
    fn is_nan(a: V) -> M { _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(a, a) }
    /// `a` in the lanes set in `m`, `b` elsewhere.
    fn select(m: M, a: V, b: V) -> V { _mm512_mask_blend_ps(m, b, a) }
    fn any(m: M) -> bool { m != 0 }
    /// The first `n` lanes, n ≤ LANES: the partial loads' and stores' mask.
    fn tail_mask(n: usize) -> M {
        debug_assert!(n <= LANES);
        ((1u32 << n) - 1) as M
    }
    fn hsum(a: V) -> f32 { _mm512_reduce_add_ps(a) }
    fn hmax(a: V) -> f32 { _mm512_reduce_max_ps(a) }
    /// p·2ⁿ for integral n, rounded once (into the subnormals, or to ±inf).
    fn pow2i(p: V, n: V) -> V { _mm512_scalef_ps(p, n) }
    /// (e, m) with x = m·2ᵉ and m ∈ [1, 2), for finite x > 0 (subnormals
    /// included); other inputs give unspecified lanes.
    fn log_split(x: V) -> (V, V) {
        (_mm512_getexp_ps(x), _mm512_getmant_ps::<_MM_MANT_NORM_1_2, _MM_MANT_SIGN_ZERO>(x))
    }
    /// The first LANES elements of `s`.
    fn load(s: &[f32]) -> V {
        assert!(s.len() >= LANES);
        // SAFETY: the assert keeps all 16 lanes inside `s`; loadu has no
        // alignment requirement.
        unsafe { _mm512_loadu_ps(s.as_ptr()) }
    }
    /// Writes the first LANES elements of `s`.
    fn store(s: &mut [f32], v: V) {
        assert!(s.len() >= LANES);
        // SAFETY: as in `load`, all 16 lanes are inside `s`.
        unsafe { _mm512_storeu_ps(s.as_mut_ptr(), v) }
    }
    /// `s` (shorter than a vector) in the low lanes, `fill` in the others.
    fn load_partial(s: &[f32], fill: f32) -> V {
        assert!(s.len() < LANES);
        // SAFETY: the mask selects exactly the lanes inside `s`; masked-off
        // lanes are not accessed and cannot fault.
        unsafe { _mm512_mask_loadu_ps(splat(fill), tail_mask(s.len()), s.as_ptr()) }
    }
    /// Writes the low `s.len()` (< LANES) lanes of `v` to `s`.
    fn store_partial(s: &mut [f32], v: V) {
        assert!(s.len() < LANES);
        // SAFETY: as in `load_partial`, only lanes inside `s` are written.
        unsafe { _mm512_mask_storeu_ps(s.as_mut_ptr(), tail_mask(s.len()), v) }
    }
}

simd_common!("avx512f");
