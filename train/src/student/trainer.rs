//! The GLiNER training loop: batches → training forward → GLiNER's loss →
//! backward (accumulated over micro-batches) → clipping → AdamW at the
//! schedule's factor (→ the weights' moving average, when kept); dev
//! evaluation with best-model selection; resumable checkpoints; metrics.
//!
//! Reproducibility: the example order, each example's labels and every
//! dropout mask are pure functions of (seed, step), and a checkpoint holds
//! the weights, the AdamW state, the moving average and the step, so
//! `--resume` after a kill continues with exactly the losses an
//! uninterrupted run has.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{json, Value};

use kogner_autograd::ops::loss::{gliner_span_loss, Reduction};
use kogner_autograd::ParamStore;
use kogner_models::gliner::decode::DecodeMode;
use kogner_models::gliner::init::{init_model, InitSources, Preset};
use kogner_models::gliner::pipeline::{model_inputs, PredictOptions, Predictor};
use kogner_models::gliner::processor::BatchItem;
use kogner_models::nn::Mode;
use kogner_tensor::safetensors_io::write_atomic;
use kogner_tensor::{Error, Result};

use super::checkpoint::{self, ModelFiles, RunState, TrainerState, CHECKPOINT};
use super::config::TrainConfig;
use super::corpus::{label_map, prompt_labels, read_corpus, Format};
use super::distill::Distiller;
use super::evaluate::evaluate_model;
use super::metrics::{curve_svg, MetricsLog};
use super::sampler::{example_labels, mix, ExampleOrder, LabelSampling, DROPOUT_STREAM};
use super::targets::{loss_mask, span_targets};
use crate::data::{to_examples, ConvertOptions, Document, Example, LabelMap, Unmapped};
use crate::eval::EvalReport;
use crate::optim::{clip_grad_norm, gliner_param_groups, AdamW, AdamWConfig, Ema, GlinerGroupHyper, GradAccumulator, Schedule};

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
    /// What the optimiser updates: the model's parameters (+ the distillation heads').
    train_params: ParamStore,
    opt: AdamW,
    /// The weights' moving average (`ema_decay` > 0): what dev evaluation and `best/` use.
    ema: Option<Ema>,
    schedule: Schedule,
    reduction: Reduction,
    examples: Vec<Example>,
    /// Mentions of the training corpus that have no word span.
    pub unmapped: Vec<Unmapped>,
    labels: Vec<String>,
    map: LabelMap,
    dev: Vec<Document>,
    /// The dev corpus is read sentence by sentence (it has multi-sentence documents).
    dev_by_sentence: bool,
    sampling: LabelSampling,
    order: ExampleOrder,
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
        } else {
            if ckpt.exists() || out.join(format!("{CHECKPOINT}.old")).exists() {
                return Err(Error::file(&out, "already holds a run: continue it with --resume or choose another --out"));
            }
            std::fs::create_dir_all(&out).map_err(|e| Error::file(&out, e))?;
            let json = serde_json::to_string_pretty(&config).map_err(|e| Error::Msg(e.to_string()))?;
            write_atomic(out.join(CONFIG_FILE), json.as_bytes())?;
            write_initial_checkpoint(&config, &out)?;
        }
        let state = checkpoint::load_state(&ckpt)?;
        let files = ModelFiles::read(&ckpt)?;
        let predictor = Predictor::load(&ckpt)?;

        let map = label_map(config.labels.as_deref().unwrap_or(&config.train_format))?;
        let format: Format = config.train_format.parse()?;
        let train_path = config.train.clone().expect("validated");
        let (docs, pre_split) = read_corpus(&train_path, format, config.train_exclude_ids.as_deref())?;
        let labels = prompt_labels(&map, &docs)?;
        let by_sentence = config.context == "sentence";
        let conv = to_examples(&docs, &map, &ConvertOptions { max_len: config.max_len, split_sentences: !pre_split && by_sentence, split_at_mentions: config.split_at_mentions })
            .map_err(|e| Error::Msg(format!("{}: {e}", train_path.display())))?;
        if conv.examples.is_empty() {
            return Err(Error::file(&train_path, "no training examples (no document has words)"));
        }
        write_unmapped(&out.join(UNMAPPED_FILE), &conv.unmapped)?;
        let (dev, dev_pre_split) = match &config.dev {
            Some(p) => read_corpus(p, config.dev_format.as_deref().unwrap_or(&config.train_format).parse()?, None)?,
            None => (Vec::new(), true),
        };

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
                let coverage = d.coverage(&conv.examples);
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
        let groups = gliner_param_groups(&train_params, &hyper);
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
            order: if config.group_by_length {
                ExampleOrder::grouped_by_length(conv.examples.iter().map(|e| e.words.len()).collect(), config.batch_size, config.seed)
            } else {
                ExampleOrder::new(conv.examples.len(), config.seed)
            },
            examples: conv.examples,
            unmapped: conv.unmapped,
            config,
            out,
            predictor,
            files,
            distiller,
            distill_coverage,
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
            let eval_now = !self.dev.is_empty() && (last || (self.config.eval_every > 0 && step % self.config.eval_every == 0));
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
            if last || step % self.config.save_every() == 0 {
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
        let cfg = &self.config;
        let (bs, accum, step) = (cfg.batch_size, cfg.grad_accum, self.state.step);
        let model = &self.predictor.model;
        let mut acc = GradAccumulator::new();
        let (mut loss_sum, mut l_dist_sum) = (0.0, 0.0);
        for micro in 0..accum {
            let first = (step * accum + micro) * bs;
            let positions: Vec<usize> = (first..first + bs).collect();
            let chosen: Vec<&Example> = positions.iter().map(|&p| &self.examples[self.order.at(p)]).collect();
            let labels: Vec<Vec<String>> = chosen
                .iter()
                .zip(&positions)
                .map(|(ex, &p)| {
                    let gold: Vec<&str> = ex.spans.iter().map(|s| s.2.as_str()).collect();
                    example_labels(&self.labels, &gold, &self.sampling, cfg.seed, p)
                })
                .collect();
            let items: Vec<BatchItem<'_>> = chosen.iter().zip(&labels).map(|(ex, l)| BatchItem { words: &ex.words, labels: l }).collect();
            let batch = self.predictor.processor.encode(&items)?;
            let spans: Vec<&[(usize, usize, String)]> = chosen.iter().map(|ex| ex.spans.as_slice()).collect();
            let targets = span_targets(&batch, &spans)?;
            let mask = loss_mask(&batch)?;
            let (enc, head) = model_inputs(&batch)?;
            let mode = Mode::training(mix(cfg.seed, DROPOUT_STREAM, (step * accum + micro) as u64));
            let out = model.forward(&enc, &head, &mode)?;
            let mut loss = gliner_span_loss(&out.head.logits, &targets, Some(&mask), self.reduction, cfg.focal())?;
            if let Some(d) = &self.distiller {
                let span_reps = out.head.span_reps.as_ref().ok_or_else(|| Error::Msg("distillation: the training forward formed no span representations".into()))?;
                let (total, l_dist) = d.loss(&loss, span_reps, &d.links(&batch, &chosen))?;
                loss = total;
                l_dist_sum += l_dist;
            }
            let value = loss.value().to_scalar()?;
            if !value.is_finite() {
                return Err(Error::Msg(format!(
                    "step {}: the loss is {value}; stopping (lower the learning rates, or check the batch's data)",
                    step + 1
                )));
            }
            loss_sum += value;
            acc.add(loss.backward()?)?;
        }
        let mut grads = acc.take_mean()?;
        let max_norm = if cfg.max_grad_norm > 0.0 { cfg.max_grad_norm } else { f64::MAX };
        let clip = clip_grad_norm(&mut grads, max_norm).map_err(|e| Error::Msg(format!("step {}: {e}", step + 1)))?;
        self.opt.step(&self.train_params, &grads, self.schedule.factor(step))?;
        if let Some(ema) = &mut self.ema {
            ema.update(&model.params)?;
        }
        self.state.step += 1;
        let l_dist = self.distiller.is_some().then_some(l_dist_sum / accum as f64);
        Ok((loss_sum / accum as f64, clip.total_norm, l_dist))
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
            init_model(Preset::MiniLm, &sources, &base, config.seed)?;
            base
        }
        (None, None) => unreachable!("validated"),
    };
    let mut files = ModelFiles::read(&base)?;
    files.gliner_config["max_width"] = json!(config.max_width);
    files.gliner_config["max_len"] = json!(config.max_len);
    files.gliner_config["dropout"] = json!(config.dropout);
    let model = Predictor::load(&base)?.model;
    let hyper = GlinerGroupHyper { encoder_lr: 0.0, encoder_weight_decay: 0.0, head_lr: 0.0, head_weight_decay: 0.0 };
    let opt = AdamW::new(gliner_param_groups(&model.params, &hyper), AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8 })?;
    let state = TrainerState { step: 0, best_f1: None, best_step: None };
    checkpoint::save_checkpoint(out, &files, &model.params, &RunState { opt: &opt, ema: None, distill: None, state: &state })?;
    if config.init.is_none() {
        std::fs::remove_dir_all(&base).map_err(|e| Error::file(&base, e))?;
    }
    Ok(())
}
