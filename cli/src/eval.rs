//! `kogner eval`: strict span-level P/R/F1 of a model on an annotated corpus.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use kogner_models::gliner::decode::DecodeMode;
use kogner_models::gliner::pipeline::{PredictOptions, Predictor};
use kogner_train::student::{evaluate_model, label_map, prompt_labels, read_corpus, Format};

use crate::emit;

#[derive(Args)]
pub struct EvalArgs {
    /// GLiNER model folder.
    #[arg(long)]
    model: PathBuf,
    /// Annotated corpus: a file, or a folder for brat.
    #[arg(long)]
    data: PathBuf,
    /// iob, pubtator, brat or gliner.
    #[arg(long)]
    format: String,
    /// Corpus tags → labels, `TAG=label,...`, or a corpus name (ncbi-disease, bc5cdr, jnlpba, gliner)
    /// [default: the --format's corpus folder name when it is one, else identity].
    #[arg(long)]
    labels: Option<String>,
    /// Leave out these documents (ids, one per line).
    #[arg(long)]
    exclude_ids: Option<PathBuf>,
    #[arg(long, default_value_t = 0.5)]
    threshold: f32,
    /// Allow nested predictions (the default decodes flat, as the corpora are annotated).
    #[arg(long)]
    nested: bool,
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Read multi-sentence documents whole instead of one sentence at a time (the default
    /// matches how `kogner train` cuts them).
    #[arg(long)]
    whole_documents: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// The corpus folder name under shared/data/ner in a path, if any.
fn corpus_name(path: &std::path::Path) -> Option<&'static str> {
    let s = path.to_string_lossy();
    ["ncbi-disease", "bc5cdr", "jnlpba"].into_iter().find(|c| s.contains(c))
}

pub fn run(args: EvalArgs) -> Result<()> {
    let format: Format = args.format.parse()?;
    let spec = match (&args.labels, corpus_name(&args.data), format) {
        (Some(s), _, _) => s.clone(),
        (None, _, Format::Gliner) => "gliner".to_string(),
        (None, Some(c), _) => c.to_string(),
        (None, None, _) => anyhow::bail!("--labels is required: TAG=label,... for {}", args.data.display()),
    };
    let map = label_map(&spec)?;
    let (docs, sentence_level) = read_corpus(&args.data, format, args.exclude_ids.as_deref())?;
    let by_sentence = !sentence_level && !args.whole_documents;
    let labels = prompt_labels(&map, &docs)?;
    let predictor = Predictor::load_for_inference(&args.model)?;
    let mode = if args.nested { DecodeMode::NESTED } else { DecodeMode::FLAT };
    let opts = PredictOptions { threshold: args.threshold, mode, batch_size: args.batch_size };
    // The length is set once evaluate_model knows how many units the documents make.
    let bar = if std::io::stderr().is_terminal() { ProgressBar::new(0) } else { ProgressBar::hidden() };
    let unit = if by_sentence { "sentences" } else { "documents" };
    bar.set_style(ProgressStyle::with_template(&format!("{{bar:30}} {{pos}}/{{len}} {unit} [{{elapsed_precise}} < {{eta_precise}}]")).expect("static template"));
    let report = evaluate_model(&predictor, &docs, &map, &labels, &opts, by_sentence, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    if args.json {
        emit(&serde_json::to_string(&report)?)
    } else {
        emit(report.table().trim_end())
    }
}
