//! The ISA-independent part of GEMM: operand checks, the split into parallel
//! tasks, the BLIS loop nest around a [`Kernel`], and the unblocked loop for
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
    /// Whether a product with up to [`DIRECT_MAX`] rows may read a row-major
    /// B in place rather than pack it (with at most `MR` rows all kernels do).
    const B_IN_PLACE: bool;

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

    /// `C[..mr, ..nr] = alpha · A_panel · B_panel + beta · C[..mr, ..nr]`
    /// over depth `kc`. With `beta == 0` C is not read. The kernel calls
    /// `pf.touch()` once per depth step or two.
    ///
    /// # Safety
    /// `a` must address `mr` readable rows of depth `kc` (`1 <= mr <= MR`), `b`
    /// `kc` readable rows of `NR` columns, `1 <= nr <= NR`, and rows `0..mr` of
    /// C (`c + i * ldc`, `nr` elements each) must be valid for reads and
    /// writes and not accessed by anyone else during the call.
    #[allow(clippy::too_many_arguments)]
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
        pf: &mut Prefetch,
    );
}

/// The A operand of one tile: element (row `i`, depth `p`) at
/// `ptr + i * rs + p * cs`. A packed panel has `(rs, cs) = (1, MR)`; in the
/// direct mode the panel is A itself, read through its strides.
#[derive(Clone, Copy)]
pub(super) struct APanel<T> {
    pub ptr: *const T,
    pub rs: usize,
    pub cs: usize,
}

impl<T> APanel<T> {
    /// Whether the panel has the packed layout, so kernels can use constant strides.
    pub fn is_packed(&self, mr: usize) -> bool {
        self.rs == 1 && self.cs == mr
    }
}

/// The B operand of one tile: element (depth `p`, column `j`) at
/// `ptr + p * rs + j`. A packed panel has `rs = NR`; in the direct mode the
/// panel is a row-major B itself.
#[derive(Clone, Copy)]
pub(super) struct BPanel<T> {
    pub ptr: *const T,
    pub rs: usize,
}

/// Products with at most this many multiply-adds per matrix take the
/// unblocked scalar loop. Above it (from about 8×8×8) the blocked path is
/// faster even single-threaded: with `n <= DIRECT_MAX` it packs nothing
/// (avx512) or only B, and its setup costs well under a microsecond.
const SMALL_MAX_MACS: usize = 128;

/// A packed A panel is reused by `n / NR` tiles and a packed B panel by
/// `m / MR`. At or below this many columns (rows) of a task that reuse is
/// too small to pay for the packing (a transpose costs as much as a few
/// tiles' FMAs), so the kernels read A (B, if row-major and the kernel
/// allows it: [`Kernel::B_IN_PLACE`]) in place.
const DIRECT_MAX: usize = 64;

/// Depth from which a product may be split over K between threads (see
/// [`Split::choose`]): the partial products cost an extra pass over C, small
/// next to this many multiply-adds per element.
const SPLIT_K_MIN_DEPTH: usize = 2048;

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

/// A pointer to C (or to the partial products of a split over K) shared by
/// tasks that write disjoint parts of it.
#[derive(Clone, Copy)]
struct SharedMut<T>(*mut T);
// SAFETY: tasks built by `run` write disjoint row / column ranges of C (see
// `part`) or their own partial product, so handing the pointer to other
// threads creates no data race.
unsafe impl<T: Send> Send for SharedMut<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// The pointer (a method, so closures capture the `Sync` wrapper, not the field).
    fn get(self) -> *mut T {
        self.0
    }
}

/// One task's operands as raw strided views, offset to its batch item and
/// row / column range: C (`m × n`, row stride `ldc`) `+= A (m × k) · B (k × n)`.
struct Operands<T> {
    m: usize,
    n: usize,
    k: usize,
    a: *const T,
    a_rs: usize,
    a_cs: usize,
    b: *const T,
    b_rs: usize,
    b_cs: usize,
    /// Set when `b` is the base of a [`BOperand::Packed`] B: the layout of
    /// the whole B and where this task's columns start in it.
    b_packed: Option<PackedCols>,
    c: *mut T,
    ldc: usize,
}

