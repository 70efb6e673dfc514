//! The `kogner` command-line tool: thin argument parsing over the crates.

use clap::{Parser, Subcommand};

mod average;
mod bench;
mod eval;
mod init;
mod mlm;
mod predict;
mod teacher;
mod train;

#[derive(Parser)]
#[command(name = "kogner", version, about = "Knowledge-graph distilled biomedical NER (KoGNER) on a from-scratch tensor engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the `train` variant's flags does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Measure kernel throughput: GEMM GFLOP/s as % of the measured FMA peak, vector kernels in GB/s.
    Bench(bench::BenchArgs),
    /// Print what this machine gives the kernels: ISA path, threads, measured FMA peak.
    Info,
    /// Find entities in text with a GLiNER model folder; JSONL out, one line per input.
    Predict(predict::PredictArgs),
    /// Write a randomly initialised GLiNER model folder of a real model's shape (for benchmarks).
    Init(init::InitArgs),
    /// Train a GLiNER student on an NER corpus (checkpoints, --resume, metrics, dev evaluation).
    Train(train::TrainArgs),
    /// Continue an encoder's masked-LM pretraining on a corpus's text (task-adaptive pretraining) for `train --encoder`.
    Mlm(mlm::MlmArgs),
    /// Strict span-level precision/recall/F1 of a model on an annotated corpus.
    Eval(eval::EvalArgs),
    /// Average the weights of GLiNER folders fine-tuned from one start (a model soup) into a new folder.
    Average(average::AverageArgs),
    /// Build the knowledge-graph teacher: node-name embeddings (Z), graph transformer (Z'), TransR (Z''), export H.
    Teacher(teacher::TeacherArgs),
}

/// Print a line to stdout; a closed pipe (`kogner bench | head`) ends the
/// program quietly instead of panicking.
pub(crate) fn emit(line: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        r => Ok(r?),
    }
}

fn main() {
    let cli = Cli::parse();
    kogner_kernels::alloc::retain_freed_memory();
    let result = match cli.command {
        Command::Bench(args) => bench::run(args),
        Command::Info => bench::info(),
        Command::Init(args) => init::run(args),
        Command::Predict(args) => predict::run(args),
        Command::Train(args) => train::run(args),
        Command::Mlm(args) => mlm::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Average(args) => average::run(args),
        Command::Teacher(args) => teacher::run(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
