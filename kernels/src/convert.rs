//! bf16 / f16 <-> f32 conversion of slices (round-to-nearest-even, as `half`).
//!
//! Every path gives exactly `half`'s bits, NaN payloads included. f16 uses
//! the hardware conversions (AVX-512F's zmm forms, or F16C next to AVX2 —
//! `Isa` does not cover F16C, so that path checks for it); bf16 is integer
//! arithmetic on the f32 bit patterns. Tails shorter than a vector go
//! through `half` itself.

use half::slice::HalfFloatSliceExt;
/// The element types of this module's API, re-exported so that callers need
/// not depend on `half` themselves.
pub use half::{bf16, f16};

use crate::{simd, Isa};

#[cfg(target_arch = "x86_64")]
fn has_f16c() -> bool {
    is_x86_feature_detected!("f16c")
}

pub fn f32_to_bf16(src: &[f32], dst: &mut [bf16]) {
    f32_to_bf16_with(Isa::active(), src, dst)
}
/// As [`f32_to_bf16`], on an explicit ISA path (panics if the CPU lacks it).
pub fn f32_to_bf16_with(isa: Isa, src: &[f32], dst: &mut [bf16]) {
    assert_eq!(src.len(), dst.len(), "f32_to_bf16: lengths differ");
    let bits = dst.reinterpret_cast_mut();
    let done = match simd::path::<f32>(isa) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `path` returned this ISA, so the CPU runs it.
        Some(Isa::Avx512) => unsafe { avx512::f32_to_bf16(src, bits) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Some(Isa::Avx2Fma) => unsafe { avx2::f32_to_bf16(src, bits) },
        _ => 0,
    };
    for (d, &s) in dst[done..].iter_mut().zip(&src[done..]) {
        *d = bf16::from_f32(s);
    }
}

pub fn bf16_to_f32(src: &[bf16], dst: &mut [f32]) {
    bf16_to_f32_with(Isa::active(), src, dst)
}
/// As [`bf16_to_f32`], on an explicit ISA path (panics if the CPU lacks it).
pub fn bf16_to_f32_with(isa: Isa, src: &[bf16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "bf16_to_f32: lengths differ");
    let bits = src.reinterpret_cast();
    let done = match simd::path::<f32>(isa) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `path` returned this ISA, so the CPU runs it.
        Some(Isa::Avx512) => unsafe { avx512::bf16_to_f32(bits, dst) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Some(Isa::Avx2Fma) => unsafe { avx2::bf16_to_f32(bits, dst) },
        _ => 0,
    };
    for (d, &s) in dst[done..].iter_mut().zip(&src[done..]) {
        *d = s.to_f32();
    }
}

pub fn f32_to_f16(src: &[f32], dst: &mut [f16]) {
    f32_to_f16_with(Isa::active(), src, dst)
}
/// As [`f32_to_f16`], on an explicit ISA path (panics if the CPU lacks it).
/// The AVX2 path falls back to `half` on CPUs without F16C.
pub fn f32_to_f16_with(isa: Isa, src: &[f32], dst: &mut [f16]) {
    assert_eq!(src.len(), dst.len(), "f32_to_f16: lengths differ");
    let bits = dst.reinterpret_cast_mut();
    let done = match simd::path::<f32>(isa) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `path` returned this ISA, so the CPU runs it.
        Some(Isa::Avx512) => unsafe { avx512::f32_to_f16(src, bits) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `path` vouches for AVX2+FMA, and F16C was just detected.
        Some(Isa::Avx2Fma) if has_f16c() => unsafe { avx2::f32_to_f16(src, bits) },
        _ => 0,
    };
    for (d, &s) in dst[done..].iter_mut().zip(&src[done..]) {
        *d = f16::from_f32(s);
    }
}

