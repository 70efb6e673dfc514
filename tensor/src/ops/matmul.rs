//! Matrix products: `matmul` (batched, broadcasting batch dims) and the
//! fused `linear` (x·Wᵀ + b), also with a weight packed once for
//! inference ([`PackedLinear`]). Operands are handed to the GEMM by strides,
//! so transposed views cost no copy.

use kogner_kernels::gemm::{gemm, gemm_prepacked, GemmDims, MatMut, MatRef, PackedB};

use super::elementwise::from_storage_vec;
use crate::layout::broadcast_shape;
use crate::{with_float_dtype, Error, FloatElement, Result, Tensor};

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

/// One stride describing the batch dims `shape`/`strides` (walked
/// row-major), if there is one: size-1 dims are skipped, and all-zero
/// strides (a broadcast operand) collapse to 0.
fn collapsed_stride(shape: &[usize], strides: &[usize]) -> Option<usize> {
    let dims: Vec<usize> = (0..shape.len()).filter(|&i| shape[i] != 1).collect();
    if dims.iter().all(|&i| strides[i] == 0) {
        return Some(0);
    }
    for w in dims.windows(2) {
        if strides[w[0]] != strides[w[1]] * shape[w[1]] {
            return None;
        }
    }
    Some(strides[*dims.last().unwrap()])
}

fn mat_ref<T: FloatElement>(t: &Tensor, offset: usize, batch_stride: usize) -> Result<MatRef<'_, T>> {
    let r = t.rank();
    let st = t.layout().strides();
    Ok(MatRef {
        data: &t.storage_slice::<T>()?[t.layout().offset() + offset..],
        row_stride: st[r - 2],
        col_stride: st[r - 1],
        batch_stride,
    })
}

/// Batch dims are split into an outer part walked here and an inner part
/// that both operands describe with one stride each, handed to one batched
/// GEMM. Views such as attention heads `[B, h, T, d]` permuted from
/// `[B, T, h, d]` thus need no copy: the loop runs over B, the GEMM over h.
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
    let nb = batch_shape.len();
    let batch: usize = batch_shape.iter().product();
    let full = |rows: usize, cols: usize| {
        let mut s = batch_shape.clone();
        s.extend([rows, cols]);
        s
    };
    let (va, vb) = (a.broadcast_as(&full(m, k))?, b.broadcast_as(&full(k, n))?);
    let (sa, sb) = (&va.layout().strides()[..nb], &vb.layout().strides()[..nb]);
    let split = (0..=nb)
        .find(|&s| collapsed_stride(&batch_shape[s..], &sa[s..]).is_some() && collapsed_stride(&batch_shape[s..], &sb[s..]).is_some())
        .unwrap_or(nb);
    let inner: usize = batch_shape[split..].iter().product();
    let bsa = collapsed_stride(&batch_shape[split..], &sa[split..]).unwrap_or(0);
    let bsb = collapsed_stride(&batch_shape[split..], &sb[split..]).unwrap_or(0);
    let mut out = vec![T::ZERO; batch * m * n];
    if k > 0 && inner > 0 && m * n > 0 {
        let outer_shape = &batch_shape[..split];
        let mut idx = vec![0usize; split];
        for (o, c) in out.chunks_mut(inner * m * n).enumerate() {
            if o > 0 {
                // odometer over the outer batch dims
                let mut d = split;
                while d > 0 {
                    d -= 1;
                    idx[d] += 1;
                    if idx[d] < outer_shape[d] {
                        break;
                    }
                    idx[d] = 0;
                }
            }
            let off_a: usize = idx.iter().zip(sa).map(|(i, s)| i * s).sum();
            let off_b: usize = idx.iter().zip(sb).map(|(i, s)| i * s).sum();
            gemm(
                GemmDims { batch: inner, m, n, k },
                T::ONE,
                mat_ref::<T>(&va, off_a, bsa)?,
                mat_ref::<T>(&vb, off_b, bsb)?,
                T::ZERO,
                MatMut { data: c, row_stride: n, batch_stride: m * n },
            );
        }
    }
    Ok(from_storage_vec(out, &full(m, n)))
}

fn linear_impl<T: FloatElement>(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    if w.rank() != 2 || x.rank() == 0 || x.shape()[x.rank() - 1] != w.shape()[1] {
        return Err(Error::ShapeMismatch { op: "linear", lhs: x.shape().to_vec(), rhs: w.shape().to_vec() });
    }
    let (n_out, k) = (w.shape()[0], w.shape()[1]);
    let wt = w.t()?;
    let wt = mat_ref::<T>(&wt, 0, 0)?;
    linear_with(x, n_out, b, |m, xs, beta, out| {
        gemm(GemmDims { batch: 1, m, n: n_out, k }, T::ONE, xs, wt, beta, out);
    })
}

/// `x [..., k] → [..., n_out]`: the bias broadcast into the output, then
/// `product(m, x as m × k, beta, out)` adds x·Wᵀ (beta 1 with a bias, else 0).
fn linear_with<T: FloatElement>(
    x: &Tensor,
    n_out: usize,
    b: Option<&Tensor>,
    product: impl FnOnce(usize, MatRef<T>, T, MatMut<T>),
) -> Result<Tensor> {
    let k = x.shape()[x.rank() - 1];
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
        let xs = MatRef { data: xc.as_slice::<T>()?, row_stride: k, col_stride: 1, batch_stride: 0 };
        product(m, xs, beta, MatMut { data: &mut out, row_stride: n_out, batch_stride: 0 });
    }
    let mut shape = x.shape().to_vec();
    *shape.last_mut().unwrap() = n_out;
    Ok(from_storage_vec(out, &shape))
}

