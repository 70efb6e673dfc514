//! Layer normalisation over the last dim (PyTorch semantics: biased
//! variance, `eps` inside the square root) and its backward.
//!
//! The forward kernel returns each row's mean and `rstd = 1/sqrt(var + eps)`;
//! the backward reuses them instead of recomputing the statistics.

use rayon::prelude::*;

use kogner_kernels::layer_norm::layer_norm_rows;

use super::elementwise::from_storage_vec;
use super::PAR_THRESHOLD;
use crate::{with_float_dtype, Error, FloatElement, Result, Tensor};

/// Rows per parallel chunk: everything in one chunk below the threshold.
fn rows_per_chunk(rows: usize, cols: usize) -> usize {
    if rows * cols < PAR_THRESHOLD {
        rows.max(1)
    } else {
        rows.div_ceil(rayon::current_num_threads() * 4).max(1)
    }
}

/// The normalised dim's size; errors for rank 0.
fn last_dim(op: &'static str, x: &Tensor) -> Result<usize> {
    x.shape().last().copied().ok_or_else(|| Error::shape(op, "needs a tensor of rank >= 1"))
}

/// An affine parameter must be `[D]` in `x`'s dtype; returns it contiguous.
fn check_param(op: &'static str, name: &str, p: Option<&Tensor>, x: &Tensor, cols: usize) -> Result<Option<Tensor>> {
    let Some(p) = p else { return Ok(None) };
    if p.shape() != [cols] {
        return Err(Error::shape(op, format!("{name} has shape {:?}, expected [{cols}] for input {:?}", p.shape(), x.shape())));
    }
    if p.dtype() != x.dtype() {
        return Err(Error::DTypeMismatch { op, lhs: x.dtype(), rhs: p.dtype() });
    }
    Ok(Some(p.contiguous()?))
}

fn forward_impl<T: FloatElement>(
    x: &Tensor,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let cols = last_dim("layer_norm", x)?;
    let gamma = check_param("layer_norm", "gamma", gamma, x, cols)?;
    let beta = check_param("layer_norm", "beta", beta, x, cols)?;
    let stat_shape = &x.shape()[..x.rank() - 1];
    let xc = x.contiguous()?;
    let src = xc.as_slice::<T>()?;
    let rows: usize = stat_shape.iter().product();
    let (mut out, mut mean, mut rstd) = (vec![T::ZERO; src.len()], vec![T::ZERO; rows], vec![T::ZERO; rows]);
    if cols > 0 {
        let g = gamma.as_ref().map(|t| t.as_slice::<T>()).transpose()?;
        let b = beta.as_ref().map(|t| t.as_slice::<T>()).transpose()?;
        let per = rows_per_chunk(rows, cols);
        out.par_chunks_mut(per * cols)
            .zip(mean.par_chunks_mut(per))
            .zip(rstd.par_chunks_mut(per))
            .enumerate()
            .for_each(|(i, ((o, m), r))| {
                let start = i * per * cols;
                layer_norm_rows(&src[start..start + o.len()], g, b, eps, cols, o, m, r);
            });
    }
    Ok((from_storage_vec(out, x.shape()), from_storage_vec(mean, stat_shape), from_storage_vec(rstd, stat_shape)))
}

/// Backward over rows: writes `dx` and accumulates `dgamma += g ⊙ x̂`,
/// `dbeta += g` (column sums), with `x̂ = (x − mean)·rstd`,
/// `dx̂ = g ⊙ gamma`, `dx = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂ ⊙ x̂))`.
#[allow(clippy::too_many_arguments)]
fn backward_rows<T: FloatElement>(
    x: &[T],
    gamma: Option<&[T]>,
    mean: &[T],
    rstd: &[T],
    g: &[T],
    cols: usize,
    dx: &mut [T],
    dgamma: &mut [T],
    dbeta: &mut [T],
) {
    let n = T::from_usize(cols);
    for (r, ((xr, gr), dr)) in x.chunks_exact(cols).zip(g.chunks_exact(cols)).zip(dx.chunks_exact_mut(cols)).enumerate() {
        let (mu, rs) = (mean[r], rstd[r]);
        let (mut sum_dxhat, mut sum_dxhat_xhat) = (T::ZERO, T::ZERO);
        for c in 0..cols {
            let xhat = (xr[c] - mu) * rs;
            let dxhat = gamma.map_or(gr[c], |w| gr[c] * w[c]);
            sum_dxhat += dxhat;
            sum_dxhat_xhat += dxhat * xhat;
            dgamma[c] += gr[c] * xhat;
            dbeta[c] += gr[c];
        }
        let (a, b) = (sum_dxhat / n, sum_dxhat_xhat / n);
        for c in 0..cols {
            let xhat = (xr[c] - mu) * rs;
            let dxhat = gamma.map_or(gr[c], |w| gr[c] * w[c]);
            dr[c] = rs * (dxhat - a - xhat * b);
        }
    }
}

