//! Strict span-level NER evaluation (SPEC §6): a prediction is a true
//! positive only if its start, end and type all equal those of a gold
//! mention of the same document. Micro P/R/F1 over all types, and the same
//! per type.
//!
//! Duplicates: gold and predictions are compared as *sets* per document. A
//! prediction identical to another (same start, end and type) counts once,
//! and so does a duplicated gold mention — otherwise a model could earn or
//! lose points by repeating itself, and a corpus listing one mention twice
//! would demand two identical predictions.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use kogner_models::gliner::decode::Entity;

use crate::data::{DataError, Document, LabelMap};

/// A mention for evaluation: char offsets (end exclusive) and label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub label: String,
}

impl From<&Entity> for Span {
    fn from(e: &Entity) -> Self {
        Span {
            start: e.start,
            end: e.end,
            label: e.label.clone(),
        }
    }
}

/// The gold spans of a document, with tags renamed through `labels` so
/// they compare with a model's predicted labels.
pub fn gold_spans(doc: &Document, labels: &LabelMap) -> Result<Vec<Span>, DataError> {
    doc.mentions
        .iter()
        .map(|m| {
            let label = labels
                .label(&m.label)
                .map_err(|e| DataError::Label(format!("document {}: {e}", doc.id)))?;
            Ok(Span {
                start: m.start,
                end: m.end,
                label: label.to_string(),
            })
        })
        .collect()
}

/// Counts and scores of one type, or of all (micro).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Scores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub tp: usize,
    pub fp: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
}

impl Scores {
    /// Scores from counts; a ratio with a zero denominator is 0.
    pub fn from_counts(tp: usize, fp: usize, fn_: usize) -> Scores {
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let precision = ratio(tp, tp + fp);
        let recall = ratio(tp, tp + fn_);
        let f1 = if precision + recall == 0.0 {
            0.0
        } else {
            2.0 * precision * recall / (precision + recall)
        };
        Scores {
            precision,
            recall,
            f1,
            tp,
            fp,
            fn_,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub micro: Scores,
    /// Every label seen in gold or predictions.
    pub per_type: BTreeMap<String, Scores>,
}

/// Evaluate documents given as (gold, predicted) span lists. Documents are
/// independent: a span only matches within its own document.
pub fn evaluate<'a, I>(docs: I) -> EvalReport
where
    I: IntoIterator<Item = (&'a [Span], &'a [Span])>,
{
    // label -> (tp, fp, fn)
    let mut counts: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    for (gold, pred) in docs {
        let gold: BTreeSet<&Span> = gold.iter().collect();
        let pred: BTreeSet<&Span> = pred.iter().collect();
        for p in &pred {
            let c = counts.entry(p.label.clone()).or_default();
            if gold.contains(p) {
                c.0 += 1;
            } else {
                c.1 += 1;
            }
        }
        for g in gold.difference(&pred) {
            counts.entry(g.label.clone()).or_default().2 += 1;
        }
    }
    let (mut tp, mut fp, mut fn_) = (0, 0, 0);
    let per_type = counts
        .into_iter()
        .map(|(label, (t, f, n))| {
            tp += t;
            fp += f;
            fn_ += n;
            (label, Scores::from_counts(t, f, n))
        })
        .collect();
    EvalReport {
        micro: Scores::from_counts(tp, fp, fn_),
        per_type,
    }
}

impl EvalReport {
    /// JSON: `{"micro": {precision, recall, f1, tp, fp, fn}, "per_type": {label: {...}}}`.
    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    /// A fixed-width table, one row per type and a final `micro` row;
    /// P/R/F1 as percentages with two decimals.
    pub fn table(&self) -> String {
        let width = self
            .per_type
            .keys()
            .map(|k| k.chars().count())
            .chain([5])
            .max()
            .unwrap_or(5);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<width$}  {:>7}  {:>7}  {:>7}  {:>7}  {:>7}  {:>7}",
            "type", "P", "R", "F1", "tp", "fp", "fn"
        );
        let row = |s: &mut String, name: &str, x: &Scores| {
            let _ = writeln!(
                s,
                "{:<width$}  {:>7.2}  {:>7.2}  {:>7.2}  {:>7}  {:>7}  {:>7}",
                name,
                100.0 * x.precision,
                100.0 * x.recall,
                100.0 * x.f1,
                x.tp,
                x.fp,
                x.fn_
            );
        };
        for (k, v) in &self.per_type {
            row(&mut s, k, v);
        }
        row(&mut s, "micro", &self.micro);
        s
    }
}
