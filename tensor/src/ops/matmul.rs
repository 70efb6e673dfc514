//! Matrix products: `matmul` (batched, broadcasting batch dims) and the
//! fused `linear` (x·Wᵀ + b). Operands are handed to the GEMM by strides,
//! so transposed views cost no copy.

use kogner_kernels::gemm::{gemm, GemmDims, MatMut, MatRef};

use super::elementwise::from_storage_vec;
use crate::layout::broadcast_shape;
use crate::{with_float_dtype, Error, FloatElement, Layout, Result, Tensor};

impl Tensor {
    /// `[..., m, k] @ [..., k, n] -> [..., m, n]`, batch dims broadcast.
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        if self.dtype() != rhs.dtype() {
            return Err(Error::DTypeMismatch { op: "matmul", lhs: self.dtype(), rhs: rhs.dtype() });
        }
        with_float_dtype!(self.dtype(), "matmul", T => matmul_impl::<T>(self, rhs))
    }

    /// `x [..., in] · w[out, in]ᵀ + b[out] -> [..., out]` (PyTorch's Linear).
    pub fn linear(&self, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        with_float_dtype!(self.dtype(), "linear", T => linear_impl::<T>(self, w, b))
    }
}

/// An operand's batch dims collapsed to one stride, if the view allows it.
fn batch_stride(l: &Layout) -> Option<usize> {
    let r = l.rank() - 2;
    let (shape, strides) = (&l.shape()[..r], &l.strides()[..r]);
    let dims: Vec<usize> = (0..r).filter(|&i| shape[i] != 1).collect();
    if dims.is_empty() {
        return Some(0);
    }
    let inner = *dims.last().unwrap();
    if dims.iter().all(|&i| strides[i] == 0) {
        return Some(0);
    }
    for w in dims.windows(2) {
        if strides[w[0]] != strides[w[1]] * shape[w[1]] {
            return None;
        }
    }
    Some(strides[inner])
}

fn operand<T: FloatElement>(t: &Tensor, full: &[usize]) -> Result<(Tensor, usize)> {
    let view = t.broadcast_as(full)?;
    match batch_stride(view.layout()) {
        Some(bs) => Ok((view, bs)),
        None => {
            let c = view.contiguous()?;
            let (r, cols) = (full[full.len() - 2], full[full.len() - 1]);
            Ok((c, r * cols))
        }
    }
}

fn mat_ref<T: FloatElement>(t: &Tensor, batch_stride: usize) -> Result<MatRef<'_, T>> {
    let r = t.rank();
    let st = t.layout().strides();
    Ok(MatRef {
        data: &t.storage_slice::<T>()?[t.layout().offset()..],
        row_stride: st[r - 2],
        col_stride: st[r - 1],
        batch_stride,
    })
}

fn matmul_impl<T: FloatElement>(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.rank() < 2 || b.rank() < 2 {
        return Err(Error::shape("matmul", format!("operands must have rank >= 2, got {:?} and {:?}", a.shape(), b.shape())));
    }
    let (m, k) = (a.shape()[a.rank() - 2], a.shape()[a.rank() - 1]);
    let (k2, n) = (b.shape()[b.rank() - 2], b.shape()[b.rank() - 1]);
    if k != k2 {
        return Err(Error::ShapeMismatch { op: "matmul", lhs: a.shape().to_vec(), rhs: b.shape().to_vec() });
    }
    let batch_shape = broadcast_shape("matmul", &a.shape()[..a.rank() - 2], &b.shape()[..b.rank() - 2])?;
    let batch: usize = batch_shape.iter().product();
    let mut fa = batch_shape.clone();
    fa.extend([m, k]);
    let mut fb = batch_shape.clone();
    fb.extend([k, n]);
    let (va, bsa) = operand::<T>(a, &fa)?;
    let (vb, bsb) = operand::<T>(b, &fb)?;
    let mut out = vec![T::ZERO; batch * m * n];
    if k > 0 {
        gemm(
            GemmDims { batch, m, n, k },
            T::ONE,
            mat_ref::<T>(&va, bsa)?,
            mat_ref::<T>(&vb, bsb)?,
            T::ZERO,
            MatMut { data: &mut out, row_stride: n, batch_stride: m * n },
        );
    }
    let mut shape = batch_shape;
    shape.extend([m, n]);
    Ok(from_storage_vec(out, &shape))
}

