//! Row-wise softmax and log-softmax, and their backward kernels. Masked
//! positions are `-inf` in the input; a row that is entirely `-inf` (a fully
//! masked query) gives all zeros (softmax) or all `-inf` (log-softmax), never
//! NaN. NaN inputs are skipped by the row maximum but, as in the scalar
//! twin, still turn their row into NaN.

use crate::simd::{f32s, f32s_mut};
use crate::{reduce, simd, Float, Isa};

/// Checks the slice lengths shared by every kernel here; `cols == 0` means
/// there is nothing to do.
fn check_rows(cols: usize, lens: &[usize], what: &str) -> bool {
    assert!(lens.windows(2).all(|w| w[0] == w[1]), "{what}: slice lengths differ");
    if cols == 0 {
        return false;
    }
    assert_eq!(lens[0] % cols, 0, "{what}: length is not a multiple of cols");
    true
}

/// Softmax over each contiguous row of `cols` elements.
pub fn softmax_rows<T: Float>(x: &[T], out: &mut [T], cols: usize) {
    softmax_rows_with(Isa::active(), x, out, cols)
}

/// As [`softmax_rows`], on an explicit ISA path (panics if the CPU lacks it).
pub fn softmax_rows_with<T: Float>(isa: Isa, x: &[T], out: &mut [T], cols: usize) {
    if !check_rows(cols, &[x.len(), out.len()], "softmax_rows") {
        return;
    }
    let rows = x.chunks_exact(cols).zip(out.chunks_exact_mut(cols));
    match simd::path::<T>(isa) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `path` returned this ISA, so the CPU runs it.
        Some(Isa::Avx512) => rows.for_each(|(x, o)| unsafe { avx512::softmax_row(f32s(x), f32s_mut(o)) }),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Some(Isa::Avx2Fma) => rows.for_each(|(x, o)| unsafe { avx2::softmax_row(f32s(x), f32s_mut(o)) }),
        _ => rows.for_each(|(x, o)| softmax_row_scalar(x, o)),
    }
}

fn row_max<T: Float>(x: &[T]) -> T {
    x.iter().fold(T::NEG_INFINITY, |m, &v| m.max(v))
}

fn softmax_row_scalar<T: Float>(x: &[T], out: &mut [T]) {
    let max = row_max(x);
    if max == T::NEG_INFINITY {
        out.iter_mut().for_each(|o| *o = T::ZERO);
        return;
    }
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v - max).exp();
    }
    // Pairwise: a running sum would lose ~1e-5 relative over 10⁴ columns.
    let inv = T::ONE / reduce::sum_with(Isa::Scalar, out);
    out.iter_mut().for_each(|o| *o *= inv);
}

/// Log-softmax over each contiguous row. A fully masked row gives `-inf`.
pub fn log_softmax_rows<T: Float>(x: &[T], out: &mut [T], cols: usize) {
    log_softmax_rows_with(Isa::active(), x, out, cols)
}

/// As [`log_softmax_rows`], on an explicit ISA path (panics if the CPU lacks it).
pub fn log_softmax_rows_with<T: Float>(isa: Isa, x: &[T], out: &mut [T], cols: usize) {
    if !check_rows(cols, &[x.len(), out.len()], "log_softmax_rows") {
        return;
    }
    let rows = x.chunks_exact(cols).zip(out.chunks_exact_mut(cols));
    match simd::path::<T>(isa) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `path` returned this ISA, so the CPU runs it.
        Some(Isa::Avx512) => rows.for_each(|(x, o)| unsafe { avx512::log_softmax_row(f32s(x), f32s_mut(o)) }),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Some(Isa::Avx2Fma) => rows.for_each(|(x, o)| unsafe { avx2::log_softmax_row(f32s(x), f32s_mut(o)) }),
        _ => rows.for_each(|(x, o)| log_softmax_row_scalar(x, o)),
    }
}

fn log_softmax_row_scalar<T: Float>(x: &[T], out: &mut [T]) {
    let max = row_max(x);
    if max == T::NEG_INFINITY {
        out.iter_mut().for_each(|o| *o = T::NEG_INFINITY);
        return;
    }
    // `out` holds the exponentials until the sum (pairwise, as in softmax) is taken.
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v - max).exp();
    }
    let lse = max + reduce::sum_with(Isa::Scalar, out).ln();
    for (o, &v) in out.iter_mut().zip(x) {
        *o = v - lse;
    }
}

/// Backward of [`softmax_rows`] given its output `y`: per row
/// `dx = y ⊙ (dy − Σ dy⊙y)`. Overwrites `dx`. A fully masked row (y = 0)
/// gets dx = 0.
pub fn softmax_backward_rows<T: Float>(y: &[T], dy: &[T], dx: &mut [T], cols: usize) {
    softmax_backward_rows_with(Isa::active(), y, dy, dx, cols)
}

