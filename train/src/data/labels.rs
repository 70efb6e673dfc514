//! Corpus tags → the natural-language labels GLiNER is prompted with.
//!
//! GLiNER matches spans against label *names*, so a corpus's tags
//! (`cell_type`, `SpecificDisease`) are renamed to plain words ("cell
//! type", "disease"). A tag that the map does not know is an error naming
//! the tag — silently keeping or dropping it would train on a label the
//! user never chose.

use std::collections::BTreeMap;

use super::{DataError, Result};

/// A map from corpus tags to labels. Several tags may share a label
/// (NCBI-disease's four mention classes are all "disease").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMap {
    map: BTreeMap<String, String>,
    /// Tags not in `map` keep their own name instead of being an error
    /// (GLiNER JSON, whose labels are already natural language).
    identity: bool,
}

impl LabelMap {
    /// Parse `TAG=label,TAG=label` (the CLI flag). Spaces around tags and
    /// labels are trimmed; labels may contain inner spaces ("cell type").
    pub fn parse(spec: &str) -> Result<LabelMap> {
        let mut map = BTreeMap::new();
        for item in spec.split(',') {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (tag, label) = item.split_once('=').ok_or_else(|| {
                DataError::Label(format!("label map item {item:?} is not TAG=label"))
            })?;
            let (tag, label) = (tag.trim(), label.trim());
            if tag.is_empty() || label.is_empty() {
                return Err(DataError::Label(format!(
                    "label map item {item:?} has an empty tag or label"
                )));
            }
            if map.insert(tag.to_string(), label.to_string()).is_some() {
                return Err(DataError::Label(format!(
                    "label map names tag {tag:?} twice"
                )));
            }
        }
        if map.is_empty() {
            return Err(DataError::Label(format!("label map {spec:?} is empty")));
        }
        Ok(LabelMap {
            map,
            identity: false,
        })
    }

    /// The default map of a corpus by its folder name under
    /// `shared/data/ner/`: `ncbi-disease`, `bc5cdr`, `jnlpba`, or `gliner`
    /// (identity: labels are used as written).
    pub fn for_corpus(corpus: &str) -> Result<LabelMap> {
        let spec = match corpus {
            // PubTator classes and the IOB files' single tag.
            "ncbi-disease" => "SpecificDisease=disease,DiseaseClass=disease,Modifier=disease,CompositeMention=disease,Disease=disease",
            "bc5cdr" => "Chemical=chemical,Disease=disease",
            "jnlpba" => "protein=protein,DNA=dna,RNA=rna,cell_type=cell type,cell_line=cell line",
            "gliner" => return Ok(LabelMap { map: BTreeMap::new(), identity: true }),
            other => {
                return Err(DataError::Label(format!(
                    "no default label map for corpus {other:?} (known: ncbi-disease, bc5cdr, jnlpba, gliner)"
                )))
            }
        };
        LabelMap::parse(spec)
    }

    /// The label of a corpus tag.
    pub fn label<'a>(&'a self, tag: &'a str) -> Result<&'a str> {
        match self.map.get(tag) {
            Some(l) => Ok(l),
            None if self.identity => Ok(tag),
            None => Err(DataError::Label(format!(
                "tag {tag:?} is not in the label map (known tags: {})",
                self.map.keys().cloned().collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// The distinct labels the map produces, sorted.
    pub fn labels(&self) -> Vec<String> {
        let mut v: Vec<String> = self.map.values().cloned().collect();
        v.sort();
        v.dedup();
        v
    }
}
