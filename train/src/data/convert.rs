//! Documents → GLiNER training examples.
//!
//! GLiNER trains on word spans over the words of `split_words` (the exact
//! splitter of the reference), so every char-offset mention is mapped to
//! (first word, last word). A mention that does not start at a word start
//! and end at a word end cannot be represented; it is returned in
//! [`Conversion::unmapped`] rather than dropped silently.
//!
//! A mention boundary can fall inside a GLiNER word: JNLPBA's `IL-2` in
//! `IL-2-induced`, BC5CDR's chemical in `cocaine-induced`. With
//! [`ConvertOptions::split_at_mentions`] such a word is cut at the boundary
//! and each piece re-split by GLiNER's rule — the words the text would give
//! with a space there, which is how the corpora's own IOB files tokenise
//! these mentions (`2`, `-induced`). Only mentions starting or ending on
//! whitespace, or outside the text, stay unmapped.
//!
//! Long documents are cut: into sentences, packed back together into
//! examples of at most `max_len` words (or kept one per example with
//! [`ConvertOptions::split_sentences`]), and a sentence still longer than
//! `max_len` words into word windows. No cut ever falls
//! inside a (mapped) mention, so every mapped mention lands in exactly one
//! example.

use std::collections::HashMap;

use kogner_models::gliner::words::{split_words, Word};

use super::{char_slice, DataError, Document, LabelMap, Result};

/// One GLiNER training example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub doc_id: String,
    /// The example's words; their offsets stay those of the document text,
    /// so predictions can be mapped back for evaluation.
    pub words: Vec<Word>,
    /// (first word, last word inclusive, label), indices into `words`, in
    /// the document's mention order.
    pub spans: Vec<(usize, usize, String)>,
    /// Concept ids of each span (parallel to `spans`), for KG linking.
    pub span_concepts: Vec<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvertOptions {
    /// Longest example in words (GLiNER's `max_len`).
    pub max_len: usize,
    /// Cut every document into sentences, not only those longer than
    /// `max_len` (what training on PubTator abstracts uses).
    pub split_sentences: bool,
    /// Cut words at mention boundaries that fall inside them (see the module
    /// docs), so those mentions are kept instead of reported unmapped.
    pub split_at_mentions: bool,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            max_len: 384,
            split_sentences: false,
            split_at_mentions: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnmappedReason {
    /// `start > end`, or `end` past the text.
    OutOfRange,
    /// The mention starts inside a word or on whitespace.
    NotAtWordStart,
    /// The mention ends inside a word or on whitespace.
    NotAtWordEnd,
}

/// A mention that has no word span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmapped {
    pub doc_id: String,
    pub start: usize,
    pub end: usize,
    /// The mention's text (empty when out of range).
    pub text: String,
    /// The natural-language label.
    pub label: String,
    pub reason: UnmappedReason,
}

#[derive(Debug, Clone, Default)]
pub struct Conversion {
    pub examples: Vec<Example>,
    pub unmapped: Vec<Unmapped>,
}

/// Sentence-final punctuation as GLiNER words.
fn is_sentence_end(w: &Word) -> bool {
    matches!(w.text.as_str(), "." | "!" | "?")
}

fn starts_sentence(w: &Word) -> bool {
    w.text
        .chars()
        .next()
        .is_some_and(|c| c.is_uppercase() || c.is_numeric())
}

/// Whether a sentence may end before word `k` (`0 < k < words.len()`):
/// after `.`/`!`/`?` and before a capital or a digit.
fn sentence_cut(words: &[Word], k: usize) -> bool {
    is_sentence_end(&words[k - 1]) && starts_sentence(&words[k])
}

/// The sentences of a word sequence as word ranges, by the same rule that
/// cuts training documents (there, cuts inside mentions are skipped too).
pub fn sentence_ranges(words: &[Word]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut a = 0;
    for k in 1..words.len() {
        if sentence_cut(words, k) {
            out.push(a..k);
            a = k;
        }
    }
    if a < words.len() {
        out.push(a..words.len());
    }
    out
}

/// Convert documents to examples, renaming tags through `labels`. An
/// unknown tag is an error naming the tag and document. A document without
/// words gives no example.
///
/// Windows are at most `max_len` words, with one exception: when mentions
/// overlapping one another chain over more than `max_len` words there is no
/// cut that keeps them whole, and the window grows to the next free cut
/// (keeping the mentions beats keeping the limit; GLiNER's own truncation
/// would otherwise drop them).
pub fn to_examples(
    docs: &[Document],
    labels: &LabelMap,
    opts: &ConvertOptions,
) -> Result<Conversion> {
    if opts.max_len == 0 {
        return Err(DataError::Options("max_len must be at least 1".into()));
    }
    let mut out = Conversion::default();
    for doc in docs {
        convert_document(doc, labels, opts, &mut out)?;
    }
    Ok(out)
}