fn linear_impl<T: FloatElement>(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    if w.rank() != 2 || x.rank() == 0 || x.shape()[x.rank() - 1] != w.shape()[1] {
        return Err(Error::ShapeMismatch { op: "linear", lhs: x.shape().to_vec(), rhs: w.shape().to_vec() });
    }
    let (n_out, k) = (w.shape()[0], w.shape()[1]);
    let m = x.numel() / k.max(1);
    let xc = x.contiguous()?;
    let mut out = vec![T::ZERO; m * n_out];
    let beta = match b {
        Some(b) => {
            if b.shape() != [n_out] {
                return Err(Error::ShapeMismatch { op: "linear bias", lhs: b.shape().to_vec(), rhs: vec![n_out] });
            }
            let bias = b.contiguous()?;
            let bias = bias.as_slice::<T>()?;
            for row in out.chunks_exact_mut(n_out) {
                row.copy_from_slice(bias);
            }
            T::ONE
        }
        None => T::ZERO,
    };
    if k > 0 && m > 0 {
        let wt = w.t()?;
        gemm(
            GemmDims { batch: 1, m, n: n_out, k },
            T::ONE,
            MatRef { data: xc.as_slice::<T>()?, row_stride: k, col_stride: 1, batch_stride: 0 },
            mat_ref::<T>(&wt, 0)?,
            beta,
            MatMut { data: &mut out, row_stride: n_out, batch_stride: 0 },
        );
    }
    let mut shape = x.shape().to_vec();
    *shape.last_mut().unwrap() = n_out;
    Ok(from_storage_vec(out, &shape))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;

    fn naive(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn matmul_broadcast_and_transposed_views() {
        let a = Tensor::from_vec((0..2 * 3 * 4).map(|v| v as f64 * 0.5).collect(), &[2, 3, 4]).unwrap();
        let b = Tensor::from_vec((0..4 * 5).map(|v| v as f64 - 7.0).collect(), &[4, 5]).unwrap();
        let c = a.matmul(&b).unwrap();
        assert_eq!(c.shape(), &[2, 3, 5]);
        let av = a.to_vec::<f64>().unwrap();
        let bv = b.to_vec::<f64>().unwrap();
        let cv = c.to_vec::<f64>().unwrap();
        for bi in 0..2 {
            assert_eq!(&cv[bi * 15..(bi + 1) * 15], naive(&av[bi * 12..(bi + 1) * 12], &bv, 3, 4, 5).as_slice());
        }
        // A·Bᵀ through a transposed view equals the product with a materialised transpose.
        let bt = Tensor::from_vec(b.t().unwrap().to_vec::<f64>().unwrap(), &[5, 4]).unwrap();
        let c2 = a.matmul(&bt.t().unwrap()).unwrap();
        assert_eq!(c2.to_vec::<f64>().unwrap(), cv);
        assert!(a.matmul(&a).is_err());
    }

    #[test]
    fn linear_matches_matmul_plus_bias() {
        let x = Tensor::from_vec((0..6).map(|v| v as f32).collect(), &[2, 3]).unwrap();
        let w = Tensor::from_vec(vec![1f32, 0., -1., 2., 1., 0.], &[2, 3]).unwrap();
        let b = Tensor::from_vec(vec![0.5f32, -0.5], &[2]).unwrap();
        let y = x.linear(&w, Some(&b)).unwrap();
        assert_eq!(y.to_vec::<f32>().unwrap(), vec![-1.5, 0.5, -1.5, 9.5]);
        assert!(x.linear(&Tensor::zeros(&[2, 4], DType::F32), None).is_err());
    }
}
