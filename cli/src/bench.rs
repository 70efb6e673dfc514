//! `kogner bench` / `kogner info`: formatting around `kogner_kernels::bench`.

use std::time::Duration;

use anyhow::{bail, Result};

use crate::emit;
use clap::Args;
use kogner_kernels::bench::{measure_gemm, measure_vector, tracked_gemm_shapes, tracked_vector_kernels, BLayout, Measurement};
use kogner_kernels::peak::fma_peak_gflops;
use kogner_kernels::Isa;
use serde_json::json;

#[derive(Args)]
pub struct BenchArgs {
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
    /// ISA path(s): best, all, avx512, avx2, scalar.
    #[arg(long, default_value = "best")]
    isa: String,
    /// Threads for GEMM (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Which kernels: all, gemm, vector.
    #[arg(long, default_value = "all")]
    only: String,
    /// Minimum seconds per timing round (3 rounds, best kept).
    #[arg(long, default_value_t = 0.3)]
    min_time: f64,
}

fn isas(choice: &str) -> Result<Vec<Isa>> {
    Ok(match choice {
        "best" => vec![Isa::active()],
        "all" => Isa::all_available().into_iter().filter(|&i| i != Isa::Scalar).collect(),
        name => match Isa::from_name(name) {
            Some(i) if i.available() => vec![i],
            Some(i) => bail!("--isa {}: this CPU cannot run that path", i.name()),
            None => bail!("--isa {name}: expected best, all, avx512, avx2 or scalar"),
        },
    })
}

pub fn run(args: BenchArgs) -> Result<()> {
    if !(args.min_time > 0.0 && args.min_time.is_finite()) {
        bail!("--min-time must be a positive number of seconds");
    }
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    if threads == 0 {
        bail!("--threads must be at least 1");
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    let min_time = Duration::from_secs_f64(args.min_time);
    let (gemm, vector) = match args.only.as_str() {
        "all" => (true, true),
        "gemm" => (true, false),
        "vector" => (false, true),
        o => bail!("--only {o}: expected all, gemm or vector"),
    };
    let isas = isas(&args.isa)?;
    if gemm {
        if !args.json {
            emit(&format!("{:<12} {:>22} {:>7} {:>7} {:>10} {:>10} {:>8}", "kernel", "shape (b×m×n×k)", "isa", "threads", "GFLOP/s", "peak", "% peak"))?;
        }
        for &isa in &isas {
            let peak = fma_peak_gflops(isa, threads);
            for dims in tracked_gemm_shapes() {
                for layout in [BLayout::N, BLayout::T] {
                    let m = pool.install(|| measure_gemm(isa, dims, layout, min_time));
                    print_gemm(&m, peak, args.json)?;
                }
            }
        }
    }
    if vector {
        if !args.json {
            emit(&format!("\n{:<12} {:>22} {:>7} {:>7} {:>10} {:>12}", "kernel", "shape (rows×cols)", "isa", "threads", "GB/s", "vs scalar"))?;
        }
        for &isa in &isas {
            for (kernel, rows, cols) in tracked_vector_kernels() {
                let Some(m) = measure_vector(isa, kernel, rows, cols, min_time) else { continue };
                let scalar = measure_vector(Isa::Scalar, kernel, rows, cols, min_time).map(|s| s.seconds);
                print_vector(&m, scalar, args.json)?;
            }
        }
    }
    Ok(())
}

fn shape(m: &Measurement) -> String {
    if m.k == 0 {
        format!("{}×{}", m.m, m.n)
    } else {
        format!("{}×{}×{}×{}", m.batch, m.m, m.n, m.k)
    }
}

fn print_gemm(m: &Measurement, peak: f64, json: bool) -> Result<()> {
    let pct = 100.0 * m.gflops() / peak;
    if json {
        emit(
            &json!({"kernel": m.kernel, "m": m.m, "n": m.n, "k": m.k, "batch": m.batch, "threads": m.threads,
                   "isa": m.isa.name(), "gflops": round(m.gflops()), "peak_gflops": round(peak), "pct_peak": round(pct),
                   "seconds": m.seconds})
            .to_string(),
        )
    } else {
        emit(&format!("{:<12} {:>22} {:>7} {:>7} {:>10.1} {:>10.1} {:>7.1}%", m.kernel, shape(m), m.isa.name(), m.threads, m.gflops(), peak, pct))
    }
}

fn print_vector(m: &Measurement, scalar_seconds: Option<f64>, json: bool) -> Result<()> {
    let speedup = scalar_seconds.map(|s| s / m.seconds);
    if json {
        emit(
            &json!({"kernel": m.kernel, "m": m.m, "n": m.n, "k": 0, "batch": 1, "threads": m.threads, "isa": m.isa.name(),
                   "gbps": round(m.gbps()), "speedup_vs_scalar": speedup.map(round), "seconds": m.seconds})
            .to_string(),
        )
    } else {
        let s = speedup.map(|s| format!("{s:.1}×")).unwrap_or_default();
        emit(&format!("{:<12} {:>22} {:>7} {:>7} {:>10.1} {:>12}", m.kernel, shape(m), m.isa.name(), m.threads, m.gbps(), s))
    }
}

fn round(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

pub fn info() -> Result<()> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    emit(&format!("isa paths available: {}", Isa::all_available().iter().map(|i| i.name()).collect::<Vec<_>>().join(", ")))?;
    emit(&format!("active isa: {} (override with KOGNER_ISA=scalar|avx2|avx512)", Isa::active().name()))?;
    emit(&format!("threads: {threads} (rayon; override with RAYON_NUM_THREADS)"))?;
    for isa in Isa::all_available() {
        emit(&format!("fma peak {:>7}: {:.1} GFLOP/s on {threads} threads", isa.name(), fma_peak_gflops(isa, threads)))?;
    }
    Ok(())
}
