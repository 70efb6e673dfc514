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
    mut progress: impl FnMut(usize, usize),
) -> Result<EvalReport> {
    let units: Vec<Unit<'_>> = docs.iter().enumerate().flat_map(|(d, doc)| units(d, doc, by_sentence)).collect();
    let total = units.len();
    let texts: Vec<Text<'_>> = units.iter().map(|u| Text { text: u.text, labels }).collect();
    let predicted = predictor.predict(&texts, opts, |done| progress(done, total))?;
    let mut pred: Vec<Vec<Span>> = vec![Vec::new(); docs.len()];
    for (u, ents) in units.iter().zip(&predicted) {
        pred[u.doc].extend(ents.iter().map(|e: &Entity| Span { start: e.start + u.char_offset, end: e.end + u.char_offset, label: e.label.clone() }));
    }
    let gold: Vec<Vec<Span>> = docs.iter().map(|d| gold_spans(d, map).map_err(|e| Error::Msg(e.to_string()))).collect::<Result<_>>()?;
    Ok(evaluate(gold.iter().zip(&pred).map(|(g, p)| (g.as_slice(), p.as_slice()))))
}