/// A linear layer's f32 weight `W [out, in]` packed once, in the GEMM
/// kernel's panel layout, as the `Wᵀ` of `x·Wᵀ`: an inference model's
/// products then never repack their weights. Same results, bit for bit, as
/// [`Tensor::linear`] with the unpacked weight.
pub struct PackedLinear {
    wt: PackedB,
}

impl PackedLinear {
    pub fn d_in(&self) -> usize {
        self.wt.k()
    }
    pub fn d_out(&self) -> usize {
        self.wt.n()
    }
}

impl Tensor {
    /// Packs this f32 `[out, in]` weight for [`Tensor::linear_packed`].
    pub fn pack_linear_weight(&self) -> Result<PackedLinear> {
        if self.rank() != 2 || self.dtype() != crate::DType::F32 {
            return Err(Error::Msg(format!(
                "pack_linear_weight: want an f32 [out, in] weight, got {} {:?}",
                self.dtype().name(),
                self.shape()
            )));
        }
        let (n_out, k) = (self.shape()[0], self.shape()[1]);
        let wt = self.t()?;
        Ok(PackedLinear { wt: PackedB::new(mat_ref::<f32>(&wt, 0, 0)?, k, n_out) })
    }

    /// As [`Tensor::linear`] with a packed weight; f32 only.
    pub fn linear_packed(&self, w: &PackedLinear, b: Option<&Tensor>) -> Result<Tensor> {
        if self.dtype() != crate::DType::F32 {
            return Err(Error::DTypeMismatch { op: "linear", lhs: self.dtype(), rhs: crate::DType::F32 });
        }
        if self.rank() == 0 || self.shape()[self.rank() - 1] != w.d_in() {
            return Err(Error::ShapeMismatch { op: "linear", lhs: self.shape().to_vec(), rhs: vec![w.d_out(), w.d_in()] });
        }
        linear_with::<f32>(self, w.d_out(), b, |m, xs, beta, out| gemm_prepacked(m, 1.0, xs, &w.wt, beta, out))
    }
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
        // empty operands give empty (or zero) products, never a panic
        let e = Tensor::zeros(&[2, 0, 4], crate::DType::F64);
        assert_eq!(e.matmul(&b).unwrap().shape(), &[2, 0, 5]);
        let z = Tensor::zeros(&[3, 0], crate::DType::F64).matmul(&Tensor::zeros(&[0, 2], crate::DType::F64)).unwrap();
        assert_eq!(z.to_vec::<f64>().unwrap(), vec![0.0; 6]);
    }

    #[test]
    fn permuted_heads_and_broadcast_batches_need_no_copy_and_agree() {
        // [B, T, h, d] permuted to [B, h, T, d]: batch dims do not collapse to one stride
        let (b, t, h, d) = (2, 3, 4, 5);
        let x = Tensor::from_vec((0..b * t * h * d).map(|v| (v as f64 * 0.37).sin()).collect(), &[b, t, h, d]).unwrap();
        let q = x.permute(&[0, 2, 1, 3]).unwrap();
        let k = Tensor::from_vec((0..h * 6 * d).map(|v| (v as f64 * 0.11).cos()).collect(), &[1, h, 6, d]).unwrap();
        let got = q.matmul(&k.t().unwrap()).unwrap();
        assert_eq!(got.shape(), &[b, h, t, 6]);
        let want = q.contiguous().unwrap().matmul(&k.t().unwrap().contiguous().unwrap().broadcast_as(&[b, h, d, 6]).unwrap().contiguous().unwrap()).unwrap();
        let (g, w) = (got.to_vec::<f64>().unwrap(), want.to_vec::<f64>().unwrap());
        for (x, y) in g.iter().zip(&w) {
            assert!((x - y).abs() < 1e-12);
        }
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

    #[test]
    fn packed_linear_gives_the_bits_of_linear() {
        let vals = |n: usize, f: f64| (0..n).map(|i| ((i as f64 * f).sin() * 2.0) as f32).collect::<Vec<f32>>();
        let x = Tensor::from_vec(vals(2 * 5 * 37, 0.37), &[2, 5, 37]).unwrap();
        let w = Tensor::from_vec(vals(70 * 37, 0.11), &[70, 37]).unwrap();
        let b = Tensor::from_vec(vals(70, 0.7), &[70]).unwrap();
        // Also a weight stored transposed (a view): packing reads through strides.
        let w_view = Tensor::from_vec(w.t().unwrap().to_vec::<f32>().unwrap(), &[37, 70]).unwrap().t().unwrap();
        for w in [&w, &w_view] {
            let packed = w.pack_linear_weight().unwrap();
            assert_eq!((packed.d_in(), packed.d_out()), (37, 70));
            for bias in [None, Some(&b)] {
                let want = x.linear(w, bias).unwrap();
                let got = x.linear_packed(&packed, bias).unwrap();
                assert_eq!(got.shape(), &[2, 5, 70]);
                let bits = |t: &Tensor| t.to_vec::<f32>().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want));
            }
        }
        let packed = w.pack_linear_weight().unwrap();
        assert!(Tensor::zeros(&[3, 36], DType::F32).linear_packed(&packed, None).is_err());
        assert!(Tensor::zeros(&[3, 37], DType::F64).linear_packed(&packed, None).is_err());
        assert!(x.linear_packed(&packed, Some(&Tensor::zeros(&[69], DType::F32))).is_err());
        assert!(Tensor::zeros(&[3, 37], DType::F64).pack_linear_weight().is_err());
    }
}
