//! NER corpora: readers for the formats in `shared/data/ner/`, the label
//! map from corpus tags to natural-language labels, and the conversion of
//! documents into GLiNER training examples.
//!
//! Every reader produces the same in-memory form, [`Document`]: the full
//! text and its mentions as code-point offsets (end exclusive), the corpus's
//! own tag, and normalised concept ids (`MESH:D…`, `MESH:C…`, `OMIM:…`, the
//! id format of the biomed KG).
//!
//! Bad input is an error naming the file and line ([`DataError`]); readers
//! never panic on malformed data.

pub mod brat;
pub mod convert;
pub mod gliner_json;
pub mod iob;
pub mod labels;
pub mod pubtator;

use std::path::Path;

pub use convert::{document_words, to_examples, words_cut_at, Conversion, ConvertOptions, Example, Unmapped, UnmappedReason};
pub use labels::LabelMap;

/// One annotated mention: code-point offsets into [`Document::text`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mention {
    /// First character (code-point index).
    pub start: usize,
    /// One past the last character (code-point index).
    pub end: usize,
    /// The corpus's own tag (`Disease`, `SpecificDisease`, `cell_type`, …).
    pub label: String,
    /// Normalised concept ids; empty when the corpus gives none.
    pub concept_ids: Vec<String>,
}

/// One document (or, for corpora without document boundaries, one sentence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub id: String,
    pub text: String,
    /// In file order.
    pub mentions: Vec<Mention>,
}

impl Document {
    /// The text of a mention of this document, or `None` when its offsets
    /// do not lie inside the text.
    pub fn mention_text(&self, m: &Mention) -> Option<&str> {
        char_slice(&self.text, m.start, m.end)
    }
}

/// Errors of the readers and of the conversion. The messages name the file
/// and line (or the document) so that a bad corpus can be fixed.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}: {msg}")]
    Parse {
        file: String,
        line: usize,
        msg: String,
    },
    /// A tag missing from the label map, or a malformed map.
    #[error("{0}")]
    Label(String),
    /// Conversion options that cannot work.
    #[error("{0}")]
    Options(String),
}

pub type Result<T> = std::result::Result<T, DataError>;

pub(crate) fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| DataError::Io {
        file: path.display().to_string(),
        source,
    })
}

pub(crate) fn parse_err(path: &Path, line: usize, msg: impl Into<String>) -> DataError {
    DataError::Parse {
        file: path.display().to_string(),
        line,
        msg: msg.into(),
    }
}

/// `text[start..end]` in code points; `None` when out of range or reversed.
pub fn char_slice(text: &str, start: usize, end: usize) -> Option<&str> {
    if start > end {
        return None;
    }
    let byte_at = |target: usize| -> Option<usize> {
        if target == 0 {
            return Some(0);
        }
        let mut indices = text
            .char_indices()
            .map(|(b, _)| b)
            .chain(std::iter::once(text.len()));
        indices.nth(target)
    };
    let b0 = byte_at(start)?;
    let b1 = byte_at(end)?;
    text.get(b0..b1)
}

/// Documents read as one, in order: texts joined with a space (as the
/// IOB reader joins the sentences of a `-DOCSTART-` document), mention
/// offsets shifted to the joined text. For sentence-level files whose
/// sentences are in document order (the MTL IOB corpora), so that a model
/// can read a sentence with its neighbours.
pub fn join_documents(docs: Vec<Document>, id: String) -> Document {
    let mut out = Document { id, text: String::new(), mentions: Vec::new() };
    let mut chars = 0;
    for doc in docs {
        if !out.text.is_empty() {
            out.text.push(' ');
            chars += 1;
        }
        out.text.push_str(&doc.text);
        out.mentions.extend(doc.mentions.into_iter().map(|m| Mention { start: m.start + chars, end: m.end + chars, ..m }));
        chars += doc.text.chars().count();
    }
    out
}

/// Documents whose id is not in `ids` (e.g. to drop the JNLPBA standoff
/// train documents that `iob/devel.tsv` consists of).
pub fn exclude_ids(docs: Vec<Document>, ids: &std::collections::HashSet<String>) -> Vec<Document> {
    docs.into_iter().filter(|d| !ids.contains(&d.id)).collect()
}

/// A list of document ids, one per line (blank lines ignored), such as
/// `jnlpba/iob/devel-doc-ids-in-standoff-train.txt`.
pub fn read_id_list(path: &Path) -> Result<Vec<String>> {
    let text = read_text(path)?;
    let mut ids = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let id = line.trim();
        if id.is_empty() {
            continue;
        }
        if id.contains(char::is_whitespace) {
            return Err(parse_err(
                path,
                i + 1,
                format!("expected one id per line, got {line:?}"),
            ));
        }
        ids.push(id.to_string());
    }
    Ok(ids)
}
