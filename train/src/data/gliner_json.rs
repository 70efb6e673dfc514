//! GLiNER's training-data JSON: records
//! `{"tokenized_text": [...], "ner": [[start_word, end_word_inclusive, label], ...]}`,
//! either as one JSON list or as JSON lines. The text is the tokens joined
//! by single spaces; labels are already natural language and kept as given.

use std::path::Path;

use serde::Deserialize;

use super::{parse_err, read_text, Document, Mention, Result};

#[derive(Deserialize)]
struct Record {
    tokenized_text: Vec<String>,
    ner: Vec<(usize, usize, String)>,
}

/// Read a GLiNER JSON list (first non-space character `[`) or JSONL file.
/// Document ids are `<file stem>-<n>`, n counting records from 1. Errors
/// name the line: of the record for JSONL, of the parse error for a list.
pub fn read_gliner_json(path: &Path) -> Result<Vec<Document>> {
    let content = read_text(path)?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if content.trim_start().starts_with('[') {
        // serde_json's errors carry the line of the offending record.
        let records: Vec<Record> = serde_json::from_str(&content)
            .map_err(|e| parse_err(path, e.line(), format!("invalid GLiNER JSON: {e}")))?;
        // Content errors found later can only name the record: the list was
        // parsed whole, without line positions.
        return records
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                build(r, &stem, i + 1)
                    .map_err(|m| parse_err(path, 0, format!("record {}: {m}", i + 1)))
            })
            .collect();
    }
    let mut docs = Vec::new();
    for (i, line) in content.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let r: Record = serde_json::from_str(line)
            .map_err(|e| parse_err(path, i + 1, format!("invalid GLiNER record: {e}")))?;
        docs.push(build(r, &stem, docs.len() + 1).map_err(|m| parse_err(path, i + 1, m))?);
    }
    Ok(docs)
}

/// One record as a document, or a message saying what is wrong with it.
fn build(r: Record, stem: &str, n: usize) -> std::result::Result<Document, String> {
    let mut starts = Vec::with_capacity(r.tokenized_text.len());
    let mut ends = Vec::with_capacity(r.tokenized_text.len());
    let mut text = String::new();
    let mut chars = 0;
    for (k, tok) in r.tokenized_text.iter().enumerate() {
        if tok.is_empty() {
            return Err(format!("token {k} is empty"));
        }
        if k > 0 {
            text.push(' ');
            chars += 1;
        }
        starts.push(chars);
        text.push_str(tok);
        chars += tok.chars().count();
        ends.push(chars);
    }
    let mut mentions = Vec::with_capacity(r.ner.len());
    for (s, e, label) in r.ner {
        if s > e || e >= starts.len() {
            return Err(format!(
                "span [{s}, {e}] outside the {} tokens",
                starts.len()
            ));
        }
        if label.is_empty() {
            return Err(format!("span [{s}, {e}] has an empty label"));
        }
        mentions.push(Mention {
            start: starts[s],
            end: ends[e],
            label,
            concept_ids: Vec::new(),
        });
    }
    Ok(Document {
        id: format!("{stem}-{n}"),
        text,
        mentions,
    })
}
