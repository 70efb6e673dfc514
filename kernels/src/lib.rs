//! Raw compute on slices. Nothing here knows about shapes beyond what a
//! kernel needs; `kogner-tensor` maps tensor ops onto these functions.
//!
//! Every kernel has a scalar twin (generic over [`Float`], so it also runs in
//! f64 for gradient checks) and f32 SIMD paths for AVX-512F and AVX2+FMA,
//! chosen at run time by [`Isa::active`]. Tests compare each SIMD path with
//! the scalar one on random, odd and tiny sizes.

pub mod alloc;
pub mod bench;
pub mod convert;
pub mod float;
pub mod gemm;
pub mod isa;
pub mod layer_norm;
pub mod mmap;
pub mod peak;
pub mod reduce;
mod simd;
pub mod softmax;
pub mod unary;

pub use float::Float;
pub use isa::Isa;
