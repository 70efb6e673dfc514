//! `kogner train`: settings from `--config FILE.toml|json`, overridden by
//! flags; progress bar with loss, learning rates, sentences/s and ETA.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use kogner_train::student::{Event, TrainConfig, Trainer};
use serde_json::{json, Map, Value};

use crate::emit;

#[derive(Args)]
pub struct TrainArgs {
    /// TOML or JSON file of settings (names as the flags, with underscores); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Training corpus: a file, or a folder for brat.
    #[arg(long)]
    train: Option<PathBuf>,
    /// iob, pubtator, brat or gliner [default: iob].
    #[arg(long)]
    train_format: Option<String>,
    /// Leave out these training documents (ids, one per line).
    #[arg(long)]
    train_exclude_ids: Option<PathBuf>,
    /// Development corpus: evaluated every --eval-every steps; the best model goes to OUT/best.
    #[arg(long)]
    dev: Option<PathBuf>,
    /// Format of --dev [default: --train-format].
    #[arg(long)]
    dev_format: Option<String>,
    /// Corpus tags → labels, `TAG=label,...`, or a corpus name: ncbi-disease, bc5cdr, jnlpba, gliner.
    #[arg(long)]
    labels: Option<String>,
    /// A BERT-family encoder folder (e.g. all-MiniLM-L6-v2): a new GLiNER head on top.
    #[arg(long, conflicts_with = "init")]
    encoder: Option<PathBuf>,
    /// A GLiNER model folder to fine-tune.
    #[arg(long)]
    init: Option<PathBuf>,
    /// Run folder: checkpoint/, best/, metrics.jsonl, curve.svg, train_config.json.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint (same settings).
    #[arg(long)]
    resume: bool,
    #[arg(long)]
    steps: Option<usize>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    grad_accum: Option<usize>,
    #[arg(long)]
    lr_encoder: Option<f64>,
    #[arg(long)]
    lr_head: Option<f64>,
    #[arg(long)]
    weight_decay_encoder: Option<f64>,
    #[arg(long)]
    weight_decay_head: Option<f64>,
    /// cosine, linear or constant (after the warm-up).
    #[arg(long)]
    scheduler: Option<String>,
    #[arg(long)]
    warmup_ratio: Option<f64>,
    /// 0 disables clipping.
    #[arg(long)]
    max_grad_norm: Option<f64>,
    /// Evaluate and keep an exponential moving average of the weights with this decay (e.g. 0.999; 0: off).
    #[arg(long)]
    ema_decay: Option<f64>,
    /// Layer-wise learning-rate decay of the encoder (e.g. 0.8): a layer k below the top trains at
    /// lr-encoder × decay^k, the embeddings lowest; 1: off.
    #[arg(long)]
    layer_lr_decay: Option<f64>,
    /// KoGNER teacher file (`kogner teacher --out`): distil spans whose gold concept id is a KG
    /// node into the student (PubTator corpora carry the ids).
    #[arg(long)]
    teacher: Option<PathBuf>,
    /// The teacher's KG folder: link mentions without a concept id by name (a node's name or
    /// synonym, exact up to case), e.g. for IOB and brat corpora.
    #[arg(long)]
    teacher_kg: Option<PathBuf>,
    /// Weight b of the distillation loss (loss = bce_weight·L_GLiNER + b·L_dist; defaults 0.8, 0.2).
    #[arg(long)]
    distill_weight: Option<f64>,
    #[arg(long)]
    bce_weight: Option<f64>,
    /// Keep MLP_dist at its seeded initialisation (a fixed random projection of the teacher's H),
    /// so the two heads cannot meet at one point for every node.
    #[arg(long)]
    freeze_mlp_dist: Option<bool>,
    /// Ensemble distillation: a trained GLiNER folder whose span probabilities soften the gold
    /// targets, (1 − λ)·gold + λ·p; repeat it for an ensemble (probabilities averaged).
    #[arg(long)]
    span_teacher: Vec<PathBuf>,
    /// λ of --span-teacher (default 0.5).
    #[arg(long)]
    span_teacher_weight: Option<f64>,
    /// Unlabelled text for --span-teacher: a corpus (annotations unused) whose examples join the
    /// training set with the teacher's probabilities as their targets; repeat it for several.
    #[arg(long)]
    span_teacher_text: Vec<PathBuf>,
    /// The format of --span-teacher-text (default: --train-format).
    #[arg(long)]
    span_teacher_text_format: Option<String>,
    #[arg(long)]
    max_width: Option<usize>,
    #[arg(long)]
    max_len: Option<usize>,
    /// sentence (default: documents are cut into sentences) or document (sentences packed up
    /// to --max-len words, dev documents read whole: the model sees a mention's context).
    /// An IOB file without -DOCSTART- lines is read as one document in file order (its
    /// sentences packed); GLiNER JSON records are examples already and are not cut further.
    #[arg(long)]
    context: Option<String>,
    /// Cut words where a training mention starts or ends inside them (default true).
    #[arg(long)]
    split_at_mentions: Option<bool>,
    /// GLiNER head width for a fresh head on --encoder (default: the encoder's, 384 for MiniLM;
    /// GLiNER's default is 512, through a projection from the encoder's width).
    #[arg(long)]
    hidden_size: Option<usize>,
    /// first | last | mean: which sub-tokens make a word's vector (default: the starting
    /// model's, first for a fresh head, as GLiNER; Python GLiNER 0.2.x pools first only).
    #[arg(long)]
    subtoken_pooling: Option<String>,
    #[arg(long)]
    dropout: Option<f64>,
    /// Add a word-shape (case / digits) embedding to the word vectors, for uncased encoders
    /// (default false; kogner-only: such a model does not load in Python GLiNER).
    #[arg(long)]
    word_shape: Option<bool>,
    /// sum (GLiNER's default) or mean.
    #[arg(long)]
    loss_reduction: Option<String>,
    #[arg(long)]
    focal_alpha: Option<f64>,
    #[arg(long)]
    focal_gamma: Option<f64>,
    /// Targets become t·(1 − ε) + ε/2 (GLiNER's label_smoothing; default 0).
    #[arg(long)]
    label_smoothing: Option<f64>,
    /// Negative sampling: which zero-target loss elements --negatives thins out: none, global (any;
    /// the default, as GLiNER), label (classes the example lacks) or span (spans without a class).
    #[arg(long)]
    masking: Option<String>,
    /// The probability each such negative is kept (default 1: all).
    #[arg(long)]
    negatives: Option<f64>,
    /// all (every label in every example) or gliner (GLiNER's negative label sampling).
    #[arg(long)]
    label_sampling: Option<String>,
    /// Batch examples of similar length together (default true; GLiNER itself does not).
    #[arg(long)]
    group_by_length: Option<bool>,
    #[arg(long)]
    seed: Option<u64>,
    /// Evaluate on --dev every N steps (0: at the end only).
    #[arg(long)]
    eval_every: Option<usize>,
    /// Write the resumable checkpoint every N steps [default: --eval-every, else 100].
    #[arg(long)]
    save_every: Option<usize>,
    #[arg(long)]
    threshold: Option<f32>,
    #[arg(long)]
    eval_batch_size: Option<usize>,
}

