//! The masked-LM loop: an encoder folder in, the same folder with adapted
//! weights out (`OUT/encoder/`, which `kogner train --encoder` takes).
//!
//! A step: `batch_size` blocks (a fresh shuffle every epoch), each masked
//! from (seed, position), cut into shards that run forward and backward at
//! once (as the GLiNER trainer's step, see `student/shards.rs`); the loss is
//! the mean cross-entropy over the batch's predicted tokens; AdamW with an
//! encoder and a head learning rate, linear warm-up and decay (`run_mlm.py`'s
//! schedule), gradient-norm clipping.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use serde_json::json;
use tokenizers::Tokenizer;

use kogner_autograd::ops::loss::{cross_entropy, Reduction};
use kogner_autograd::{no_grad, Grads, ParamStore, Var};
use kogner_models::builder::{open_weights, weight_file, ParamBuilder, WEIGHT_FILES};
use kogner_models::config::EncoderConfig;
use kogner_models::encoder::mlm_head::{MlmHead, MLM_HEAD_PREFIX};
use kogner_models::encoder::Encoder;
use kogner_models::nn::Mode;
use kogner_tensor::{safetensors_io, DType, Error, Result, Rng, Tensor};

use super::blocks::{token_blocks, TokenBlock};
use super::masking::{mask_whole_words, MaskSpec, MaskedBlock, IGNORE};
use crate::optim::{clip_coef, split_param_groups, AdamW, AdamWConfig, GradAccumulator, ParamGroup, Schedule};
use crate::student::checkpoint::replace_dir;
use crate::student::metrics::MetricsLog;
use crate::student::sampler::{mix, ExampleOrder};
use crate::student::shards::{partition, Shards};
use crate::student::{read_corpus, Format};

const MASK_STREAM: u64 = 11;
const DROPOUT_STREAM: u64 = 12;
const DEV_MASK_STREAM: u64 = 13;
/// The adapted encoder folder inside the run folder.
pub const ENCODER_DIR: &str = "encoder";
const METRICS_FILE: &str = "metrics.jsonl";
const CONFIG_FILE: &str = "mlm_config.json";

/// The settings (written to `OUT/mlm_config.json`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MlmConfig {
    /// A BERT-family encoder folder (config.json, weights, tokenizer.json).
    pub encoder: PathBuf,
    /// The corpus whose text the encoder adapts to (its annotations are unused).
    pub train: PathBuf,
    pub train_format: String,
    pub train_exclude_ids: Option<PathBuf>,
    /// Held-out text whose masked-LM loss is reported (fixed masks).
    pub dev: Option<PathBuf>,
    pub dev_format: Option<String>,
    pub out: PathBuf,
    pub steps: usize,
    /// Blocks per step.
    pub batch_size: usize,
    pub lr_encoder: f64,
    /// The MLM head's transform and bias (fresh on a checkpoint without one).
    pub lr_head: f64,
    pub weight_decay: f64,
    pub warmup_ratio: f64,
    /// 0 = off.
    pub max_grad_norm: f64,
    /// Tokens per sequence, `[CLS]` and `[SEP]` included.
    pub max_tokens: usize,
    pub mask_prob: f64,
    pub seed: u64,
    /// Dev loss every this many steps (and at the end); 0 = at the end only.
    pub eval_every: usize,
}

impl MlmConfig {
    fn validate(&self) -> Result<()> {
        let bad = |field: &str, msg: String| Err(Error::Msg(format!("mlm `{field}`: {msg}")));
        for (field, v) in [("steps", self.steps), ("batch_size", self.batch_size)] {
            if v == 0 {
                return bad(field, "must be at least 1".into());
            }
        }
        if self.max_tokens < 3 {
            return bad("max_tokens", format!("{} leaves no room between [CLS] and [SEP]", self.max_tokens));
        }
        for (field, v) in [("lr_encoder", self.lr_encoder), ("lr_head", self.lr_head), ("weight_decay", self.weight_decay), ("max_grad_norm", self.max_grad_norm)] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(field, format!("{v} must be a finite number ≥ 0"));
            }
        }
        if !(self.mask_prob > 0.0 && self.mask_prob < 1.0) {
            return bad("mask_prob", format!("{} must be in (0, 1)", self.mask_prob));
        }
        if !(0.0..=1.0).contains(&self.warmup_ratio) {
            return bad("warmup_ratio", format!("{} must be in [0, 1]", self.warmup_ratio));
        }
        Ok(())
    }
}

