//! `gliner_config.json` and its embedded encoder config, validated: a
//! setting kogner does not implement is an error naming the field, never a
//! silently different model.

use std::path::Path;

use kogner_tensor::{Error, Result};
use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
pub struct GlinerConfig {
    pub hidden_size: usize,
    pub max_width: usize,
    pub max_len: usize,
    pub class_token_index: usize,
    pub vocab_size: usize,
    pub dropout: f64,
    pub ent_token: String,
    pub sep_token: String,
    pub model_name: String,
    /// kogner's own key: the head adds a word-shape embedding to the word
    /// vectors (see `gliner::word_shape`). Absent in GLiNER's configs: false.
    pub word_shape: bool,
    /// GLiNER's `subtoken_pooling`: which sub-tokens make a word's vector.
    pub subtoken_pooling: SubtokenPooling,
    pub encoder: EncoderConfig,
}

/// How a word's vector is pooled from its sub-tokens' encoder outputs.
/// GLiNER 0.2.x always pools the first sub-token (its `words_mask`); its
/// config key `subtoken_pooling` is the one GLiNER 0.1.x handed to flair's
/// word embeddings, whose `first` / `last` / `mean` kogner implements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SubtokenPooling {
    #[default]
    First,
    Last,
    Mean,
}

impl SubtokenPooling {
    pub const ALL: [SubtokenPooling; 3] = [SubtokenPooling::First, SubtokenPooling::Last, SubtokenPooling::Mean];

    /// The name in `gliner_config.json` (and `--subtoken-pooling`).
    pub fn name(self) -> &'static str {
        match self {
            SubtokenPooling::First => "first",
            SubtokenPooling::Last => "last",
            SubtokenPooling::Mean => "mean",
        }
    }
}

impl std::str::FromStr for SubtokenPooling {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|p| p.name()).collect();
            format!("`{s}` is not supported (kogner pools words by {})", names.join(" / "))
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum EncoderConfig {
    Deberta(DebertaConfig),
    Bert(BertConfig),
}

impl EncoderConfig {
    /// A Hugging Face encoder folder's own `config.json` (BERT or DeBERTa-v2/v3).
    pub fn from_hf_file(path: &Path) -> Result<EncoderConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| Error::file(path, format!("invalid JSON: {e}")))?;
        encoder_config(&Fields { file: &path.display().to_string(), obj: &v, prefix: "" })
    }

    pub fn dims(&self) -> &EncoderDims {
        match self {
            EncoderConfig::Deberta(c) => &c.dims,
            EncoderConfig::Bert(c) => &c.dims,
        }
    }
    pub fn dims_mut(&mut self) -> &mut EncoderDims {
        match self {
            EncoderConfig::Deberta(c) => &mut c.dims,
            EncoderConfig::Bert(c) => &mut c.dims,
        }
    }
    pub fn hidden_size(&self) -> usize {
        self.dims().hidden_size
    }
    pub fn vocab_size(&self) -> usize {
        self.dims().vocab_size
    }
    /// Longest sub-token sequence the encoder accepts (absolute positions
    /// for BERT; DeBERTa is relative but its tokenizers cap at 512 too).
    pub fn max_tokens(&self) -> usize {
        self.dims().max_position_embeddings
    }
}

/// What every BERT-family encoder config has.
#[derive(Clone, Debug, PartialEq)]
pub struct EncoderDims {
    pub hidden_size: usize,
    pub hidden_dropout: f64,
    pub attention_dropout: f64,
    pub num_layers: usize,
    pub num_heads: usize,
    pub intermediate_size: usize,
    pub vocab_size: usize,
    pub layer_norm_eps: f64,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub pad_token_id: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DebertaConfig {
    pub dims: EncoderDims,
    /// `max_relative_positions`, with −1 resolved to `max_position_embeddings`.
    pub max_relative_positions: usize,
    /// 0 when bucketing is off.
    pub position_buckets: usize,
    pub norm_rel_ebd: bool,
    pub position_biased_input: bool,
}

impl DebertaConfig {
    /// Rows on each side of the relative-embedding table: `span`.
    pub fn att_span(&self) -> usize {
        if self.position_buckets > 0 {
            self.position_buckets
        } else {
            self.max_relative_positions
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct BertConfig {
    pub dims: EncoderDims,
}

/// Field access with errors that name the file and field.
struct Fields<'a> {
    file: &'a str,
    obj: &'a Value,
    prefix: &'a str,
}

impl<'a> Fields<'a> {
    fn err(&self, key: &str, msg: impl std::fmt::Display) -> Error {
        Error::Msg(format!("{}: field `{}{key}`: {msg}", self.file, self.prefix))
    }
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }
    fn usize(&self, key: &str) -> Result<usize> {
        let v = self.get(key).ok_or_else(|| self.err(key, "missing"))?;
        v.as_u64().map(|x| x as usize).ok_or_else(|| self.err(key, format!("expected a non-negative integer, got {v}")))
    }
    fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        if self.get(key).is_some() {
            self.usize(key)
        } else {
            Ok(default)
        }
    }
    fn i64_or(&self, key: &str, default: i64) -> Result<i64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_i64().ok_or_else(|| self.err(key, format!("expected an integer, got {v}"))),
        }
    }
    fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| self.err(key, format!("expected a number, got {v}"))),
        }
    }
    fn str_or(&self, key: &str, default: &'a str) -> Result<&'a str> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_str().ok_or_else(|| self.err(key, format!("expected a string, got {v}"))),
        }
    }
    fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.err(key, format!("expected true/false, got {v}"))),
        }
    }
    /// The field must be `want` (or absent when `want` is the default).
    fn require_str(&self, key: &str, default: &str, want: &str, why: &str) -> Result<()> {
        let got = self.str_or(key, default)?;
        if got != want {
            return Err(self.err(key, format!("`{got}` is not supported ({why})")));
        }
        Ok(())
    }
}

