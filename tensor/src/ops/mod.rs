//! Tensor ops, one module per op family. Each op validates shapes and
//! dtypes, makes its inputs contiguous where the kernel needs it, and
//! returns a fresh contiguous tensor.

pub mod concat;
pub mod dropout;
pub mod elementwise;
pub mod graph_attention;
pub mod index;
pub mod layer_norm;
pub mod matmul;
pub mod reduce;
pub mod segment;
pub mod softmax;
pub mod where_mask;

/// Below this many elements an op runs on the calling thread.
pub(crate) const PAR_THRESHOLD: usize = 1 << 15;

/// Run `f(offset, chunk)` over chunks of `out`, in parallel when large.
pub(crate) fn par_chunks_mut<T: Send>(out: &mut [T], f: impl Fn(usize, &mut [T]) + Sync) {
    use rayon::prelude::*;
    let n = out.len();
    if n < PAR_THRESHOLD {
        f(0, out);
        return;
    }
    let chunk = n.div_ceil(rayon::current_num_threads() * 4).max(4096);
    out.par_chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i * chunk, c));
}

/// Like [`par_chunks_mut`] but chunks hold whole rows of `row` elements.
pub(crate) fn par_rows_mut<T: Send>(out: &mut [T], row: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    use rayon::prelude::*;
    let n = out.len();
    if row == 0 || n == 0 {
        return;
    }
    let rows = n / row;
    if n < PAR_THRESHOLD || rows < 2 {
        f(0, out);
        return;
    }
    let rows_per = rows.div_ceil(rayon::current_num_threads() * 4).max(1);
    out.par_chunks_mut(rows_per * row).enumerate().for_each(|(i, c)| f(i * rows_per, c));
}
