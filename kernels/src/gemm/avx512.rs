//! AVX-512F f32 micro-kernel (tuned on Zen4).
//!
//! Tile 8×32: 16 zmm accumulators; per depth step 2 zmm loads of B and 8
//! broadcasts of A feed 16 FMAs. Zen4 runs a zmm FMA as two 256-bit halves
//! (one per cycle, latency 4), so 16 independent chains hide the latency
//! with room to spare. Eight rows keep an unpacked A within reach: its rows
//! are eight base registers (see [`APanel`]).

use std::arch::x86_64::*;

use super::driver::{prefetch_tile, APanel, BPanel, Kernel, Prefetch};
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

const MR: usize = 8;
/// zmm vectors per tile row.
const NV: usize = 2;
const NR: usize = 16 * NV;

impl Kernel<f32> for Avx512 {
    const MR: usize = MR;
    const NR: usize = NR;
    const MC: usize = 256;
    const KC: usize = 384;
    const NC: usize = 4096;
    // 32 columns are two lines of each B row: reading B in place is as fast
    // as a packed panel, without the packing (~6% on 64×64×512 in cache).
    const B_IN_PLACE: bool = true;

    unsafe fn pack_a(&self, src: *const f32, ls: usize, ks: usize, lanes: usize, kc: usize, dst: *mut f32) {
        // SAFETY: forwarded contract; `self` proves AVX-512F + AVX2 (`new`).
        unsafe { pack::pack_f32::<MR>(src, ls, ks, lanes, kc, dst) }
    }

    unsafe fn pack_b(&self, src: *const f32, ls: usize, ks: usize, lanes: usize, kc: usize, dst: *mut f32) {
        // SAFETY: forwarded contract; `self` proves AVX-512F + AVX2 (`new`).
        unsafe { pack::pack_f32::<NR>(src, ls, ks, lanes, kc, dst) }
    }

    unsafe fn tile(
        &self,
        mr: usize,
        nr: usize,
        kc: usize,
        a: APanel<f32>,
        b: BPanel<f32>,
        c: *mut f32,
        ldc: usize,
        alpha: f32,
        beta: f32,
        pf: &mut Prefetch,
    ) {
        let packed = a.is_packed(MR);
        macro_rules! rows {
            ($($r:literal)*) => {
                match (mr, packed) {
                    // SAFETY: forwarded contract; `self` proves AVX-512F (`new`).
                    $(($r, true) => unsafe { tile::<$r, true>(kc, a, b, c, ldc, nr, alpha, beta, pf) },
                    ($r, false) => unsafe { tile::<$r, false>(kc, a, b, c, ldc, nr, alpha, beta, pf) },)*
                    _ => unreachable!("tile rows {mr} > MR"),
                }
            };
        }
        rows!(1 2 3 4 5 6 7 8)
    }
}

/// The `R × NR` tile (`R = mr`; edge tiles with fewer rows get a kernel with
/// fewer accumulators rather than multiplying zero rows). `PACKED`: A is a
/// packed panel, so its strides are the constants `(1, MR)` and the
/// broadcasts use immediate offsets from one pointer.
///
/// # Safety
/// The [`Kernel::tile`] contract, and AVX-512F available.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const R: usize, const PACKED: bool>(
    kc: usize,
    a: APanel<f32>,
    b: BPanel<f32>,
    c: *mut f32,
    ldc: usize,
    nr: usize,
    alpha: f32,
    beta: f32,
    pf: &mut Prefetch,
) {
    prefetch_tile(c, ldc, R, NR);
    let (a_rs, a_cs) = if PACKED { (1, MR) } else { (a.rs, a.cs) };
    let rows: [*const f32; R] = std::array::from_fn(|i| a.ptr.wrapping_add(i * a_rs));
    let mut acc = [[_mm512_setzero_ps(); NV]; R];
    let mut walk = *pf;
    for p in 0..kc {
        let mut bv = [_mm512_setzero_ps(); NV];
        for (v, x) in bv.iter_mut().enumerate() {
            // SAFETY: depth p < kc of the B panel has NR readable floats.
            *x = unsafe { _mm512_loadu_ps(b.ptr.add(p * b.rs + 16 * v)) };
        }
        for (row, acc) in rows.iter().zip(&mut acc) {
            // SAFETY: element (i, p) of the A panel, i < R <= mr.
            let ai = _mm512_set1_ps(unsafe { *row.add(p * a_cs) });
            for (x, &bx) in acc.iter_mut().zip(&bv) {
                *x = _mm512_fmadd_ps(ai, bx, *x);
            }
        }
        walk.touch();
    }
    *pf = walk;

    let (va, vb) = (_mm512_set1_ps(alpha), _mm512_set1_ps(beta));
    for (i, row) in acc.iter().enumerate() {
        for (v, &x) in row.iter().enumerate() {
            let cv = c.wrapping_add(i * ldc + 16 * v);
            // Right edge: only the first nr columns exist.
            let mask: __mmask16 = if nr >= 16 * (v + 1) { !0 } else { (1u16 << nr.saturating_sub(16 * v)) - 1 };
            // SAFETY: masked lanes (columns < nr of row i < mr) are inside the
            // tile; masked-off lanes are neither read nor written (no fault).
            unsafe {
                let y = if beta == 0.0 {
                    _mm512_mul_ps(x, va)
                } else {
                    _mm512_fmadd_ps(x, va, _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, cv), vb))
                };
                _mm512_mask_storeu_ps(cv, mask, y);
            }
        }
    }
}
