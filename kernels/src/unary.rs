//! Elementwise transcendental and activation kernels over slices, and the
//! GELU backward kernel.
//!
//! The f32 SIMD paths evaluate exp/ln/tanh by range reduction and Cephes
//! polynomials and Φ (for GELU) through a relative-accuracy erfc fit, see
//! `simd/common.rs`; against the scalar twin they stay within a few ulp.

use std::f64::consts::{FRAC_1_SQRT_2, PI};

use crate::simd::{f32s, f32s_mut};
use crate::{simd, Float, Isa};

/// The unary maps with a dedicated kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unary {
    Exp,
    Ln,
    Tanh,
    Sigmoid,
    /// Exact (erf-based) GELU: `0.5·x·(1 + erf(x/√2))`, as PyTorch's default.
    Gelu,
    Relu,
}

impl Unary {
    /// Every variant, for tests and benchmarks.
    pub const ALL: [Unary; 6] = [Unary::Exp, Unary::Ln, Unary::Tanh, Unary::Sigmoid, Unary::Gelu, Unary::Relu];

    /// Lower-case name used in benchmark output.
    pub fn name(self) -> &'static str {
        match self {
            Unary::Exp => "exp",
            Unary::Ln => "ln",
            Unary::Tanh => "tanh",
            Unary::Sigmoid => "sigmoid",
            Unary::Gelu => "gelu",
            Unary::Relu => "relu",
        }
    }
}

/// Φ(x), the standard normal CDF, as erfc(−x/√2)/2: unlike 1 + erf(x/√2) it
/// keeps full relative accuracy where Φ is tiny (x ≪ 0).
fn normal_cdf_f64(x: f64) -> f64 {
    0.5 * libm::erfc(-x * FRAC_1_SQRT_2)
}

/// GELU(x) = x·Φ(x), evaluated in f64 (so the f32 result is as good as f32
/// allows). GELU(−inf) is its limit −0 rather than −inf·0 = NaN.
fn gelu_f64(x: f64) -> f64 {
    let phi = normal_cdf_f64(x);
    if phi == 0.0 {
        -0.0
    } else {
        x * phi
    }
}

/// GELU'(x) = Φ(x) + x·φ(x), in f64; x·φ(x) → 0 at ±inf.
fn gelu_grad_f64(x: f64) -> f64 {
    let x_pdf = if x.is_infinite() { 0.0 } else { x * (-0.5 * x * x).exp() / (2.0 * PI).sqrt() };
    normal_cdf_f64(x) + x_pdf
}

/// Scalar definition of every [`Unary`]: the reference the SIMD paths must match.
#[inline]
pub fn apply_scalar<T: Float>(op: Unary, x: T) -> T {
    match op {
        Unary::Exp => x.exp(),
        Unary::Ln => x.ln(),
        Unary::Tanh => x.tanh(),
        Unary::Sigmoid => T::ONE / (T::ONE + (-x).exp()),
        Unary::Gelu => T::from_f64(gelu_f64(x.to_f64())),
        Unary::Relu => {
            if x > T::ZERO {
                x
            } else {
                T::ZERO
            }
        }
    }
}

/// Scalar GELU'(x) for the exact GELU: the reference for [`gelu_grad`].
#[inline]
pub fn gelu_grad_scalar<T: Float>(x: T) -> T {
    T::from_f64(gelu_grad_f64(x.to_f64()))
}

/// `out[i] = op(x[i])` on the active ISA.
pub fn unary<T: Float>(op: Unary, x: &[T], out: &mut [T]) {
    unary_with(Isa::active(), op, x, out)
}

/// As [`unary`], on an explicit ISA path (panics if the CPU lacks it).
pub fn unary_with<T: Float>(isa: Isa, op: Unary, x: &[T], out: &mut [T]) {
    assert_eq!(x.len(), out.len(), "unary: input and output lengths differ");
    match simd::path::<T>(isa) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `path` returned this ISA, so the CPU runs it.
        Some(Isa::Avx512) => unsafe { avx512::unary(op, f32s(x), f32s_mut(out)) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Some(Isa::Avx2Fma) => unsafe { avx2::unary(op, f32s(x), f32s_mut(out)) },
        _ => {
            for (o, &v) in out.iter_mut().zip(x) {
                *o = apply_scalar(op, v);
            }
        }
    }
}

/// Backward of the exact GELU: `grad_in[i] = grad_out[i] · GELU'(x[i])`,
/// GELU'(x) = Φ(x) + x·φ(x). Overwrites `grad_in`.
pub fn gelu_grad<T: Float>(x: &[T], grad_out: &[T], grad_in: &mut [T]) {
    gelu_grad_with(Isa::active(), x, grad_out, grad_in)
}

