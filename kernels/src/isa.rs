//! Which instruction-set path the kernels take, detected once at run time.
//!
//! `KOGNER_ISA=scalar|avx2|avx512` forces a lower path (never a higher one
//! than the CPU has): useful to benchmark the AVX2 path on an AVX-512 machine.

use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    Scalar,
    /// AVX2 + FMA (e.g. AMD Zen3).
    Avx2Fma,
    /// AVX-512F (+ AVX2/FMA), e.g. AMD Zen4.
    Avx512,
}

impl Isa {
    /// Short name used in benchmark output: `scalar`, `avx2`, `avx512`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2Fma => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    pub fn from_name(s: &str) -> Option<Isa> {
        match s.to_ascii_lowercase().as_str() {
            "scalar" => Some(Isa::Scalar),
            "avx2" | "avx2fma" => Some(Isa::Avx2Fma),
            "avx512" | "avx512f" => Some(Isa::Avx512),
            _ => None,
        }
    }

    /// Whether this CPU can run the path.
    pub fn available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Every path this CPU can run, lowest first (tests loop over these).
    pub fn all_available() -> Vec<Isa> {
        [Isa::Scalar, Isa::Avx2Fma, Isa::Avx512].into_iter().filter(|i| i.available()).collect()
    }

    /// The best available path, or the one forced by `KOGNER_ISA` if it is available.
    pub fn active() -> Isa {
        static ACTIVE: OnceLock<Isa> = OnceLock::new();
        *ACTIVE.get_or_init(|| {
            let best = *Isa::all_available().last().unwrap();
            match std::env::var("KOGNER_ISA").ok().and_then(|s| Isa::from_name(&s)) {
                Some(forced) if forced <= best => forced,
                _ => best,
            }
        })
    }
}
