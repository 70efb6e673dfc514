//! Joining and splitting along a dim: `cat` and `stack` copy (any dtype);
//! `chunk` and `split` return narrow views sharing storage.

use super::index::{split_at_dim, with_any_dtype, zero};
use super::par_rows_mut;
use crate::layout::resolve_dim;
use crate::{Element, Error, Result, Tensor};

/// Contiguous parts `[outer, n_i·inner]` laid side by side into rows of
/// `Σ n_i·inner`, one output row per outer index.
fn cat_rows<T: Element>(parts: &[Tensor], widths: &[usize], outer: usize, shape: &[usize]) -> Result<Tensor> {
    let srcs: Vec<&[T]> = parts.iter().map(|p| p.as_slice::<T>()).collect::<Result<_>>()?;
    let row: usize = widths.iter().sum();
    let mut out = vec![zero::<T>(); outer * row];
    par_rows_mut(&mut out, row, |first, rows| {
        for (i, o) in rows.chunks_exact_mut(row).enumerate() {
            let r = first + i;
            let mut at = 0;
            for (s, &w) in srcs.iter().zip(widths) {
                o[at..at + w].copy_from_slice(&s[r * w..(r + 1) * w]);
                at += w;
            }
        }
    });
    Tensor::from_vec(out, shape)
}

/// The shape of `tensors` joined along `d`, after checking rank, dtype and
/// the other dims agree.
fn cat_shape(op: &'static str, tensors: &[&Tensor], d: usize) -> Result<Vec<usize>> {
    let first = tensors[0];
    let mut shape = first.shape().to_vec();
    shape[d] = 0;
    for t in tensors {
        if t.dtype() != first.dtype() {
            return Err(Error::DTypeMismatch { op, lhs: first.dtype(), rhs: t.dtype() });
        }
        let agrees = t.rank() == first.rank() && (0..t.rank()).all(|i| i == d || t.shape()[i] == first.shape()[i]);
        if !agrees {
            return Err(Error::shape(op, format!("shapes {:?} and {:?} differ off dim {d}", first.shape(), t.shape())));
        }
        shape[d] += t.shape()[d];
    }
    Ok(shape)
}

impl Tensor {
    /// Join along `dim`, any dtype: k × [.., n_i, ..] → [.., Σ n_i, ..].
    pub fn cat(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
        let op = "cat";
        let Some(first) = tensors.first() else {
            return Err(Error::shape(op, "empty tensor list"));
        };
        let d = first.resolve(op, dim)?;
        let shape = cat_shape(op, tensors, d)?;
        let (outer, _, inner) = split_at_dim(&shape, d);
        let parts: Vec<Tensor> = tensors.iter().map(|t| t.contiguous()).collect::<Result<_>>()?;
        let widths: Vec<usize> = parts.iter().map(|p| p.shape()[d] * inner).collect();
        with_any_dtype!(first.dtype(), T => cat_rows::<T>(&parts, &widths, outer, &shape))
    }

    /// Join equal shapes along a new dim: k × [..] → [.., k, ..] (dim counts
    /// in the output's rank).
    pub fn stack(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
        let op = "stack";
        let Some(first) = tensors.first() else {
            return Err(Error::shape(op, "empty tensor list"));
        };
        if let Some(t) = tensors.iter().find(|t| t.shape() != first.shape()) {
            return Err(Error::ShapeMismatch { op, lhs: first.shape().to_vec(), rhs: t.shape().to_vec() });
        }
        let d = resolve_dim(op, dim, first.rank() + 1)?;
        let parts: Vec<Tensor> = tensors.iter().map(|t| t.unsqueeze(d as isize)).collect::<Result<_>>()?;
        Tensor::cat(&parts.iter().collect::<Vec<_>>(), d as isize)
    }

    /// `n` views along `dim` of `ceil(size / n)` entries each (the last may be
    /// shorter, and fewer than `n` come back when the size runs out), as
    /// PyTorch's `chunk`. A zero-sized dim gives `n` empty views.
    pub fn chunk(&self, n: usize, dim: isize) -> Result<Vec<Tensor>> {
        let d = self.resolve("chunk", dim)?;
        if n == 0 {
            return Err(Error::shape("chunk", "number of chunks must be positive"));
        }
        let size = self.shape()[d];
        let step = size.div_ceil(n);
        if step == 0 {
            return (0..n).map(|_| self.narrow(dim, 0, 0)).collect();
        }
        (0..size).step_by(step).map(|start| self.narrow(dim, start, step.min(size - start))).collect()
    }

