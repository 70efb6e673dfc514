//! `kogner train`.

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct TrainArgs {}

pub fn run(_args: TrainArgs) -> Result<()> {
    anyhow::bail!("kogner train: not implemented yet")
}
