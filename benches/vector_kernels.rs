//! Vector kernels on every ISA path this CPU has: elementwise maps,
//! reductions, conversions on 4096 (cache-resident) and 1M (memory-bound)
//! elements; softmax and layer norm on 512 rows of 384 and 1024 columns.
//! Throughput counts the bytes each kernel must read and write once.
//!
//! Short measurement windows keep the whole run under a minute; pass a
//! criterion filter (e.g. `cargo bench --bench vector_kernels -- softmax`)
//! for a closer look at one group.

use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput};
use kogner::kernels::convert::{self, bf16, f16};
use kogner::kernels::{layer_norm, reduce, softmax, unary, Isa};

const SIZES: [usize; 2] = [4096, 1 << 20];
const ROWS: usize = 512;
const COLS: [usize; 2] = [384, 1024];
const F32: u64 = 4;

/// Deterministic inputs in [lo, hi) without pulling in a RNG crate.
fn data(n: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            lo + (hi - lo) * (state >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    // Flat sampling: the slow scalar 1M cases need few iterations per sample.
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(40))
        .measurement_time(Duration::from_millis(120));
    g
}

/// Runs `f(isa, size)` for every ISA and size, with `bytes(size)` throughput.
fn each_isa(
    c: &mut Criterion,
    name: &str,
    sizes: &[usize],
    bytes: impl Fn(usize) -> u64,
    mut f: impl FnMut(Isa, usize, &mut criterion::Bencher),
) {
    let mut g = group(c, name);
    for &n in sizes {
        g.throughput(Throughput::Bytes(bytes(n)));
        for isa in Isa::all_available() {
            g.bench_function(BenchmarkId::new(isa.name(), n), |b| f(isa, n, b));
        }
    }
    g.finish();
}

fn unary_kernels(c: &mut Criterion) {
    let big = SIZES[1];
    let x = data(big, -6.0, 6.0);
    let pos = data(big, 0.01, 100.0);
    let dy = data(big, -1.0, 1.0);
    let mut out = vec![0.0f32; big];
    for op in unary::Unary::ALL {
        let x = if op == unary::Unary::Ln { &pos } else { &x };
        each_isa(
            c,
            &format!("unary/{}", op.name()),
            &SIZES,
            |n| 2 * F32 * n as u64,
            |isa, n, b| b.iter(|| unary::unary_with(isa, op, &x[..n], &mut out[..n])),
        );
    }
    each_isa(
        c,
        "unary/gelu_grad",
        &SIZES,
        |n| 3 * F32 * n as u64,
        |isa, n, b| b.iter(|| unary::gelu_grad_with(isa, &x[..n], &dy[..n], &mut out[..n])),
    );
}

fn reduce_kernels(c: &mut Criterion) {
    let big = SIZES[1];
    let a = data(big, -1.0, 1.0);
    let bv = data(big, 0.5, 2.0);
    let mut out = vec![0.0f32; big];
    let one = |n: usize| F32 * n as u64;
    let two = |n: usize| 2 * F32 * n as u64;
    let three = |n: usize| 3 * F32 * n as u64;
    each_isa(c, "reduce/sum", &SIZES, one, |isa, n, b| b.iter(|| reduce::sum_with(isa, &a[..n])));
    each_isa(c, "reduce/sum_sq", &SIZES, one, |isa, n, b| b.iter(|| reduce::sum_sq_with(isa, &a[..n])));
    each_isa(c, "reduce/max", &SIZES, one, |isa, n, b| b.iter(|| reduce::max_with(isa, &a[..n])));
    each_isa(c, "reduce/dot", &SIZES, two, |isa, n, b| b.iter(|| reduce::dot_with(isa, &a[..n], &bv[..n])));
    each_isa(c, "reduce/axpy", &SIZES, three, |isa, n, b| {
        b.iter(|| reduce::axpy_with(isa, 1e-3, &a[..n], &mut out[..n]))
    });
    each_isa(c, "reduce/scale", &SIZES, two, |isa, n, b| b.iter(|| reduce::scale_with(isa, 1.0, &mut out[..n])));
    for op in [reduce::Binary::Add, reduce::Binary::Div] {
        each_isa(c, &format!("reduce/{}", op.name()), &SIZES, three, |isa, n, b| {
            b.iter(|| reduce::binary_with(isa, op, &a[..n], &bv[..n], &mut out[..n]))
        });
    }
}

