//! Elementwise unary and binary ops, with numpy broadcasting for binary ops.

use std::sync::Arc;

use kogner_kernels::unary::{unary, Unary};
use kogner_kernels::Float;

use super::par_chunks_mut;
use crate::layout::broadcast_shape;
use crate::{with_float_dtype, Error, FloatElement, Layout, Result, Tensor};

/// Binary ops with broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Maximum,
    Minimum,
}

impl BinaryOp {
    fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Maximum => "maximum",
            BinaryOp::Minimum => "minimum",
        }
    }
    #[inline(always)]
    fn apply<T: FloatElement>(self, a: T, b: T) -> T {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
            BinaryOp::Maximum => a.max(b),
            BinaryOp::Minimum => a.min(b),
        }
    }
}

pub(crate) fn from_storage_vec<T: FloatElement>(v: Vec<T>, shape: &[usize]) -> Tensor {
    Tensor::from_parts(Arc::new(T::into_storage(v)), Layout::contiguous(shape))
}

/// `f` applied to every element (any layout), result contiguous.
fn map_elems<T: FloatElement>(x: &Tensor, f: impl Fn(T) -> T + Sync) -> Result<Tensor> {
    let x = x.contiguous()?;
    let src = x.as_slice::<T>()?;
    let mut out = vec![T::ZERO; src.len()];
    par_chunks_mut(&mut out, |off, o| {
        let n = o.len();
        for (d, &s) in o.iter_mut().zip(&src[off..off + n]) {
            *d = f(s);
        }
    });
    Ok(from_storage_vec(out, x.shape()))
}

fn kernel_unary<T: FloatElement>(x: &Tensor, op: Unary) -> Result<Tensor> {
    let x = x.contiguous()?;
    let src = x.as_slice::<T>()?;
    let mut out = vec![T::ZERO; src.len()];
    par_chunks_mut(&mut out, |off, o| {
        let n = o.len();
        unary(op, &src[off..off + n], o)
    });
    Ok(from_storage_vec(out, x.shape()))
}

/// `grad · GELU'(x)` through the SIMD kernel; `grad` broadcasts to x's shape.
fn kernel_gelu_backward<T: FloatElement>(x: &Tensor, grad: &Tensor) -> Result<Tensor> {
    let x = x.contiguous()?;
    let grad = grad.broadcast_as(x.shape())?.contiguous()?;
    let (src, g) = (x.as_slice::<T>()?, grad.as_slice::<T>()?);
    let mut out = vec![T::ZERO; src.len()];
    par_chunks_mut(&mut out, |off, o| {
        let n = o.len();
        kogner_kernels::unary::gelu_grad(&src[off..off + n], &g[off..off + n], o)
    });
    Ok(from_storage_vec(out, x.shape()))
}

macro_rules! kernel_unary_methods {
    ($($(#[$doc:meta])* $name:ident => $op:expr;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(&self) -> Result<Tensor> {
                with_float_dtype!(self.dtype(), stringify!($name), T => kernel_unary::<T>(self, $op))
            }
        )*
    };
}

macro_rules! map_methods {
    ($($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*) => |$v:ident| $body:expr;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(&self $(, $arg: $ty)*) -> Result<Tensor> {
                with_float_dtype!(self.dtype(), stringify!($name), T => {
                    $(let $arg = T::from_f64($arg);)*
                    map_elems::<T>(self, |$v: T| $body)
                })
            }
        )*
    };
}

impl Tensor {
    kernel_unary_methods! {
        exp => Unary::Exp;
        /// Natural logarithm.
        ln => Unary::Ln;
        tanh => Unary::Tanh;
        sigmoid => Unary::Sigmoid;
        /// Exact (erf) GELU, PyTorch's default.
        gelu => Unary::Gelu;
        relu => Unary::Relu;
    }

    map_methods! {
        neg() => |v| -v;
        sqrt() => |v| v.sqrt();
        abs() => |v| v.abs();
        sqr() => |v| v * v;
        recip() => |v| T::ONE / v;
        /// `x * mul + add`.
        affine(mul: f64, add: f64) => |v| v * mul + add;
        powf(e: f64) => |v| v.powf(e);
        /// Clamp into `[lo, hi]` (NaN stays NaN).
        clamp(lo: f64, hi: f64) => |v| if v < lo { lo } else if v > hi { hi } else { v };
        /// 1 where `x > t`, else 0 (same dtype).
        gt_scalar(t: f64) => |v| if v > t { T::ONE } else { T::ZERO };
        /// 1 where `lo ≤ x ≤ hi`, else 0 (clamp's gradient mask).
        in_range_mask(lo: f64, hi: f64) => |v| if v >= lo && v <= hi { T::ONE } else { T::ZERO };
    }

