//! `kogner mlm`: continue an encoder's masked-LM pretraining on a corpus's
//! text (task-adaptive pretraining) before `kogner train --encoder`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use kogner_train::mlm::{MlmConfig, MlmEvent, MlmTrainer, ENCODER_DIR};
use serde_json::json;

use crate::emit;

#[derive(Args)]
pub struct MlmArgs {
    /// A BERT-family encoder folder (config.json, model.safetensors, tokenizer.json), e.g. all-MiniLM-L6-v2.
    #[arg(long)]
    encoder: PathBuf,
    /// The corpus whose text to adapt to (any `kogner train` format; annotations are not used).
    #[arg(long)]
    train: PathBuf,
    /// iob, pubtator, brat or gliner.
    #[arg(long, default_value = "iob")]
    train_format: String,
    /// Leave out these documents (ids, one per line).
    #[arg(long)]
    train_exclude_ids: Option<PathBuf>,
    /// Held-out text whose masked-LM loss and accuracy are reported (fixed masks).
    #[arg(long)]
    dev: Option<PathBuf>,
    /// Format of --dev [default: --train-format].
    #[arg(long)]
    dev_format: Option<String>,
    /// Run folder: encoder/ (the adapted encoder folder), metrics.jsonl, mlm_config.json.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 1000)]
    steps: usize,
    /// Sequences per step.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[arg(long, default_value_t = 1e-4)]
    lr_encoder: f64,
    /// Learning rate of the MLM head (new when the encoder folder has none).
    #[arg(long, default_value_t = 1e-3)]
    lr_head: f64,
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f64,
    #[arg(long, default_value_t = 0.06)]
    warmup_ratio: f64,
    /// Gradient-norm clipping, 0 = off.
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f64,
    /// Tokens per sequence, [CLS] and [SEP] included.
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// Share of each sequence's tokens predicted (whole words).
    #[arg(long, default_value_t = 0.15)]
    mask_prob: f64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Dev loss every N steps (and at the end); 0 = at the end only.
    #[arg(long, default_value_t = 0)]
    eval_every: usize,
}

pub fn run(a: MlmArgs) -> Result<()> {
    let config = MlmConfig {
        encoder: a.encoder,
        train: a.train,
        train_format: a.train_format,
        train_exclude_ids: a.train_exclude_ids,
        dev: a.dev,
        dev_format: a.dev_format,
        out: a.out,
        steps: a.steps,
        batch_size: a.batch_size,
        lr_encoder: a.lr_encoder,
        lr_head: a.lr_head,
        weight_decay: a.weight_decay,
        warmup_ratio: a.warmup_ratio,
        max_grad_norm: a.max_grad_norm,
        max_tokens: a.max_tokens,
        mask_prob: a.mask_prob,
        seed: a.seed,
        eval_every: a.eval_every,
    };
    let (steps, batch, out) = (config.steps, config.batch_size, config.out.clone());
    let mut trainer = MlmTrainer::new(config)?;
    eprintln!(
        "masked-LM training on {} sequences ({:.1} tokens each on average): {steps} steps of {batch} ({:.1} epochs)",
        trainer.num_blocks(),
        trainer.mean_block_tokens(),
        (steps * batch) as f64 / trainer.num_blocks() as f64
    );
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]").expect("static template"));
    let mut last_dev = None;
    trainer.run(|event| match event {
        MlmEvent::Step(s) => {
            bar.set_position(s.step as u64);
            bar.set_message(format!("loss {:.3}  acc {:.3}  lr {:.2e}  |g| {:.2}", s.loss, s.accuracy, s.lr_encoder, s.grad_norm));
        }
        MlmEvent::Eval { step, loss, accuracy } => {
            last_dev = Some((loss, accuracy));
            bar.suspend(|| eprintln!("step {step}: dev masked-LM loss {loss:.4}, accuracy {accuracy:.4}"));
        }
        MlmEvent::Saved { .. } => {}
    })?;
    bar.finish();
    let encoder = out.join(ENCODER_DIR).display().to_string();
    emit(&json!({"encoder": encoder, "steps": steps, "dev_loss": last_dev.map(|d| d.0), "dev_accuracy": last_dev.map(|d| d.1)}).to_string())
}
