//! Softmax and log-softmax along any dim, masked softmax, and the backward
//! helpers autograd uses.
//!
//! Masking convention (the kernels'): an input equal to `-inf` is masked and
//! gets probability 0; a row that is entirely `-inf` (a fully masked query)
//! gives all zeros from softmax and `-inf` from log-softmax, never NaN.
//!
//! The kernels work on contiguous rows, so an op over a dim other than the
//! last moves that dim last, runs the rows, and moves it back.

use kogner_kernels::softmax::{log_softmax_backward_rows, log_softmax_rows, softmax_backward_rows, softmax_rows};

use super::elementwise::from_storage_vec;
use super::par_rows_mut;
use crate::{with_float_dtype, Error, FloatElement, Result, Tensor};

/// A tensor made contiguous with one dim moved last, so that every row of
/// `cols` elements is one slice along that dim.
struct Rows {
    data: Tensor,
    /// The permutation applied, `None` when the dim was already last.
    perm: Option<Vec<usize>>,
    cols: usize,
}

impl Rows {
    fn new(x: &Tensor, dim: usize) -> Result<Rows> {
        let rank = x.rank();
        let cols = x.shape()[dim];
        if dim + 1 == rank {
            return Ok(Rows { data: x.contiguous()?, perm: None, cols });
        }
        let mut perm: Vec<usize> = (0..rank).filter(|&d| d != dim).collect();
        perm.push(dim);
        Ok(Rows { data: x.permute(&perm)?.contiguous()?, perm: Some(perm), cols })
    }

    /// Row-major results in the moved-dim order → a contiguous tensor in the
    /// original dim order.
    fn restore<T: FloatElement>(&self, out: Vec<T>) -> Result<Tensor> {
        let t = from_storage_vec(out, self.data.shape());
        match &self.perm {
            None => Ok(t),
            Some(perm) => {
                let mut inverse = vec![0; perm.len()];
                for (i, &p) in perm.iter().enumerate() {
                    inverse[p] = i;
                }
                t.permute(&inverse)?.contiguous()
            }
        }
    }
}

/// `f(x_rows, out_rows, cols)` over the rows of `x` along `dim`, in parallel.
fn map_rows<T: FloatElement>(x: &Tensor, dim: usize, f: impl Fn(&[T], &mut [T], usize) + Sync) -> Result<Tensor> {
    let rows = Rows::new(x, dim)?;
    let cols = rows.cols;
    let src = rows.data.as_slice::<T>()?;
    let mut out = vec![T::ZERO; src.len()];
    par_rows_mut(&mut out, cols, |first, o| {
        let start = first * cols;
        f(&src[start..start + o.len()], o, cols)
    });
    rows.restore(out)
}

/// `f(a_rows, b_rows, out_rows, cols)` over the matching rows of two
/// same-shaped tensors along `dim` (a backward: saved output and gradient).
fn map_rows2<T: FloatElement>(
    a: &Tensor,
    b: &Tensor,
    dim: usize,
    f: impl Fn(&[T], &[T], &mut [T], usize) + Sync,
) -> Result<Tensor> {
    let (ra, rb) = (Rows::new(a, dim)?, Rows::new(b, dim)?);
    let cols = ra.cols;
    let (sa, sb) = (ra.data.as_slice::<T>()?, rb.data.as_slice::<T>()?);
    let mut out = vec![T::ZERO; sa.len()];
    par_rows_mut(&mut out, cols, |first, o| {
        let r = first * cols..first * cols + o.len();
        f(&sa[r.clone()], &sb[r], o, cols)
    });
    ra.restore(out)
}

/// `x` with every element where `mask` (broadcast to `x`) is 0 set to `-inf`.
fn fill_masked<T: FloatElement>(x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let keep = mask.broadcast_as(x.shape()).map_err(|_| {
        Error::shape("masked_softmax", format!("mask of shape {:?} does not broadcast to {:?}", mask.shape(), x.shape()))
    })?;
    let keep = keep.to_dtype(x.dtype())?.to_vec::<T>()?;
    let mut out = x.contiguous()?.to_vec::<T>()?;
    for (o, &k) in out.iter_mut().zip(&keep) {
        if k == T::ZERO {
            *o = T::NEG_INFINITY;
        }
    }
    Ok(from_storage_vec(out, x.shape()))
}

fn check_same_shape(op: &'static str, y: &Tensor, g: &Tensor) -> Result<()> {
    if y.shape() != g.shape() {
        return Err(Error::ShapeMismatch { op, lhs: y.shape().to_vec(), rhs: g.shape().to_vec() });
    }
    if y.dtype() != g.dtype() {
        return Err(Error::DTypeMismatch { op, lhs: y.dtype(), rhs: g.dtype() });
    }
    Ok(())
}

