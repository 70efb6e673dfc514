//! `kogner init`: a random GLiNER folder of DeBERTa-v3-small/-large or MiniLM shape.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use kogner_models::gliner::init::{init_model, InitSources, Preset};

use crate::emit;

#[derive(Args)]
pub struct InitArgs {
    /// deberta-v3-small, deberta-v3-large or minilm.
    #[arg(long)]
    encoder: String,
    /// Output folder (created).
    #[arg(long)]
    out: PathBuf,
    /// Folder with a tokenizer.json (DeBERTa default: the fixtures' 8k vocabulary stands in for the
    /// real one, which is not available offline; the embedding keeps 128,100 + 3 rows). MiniLM
    /// default: its own tokenizer. GLiNER's tokens are added when missing.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// The all-MiniLM-L6-v2 folder (minilm only).
    #[arg(long, default_value = "../shared/data/models/all-MiniLM-L6-v2")]
    minilm: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// GLiNER head width (default: the preset's, 768 / 512 / 384); a width other than the
    /// encoder's adds GLiNER's projection from the encoder's.
    #[arg(long)]
    hidden_size: Option<usize>,
}

pub fn run(args: InitArgs) -> Result<()> {
    let preset = Preset::from_name(&args.encoder)?;
    // MiniLM brings its own tokenizer (GLiNER's tokens are added to it).
    let tokenizer = args.tokenizer.or_else(|| (preset != Preset::MiniLm).then(|| PathBuf::from("../shared/fixtures/gliner/deberta-tiny")));
    let sources = InitSources { tokenizer_dir: tokenizer.as_deref(), minilm_dir: Some(&args.minilm) };
    let config = init_model(preset, &sources, &args.out, args.seed, args.hidden_size)?;
    emit(&format!(
        "wrote {} ({} encoder, hidden {}, GLiNER hidden {}, max_width {})",
        args.out.display(),
        args.encoder,
        config.encoder.hidden_size(),
        config.hidden_size,
        config.max_width
    ))
}
