//! Layer normalisation over the last dim (PyTorch semantics: biased
//! variance, `eps` inside the square root) and its backward.
//!
//! The forward kernel returns each row's mean and `rstd = 1/sqrt(var + eps)`;
//! the backward reuses them instead of recomputing the statistics.

use rayon::prelude::*;

use kogner_kernels::layer_norm::{layer_norm_backward_rows, layer_norm_rows};

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

/// `dx` rows from the kernel, in parallel chunks; `dgamma = Σ_rows g ⊙ x̂`
/// and `dbeta = Σ_rows g` from per-chunk partials.
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
                let stats = r0..r0 + nr;
                layer_norm_backward_rows(&xs[span.clone()], w, &ms[stats.clone()], &rs[stats], &gs[span], cols, d, Some(&mut pg), Some(&mut pb));
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
    fn backward_matches_hand_values() {
        // x = [1, 2, 3], eps = 0, no gamma, g = [1, 0, 0].
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

    /// Above the parallel threshold rows run in chunks with per-chunk
    /// gamma/beta partials; the result must match the two halves run alone.
    #[test]
    fn parallel_chunks_match_halves() {
        let x = Tensor::from_vec((0..300 * 130).map(|v| ((v * 37) % 101) as f64 * 0.05).collect(), &[300, 130]).unwrap();
        let g = Tensor::from_vec((0..300 * 130).map(|v| ((v * 13) % 7) as f64 - 3.0).collect(), &[300, 130]).unwrap();
        let gamma = Tensor::from_vec((0..130).map(|v| 1.0 + v as f64 * 0.01).collect(), &[130]).unwrap();
        let (y, m, r) = x.layer_norm_with_stats(Some(&gamma), None, 1e-5).unwrap();
        let (dx, dgamma, dbeta) = Tensor::layer_norm_backward(&x, Some(&gamma), &m, &r, &g).unwrap();
        let (mut dg_sum, mut db_sum) = (vec![0.0; 130], vec![0.0; 130]);
        for h in 0..2 {
            let part = |t: &Tensor| t.narrow(0, h * 150, 150).unwrap();
            let (yh, mh, rh) = part(&x).layer_norm_with_stats(Some(&gamma), None, 1e-5).unwrap();
            assert_eq!(part(&y).to_vec::<f64>().unwrap(), yh.to_vec::<f64>().unwrap());
            assert_eq!(m.narrow(0, h * 150, 150).unwrap().to_vec::<f64>().unwrap(), mh.to_vec::<f64>().unwrap());
            let (dxh, dgh, dbh) = Tensor::layer_norm_backward(&part(&x), Some(&gamma), &mh, &rh, &part(&g)).unwrap();
            assert_eq!(part(&dx).to_vec::<f64>().unwrap(), dxh.to_vec::<f64>().unwrap());
            dg_sum.iter_mut().zip(dgh.to_vec::<f64>().unwrap()).for_each(|(a, b)| *a += b);
            db_sum.iter_mut().zip(dbh.to_vec::<f64>().unwrap()).for_each(|(a, b)| *a += b);
        }
        close(&dgamma.to_vec::<f64>().unwrap(), &dg_sum, 1e-9);
        close(&dbeta.to_vec::<f64>().unwrap(), &db_sum, 1e-9);
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
