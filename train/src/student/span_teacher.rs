//! Soft span targets from trained GLiNER models (ensemble distillation,
//! Hinton et al. 2015): before training, one model or an ensemble (its
//! probabilities averaged, as `kogner predict` does) scores every span ×
//! label of every training example; each step's targets become
//! `t = (1 − λ)·gold + λ·p_teacher`. The student learns the ensemble's
//! graded judgement (near-misses, ambiguous boundaries), not only the 0/1
//! gold, so one model can approach what the ensemble scores. GLiNER's span
//! loss takes soft targets as they are: its gradient is `σ(x) − t`.
//!
//! Unlabelled text (`span_teacher_text`) joins the training examples with
//! the teacher's probabilities as its whole targets (λ = 1, there is no
//! gold), as in ensemble distillation on transfer data: the student sees
//! the ensemble's judgement on more text than the labelled corpus holds.
//!
//! Not to be confused with the KoGNER teacher (`distill.rs`), which gives
//! KG node embeddings to match, not span probabilities.

use std::collections::HashMap;
use std::path::PathBuf;

use kogner_models::gliner::pipeline::{for_each_batch, Predictor};
use kogner_models::gliner::processor::{BatchItem, GlinerBatch};
use kogner_tensor::{Error, Result, Tensor};

use crate::data::Example;

pub struct SpanTeacher {
    /// Per training example, `[words, K, C]` probabilities (C: `labels`),
    /// NaN where the teacher gave none (a span wider than its max width, or
    /// words past what it kept): there the target stays the gold one, and
    /// unlabelled text's span leaves the loss.
    probs: Vec<Vec<f32>>,
    /// Examples from this index on are unlabelled text.
    labelled: usize,
    label_index: HashMap<String, usize>,
    max_width: usize,
    /// λ.
    weight: f32,
}

impl SpanTeacher {
    /// Scores `examples` with the GLiNER folders `dirs` (one model, or an
    /// ensemble of same-shaped ones), every example prompted with all of
    /// `labels`, for spans up to `max_width` words; `weight` is λ for the
    /// first `labelled` examples, the rest are unlabelled text.
    pub fn compute(dirs: &[PathBuf], examples: &[Example], labelled: usize, labels: &[String], max_width: usize, weight: f64, batch_size: usize) -> Result<SpanTeacher> {
        let predictor = Predictor::load_ensemble_for_inference(dirs)?;
        let mut probs: Vec<Vec<f32>> = examples.iter().map(|ex| vec![f32::NAN; ex.words.len() * max_width * labels.len()]).collect();
        // Longest first, so similar lengths share a batch (less padding).
        let mut order: Vec<usize> = (0..examples.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(examples[i].words.len()));
        let batches: Vec<&[usize]> = order.chunks(batch_size.max(1)).collect();
        let run = |chunk: &[usize]| -> Result<(GlinerBatch, Vec<f32>)> {
            let items: Vec<BatchItem<'_>> = chunk.iter().map(|&i| BatchItem { words: &examples[i].words, labels }).collect();
            let batch = predictor.processor.encode(&items)?;
            let p = predictor.span_probs(&batch)?;
            Ok((batch, p))
        };
        let label_index: HashMap<String, usize> = labels.iter().enumerate().map(|(i, l)| (l.clone(), i)).collect();
        for_each_batch(&batches, run, |chunk, (batch, p)| {
            for (b, &ex) in chunk.iter().enumerate() {
                let dst = &mut probs[ex];
                for_each_span(&batch, b, &label_index, max_width, |slot, kept| dst[kept] = p[slot]);
            }
        })
        .map_err(|e| Error::Msg(format!("span teacher {}: {e}", dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "))))?;
        Ok(SpanTeacher { probs, labelled, label_index, max_width, weight: weight as f32 })
    }

    /// Gold `targets [B, W, K, C]` of `batch`, whose example b is training
    /// example `example_ids[b]`, blended with the teacher's probabilities,
    /// and the loss `mask [B, W, K, C]` less the spans of unlabelled text
    /// that the teacher did not score (they have no target at all).
    pub fn soften(&self, targets: &Tensor, mask: &Tensor, batch: &GlinerBatch, example_ids: &[usize]) -> Result<(Tensor, Tensor)> {
        let mut t = targets.to_vec::<f32>()?;
        let mut m = mask.to_vec::<f32>()?;
        for (b, &ex) in example_ids.iter().enumerate() {
            let probs = &self.probs[ex];
            let weight = if ex < self.labelled { self.weight } else { 1.0 };
            for_each_span(batch, b, &self.label_index, self.max_width, |slot, kept| {
                if probs[kept].is_finite() {
                    t[slot] = (1.0 - weight) * t[slot] + weight * probs[kept];
                } else if ex >= self.labelled {
                    m[slot] = 0.0;
                }
            });
        }
        Ok((Tensor::from_vec(t, targets.shape())?, Tensor::from_vec(m, mask.shape())?))
    }
}

/// Calls `f(slot, kept)` for every valid span (narrower than `max_width`)
/// × known label of example `b` of `batch`: `slot` indexes the batch's
/// `[B, W, K, C]` scores, `kept` the example's stored `[words, max_width,
/// label_index.len()]` probabilities.
fn for_each_span(batch: &GlinerBatch, b: usize, label_index: &HashMap<String, usize>, max_width: usize, mut f: impl FnMut(usize, usize)) {
    let (w, k, c, tc) = (batch.num_words, batch.max_width, batch.num_classes, label_index.len());
    for (ci, label) in batch.labels[b].iter().enumerate() {
        let Some(&li) = label_index.get(label) else { continue };
        for s in 0..batch.text_lengths[b] {
            for width in 0..k.min(max_width) {
                let span = (b * w + s) * k + width;
                if batch.span_mask[span] {
                    f(span * c + ci, (s * max_width + width) * tc + li);
                }
            }
        }
    }
}
