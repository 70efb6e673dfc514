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
pub(super) unsafe fn pack<T: Float, const W: usize>(
    src: *const T,
    ls: usize,
    ks: usize,
    lanes: usize,
    kc: usize,
    dst: *mut T,
) {
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

/// The first `panels` full panels of a lane-contiguous block (`ls == 1`),
/// eight depth steps at a time: each panel gets eight consecutive rows
/// (contiguous in the panel) from eight source rows read left to right. The
/// source rows stay cached across the panels and the destination is written
/// in runs, rather than one `W` row into each of `panels` distant panels per
/// depth step (measured ~15% faster on 342 × 2048 blocks).
///
/// # Safety
/// As [`pack`], for `panels · W` lanes.
unsafe fn copy_panels<T: Float, const W: usize>(src: *const T, ks: usize, panels: usize, kc: usize, dst: *mut T) {
    const STEPS: usize = 8;
    for p0 in (0..kc).step_by(STEPS) {
        for q in 0..panels {
            for p in p0..(p0 + STEPS).min(kc) {
                // SAFETY: lanes q·W..q·W+W of depth p are contiguous and
                // readable (caller); row p of panel q lies in the caller's
                // buffer, which cannot overlap the source.
                unsafe { std::ptr::copy_nonoverlapping(src.add(p * ks + q * W), dst.add(q * W * kc + p * W), W) };
            }
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
pub(super) unsafe fn pack_f32<const W: usize>(
    src: *const f32,
    ls: usize,
    ks: usize,
    lanes: usize,
    kc: usize,
    dst: *mut f32,
) {
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
    for g in (0..W).step_by(8) {
        // Lanes g..g+v are real; a partial last group (W = 6) repeats
        // lane g in the spare rows and stores only v lanes.
        let v = 8.min(W - g);
        for p in (0..kc8).step_by(8) {
            let mut rows = [_mm256_setzero_ps(); 8];
            for (r, row) in rows.iter_mut().enumerate() {
                let lane = g + if r < v { r } else { 0 };
                // SAFETY: reads depth p..p+8 <= kc of lane < W.
                *row = unsafe { _mm256_loadu_ps(src.add(lane * ls + p)) };
            }
            let cols = transpose8(rows);
            for (dp, col) in cols.into_iter().enumerate() {
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

/// Transposes an 8×8 block held as 8 row vectors into 8 column vectors.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
fn transpose8(r: [std::arch::x86_64::__m256; 8]) -> [std::arch::x86_64::__m256; 8] {
    use std::arch::x86_64::*;
    // Interleave row pairs: t0 = r0[0] r1[0] r0[1] r1[1] | r0[4] r1[4] r0[5] r1[5], …
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    // Columns c and c+4 of rows 0-3 (s0..s3) and rows 4-7 (s4..s7).
    let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    // Join the 128-bit halves: low halves are columns 0-3, high halves 4-7.
    [
        _mm256_permute2f128_ps::<0x20>(s0, s4),
        _mm256_permute2f128_ps::<0x20>(s1, s5),
        _mm256_permute2f128_ps::<0x20>(s2, s6),
        _mm256_permute2f128_ps::<0x20>(s3, s7),
        _mm256_permute2f128_ps::<0x31>(s0, s4),
        _mm256_permute2f128_ps::<0x31>(s1, s5),
        _mm256_permute2f128_ps::<0x31>(s2, s6),
        _mm256_permute2f128_ps::<0x31>(s3, s7),
    ]
}