/// What a step reports.
#[derive(Clone, Debug)]
pub struct MlmStepStats {
    pub step: usize,
    /// Mean cross-entropy over the step's predicted tokens.
    pub loss: f64,
    /// Fraction of predicted tokens whose top logit is the original.
    pub accuracy: f64,
    pub grad_norm: f64,
    pub lr_encoder: f64,
    pub elapsed_s: f64,
}

pub enum MlmEvent<'a> {
    Step(&'a MlmStepStats),
    /// Dev (loss, accuracy) after `step` steps.
    Eval { step: usize, loss: f64, accuracy: f64 },
    Saved { step: usize },
}

/// The special-token ids a sequence is built with.
#[derive(Clone, Copy, Debug)]
struct Specials {
    cls: u32,
    sep: u32,
    pad: u32,
}

pub struct MlmTrainer {
    config: MlmConfig,
    encoder: Encoder,
    head: MlmHead,
    params: ParamStore,
    /// The encoder file's tensors that are not parameters (e.g. an unused
    /// pooler): written back unchanged.
    passthrough: Vec<(String, Tensor)>,
    opt: AdamW,
    schedule: Schedule,
    blocks: Vec<TokenBlock>,
    dev: Vec<MaskedBlock>,
    order: ExampleOrder,
    shards: Shards,
    spec: MaskSpec,
    specials: Specials,
    metrics: MetricsLog,
    step: usize,
}

fn token_id(tok: &Tokenizer, token: &str, path: &Path) -> Result<u32> {
    tok.token_to_id(token).ok_or_else(|| Error::file(path, format!("the tokenizer has no {token} token")))
}

impl MlmTrainer {
    /// Start a run in `config.out` (which must not hold one).
    pub fn new(config: MlmConfig) -> Result<MlmTrainer> {
        config.validate()?;
        let out = &config.out;
        if out.join(ENCODER_DIR).exists() {
            return Err(Error::file(out, "already holds a masked-LM run: choose another --out"));
        }
        let dir = &config.encoder;
        let enc_config = EncoderConfig::from_hf_file(&dir.join("config.json"))?;
        let weights = weight_file(dir)?;
        // The encoder must come whole from its file; the head may be absent (then fresh).
        let enc_builder = ParamBuilder::from_source(open_weights(&weights)?);
        let encoder = Encoder::new(&enc_builder, &enc_config)?;
        let head_builder = ParamBuilder::from_source_or_random(open_weights(&weights)?, config.seed);
        let (hidden, vocab) = (enc_config.hidden_size(), enc_config.vocab_size());
        let head = MlmHead::new(&head_builder.pp(MLM_HEAD_PREFIX), hidden, vocab, enc_config.dims().layer_norm_eps)?;
        let mut params = enc_builder.params();
        params.extend(&head_builder.params())?;
        // the file's tensors neither the encoder nor the head took (`ParamBuilder::unused`)
        let source = open_weights(&weights)?;
        let mut passthrough = Vec::new();
        for name in enc_builder.unused().into_iter().filter(|n| params.get(n).is_none()) {
            // non-float buffers (`position_ids`) are not weights: dropped, as recent HF does
            if let Some(t) = source.tensor(&name)?.filter(|t| t.dtype().is_float()) {
                passthrough.push((name, t));
            }
        }

        let tok_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| Error::file(&tok_path, e))?;
        // why: encoder tokenizers often truncate/pad to a fixed length; blocks are cut here.
        tokenizer.with_truncation(None).map_err(|e| Error::file(&tok_path, e))?;
        tokenizer.with_padding(None);
        let specials = Specials {
            cls: token_id(&tokenizer, "[CLS]", &tok_path)?,
            sep: token_id(&tokenizer, "[SEP]", &tok_path)?,
            pad: enc_config.dims().pad_token_id as u32,
        };
        let spec = MaskSpec { mask_prob: config.mask_prob, mask_id: token_id(&tokenizer, "[MASK]", &tok_path)?, vocab_size: vocab.min(tokenizer.get_vocab_size(true)) };
        let max_tokens = config.max_tokens.min(enc_config.max_tokens());

