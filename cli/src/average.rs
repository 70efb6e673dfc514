//! `kogner average`: the element-wise mean of GLiNER folders' weights (a model soup).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use kogner_train::student::average_models;

use crate::emit;

#[derive(Args)]
pub struct AverageArgs {
    /// GLiNER model folders fine-tuned from the same start (same encoder and `--seed`), e.g. the
    /// `best/` of runs with other learning rates; same gliner_config.json and tokenizer.json.
    #[arg(required = true, num_args = 2..)]
    models: Vec<PathBuf>,
    /// Output GLiNER folder (replaced atomically).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: AverageArgs) -> Result<()> {
    let weights = average_models(&args.models, &args.out)?;
    emit(&format!("averaged {} models ({weights} weights each) into {}", args.models.len(), args.out.display()))
}
