//! Reductions over contiguous slices, and the elementwise level-1 kernels
//! (axpy, scale, same-length binary ops) that the tensor layer maps onto.
//!
//! Sums are pairwise over blocks, each block summed with interleaved
//! accumulators: on long slices the rounding error grows with log(n) instead
//! of n. The SIMD paths differ from the scalar one only in summation order.

use std::ops::Range;

use crate::simd::{f32s, f32s_mut};
use crate::{simd, Float, Isa};

/// Block lengths for [`pairwise`]. Either way each accumulator lane adds up
/// at most 64 terms per block (the SIMD paths have 32 or 64 lanes of
/// accumulators, the scalar path 4), and a SIMD block is long enough to
/// amortise its horizontal sum.
const SIMD_BLOCK: usize = 2048;
const SCALAR_BLOCK: usize = 256;

/// Σ block(r) over `range` split in halves down to `len` elements. The split
/// points are multiples of 64 elements so that SIMD blocks stay whole.
fn pairwise<T: Float>(range: Range<usize>, len: usize, block: &impl Fn(Range<usize>) -> T) -> T {
    if range.len() <= len {
        return block(range);
    }
    let mid = range.start + range.len() / 2 / 64 * 64;
    pairwise(range.start..mid, len, block) + pairwise(mid..range.end, len, block)
}

/// Σ term(a[i], b[i]) with four interleaved accumulators: the scalar block.
fn sum_terms<T: Float>(a: &[T], b: &[T], term: impl Fn(T, T) -> T) -> T {
    let mut acc = [T::ZERO; 4];
    let (mut ac, mut bc) = (a.chunks_exact(4), b.chunks_exact(4));
    for (a, b) in (&mut ac).zip(&mut bc) {
        for k in 0..4 {
            acc[k] += term(a[k], b[k]);
        }
    }
    let tail: T = ac.remainder().iter().zip(bc.remainder()).map(|(&a, &b)| term(a, b)).sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

pub fn sum<T: Float>(x: &[T]) -> T {
    sum_with(Isa::active(), x)
}
pub fn sum_with<T: Float>(isa: Isa, x: &[T]) -> T {
    match simd::path::<T>(isa) {
        #[cfg(target_arch = "x86_64")]
        Some(Isa::Avx512) => {
            let x = f32s(x);
            // SAFETY: `path` returned this ISA, so the CPU runs it.
            T::from_f64(pairwise(0..x.len(), SIMD_BLOCK, &|r| unsafe { avx512::sum(&x[r]) }) as f64)
        }
        #[cfg(target_arch = "x86_64")]
        Some(Isa::Avx2Fma) => {
            let x = f32s(x);
            // SAFETY: `path` returned this ISA, so the CPU runs it.
            T::from_f64(pairwise(0..x.len(), SIMD_BLOCK, &|r| unsafe { avx2::sum(&x[r]) }) as f64)
        }
        _ => pairwise(0..x.len(), SCALAR_BLOCK, &|r| sum_terms(&x[r.clone()], &x[r], |v, _| v)),
    }
}

/// Σ x².
pub fn sum_sq<T: Float>(x: &[T]) -> T {
    sum_sq_with(Isa::active(), x)
}
pub fn sum_sq_with<T: Float>(isa: Isa, x: &[T]) -> T {
    match simd::path::<T>(isa) {
        #[cfg(target_arch = "x86_64")]
        Some(Isa::Avx512) => {
            let x = f32s(x);
            // SAFETY: `path` returned this ISA, so the CPU runs it.
            T::from_f64(pairwise(0..x.len(), SIMD_BLOCK, &|r| unsafe { avx512::sum_sq(&x[r]) }) as f64)
        }
        #[cfg(target_arch = "x86_64")]
        Some(Isa::Avx2Fma) => {
            let x = f32s(x);
            // SAFETY: `path` returned this ISA, so the CPU runs it.
            T::from_f64(pairwise(0..x.len(), SIMD_BLOCK, &|r| unsafe { avx2::sum_sq(&x[r]) }) as f64)
        }
        _ => pairwise(0..x.len(), SCALAR_BLOCK, &|r| sum_terms(&x[r.clone()], &x[r], |v, _| v * v)),
    }
}

/// Maximum, ignoring nothing: NaN propagates (the first NaN of `x` is
/// returned). Empty slice gives `-inf`.
pub fn max<T: Float>(x: &[T]) -> T {
    max_with(Isa::active(), x)
}
pub fn max_with<T: Float>(isa: Isa, x: &[T]) -> T {
    let m = match simd::path::<T>(isa) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `path` returned this ISA, so the CPU runs it.
        Some(Isa::Avx512) => unsafe { avx512::max(f32s(x)) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Some(Isa::Avx2Fma) => unsafe { avx2::max(f32s(x)) },
        _ => return max_scalar(x),
    };
    if m.is_nan() {
        // The SIMD lanes only say that some NaN was seen; hand back the same
        // NaN (payload and all) as the scalar path.
        return x.iter().copied().find(|v| v.is_nan()).expect("SIMD max saw a NaN");
    }
    T::from_f64(m as f64)
}

fn max_scalar<T: Float>(x: &[T]) -> T {
    let mut m = T::NEG_INFINITY;
    for &v in x {
        if v.is_nan() {
            return v;
        }
        if v > m {
            m = v;
        }
    }
    m
}

pub fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    dot_with(Isa::active(), a, b)
}
pub fn dot_with<T: Float>(isa: Isa, a: &[T], b: &[T]) -> T {
    assert_eq!(a.len(), b.len(), "dot: lengths differ");
    match simd::path::<T>(isa) {
        #[cfg(target_arch = "x86_64")]
        Some(Isa::Avx512) => {
            let (a, b) = (f32s(a), f32s(b));
            // SAFETY: `path` returned this ISA, so the CPU runs it.
            T::from_f64(pairwise(0..a.len(), SIMD_BLOCK, &|r| unsafe { avx512::dot(&a[r.clone()], &b[r]) }) as f64)
        }
        #[cfg(target_arch = "x86_64")]
        Some(Isa::Avx2Fma) => {
            let (a, b) = (f32s(a), f32s(b));
            // SAFETY: `path` returned this ISA, so the CPU runs it.
            T::from_f64(pairwise(0..a.len(), SIMD_BLOCK, &|r| unsafe { avx2::dot(&a[r.clone()], &b[r]) }) as f64)
        }
        _ => pairwise(0..a.len(), SCALAR_BLOCK, &|r| sum_terms(&a[r.clone()], &b[r], |x, y| x * y)),
    }
}

