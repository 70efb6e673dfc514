//! A model's strict span-level scores on an annotated corpus.

use kogner_models::gliner::decode::Entity;
use kogner_models::gliner::pipeline::{Document as Text, PredictOptions, Predictor};
use kogner_models::gliner::words::split_words;
use kogner_tensor::{Error, Result};

use crate::data::convert::sentence_ranges;
use crate::data::{Document, LabelMap};
use crate::eval::{evaluate, gold_spans, EvalReport, Span};

/// A piece of a document the model reads: its text and where it starts (chars).
struct Unit<'a> {
    doc: usize,
    text: &'a str,
    char_offset: usize,
}

/// Cut a document into sentences (the rule training uses), or keep it whole.
fn units<'a>(d: usize, doc: &'a Document, by_sentence: bool) -> Vec<Unit<'a>> {
    if !by_sentence {
        return vec![Unit { doc: d, text: &doc.text, char_offset: 0 }];
    }
    let words = split_words(&doc.text);
    sentence_ranges(&words)
        .into_iter()
        .map(|r| {
            let (first, last) = (&words[r.start], &words[r.end - 1]);
            Unit { doc: d, text: &doc.text[first.byte_start..last.byte_end], char_offset: first.start }
        })
        .collect()
}

/// Predict every document with `labels` and score the predictions against
/// the gold mentions (tags renamed through `map`). With `by_sentence`,
/// multi-sentence documents are read one sentence at a time, as a model
/// trained on sentences expects (offsets are mapped back to the document).
/// `progress(done, total)` counts finished units (sentences or documents).
pub fn evaluate_model(
    predictor: &Predictor,
    docs: &[Document],
    map: &LabelMap,
    labels: &[String],
    opts: &PredictOptions,
    by_sentence: bool,
    progress: impl FnMut(usize, usize),
) -> Result<EvalReport> {
    let mut reports = evaluate_model_at_thresholds(predictor, docs, map, labels, opts, &[opts.threshold], by_sentence, progress)?;
    Ok(reports.remove(0))
}

/// As [`evaluate_model`], once per threshold of `thresholds` (`opts.threshold`
/// is ignored), from a single prediction pass at the lowest one. Decoding
/// visits candidates in descending score order, so every candidate above a
/// threshold `t` is kept or rejected before any below it is looked at: the
/// entities decoded at `t` are exactly those decoded at a lower threshold
/// that score above `t` (flat, nested and multi-label alike).
#[allow(clippy::too_many_arguments)]
pub fn evaluate_model_at_thresholds(
    predictor: &Predictor,
    docs: &[Document],
    map: &LabelMap,
    labels: &[String],
    opts: &PredictOptions,
    thresholds: &[f32],
    by_sentence: bool,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<EvalReport>> {
    let lowest = thresholds.iter().copied().fold(f32::INFINITY, f32::min);
    if thresholds.is_empty() || !lowest.is_finite() {
        return Err(Error::Msg(format!("evaluation thresholds must be finite numbers, got {thresholds:?}")));
    }
    let units: Vec<Unit<'_>> = docs.iter().enumerate().flat_map(|(d, doc)| units(d, doc, by_sentence)).collect();
    let total = units.len();
    let texts: Vec<Text<'_>> = units.iter().map(|u| Text { text: u.text, labels }).collect();
    let opts = PredictOptions { threshold: lowest, ..*opts };
    let predicted = predictor.predict(&texts, &opts, |done| progress(done, total))?;
    // (document, span, score)
    let mut pred: Vec<Vec<(Span, f32)>> = vec![Vec::new(); docs.len()];
    for (u, ents) in units.iter().zip(&predicted) {
        pred[u.doc].extend(ents.iter().map(|e: &Entity| {
            (Span { start: e.start + u.char_offset, end: e.end + u.char_offset, label: e.label.clone() }, e.score)
        }));
    }
    let gold: Vec<Vec<Span>> = docs.iter().map(|d| gold_spans(d, map).map_err(|e| Error::Msg(e.to_string()))).collect::<Result<_>>()?;
    Ok(thresholds
        .iter()
        .map(|&t| {
            let kept: Vec<Vec<Span>> =
                pred.iter().map(|p| p.iter().filter(|(_, score)| *score > t).map(|(s, _)| s.clone()).collect()).collect();
            evaluate(gold.iter().zip(&kept).map(|(g, p)| (g.as_slice(), p.as_slice())))
        })
        .collect())
}
