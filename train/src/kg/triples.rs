//! Link-prediction benchmark splits: `train.tsv`, `valid.tsv`, `test.tsv`
//! (or `.txt`, optionally `.gz`), one `head<TAB>relation<TAB>tail` per line,
//! no header (PyKEEN's dataset files).
//!
//! Vocabularies: entity index = position in the sorted set of entity names,
//! relation index = position in the sorted set of relation names, as
//! PyKEEN's `TriplesFactory` labels them. PyKEEN builds them from the
//! training split only; here they come from all splits, which is the same
//! whenever every valid/test name occurs in train (true for UMLS) and keeps
//! unseen names usable instead of silently dropping their triples.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use kogner_tensor::{Error, Result};

use super::tsv;

/// Train/valid/test triples over one shared vocabulary.
#[derive(Clone, Debug)]
pub struct TripleSplits {
    pub entity_names: Vec<String>,
    pub relation_names: Vec<String>,
    /// (head, relation, tail) indices, file order.
    pub train: Vec<[u32; 3]>,
    pub valid: Vec<[u32; 3]>,
    pub test: Vec<[u32; 3]>,
}

/// Reads one header-less triple file as name triples.
pub fn read_triple_names(path: &Path) -> Result<Vec<[String; 3]>> {
    let text = tsv::read_text(path)?;
    let mut out = Vec::new();
    for item in tsv::lines(path, &text) {
        let (line_no, line) = item?;
        let c = tsv::cells(path, line_no, line, 3)?;
        if let Some(i) = c.iter().position(|s| s.is_empty()) {
            let what = ["head", "relation", "tail"][i];
            return Err(Error::file(path, format!("line {line_no}: empty {what}")));
        }
        out.push([c[0].to_string(), c[1].to_string(), c[2].to_string()]);
    }
    Ok(out)
}

fn split_file(dir: &Path, stem: &str) -> Result<PathBuf> {
    for ext in ["tsv", "txt", "tsv.gz", "txt.gz"] {
        let p = dir.join(format!("{stem}.{ext}"));
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(Error::file(
        dir,
        format!("no {stem}.tsv / {stem}.txt (optionally .gz)"),
    ))
}

impl TripleSplits {
    /// Loads the three splits of a benchmark directory.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<TripleSplits> {
        let dir = dir.as_ref();
        let names: Vec<Vec<[String; 3]>> = ["train", "valid", "test"]
            .iter()
            .map(|s| split_file(dir, s).and_then(|p| read_triple_names(&p)))
            .collect::<Result<_>>()?;
        Ok(Self::from_names(&names[0], &names[1], &names[2]))
    }

    /// Indexes name triples with sorted vocabularies over all three splits.
    pub fn from_names(
        train: &[[String; 3]],
        valid: &[[String; 3]],
        test: &[[String; 3]],
    ) -> TripleSplits {
        let all = || train.iter().chain(valid).chain(test);
        let entity_names: Vec<String> = all()
            .flat_map(|t| [&t[0], &t[2]])
            .collect::<BTreeSet<_>>()
            .into_iter()
            .cloned()
            .collect();
        let relation_names: Vec<String> = all()
            .map(|t| &t[1])
            .collect::<BTreeSet<_>>()
            .into_iter()
            .cloned()
            .collect();
        let ent: HashMap<&str, u32> = entity_names
            .iter()
            .enumerate()
            .map(|(i, e)| (e.as_str(), i as u32))
            .collect();
        let rel: HashMap<&str, u32> = relation_names
            .iter()
            .enumerate()
            .map(|(i, r)| (r.as_str(), i as u32))
            .collect();
        let index = |split: &[[String; 3]]| -> Vec<[u32; 3]> {
            split
                .iter()
                .map(|t| [ent[t[0].as_str()], rel[t[1].as_str()], ent[t[2].as_str()]])
                .collect()
        };
        TripleSplits {
            train: index(train),
            valid: index(valid),
            test: index(test),
            entity_names,
            relation_names,
        }
    }

    pub fn num_entities(&self) -> usize {
        self.entity_names.len()
    }

    pub fn num_relations(&self) -> usize {
        self.relation_names.len()
    }

    /// All triples of the three splits (the filter set of filtered ranking).
    pub fn all_triples(&self) -> Vec<[u32; 3]> {
        self.train
            .iter()
            .chain(&self.valid)
            .chain(&self.test)
            .copied()
            .collect()
    }
}
