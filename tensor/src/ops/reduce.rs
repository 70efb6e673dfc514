//! Reductions over any set of dims: sum, mean, max, min, argmax.

use kogner_kernels::reduce;

use super::elementwise::from_storage_vec;
use super::par_rows_mut;
use crate::{with_float_dtype, DType, Error, FloatElement, Result, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Sum,
    Max,
    Min,
}

impl Tensor {
    /// Sum over `dims` (each once, any order).
    pub fn sum_dims(&self, dims: &[usize], keepdim: bool) -> Result<Tensor> {
        with_float_dtype!(self.dtype(), "sum", T => reduce_dims::<T>(self, dims, keepdim, Kind::Sum))
    }
    pub fn sum(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        let d = self.resolve("sum", dim)?;
        self.sum_dims(&[d], keepdim)
    }
    /// Sum of every element, as a rank-0 tensor.
    pub fn sum_all(&self) -> Result<Tensor> {
        let dims: Vec<usize> = (0..self.rank()).collect();
        self.sum_dims(&dims, false)
    }
    pub fn mean_dims(&self, dims: &[usize], keepdim: bool) -> Result<Tensor> {
        let n: usize = dims.iter().map(|&d| self.shape().get(d).copied().unwrap_or(1)).product();
        self.sum_dims(dims, keepdim)?.mul_scalar(1.0 / n.max(1) as f64)
    }
    pub fn mean(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        let d = self.resolve("mean", dim)?;
        self.mean_dims(&[d], keepdim)
    }
    pub fn mean_all(&self) -> Result<Tensor> {
        let dims: Vec<usize> = (0..self.rank()).collect();
        self.mean_dims(&dims, false)
    }
    pub fn max(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        let d = self.resolve("max", dim)?;
        with_float_dtype!(self.dtype(), "max", T => reduce_dims::<T>(self, &[d], keepdim, Kind::Max))
    }
    pub fn min(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        let d = self.resolve("min", dim)?;
        with_float_dtype!(self.dtype(), "min", T => reduce_dims::<T>(self, &[d], keepdim, Kind::Min))
    }
    /// Index of the first maximum along `dim` (i64), NaN counts as maximum.
    pub fn argmax(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        let d = self.resolve("argmax", dim)?;
        with_float_dtype!(self.dtype(), "argmax", T => argmax_dim::<T>(self, d, keepdim))
    }
}

/// Permute `dims` last, then reduce each contiguous row.
fn reduce_dims<T: FloatElement>(x: &Tensor, dims: &[usize], keepdim: bool, kind: Kind) -> Result<Tensor> {
    let rank = x.rank();
    let mut reduced = vec![false; rank];
    for &d in dims {
        if d >= rank || std::mem::replace(&mut reduced[d], true) {
            return Err(Error::shape("reduce", format!("bad or repeated dim {d} for rank {rank}")));
        }
    }
    let kept: Vec<usize> = (0..rank).filter(|&d| !reduced[d]).collect();
    let out_shape: Vec<usize> = if keepdim {
        (0..rank).map(|d| if reduced[d] { 1 } else { x.shape()[d] }).collect()
    } else {
        kept.iter().map(|&d| x.shape()[d]).collect()
    };
    let rows: usize = kept.iter().map(|&d| x.shape()[d]).product();
    let cols: usize = dims.iter().map(|&d| x.shape()[d]).product();
    if cols == 0 && kind != Kind::Sum {
        return Err(Error::shape("reduce", "max/min over an empty dim"));
    }

    // Reducing the leading dims of a contiguous tensor: accumulate rows into
    // the output instead of transposing (bias gradients hit this).
    let leading = (0..dims.len()).all(|d| reduced[d]);
    if kind == Kind::Sum && leading && x.is_contiguous() && rows > 1 {
        let src = x.as_slice::<T>()?;
        let mut out = vec![T::ZERO; rows];
        for r in 0..cols {
            reduce::axpy(T::ONE, &src[r * rows..(r + 1) * rows], &mut out);
        }
        return Ok(from_storage_vec(out, &out_shape));
    }

    let mut perm = kept.clone();
    perm.extend(dims.iter().copied());
    let xc = x.permute(&perm)?.contiguous()?;
    let src = xc.as_slice::<T>()?;
    let mut out = vec![T::ZERO; rows];
    par_rows_mut(&mut out, 1, |first, o| {
        for (i, v) in o.iter_mut().enumerate() {
            let row = &src[(first + i) * cols..(first + i + 1) * cols];
            *v = match kind {
                Kind::Sum => reduce::sum(row),
                Kind::Max => reduce::max(row),
                Kind::Min => row.iter().fold(T::INFINITY, |m, &v| if v.is_nan() || m.is_nan() { T::from_f64(f64::NAN) } else { m.min(v) }),
            };
        }
    });
    Ok(from_storage_vec(out, &out_shape))
}

fn argmax_dim<T: FloatElement>(x: &Tensor, d: usize, keepdim: bool) -> Result<Tensor> {
    let rank = x.rank();
    let mut perm: Vec<usize> = (0..rank).filter(|&i| i != d).collect();
    perm.push(d);
    let xc = x.permute(&perm)?.contiguous()?;
    let cols = x.shape()[d];
    if cols == 0 {
        return Err(Error::shape("argmax", "argmax over an empty dim"));
    }
    let src = xc.as_slice::<T>()?;
    let out: Vec<i64> = src
        .chunks_exact(cols)
        .map(|row| {
            let mut best = 0;
            for (i, &v) in row.iter().enumerate() {
                if v.is_nan() {
                    return i as i64;
                }
                if v > row[best] {
                    best = i;
                }
            }
            best as i64
        })
        .collect();
    let mut shape = x.shape().to_vec();
    if keepdim {
        shape[d] = 1;
    } else {
        shape.remove(d);
    }
    let t = Tensor::from_vec(out, &shape)?;
    debug_assert_eq!(t.dtype(), DType::I64);
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reductions_over_dims() {
        let x = Tensor::from_vec((0..24).map(|v| v as f64).collect(), &[2, 3, 4]).unwrap();
        // sum over dim 1: out[i, k] = sum_j (12 i + 4 j + k) = 36 i + 12 + 3 k
        let s = x.sum(1, false).unwrap();
        assert_eq!(s.shape(), &[2, 4]);
        let want: Vec<f64> = (0..2).flat_map(|i| (0..4).map(move |k| (36 * i + 12 + 3 * k) as f64)).collect();
        assert_eq!(s.to_vec::<f64>().unwrap(), want);
        // leading-dims fast path: sum over 0 and 1
        let s01 = x.sum_dims(&[0, 1], true).unwrap();
        assert_eq!(s01.shape(), &[1, 1, 4]);
        assert_eq!(s01.to_vec::<f64>().unwrap(), vec![60.0, 66.0, 72.0, 78.0]);
        assert_eq!(x.sum_all().unwrap().to_scalar().unwrap(), 276.0);
        assert_eq!(x.max(-1, false).unwrap().to_vec::<f64>().unwrap(), vec![3., 7., 11., 15., 19., 23.]);
        assert_eq!(x.min(0, false).unwrap().to_vec::<f64>().unwrap(), (0..12).map(|v| v as f64).collect::<Vec<_>>());
        assert_eq!(x.argmax(1, false).unwrap().to_vec::<i64>().unwrap(), vec![2; 8]);
        assert_eq!(x.mean_all().unwrap().to_scalar().unwrap(), 11.5);
    }
}