fn backward_impl<T: FloatElement>(
    x: &Tensor,
    gamma: Option<&Tensor>,
    mean: &Tensor,
    rstd: &Tensor,
    g: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let op = "layer_norm_backward";
    let cols = last_dim(op, x)?;
    let gamma = check_param(op, "gamma", gamma, x, cols)?;
    let stat_shape = &x.shape()[..x.rank() - 1];
    for (name, t) in [("g", g), ("mean", mean), ("rstd", rstd)] {
        let want = if name == "g" { x.shape() } else { stat_shape };
        if t.shape() != want {
            return Err(Error::shape(op, format!("{name} has shape {:?}, expected {want:?}", t.shape())));
        }
        if t.dtype() != x.dtype() {
            return Err(Error::DTypeMismatch { op, lhs: x.dtype(), rhs: t.dtype() });
        }
    }
    let (xc, gc, mc, rc) = (x.contiguous()?, g.contiguous()?, mean.contiguous()?, rstd.contiguous()?);
    let (xs, gs, ms, rs) = (xc.as_slice::<T>()?, gc.as_slice::<T>()?, mc.as_slice::<T>()?, rc.as_slice::<T>()?);
    let w = gamma.as_ref().map(|t| t.as_slice::<T>()).transpose()?;
    let rows: usize = stat_shape.iter().product();
    let mut dx = vec![T::ZERO; xs.len()];
    let (mut dgamma, mut dbeta) = (vec![T::ZERO; cols], vec![T::ZERO; cols]);
    if cols > 0 {
        // Each chunk sums its own gamma/beta partials; they are added after.
        let per = rows_per_chunk(rows, cols);
        let partials: Vec<(Vec<T>, Vec<T>)> = dx
            .par_chunks_mut(per * cols)
            .enumerate()
            .map(|(i, d)| {
                let (r0, nr) = (i * per, d.len() / cols);
                let span = r0 * cols..(r0 + nr) * cols;
                let (mut pg, mut pb) = (vec![T::ZERO; cols], vec![T::ZERO; cols]);
                backward_rows(&xs[span.clone()], w, &ms[r0..r0 + nr], &rs[r0..r0 + nr], &gs[span], cols, d, &mut pg, &mut pb);
                (pg, pb)
            })
            .collect();
        for (pg, pb) in partials {
            dgamma.iter_mut().zip(&pg).for_each(|(a, &b)| *a += b);
            dbeta.iter_mut().zip(&pb).for_each(|(a, &b)| *a += b);
        }
    }
    Ok((from_storage_vec(dx, x.shape()), from_storage_vec(dgamma, &[cols]), from_storage_vec(dbeta, &[cols])))
}

impl Tensor {
    /// Layer norm over the last dim: `x [.., D]`, `gamma [D]`, `beta [D]` →
    /// `[.., D]`; `(x − mean)/sqrt(var + eps)·gamma + beta`, biased variance.
    pub fn layer_norm(&self, gamma: Option<&Tensor>, beta: Option<&Tensor>, eps: f64) -> Result<Tensor> {
        Ok(self.layer_norm_with_stats(gamma, beta, eps)?.0)
    }

    /// As [`Tensor::layer_norm`], also returning the row statistics the
    /// backward needs: `(y [.., D], mean [..], rstd [..])`.
    pub fn layer_norm_with_stats(
        &self,
        gamma: Option<&Tensor>,
        beta: Option<&Tensor>,
        eps: f64,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        with_float_dtype!(self.dtype(), "layer_norm", T => forward_impl::<T>(self, gamma, beta, eps))
    }

