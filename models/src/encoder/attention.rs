//! Pieces shared by the encoders' self-attention and feed-forward blocks.

use kogner_autograd::Var;
use kogner_tensor::Result;

use crate::builder::ParamBuilder;
use crate::config::EncoderDims;
use crate::nn::{LayerNorm, Linear, Mode};

/// [B, T, h·d] → [B, h, T, d] (a view; the GEMM reads the strides).
pub fn split_heads(x: &Var, heads: usize) -> Result<Var> {
    let s = x.shape();
    let (b, t, hd) = (s[0], s[1], s[2]);
    x.reshape(&[b, t, heads, hd / heads])?.permute(&[0, 2, 1, 3])
}

/// [B, h, T, d] → [B, T, h·d].
pub fn merge_heads(x: &Var) -> Result<Var> {
    let s = x.shape();
    let (b, h, t, d) = (s[0], s[1], s[2], s[3]);
    x.permute(&[0, 2, 1, 3])?.contiguous()?.reshape(&[b, t, h * d])
}

/// `LayerNorm(dense(x) + residual)`: the output sub-block after attention
/// and after the feed-forward, as HF's `*SelfOutput` / `*Output`.
pub struct DenseResidualNorm {
    pub dense: Linear,
    pub norm: LayerNorm,
    pub dropout: f64,
}

impl DenseResidualNorm {
    pub fn new(b: &ParamBuilder, d_in: usize, d_out: usize, eps: f64, dropout: f64) -> Result<Self> {
        Ok(DenseResidualNorm {
            dense: Linear::new(&b.pp("dense"), d_in, d_out, true)?,
            norm: LayerNorm::new(&b.pp("LayerNorm"), d_out, eps)?,
            dropout,
        })
    }
    pub fn forward(&self, x: &Var, residual: &Var, mode: &Mode) -> Result<Var> {
        let y = mode.dropout(&self.dense.forward(x)?, self.dropout)?;
        self.norm.forward(&y.add(residual)?)
    }
}

/// The position-wise feed-forward: GELU(intermediate(x)) → output + residual → norm.
pub struct FeedForward {
    pub intermediate: Linear,
    pub output: DenseResidualNorm,
}

impl FeedForward {
    pub fn new(b: &ParamBuilder, hidden: usize, inner: usize, eps: f64, dropout: f64) -> Result<Self> {
        Ok(FeedForward {
            intermediate: Linear::new(&b.pp("intermediate").pp("dense"), hidden, inner, true)?,
            output: DenseResidualNorm::new(&b.pp("output"), inner, hidden, eps, dropout)?,
        })
    }
    /// x [B, T, H] → [B, T, H]
    pub fn forward(&self, x: &Var, mode: &Mode) -> Result<Var> {
        let h = self.intermediate.forward(x)?.gelu()?;
        self.output.forward(&h, x, mode)
    }
}

/// Attention mask over keys, broadcastable to scores [B, h, T, T]: [B, 1, 1, T].
pub fn key_mask(attention_mask: &kogner_tensor::Tensor) -> Result<kogner_tensor::Tensor> {
    let s = attention_mask.shape();
    attention_mask.reshape(&[s[0], 1, 1, s[1]])
}

/// One post-LN transformer layer's weights: Q/K/V projections, attention
/// output block and feed-forward (names as in HF state dicts).
pub struct TransformerLayer {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub attn_out: DenseResidualNorm,
    pub ffn: FeedForward,
}

impl TransformerLayer {
    /// `lb` points at `encoder.layer.N`; `qkv_names` are the projections'
    /// names, `["query", "key", "value"]` (BERT) or `["query_proj", …]` (DeBERTa).
    pub fn new(lb: &ParamBuilder, d: &EncoderDims, qkv_names: [&str; 3]) -> Result<Self> {
        let (att, h) = (lb.pp("attention"), d.hidden_size);
        let sa = att.pp("self");
        Ok(TransformerLayer {
            query: Linear::new(&sa.pp(qkv_names[0]), h, h, true)?,
            key: Linear::new(&sa.pp(qkv_names[1]), h, h, true)?,
            value: Linear::new(&sa.pp(qkv_names[2]), h, h, true)?,
            attn_out: DenseResidualNorm::new(&att.pp("output"), h, h, d.layer_norm_eps, d.hidden_dropout)?,
            ffn: FeedForward::new(lb, h, d.intermediate_size, d.layer_norm_eps, d.hidden_dropout)?,
        })
    }

    /// Packs the six weight matrices for inference ([`Linear::pack_for_inference`]).
    pub fn pack_for_inference(&mut self) -> Result<()> {
        for linear in [&mut self.query, &mut self.key, &mut self.value, &mut self.attn_out.dense, &mut self.ffn.intermediate, &mut self.ffn.output.dense] {
            linear.pack_for_inference()?;
        }
        Ok(())
    }

    /// `d.num_layers` layers under `encoder.layer.{0..}`.
    pub fn stack(encoder: &ParamBuilder, d: &EncoderDims, qkv_names: [&str; 3]) -> Result<Vec<Self>> {
        (0..d.num_layers).map(|l| Self::new(&encoder.pp("layer").pp(l.to_string()), d, qkv_names)).collect()
    }
}