impl Tensor {
    /// Softmax along `dim` (negative counts from the end): `x [..] → [..]`,
    /// same shape. `-inf` entries are masked; fully masked rows give zeros.
    pub fn softmax(&self, dim: isize) -> Result<Tensor> {
        let d = self.resolve("softmax", dim)?;
        with_float_dtype!(self.dtype(), "softmax", T => map_rows::<T>(self, d, softmax_rows))
    }

    /// Log-softmax along `dim`: `x [..] → [..]`. Fully masked rows give `-inf`.
    pub fn log_softmax(&self, dim: isize) -> Result<Tensor> {
        let d = self.resolve("log_softmax", dim)?;
        with_float_dtype!(self.dtype(), "log_softmax", T => map_rows::<T>(self, d, log_softmax_rows))
    }

    /// Softmax along `dim` after masking: `x [..]`, `mask` (u8 or float,
    /// broadcastable to `x`, 0 = masked) → `[..]` like `x`. Masked positions
    /// get probability 0; a fully masked row gives all zeros.
    pub fn masked_softmax(&self, mask: &Tensor, dim: isize) -> Result<Tensor> {
        with_float_dtype!(self.dtype(), "masked_softmax", T => fill_masked::<T>(self, mask)?.softmax(dim))
    }

    /// Gradient of softmax along `dim` from its output: `y [..]` (the
    /// forward's result), `g [..]` (gradient of y) → `dx [..]`,
    /// `dx = y ⊙ (g − Σ g⊙y)`: masked entries (y = 0) get zero gradient.
    pub fn softmax_backward(y: &Tensor, g: &Tensor, dim: isize) -> Result<Tensor> {
        let d = y.resolve("softmax_backward", dim)?;
        check_same_shape("softmax_backward", y, g)?;
        with_float_dtype!(y.dtype(), "softmax_backward", T => map_rows2::<T>(y, g, d, softmax_backward_rows))
    }