    /// Gradients of layer norm: `x [.., D]`, `gamma [D]` (if used), the
    /// forward's `mean [..]` and `rstd [..]`, output gradient `g [.., D]` →
    /// `(dx [.., D], dgamma [D], dbeta [D])`.
    pub fn layer_norm_backward(
        x: &Tensor,
        gamma: Option<&Tensor>,
        mean: &Tensor,
        rstd: &Tensor,
        g: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        with_float_dtype!(x.dtype(), "layer_norm_backward", T => backward_impl::<T>(x, gamma, mean, rstd, g))
    }
}

#[cfg(test)]
mod tests {
    use crate::{DType, Tensor};

    fn close(a: &[f64], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tol, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn forward_matches_hand_values() {
        // row [1, 2, 3]: mean 2, biased var 2/3; row [5, 5, 5]: var 0.
        let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 5.0, 5.0, 5.0], &[2, 3]).unwrap();
        let eps = 1e-5;
        let rs = 1.0 / (2.0f64 / 3.0 + eps).sqrt();
        let (y, mean, rstd) = x.layer_norm_with_stats(None, None, eps).unwrap();
        close(&y.to_vec::<f64>().unwrap(), &[-rs, 0.0, rs, 0.0, 0.0, 0.0], 1e-12);
        close(&mean.to_vec::<f64>().unwrap(), &[2.0, 5.0], 1e-15);
        close(&rstd.to_vec::<f64>().unwrap(), &[rs, 1.0 / eps.sqrt()], 1e-9);
        assert_eq!(mean.shape(), &[2]);

        let gamma = Tensor::from_vec(vec![2.0f64, 3.0, -1.0], &[3]).unwrap();
        let beta = Tensor::from_vec(vec![0.5f64, 0.0, 1.0], &[3]).unwrap();
        let y = x.layer_norm(Some(&gamma), Some(&beta), eps).unwrap();
        close(&y.to_vec::<f64>().unwrap(), &[-2.0 * rs + 0.5, 0.0, -rs + 1.0, 0.5, 0.0, 1.0], 1e-12);
    }

    #[test]
    fn backward_of_a_constant_row_shift_is_zero() {
        // Without gamma, y is invariant to adding a constant to a row and to
        // scaling it (eps aside), so g = y gives dx ≈ 0 orthogonal pieces:
        // check instead the hand case g = [1, 0, 0] on x = [1, 2, 3].
        let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[1, 3]).unwrap();
        let (_, mean, rstd) = x.layer_norm_with_stats(None, None, 0.0).unwrap();
        let g = Tensor::from_vec(vec![1.0f64, 0.0, 0.0], &[1, 3]).unwrap();
        let (dx, dgamma, dbeta) = Tensor::layer_norm_backward(&x, None, &mean, &rstd, &g).unwrap();
        // x̂ = [−r, 0, r] with r = sqrt(3/2); dx = rstd·(g − 1/3 − x̂·(−r/3))
        let r = 1.5f64.sqrt();
        let rs = r;
        let want = [rs * (1.0 - 1.0 / 3.0 - r * r / 3.0), rs * (-1.0 / 3.0), rs * (-1.0 / 3.0 + r * r / 3.0)];
        close(&dx.to_vec::<f64>().unwrap(), &want, 1e-12);
        close(&dgamma.to_vec::<f64>().unwrap(), &[-r, 0.0, 0.0], 1e-12);
        close(&dbeta.to_vec::<f64>().unwrap(), &[1.0, 0.0, 0.0], 1e-15);
    }

    #[test]
    fn bad_shapes_and_dtypes_are_errors() {
        let x = Tensor::zeros(&[2, 3], DType::F32);
        let err = x.layer_norm(Some(&Tensor::ones(&[4], DType::F32)), None, 1e-5).unwrap_err();
        assert!(err.to_string().contains("gamma"), "{err}");
        assert!(x.layer_norm(None, Some(&Tensor::ones(&[3], DType::F64)), 1e-5).is_err());
        assert!(Tensor::scalar(1.0f32).layer_norm(None, None, 1e-5).is_err());
        assert!(Tensor::zeros(&[2, 3], DType::U8).layer_norm(None, None, 1e-5).is_err());
        let (_, m, r) = x.layer_norm_with_stats(None, None, 1e-5).unwrap();
        assert!(Tensor::layer_norm_backward(&x, None, &m, &r, &Tensor::zeros(&[3, 2], DType::F32)).is_err());
        assert!(Tensor::layer_norm_backward(&x, None, &r.reshape(&[2, 1]).unwrap(), &r, &x).is_err());
    }
}