/// Consecutive `(start, end)` word ranges merged greedily into runs of at
/// most `max_len` words; a range longer than that stays alone.
fn pack(ranges: &[(usize, usize)], max_len: usize) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for &(a, b) in ranges {
        match out.last_mut() {
            Some(last) if b - last.0 <= max_len => last.1 = b,
            _ => out.push((a, b)),
        }
    }
    out
}

/// GLiNER's words of `text`, with every word that one of the code-point
/// offsets `cuts` falls strictly inside cut there, each piece re-split by
/// GLiNER's rule (offsets stay those of `text`).
pub fn words_cut_at(text: &str, cuts: &[usize]) -> Vec<Word> {
    let mut cuts = cuts.to_vec();
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::new();
    for w in split_words(text) {
        let lo = cuts.partition_point(|&c| c <= w.start);
        let hi = cuts.partition_point(|&c| c < w.end);
        if lo == hi {
            out.push(w);
            continue;
        }
        // Piece boundaries as (char, byte) offsets into `text`.
        let mut bounds = vec![(w.start, w.byte_start)];
        let mut chars = w.text.char_indices().map(|(b, _)| b).enumerate();
        for &c in &cuts[lo..hi] {
            let (_, b) = chars.find(|&(i, _)| w.start + i == c).expect("cut inside the word");
            bounds.push((c, w.byte_start + b));
        }
        bounds.push((w.end, w.byte_end));
        for pair in bounds.windows(2) {
            let ((c0, b0), (_, b1)) = (pair[0], pair[1]);
            out.extend(split_words(&text[b0..b1]).into_iter().map(|p| Word {
                start: p.start + c0,
                end: p.end + c0,
                byte_start: p.byte_start + b0,
                byte_end: p.byte_end + b0,
                text: p.text,
            }));
        }
    }
    out
}

/// The words a document is converted with under `opts`.
pub fn document_words(doc: &Document, opts: &ConvertOptions) -> Vec<Word> {
    if opts.split_at_mentions {
        let cuts: Vec<usize> = doc.mentions.iter().flat_map(|m| [m.start, m.end]).collect();
        words_cut_at(&doc.text, &cuts)
    } else {
        split_words(&doc.text)
    }
}

