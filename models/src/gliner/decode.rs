//! GLiNER span decoding: from span probabilities to entities.
//!
//! Reference: `gliner/decoding/decoder.py` (`BaseSpanDecoder._decode_batch`,
//! `BaseDecoder.greedy_search`, `SpanDecoder._build_span_tuple`),
//! `gliner/decoding/utils.py` (`has_overlapping`, `has_overlapping_nested`)
//! and `gliner/model.py` (`_map_entities_to_original`).
//!
//! # Input
//! `probs` = sigmoid(logits), float32 `[B, W, K, C]` (W word slots, K span
//! widths, C label slots), row-major, as the model produces it. Span
//! `(i, k)` covers words `i..=i+k` of example b.
//!
//! # Algorithm (GLiNER 0.2.29, reproduced exactly)
//! 1. Candidates: every `(i, k, c)` with `p > threshold` (strict, compared
//!    in f32), `i + k < text_len` and `c` one of the example's labels, listed
//!    in `(start, width, class)` order (`torch.where` order).
//! 2. Stable sort by score, descending: ties keep that order (earlier start,
//!    then shorter span, then lower class).
//! 3. Greedy acceptance against every span accepted so far. Two spans with
//!    the same `(start, end)` conflict unless `multi_label` (whatever their
//!    labels). Otherwise flat mode (`flat_ner`) rejects any shared word;
//!    nested mode rejects only partial overlaps (disjoint or one inside the
//!    other is fine). So flat + multi_label still rejects partial overlaps
//!    and nesting, but lets the very same span carry several labels.
//! 4. Output sorted by start word only, stably: spans with the same start
//!    stay in acceptance (= score) order, not by end.
//!
//! The conflict check here only looks at accepted spans that can touch the
//! candidate (bucketed by start word), which is the same decision as
//! GLiNER's all-pairs loop in far less time on long documents.
//!
//! Entity character offsets are `[start of first word, end of last word)`
//! in code points; `text` is that slice of the original text.

use std::ops::Range;

use kogner_tensor::{Error, Result};

use super::processor::GlinerBatch;
use super::words::Word;

fn err(msg: impl Into<String>) -> Error {
    Error::Msg(msg.into())
}

/// A scored span: words `start..=end` (end inclusive, as GLiNER), class
/// index `class` (0-based, into the example's labels), probability `score`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpanCandidate {
    pub start: usize,
    pub end: usize,
    pub class: usize,
    pub score: f32,
}

/// GLiNER's `flat_ner` / `multi_label` switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DecodeMode {
    pub flat_ner: bool,
    pub multi_label: bool,
}

impl DecodeMode {
    pub const FLAT: DecodeMode = DecodeMode { flat_ner: true, multi_label: false };
    pub const NESTED: DecodeMode = DecodeMode { flat_ner: false, multi_label: false };
    pub const FLAT_MULTI: DecodeMode = DecodeMode { flat_ner: true, multi_label: true };
    pub const NESTED_MULTI: DecodeMode = DecodeMode { flat_ner: false, multi_label: true };
}

/// One decoded entity.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    /// Code-point offset of the first character.
    pub start: usize,
    /// Code-point offset one past the last character.
    pub end: usize,
    /// The original text between `start` and `end`.
    pub text: String,
    pub label: String,
    pub score: f32,
    /// First word (index into the words the spans refer to).
    pub word_start: usize,
    /// Last word, inclusive.
    pub word_end: usize,
    pub class_index: usize,
}

/// A borrowed `[B, W, K, C]` probability tensor.
#[derive(Debug, Clone, Copy)]
pub struct SpanProbs<'a> {
    data: &'a [f32],
    shape: [usize; 4],
}

