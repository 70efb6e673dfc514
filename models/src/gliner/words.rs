//! GLiNER's whitespace word splitter, with Python `re` semantics.
//!
//! GLiNER (`gliner/data_processing/tokenizer.py`, `WhitespaceTokenSplitter`)
//! cuts a text into words with the regular expression
//! `\w+(?:[-_]\w+)*|\S`, run by Python's `re` module on a `str`. Every later
//! stage (the label prompt, `words_mask`, span indices, entity offsets) counts
//! in these words, so kogner must reproduce the split exactly, including two
//! places where Rust's `regex` crate would disagree with Python:
//!
//! * `\w` is Python's `str.isalnum()` or `_`: the Unicode general categories
//!   Lu, Ll, Lt, Lm, Lo (letters) and Nd, Nl, No (numbers). That includes
//!   superscript digits (`²` is No) and excludes combining marks (Mn, Mc, Me),
//!   so `Ca²⁺` is `Ca²`, `⁺` (Rust's `regex` gives `Ca`, `²`, `⁺`) and a
//!   decomposed `é` (`e` + U+0301) is two words.
//! * `\s` is Python's `str.isspace()`: Unicode White_Space plus the
//!   information separators U+001C..U+001F. Everything else is `\S`, so a
//!   lone U+200B (zero-width space, category Cf) is a word of its own.
//!
//! Checked against Python 3.11's `re` over every code point: identical for
//! `\s`; for `\w` the only differences are the ~9,400 code points assigned
//! after Unicode 14 (Python 3.11's database; `unicode-general-category` is at
//! Unicode 16), which are letters/numbers here and single-character `\S`
//! words there.
//!
//! Offsets are reported both as code-point indices (what Python, and so the
//! fixtures and GLiNER's output, use) and as byte indices into the Rust
//! `&str` (what slicing needs).

use unicode_general_category::{get_general_category, GeneralCategory};

/// One word of a text: its string and where it sits in the text.
///
/// `start`/`end` are code-point offsets (Python `str` indices, end
/// exclusive); `byte_start`/`byte_end` are the same positions as byte offsets
/// into the UTF-8 text, so `&text[byte_start..byte_end] == text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    pub start: usize,
    pub end: usize,
    pub byte_start: usize,
    pub byte_end: usize,
}

/// Python `re`'s `\w` on `str`: `c.isalnum() or c == "_"`.
pub fn is_word_char(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || c == '_';
    }
    matches!(
        get_general_category(c),
        GeneralCategory::UppercaseLetter
            | GeneralCategory::LowercaseLetter
            | GeneralCategory::TitlecaseLetter
            | GeneralCategory::ModifierLetter
            | GeneralCategory::OtherLetter
            | GeneralCategory::DecimalNumber
            | GeneralCategory::LetterNumber
            | GeneralCategory::OtherNumber
    )
}

/// Python's `str.isspace()` (and so `re`'s `\s` on `str`): bidirectional
/// class WS, B or S, or general category Zs.
pub fn is_python_space(c: char) -> bool {
    matches!(
        c,
        '\u{9}'..='\u{d}'
            | '\u{1c}'..='\u{20}'
            | '\u{85}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

/// Split `text` into GLiNER words (`\w+(?:[-_]\w+)*|\S`, Python semantics).
///
/// An empty or all-whitespace text gives no words.
pub fn split_words(text: &str) -> Vec<Word> {
    // (byte offset, char) for every code point, plus an end sentinel offset.
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let byte_at = |i: usize| chars.get(i).map_or(text.len(), |&(b, _)| b);
    let word_at = |i: usize| chars.get(i).is_some_and(|&(_, c)| is_word_char(c));

    let mut words = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i].1;
        if is_python_space(c) {
            i += 1;
            continue;
        }
        let start = i;
        if is_word_char(c) {
            // \w+ then greedily (?:[-_]\w+)*: a joiner only counts when a
            // word character follows it ('_' is itself \w, so only '-' can
            // actually stop the first run).
            i += 1;
            loop {
                while word_at(i) {
                    i += 1;
                }
                let joiner = chars.get(i).is_some_and(|&(_, c)| c == '-' || c == '_');
                if joiner && word_at(i + 1) {
                    i += 1;
                } else {
                    break;
                }
            }
        } else {
            i += 1;
        }
        let (byte_start, byte_end) = (byte_at(start), byte_at(i));
        words.push(Word { text: text[byte_start..byte_end].to_string(), start, end: i, byte_start, byte_end });
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(text: &str) -> Vec<(String, usize, usize)> {
        split_words(text).into_iter().map(|w| (w.text, w.start, w.end)).collect()
    }

    fn w(s: &str, a: usize, b: usize) -> (String, usize, usize) {
        (s.to_string(), a, b)
    }

    #[test]
    fn python_semantics() {
        assert_eq!(texts("Ca²⁺"), vec![w("Ca²", 0, 3), w("⁺", 3, 4)]);
        assert_eq!(texts("e\u{301}x"), vec![w("e", 0, 1), w("\u{301}", 1, 2), w("x", 2, 3)]);
        assert_eq!(texts("a\u{200b}b"), vec![w("a", 0, 1), w("\u{200b}", 1, 2), w("b", 2, 3)]);
        assert_eq!(texts("a\u{1c}b\u{a0}c\u{3000}d"), vec![w("a", 0, 1), w("b", 2, 3), w("c", 4, 5), w("d", 6, 7)]);
        assert_eq!(
            texts("non-FAP x_y-z a-b- -c"),
            vec![
                w("non-FAP", 0, 7),
                w("x_y-z", 8, 13),
                w("a-b", 14, 17),
                w("-", 17, 18),
                w("-", 19, 20),
                w("c", 20, 21),
            ]
        );
        assert_eq!(texts("a--b"), vec![w("a", 0, 1), w("-", 1, 2), w("-", 2, 3), w("b", 3, 4)]);
        assert_eq!(texts("IL-1β ≥2-fold."), vec![w("IL-1β", 0, 5), w("≥", 6, 7), w("2-fold", 7, 13), w(".", 13, 14)]);
        assert!(texts("").is_empty());
        assert!(texts(" \t\n\u{85}\u{2028} ").is_empty());
    }

    #[test]
    fn byte_offsets_slice_the_text() {
        let text = "Zürich: 400 mg/m² — α\u{200b}β";
        for word in split_words(text) {
            assert_eq!(&text[word.byte_start..word.byte_end], word.text);
            assert_eq!(text.chars().skip(word.start).take(word.end - word.start).collect::<String>(), word.text);
        }
    }
}
