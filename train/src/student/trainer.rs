//! The GLiNER training loop: batches → training forward → GLiNER's loss →
//! backward (accumulated over micro-batches) → clipping → AdamW at the
//! schedule's factor (→ the weights' moving average, when kept); dev
//! evaluation with best-model selection; resumable checkpoints; metrics.
//!
//! Reproducibility: the example order, each example's labels and every
//! dropout mask are pure functions of (seed, step) and of the thread count
//! (which decides how a batch is cut into shards), and a checkpoint holds
//! the weights, the AdamW state, the moving average and the step, so
//! `--resume` after a kill continues with exactly the losses an
//! uninterrupted run has.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{json, Value};

use kogner_autograd::ops::loss::{gliner_span_loss, Reduction};
use kogner_autograd::{Grads, ParamStore};
use kogner_models::gliner::decode::DecodeMode;
use kogner_models::gliner::head::WORD_SHAPE_TABLE;
use kogner_models::gliner::init::{init_model, InitSources, Preset};
use kogner_models::gliner::pipeline::{model_inputs, PredictOptions, Predictor};
use kogner_models::gliner::processor::{BatchItem, GlinerBatch};
use kogner_models::gliner::word_shape::WORD_SHAPES;
use kogner_models::nn::Mode;
use kogner_tensor::safetensors_io::write_atomic;
use kogner_tensor::{DType, Error, Result, Tensor};

use super::checkpoint::{self, ModelFiles, RunState, TrainerState, CHECKPOINT};
use super::config::TrainConfig;
use super::corpus::{label_map, prompt_labels, read_corpus, unlabelled_examples, Format};
use super::distill::{Distiller, Links};
use super::evaluate::evaluate_model;
use super::metrics::{curve_svg, MetricsLog};
use super::sampler::{example_labels, mix, ExampleOrder, LabelSampling, DROPOUT_STREAM, NEGATIVE_STREAM, SHARD_STREAM};
use super::shards::{part_of_mean, partition, Shards};
use super::span_teacher::SpanTeacher;
use super::targets::{loss_mask, negative_mask, smooth_targets, span_targets, NegativeMasking};
use crate::data::{to_examples, ConvertOptions, Document, Example, LabelMap, Unmapped};
use crate::eval::EvalReport;
use crate::optim::{clip_coef, gliner_param_groups, layer_decayed_groups, AdamW, AdamWConfig, Ema, GlinerGroupHyper, GradAccumulator, Schedule};

const CONFIG_FILE: &str = "train_config.json";
const METRICS_FILE: &str = "metrics.jsonl";
const CURVE_FILE: &str = "curve.svg";
const UNMAPPED_FILE: &str = "unmapped_mentions.jsonl";

/// One optimiser step's numbers.
#[derive(Clone, Debug)]
pub struct StepStats {
    /// Steps done (1 after the first).
    pub step: usize,
    /// The loss, averaged over the step's micro-batches.
    pub loss: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    pub lr_encoder: f64,
    pub lr_head: f64,
    pub sentences_per_s: f64,
    /// Seconds of this process's training so far.
    pub elapsed_s: f64,
}