    /// `grad · GELU'(x)` for the exact GELU (GELU' = Φ(x) + x·φ(x)); `grad`
    /// broadcasts to this tensor's shape.
    pub fn gelu_backward(&self, grad: &Tensor) -> Result<Tensor> {
        if self.dtype() != grad.dtype() {
            return Err(Error::DTypeMismatch { op: "gelu_backward", lhs: self.dtype(), rhs: grad.dtype() });
        }
        with_float_dtype!(self.dtype(), "gelu_backward", T => kernel_gelu_backward::<T>(self, grad))
    }

    pub fn mul_scalar(&self, s: f64) -> Result<Tensor> {
        self.affine(s, 0.0)
    }
    pub fn add_scalar(&self, s: f64) -> Result<Tensor> {
        self.affine(1.0, s)
    }

    /// Elementwise `op` with numpy broadcasting.
    pub fn binary(&self, rhs: &Tensor, op: BinaryOp) -> Result<Tensor> {
        if self.dtype() != rhs.dtype() {
            return Err(Error::DTypeMismatch { op: op.name(), lhs: self.dtype(), rhs: rhs.dtype() });
        }
        with_float_dtype!(self.dtype(), op.name(), T => binary_elems::<T>(self, rhs, op))
    }

    pub fn add(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Add)
    }
    pub fn sub(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Sub)
    }
    pub fn mul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Mul)
    }
    pub fn div(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Div)
    }
    pub fn maximum(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Maximum)
    }
    pub fn minimum(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Minimum)
    }

    /// `self += rhs` in place (same shape and dtype, `rhs` any layout):
    /// summing gradients without a new buffer each time. Like every write
    /// through [`Tensor::data_mut`], a storage shared with another tensor is
    /// copied first, so no other tensor sees the change.
    pub fn add_assign(&mut self, rhs: &Tensor) -> Result<()> {
        if self.shape() != rhs.shape() {
            return Err(Error::ShapeMismatch { op: "add_assign", lhs: self.shape().to_vec(), rhs: rhs.shape().to_vec() });
        }
        if self.dtype() != rhs.dtype() {
            return Err(Error::DTypeMismatch { op: "add_assign", lhs: self.dtype(), rhs: rhs.dtype() });
        }
        let rhs = rhs.contiguous()?;
        with_float_dtype!(self.dtype(), "add_assign", T => {
            let src = rhs.as_slice::<T>()?;
            par_chunks_mut(self.data_mut::<T>()?, |off, o| {
                let n = o.len();
                for (d, &s) in o.iter_mut().zip(&src[off..off + n]) {
                    *d += s;
                }
            });
        });
        Ok(())
    }
}

fn binary_elems<T: FloatElement>(a: &Tensor, b: &Tensor, op: BinaryOp) -> Result<Tensor> {
    let shape = broadcast_shape(op.name(), a.shape(), b.shape())?;
    let n: usize = shape.iter().product();
    let mut out = vec![T::ZERO; n];
    // Fast path: both operands already laid out exactly as the output.
    if a.shape() == shape.as_slice() && b.shape() == shape.as_slice() && a.is_contiguous() && b.is_contiguous() {
        let (sa, sb) = (a.as_slice::<T>()?, b.as_slice::<T>()?);
        par_chunks_mut(&mut out, |off, o| {
            let (xa, xb) = (&sa[off..off + o.len()], &sb[off..off + o.len()]);
            for i in 0..o.len() {
                o[i] = op.apply(xa[i], xb[i]);
            }
        });
        return Ok(from_storage_vec(out, &shape));
    }
    // General path: walk output rows (last dim); each operand contributes a
    // run with stride 1 (contiguous), 0 (broadcast) or other.
    let la = a.layout().broadcast_as(&shape)?;
    let lb = b.layout().broadcast_as(&shape)?;
    let (sa, sb) = (a.storage_slice::<T>()?, b.storage_slice::<T>()?);
    let mut runs_a = Vec::new();
    la.for_each_run(|o, len, st| runs_a.push((o, len, st)));
    let mut runs_b = Vec::new();
    lb.for_each_run(|o, _, st| runs_b.push((o, st)));
    let row = shape.last().copied().unwrap_or(1);
    super::par_rows_mut(&mut out, row, |first_row, rows| {
        for (r, o) in rows.chunks_mut(row).enumerate() {
            let (oa, _, st_a) = runs_a[first_row + r];
            let (ob, st_b) = runs_b[first_row + r];
            match (st_a, st_b) {
                (1, 1) => {
                    let (xa, xb) = (&sa[oa..oa + row], &sb[ob..ob + row]);
                    for i in 0..row {
                        o[i] = op.apply(xa[i], xb[i]);
                    }
                }
                (1, 0) => {
                    let (xa, vb) = (&sa[oa..oa + row], sb[ob]);
                    for i in 0..row {
                        o[i] = op.apply(xa[i], vb);
                    }
                }
                (0, 1) => {
                    let (va, xb) = (sa[oa], &sb[ob..ob + row]);
                    for i in 0..row {
                        o[i] = op.apply(va, xb[i]);
                    }
                }
                _ => {
                    for (i, oi) in o.iter_mut().enumerate() {
                        *oi = op.apply(sa[oa + i * st_a], sb[ob + i * st_b]);
                    }
                }
            }
        }
    });
    Ok(from_storage_vec(out, &shape))
}