/// `y += alpha * x`.
pub fn axpy<T: Float>(alpha: T, x: &[T], y: &mut [T]) {
    axpy_with(Isa::active(), alpha, x, y)
}
pub fn axpy_with<T: Float>(isa: Isa, alpha: T, x: &[T], y: &mut [T]) {
    assert_eq!(x.len(), y.len(), "axpy: lengths differ");
    let a = alpha.to_f64() as f32;
    match simd::path::<T>(isa) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `path` returned this ISA, so the CPU runs it.
        Some(Isa::Avx512) => unsafe { avx512::axpy(a, f32s(x), f32s_mut(y)) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Some(Isa::Avx2Fma) => unsafe { avx2::axpy(a, f32s(x), f32s_mut(y)) },
        _ => {
            for (o, &v) in y.iter_mut().zip(x) {
                *o += alpha * v;
            }
        }
    }
}

/// `x *= alpha`, in place.
pub fn scale<T: Float>(alpha: T, x: &mut [T]) {
    scale_with(Isa::active(), alpha, x)
}
pub fn scale_with<T: Float>(isa: Isa, alpha: T, x: &mut [T]) {
    let a = alpha.to_f64() as f32;
    match simd::path::<T>(isa) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `path` returned this ISA, so the CPU runs it.
        Some(Isa::Avx512) => unsafe { avx512::scale(a, f32s_mut(x)) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Some(Isa::Avx2Fma) => unsafe { avx2::scale(a, f32s_mut(x)) },
        _ => x.iter_mut().for_each(|v| *v *= alpha),
    }
}

/// Elementwise binary operations on equal-length contiguous slices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
}

impl Binary {
    /// Every variant, for tests and benchmarks.
    pub const ALL: [Binary; 4] = [Binary::Add, Binary::Sub, Binary::Mul, Binary::Div];

    /// Lower-case name used in benchmark output.
    pub fn name(self) -> &'static str {
        match self {
            Binary::Add => "add",
            Binary::Sub => "sub",
            Binary::Mul => "mul",
            Binary::Div => "div",
        }
    }

    #[inline]
    pub fn apply_scalar<T: Float>(self, a: T, b: T) -> T {
        match self {
            Binary::Add => a + b,
            Binary::Sub => a - b,
            Binary::Mul => a * b,
            Binary::Div => a / b,
        }
    }
}