/// What the loop reports to its caller (progress bars, logs).
pub enum Event<'a> {
    Step(&'a StepStats),
    /// A dev evaluation; `best` when it improved the best F1.
    Eval { step: usize, report: &'a EvalReport, best: bool },
    Saved { step: usize },
}

pub struct Trainer {
    pub config: TrainConfig,
    out: PathBuf,
    predictor: Predictor,
    files: ModelFiles,
    /// KoGNER's distillation heads and teacher, when the run distils.
    distiller: Option<Distiller>,
    /// (linked, total) training mentions when the run distils (linked: to a
    /// teacher node, by concept id or name).
    pub distill_coverage: Option<(usize, usize)>,
    /// Soft span targets (the `span_teacher` setting).
    span_teacher: Option<SpanTeacher>,
    /// What the optimiser updates: the model's parameters (+ the distillation heads').
    train_params: ParamStore,
    opt: AdamW,
    /// The weights' moving average (`ema_decay` > 0): what dev evaluation and `best/` use.
    ema: Option<Ema>,
    schedule: Schedule,
    reduction: Reduction,
    negative_masking: NegativeMasking,
    /// The labelled examples, then the span teacher's unlabelled text.
    examples: Vec<Example>,
    /// How many of `examples` are labelled.
    labelled: usize,
    /// Mentions of the training corpus that have no word span.
    pub unmapped: Vec<Unmapped>,
    labels: Vec<String>,
    map: LabelMap,
    dev: Vec<Document>,
    /// The dev corpus is read sentence by sentence (it has multi-sentence documents).
    dev_by_sentence: bool,
    sampling: LabelSampling,
    order: ExampleOrder,
    /// The threads a step's micro-batch is split over.
    shards: Shards,
    pub state: TrainerState,
    metrics: MetricsLog,
    /// Steps this process ran (for the throughput clock).
    started: Instant,
}

impl Trainer {
    /// Start a fresh run in `config.out` (which must not hold one), or with
    /// `resume` continue the run there from its last checkpoint; then
    /// `config` must equal the saved settings.
    pub fn new(config: TrainConfig, resume: bool) -> Result<Trainer> {
        config.validate()?;
        let out = config.out.clone().expect("validated");
        let ckpt = out.join(CHECKPOINT);
        if resume {
            checkpoint::recover(&out)?;
            if !ckpt.is_dir() {
                return Err(Error::file(&out, "--resume: no checkpoint/ in the run folder"));
            }
            let saved = read_saved_config(&out.join(CONFIG_FILE))?;
            if saved != config {
                return Err(Error::file(out.join(CONFIG_FILE), format!("--resume: settings differ from the saved run's ({})", differing_fields(&saved, &config))));
            }
        } else if ckpt.exists() || out.join(format!("{CHECKPOINT}.old")).exists() {
            return Err(Error::file(&out, "already holds a run: continue it with --resume or choose another --out"));
        }
        // The data (and the minutes of span-teacher scoring) after the cheap
        // checks of the folder and before a fresh run's folder is made: a
        // bad corpus, label map or span teacher leaves no folder behind.
        let map = label_map(config.labels.as_deref().unwrap_or(&config.train_format))?;
        let format: Format = config.train_format.parse()?;
        let train_path = config.train.clone().expect("validated");
        let by_sentence = config.context == "sentence";
        let (docs, pre_split) = read_corpus(&train_path, format, config.train_exclude_ids.as_deref(), !by_sentence)?;
        let labels = prompt_labels(&map, &docs)?;
        let conv = to_examples(&docs, &map, &ConvertOptions { max_len: config.max_len, split_sentences: !pre_split && by_sentence, split_at_mentions: config.split_at_mentions })
            .map_err(|e| Error::Msg(format!("{}: {e}", train_path.display())))?;
        if conv.examples.is_empty() {
            return Err(Error::file(&train_path, "no training examples (no document has words)"));
        }
        // The labelled examples first, then the span teacher's unlabelled text.
        let (labelled, unmapped, mut examples) = (conv.examples.len(), conv.unmapped, conv.examples);
        for path in &config.span_teacher_text {
            examples.extend(unlabelled_examples(path, config.span_teacher_text_format.as_deref().unwrap_or(&config.train_format), by_sentence, config.max_len)?);
        }
        let (dev, dev_pre_split) = match &config.dev {
            Some(p) => read_corpus(p, config.dev_format.as_deref().unwrap_or(&config.train_format).parse()?, None, !by_sentence)?,
            None => (Vec::new(), true),
        };
        let span_teacher = match config.span_teacher.as_slice() {
            [] => None,
            dirs => Some(SpanTeacher::compute(dirs, &examples, labelled, &labels, config.max_width, config.span_teacher_weight, config.eval_batch_size)?),
        };

        if !resume {
            std::fs::create_dir_all(&out).map_err(|e| Error::file(&out, e))?;
            let json = serde_json::to_string_pretty(&config).map_err(|e| Error::Msg(e.to_string()))?;
            write_atomic(out.join(CONFIG_FILE), json.as_bytes())?;
            write_initial_checkpoint(&config, &out)?;
        }
        let state = checkpoint::load_state(&ckpt)?;
        let files = ModelFiles::read(&ckpt)?;
        let predictor = Predictor::load(&ckpt)?;
        write_unmapped(&out.join(UNMAPPED_FILE), &unmapped)?;

        let hyper = GlinerGroupHyper {
            encoder_lr: config.lr_encoder,
            encoder_weight_decay: config.weight_decay_encoder,
            head_lr: config.lr_head,
            head_weight_decay: config.weight_decay_head,
        };
        let (distiller, distill_coverage) = match &config.teacher {
            None => (None, None),
            Some(teacher) => {
                let saved = checkpoint::distill_file(&ckpt);
                let d = Distiller::new(&config, teacher, predictor.model.head.hidden, (state.step > 0).then_some(saved.as_path()))?;
                let coverage = d.coverage(&examples[..labelled]);
                if coverage.0 == 0 {
                    return Err(Error::file(teacher, format!("no training mention of {} links to a teacher node, so there is nothing to distil (IOB and brat corpora carry no concept ids: give the teacher's KG with --teacher-kg to link mentions by name)", train_path.display())));
                }
                (Some(d), Some(coverage))
            }
        };
        let mut train_params = predictor.model.params.clone();
        if let Some(d) = &distiller {
            train_params.extend(&d.params)?;
        }
        let groups = layer_decayed_groups(gliner_param_groups(&train_params, &hyper), config.layer_lr_decay);
        let mut opt = AdamW::new(groups, AdamWConfig { beta1: config.adam_beta1, beta2: config.adam_beta2, eps: config.adam_eps })?;
        opt.load_state(checkpoint::optimizer_file(&ckpt), &train_params)?;
        let ema = match config.ema_decay {
            0.0 => None,
            d if state.step == 0 => Some(Ema::new(d, &predictor.model.params)?),
            d => Some(Ema::load(checkpoint::ema_file(&ckpt), d, &predictor.model.params)?),
        };
        let sampling = match config.label_sampling.as_str() {
            "gliner" => LabelSampling::Gliner { max_neg_type_ratio: config.max_neg_type_ratio, max_types: config.max_types },
            _ => LabelSampling::All,
        };
        let metrics = MetricsLog::open(&out.join(METRICS_FILE), Some(state.step))?;
        Ok(Trainer {
            schedule: config.schedule()?,
            reduction: config.reduction()?,
            negative_masking: config.negative_masking()?,
            order: if config.group_by_length {
                ExampleOrder::grouped_by_length(examples.iter().map(|e| e.words.len()).collect(), config.batch_size, config.seed)
            } else {
                ExampleOrder::new(examples.len(), config.seed)
            },
            shards: Shards::new(rayon::current_num_threads(), config.batch_size)?,
            examples,
            unmapped,
            labelled,
            config,
            out,
            predictor,
            files,
            distiller,
            distill_coverage,
            span_teacher,
            train_params,
            opt,
            ema,
            labels,
            map,
            dev,
            dev_by_sentence: !dev_pre_split && by_sentence,
            sampling,
            state,
            metrics,
            started: Instant::now(),
        })
    }

    pub fn num_examples(&self) -> usize {
        self.examples.len()
    }

    /// How many training examples are the span teacher's unlabelled text.
    pub fn num_unlabelled(&self) -> usize {
        self.examples.len() - self.labelled
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    pub fn out(&self) -> &Path {
        &self.out
    }

    /// Train until `config.steps`, reporting every step, evaluation and save.
    pub fn run(&mut self, mut on_event: impl FnMut(Event<'_>)) -> Result<TrainerState> {
        self.started = Instant::now();
        let first = self.state.step;
        while self.state.step < self.config.steps {
            let t = Instant::now();
            let (loss, grad_norm, l_dist) = self.train_step()?;
            let step = self.state.step;
            let elapsed_s = self.started.elapsed().as_secs_f64();
            let sentences = (self.config.batch_size * self.config.grad_accum) as f64;
            let stats = StepStats {
                step,
                loss,
                grad_norm,
                lr_encoder: self.config.lr_encoder * self.schedule.factor(step - 1),
                lr_head: self.config.lr_head * self.schedule.factor(step - 1),
                sentences_per_s: sentences * (step - first) as f64 / elapsed_s.max(1e-9),
                elapsed_s,
            };
            let mut line = json!({
                "step": step, "loss": loss, "lr_encoder": stats.lr_encoder, "lr_head": stats.lr_head,
                "grad_norm": grad_norm, "sentences_per_s": sentences / t.elapsed().as_secs_f64().max(1e-9), "elapsed_s": elapsed_s,
            });
            if let Some(l) = l_dist {
                line["l_dist"] = json!(l);
            }
            self.metrics.append(&line)?;
            on_event(Event::Step(&stats));
            let last = step == self.config.steps;
            let eval_now = !self.dev.is_empty() && (last || (self.config.eval_every > 0 && step.is_multiple_of(self.config.eval_every)));
            if eval_now {
                let (report, best) = self.with_averaged_weights(|t| {
                    let report = t.evaluate_dev()?;
                    let best = t.state.best_f1.is_none_or(|b| report.micro.f1 > b);
                    t.metrics.append(&json!({"step": step, "dev": report.micro}))?;
                    if best {
                        t.state.best_f1 = Some(report.micro.f1);
                        t.state.best_step = Some(step);
                        checkpoint::save_best(&t.out, &t.files, &t.predictor.model.params)?;
                    }
                    Ok((report, best))
                })?;
                on_event(Event::Eval { step, report: &report, best });
            }
            if last || step.is_multiple_of(self.config.save_every()) {
                self.save()?;
                on_event(Event::Saved { step });
            }
        }
        if self.dev.is_empty() {
            // No model selection: the final (averaged) model is the one to use.
            self.with_averaged_weights(|t| checkpoint::save_best(&t.out, &t.files, &t.predictor.model.params))?;
        }
        Ok(self.state.clone())
    }

    /// One optimiser step; returns the mean loss over micro-batches, the
    /// gradient norm, and (when distilling) the mean L_dist.
    fn train_step(&mut self) -> Result<(f64, f64, Option<f64>)> {
        let (accum, step) = (self.config.grad_accum, self.state.step);
        let mut acc = GradAccumulator::new();
        let (mut loss_sum, mut l_dist_sum) = (0.0, 0.0);
        for micro in 0..accum {
            let index = step * accum + micro;
            let bs = self.config.batch_size;
            let picked: Vec<usize> = (index * bs..(index + 1) * bs).map(|p| self.order.at(p)).collect();
            let (grads, loss, l_dist) = self.micro_batch_grads(index, &picked)?;
            loss_sum += loss;
            l_dist_sum += l_dist;
            acc.add(grads)?;
        }
        let grads = acc.take_mean()?;
        let max_norm = if self.config.max_grad_norm > 0.0 { self.config.max_grad_norm } else { f64::MAX };
        let clip = clip_coef(&grads, max_norm).map_err(|e| Error::Msg(format!("step {}: {e}", step + 1)))?;
        self.opt.step_scaled(&self.train_params, &grads, self.schedule.factor(step), clip.coef)?;
        if let Some(ema) = &mut self.ema {
            ema.update(&self.predictor.model.params)?;
        }
        self.state.step += 1;
        let l_dist = self.distiller.is_some().then_some(l_dist_sum / accum as f64);
        Ok((loss_sum / accum as f64, clip.total_norm, l_dist))
    }

    /// (gradients, loss, L_dist) of micro-batch `index` (step · grad_accum +
    /// micro), whose examples are `picked` (those at order positions
    /// index · batch size + i), its shards run at once (see shards.rs).
    fn micro_batch_grads(&self, index: usize, picked: &[usize]) -> Result<(Grads, f64, f64)> {
        let cfg = &self.config;
        let chosen: Vec<&Example> = picked.iter().map(|&i| &self.examples[i]).collect();
        let labels: Vec<Vec<String>> = picked
            .iter()
            .enumerate()
            .map(|(i, &ex)| {
                let gold: Vec<&str> = self.examples[ex].spans.iter().map(|s| s.2.as_str()).collect();
                // Unlabelled text has no gold labels to sample around: the
                // teacher's probabilities for every label are its targets.
                let sampling = if ex < self.labelled { &self.sampling } else { &LabelSampling::All };
                example_labels(&self.labels, &gold, sampling, cfg.seed, index * cfg.batch_size + i)
            })
            .collect();
        // A shard's work grows with its examples' words and prompt.
        let costs: Vec<usize> = chosen.iter().zip(&labels).map(|(ex, l)| ex.words.len() + 2 * l.len()).collect();
        let shards: Vec<Shard<'_>> = partition(&costs, self.shards.count())
            .into_iter()
            .map(|group| {
                let items: Vec<BatchItem<'_>> = group.iter().map(|&i| BatchItem { words: &chosen[i].words, labels: &labels[i] }).collect();
                let batch = self.predictor.processor.encode(&items)?;
                let examples: Vec<&Example> = group.iter().map(|&i| chosen[i]).collect();
                let links = self.distiller.as_ref().map(|d| d.links(&batch, &examples));
                let example_ids = group.iter().map(|&i| picked[i]).collect();
                let negative_keys = group.iter().map(|&i| mix(cfg.seed, NEGATIVE_STREAM, (index * cfg.batch_size + i) as u64)).collect();
                Ok(Shard { batch, examples, example_ids, negative_keys, links })
            })
            .collect::<Result<_>>()?;
        // What the whole micro-batch's means divide by: its padded logits
        // [B, W, K, C] (W, C: the longest shard's) and its linked spans.
        let whole = Whole {
            logits_numel: shards.iter().map(|s| s.batch.batch_size).sum::<usize>()
                * shards.iter().map(|s| s.batch.num_words).max().unwrap_or(0)
                * shards.iter().map(|s| s.batch.max_width).max().unwrap_or(0)
                * shards.iter().map(|s| s.batch.num_classes).max().unwrap_or(0),
            links: shards.iter().filter_map(|s| s.links.as_ref()).map(Links::len).sum(),
        };
        let dropout_seed = mix(cfg.seed, DROPOUT_STREAM, index as u64);
        let (mut acc, mut loss, mut l_dist) = (GradAccumulator::new(), 0.0, 0.0);
        for shard in self.shards.run(shards, |i, shard| {
            let seed = if i == 0 { dropout_seed } else { mix(dropout_seed, SHARD_STREAM, i as u64) };
            self.shard_grads(&shard, seed, &whole)
        }) {
            let (grads, shard_loss, shard_l_dist) = shard?;
            acc.add(grads)?;
            loss += shard_loss;
            l_dist += shard_l_dist;
        }
        let grads = acc.take(1.0)?;
        if !loss.is_finite() {
            return Err(Error::Msg(format!(
                "step {}: the loss is {loss}; stopping (lower the learning rates, or check the batch's data)",
                index / cfg.grad_accum + 1
            )));
        }
        Ok((grads, loss, l_dist))
    }

    /// One shard's (gradients, loss, L_dist), its losses being its parts of
    /// the whole micro-batch's. A non-finite loss is returned as it is,
    /// without a backward pass (the caller stops the run).
    fn shard_grads(&self, shard: &Shard<'_>, dropout_seed: u64, whole: &Whole) -> Result<(Grads, f64, f64)> {
        let batch = &shard.batch;
        let spans: Vec<&[(usize, usize, String)]> = shard.examples.iter().map(|ex| ex.spans.as_slice()).collect();
        let gold = span_targets(batch, &spans)?;
        let mut mask = loss_mask(batch)?;
        if self.negative_masking != NegativeMasking::None && self.config.negatives < 1.0 {
            mask = mask.mul(&negative_mask(&gold, self.negative_masking, self.config.negatives, &shard.negative_keys)?)?;
        }
        let (targets, mask) = match &self.span_teacher {
            Some(teacher) => teacher.soften(&gold, &mask, batch, &shard.example_ids)?,
            None => (gold, mask),
        };
        let targets = smooth_targets(&targets, self.config.label_smoothing)?;
        let (enc, head) = model_inputs(batch)?;
        let out = self.predictor.model.forward(&enc, &head, &Mode::training(dropout_seed))?;
        let mut loss = gliner_span_loss(&out.head.logits, &targets, Some(&mask), self.reduction, self.config.focal())?;
        if self.reduction == Reduction::Mean {
            loss = part_of_mean(loss, out.head.logits.value().numel(), whole.logits_numel)?;
        }
        let mut l_dist = 0.0;
        if let (Some(d), Some(links)) = (&self.distiller, &shard.links) {
            let span_reps = out.head.span_reps.as_ref().ok_or_else(|| Error::Msg("distillation: the training forward formed no span representations".into()))?;
            (loss, l_dist) = d.loss(&loss, span_reps, links, whole.links)?;
        }
        let value = loss.value().to_scalar()?;
        if !value.is_finite() {
            return Ok((Grads::default(), value, l_dist));
        }
        Ok((loss.backward()?, value, l_dist))
    }

    /// `f` with the moving average in the model's parameters when the run
    /// keeps one (swapped in and back, no copies), else with the live weights.
    fn with_averaged_weights<R>(&mut self, f: impl FnOnce(&mut Trainer) -> Result<R>) -> Result<R> {
        let Some(mut ema) = self.ema.take() else { return f(self) };
        ema.swap(&self.predictor.model.params)?;
        let result = f(self);
        ema.swap(&self.predictor.model.params)?;
        self.ema = Some(ema);
        result
    }

    /// Strict scores of the model's current parameters on the dev corpus.
    pub fn evaluate_dev(&self) -> Result<EvalReport> {
        let opts = PredictOptions { threshold: self.config.threshold, mode: DecodeMode::FLAT, batch_size: self.config.eval_batch_size };
        evaluate_model(&self.predictor, &self.dev, &self.map, &self.labels, &opts, self.dev_by_sentence, |_, _| {})
    }

    fn save(&mut self) -> Result<()> {
        self.metrics.sync()?;
        let run = RunState { opt: &self.opt, ema: self.ema.as_ref(), distill: self.distiller.as_ref().map(|d| &d.params), state: &self.state };
        checkpoint::save_checkpoint(&self.out, &self.files, &self.predictor.model.params, &run)?;
        let svg = curve_svg(&self.metrics.records()?);
        write_atomic(self.out.join(CURVE_FILE), svg.as_bytes())
    }
}

/// Part of a micro-batch: its examples, encoded, and (when distilling) their links.
struct Shard<'a> {
    batch: GlinerBatch,
    examples: Vec<&'a Example>,
    /// Their indices in the training examples.
    example_ids: Vec<usize>,
    /// Their negative-sampling keys (see `negative_mask`).
    negative_keys: Vec<u64>,
    links: Option<Links>,
}

/// The whole micro-batch's counts its mean losses divide by.
struct Whole {
    logits_numel: usize,
    links: usize,
}

/// The training mentions without a word span, one JSON line each, for the user to inspect.
fn write_unmapped(path: &Path, unmapped: &[Unmapped]) -> Result<()> {
    let lines: String = unmapped
        .iter()
        .map(|u| json!({"doc": u.doc_id, "start": u.start, "end": u.end, "text": u.text, "label": u.label, "reason": format!("{:?}", u.reason)}).to_string() + "\n")
        .collect();
    write_atomic(path, lines.as_bytes())
}

fn read_saved_config(path: &Path) -> Result<TrainConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::file(path, format!("invalid saved settings: {e}")))
}

