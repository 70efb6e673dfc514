//! Z: sentence embeddings of node names (SPEC §3.2, §5), as
//! sentence-transformers computes them for all-MiniLM-L6-v2: strip the
//! text, tokenise with `[CLS] … [SEP]` truncated to `max_seq_length`
//! (`sentence_bert_config.json`), pad per batch, run the encoder, mean over
//! the attention-mask tokens, L2-normalise.
//!
//! Texts are sorted by token count and batched so each batch pads to
//! nearly its own length (names are short; a few long ones must not make
//! every batch 256 wide). Results come back in input order and do not
//! depend on the batching (padding is masked out of attention and pooling).

use std::path::Path;

use kogner_autograd::no_grad;
use kogner_tensor::{Error, Result, Tensor};
use serde_json::Value;
use tokenizers::{Tokenizer, TruncationParams};

use crate::builder::{open_weights, weight_file, ParamBuilder};
use crate::config::EncoderConfig;
use crate::encoder::Encoder;
use crate::nn::Mode;

/// sentence-transformers' fallback when `sentence_bert_config.json` has no
/// `max_seq_length` (it then uses the tokenizer's limit; MiniLM's is 256).
const DEFAULT_MAX_SEQ_LENGTH: usize = 256;

/// A frozen encoder + tokenizer that embeds sentences.
pub struct SentenceEncoder {
    encoder: Encoder,
    tokenizer: Tokenizer,
    config: EncoderConfig,
    max_seq_length: usize,
    do_lower_case: bool,
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::file(path, format!("invalid JSON: {e}")))
}

impl SentenceEncoder {
    /// Loads a sentence-transformers folder: `config.json`, `model.safetensors`
    /// (or `pytorch_model.bin`), `tokenizer.json`, and the optional
    /// `sentence_bert_config.json` (`max_seq_length`, `do_lower_case`).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<SentenceEncoder> {
        let dir = dir.as_ref();
        let config = EncoderConfig::from_hf_file(&dir.join("config.json"))?;

        let st_path = dir.join("sentence_bert_config.json");
        let (max_seq_length, do_lower_case) = if st_path.is_file() {
            let v = read_json(&st_path)?;
            let max = match v.get("max_seq_length") {
                None | Some(Value::Null) => DEFAULT_MAX_SEQ_LENGTH,
                Some(m) => m.as_u64().map(|m| m as usize).ok_or_else(|| Error::file(&st_path, format!("field `max_seq_length`: expected an integer, got {m}")))?,
            };
            (max, v.get("do_lower_case").and_then(Value::as_bool).unwrap_or(false))
        } else {
            (DEFAULT_MAX_SEQ_LENGTH, false)
        };
        if max_seq_length < 3 || max_seq_length > config.max_tokens() {
            return Err(Error::file(&st_path, format!("max_seq_length {max_seq_length} must be in 3..={}", config.max_tokens())));
        }

        let mut encoder = Encoder::new(&ParamBuilder::from_source(open_weights(&weight_file(dir)?)?), &config)?;
        // Frozen: weights packed once for the GEMM.
        encoder.pack_for_inference()?;

        let tok_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| Error::file(&tok_path, e))?;
        // why: MiniLM's tokenizer.json pads and truncates to 128; we pad per
        // batch ourselves and truncate where sentence-transformers does.
        let truncation = TruncationParams { max_length: max_seq_length, ..Default::default() };
        tokenizer.with_truncation(Some(truncation)).map_err(|e| Error::file(&tok_path, e))?;
        tokenizer.with_padding(None);
        Ok(SentenceEncoder { encoder, tokenizer, config, max_seq_length, do_lower_case })
    }

    /// Width of the embeddings.
    pub fn dim(&self) -> usize {
        self.config.hidden_size()
    }

    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// Token ids (special tokens included, truncated) of one text.
    fn token_ids(&self, text: &str) -> Result<Vec<u32>> {
        let text = text.trim();
        let text = if self.do_lower_case { text.to_lowercase() } else { text.to_string() };
        let enc = self.tokenizer.encode(text, true).map_err(|e| Error::Msg(format!("tokenizer: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Embeds `texts` → f32 [N, dim], rows in input order, each of L2 norm 1
    /// (or 0 for a text with no tokens at all). `batch_size` texts per
    /// forward pass; `progress(done, total)` after each batch.
    pub fn embed_with_progress(&self, texts: &[&str], batch_size: usize, progress: &mut dyn FnMut(usize, usize)) -> Result<Tensor> {
        if batch_size == 0 {
            return Err(Error::Msg("sentence encoder: batch size must be positive".into()));
        }
        let ids: Vec<Vec<u32>> = texts.iter().map(|t| self.token_ids(t)).collect::<Result<_>>()?;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| ids[i].len()); // stable: deterministic batches
        let dim = self.dim();
        let mut out = vec![0f32; texts.len() * dim];
        let mut done = 0;
        for batch in order.chunks(batch_size) {
            let rows: Vec<&[u32]> = batch.iter().map(|&i| ids[i].as_slice()).collect();
            let pooled = self.embed_batch(&rows)?;
            for (k, &i) in batch.iter().enumerate() {
                out[i * dim..(i + 1) * dim].copy_from_slice(&pooled[k * dim..(k + 1) * dim]);
            }
            done += batch.len();
            progress(done, texts.len());
        }
        Tensor::from_vec(out, &[texts.len(), dim])
    }

    /// [`Self::embed_with_progress`] with batches of 64 and no progress.
    pub fn embed(&self, texts: &[&str]) -> Result<Tensor> {
        self.embed_with_progress(texts, 64, &mut |_, _| {})
    }

    /// Token-id rows (unpadded) → mean-pooled, normalised rows, flat [B·dim].
    fn embed_batch(&self, rows: &[&[u32]]) -> Result<Vec<f32>> {
        let (b, dim) = (rows.len(), self.dim());
        let t = rows.iter().map(|r| r.len()).max().unwrap_or(0).max(1);
        let mut input = vec![0i64; b * t];
        let mut mask = vec![0f32; b * t];
        for (i, r) in rows.iter().enumerate() {
            for (j, &id) in r.iter().enumerate() {
                input[i * t + j] = id as i64;
                mask[i * t + j] = 1.0;
            }
        }
        let input = Tensor::from_vec(input, &[b, t])?;
        let mask_t = Tensor::from_vec(mask.clone(), &[b, t])?;
        let hidden = no_grad(|| self.encoder.forward(&input, &mask_t, &Mode::inference()).map(|o| o.last().value()))?;
        let hidden = hidden.contiguous()?.to_vec::<f32>()?; // [B, T, dim]
        let mut out = vec![0f32; b * dim];
        for i in 0..b {
            let row = &mut out[i * dim..(i + 1) * dim];
            let mut count = 0f32;
            for j in 0..t {
                let m = mask[i * t + j];
                if m > 0.0 {
                    count += m;
                    let h = &hidden[(i * t + j) * dim..(i * t + j + 1) * dim];
                    row.iter_mut().zip(h).for_each(|(o, &x)| *o += x);
                }
            }
            // sentence-transformers: sum / clamp(count, 1e-9), then F.normalize (eps 1e-12)
            let count = count.max(1e-9);
            row.iter_mut().for_each(|o| *o /= count);
            let norm = row.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>().sqrt().max(1e-12) as f32;
            row.iter_mut().for_each(|o| *o /= norm);
        }
        Ok(out)
    }
}
