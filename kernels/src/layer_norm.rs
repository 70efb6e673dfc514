//! Layer normalisation over contiguous rows:
//! `y = (x − mean) · rstd · gamma + beta`, `rstd = 1/sqrt(var + eps)`,
//! biased variance (as PyTorch). The per-row mean and rstd are returned for
//! the backward pass.
//!
//! The variance is two-pass (Σ(x − mean)² after the mean), which stays
//! accurate when |mean| ≫ std, where Σx² − n·mean² would cancel.

use crate::simd::{f32s, f32s_mut};
use crate::{reduce, simd, Float, Isa};

/// Checks the shapes shared by forward and backward; returns the row count.
fn check_shapes<T>(what: &str, x: usize, cols: usize, stats: [&[T]; 2], params: [Option<usize>; 3]) -> usize {
    let rows = x / cols;
    assert_eq!(rows * cols, x, "{what}: length is not a multiple of cols");
    assert!(stats.iter().all(|s| s.len() == rows), "{what}: mean/rstd need one value per row");
    assert!(params.iter().flatten().all(|&len| len == cols), "{what}: per-column parameters need cols values");
    rows
}

/// Normalise each row of `cols` elements. `gamma`/`beta` have `cols` elements.
/// `mean` and `rstd` (one per row) receive the statistics.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_rows<T: Float>(
    x: &[T],
    gamma: Option<&[T]>,
    beta: Option<&[T]>,
    eps: f64,
    cols: usize,
    out: &mut [T],
    mean: &mut [T],
    rstd: &mut [T],
) {
    layer_norm_rows_with(Isa::active(), x, gamma, beta, eps, cols, out, mean, rstd)
}

/// As [`layer_norm_rows`], on an explicit ISA path (panics if the CPU lacks it).
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_rows_with<T: Float>(
    isa: Isa,
    x: &[T],
    gamma: Option<&[T]>,
    beta: Option<&[T]>,
    eps: f64,
    cols: usize,
    out: &mut [T],
    mean: &mut [T],
    rstd: &mut [T],
) {
    assert_eq!(x.len(), out.len(), "layer_norm_rows: input and output lengths differ");
    if cols == 0 {
        return;
    }
    check_shapes("layer_norm_rows", x.len(), cols, [mean, rstd], [gamma.map(<[T]>::len), beta.map(<[T]>::len), None]);
    let rows = x.chunks_exact(cols).zip(out.chunks_exact_mut(cols)).zip(mean.iter_mut().zip(rstd.iter_mut()));
    let eps = T::from_f64(eps);
    let to_t = |v: f32| T::from_f64(v as f64);
    match simd::path::<T>(isa) {
        #[cfg(target_arch = "x86_64")]
        Some(Isa::Avx512) => {
            let (g, b, e) = (gamma.map(f32s), beta.map(f32s), eps.to_f64() as f32);
            for ((x, o), (mu, rs)) in rows {
                // SAFETY: `path` returned this ISA, so the CPU runs it.
                let (m, r) = unsafe { avx512::forward_row(f32s(x), g, b, e, f32s_mut(o)) };
                (*mu, *rs) = (to_t(m), to_t(r));
            }
        }
        #[cfg(target_arch = "x86_64")]
        Some(Isa::Avx2Fma) => {
            let (g, b, e) = (gamma.map(f32s), beta.map(f32s), eps.to_f64() as f32);
            for ((x, o), (mu, rs)) in rows {
                // SAFETY: `path` returned this ISA, so the CPU runs it.
                let (m, r) = unsafe { avx2::forward_row(f32s(x), g, b, e, f32s_mut(o)) };
                (*mu, *rs) = (to_t(m), to_t(r));
            }
        }
        _ => {
            let n = T::from_usize(cols);
            for ((xr, or), (mu, rs)) in rows {
                // Pairwise sums, as accurate as the SIMD paths' many
                // accumulators; `or` holds the squared deviations meanwhile.
                let m = reduce::sum_with(Isa::Scalar, xr) / n;
                for (o, &v) in or.iter_mut().zip(xr) {
                    *o = (v - m) * (v - m);
                }
                let var = reduce::sum_with(Isa::Scalar, or) / n;
                let r = T::ONE / (var + eps).sqrt();
                for c in 0..cols {
                    let mut y = (xr[c] - m) * r;
                    if let Some(g) = gamma {
                        y *= g[c];
                    }
                    if let Some(b) = beta {
                        y += b[c];
                    }
                    or[c] = y;
                }
                (*mu, *rs) = (m, r);
            }
        }
    }
}

