//! IOB2 / CoNLL TSV: `token<TAB>tag` per line, an empty line after each
//! sentence, optional `-DOCSTART-<TAB>O` lines opening documents (JNLPBA).
//!
//! The text is rebuilt by joining the tokens with single spaces (sentences
//! of one document too), and mentions get code-point offsets into it. These
//! files carry no concept ids.

use std::path::Path;

use super::{parse_err, read_text, Document, Mention, Result};

/// What [`read_iob`] found in one file.
#[derive(Debug, Clone)]
pub struct IobCorpus {
    /// One per `-DOCSTART-` block when the file has such lines, otherwise
    /// one per sentence (the file has no document boundaries). Ids are
    /// `<file stem>-<n>` (documents) or `<file stem>-s<n>` (sentences),
    /// n counting from 1 in file order.
    pub documents: Vec<Document>,
    pub sentences: usize,
    pub tokens: usize,
    /// The file has no `-DOCSTART-` lines: every document is one sentence.
    pub sentence_level: bool,
    /// Lines whose `I-` tag followed `O`, a sentence start or another type:
    /// each such tag opened a new mention (IOB1-style) instead of being
    /// rejected; listed so callers can report them.
    pub inside_without_begin: Vec<usize>,
}

struct Builder {
    text: String,
    chars: usize,
    mentions: Vec<Mention>,
    /// Index in `mentions` of the mention the previous token belonged to.
    open: Option<usize>,
}

impl Builder {
    fn new() -> Self {
        Builder {
            text: String::new(),
            chars: 0,
            mentions: Vec::new(),
            open: None,
        }
    }
    fn is_empty(&self) -> bool {
        self.chars == 0
    }
}

/// Read an IOB2 TSV file.
pub fn read_iob(path: &Path) -> Result<IobCorpus> {
    let content = read_text(path)?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let has_docstart = content
        .lines()
        .any(|l| l.split('\t').next() == Some("-DOCSTART-"));
    let mut out = IobCorpus {
        documents: Vec::new(),
        sentences: 0,
        tokens: 0,
        sentence_level: !has_docstart,
        inside_without_begin: Vec::new(),
    };
    let mut doc = Builder::new();
    let mut in_sentence = false;

    let flush = |doc: &mut Builder, out: &mut IobCorpus| {
        if doc.is_empty() {
            return;
        }
        let b = std::mem::replace(doc, Builder::new());
        let n = out.documents.len() + 1;
        let id = if has_docstart {
            format!("{stem}-{n}")
        } else {
            format!("{stem}-s{n}")
        };
        out.documents.push(Document {
            id,
            text: b.text,
            mentions: b.mentions,
        });
    };

    for (i, raw) in content.lines().enumerate() {
        let lineno = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            if in_sentence {
                out.sentences += 1;
                doc.open = None;
                in_sentence = false;
                if !has_docstart {
                    flush(&mut doc, &mut out);
                }
            }
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() != 2 {
            return Err(parse_err(
                path,
                lineno,
                format!(
                    "expected 2 TAB-separated columns (token, tag), got {}",
                    cols.len()
                ),
            ));
        }
        let (token, tag) = (cols[0], cols[1]);
        if token == "-DOCSTART-" {
            if in_sentence {
                return Err(parse_err(
                    path,
                    lineno,
                    "-DOCSTART- inside a sentence (missing empty line before it)",
                ));
            }
            flush(&mut doc, &mut out);
            continue;
        }
        if token.is_empty() {
            return Err(parse_err(path, lineno, "empty token"));
        }
        let (kind, ty) = parse_tag(tag).ok_or_else(|| {
            parse_err(
                path,
                lineno,
                format!("bad tag {tag:?} (expected O, B-<type> or I-<type>)"),
            )
        })?;
        if !doc.is_empty() {
            doc.text.push(' ');
            doc.chars += 1;
        }
        let start = doc.chars;
        doc.text.push_str(token);
        doc.chars += token.chars().count();
        let end = doc.chars;
        out.tokens += 1;
        in_sentence = true;
        if kind == 'O' {
            doc.open = None;
        } else if let Some(k) = doc
            .open
            .filter(|&k| kind == 'I' && doc.mentions[k].label == ty)
        {
            doc.mentions[k].end = end;
        } else {
            if kind == 'I' {
                out.inside_without_begin.push(lineno);
            }
            doc.mentions.push(Mention {
                start,
                end,
                label: ty.to_string(),
                concept_ids: Vec::new(),
            });
            doc.open = Some(doc.mentions.len() - 1);
        }
    }
    if in_sentence {
        out.sentences += 1;
    }
    flush(&mut doc, &mut out);
    Ok(out)
}

fn parse_tag(tag: &str) -> Option<(char, &str)> {
    if tag == "O" {
        return Some(('O', ""));
    }
    let (kind, ty) = tag.split_once('-')?;
    match kind {
        "B" if !ty.is_empty() => Some(('B', ty)),
        "I" if !ty.is_empty() => Some(('I', ty)),
        _ => None,
    }
}