        let read_blocks = |path: &Path, format: &str, exclude: Option<&Path>| -> Result<Vec<TokenBlock>> {
            let (docs, _) = read_corpus(path, format.parse::<Format>()?, exclude, true)?;
            let blocks = token_blocks(&tokenizer, &docs, max_tokens - 2)?;
            if blocks.is_empty() {
                return Err(Error::file(path, "no text to train on"));
            }
            Ok(blocks)
        };
        let blocks = read_blocks(&config.train, &config.train_format, config.train_exclude_ids.as_deref())?;
        let dev = match &config.dev {
            Some(p) => read_blocks(p, config.dev_format.as_deref().unwrap_or(&config.train_format), None)?
                .iter()
                .enumerate()
                .map(|(i, b)| mask_whole_words(b, 2, &spec, &mut Rng::new(mix(config.seed, DEV_MASK_STREAM, i as u64))))
                .collect(),
            None => Vec::new(),
        };

        let groups = mlm_param_groups(&params, &config);
        let opt = AdamW::new(groups, AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8 })?;
        let warmup_steps = (config.warmup_ratio * config.steps as f64).ceil() as usize;
        std::fs::create_dir_all(out).map_err(|e| Error::file(out, e))?;
        let json = serde_json::to_string_pretty(&config).map_err(|e| Error::Msg(e.to_string()))?;
        safetensors_io::write_atomic(out.join(CONFIG_FILE), json.as_bytes())?;
        Ok(MlmTrainer {
            schedule: Schedule::LinearWarmup { warmup_steps, total_steps: config.steps },
            order: ExampleOrder::new(blocks.len(), config.seed),
            shards: Shards::new(rayon::current_num_threads(), config.batch_size)?,
            metrics: MetricsLog::open(&out.join(METRICS_FILE), None)?,
            config,
            encoder,
            head,
            params,
            passthrough,
            opt,
            blocks,
            dev,
            spec,
            specials,
            step: 0,
        })
    }

    /// Training blocks (sequences) per epoch.
    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Word pieces per training block on average.
    pub fn mean_block_tokens(&self) -> f64 {
        self.blocks.iter().map(TokenBlock::len).sum::<usize>() as f64 / self.blocks.len() as f64
    }

    /// Train for `config.steps`, then write `OUT/encoder/`.
    pub fn run(&mut self, mut on_event: impl FnMut(MlmEvent<'_>)) -> Result<()> {
        let started = Instant::now();
        if !self.dev.is_empty() {
            let (loss, accuracy) = self.dev_loss()?;
            self.metrics.append(&json!({"step": 0, "dev_loss": loss, "dev_accuracy": accuracy}))?;
            on_event(MlmEvent::Eval { step: 0, loss, accuracy });
        }
        while self.step < self.config.steps {
            let (loss, accuracy, grad_norm) = self.train_step()?;
            let stats = MlmStepStats {
                step: self.step,
                loss,
                accuracy,
                grad_norm,
                lr_encoder: self.config.lr_encoder * self.schedule.factor(self.step - 1),
                elapsed_s: started.elapsed().as_secs_f64(),
            };
            self.metrics.append(&json!({"step": stats.step, "loss": loss, "accuracy": accuracy, "grad_norm": grad_norm, "lr_encoder": stats.lr_encoder, "elapsed_s": stats.elapsed_s}))?;
            on_event(MlmEvent::Step(&stats));
            let last = self.step == self.config.steps;
            if !self.dev.is_empty() && (last || (self.config.eval_every > 0 && self.step.is_multiple_of(self.config.eval_every))) {
                let (loss, accuracy) = self.dev_loss()?;
                self.metrics.append(&json!({"step": self.step, "dev_loss": loss, "dev_accuracy": accuracy}))?;
                on_event(MlmEvent::Eval { step: self.step, loss, accuracy });
            }
        }
        self.metrics.sync()?;
        self.save()?;
        on_event(MlmEvent::Saved { step: self.step });
        Ok(())
    }

    fn masked(&self, pos: usize, block: usize) -> MaskedBlock {
        mask_whole_words(&self.blocks[block], 2, &self.spec, &mut Rng::new(mix(self.config.seed, MASK_STREAM, pos as u64)))
    }

    /// One optimiser step → (loss, accuracy, gradient norm before clipping).
    fn train_step(&mut self) -> Result<(f64, f64, f64)> {
        let bs = self.config.batch_size;
        let positions: Vec<usize> = (self.step * bs..(self.step + 1) * bs).collect();
        let picked: Vec<usize> = positions.iter().map(|&p| self.order.at(p)).collect();
        let masked: Vec<MaskedBlock> = positions.iter().zip(&picked).map(|(&p, &b)| self.masked(p, b)).collect();
        let total = masked.iter().map(predicted).sum::<usize>();
        let costs: Vec<usize> = masked.iter().map(|m| m.inputs.len() + 2).collect();
        let groups = partition(&costs, self.shards.count());
        let dropout_seed = mix(self.config.seed, DROPOUT_STREAM, self.step as u64);
        let mut acc = GradAccumulator::new();
        let (mut loss_sum, mut correct) = (0.0, 0usize);
        for shard in self.shards.run(groups, |i, group| {
            let blocks: Vec<&MaskedBlock> = group.iter().map(|&k| &masked[k]).collect();
            let mode = Mode::training(mix(dropout_seed, i as u64, 0));
            let (ce_sum, right) = self.loss(&blocks, &mode)?;
            let value = ce_sum.value().to_scalar()?;
            if !value.is_finite() {
                return Ok((Grads::default(), value, right));
            }
            // the shard's part of the batch mean
            Ok((ce_sum.mul_scalar(1.0 / total as f64)?.backward()?, value, right))
        }) {
            let (grads, value, right): (Grads, f64, usize) = shard?;
            acc.add(grads)?;
            loss_sum += value;
            correct += right;
        }
        let step = self.step + 1;
        let loss = loss_sum / total as f64;
        if !loss.is_finite() {
            return Err(Error::Msg(format!("masked-LM step {step}: the loss is {loss}; stopping (lower the learning rates)")));
        }
        let grads = acc.take(1.0)?;
        let max_norm = if self.config.max_grad_norm > 0.0 { self.config.max_grad_norm } else { f64::MAX };
        let clip = clip_coef(&grads, max_norm).map_err(|e| Error::Msg(format!("masked-LM step {step}: {e}")))?;
        self.opt.step_scaled(&self.params, &grads, self.schedule.factor(self.step), clip.coef)?;
        self.step = step;
        Ok((loss, correct as f64 / total as f64, clip.total_norm))
    }

    /// blocks → (summed cross-entropy over their predicted tokens, how many
    /// of those the model's top logit gets right).
    fn loss(&self, blocks: &[&MaskedBlock], mode: &Mode) -> Result<(Var, usize)> {
        let (ids, attention, rows, targets) = batch_tensors(blocks, self.specials)?;
        let out = self.encoder.forward(&ids, &attention, mode)?;
        let last = out.last();
        let (b, t, h) = (last.shape()[0], last.shape()[1], last.shape()[2]);
        let hidden = last.reshape(&[b * t, h])?.index_select(0, &rows)?;
        let logits = self.head.forward(&hidden, self.encoder.word_embeddings())?;
        let best = logits.value().argmax(-1, false)?.to_vec::<i64>()?;
        let right = best.iter().zip(targets.to_vec::<i64>()?).filter(|(a, b)| **a == *b).count();
        Ok((cross_entropy(&logits, &targets, Some(IGNORE), Reduction::Sum)?, right))
    }

    /// Mean cross-entropy and accuracy over the dev blocks' fixed masks, without dropout.
    pub fn dev_loss(&self) -> Result<(f64, f64)> {
        let mode = Mode::inference();
        let (mut sum, mut right, mut count) = (0.0, 0, 0);
        no_grad(|| -> Result<()> {
            for chunk in self.dev.chunks(self.config.batch_size) {
                let blocks: Vec<&MaskedBlock> = chunk.iter().collect();
                let (ce, r) = self.loss(&blocks, &mode)?;
                sum += ce.value().to_scalar()?;
                right += r;
                count += blocks.iter().map(|b| predicted(b)).sum::<usize>();
            }
            Ok(())
        })?;
        Ok((sum / count.max(1) as f64, right as f64 / count.max(1) as f64))
    }

    /// `OUT/encoder/`: the source folder's files (config, tokenizer,
    /// sentence-transformers settings, licence) and the adapted weights:
    /// the encoder under its own names, the MLM head under `cls.predictions.…`.
    fn save(&self) -> Result<()> {
        let src = &self.config.encoder;
        replace_dir(&self.config.out, ENCODER_DIR, |dir| {
            copy_folder_files(src, dir)?;
            let values: Vec<(String, Tensor)> = self.params.iter().map(|(n, v)| Ok((n.clone(), v.value().to_dtype(DType::F32)?))).collect::<Result<_>>()?;
            let mut refs: Vec<(&str, &Tensor)> = values.iter().map(|(n, t)| (n.as_str(), t)).collect();
            refs.extend(self.passthrough.iter().map(|(n, t)| (n.as_str(), t)));
            safetensors_io::save(dir.join("model.safetensors"), &refs, None)
        })
    }
}