fn convert_kernels(c: &mut Criterion) {
    let big = SIZES[1];
    let x = data(big, -100.0, 100.0);
    let bf: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
    let h: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
    let (mut bf_out, mut h_out, mut out) = (bf.clone(), h.clone(), x.clone());
    let bytes = |n: usize| (F32 + 2) * n as u64;
    each_isa(c, "convert/f32_to_bf16", &SIZES, bytes, |isa, n, b| {
        b.iter(|| convert::f32_to_bf16_with(isa, &x[..n], &mut bf_out[..n]))
    });
    each_isa(c, "convert/bf16_to_f32", &SIZES, bytes, |isa, n, b| {
        b.iter(|| convert::bf16_to_f32_with(isa, &bf[..n], &mut out[..n]))
    });
    each_isa(c, "convert/f32_to_f16", &SIZES, bytes, |isa, n, b| {
        b.iter(|| convert::f32_to_f16_with(isa, &x[..n], &mut h_out[..n]))
    });
    each_isa(c, "convert/f16_to_f32", &SIZES, bytes, |isa, n, b| {
        b.iter(|| convert::f16_to_f32_with(isa, &h[..n], &mut out[..n]))
    });
}

fn row_kernels(c: &mut Criterion) {
    let len = ROWS * COLS[1];
    let x = data(len, -8.0, 8.0);
    let dy = data(len, -1.0, 1.0);
    let gamma = data(COLS[1], 0.5, 1.5);
    let beta = data(COLS[1], -0.5, 0.5);
    let (mut y, mut dx) = (vec![0.0f32; len], vec![0.0f32; len]);
    let (mut mean, mut rstd) = (vec![0.0f32; ROWS], vec![0.0f32; ROWS]);
    let (mut dgamma, mut dbeta) = (vec![0.0f32; COLS[1]], vec![0.0f32; COLS[1]]);
    let two = |cols: usize| 2 * F32 * (ROWS * cols) as u64;
    let three = |cols: usize| 3 * F32 * (ROWS * cols) as u64;

    each_isa(c, "softmax/forward", &COLS, two, |isa, cols, b| {
        let n = ROWS * cols;
        b.iter(|| softmax::softmax_rows_with(isa, &x[..n], &mut y[..n], cols))
    });
    each_isa(c, "softmax/log_forward", &COLS, two, |isa, cols, b| {
        let n = ROWS * cols;
        b.iter(|| softmax::log_softmax_rows_with(isa, &x[..n], &mut y[..n], cols))
    });
    each_isa(c, "softmax/backward", &COLS, three, |isa, cols, b| {
        let n = ROWS * cols;
        b.iter(|| softmax::softmax_backward_rows_with(isa, &x[..n], &dy[..n], &mut dx[..n], cols))
    });
    each_isa(c, "softmax/log_backward", &COLS, three, |isa, cols, b| {
        let n = ROWS * cols;
        b.iter(|| softmax::log_softmax_backward_rows_with(isa, &x[..n], &dy[..n], &mut dx[..n], cols))
    });
    each_isa(c, "layer_norm/forward", &COLS, two, |isa, cols, b| {
        let n = ROWS * cols;
        let (g, bt) = (Some(&gamma[..cols]), Some(&beta[..cols]));
        b.iter(|| layer_norm::layer_norm_rows_with(isa, &x[..n], g, bt, 1e-5, cols, &mut y[..n], &mut mean, &mut rstd))
    });
    each_isa(c, "layer_norm/backward", &COLS, three, |isa, cols, b| {
        let n = ROWS * cols;
        b.iter(|| {
            layer_norm::layer_norm_backward_rows_with(
                isa,
                &x[..n],
                Some(&gamma[..cols]),
                &mean,
                &rstd,
                &dy[..n],
                cols,
                &mut dx[..n],
                Some(&mut dgamma[..cols]),
                Some(&mut dbeta[..cols]),
            )
        })
    });
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    unary_kernels(&mut c);
    reduce_kernels(&mut c);
    convert_kernels(&mut c);
    row_kernels(&mut c);
    c.final_summary();
}
