//! `kogner teacher`.

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct TeacherArgs {}

pub fn run(_args: TeacherArgs) -> Result<()> {
    anyhow::bail!("kogner teacher: not implemented yet")
}
