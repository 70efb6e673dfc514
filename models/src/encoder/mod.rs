//! Transformer encoders behind GLiNER: DeBERTa-v2/v3 and BERT.

pub mod attention;
pub mod bert;
pub mod deberta;
pub mod mlm_head;

use kogner_autograd::Var;
use kogner_tensor::{Result, Tensor};

use crate::builder::ParamBuilder;
use crate::config::EncoderConfig;
use crate::nn::Mode;
use attention::TransformerLayer;

/// Output of an encoder: the embedding output and every layer's output.
pub struct EncoderOutput {
    /// `hidden_states[0]` = embeddings, `hidden_states[l + 1]` = layer l; each [B, T, H].
    pub hidden_states: Vec<Var>,
}

impl EncoderOutput {
    pub fn last(&self) -> &Var {
        self.hidden_states.last().expect("at least the embeddings")
    }
}

pub enum Encoder {
    Deberta(deberta::Deberta),
    Bert(bert::Bert),
}

impl Encoder {
    pub fn new(b: &ParamBuilder, config: &EncoderConfig) -> Result<Encoder> {
        Ok(match config {
            EncoderConfig::Deberta(c) => Encoder::Deberta(deberta::Deberta::new(b, c)?),
            EncoderConfig::Bert(c) => Encoder::Bert(bert::Bert::new(b, c)?),
        })
    }

    /// Packs every layer's weight matrices for inference; the encoder can
    /// no longer be trained (see [`crate::nn::Linear::pack_for_inference`]).
    pub fn pack_for_inference(&mut self) -> Result<()> {
        let layers = match self {
            Encoder::Deberta(m) => &mut m.layers,
            Encoder::Bert(m) => &mut m.layers,
        };
        layers.iter_mut().try_for_each(TransformerLayer::pack_for_inference)
    }

    /// The input embedding matrix [V, H] (a masked-LM decoder is tied to it).
    pub fn word_embeddings(&self) -> &Var {
        match self {
            Encoder::Deberta(m) => &m.word_embeddings.weight,
            Encoder::Bert(m) => &m.word_embeddings.weight,
        }
    }

    /// input_ids [B, T] (i64), attention_mask [B, T] (f32 0/1) → hidden states.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor, mode: &Mode) -> Result<EncoderOutput> {
        match self {
            Encoder::Deberta(m) => m.forward(input_ids, attention_mask, mode),
            Encoder::Bert(m) => m.forward(input_ids, attention_mask, mode),
        }
    }
}
