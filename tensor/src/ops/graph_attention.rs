//! Fused graph attention over in-edges (the message passing of PyG's
//! `TransformerConv`): for every target node `i` and head `h`,
//!
//! ```text
//! kk_e = k[src e] + emb[type e]        vv_e = v[src e] + emb[type e]
//! a_e  = softmax_{e → i}(scale · q_i · kk_e)
//! out_i = Σ_{e → i} a_e · vv_e          (0 for a node without in-edges)
//! ```
//!
//! Edges are sorted by target once ([`AttentionGraph`], a CSR), so each
//! node's in-edges are contiguous and one pass per node computes scores,
//! softmax and the weighted sum without any `[E, H, C]` intermediate; nodes
//! are processed in parallel in chunks balanced by edge count. The backward
//! runs three passes: by target (score gradients, dq), by source (dk, dv)
//! and by edge type (the table's gradient), each writing only its own rows,
//! so there are no atomics and results are deterministic.

use std::ops::Range;

use rayon::prelude::*;

use super::elementwise::from_storage_vec;
use super::index::read_indices;
use crate::{with_float_dtype, Error, FloatElement, Result, Tensor};

/// Stable counting sort of `0..keys.len()` by key in `0..n`: `(offsets [n+1], order)`,
/// key `r`'s members are `order[offsets[r]..offsets[r+1]]` in ascending order.
fn group_by(keys: &[usize], n: usize) -> (Vec<usize>, Vec<usize>) {
    let mut offsets = vec![0usize; n + 1];
    for &k in keys {
        offsets[k + 1] += 1;
    }
    for r in 0..n {
        offsets[r + 1] += offsets[r];
    }
    let mut next = offsets[..n].to_vec();
    let mut order = vec![0; keys.len()];
    for (j, &k) in keys.iter().enumerate() {
        order[next[k]] = j;
        next[k] += 1;
    }
    (offsets, order)
}

/// A graph's edges sorted by target (CSR "positions" `0..E`), plus the
/// positions grouped by source, for the fused attention op.
pub struct AttentionGraph {
    n: usize,
    /// In-edges of node `i` are the positions `offsets[i]..offsets[i+1]`.
    offsets: Vec<usize>,
    /// Per position: original edge id, source and target node.
    edge: Vec<usize>,
    src: Vec<usize>,
    dst: Vec<usize>,
    /// Out-edges of node `s` are `src_order[src_offsets[s]..src_offsets[s+1]]` (positions).
    src_offsets: Vec<usize>,
    src_order: Vec<usize>,
    /// Node ranges of about equal work (edges + nodes) for the parallel passes by target.
    chunks: Vec<Range<usize>>,
}

impl AttentionGraph {
    /// Edge `e` goes `src[e] → dst[e]`; every index must be `< n`.
    pub fn new(src: &[usize], dst: &[usize], n: usize) -> Result<AttentionGraph> {
        if src.len() != dst.len() {
            return Err(Error::shape("graph_attention", format!("{} sources but {} targets", src.len(), dst.len())));
        }
        if let Some(&bad) = src.iter().chain(dst).find(|&&v| v >= n) {
            return Err(Error::shape("graph_attention", format!("node index {bad} out of range for {n} nodes")));
        }
        let (offsets, edge) = group_by(dst, n);
        let src: Vec<usize> = edge.iter().map(|&e| src[e]).collect();
        let dst: Vec<usize> = edge.iter().map(|&e| dst[e]).collect();
        let (src_offsets, src_order) = group_by(&src, n);
        // why: ~8 chunks per thread keeps both cores busy when degrees are skewed (hubs)
        let parts = rayon::current_num_threads() * 8;
        let per = (edge.len() + n).div_ceil(parts).max(1);
        let mut chunks = Vec::with_capacity(parts + 1);
        let mut start = 0;
        for i in 0..n {
            if offsets[i + 1] + i + 1 - (offsets[start] + start) >= per {
                chunks.push(start..i + 1);
                start = i + 1;
            }
        }
        if start < n {
            chunks.push(start..n);
        }
        Ok(AttentionGraph { n, offsets, edge, src, dst, src_offsets, src_order, chunks })
    }

    pub fn num_edges(&self) -> usize {
        self.edge.len()
    }

