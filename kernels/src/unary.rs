//! Elementwise transcendental and activation kernels over slices.

use crate::{Float, Isa};

/// The unary maps with a dedicated kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unary {
    Exp,
    Ln,
    Tanh,
    Sigmoid,
    /// Exact (erf-based) GELU: `0.5·x·(1 + erf(x/√2))`, as PyTorch's default.
    Gelu,
    Relu,
}

/// Scalar definition of every [`Unary`]: the reference the SIMD paths must match.
#[inline]
pub fn apply_scalar<T: Float>(op: Unary, x: T) -> T {
    match op {
        Unary::Exp => x.exp(),
        Unary::Ln => x.ln(),
        Unary::Tanh => x.tanh(),
        Unary::Sigmoid => T::ONE / (T::ONE + (-x).exp()),
        Unary::Gelu => T::from_f64(0.5) * x * (T::ONE + (x * T::from_f64(std::f64::consts::FRAC_1_SQRT_2)).erf()),
        Unary::Relu => {
            if x > T::ZERO {
                x
            } else {
                T::ZERO
            }
        }
    }
}

/// `out[i] = op(x[i])` on the active ISA.
pub fn unary<T: Float>(op: Unary, x: &[T], out: &mut [T]) {
    unary_with(Isa::active(), op, x, out)
}

pub fn unary_with<T: Float>(_isa: Isa, op: Unary, x: &[T], out: &mut [T]) {
    assert_eq!(x.len(), out.len(), "unary: input and output lengths differ");
    for (o, &v) in out.iter_mut().zip(x) {
        *o = apply_scalar(op, v);
    }
}
