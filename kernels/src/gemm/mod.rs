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
//! `MR`-row panels (both zero-padded, see [`pack`]); a register-blocked
//! micro-kernel then computes one `MR × NR` tile of C per call, streaming one
//! A panel and one B panel with unit stride. The B block stays in L3/L2, the
//! A block in L2, one B micro-panel in L1 while the kernel sweeps the A panels.
//!
//! | path      | MR × NR | registers        | MC  | KC  | NC   |
//! |-----------|---------|------------------|-----|-----|------|
//! | avx512    | 16 × 16 | 16 zmm acc       | 256 | 384 | 4096 |
//! | avx2      |  6 × 16 | 12 ymm acc       | 144 | 384 | 4096 |
//! | scalar    |  4 × 4  | generic (f32/f64)|  64 | 256 | 1024 |
//!
//! Threading (rayon, nested-safe): independent batch items run in parallel,
//! and a single product (or a batch that does not divide evenly over the
//! threads) is also split over N or M, whichever duplicates less packing.
//! Tiny products take a direct unpacked loop on the calling thread.

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
            let a32 = MatRef { data: a32, row_stride: a.row_stride, col_stride: a.col_stride, batch_stride: a.batch_stride };
            let b32 = MatRef { data: b32, row_stride: b.row_stride, col_stride: b.col_stride, batch_stride: b.batch_stride };
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