    /// `per_node [N·a]` and `per_edge [E·b]` split into the disjoint pieces of each chunk.
    fn split<'a, T>(&self, per_node: &'a mut [T], a: usize, per_edge: &'a mut [T], b: usize) -> Vec<(Range<usize>, &'a mut [T], &'a mut [T])> {
        let mut out = Vec::with_capacity(self.chunks.len());
        let (mut nodes, mut edges) = (per_node, per_edge);
        for r in &self.chunks {
            let (x, rest) = nodes.split_at_mut(r.len() * a);
            nodes = rest;
            let (y, rest) = edges.split_at_mut((self.offsets[r.end] - self.offsets[r.start]) * b);
            edges = rest;
            out.push((r.clone(), x, y));
        }
        out
    }
}

/// Edge types for the embedding table, by CSR position, and the positions
/// grouped by type (for the table's gradient).
pub struct EdgeTypes {
    num_types: usize,
    of_position: Vec<usize>,
    offsets: Vec<usize>,
    order: Vec<usize>,
}

impl EdgeTypes {
    /// `types` i64 [E] in edge order, values in `0..num_types`.
    pub fn new(graph: &AttentionGraph, types: &Tensor, num_types: usize) -> Result<EdgeTypes> {
        if types.rank() != 1 || types.shape()[0] != graph.num_edges() {
            return Err(Error::shape("graph_attention", format!("edge types {:?} for {} edges", types.shape(), graph.num_edges())));
        }
        let ids = read_indices("graph_attention", types, num_types)?;
        Ok(EdgeTypes::from_positions(graph.edge.iter().map(|&e| ids[e]).collect(), num_types))
    }

    /// One type per edge (type = edge id): a dense `[E, H, C]` edge table.
    pub fn per_edge(graph: &AttentionGraph) -> EdgeTypes {
        EdgeTypes::from_positions(graph.edge.clone(), graph.num_edges())
    }

    fn from_positions(of_position: Vec<usize>, num_types: usize) -> EdgeTypes {
        let (offsets, order) = group_by(&of_position, num_types);
        EdgeTypes { num_types, of_position, offsets, order }
    }
}

