//! Comparisons that produce u8 masks (1 = true), and selection by a mask
//! (`where_cond`, `masked_fill`). Everything broadcasts numpy-style and
//! works for any dtype; operands are read through their strides.

use super::index::{with_any_dtype, zero};
use super::par_rows_mut;
use crate::layout::broadcast_shape;
use crate::{DType, Element, Error, Result, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Cmp {
    fn name(self) -> &'static str {
        match self {
            Cmp::Eq => "eq",
            Cmp::Ne => "ne",
            Cmp::Gt => "gt",
            Cmp::Ge => "ge",
            Cmp::Lt => "lt",
            Cmp::Le => "le",
        }
    }

    #[inline(always)]
    fn apply<T: PartialOrd>(self, a: T, b: T) -> bool {
        match self {
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
        }
    }
}

/// Elements per output row (the last dim; a scalar is one row of one).
fn row_len(shape: &[usize]) -> usize {
    shape.last().copied().unwrap_or(1)
}

/// `(storage offset, stride)` of every output row of `t` broadcast to `shape`.
fn row_runs(t: &Tensor, shape: &[usize]) -> Result<Vec<(usize, usize)>> {
    let mut runs = Vec::with_capacity(shape.iter().product::<usize>() / row_len(shape).max(1));
    t.layout().broadcast_as(shape)?.for_each_run(|off, _, stride| runs.push((off, stride)));
    Ok(runs)
}

fn compare_elems<T: Element + PartialOrd>(a: &Tensor, b: &Tensor, shape: &[usize], op: Cmp) -> Result<Tensor> {
    let (ra, rb) = (row_runs(a, shape)?, row_runs(b, shape)?);
    let (sa, sb) = (a.storage_slice::<T>()?, b.storage_slice::<T>()?);
    let row = row_len(shape);
    let mut out = vec![0u8; shape.iter().product()];
    par_rows_mut(&mut out, row, |first, rows| {
        for (i, o) in rows.chunks_exact_mut(row).enumerate() {
            let ((oa, ta), (ob, tb)) = (ra[first + i], rb[first + i]);
            for (k, v) in o.iter_mut().enumerate() {
                *v = op.apply(sa[oa + k * ta], sb[ob + k * tb]) as u8;
            }
        }
    });
    Tensor::from_vec(out, shape)
}

/// `mask` as u8 with 1 wherever it is nonzero (u8 masks pass through).
fn truth_mask(mask: &Tensor) -> Result<Tensor> {
    if mask.dtype() == DType::U8 {
        return Ok(mask.clone());
    }
    let truth: Vec<u8> = with_any_dtype!(mask.dtype(), T => {
        mask.to_vec::<T>()?.into_iter().map(|v| (v.elem_to_f64() != 0.0) as u8).collect()
    });
    Tensor::from_vec(truth, mask.shape())
}

fn select_elems<T: Element>(mask: &Tensor, a: &Tensor, b: &Tensor, shape: &[usize]) -> Result<Tensor> {
    let (rm, ra, rb) = (row_runs(mask, shape)?, row_runs(a, shape)?, row_runs(b, shape)?);
    let (sm, sa, sb) = (mask.storage_slice::<u8>()?, a.storage_slice::<T>()?, b.storage_slice::<T>()?);
    let row = row_len(shape);
    let mut out = vec![zero::<T>(); shape.iter().product()];
    par_rows_mut(&mut out, row, |first, rows| {
        for (i, o) in rows.chunks_exact_mut(row).enumerate() {
            let ((om, tm), (oa, ta), (ob, tb)) = (rm[first + i], ra[first + i], rb[first + i]);
            for (k, v) in o.iter_mut().enumerate() {
                *v = if sm[om + k * tm] != 0 { sa[oa + k * ta] } else { sb[ob + k * tb] };
            }
        }
    });
    Tensor::from_vec(out, shape)
}