impl TrainArgs {
    /// The flags given, as settings.
    fn overrides(&self) -> Map<String, Value> {
        let mut m = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.to_string(), v);
            }
        };
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| json!(p));
        put("train", path(&self.train));
        put("train_format", self.train_format.as_ref().map(|v| json!(v)));
        put("train_exclude_ids", path(&self.train_exclude_ids));
        put("dev", path(&self.dev));
        put("dev_format", self.dev_format.as_ref().map(|v| json!(v)));
        put("labels", self.labels.as_ref().map(|v| json!(v)));
        put("encoder", path(&self.encoder));
        put("init", path(&self.init));
        put("out", path(&self.out));
        put("steps", self.steps.map(|v| json!(v)));
        put("batch_size", self.batch_size.map(|v| json!(v)));
        put("grad_accum", self.grad_accum.map(|v| json!(v)));
        put("lr_encoder", self.lr_encoder.map(|v| json!(v)));
        put("lr_head", self.lr_head.map(|v| json!(v)));
        put("weight_decay_encoder", self.weight_decay_encoder.map(|v| json!(v)));
        put("weight_decay_head", self.weight_decay_head.map(|v| json!(v)));
        put("scheduler", self.scheduler.as_ref().map(|v| json!(v)));
        put("warmup_ratio", self.warmup_ratio.map(|v| json!(v)));
        put("max_grad_norm", self.max_grad_norm.map(|v| json!(v)));
        put("ema_decay", self.ema_decay.map(|v| json!(v)));
        put("layer_lr_decay", self.layer_lr_decay.map(|v| json!(v)));
        put("teacher", path(&self.teacher));
        put("teacher_kg", path(&self.teacher_kg));
        put("distill_weight", self.distill_weight.map(|v| json!(v)));
        put("bce_weight", self.bce_weight.map(|v| json!(v)));
        put("freeze_mlp_dist", self.freeze_mlp_dist.map(|v| json!(v)));
        put("span_teacher", (!self.span_teacher.is_empty()).then(|| json!(self.span_teacher)));
        put("span_teacher_weight", self.span_teacher_weight.map(|v| json!(v)));
        put("span_teacher_text", (!self.span_teacher_text.is_empty()).then(|| json!(self.span_teacher_text)));
        put("span_teacher_text_format", self.span_teacher_text_format.as_ref().map(|v| json!(v)));
        put("max_width", self.max_width.map(|v| json!(v)));
        put("max_len", self.max_len.map(|v| json!(v)));
        put("hidden_size", self.hidden_size.map(|v| json!(v)));
        put("subtoken_pooling", self.subtoken_pooling.as_ref().map(|v| json!(v)));
        put("dropout", self.dropout.map(|v| json!(v)));
        put("word_shape", self.word_shape.map(|v| json!(v)));
        put("loss_reduction", self.loss_reduction.as_ref().map(|v| json!(v)));
        put("focal_alpha", self.focal_alpha.map(|v| json!(v)));
        put("focal_gamma", self.focal_gamma.map(|v| json!(v)));
        put("label_smoothing", self.label_smoothing.map(|v| json!(v)));
        put("masking", self.masking.as_ref().map(|v| json!(v)));
        put("negatives", self.negatives.map(|v| json!(v)));
        put("label_sampling", self.label_sampling.as_ref().map(|v| json!(v)));
        put("context", self.context.as_ref().map(|v| json!(v)));
        put("split_at_mentions", self.split_at_mentions.map(|v| json!(v)));
        put("group_by_length", self.group_by_length.map(|v| json!(v)));
        put("seed", self.seed.map(|v| json!(v)));
        put("eval_every", self.eval_every.map(|v| json!(v)));
        put("save_every", self.save_every.map(|v| json!(v)));
        put("threshold", self.threshold.map(|v| json!(v)));
        put("eval_batch_size", self.eval_batch_size.map(|v| json!(v)));
        m
    }
}

