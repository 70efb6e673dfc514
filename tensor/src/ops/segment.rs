//! Per-segment ops over the rows of an edge tensor, for graph attention
//! (PyG's `softmax(alpha, index, num_nodes)` and `scatter(.., reduce=sum|max)`).
//! Row `e` of `x [E, ...]` belongs to segment `segment[e]` (its target node);
//! columns (the trailing dims) are independent; edges need not be sorted.
//!
//! Edges are grouped by segment once with a counting sort. Reductions then
//! run in parallel over segments (each writes its own output row) and
//! elementwise passes in parallel over edges, so every pass is linear in E
//! with `[N, ...]` temporaries only.

use kogner_kernels::unary::{unary, Unary};

use super::elementwise::from_storage_vec;
use super::index::{accumulate_rows, read_indices, Groups};
use super::par_rows_mut;
use crate::{with_float_dtype, Error, FloatElement, Result, Tensor};

/// Validated inputs of a segment op: segment ids, their grouping, the
/// column count (elements per edge row) and `x` made contiguous.
struct Segments {
    ids: Vec<usize>,
    groups: Groups,
    cols: usize,
    x: Tensor,
}

impl Segments {
    fn new(op: &'static str, x: &Tensor, segment: &Tensor, n: usize) -> Result<Segments> {
        if x.rank() == 0 {
            return Err(Error::shape(op, "input must have an edge dim, got a scalar"));
        }
        if segment.rank() != 1 || segment.shape()[0] != x.shape()[0] {
            return Err(Error::shape(op, format!("segment ids {:?} do not match {} edges", segment.shape(), x.shape()[0])));
        }
        let ids = read_indices(op, segment, n)?;
        let groups = Groups::new(&ids, n);
        Ok(Segments { ids, groups, cols: x.shape()[1..].iter().product(), x: x.contiguous()? })
    }

    /// `[n, ...]`: x's shape with the edge dim replaced by the segment count.
    fn out_shape(&self, n: usize) -> Vec<usize> {
        let mut shape = self.x.shape().to_vec();
        shape[0] = n;
        shape
    }
}

/// Σ of each segment's rows of `x [E, cols]` → `[n, cols]` (0 for empty segments).
fn sum_rows<T: FloatElement>(x: &[T], s: &Segments, n: usize) -> Vec<T> {
    let mut out = vec![T::ZERO; n * s.cols];
    accumulate_rows(&mut out, x, &s.groups, n, s.ids.len(), s.cols);
    out
}

/// Elementwise max of each segment's rows → `[n, cols]` (0 for empty
/// segments, as PyG; NaN propagates).
fn max_rows<T: FloatElement>(x: &[T], s: &Segments, n: usize) -> Vec<T> {
    let cols = s.cols;
    let mut out = vec![T::ZERO; n * cols];
    par_rows_mut(&mut out, cols, |first, rows| {
        for (i, row) in rows.chunks_exact_mut(cols).enumerate() {
            let Some((&e0, rest)) = s.groups.members(first + i).split_first() else { continue };
            row.copy_from_slice(&x[e0 * cols..(e0 + 1) * cols]);
            for &e in rest {
                for (m, &v) in row.iter_mut().zip(&x[e * cols..(e + 1) * cols]) {
                    // a select, not a branch: the loop stays vectorisable
                    *m = if v > *m || v.is_nan() { v } else { *m };
                }
            }
        }
    });
    out
}

/// `f(edge row, its segment's row)` over every edge row of `out [E, cols]`,
/// in parallel over edges.
fn for_each_edge<T: FloatElement>(out: &mut [T], per_segment: &[T], s: &Segments, f: impl Fn(&mut [T], &[T]) + Sync) {
    let cols = s.cols;
    par_rows_mut(out, cols, |first, rows| {
        for (i, row) in rows.chunks_exact_mut(cols).enumerate() {
            let seg = s.ids[first + i];
            f(row, &per_segment[seg * cols..(seg + 1) * cols]);
        }
    });
}

