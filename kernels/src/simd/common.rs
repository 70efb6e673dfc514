//! What the ISA modules share: the macro that declares their primitives,
//! the polynomial constants, and [`simd_common!`], which expands inside each
//! ISA module to the math and loop drivers written once over its primitives.

/// Declares `#[inline] pub(crate)` functions compiled for the target
/// features `$feat` (a literal such as `"avx512f"`).
macro_rules! isa_fns {
    ($feat:literal; $($(#[$attr:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? $body:block)*) => {
        $(
            $(#[$attr])*
            #[inline]
            #[target_feature(enable = $feat)]
            pub(crate) fn $name($($arg: $ty),*) $(-> $ret)? $body
        )*
    };
}

// The polynomial coefficients below are quoted verbatim from their sources
// (Cephes' expf/logf/tanhf, Numerical Recipes' erfcc) rather than rounded to
// what f32 can hold, so that they can be checked against those sources.

/// e^x is clamped to [EXP_MIN, EXP_MAX]: beyond it the f32 result is 0
/// (below 2^-150) or +inf anyway, and inside it the power of two that
/// `pow2i` builds stays in the range both ISAs handle (n ∈ [-150, 128]).
pub(super) const EXP_MIN: f32 = -104.0;
pub(super) const EXP_MAX: f32 = 89.0;
/// ln 2 = LN2_HI + LN2_LO, with LN2_HI short enough (9 bits) that n·LN2_HI is
/// exact: the Cody–Waite split used by Cephes.
pub(super) const LN2_HI: f32 = 355.0 / 512.0;
#[allow(clippy::excessive_precision)]
pub(super) const LN2_LO: f32 = -2.12194440e-4;
/// e^r ≈ 1 + r + r²·P(r) on |r| ≤ ln2/2 (Cephes expf, about 1 ulp).
#[allow(clippy::excessive_precision)]
pub(super) const EXP_P: [f32; 6] =
    [1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1];
/// ln(1+f) ≈ f − f²/2 + f³·P(f) on √½−1 ≤ f < √2−1 (Cephes logf).
#[allow(clippy::excessive_precision)]
pub(super) const LN_P: [f32; 9] = [
    7.0376836292e-2,
    -1.1514610310e-1,
    1.1676998740e-1,
    -1.2420140846e-1,
    1.4249322787e-1,
    -1.6668057665e-1,
    2.0000714765e-1,
    -2.4999993993e-1,
    3.3333331174e-1,
];
/// tanh(x) ≈ x + x³·P(x²) on |x| < TANH_SMALL (Cephes tanhf); above it
/// 1 − 2/(e^2|x| + 1) has no cancellation left to fear.
#[allow(clippy::excessive_precision)]
pub(super) const TANH_P: [f32; 5] =
    [-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1, -3.33332819422e-1];
pub(super) const TANH_SMALL: f32 = 0.625;
/// erfc(z) ≈ t·exp(−z² + P(t)), t = 1/(1 + z/2): Numerical Recipes' Chebyshev
/// fit `erfcc`, relative error below 1.1e-7 for every z ≥ 0. Relative (not
/// absolute) accuracy in the tail is what keeps GELU(x) = x·Φ(x) accurate for
/// negative x, where Φ(x) = erfc(−x/√2)/2 is tiny.
#[allow(clippy::excessive_precision)]
pub(super) const ERFC_P: [f32; 10] = [
    0.17087277,
    -0.82215223,
    1.48851587,
    -1.13520398,
    0.27886807,
    -0.18628806,
    0.09678418,
    0.37409196,
    1.00002368,
    -1.26551223,
];
/// Beyond ±GELU_CLAMP, Φ is 0 or 1 in f32 (Φ(−15) ≈ 4e-51), and the clamp
/// keeps exp's argument (≈ −x²/2) inside `pow2i`'s range.
pub(super) const GELU_CLAMP: f32 = 15.0;
/// 1/√(2π), the normal density's scale.
#[allow(clippy::excessive_precision)]
pub(super) const INV_SQRT_2PI: f32 = 0.398942280401432677939946059934;

/// Expands, inside an ISA module that has declared the primitives, to the
/// vectorised math and the loop drivers. `$feat` is that module's
/// `target_feature` string.
macro_rules! simd_common {
    ($feat:literal) => {
        use super::common::*;
        use std::f32::consts::{FRAC_1_SQRT_2, LOG2_E, SQRT_2};

        isa_fns! { $feat;
            /// `x` limited to [lo, hi]; NaN stays NaN, because x86 min/max
            /// return their second operand when either one is NaN.
            fn clamp(x: V, lo: f32, hi: f32) -> V {
                min(splat(hi), max(splat(lo), x))
            }

            /// Lane-wise maximum that propagates a NaN from either side.
            fn max_nan(a: V, b: V) -> V {
                // max(a, b) is `a > b ? a : b`: already NaN when b is.
                select(is_nan(a), a, max(a, b))
            }

            /// c[0]·xᵏ + c[1]·xᵏ⁻¹ + … + c[k] (Horner, one FMA per coefficient).
            fn horner(x: V, c: &[f32]) -> V {
                let mut acc = splat(c[0]);
                for &k in &c[1..] {
                    acc = fmadd(acc, x, splat(k));
                }
                acc
            }

            /// 2ⁿ·e^r for integral n and |r| ≲ ln2/2.
            fn exp_reduced(n: V, r: V) -> V {
                let p = horner(r, &EXP_P);
                pow2i(fmadd(p, mul(r, r), add(r, splat(1.0))), n)
            }

            /// e^x within about 1 ulp: +inf above ln(f32::MAX), gradual
            /// underflow through the subnormals to 0, NaN stays NaN.
            fn exp(x: V) -> V {
                let x = clamp(x, EXP_MIN, EXP_MAX);
                let n = round(mul(x, splat(LOG2_E)));
                let r = fnmadd(n, splat(LN2_HI), x);
                exp_reduced(n, fnmadd(n, splat(LN2_LO), r))
            }

            /// e^(hi + lo), where `lo` carries the low bits that rounding
            /// hi + lo to f32 would lose (|lo| ≲ 2). No clamping: the caller
            /// keeps hi + lo within [EXP_MIN, EXP_MAX]-like bounds.
            fn exp_hl(hi: V, lo: V) -> V {
                let n = round(mul(add(hi, lo), splat(LOG2_E)));
                let r = fnmadd(n, splat(LN2_HI), hi);
                let r = fnmadd(n, splat(LN2_LO), r);
                exp_reduced(n, add(r, lo))
            }

            /// ln x (Cephes logf): ln 0 = −inf, ln(x < 0) = NaN, ln inf = inf,
            /// subnormal inputs exact.
            fn ln(x: V) -> V {
                let (e, m) = log_split(x);
                // Centre the mantissa on 1: m ∈ [√½, √2), f = m − 1.
                let big = lt(splat(SQRT_2), m);
                let m = select(big, mul(m, splat(0.5)), m);
                let e = select(big, add(e, splat(1.0)), e);
                let f = sub(m, splat(1.0));
                let z = mul(f, f);
                let y = mul(mul(horner(f, &LN_P), f), z);
                let y = fmadd(e, splat(LN2_LO), y);
                let y = fnmadd(splat(0.5), z, y);
                let r = fmadd(e, splat(LN2_HI), add(f, y));
                let r = select(eq(x, zero()), splat(f32::NEG_INFINITY), r);
                let r = select(eq(x, splat(f32::INFINITY)), x, r);
                select(nge(x, zero()), splat(f32::NAN), r)
            }

            /// tanh x: odd polynomial near 0, 1 − 2/(e^2|x| + 1) elsewhere
            /// (which saturates to ±1 through exp's +inf).
            fn tanh(x: V) -> V {
                let ax = abs(x);
                let s = mul(x, x);
                let small = fmadd(mul(horner(s, &TANH_P), s), x, x);
                let e = exp(add(ax, ax));
                let large = sub(splat(1.0), div(splat(2.0), add(e, splat(1.0))));
                select(lt(ax, splat(TANH_SMALL)), small, xor_sign(large, x))
            }

            /// 1/(1 + e^−x), the same formula as the scalar twin.
            fn sigmoid(x: V) -> V {
                div(splat(1.0), add(splat(1.0), exp(neg(x))))
            }

            /// (hi, lo) with hi + lo = −x²/2 exactly: FMA recovers the
            /// rounding error of x·x, which matters once x² is large.
            fn neg_half_square(x: V) -> (V, V) {
                let sq = mul(x, x);
                (mul(sq, splat(-0.5)), mul(fmsub(x, x, sq), splat(-0.5)))
            }

            /// Φ(x), the standard normal CDF, for |x| ≤ GELU_CLAMP.
            fn normal_cdf(x: V) -> V {
                let t = div(splat(1.0), fmadd(abs(x), splat(0.5 * FRAC_1_SQRT_2), splat(1.0)));
                let (hi, lo) = neg_half_square(x);
                // Φ(−|x|) = erfc(|x|/√2)/2, accurate relative to its own size.
                let tail = mul(mul(splat(0.5), t), exp_hl(hi, add(lo, horner(t, &ERFC_P))));
                select(lt(x, zero()), tail, sub(splat(1.0), tail))
            }

            /// Exact GELU x·Φ(x); GELU(−inf) = −0 (the limit) rather than
            /// −inf·0 = NaN.
            fn gelu(x: V) -> V {
                let lo = max(splat(-GELU_CLAMP), x);
                mul(lo, normal_cdf(min(splat(GELU_CLAMP), lo)))
            }

            /// dy·GELU'(x), GELU'(x) = Φ(x) + x·φ(x).
            fn gelu_grad(x: V, dy: V) -> V {
                let x = clamp(x, -GELU_CLAMP, GELU_CLAMP);
                let (hi, lo) = neg_half_square(x);
                let pdf = mul(exp_hl(hi, lo), splat(INV_SQRT_2PI));
                mul(dy, fmadd(x, pdf, normal_cdf(x)))
            }

            /// out = f(x), the tail through one partial vector padded with 0.
            fn map(x: &[f32], out: &mut [f32], f: impl Fn(V) -> V) {
                assert_eq!(x.len(), out.len());
                let mut xs = x.chunks_exact(LANES);
                let mut os = out.chunks_exact_mut(LANES);
                for (x, o) in (&mut xs).zip(&mut os) {
                    store(o, f(load(x)));
                }
                let (x, o) = (xs.remainder(), os.into_remainder());
                if !x.is_empty() {
                    store_partial(o, f(load_partial(x, 0.0)));
                }
            }

            /// x = f(x).
            fn map_inplace(x: &mut [f32], f: impl Fn(V) -> V) {
                let mut xs = x.chunks_exact_mut(LANES);
                for x in &mut xs {
                    store(x, f(load(x)));
                }
                let x = xs.into_remainder();
                if !x.is_empty() {
                    store_partial(x, f(load_partial(x, 0.0)));
                }
            }

            /// out = f(a, b).
            fn zip_map(a: &[f32], b: &[f32], out: &mut [f32], f: impl Fn(V, V) -> V) {
                assert!(a.len() == out.len() && b.len() == out.len());
                let mut as_ = a.chunks_exact(LANES);
                let mut bs = b.chunks_exact(LANES);
                let mut os = out.chunks_exact_mut(LANES);
                for ((a, b), o) in (&mut as_).zip(&mut bs).zip(&mut os) {
                    store(o, f(load(a), load(b)));
                }
                let (a, b, o) = (as_.remainder(), bs.remainder(), os.into_remainder());
                if !a.is_empty() {
                    store_partial(o, f(load_partial(a, 0.0), load_partial(b, 0.0)));
                }
            }

            /// y = f(a, y).
            fn zip_map_inplace(a: &[f32], y: &mut [f32], f: impl Fn(V, V) -> V) {
                assert_eq!(a.len(), y.len());
                let mut as_ = a.chunks_exact(LANES);
                let mut ys = y.chunks_exact_mut(LANES);
                for (a, y) in (&mut as_).zip(&mut ys) {
                    store(y, f(load(a), load(y)));
                }
                let (a, y) = (as_.remainder(), ys.into_remainder());
                if !a.is_empty() {
                    store_partial(y, f(load_partial(a, 0.0), load_partial(y, 0.0)));
                }
            }

            /// y = f(a, b, y).
            fn zip2_map_inplace(a: &[f32], b: &[f32], y: &mut [f32], f: impl Fn(V, V, V) -> V) {
                assert!(a.len() == y.len() && b.len() == y.len());
                let mut as_ = a.chunks_exact(LANES);
                let mut bs = b.chunks_exact(LANES);
                let mut ys = y.chunks_exact_mut(LANES);
                for ((a, b), y) in (&mut as_).zip(&mut bs).zip(&mut ys) {
                    store(y, f(load(a), load(b), load(y)));
                }
                let (a, b, y) = (as_.remainder(), bs.remainder(), ys.into_remainder());
                if !a.is_empty() {
                    store_partial(y, f(load_partial(a, 0.0), load_partial(b, 0.0), load_partial(y, 0.0)));
                }
            }

            /// Lane-wise reduction acc = f(acc, a, b) over equal-length slices.
            /// Four independent accumulators (starting at `init`) hide the
            /// latency of the dependent adds, and are combined with `merge`
            /// at the end; the tail is padded with `fill`, which must leave
            /// the accumulator unchanged.
            fn fold2(
                a: &[f32],
                b: &[f32],
                init: f32,
                fill: (f32, f32),
                f: impl Fn(V, V, V) -> V,
                merge: impl Fn(V, V) -> V
            ) -> V {
                assert_eq!(a.len(), b.len());
                let mut acc = [splat(init); 4];
                let mut as_ = a.chunks_exact(4 * LANES);
                let mut bs = b.chunks_exact(4 * LANES);
                for (a, b) in (&mut as_).zip(&mut bs) {
                    for (k, acc) in acc.iter_mut().enumerate() {
                        *acc = f(*acc, load(&a[k * LANES..]), load(&b[k * LANES..]));
                    }
                }
                let mut as_ = as_.remainder().chunks_exact(LANES);
                let mut bs = bs.remainder().chunks_exact(LANES);
                // At most three full vectors remain, then the partial one.
                for (acc, (a, b)) in acc.iter_mut().zip((&mut as_).zip(&mut bs)) {
                    *acc = f(*acc, load(a), load(b));
                }
                let (a, b) = (as_.remainder(), bs.remainder());
                if !a.is_empty() {
                    acc[3] = f(acc[3], load_partial(a, fill.0), load_partial(b, fill.1));
                }
                merge(merge(acc[0], acc[1]), merge(acc[2], acc[3]))
            }

            /// [`fold2`] over a single slice.
            fn fold(
                x: &[f32],
                init: f32,
                fill: f32,
                f: impl Fn(V, V) -> V,
                merge: impl Fn(V, V) -> V
            ) -> V {
                fold2(x, x, init, (fill, fill), |acc, v, _| f(acc, v), merge)
            }
        }
    };
}