    /// Gradient of log-softmax along `dim` from its output: `y [..]`,
    /// `g [..]` → `dx [..]`, `dx = g − exp(y)·Σ g` (so a masked entry, with
    /// `exp(y) = 0`, receives `g` unchanged, as in PyTorch).
    pub fn log_softmax_backward(y: &Tensor, g: &Tensor, dim: isize) -> Result<Tensor> {
        let d = y.resolve("log_softmax_backward", dim)?;
        check_same_shape("log_softmax_backward", y, g)?;
        with_float_dtype!(y.dtype(), "log_softmax_backward", T => map_rows2::<T>(y, g, d, log_softmax_backward_rows))
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
    fn softmax_last_dim_matches_hand_values() {
        let x = Tensor::from_vec(vec![0.0f64, 1.0, 2.0, 1.0, 1.0, 1.0], &[2, 3]).unwrap();
        let e = [1.0f64, 1f64.exp(), 2f64.exp()];
        let s: f64 = e.iter().sum();
        let want = [e[0] / s, e[1] / s, e[2] / s, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0];
        close(&x.softmax(-1).unwrap().to_vec::<f64>().unwrap(), &want, 1e-15);
        let ls: Vec<f64> = want.iter().map(|v| v.ln()).collect();
        close(&x.log_softmax(1).unwrap().to_vec::<f64>().unwrap(), &ls, 1e-14);
    }

    #[test]
    fn softmax_over_a_middle_dim_equals_transposed_last_dim() {
        let x = Tensor::from_vec((0..24).map(|v| ((v * 7) % 5) as f32 * 0.3).collect(), &[2, 3, 4]).unwrap();
        let via_dim = x.softmax(1).unwrap();
        let via_t = x.transpose(1, 2).unwrap().softmax(-1).unwrap().transpose(1, 2).unwrap();
        assert_eq!(via_dim.shape(), &[2, 3, 4]);
        assert_eq!(via_dim.to_vec::<f32>().unwrap(), via_t.to_vec::<f32>().unwrap());
        let sums = via_dim.sum(1, false).unwrap().to_f64_vec().unwrap();
        close(&sums, &[1.0; 8], 1e-6);
    }

    /// Tensors above the parallel threshold are split into row chunks; the
    /// result must equal running each half on its own (one chunk each).
    #[test]
    fn parallel_chunks_match_halves() {
        let x = Tensor::from_vec((0..300 * 130).map(|v| ((v * 37) % 101) as f32 * 0.05).collect(), &[300, 130]).unwrap();
        let g = Tensor::from_vec((0..300 * 130).map(|v| ((v * 13) % 7) as f32 - 3.0).collect(), &[300, 130]).unwrap();
        for dim in [0isize, 1] {
            let whole = x.softmax(dim).unwrap();
            let dwhole = Tensor::softmax_backward(&whole, &g, dim).unwrap();
            let split: isize = if dim == 1 { 0 } else { 1 };
            let len = x.shape()[split as usize] / 2;
            for h in 0..2 {
                let part = |t: &Tensor| t.narrow(split, h * len, len).unwrap();
                let y = part(&x).softmax(dim).unwrap();
                assert_eq!(part(&whole).to_vec::<f32>().unwrap(), y.to_vec::<f32>().unwrap());
                let dy = Tensor::softmax_backward(&y, &part(&g), dim).unwrap();
                assert_eq!(part(&dwhole).to_vec::<f32>().unwrap(), dy.to_vec::<f32>().unwrap());
            }
        }
    }

    #[test]
    fn masked_entries_get_zero_and_full_masks_never_nan() {
        let ninf = f32::NEG_INFINITY;
        let x = Tensor::from_vec(vec![1.0f32, ninf, 1.0, ninf, ninf, ninf], &[2, 3]).unwrap();
        assert_eq!(x.softmax(-1).unwrap().to_vec::<f32>().unwrap(), vec![0.5, 0.0, 0.5, 0.0, 0.0, 0.0]);
        let ls = x.log_softmax(-1).unwrap().to_vec::<f32>().unwrap();
        assert!(ls.iter().all(|v| !v.is_nan()));
        assert_eq!(ls[3..], [ninf; 3]);

        let y = Tensor::from_vec(vec![2.0f64, 5.0, 2.0, 0.0, 1.0, 2.0], &[2, 3]).unwrap();
        let mask = Tensor::from_vec(vec![1u8, 0, 1, 0, 0, 0], &[2, 3]).unwrap();
        assert_eq!(y.masked_softmax(&mask, -1).unwrap().to_vec::<f64>().unwrap(), vec![0.5, 0.0, 0.5, 0.0, 0.0, 0.0]);
        // a [3] float mask broadcast over both rows
        let col_mask = Tensor::from_vec(vec![1.0f64, 1.0, 0.0], &[3]).unwrap();
        let got = y.masked_softmax(&col_mask, -1).unwrap().to_vec::<f64>().unwrap();
        let e = 1f64.exp();
        close(&got, &[1.0 / (1.0 + 3f64.exp()), 3f64.exp() / (1.0 + 3f64.exp()), 0.0, 1.0 / (1.0 + e), e / (1.0 + e), 0.0], 1e-15);
    }

    #[test]
    fn backward_helpers_match_hand_formulas() {
        // y = softmax([0, ln 3]) = [1/4, 3/4]; g = [1, 0]:
        // dx = y ⊙ (g − y·g) = [1/4·(1 − 1/4), 3/4·(0 − 1/4)]
        let y = Tensor::from_vec(vec![0.25f64, 0.75], &[1, 2]).unwrap();
        let g = Tensor::from_vec(vec![1.0f64, 0.0], &[1, 2]).unwrap();
        close(&Tensor::softmax_backward(&y, &g, -1).unwrap().to_vec::<f64>().unwrap(), &[0.1875, -0.1875], 1e-15);
        // log-softmax: dx = g − exp(ly)·Σg
        let ly = y.ln().unwrap();
        close(&Tensor::log_softmax_backward(&ly, &g, -1).unwrap().to_vec::<f64>().unwrap(), &[0.75, -0.75], 1e-15);
        let fully_masked = Tensor::full(&[1, 2], 0.0, DType::F64);
        assert_eq!(Tensor::softmax_backward(&fully_masked, &g, -1).unwrap().to_vec::<f64>().unwrap(), vec![0.0, 0.0]);
    }

    #[test]
    fn errors_are_results_not_panics() {
        let x = Tensor::zeros(&[2, 3], DType::F32);
        assert!(x.softmax(2).unwrap_err().to_string().contains("softmax"));
        assert!(Tensor::zeros(&[2], DType::I64).log_softmax(0).is_err());
        assert!(Tensor::scalar(1.0f32).softmax(0).is_err());
        let err = x.masked_softmax(&Tensor::zeros(&[4], DType::U8), -1).unwrap_err();
        assert!(err.to_string().starts_with("masked_softmax: mask"), "{err}");
        assert!(Tensor::softmax_backward(&x, &Tensor::zeros(&[3, 2], DType::F32), -1).is_err());
        assert!(Tensor::softmax_backward(&x, &Tensor::zeros(&[2, 3], DType::F64), -1).is_err());
    }
}
