//! `kogner train` settings: a TOML or JSON file, overridden by flags. Names
//! and defaults follow GLiNER's training configs where GLiNER has them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use kogner_models::config::SubtokenPooling;
use kogner_models::gliner::head::head_width_problem;
use kogner_tensor::{Error, Result};

use crate::optim::Schedule;
use crate::student::targets::NegativeMasking;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Training corpus (a file; a folder for brat).
    pub train: Option<PathBuf>,
    pub train_format: String,
    /// Document ids to leave out of the training corpus, one per line
    /// (JNLPBA: the standoff train documents that its devel set consists of).
    pub train_exclude_ids: Option<PathBuf>,
    /// Development corpus for model selection (optional).
    pub dev: Option<PathBuf>,
    /// Defaults to `train_format`.
    pub dev_format: Option<String>,
    /// `TAG=label,...` or a corpus name with a default map.
    pub labels: Option<String>,
    /// A BERT-family encoder folder (config.json, model.safetensors,
    /// tokenizer.json): a fresh GLiNER head is put on top.
    pub encoder: Option<PathBuf>,
    /// A GLiNER model folder to continue from (instead of `encoder`).
    pub init: Option<PathBuf>,
    /// Run folder: checkpoint/, best/, metrics.jsonl, curve.svg.
    pub out: Option<PathBuf>,

    /// Optimiser steps.
    pub steps: usize,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimiser step (gradients averaged).
    pub grad_accum: usize,
    pub lr_encoder: f64,
    pub lr_head: f64,
    pub weight_decay_encoder: f64,
    pub weight_decay_head: f64,
    /// `cosine`, `linear` or `constant` (after warm-up).
    pub scheduler: String,
    pub warmup_ratio: f64,
    pub max_grad_norm: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_eps: f64,
    /// Decay of an exponential moving average of the weights (e.g. 0.999),
    /// which dev evaluation, `best/` and a dev-less run's final model use;
    /// 0 = off (GLiNER's behaviour: the last weights).
    pub ema_decay: f64,
    /// Layer-wise learning-rate decay of the encoder (ELECTRA's
    /// `layerwise_lr_decay`, e.g. 0.8): a layer k depths below the top
    /// trains at `lr_encoder`·decay^k (see `layer_decayed_groups`); 1 = off.
    pub layer_lr_decay: f64,

    /// KoGNER: a teacher file (`kogner teacher --out`). Training spans whose
    /// gold concept id is one of its nodes are distilled (SPEC §5.3):
    /// loss = `bce_weight`·L_GLiNER + `distill_weight`·L_dist. None = GLiNER alone.
    pub teacher: Option<PathBuf>,
    /// The teacher's KG folder: mentions without a concept id that is a
    /// node are linked by their text (a node's name or synonym, exact up to
    /// case; names shared by several nodes are skipped). For corpora
    /// without ids (IOB, brat).
    pub teacher_kg: Option<PathBuf>,
    /// a (the paper's 0.8); used only with a teacher.
    pub bce_weight: f64,
    /// b (the paper's 0.2).
    pub distill_weight: f64,
    /// Hidden width of MLP_span and MLP_dist.
    pub distill_hidden: usize,
    /// The width both map into (the paper's "KG hidden size" 58).
    pub distill_dim: usize,
    /// Keep MLP_dist at its seeded initialisation, a fixed random projection
    /// of H. Trained (the paper's way), it can map every linked node to one
    /// point that MLP_span then matches without learning anything from the
    /// teacher (measured on BC5CDR; see the README).
    pub freeze_mlp_dist: bool,

    /// Ensemble distillation: GLiNER folders (one model, or an ensemble
    /// whose probabilities are averaged) that score every training span
    /// before the run; targets become `(1 − span_teacher_weight)·gold +
    /// span_teacher_weight·p` (see `span_teacher.rs`). Empty = gold only.
    pub span_teacher: Vec<PathBuf>,
    /// λ in [0, 1].
    pub span_teacher_weight: f64,
    /// Unlabelled text for the span teacher: corpora (their annotations
    /// unused) whose examples join the training set with the teacher's
    /// probabilities as their whole targets (λ = 1: they have no gold), so
    /// the student learns the teacher's judgement on more text than the
    /// labelled corpus holds. Needs `span_teacher`.
    pub span_teacher_text: Vec<PathBuf>,
    /// The format of `span_teacher_text` (default `train_format`).
    pub span_teacher_text_format: Option<String>,

    /// Widest span in words (GLiNER's `max_width`).
    pub max_width: usize,
    /// Longest example in words; longer documents are cut at sentences.
    pub max_len: usize,
    /// What one example is: `sentence` (multi-sentence documents are cut
    /// into sentences, for training and dev evaluation alike) or `document`
    /// (sentences packed into examples of up to `max_len` words, so the
    /// model sees the text around a mention — an abbreviation's long form,
    /// say; dev documents are read whole; an IOB file without document
    /// boundaries is read as one document, its sentences in file order).
    pub context: String,
    /// Cut a word where a training mention starts or ends inside it
    /// (`IL-2` in `IL-2-induced`), so the mention is kept; off: such
    /// mentions are only listed in `unmapped_mentions.jsonl`.
    pub split_at_mentions: bool,
    /// GLiNER head width for a fresh head on `encoder` (default: the
    /// encoder's, 384 for MiniLM; GLiNER's own default is 512). A width
    /// other than the encoder's adds GLiNER's projection from it. With
    /// `init` the starting model's width is kept; a different one is an error.
    pub hidden_size: Option<usize>,
    /// How a word's vector is pooled from its sub-tokens: `first` (GLiNER
    /// 0.2.x, which pools nothing else), `last` or `mean` (GLiNER's config
    /// key, as flair read it in GLiNER 0.1.x). Default: the starting
    /// model's, `first` for a fresh head.
    pub subtoken_pooling: Option<String>,
    /// GLiNER head dropout (the encoder keeps its config's).
    pub dropout: f64,
    /// Add a word-shape embedding (case and digit pattern of each word,
    /// zero at the start) to the word vectors: uncased encoders cannot see
    /// that `CAT` is not `cat`. Not GLiNER; a model trained with it does not
    /// load in Python GLiNER. A starting model that has one keeps it.
    pub word_shape: bool,
    /// `sum` (GLiNER's default) or `mean` over the unmasked (span, label) pairs.
    pub loss_reduction: String,
    /// Focal loss weights; alpha < 0 and gamma 0 = plain BCE (GLiNER's default).
    pub focal_alpha: f64,
    pub focal_gamma: f64,
    /// GLiNER's `label_smoothing` ε: targets become `t·(1 − ε) + ε/2`.
    pub label_smoothing: f64,
    /// GLiNER's negative sampling: which zero-target loss elements may be
    /// dropped (`none`, `global`: any, `label`: those of classes the
    /// example lacks, `span`: those of spans without a class)...
    pub masking: String,
    /// ...and the probability each of them is kept (1 = all, GLiNER's default).
    pub negatives: f64,
    /// `all`: every example is prompted with every label (shuffled order;
    /// the natural choice for a fixed label set). `gliner`: GLiNER's
    /// sampling: the example's own labels plus up to
    /// `max_neg_type_ratio` × #mentions negatives, at most `max_types`.
    pub label_sampling: String,
    pub max_neg_type_ratio: usize,
    pub max_types: usize,
    /// Batch examples of similar length (less padding, faster steps);
    /// every epoch still sees every example once.
    pub group_by_length: bool,

    pub seed: u64,
    /// Evaluate on `dev` (and keep the best model) every N steps; 0 = at the end only.
    pub eval_every: usize,
    /// Write the resumable checkpoint every N steps (defaults to `eval_every`, else 100).
    pub save_every: Option<usize>,
    /// Decoding threshold for dev evaluation.
    pub threshold: f32,
    pub eval_batch_size: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            train: None,
            train_format: "iob".into(),
            train_exclude_ids: None,
            dev: None,
            dev_format: None,
            labels: None,
            encoder: None,
            init: None,
            out: None,
            steps: 1000,
            batch_size: 8,
            grad_accum: 1,
            lr_encoder: 1e-5,
            lr_head: 5e-5,
            weight_decay_encoder: 0.01,
            weight_decay_head: 0.01,
            scheduler: "cosine".into(),
            warmup_ratio: 0.1,
            max_grad_norm: 10.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_eps: 1e-8,
            ema_decay: 0.0,
            layer_lr_decay: 1.0,
            teacher: None,
            teacher_kg: None,
            bce_weight: 0.8,
            distill_weight: 0.2,
            distill_hidden: 256,
            distill_dim: 58,
            freeze_mlp_dist: false,
            span_teacher: Vec::new(),
            span_teacher_weight: 0.5,
            span_teacher_text: Vec::new(),
            span_teacher_text_format: None,
            max_width: 12,
            max_len: 384,
            context: "sentence".into(),
            split_at_mentions: true,
            hidden_size: None,
            subtoken_pooling: None,
            dropout: 0.4,
            word_shape: false,
            loss_reduction: "sum".into(),
            focal_alpha: -1.0,
            focal_gamma: 0.0,
            label_smoothing: 0.0,
            masking: "global".into(),
            negatives: 1.0,
            label_sampling: "all".into(),
            max_neg_type_ratio: 1,
            max_types: 25,
            group_by_length: true,
            seed: 42,
            eval_every: 0,
            save_every: None,
            threshold: 0.5,
            eval_batch_size: 8,
        }
    }
}

