//! The ISA-independent part of GEMM: operand checks, the split into parallel
//! tasks, the BLIS loop nest around a [`Kernel`], and the direct loop for
//! tiny products.

use std::any::Any;
use std::cell::Cell;

use rayon::prelude::*;

use super::{gemm_flops, GemmDims, MatMut, MatRef};
use crate::Float;

/// A register-blocked micro-kernel with its packing routines and the cache
/// blocking tuned for it.
///
/// Packed layouts (see [`super::pack`]): an A block of `mc` rows is stored as
/// `ceil(mc / MR)` panels of `MR × kc` (depth-major: `MR` rows of one depth
/// step are contiguous), a B block of `nc` columns as `ceil(nc / NR)` panels
/// of `kc × NR`; lanes past the edge are zero.
pub(super) trait Kernel<T: Float>: Sync {
    /// Rows of a micro-tile (lanes of a packed A panel).
    const MR: usize;
    /// Columns of a micro-tile (lanes of a packed B panel).
    const NR: usize;
    /// Rows of an A block (a multiple of `MR`): `MC × KC` fills about half of L2.
    const MC: usize;
    /// Depth of a block: one B panel (`KC × NR`) plus one A panel fits in L1.
    const KC: usize;
    /// Columns of a B block (a multiple of `NR`): `KC × NC` lives in L3.
    const NC: usize;

    /// Packs `lanes` rows of A, depth `kc`: element (row `t`, depth `p`) is at
    /// `src + t * ls + p * ks`.
    ///
    /// # Safety
    /// Every addressed element must be readable and `dst` must be valid for
    /// `ceil(lanes / MR) * MR * kc` writes.
    unsafe fn pack_a(&self, src: *const T, ls: usize, ks: usize, lanes: usize, kc: usize, dst: *mut T);

    /// Packs `lanes` columns of B, depth `kc`: element (column `t`, depth
    /// `p`) is at `src + t * ls + p * ks`.
    ///
    /// # Safety
    /// As [`Kernel::pack_a`], with `NR` for `MR`.
    unsafe fn pack_b(&self, src: *const T, ls: usize, ks: usize, lanes: usize, kc: usize, dst: *mut T);

    /// `C[..mr, ..nr] = alpha · A_panel · B_panel + beta · C[..mr, ..nr]`,
    /// where the panels are packed with depth `kc`. With `beta == 0` C is not
    /// read.
    ///
    /// # Safety
    /// `a` must point to a packed A panel (`MR × kc`), `b` to a packed B panel
    /// (`kc × NR`), `1 <= mr <= MR`, `1 <= nr <= NR`, and rows `0..mr` of C
    /// (`c + i * ldc`, `nr` elements each) must be valid for reads and writes
    /// and not accessed by anyone else during the call.
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile(&self, mr: usize, nr: usize, kc: usize, a: *const T, b: *const T, c: *mut T, ldc: usize, alpha: T, beta: T);
}

/// Products with at most this many multiply-adds per matrix take the direct
/// loop: packing and blocking would cost more than they save.
const DIRECT_MAX_MACS: usize = 4096;

/// Calls below this many flops stay on the calling thread: a rayon round trip
/// (a few µs) would cost more than the second core saves.
const PARALLEL_MIN_FLOPS: f64 = 1.0e6;

/// Panics unless every element the call addresses lies inside its slice and
/// the rows and matrices of C are disjoint (tasks write C in parallel).
pub(super) fn check_operands<T>(dims: GemmDims, a: &MatRef<T>, b: &MatRef<T>, c: &MatMut<T>) {
    let GemmDims { batch, m, n, k } = dims;
    if batch == 0 || m == 0 || n == 0 {
        return;
    }
    if k > 0 {
        check_extent("A", a.data.len(), [batch, m, k], [a.batch_stride, a.row_stride, a.col_stride]);
        check_extent("B", b.data.len(), [batch, k, n], [b.batch_stride, b.row_stride, b.col_stride]);
    }
    check_extent("C", c.data.len(), [batch, m, n], [c.batch_stride, c.row_stride, 1]);
    assert!(m == 1 || c.row_stride >= n, "gemm: rows of C overlap (row_stride {} < n = {n})", c.row_stride);
    assert!(
        batch == 1 || c.batch_stride >= (m - 1) * c.row_stride + n,
        "gemm: matrices of C overlap (batch_stride {} for {m} rows of stride {})",
        c.batch_stride,
        c.row_stride
    );
}

