//! A model's strict span-level scores on an annotated corpus.

use kogner_models::gliner::pipeline::{Document as Text, PredictOptions, Predictor};
use kogner_tensor::{Error, Result};

use crate::data::{Document, LabelMap};
use crate::eval::{evaluate, gold_spans, EvalReport, Span};

/// Predict every document with `labels` and score the predictions against
/// the gold mentions (tags renamed through `map`). `progress(done)` counts
/// finished documents.
pub fn evaluate_model(
    predictor: &Predictor,
    docs: &[Document],
    map: &LabelMap,
    labels: &[String],
    opts: &PredictOptions,
    progress: impl FnMut(usize),
) -> Result<EvalReport> {
    let texts: Vec<Text<'_>> = docs.iter().map(|d| Text { text: &d.text, labels }).collect();
    let predicted = predictor.predict(&texts, opts, progress)?;
    let gold: Vec<Vec<Span>> = docs.iter().map(|d| gold_spans(d, map).map_err(|e| Error::Msg(e.to_string()))).collect::<Result<_>>()?;
    let pred: Vec<Vec<Span>> = predicted.iter().map(|ents| ents.iter().map(Span::from).collect()).collect();
    Ok(evaluate(gold.iter().zip(&pred).map(|(g, p)| (g.as_slice(), p.as_slice()))))
}
