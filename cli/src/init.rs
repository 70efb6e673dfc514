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
    /// Folder with a GLiNER tokenizer.json (the real DeBERTa-v3 vocabulary is not available
    /// offline: the fixtures' 8k vocabulary stands in; the embedding keeps 128,100 + 3 rows).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// The all-MiniLM-L6-v2 folder (minilm only).
    #[arg(long, default_value = "../shared/data/models/all-MiniLM-L6-v2")]
    minilm: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(args: InitArgs) -> Result<()> {
    let preset = Preset::from_name(&args.encoder)?;
    let tokenizer = args.tokenizer.unwrap_or_else(|| {
        PathBuf::from(match preset {
            Preset::MiniLm => "../shared/fixtures/gliner/minilm",
            _ => "../shared/fixtures/gliner/deberta-tiny",
        })
    });
    let sources = InitSources { tokenizer_dir: &tokenizer, minilm_dir: Some(&args.minilm) };
    let config = init_model(preset, &sources, &args.out, args.seed)?;
    emit(&format!(
        "wrote {} ({} encoder, hidden {}, GLiNER hidden {}, max_width {})",
        args.out.display(),
        args.encoder,
        config.encoder.hidden_size(),
        config.hidden_size,
        config.max_width
    ))
}