/// As [`softmax_backward_rows`], on an explicit ISA path (panics if the CPU lacks it).
pub fn softmax_backward_rows_with<T: Float>(isa: Isa, y: &[T], dy: &[T], dx: &mut [T], cols: usize) {
    if !check_rows(cols, &[y.len(), dy.len(), dx.len()], "softmax_backward_rows") {
        return;
    }
    let rows = y.chunks_exact(cols).zip(dy.chunks_exact(cols)).zip(dx.chunks_exact_mut(cols));
    match simd::path::<T>(isa) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `path` returned this ISA, so the CPU runs it.
        Some(Isa::Avx512) => {
            rows.for_each(|((y, g), d)| unsafe { avx512::softmax_backward_row(f32s(y), f32s(g), f32s_mut(d)) })
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Some(Isa::Avx2Fma) => {
            rows.for_each(|((y, g), d)| unsafe { avx2::softmax_backward_row(f32s(y), f32s(g), f32s_mut(d)) })
        }
        _ => rows.for_each(|((y, g), d)| {
            let s: T = y.iter().zip(g).map(|(&y, &g)| y * g).sum();
            for ((d, &y), &g) in d.iter_mut().zip(y).zip(g) {
                *d = y * (g - s);
            }
        }),
    }
}

/// Backward of [`log_softmax_rows`] given its output `y`: per row
/// `dx = dy − exp(y)·Σ dy`. Overwrites `dx`.
pub fn log_softmax_backward_rows<T: Float>(y: &[T], dy: &[T], dx: &mut [T], cols: usize) {
    log_softmax_backward_rows_with(Isa::active(), y, dy, dx, cols)
}

/// As [`log_softmax_backward_rows`], on an explicit ISA path (panics if the CPU lacks it).
pub fn log_softmax_backward_rows_with<T: Float>(isa: Isa, y: &[T], dy: &[T], dx: &mut [T], cols: usize) {
    if !check_rows(cols, &[y.len(), dy.len(), dx.len()], "log_softmax_backward_rows") {
        return;
    }
    let rows = y.chunks_exact(cols).zip(dy.chunks_exact(cols)).zip(dx.chunks_exact_mut(cols));
    match simd::path::<T>(isa) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `path` returned this ISA, so the CPU runs it.
        Some(Isa::Avx512) => {
            rows.for_each(|((y, g), d)| unsafe { avx512::log_softmax_backward_row(f32s(y), f32s(g), f32s_mut(d)) })
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Some(Isa::Avx2Fma) => {
            rows.for_each(|((y, g), d)| unsafe { avx2::log_softmax_backward_row(f32s(y), f32s(g), f32s_mut(d)) })
        }
        _ => rows.for_each(|((y, g), d)| {
            let s: T = g.iter().copied().sum();
            for ((d, &y), &g) in d.iter_mut().zip(y).zip(g) {
                *d = g - y.exp() * s;
            }
        }),
    }
}

