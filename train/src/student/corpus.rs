//! Reading an annotated corpus by format name: the one entry point that
//! `kogner train` and `kogner eval` share.

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;

use kogner_tensor::{Error, Result};

use crate::data::{self, to_examples, ConvertOptions, Document, Example, LabelMap};

/// The corpus formats kogner reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `token<TAB>tag` IOB2 / CoNLL TSV.
    Iob,
    /// PubTator (title/abstract + mention lines with concept ids).
    Pubtator,
    /// A folder of brat standoff `.txt` + `.ann` files.
    Brat,
    /// GLiNER JSON / JSONL (`tokenized_text` + `ner`).
    Gliner,
}

impl FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Format> {
        match s {
            "iob" | "conll" => Ok(Format::Iob),
            "pubtator" => Ok(Format::Pubtator),
            "brat" => Ok(Format::Brat),
            "gliner" | "json" | "jsonl" => Ok(Format::Gliner),
            other => Err(Error::Msg(format!("format {other:?}: expected iob, pubtator, brat or gliner"))),
        }
    }
}

/// Read the documents of `path` (a file; a folder for brat), dropping those
/// whose ids are listed in `exclude_ids` (one id per line), and whether the
/// documents are already examples, which training and evaluation must not
/// cut into sentences: the sentences of IOB files without document
/// boundaries, and GLiNER JSON records (GLiNER trains on each record whole;
/// only a record over `max_len` words is cut).
///
/// With `join_sentences` the sentences of an IOB file without document
/// boundaries are read as one document in file order (the MTL corpora keep
/// each abstract's sentences together), which is then cut like any
/// document: `--context document` packs consecutive sentences.
pub fn read_corpus(path: &Path, format: Format, exclude_ids: Option<&Path>, join_sentences: bool) -> Result<(Vec<Document>, bool)> {
    let err = |e: data::DataError| Error::Msg(e.to_string());
    let mut pre_split = false;
    let docs = match format {
        Format::Iob => {
            let corpus = data::iob::read_iob(path).map_err(err)?;
            pre_split = corpus.sentence_level;
            corpus.documents
        }
        Format::Pubtator => data::pubtator::read_pubtator(path).map_err(err)?,
        Format::Brat => data::brat::read_brat_dir(path).map_err(err)?,
        Format::Gliner => {
            pre_split = true;
            data::gliner_json::read_gliner_json(path).map_err(err)?
        }
    };
    let docs = match exclude_ids {
        Some(list) => {
            let ids: HashSet<String> = data::read_id_list(list).map_err(err)?.into_iter().collect();
            data::exclude_ids(docs, &ids)
        }
        None => docs,
    };
    if docs.is_empty() {
        return Err(Error::file(path, "no documents"));
    }
    if join_sentences && format == Format::Iob && pre_split {
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        return Ok((vec![data::join_documents(docs, stem)], false));
    }
    Ok((docs, pre_split))
}

/// The examples of an unlabelled corpus (any format; its annotations are
/// dropped unread), cut as training cuts its corpus: sentences, or with
/// `by_sentence` false documents packed up to `max_len` words.
pub fn unlabelled_examples(path: &Path, format: &str, by_sentence: bool, max_len: usize) -> Result<Vec<Example>> {
    let (mut docs, pre_split) = read_corpus(path, format.parse()?, None, !by_sentence)?;
    for doc in &mut docs {
        doc.mentions.clear();
    }
    let any_label = LabelMap::for_corpus("gliner").map_err(|e| Error::Msg(e.to_string()))?;
    let conv = to_examples(&docs, &any_label, &ConvertOptions { max_len, split_sentences: !pre_split && by_sentence, split_at_mentions: false })
        .map_err(|e| Error::Msg(format!("{}: {e}", path.display())))?;
    if conv.examples.is_empty() {
        return Err(Error::file(path, "no examples (no document has words)"));
    }
    Ok(conv.examples)
}

/// `TAG=label,...`, or the name of a corpus with a default map
/// (`ncbi-disease`, `bc5cdr`, `jnlpba`, `gliner`).
pub fn label_map(spec: &str) -> Result<LabelMap> {
    let map = if spec.contains('=') { LabelMap::parse(spec) } else { LabelMap::for_corpus(spec.trim()) };
    map.map_err(|e| Error::Msg(format!("--labels: {e}")))
}

/// The labels a model is prompted with: the map's labels, or for an
/// identity map (GLiNER JSON) every label the documents use, sorted.
pub fn prompt_labels(map: &LabelMap, docs: &[Document]) -> Result<Vec<String>> {
    let mut labels = map.labels();
    if labels.is_empty() {
        let mut seen: Vec<String> = docs
            .iter()
            .flat_map(|d| d.mentions.iter())
            .map(|m| map.label(&m.label).map(str::to_string).map_err(|e| Error::Msg(e.to_string())))
            .collect::<Result<_>>()?;
        seen.sort();
        seen.dedup();
        labels = seen;
    }
    if labels.is_empty() {
        return Err(Error::Msg("no labels: the label map is empty and the corpus has no mentions".into()));
    }
    Ok(labels)
}
