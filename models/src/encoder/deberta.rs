//! DeBERTa-v2/v3 encoder (HF `modeling_deberta_v2.py`, v3 settings):
//! disentangled attention with log-bucketed relative positions and
//! position projections shared with the content key/query projections.

use kogner_autograd::Var;
use kogner_tensor::{with_float_dtype, Error, FloatElement, Result, Tensor};
use rayon::prelude::*;

use super::attention::{key_mask, merge_heads, split_heads, TransformerLayer};
use super::EncoderOutput;
use crate::builder::{Init, ParamBuilder};
use crate::config::DebertaConfig;
use crate::nn::{Embedding, LayerNorm, Mode};

/// HF's `make_log_bucket_position` for one relative distance, evaluated in
/// f32 as torch does (f64 can land one bucket off exactly at a boundary).
pub fn rel_pos_bucket(rel: i64, bucket_size: usize, max_position: usize) -> i64 {
    if bucket_size == 0 {
        return rel;
    }
    let mid = (bucket_size / 2) as i64;
    let abs = if rel < mid && rel > -mid { mid - 1 } else { rel.abs() };
    if abs <= mid {
        return rel;
    }
    let log_ratio = ((max_position - 1) as f64 / mid as f64) as f32;
    let log_pos = ((abs as f32 / mid as f32).ln() / log_ratio.ln() * (mid - 1) as f32).ceil() + mid as f32;
    log_pos as i64 * rel.signum()
}

/// Row of the relative-embedding table each (query i, key j) pair uses,
/// `clamp(bucket(i − j) + span, 0, 2·span − 1)`, restricted to the rows a
/// sequence of `t` tokens can reach: returns (first row, rows used, idx
/// [t·t] relative to the first row).
pub fn rel_pos_rows(t: usize, c: &DebertaConfig) -> (usize, usize, Vec<u32>) {
    let span = c.att_span() as i64;
    let row = |d: i64| (rel_pos_bucket(d, c.position_buckets, c.max_relative_positions) + span).clamp(0, 2 * span - 1);
    // depends on i − j only: tabulate the 2t − 1 distances
    let by_dist: Vec<i64> = (-(t as i64 - 1)..=(t as i64 - 1)).map(row).collect();
    let lo = *by_dist.iter().min().unwrap_or(&0);
    let hi = *by_dist.iter().max().unwrap_or(&0);
    let mut idx = vec![0u32; t * t];
    for i in 0..t {
        for j in 0..t {
            idx[i * t + j] = (by_dist[i + t - 1 - j] - lo) as u32;
        }
    }
    (lo as usize, (hi - lo + 1) as usize, idx)
}

/// scores[b,h,i,j] = (qk[b,h,i,j] + c2p[b,h,i,idx(i,j)] + p2c[b,h,j,idx(i,j)]) · inv_scale
///
/// qk [B, h, T, T], c2p and p2c [B, h, T, W] (W = rows used), idx [T·T].
/// One fused pass instead of two gathers, a transpose and three adds over
/// [B, h, T, T]; its backward scatters into c2p / p2c.
pub fn disentangled_scores(qk: &Var, c2p: &Var, p2c: &Var, idx: &[u32], inv_scale: f64) -> Result<Var> {
    let (qkv, cv, pv) = (qk.value().contiguous()?, c2p.value().contiguous()?, p2c.value().contiguous()?);
    let s = qkv.shape().to_vec();
    let (t, w) = (s[3], cv.shape()[3]);
    if s.len() != 4 || s[2] != t || cv.shape()[..3] != s[..3] || pv.shape() != cv.shape() || idx.len() != t * t {
        return Err(Error::shape("disentangled_scores", format!("qk {:?}, c2p {:?}, p2c {:?}, idx {}", s, cv.shape(), pv.shape(), idx.len())));
    }
    let y = with_float_dtype!(qkv.dtype(), "disentangled_scores", T => scores_forward::<T>(&qkv, &cv, &pv, idx, t, w, inv_scale)?);
    if !Var::needs_grad(&[qk, c2p, p2c]) {
        return Ok(Var::constant(y));
    }
    let idx = idx.to_vec();
    let cshape = cv.shape().to_vec();
    Ok(Var::from_op("disentangled_scores", y, &[qk, c2p, p2c], Box::new(move |g| {
        let g = g.contiguous()?;
        let (dc, dp) = with_float_dtype!(g.dtype(), "disentangled_scores", T => scores_backward::<T>(&g, &idx, t, w, inv_scale, &cshape)?);
        Ok(vec![Some(g.mul_scalar(inv_scale)?), Some(dc), Some(dp)])
    })))
}

