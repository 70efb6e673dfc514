//! The GLiNER model batch for inference (uni-encoder, span mode markerV0),
//! built exactly as GLiNER 0.2.29 builds it.
//!
//! Reference: `gliner/data_processing/processor.py` (`BaseProcessor.
//! prepare_inputs`, `tokenize_inputs`, `UniEncoderSpanProcessor.
//! preprocess_example` / `create_batch_dict`), `gliner/data_processing/
//! utils.py` (`prepare_word_mask`, `prepare_span_idx`, `make_mapping`) and
//! `gliner/modeling/utils.py` (`extract_prompt_features`).
//!
//! # What one example becomes
//! For labels `l1..lC` (duplicates removed, first occurrence kept) and text
//! words `w1..wN` the encoder input is the word sequence
//! `<<ENT>> l1 <<ENT>> l2 … <<ENT>> lC <<SEP>> w1 … wN` (2C+1 prompt words,
//! each label ONE word even when it contains spaces), tokenised with
//! `is_split_into_words` semantics: every word is normalised, pre-tokenised
//! and tokenised on its own (word id = its index in the list), then the
//! post-processor adds `[CLS] … [SEP]`.
//!
//! # Shapes (B examples, T = longest sub-token sequence, W = longest text in
//! words, K = max_width, C = most labels of any example)
//! * `input_ids`, `attention_mask`, `words_mask`: `[B, T]`, right-padded with
//!   the tokenizer's pad id / 0 / 0.
//! * `words_mask[b, t] = j` (1-based) when sub-token `t` is the first
//!   sub-token of text word `j`, else 0. `token_words` (kogner's): the same
//!   `j` at every sub-token of the word, for the other sub-token poolings.
//! * `text_lengths`: `[B]` = N of each example.
//! * `span_idx`: `[B, W*K, 2]`, row `i*K + k` = `(i, i+k)` for `i < N`, zero
//!   rows for the padding `i >= N`. Exactly as GLiNER's collator: spans that
//!   run past the text end KEEP their `(i, i+k)` here; the model zeroes them
//!   (`span_idx * span_mask`, see [`GlinerBatch::masked_span_idx`]).
//! * `span_mask`: `[B, W*K]`, true iff `i < N` and `i + k < N`.
//! * `ent_token_positions[b][c]`: sub-token position of the c-th `<<ENT>>`,
//!   whose encoder output is label c's representation (`embed_ent_token`).
//! * `prompts_embedding_mask`: `[B, C]`, true for `c < C_b`.
//!
//! # Reference quirks reproduced on purpose
//! * `words_mask` counts words by their *appearance* in the tokenizer's
//!   `word_ids` (GLiNER's `seen_words`), not by word index. A word that yields
//!   no sub-token (U+200B under BERT's `clean_text`) therefore shifts every
//!   later word one slot left and leaves the last slot empty; spans,
//!   `text_lengths` and offsets still use the true word indices. The same
//!   count runs over the prompt, so a label that yields no sub-token would
//!   shift the whole text by one word.
//! * Sub-token cap: GLiNER calls the tokenizer with `truncation=True`, i.e.
//!   at `model_max_length` (512 for BERT/MiniLM, unlimited for the DeBERTa
//!   fixtures). Words cut off keep their word slot (and spans) but get no
//!   `words_mask` entry, so a zero representation. kogner reproduces that
//!   when it happens and reports it per example in [`GlinerBatch::cut_words`];
//!   the long-text windowing ([`super::long_text`], with [`TokenBudget`])
//!   keeps windows small enough that it does not happen.
//!
//! # Deliberate differences from GLiNER
//! * A text longer than `max_len` words is an error here (GLiNER silently
//!   cuts it): callers split long documents with [`super::long_text`].
//! * Empty examples and empty label strings are errors (GLiNER filters blank
//!   texts before batching and drops an empty label's prompt word).
//! * The label positions are the prompt's own `<<ENT>>` tokens; GLiNER would
//!   also count a literal `<<ENT>>` inside the text as an extra (masked-out)
//!   class, which changes nothing for the real labels.

use std::collections::HashSet;
use std::path::Path;

use kogner_tensor::{Error, Result};
use tokenizers::{Encoding, PostProcessor, Tokenizer, TruncationDirection};

use super::words::Word;

fn err(msg: impl Into<String>) -> Error {
    Error::Msg(msg.into())
}

