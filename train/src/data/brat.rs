//! brat standoff: `<id>.txt` (the text, verbatim) + `<id>.ann`, whose
//! text-bound lines `T<n> TAB <type> <start> <end> TAB <text>` give
//! code-point offsets (end exclusive) into the `.txt`.
//!
//! Discontinuous spans (`start end;start end`) are rejected with an error:
//! the common form has one contiguous span per mention and GLiNER has no
//! way to train on gaps; JNLPBA, the corpus read here, has none. Other
//! annotation kinds (`R`, `E`, `A`, `M`, `N`, `#`, `*`) refer to `T`
//! annotations and add no spans, so they are skipped.

use std::path::Path;

use super::{char_slice, parse_err, read_text, DataError, Document, Mention, Result};

/// Read one `.txt` + `.ann` pair; `txt` is the text file, the `.ann` next
/// to it with the same stem. The document id is the file stem.
pub fn read_brat_document(txt: &Path) -> Result<Document> {
    let ann = txt.with_extension("ann");
    let text = read_text(txt)?;
    let ann_content = read_text(&ann)?;
    let id = txt
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n_chars = text.chars().count();
    let mut mentions = Vec::new();
    for (i, raw) in ann_content.lines().enumerate() {
        let lineno = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() || !line.starts_with('T') {
            continue;
        }
        let cols: Vec<&str> = line.splitn(3, '\t').collect();
        if cols.len() != 3 {
            return Err(parse_err(
                &ann,
                lineno,
                "text-bound line needs 3 TAB-separated fields: id, `type start end`, text",
            ));
        }
        if cols[1].contains(';') {
            return Err(parse_err(
                &ann,
                lineno,
                format!("discontinuous span {:?} is not supported", cols[1]),
            ));
        }
        let parts: Vec<&str> = cols[1].split(' ').collect();
        if parts.len() != 3 || parts[0].is_empty() {
            return Err(parse_err(
                &ann,
                lineno,
                format!("expected `type start end`, got {:?}", cols[1]),
            ));
        }
        let start: usize = parts[1]
            .parse()
            .map_err(|_| parse_err(&ann, lineno, format!("bad start offset {:?}", parts[1])))?;
        let end: usize = parts[2]
            .parse()
            .map_err(|_| parse_err(&ann, lineno, format!("bad end offset {:?}", parts[2])))?;
        let slice = char_slice(&text, start, end)
            .filter(|_| start < end)
            .ok_or_else(|| {
                parse_err(
                    &ann,
                    lineno,
                    format!(
                        "offsets {start}-{end} outside {} ({n_chars} chars) or empty",
                        txt.display()
                    ),
                )
            })?;
        if slice != cols[2] {
            return Err(parse_err(
                &ann,
                lineno,
                format!(
                    "mention text {:?} differs from the text at {start}-{end}: {slice:?}",
                    cols[2]
                ),
            ));
        }
        mentions.push(Mention {
            start,
            end,
            label: parts[0].to_string(),
            concept_ids: Vec::new(),
        });
    }
    Ok(Document { id, text, mentions })
}

/// Read every `<id>.txt` in `dir` with its `.ann`, sorted by file name. A
/// `.txt` without `.ann` (or the reverse) is an error.
pub fn read_brat_dir(dir: &Path) -> Result<Vec<Document>> {
    let io = |source| DataError::Io {
        file: dir.display().to_string(),
        source,
    };
    let mut txts = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        match path.extension().and_then(|e| e.to_str()) {
            Some("txt") => txts.push(path),
            Some("ann") if !path.with_extension("txt").is_file() => {
                return Err(DataError::Parse {
                    file: path.display().to_string(),
                    line: 0,
                    msg: "annotation file without its .txt".into(),
                });
            }
            _ => {}
        }
    }
    txts.sort();
    txts.iter().map(|t| read_brat_document(t)).collect()
}
