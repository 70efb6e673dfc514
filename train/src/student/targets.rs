//! GLiNER's training targets for an encoded batch.

use kogner_models::gliner::processor::GlinerBatch;
use kogner_tensor::{Error, Result, Tensor};

use crate::student::sampler::mix;

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

/// GLiNER's `label_smoothing` ε: every target moves toward ½,
/// `t·(1 − ε) + ε/2` (applied to whatever targets the step has, soft ones
/// included, as GLiNER's `focal_loss_with_logits` does).
pub fn smooth_targets(targets: &Tensor, eps: f64) -> Result<Tensor> {
    if eps == 0.0 {
        return Ok(targets.clone());
    }
    let (keep, shift) = ((1.0 - eps) as f32, (0.5 * eps) as f32);
    let t: Vec<f32> = targets.to_vec::<f32>()?.into_iter().map(|t| t * keep + shift).collect();
    Tensor::from_vec(t, targets.shape())
}

/// Which zero-target loss elements GLiNER's negative sampling may drop
/// (its `masking`; every element with a positive gold target is kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NegativeMasking {
    /// Keep everything.
    None,
    /// Every (span, class) element whose gold target is 0.
    Global,
    /// Every element of a class that no span of the example has.
    Label,
    /// Every element of a span that has no class.
    Span,
}

impl std::str::FromStr for NegativeMasking {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" => Ok(NegativeMasking::None),
            "global" => Ok(NegativeMasking::Global),
            "label" => Ok(NegativeMasking::Label),
            "span" => Ok(NegativeMasking::Span),
            other => Err(format!("{other:?}: expected none, global, label or span")),
        }
    }
}

/// GLiNER's negative sampling (`masking`, `negatives`), `[B, W, K, C]` of
/// 0/1 to multiply into the loss mask: each candidate negative (see
/// [`NegativeMasking`]) is kept with probability `negatives`, everything
/// else always. `gold [B, W, K, C]` holds the gold (hard) targets. The draw
/// for (example b, word s, width k, class c) is a function of
/// (`keys[b]`, s, k, c) alone, so an example's mask does not depend on the
/// batch (or shard) it is padded into. GLiNER draws `torch.rand_like`; the
/// distribution is the same, not the numbers.
pub fn negative_mask(gold: &Tensor, masking: NegativeMasking, negatives: f64, keys: &[u64]) -> Result<Tensor> {
    let (b, w, k, c) = match *gold.shape() {
        [b, w, k, c] => (b, w, k, c),
        _ => return Err(Error::Msg(format!("negative_mask: gold targets must be [B, W, K, C], got {:?}", gold.shape()))),
    };
    if keys.len() != b {
        return Err(Error::Msg(format!("negative_mask: {} example keys for a batch of {b}", keys.len())));
    }
    let g = gold.to_vec::<f32>()?;
    let slots = w * k;
    let mut m = vec![1f32; g.len()];
    for (bi, &key) in keys.iter().enumerate() {
        let example = &g[bi * slots * c..(bi + 1) * slots * c];
        let class_has_positive: Vec<bool> = (0..c).map(|ci| (0..slots).any(|s| example[s * c + ci] > 0.0)).collect();
        for s in 0..slots {
            let span_has_positive = example[s * c..(s + 1) * c].iter().any(|&t| t > 0.0);
            for ci in 0..c {
                let candidate = match masking {
                    NegativeMasking::None => false,
                    NegativeMasking::Global => example[s * c + ci] == 0.0,
                    NegativeMasking::Label => !class_has_positive[ci],
                    NegativeMasking::Span => !span_has_positive,
                };
                // (word, width) of the slot: the same whatever W the batch pads to.
                let (word, width) = ((s / k) as u64, (s % k) as u64);
                if candidate && uniform(mix(key, word << 32 | width, ci as u64)) >= negatives {
                    m[(bi * slots + s) * c + ci] = 0.0;
                }
            }
        }
    }
    Tensor::from_vec(m, gold.shape())
}

