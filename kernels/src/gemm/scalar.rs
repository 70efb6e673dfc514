//! Portable micro-kernel, generic over the element type: the f64 path (used
//! by gradient checks) and the f32 fallback without SIMD.

use super::driver::{APanel, BPanel, Kernel, Prefetch};
use super::pack;
use crate::Float;

/// 4×4 tile: 16 accumulators fit the 16 SSE registers of baseline x86-64
/// (two f64 or four f32 lanes each, if the compiler vectorises).
pub(super) struct Scalar;

const MR: usize = 4;
const NR: usize = 4;

impl<T: Float> Kernel<T> for Scalar {
    const MR: usize = MR;
    const NR: usize = NR;
    const MC: usize = 64;
    const KC: usize = 256;
    const NC: usize = 1024;
    const B_IN_PLACE: bool = false;

    unsafe fn pack_a(&self, src: *const T, ls: usize, ks: usize, lanes: usize, kc: usize, dst: *mut T) {
        // SAFETY: forwarded contract (see `Kernel::pack_a`).
        unsafe { pack::pack::<T, MR>(src, ls, ks, lanes, kc, dst) }
    }

    unsafe fn pack_b(&self, src: *const T, ls: usize, ks: usize, lanes: usize, kc: usize, dst: *mut T) {
        // SAFETY: forwarded contract (see `Kernel::pack_b`).
        unsafe { pack::pack::<T, NR>(src, ls, ks, lanes, kc, dst) }
    }

    unsafe fn tile(
        &self,
        mr: usize,
        nr: usize,
        kc: usize,
        a: APanel<T>,
        b: BPanel<T>,
        c: *mut T,
        ldc: usize,
        alpha: T,
        beta: T,
        _pf: &mut Prefetch,
    ) {
        let mut acc = [[T::ZERO; NR]; MR];
        for p in 0..kc {
            // Rows past mr (columns past nr only exist in a packed panel)
            // are zero / ignored: read only what the panel holds.
            let mut ap = [T::ZERO; MR];
            for (i, x) in ap.iter_mut().enumerate().take(mr) {
                // SAFETY: element (i, p) of the A panel, i < mr, p < kc.
                *x = unsafe { *a.ptr.add(i * a.rs + p * a.cs) };
            }
            // SAFETY: depth p < kc of the B panel has NR readable elements.
            let bp = unsafe { &*b.ptr.add(p * b.rs).cast::<[T; NR]>() };
            for (row, &ai) in acc.iter_mut().zip(&ap) {
                for (x, &bj) in row.iter_mut().zip(bp) {
                    *x += ai * bj;
                }
            }
        }
        for (i, row) in acc.iter().enumerate().take(mr) {
            for (j, &x) in row.iter().enumerate().take(nr) {
                // SAFETY: (i, j) is inside the mr × nr tile of C (caller).
                let cij = unsafe { &mut *c.add(i * ldc + j) };
                *cij = if beta == T::ZERO { alpha * x } else { alpha * x + beta * *cij };
            }
        }
    }
}