/// What the processor needs from `gliner_config.json` / `tokenizer_config.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessorConfig {
    /// Label marker word (`ent_token`, `<<ENT>>` in GLiNER ≥ 0.2).
    pub ent_token: String,
    /// Prompt terminator word (`sep_token`, `<<SEP>>`).
    pub sep_token: String,
    /// Most text words per example (`max_len`, 384).
    pub max_len: usize,
    /// Span widths per start word (`max_width`, K).
    pub max_width: usize,
    /// Sub-token cap of the encoder, specials and prompt included
    /// (`model_max_length` when it is a real limit, e.g. 512 for BERT).
    pub max_tokens: Option<usize>,
    /// Padding token; `None` takes the padding id recorded in tokenizer.json.
    pub pad_token: Option<String>,
}

impl ProcessorConfig {
    /// Reads `gliner_config.json` and, when present, `tokenizer_config.json`
    /// from a saved GLiNER model folder.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<ProcessorConfig> {
        let dir = dir.as_ref();
        let gliner = read_json(&dir.join("gliner_config.json"))?;
        let usize_field = |key: &str| -> Result<usize> {
            gliner
                .get(key)
                .and_then(|v| v.as_u64())
                .and_then(|v| usize::try_from(v).ok())
                .ok_or_else(|| err(format!("gliner_config.json: missing or invalid integer `{key}`")))
        };
        let str_field = |key: &str, default: &str| -> String {
            gliner.get(key).and_then(|v| v.as_str()).unwrap_or(default).to_string()
        };
        let (max_tokens, pad_token) = match dir.join("tokenizer_config.json") {
            path if path.exists() => {
                let tc = read_json(&path)?;
                // transformers uses int(1e30) for "no limit".
                let max_tokens = tc
                    .get("model_max_length")
                    .and_then(|v| v.as_f64())
                    .filter(|v| (1.0..1e18).contains(v))
                    .map(|v| v as usize);
                let pad_token = tc.get("pad_token").and_then(|v| v.as_str()).map(str::to_string);
                (max_tokens, pad_token)
            }
            _ => (None, None),
        };
        Ok(ProcessorConfig {
            ent_token: str_field("ent_token", "[ENT]"),
            sep_token: str_field("sep_token", "[SEP]"),
            max_len: usize_field("max_len")?,
            max_width: usize_field("max_width")?,
            max_tokens,
            pad_token,
        })
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::file(path, e))
}

/// Labels with duplicates removed (first occurrence kept), as GLiNER's
/// `_normalize_label_set` / `make_mapping`. Errors on no labels or an empty one.
pub fn dedup_labels<S: AsRef<str>>(labels: &[S]) -> Result<Vec<String>> {
    if labels.is_empty() {
        return Err(err("no entity labels given"));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, label) in labels.iter().enumerate() {
        let label = label.as_ref();
        if label.is_empty() {
            return Err(err(format!("entity label {i} is empty")));
        }
        if seen.insert(label) {
            out.push(label.to_string());
        }
    }
    Ok(out)
}

/// One example to batch: its (already windowed) words and its labels.
#[derive(Debug, Clone, Copy)]
pub struct BatchItem<'a> {
    pub words: &'a [Word],
    pub labels: &'a [String],
}

/// Sub-token counts of a document's words under one label prompt, to decide
/// whether a word window fits the encoder's sub-token cap.
///
/// Tokenisation is per word, so a window's sequence length is
/// `fixed + Σ per-word counts` exactly.
#[derive(Debug, Clone)]
pub struct TokenBudget {
    fixed: usize,
    prefix: Vec<usize>,
    limit: Option<usize>,
}

impl TokenBudget {
    /// Sub-tokens of the full encoder input (specials + prompt + words) for
    /// the document words `window`.
    pub fn tokens(&self, window: &std::ops::Range<usize>) -> usize {
        let end = window.end.min(self.prefix.len() - 1);
        let start = window.start.min(end);
        self.fixed + self.prefix[end] - self.prefix[start]
    }

    /// Whether `window` stays within the cap (always, when there is none).
    pub fn fits(&self, window: &std::ops::Range<usize>) -> bool {
        self.limit.is_none_or(|limit| self.tokens(window) <= limit)
    }

    /// The cap, if the encoder has one.
    pub fn limit(&self) -> Option<usize> {
        self.limit
    }
}