fn predicted(m: &MaskedBlock) -> usize {
    m.targets.iter().filter(|&&t| t != IGNORE).count()
}

/// Padded `[CLS] inputs [SEP]` ids [B, T] (i64), attention mask [B, T]
/// (f32), the flat rows (b·T + t) of predicted tokens, their targets (i64).
fn batch_tensors(blocks: &[&MaskedBlock], sp: Specials) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
    let t = blocks.iter().map(|b| b.inputs.len() + 2).max().unwrap_or(2);
    let (mut ids, mut mask) = (vec![i64::from(sp.pad); blocks.len() * t], vec![0f32; blocks.len() * t]);
    let (mut rows, mut targets) = (Vec::new(), Vec::new());
    for (b, block) in blocks.iter().enumerate() {
        let row = &mut ids[b * t..(b + 1) * t];
        row[0] = i64::from(sp.cls);
        for (k, &id) in block.inputs.iter().enumerate() {
            row[k + 1] = i64::from(id);
        }
        row[block.inputs.len() + 1] = i64::from(sp.sep);
        mask[b * t..b * t + block.inputs.len() + 2].iter_mut().for_each(|m| *m = 1.0);
        for (k, &target) in block.targets.iter().enumerate().filter(|(_, &x)| x != IGNORE) {
            rows.push(b * t + k + 1);
            targets.push(target);
        }
    }
    let n = blocks.len();
    Ok((
        Tensor::from_vec(ids, &[n, t])?,
        Tensor::from_vec(mask, &[n, t])?,
        Tensor::from_indices(&rows, &[rows.len()])?,
        Tensor::from_vec(targets, &[rows.len()])?,
    ))
}

