//! Measured FMA peak: the denominator of every "% of peak" we report.

use crate::Isa;

/// GFLOP/s of an FMA-throughput loop on `threads` threads (2 flops per FMA lane).
pub fn fma_peak_gflops(isa: Isa, threads: usize) -> f64 {
    let _ = (isa, threads);
    f64::NAN
}
