//! AVX-512F f32 micro-kernel (tuned on Zen4).
//!
//! Tile 16×16: 16 zmm accumulators, one zmm of B and one broadcast of A per
//! row and depth step. Zen4 runs a zmm FMA as two 256-bit halves (one per
//! cycle, latency 4), so 16 independent chains hide the latency with room to
//! spare, and the tile is square, so `m` and `n` of the model shapes
//! (multiples of 16) have no edge tiles. The broadcast folds into the FMA as
//! an embedded-broadcast memory operand.

use std::arch::x86_64::*;

use super::driver::{prefetch_tile, Kernel, Prefetch};
use super::pack;
use crate::Isa;

/// The AVX-512 path. Only [`Avx512::new`] makes one, after checking the CPU,
/// so holding one proves the target features of the kernels are present.
pub(super) struct Avx512 {
    _checked: (),
}

impl Avx512 {
    pub(super) fn new() -> Option<Self> {
        Isa::Avx512.available().then_some(Avx512 { _checked: () })
    }
}

const MR: usize = 16;
const NR: usize = 16;

impl Kernel<f32> for Avx512 {
    const MR: usize = MR;
    const NR: usize = NR;
    const MC: usize = 256;
    const KC: usize = 384;
    const NC: usize = 4096;

    unsafe fn pack_a(&self, src: *const f32, ls: usize, ks: usize, lanes: usize, kc: usize, dst: *mut f32) {
        // SAFETY: forwarded contract; `self` proves AVX-512F + AVX2 (`new`).
        unsafe { pack::pack_f32::<MR>(src, ls, ks, lanes, kc, dst) }
    }

    unsafe fn pack_b(&self, src: *const f32, ls: usize, ks: usize, lanes: usize, kc: usize, dst: *mut f32) {
        // SAFETY: forwarded contract; `self` proves AVX-512F + AVX2 (`new`).
        unsafe { pack::pack_f32::<NR>(src, ls, ks, lanes, kc, dst) }
    }

    unsafe fn tile(&self, mr: usize, nr: usize, kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, alpha: f32, beta: f32, pf: &mut Prefetch) {
        macro_rules! rows {
            ($($r:literal)*) => {
                match mr {
                    // SAFETY: forwarded contract; `self` proves AVX-512F (`new`).
                    $($r => unsafe { tile::<$r>(kc, a, b, c, ldc, nr, alpha, beta, pf) },)*
                    _ => unreachable!("tile rows {mr} > MR"),
                }
            };
        }
        rows!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
    }
}

/// The `R × NR` tile (`R = mr`; edge tiles with fewer rows get a kernel with
/// fewer accumulators rather than multiplying zero rows).
///
/// # Safety
/// The [`Kernel::tile`] contract, and AVX-512F available.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const R: usize>(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, nr: usize, alpha: f32, beta: f32, pf: &mut Prefetch) {
    prefetch_tile(c, ldc, R, NR);
    let mut acc = [_mm512_setzero_ps(); R];
    let (mut a, mut b, mut walk) = (a, b, *pf);
    for _ in 0..kc {
        // SAFETY: a and b walk the packed panels: kc steps of MR and NR floats.
        let bv = unsafe { _mm512_loadu_ps(b) };
        for (i, x) in acc.iter_mut().enumerate() {
            // SAFETY: i < R <= MR floats of the current A step.
            *x = _mm512_fmadd_ps(_mm512_set1_ps(unsafe { *a.add(i) }), bv, *x);
        }
        walk.touch();
        a = a.wrapping_add(MR);
        b = b.wrapping_add(NR);
    }
    *pf = walk;

    let (va, vb) = (_mm512_set1_ps(alpha), _mm512_set1_ps(beta));
    for (i, &x) in acc.iter().enumerate() {
        let ci = c.wrapping_add(i * ldc);
        if nr == NR {
            // SAFETY: row i < mr of the tile has NR writable columns (caller).
            unsafe {
                let y = if beta == 0.0 { _mm512_mul_ps(x, va) } else { _mm512_fmadd_ps(x, va, _mm512_mul_ps(_mm512_loadu_ps(ci), vb)) };
                _mm512_storeu_ps(ci, y);
            }
        } else {
            // Right edge: only the first nr columns exist.
            let mask: __mmask16 = (1 << nr) - 1;
            // SAFETY: masked lanes j < nr are inside row i of the tile;
            // masked-off lanes are neither read nor written (no fault).
            unsafe {
                let y = if beta == 0.0 {
                    _mm512_mul_ps(x, va)
                } else {
                    _mm512_fmadd_ps(x, va, _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, ci), vb))
                };
                _mm512_mask_storeu_ps(ci, mask, y);
            }
        }
    }
}