fn scores_forward<T: FloatElement>(qk: &Tensor, c2p: &Tensor, p2c: &Tensor, idx: &[u32], t: usize, w: usize, inv_scale: f64) -> Result<Tensor> {
    let (qk_s, c_s, p_s) = (qk.as_slice::<T>()?, c2p.as_slice::<T>()?, p2c.as_slice::<T>()?);
    let inv = T::from_f64(inv_scale);
    let mut out = vec![T::ZERO; qk_s.len()];
    out.par_chunks_mut(t * t).enumerate().for_each(|(bh, o)| {
        let (qk_b, c_b, p_b) = (&qk_s[bh * t * t..], &c_s[bh * t * w..], &p_s[bh * t * w..]);
        for i in 0..t {
            for j in 0..t {
                let r = idx[i * t + j] as usize;
                o[i * t + j] = (qk_b[i * t + j] + c_b[i * w + r] + p_b[j * w + r]) * inv;
            }
        }
    });
    Tensor::from_vec(out, qk.shape())
}

fn scores_backward<T: FloatElement>(g: &Tensor, idx: &[u32], t: usize, w: usize, inv_scale: f64, cshape: &[usize]) -> Result<(Tensor, Tensor)> {
    let gs = g.as_slice::<T>()?;
    let inv = T::from_f64(inv_scale);
    let bh = gs.len() / (t * t).max(1);
    let mut dc = vec![T::ZERO; bh * t * w];
    let mut dp = vec![T::ZERO; bh * t * w];
    dc.par_chunks_mut(t * w).zip(dp.par_chunks_mut(t * w)).enumerate().for_each(|(b, (dcb, dpb))| {
        let gb = &gs[b * t * t..(b + 1) * t * t];
        for i in 0..t {
            for j in 0..t {
                let r = idx[i * t + j] as usize;
                let v = gb[i * t + j] * inv;
                dcb[i * w + r] += v;
                dpb[j * w + r] += v;
            }
        }
    });
    Ok((Tensor::from_vec(dc, cshape)?, Tensor::from_vec(dp, cshape)?))
}

pub struct Deberta {
    config: DebertaConfig,
    pub(super) word_embeddings: Embedding,
    position_embeddings: Option<Embedding>,
    token_type_embeddings: Option<Embedding>,
    emb_norm: LayerNorm,
    rel_embeddings: Var,
    rel_norm: Option<LayerNorm>,
    pub(super) layers: Vec<TransformerLayer>,
}

impl Deberta {
    /// `b` points at the encoder model (`token_rep_layer.bert_layer.model`).
    pub fn new(b: &ParamBuilder, c: &DebertaConfig) -> Result<Deberta> {
        let h = c.dims.hidden_size;
        let emb = b.pp("embeddings");
        let enc = b.pp("encoder");
        let layers = TransformerLayer::stack(&enc, &c.dims, ["query_proj", "key_proj", "value_proj"])?;
        Ok(Deberta {
            config: c.clone(),
            word_embeddings: Embedding::new(&emb.pp("word_embeddings"), c.dims.vocab_size, h, 0.02)?,
            position_embeddings: if c.position_biased_input {
                Some(Embedding::new(&emb.pp("position_embeddings"), c.dims.max_position_embeddings, h, 0.02)?)
            } else {
                None
            },
            token_type_embeddings: if c.dims.type_vocab_size > 0 {
                Some(Embedding::new(&emb.pp("token_type_embeddings"), c.dims.type_vocab_size, h, 0.02)?)
            } else {
                None
            },
            emb_norm: LayerNorm::new(&emb.pp("LayerNorm"), h, c.dims.layer_norm_eps)?,
            rel_embeddings: enc.pp("rel_embeddings").get("weight", &[2 * c.att_span(), h], Init::Normal(0.02))?,
            rel_norm: if c.norm_rel_ebd { Some(LayerNorm::new(&enc.pp("LayerNorm"), h, c.dims.layer_norm_eps)?) } else { None },
            layers,
        })
    }