/// Settings: the saved ones of a resumed run, else the config file; flags on top.
fn settings(args: &TrainArgs) -> Result<TrainConfig> {
    let mut base = match (&args.config, args.resume, &args.out) {
        (Some(file), _, _) => TrainConfig::file_value(file)?,
        (None, true, Some(out)) => TrainConfig::file_value(&out.join("train_config.json"))?,
        (None, true, None) => bail!("--resume needs --out (the run folder to continue)"),
        (None, false, _) => Map::new(),
    };
    base.extend(args.overrides());
    let origin = args.config.as_ref().map_or("flags".to_string(), |p| p.display().to_string());
    Ok(TrainConfig::from_value(base, &origin)?)
}

pub fn run(args: TrainArgs) -> Result<()> {
    let config = settings(&args)?;
    let mut trainer = Trainer::new(config, args.resume)?;
    let cfg = trainer.config.clone();
    eprintln!(
        "training on {} examples ({} mentions without a word span), labels {:?}, {} steps of {} × {}{}",
        trainer.num_examples(),
        trainer.unmapped.len(),
        trainer.labels(),
        cfg.steps,
        cfg.batch_size,
        cfg.grad_accum,
        if trainer.state.step > 0 { format!(", resuming after step {}", trainer.state.step) } else { String::new() }
    );
    if let Some((linked, total)) = trainer.distill_coverage {
        eprintln!("distilling from {}: {linked} of {total} training mentions linked to a KG node", cfg.teacher.as_ref().map_or(String::new(), |p| p.display().to_string()));
    }
    if !cfg.span_teacher.is_empty() {
        eprintln!("targets softened (λ {}) by the span probabilities of {}", cfg.span_teacher_weight, cfg.span_teacher.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" + "));
    }
    if trainer.num_unlabelled() > 0 {
        eprintln!("{} of the examples are unlabelled text ({}), trained on the span teacher's probabilities alone", trainer.num_unlabelled(), cfg.span_teacher_text.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "));
    }
    let bar = ProgressBar::new(cfg.steps as u64).with_position(trainer.state.step as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]")
            .expect("static template"),
    );
    let state = trainer.run(|event| match event {
        Event::Step(s) => {
            bar.set_position(s.step as u64);
            bar.set_message(format!("loss {:.4}  lr {:.2e}/{:.2e}  {:.1} sent/s", s.loss, s.lr_encoder, s.lr_head, s.sentences_per_s));
        }
        Event::Eval { step, report, best } => bar.suspend(|| eprintln!(
            "step {step}: dev P {:.2} R {:.2} F1 {:.2}{}",
            100.0 * report.micro.precision,
            100.0 * report.micro.recall,
            100.0 * report.micro.f1,
            if best { "  (best)" } else { "" }
        )),
        Event::Saved { .. } => {}
    })?;
    bar.finish();
    let out = trainer.out().display().to_string();
    emit(&json!({"out": out, "steps": state.step, "best_dev_f1": state.best_f1, "best_step": state.best_step, "model": format!("{out}/best")}).to_string())
}