impl TrainConfig {
    /// A config file (`.toml`, else JSON) as a JSON object, so flags can be
    /// merged into it before it is checked.
    pub fn file_value(path: &Path) -> Result<Map<String, Value>> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
        let value: Value = if path.extension().is_some_and(|e| e == "toml") {
            let t: toml::Value = toml::from_str(&text).map_err(|e| Error::file(path, format!("invalid TOML: {e}")))?;
            serde_json::to_value(t).map_err(|e| Error::file(path, e))?
        } else {
            serde_json::from_str(&text).map_err(|e| Error::file(path, format!("invalid JSON: {e}")))?
        };
        match value {
            Value::Object(m) => Ok(m),
            _ => Err(Error::file(path, "the config must be a table/object of settings")),
        }
    }

    /// Settings → config; unknown names and wrong types are errors naming the setting.
    pub fn from_value(settings: Map<String, Value>, origin: &str) -> Result<TrainConfig> {
        let cfg: TrainConfig = serde_json::from_value(Value::Object(settings)).map_err(|e| Error::Msg(format!("{origin}: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Every check that does not need the files.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, msg: String| Err(Error::Msg(format!("train config `{field}`: {msg}")));
        if self.train.is_none() {
            return bad("train", "the training corpus is required".into());
        }
        if self.out.is_none() {
            return bad("out", "the run folder is required".into());
        }
        match (&self.encoder, &self.init) {
            (None, None) => return bad("encoder", "give an encoder folder (`encoder`) or a GLiNER model (`init`)".into()),
            (Some(_), Some(_)) => return bad("init", "give either `encoder` or `init`, not both".into()),
            _ => {}
        }
        if self.teacher.is_none() && (self.teacher_kg.is_some() || self.freeze_mlp_dist) {
            let field = if self.teacher_kg.is_some() { "teacher_kg" } else { "freeze_mlp_dist" };
            return bad(field, "applies only when distilling: give the teacher file (`teacher`) too".into());
        }
        for (field, v) in [("steps", self.steps), ("batch_size", self.batch_size), ("grad_accum", self.grad_accum), ("max_width", self.max_width), ("max_len", self.max_len), ("eval_batch_size", self.eval_batch_size), ("max_types", self.max_types), ("distill_hidden", self.distill_hidden), ("distill_dim", self.distill_dim)] {
            if v == 0 {
                return bad(field, "must be at least 1".into());
            }
        }
        for (field, v) in [("lr_encoder", self.lr_encoder), ("lr_head", self.lr_head), ("weight_decay_encoder", self.weight_decay_encoder), ("weight_decay_head", self.weight_decay_head), ("max_grad_norm", self.max_grad_norm), ("adam_eps", self.adam_eps), ("bce_weight", self.bce_weight), ("distill_weight", self.distill_weight)] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(field, format!("{v} must be a finite number ≥ 0"));
            }
        }
        for (field, v) in [("label_smoothing", self.label_smoothing), ("negatives", self.negatives)] {
            if !(0.0..=1.0).contains(&v) {
                return bad(field, format!("{v} must be in [0, 1]"));
            }
        }
        self.negative_masking()?;
        if !(0.0..=1.0).contains(&self.span_teacher_weight) {
            return bad("span_teacher_weight", format!("{} must be in [0, 1]", self.span_teacher_weight));
        }
        if !self.span_teacher_text.is_empty() {
            if self.span_teacher.is_empty() {
                return bad("span_teacher_text", "needs span_teacher: unlabelled text is trained on a teacher's probabilities".into());
            }
            if self.negatives < 1.0 {
                return bad("span_teacher_text", format!("cannot be combined with negatives {}: unlabelled text has no gold negatives to sample", self.negatives));
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("dropout", format!("{} must be in [0, 1)", self.dropout));
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            return bad("ema_decay", format!("{} must be in [0, 1) (0 = off)", self.ema_decay));
        }
        if !(self.layer_lr_decay > 0.0 && self.layer_lr_decay <= 1.0) {
            return bad("layer_lr_decay", format!("{} must be in (0, 1] (1 = off)", self.layer_lr_decay));
        }
        if !(0.0..1.0).contains(&self.threshold) {
            return bad("threshold", format!("{} must be in [0, 1)", self.threshold));
        }
        if !(0.0..=1.0).contains(&self.warmup_ratio) {
            return bad("warmup_ratio", format!("{} must be in [0, 1]", self.warmup_ratio));
        }
        if let Some(problem) = self.hidden_size.and_then(head_width_problem) {
            return bad("hidden_size", problem);
        }
        self.pooling()?;
        if self.save_every == Some(0) {
            return bad("save_every", "must be at least 1".into());
        }
        self.schedule()?;
        self.reduction()?;
        if !matches!(self.context.as_str(), "sentence" | "document") {
            return bad("context", format!("{:?}: expected sentence or document", self.context));
        }
        if !matches!(self.label_sampling.as_str(), "all" | "gliner") {
            return bad("label_sampling", format!("{:?}: expected all or gliner", self.label_sampling));
        }
        Ok(())
    }

    pub fn schedule(&self) -> Result<Schedule> {
        let warmup_steps = (self.warmup_ratio * self.steps as f64).ceil() as usize;
        match self.scheduler.as_str() {
            "cosine" => Schedule::cosine_with_warmup_ratio(self.steps, self.warmup_ratio),
            "linear" => Ok(Schedule::LinearWarmup { warmup_steps, total_steps: self.steps }),
            "constant" => Ok(Schedule::Constant),
            other => Err(Error::Msg(format!("train config `scheduler`: {other:?}: expected cosine, linear or constant"))),
        }
    }

    pub fn reduction(&self) -> Result<kogner_autograd::ops::loss::Reduction> {
        use kogner_autograd::ops::loss::Reduction;
        match self.loss_reduction.as_str() {
            "sum" => Ok(Reduction::Sum),
            "mean" => Ok(Reduction::Mean),
            other => Err(Error::Msg(format!("train config `loss_reduction`: {other:?}: expected sum or mean"))),
        }
    }

    /// Which negatives `negatives` samples from.
    /// `subtoken_pooling` parsed (None: keep the starting model's).
    pub fn pooling(&self) -> Result<Option<SubtokenPooling>> {
        self.subtoken_pooling.as_deref().map(str::parse).transpose().map_err(|e| Error::Msg(format!("train config `subtoken_pooling`: {e}")))
    }

    pub fn negative_masking(&self) -> Result<NegativeMasking> {
        self.masking.parse().map_err(|e| Error::Msg(format!("train config `masking`: {e}")))
    }

    /// Focal weighting `(alpha, gamma)`, or `None` for plain BCE.
    pub fn focal(&self) -> Option<(f64, f64)> {
        (self.focal_alpha >= 0.0 || self.focal_gamma != 0.0).then_some((self.focal_alpha, self.focal_gamma))
    }

    pub fn save_every(&self) -> usize {
        self.save_every.unwrap_or(if self.eval_every > 0 { self.eval_every } else { 100 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, Value)]) -> Map<String, Value> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn toml_file_flags_override_and_errors_name_the_setting() {
        let dir = std::env::temp_dir().join(format!("kogner-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run.toml");
        std::fs::write(&path, "train = \"t.tsv\"\nout = \"runs/x\"\nencoder = \"enc\"\nsteps = 50\nlr_head = 1e-3\n").unwrap();
        let mut m = TrainConfig::file_value(&path).unwrap();
        m.extend(settings(&[("steps", Value::from(7))]));
        let c = TrainConfig::from_value(m, "run.toml").unwrap();
        assert_eq!((c.steps, c.lr_head, c.batch_size), (7, 1e-3, 8));
        assert_eq!(c.schedule().unwrap(), Schedule::CosineWarmup { warmup_steps: 1, total_steps: 7, num_cycles: 0.5 });

        let base = [("train", Value::from("t")), ("out", Value::from("o")), ("encoder", Value::from("e"))];
        let err = |extra: (&str, Value)| {
            let mut s = settings(&base);
            s.insert(extra.0.to_string(), extra.1);
            TrainConfig::from_value(s, "flags").unwrap_err().to_string()
        };
        assert!(err(("stepz", Value::from(3))).contains("stepz"));
        assert!(err(("steps", Value::from("many"))).contains("steps") || err(("steps", Value::from("many"))).contains("invalid type"));
        assert!(err(("batch_size", Value::from(0))).contains("batch_size"));
        assert!(err(("scheduler", Value::from("step"))).contains("scheduler"));
        assert!(err(("ema_decay", Value::from(1.0))).contains("ema_decay"));
        assert!(err(("layer_lr_decay", Value::from(0.0))).contains("layer_lr_decay"));
        assert!(err(("layer_lr_decay", Value::from(1.2))).contains("layer_lr_decay"));
        assert!(err(("hidden_size", Value::from(511))).contains("`hidden_size`: 511 must be even"));
        assert!(err(("hidden_size", Value::from(0))).contains("`hidden_size`: 0 must be even"));
        assert!(err(("subtoken_pooling", Value::from("max"))).contains("`subtoken_pooling`: `max` is not supported (kogner pools words by first / last / mean)"));
        assert!(err(("masking", Value::from("spans"))).contains("`masking`: \"spans\": expected none, global, label or span"));
        assert!(err(("negatives", Value::from(-0.1))).contains("negatives"));
        assert!(err(("label_smoothing", Value::from(2))).contains("label_smoothing"));
        assert!(err(("span_teacher_weight", Value::from(1.5))).contains("span_teacher_weight"));
        assert!(err(("span_teacher_text", Value::from(vec!["u.tsv"]))).contains("`span_teacher_text`: needs span_teacher"));
        assert!(err(("init", Value::from("g"))).contains("either"));
        assert!(err(("teacher_kg", Value::from("kg"))).contains("`teacher_kg`: applies only when distilling"));
        assert!(err(("freeze_mlp_dist", Value::from(true))).contains("`freeze_mlp_dist`: applies only when distilling"));
        assert!(TrainConfig::from_value(settings(&base[..2]), "flags").unwrap_err().to_string().contains("encoder"));
        std::fs::write(&path, "steps = [").unwrap();
        assert!(TrainConfig::file_value(&path).unwrap_err().to_string().contains("run.toml"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