impl GlinerConfig {
    pub fn from_file(path: &Path) -> Result<GlinerConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| Error::file(path, format!("invalid JSON: {e}")))?;
        Self::from_value(&value, &path.display().to_string())
    }

    pub fn from_value(v: &Value, file: &str) -> Result<GlinerConfig> {
        let f = Fields { file, obj: v, prefix: "" };
        f.require_str("span_mode", "markerV0", "markerV0", "kogner implements span_mode markerV0")?;
        let subtoken_pooling = f.str_or("subtoken_pooling", "first")?.parse().map_err(|e| f.err("subtoken_pooling", e))?;
        f.require_str("words_splitter_type", "whitespace", "whitespace", "kogner implements GLiNER's whitespace splitter")?;
        if f.get("labels_encoder").is_some() {
            return Err(f.err("labels_encoder", "bi-encoder GLiNER models are not supported (uni-encoder only)"));
        }
        if f.bool_or("fuse_layers", false)? {
            return Err(f.err("fuse_layers", "true is not supported"));
        }
        if f.usize_or("num_rnn_layers", 1)? != 1 {
            return Err(f.err("num_rnn_layers", "only 1 is supported"));
        }
        if !f.bool_or("embed_ent_token", true)? {
            return Err(f.err("embed_ent_token", "false is not supported (labels are read at their <<ENT>> token)"));
        }
        let enc = f.get("encoder_config").ok_or_else(|| f.err("encoder_config", "missing"))?;
        let encoder = encoder_config(&Fields { file, obj: enc, prefix: "encoder_config." })?;
        Ok(GlinerConfig {
            hidden_size: f.usize("hidden_size")?,
            max_width: f.usize("max_width")?,
            max_len: f.usize_or("max_len", 384)?,
            class_token_index: f.usize("class_token_index")?,
            vocab_size: f.usize_or("vocab_size", encoder.vocab_size())?,
            dropout: f.f64_or("dropout", 0.4)?,
            ent_token: f.str_or("ent_token", "<<ENT>>")?.to_string(),
            sep_token: f.str_or("sep_token", "<<SEP>>")?.to_string(),
            model_name: f.str_or("model_name", "")?.to_string(),
            word_shape: f.bool_or("word_shape", false)?,
            subtoken_pooling,
            encoder,
        })
    }
}

