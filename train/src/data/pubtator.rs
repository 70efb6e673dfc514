//! PubTator files (NCBI-disease, BC5CDR): blocks of
//! `PMID|t|title`, `PMID|a|abstract`, then TAB-separated mention lines
//! `PMID start end text type ids [component texts]`, blocks separated by
//! empty lines. Offsets index `title + " " + abstract`, which is the
//! document text here.
//!
//! BC5CDR's 4-column relation lines (`PMID CID chem disease`) carry no
//! offsets; their PMID is checked and they are skipped, since the common form
//! holds mentions only.

use std::path::Path;

use super::{char_slice, parse_err, read_text, Document, Mention, Result};

/// Normalise a PubTator id field to KG ids: split composite ids on `|`
/// (parts of a composite mention) and `+` (a combination of concepts),
/// strip stray spaces, drop `-1` (no id), prefix bare MeSH ids `D…`/`C…`
/// with `MESH:`, keep `MESH:…` and `OMIM:…`. Duplicates are removed
/// keeping the first. `Err` carries a message for an id of no known form.
pub fn normalise_ids(field: &str) -> std::result::Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for part in field.split(['|', '+']) {
        let id = part.trim();
        if id.is_empty() || id == "-1" {
            continue;
        }
        let norm = if let Some(rest) = id.strip_prefix("MESH:") {
            check_mesh(rest, id)?;
            id.to_string()
        } else if let Some(rest) = id.strip_prefix("OMIM:") {
            if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("malformed OMIM id {id:?}"));
            }
            id.to_string()
        } else {
            check_mesh(id, id)?;
            format!("MESH:{id}")
        };
        if !out.contains(&norm) {
            out.push(norm);
        }
    }
    Ok(out)
}

fn check_mesh(body: &str, whole: &str) -> std::result::Result<(), String> {
    let mut chars = body.chars();
    let ok = matches!(chars.next(), Some('D' | 'C'))
        && body.len() > 1
        && chars.all(|c| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "unrecognised concept id {whole:?} (expected D…/C… MeSH, MESH:…, OMIM:… or -1)"
        ))
    }
}

/// Read a PubTator file. Documents come in file order (a PMID that occurs
/// twice, as 8528200 in NCBI-disease train, gives two documents).
///
/// Each mention's text field must equal the span it points at; the one
/// comparison that ignores surrounding whitespace exists because
/// NCBI-disease train has a text field with two stray trailing spaces
/// (PMID 10923035, documented in its README).
pub fn read_pubtator(path: &Path) -> Result<Vec<Document>> {
    let content = read_text(path)?;
    let mut docs = Vec::new();
    let mut cur: Option<Block> = None;
    for (i, raw) in content.lines().enumerate() {
        let lineno = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            if let Some(b) = cur.take() {
                docs.push(b.finish(path)?);
            }
            continue;
        }
        if let Some((pmid, kind, body)) = split_text_line(line) {
            match kind {
                "t" => {
                    if let Some(b) = cur.take() {
                        docs.push(b.finish(path)?);
                    }
                    cur = Some(Block {
                        id: pmid.to_string(),
                        title: body.to_string(),
                        abstract_: None,
                        start_line: lineno,
                        mentions: Vec::new(),
                    });
                }
                "a" => {
                    let b = cur.as_mut().ok_or_else(|| {
                        parse_err(path, lineno, "abstract line before any title line")
                    })?;
                    if b.id != pmid {
                        return Err(parse_err(
                            path,
                            lineno,
                            format!("abstract of PMID {pmid} inside the block of PMID {}", b.id),
                        ));
                    }
                    if b.abstract_.is_some() || !b.mentions.is_empty() {
                        return Err(parse_err(
                            path,
                            lineno,
                            "second abstract line or abstract after mentions",
                        ));
                    }
                    b.abstract_ = Some(body.to_string());
                }
                other => {
                    return Err(parse_err(
                        path,
                        lineno,
                        format!("unknown text line kind |{other}| (expected |t| or |a|)"),
                    ))
                }
            }
            continue;
        }
        let b = cur
            .as_mut()
            .ok_or_else(|| parse_err(path, lineno, "annotation line before any title line"))?;
        let cols: Vec<&str> = line.split('\t').collect();
        if cols[0] != b.id {
            return Err(parse_err(
                path,
                lineno,
                format!("PMID {} inside the block of PMID {}", cols[0], b.id),
            ));
        }
        match cols.len() {
            4 => continue, // document-level relation (BC5CDR CID): no offsets
            6 | 7 => {}
            n => {
                return Err(parse_err(
                    path,
                    lineno,
                    format!(
                        "expected 6 or 7 TAB-separated columns (or a 4-column relation), got {n}"
                    ),
                ))
            }
        }
        let start = parse_offset(cols[1])
            .ok_or_else(|| parse_err(path, lineno, format!("bad start offset {:?}", cols[1])))?;
        let end = parse_offset(cols[2])
            .ok_or_else(|| parse_err(path, lineno, format!("bad end offset {:?}", cols[2])))?;
        if cols[4].is_empty() {
            return Err(parse_err(path, lineno, "empty mention type"));
        }
        let concept_ids = normalise_ids(cols[5]).map_err(|m| parse_err(path, lineno, m))?;
        b.mentions.push((
            lineno,
            cols[3].to_string(),
            Mention {
                start,
                end,
                label: cols[4].to_string(),
                concept_ids,
            },
        ));
    }
    if let Some(b) = cur.take() {
        docs.push(b.finish(path)?);
    }
    Ok(docs)
}

fn parse_offset(s: &str) -> Option<usize> {
    s.parse::<usize>().ok()
}

/// `PMID|t|text` / `PMID|a|text`, split on the first two `|`; `None` for
/// any other line (mention lines contain TABs before any `|`).
fn split_text_line(line: &str) -> Option<(&str, &str, &str)> {
    let (pmid, rest) = line.split_once('|')?;
    if pmid.is_empty() || pmid.contains('\t') {
        return None;
    }
    let (kind, body) = rest.split_once('|')?;
    if kind.contains('\t') {
        return None;
    }
    Some((pmid, kind, body))
}

struct Block {
    id: String,
    title: String,
    abstract_: Option<String>,
    start_line: usize,
    /// (line, text field, mention)
    mentions: Vec<(usize, String, Mention)>,
}

impl Block {
    fn finish(self, path: &Path) -> Result<Document> {
        let abstract_ = self.abstract_.ok_or_else(|| {
            parse_err(
                path,
                self.start_line,
                format!("PMID {} has a title but no |a| abstract line", self.id),
            )
        })?;
        let text = format!("{} {}", self.title, abstract_);
        let mut mentions = Vec::with_capacity(self.mentions.len());
        for (lineno, field, m) in self.mentions {
            let slice = char_slice(&text, m.start, m.end)
                .filter(|_| m.start < m.end)
                .ok_or_else(|| {
                    parse_err(
                        path,
                        lineno,
                        format!(
                            "offsets {}-{} outside the document text ({} chars) or empty",
                            m.start,
                            m.end,
                            text.chars().count()
                        ),
                    )
                })?;
            if slice != field && slice.trim() != field.trim() {
                return Err(parse_err(
                    path,
                    lineno,
                    format!(
                        "mention text {field:?} differs from the text at {}-{}: {slice:?}",
                        m.start, m.end
                    ),
                ));
            }
            mentions.push(m);
        }
        Ok(Document {
            id: self.id,
            text,
            mentions,
        })
    }
}
