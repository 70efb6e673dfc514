//! The `kogner` command-line tool: thin argument parsing over the crates.

use clap::{Parser, Subcommand};

mod bench;
mod init;
mod predict;

#[derive(Parser)]
#[command(name = "kogner", version, about = "Knowledge-graph distilled biomedical NER (KoGNER) on a from-scratch tensor engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

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
    let result = match cli.command {
        Command::Bench(args) => bench::run(args),
        Command::Info => bench::info(),
        Command::Init(args) => init::run(args),
        Command::Predict(args) => predict::run(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
