//! Row-wise softmax and log-softmax. Masked positions are `-inf` in the
//! input; a row that is entirely `-inf` (a fully masked query) gives all
//! zeros, never NaN.

use crate::{Float, Isa};

/// Softmax over each contiguous row of `cols` elements.
pub fn softmax_rows<T: Float>(x: &[T], out: &mut [T], cols: usize) {
    softmax_rows_with(Isa::active(), x, out, cols)
}

pub fn softmax_rows_with<T: Float>(_isa: Isa, x: &[T], out: &mut [T], cols: usize) {
    assert_eq!(x.len(), out.len());
    if cols == 0 {
        return;
    }
    for (xr, or) in x.chunks_exact(cols).zip(out.chunks_exact_mut(cols)) {
        softmax_row_scalar(xr, or);
    }
}

fn softmax_row_scalar<T: Float>(x: &[T], out: &mut [T]) {
    let max = x.iter().fold(T::NEG_INFINITY, |m, &v| m.max(v));
    if max == T::NEG_INFINITY {
        out.iter_mut().for_each(|o| *o = T::ZERO);
        return;
    }
    let mut sum = T::ZERO;
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v - max).exp();
        sum += *o;
    }
    let inv = T::ONE / sum;
    out.iter_mut().for_each(|o| *o *= inv);
}

/// Log-softmax over each contiguous row. A fully masked row gives `-inf`.
pub fn log_softmax_rows<T: Float>(x: &[T], out: &mut [T], cols: usize) {
    log_softmax_rows_with(Isa::active(), x, out, cols)
}

pub fn log_softmax_rows_with<T: Float>(_isa: Isa, x: &[T], out: &mut [T], cols: usize) {
    assert_eq!(x.len(), out.len());
    if cols == 0 {
        return;
    }
    for (xr, or) in x.chunks_exact(cols).zip(out.chunks_exact_mut(cols)) {
        let max = xr.iter().fold(T::NEG_INFINITY, |m, &v| m.max(v));
        if max == T::NEG_INFINITY {
            or.iter_mut().for_each(|o| *o = T::NEG_INFINITY);
            continue;
        }
        let sum: T = xr.iter().map(|&v| (v - max).exp()).sum();
        let lse = max + sum.ln();
        for (o, &v) in or.iter_mut().zip(xr) {
            *o = v - lse;
        }
    }
}
