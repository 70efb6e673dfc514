//! `kogner predict`: entities for a text, a JSONL file or stdin.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use kogner_models::gliner::decode::{DecodeMode, Entity};
use kogner_models::gliner::pipeline::{Document, PredictOptions, Predictor};
use serde_json::{json, Value};

use crate::emit;

#[derive(Args)]
pub struct PredictArgs {
    /// GLiNER model folder (gliner_config.json, model.safetensors or pytorch_model.bin, tokenizer.json).
    /// Repeated: an ensemble of folders with the same tokenizer and architecture (e.g. runs with
    /// other seeds); each span's score is the mean of the models' probabilities.
    #[arg(long, required = true)]
    model: Vec<PathBuf>,
    /// Comma-separated entity labels, e.g. "disease,chemical" (JSONL lines may carry their own).
    #[arg(long, value_delimiter = ',')]
    labels: Vec<String>,
    /// Report spans whose probability is strictly above this.
    #[arg(long, default_value_t = 0.5)]
    threshold: f32,
    /// Non-overlapping entities (the default).
    #[arg(long, conflicts_with = "nested")]
    flat: bool,
    /// Allow nested entities (partial overlaps are still rejected).
    #[arg(long)]
    nested: bool,
    /// Allow one span to carry several labels.
    #[arg(long)]
    multi_label: bool,
    /// Word windows per forward pass.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// JSONL input: one {"text": ..., "labels": [...]} per line ("labels" optional).
    #[arg(long, conflicts_with = "text")]
    input: Option<PathBuf>,
    /// Time the inference like `torch_gliner_bench.py`: one warm-up and three timed passes;
    /// a JSON line with sentences/s, words/s and peak RSS goes to stderr.
    #[arg(long)]
    bench: bool,
    /// The text (otherwise --input, or stdin: JSONL lines, or one plain text per line).
    text: Option<String>,
}

struct Input {
    text: String,
    labels: Vec<String>,
}

fn parse_line(line: &str, default_labels: &[String], source: &str, lineno: usize) -> Result<Input> {
    let v: Value = serde_json::from_str(line).with_context(|| format!("{source}:{lineno}: invalid JSON"))?;
    let text = v
        .get("text")
        .and_then(Value::as_str)
        .with_context(|| format!("{source}:{lineno}: missing string field \"text\""))?
        .to_string();
    let labels = match v.get("labels") {
        None | Some(Value::Null) => default_labels.to_vec(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|l| l.as_str().map(str::to_string).with_context(|| format!("{source}:{lineno}: \"labels\" must be a list of strings")))
            .collect::<Result<_>>()?,
        Some(_) => bail!("{source}:{lineno}: \"labels\" must be a list of strings"),
    };
    if labels.is_empty() {
        bail!("{source}:{lineno}: no labels (give --labels or a \"labels\" field)");
    }
    Ok(Input { text, labels })
}

fn read_inputs(args: &PredictArgs) -> Result<(Vec<Input>, bool)> {
    let labels: Vec<String> = args.labels.iter().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
    if let Some(text) = &args.text {
        if labels.is_empty() {
            bail!("--labels is required with a TEXT argument");
        }
        return Ok((vec![Input { text: text.clone(), labels }], false));
    }
    let (reader, source): (Box<dyn BufRead>, String) = match &args.input {
        Some(p) => {
            let f = std::fs::File::open(p).with_context(|| format!("{}: cannot open", p.display()))?;
            (Box::new(std::io::BufReader::new(f)), p.display().to_string())
        }
        None => {
            if std::io::stdin().is_terminal() {
                bail!("no input: give TEXT, --input FILE.jsonl, or pipe lines into stdin");
            }
            (Box::new(std::io::stdin().lock()), "<stdin>".to_string())
        }
    };
    let mut inputs = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("{source}:{}: cannot read (not UTF-8?)", i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        if args.input.is_some() || line.trim_start().starts_with('{') {
            inputs.push(parse_line(&line, &labels, &source, i + 1)?);
        } else if labels.is_empty() {
            bail!("{source}:{}: plain-text input needs --labels", i + 1);
        } else {
            inputs.push(Input { text: line, labels: labels.clone() });
        }
    }
    Ok((inputs, args.input.is_some()))
}

fn entity_json(e: &Entity) -> Value {
    json!({"start": e.start, "end": e.end, "text": e.text, "label": e.label, "score": e.score})
}

pub fn run(args: PredictArgs) -> Result<()> {
    let (inputs, from_file) = read_inputs(&args)?;
    let predictor = Predictor::load_ensemble_for_inference(&args.model)?;
    let mode = DecodeMode { flat_ner: !args.nested, multi_label: args.multi_label };
    let opts = PredictOptions { threshold: args.threshold, mode, batch_size: args.batch_size };
    let docs: Vec<Document> = inputs.iter().map(|i| Document { text: &i.text, labels: &i.labels }).collect();
    let bar = if from_file && std::io::stderr().is_terminal() {
        let b = ProgressBar::new(docs.len() as u64);
        b.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} texts  {per_sec}  eta {eta}").expect("valid template"));
        Some(b)
    } else {
        None
    };
    if args.bench {
        bench(&predictor, &docs, &opts)?;
    }
    let results = predictor.predict(&docs, &opts, |done| {
        if let Some(b) = &bar {
            b.set_position(done as u64);
        }
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    for entities in results {
        emit(&Value::Array(entities.iter().map(entity_json).collect()).to_string())?;
    }
    Ok(())
}

/// Peak resident set size of this process in MiB (Linux `VmHWM`).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn bench(predictor: &Predictor, docs: &[Document], opts: &PredictOptions) -> Result<()> {
    let once = || -> Result<f64> {
        let t0 = std::time::Instant::now();
        predictor.predict(docs, opts, |_| {})?;
        Ok(t0.elapsed().as_secs_f64())
    };
    once()?;
    let mut times = vec![once()?, once()?, once()?];
    let reported = times.clone();
    times.sort_by(f64::total_cmp);
    let median = times[1];
    let words: usize = docs.iter().map(|d| d.text.split_whitespace().count()).sum();
    eprintln!(
        "{}",
        json!({"impl": "kogner", "threads": rayon::current_num_threads(), "isa": kogner_kernels::Isa::active().name(),
               "batch_size": opts.batch_size, "sentences": docs.len(), "sent_per_s": docs.len() as f64 / median,
               "words_per_s": words as f64 / median, "times_s": reported, "peak_rss_mb": peak_rss_mb()})
    );
    Ok(())
}
