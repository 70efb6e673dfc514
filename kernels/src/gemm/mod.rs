//! General matrix multiply: `C[b] = alpha * A[b] · B[b] + beta * C[b]`.
//!
//! Operands are described by strides, so any transpose of A or B (and
//! broadcast over the batch with a zero batch stride) is expressed without a
//! copy: packing reads through the strides.
//!
//! # Design (BLIS-style)
//!
//! For one product the driver ([`driver`]) walks C in `NC`-column blocks, the
//! depth in `KC` slices and the rows in `MC` blocks. Each `KC × NC` block of B
//! is packed into `NR`-column panels and each `MC × KC` block of A into
//! `MR`-row panels (zero-padded, see [`pack`]); a register-blocked
//! micro-kernel then computes one `MR × NR` tile of C per call, streaming one
//! A panel and one B panel. While a block's tiles run, the kernel prefetches
//! the source of the next block (or of the next batch item) into L2, paced
//! over the tiles, so packing does not wait on memory.
//!
//! | path   | MR × NR | accumulators      | MC  | KC  | NC   |
//! |--------|---------|-------------------|-----|-----|------|
//! | avx512 |  8 × 32 | 16 zmm            | 256 | 384 | 4096 |
//! | avx2   |  6 × 16 | 12 ymm            | 144 | 384 | 4096 |
//! | scalar |  4 × 4  | 16 (f32 or f64)   |  64 | 256 | 1024 |
//!
//! Small operands are not packed: when a task has at most 64 columns the
//! kernels read A in place (a packed panel would serve only a few tiles),
//! and with at most 64 rows the avx512 kernel also reads a row-major B in
//! place; an edge tile's fewer rows get a kernel with fewer accumulators.
//!
//! Threading (rayon, nested-safe): batch items are split into one contiguous
//! run per thread (so each thread prefetches its next item); a single
//! product, or a batch that does not divide evenly, is also cut over N or M
//! (whichever duplicates less packing), or over K for deep products whose
//! N / M cut would split the rows of a long-stride operand. Calls under
//! 1 MFLOP run on the calling thread, and products of at most 128
//! multiply-adds take a plain scalar loop.

#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod driver;
mod pack;
mod scalar;
#[cfg(test)]
mod tests;

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

/// Floating-point operations of one call: `2 · batch · m · n · k`.
pub fn gemm_flops(dims: GemmDims) -> f64 {
    2.0 * dims.batch as f64 * dims.m as f64 * dims.n as f64 * dims.k as f64
}

/// `C = alpha·A·B + beta·C` on the active ISA, threaded with rayon.
/// With `beta == 0` C is not read (it may hold garbage or NaN), as in BLAS.
pub fn gemm<T: Float>(dims: GemmDims, alpha: T, a: MatRef<T>, b: MatRef<T>, beta: T, c: MatMut<T>) {
    gemm_with(Isa::active(), dims, alpha, a, b, beta, c)
}

/// As [`gemm`], on an explicit ISA path (tests and benchmarks compare paths).
///
/// Panics if the CPU cannot run `isa`, if an operand's slice is too short for
/// its strides, or if rows / matrices of C overlap.
pub fn gemm_with<T: Float>(isa: Isa, dims: GemmDims, alpha: T, a: MatRef<T>, b: MatRef<T>, beta: T, c: MatMut<T>) {
    assert!(isa.available(), "gemm: this CPU cannot run the {} path", isa.name());
    driver::check_operands(dims, &a, &b, &c);
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Scalar {
        if let (Some(a32), Some(b32), Some(c32)) = (T::as_f32(a.data), T::as_f32(b.data), T::as_f32_mut(c.data)) {
            let a32 =
                MatRef { data: a32, row_stride: a.row_stride, col_stride: a.col_stride, batch_stride: a.batch_stride };
            let b32 =
                MatRef { data: b32, row_stride: b.row_stride, col_stride: b.col_stride, batch_stride: b.batch_stride };
            let c32 = MatMut { data: c32, row_stride: c.row_stride, batch_stride: c.batch_stride };
            let (alpha, beta) = (alpha.to_f64() as f32, beta.to_f64() as f32);
            match isa {
                Isa::Avx512 => {
                    let kern = avx512::Avx512::new().expect("checked by isa.available()");
                    driver::run(&kern, dims, alpha, a32, b32, beta, c32);
                }
                Isa::Avx2Fma => {
                    let kern = avx2::Avx2::new().expect("checked by isa.available()");
                    driver::run(&kern, dims, alpha, a32, b32, beta, c32);
                }
                Isa::Scalar => unreachable!(),
            }
            return;
        }
    }
    driver::run(&scalar::Scalar, dims, alpha, a, b, beta, c)
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
