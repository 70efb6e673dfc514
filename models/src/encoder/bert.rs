//! BERT encoder (HF `modeling_bert.py`): absolute positions, scaled
//! dot-product attention, post-LN; the MiniLM sentence encoder is one.

use kogner_tensor::{DType, Error, Result, Tensor};

use super::attention::{key_mask, merge_heads, split_heads, TransformerLayer};
use super::EncoderOutput;
use crate::builder::ParamBuilder;
use crate::config::BertConfig;
use crate::nn::{Embedding, LayerNorm, Mode};

pub struct Bert {
    config: BertConfig,
    pub(super) word_embeddings: Embedding,
    position_embeddings: Embedding,
    token_type_embeddings: Embedding,
    emb_norm: LayerNorm,
    pub(super) layers: Vec<TransformerLayer>,
}

impl Bert {
    /// `b` points at the model root (tensor names `embeddings.…`, `encoder.layer.N.…`).
    pub fn new(b: &ParamBuilder, c: &BertConfig) -> Result<Bert> {
        let h = c.dims.hidden_size;
        let emb = b.pp("embeddings");
        let layers = TransformerLayer::stack(&b.pp("encoder"), &c.dims, ["query", "key", "value"])?;
        Ok(Bert {
            config: c.clone(),
            word_embeddings: Embedding::new(&emb.pp("word_embeddings"), c.dims.vocab_size, h, 0.02)?,
            position_embeddings: Embedding::new(&emb.pp("position_embeddings"), c.dims.max_position_embeddings, h, 0.02)?,
            token_type_embeddings: Embedding::new(&emb.pp("token_type_embeddings"), c.dims.type_vocab_size.max(1), h, 0.02)?,
            emb_norm: LayerNorm::new(&emb.pp("LayerNorm"), h, c.dims.layer_norm_eps)?,
            layers,
        })
    }

    /// input_ids [B, T] i64, attention_mask [B, T] f32 → embeddings + every layer [B, T, H].
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor, mode: &Mode) -> Result<EncoderOutput> {
        let c = &self.config;
        let (bsz, t) = (input_ids.shape()[0], input_ids.shape()[1]);
        if t > c.dims.max_position_embeddings {
            return Err(Error::Msg(format!("sequence of {t} tokens exceeds BERT's max_position_embeddings {}", c.dims.max_position_embeddings)));
        }
        let pos = Tensor::from_indices(&(0..t).collect::<Vec<_>>(), &[t])?;
        // token_type_ids are never passed by GLiNER: type 0 everywhere
        let types = Tensor::zeros(&[bsz, t], DType::I64);
        let x = self
            .word_embeddings
            .forward(input_ids)?
            .add(&self.position_embeddings.forward(&pos)?)?
            .add(&self.token_type_embeddings.forward(&types)?)?;
        let mut x = mode.dropout(&self.emb_norm.forward(&x)?, c.dims.hidden_dropout)?;
        let mut hidden_states = vec![x.clone()];
        let keys = key_mask(attention_mask)?;
        let heads = c.dims.num_heads;
        let scale = 1.0 / ((c.dims.hidden_size / heads) as f64).sqrt();
        for layer in &self.layers {
            let q = split_heads(&layer.query.forward(&x)?, heads)?;
            let k = split_heads(&layer.key.forward(&x)?, heads)?;
            let v = split_heads(&layer.value.forward(&x)?, heads)?;
            let scores = q.matmul(&k.transpose(-2, -1)?)?.mul_scalar(scale)?;
            let probs = mode.dropout(&scores.masked_softmax(&keys, -1)?, c.dims.attention_dropout)?;
            let ctx = merge_heads(&probs.matmul(&v)?)?;
            let attn = layer.attn_out.forward(&ctx, &x, mode)?;
            x = layer.ffn.forward(&attn, mode)?;
            hidden_states.push(x.clone());
        }
        Ok(EncoderOutput { hidden_states })
    }
}
