//! Layer normalisation over contiguous rows:
//! `y = (x − mean) · rstd · gamma + beta`, `rstd = 1/sqrt(var + eps)`,
//! biased variance (as PyTorch). The per-row mean and rstd are returned for
//! the backward pass.

use crate::{Float, Isa};

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

#[allow(clippy::too_many_arguments)]
pub fn layer_norm_rows_with<T: Float>(
    _isa: Isa,
    x: &[T],
    gamma: Option<&[T]>,
    beta: Option<&[T]>,
    eps: f64,
    cols: usize,
    out: &mut [T],
    mean: &mut [T],
    rstd: &mut [T],
) {
    assert_eq!(x.len(), out.len());
    if cols == 0 {
        return;
    }
    let rows = x.len() / cols;
    assert_eq!(mean.len(), rows);
    assert_eq!(rstd.len(), rows);
    let n = T::from_usize(cols);
    for r in 0..rows {
        let xr = &x[r * cols..(r + 1) * cols];
        let or = &mut out[r * cols..(r + 1) * cols];
        let mu = xr.iter().copied().sum::<T>() / n;
        let var = xr.iter().map(|&v| (v - mu) * (v - mu)).sum::<T>() / n;
        let rs = T::ONE / (var + T::from_f64(eps)).sqrt();
        for c in 0..cols {
            let mut y = (xr[c] - mu) * rs;
            if let Some(g) = gamma {
                y *= g[c];
            }
            if let Some(b) = beta {
                y += b[c];
            }
            or[c] = y;
        }
        mean[r] = mu;
        rstd[r] = rs;
    }
}