/// Tokenizer + GLiNER settings; turns word lists into [`GlinerBatch`]es.
#[derive(Clone)]
pub struct GlinerProcessor {
    tokenizer: Tokenizer,
    config: ProcessorConfig,
    ent_id: u32,
    pad_id: u32,
    n_special: usize,
}

impl std::fmt::Debug for GlinerProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlinerProcessor")
            .field("config", &self.config)
            .field("ent_id", &self.ent_id)
            .field("pad_id", &self.pad_id)
            .field("n_special", &self.n_special)
            .finish()
    }
}

impl GlinerProcessor {
    /// Wraps a tokenizer. Its own truncation/padding settings are dropped:
    /// the cap is `config.max_tokens` and padding is done per batch here.
    pub fn new(mut tokenizer: Tokenizer, config: ProcessorConfig) -> Result<GlinerProcessor> {
        if config.max_width == 0 || config.max_len == 0 {
            return Err(err("max_width and max_len must be positive"));
        }
        let pad_id = match &config.pad_token {
            Some(tok) => {
                tokenizer.token_to_id(tok).ok_or_else(|| err(format!("pad token `{tok}` is not in the vocabulary")))?
            }
            None => tokenizer
                .get_padding()
                .map(|p| p.pad_id)
                .ok_or_else(|| err("no pad token configured and tokenizer.json has no padding"))?,
        };
        let ent_id = tokenizer
            .token_to_id(&config.ent_token)
            .ok_or_else(|| err(format!("entity token `{}` is not in the vocabulary", config.ent_token)))?;
        tokenizer
            .token_to_id(&config.sep_token)
            .ok_or_else(|| err(format!("separator token `{}` is not in the vocabulary", config.sep_token)))?;
        tokenizer.with_truncation(None).map_err(|e| err(format!("tokenizer: {e}")))?;
        tokenizer.with_padding(None);
        let n_special = tokenizer.get_post_processor().map_or(0, |p| p.added_tokens(false));
        if let Some(cap) = config.max_tokens {
            if cap <= n_special {
                return Err(err(format!("max_tokens {cap} leaves no room next to {n_special} special tokens")));
            }
        }
        Ok(GlinerProcessor { tokenizer, config, ent_id, pad_id, n_special })
    }