fn encoder_config(f: &Fields) -> Result<EncoderConfig> {
    f.require_str("hidden_act", "gelu", "gelu", "kogner implements exact (erf) GELU")?;
    let hidden_size = f.usize("hidden_size")?;
    let num_heads = f.usize("num_attention_heads")?;
    if num_heads == 0 || hidden_size % num_heads != 0 {
        return Err(f.err("num_attention_heads", format!("{num_heads} does not divide hidden_size {hidden_size}")));
    }
    let model_type = f.str_or("model_type", "")?;
    let bert = model_type == "bert";
    let dims = EncoderDims {
        hidden_size,
        hidden_dropout: f.f64_or("hidden_dropout_prob", 0.1)?,
        attention_dropout: f.f64_or("attention_probs_dropout_prob", 0.1)?,
        num_layers: f.usize("num_hidden_layers")?,
        num_heads,
        intermediate_size: f.usize("intermediate_size")?,
        vocab_size: f.usize("vocab_size")?,
        layer_norm_eps: f.f64_or("layer_norm_eps", if bert { 1e-12 } else { 1e-7 })?,
        max_position_embeddings: f.usize("max_position_embeddings")?,
        type_vocab_size: f.usize_or("type_vocab_size", if bert { 2 } else { 0 })?,
        pad_token_id: f.usize_or("pad_token_id", 0)?,
    };
    match model_type {
        "deberta-v2" | "deberta-v3" => {
            if f.usize_or("embedding_size", hidden_size)? != hidden_size {
                return Err(f.err("embedding_size", "an embedding width different from hidden_size is not supported"));
            }
            if f.usize_or("conv_kernel_size", 0)? > 0 {
                return Err(f.err("conv_kernel_size", "DeBERTa's convolution layer is not supported"));
            }
            if !f.bool_or("relative_attention", false)? {
                return Err(f.err("relative_attention", "only relative attention (DeBERTa-v3 style) is supported"));
            }
            if !f.bool_or("share_att_key", false)? {
                return Err(f.err("share_att_key", "only share_att_key = true (v3 style) is supported"));
            }
            let pos: Vec<&str> = match f.get("pos_att_type") {
                Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_str()).collect(),
                Some(Value::String(s)) => s.split('|').map(|x| x.trim()).collect(),
                _ => vec![],
            };
            let mut sorted = pos.clone();
            sorted.sort_unstable();
            if sorted != ["c2p", "p2c"] {
                return Err(f.err("pos_att_type", format!("{pos:?} is not supported (expected [\"p2c\", \"c2p\"])")));
            }
            let max_pos = dims.max_position_embeddings;
            let mrp = f.i64_or("max_relative_positions", -1)?;
            let buckets = f.i64_or("position_buckets", -1)?;
            let norm = f.str_or("norm_rel_ebd", "none")?.to_lowercase();
            Ok(EncoderConfig::Deberta(DebertaConfig {
                dims,
                max_relative_positions: if mrp < 1 { max_pos } else { mrp as usize },
                position_buckets: if buckets > 0 { buckets as usize } else { 0 },
                norm_rel_ebd: norm.split('|').any(|s| s.trim() == "layer_norm"),
                position_biased_input: f.bool_or("position_biased_input", true)?,
            }))
        }
        "bert" => {
            f.require_str("position_embedding_type", "absolute", "absolute", "only absolute position embeddings are supported")?;
            Ok(EncoderConfig::Bert(BertConfig { dims }))
        }
        other => Err(f.err("model_type", format!("`{other}` is not supported (deberta-v2 or bert)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/gliner").join(name).join("gliner_config.json")
    }

    #[test]
    fn reads_both_fixture_configs() {
        let d = GlinerConfig::from_file(&fixture("deberta-tiny")).unwrap();
        assert_eq!((d.hidden_size, d.max_width, d.class_token_index), (96, 12, 8002));
        let EncoderConfig::Deberta(e) = &d.encoder else { panic!("deberta expected") };
        assert_eq!((e.att_span(), e.max_relative_positions, e.dims.num_layers, e.norm_rel_ebd), (256, 512, 2, true));
        let m = GlinerConfig::from_file(&fixture("minilm")).unwrap();
        assert!(matches!(&m.encoder, EncoderConfig::Bert(BertConfig { dims }) if dims.num_layers == 6 && dims.hidden_size == 384));
    }

    #[test]
    fn unsupported_settings_name_the_field() {
        let text = std::fs::read_to_string(fixture("deberta-tiny")).unwrap();
        let mut v: Value = serde_json::from_str(&text).unwrap();
        v["span_mode"] = Value::from("markerV1");
        let e = GlinerConfig::from_value(&v, "cfg.json").unwrap_err().to_string();
        assert_eq!(e, "cfg.json: field `span_mode`: `markerV1` is not supported (kogner implements span_mode markerV0)");
        let mut v: Value = serde_json::from_str(&text).unwrap();
        v["encoder_config"]["num_attention_heads"] = Value::from(5);
        let e = GlinerConfig::from_value(&v, "cfg.json").unwrap_err().to_string();
        assert!(e.contains("`encoder_config.num_attention_heads`"), "{e}");
        let mut v: Value = serde_json::from_str(&text).unwrap();
        v.as_object_mut().unwrap().remove("max_width");
        let e = GlinerConfig::from_value(&v, "cfg.json").unwrap_err().to_string();
        assert_eq!(e, "cfg.json: field `max_width`: missing");
    }

    #[test]
    fn subtoken_pooling_reads_first_last_mean_and_names_the_rest() {
        let text = std::fs::read_to_string(fixture("deberta-tiny")).unwrap();
        let with = |pooling: Value| {
            let mut v: Value = serde_json::from_str(&text).unwrap();
            v["subtoken_pooling"] = pooling;
            GlinerConfig::from_value(&v, "cfg.json").map(|c| c.subtoken_pooling)
        };
        assert_eq!(GlinerConfig::from_file(&fixture("deberta-tiny")).unwrap().subtoken_pooling, SubtokenPooling::First);
        for (name, want) in [("first", SubtokenPooling::First), ("last", SubtokenPooling::Last), ("mean", SubtokenPooling::Mean)] {
            assert_eq!(with(Value::from(name)).unwrap(), want);
            assert_eq!(want.name(), name);
        }
        assert_eq!(with(Value::Null).unwrap(), SubtokenPooling::First);
        let e = with(Value::from("first_last")).unwrap_err().to_string();
        assert_eq!(e, "cfg.json: field `subtoken_pooling`: `first_last` is not supported (kogner pools words by first / last / mean)");
        assert!(with(Value::from(3)).unwrap_err().to_string().contains("`subtoken_pooling`: expected a string"));
    }
}
