//! `kogner init`: a randomly initialised GLiNER model folder of a real
//! model's shape, for benchmarks. What it writes also loads in Python
//! GLiNER (`GLiNER.from_pretrained(DIR)`), so both sides run the same weights.

use std::path::Path;

use kogner_tensor::safetensors_io::write_atomic;
use kogner_tensor::{DType, Error, Result};
use serde_json::{json, Value};

use super::head::head_width_problem;
use super::model::{Gliner, ENCODER_PREFIX};
use crate::builder::{ParamBuilder, TensorMap};
use crate::config::GlinerConfig;

/// The shapes `kogner init` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// DeBERTa-v3-small: 768 hidden, 6 layers, 12 heads; GLiNER hidden 768.
    DebertaV3Small,
    /// DeBERTa-v3-large (gliner_large-v2.5 / KoGNER): 1024, 24 layers, 16 heads; GLiNER hidden 512.
    DebertaV3Large,
    /// The real all-MiniLM-L6-v2 encoder under a random GLiNER head of 384
    /// (its own width, so no projection; GLiNER's default would be 512).
    MiniLm,
}

impl Preset {
    pub fn from_name(name: &str) -> Result<Preset> {
        match name {
            "deberta-v3-small" => Ok(Preset::DebertaV3Small),
            "deberta-v3-large" => Ok(Preset::DebertaV3Large),
            "minilm" => Ok(Preset::MiniLm),
            other => Err(Error::Msg(format!("--encoder {other}: expected deberta-v3-small, deberta-v3-large or minilm"))),
        }
    }
}

/// DeBERTa-v3's real vocabulary size; the GLiNER tokens come after it.
const DEBERTA_V3_VOCAB: usize = 128_100;

/// Inputs `kogner init` reads: a tokenizer folder with GLiNER's added
/// tokens, and for MiniLM the pretrained encoder.
pub struct InitSources<'a> {
    /// Folder with tokenizer.json + tokenizer_config.json. `None` for
    /// MiniLM: the encoder folder's own tokenizer, with GLiNER's tokens added.
    pub tokenizer_dir: Option<&'a Path>,
    /// all-MiniLM-L6-v2 folder (config.json, model.safetensors), MiniLM only.
    pub minilm_dir: Option<&'a Path>,
}

/// The tokens GLiNER adds to its encoder's tokenizer, in its order.
pub const GLINER_ADDED_TOKENS: [&str; 3] = ["[FLERT]", "<<ENT>>", "<<SEP>>"];

/// Add GLiNER's tokens to a tokenizer.json (as `tokenizer.add_tokens` +
/// special flags do in GLiNER): new ids after the highest existing one;
/// tokens already present are kept.
pub fn add_gliner_tokens(tok: &mut Value, path: &Path) -> Result<()> {
    let vocab_len = tok["model"]["vocab"].as_object().map(|v| v.len()).unwrap_or(0) as u64;
    let added = tok["added_tokens"].as_array_mut().ok_or_else(|| Error::file(path, "tokenizer.json has no added_tokens list"))?;
    let mut next = added.iter().filter_map(|t| t["id"].as_u64()).max().map_or(vocab_len, |m| (m + 1).max(vocab_len));
    for token in GLINER_ADDED_TOKENS {
        if added.iter().any(|t| t["content"] == token) {
            continue;
        }
        added.push(json!({"id": next, "content": token, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}));
        next += 1;
    }
    Ok(())
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::file(path, format!("invalid JSON: {e}")))
}

fn deberta_encoder_config(hidden: usize, layers: usize, heads: usize, inner: usize, vocab: usize) -> Value {
    json!({
        "model_type": "deberta-v2", "architectures": null, "hidden_size": hidden, "num_hidden_layers": layers,
        "num_attention_heads": heads, "intermediate_size": inner, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 512,
        "type_vocab_size": 0, "initializer_range": 0.02, "layer_norm_eps": 1e-7, "relative_attention": true,
        "max_relative_positions": -1, "pad_token_id": 0, "position_biased_input": false,
        "pos_att_type": ["p2c", "c2p"], "position_buckets": 256, "norm_rel_ebd": "layer_norm",
        "share_att_key": true, "pooler_dropout": 0, "pooler_hidden_act": "gelu", "pooler_hidden_size": hidden,
        "vocab_size": vocab, "legacy": true
    })
}

fn gliner_config(encoder: Value, hidden: usize, vocab: usize, class_token: usize, model_name: &str) -> Value {
    json!({
        "model_name": model_name, "name": "gliner", "encoder_config": encoder, "hidden_size": hidden,
        "max_width": 12, "max_len": 384, "dropout": 0.4, "span_mode": "markerV0", "subtoken_pooling": "first",
        "words_splitter_type": "whitespace", "ent_token": "<<ENT>>", "sep_token": "<<SEP>>",
        "class_token_index": class_token, "vocab_size": vocab, "embed_ent_token": true, "fine_tune": true,
        "fuse_layers": false, "num_rnn_layers": 1, "num_post_fusion_layers": 1, "post_fusion_schema": "",
        "max_types": 25, "max_neg_type_ratio": 1, "neg_spans_ratio": 1.0, "labels_encoder": null,
        "labels_decoder": null, "relations_layer": null, "span_encoder_config": null, "id_to_classes": null,
        "represent_spans": false, "token_loss_coef": 1.0, "span_loss_coef": 1.0, "model_type": null,
        "precomputed_prompts_mode": null
    })
}

/// The id of `token` in a tokenizer.json (added tokens or the vocabulary).
fn token_id(tokenizer_json: &Value, token: &str) -> Option<usize> {
    let added = tokenizer_json["added_tokens"].as_array()?;
    added.iter().find(|t| t["content"] == token).and_then(|t| t["id"].as_u64()).map(|v| v as usize)
}

