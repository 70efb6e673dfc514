//! Helpers for the kernels' unit tests: a seeded generator, the lengths every
//! kernel is run at, the special values, and tolerant comparisons.

use crate::Isa;

/// Empty, shorter than a vector, around the 8- and 16-lane widths and the
/// 4-vector unrolled block, and long enough to use every loop.
pub(crate) const SIZES: &[usize] = &[0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 127, 1000, 4099];

/// Inputs where transcendental kernels tend to go wrong.
pub(crate) const SPECIALS: &[f32] = &[
    0.0,
    -0.0,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::NAN,
    f32::MAX,
    f32::MIN,
    f32::MIN_POSITIVE,
    -f32::MIN_POSITIVE,
    1e-40,
    -1e-40,
    1.4e-45,
    1e-30,
    1.0,
    -1.0,
    0.625,
    -0.625,
    88.72,
    88.73,
    89.5,
    -87.3,
    -103.0,
    -104.5,
    -150.0,
    14.5,
    -14.5,
    15.5,
    -15.5,
    1e30,
    -1e30,
];

/// The SIMD paths this CPU runs; the scalar path is their reference.
pub(crate) fn simd_isas() -> Vec<Isa> {
    Isa::all_available().into_iter().filter(|&i| i != Isa::Scalar).collect()
}

/// SplitMix64: tiny, seeded, so any failure reproduces.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    pub(crate) fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(crate) fn vec_f32(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo as f64, hi as f64) as f32).collect()
    }

    pub(crate) fn vec_f64(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
}

/// Distance between two f32 in units in the last place: 0 when both are
/// NaN (or equal, ±0 included), u32::MAX when only one is NaN.
pub(crate) fn ulps(a: f32, b: f32) -> u32 {
    if a.is_nan() || b.is_nan() {
        return if a.is_nan() && b.is_nan() { 0 } else { u32::MAX };
    }
    // Map the bit patterns onto a line where adjacent floats differ by 1.
    let line = |x: f32| {
        let bits = x.to_bits();
        if bits >> 31 == 1 {
            -((bits & 0x7FFF_FFFF) as i64)
        } else {
            bits as i64
        }
    };
    (line(a) - line(b)).unsigned_abs().min(u32::MAX as u64) as u32
}

/// Asserts |got − want| ≤ abs + rel·|want| elementwise; NaN must meet NaN
/// and infinities must be equal.
pub(crate) fn assert_close(got: &[f32], want: &[f32], abs: f32, rel: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = if w.is_nan() || g.is_nan() {
            w.is_nan() && g.is_nan()
        } else if w.is_infinite() || g.is_infinite() {
            g == w
        } else {
            (g - w).abs() <= abs + rel * w.abs()
        };
        assert!(ok, "{what}: element {i} of {}: got {g:e}, want {w:e}", got.len());
    }
}
