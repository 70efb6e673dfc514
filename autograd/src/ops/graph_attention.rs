//! Differentiable fused graph attention over in-edges (PyG `TransformerConv`
//! message passing, see `kogner_tensor::ops::graph_attention`). The backward
//! is hand-written: it saves only alpha [E, H] besides the inputs.

use std::sync::Arc;

use kogner_tensor::ops::graph_attention::{AttentionGraph, EdgeTypes};
use kogner_tensor::{Result, Tensor};

use crate::Var;

/// Edge embeddings added to both keys and values: a table [T, H, C] and
/// each edge's row of it.
pub struct EdgeEmbedding<'a> {
    pub table: &'a Var,
    pub types: Arc<EdgeTypes>,
}

impl Var {
    /// q, k, v [N, H, C] (+ edge table [T, H, C]) over `graph` →
    /// (out [N, H, C], alpha [E, H] in edge order), where
    /// `out_i = Σ_{e→i} softmax_e(q_i·(k_src+emb_e)/√C)·(v_src+emb_e)`.
    /// alpha is returned as a plain tensor: no gradient flows through it.
    pub fn graph_attention(q: &Var, k: &Var, v: &Var, emb: Option<EdgeEmbedding>, graph: &Arc<AttentionGraph>) -> Result<(Var, Tensor)> {
        let (qv, kv, vv) = (q.value(), k.value(), v.value());
        let table = emb.as_ref().map(|e| (e.table.value(), e.types.clone()));
        let (out, alpha_csr) = Tensor::graph_attention(&qv, &kv, &vv, table.as_ref().map(|(t, ty)| (t, &**ty)), graph)?;
        let alpha = Tensor::graph_attention_alpha(&alpha_csr, graph)?;
        let mut inputs = vec![q, k, v];
        if let Some(e) = &emb {
            inputs.push(e.table);
        }
        if !Var::needs_grad(&inputs) {
            return Ok((Var::constant(out), alpha));
        }
        let graph = graph.clone();
        let backward = move |g: &Tensor| {
            let d = Tensor::graph_attention_backward(g, &alpha_csr, &qv, &kv, &vv, table.as_ref().map(|(t, ty)| (t, &**ty)), &graph)?;
            let mut grads = vec![Some(d.q), Some(d.k), Some(d.v)];
            if d.emb.is_some() {
                grads.push(d.emb);
            }
            Ok(grads)
        };
        Ok((Var::from_op("graph_attention", out, &inputs, Box::new(backward)), alpha))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::EdgeEmbedding;
    use crate::gradcheck::{check_f32_matches_f64, check_gradients, random_tensor, Tol};
    use crate::Var;
    use kogner_tensor::ops::graph_attention::{AttentionGraph, EdgeTypes};
    use kogner_tensor::{Rng, Tensor};

    /// A random small multigraph: (n, src, dst, types, num_types, heads, channels).
    fn graph() -> impl Strategy<Value = (usize, Vec<usize>, Vec<usize>, Vec<usize>, usize, usize, usize)> {
        (1usize..6, 0usize..12, 1usize..4, 1usize..3, 1usize..5, any::<u64>()).prop_map(|(n, e, t, h, c, seed)| {
            let mut rng = Rng::new(seed);
            let mut pick = |m: usize| (0..e).map(|_| (rng.next_u64() % m as u64) as usize).collect::<Vec<_>>();
            let (src, dst, types) = (pick(n), pick(n), pick(t));
            (n, src, dst, types, t, h, c)
        })
    }

    /// The unfused composition (gathers, segment softmax, segment sum).
    #[allow(clippy::too_many_arguments)]
    fn composed(q: &Var, k: &Var, v: &Var, emb: Option<&Var>, src: &Tensor, dst: &Tensor, types: &Tensor, n: usize) -> kogner_tensor::Result<(Var, Var)> {
        let (e, c) = (src.shape()[0], q.shape()[2]);
        let (mut kk, mut vv) = (k.index_select(0, src)?, v.index_select(0, src)?);
        if let Some(emb) = emb {
            let edge = emb.index_select(0, types)?;
            kk = kk.add(&edge)?;
            vv = vv.add(&edge)?;
        }
        let h = q.shape()[1];
        let scores = q.index_select(0, dst)?.mul(&kk)?.sum(2, false)?.mul_scalar(1.0 / (c as f64).sqrt())?;
        let alpha = scores.segment_softmax(dst, n)?;
        let out = vv.mul(&alpha.reshape(&[e, h, 1])?)?.segment_sum(dst, n)?;
        Ok((out, alpha))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn graph_attention_gradients((n, src, dst, types, t, h, c) in graph(), seed in any::<u64>(), with_emb in any::<bool>()) {
            let graph = Arc::new(AttentionGraph::new(&src, &dst, n).unwrap());
            let e = src.len();
            let ty = Arc::new(EdgeTypes::new(&graph, &Tensor::from_indices(&types, &[e]).unwrap(), t).unwrap());
            let mut inputs: Vec<Tensor> = (0..3).map(|i| random_tensor(&[n, h, c], seed.wrapping_add(i), -1.5, 1.5)).collect();
            if with_emb {
                inputs.push(random_tensor(&[t, h, c], seed.wrapping_add(7), -1.5, 1.5));
            }
            let f = move |v: &[Var]| {
                let emb = v.get(3).map(|table| EdgeEmbedding { table, types: ty.clone() });
                Ok(Var::graph_attention(&v[0], &v[1], &v[2], emb, &graph)?.0)
            };
            check_gradients(&f, &inputs, &[], Tol::default()).map_err(TestCaseError::fail)?;
            check_f32_matches_f64(&f, &inputs, 1e-5, 1e-5).map_err(TestCaseError::fail)?;
        }

        #[test]
        fn graph_attention_matches_composition((n, src, dst, types, t, h, c) in graph(), seed in any::<u64>()) {
            let e = src.len();
            let graph = Arc::new(AttentionGraph::new(&src, &dst, n).unwrap());
            let (s, d, ty) = (Tensor::from_indices(&src, &[e]).unwrap(), Tensor::from_indices(&dst, &[e]).unwrap(), Tensor::from_indices(&types, &[e]).unwrap());
            let types = Arc::new(EdgeTypes::new(&graph, &ty, t).unwrap());
            let leaf = |i: u64, shape: &[usize]| Var::leaf(random_tensor(shape, seed.wrapping_add(i), -1.5, 1.5));
            let (q, k, v, emb) = (leaf(0, &[n, h, c]), leaf(1, &[n, h, c]), leaf(2, &[n, h, c]), leaf(3, &[t, h, c]));
            let (out, alpha) = Var::graph_attention(&q, &k, &v, Some(EdgeEmbedding { table: &emb, types }), &graph).unwrap();
            let (want, want_alpha) = composed(&q, &k, &v, Some(&emb), &s, &d, &ty, n).unwrap();
            let close = |a: &Tensor, b: &Tensor| -> Result<(), TestCaseError> {
                let (a, b) = (a.to_vec::<f64>().unwrap(), b.to_vec::<f64>().unwrap());
                prop_assert_eq!(a.len(), b.len());
                for (x, y) in a.iter().zip(&b) {
                    prop_assert!((x - y).abs() < 1e-12, "{} vs {}", x, y);
                }
                Ok(())
            };
            close(&out.value(), &want.value())?;
            close(&alpha, &want_alpha.value())?;
            let w = random_tensor(&[n, h, c], seed ^ 99, -1.0, 1.0);
            let (g, g_want) = (out.backward_with(w.clone()).unwrap(), want.backward_with(w).unwrap());
            for x in [&q, &k, &v, &emb] {
                close(g.get(x).unwrap(), g_want.get(x).unwrap())?;
            }
        }
    }

    #[test]
    fn node_without_in_edges_gets_zero_and_alpha_is_in_edge_order() {
        // edges 0: 1→0, 1: 2→0, node 1 and 2 have no in-edges; equal keys → alpha ½
        let graph = Arc::new(AttentionGraph::new(&[1, 2], &[0, 0], 3).unwrap());
        let ones = Var::leaf(Tensor::from_vec(vec![1.0f64; 3], &[3, 1, 1]).unwrap());
        let v = Var::leaf(Tensor::from_vec(vec![0.0f64, 2.0, 4.0], &[3, 1, 1]).unwrap());
        let (out, alpha) = Var::graph_attention(&ones, &ones, &v, None, &graph).unwrap();
        assert_eq!(out.value().to_vec::<f64>().unwrap(), vec![3.0, 0.0, 0.0]);
        assert_eq!(alpha.to_vec::<f64>().unwrap(), vec![0.5, 0.5]);
    }
}