/// Write a GLiNER folder of `preset`'s shape into `out` (created if needed).
/// `hidden_size` replaces the preset's GLiNER head width; where it differs
/// from the encoder's, GLiNER's `token_rep_layer.projection` maps between
/// them (random, like the rest of the head).
pub fn init_model(preset: Preset, sources: &InitSources, out: &Path, seed: u64, hidden_size: Option<usize>) -> Result<GlinerConfig> {
    if let Some(problem) = hidden_size.and_then(head_width_problem) {
        return Err(Error::Msg(format!("--hidden-size {problem}")));
    }
    let tokenizer_dir = match (sources.tokenizer_dir, preset, sources.minilm_dir) {
        (Some(dir), _, _) => dir,
        (None, Preset::MiniLm, Some(dir)) => dir,
        _ => return Err(Error::Msg(format!("{preset:?}: a tokenizer folder is required"))),
    };
    let tok_path = tokenizer_dir.join("tokenizer.json");
    let mut tok = read_json(&tok_path)?;
    add_gliner_tokens(&mut tok, &tok_path)?;
    let tok_text = serde_json::to_string(&tok).map_err(|e| Error::Msg(e.to_string()))?;
    let class_token = token_id(&tok, "<<ENT>>").ok_or_else(|| Error::file(&tok_path, "no <<ENT>> added token (not a GLiNER tokenizer)"))?;
    let (config_json, builder) = match preset {
        Preset::DebertaV3Small | Preset::DebertaV3Large => {
            // keep the real vocabulary's 128,100 rows (+ GLiNER's 3) so memory is realistic
            let vocab = DEBERTA_V3_VOCAB + 3;
            if class_token >= vocab {
                return Err(Error::file(&tok_path, format!("<<ENT>> id {class_token} is beyond the {vocab}-row embedding")));
            }
            let (enc, hidden, name) = match preset {
                Preset::DebertaV3Small => (deberta_encoder_config(768, 6, 12, 3072, vocab), 768, "kogner-init/deberta-v3-small"),
                _ => (deberta_encoder_config(1024, 24, 16, 4096, vocab), 512, "kogner-init/deberta-v3-large"),
            };
            (gliner_config(enc, hidden_size.unwrap_or(hidden), vocab, class_token, name), ParamBuilder::random(seed))
        }
        Preset::MiniLm => {
            let dir = sources.minilm_dir.ok_or_else(|| Error::Msg("minilm: the all-MiniLM-L6-v2 folder is required".into()))?;
            let (enc, source) = minilm_encoder(dir, &tok)?;
            let vocab = enc["vocab_size"].as_u64().unwrap_or(0) as usize;
            (gliner_config(enc, hidden_size.unwrap_or(384), vocab, class_token, "sentence-transformers/all-MiniLM-L6-v2"), ParamBuilder::from_source_or_random(Box::new(source), seed))
        }
    };
    let config = GlinerConfig::from_value(&config_json, "generated gliner_config.json")?;
    let model = Gliner::build(config.clone(), &builder)?;
    std::fs::create_dir_all(out).map_err(|e| Error::file(out, e))?;
    let pretty = serde_json::to_string_pretty(&config_json).map_err(|e| Error::Msg(e.to_string()))?;
    write_atomic(out.join("gliner_config.json"), pretty.as_bytes())?;
    model.params.save_safetensors(out.join("model.safetensors"), DType::F32)?;
    write_atomic(out.join("tokenizer.json"), tok_text.as_bytes())?;
    let tc = tokenizer_dir.join("tokenizer_config.json");
    if tc.is_file() {
        let bytes = std::fs::read(&tc).map_err(|e| Error::file(&tc, e))?;
        write_atomic(out.join("tokenizer_config.json"), &bytes)?;
    }
    Ok(config)
}

/// MiniLM's encoder config (vocabulary grown by GLiNER's added tokens) and
/// its weights renamed into the GLiNER state dict, new rows random.
fn minilm_encoder(dir: &Path, tok: &Value) -> Result<(Value, TensorMap)> {
    let mut enc = read_json(&dir.join("config.json"))?;
    let added_max = tok["added_tokens"].as_array().map(|a| a.iter().filter_map(|t| t["id"].as_u64()).max().unwrap_or(0)).unwrap_or(0);
    let base_vocab = enc["vocab_size"].as_u64().unwrap_or(0);
    let vocab = base_vocab.max(added_max + 1);
    enc["vocab_size"] = json!(vocab);
    let weights = kogner_tensor::safetensors_io::SafeTensorsFile::open(dir.join("model.safetensors"))?;
    let mut tensors = std::collections::HashMap::new();
    for name in weights.names() {
        if name == "embeddings.position_ids" {
            continue;
        }
        let mut t = weights.get(&name)?.to_dtype(DType::F32)?;
        if name == "embeddings.word_embeddings.weight" && (t.shape()[0] as u64) < vocab {
            // GLiNER's added tokens get fresh rows (HF resize_token_embeddings draws N(0, 0.02))
            let extra = (vocab as usize) - t.shape()[0];
            let mut rng = kogner_tensor::Rng::new(vocab);
            let rows: Vec<f32> = (0..extra * t.shape()[1]).map(|_| (rng.normal() * 0.02) as f32).collect();
            let rows = kogner_tensor::Tensor::from_vec(rows, &[extra, t.shape()[1]])?;
            t = kogner_tensor::Tensor::cat(&[&t, &rows], 0)?;
        }
        tensors.insert(format!("{ENCODER_PREFIX}.{name}"), t);
    }
    Ok((enc, TensorMap { name: dir.join("model.safetensors").display().to_string(), tensors }))
}