/// Encoder / head × decayed / not (biases and LayerNorms are not decayed).
fn mlm_param_groups(params: &ParamStore, c: &MlmConfig) -> Vec<ParamGroup> {
    let sets = [("encoder", c.lr_encoder, c.weight_decay), ("head", c.lr_head, c.weight_decay)];
    split_param_groups(params, sets, |name| name.starts_with(MLM_HEAD_PREFIX))
}

/// Copy `src`'s files and sub-folders into `dst`, except its weight files
/// and checksums (the weights are new).
fn copy_folder_files(src: &Path, dst: &Path) -> Result<()> {
    let entries = std::fs::read_dir(src).map_err(|e| Error::file(src, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::file(src, e))?;
        let (path, name) = (entry.path(), entry.file_name());
        let name = name.to_string_lossy();
        // The adapted weights replace the folder's own.
        if WEIGHT_FILES.contains(&name.as_ref()) || name == "SHA256SUMS" || [".onnx", ".h5", ".msgpack", ".ot"].iter().any(|ext| name.ends_with(ext)) {
            continue;
        }
        let target = dst.join(name.as_ref());
        if path.is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| Error::file(&target, e))?;
            copy_folder_files(&path, &target)?;
        } else {
            let bytes = std::fs::read(&path).map_err(|e| Error::file(&path, e))?;
            safetensors_io::write_atomic(&target, &bytes)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_rows_point_past_cls_at_the_predicted_tokens() {
        let a = MaskedBlock { inputs: vec![7, 103, 9], targets: vec![IGNORE, 8, IGNORE] };
        let b = MaskedBlock { inputs: vec![103, 5], targets: vec![4, 5] };
        let sp = Specials { cls: 101, sep: 102, pad: 0 };
        let (ids, mask, rows, targets) = batch_tensors(&[&a, &b], sp).unwrap();
        assert_eq!(ids.shape(), [2, 5]);
        assert_eq!(ids.to_vec::<i64>().unwrap(), [101, 7, 103, 9, 102, 101, 103, 5, 102, 0]);
        assert_eq!(mask.to_vec::<f32>().unwrap(), [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]);
        // a's token 1 sits at column 2; b's tokens 0 and 1 at columns 1 and 2 of row 1
        assert_eq!(rows.to_vec::<i64>().unwrap(), [2, 6, 7]);
        assert_eq!(targets.to_vec::<i64>().unwrap(), [8, 4, 5]);
    }

    #[test]
    fn groups_split_head_from_encoder_and_spare_biases_and_norms() {
        let mut params = ParamStore::new();
        for name in ["embeddings.word_embeddings.weight", "encoder.layer.0.output.LayerNorm.weight", "encoder.layer.0.output.dense.bias", "cls.predictions.bias", "cls.predictions.transform.dense.weight"] {
            params.insert(name, Tensor::zeros(&[1], DType::F32)).unwrap();
        }
        let c = MlmConfig {
            encoder: PathBuf::new(),
            train: PathBuf::new(),
            train_format: "iob".into(),
            train_exclude_ids: None,
            dev: None,
            dev_format: None,
            out: PathBuf::new(),
            steps: 1,
            batch_size: 1,
            lr_encoder: 1e-4,
            lr_head: 1e-3,
            weight_decay: 0.01,
            warmup_ratio: 0.0,
            max_grad_norm: 1.0,
            max_tokens: 8,
            mask_prob: 0.15,
            seed: 0,
            eval_every: 0,
        };
        let groups = mlm_param_groups(&params, &c);
        let names: Vec<Vec<&str>> = groups.iter().map(|g| g.params.iter().map(String::as_str).collect()).collect();
        assert_eq!(names[0], ["embeddings.word_embeddings.weight"]);
        assert_eq!(names[1], ["encoder.layer.0.output.LayerNorm.weight", "encoder.layer.0.output.dense.bias"]);
        assert_eq!(names[2], ["cls.predictions.transform.dense.weight"]);
        assert_eq!(names[3], ["cls.predictions.bias"]);
        assert_eq!((groups[2].lr, groups[3].weight_decay), (1e-3, 0.0));
    }
}