impl<'a> SpanProbs<'a> {
    pub fn new(data: &'a [f32], shape: [usize; 4]) -> Result<SpanProbs<'a>> {
        let numel = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if numel != Some(data.len()) {
            return Err(err(format!("span probs: {} values do not fill shape {shape:?}", data.len())));
        }
        Ok(SpanProbs { data, shape })
    }

    /// `[B, W, K, C]`.
    pub fn shape(&self) -> [usize; 4] {
        self.shape
    }

    fn at(&self, b: usize, i: usize, k: usize, c: usize) -> f32 {
        let [_, w, kk, cc] = self.shape;
        self.data[((b * w + i) * kk + k) * cc + c]
    }
}

/// Step 1 for example `b`: the above-threshold valid spans, in
/// `(start, width, class)` order. `text_len` = the example's words,
/// `num_labels` = its labels (class slots beyond are padding). A NaN
/// probability in the valid region is an error.
pub fn span_candidates(
    probs: &SpanProbs<'_>,
    b: usize,
    text_len: usize,
    num_labels: usize,
    threshold: f32,
) -> Result<Vec<SpanCandidate>> {
    let [bsz, w, k, c] = probs.shape;
    if threshold.is_nan() {
        return Err(err("threshold is NaN"));
    }
    if b >= bsz {
        return Err(err(format!("example {b} out of range for a batch of {bsz}")));
    }
    if text_len > w {
        return Err(err(format!("example {b}: {text_len} words but only {w} word slots in probs")));
    }
    if num_labels > c {
        return Err(err(format!("example {b}: {num_labels} labels but only {c} class slots in probs")));
    }
    let mut out = Vec::new();
    for i in 0..text_len {
        for width in 0..k.min(text_len - i) {
            for class in 0..num_labels {
                let p = probs.at(b, i, width, class);
                if p.is_nan() {
                    return Err(err(format!(
                        "example {b}: NaN probability at span ({i}, {}) class {class}",
                        i + width
                    )));
                }
                if p > threshold {
                    out.push(SpanCandidate { start: i, end: i + width, class, score: p });
                }
            }
        }
    }
    Ok(out)
}

/// GLiNER's `has_overlapping` (flat) / `has_overlapping_nested` (nested):
/// whether `a` conflicts with `b`.
pub fn conflicts(a: &SpanCandidate, b: &SpanCandidate, mode: DecodeMode) -> bool {
    if (a.start, a.end) == (b.start, b.end) {
        return !mode.multi_label;
    }
    let disjoint = a.start > b.end || b.start > a.end;
    if mode.flat_ner {
        return !disjoint;
    }
    let nested = (a.start <= b.start && a.end >= b.end) || (b.start <= a.start && b.end >= a.end);
    !(disjoint || nested)
}

/// Steps 2–4: stable sort by score (descending), greedy acceptance, stable
/// sort of the accepted spans by start.
pub fn greedy_search(candidates: &[SpanCandidate], mode: DecodeMode) -> Vec<SpanCandidate> {
    let mut order: Vec<SpanCandidate> = candidates.to_vec();
    // `+ 0.0` maps -0.0 to 0.0 so the order equals Python's float order.
    order.sort_by(|a, b| (b.score + 0.0).total_cmp(&(a.score + 0.0)));

    let Some(max_end) = order.iter().map(|s| s.end.max(s.start)).max() else {
        return Vec::new();
    };
    // Accepted spans bucketed by start word; any accepted span sharing a word
    // with [s, e] starts in [s - (longest - 1), e].
    let mut by_start: Vec<Vec<SpanCandidate>> = vec![Vec::new(); max_end + 1];
    let mut longest = 0usize;
    let mut accepted = Vec::new();
    for cand in order {
        let lo = cand.start.saturating_sub(longest.saturating_sub(1));
        let hi = cand.end.min(max_end);
        let clash = (lo..=hi).any(|s| by_start[s].iter().any(|acc| conflicts(&cand, acc, mode)));
        if !clash {
            by_start[cand.start].push(cand);
            longest = longest.max(cand.end.saturating_sub(cand.start) + 1);
            accepted.push(cand);
        }
    }
    accepted.sort_by_key(|s| s.start);
    accepted
}

/// Maps accepted spans to entities of `text`, whose `words` the span word
/// indices refer to and whose classes index `labels`.
pub fn to_entities(text: &str, words: &[Word], labels: &[String], spans: &[SpanCandidate]) -> Result<Vec<Entity>> {
    spans
        .iter()
        .map(|span| {
            let (first, last) = match (words.get(span.start), words.get(span.end)) {
                (Some(f), Some(l)) if span.start <= span.end => (f, l),
                _ => {
                    return Err(err(format!(
                        "span ({}, {}) is outside the {} words",
                        span.start,
                        span.end,
                        words.len()
                    )))
                }
            };
            let label = labels
                .get(span.class)
                .ok_or_else(|| err(format!("class {} is not one of the {} labels", span.class, labels.len())))?;
            let slice: Range<usize> = first.byte_start..last.byte_end;
            let piece =
                text.get(slice.clone()).ok_or_else(|| err(format!("word offsets {slice:?} do not fit the text")))?;
            Ok(Entity {
                start: first.start,
                end: last.end,
                text: piece.to_string(),
                label: label.clone(),
                score: span.score,
                word_start: span.start,
                word_end: span.end,
                class_index: span.class,
            })
        })
        .collect()
}

/// Full GLiNER decoding of one model batch: `texts[b]` is the text the words
/// of `batch.words[b]` point into.
pub fn decode_batch(
    probs: &SpanProbs<'_>,
    batch: &GlinerBatch,
    texts: &[&str],
    threshold: f32,
    mode: DecodeMode,
) -> Result<Vec<Vec<Entity>>> {
    let [bsz, _, k, _] = probs.shape();
    if bsz != batch.batch_size || texts.len() != batch.batch_size {
        return Err(err(format!(
            "decode: probs for {bsz} examples, batch of {}, {} texts",
            batch.batch_size,
            texts.len()
        )));
    }
    if k != batch.max_width {
        return Err(err(format!("decode: probs have {k} span widths, the batch {}", batch.max_width)));
    }
    (0..bsz)
        .map(|b| {
            let labels = &batch.labels[b];
            let cands = span_candidates(probs, b, batch.text_lengths[b], labels.len(), threshold)?;
            to_entities(texts[b], &batch.words[b], labels, &greedy_search(&cands, mode))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// GLiNER's literal all-pairs greedy loop.
    fn greedy_reference(candidates: &[SpanCandidate], mode: DecodeMode) -> Vec<SpanCandidate> {
        let mut order = candidates.to_vec();
        order.sort_by(|a, b| b.score.partial_cmp(&a.score).unwrap());
        let mut accepted: Vec<SpanCandidate> = Vec::new();
        for cand in order {
            if !accepted.iter().any(|acc| conflicts(&cand, acc, mode)) {
                accepted.push(cand);
            }
        }
        accepted.sort_by_key(|s| s.start);
        accepted
    }

    fn arb_candidates() -> impl Strategy<Value = Vec<SpanCandidate>> {
        prop::collection::vec((0usize..30, 0usize..6, 0usize..3, 0u8..8), 0..80).prop_map(|raw| {
            let mut seen = std::collections::HashSet::new();
            raw.into_iter()
                .filter(|&(s, w, c, _)| seen.insert((s, w, c)))
                .map(|(s, w, c, q)| SpanCandidate { start: s, end: s + w, class: c, score: 0.5 + f32::from(q) / 16.0 })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn bucketed_greedy_equals_all_pairs(cands in arb_candidates()) {
            for mode in [DecodeMode::FLAT, DecodeMode::NESTED, DecodeMode::FLAT_MULTI, DecodeMode::NESTED_MULTI] {
                prop_assert_eq!(greedy_search(&cands, mode), greedy_reference(&cands, mode));
            }
        }
    }

    #[test]
    fn overlap_rules() {
        let s = |start, end, class| SpanCandidate { start, end, class, score: 0.9 };
        // Same span, other label: only multi-label allows it, in both modes.
        assert!(conflicts(&s(1, 2, 0), &s(1, 2, 1), DecodeMode::FLAT));
        assert!(!conflicts(&s(1, 2, 0), &s(1, 2, 1), DecodeMode::FLAT_MULTI));
        assert!(conflicts(&s(1, 2, 0), &s(1, 2, 1), DecodeMode::NESTED));
        assert!(!conflicts(&s(1, 2, 0), &s(1, 2, 1), DecodeMode::NESTED_MULTI));
        // Nesting: flat rejects, nested accepts; partial overlap: both reject.
        assert!(conflicts(&s(1, 4, 0), &s(2, 3, 0), DecodeMode::FLAT_MULTI));
        assert!(!conflicts(&s(1, 4, 0), &s(2, 3, 0), DecodeMode::NESTED));
        assert!(conflicts(&s(1, 3, 0), &s(2, 4, 0), DecodeMode::NESTED_MULTI));
        assert!(!conflicts(&s(1, 2, 0), &s(3, 4, 0), DecodeMode::FLAT));
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(SpanProbs::new(&[0.5; 7], [1, 2, 2, 2]).is_err());
        let data = [0.9, f32::NAN, 0.2, 0.7];
        let probs = SpanProbs::new(&data, [1, 2, 2, 1]).unwrap();
        assert!(span_candidates(&probs, 0, 2, 1, 0.5).is_err());
        assert!(span_candidates(&probs, 0, 1, 1, f32::NAN).is_err());
        assert!(span_candidates(&probs, 0, 3, 1, 0.5).is_err());
        assert!(span_candidates(&probs, 0, 1, 2, 0.5).is_err());
        assert!(span_candidates(&probs, 1, 1, 1, 0.5).is_err());
        // Only (0, 0) is valid for one word: the NaN at width 1 is ignored.
        assert_eq!(span_candidates(&probs, 0, 1, 1, 0.5).unwrap().len(), 1);
        let words = super::super::words::split_words("a b");
        let labels = vec!["x".to_string()];
        assert!(
            to_entities("a b", &words, &labels, &[SpanCandidate { start: 0, end: 2, class: 0, score: 0.9 }]).is_err()
        );
        assert!(
            to_entities("a b", &words, &labels, &[SpanCandidate { start: 0, end: 1, class: 1, score: 0.9 }]).is_err()
        );
    }
}
