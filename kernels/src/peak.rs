//! Measured FMA peak: the denominator of every "% of peak" we report.
//!
//! Each thread runs 12 independent FMA chains (more than latency × FMA pipes
//! on Zen3/Zen4: 4 cycles × 2 ymm pipes = 8, or 4 × 1 zmm = 4), so the loop
//! is bound by FMA throughput alone. All threads start together behind a
//! barrier; the best of a few short rounds is kept, so a burst of other work
//! on the machine lowers the result less.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use crate::Isa;

/// Independent accumulator chains per thread.
const CHAINS: usize = 12;
/// Length of one timed round; the best of `ROUNDS` is reported (~150 ms total).
const ROUND: Duration = Duration::from_millis(50);
const ROUNDS: usize = 3;

/// GFLOP/s of an FMA-throughput loop on `threads` threads (2 flops per FMA
/// lane). The scalar path times `x = x·m + a` chains (2 flops each), as the
/// scalar kernels compile (whatever the compiler makes of them on baseline
/// x86-64).
///
/// Panics if the CPU cannot run `isa`.
pub fn fma_peak_gflops(isa: Isa, threads: usize) -> f64 {
    assert!(isa.available(), "fma_peak_gflops: this CPU cannot run the {} path", isa.name());
    let threads = threads.max(1);
    // Calibrate the iteration count to one round on one thread.
    let probe = 1 << 16;
    let t = Instant::now();
    black_box(chains(isa, probe));
    let per_iter = t.elapsed().as_secs_f64() / probe as f64;
    let iters = ((ROUND.as_secs_f64() / per_iter) as u64).max(probe);

    let flops = threads as f64 * iters as f64 * flops_per_iter(isa);
    (0..ROUNDS)
        .map(|_| {
            let barrier = Barrier::new(threads);
            let wall = std::thread::scope(|s| {
                let workers: Vec<_> = (0..threads)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            let t = Instant::now();
                            black_box(chains(isa, iters));
                            t.elapsed()
                        })
                    })
                    .collect();
                workers.into_iter().map(|w| w.join().expect("peak worker panicked")).max().unwrap_or_default()
            });
            flops / wall.as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

fn flops_per_iter(isa: Isa) -> f64 {
    let lanes = match isa {
        Isa::Scalar => 1,
        Isa::Avx2Fma => 8,
        Isa::Avx512 => 16,
    };
    (2 * CHAINS * lanes) as f64
}

/// Runs `iters` rounds of `CHAINS` FMAs on `isa`; returns a sum so the work is live.
fn chains(isa: Isa, iters: u64) -> f32 {
    match isa {
        Isa::Scalar => chains_scalar(iters),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `fma_peak_gflops` checked that the CPU runs this path.
        Isa::Avx2Fma => unsafe { x86::chains_avx2(iters) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx512 => unsafe { x86::chains_avx512(iters) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("only the scalar path exists off x86-64"),
    }
}

/// `x ← x·m + a` stays near 1: no overflow, no denormals. The constants go
/// through `black_box` so the compiler cannot fold the chains.
const M: f32 = 0.999_999;
const A: f32 = 1e-6;

fn chains_scalar(iters: u64) -> f32 {
    let (m, a) = (black_box(M), black_box(A));
    let mut acc = [black_box(1.0f32); CHAINS];
    for _ in 0..iters {
        for x in &mut acc {
            *x = *x * m + a;
        }
    }
    acc.iter().sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{black_box, A, CHAINS, M};

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn chains_avx2(iters: u64) -> f32 {
        let (m, a) = (_mm256_set1_ps(black_box(M)), _mm256_set1_ps(black_box(A)));
        let mut acc = [_mm256_set1_ps(black_box(1.0)); CHAINS];
        for _ in 0..iters {
            for x in &mut acc {
                *x = _mm256_fmadd_ps(*x, m, a);
            }
        }
        let mut lanes = [0f32; 8];
        let sum = acc.iter().fold(_mm256_setzero_ps(), |s, &x| _mm256_add_ps(s, x));
        // SAFETY: `lanes` holds 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
        lanes.iter().sum()
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn chains_avx512(iters: u64) -> f32 {
        let (m, a) = (_mm512_set1_ps(black_box(M)), _mm512_set1_ps(black_box(A)));
        let mut acc = [_mm512_set1_ps(black_box(1.0)); CHAINS];
        for _ in 0..iters {
            for x in &mut acc {
                *x = _mm512_fmadd_ps(*x, m, a);
            }
        }
        _mm512_reduce_add_ps(acc.iter().fold(_mm512_setzero_ps(), |s, &x| _mm512_add_ps(s, x)))
    }
}