/// As [`gelu_grad`], on an explicit ISA path (panics if the CPU lacks it).
pub fn gelu_grad_with<T: Float>(isa: Isa, x: &[T], grad_out: &[T], grad_in: &mut [T]) {
    assert!(x.len() == grad_in.len() && grad_out.len() == grad_in.len(), "gelu_grad: lengths differ");
    match simd::path::<T>(isa) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `path` returned this ISA, so the CPU runs it.
        Some(Isa::Avx512) => unsafe { avx512::gelu_grad(f32s(x), f32s(grad_out), f32s_mut(grad_in)) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Some(Isa::Avx2Fma) => unsafe { avx2::gelu_grad(f32s(x), f32s(grad_out), f32s_mut(grad_in)) },
        _ => {
            for ((gi, &g), &v) in grad_in.iter_mut().zip(grad_out).zip(x) {
                *gi = g * gelu_grad_scalar(v);
            }
        }
    }
}

/// The f32 SIMD kernels, written once against the names that every
/// `crate::simd` ISA module exports.
macro_rules! simd_kernels {
    ($isa:ident, $feat:literal) => {
        #[cfg(target_arch = "x86_64")]
        mod $isa {
            use super::Unary;
            use crate::simd::$isa as s;

            #[target_feature(enable = $feat)]
            pub(super) fn unary(op: Unary, x: &[f32], out: &mut [f32]) {
                match op {
                    Unary::Exp => s::map(x, out, |v| s::exp(v)),
                    Unary::Ln => s::map(x, out, |v| s::ln(v)),
                    Unary::Tanh => s::map(x, out, |v| s::tanh(v)),
                    Unary::Sigmoid => s::map(x, out, |v| s::sigmoid(v)),
                    Unary::Gelu => s::map(x, out, |v| s::gelu(v)),
                    // max(v, 0) is 0 for NaN too, as the scalar `x > 0`.
                    Unary::Relu => s::map(x, out, |v| s::max(v, s::zero())),
                }
            }

            #[target_feature(enable = $feat)]
            pub(super) fn gelu_grad(x: &[f32], dy: &[f32], dx: &mut [f32]) {
                s::zip_map(x, dy, dx, |x, dy| s::gelu_grad(x, dy))
            }
        }
    };
}

