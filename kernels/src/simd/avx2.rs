//! AVX2 + FMA primitives on 8 f32 lanes (ymm), for Zen3-class CPUs.

use std::arch::x86_64::*;

pub(crate) type V = __m256;
/// All-ones or all-zeros in each lane.
pub(crate) type M = __m256;
pub(crate) const LANES: usize = 8;

isa_fns! { "avx2,fma";
    fn splat(v: f32) -> V { _mm256_set1_ps(v) }
    fn zero() -> V { _mm256_setzero_ps() }
    fn add(a: V, b: V) -> V { _mm256_add_ps(a, b) }
    fn sub(a: V, b: V) -> V { _mm256_sub_ps(a, b) }
    fn mul(a: V, b: V) -> V { _mm256_mul_ps(a, b) }
    fn div(a: V, b: V) -> V { _mm256_div_ps(a, b) }
    /// a·b + c, rounded once.
    fn fmadd(a: V, b: V, c: V) -> V { _mm256_fmadd_ps(a, b, c) }
    /// a·b − c, rounded once.
    fn fmsub(a: V, b: V, c: V) -> V { _mm256_fmsub_ps(a, b, c) }
    /// c − a·b, rounded once.
    fn fnmadd(a: V, b: V, c: V) -> V { _mm256_fnmadd_ps(a, b, c) }
    /// `a < b ? a : b`: `b` when either is NaN.
    fn min(a: V, b: V) -> V { _mm256_min_ps(a, b) }
    /// `a > b ? a : b`: `b` when either is NaN.
    fn max(a: V, b: V) -> V { _mm256_max_ps(a, b) }
    fn abs(a: V) -> V { _mm256_andnot_ps(_mm256_set1_ps(-0.0), a) }
    fn neg(a: V) -> V { _mm256_xor_ps(a, _mm256_set1_ps(-0.0)) }
    /// `a` with its sign flipped where `s` is negative.
    fn xor_sign(a: V, s: V) -> V { _mm256_xor_ps(a, _mm256_and_ps(s, _mm256_set1_ps(-0.0))) }
    /// Nearest integer, ties to even.
    fn round(a: V) -> V { _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(a) }
    fn lt(a: V, b: V) -> M { _mm256_cmp_ps::<_CMP_LT_OQ>(a, b) }
    fn eq(a: V, b: V) -> M { _mm256_cmp_ps::<_CMP_EQ_OQ>(a, b) }
    /// !(a >= b): also set where either is NaN.
    fn nge(a: V, b: V) -> M { _mm256_cmp_ps::<_CMP_NGE_UQ>(a, b) }
    fn is_nan(a: V) -> M { _mm256_cmp_ps::<_CMP_UNORD_Q>(a, a) }
    /// `a` in the lanes set in `m`, `b` elsewhere.
    fn select(m: M, a: V, b: V) -> V { _mm256_blendv_ps(b, a, m) }
    fn any(m: M) -> bool { _mm256_movemask_ps(m) != 0 }
    fn hsum(a: V) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }
    fn hmax(a: V) -> f32 {
        let s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
        let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)))
    }
    /// p·2ⁿ for integral n ∈ [−252, 254], rounded once (into the subnormals,
    /// or to ±inf). 2ⁿ itself may not be a normal f32, so it is applied as
    /// two normal factors 2^⌊n/2⌋·2^⌈n/2⌉; the first product is exact.
    fn pow2i(p: V, n: V) -> V {
        let n = _mm256_cvtps_epi32(n);
        let lo = _mm256_srai_epi32::<1>(n);
        let hi = _mm256_sub_epi32(n, lo);
        let bias = _mm256_set1_epi32(127);
        let s_lo = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(lo, bias)));
        let s_hi = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(hi, bias)));
        _mm256_mul_ps(_mm256_mul_ps(p, s_lo), s_hi)
    }
    /// (e, m) with x = m·2ᵉ and m ∈ [1, 2), for finite x > 0 (subnormals
    /// included, by scaling them by 2²³ first); other inputs give
    /// unspecified lanes.
    fn log_split(x: V) -> (V, V) {
        let tiny = lt(x, splat(f32::MIN_POSITIVE));
        let x = select(tiny, mul(x, splat(8388608.0)), x);
        let bits = _mm256_castps_si256(x);
        let e = _mm256_sub_epi32(_mm256_srli_epi32::<23>(bits), _mm256_set1_epi32(127));
        let e = sub(_mm256_cvtepi32_ps(e), _mm256_and_ps(tiny, splat(23.0)));
        let mantissa = _mm256_and_si256(bits, _mm256_set1_epi32(0x007F_FFFF));
        let m = _mm256_castsi256_ps(_mm256_or_si256(mantissa, _mm256_set1_epi32(0x3F80_0000)));
        (e, m)
    }
    /// The first LANES elements of `s`.
    fn load(s: &[f32]) -> V {
        assert!(s.len() >= LANES);
        // SAFETY: the assert keeps all 8 lanes inside `s`; loadu has no
        // alignment requirement.
        unsafe { _mm256_loadu_ps(s.as_ptr()) }
    }
    /// Writes the first LANES elements of `s`.
    fn store(s: &mut [f32], v: V) {
        assert!(s.len() >= LANES);
        // SAFETY: as in `load`, all 8 lanes are inside `s`.
        unsafe { _mm256_storeu_ps(s.as_mut_ptr(), v) }
    }
    /// `s` (shorter than a vector) in the low lanes, `fill` in the others.
    /// Through a stack buffer: AVX2's masked moves are slow on AMD.
    fn load_partial(s: &[f32], fill: f32) -> V {
        let mut buf = [fill; LANES];
        buf[..s.len()].copy_from_slice(s);
        load(&buf)
    }
    /// Writes the low `s.len()` (< LANES) lanes of `v` to `s`.
    fn store_partial(s: &mut [f32], v: V) {
        let mut buf = [0.0; LANES];
        store(&mut buf, v);
        let n = s.len();
        s.copy_from_slice(&buf[..n]);
    }
}

simd_common!("avx2,fma");