/// Σ a·b, with 8 independent lanes so the compiler vectorises it
/// (a single float accumulator must keep the sequential order).
fn dot<T: FloatElement>(a: &[T], b: &[T]) -> T {
    let mut lanes = [T::ZERO; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: T = ac.remainder().iter().zip(bc.remainder()).map(|(&x, &y)| x * y).sum();
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    lanes.iter().copied().sum::<T>() + tail
}

/// Checked, contiguous `[rows, H, C]` operands.
struct Operands {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    emb: Option<Tensor>,
    h: usize,
    c: usize,
}

impl Operands {
    fn new(q: &Tensor, k: &Tensor, v: &Tensor, emb: Option<(&Tensor, &EdgeTypes)>, graph: &AttentionGraph) -> Result<Operands> {
        let shape = q.shape();
        if shape.len() != 3 || shape[0] != graph.n || k.shape() != shape || v.shape() != shape {
            return Err(Error::shape(
                "graph_attention",
                format!("q {:?}, k {:?}, v {:?} must all be [{}, H, C]", shape, k.shape(), v.shape(), graph.n),
            ));
        }
        let (h, c) = (shape[1], shape[2]);
        if h == 0 || c == 0 {
            return Err(Error::shape("graph_attention", format!("heads and channels must be positive, got q {shape:?}")));
        }
        if k.dtype() != q.dtype() || v.dtype() != q.dtype() {
            return Err(Error::shape("graph_attention", "q, k and v differ in dtype"));
        }
        let emb = match emb {
            None => None,
            Some((t, types)) => {
                if t.shape() != [types.num_types, h, c] || t.dtype() != q.dtype() {
                    return Err(Error::shape(
                        "graph_attention",
                        format!("edge table {:?} {} must be [{}, {h}, {c}] {}", t.shape(), t.dtype().name(), types.num_types, q.dtype().name()),
                    ));
                }
                Some(t.contiguous()?)
            }
        };
        Ok(Operands { q: q.contiguous()?, k: k.contiguous()?, v: v.contiguous()?, emb, h, c })
    }
}

/// Forward: `out [N·H·C]` and `alpha [E·H]` in CSR order.
fn forward<T: FloatElement>(ops: &Operands, types: Option<&EdgeTypes>, graph: &AttentionGraph) -> Result<(Vec<T>, Vec<T>)> {
    let (h, c) = (ops.h, ops.c);
    let hc = h * c;
    let (q, k, v) = (ops.q.as_slice::<T>()?, ops.k.as_slice::<T>()?, ops.v.as_slice::<T>()?);
    let emb = match &ops.emb {
        Some(t) => Some(t.as_slice::<T>()?),
        None => None,
    };
    let scale = T::from_f64(1.0 / (c as f64).sqrt());
    let mut out = vec![T::ZERO; graph.n * hc];
    let mut alpha = vec![T::ZERO; graph.num_edges() * h];
    graph.split(&mut out, hc, &mut alpha, h).into_par_iter().for_each(|(nodes, out, alpha)| {
        let base = graph.offsets[nodes.start];
        let mut kk = vec![T::ZERO; c];
        for (i, o) in nodes.clone().zip(out.chunks_exact_mut(hc)) {
            let pos = graph.offsets[i]..graph.offsets[i + 1];
            if pos.is_empty() {
                continue;
            }
            let a = &mut alpha[(pos.start - base) * h..(pos.end - base) * h];
            let qi = &q[i * hc..(i + 1) * hc];
            // scores a[p, h] = scale · q_i · (k_src + emb)
            for (p, ap) in pos.clone().zip(a.chunks_exact_mut(h)) {
                let s = graph.src[p];
                for hh in 0..h {
                    let kr = &k[s * hc + hh * c..s * hc + (hh + 1) * c];
                    let score = match (emb, types) {
                        (Some(emb), Some(t)) => {
                            let t = t.of_position[p];
                            let er = &emb[t * hc + hh * c..t * hc + (hh + 1) * c];
                            for ((d, &x), &y) in kk.iter_mut().zip(kr).zip(er) {
                                *d = x + y;
                            }
                            dot(&qi[hh * c..(hh + 1) * c], &kk)
                        }
                        _ => dot(&qi[hh * c..(hh + 1) * c], kr),
                    };
                    ap[hh] = score * scale;
                }
            }
            // softmax per head over the node's in-edges (max-shifted)
            for hh in 0..h {
                let m = a.iter().skip(hh).step_by(h).fold(T::NEG_INFINITY, |m, &x| if x > m { x } else { m });
                // why: a fully −∞ head (masked) shifts by 0 and yields 0s, as segment_softmax
                let shift = if m == T::NEG_INFINITY { T::ZERO } else { m };
                let mut z = T::ZERO;
                for x in a.iter_mut().skip(hh).step_by(h) {
                    *x = (*x - shift).exp();
                    z += *x;
                }
                for x in a.iter_mut().skip(hh).step_by(h) {
                    *x = if z == T::ZERO { T::ZERO } else { *x / z };
                }
            }
            // out_i = Σ a · (v_src + emb)
            for (p, ap) in pos.zip(a.chunks_exact(h)) {
                let s = graph.src[p];
                for hh in 0..h {
                    let w = ap[hh];
                    let orow = &mut o[hh * c..(hh + 1) * c];
                    for (d, &x) in orow.iter_mut().zip(&v[s * hc + hh * c..s * hc + (hh + 1) * c]) {
                        *d += w * x;
                    }
                    if let (Some(emb), Some(t)) = (emb, types) {
                        let t = t.of_position[p];
                        for (d, &x) in orow.iter_mut().zip(&emb[t * hc + hh * c..t * hc + (hh + 1) * c]) {
                            *d += w * x;
                        }
                    }
                }
            }
        }
    });
    Ok((out, alpha))
}

/// Gradients of [`Tensor::graph_attention`]: (dq, dk, dv, d_emb).
pub struct AttentionGrads {
    pub q: Tensor,
    pub k: Tensor,
    pub v: Tensor,
    pub emb: Option<Tensor>,
}

fn backward<T: FloatElement>(
    ops: &Operands,
    types: Option<&EdgeTypes>,
    graph: &AttentionGraph,
    alpha: &[T],
    g: &[T],
) -> Result<AttentionGrads> {
    let (h, c) = (ops.h, ops.c);
    let hc = h * c;
    let n = graph.n;
    let (q, k, v) = (ops.q.as_slice::<T>()?, ops.k.as_slice::<T>()?, ops.v.as_slice::<T>()?);
    let emb = match (&ops.emb, types) {
        (Some(t), Some(ty)) => Some((t.as_slice::<T>()?, ty)),
        _ => None,
    };
    let scale = T::from_f64(1.0 / (c as f64).sqrt());
    // head hh of row r of any [rows, H, C] operand
    let row = |r: usize, hh: usize| -> Range<usize> { r * hc + hh * c..r * hc + (hh + 1) * c };

    // Pass 1, by target: ds[p,h] = scale·a·(g_i·vv − Σ a g_i·vv), dq_i = Σ ds·kk.
    let mut dq = vec![T::ZERO; n * hc];
    let mut ds = vec![T::ZERO; graph.num_edges() * h];
    graph.split(&mut dq, hc, &mut ds, h).into_par_iter().for_each(|(nodes, dq, ds)| {
        let base = graph.offsets[nodes.start];
        for (i, dqi) in nodes.clone().zip(dq.chunks_exact_mut(hc)) {
            let pos = graph.offsets[i]..graph.offsets[i + 1];
            let d = &mut ds[(pos.start - base) * h..(pos.end - base) * h];
            let gi = &g[i * hc..(i + 1) * hc];
            for (p, dp) in pos.clone().zip(d.chunks_exact_mut(h)) {
                let s = graph.src[p];
                for hh in 0..h {
                    let gh = &gi[hh * c..(hh + 1) * c];
                    let mut da = dot(gh, &v[row(s, hh)]);
                    if let Some((emb, ty)) = emb {
                        da += dot(gh, &emb[row(ty.of_position[p], hh)]);
                    }
                    dp[hh] = da;
                }
            }
            let a = &alpha[pos.start * h..pos.end * h];
            for hh in 0..h {
                let mean: T = a.iter().skip(hh).step_by(h).zip(d.iter().skip(hh).step_by(h)).map(|(&x, &y)| x * y).sum();
                for (x, &w) in d.iter_mut().skip(hh).step_by(h).zip(a.iter().skip(hh).step_by(h)) {
                    *x = scale * w * (*x - mean);
                }
            }
            for (p, dp) in pos.zip(d.chunks_exact(h)) {
                let s = graph.src[p];
                for hh in 0..h {
                    let dst = &mut dqi[hh * c..(hh + 1) * c];
                    for (o, &x) in dst.iter_mut().zip(&k[row(s, hh)]) {
                        *o += dp[hh] * x;
                    }
                    if let Some((emb, ty)) = emb {
                        for (o, &x) in dst.iter_mut().zip(&emb[row(ty.of_position[p], hh)]) {
                            *o += dp[hh] * x;
                        }
                    }
                }
            }
        }
    });

    // Pass 2, by source: dk_s = Σ ds·q_dst, dv_s = Σ a·g_dst over s's out-edges.
    let mut dk = vec![T::ZERO; n * hc];
    let mut dv = vec![T::ZERO; n * hc];
    let rows_per = n.div_ceil(rayon::current_num_threads() * 8).max(1);
    dk.par_chunks_mut(rows_per * hc).zip(dv.par_chunks_mut(rows_per * hc)).enumerate().for_each(|(chunk, (dk, dv))| {
        for (j, (dks, dvs)) in dk.chunks_exact_mut(hc).zip(dv.chunks_exact_mut(hc)).enumerate() {
            let s = chunk * rows_per + j;
            for &p in &graph.src_order[graph.src_offsets[s]..graph.src_offsets[s + 1]] {
                accumulate_edge(dks, dvs, p, graph.dst[p], q, g, &ds, alpha, h, c);
            }
        }
    });

    // Pass 3, by type: d_emb_t = Σ (ds·q_dst + a·g_dst) over the edges of type t.
    let demb = match emb {
        None => None,
        Some((_, ty)) => {
            let mut dk_t = vec![T::ZERO; ty.num_types * hc];
            let mut dv_t = vec![T::ZERO; ty.num_types * hc];
            let rows_per = ty.num_types.div_ceil(rayon::current_num_threads() * 8).max(1);
            dk_t.par_chunks_mut(rows_per * hc).zip(dv_t.par_chunks_mut(rows_per * hc)).enumerate().for_each(|(chunk, (a, b))| {
                for (j, (ar, br)) in a.chunks_exact_mut(hc).zip(b.chunks_exact_mut(hc)).enumerate() {
                    let t = chunk * rows_per + j;
                    for &p in &ty.order[ty.offsets[t]..ty.offsets[t + 1]] {
                        accumulate_edge(ar, br, p, graph.dst[p], q, g, &ds, alpha, h, c);
                    }
                }
            });
            for (x, y) in dk_t.iter_mut().zip(&dv_t) {
                *x += *y;
            }
            Some(from_storage_vec(dk_t, &[ty.num_types, h, c]))
        }
    };
    let shape = [n, h, c];
    Ok(AttentionGrads { q: from_storage_vec(dq, &shape), k: from_storage_vec(dk, &shape), v: from_storage_vec(dv, &shape), emb: demb })
}

/// `dkk += ds[p]·q_i`, `dvv += a[p]·g_i` for the edge at position `p` into node `i`.
#[allow(clippy::too_many_arguments)]
fn accumulate_edge<T: FloatElement>(dkk: &mut [T], dvv: &mut [T], p: usize, i: usize, q: &[T], g: &[T], ds: &[T], alpha: &[T], h: usize, c: usize) {
    let hc = h * c;
    for hh in 0..h {
        let (w, a) = (ds[p * h + hh], alpha[p * h + hh]);
        let r = i * hc + hh * c..i * hc + (hh + 1) * c;
        for (o, &x) in dkk[hh * c..(hh + 1) * c].iter_mut().zip(&q[r.clone()]) {
            *o += w * x;
        }
        for (o, &x) in dvv[hh * c..(hh + 1) * c].iter_mut().zip(&g[r]) {
            *o += a * x;
        }
    }
}

/// Rows `[E, h]` in CSR order → edge order.
fn to_edge_order<T: FloatElement>(a: &[T], graph: &AttentionGraph, h: usize) -> Vec<T> {
    let mut out = vec![T::ZERO; a.len()];
    for (p, &e) in graph.edge.iter().enumerate() {
        out[e * h..(e + 1) * h].copy_from_slice(&a[p * h..(p + 1) * h]);
    }
    out
}

impl Tensor {
    /// Fused attention over in-edges (module doc): q, k, v [N, H, C], an
    /// optional edge table [T, H, C] with each edge's type → (out [N, H, C],
    /// alpha [E, H] in CSR (target-sorted) order; see [`Tensor::graph_attention_alpha`]).
    pub fn graph_attention(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        emb: Option<(&Tensor, &EdgeTypes)>,
        graph: &AttentionGraph,
    ) -> Result<(Tensor, Tensor)> {
        let ops = Operands::new(q, k, v, emb, graph)?;
        let (h, c) = (ops.h, ops.c);
        with_float_dtype!(q.dtype(), "graph_attention", T => {
            let (out, alpha) = forward::<T>(&ops, emb.map(|e| e.1), graph)?;
            Ok((from_storage_vec(out, &[graph.n, h, c]), from_storage_vec(alpha, &[graph.num_edges(), h])))
        })
    }

    /// CSR-ordered alpha [E, H] → edge order [E, H].
    pub fn graph_attention_alpha(alpha: &Tensor, graph: &AttentionGraph) -> Result<Tensor> {
        let h = alpha.shape().get(1).copied().unwrap_or(0);
        if alpha.shape() != [graph.num_edges(), h] {
            return Err(Error::shape("graph_attention", format!("alpha {:?} for {} edges", alpha.shape(), graph.num_edges())));
        }
        let alpha = alpha.contiguous()?;
        with_float_dtype!(alpha.dtype(), "graph_attention", T => {
            Ok(from_storage_vec(to_edge_order(alpha.as_slice::<T>()?, graph, h), &[graph.num_edges(), h]))
        })
    }

    /// Backward of [`Tensor::graph_attention`] given the output gradient
    /// `g [N, H, C]` and the CSR-ordered `alpha` the forward returned.
    pub fn graph_attention_backward(
        g: &Tensor,
        alpha: &Tensor,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        emb: Option<(&Tensor, &EdgeTypes)>,
        graph: &AttentionGraph,
    ) -> Result<AttentionGrads> {
        let ops = Operands::new(q, k, v, emb, graph)?;
        if g.shape() != q.shape() || alpha.shape() != [graph.num_edges(), ops.h] {
            return Err(Error::shape("graph_attention_backward", format!("grad {:?}, alpha {:?} for q {:?}", g.shape(), alpha.shape(), q.shape())));
        }
        let (g, alpha) = (g.to_dtype(q.dtype())?.contiguous()?, alpha.contiguous()?);
        with_float_dtype!(q.dtype(), "graph_attention_backward", T => {
            backward::<T>(&ops, emb.map(|e| e.1), graph, alpha.as_slice::<T>()?, g.as_slice::<T>()?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DType, Rng};

    #[test]
    fn matches_gather_softmax_sum_composition() {
        // random multigraph: targets only in 0..17 (the rest have no in-edges), repeats, self-loops
        let (n, e, h, c, t) = (40, 300, 2, 5, 4);
        let mut rng = Rng::new(3);
        let src: Vec<usize> = (0..e).map(|_| (rng.next_u64() % n as u64) as usize).collect();
        let dst: Vec<usize> = (0..e).map(|_| (rng.next_u64() % 17) as usize).collect();
        let ty: Vec<usize> = (0..e).map(|_| (rng.next_u64() % t as u64) as usize).collect();
        let rnd = |shape: &[usize], rng: &mut Rng| {
            let v: Vec<f64> = (0..shape.iter().product::<usize>()).map(|_| 2.0 * rng.next_f64() - 1.0).collect();
            Tensor::from_vec(v, shape).unwrap()
        };
        let (q, k, v, emb) = (rnd(&[n, h, c], &mut rng), rnd(&[n, h, c], &mut rng), rnd(&[n, h, c], &mut rng), rnd(&[t, h, c], &mut rng));
        let (s_t, d_t, ty_t) = (Tensor::from_indices(&src, &[e]).unwrap(), Tensor::from_indices(&dst, &[e]).unwrap(), Tensor::from_indices(&ty, &[e]).unwrap());
        let graph = AttentionGraph::new(&src, &dst, n).unwrap();
        let types = EdgeTypes::new(&graph, &ty_t, t).unwrap();
        let (out, alpha) = Tensor::graph_attention(&q, &k, &v, Some((&emb, &types)), &graph).unwrap();
        let alpha = Tensor::graph_attention_alpha(&alpha, &graph).unwrap();

        let edge = emb.index_select(0, &ty_t).unwrap();
        let kk = k.index_select(0, &s_t).unwrap().add(&edge).unwrap();
        let vv = v.index_select(0, &s_t).unwrap().add(&edge).unwrap();
        let qq = q.index_select(0, &d_t).unwrap();
        let scores = qq.mul(&kk).unwrap().sum(2, false).unwrap().mul_scalar(1.0 / (c as f64).sqrt()).unwrap();
        let want_alpha = scores.segment_softmax(&d_t, n).unwrap();
        let want = vv.mul(&want_alpha.unsqueeze(2).unwrap()).unwrap().segment_sum(&d_t, n).unwrap();
        let close = |a: &Tensor, b: &Tensor| {
            let (a, b) = (a.to_vec::<f64>().unwrap(), b.to_vec::<f64>().unwrap());
            assert_eq!(a.len(), b.len());
            assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-12), "{a:?} vs {b:?}");
        };
        close(&out, &want);
        close(&alpha, &want_alpha);
        // f32 agrees with f64
        let f = |x: &Tensor| x.to_dtype(DType::F32).unwrap();
        let (o32, _) = Tensor::graph_attention(&f(&q), &f(&k), &f(&v), Some((&f(&emb), &types)), &graph).unwrap();
        assert!(o32.to_f64_vec().unwrap().iter().zip(want.to_vec::<f64>().unwrap()).all(|(a, b)| (a - b).abs() < 1e-5));
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(AttentionGraph::new(&[0, 1], &[1], 2).is_err());
        assert!(AttentionGraph::new(&[0, 5], &[1, 0], 2).is_err());
        let graph = AttentionGraph::new(&[0, 1], &[1, 0], 2).unwrap();
        let x = Tensor::zeros(&[2, 1, 3], DType::F64);
        let types = EdgeTypes::new(&graph, &Tensor::from_indices(&[0, 1], &[2]).unwrap(), 2).unwrap();
        assert!(EdgeTypes::new(&graph, &Tensor::from_indices(&[0, 2], &[2]).unwrap(), 2).is_err());
        let bad = Tensor::zeros(&[3, 1, 3], DType::F64);
        assert!(Tensor::graph_attention(&bad, &x, &x, None, &graph).is_err());
        assert!(Tensor::graph_attention(&x, &x, &x, Some((&bad, &types)), &graph).is_err());
        assert!(Tensor::graph_attention(&x, &x, &x, Some((&x, &types)), &graph).is_ok());
    }
}