/// `out[i] = a[i] op b[i]` on the active ISA. IEEE results, so every path
/// gives the same bits.
pub fn binary<T: Float>(op: Binary, a: &[T], b: &[T], out: &mut [T]) {
    binary_with(Isa::active(), op, a, b, out)
}
pub fn binary_with<T: Float>(isa: Isa, op: Binary, a: &[T], b: &[T], out: &mut [T]) {
    assert!(a.len() == out.len() && b.len() == out.len(), "binary: lengths differ");
    match simd::path::<T>(isa) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `path` returned this ISA, so the CPU runs it.
        Some(Isa::Avx512) => unsafe { avx512::binary(op, f32s(a), f32s(b), f32s_mut(out)) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Some(Isa::Avx2Fma) => unsafe { avx2::binary(op, f32s(a), f32s(b), f32s_mut(out)) },
        _ => {
            for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
                *o = op.apply_scalar(x, y);
            }
        }
    }
}

/// `out = a + b`.
pub fn add<T: Float>(a: &[T], b: &[T], out: &mut [T]) {
    binary(Binary::Add, a, b, out)
}
/// `out = a - b`.
pub fn sub<T: Float>(a: &[T], b: &[T], out: &mut [T]) {
    binary(Binary::Sub, a, b, out)
}
/// `out = a * b`.
pub fn mul<T: Float>(a: &[T], b: &[T], out: &mut [T]) {
    binary(Binary::Mul, a, b, out)
}
/// `out = a / b`.
pub fn div<T: Float>(a: &[T], b: &[T], out: &mut [T]) {
    binary(Binary::Div, a, b, out)
}

/// The f32 SIMD kernels, written once against the names that every
/// `crate::simd` ISA module exports.
macro_rules! simd_kernels {
    ($isa:ident, $feat:literal) => {
        #[cfg(target_arch = "x86_64")]
        mod $isa {
            use super::Binary;
            use crate::simd::$isa as s;

            /// One pairwise block.
            #[target_feature(enable = $feat)]
            pub(super) fn sum(x: &[f32]) -> f32 {
                s::hsum(s::fold(x, 0.0, 0.0, |acc, v| s::add(acc, v), |a, b| s::add(a, b)))
            }

            #[target_feature(enable = $feat)]
            pub(super) fn sum_sq(x: &[f32]) -> f32 {
                s::hsum(s::fold(x, 0.0, 0.0, |acc, v| s::fmadd(v, v, acc), |a, b| s::add(a, b)))
            }

            #[target_feature(enable = $feat)]
            pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
                s::hsum(s::fold2(a, b, 0.0, (0.0, 0.0), |acc, a, b| s::fmadd(a, b, acc), |a, b| s::add(a, b)))
            }

            /// The maximum, or NaN if `x` holds one.
            #[target_feature(enable = $feat)]
            pub(super) fn max(x: &[f32]) -> f32 {
                let ninf = f32::NEG_INFINITY;
                let m = s::fold(x, ninf, ninf, |acc, v| s::max_nan(acc, v), |a, b| s::max_nan(a, b));
                if s::any(s::is_nan(m)) {
                    f32::NAN
                } else {
                    s::hmax(m)
                }
            }

            #[target_feature(enable = $feat)]
            pub(super) fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
                let a = s::splat(alpha);
                s::zip_map_inplace(x, y, |x, y| s::fmadd(a, x, y))
            }

            #[target_feature(enable = $feat)]
            pub(super) fn scale(alpha: f32, x: &mut [f32]) {
                let a = s::splat(alpha);
                s::map_inplace(x, |v| s::mul(v, a))
            }

            #[target_feature(enable = $feat)]
            pub(super) fn binary(op: Binary, a: &[f32], b: &[f32], out: &mut [f32]) {
                match op {
                    Binary::Add => s::zip_map(a, b, out, |a, b| s::add(a, b)),
                    Binary::Sub => s::zip_map(a, b, out, |a, b| s::sub(a, b)),
                    Binary::Mul => s::zip_map(a, b, out, |a, b| s::mul(a, b)),
                    Binary::Div => s::zip_map(a, b, out, |a, b| s::div(a, b)),
                }
            }
        }
    };
}

