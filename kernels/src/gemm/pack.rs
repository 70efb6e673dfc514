//! Packing: copies a block of A or B, read through its strides, into the
//! contiguous panels the micro-kernels stream with unit stride.
//!
//! A block of `lanes × kc` elements (lane `t`, depth `p` at
//! `src + t * ls + p * ks`; lanes are rows of A or columns of B) becomes
//! `ceil(lanes / W)` panels of width `W`: panel `q` holds lanes
//! `q·W .. q·W + W`, depth-major, at `dst[q·W·kc + p·W + (t - q·W)]`. Lanes
//! past `lanes` are zero, so edge tiles multiply zeros.
//!
//! Three cases, by which stride is 1:
//! - lanes contiguous (`ls == 1`: B row-major, or A transposed): each depth
//!   step is a `W`-element copy;
//! - depth contiguous (`ks == 1`: A row-major, or B transposed as in `x·Wᵀ`):
//!   a transpose; the f32 path does it 8×8 in AVX registers;
//! - neither: an element-wise gather.

use crate::Float;

/// Packs a block into `W`-lane panels (layout in the module docs).
///
/// # Safety
/// Every element `src + t * ls + p * ks` (`t < lanes`, `p < kc`) must be
/// readable and `dst` valid for `lanes.next_multiple_of(W) * kc` writes.
pub(super) unsafe fn pack<T: Float, const W: usize>(src: *const T, ls: usize, ks: usize, lanes: usize, kc: usize, dst: *mut T) {
    let gathered = if ls == 1 {
        let full = lanes / W;
        // SAFETY: forwarded contract, for the first `full` panels.
        unsafe { copy_panels::<T, W>(src, ks, full, kc, dst) };
        full..lanes.div_ceil(W)
    } else {
        0..lanes.div_ceil(W)
    };
    for q in gathered {
        let t0 = q * W;
        // SAFETY: lanes t0.. of the block are readable (caller) and panel q
        // occupies dst[q·W·kc .. (q+1)·W·kc], inside the caller's buffer.
        unsafe { pack_panel::<T, W>(src.add(t0 * ls), ls, ks, W.min(lanes - t0), kc, dst.add(q * W * kc)) };
    }
}

/// The first `panels` full panels of a lane-contiguous block (`ls == 1`):
/// a row of `panels · W` elements per depth step, read in order (one
/// sequential stream per row, whatever the row stride) and scattered to the
/// panels `W` elements at a time.
///
/// # Safety
/// As [`pack`], for `panels · W` lanes.
unsafe fn copy_panels<T: Float, const W: usize>(src: *const T, ks: usize, panels: usize, kc: usize, dst: *mut T) {
    for p in 0..kc {
        for q in 0..panels {
            // SAFETY: lanes q·W..q·W+W of depth p are contiguous and readable
            // (caller); row p of panel q lies in the caller's buffer, which
            // cannot overlap the source.
            unsafe { std::ptr::copy_nonoverlapping(src.add(p * ks + q * W), dst.add(q * W * kc + p * W), W) };
        }
    }
}

/// Packs `w <= W` lanes into one panel, zero-filling lanes `w..W`.
///
/// # Safety
/// As [`pack`], for `w` lanes and one panel (`W * kc` writes).
unsafe fn pack_panel<T: Float, const W: usize>(src: *const T, ls: usize, ks: usize, w: usize, kc: usize, dst: *mut T) {
    for p in 0..kc {
        for t in 0..W {
            // SAFETY: t < w lanes and p < kc are readable; dst index < W * kc.
            unsafe { *dst.add(p * W + t) = if t < w { *src.add(t * ls + p * ks) } else { T::ZERO } };
        }
    }
}

/// As [`pack`] for f32, with depth-contiguous full panels transposed 8×8 in
/// AVX registers: that case (A row-major, the common `x·W` and `x·Wᵀ`
/// products; B in `x·Wᵀ`) would otherwise be a scalar gather with one store
/// per element.
///
/// # Safety
/// As [`pack`], and the CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn pack_f32<const W: usize>(src: *const f32, ls: usize, ks: usize, lanes: usize, kc: usize, dst: *mut f32) {
    if ks != 1 {
        // SAFETY: forwarded contract.
        return unsafe { pack::<f32, W>(src, ls, ks, lanes, kc, dst) };
    }
    for (q, t0) in (0..lanes).step_by(W).enumerate() {
        let w = W.min(lanes - t0);
        // SAFETY: as in `pack`: lanes t0..t0+w are readable, panel q is
        // inside the caller's buffer; AVX2 is available (caller).
        unsafe {
            let (s, d) = (src.add(t0 * ls), dst.add(q * W * kc));
            if w == W {
                transpose_panel::<W>(s, ls, kc, d);
            } else {
                pack_panel::<f32, W>(s, ls, 1, w, kc, d);
            }
        }
    }
}

