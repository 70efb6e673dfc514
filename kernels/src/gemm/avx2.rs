//! AVX2 + FMA f32 micro-kernel (tuned for Zen3, also run on Zen4).
//!
//! Tile 6×16: 12 ymm accumulators + 2 ymm of B + 1 broadcast of A = 15 of the
//! 16 ymm registers. Two FMA pipes with latency 4 need 8 independent chains;
//! 12 leave slack. Per depth step: 2 loads + 6 broadcasts feed 12 FMAs, within
//! the two loads per cycle.

use std::arch::x86_64::*;

use super::driver::{prefetch_tile, APanel, BPanel, Kernel, Prefetch};
use super::pack;
use crate::Isa;

/// The AVX2+FMA path. Only [`Avx2::new`] makes one, after checking the CPU,
/// so holding one proves the target features of the kernels are present.
pub(super) struct Avx2 {
    _checked: (),
}

impl Avx2 {
    pub(super) fn new() -> Option<Self> {
        Isa::Avx2Fma.available().then_some(Avx2 { _checked: () })
    }
}

const MR: usize = 6;
/// ymm vectors per tile row.
const NV: usize = 2;
const NR: usize = 8 * NV;

impl Kernel<f32> for Avx2 {
    const MR: usize = MR;
    const NR: usize = NR;
    const MC: usize = 144;
    const KC: usize = 384;
    const NC: usize = 4096;
    // 16 columns are one line of each B row, and rows a power-of-two stride
    // apart share few L1 sets: a packed panel reads faster (3-7% measured on
    // 64×64×512).
    const B_IN_PLACE: bool = false;

    unsafe fn pack_a(&self, src: *const f32, ls: usize, ks: usize, lanes: usize, kc: usize, dst: *mut f32) {
        // SAFETY: forwarded contract; `self` proves AVX2 (`new`).
        unsafe { pack::pack_f32::<MR>(src, ls, ks, lanes, kc, dst) }
    }

    unsafe fn pack_b(&self, src: *const f32, ls: usize, ks: usize, lanes: usize, kc: usize, dst: *mut f32) {
        // SAFETY: forwarded contract; `self` proves AVX2 (`new`).
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
                    // SAFETY: forwarded contract; `self` proves AVX2 + FMA (`new`).
                    $(($r, true) => unsafe { tile::<$r, true>(kc, a, b, c, ldc, nr, alpha, beta, pf) },
                    ($r, false) => unsafe { tile::<$r, false>(kc, a, b, c, ldc, nr, alpha, beta, pf) },)*
                    _ => unreachable!("tile rows {mr} > MR"),
                }
            };
        }
        rows!(1 2 3 4 5 6)
    }
}

/// The `R × NR` tile (`R = mr`; edge tiles with fewer rows get a kernel with
/// fewer accumulators rather than multiplying zero rows). `PACKED`: A is a
/// packed panel, so its strides are the constants `(1, MR)` and the
/// broadcasts use immediate offsets from one pointer.
///
/// # Safety
/// The [`Kernel::tile`] contract, and AVX2 + FMA available.
#[target_feature(enable = "avx2,fma")]
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
    let mut acc = [[_mm256_setzero_ps(); NV]; R];
    let mut walk = *pf;
    // Depth step p: 2 loads of B, R broadcasts of A, 2R FMAs.
    macro_rules! step {
        ($p:expr) => {{
            let p = $p;
            let mut bv = [_mm256_setzero_ps(); NV];
            for (v, x) in bv.iter_mut().enumerate() {
                // SAFETY: depth p < kc of the B panel has NR readable floats.
                *x = unsafe { _mm256_loadu_ps(b.ptr.add(p * b.rs + 8 * v)) };
            }
            for (row, acc) in rows.iter().zip(&mut acc) {
                // SAFETY: element (i, p) of the A panel, i < R <= mr.
                let ai = _mm256_set1_ps(unsafe { *row.add(p * a_cs) });
                for (x, &bx) in acc.iter_mut().zip(&bv) {
                    *x = _mm256_fmadd_ps(ai, bx, *x);
                }
            }
        }};
    }
    if PACKED {
        // A step is only 6 cycles of FMAs and the core dispatches 6 ops a
        // cycle: unroll by two and prefetch once per pair to keep the
        // overhead off the FMA pipes' critical path (one line per 12 cycles
        // is still ~19 GB/s).
        for p in (0..kc - kc % 2).step_by(2) {
            step!(p);
            step!(p + 1);
            walk.touch();
        }
        if kc % 2 == 1 {
            step!(kc - 1);
        }
    } else {
        // Unrolled, or with the prefetch after the step, the compiler hoists
        // the strided broadcasts of the next step and spills accumulators
        // (16 ymm registers only).
        for p in 0..kc {
            if p % 2 == 0 {
                walk.touch();
            }
            step!(p);
        }
    }
    *pf = walk;

    let (va, vb) = (_mm256_set1_ps(alpha), _mm256_set1_ps(beta));
    for (i, row) in acc.iter().enumerate() {
        let ci = c.wrapping_add(i * ldc);
        if nr == NR {
            for (v, &x) in row.iter().enumerate() {
                let cv = ci.wrapping_add(8 * v);
                // SAFETY: row i < mr of the tile has NR writable columns (caller).
                unsafe {
                    let y = if beta == 0.0 {
                        _mm256_mul_ps(x, va)
                    } else {
                        _mm256_fmadd_ps(x, va, _mm256_mul_ps(_mm256_loadu_ps(cv), vb))
                    };
                    _mm256_storeu_ps(cv, y);
                }
            }
        } else {
            // Right edge: spill the row and write its first nr columns
            // (AVX2 masked stores are slow on AMD; edges are rare).
            let mut tmp = [0f32; NR];
            for (v, &x) in row.iter().enumerate() {
                // SAFETY: tmp holds NR = 8·NV floats.
                unsafe { _mm256_storeu_ps(tmp.as_mut_ptr().add(8 * v), x) };
            }
            for (j, &x) in tmp.iter().enumerate().take(nr) {
                // SAFETY: column j < nr of row i < mr is inside the tile (caller).
                let cij = unsafe { &mut *ci.add(j) };
                *cij = if beta == 0.0 { alpha * x } else { alpha * x + beta * *cij };
            }
        }
    }
}
