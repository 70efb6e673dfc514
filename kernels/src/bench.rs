//! Kernel throughput measurement behind `kogner bench` and the criterion
//! benches: best-of-several timings on a chosen ISA path and thread count,
//! reported as GFLOP/s (GEMM, with % of the FMA peak measured in the same
//! run) or GB/s (memory-bound vector kernels, with the speed-up over the
//! scalar path measured in the same run).

use std::time::{Duration, Instant};

use crate::gemm::{gemm_flops, gemm_with, GemmDims, MatMut, MatRef};
use crate::layer_norm::layer_norm_rows_with;
use crate::softmax::softmax_rows_with;
use crate::unary::{unary_with, Unary};
use crate::Isa;

/// One measured kernel configuration.
#[derive(Clone, Debug)]
pub struct Measurement {
    pub kernel: String,
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub threads: usize,
    pub isa: Isa,
    /// Best time of one call.
    pub seconds: f64,
    /// Floating-point work of one call (0 for memory-bound kernels).
    pub flops: f64,
    /// Bytes read + written by one call.
    pub bytes: f64,
}

impl Measurement {
    pub fn gflops(&self) -> f64 {
        self.flops / self.seconds / 1e9
    }
    pub fn gbps(&self) -> f64 {
        self.bytes / self.seconds / 1e9
    }
}

/// Best per-call time of `f` over `reps` rounds of at least `min_time` each
/// (after one warm-up call).
pub fn best_time(min_time: Duration, reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let start = Instant::now();
        let mut calls = 0u32;
        while start.elapsed() < min_time || calls == 0 {
            f();
            calls += 1;
        }
        best = best.min(start.elapsed().as_secs_f64() / calls as f64);
    }
    best
}

/// How a GEMM's B operand is stored: `N` row-major k×n; `T` as its
/// transpose (n×k row-major, i.e. `x·Wᵀ` of a linear layer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BLayout {
    N,
    T,
}

/// The GEMM shapes the project tracks: 1024³ and the model shapes.
pub fn tracked_gemm_shapes() -> Vec<GemmDims> {
    vec![
        GemmDims { batch: 1, m: 1024, n: 1024, k: 1024 },
        GemmDims { batch: 1, m: 128, n: 1024, k: 4096 },
        GemmDims { batch: 1, m: 128, n: 4096, k: 1024 },
        GemmDims { batch: 1, m: 512, n: 384, k: 1536 },
        GemmDims { batch: 96, m: 64, n: 64, k: 512 },
    ]
}

fn filled(n: usize, seed: u32) -> Vec<f32> {
    // cheap deterministic values in [-1, 1)
    (0..n).map(|i| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / 8388608.0) - 1.0).collect()
}

/// Measure one f32 GEMM on `isa` inside the current rayon pool.
pub fn measure_gemm(isa: Isa, dims: GemmDims, b_layout: BLayout, min_time: Duration) -> Measurement {
    let GemmDims { batch, m, n, k } = dims;
    let a = filled(batch * m * k, 1);
    let b = filled(batch * k * n, 2);
    let mut c = vec![0f32; batch * m * n];
    let a_ref = MatRef { data: &a, row_stride: k, col_stride: 1, batch_stride: m * k };
    let b_ref = match b_layout {
        BLayout::N => MatRef { data: &b[..], row_stride: n, col_stride: 1, batch_stride: k * n },
        BLayout::T => MatRef { data: &b[..], row_stride: 1, col_stride: k, batch_stride: k * n },
    };
    let seconds = best_time(min_time, 3, || {
        gemm_with(isa, dims, 1.0, a_ref, b_ref, 0.0, MatMut { data: &mut c, row_stride: n, batch_stride: m * n })
    });
    Measurement {
        kernel: format!("sgemm_{}", if b_layout == BLayout::N { "nn" } else { "nt" }),
        batch,
        m,
        n,
        k,
        threads: rayon::current_num_threads(),
        isa,
        seconds,
        flops: gemm_flops(dims),
        bytes: 4.0 * (batch * (m * k + k * n + m * n)) as f64,
    }
}

/// Memory-bound kernels over `rows × cols` f32 (single-threaded kernels:
/// the tensor layer parallelises them over rows).
pub fn measure_vector(isa: Isa, kernel: &str, rows: usize, cols: usize, min_time: Duration) -> Option<Measurement> {
    let n = rows * cols;
    let x = filled(n, 3);
    let mut out = vec![0f32; n];
    let gamma = filled(cols, 4);
    let beta = filled(cols, 5);
    let (mut mean, mut rstd) = (vec![0f32; rows], vec![0f32; rows]);
    let unary_op = |name: &str| match name {
        "exp" => Some(Unary::Exp),
        "tanh" => Some(Unary::Tanh),
        "sigmoid" => Some(Unary::Sigmoid),
        "gelu" => Some(Unary::Gelu),
        _ => None,
    };
    let seconds = match kernel {
        "softmax" => best_time(min_time, 3, || softmax_rows_with(isa, &x, &mut out, cols)),
        "layer_norm" => best_time(min_time, 3, || {
            layer_norm_rows_with(isa, &x, Some(&gamma), Some(&beta), 1e-7, cols, &mut out, &mut mean, &mut rstd)
        }),
        name => {
            let op = unary_op(name)?;
            best_time(min_time, 3, || unary_with(isa, op, &x, &mut out))
        }
    };
    Some(Measurement {
        kernel: kernel.to_string(),
        batch: 1,
        m: rows,
        n: cols,
        k: 0,
        threads: 1,
        isa,
        seconds,
        flops: 0.0,
        bytes: 8.0 * n as f64,
    })
}

/// The vector kernels `kogner bench` reports, with their (rows, cols).
pub fn tracked_vector_kernels() -> Vec<(&'static str, usize, usize)> {
    vec![
        ("softmax", 512, 512),
        ("layer_norm", 512, 1024),
        ("gelu", 512, 3072),
        ("exp", 1, 1 << 20),
        ("tanh", 1, 1 << 20),
        ("sigmoid", 1, 1 << 20),
    ]
}
