//! Long documents: overlapping word windows and an exact merge.
//!
//! GLiNER cuts every text after `max_len` words (384) and MiniLM's tokenizer
//! silently cuts after 512 sub-tokens. kogner never drops text: a document
//! is covered by overlapping word windows, each window is one model example,
//! and the windows' span candidates are merged back into one decoding.
//!
//! # Windows
//! [`plan_windows`] covers `0..num_words` with windows of at most `max_len`
//! words whose consecutive overlap is at least `max_width` words, spread
//! evenly (no tiny last window). Since a span has at most `max_width` words,
//! every span the model can score lies wholly inside at least one window.
//! When a window is still too long in sub-tokens (the encoder cap; see
//! [`super::processor::TokenBudget`]), [`refine_windows`] splits it with
//! [`split_window`] (two halves, same overlap rule, recursively) until it
//! fits, keeping the coverage property.
//!
//! # Merge
//! Each window contributes its above-threshold span candidates
//! ([`super::decode::span_candidates`], in window-local word indices), not
//! its decoded entities. [`merge_candidates`] shifts them to document word
//! indices, keeps one candidate per `(start, end, class)` (the highest
//! score), restores GLiNER's candidate order `(start, width, class)` and runs
//! the same greedy conflict resolution ([`super::decode::greedy_search`])
//! over the whole document. Hence:
//! * a document that fits in one window decodes exactly like GLiNER;
//! * if every window scores a span the same (e.g. a deterministic function
//!   of the absolute span), windowed decoding equals decoding the whole
//!   document at once, in every mode;
//! * no entity is reported twice and the flat/nested/multi-label rules hold
//!   across window borders.

use std::collections::HashMap;
use std::ops::Range;

use kogner_tensor::{Error, Result};

use super::decode::{greedy_search, to_entities, DecodeMode, Entity, SpanCandidate};
use super::words::Word;

fn err(msg: impl Into<String>) -> Error {
    Error::Msg(msg.into())
}

/// `n` windows of equal length over `range` with consecutive overlap at
/// least `overlap`; requires `n >= 1` and, for `n >= 2`, room to progress.
fn balanced(range: &Range<usize>, n: usize, overlap: usize) -> Vec<Range<usize>> {
    let len = range.end - range.start;
    if n <= 1 {
        return vec![range.clone()];
    }
    // Smallest width w with n*w >= len + (n-1)*overlap; then the starts
    // floor(j*(len-w)/(n-1)) step by at most w - overlap.
    let width = (len + (n - 1) * overlap).div_ceil(n);
    (0..n)
        .map(|j| {
            let start = range.start + j * (len - width) / (n - 1);
            start..start + width
        })
        .collect()
}

fn check_sizes(max_len: usize, max_width: usize) -> Result<()> {
    if max_width == 0 {
        return Err(err("max_width must be positive"));
    }
    if max_len <= max_width {
        return Err(err(format!("max_len {max_len} must exceed max_width {max_width} for overlapping windows")));
    }
    Ok(())
}

/// Word windows covering `0..num_words`: one window when the text fits,
/// otherwise the fewest windows of ≤ `max_len` words with overlap ≥
/// `max_width`, evenly spread. No window for an empty text.
pub fn plan_windows(num_words: usize, max_len: usize, max_width: usize) -> Result<Vec<Range<usize>>> {
    check_sizes(max_len, max_width)?;
    if num_words == 0 {
        return Ok(Vec::new());
    }
    if num_words <= max_len {
        return Ok(std::iter::once(0..num_words).collect());
    }
    let n = (num_words - max_width).div_ceil(max_len - max_width);
    Ok(balanced(&(0..num_words), n, max_width))
}

/// Splits `window` into two halves overlapping by at least `max_width`
/// words (so coverage of spans ≤ `max_width` words is kept). `None` when
/// the window is too short to shrink (≤ `max_width + 1` words).
pub fn split_window(window: &Range<usize>, max_width: usize) -> Option<[Range<usize>; 2]> {
    if window.end < window.start + max_width + 2 {
        return None;
    }
    let halves = balanced(window, 2, max_width);
    Some([halves[0].clone(), halves[1].clone()])
}

/// Splits every window for which `fits` is false (e.g. a
/// [`super::processor::TokenBudget::fits`] check) until all fit. A window
/// too short to split is kept as it is; the processor then truncates it and
/// reports the cut words.
pub fn refine_windows(
    windows: Vec<Range<usize>>,
    max_width: usize,
    mut fits: impl FnMut(&Range<usize>) -> bool,
) -> Vec<Range<usize>> {
    let mut out = Vec::with_capacity(windows.len());
    let mut stack: Vec<Range<usize>> = windows.into_iter().rev().collect();
    while let Some(window) = stack.pop() {
        match split_window(&window, max_width) {
            Some([left, right]) if !fits(&window) => {
                stack.push(right);
                stack.push(left);
            }
            _ => out.push(window),
        }
    }
    out
}