impl Tensor {
    fn compare(&self, rhs: &Tensor, op: Cmp) -> Result<Tensor> {
        if self.dtype() != rhs.dtype() {
            return Err(Error::DTypeMismatch { op: op.name(), lhs: self.dtype(), rhs: rhs.dtype() });
        }
        let shape = broadcast_shape(op.name(), self.shape(), rhs.shape())?;
        with_any_dtype!(self.dtype(), T => compare_elems::<T>(self, rhs, &shape, op))
    }

    /// `self == rhs` as a u8 mask, broadcast shape (NaN equals nothing).
    pub fn eq(&self, rhs: &Tensor) -> Result<Tensor> {
        self.compare(rhs, Cmp::Eq)
    }
    /// `self != rhs` as a u8 mask, broadcast shape.
    pub fn ne(&self, rhs: &Tensor) -> Result<Tensor> {
        self.compare(rhs, Cmp::Ne)
    }
    /// `self > rhs` as a u8 mask, broadcast shape.
    pub fn gt(&self, rhs: &Tensor) -> Result<Tensor> {
        self.compare(rhs, Cmp::Gt)
    }
    /// `self >= rhs` as a u8 mask, broadcast shape.
    pub fn ge(&self, rhs: &Tensor) -> Result<Tensor> {
        self.compare(rhs, Cmp::Ge)
    }
    /// `self < rhs` as a u8 mask, broadcast shape.
    pub fn lt(&self, rhs: &Tensor) -> Result<Tensor> {
        self.compare(rhs, Cmp::Lt)
    }
    /// `self <= rhs` as a u8 mask, broadcast shape.
    pub fn le(&self, rhs: &Tensor) -> Result<Tensor> {
        self.compare(rhs, Cmp::Le)
    }

    /// `on_true` where `mask` is nonzero, else `on_false`. mask: any dtype
    /// (u8 or float masks); on_true and on_false share a dtype (any). All
    /// three broadcast together → the broadcast shape.
    pub fn where_cond(mask: &Tensor, on_true: &Tensor, on_false: &Tensor) -> Result<Tensor> {
        let op = "where_cond";
        if on_true.dtype() != on_false.dtype() {
            return Err(Error::DTypeMismatch { op, lhs: on_true.dtype(), rhs: on_false.dtype() });
        }
        let values = broadcast_shape(op, on_true.shape(), on_false.shape())?;
        let shape = broadcast_shape(op, mask.shape(), &values)?;
        let mask = truth_mask(mask)?;
        with_any_dtype!(on_true.dtype(), T => select_elems::<T>(&mask, on_true, on_false, &shape))
    }

    /// `self` with `value` wherever `mask` is nonzero; the mask must
    /// broadcast to self's shape → self's shape.
    pub fn masked_fill(&self, mask: &Tensor, value: f64) -> Result<Tensor> {
        let op = "masked_fill";
        if broadcast_shape(op, mask.shape(), self.shape())? != self.shape() {
            return Err(Error::ShapeMismatch { op, lhs: mask.shape().to_vec(), rhs: self.shape().to_vec() });
        }
        Tensor::where_cond(mask, &Tensor::full(&[], value, self.dtype()), self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f64], shape: &[usize]) -> Tensor {
        Tensor::from_slice(v, shape).unwrap()
    }

    fn u8s(t: &Tensor) -> Vec<u8> {
        assert_eq!(t.dtype(), DType::U8);
        t.to_vec::<u8>().unwrap()
    }