/// A task's columns inside a packed B (see [`BOperand::Packed`]).
#[derive(Clone, Copy)]
struct PackedCols {
    n_pad: usize,
    /// The task's first column, a multiple of `NR`.
    col0: usize,
}

/// B as the driver reads it: through strides (packed block by block as the
/// loop nest reaches it), or packed once in advance for many products.
#[derive(Clone, Copy)]
pub(super) enum BOperand<'a, T> {
    Strided(MatRef<'a, T>),
    /// The kernel's panel layout for the whole of a `k × n` B: depth slices
    /// of the `kc` that [`depth_block`] gives for `k`, slice `s` at
    /// `s · kc · n_pad`, each `n_pad = ceil(n / NR) · NR` columns as
    /// `kc × NR` panels (what `pack_b` writes for a block of all columns).
    /// Any block of the loop nest (`nc` columns from a multiple of `NR`, one
    /// depth slice) is then a contiguous run, exactly the packing buffer's
    /// contents.
    Packed { data: &'a [T], n_pad: usize },
}

/// The depth slice ([`Blocking::kc`]) every product of depth `k` uses, and
/// hence the slice height of a packed B.
pub(super) fn depth_block<T: Float, K: Kernel<T>>(k: usize) -> usize {
    Blocking::new::<T, K>(1, 1, k).kc
}

/// Packs all of a `k × n` B (read through `b`'s strides) into `dst`, laid
/// out as [`BOperand::Packed`] with `n_pad = n.next_multiple_of(NR)`.
pub(super) fn pack_whole_b<T: Float, K: Kernel<T>>(kern: &K, b: MatRef<T>, k: usize, n: usize, dst: &mut [T]) {
    let n_pad = n.next_multiple_of(K::NR);
    assert!(dst.len() >= n_pad * k, "pack_whole_b: {} elements for {k} x {n_pad}", dst.len());
    check_extent("B", b.data.len(), [1, k, n], [0, b.row_stride, b.col_stride]);
    let kc = depth_block::<T, K>(k);
    for pc in (0..k).step_by(kc) {
        // SAFETY: depth pc..pc+kc of all n columns lies inside `b.data`
        // (checked above); slice pc is written to dst[pc·n_pad ..
        // (pc + kc)·n_pad], inside `dst` (asserted).
        unsafe {
            kern.pack_b(
                b.data.as_ptr().add(pc * b.row_stride),
                b.col_stride,
                b.row_stride,
                n,
                kc.min(k - pc),
                dst.as_mut_ptr().add(pc * n_pad),
            )
        };
    }
}

/// `C = alpha·A·B + beta·C` for all batch items with micro-kernel `kern`.
/// The operands have been checked by [`check_operands`].
pub(super) fn run<T: Float, K: Kernel<T>>(
    kern: &K,
    dims: GemmDims,
    alpha: T,
    a: MatRef<T>,
    b: BOperand<T>,
    beta: T,
    c: MatMut<T>,
) {
    let GemmDims { batch, m, n, k } = dims;
    if batch == 0 || m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        scale_c(dims, beta, c);
        return;
    }
    if let BOperand::Strided(b) = b {
        if m.saturating_mul(n).saturating_mul(k) <= SMALL_MAX_MACS {
            small(dims, alpha, a, b, beta, c);
            return;
        }
    }

    // Each task is (batch item, part): parts split one product over N
    // (duplicating the packing of A, m·k), over M (duplicating B, k·n) or
    // over K (partial products summed at the end).
    let threads = rayon::current_num_threads();
    let parallel = threads > 1 && gemm_flops(dims) >= PARALLEL_MIN_FLOPS;
    let parts = if parallel { parts_per_item(batch, threads) } else { 1 };
    let split = Split::choose::<T, K>(dims, &a, &b);
    let (len, unit) = match split {
        Split::M => (m, K::MR),
        Split::N => (n, K::NR),
        Split::K => (k, 8),
    };
    let parts = parts.min(len.div_ceil(unit));
    let tasks = batch * parts;
    // Split::K: parts after the first write alpha·A·B of their depth range
    // here (m × n each), to be added to C once all are done.
    let mut partials = if split == Split::K { vec![T::ZERO; batch * (parts - 1) * m * n] } else { Vec::new() };

    let cptr = SharedMut(c.data.as_mut_ptr());
    let pptr = SharedMut(partials.as_mut_ptr());
    let operands = |t: usize| {
        let (bi, p) = (t / parts, t % parts);
        let range = part(len, unit, parts, p);
        let (rows, cols, depth) = match split {
            Split::M => (range, 0..n, 0..k),
            Split::N => (0..m, range, 0..k),
            Split::K => (0..m, 0..n, range),
        };
        let (c, ldc, beta) = if split == Split::K && p > 0 {
            // SAFETY: partial product (bi, p) lies inside `partials`.
            (unsafe { pptr.get().add((bi * (parts - 1) + p - 1) * m * n) }, n, T::ZERO)
        } else {
            // SAFETY: the offset addresses element (bi, rows.start,
            // cols.start) of C, in bounds by `check_operands`.
            (
                unsafe { cptr.get().add(bi * c.batch_stride + rows.start * c.row_stride + cols.start) },
                c.row_stride,
                beta,
            )
        };
        // Offsets stay in bounds: `check_operands` checked the extent of the
        // whole batch and `rows`, `cols`, `depth` lie inside `0..m`, `0..n`,
        // `0..k`.
        let ops = Operands {
            m: rows.len(),
            n: cols.len(),
            k: depth.len(),
            a: a.data[bi * a.batch_stride + rows.start * a.row_stride + depth.start * a.col_stride..].as_ptr(),
            a_rs: a.row_stride,
            a_cs: a.col_stride,
            b: match b {
                BOperand::Strided(b) => {
                    b.data[bi * b.batch_stride + depth.start * b.row_stride + cols.start * b.col_stride..].as_ptr()
                }
                BOperand::Packed { data, .. } => data.as_ptr(),
            },
            b_rs: if let BOperand::Strided(b) = b { b.row_stride } else { 0 },
            b_cs: if let BOperand::Strided(b) = b { b.col_stride } else { 0 },
            b_packed: match b {
                BOperand::Strided(_) => None,
                // Split::N cuts columns on the NR grid; packed B never gets Split::K.
                BOperand::Packed { n_pad, .. } => Some(PackedCols { n_pad, col0: cols.start }),
            },
            c,
            ldc,
        };
        (ops, beta)
    };
    // A thread runs a contiguous chunk of tasks, so while it computes one it
    // can prefetch the operands of the next.
    let chunk = |tasks: std::ops::Range<usize>| {
        with_pack_buffers(|bufs| {
            for t in tasks.clone() {
                let next = (t + 1 < tasks.end).then(|| operands(t + 1).0);
                let (ops, beta) = operands(t);
                // SAFETY: `operands` addresses in-bounds views of A, B and C
                // (`check_operands`) or of `partials`; this task is the only
                // writer of its output: tasks differ in batch item (disjoint
                // matrices, checked), in their `part` range of C or in their
                // partial product.
                unsafe { product(kern, alpha, &ops, beta, next.as_ref(), bufs) }
            }
        })
    };
    if parallel && tasks > 1 {
        let chunks = threads.min(tasks);
        (0..chunks).into_par_iter().for_each(|i| chunk(part(tasks, 1, chunks, i)));
    } else {
        chunk(0..tasks);
    }

    if split == Split::K && parts > 1 {
        let add_partials = |r: usize| {
            let (bi, i) = (r / m, r % m);
            // SAFETY: row i of matrix bi of C is in bounds (`check_operands`)
            // and rows are disjoint (checked), so each call owns its row.
            let row =
                unsafe { std::slice::from_raw_parts_mut(cptr.get().add(bi * c.batch_stride + i * c.row_stride), n) };
            for p in 1..parts {
                let start = ((bi * (parts - 1) + p - 1) * m + i) * n;
                for (y, &x) in row.iter_mut().zip(&partials[start..start + n]) {
                    *y += x;
                }
            }
        };
        if parallel {
            (0..batch * m).into_par_iter().with_min_len(16).for_each(add_partials);
        } else {
            (0..batch * m).for_each(add_partials);
        }
    }
}