/// One window's above-threshold candidates, in window-local word indices.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowCandidates {
    /// The window's document word range.
    pub window: Range<usize>,
    pub candidates: Vec<SpanCandidate>,
}

/// Document-level greedy decoding over all windows' candidates (see the
/// module docs); returns accepted spans in document word indices.
pub fn merge_candidates(windows: &[WindowCandidates], mode: DecodeMode) -> Result<Vec<SpanCandidate>> {
    let mut best: HashMap<(usize, usize, usize), f32> = HashMap::new();
    for wc in windows {
        let len = wc.window.end.saturating_sub(wc.window.start);
        for c in &wc.candidates {
            if c.score.is_nan() {
                return Err(err("merge: NaN candidate score"));
            }
            if c.start > c.end || c.end >= len {
                return Err(err(format!("merge: span ({}, {}) does not fit window {:?}", c.start, c.end, wc.window)));
            }
            let key = (c.start + wc.window.start, c.end + wc.window.start, c.class);
            best.entry(key).and_modify(|s| *s = s.max(c.score)).or_insert(c.score);
        }
    }
    let mut all: Vec<SpanCandidate> =
        best.into_iter().map(|((start, end, class), score)| SpanCandidate { start, end, class, score }).collect();
    all.sort_by_key(|c| (c.start, c.end, c.class));
    Ok(greedy_search(&all, mode))
}

/// [`merge_candidates`] mapped to entities of the document `text`, whose
/// words are `words` and whose class indices index `labels`.
pub fn merge(
    text: &str,
    words: &[Word],
    labels: &[String],
    windows: &[WindowCandidates],
    mode: DecodeMode,
) -> Result<Vec<Entity>> {
    to_entities(text, words, labels, &merge_candidates(windows, mode)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn covers_all_spans(windows: &[Range<usize>], n: usize, k: usize) -> bool {
        (0..n).all(|s| (s..(s + k).min(n)).all(|e| windows.iter().any(|w| w.start <= s && e < w.end)))
    }

    proptest! {
        #[test]
        fn windows_cover_every_span(n in 0usize..3000, k in 1usize..16, extra in 1usize..400) {
            let max_len = k + extra;
            let windows = plan_windows(n, max_len, k).unwrap();
            prop_assert!(windows.iter().all(|w| w.end - w.start <= max_len && w.end <= n && w.start < w.end));
            prop_assert!(covers_all_spans(&windows, n, k));
            if n > 0 && n <= max_len {
                prop_assert_eq!(windows, vec![0..n]);
            }
        }

        #[test]
        fn refined_windows_fit_and_cover(n in 1usize..1500, k in 1usize..13, cap in 20usize..200) {
            let windows = plan_windows(n, 384, k).unwrap();
            // Pretend word i costs 1 + i % 5 sub-tokens.
            let cost = |w: &Range<usize>| w.clone().map(|i| 1 + i % 5).sum::<usize>();
            let refined = refine_windows(windows, k, |w| cost(w) <= cap);
            prop_assert!(covers_all_spans(&refined, n, k));
            prop_assert!(refined.iter().all(|w| cost(w) <= cap || w.end - w.start <= k + 1));
        }
    }

    #[test]
    fn sizes_are_checked() {
        assert!(plan_windows(10, 12, 12).is_err());
        assert!(plan_windows(10, 12, 0).is_err());
        assert_eq!(plan_windows(0, 384, 12).unwrap(), Vec::<Range<usize>>::new());
        assert!(split_window(&(5..18), 12).is_none());
        assert_eq!(split_window(&(5..19), 12), Some([5..18, 6..19]));
    }

    #[test]
    fn merge_rejects_bad_candidates() {
        let wc = |s, e, score| WindowCandidates {
            window: 10..20,
            candidates: vec![SpanCandidate { start: s, end: e, class: 0, score }],
        };
        assert!(merge_candidates(&[wc(0, 10, 0.9)], DecodeMode::FLAT).is_err());
        assert!(merge_candidates(&[wc(3, 2, 0.9)], DecodeMode::FLAT).is_err());
        assert!(merge_candidates(&[wc(0, 1, f32::NAN)], DecodeMode::FLAT).is_err());
        let merged = merge_candidates(&[wc(0, 1, 0.7), wc(0, 1, 0.9)], DecodeMode::FLAT).unwrap();
        assert_eq!(merged, vec![SpanCandidate { start: 10, end: 11, class: 0, score: 0.9 }]);
    }
}