fn softmax_rows<T: FloatElement>(s: &Segments, n: usize) -> Result<Tensor> {
    let x = s.x.as_slice::<T>()?;
    let cols = s.cols;
    let max = max_rows(x, s, n);
    let mut out = vec![T::ZERO; x.len()];
    // exp(x − segment max): shift a chunk of edge rows, then one vector exp.
    // A column that is −∞ throughout its segment (fully masked) shifts by 0
    // instead, so it yields 0 rather than NaN.
    par_rows_mut(&mut out, cols, |first, rows| {
        let mut shifted = vec![T::ZERO; rows.len()];
        for (i, d) in shifted.chunks_exact_mut(cols).enumerate() {
            let e = first + i;
            let m = &max[s.ids[e] * cols..(s.ids[e] + 1) * cols];
            for c in 0..cols {
                let shift = if m[c] == T::NEG_INFINITY { T::ZERO } else { m[c] };
                d[c] = x[e * cols + c] - shift;
            }
        }
        unary(Unary::Exp, &shifted, rows);
    });
    let sum = sum_rows(&out, s, n);
    for_each_edge(&mut out, &sum, s, |row, z| {
        for (v, &z) in row.iter_mut().zip(z) {
            // only a fully masked column sums to 0; NaN still propagates
            *v = if z == T::ZERO { T::ZERO } else { *v / z };
        }
    });
    Ok(from_storage_vec(out, s.x.shape()))
}

impl Tensor {
    /// Sum of the rows of each segment (PyG `scatter(x, segment, reduce="sum")`):
    /// x [E, ...], segment i64 [E] in `0..n` → [n, ...], 0 for empty segments.
    pub fn segment_sum(&self, segment: &Tensor, n: usize) -> Result<Tensor> {
        let s = Segments::new("segment_sum", self, segment, n)?;
        with_float_dtype!(self.dtype(), "segment_sum", T => {
            Ok(from_storage_vec(sum_rows(s.x.as_slice::<T>()?, &s, n), &s.out_shape(n)))
        })
    }

    /// Elementwise max of the rows of each segment: x [E, ...], segment i64
    /// [E] in `0..n` → [n, ...], 0 for empty segments (as PyG).
    pub fn segment_max(&self, segment: &Tensor, n: usize) -> Result<Tensor> {
        let s = Segments::new("segment_max", self, segment, n)?;
        with_float_dtype!(self.dtype(), "segment_max", T => {
            Ok(from_storage_vec(max_rows(s.x.as_slice::<T>()?, &s, n), &s.out_shape(n)))
        })
    }

    /// Softmax over the edges of each segment, independently per column
    /// (PyG `softmax(scores, segment, num_nodes=n)`): scores [E, ...] (e.g.
    /// [E, heads]), segment i64 [E] in `0..n` → [E, ...]. A column that is
    /// −∞ on every edge of its segment gives 0s.
    pub fn segment_softmax(&self, segment: &Tensor, n: usize) -> Result<Tensor> {
        let s = Segments::new("segment_softmax", self, segment, n)?;
        with_float_dtype!(self.dtype(), "segment_softmax", T => softmax_rows::<T>(&s, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DType, Rng};

    fn t(v: &[f64], shape: &[usize]) -> Tensor {
        Tensor::from_slice(v, shape).unwrap()
    }

    fn seg(v: &[usize]) -> Tensor {
        Tensor::from_indices(v, &[v.len()]).unwrap()
    }

    /// Softmax per (segment, column) computed directly from the definition.
    fn naive_softmax(x: &[f64], ids: &[usize], cols: usize) -> Vec<f64> {
        let mut out = vec![0.0; x.len()];
        for e in 0..ids.len() {
            for c in 0..cols {
                let peers: Vec<usize> = (0..ids.len()).filter(|&f| ids[f] == ids[e]).collect();
                let m = peers.iter().map(|&f| x[f * cols + c]).fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = peers.iter().map(|&f| (x[f * cols + c] - m).exp()).sum();
                out[e * cols + c] = (x[e * cols + c] - m).exp() / z;
            }
        }
        out
    }

    #[test]
    fn softmax_sum_max_by_hand() {
        // edges 0, 2 → node 1; edge 1 → node 0; node 2 has no edges
        let x = t(&[0.0, 1.0, 5.0, -3.0, 2.0_f64.ln(), 1.0], &[3, 2]);
        let s = seg(&[1, 0, 1]);
        let y = x.segment_softmax(&s, 3).unwrap().to_vec::<f64>().unwrap();
        let want = [1.0 / 3.0, 0.5, 1.0, 1.0, 2.0 / 3.0, 0.5];
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-15, "{y:?}");
        }
        assert_eq!(x.segment_sum(&s, 3).unwrap().to_vec::<f64>().unwrap(), vec![5., -3., 2.0_f64.ln(), 2., 0., 0.]);
        assert_eq!(x.segment_max(&s, 3).unwrap().to_vec::<f64>().unwrap(), vec![5., -3., 2.0_f64.ln(), 1., 0., 0.]);
        // trailing dims are columns
        let x3 = x.reshape(&[3, 1, 2]).unwrap();
        assert_eq!(x3.segment_sum(&s, 3).unwrap().shape(), &[3, 1, 2]);
        assert_eq!(x3.segment_softmax(&s, 3).unwrap().to_vec::<f64>().unwrap(), y);
    }