/// Which dimension a product is cut along for threading.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Split {
    M,
    N,
    K,
}

impl Split {
    /// N if `m <= n`, else M: the smaller duplicated packing. But cutting N
    /// of a row-major B (or M of a column-major A) leaves each thread half of
    /// every row of a long-stride matrix; with few rows in the other operand
    /// that stream dominates and both cores fetching from the same rows runs
    /// far below their separate bandwidth (measured on 128×1024×4096: ~67%
    /// of peak split over N, ~78% over K). With a deep enough product, cut K
    /// instead:
    /// each thread reads whole rows, and the extra pass that adds the partial
    /// products is small next to the depth.
    ///
    /// A packed B is cut over N or M only: its depth slices are fixed.
    fn choose<T: Float, K: Kernel<T>>(dims: GemmDims, a: &MatRef<T>, b: &BOperand<T>) -> Split {
        let GemmDims { m, n, k, .. } = dims;
        let b = match b {
            BOperand::Strided(b) => b,
            BOperand::Packed { .. } => return if m <= n { Split::N } else { Split::M },
        };
        let deep = k >= SPLIT_K_MIN_DEPTH;
        if m <= n {
            if deep && b.col_stride == 1 && m <= 2 * K::MC {
                Split::K
            } else {
                Split::N
            }
        } else if deep && a.row_stride == 1 && n <= 2 * K::MC {
            Split::K
        } else {
            Split::M
        }
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
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Part `i` of `0..len` cut into `parts` nearly equal ranges on a `unit` grid.
fn part(len: usize, unit: usize, parts: usize, i: usize) -> std::ops::Range<usize> {
    let units = len.div_ceil(unit);
    let start = (units * i / parts * unit).min(len);
    let end = (units * (i + 1) / parts * unit).min(len);
    start..end
}

/// Block sizes of one product: `ceil(len / max)` nearly equal blocks per
/// dimension, rounded up to the tile, so a dimension just above a block size
/// does not leave a sliver.
#[derive(Clone, Copy)]
struct Blocking {
    mc: usize,
    nc: usize,
    kc: usize,
}

impl Blocking {
    fn new<T: Float, K: Kernel<T>>(m: usize, n: usize, k: usize) -> Self {
        let size =
            |len: usize, max: usize, unit: usize| len.div_ceil(len.div_ceil(max)).next_multiple_of(unit).min(max);
        Blocking { mc: size(m, K::MC, K::MR), nc: size(n, K::NC, K::NR), kc: size(k, K::KC, 1) }
    }

    /// The blocks of the loop nest in order: B block (jc, pc) is packed at
    /// its first A block (ic == 0), then each A block (ic, pc) is packed and
    /// multiplied.
    fn steps(self, m: usize, n: usize, k: usize) -> impl Iterator<Item = Step> {
        (0..n).step_by(self.nc).flat_map(move |jc| {
            (0..k).step_by(self.kc).flat_map(move |pc| {
                (0..m).step_by(self.mc).map(move |ic| Step {
                    jc,
                    nc: self.nc.min(n - jc),
                    pc,
                    kc: self.kc.min(k - pc),
                    ic,
                    mc: self.mc.min(m - ic),
                })
            })
        })
    }
}

/// One `mc × nc × kc` block product of the loop nest.
#[derive(Clone, Copy)]
struct Step {
    jc: usize,
    nc: usize,
    pc: usize,
    kc: usize,
    ic: usize,
    mc: usize,
}

impl<T> Operands<T> {
    /// The first panel of the packed B block at depth `pc` (slice height
    /// `kc`), columns from `jc` (a multiple of `NR`) of this task.
    fn packed_block(&self, pk: PackedCols, pc: usize, jc: usize, kc: usize) -> *const T {
        // Panel q = (col0 + jc) / NR starts q · kc · NR = (col0 + jc) · kc
        // elements into its slice.
        self.b.wrapping_add(pc * pk.n_pad + (pk.col0 + jc) * kc)
    }

    /// Walks over the source data that `step` will read: its B block (if it
    /// is the block's first step) and its A block.
    fn prefetches(&self, step: &Step) -> [Prefetch; 2] {
        let b = if step.ic == 0 {
            match self.b_packed {
                // One contiguous run.
                Some(pk) => Prefetch::block(self.packed_block(pk, step.pc, step.jc, step.kc), 1, 0, step.nc * step.kc, 1),
                None => {
                    let src = self.b.wrapping_add(step.pc * self.b_rs + step.jc * self.b_cs);
                    Prefetch::block(src, self.b_cs, self.b_rs, step.nc, step.kc)
                }
            }
        } else {
            Prefetch::default()
        };
        let src = self.a.wrapping_add(step.ic * self.a_rs + step.pc * self.a_cs);
        [b, Prefetch::block(src, self.a_rs, self.a_cs, step.mc, step.kc)]
    }
}

/// The BLIS loop nest for one product on the calling thread. While the
/// tiles of a block are computed, the micro-kernel prefetches the source of
/// the next block (or of `next`'s first block), so packing, or a kernel
/// reading in place, finds it in cache instead of waiting on memory.
///
/// # Safety
/// `ops` (and `next`) must address in-bounds views of A, B and C, with C not
/// accessed concurrently.
unsafe fn product<T: Float, K: Kernel<T>>(
    kern: &K,
    alpha: T,
    ops: &Operands<T>,
    beta: T,
    next: Option<&Operands<T>>,
    bufs: &mut PackBuffers<T>,
) {
    let (m, n, k) = (ops.m, ops.n, ops.k);
    let (mr_, nr_) = (K::MR, K::NR);
    let direct_a = n <= DIRECT_MAX;
    // With a single row panel a packed B panel would be read only once.
    let direct_b = ops.b_packed.is_none() && ops.b_cs == 1 && (m <= mr_ || (K::B_IN_PLACE && m <= DIRECT_MAX));
    let blocking = Blocking::new::<T, K>(m, n, k);
    let a_len = if direct_a { 0 } else { blocking.mc * blocking.kc };
    let b_len = if ops.b_packed.is_some() { 0 } else { blocking.nc * blocking.kc };
    let (abuf, bbuf) = bufs.get(a_len, b_len);
    let (abuf, bbuf) = (abuf.as_mut_ptr(), bbuf.as_mut_ptr());

    let mut steps = blocking.steps(m, n, k).peekable();
    while let Some(s) = steps.next() {
        let (Step { jc, nc, pc, kc, ic, mc }, ldc) = (s, ops.ldc);
        let b_src = ops.b.wrapping_add(pc * ops.b_rs + jc * ops.b_cs);
        let a_src = ops.a.wrapping_add(ic * ops.a_rs + pc * ops.a_cs);
        // Columns read in place; in the direct mode only a partial last
        // panel is packed (kernels read whole panels).
        let b_in_place = if direct_b { nc - nc % nr_ } else { 0 };
        // A packed B block is the packing buffer's contents, already there.
        let b_block = match ops.b_packed {
            Some(pk) => ops.packed_block(pk, pc, jc, kc),
            None => bbuf.cast_const(),
        };
        if ic == 0 && b_in_place < nc && ops.b_packed.is_none() {
            // SAFETY: columns jc+b_in_place..jc+nc, depth pc..pc+kc of B are
            // in bounds (caller); `bbuf` holds blocking.nc * blocking.kc,
            // blocking.nc a multiple of NR.
            unsafe { kern.pack_b(b_src.add(b_in_place * ops.b_cs), ops.b_cs, ops.b_rs, nc - b_in_place, kc, bbuf) };
        }
        if !direct_a {
            // SAFETY: rows ic..ic+mc, depth pc..pc+kc of A are in bounds
            // (caller); `abuf` holds blocking.mc * blocking.kc, blocking.mc a
            // multiple of MR.
            unsafe { kern.pack_a(a_src, ops.a_rs, ops.a_cs, mc, kc, abuf) };
        }

        let mut upcoming = match (steps.peek(), next) {
            (Some(s), _) => ops.prefetches(s),
            (None, Some(next)) => {
                let first = Blocking::new::<T, K>(next.m, next.n, next.k).steps(next.m, next.n, next.k).next();
                first.map_or_else(Default::default, |s| next.prefetches(&s))
            }
            (None, None) => Default::default(),
        };
        let mut pf = 0;
        // Spread the prefetches over the block's tiles, finishing a little early.
        let tiles = mc.div_ceil(mr_) * nc.div_ceil(nr_);
        let per_tile = (upcoming.iter().map(Prefetch::lines).sum::<usize>() * 5 / 4).div_ceil(tiles);
        // Later depth slices accumulate onto the first one's result.
        let beta = if pc == 0 { beta } else { T::ONE };
        // One B panel stays in L1 while the A panels stream from L2.
        for jr in (0..nc).step_by(nr_) {
            let b = if jr < b_in_place {
                BPanel { ptr: b_src.wrapping_add(jr), rs: ops.b_rs }
            } else {
                BPanel { ptr: b_block.wrapping_add((jr - b_in_place) * kc), rs: nr_ }
            };
            for ir in (0..mc).step_by(mr_) {
                let a = if direct_a {
                    APanel { ptr: a_src.wrapping_add(ir * ops.a_rs), rs: ops.a_rs, cs: ops.a_cs }
                } else {
                    APanel { ptr: abuf.wrapping_add(ir * kc).cast_const(), rs: 1, cs: mr_ }
                };
                if pf + 1 < upcoming.len() && upcoming[pf].is_done() {
                    pf += 1;
                }
                upcoming[pf].set_budget(per_tile);
                // SAFETY: `a` addresses rows ic+ir.. of A, in place (in
                // bounds, caller) or as panel ir / MR of the packed block;
                // `b` addresses columns jc+jr.. of B in place (a full panel of
                // a row-major B, in bounds) or as a packed panel; the tile's
                // rows and columns are inside the caller's C view, which only
                // this call writes.
                unsafe {
                    kern.tile(
                        mr_.min(mc - ir),
                        nr_.min(nc - jr),
                        kc,
                        a,
                        b,
                        ops.c.add((ic + ir) * ldc + jc + jr),
                        ldc,
                        alpha,
                        beta,
                        &mut upcoming[pf],
                    )
                };
            }
        }
    }
}

/// A walk over the cache lines of a strided block that will be read soon:
/// rows of `row_len` bytes, `row_stride` bytes apart. The micro-kernels
/// advance it by one line per depth step (or two), up to a budget the driver
/// sets per tile, which spreads the memory traffic evenly over the compute
/// instead of stalling on it in a burst.
#[derive(Clone, Copy)]
pub(super) struct Prefetch {
    line: *const u8,
    row_start: *const u8,
    row_end: *const u8,
    row_len: usize,
    row_stride: usize,
    rows_left: usize,
    /// Lines this tile may still prefetch; 0 once the walk is done.
    budget: usize,
}

impl Default for Prefetch {
    /// An empty walk.
    fn default() -> Self {
        let p = std::ptr::null();
        Prefetch { line: p, row_start: p, row_end: p, row_len: 0, row_stride: 0, rows_left: 0, budget: 0 }
    }
}

impl Prefetch {
    /// The lines of a block as described to [`Kernel::pack_a`]: `lanes × kc`
    /// elements, lane `t` / depth `p` at `src + t * ls + p * ks`. Only a
    /// block with a unit stride is walked (a gather block is left to the
    /// hardware prefetcher).
    fn block<T>(src: *const T, ls: usize, ks: usize, lanes: usize, kc: usize) -> Self {
        let size = std::mem::size_of::<T>();
        let (row_len, stride, rows) = if ls == 1 {
            (lanes, ks, kc)
        } else if ks == 1 {
            (kc, ls, lanes)
        } else {
            return Prefetch::default();
        };
        let start = src.cast::<u8>();
        Prefetch {
            line: align_down(start),
            row_start: start,
            row_end: start.wrapping_add(row_len * size),
            row_len: row_len * size,
            row_stride: stride * size,
            rows_left: rows - 1,
            budget: 0,
        }
    }

    fn is_done(&self) -> bool {
        self.row_end.is_null()
    }

    /// An upper bound on the lines left to walk.
    fn lines(&self) -> usize {
        if self.is_done() {
            0
        } else {
            (self.rows_left + 1) * (self.row_len / 64 + 2)
        }
    }

    fn set_budget(&mut self, lines: usize) {
        if !self.is_done() {
            self.budget = lines;
        }
    }

    /// Prefetches the next line into L2 (a no-op once the budget is spent).
    #[inline(always)]
    pub(super) fn touch(&mut self) {
        if self.budget > 0 {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a prefetch is a hint: it never faults and never changes
            // memory, whatever the address.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(self.line.cast())
            };
            self.budget -= 1;
            self.line = self.line.wrapping_add(64);
            if self.line >= self.row_end {
                self.next_row();
            }
        }
    }

    #[cold]
    fn next_row(&mut self) {
        if self.rows_left == 0 {
            self.row_end = std::ptr::null();
            self.budget = 0;
            return;
        }
        self.rows_left -= 1;
        self.row_start = self.row_start.wrapping_add(self.row_stride);
        self.row_end = self.row_start.wrapping_add(self.row_len);
        self.line = align_down(self.row_start);
    }
}

/// Pulls the rows of a C tile (`rows × cols`, rows `ldc` apart) into L1,
/// so the write-back after a tile's depth loop does not wait on memory (with
/// a long row stride, C tiles are rarely still cached).
#[inline(always)]
pub(super) fn prefetch_tile<T>(c: *const T, ldc: usize, rows: usize, cols: usize) {
    for i in 0..rows {
        let row = c.wrapping_add(i * ldc);
        for p in [row, row.wrapping_add(cols - 1)] {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a prefetch is a hint: it never faults and never changes
            // memory, whatever the address.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
            };
        }
    }
}

/// The start of the cache line holding `p`.
fn align_down(p: *const u8) -> *const u8 {
    p.wrapping_sub(p as usize & 63)
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
    let mut bufs: Box<PackBuffers<T>> = PACK_BUFFERS.take().and_then(|b| b.downcast().ok()).unwrap_or_default();
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

/// Unblocked loop for tiny products: for each row of C, a chunk of up to 32
/// accumulators sweeps the depth (vectorisable when B is row-major).
fn small<T: Float>(dims: GemmDims, alpha: T, a: MatRef<T>, b: MatRef<T>, beta: T, c: MatMut<T>) {
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