simd_kernels!(avx512, "avx512f");
simd_kernels!(avx2, "avx2,fma");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::testing::{assert_close, simd_isas, ulps, Rng, SIZES, SPECIALS};

    /// Worst ulp distance of `isa` from the scalar twin over `xs`, with the
    /// input where it occurs. Inputs whose reference is within `rel` of the
    /// SIMD result relatively count as exact (the spec's "4 ulp or 1e-6").
    fn worst_ulps(isa: Isa, op: Unary, xs: &[f32], rel: f32) -> (u32, f32) {
        let mut got = vec![0.0; xs.len()];
        unary_with(isa, op, xs, &mut got);
        let mut worst = (0, 0.0);
        for (&x, &g) in xs.iter().zip(&got) {
            let want = apply_scalar(op, x);
            let u = ulps(g, want);
            let relative_ok = want.is_finite() && (g - want).abs() <= rel * want.abs();
            if !relative_ok && u > worst.0 {
                worst = (u, x);
            }
        }
        worst
    }

    /// Dense grid over [lo, hi] plus random bit patterns of either sign.
    fn sweep(lo: f32, hi: f32, rng: &mut Rng) -> Vec<f32> {
        let n = 100_000;
        let mut xs: Vec<f32> = (0..=n).map(|i| lo + (hi - lo) * i as f32 / n as f32).collect();
        xs.extend((0..50_000).map(|_| f32::from_bits(rng.next_u64() as u32)));
        xs.extend_from_slice(SPECIALS);
        xs
    }

    #[test]
    fn transcendentals_within_4_ulp_of_scalar() {
        let mut rng = Rng::new(1);
        let cases = [
            (Unary::Exp, sweep(-110.0, 95.0, &mut rng)),
            (Unary::Ln, sweep(0.0, 10.0, &mut rng)),
            (Unary::Tanh, sweep(-12.0, 12.0, &mut rng)),
            (Unary::Sigmoid, sweep(-110.0, 110.0, &mut rng)),
            (Unary::Relu, sweep(-2.0, 2.0, &mut rng)),
        ];
        for isa in simd_isas() {
            for (op, xs) in &cases {
                let (u, x) = worst_ulps(isa, *op, xs, 1e-6);
                assert!(u <= 4, "{} {:?}: {u} ulp at x = {x:e}", isa.name(), op);
            }
        }
    }

    #[test]
    fn gelu_close_to_f64_reference() {
        let mut rng = Rng::new(2);
        let xs = sweep(-16.0, 16.0, &mut rng);
        let want: Vec<f32> = xs.iter().map(|&x| apply_scalar(Unary::Gelu, x)).collect();
        for isa in simd_isas() {
            let mut got = vec![0.0; xs.len()];
            unary_with(isa, Unary::Gelu, &xs, &mut got);
            assert_close(&got, &want, 1e-6, 1e-5, &format!("{} gelu", isa.name()));
            // Relative accuracy must also hold where GELU is tiny (x ≪ 0),
            // the region a 1 + erf formulation loses to cancellation.
            for (&x, (&g, &w)) in xs.iter().zip(got.iter().zip(&want)) {
                if (-13.0..0.0).contains(&x) {
                    assert!((g - w).abs() <= 2e-6 * w.abs(), "{} gelu({x:e}) = {g:e}, want {w:e}", isa.name());
                }
            }
        }
    }

    #[test]
    fn gelu_special_values() {
        let cases = [(f32::NEG_INFINITY, 0.0), (f32::INFINITY, f32::INFINITY), (0.0, 0.0), (-20.0, 0.0), (20.0, 20.0)];
        for isa in Isa::all_available() {
            let xs: Vec<f32> = cases.iter().map(|c| c.0).collect();
            let mut got = vec![1.0; xs.len()];
            unary_with(isa, Unary::Gelu, &xs, &mut got);
            let want: Vec<f32> = cases.iter().map(|c| c.1).collect();
            assert_eq!(got, want, "{}", isa.name());
            unary_with(isa, Unary::Gelu, &[f32::NAN], &mut got[..1]);
            assert!(got[0].is_nan());
        }
    }

    #[test]
    fn every_op_and_length_matches_scalar() {
        let mut rng = Rng::new(3);
        for &n in SIZES {
            let xs = rng.vec_f32(n, -9.0, 9.0);
            for op in Unary::ALL {
                // ln wants positive inputs to say anything interesting.
                let xs: Vec<f32> = if op == Unary::Ln { xs.iter().map(|v| v.abs()).collect() } else { xs.clone() };
                let mut want = vec![0.0; n];
                unary_with(Isa::Scalar, op, &xs, &mut want);
                for isa in simd_isas() {
                    let mut got = vec![f32::NAN; n];
                    unary_with(isa, op, &xs, &mut got);
                    assert_close(&got, &want, 1e-6, 1e-5, &format!("{} {:?} n={n}", isa.name(), op));
                }
            }
        }
    }

    #[test]
    fn f64_takes_the_scalar_path() {
        let xs = [-1.0f64, 0.5, 2.0];
        let mut out = [0.0; 3];
        unary(Unary::Tanh, &xs, &mut out);
        assert_eq!(out, xs.map(f64::tanh));
    }

    #[test]
    fn gelu_grad_matches_finite_differences_in_f64() {
        let h = 1e-6;
        let mut rng = Rng::new(4);
        for x in rng.vec_f64(500, -9.0, 9.0) {
            let fd = (gelu_f64(x + h) - gelu_f64(x - h)) / (2.0 * h);
            let g = gelu_grad_scalar(x);
            assert!((g - fd).abs() < 1e-8, "GELU'({x}) = {g}, finite difference {fd}");
        }
        let mut out = [0.0; 3];
        gelu_grad(&[f64::NEG_INFINITY, f64::INFINITY, 0.0], &[1.0, 1.0, 2.0], &mut out);
        assert_eq!(out, [0.0, 1.0, 1.0]);
    }

    #[test]
    fn gelu_grad_simd_matches_scalar() {
        let mut rng = Rng::new(5);
        for &n in SIZES.iter().chain(&[20_000]) {
            let mut x = rng.vec_f32(n, -16.0, 16.0);
            if n > SPECIALS.len() {
                x[..SPECIALS.len()].copy_from_slice(SPECIALS);
            }
            let dy = rng.vec_f32(n, -2.0, 2.0);
            let mut want = vec![0.0; n];
            gelu_grad_with(Isa::Scalar, &x, &dy, &mut want);
            for isa in simd_isas() {
                let mut got = vec![f32::NAN; n];
                gelu_grad_with(isa, &x, &dy, &mut got);
                assert_close(&got, &want, 1e-6, 1e-5, &format!("{} gelu_grad n={n}", isa.name()));
            }
        }
    }

    #[test]
    #[should_panic(expected = "lengths differ")]
    fn length_mismatch_panics() {
        unary(Unary::Exp, &[1.0f32, 2.0], &mut [0.0]);
    }
}