    #[test]
    fn comparisons_broadcast_to_u8_masks() {
        let a = t(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
        let b = t(&[2., 5., 3.], &[3]);
        assert_eq!(u8s(&a.eq(&b).unwrap()), vec![0, 0, 1, 0, 1, 0]);
        assert_eq!(u8s(&a.ne(&b).unwrap()), vec![1, 1, 0, 1, 0, 1]);
        assert_eq!(u8s(&a.gt(&b).unwrap()), vec![0, 0, 0, 1, 0, 1]);
        assert_eq!(u8s(&a.ge(&b).unwrap()), vec![0, 0, 1, 1, 1, 1]);
        assert_eq!(u8s(&a.lt(&b).unwrap()), vec![1, 1, 0, 0, 0, 0]);
        assert_eq!(u8s(&a.le(&b).unwrap()), vec![1, 1, 1, 0, 1, 0]);
        // column against row, transposed view, scalar, integers
        let col = t(&[2., 4.], &[2, 1]);
        assert_eq!(u8s(&col.lt(&b).unwrap()), vec![0, 1, 1, 0, 1, 0]);
        assert_eq!(u8s(&a.t().unwrap().gt(&Tensor::scalar(2.5f64)).unwrap()), vec![0, 1, 0, 1, 1, 1]);
        let ids = Tensor::from_vec(vec![0i64, 7, 0], &[3]).unwrap();
        assert_eq!(u8s(&ids.ne(&Tensor::scalar(0i64)).unwrap()), vec![0, 1, 0]);
        assert_eq!(u8s(&t(&[f64::NAN], &[1]).eq(&t(&[f64::NAN], &[1])).unwrap()), vec![0]);
    }

    #[test]
    fn where_cond_selects_with_broadcasting() {
        let mask = Tensor::from_vec(vec![1u8, 0], &[2, 1]).unwrap();
        let a = t(&[1., 2., 3.], &[3]);
        let b = Tensor::scalar(-1.0f64);
        let y = Tensor::where_cond(&mask, &a, &b).unwrap();
        assert_eq!(y.shape(), &[2, 3]);
        assert_eq!(y.to_vec::<f64>().unwrap(), vec![1., 2., 3., -1., -1., -1.]);
        // a float mask: nonzero (including negative) is true
        let fm = t(&[0.0, -2.0, 0.5], &[3]);
        assert_eq!(Tensor::where_cond(&fm, &a, &b).unwrap().to_vec::<f64>().unwrap(), vec![-1., 2., 3.]);
        let ia = Tensor::from_vec(vec![5i64, 6, 7], &[3]).unwrap();
        let ib = Tensor::from_vec(vec![0i64], &[1]).unwrap();
        assert_eq!(Tensor::where_cond(&fm, &ia, &ib).unwrap().to_vec::<i64>().unwrap(), vec![0, 6, 7]);
    }

    #[test]
    fn masked_fill_keeps_shape() {
        let x = t(&[1., 2., 3., 4.], &[2, 2]).to_dtype(DType::F32).unwrap();
        let mask = Tensor::from_vec(vec![0u8, 1], &[2]).unwrap();
        let y = x.masked_fill(&mask, f64::NEG_INFINITY).unwrap();
        assert_eq!(y.to_vec::<f32>().unwrap(), vec![1., f32::NEG_INFINITY, 3., f32::NEG_INFINITY]);
        let e = t(&[1.0], &[1]).masked_fill(&mask, 0.0).unwrap_err();
        assert_eq!(e.to_string(), "masked_fill: shape mismatch: [2] vs [1]");
    }

    #[test]
    fn mask_errors() {
        let a = t(&[1., 2., 3.], &[3]);
        assert!(a.eq(&t(&[1., 2.], &[2])).unwrap_err().to_string().starts_with("eq: shape mismatch"));
        assert!(a.lt(&a.to_dtype(DType::F32).unwrap()).unwrap_err().to_string().contains("dtypes differ"));
        let m = Tensor::from_vec(vec![1u8; 3], &[3]).unwrap();
        assert!(Tensor::where_cond(&m, &a, &a.to_dtype(DType::F32).unwrap()).is_err());
        assert!(Tensor::where_cond(&Tensor::from_vec(vec![1u8; 2], &[2]).unwrap(), &a, &a).is_err());
    }

    #[test]
    fn large_broadcast_select() {
        let n = 300 * 130;
        let a = Tensor::from_vec((0..n).map(|v| v as f64).collect(), &[300, 130]).unwrap();
        let mask = a.gt(&Tensor::scalar(1000.0f64)).unwrap();
        let y = Tensor::where_cond(&mask, &a, &Tensor::scalar(0.0f64)).unwrap().to_vec::<f64>().unwrap();
        assert!(y.iter().enumerate().all(|(i, &v)| v == if i > 1000 { i as f64 } else { 0.0 }));
    }
}