    /// input_ids [B, T] i64, attention_mask [B, T] f32 → embeddings + every layer [B, T, H].
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor, mode: &Mode) -> Result<EncoderOutput> {
        let c = &self.config;
        let (bsz, t) = (input_ids.shape()[0], input_ids.shape()[1]);
        if t > c.dims.max_position_embeddings && self.position_embeddings.is_some() {
            return Err(Error::Msg(format!("sequence of {t} tokens exceeds max_position_embeddings {}", c.dims.max_position_embeddings)));
        }
        let mut x = self.word_embeddings.forward(input_ids)?;
        if let Some(pe) = &self.position_embeddings {
            let pos = Tensor::from_indices(&(0..t).collect::<Vec<_>>(), &[t])?;
            x = x.add(&pe.forward(&pos)?)?;
        }
        if let Some(te) = &self.token_type_embeddings {
            x = x.add(&te.forward(&Tensor::zeros(&[bsz, t], kogner_tensor::DType::I64))?)?;
        }
        let mask3 = Var::constant(attention_mask.reshape(&[bsz, t, 1])?);
        x = self.emb_norm.forward(&x)?.mul(&mask3)?;
        x = mode.dropout(&x, c.dims.hidden_dropout)?;
        let mut hidden_states = vec![x.clone()];

        let rel = match &self.rel_norm {
            Some(n) => n.forward(&self.rel_embeddings)?,
            None => self.rel_embeddings.clone(),
        };
        let (first_row, rows, idx) = rel_pos_rows(t, c);
        let rel = rel.narrow(0, first_row, rows)?.unsqueeze(0)?;
        let keys = key_mask(attention_mask)?;
        let heads = c.dims.num_heads;
        let d = c.dims.hidden_size / heads;
        // scale = sqrt(d · (1 + |{c2p, p2c}|)), in f32 as HF
        let inv_scale = 1.0 / ((d * 3) as f32).sqrt() as f64;
        for layer in &self.layers {
            let q = split_heads(&layer.query.forward(&x)?, heads)?;
            let k = split_heads(&layer.key.forward(&x)?, heads)?;
            let v = split_heads(&layer.value.forward(&x)?, heads)?;
            // position keys/queries come from the same projections (share_att_key): [h, W, d]
            let rel = mode.dropout(&rel, c.dims.hidden_dropout)?;
            let pk = split_heads(&layer.key.forward(&rel)?, heads)?;
            let pq = split_heads(&layer.query.forward(&rel)?, heads)?;
            let qk = q.matmul(&k.transpose(-2, -1)?)?;
            let c2p = q.matmul(&pk.transpose(-2, -1)?)?;
            let p2c = k.matmul(&pq.transpose(-2, -1)?)?;
            let scores = disentangled_scores(&qk, &c2p, &p2c, &idx, inv_scale)?;
            let probs = mode.dropout(&scores.masked_softmax(&keys, -1)?, c.dims.attention_dropout)?;
            let ctx = merge_heads(&probs.matmul(&v)?)?;
            let attn = layer.attn_out.forward(&ctx, &x, mode)?;
            x = layer.ffn.forward(&attn, mode)?;
            hidden_states.push(x.clone());
        }
        Ok(EncoderOutput { hidden_states })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kogner_autograd::gradcheck::{check_gradients, random_tensor, Tol};

    #[test]
    fn buckets_match_hf_values() {
        // bucket_size 256, max_position 512: identity inside ±128, log buckets beyond;
        // the fixture README: distance 342 → bucket 219.
        assert_eq!(rel_pos_bucket(5, 256, 512), 5);
        assert_eq!(rel_pos_bucket(-127, 256, 512), -127);
        assert_eq!(rel_pos_bucket(128, 256, 512), 128);
        assert_eq!(rel_pos_bucket(342, 256, 512), 219);
        assert_eq!(rel_pos_bucket(-342, 256, 512), -219);
        assert_eq!(rel_pos_bucket(511, 256, 512), 255);
        assert_eq!(rel_pos_bucket(1000, 0, 512), 1000);
    }

    #[test]
    fn fused_scores_equal_literal_gathers_and_have_correct_gradients() {
        let (b, h, t, w) = (2, 2, 3, 5);
        let idx: Vec<u32> = (0..t * t).map(|k| ((k * 7 + 1) % w) as u32).collect();
        let inputs = [random_tensor(&[b, h, t, t], 1, -1.0, 1.0), random_tensor(&[b, h, t, w], 2, -1.0, 1.0), random_tensor(&[b, h, t, w], 3, -1.0, 1.0)];
        let y = disentangled_scores(&Var::constant(inputs[0].clone()), &Var::constant(inputs[1].clone()), &Var::constant(inputs[2].clone()), &idx, 0.5).unwrap();
        let (qk, c, p) = (inputs[0].to_vec::<f64>().unwrap(), inputs[1].to_vec::<f64>().unwrap(), inputs[2].to_vec::<f64>().unwrap());
        let yv = y.value().to_vec::<f64>().unwrap();
        for bh in 0..b * h {
            for i in 0..t {
                for j in 0..t {
                    let r = idx[i * t + j] as usize;
                    let want = (qk[bh * t * t + i * t + j] + c[bh * t * w + i * w + r] + p[bh * t * w + j * w + r]) * 0.5;
                    assert!((yv[bh * t * t + i * t + j] - want).abs() < 1e-15);
                }
            }
        }
        let idx2 = idx.clone();
        let f = move |v: &[Var]| disentangled_scores(&v[0], &v[1], &v[2], &idx2, 0.5);
        check_gradients(&f, &inputs, &[], Tol::default()).unwrap();
    }
}