fn convert_document(
    doc: &Document,
    labels: &LabelMap,
    opts: &ConvertOptions,
    out: &mut Conversion,
) -> Result<()> {
    let words = document_words(doc, opts);
    let by_start: HashMap<usize, usize> = words
        .iter()
        .enumerate()
        .map(|(i, w)| (w.start, i))
        .collect();
    let by_end: HashMap<usize, usize> = words.iter().enumerate().map(|(i, w)| (w.end, i)).collect();
    // (first word, last word, label, mention index)
    let mut spans: Vec<(usize, usize, String, usize)> = Vec::with_capacity(doc.mentions.len());
    for (mi, m) in doc.mentions.iter().enumerate() {
        let label = labels
            .label(&m.label)
            .map_err(|e| DataError::Label(format!("document {}: {e}", doc.id)))?
            .to_string();
        let text = char_slice(&doc.text, m.start, m.end);
        let reason = match (text, by_start.get(&m.start), by_end.get(&m.end)) {
            (None, _, _) => Some(UnmappedReason::OutOfRange),
            (_, None, _) => Some(UnmappedReason::NotAtWordStart),
            (_, _, None) => Some(UnmappedReason::NotAtWordEnd),
            (Some(_), Some(&s), Some(&e)) if s <= e => {
                spans.push((s, e, label.clone(), mi));
                None
            }
            // start == end at a word boundary: an empty mention.
            _ => Some(UnmappedReason::NotAtWordEnd),
        };
        if let Some(reason) = reason {
            out.unmapped.push(Unmapped {
                doc_id: doc.id.clone(),
                start: m.start,
                end: m.end,
                text: text.unwrap_or_default().to_string(),
                label,
                reason,
            });
        }
    }
    let n = words.len();
    if n == 0 {
        return Ok(());
    }
    // blocked[k]: a cut before word k would split a mention.
    let mut depth = vec![0i64; n + 1];
    for &(s, e, _, _) in &spans {
        depth[s + 1] += 1;
        depth[e + 1] -= 1;
    }
    let mut blocked = vec![false; n + 1];
    let mut acc = 0;
    for k in 0..=n {
        acc += depth[k];
        blocked[k] = acc > 0;
    }

    let mut segments = Vec::new();
    if opts.split_sentences || n > opts.max_len {
        let mut a = 0;
        for k in (1..n).filter(|&k| !blocked[k] && sentence_cut(&words, k)) {
            segments.push((a, k));
            a = k;
        }
        segments.push((a, n));
    } else {
        segments.push((0, n));
    }
    if !opts.split_sentences {
        // Keep as much context as fits: consecutive sentences packed into
        // examples of at most max_len words.
        segments = pack(&segments, opts.max_len);
    }
    let mut windows = Vec::new();
    for (a, b) in segments {
        let mut s = a;
        while s < b {
            let mut e = (s + opts.max_len).min(b);
            while e > s && e < b && blocked[e] {
                e -= 1;
            }
            if e == s {
                e = (s + opts.max_len + 1..b)
                    .find(|&k| !blocked[k])
                    .unwrap_or(b);
            }
            windows.push((s, e));
            s = e;
        }
    }
    // Windows are in order and disjoint: assign each span by its first word.
    let mut per_window: Vec<Vec<usize>> = vec![Vec::new(); windows.len()];
    for (si, &(s, _, _, _)) in spans.iter().enumerate() {
        let w = windows.partition_point(|&(_, e)| e <= s);
        per_window[w].push(si);
    }
    for ((a, b), members) in windows.into_iter().zip(per_window) {
        let mut ex = Example {
            doc_id: doc.id.clone(),
            words: words[a..b].to_vec(),
            spans: Vec::with_capacity(members.len()),
            span_concepts: Vec::with_capacity(members.len()),
        };
        for si in members {
            let (s, e, ref label, mi) = spans[si];
            ex.spans.push((s - a, e - a, label.clone()));
            ex.span_concepts.push(doc.mentions[mi].concept_ids.clone());
        }
        out.examples.push(ex);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(words: &[Word]) -> Vec<(&str, usize, usize)> {
        words.iter().map(|w| (w.text.as_str(), w.start, w.end)).collect()
    }

    #[test]
    fn words_are_cut_at_offsets_inside_them_and_re_split() {
        // "interleukin 2-induced": a mention ending after "2" cuts "2-induced"
        // into "2" and "-induced", which re-splits as "-", "induced" (what
        // the text "2 -induced" gives).
        let text = "interleukin 2-induced Ca²⁺-flux";
        assert_eq!(
            texts(&words_cut_at(text, &[0, 13, 22, 24])),
            [("interleukin", 0, 11), ("2", 12, 13), ("-", 13, 14), ("induced", 14, 21), ("Ca", 22, 24), ("²", 24, 25), ("⁺", 25, 26), ("-", 26, 27), ("flux", 27, 31)]
        );
        // Offsets on word edges, on whitespace or past the end change nothing.
        assert_eq!(words_cut_at(text, &[0, 11, 12, 21, 99]), split_words(text));
        for w in words_cut_at(text, &[13, 24, 25]) {
            assert_eq!(&text[w.byte_start..w.byte_end], w.text);
        }
    }

    #[test]
    fn mentions_inside_words_map_when_cut() {
        let text = "IL-2-induced NF-kappaB";
        let doc = Document {
            id: "d".into(),
            text: text.into(),
            mentions: vec![
                super::super::Mention { start: 0, end: 4, label: "protein".into(), concept_ids: vec![] },
                super::super::Mention { start: 13, end: 22, label: "protein".into(), concept_ids: vec![] },
            ],
        };
        let labels = LabelMap::for_corpus("jnlpba").unwrap();
        let plain = to_examples(std::slice::from_ref(&doc), &labels, &ConvertOptions::default()).unwrap();
        assert_eq!(plain.unmapped.len(), 1);
        assert_eq!(plain.examples[0].spans, [(1, 1, "protein".to_string())]);
        let cut = to_examples(std::slice::from_ref(&doc), &labels, &ConvertOptions { split_at_mentions: true, ..Default::default() }).unwrap();
        assert!(cut.unmapped.is_empty());
        let words: Vec<&str> = cut.examples[0].words.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(words, ["IL-2", "-", "induced", "NF-kappaB"]);
        assert_eq!(cut.examples[0].spans, [(0, 0, "protein".to_string()), (3, 3, "protein".to_string())]);
    }

    #[test]
    fn sentences_are_packed_up_to_max_len_unless_split() {
        // Sentences of 3, 4, 3, 5 and 2 words ('.' is a word).
        let text = "A b. C d e. F g. H i j k. L.";
        let doc = Document { id: "d".into(), text: text.into(), mentions: vec![] };
        let labels = LabelMap::for_corpus("jnlpba").unwrap();
        let lens = |opts: ConvertOptions| -> Vec<usize> {
            to_examples(std::slice::from_ref(&doc), &labels, &opts).unwrap().examples.iter().map(|e| e.words.len()).collect()
        };
        assert_eq!(lens(ConvertOptions { max_len: 8, ..Default::default() }), [7, 8, 2]);
        assert_eq!(lens(ConvertOptions { max_len: 8, split_sentences: true, ..Default::default() }), [3, 4, 3, 5, 2]);
        assert_eq!(lens(ConvertOptions { max_len: 17, ..Default::default() }), [17]);
        // A sentence longer than max_len is windowed, its neighbours still packed.
        assert_eq!(lens(ConvertOptions { max_len: 4, ..Default::default() }), [3, 4, 3, 4, 1, 2]);
    }
}
