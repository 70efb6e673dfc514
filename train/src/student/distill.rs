//! KoGNER distillation while the student trains (SPEC §1, §5.3): a gold
//! mention whose concept id is a node of the teacher file is a linked span;
//! its span representation and the frozen teacher's H of that node go
//! through MLP_span / MLP_dist, and
//! loss = bce_weight · L_GLiNER + distill_weight · L_dist (0.8 / 0.2).
//!
//! Linking (SPEC §5.3): a mention's first concept id that is a teacher
//! node; failing that, with the teacher's KG given (`teacher_kg`), its text:
//! a case-insensitive exact match of one node's name or synonym, compared
//! word by word as GLiNER splits them (a text that names several nodes
//! stays unlinked rather than guessing).
//!
//! The heads train with the head's learning rate and weight decay (they
//! share the optimiser, the clipping and the checkpoint with the model) but
//! are not part of the GLiNER model folders: inference never uses them.

use std::collections::HashMap;
use std::path::Path;

use kogner_autograd::{ParamStore, Var};
use kogner_models::builder::{open_weights, ParamBuilder};
use kogner_models::gliner::processor::GlinerBatch;
use kogner_models::gliner::words::{split_words, Word};
use kogner_models::teacher::distill::{DistillConfig, DistillHeads};
use kogner_tensor::{Result, Tensor};

use super::config::TrainConfig;
use super::sampler::mix;
use super::shards::part_of_mean;
use super::targets::span_slot;
use crate::data::Example;
use crate::kg::{KnowledgeGraph, Node};
use crate::teacher::export::TeacherEmbeddings;

/// Parameter names start with this (`distill.span.fc1.weight`, …).
const PREFIX: &str = "distill";
const INIT_STREAM: u64 = 4;

pub struct Distiller {
    heads: DistillHeads,
    /// The heads' parameters.
    pub params: ParamStore,
    /// H [nodes, r], frozen.
    teacher: Tensor,
    /// Teacher row of each node id.
    row_of: HashMap<String, usize>,
    /// Teacher row of each node name and synonym (`name_key`); None when several nodes share it.
    row_of_name: HashMap<String, Option<usize>>,
    bce_weight: f64,
    distill_weight: f64,
}

/// Linked spans of one batch: rows of the flattened `[B·W·K, D]` span
/// representations and the teacher row of each.
pub struct Links {
    spans: Vec<i64>,
    nodes: Vec<i64>,
}

impl Links {
    pub fn len(&self) -> usize {
        self.spans.len()
    }
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

impl Distiller {
    /// The teacher file `teacher` and heads for span width `span_dim` (the
    /// other settings from `config`): seeded fresh heads when `weights` is
    /// None (step 0), else those saved in that file.
    pub fn new(config: &TrainConfig, teacher: &Path, span_dim: usize, weights: Option<&Path>) -> Result<Distiller> {
        let teacher = TeacherEmbeddings::load(teacher)?;
        let h = teacher.h()?;
        let builder = match weights {
            None => ParamBuilder::random(mix(config.seed, INIT_STREAM, 0)),
            Some(file) => ParamBuilder::from_source(open_weights(file)?),
        };
        let mut heads = DistillHeads::new(
            &builder.pp(PREFIX),
            DistillConfig {
                span_dim,
                teacher_dim: h.shape()[1],
                span_hidden: config.distill_hidden,
                dist_hidden: config.distill_hidden,
                shared_dim: config.distill_dim,
            },
        )?;
        if config.freeze_mlp_dist {
            // Constants take no gradient: the optimiser and the clipping never see them.
            for fc in [&mut heads.dist.fc1, &mut heads.dist.fc2] {
                fc.weight = Var::constant(fc.weight.value());
                fc.bias = fc.bias.as_ref().map(|b| Var::constant(b.value()));
            }
        }
        let row_of: HashMap<String, usize> = teacher.node_ids.iter().enumerate().map(|(i, id)| (id.clone(), i)).collect();
        let row_of_name = match &config.teacher_kg {
            Some(dir) => names_to_rows(&KnowledgeGraph::load_dir(dir)?.nodes, &row_of),
            None => HashMap::new(),
        };
        Ok(Distiller {
            heads,
            params: builder.params(),
            teacher: h,
            row_of,
            row_of_name,
            bce_weight: config.bce_weight,
            distill_weight: config.distill_weight,
        })
    }

    /// The teacher row of span `span` (index into `ex.spans`), if linked.
    fn node(&self, ex: &Example, span: usize) -> Option<usize> {
        let by_id = ex.span_concepts[span].iter().find_map(|id| self.row_of.get(id).copied());
        by_id.or_else(|| {
            let (s, e, _) = &ex.spans[span];
            let words = ex.words.get(*s..=*e)?;
            self.row_of_name.get(&name_key(words)).copied().flatten()
        })
    }