/// Asserts that the last element of a `sizes`-shaped strided view is in bounds.
fn check_extent(name: &str, len: usize, sizes: [usize; 3], strides: [usize; 3]) {
    let last = sizes
        .iter()
        .zip(strides)
        .try_fold(0usize, |acc, (&size, stride)| (size - 1).checked_mul(stride).and_then(|o| acc.checked_add(o)));
    match last {
        Some(last) if last < len => {}
        _ => panic!("gemm: {name} of {len} elements is too short for sizes {sizes:?} and strides {strides:?}"),
    }
}

/// A pointer to C shared by tasks that write disjoint tiles of it.
#[derive(Clone, Copy)]
struct SharedMut<T>(*mut T);
// SAFETY: tasks built by `run` write disjoint row / column ranges of C (see
// `part`), so handing the pointer to other threads creates no data race.
unsafe impl<T: Send> Send for SharedMut<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// The pointer (a method, so closures capture the `Sync` wrapper, not the field).
    fn get(self) -> *mut T {
        self.0
    }
}

/// One product's operands as raw strided views, already offset to the task's
/// batch item and row / column range.
struct Operands<T> {
    a: *const T,
    a_rs: usize,
    a_cs: usize,
    b: *const T,
    b_rs: usize,
    b_cs: usize,
    c: *mut T,
    ldc: usize,
    pf: [(usize, usize); 2],
}

/// `C = alpha·A·B + beta·C` for all batch items with micro-kernel `kern`.
/// The operands have been checked by [`check_operands`].
pub(super) fn run<T: Float, K: Kernel<T>>(kern: &K, dims: GemmDims, alpha: T, a: MatRef<T>, b: MatRef<T>, beta: T, c: MatMut<T>) {
    let GemmDims { batch, m, n, k } = dims;
    if batch == 0 || m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        scale_c(dims, beta, c);
        return;
    }
    if m.saturating_mul(n).saturating_mul(k) <= DIRECT_MAX_MACS {
        direct(dims, alpha, a, b, beta, c);
        return;
    }

    // Each task is (batch item, part): parts split one product over N
    // (duplicating the packing of A, m·k) or over M (duplicating B, k·n).
    let threads = rayon::current_num_threads();
    let parallel = threads > 1 && gemm_flops(dims) >= PARALLEL_MIN_FLOPS;
    let parts = if parallel { parts_per_item(batch, threads) } else { 1 };
    let split_n = m <= n;
    let (len, unit) = if split_n { (n, K::NR) } else { (m, K::MR) };
    let parts = parts.min(len.div_ceil(unit));

    let cptr = SharedMut(c.data.as_mut_ptr());
    let task = |t: usize| {
        let (bi, range) = (t / parts, part(len, unit, parts, t % parts));
        let (rows, cols) = if split_n { (0..m, range) } else { (range, 0..n) };
        // Offsets stay in bounds: `check_operands` checked the extent of the
        // whole batch and `rows`, `cols` lie inside `0..m`, `0..n`.
        let ops = Operands {
            a: a.data[bi * a.batch_stride + rows.start * a.row_stride..].as_ptr(),
            a_rs: a.row_stride,
            a_cs: a.col_stride,
            b: b.data[bi * b.batch_stride + cols.start * b.col_stride..].as_ptr(),
            b_rs: b.row_stride,
            b_cs: b.col_stride,
            // SAFETY: the offset addresses element (bi, rows.start, cols.start)
            // of C, in bounds by `check_operands`.
            c: unsafe { cptr.get().add(bi * c.batch_stride + rows.start * c.row_stride + cols.start) },
            ldc: c.row_stride,
            pf: if bi + 1 < batch && parts == 1 {
                let ab = (m * k) * std::mem::size_of::<T>();
                let bb = (n * k) * std::mem::size_of::<T>();
                [(a.data[(bi + 1) * a.batch_stride..].as_ptr() as usize, ab), (b.data[(bi + 1) * b.batch_stride..].as_ptr() as usize, bb)]
            } else { [(0, 0); 2] },
        };
        with_pack_buffers(|bufs| {
            // SAFETY: `ops` addresses a `rows × k` view of A, `k × cols` of B
            // and `rows × cols` of C, all in bounds (`check_operands`); this
            // task is the only writer of that part of C: tasks differ in batch
            // item (disjoint matrices, checked) or in their `part` range.
            unsafe { product(kern, rows.len(), cols.len(), k, alpha, &ops, beta, bufs) }
        });
    };
    if !parallel || batch * parts == 1 {
        (0..batch * parts).for_each(task);
    } else if parts == 1 {
        let chunk = batch.div_ceil(threads);
        (0..threads).into_par_iter().for_each(|t| (t * chunk..((t + 1) * chunk).min(batch)).for_each(task));
    } else {
        (0..batch * parts).into_par_iter().for_each(task);
    }
}