simd_kernels!(avx512, "avx512f");
simd_kernels!(avx2, "avx2,fma");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::testing::{assert_close, simd_isas, Rng, SIZES};
    use proptest::prelude::*;

    /// Σ|terms|·n·ε-style bound for a reduction checked against f64.
    fn check_sum(what: &str, got: f32, exact: f64, abs_sum: f64) {
        let tol = abs_sum * 1e-6 + 1e-30;
        assert!((got as f64 - exact).abs() <= tol, "{what}: got {got:e}, exact {exact:e}, tol {tol:e}");
    }

    #[test]
    fn sums_and_dot_match_f64_on_every_path() {
        let mut rng = Rng::new(11);
        for &n in SIZES.iter().chain(&[SIMD_BLOCK + 1, 3 * SIMD_BLOCK + 17, 1 << 20]) {
            let a = rng.vec_f32(n, -1.0, 1.0);
            let b = rng.vec_f32(n, -1.0, 1.0);
            let exact_sum: f64 = a.iter().map(|&v| v as f64).sum();
            let exact_sq: f64 = a.iter().map(|&v| v as f64 * v as f64).sum();
            let exact_dot: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
            let abs_sum: f64 = a.iter().map(|&v| v.abs() as f64).sum();
            for isa in Isa::all_available() {
                let w = format!("{} n={n}", isa.name());
                check_sum(&format!("sum {w}"), sum_with(isa, &a), exact_sum, abs_sum);
                check_sum(&format!("sum_sq {w}"), sum_sq_with(isa, &a), exact_sq, exact_sq);
                check_sum(&format!("dot {w}"), dot_with(isa, &a, &b), exact_dot, abs_sum);
            }
        }
    }

    #[test]
    fn long_sum_stays_accurate() {
        // 2^22 copies of 0.1: naive f32 accumulation is off by percent.
        let x = vec![0.1f32; 1 << 22];
        let exact = 0.1f32 as f64 * (1 << 22) as f64;
        for isa in Isa::all_available() {
            let got = sum_with(isa, &x) as f64;
            assert!((got - exact).abs() / exact < 1e-6, "{}: {got} vs {exact}", isa.name());
        }
    }

    #[test]
    fn max_matches_scalar_and_propagates_nan() {
        let mut rng = Rng::new(12);
        for &n in SIZES {
            let x = rng.vec_f32(n, -5.0, 5.0);
            let want = max_with(Isa::Scalar, &x);
            for isa in simd_isas() {
                assert_eq!(max_with(isa, &x), want, "{} n={n}", isa.name());
                if n > 0 {
                    let mut y = x.clone();
                    let payload = f32::from_bits(0x7FC0_1234);
                    y[rng.next_u64() as usize % n] = payload;
                    assert_eq!(max_with(isa, &y).to_bits(), payload.to_bits(), "{} n={n}", isa.name());
                }
            }
        }
        for isa in Isa::all_available() {
            assert_eq!(max_with::<f32>(isa, &[]), f32::NEG_INFINITY);
            assert_eq!(max_with(isa, &[f32::NEG_INFINITY; 3]), f32::NEG_INFINITY);
        }
    }

    #[test]
    fn elementwise_kernels_match_scalar_exactly_or_to_one_rounding() {
        let mut rng = Rng::new(13);
        for &n in SIZES {
            let a = rng.vec_f32(n, -3.0, 3.0);
            let b = rng.vec_f32(n, 0.5, 3.0);
            for isa in simd_isas() {
                for op in Binary::ALL {
                    let (mut want, mut got) = (vec![0.0; n], vec![0.0; n]);
                    binary_with(Isa::Scalar, op, &a, &b, &mut want);
                    binary_with(isa, op, &a, &b, &mut got);
                    assert_eq!(got, want, "{} {:?} n={n}", isa.name(), op);
                }
                let (mut want, mut got) = (a.clone(), a.clone());
                scale_with(Isa::Scalar, 1.7, &mut want);
                scale_with(isa, 1.7, &mut got);
                assert_eq!(got, want, "{} scale n={n}", isa.name());
                // axpy fuses the multiply-add: one rounding fewer.
                let (mut want, mut got) = (b.clone(), b.clone());
                axpy_with(Isa::Scalar, -0.3, &a, &mut want);
                axpy_with(isa, -0.3, &a, &mut got);
                assert_close(&got, &want, 1e-6, 1e-6, &format!("{} axpy n={n}", isa.name()));
            }
        }
    }

    #[test]
    fn f64_reductions_take_the_scalar_path() {
        let x: Vec<f64> = (0..5000).map(|i| i as f64).collect();
        assert_eq!(sum(&x), 4999.0 * 5000.0 / 2.0);
        assert_eq!(dot(&x[..3], &x[..3]), 5.0);
        assert_eq!(max(&x), 4999.0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn simd_sum_and_dot_track_scalar(a in prop::collection::vec(-1e3f32..1e3, 0..300)) {
            let abs_sum: f64 = a.iter().map(|&v| v.abs() as f64).sum();
            for isa in simd_isas() {
                let (s, r) = (sum_with(isa, &a), sum_with(Isa::Scalar, &a));
                prop_assert!(((s - r).abs() as f64) <= abs_sum * 1e-6 + 1e-30);
                let (s, r) = (dot_with(isa, &a, &a), dot_with(Isa::Scalar, &a, &a));
                prop_assert!((s - r).abs() <= r * 1e-6);
            }
        }
    }
}