/// The f32 SIMD kernels, written once against the names that every
/// `crate::simd` ISA module exports. One call handles one row.
macro_rules! simd_kernels {
    ($isa:ident, $feat:literal) => {
        #[cfg(target_arch = "x86_64")]
        mod $isa {
            use crate::simd::$isa as s;

            const NEG_INF: f32 = f32::NEG_INFINITY;

            /// Row maximum skipping NaN, like the scalar fold over
            /// `Float::max`: max(v, acc) keeps `acc` when `v` is NaN.
            #[target_feature(enable = $feat)]
            fn row_max(x: &[f32]) -> f32 {
                s::hmax(s::fold(x, NEG_INF, NEG_INF, |acc, v| s::max(v, acc), |a, b| s::max(a, b)))
            }

            #[target_feature(enable = $feat)]
            pub(super) fn softmax_row(x: &[f32], out: &mut [f32]) {
                let max = row_max(x);
                if max == NEG_INF {
                    out.fill(0.0);
                    return;
                }
                let m = s::splat(max);
                // out = e^(x − max), summed on the way; padding lanes hold
                // −inf, whose exp adds 0.
                let mut sum = s::zero();
                let mut xs = x.chunks_exact(s::LANES);
                let mut os = out.chunks_exact_mut(s::LANES);
                for (x, o) in (&mut xs).zip(&mut os) {
                    let e = s::exp(s::sub(s::load(x), m));
                    s::store(o, e);
                    sum = s::add(sum, e);
                }
                let (x, o) = (xs.remainder(), os.into_remainder());
                if !x.is_empty() {
                    let e = s::exp(s::sub(s::load_partial(x, NEG_INF), m));
                    s::store_partial(o, e);
                    sum = s::add(sum, e);
                }
                let inv = s::splat(1.0 / s::hsum(sum));
                s::map_inplace(out, |v| s::mul(v, inv));
            }

            #[target_feature(enable = $feat)]
            pub(super) fn log_softmax_row(x: &[f32], out: &mut [f32]) {
                let max = row_max(x);
                if max == NEG_INF {
                    out.fill(NEG_INF);
                    return;
                }
                let m = s::splat(max);
                let sum = s::fold(x, 0.0, NEG_INF, |acc, v| s::add(acc, s::exp(s::sub(v, m))), |a, b| s::add(a, b));
                let lse = s::splat(max + s::hsum(sum).ln());
                s::map(x, out, |v| s::sub(v, lse));
            }

            #[target_feature(enable = $feat)]
            pub(super) fn softmax_backward_row(y: &[f32], dy: &[f32], dx: &mut [f32]) {
                let dot = s::fold2(y, dy, 0.0, (0.0, 0.0), |acc, y, g| s::fmadd(y, g, acc), |a, b| s::add(a, b));
                let dot = s::splat(s::hsum(dot));
                s::zip_map(y, dy, dx, |y, g| s::mul(y, s::sub(g, dot)));
            }

            #[target_feature(enable = $feat)]
            pub(super) fn log_softmax_backward_row(y: &[f32], dy: &[f32], dx: &mut [f32]) {
                let sum = s::splat(s::hsum(s::fold(dy, 0.0, 0.0, |acc, g| s::add(acc, g), |a, b| s::add(a, b))));
                s::zip_map(y, dy, dx, |y, g| s::fnmadd(s::exp(y), sum, g));
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

    /// Rows of `cols` random values, some positions masked with −inf, one
    /// row fully masked.
    fn masked_rows(rng: &mut Rng, rows: usize, cols: usize) -> Vec<f32> {
        let mut x = rng.vec_f32(rows * cols, -8.0, 8.0);
        for v in x.iter_mut() {
            if rng.next_u64().is_multiple_of(5) {
                *v = f32::NEG_INFINITY;
            }
        }
        if rows > 1 && cols > 0 {
            x[cols..2 * cols].fill(f32::NEG_INFINITY);
        }
        x
    }

    /// The generic scalar code run in f64 on the same inputs: the reference
    /// for f32 results, so that long rows measure accuracy rather than
    /// agreement in summation order.
    fn in_f64(f: impl Fn(&[f64], &mut [f64]), x: &[f32]) -> Vec<f32> {
        let x: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let mut y = vec![0.0; x.len()];
        f(&x, &mut y);
        y.iter().map(|&v| v as f32).collect()
    }

    #[test]
    fn forward_matches_f64_at_every_width() {
        let mut rng = Rng::new(21);
        for &cols in SIZES.iter().chain(&[20_000]) {
            let rows = 3;
            let x = masked_rows(&mut rng, rows, cols);
            let sm = in_f64(|x, y| softmax_rows_with(Isa::Scalar, x, y, cols), &x);
            let lsm = in_f64(|x, y| log_softmax_rows_with(Isa::Scalar, x, y, cols), &x);
            for isa in Isa::all_available() {
                let mut got = vec![f32::NAN; rows * cols];
                softmax_rows_with(isa, &x, &mut got, cols);
                assert_close(&got, &sm, 1e-7, 2e-6, &format!("{} softmax cols={cols}", isa.name()));
                log_softmax_rows_with(isa, &x, &mut got, cols);
                assert_close(&got, &lsm, 2e-6, 1e-6, &format!("{} log_softmax cols={cols}", isa.name()));
            }
        }
    }

    #[test]
    fn fully_masked_rows_give_zeros_and_neg_inf_never_nan() {
        for isa in Isa::all_available() {
            for cols in [1, 2, 3, 16, 17, 100] {
                let x = vec![f32::NEG_INFINITY; 2 * cols];
                let mut out = vec![f32::NAN; 2 * cols];
                softmax_rows_with(isa, &x, &mut out, cols);
                assert!(out.iter().all(|&v| v == 0.0), "{} cols={cols}", isa.name());
                log_softmax_rows_with(isa, &x, &mut out, cols);
                assert!(out.iter().all(|&v| v == f32::NEG_INFINITY), "{} cols={cols}", isa.name());
            }
        }
    }

    #[test]
    fn rows_sum_to_one_and_tiny_rows_are_exact() {
        let mut rng = Rng::new(22);
        for isa in Isa::all_available() {
            let x = rng.vec_f32(7 * 1000, -30.0, 30.0);
            let mut out = vec![0.0; x.len()];
            softmax_rows_with(isa, &x, &mut out, 1000);
            for row in out.chunks(1000) {
                let s: f64 = row.iter().map(|&v| v as f64).sum();
                assert!((s - 1.0).abs() < 1e-5, "{}: row sums to {s}", isa.name());
            }
            let mut one = [0.0f32; 4];
            softmax_rows_with(isa, &[3.0, -2.0, 0.5, f32::NEG_INFINITY], &mut one, 1);
            assert_eq!(one, [1.0, 1.0, 1.0, 0.0]);
            log_softmax_rows_with(isa, &[3.0, 3.0], &mut one[..2], 2);
            assert!((one[0] + std::f32::consts::LN_2).abs() < 1e-7);
        }
    }

    #[test]
    fn nan_poisons_its_row_like_the_scalar_path() {
        for isa in Isa::all_available() {
            let x = [1.0, f32::NAN, 2.0, 0.0, 1.0, 2.0];
            let mut out = [0.0f32; 6];
            softmax_rows_with(isa, &x, &mut out, 3);
            assert!(out[..3].iter().all(|v| v.is_nan()) && out[3..].iter().all(|v| v.is_finite()));
        }
    }

    /// Σ w ⊙ f(x) and its finite-difference gradient, for a row map f.
    fn fd_grad(f: impl Fn(&[f64], &mut [f64]), x: &[f64], w: &[f64]) -> Vec<f64> {
        let loss = |x: &[f64]| {
            let mut y = vec![0.0; x.len()];
            f(x, &mut y);
            y.iter().zip(w).map(|(a, b)| a * b).sum::<f64>()
        };
        let h = 1e-6;
        (0..x.len())
            .map(|i| {
                let (mut p, mut m) = (x.to_vec(), x.to_vec());
                p[i] += h;
                m[i] -= h;
                (loss(&p) - loss(&m)) / (2.0 * h)
            })
            .collect()
    }

    #[test]
    fn backward_matches_finite_differences_in_f64() {
        let mut rng = Rng::new(23);
        let (rows, cols) = (3, 7);
        let x = rng.vec_f64(rows * cols, -3.0, 3.0);
        let w = rng.vec_f64(rows * cols, -1.0, 1.0);
        let mut y = vec![0.0; rows * cols];
        let mut dx = vec![0.0; rows * cols];

        softmax_rows(&x, &mut y, cols);
        softmax_backward_rows(&y, &w, &mut dx, cols);
        let fd = fd_grad(|x, y| softmax_rows(x, y, cols), &x, &w);
        for (a, b) in dx.iter().zip(&fd) {
            assert!((a - b).abs() < 1e-8, "softmax: {a} vs {b}");
        }

        log_softmax_rows(&x, &mut y, cols);
        log_softmax_backward_rows(&y, &w, &mut dx, cols);
        let fd = fd_grad(|x, y| log_softmax_rows(x, y, cols), &x, &w);
        for (a, b) in dx.iter().zip(&fd) {
            assert!((a - b).abs() < 1e-8, "log_softmax: {a} vs {b}");
        }
    }

    #[test]
    fn backward_simd_matches_scalar() {
        let mut rng = Rng::new(24);
        for &cols in SIZES {
            let rows = 3;
            let x = masked_rows(&mut rng, rows, cols);
            let dy = rng.vec_f32(rows * cols, -1.0, 1.0);
            let (mut y, mut ly) = (vec![0.0; rows * cols], vec![0.0; rows * cols]);
            softmax_rows_with(Isa::Scalar, &x, &mut y, cols);
            log_softmax_rows_with(Isa::Scalar, &x, &mut ly, cols);
            let (mut want, mut lwant) = (vec![0.0; rows * cols], vec![0.0; rows * cols]);
            softmax_backward_rows_with(Isa::Scalar, &y, &dy, &mut want, cols);
            log_softmax_backward_rows_with(Isa::Scalar, &ly, &dy, &mut lwant, cols);
            for isa in simd_isas() {
                let mut got = vec![f32::NAN; rows * cols];
                softmax_backward_rows_with(isa, &y, &dy, &mut got, cols);
                assert_close(&got, &want, 1e-6, 1e-5, &format!("{} softmax_backward cols={cols}", isa.name()));
                log_softmax_backward_rows_with(isa, &ly, &dy, &mut got, cols);
                assert_close(&got, &lwant, 1e-5, 1e-5, &format!("{} log_softmax_backward cols={cols}", isa.name()));
            }
        }
    }

    #[test]
    #[should_panic(expected = "multiple of cols")]
    fn ragged_input_panics() {
        softmax_rows(&[1.0f32; 5], &mut [0.0; 5], 2);
    }
}
