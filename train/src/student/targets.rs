//! GLiNER's training targets for an encoded batch.

use kogner_models::gliner::processor::GlinerBatch;
use kogner_tensor::{Result, Tensor};

/// Span targets `[B, W, K, C]`: 1 at (start, width, class) for every gold
/// span `(first word, last word, label)` of example b whose label is
/// offered to it, narrower than K and inside the words the batch kept
/// (GLiNER's collator ignores the others).
pub fn span_targets(batch: &GlinerBatch, spans: &[&[(usize, usize, String)]]) -> Result<Tensor> {
    let (b, w, k, c) = (batch.batch_size, batch.num_words, batch.max_width, batch.num_classes);
    let mut t = vec![0f32; b * w * k * c];
    for (bi, example) in spans.iter().enumerate().take(b) {
        for (s, e, label) in example.iter() {
            let Some(ci) = batch.labels[bi].iter().position(|l| l == label) else { continue };
            let Some(slot) = span_slot(batch, bi, *s, *e) else { continue };
            t[slot * c + ci] = 1.0;
        }
    }
    Tensor::from_vec(t, &[b, w, k, c])
}

/// The flat `[B·W·K]` slot of span (first word `s`, last word `e`) of
/// example `b`, or None when the batch does not represent it: wider than K
/// or past the words the batch kept (GLiNER's collator ignores those).
pub fn span_slot(batch: &GlinerBatch, b: usize, s: usize, e: usize) -> Option<usize> {
    let k = batch.max_width;
    (s <= e && e - s < k && e < batch.text_lengths[b]).then(|| (b * batch.num_words + s) * k + (e - s))
}

/// Which (span, class) logits the loss sees, `[B, W, K, C]`: valid spans ×
/// real (non-padding) labels.
pub fn loss_mask(batch: &GlinerBatch) -> Result<Tensor> {
    let (b, w, k, c) = (batch.batch_size, batch.num_words, batch.max_width, batch.num_classes);
    let mut m = vec![0f32; b * w * k * c];
    for bi in 0..b {
        for s in 0..w * k {
            if !batch.span_mask[bi * w * k + s] {
                continue;
            }
            for ci in 0..c {
                if batch.prompts_embedding_mask[bi * c + ci] {
                    m[(bi * w * k + s) * c + ci] = 1.0;
                }
            }
        }
    }
    Tensor::from_vec(m, &[b, w, k, c])
}