/// Backward of [`layer_norm_rows`] given its saved `mean` and `rstd`. With
/// x̂ = (x − mean)·rstd and g = dy·gamma (dy without gamma), per row:
/// `dx = rstd·(g − mean(g) − x̂·mean(g·x̂))` (overwrites `dx`), and over all
/// rows `dgamma_acc += Σ dy·x̂`, `dbeta_acc += Σ dy` (accumulates, so the
/// caller zeroes them or sums over micro-batches). Rows are processed in
/// order, so the accumulation is deterministic.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward_rows<T: Float>(
    x: &[T],
    gamma: Option<&[T]>,
    mean: &[T],
    rstd: &[T],
    dy: &[T],
    cols: usize,
    dx: &mut [T],
    dgamma_acc: Option<&mut [T]>,
    dbeta_acc: Option<&mut [T]>,
) {
    layer_norm_backward_rows_with(Isa::active(), x, gamma, mean, rstd, dy, cols, dx, dgamma_acc, dbeta_acc)
}

/// As [`layer_norm_backward_rows`], on an explicit ISA path (panics if the CPU lacks it).
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward_rows_with<T: Float>(
    isa: Isa,
    x: &[T],
    gamma: Option<&[T]>,
    mean: &[T],
    rstd: &[T],
    dy: &[T],
    cols: usize,
    dx: &mut [T],
    mut dgamma_acc: Option<&mut [T]>,
    mut dbeta_acc: Option<&mut [T]>,
) {
    assert!(x.len() == dy.len() && x.len() == dx.len(), "layer_norm_backward_rows: x, dy and dx lengths differ");
    if cols == 0 {
        return;
    }
    let param_lens =
        [gamma.map(<[T]>::len), dgamma_acc.as_deref().map(<[T]>::len), dbeta_acc.as_deref().map(<[T]>::len)];
    check_shapes("layer_norm_backward_rows", x.len(), cols, [mean, rstd], param_lens);
    let rows =
        x.chunks_exact(cols).zip(dy.chunks_exact(cols)).zip(dx.chunks_exact_mut(cols)).zip(mean.iter().zip(rstd));
    let to_f32 = |v: T| v.to_f64() as f32;
    match simd::path::<T>(isa) {
        #[cfg(target_arch = "x86_64")]
        Some(Isa::Avx512) => {
            let g = gamma.map(f32s);
            let (mut dg, mut db) = (dgamma_acc.map(f32s_mut), dbeta_acc.map(f32s_mut));
            for (((x, dy), dx), (&m, &r)) in rows {
                let (x, dy, dx) = (f32s(x), f32s(dy), f32s_mut(dx));
                let (m, r) = (to_f32(m), to_f32(r));
                // SAFETY: `path` returned this ISA, so the CPU runs it.
                unsafe { avx512::backward_row(x, g, m, r, dy, dx, dg.as_deref_mut(), db.as_deref_mut()) };
            }
        }
        #[cfg(target_arch = "x86_64")]
        Some(Isa::Avx2Fma) => {
            let g = gamma.map(f32s);
            let (mut dg, mut db) = (dgamma_acc.map(f32s_mut), dbeta_acc.map(f32s_mut));
            for (((x, dy), dx), (&m, &r)) in rows {
                let (x, dy, dx) = (f32s(x), f32s(dy), f32s_mut(dx));
                let (m, r) = (to_f32(m), to_f32(r));
                // SAFETY: `path` returned this ISA, so the CPU runs it.
                unsafe { avx2::backward_row(x, g, m, r, dy, dx, dg.as_deref_mut(), db.as_deref_mut()) };
            }
        }
        _ => {
            let n = T::from_usize(cols);
            for (((x, dy), dx), (&m, &r)) in rows {
                let (mut sum_g, mut sum_gx) = (T::ZERO, T::ZERO);
                for c in 0..cols {
                    let xhat = (x[c] - m) * r;
                    let g = gamma.map_or(dy[c], |gm| dy[c] * gm[c]);
                    sum_g += g;
                    sum_gx += g * xhat;
                    if let Some(dg) = dgamma_acc.as_deref_mut() {
                        dg[c] += dy[c] * xhat;
                    }
                    if let Some(db) = dbeta_acc.as_deref_mut() {
                        db[c] += dy[c];
                    }
                }
                let (mg, mgx) = (sum_g / n, sum_gx / n);
                for c in 0..cols {
                    let xhat = (x[c] - m) * r;
                    let g = gamma.map_or(dy[c], |gm| dy[c] * gm[c]);
                    dx[c] = (g - mg - xhat * mgx) * r;
                }
            }
        }
    }
}