    /// `tokenizer.json` + [`ProcessorConfig::from_dir`] of a saved GLiNER folder.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<GlinerProcessor> {
        let dir = dir.as_ref();
        let path = dir.join("tokenizer.json");
        let tokenizer = Tokenizer::from_file(&path).map_err(|e| Error::file(&path, e))?;
        GlinerProcessor::new(tokenizer, ProcessorConfig::from_dir(dir)?)
    }

    pub fn config(&self) -> &ProcessorConfig {
        &self.config
    }

    /// Id of the `<<ENT>>` token (GLiNER's `class_token_index`).
    pub fn ent_token_id(&self) -> u32 {
        self.ent_id
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The prompt words `<<ENT>> l1 … <<ENT>> lC <<SEP>>` for deduplicated labels.
    pub fn prompt_words(&self, labels: &[String]) -> Vec<String> {
        let mut words = Vec::with_capacity(2 * labels.len() + 1);
        for label in labels {
            words.push(self.config.ent_token.clone());
            words.push(label.clone());
        }
        words.push(self.config.sep_token.clone());
        words
    }

    fn encode_words(&self, words: Vec<&str>) -> Result<Encoding> {
        self.tokenizer.encode(words, false).map_err(|e| err(format!("tokenizer: {e}")))
    }

    /// Per-word sub-token counts of `words` (a whole document) under the
    /// prompt of `labels`, for window planning.
    pub fn token_budget<S: AsRef<str>>(&self, labels: &[S], words: &[Word]) -> Result<TokenBudget> {
        let labels = dedup_labels(labels)?;
        let prompt = self.prompt_words(&labels);
        let prompt_tokens = self.encode_words(prompt.iter().map(String::as_str).collect())?.len();
        let mut counts = vec![0usize; words.len()];
        if !words.is_empty() {
            let enc = self.encode_words(words.iter().map(|w| w.text.as_str()).collect())?;
            for wid in enc.get_word_ids().iter().flatten() {
                counts[*wid as usize] += 1;
            }
        }
        let mut prefix = Vec::with_capacity(words.len() + 1);
        prefix.push(0);
        for c in counts {
            prefix.push(prefix.last().copied().unwrap_or(0) + c);
        }
        Ok(TokenBudget { fixed: self.n_special + prompt_tokens, prefix, limit: self.config.max_tokens })
    }

    /// Builds the padded model batch. Each item must have 1..=max_len words.
    pub fn encode(&self, items: &[BatchItem<'_>]) -> Result<GlinerBatch> {
        if items.is_empty() {
            return Err(err("empty batch"));
        }
        let k = self.config.max_width;
        let mut rows = Vec::with_capacity(items.len());
        for (b, item) in items.iter().enumerate() {
            let n = item.words.len();
            if n == 0 {
                return Err(err(format!("example {b} has no words")));
            }
            if n > self.config.max_len {
                return Err(err(format!(
                    "example {b} has {n} words, more than max_len {}; split it into windows first",
                    self.config.max_len
                )));
            }
            let labels = dedup_labels(item.labels).map_err(|e| err(format!("example {b}: {e}")))?;
            rows.push(self.encode_one(item.words, labels).map_err(|e| err(format!("example {b}: {e}")))?);
        }

        let bsz = rows.len();
        let seq_len = rows.iter().map(|r| r.ids.len()).max().unwrap_or(0);
        let num_words = items.iter().map(|it| it.words.len()).max().unwrap_or(0);
        let num_classes = rows.iter().map(|r| r.labels.len()).max().unwrap_or(0);

        let mut batch = GlinerBatch {
            batch_size: bsz,
            seq_len,
            num_words,
            max_width: k,
            num_classes,
            input_ids: vec![i64::from(self.pad_id); bsz * seq_len],
            attention_mask: vec![0; bsz * seq_len],
            words_mask: vec![0; bsz * seq_len],
            token_words: vec![0; bsz * seq_len],
            text_lengths: Vec::with_capacity(bsz),
            span_idx: vec![0; bsz * num_words * k * 2],
            span_mask: vec![false; bsz * num_words * k],
            ent_token_positions: Vec::with_capacity(bsz),
            prompts_embedding_mask: vec![false; bsz * num_classes],
            labels: Vec::with_capacity(bsz),
            words: Vec::with_capacity(bsz),
            cut_words: Vec::with_capacity(bsz),
        };
        for (b, (row, item)) in rows.into_iter().zip(items).enumerate() {
            let t0 = b * seq_len;
            for (t, ((&id, &wm), &tw)) in row.ids.iter().zip(&row.words_mask).zip(&row.token_words).enumerate() {
                batch.input_ids[t0 + t] = i64::from(id);
                batch.attention_mask[t0 + t] = 1;
                batch.words_mask[t0 + t] = wm as i64;
                batch.token_words[t0 + t] = tw as i64;
            }
            let n = item.words.len();
            batch.text_lengths.push(n);
            for i in 0..n {
                for w in 0..k {
                    let s = (b * num_words + i) * k + w;
                    batch.span_idx[2 * s] = i as i64;
                    batch.span_idx[2 * s + 1] = (i + w) as i64;
                    batch.span_mask[s] = i + w < n;
                }
            }
            for c in 0..row.labels.len() {
                batch.prompts_embedding_mask[b * num_classes + c] = true;
            }
            batch.ent_token_positions.push(row.ent_positions);
            batch.labels.push(row.labels);
            batch.words.push(item.words.to_vec());
            batch.cut_words.push(row.cut_words);
        }
        Ok(batch)
    }

    fn encode_one(&self, words: &[Word], labels: Vec<String>) -> Result<EncodedRow> {
        let prompt = self.prompt_words(&labels);
        let prompt_len = prompt.len();
        let all: Vec<&str> = prompt.iter().map(String::as_str).chain(words.iter().map(|w| w.text.as_str())).collect();
        let mut enc = self.encode_words(all)?;

        // GLiNER's truncation=True: keep the first (cap - specials) sub-tokens.
        let mut cut_words = 0;
        if let Some(cap) = self.config.max_tokens {
            let keep = cap - self.n_special;
            if enc.len() > keep {
                let wids = enc.get_word_ids();
                let mut prompt_cut = false;
                let mut prev = None;
                for (t, wid) in wids.iter().enumerate() {
                    if let Some(w) = *wid {
                        if Some(w) != prev && t >= keep {
                            if (w as usize) < prompt_len {
                                prompt_cut = true;
                            } else {
                                cut_words += 1;
                            }
                        }
                    }
                    prev = *wid;
                }
                if prompt_cut {
                    return Err(err(format!("the label prompt alone exceeds the {cap}-token cap")));
                }
                enc.truncate(keep, 0, TruncationDirection::Right);
            }
        }
        let enc = self.tokenizer.post_process(enc, None, true).map_err(|e| err(format!("tokenizer: {e}")))?;

        let wids = enc.get_word_ids();
        let (words_mask, token_words) = word_slots(wids, prompt_len);
        let mut ent_positions = Vec::with_capacity(labels.len());
        for c in 0..labels.len() {
            let want = (2 * c) as u32;
            let pos =
                wids.iter().position(|w| *w == Some(want)).filter(|&t| enc.get_ids()[t] == self.ent_id).ok_or_else(
                    || err(format!("`{}` of label {c} is not a single special token", self.config.ent_token)),
                )?;
            ent_positions.push(pos);
        }
        Ok(EncodedRow { ids: enc.get_ids().to_vec(), words_mask, token_words, ent_positions, labels, cut_words })
    }
}

struct EncodedRow {
    ids: Vec<u32>,
    words_mask: Vec<usize>,
    token_words: Vec<usize>,
    ent_positions: Vec<usize>,
    labels: Vec<String>,
    cut_words: usize,
}

/// GLiNER's `prepare_word_mask` counting: words are counted as they appear
/// in `word_ids`, the first `skip` counted words are the prompt. Returns the
/// 1-based text word slot at each word's first sub-token (`words_mask`) and
/// at every sub-token of a text word (`token_words`), 0 elsewhere.
fn word_slots(word_ids: &[Option<u32>], skip: usize) -> (Vec<usize>, Vec<usize>) {
    let (mut first_only, mut every) = (Vec::with_capacity(word_ids.len()), Vec::with_capacity(word_ids.len()));
    let mut prev = None;
    let mut seen = 0usize;
    for wid in word_ids {
        let first = wid.is_some() && *wid != prev;
        seen += first as usize;
        let slot = if wid.is_some() && seen > skip { seen - skip } else { 0 };
        first_only.push(if first { slot } else { 0 });
        every.push(slot);
        prev = *wid;
    }
    (first_only, every)
}

/// The padded inference batch (see the module docs for every shape).
#[derive(Debug, Clone, PartialEq)]
pub struct GlinerBatch {
    /// B.
    pub batch_size: usize,
    /// T: longest sub-token sequence.
    pub seq_len: usize,
    /// W: longest text in words (word slots of `span_idx`, the logits' axis 1).
    pub num_words: usize,
    /// K.
    pub max_width: usize,
    /// C: most labels of any example (the logits' last axis).
    pub num_classes: usize,
    /// `[B, T]`, padded with the tokenizer's pad id.
    pub input_ids: Vec<i64>,
    /// `[B, T]`, 1 for real sub-tokens.
    pub attention_mask: Vec<i64>,
    /// `[B, T]`, 1-based text word index at each word's first sub-token.
    pub words_mask: Vec<i64>,
    /// `[B, T]`, the same index at every sub-token of the word (kogner's,
    /// for `subtoken_pooling` last / mean).
    pub token_words: Vec<i64>,
    /// `[B]`, words per example (N).
    pub text_lengths: Vec<usize>,
    /// `[B, W*K, 2]` as GLiNER's collator builds it (not yet masked).
    pub span_idx: Vec<i64>,
    /// `[B, W*K]`.
    pub span_mask: Vec<bool>,
    /// Per example, the sub-token position of each label's `<<ENT>>`.
    pub ent_token_positions: Vec<Vec<usize>>,
    /// `[B, C]`.
    pub prompts_embedding_mask: Vec<bool>,
    /// Per example, the deduplicated labels: class index c ↔ `labels[b][c]`
    /// (GLiNER's `id_to_classes` with ids shifted to 0-based).
    pub labels: Vec<Vec<String>>,
    /// Per example, the words (with their offsets in the source text).
    pub words: Vec<Vec<Word>>,
    /// Per example, trailing text words that lost their sub-tokens to the
    /// encoder's sub-token cap (0 unless the cap was hit).
    pub cut_words: Vec<usize>,
}

impl GlinerBatch {
    /// `span_idx * span_mask`: what the model gathers span ends from
    /// (invalid spans read word 0).
    pub fn masked_span_idx(&self) -> Vec<i64> {
        self.span_idx
            .chunks_exact(2)
            .zip(&self.span_mask)
            .flat_map(|(pair, &valid)| if valid { [pair[0], pair[1]] } else { [0, 0] })
            .collect()
    }
}
