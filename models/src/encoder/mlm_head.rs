//! BERT's masked-language-model head (HF `BertOnlyMLMHead`, state-dict
//! names `cls.predictions.…`): transform = dense → GELU → LayerNorm, then a
//! decoder tied to the encoder's word embeddings plus a per-token bias.
//!
//! Used to continue an encoder's pretraining on a corpus's own text
//! (`kogner mlm`). Sentence-embedding checkpoints such as all-MiniLM-L6-v2
//! ship no head, so it starts from its initialisation there.

use kogner_autograd::Var;
use kogner_tensor::Result;

use crate::builder::{Init, ParamBuilder};
use crate::nn::{LayerNorm, Linear};

/// The prefix of the head's parameters in a `BertForMaskedLM` state dict.
pub const MLM_HEAD_PREFIX: &str = "cls.predictions";

pub struct MlmHead {
    dense: Linear,
    norm: LayerNorm,
    /// `cls.predictions.bias` [V].
    bias: Var,
}

impl MlmHead {
    /// `b` points at [`MLM_HEAD_PREFIX`]; a missing bias starts at 0 (as HF).
    pub fn new(b: &ParamBuilder, hidden: usize, vocab: usize, layer_norm_eps: f64) -> Result<MlmHead> {
        let t = b.pp("transform");
        Ok(MlmHead {
            dense: Linear::new(&t.pp("dense"), hidden, hidden, true)?,
            norm: LayerNorm::new(&t.pp("LayerNorm"), hidden, layer_norm_eps)?,
            bias: b.get("bias", &[vocab], Init::Zeros)?,
        })
    }

    /// hidden [M, H] (the masked positions' last hidden states),
    /// word_embeddings [V, H] → logits [M, V].
    pub fn forward(&self, hidden: &Var, word_embeddings: &Var) -> Result<Var> {
        let h = self.norm.forward(&self.dense.forward(hidden)?.gelu()?)?;
        h.linear(word_embeddings, Some(&self.bias))
    }
}