pub fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
    f16_to_f32_with(Isa::active(), src, dst)
}
/// As [`f16_to_f32`], on an explicit ISA path (panics if the CPU lacks it).
/// The AVX2 path falls back to `half` on CPUs without F16C.
pub fn f16_to_f32_with(isa: Isa, src: &[f16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "f16_to_f32: lengths differ");
    let bits = src.reinterpret_cast();
    let done = match simd::path::<f32>(isa) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `path` returned this ISA, so the CPU runs it.
        Some(Isa::Avx512) => unsafe { avx512::f16_to_f32(bits, dst) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `path` vouches for AVX2+FMA, and F16C was just detected.
        Some(Isa::Avx2Fma) if has_f16c() => unsafe { avx2::f16_to_f32(bits, dst) },
        _ => 0,
    };
    for (d, &s) in dst[done..].iter_mut().zip(&src[done..]) {
        *d = s.to_f32();
    }
}

// The kernels below convert whole vectors only and return how many elements
// they did; the caller finishes the tail with `half`.
//
// f32 → bf16 follows `half`: NaN keeps its top mantissa bits and gets the
// quiet bit (0x40) set; everything else rounds to nearest even by adding
// 0x7FFF plus the lowest kept bit before truncating (which also rounds
// values above bf16::MAX to infinity). bf16 → f32 is a 16-bit shift, again
// with the quiet bit set on NaN as `half` does.

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use crate::simd::avx512::{load, store, LANES};

    #[target_feature(enable = "avx512f")]
    fn load_u16(s: &[u16]) -> __m256i {
        assert!(s.len() >= LANES);
        // SAFETY: the assert keeps all 16 elements (256 bits) inside `s`;
        // loadu has no alignment requirement.
        unsafe { _mm256_loadu_si256(s.as_ptr().cast()) }
    }

    #[target_feature(enable = "avx512f")]
    fn store_u16(s: &mut [u16], v: __m256i) {
        assert!(s.len() >= LANES);
        // SAFETY: as in `load_u16`.
        unsafe { _mm256_storeu_si256(s.as_mut_ptr().cast(), v) }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn f32_to_bf16(src: &[f32], dst: &mut [u16]) -> usize {
        let mut n = 0;
        for (s, d) in src.chunks_exact(LANES).zip(dst.chunks_exact_mut(LANES)) {
            let bits = _mm512_castps_si512(load(s));
            let kept_lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(1));
            let bias = _mm512_add_epi32(kept_lsb, _mm512_set1_epi32(0x7FFF));
            let rounded = _mm512_srli_epi32::<16>(_mm512_add_epi32(bits, bias));
            let magnitude = _mm512_and_si512(bits, _mm512_set1_epi32(0x7FFF_FFFF));
            let nan = _mm512_cmpgt_epi32_mask(magnitude, _mm512_set1_epi32(0x7F80_0000));
            let quiet = _mm512_or_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(0x40));
            store_u16(d, _mm512_cvtepi32_epi16(_mm512_mask_mov_epi32(rounded, nan, quiet)));
            n += LANES;
        }
        n
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn bf16_to_f32(src: &[u16], dst: &mut [f32]) -> usize {
        let mut n = 0;
        for (s, d) in src.chunks_exact(LANES).zip(dst.chunks_exact_mut(LANES)) {
            let h = _mm512_cvtepu16_epi32(load_u16(s));
            let nan =
                _mm512_cmpgt_epi32_mask(_mm512_and_si512(h, _mm512_set1_epi32(0x7FFF)), _mm512_set1_epi32(0x7F80));
            let h = _mm512_mask_or_epi32(h, nan, h, _mm512_set1_epi32(0x40));
            store(d, _mm512_castsi512_ps(_mm512_slli_epi32::<16>(h)));
            n += LANES;
        }
        n
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn f32_to_f16(src: &[f32], dst: &mut [u16]) -> usize {
        let mut n = 0;
        for (s, d) in src.chunks_exact(LANES).zip(dst.chunks_exact_mut(LANES)) {
            // The rounding immediate `half` itself passes to F16C.
            store_u16(d, _mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(load(s)));
            n += LANES;
        }
        n
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn f16_to_f32(src: &[u16], dst: &mut [f32]) -> usize {
        let mut n = 0;
        for (s, d) in src.chunks_exact(LANES).zip(dst.chunks_exact_mut(LANES)) {
            store(d, _mm512_cvtph_ps(load_u16(s)));
            n += LANES;
        }
        n
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use crate::simd::avx2::{load, store, LANES};

    /// 8 u16 (128 bits) from the front of `s`.
    #[target_feature(enable = "avx2,fma")]
    fn load_u16x8(s: &[u16]) -> __m128i {
        assert!(s.len() >= 8);
        // SAFETY: the assert keeps all 8 elements inside `s`; loadu has no
        // alignment requirement.
        unsafe { _mm_loadu_si128(s.as_ptr().cast()) }
    }

    #[target_feature(enable = "avx2,fma")]
    fn store_u16x8(s: &mut [u16], v: __m128i) {
        assert!(s.len() >= 8);
        // SAFETY: as in `load_u16x8`.
        unsafe { _mm_storeu_si128(s.as_mut_ptr().cast(), v) }
    }

    #[target_feature(enable = "avx2,fma")]
    fn store_u16x16(s: &mut [u16], v: __m256i) {
        assert!(s.len() >= 16);
        // SAFETY: the assert keeps all 16 elements (256 bits) inside `s`.
        unsafe { _mm256_storeu_si256(s.as_mut_ptr().cast(), v) }
    }

    /// The bf16 bits of 8 f32, one per 32-bit lane.
    #[target_feature(enable = "avx2,fma")]
    fn bf16_bits(v: __m256) -> __m256i {
        let bits = _mm256_castps_si256(v);
        let kept_lsb = _mm256_and_si256(_mm256_srli_epi32::<16>(bits), _mm256_set1_epi32(1));
        let bias = _mm256_add_epi32(kept_lsb, _mm256_set1_epi32(0x7FFF));
        let rounded = _mm256_srli_epi32::<16>(_mm256_add_epi32(bits, bias));
        let magnitude = _mm256_and_si256(bits, _mm256_set1_epi32(0x7FFF_FFFF));
        let nan = _mm256_cmpgt_epi32(magnitude, _mm256_set1_epi32(0x7F80_0000));
        let quiet = _mm256_or_si256(_mm256_srli_epi32::<16>(bits), _mm256_set1_epi32(0x40));
        _mm256_blendv_epi8(rounded, quiet, nan)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn f32_to_bf16(src: &[f32], dst: &mut [u16]) -> usize {
        let mut n = 0;
        for (s, d) in src.chunks_exact(2 * LANES).zip(dst.chunks_exact_mut(2 * LANES)) {
            let (lo, hi) = (bf16_bits(load(s)), bf16_bits(load(&s[LANES..])));
            // packus narrows within 128-bit halves (lo0-3 hi0-3 lo4-7 hi4-7);
            // the permute puts the four 64-bit groups back in order. Lanes
            // are ≤ 0xFFFF, so the unsigned saturation never triggers.
            let packed = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi32(lo, hi));
            store_u16x16(d, packed);
            n += 2 * LANES;
        }
        n
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn bf16_to_f32(src: &[u16], dst: &mut [f32]) -> usize {
        let mut n = 0;
        for (s, d) in src.chunks_exact(LANES).zip(dst.chunks_exact_mut(LANES)) {
            let h = _mm256_cvtepu16_epi32(load_u16x8(s));
            let nan = _mm256_cmpgt_epi32(_mm256_and_si256(h, _mm256_set1_epi32(0x7FFF)), _mm256_set1_epi32(0x7F80));
            let h = _mm256_or_si256(h, _mm256_and_si256(nan, _mm256_set1_epi32(0x40)));
            store(d, _mm256_castsi256_ps(_mm256_slli_epi32::<16>(h)));
            n += LANES;
        }
        n
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn f32_to_f16(src: &[f32], dst: &mut [u16]) -> usize {
        let mut n = 0;
        for (s, d) in src.chunks_exact(LANES).zip(dst.chunks_exact_mut(LANES)) {
            // The rounding immediate `half` itself passes to F16C.
            store_u16x8(d, _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(load(s)));
            n += LANES;
        }
        n
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn f16_to_f32(src: &[u16], dst: &mut [f32]) -> usize {
        let mut n = 0;
        for (s, d) in src.chunks_exact(LANES).zip(dst.chunks_exact_mut(LANES)) {
            store(d, _mm256_cvtph_ps(load_u16x8(s)));
            n += LANES;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::testing::{simd_isas, Rng, SIZES, SPECIALS};
    use proptest::prelude::*;

    /// f32 inputs covering every rounding case: exact halves (ties to even
    /// both ways), one bit either side, f16 subnormals and overflow, NaN
    /// payloads that vanish on truncation, and random bit patterns.
    fn f32_inputs(rng: &mut Rng) -> Vec<f32> {
        let mut xs: Vec<f32> = SPECIALS.to_vec();
        for base in [0x3F80_0000u32, 0x3F81_0000, 0x4780_0000, 0x0001_0000, 0x7F7F_0000, 0x3880_0000, 0x3380_0000] {
            for low in [0x7FFF, 0x8000, 0x8001, 0x0FFF, 0x1000, 0x1001, 0x2000, 0xFFFF] {
                xs.push(f32::from_bits(base | low));
                xs.push(f32::from_bits((base | low) ^ 0x8000_0000));
            }
        }
        xs.extend([0x7F80_0001u32, 0x7F80_1000, 0xFF80_0001, 0x7FC0_0000, 0x7FBF_FFFF].map(f32::from_bits));
        xs.extend((0..200_000).map(|_| f32::from_bits(rng.next_u64() as u32)));
        xs.extend(rng.vec_f32(50_000, -70_000.0, 70_000.0));
        xs
    }

    fn check_to_half(src: &[f32]) {
        let bf_want: Vec<u16> = src.iter().map(|&v| bf16::from_f32(v).to_bits()).collect();
        let f16_want: Vec<u16> = src.iter().map(|&v| f16::from_f32(v).to_bits()).collect();
        for isa in Isa::all_available() {
            let mut bf = vec![bf16::ZERO; src.len()];
            f32_to_bf16_with(isa, src, &mut bf);
            let mut h = vec![f16::ZERO; src.len()];
            f32_to_f16_with(isa, src, &mut h);
            for i in 0..src.len() {
                assert_eq!(bf[i].to_bits(), bf_want[i], "{} bf16 of {:#010x}", isa.name(), src[i].to_bits());
                assert_eq!(h[i].to_bits(), f16_want[i], "{} f16 of {:#010x}", isa.name(), src[i].to_bits());
            }
        }
    }

    #[test]
    fn f32_to_half_is_bit_identical_to_half() {
        let xs = f32_inputs(&mut Rng::new(41));
        check_to_half(&xs);
        for &n in SIZES {
            check_to_half(&xs[..n]);
        }
    }

    #[test]
    fn every_half_bit_pattern_widens_like_half() {
        let all: Vec<u16> = (0..=u16::MAX).collect();
        let bf: Vec<bf16> = all.iter().map(|&b| bf16::from_bits(b)).collect();
        let h: Vec<f16> = all.iter().map(|&b| f16::from_bits(b)).collect();
        for isa in Isa::all_available() {
            for &n in SIZES.iter().chain(&[all.len()]) {
                let mut out = vec![0.0f32; n];
                bf16_to_f32_with(isa, &bf[..n], &mut out);
                for (o, b) in out.iter().zip(&bf) {
                    assert_eq!(o.to_bits(), b.to_f32().to_bits(), "{} bf16 {:#06x}", isa.name(), b.to_bits());
                }
                f16_to_f32_with(isa, &h[..n], &mut out);
                for (o, b) in out.iter().zip(&h) {
                    assert_eq!(o.to_bits(), b.to_f32().to_bits(), "{} f16 {:#06x}", isa.name(), b.to_bits());
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn random_bit_patterns_round_like_half(bits in prop::collection::vec(any::<u32>(), 0..100)) {
            let src: Vec<f32> = bits.into_iter().map(f32::from_bits).collect();
            for isa in simd_isas() {
                let mut bf = vec![bf16::ZERO; src.len()];
                f32_to_bf16_with(isa, &src, &mut bf);
                let mut h = vec![f16::ZERO; src.len()];
                f32_to_f16_with(isa, &src, &mut h);
                for (i, &s) in src.iter().enumerate() {
                    prop_assert_eq!(bf[i].to_bits(), bf16::from_f32(s).to_bits());
                    prop_assert_eq!(h[i].to_bits(), f16::from_f32(s).to_bits());
                }
            }
        }
    }
}