/// The f32 SIMD kernels, written once against the names that every
/// `crate::simd` ISA module exports. One call handles one row, as a few
/// simple passes over data that stays in L1 (a fused loop with optional
/// operands compiles to branchy code that spills registers).
macro_rules! simd_kernels {
    ($isa:ident, $feat:literal) => {
        #[cfg(target_arch = "x86_64")]
        mod $isa {
            use crate::simd::$isa as s;

            /// Normalises one row into `out`; returns (mean, rstd).
            #[target_feature(enable = $feat)]
            pub(super) fn forward_row(
                x: &[f32],
                gamma: Option<&[f32]>,
                beta: Option<&[f32]>,
                eps: f32,
                out: &mut [f32],
            ) -> (f32, f32) {
                let add = |a, b| s::add(a, b);
                let n = x.len() as f32;
                let mean = s::hsum(s::fold(x, 0.0, 0.0, add, add)) / n;
                let m = s::splat(mean);
                // Padding lanes hold the mean itself, adding (mean − mean)² = 0.
                let sq_dev = |acc, v| {
                    let d = s::sub(v, m);
                    s::fmadd(d, d, acc)
                };
                let var = s::hsum(s::fold(x, 0.0, mean, sq_dev, add)) / n;
                let rstd = 1.0 / (var + eps).sqrt();
                let r = s::splat(rstd);
                // Unfused, in the scalar twin's order: ((x − mean)·rstd)·gamma + beta.
                let norm = |v| s::mul(s::sub(v, m), r);
                match gamma {
                    Some(g) => s::zip_map(x, g, out, |v, g| s::mul(norm(v), g)),
                    None => s::map(x, out, norm),
                }
                if let Some(b) = beta {
                    s::zip_map_inplace(b, out, |b, y| s::add(y, b));
                }
                (mean, rstd)
            }

            #[allow(clippy::too_many_arguments)]
            #[target_feature(enable = $feat)]
            pub(super) fn backward_row(
                x: &[f32],
                gamma: Option<&[f32]>,
                mean: f32,
                rstd: f32,
                dy: &[f32],
                dx: &mut [f32],
                dgamma: Option<&mut [f32]>,
                dbeta: Option<&mut [f32]>,
            ) {
                let add = |a, b| s::add(a, b);
                let (m, r) = (s::splat(mean), s::splat(rstd));
                let xhat = |v| s::mul(s::sub(v, m), r);
                // dx holds g = dy·gamma until the last pass turns it into the gradient.
                match gamma {
                    Some(gm) => s::zip_map(dy, gm, dx, |d, g| s::mul(d, g)),
                    None => dx.copy_from_slice(dy),
                }
                // Padded lanes have g = 0, so they add nothing to either sum.
                let sum_g = s::hsum(s::fold(dx, 0.0, 0.0, add, add));
                let sum_gx = s::hsum(s::fold2(dx, x, 0.0, (0.0, 0.0), |acc, g, v| s::fmadd(g, xhat(v), acc), add));
                if let Some(dg) = dgamma {
                    s::zip2_map_inplace(dy, x, dg, |d, v, acc| s::fmadd(d, xhat(v), acc));
                }
                if let Some(db) = dbeta {
                    s::zip_map_inplace(dy, db, |d, acc| s::add(acc, d));
                }
                let n = x.len() as f32;
                let (mg, mgx) = (s::splat(sum_g / n), s::splat(sum_gx / n));
                s::zip_map_inplace(x, dx, |v, g| s::mul(s::fnmadd(xhat(v), mgx, s::sub(g, mg)), r));
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

    const EPS: f64 = 1e-5;

    /// Optional gamma and beta.
    type Affine<T> = (Option<Vec<T>>, Option<Vec<T>>);

    /// All four gamma/beta combinations.
    fn affine_cases<T: Copy>(g: &[T], b: &[T]) -> [Affine<T>; 4] {
        [(None, None), (Some(g.to_vec()), None), (None, Some(b.to_vec())), (Some(g.to_vec()), Some(b.to_vec()))]
    }

    #[test]
    fn forward_simd_matches_scalar() {
        let mut rng = Rng::new(31);
        for &cols in SIZES.iter().filter(|&&c| c > 0) {
            let rows = 3;
            // An offset mean tests the two-pass variance.
            let x: Vec<f32> = rng.vec_f32(rows * cols, -2.0, 2.0).iter().map(|v| v + 100.0).collect();
            let g = rng.vec_f32(cols, 0.5, 1.5);
            let b = rng.vec_f32(cols, -1.0, 1.0);
            for (g, b) in affine_cases(&g, &b) {
                let (g, b) = (g.as_deref(), b.as_deref());
                let (mut want, mut wm, mut wr) = (vec![0.0; rows * cols], vec![0.0; rows], vec![0.0; rows]);
                layer_norm_rows_with(Isa::Scalar, &x, g, b, EPS, cols, &mut want, &mut wm, &mut wr);
                for isa in simd_isas() {
                    let (mut got, mut gm, mut gr) = (vec![f32::NAN; rows * cols], vec![0.0; rows], vec![0.0; rows]);
                    layer_norm_rows_with(isa, &x, g, b, EPS, cols, &mut got, &mut gm, &mut gr);
                    let what = format!("{} cols={cols} gamma={} beta={}", isa.name(), g.is_some(), b.is_some());
                    assert_close(&gm, &wm, 0.0, 1e-6, &what);
                    // rstd of a row of 1 is 1/sqrt(eps): sensitive to the mean's last bit.
                    assert_close(&gr, &wr, 0.0, if cols == 1 { 1e-2 } else { 1e-4 }, &what);
                    assert_close(&got, &want, 2e-4, 1e-4, &what);
                }
            }
        }
    }

    #[test]
    fn normalised_rows_have_zero_mean_unit_variance() {
        let mut rng = Rng::new(32);
        for isa in Isa::all_available() {
            let cols = 384;
            let x = rng.vec_f32(4 * cols, -5.0, 5.0);
            let (mut y, mut m, mut r) = (vec![0.0; x.len()], vec![0.0; 4], vec![0.0; 4]);
            layer_norm_rows_with(isa, &x, None, None, 0.0, cols, &mut y, &mut m, &mut r);
            for row in y.chunks(cols) {
                let mean: f64 = row.iter().map(|&v| v as f64).sum::<f64>() / cols as f64;
                let var: f64 = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / cols as f64;
                assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5, "{}: mean {mean}, var {var}", isa.name());
            }
        }
    }

    /// Loss Σ w ⊙ LN(x; gamma, beta) in f64.
    fn loss(x: &[f64], g: Option<&[f64]>, b: Option<&[f64]>, w: &[f64], cols: usize) -> f64 {
        let rows = x.len() / cols;
        let (mut y, mut m, mut r) = (vec![0.0; x.len()], vec![0.0; rows], vec![0.0; rows]);
        layer_norm_rows(x, g, b, EPS, cols, &mut y, &mut m, &mut r);
        y.iter().zip(w).map(|(a, b)| a * b).sum()
    }

    /// Central difference of `f` with respect to each element of `v`.
    fn fd(v: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
        let h = 1e-6;
        (0..v.len())
            .map(|i| {
                let (mut p, mut m) = (v.to_vec(), v.to_vec());
                p[i] += h;
                m[i] -= h;
                (f(&p) - f(&m)) / (2.0 * h)
            })
            .collect()
    }

    fn assert_all_close(a: &[f64], b: &[f64], what: &str) {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() < 1e-7 * (1.0 + y.abs()), "{what}[{i}]: {x} vs {y}");
        }
    }

    #[test]
    fn backward_matches_finite_differences_in_f64() {
        let mut rng = Rng::new(33);
        let (rows, cols) = (3, 7);
        let x = rng.vec_f64(rows * cols, -2.0, 2.0);
        let w = rng.vec_f64(rows * cols, -1.0, 1.0);
        let (g, b) = (rng.vec_f64(cols, 0.5, 1.5), rng.vec_f64(cols, -1.0, 1.0));
        for (gm, bt) in affine_cases(&g, &b) {
            let (gm, bt) = (gm.as_deref(), bt.as_deref());
            let (mut y, mut m, mut r) = (vec![0.0; x.len()], vec![0.0; rows], vec![0.0; rows]);
            layer_norm_rows(&x, gm, bt, EPS, cols, &mut y, &mut m, &mut r);
            let (mut dx, mut dg, mut db) = (vec![0.0; x.len()], vec![0.0; cols], vec![0.0; cols]);
            layer_norm_backward_rows(&x, gm, &m, &r, &w, cols, &mut dx, Some(&mut dg), Some(&mut db));
            assert_all_close(&dx, &fd(&x, |x| loss(x, gm, bt, &w, cols)), "dx");
            // dgamma/dbeta are the gradients of an (absent) gamma = 1, beta = 0 too.
            let g1 = gm.map_or(vec![1.0; cols], <[f64]>::to_vec);
            assert_all_close(&dg, &fd(&g1, |g| loss(&x, Some(g), bt, &w, cols)), "dgamma");
            assert_all_close(&db, &fd(&vec![0.0; cols], |b| loss(&x, gm, Some(b), &w, cols)), "dbeta");
        }
    }

    #[test]
    fn backward_simd_matches_scalar_and_accumulates() {
        let mut rng = Rng::new(34);
        for &cols in SIZES.iter().filter(|&&c| c > 0) {
            let rows = 3;
            let x = rng.vec_f32(rows * cols, -2.0, 2.0);
            let dy = rng.vec_f32(rows * cols, -1.0, 1.0);
            let g = rng.vec_f32(cols, 0.5, 1.5);
            let (mut y, mut m, mut r) = (vec![0.0; x.len()], vec![0.0; rows], vec![0.0; rows]);
            layer_norm_rows_with(Isa::Scalar, &x, Some(&g), None, EPS, cols, &mut y, &mut m, &mut r);
            for gamma in [None, Some(&g[..])] {
                // Start the accumulators at 1 to see that they accumulate.
                let (mut wdx, mut wdg, mut wdb) = (vec![0.0; x.len()], vec![1.0; cols], vec![1.0; cols]);
                layer_norm_backward_rows_with(
                    Isa::Scalar,
                    &x,
                    gamma,
                    &m,
                    &r,
                    &dy,
                    cols,
                    &mut wdx,
                    Some(&mut wdg),
                    Some(&mut wdb),
                );
                for isa in simd_isas() {
                    let what = format!("{} cols={cols} gamma={}", isa.name(), gamma.is_some());
                    let (mut dx, mut dg, mut db) = (vec![f32::NAN; x.len()], vec![1.0; cols], vec![1.0; cols]);
                    layer_norm_backward_rows_with(
                        isa,
                        &x,
                        gamma,
                        &m,
                        &r,
                        &dy,
                        cols,
                        &mut dx,
                        Some(&mut dg),
                        Some(&mut db),
                    );
                    assert_close(&dx, &wdx, 2e-5, 1e-4, &format!("dx {what}"));
                    assert_close(&dg, &wdg, 1e-5, 1e-5, &format!("dgamma {what}"));
                    assert_close(&db, &wdb, 1e-6, 1e-6, &format!("dbeta {what}"));
                    layer_norm_backward_rows_with(isa, &x, gamma, &m, &r, &dy, cols, &mut dx, None, None);
                    assert_close(&dx, &wdx, 2e-5, 1e-4, &format!("dx without accumulators {what}"));
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "per-column parameters")]
    fn short_gamma_panics() {
        let (mut y, mut m, mut r) = (vec![0.0f32; 4], vec![0.0; 2], vec![0.0; 2]);
        layer_norm_rows(&[1.0; 4], Some(&[1.0]), None, EPS, 2, &mut y, &mut m, &mut r);
    }
}