/// A hash's top 53 bits as a uniform number in [0, 1).
fn uniform(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flat index of (example b, word s, width k, class ci) in `[2, W, 3, 2]`.
    fn idx(w: usize, b: usize, s: usize, k: usize, ci: usize) -> usize {
        ((b * w + s) * 3 + k) * 2 + ci
    }

    /// Gold `[2, W, 3, 2]`: example 0 has class 0 at (word 1, width 0);
    /// example 1 has class 1 at (word 0, width 2).
    fn gold(w: usize) -> Tensor {
        let mut t = vec![0f32; 2 * w * 3 * 2];
        t[idx(w, 0, 1, 0, 0)] = 1.0;
        t[idx(w, 1, 0, 2, 1)] = 1.0;
        Tensor::from_vec(t, &[2, w, 3, 2]).unwrap()
    }

    fn at(m: &[f32], w: usize, b: usize, s: usize, k: usize, ci: usize) -> f32 {
        m[idx(w, b, s, k, ci)]
    }

    #[test]
    fn smoothing_moves_targets_toward_one_half() {
        let t = Tensor::from_vec(vec![0f32, 1.0, 0.25], &[3]).unwrap();
        let s = smooth_targets(&t, 0.2).unwrap().to_vec::<f32>().unwrap();
        let want = [0.1f32, 0.9, 0.3];
        assert!(s.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-7), "{s:?}");
    }

    #[test]
    fn candidates_follow_gliner_and_positives_stay() {
        let (w, keys) = (4, [11u64, 12]);
        let g = gold(w);
        let m = |masking, p| negative_mask(&g, masking, p, &keys).unwrap().to_vec::<f32>().unwrap();
        let gv = g.to_vec::<f32>().unwrap();
        assert!(m(NegativeMasking::Global, 1.0).iter().all(|&x| x == 1.0));
        assert!(m(NegativeMasking::None, 0.0).iter().all(|&x| x == 1.0));
        // negatives = 0 drops every candidate: global keeps exactly the positives.
        assert_eq!(m(NegativeMasking::Global, 0.0), gv);
        // label: example 0 keeps all of class 0 (it has one), none of class 1.
        let label = m(NegativeMasking::Label, 0.0);
        assert!((0..w).all(|s| (0..3).all(|k| at(&label, w, 0, s, k, 0) == 1.0 && at(&label, w, 0, s, k, 1) == 0.0)));
        assert!((0..w).all(|s| (0..3).all(|k| at(&label, w, 1, s, k, 0) == 0.0 && at(&label, w, 1, s, k, 1) == 1.0)));
        // span: only the positive spans' elements, both classes.
        let span = m(NegativeMasking::Span, 0.0);
        for b in 0..2 {
            for s in 0..w {
                for k in 0..3 {
                    let positive = (b, s, k) == (0, 1, 0) || (b, s, k) == (1, 0, 2);
                    assert!((0..2).all(|ci| at(&span, w, b, s, k, ci) == f32::from(u8::from(positive))), "{b} {s} {k}");
                }
            }
        }
    }

    #[test]
    fn negatives_are_kept_at_their_rate_whatever_the_padding() {
        let (w, keys) = (400, [5u64, 6]);
        let g = gold(w);
        let m = negative_mask(&g, NegativeMasking::Global, 0.3, &keys).unwrap().to_vec::<f32>().unwrap();
        let gv = g.to_vec::<f32>().unwrap();
        let negatives: Vec<f32> = m.iter().zip(&gv).filter(|(_, &t)| t == 0.0).map(|(&x, _)| x).collect();
        let rate = negatives.iter().sum::<f32>() / negatives.len() as f32;
        // 4,798 draws: the standard error of the rate is 0.0066.
        assert!((rate - 0.3).abs() < 0.03, "kept {rate}");
        assert!(m.iter().zip(&gv).all(|(&x, &t)| t == 0.0 || x == 1.0));
        // The same examples padded to fewer words draw the same masks on the words they share.
        let short = negative_mask(&gold(7), NegativeMasking::Global, 0.3, &keys).unwrap().to_vec::<f32>().unwrap();
        for b in 0..2 {
            for s in 0..7 {
                for k in 0..3 {
                    for ci in 0..2 {
                        assert_eq!(at(&short, 7, b, s, k, ci), at(&m, w, b, s, k, ci));
                    }
                }
            }
        }
    }
}