/// Sum `grad` (shaped like a broadcast result) down to `shape`: the
/// adjoint of broadcasting, used by every broadcasting backward.
pub fn sum_to_shape(grad: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if grad.shape() == shape {
        return Ok(grad.clone());
    }
    let r = grad.rank();
    if shape.len() > r {
        return Err(Error::ShapeMismatch { op: "sum_to_shape", lhs: grad.shape().to_vec(), rhs: shape.to_vec() });
    }
    let lead = r - shape.len();
    let mut dims: Vec<usize> = (0..lead).collect();
    for (i, &s) in shape.iter().enumerate() {
        if s == 1 && grad.shape()[lead + i] != 1 {
            dims.push(lead + i);
        } else if s != grad.shape()[lead + i] {
            return Err(Error::ShapeMismatch { op: "sum_to_shape", lhs: grad.shape().to_vec(), rhs: shape.to_vec() });
        }
    }
    grad.sum_dims(&dims, true)?.reshape(shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;

    #[test]
    fn broadcasting_binary_matches_manual() {
        let a = Tensor::from_vec((0..6).map(|v| v as f32).collect(), &[2, 3]).unwrap();
        let b = Tensor::from_vec(vec![10f32, 20.0, 30.0], &[3]).unwrap();
        assert_eq!(a.add(&b).unwrap().to_vec::<f32>().unwrap(), vec![10., 21., 32., 13., 24., 35.]);
        let c = Tensor::from_vec(vec![1f32, 2.0], &[2, 1]).unwrap();
        assert_eq!(a.mul(&c).unwrap().to_vec::<f32>().unwrap(), vec![0., 1., 2., 6., 8., 10.]);
        // transposed operand
        let at = a.t().unwrap(); // [3,2]
        let d = Tensor::from_vec(vec![1f32, -1.0], &[2]).unwrap();
        assert_eq!(at.mul(&d).unwrap().to_vec::<f32>().unwrap(), vec![0., -3., 1., -4., 2., -5.]);
        assert!(a.add(&Tensor::zeros(&[4], DType::F32)).is_err());
        assert!(a.add(&Tensor::zeros(&[3], DType::F64)).is_err());
    }

    #[test]
    fn add_assign_adds_in_place_and_never_into_a_shared_storage() {
        let a = Tensor::from_vec((0..6).map(|v| v as f32).collect(), &[2, 3]).unwrap();
        let b = Tensor::from_vec((0..6).map(|v| 10.0 * v as f32).collect(), &[3, 2]).unwrap().t().unwrap();
        let mut sum = a.clone();
        sum.add_assign(&b).unwrap();
        assert_eq!(sum.to_vec::<f32>().unwrap(), a.add(&b).unwrap().to_vec::<f32>().unwrap());
        assert_eq!(a.to_vec::<f32>().unwrap(), vec![0., 1., 2., 3., 4., 5.], "the clone shared a's storage");
        // Large enough for the parallel chunks: the same as add.
        let n = 100_003;
        let x = Tensor::from_vec((0..n).map(|v| (v % 97) as f64 * 0.5).collect(), &[n]).unwrap();
        let mut y = Tensor::ones(&[n], DType::F64);
        y.add_assign(&x).unwrap();
        assert_eq!(y.to_vec::<f64>().unwrap(), x.add_scalar(1.0).unwrap().to_vec::<f64>().unwrap());
        assert!(sum.add_assign(&Tensor::zeros(&[3], DType::F32)).is_err(), "no broadcasting");
        assert!(sum.add_assign(&a.to_dtype(DType::F64).unwrap()).is_err());
    }

    #[test]
    fn unary_ops_match_std() {
        let x = Tensor::from_vec(vec![-2.0f64, -0.5, 0.0, 0.3, 4.0], &[5]).unwrap();
        let got = x.sigmoid().unwrap().to_vec::<f64>().unwrap();
        for (g, v) in got.iter().zip([-2.0f64, -0.5, 0.0, 0.3, 4.0]) {
            assert!((g - 1.0 / (1.0 + (-v).exp())).abs() < 1e-15);
        }
        assert_eq!(x.clamp(-1.0, 1.0).unwrap().to_vec::<f64>().unwrap(), vec![-1.0, -0.5, 0.0, 0.3, 1.0]);
        assert!(Tensor::zeros(&[2], DType::I64).exp().is_err());
    }

    #[test]
    fn sum_to_shape_reverses_broadcast() {
        let g = Tensor::ones(&[2, 3, 4], DType::F64);
        assert_eq!(sum_to_shape(&g, &[3, 1]).unwrap().to_vec::<f64>().unwrap(), vec![8.0; 3]);
        assert_eq!(sum_to_shape(&g, &[4]).unwrap().to_vec::<f64>().unwrap(), vec![6.0; 4]);
    }
}
