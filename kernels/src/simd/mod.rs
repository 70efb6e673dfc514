//! f32 SIMD building blocks shared by the vector kernels.
//!
//! [`avx512`] (zmm, 16 lanes) and [`avx2`] (ymm, 8 lanes) export the same
//! names: the vector type `V` and its lane mask `M`, `LANES`, full and
//! partial loads and stores, lane-wise arithmetic and comparisons, and —
//! written once in `common.rs` on top of those — the vectorised math (exp,
//! ln, tanh, sigmoid, GELU) and the loop drivers. A kernel file writes its
//! SIMD code once, as a macro body that glob-imports one of the two modules,
//! and instantiates it for both.
//!
//! Everything in the ISA modules is a safe `#[target_feature]` function: free
//! to call from code compiled with the same features, `unsafe` to call from
//! anywhere else. The kernels' generic entry points make that call only on
//! an ISA returned by [`path`], which has checked that the CPU runs it.

use crate::{Float, Isa};

#[cfg(target_arch = "x86_64")]
#[macro_use]
mod common;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
#[cfg(test)]
pub(crate) mod testing;

/// The SIMD path to take for slices of `T` on `isa`: `None` means the
/// generic scalar code (asked for, `T` is not f32, or not x86-64).
///
/// Panics if the CPU cannot run `isa`: the `*_with` functions take the ISA
/// from their caller, and executing AVX-512 on a CPU without it is undefined
/// behaviour, so this check is what makes their `unsafe` SIMD calls sound.
pub(crate) fn path<T: Float>(isa: Isa) -> Option<Isa> {
    assert!(isa.available(), "ISA path `{}` is not available on this CPU", isa.name());
    let is_f32 = T::as_f32(&[]).is_some();
    (cfg!(target_arch = "x86_64") && is_f32 && isa != Isa::Scalar).then_some(isa)
}

/// `s` viewed as f32, once [`path`] has established that `T` is f32.
pub(crate) fn f32s<T: Float>(s: &[T]) -> &[f32] {
    T::as_f32(s).expect("SIMD path taken for a non-f32 element type")
}

/// Mutable twin of [`f32s`].
pub(crate) fn f32s_mut<T: Float>(s: &mut [T]) -> &mut [f32] {
    T::as_f32_mut(s).expect("SIMD path taken for a non-f32 element type")
}
