//! GEMM throughput on the model shapes, per ISA path and operand layout.
//!
//! `cargo bench --bench gemm` first prints a table of GFLOP/s as a share of
//! the FMA peak measured in the same run (best call of a 0.4 s run: other
//! work on the machine only lowers a sample), then runs the criterion benchmarks
//! (throughput in flops, reported as elements/s).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use kogner::kernels::gemm::{gemm_flops, gemm_with, GemmDims, MatMut, MatRef};
use kogner::kernels::peak::fma_peak_gflops;
use kogner::kernels::Isa;

/// (batch, m, n, k): a square product, the linear layers of a 128-token
/// batch (up- and down-projection), an attention-sized product, and the
/// per-head attention scores.
const SHAPES: [(usize, usize, usize, usize); 5] =
    [(1, 1024, 1024, 1024), (1, 128, 1024, 4096), (1, 128, 4096, 1024), (1, 512, 384, 1536), (96, 64, 64, 512)];

/// How B is stored: row-major `k × n` (NN), or as `W` row-major `n × k`
/// read through `.t()` (NT, the `x·Wᵀ` of a linear layer).
#[derive(Clone, Copy)]
enum Layout {
    NN,
    NT,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::NN => "NN",
            Layout::NT => "NT",
        }
    }
}

struct Problem {
    dims: GemmDims,
    layout: Layout,
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
}

impl Problem {
    fn new((batch, m, n, k): (usize, usize, usize, usize), layout: Layout) -> Self {
        let fill = |len: usize| (0..len).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect::<Vec<f32>>();
        Problem {
            dims: GemmDims { batch, m, n, k },
            layout,
            a: fill(batch * m * k),
            b: fill(batch * k * n),
            c: vec![0.0; batch * m * n],
        }
    }

    fn run(&mut self, isa: Isa) {
        let GemmDims { m, n, k, .. } = self.dims;
        let a = MatRef::row_major(&self.a, m, k);
        let b = match self.layout {
            Layout::NN => MatRef::row_major(&self.b, k, n),
            Layout::NT => MatRef::row_major(&self.b, n, k).t(),
        };
        let c = MatMut { data: &mut self.c, row_stride: n, batch_stride: m * n };
        gemm_with(isa, self.dims, 1.0, a, b, 0.0, c);
        black_box(&self.c);
    }

    fn label(&self) -> String {
        let GemmDims { batch, m, n, k } = self.dims;
        let batch = if batch > 1 { format!("{batch}x") } else { String::new() };
        format!("{batch}{m}x{n}x{k}/{}", self.layout.name())
    }
}

fn simd_isas() -> Vec<Isa> {
    Isa::all_available().into_iter().filter(|&i| i != Isa::Scalar).collect()
}

/// Time spent per row of the table: the machine is shared, so the best call
/// of a longer run is the stabler estimate.
const TABLE_TIME: Duration = Duration::from_millis(400);

/// GFLOP/s and % of the measured FMA peak, best call of each row's run.
fn peak_table() {
    let threads = rayon::current_num_threads();
    println!("gemm vs FMA peak on {threads} threads (best call of {TABLE_TIME:?}, at least 10)");
    println!("{:<8} {:<22} {:>9} {:>9} {:>7}", "isa", "shape/layout", "GFLOP/s", "peak", "%peak");
    for isa in simd_isas() {
        // A burst of other work during one peak measurement would inflate
        // every ratio: measure before and after, keep the higher.
        let peak_before = fma_peak_gflops(isa, threads);
        let mut rows = Vec::new();
        for shape in SHAPES {
            for layout in [Layout::NN, Layout::NT] {
                let mut p = Problem::new(shape, layout);
                p.run(isa);
                let start = Instant::now();
                let mut best = Duration::MAX;
                for calls in 0.. {
                    if calls >= 10 && start.elapsed() >= TABLE_TIME {
                        break;
                    }
                    let t = Instant::now();
                    p.run(isa);
                    best = best.min(t.elapsed());
                }
                rows.push((p.label(), gemm_flops(p.dims) / best.as_secs_f64() / 1e9));
            }
        }
        let peak = peak_before.max(fma_peak_gflops(isa, threads));
        for (label, gflops) in rows {
            println!("{:<8} {:<22} {:>9.1} {:>9.1} {:>6.1}%", isa.name(), label, gflops, peak, 100.0 * gflops / peak);
        }
    }
}

fn bench_gemm(c: &mut Criterion) {
    let mut group = c.benchmark_group("gemm");
    group.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    for isa in simd_isas() {
        for shape in SHAPES {
            for layout in [Layout::NN, Layout::NT] {
                let mut p = Problem::new(shape, layout);
                group.throughput(Throughput::Elements(gemm_flops(p.dims) as u64));
                group.bench_function(BenchmarkId::new(isa.name(), p.label()), |bch| bch.iter(|| p.run(isa)));
            }
        }
    }
    // The portable path, on the smallest product only (it is ~20x slower).
    let mut p = Problem::new(SHAPES[4], Layout::NN);
    group.throughput(Throughput::Elements(gemm_flops(p.dims) as u64));
    group.bench_function(BenchmarkId::new("scalar", p.label()), |bch| bch.iter(|| p.run(Isa::Scalar)));
    group.finish();
}

fn main() {
    // Criterion runs in test mode (each benchmark once) unless given --bench.
    if std::env::args().any(|a| a == "--bench") {
        peak_table();
    }
    let mut c = Criterion::default().configure_from_args();
    bench_gemm(&mut c);
    c.final_summary();
}