    /// (linked, total) gold mentions of `examples`.
    pub fn coverage(&self, examples: &[Example]) -> (usize, usize) {
        let total = examples.iter().map(|e| e.spans.len()).sum();
        let linked = examples.iter().map(|ex| (0..ex.spans.len()).filter(|&i| self.node(ex, i).is_some()).count()).sum();
        (linked, total)
    }

    /// The linked spans of a batch of `examples` that the batch represents
    /// (narrower than K, inside the kept words).
    pub fn links(&self, batch: &GlinerBatch, examples: &[&Example]) -> Links {
        let mut links = Links { spans: Vec::new(), nodes: Vec::new() };
        for (b, ex) in examples.iter().enumerate().take(batch.batch_size) {
            for (i, &(s, e, _)) in ex.spans.iter().enumerate() {
                if let (Some(slot), Some(node)) = (span_slot(batch, b, s, e), self.node(ex, i)) {
                    links.spans.push(slot as i64);
                    links.nodes.push(node as i64);
                }
            }
        }
        links
    }

    /// (bce_weight · `gliner_loss` + distill_weight · L_dist, L_dist) over
    /// `links`; `span_reps` [B, W, K, D]. L_dist is 0 for a batch without
    /// links. For a shard of a batch, `all_links` is the whole batch's count:
    /// L_dist is then this shard's part of the batch's mean.
    pub fn loss(&self, gliner_loss: &Var, span_reps: &Var, links: &Links, all_links: usize) -> Result<(Var, f64)> {
        let weighted = gliner_loss.mul_scalar(self.bce_weight)?;
        if links.is_empty() {
            return Ok((weighted, 0.0));
        }
        let d = span_reps.shape()[3];
        let n = links.len();
        let rows = span_reps.reshape(&[span_reps.value().numel() / d, d])?.index_select(0, &Tensor::from_vec(links.spans.clone(), &[n])?)?;
        let teacher = Var::constant(self.teacher.index_select(0, &Tensor::from_vec(links.nodes.clone(), &[n])?)?);
        let l_dist = part_of_mean(self.heads.loss(&rows, &teacher)?, n, all_links)?;
        Ok((weighted.add(&l_dist.mul_scalar(self.distill_weight)?)?, l_dist.value().to_scalar()?))
    }
}

/// How names are compared: GLiNER's words, lowercased, joined by one space.
fn name_key(words: &[Word]) -> String {
    words.iter().map(|w| w.text.to_lowercase()).collect::<Vec<_>>().join(" ")
}

/// `name_key` of every name and synonym of the teacher's nodes among
/// `nodes` → the node's teacher row, or None where two nodes share it.
fn names_to_rows(nodes: &[Node], row_of: &HashMap<String, usize>) -> HashMap<String, Option<usize>> {
    let mut out: HashMap<String, Option<usize>> = HashMap::new();
    for node in nodes {
        let Some(&row) = row_of.get(&node.id) else { continue };
        for name in std::iter::once(&node.name).chain(&node.synonyms) {
            let key = name_key(&split_words(name));
            out.entry(key).and_modify(|r| if *r != Some(row) { *r = None }).or_insert(Some(row));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, name: &str, synonyms: &[&str]) -> Node {
        Node { id: id.into(), name: name.into(), node_type: "Gene".into(), synonyms: synonyms.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn names_link_case_insensitively_word_by_word_and_shared_names_not_at_all() {
        let nodes = [node("HGNC:6001", "IL2", &["interleukin 2", "IL-2"]), node("HGNC:7", "A2M", &["IL-2"]), node("HGNC:9", "NAT1", &[])];
        let row_of = HashMap::from([("HGNC:6001".to_string(), 0), ("HGNC:7".to_string(), 1)]);
        let rows = names_to_rows(&nodes, &row_of);
        let key = |t: &str| name_key(&split_words(t));
        assert_eq!(rows.get(&key("Interleukin  2")), Some(&Some(0)));
        assert_eq!(rows.get(&key("il2")), Some(&Some(0)));
        assert_eq!(rows.get(&key("il-2")), Some(&None), "IL-2 names two nodes");
        assert_eq!(rows.get(&key("IL - 2")), None, "GLiNER splits IL-2 as one word");
        assert_eq!(rows.get(&key("NAT1")), None, "not a teacher node");
        assert_eq!(key("IL-2 receptor"), "il-2 receptor");
    }
}