/// How many parts to cut each batch item into so that `batch · parts` tasks
/// keep `threads` threads busy: 1 when whole items already balance within
/// 10%, else enough for the task count to be a multiple of `threads`.
fn parts_per_item(batch: usize, threads: usize) -> usize {
    let rounds = batch.div_ceil(threads);
    if (rounds * threads) as f64 <= 1.1 * batch as f64 {
        1
    } else {
        threads / gcd(batch, threads)
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Part `i` of `0..len` cut into `parts` nearly equal ranges on a `unit` grid.
fn part(len: usize, unit: usize, parts: usize, i: usize) -> std::ops::Range<usize> {
    let units = len.div_ceil(unit);
    let start = (units * i / parts * unit).min(len);
    let end = (units * (i + 1) / parts * unit).min(len);
    start..end
}

/// Splits `len` into `ceil(len / max)` nearly equal blocks rounded up to
/// `unit`, so a dimension just above a block size does not leave a sliver.
fn block_size(len: usize, max: usize, unit: usize) -> usize {
    let blocks = len.div_ceil(max);
    len.div_ceil(blocks).next_multiple_of(unit).min(max)
}

/// The BLIS loop nest for one `m × n × k` product on the calling thread.
///
/// # Safety
/// `ops` must address an `m × k` view of A, a `k × n` view of B and an
/// `m × n` view of C that are in bounds, with C not accessed concurrently.
#[allow(clippy::too_many_arguments)]
unsafe fn product<T: Float, K: Kernel<T>>(
    kern: &K,
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    ops: &Operands<T>,
    beta: T,
    bufs: &mut PackBuffers<T>,
) {
    let (mr_, nr_) = (K::MR, K::NR);
    let mc_max = block_size(m, K::MC, mr_);
    let kc_max = block_size(k, K::KC, 1);
    let nc_max = block_size(n, K::NC, nr_);
    let (abuf, bbuf) = bufs.get(mc_max * kc_max, nc_max * kc_max);
    let (abuf, bbuf) = (abuf.as_mut_ptr(), bbuf.as_mut_ptr());
    let tiles = m.div_ceil(mr_) * n.div_ceil(nr_) * k.div_ceil(kc_max);
    let lines: usize = ops.pf.iter().map(|r| r.1 / 64).sum();
    let per_tile = lines.div_ceil(tiles.max(1));
    let mut cur = (0usize, 0usize);

    for jc in (0..n).step_by(nc_max) {
        let nc = nc_max.min(n - jc);
        for pc in (0..k).step_by(kc_max) {
            let kc = kc_max.min(k - pc);
            // Later depth slices accumulate onto the first one's result.
            let beta = if pc == 0 { beta } else { T::ONE };
            // SAFETY: columns jc..jc+nc, depth pc..pc+kc of B are in bounds
            // (caller); `bbuf` holds nc_max.next_multiple_of(NR) * kc_max.
            unsafe { kern.pack_b(ops.b.add(pc * ops.b_rs + jc * ops.b_cs), ops.b_cs, ops.b_rs, nc, kc, bbuf) };
            for ic in (0..m).step_by(mc_max) {
                let mc = mc_max.min(m - ic);
                // SAFETY: rows ic..ic+mc, depth pc..pc+kc of A are in bounds
                // (caller); `abuf` holds mc_max * kc_max, mc_max a multiple of MR.
                unsafe { kern.pack_a(ops.a.add(ic * ops.a_rs + pc * ops.a_cs), ops.a_rs, ops.a_cs, mc, kc, abuf) };
                // One B panel stays in L1 while the A panels stream from L2.
                for jr in (0..nc).step_by(nr_) {
                    for ir in (0..mc).step_by(mr_) {
                        // SAFETY: panel ir / MR of the A block starts at ir * kc
                        // and panel jr / NR of the B block at jr * kc (packed
                        // layout); the tile's rows and columns are inside the
                        // caller's C view, which only this call writes.
                        for _ in 0..per_tile {
                            if cur.0 < 2 {
                                let (base, len) = ops.pf[cur.0];
                                if cur.1 * 64 < len {
                                    unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>((base + cur.1 * 64) as *const i8) };
                                    cur.1 += 1;
                                } else { cur = (cur.0 + 1, 0); }
                            }
                        }
                        unsafe {
                            kern.tile(
                                mr_.min(mc - ir),
                                nr_.min(nc - jr),
                                kc,
                                abuf.add(ir * kc),
                                bbuf.add(jr * kc),
                                ops.c.add((ic + ir) * ops.ldc + jc + jr),
                                ops.ldc,
                                alpha,
                                beta,
                            )
                        };
                    }
                }
            }
        }
    }
}

/// Packing space for one thread, reused across calls.
#[derive(Default)]
struct PackBuffers<T> {
    a: Vec<T>,
    b: Vec<T>,
}

impl<T: Float> PackBuffers<T> {
    /// Two zeroed-once buffers of at least `a_len` and `b_len` elements, each
    /// starting on a 64-byte boundary so B panels load at full speed.
    fn get(&mut self, a_len: usize, b_len: usize) -> (&mut [T], &mut [T]) {
        (aligned(&mut self.a, a_len), aligned(&mut self.b, b_len))
    }
}

fn aligned<T: Float>(v: &mut Vec<T>, len: usize) -> &mut [T] {
    let slack = 64 / std::mem::size_of::<T>().max(1);
    if v.len() < len + slack {
        v.resize(len + slack, T::ZERO);
    }
    let off = v.as_ptr().align_offset(64);
    let off = if off <= slack { off } else { 0 };
    &mut v[off..off + len]
}

thread_local! {
    /// This thread's packing buffers, as `PackBuffers<T>` of the element type last used.
    static PACK_BUFFERS: Cell<Option<Box<dyn Any>>> = const { Cell::new(None) };
}

/// Runs `f` with this thread's packing buffers. They are taken out of the
/// thread-local while in use, so a nested call on the same thread (rayon
/// work stealing) gets fresh buffers instead of aliasing them.
fn with_pack_buffers<T: Float, R>(f: impl FnOnce(&mut PackBuffers<T>) -> R) -> R {
    let mut bufs: Box<PackBuffers<T>> = PACK_BUFFERS
        .take()
        .and_then(|b| b.downcast().ok())
        .unwrap_or_default();
    let r = f(&mut bufs);
    PACK_BUFFERS.set(Some(bufs));
    r
}

/// `C = beta·C` (zeros when `beta == 0`, without reading C): the `k == 0` case.
fn scale_c<T: Float>(dims: GemmDims, beta: T, c: MatMut<T>) {
    for bi in 0..dims.batch {
        for i in 0..dims.m {
            let start = bi * c.batch_stride + i * c.row_stride;
            for x in &mut c.data[start..start + dims.n] {
                *x = if beta == T::ZERO { T::ZERO } else { beta * *x };
            }
        }
    }
}

/// Unpacked loop for tiny products: for each row of C, a chunk of up to 32
/// accumulators sweeps the depth (vectorisable when B is row-major).
fn direct<T: Float>(dims: GemmDims, alpha: T, a: MatRef<T>, b: MatRef<T>, beta: T, c: MatMut<T>) {
    const CHUNK: usize = 32;
    let GemmDims { batch, m, n, k } = dims;
    for bi in 0..batch {
        let (a0, b0, c0) = (bi * a.batch_stride, bi * b.batch_stride, bi * c.batch_stride);
        for i in 0..m {
            for j0 in (0..n).step_by(CHUNK) {
                let w = CHUNK.min(n - j0);
                let mut acc = [T::ZERO; CHUNK];
                for p in 0..k {
                    let aip = a.data[a0 + i * a.row_stride + p * a.col_stride];
                    let brow = b0 + p * b.row_stride + j0 * b.col_stride;
                    for (jj, x) in acc[..w].iter_mut().enumerate() {
                        *x += aip * b.data[brow + jj * b.col_stride];
                    }
                }
                let crow = &mut c.data[c0 + i * c.row_stride + j0..][..w];
                for (y, &x) in crow.iter_mut().zip(&acc) {
                    *y = if beta == T::ZERO { alpha * x } else { alpha * x + beta * *y };
                }
            }
        }
    }
}
