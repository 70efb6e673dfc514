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
//! A B that many products share (a weight at inference) can be packed once
//! into that layout for all of its `KC` depth slices ([`PackedB`]); the
//! driver then takes each block's panels from it instead of packing
//! ([`gemm_prepacked`], same bits as the strided call).
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

use driver::BOperand;

use crate::{Float, Isa};

/// Runs `$body` with `$kern` bound to the f32 micro-kernel of `$isa`
/// (available: checked by the caller).
macro_rules! with_f32_kernel {
    ($isa:expr, $kern:ident => $body:expr) => {
        match $isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                let $kern = &avx512::Avx512::new().expect("checked by isa.available()");
                $body
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => {
                let $kern = &avx2::Avx2::new().expect("checked by isa.available()");
                $body
            }
            _ => {
                let $kern = &scalar::Scalar;
                $body
            }
        }
    };
}

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
    if isa != Isa::Scalar {
        if let (Some(a32), Some(b32), Some(c32)) = (T::as_f32(a.data), T::as_f32(b.data), T::as_f32_mut(c.data)) {
            let a32 =
                MatRef { data: a32, row_stride: a.row_stride, col_stride: a.col_stride, batch_stride: a.batch_stride };
            let b32 =
                MatRef { data: b32, row_stride: b.row_stride, col_stride: b.col_stride, batch_stride: b.batch_stride };
            let c32 = MatMut { data: c32, row_stride: c.row_stride, batch_stride: c.batch_stride };
            let (alpha, beta) = (alpha.to_f64() as f32, beta.to_f64() as f32);
            with_f32_kernel!(isa, kern => driver::run(kern, dims, alpha, a32, BOperand::Strided(b32), beta, c32));
            return;
        }
    }
    driver::run(&scalar::Scalar, dims, alpha, a, BOperand::Strided(b), beta, c)
}


/// A `k × n` f32 B packed once, in the panel layout of one ISA path's
/// micro-kernel, for many products `C = A·B` with different A: a linear
/// layer's weight at inference. [`gemm_prepacked`] then skips the per-call
/// packing of B (a transposing gather for `x·Wᵀ`, about a fifth of a
/// 57-row product's time) and gives the same bits as [`gemm_with`] on the
/// same path, as long as that call would not have split the depth between
/// threads (it never does for a transposed B).
pub struct PackedB {
    isa: Isa,
    k: usize,
    n: usize,
    n_pad: usize,
    buf: Vec<f32>,
    /// Where the 64-byte aligned data starts in `buf`.
    start: usize,
}

impl PackedB {
    /// Packs `b` (`k × n`, any strides; its batch stride is ignored) for the active ISA.
    pub fn new(b: MatRef<f32>, k: usize, n: usize) -> PackedB {
        PackedB::new_with(Isa::active(), b, k, n)
    }

    /// As [`PackedB::new`], for an explicit ISA path. Panics if the CPU
    /// cannot run `isa` or `b`'s slice is too short for its strides.
    pub fn new_with(isa: Isa, b: MatRef<f32>, k: usize, n: usize) -> PackedB {
        assert!(isa.available(), "gemm: this CPU cannot run the {} path", isa.name());
        with_f32_kernel!(isa, kern => packed(kern, isa, b, k, n))
    }

    /// Depth (rows of B).
    pub fn k(&self) -> usize {
        self.k
    }
    /// Columns of B.
    pub fn n(&self) -> usize {
        self.n
    }
    pub fn isa(&self) -> Isa {
        self.isa
    }
    fn data(&self) -> &[f32] {
        &self.buf[self.start..]
    }
}

fn packed<K: driver::Kernel<f32>>(kern: &K, isa: Isa, b: MatRef<f32>, k: usize, n: usize) -> PackedB {
    let n_pad = n.next_multiple_of(K::NR);
    // 16 floats of slack to start the panels on a cache line.
    let mut buf = vec![0.0f32; n_pad * k + 16];
    let start = buf.as_ptr().align_offset(64).min(16);
    if k > 0 && n > 0 {
        driver::pack_whole_b(kern, b, k, n, &mut buf[start..]);
    }
    PackedB { isa, k, n, n_pad, buf, start }
}

/// `C = alpha·A·B + beta·C` for one `m × k` A and a packed B, on the path B
/// was packed for, threaded with rayon. With `beta == 0` C is not read.
///
/// Panics if A's slice is too short for its strides or C's for `m × n`.
pub fn gemm_prepacked(m: usize, alpha: f32, a: MatRef<f32>, b: &PackedB, beta: f32, c: MatMut<f32>) {
    let dims = GemmDims { batch: 1, m, n: b.n, k: b.k };
    // B's extent was checked when it was packed; check A and C against a
    // zero-stride stand-in for B.
    let b_stub = MatRef { data: &[0.0f32][..], row_stride: 0, col_stride: 0, batch_stride: 0 };
    driver::check_operands(dims, &a, &b_stub, &c);
    let b_op = BOperand::Packed { data: b.data(), n_pad: b.n_pad };
    with_f32_kernel!(b.isa, kern => driver::run(kern, dims, alpha, a, b_op, beta, c))
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