fn differing_fields(a: &TrainConfig, b: &TrainConfig) -> String {
    let (a, b) = (serde_json::to_value(a).unwrap_or_default(), serde_json::to_value(b).unwrap_or_default());
    let (Value::Object(a), Value::Object(b)) = (a, b) else { return String::new() };
    a.iter().filter(|(k, v)| b.get(*k) != Some(v)).map(|(k, v)| format!("{k}: saved {v}, given {}", b[k])).collect::<Vec<_>>().join("; ")
}

/// Step 0: the starting model (a GLiNER folder from `init`, or a fresh head
/// on `encoder`) with the run's max_width / max_len / dropout, and an empty
/// optimiser state.
fn write_initial_checkpoint(config: &TrainConfig, out: &Path) -> Result<()> {
    let base = match (&config.init, &config.encoder) {
        (Some(dir), _) => dir.clone(),
        (None, Some(encoder)) => {
            let base = out.join("init.tmp");
            let sources = InitSources { tokenizer_dir: None, minilm_dir: Some(encoder) };
            init_model(Preset::MiniLm, &sources, &base, config.seed, config.hidden_size)?;
            base
        }
        (None, None) => unreachable!("validated"),
    };
    let mut files = ModelFiles::read(&base)?;
    files.gliner_config["max_width"] = json!(config.max_width);
    files.gliner_config["max_len"] = json!(config.max_len);
    files.gliner_config["dropout"] = json!(config.dropout);
    if let Some(pooling) = config.pooling()? {
        files.gliner_config["subtoken_pooling"] = json!(pooling.name());
    }
    let mut model = Predictor::load(&base)?.model;
    if let Some(h) = config.hidden_size.filter(|&h| h != model.config.hidden_size) {
        let given = base.join("gliner_config.json");
        return Err(Error::file(&given, format!("hidden_size is {}, --hidden-size {h} asks for another: a starting model keeps its head width", model.config.hidden_size)));
    }
    if config.word_shape && !model.config.word_shape {
        files.gliner_config["word_shape"] = json!(true);
        model.params.insert(WORD_SHAPE_TABLE, Tensor::zeros(&[WORD_SHAPES, model.config.hidden_size], DType::F32))?;
    }
    let hyper = GlinerGroupHyper { encoder_lr: 0.0, encoder_weight_decay: 0.0, head_lr: 0.0, head_weight_decay: 0.0 };
    let opt = AdamW::new(gliner_param_groups(&model.params, &hyper), AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8 })?;
    let state = TrainerState { step: 0, best_f1: None, best_step: None };
    checkpoint::save_checkpoint(out, &files, &model.params, &RunState { opt: &opt, ema: None, distill: None, state: &state })?;
    if config.init.is_none() {
        std::fs::remove_dir_all(&base).map_err(|e| Error::file(&base, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! A micro-batch cut into shards gives the gradients of the whole batch.

    use std::path::{Path, PathBuf};

    use kogner_tensor::{Rng, Tensor};

    use super::*;
    use crate::data::pubtator::read_pubtator;
    use crate::teacher::export::TeacherEmbeddings;

    fn shared() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared")
    }

    /// deberta-tiny without dropout (so a step is a function of its batch
    /// alone), 3 NCBI abstracts with their concept ids, and a random teacher
    /// knowing every other id.
    fn setup(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let model = dir.join("tiny");
        std::fs::create_dir_all(&model).unwrap();
        let src = shared().join("fixtures/gliner/deberta-tiny");
        for f in ["model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
            std::fs::copy(src.join(f), model.join(f)).unwrap();
        }
        let mut config: Value = serde_json::from_str(&std::fs::read_to_string(src.join("gliner_config.json")).unwrap()).unwrap();
        config["encoder_config"]["hidden_dropout_prob"] = json!(0.0);
        config["encoder_config"]["attention_probs_dropout_prob"] = json!(0.0);
        std::fs::write(model.join("gliner_config.json"), config.to_string()).unwrap();

        let text = std::fs::read_to_string(shared().join("data/ner/ncbi-disease/pubtator/NCBItrainset_corpus.txt")).unwrap();
        let corpus = dir.join("tiny.pubtator");
        std::fs::write(&corpus, text.split("\n\n").take(3).collect::<Vec<_>>().join("\n\n") + "\n").unwrap();

        let mut ids: Vec<String> = read_pubtator(&corpus).unwrap().iter().flat_map(|d| d.mentions.iter().flat_map(|m| m.concept_ids.clone())).collect();
        ids.sort();
        ids.dedup();
        let node_ids: Vec<String> = ids.into_iter().step_by(2).collect();
        let mut rng = Rng::new(3);
        let mut random = |d: usize| Tensor::from_vec((0..node_ids.len() * d).map(|_| rng.normal() as f32).collect::<Vec<f32>>(), &[node_ids.len(), d]).unwrap();
        let (z, z_graph, z_transr) = (random(8), random(4), random(3));
        let teacher = dir.join("teacher.safetensors");
        TeacherEmbeddings { node_ids, z, z_graph, z_transr }.save(&teacher).unwrap();
        (model, corpus, teacher)
    }

    /// One step's settings on `setup`'s model and corpus, without dropout.
    fn tiny_config(model: &Path, corpus: &Path, out: PathBuf) -> TrainConfig {
        TrainConfig {
            train: Some(corpus.to_path_buf()),
            train_format: "pubtator".into(),
            labels: Some("ncbi-disease".into()),
            init: Some(model.to_path_buf()),
            out: Some(out),
            steps: 1,
            dropout: 0.0,
            ..TrainConfig::default()
        }
    }

    /// Each parameter's gradient (by name) from the first micro-batch of a fresh run of `config`.
    fn first_batch_grads(config: TrainConfig) -> Vec<(String, Option<Vec<f64>>)> {
        let mut t = Trainer::new(config, false).unwrap();
        let picked: Vec<usize> = (0..8).map(|p| t.order.at(p)).collect();
        let (grads, ..) = t.micro_batch_grads(0, &picked).unwrap();
        t.train_params.iter().map(|(name, var)| (name.clone(), grads.get(var).map(|g| g.to_f64_vec().unwrap()))).collect()
    }

    #[test]
    fn shards_add_up_to_the_whole_batch_gradient() {
        let dir = std::env::temp_dir().join(format!("kogner-shards-{}", std::process::id()));
        let (model, corpus, teacher) = setup(&dir);
        // The last run thins out negatives: each example's mask must not depend on its shard.
        let mut full_losses = Vec::new();
        for (run, (reduction, negatives)) in [("sum", 1.0), ("mean", 1.0), ("sum", 0.5)].into_iter().enumerate() {
            let config = |name: &str| TrainConfig {
                loss_reduction: reduction.into(),
                negatives,
                teacher: Some(teacher.clone()),
                ..tiny_config(&model, &corpus, dir.join(format!("{name}-{run}")))
            };
            let mut whole = Trainer::new(config("whole"), false).unwrap();
            whole.shards = Shards::new(1, 8).unwrap();
            let mut cut = Trainer::new(config("cut"), false).unwrap();
            cut.shards = Shards::new(3, 8).unwrap();
            for index in 0..3 {
                let picked: Vec<usize> = (index * 8..index * 8 + 8).map(|p| whole.order.at(p)).collect();
                let (g1, loss1, dist1) = whole.micro_batch_grads(index, &picked).unwrap();
                let (g3, loss3, dist3) = cut.micro_batch_grads(index, &picked).unwrap();
                let close = |a: f64, b: f64, what: &str| assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{reduction}, batch {index}, {what}: {a} cut vs {b} whole");
                close(loss3, loss1, "loss");
                match run {
                    0 => full_losses.push(loss1),
                    2 => assert!(loss1 < full_losses[index], "batch {index}: loss {loss1} with half the negatives vs {} with all", full_losses[index]),
                    _ => {}
                }
                assert!(dist1 > 0.0, "batch {index} links no span");
                close(dist3, dist1, "L_dist");
                assert_eq!(g3.len(), g1.len());
                // The trainers hold separate copies of the model: match parameters by name.
                for (name, var) in whole.train_params.iter() {
                    let want = g1.get(var).unwrap().to_f64_vec().unwrap();
                    let got = g3.get(&cut.train_params.var(name).unwrap()).unwrap().to_f64_vec().unwrap();
                    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
                    for (a, b) in got.iter().zip(&want) {
                        close(*a / (1.0 + scale), *b / (1.0 + scale), "gradient");
                    }
                }
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Label smoothing ε blends the targets linearly, `(1 − ε)·t + ε·½`, and
    /// the gradient is linear in them: g(ε) = (1 − ε)·g(0) + ε·g(1).
    #[test]
    fn label_smoothing_blends_the_gradient_linearly() {
        let dir = std::env::temp_dir().join(format!("kogner-smoothing-{}", std::process::id()));
        let (model, corpus, _) = setup(&dir);
        let grads_at = |eps: f64| {
            let config = TrainConfig { label_smoothing: eps, ..tiny_config(&model, &corpus, dir.join(format!("eps-{eps}"))) };
            first_batch_grads(config).into_iter().flat_map(|(_, g)| g.unwrap_or_default()).collect::<Vec<f64>>()
        };
        let (g0, g1, g3) = (grads_at(0.0), grads_at(1.0), grads_at(0.3));
        let scale = g0.iter().fold(0f64, |m, v| m.max(v.abs()));
        assert!(g0.iter().zip(&g1).any(|(a, b)| (a - b).abs() > 1e-2 * scale), "smoothing changed nothing");
        for ((a, b), c) in g0.iter().zip(&g1).zip(&g3) {
            let want = 0.7 * a + 0.3 * b;
            assert!((c - want).abs() <= 1e-4 * scale, "{c} at ε = 0.3 vs {want}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `word_shape` gives the starting model a zero shape table: every other
    /// gradient is the plain model's, bit for bit, and the table's rows of
    /// the shapes in the batch get a gradient (row 0, empty word slots, none).
    #[test]
    fn word_shape_adds_a_zero_table_that_trains() {
        let dir = std::env::temp_dir().join(format!("kogner-word-shape-{}", std::process::id()));
        let (model, corpus, _) = setup(&dir);
        let plain = first_batch_grads(tiny_config(&model, &corpus, dir.join("plain")));
        let shaped = first_batch_grads(TrainConfig { word_shape: true, ..tiny_config(&model, &corpus, dir.join("shaped")) });
        let saved: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("shaped/checkpoint/gliner_config.json")).unwrap()).unwrap();
        assert_eq!(saved["word_shape"], json!(true));
        let mut table = None;
        let mut rest = Vec::new();
        for (name, g) in shaped {
            match name == WORD_SHAPE_TABLE {
                true => table = g,
                false => rest.push((name, g)),
            }
        }
        assert_eq!(rest, plain, "a zero table changes no other gradient");
        let table = table.expect("the table is trained");
        let d = table.len() / WORD_SHAPES;
        let row_norm = |s: usize| table[s * d..(s + 1) * d].iter().map(|x| x * x).sum::<f64>().sqrt();
        assert_eq!(row_norm(0), 0.0);
        assert!((1..WORD_SHAPES).filter(|&s| row_norm(s) > 0.0).count() >= 4, "NCBI text has words, capitals, numbers, punctuation");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `subtoken_pooling` is written into the run's model and changes what
    /// trains (`first` spelled out gives the default run's gradients).
    #[test]
    fn subtoken_pooling_reaches_the_runs_model() {
        let dir = std::env::temp_dir().join(format!("kogner-pooling-{}", std::process::id()));
        let (model, corpus, _) = setup(&dir);
        let run = |name: &str, pooling: Option<&str>| {
            let grads = first_batch_grads(TrainConfig { subtoken_pooling: pooling.map(String::from), ..tiny_config(&model, &corpus, dir.join(name)) });
            let saved: Value = serde_json::from_str(&std::fs::read_to_string(dir.join(name).join("checkpoint/gliner_config.json")).unwrap()).unwrap();
            (grads, saved["subtoken_pooling"].clone())
        };
        let (plain, plain_saved) = run("plain", None);
        let (first, first_saved) = run("first", Some("first"));
        let (mean, mean_saved) = run("mean", Some("mean"));
        assert_eq!((plain_saved, first_saved, mean_saved), (json!("first"), json!("first"), json!("mean")));
        assert_eq!(first, plain);
        assert_ne!(mean, plain, "mean pooling trains a different model");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `hidden_size` sizes a fresh head only: a starting model's own width
    /// is accepted, another one stops the run with the field named.
    #[test]
    fn hidden_size_cannot_change_a_starting_models_head() {
        let dir = std::env::temp_dir().join(format!("kogner-hidden-size-{}", std::process::id()));
        let (model, corpus, _) = setup(&dir);
        let saved: Value = serde_json::from_str(&std::fs::read_to_string(model.join("gliner_config.json")).unwrap()).unwrap();
        let width = saved["hidden_size"].as_u64().unwrap() as usize;
        let with_width = |name: &str, h: usize| Trainer::new(TrainConfig { hidden_size: Some(h), ..tiny_config(&model, &corpus, dir.join(name)) }, false);
        assert!(with_width("same", width).is_ok());
        match with_width("other", width + 2) {
            Ok(_) => panic!("a head of {width} was resized to {}", width + 2),
            Err(e) => assert!(e.to_string().contains(&format!("hidden_size is {width}, --hidden-size {}", width + 2)), "{e}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The gradient is linear in the targets, `σ(x) − t`: a span teacher
    /// that is the starting model itself (no dropout) predicts σ(x), so at
    /// λ = 1 the gradient vanishes and at λ = ½ it is half the gold one.
    #[test]
    fn span_teacher_targets_blend_gold_with_its_probabilities() {
        let dir = std::env::temp_dir().join(format!("kogner-span-teacher-{}", std::process::id()));
        let (model, corpus, _) = setup(&dir);
        let grads_at = |name: &str, weight: Option<f64>| {
            first_batch_grads(TrainConfig {
                span_teacher: weight.map(|_| vec![model.clone()]).unwrap_or_default(),
                span_teacher_weight: weight.unwrap_or(0.5),
                ..tiny_config(&model, &corpus, dir.join(name))
            })
        };
        let (gold, half, own) = (grads_at("gold", None), grads_at("half", Some(0.5)), grads_at("own", Some(1.0)));
        let norm = |g: &[(String, Option<Vec<f64>>)]| g.iter().flat_map(|(_, v)| v.iter().flatten()).map(|x| x * x).sum::<f64>().sqrt();
        let gold_norm = norm(&gold);
        assert!(gold_norm > 1.0, "gold gradient norm {gold_norm}");
        assert!(norm(&own) < 1e-3 * gold_norm, "λ = 1 on its own predictions: gradient norm {} vs gold {gold_norm}", norm(&own));
        for ((name, g), (_, h)) in gold.iter().zip(&half) {
            for (a, b) in g.iter().flatten().zip(h.iter().flatten()) {
                assert!((b - 0.5 * a).abs() <= 1e-3 * gold_norm, "{name}: {b} at λ = ½ vs gold {a}");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Unlabelled text joins the training examples with the teacher's
    /// probabilities as its whole targets, whatever λ is: with the starting
    /// model as the teacher and λ = 0, a batch of the corpus read as
    /// labelled trains on the gold, the same sentences read as unlabelled
    /// text give no gradient (their targets are σ(x) itself).
    #[test]
    fn span_teacher_text_trains_on_the_teachers_probabilities_alone() {
        let dir = std::env::temp_dir().join(format!("kogner-span-teacher-text-{}", std::process::id()));
        let (model, corpus, _) = setup(&dir);
        let t = Trainer::new(
            TrainConfig {
                span_teacher: vec![model.clone()],
                span_teacher_weight: 0.0,
                span_teacher_text: vec![corpus.clone()],
                ..tiny_config(&model, &corpus, dir.join("text"))
            },
            false,
        )
        .unwrap();
        let labelled = t.num_examples() - t.num_unlabelled();
        assert_eq!(t.num_unlabelled(), labelled, "the corpus read again as text gives as many examples");
        assert!(t.examples[labelled..].iter().all(|ex| ex.spans.is_empty()), "annotations of unlabelled text are dropped");
        let norm = |picked: Vec<usize>| {
            let (grads, ..) = t.micro_batch_grads(0, &picked).unwrap();
            t.train_params.iter().filter_map(|(_, var)| grads.get(var)).flat_map(|g| g.to_f64_vec().unwrap()).map(|x| x * x).sum::<f64>().sqrt()
        };
        let (gold, text) = (norm((0..8).collect()), norm((labelled..labelled + 8).collect()));
        assert!(gold > 1.0, "gold gradient norm {gold}");
        assert!(text < 1e-3 * gold, "unlabelled text on its own teacher's targets: gradient norm {text} vs gold {gold}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