    /// Views of consecutive `sizes` along `dim`; the sizes must add up to the dim.
    pub fn split(&self, sizes: &[usize], dim: isize) -> Result<Vec<Tensor>> {
        let d = self.resolve("split", dim)?;
        let total: usize = sizes.iter().sum();
        if total != self.shape()[d] {
            return Err(Error::shape("split", format!("sizes {sizes:?} add up to {total}, dim {d} of {:?}", self.shape())));
        }
        let mut start = 0;
        sizes
            .iter()
            .map(|&len| {
                start += len;
                self.narrow(dim, start - len, len)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;

    fn range(shape: &[usize], from: usize) -> Tensor {
        let n: usize = shape.iter().product();
        Tensor::from_vec((from..from + n).map(|v| v as f64).collect(), shape).unwrap()
    }

    #[test]
    fn cat_along_each_dim() {
        let a = range(&[2, 2], 0);
        let b = range(&[2, 1], 10);
        let c = Tensor::cat(&[&a, &b], 1).unwrap();
        assert_eq!(c.shape(), &[2, 3]);
        assert_eq!(c.to_vec::<f64>().unwrap(), vec![0., 1., 10., 2., 3., 11.]);
        let r = Tensor::cat(&[&a, &range(&[1, 2], 20), &range(&[0, 2], 0)], -2).unwrap();
        assert_eq!(r.to_vec::<f64>().unwrap(), vec![0., 1., 2., 3., 20., 21.]);
        // a transposed operand is read through its strides; integer dtype works
        let at = Tensor::from_vec(vec![0i64, 1, 2, 3], &[2, 2]).unwrap().t().unwrap();
        let ci = Tensor::cat(&[&at, &Tensor::from_vec(vec![9i64, 9], &[2, 1]).unwrap()], 1).unwrap();
        assert_eq!(ci.to_vec::<i64>().unwrap(), vec![0, 2, 9, 1, 3, 9]);
    }

    #[test]
    fn stack_adds_a_dim() {
        let a = range(&[2], 0);
        let b = range(&[2], 5);
        let s0 = Tensor::stack(&[&a, &b], 0).unwrap();
        assert_eq!(s0.shape(), &[2, 2]);
        assert_eq!(s0.to_vec::<f64>().unwrap(), vec![0., 1., 5., 6.]);
        let s1 = Tensor::stack(&[&a, &b], -1).unwrap();
        assert_eq!(s1.shape(), &[2, 2]);
        assert_eq!(s1.to_vec::<f64>().unwrap(), vec![0., 5., 1., 6.]);
    }

    #[test]
    fn cat_and_stack_errors() {
        let a = range(&[2, 2], 0);
        assert_eq!(Tensor::cat(&[], 0).unwrap_err().to_string(), "cat: empty tensor list");
        assert_eq!(Tensor::stack(&[], 0).unwrap_err().to_string(), "stack: empty tensor list");
        let e = Tensor::cat(&[&a, &range(&[3, 3], 0)], 0).unwrap_err();
        assert_eq!(e.to_string(), "cat: shapes [2, 2] and [3, 3] differ off dim 0");
        assert!(Tensor::cat(&[&a, &range(&[2], 0)], 0).is_err());
        assert!(Tensor::cat(&[&a, &a.to_dtype(DType::F32).unwrap()], 0).unwrap_err().to_string().contains("dtypes differ"));
        assert!(Tensor::cat(&[&a], 2).is_err());
        assert!(Tensor::stack(&[&a, &range(&[2, 1], 0)], 0).is_err());
        assert!(Tensor::stack(&[&a], 3).is_err());
        assert!(Tensor::stack(&[&a], 2).is_ok());
    }

    #[test]
    fn chunk_and_split_are_views() {
        let x = range(&[5, 2], 0);
        let parts = x.chunk(2, 0).unwrap();
        assert_eq!(parts.iter().map(|p| p.shape()[0]).collect::<Vec<_>>(), vec![3, 2]);
        assert!(parts.iter().all(|p| p.same_storage(&x)));
        assert_eq!(parts[1].to_vec::<f64>().unwrap(), vec![6., 7., 8., 9.]);
        // PyTorch: 5 split into 4 chunks gives sizes 2, 2, 1
        assert_eq!(x.chunk(4, 0).unwrap().len(), 3);
        assert_eq!(x.chunk(3, 1).unwrap().len(), 2);
        assert_eq!(range(&[0, 2], 0).chunk(3, 0).unwrap().len(), 3);
        let s = x.split(&[1, 0, 4], 0).unwrap();
        assert_eq!(s.iter().map(|p| p.shape()[0]).collect::<Vec<_>>(), vec![1, 0, 4]);
        assert_eq!(s[2].to_vec::<f64>().unwrap()[0], 2.0);
        assert_eq!(x.split(&[1, 1], 1).unwrap()[1].to_vec::<f64>().unwrap(), vec![1., 3., 5., 7., 9.]);
        assert!(x.split(&[2, 2], 0).unwrap_err().to_string().contains("add up to 4"));
        assert!(x.chunk(0, 0).is_err());
        assert!(x.chunk(1, 2).is_err());
    }

    #[test]
    fn large_cat_matches_parts() {
        let a = range(&[200, 100], 0);
        let b = range(&[200, 70], 1_000_000);
        let c = Tensor::cat(&[&a, &b], 1).unwrap();
        let parts = c.split(&[100, 70], 1).unwrap();
        assert_eq!(parts[0].to_vec::<f64>().unwrap(), a.to_vec::<f64>().unwrap());
        assert_eq!(parts[1].to_vec::<f64>().unwrap(), b.to_vec::<f64>().unwrap());
    }
}
