//! Reductions over contiguous slices.

use crate::{Float, Isa};

pub fn sum<T: Float>(x: &[T]) -> T {
    sum_with(Isa::active(), x)
}
pub fn sum_with<T: Float>(_isa: Isa, x: &[T]) -> T {
    x.iter().copied().sum()
}

/// Maximum, ignoring nothing: NaN propagates. Empty slice gives `-inf`.
pub fn max<T: Float>(x: &[T]) -> T {
    max_with(Isa::active(), x)
}
pub fn max_with<T: Float>(_isa: Isa, x: &[T]) -> T {
    let mut m = T::NEG_INFINITY;
    for &v in x {
        if v.is_nan() {
            return v;
        }
        if v > m {
            m = v;
        }
    }
    m
}

pub fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    dot_with(Isa::active(), a, b)
}
pub fn dot_with<T: Float>(_isa: Isa, a: &[T], b: &[T]) -> T {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(&x, &y)| x * y).sum()
}

/// `y += alpha * x`.
pub fn axpy<T: Float>(alpha: T, x: &[T], y: &mut [T]) {
    axpy_with(Isa::active(), alpha, x, y)
}
pub fn axpy_with<T: Float>(_isa: Isa, alpha: T, x: &[T], y: &mut [T]) {
    assert_eq!(x.len(), y.len());
    for (o, &v) in y.iter_mut().zip(x) {
        *o += alpha * v;
    }
}
