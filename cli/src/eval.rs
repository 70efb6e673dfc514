//! `kogner eval`: strict span-level P/R/F1 of a model on an annotated corpus.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use kogner_models::gliner::decode::DecodeMode;
use kogner_models::gliner::pipeline::{PredictOptions, Predictor};
use kogner_train::eval::EvalReport;
use kogner_train::student::{evaluate_model_at_thresholds, label_map, prompt_labels, read_corpus, Format};

use crate::emit;

#[derive(Args)]
pub struct EvalArgs {
    /// GLiNER model folder; repeated, an ensemble (each span's score is the mean of the models'
    /// probabilities; same tokenizer and architecture).
    #[arg(long, required = true)]
    model: Vec<PathBuf>,
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
    /// Decoding threshold (GLiNER's strict `score > t`); a comma-separated list
    /// (`0.3,0.4,0.5,0.6`) scores every one from a single prediction pass, e.g. to choose
    /// one on a dev set.
    #[arg(long, value_delimiter = ',', default_value = "0.5")]
    threshold: Vec<f32>,
    /// Allow nested predictions (the default decodes flat, as the corpora are annotated).
    #[arg(long)]
    nested: bool,
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Read multi-sentence documents whole instead of one sentence at a time (the default
    /// matches how `kogner train` cuts them); an IOB file without `-DOCSTART-` lines is read
    /// as one document, as `kogner train --context document` reads it.
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
    let (docs, pre_split) = read_corpus(&args.data, format, args.exclude_ids.as_deref(), args.whole_documents)?;
    let by_sentence = !pre_split && !args.whole_documents;
    let labels = prompt_labels(&map, &docs)?;
    let predictor = Predictor::load_ensemble_for_inference(&args.model)?;
    let mode = if args.nested { DecodeMode::NESTED } else { DecodeMode::FLAT };
    let opts = PredictOptions { threshold: args.threshold[0], mode, batch_size: args.batch_size };
    // The length is set once evaluate_model knows how many units the documents make.
    let bar = if std::io::stderr().is_terminal() { ProgressBar::new(0) } else { ProgressBar::hidden() };
    let unit = if by_sentence { "sentences" } else { "documents" };
    bar.set_style(ProgressStyle::with_template(&format!("{{bar:30}} {{pos}}/{{len}} {unit} [{{elapsed_precise}} < {{eta_precise}}]")).expect("static template"));
    let reports = evaluate_model_at_thresholds(&predictor, &docs, &map, &labels, &opts, &args.threshold, by_sentence, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    match (&reports[..], args.json) {
        ([report], true) => emit(&serde_json::to_string(report)?),
        ([report], false) => emit(report.table().trim_end()),
        (_, true) => {
            let rows: Vec<serde_json::Value> = args
                .threshold
                .iter()
                .zip(&reports)
                .map(|(t, r)| serde_json::json!({"threshold": t, "micro": r.micro, "per_type": r.per_type}))
                .collect();
            emit(&serde_json::to_string(&rows)?)
        }
        (_, false) => emit(threshold_table(&args.threshold, &reports).trim_end()),
    }
}

/// One row per threshold (micro scores), the best F1 marked.
fn threshold_table(thresholds: &[f32], reports: &[EvalReport]) -> String {
    let best = reports.iter().map(|r| r.micro.f1).fold(f64::MIN, f64::max);
    let mut s = format!("{:>9}  {:>7}  {:>7}  {:>7}  {:>7}  {:>7}  {:>7}\n", "threshold", "P", "R", "F1", "tp", "fp", "fn");
    for (t, r) in thresholds.iter().zip(reports) {
        let m = &r.micro;
        let mark = if m.f1 == best { "  best" } else { "" };
        s += &format!(
            "{t:>9}  {:>7.2}  {:>7.2}  {:>7.2}  {:>7}  {:>7}  {:>7}{mark}\n",
            100.0 * m.precision,
            100.0 * m.recall,
            100.0 * m.f1,
            m.tp,
            m.fp,
            m.fn_
        );
    }
    s
}