    #[test]
    fn fully_masked_segment_gives_zeros() {
        let x = t(&[f64::NEG_INFINITY, f64::NEG_INFINITY, 0.0], &[3]).to_dtype(DType::F32).unwrap();
        let y = x.segment_softmax(&seg(&[0, 0, 1]), 2).unwrap();
        assert_eq!(y.to_vec::<f32>().unwrap(), vec![0.0, 0.0, 1.0]);
    }

    #[test]
    fn segment_errors() {
        let x = t(&[1., 2., 3.], &[3]);
        let e = x.segment_softmax(&seg(&[0, 4, 1]), 3).unwrap_err();
        assert_eq!(e.to_string(), "segment_softmax: index 4 out of range for size 3");
        let e = x.segment_sum(&seg(&[0, 1]), 3).unwrap_err();
        assert_eq!(e.to_string(), "segment_sum: segment ids [2] do not match 3 edges");
        assert!(x.segment_max(&x, 3).unwrap_err().to_string().contains("i64"));
        assert!(Tensor::scalar(1.0f64).segment_sum(&seg(&[0]), 1).is_err());
        assert!(Tensor::zeros(&[3], DType::I64).segment_sum(&seg(&[0, 0, 0]), 1).is_err());
    }

    #[test]
    fn large_graph_matches_definition() {
        // 20k edges × 2 heads onto 3k nodes (some empty): the parallel paths.
        let (e, h, n) = (20_000, 2, 3_000);
        let mut rng = Rng::new(7);
        let ids: Vec<usize> = (0..e).map(|_| (rng.next_u64() % (n as u64 - 10)) as usize).collect();
        let x: Vec<f64> = (0..e * h).map(|_| 6.0 * rng.next_f64() - 3.0).collect();
        let xt = t(&x, &[e, h]);
        let y = xt.segment_softmax(&seg(&ids), n).unwrap().to_vec::<f64>().unwrap();
        // check a sample of edges against the definition restricted to their segment
        let sample: Vec<usize> = (0..e).step_by(997).collect();
        for &edge in &sample {
            let peers: Vec<usize> = (0..e).filter(|&f| ids[f] == ids[edge]).collect();
            let local_ids = vec![0; peers.len()];
            let local_x: Vec<f64> = peers.iter().flat_map(|&f| x[f * h..(f + 1) * h].to_vec()).collect();
            let want = naive_softmax(&local_x, &local_ids, h);
            let pos = peers.iter().position(|&f| f == edge).unwrap();
            for c in 0..h {
                assert!((y[edge * h + c] - want[pos * h + c]).abs() < 1e-14);
            }
        }
        // per segment and column the probabilities add up to 1 (0 for empty segments)
        let z = xt.segment_softmax(&seg(&ids), n).unwrap().segment_sum(&seg(&ids), n).unwrap().to_vec::<f64>().unwrap();
        for node in 0..n {
            let want = if node < n - 10 && ids.contains(&node) { 1.0 } else { 0.0 };
            assert!((z[node * h] - want).abs() < 1e-12);
        }
        let f32_y = xt.to_dtype(DType::F32).unwrap().segment_softmax(&seg(&ids), n).unwrap().to_f64_vec().unwrap();
        assert!(f32_y.iter().zip(&y).all(|(a, b)| (a - b).abs() < 1e-6));
    }

    #[test]
    fn small_softmax_matches_definition() {
        let ids = [2, 0, 2, 2, 0];
        let x: Vec<f64> = (0..10).map(|v| ((v * 7) % 5) as f64 - 1.5).collect();
        let y = t(&x, &[5, 2]).segment_softmax(&seg(&ids), 4).unwrap().to_vec::<f64>().unwrap();
        for (a, b) in y.iter().zip(naive_softmax(&x, &ids, 2)) {
            assert!((a - b).abs() < 1e-15);
        }
    }
}