/// One full panel of `W` lanes whose depth is contiguous: lane `t` is the
/// row `src + t * ls .. + kc`. Lanes go in groups of 8 and depth in steps of
/// 8, each 8×8 block transposed in registers.
///
/// # Safety
/// Rows `src + t * ls .. + kc` for `t < W` readable, `dst` valid for
/// `W * kc` writes, AVX2 available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transpose_panel<const W: usize>(src: *const f32, ls: usize, kc: usize, dst: *mut f32) {
    use std::arch::x86_64::*;
    let kc8 = kc - kc % 8;
    for p in (0..kc8).step_by(8) {
        for g in (0..W).step_by(8) {
            // Lanes g..g+v are real; a partial last group (W = 6, 12) repeats
            // lane g in the spare rows and stores only v lanes.
            let v = 8.min(W - g);
            let row = |r: usize| src.wrapping_add((g + if r < v { r } else { 0 }) * ls + p);
            // Row pairs (r, r+4) share a register, r in the low 128 bits:
            // lo[r] holds depth p..p+4, hi[r] depth p+4..p+8. Loading the
            // halves does the cross-lane step of the transpose for free.
            let mut lo = [_mm256_setzero_ps(); 4];
            let mut hi = [_mm256_setzero_ps(); 4];
            for r in 0..4 {
                // SAFETY: reads depth p..p+8 <= kc of lanes < W.
                unsafe {
                    lo[r] = _mm256_insertf128_ps::<1>(_mm256_castps128_ps256(_mm_loadu_ps(row(r))), _mm_loadu_ps(row(r + 4)));
                    hi[r] = _mm256_insertf128_ps::<1>(_mm256_castps128_ps256(_mm_loadu_ps(row(r).add(4))), _mm_loadu_ps(row(r + 4).add(4)));
                }
            }
            let (c0, c1) = (transpose4x2(lo), transpose4x2(hi));
            for (dp, col) in c0.into_iter().chain(c1).enumerate() {
                // SAFETY: writes lanes g..g+v of depth p+dp < kc: inside the panel.
                unsafe { store_lanes(dst.add((p + dp) * W + g), col, v) };
            }
        }
    }
    for p in kc8..kc {
        for t in 0..W {
            // SAFETY: lane t < W, depth p < kc: readable; dst index < W * kc.
            unsafe { *dst.add(p * W + t) = *src.add(t * ls + p) };
        }
    }
}

/// Stores the first `v` lanes of `x` at `dst`.
///
/// # Safety
/// `dst` valid for `v <= 8` writes; AVX available.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn store_lanes(dst: *mut f32, x: std::arch::x86_64::__m256, v: usize) {
    use std::arch::x86_64::*;
    // SAFETY: each store writes at most the first v elements of dst.
    unsafe {
        match v {
            8 => _mm256_storeu_ps(dst, x),
            4 => _mm_storeu_ps(dst, _mm256_castps256_ps128(x)),
            6 => {
                _mm_storeu_ps(dst, _mm256_castps256_ps128(x));
                _mm_storel_epi64(dst.add(4).cast(), _mm_castps_si128(_mm256_extractf128_ps::<1>(x)));
            }
            _ => {
                let mut tmp = [0f32; 8];
                _mm256_storeu_ps(tmp.as_mut_ptr(), x);
                std::ptr::copy_nonoverlapping(tmp.as_ptr(), dst, v);
            }
        }
    }
}

/// Transposes the two 4×4 blocks held in the 128-bit halves of 4 row
/// vectors: column `c` of both blocks ends up in output `c`.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
fn transpose4x2(r: [std::arch::x86_64::__m256; 4]) -> [std::arch::x86_64::__m256; 4] {
    use std::arch::x86_64::*;
    // t0 = r0[0] r1[0] r0[1] r1[1], t1 = r0[2] r1[2] r0[3] r1[3] (per half), …
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    [
        _mm256_shuffle_ps::<0x44>(t0, t2),
        _mm256_shuffle_ps::<0xEE>(t0, t2),
        _mm256_shuffle_ps::<0x44>(t1, t3),
        _mm256_shuffle_ps::<0xEE>(t1, t3),
    ]
}

#[cfg(test)]
mod tmp_bench {
    #[test]
    #[ignore]
    fn pack_speed() {
        let (lanes, kc) = (64usize, 256usize);
        let src: Vec<f32> = (0..lanes * 512).map(|i| i as f32).collect();
        let mut dst = vec![0f32; lanes * kc + 64];
        for (name, ls, ks) in [("transpose", 512usize, 1usize)] {
            let reps = 20000;
            let t = std::time::Instant::now();
            for _ in 0..reps {
                unsafe { super::pack_f32::<16>(src.as_ptr(), ls, ks, lanes, kc, dst.as_mut_ptr()) };
                std::hint::black_box(&mut dst);
            }
            let ns = t.elapsed().as_nanos() as f64 / reps as f64;
            println!("{name}: {ns:.0} ns per {} floats = {:.3} ns/float", lanes * kc, ns / (lanes * kc) as f64);
            let t = std::time::Instant::now();
            for _ in 0..reps {
                for q in 0..lanes / 16 {
                    unsafe { super::pack_f32::<16>(src.as_ptr().add(q * 16 * ls), ls, ks, 16, kc, dst.as_mut_ptr()) };
                    std::hint::black_box(&mut dst);
                }
            }
            let ns = t.elapsed().as_nanos() as f64 / reps as f64;
            println!("{name} panel-wise into one L1 panel: {ns:.0} ns per {} floats = {:.3} ns/float", lanes * kc, ns / (lanes * kc) as f64);
        }
    }
}
