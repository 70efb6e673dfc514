//! A GLiNER model folder as Hugging Face hosts it: `gliner_config.json`,
//! `model.safetensors` or `pytorch_model.bin`, `tokenizer.json`.

use std::path::Path;

use kogner_autograd::{ParamStore, Var};
use kogner_tensor::{Result, Tensor};

use super::head::{GlinerHead, HeadInputs, HeadOutput};
use crate::builder::{open_weights, weight_file, ParamBuilder, TensorSource};
use crate::config::GlinerConfig;
use crate::encoder::{Encoder, EncoderOutput};
use crate::nn::Mode;

/// Where the encoder's tensors live inside a GLiNER state dict.
pub const ENCODER_PREFIX: &str = "token_rep_layer.bert_layer.model";

pub struct Gliner {
    pub config: GlinerConfig,
    pub encoder: Encoder,
    pub head: GlinerHead,
    pub params: ParamStore,
}

/// Encoder inputs for a batch: input_ids [B, T] (i64), attention_mask [B, T] (f32).
pub struct EncoderInputs {
    pub input_ids: Tensor,
    pub attention_mask: Tensor,
}

pub struct GlinerOutput {
    pub encoder: EncoderOutput,
    pub head: HeadOutput,
}

impl Gliner {
    /// Build from a config and a parameter builder (a weight source or random init).
    pub fn build(config: GlinerConfig, b: &ParamBuilder) -> Result<Gliner> {
        let encoder = Encoder::new(&b.pp(ENCODER_PREFIX), &config.encoder)?;
        let head = GlinerHead::new(b, &config)?;
        Ok(Gliner { config, encoder, head, params: b.params() })
    }

    /// Load a model folder. Every tensor the config implies must be present
    /// with its shape; extra tensors (e.g. an unused pooler) are ignored.
    pub fn load(dir: &Path) -> Result<Gliner> {
        let config = GlinerConfig::from_file(&dir.join("gliner_config.json"))?;
        let weights = weight_file(dir)?;
        Self::from_source(config, open_weights(&weights)?)
    }

    pub fn from_source(config: GlinerConfig, source: Box<dyn TensorSource>) -> Result<Gliner> {
        Self::build(config, &ParamBuilder::from_source(source))
    }

    /// The full forward pass; logits are `output.head.logits` [B, N, K, C].
    pub fn forward(&self, enc: &EncoderInputs, head: &HeadInputs, mode: &Mode) -> Result<GlinerOutput> {
        let encoder = self.encoder.forward(&enc.input_ids, &enc.attention_mask, mode)?;
        let head = self.head.forward(encoder.last(), head, mode)?;
        Ok(GlinerOutput { encoder, head })
    }

    /// Inference only: packs the encoder's and head's weight matrices once in the GEMM
    /// kernel's layout (no per-call packing; same outputs bit for bit) and
    /// drops the parameter store, so the unpacked copies are freed. The
    /// model can no longer be trained or saved.
    pub fn pack_for_inference(&mut self) -> Result<()> {
        self.encoder.pack_for_inference()?;
        self.head.pack_for_inference()?;
        self.params = ParamStore::new();
        Ok(())
    }

    /// All trainable parameters by state-dict name.
    pub fn parameters(&self) -> impl Iterator<Item = (&String, &Var)> {
        self.params.iter()
    }
}

