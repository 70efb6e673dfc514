//! The teacher file: H = [Z ; Z' ; Z''] for every KG node (SPEC §1).
//!
//! safetensors, f32: `H` [N, dz + dg + dt] and its three parts `Z`
//! [N, dz], `Z_graph` [N, dg], `Z_transr` [N, dt]; metadata `node_ids`
//! (JSON list, row order = KG node order) and `dims` (JSON `[dz, dg, dt]`).
//! Written atomically. Also here: the two pieces that turn trained models
//! into per-node rows (Z' of every node, TransR over the KG's nodes).

use std::collections::HashMap;
use std::path::Path;

use kogner_autograd::{no_grad, Var};
use kogner_models::teacher::graph_transformer::{Graph, GraphTransformer, ObservedLabels};
use kogner_models::teacher::transr::{TransR, TransRConfig};
use kogner_tensor::safetensors_io::{self, SafeTensorsFile};
use kogner_tensor::{Error, Result, Rng, Tensor};

use super::transr::{filtered_ranks, train as train_transr, EpochStats, LinkPredictionMetrics, TransRTrainConfig};
use crate::kg::KnowledgeGraph;

/// (head, relation, tail) node/relation indices.
pub type Triples = Vec<[u32; 3]>;

/// Per-node teacher embeddings, rows in `node_ids` order.
#[derive(Clone, Debug)]
pub struct TeacherEmbeddings {
    pub node_ids: Vec<String>,
    /// [N, dz] name embeddings.
    pub z: Tensor,
    /// [N, dg] graph-transformer output.
    pub z_graph: Tensor,
    /// [N, dt] TransR entity embeddings.
    pub z_transr: Tensor,
}

impl TeacherEmbeddings {
    /// [dz, dg, dt] after checking every part has one row per node.
    pub fn dims(&self) -> Result<[usize; 3]> {
        let n = self.node_ids.len();
        let mut dims = [0; 3];
        for (d, (name, t)) in dims.iter_mut().zip([("Z", &self.z), ("Z_graph", &self.z_graph), ("Z_transr", &self.z_transr)]) {
            if t.rank() != 2 || t.shape()[0] != n {
                return Err(Error::Msg(format!("teacher embeddings: {name} is {:?}, expected [{n}, _]", t.shape())));
            }
            *d = t.shape()[1];
        }
        Ok(dims)
    }

    /// H = [Z ; Z' ; Z''] along the feature axis → [N, dz + dg + dt].
    pub fn h(&self) -> Result<Tensor> {
        self.dims()?;
        Tensor::cat(&[&self.z, &self.z_graph, &self.z_transr], 1)
    }

    /// Writes the teacher file atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let dims = self.dims()?;
        let h = self.h()?;
        let meta = HashMap::from([
            ("node_ids".to_string(), to_json(&self.node_ids)?),
            ("dims".to_string(), to_json(&dims)?),
            ("format".to_string(), "kogner-teacher-v1".to_string()),
        ]);
        safetensors_io::save(path, &[("H", &h), ("Z", &self.z), ("Z_graph", &self.z_graph), ("Z_transr", &self.z_transr)], Some(meta))
    }

    /// Reads a teacher file (the parts; H is their concatenation).
    pub fn load(path: impl AsRef<Path>) -> Result<TeacherEmbeddings> {
        let path = path.as_ref();
        let file = SafeTensorsFile::open(path)?;
        let ids = file.metadata().get("node_ids").cloned().ok_or_else(|| Error::file(path, "metadata has no `node_ids`"))?;
        let node_ids: Vec<String> = serde_json::from_str(&ids).map_err(|e| Error::file(path, format!("metadata `node_ids`: {e}")))?;
        let t = TeacherEmbeddings { node_ids, z: file.get("Z")?, z_graph: file.get("Z_graph")?, z_transr: file.get("Z_transr")? };
        t.dims().map_err(|e| Error::file(path, e))?;
        Ok(t)
    }
}

/// JSON text of a value (safetensors metadata values are strings).
fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Msg(e.to_string()))
}

/// Z' of every node [N, out_channels], no gradients: every node's type is
/// a KG fact, so all labels are fed in (the frozen teacher's view).
pub fn graph_embeddings(model: &GraphTransformer, features: &Tensor, graph: &Graph, labels: &[usize]) -> Result<Tensor> {
    let nodes: Vec<usize> = (0..labels.len()).collect();
    let nodes = Tensor::from_indices(&nodes, &[labels.len()])?;
    let labels = Tensor::from_indices(labels, &[labels.len()])?;
    no_grad(|| {
        let x = Var::constant(features.clone());
        model.forward(&x, graph, Some(ObservedLabels { nodes: &nodes, labels: &labels })).map(|o| o.z.value())
    })
}

/// The KG's edges split into (train, test) with `round(E·test_fraction)`
/// random edges held out for link-prediction evaluation.
pub fn split_edges(kg: &KnowledgeGraph, test_fraction: f64, seed: u64) -> Result<(Triples, Triples)> {
    if !(0.0..1.0).contains(&test_fraction) {
        return Err(Error::Msg(format!("edge split: test fraction must be in [0, 1), got {test_fraction}")));
    }
    let mut edges = kg.edges.clone();
    Rng::new(seed).shuffle(&mut edges);
    let test = edges.split_off(edges.len() - ((edges.len() as f64) * test_fraction).round() as usize);
    Ok((edges, test))
}

/// TransR over the KG: entity = node index (so nodes in no train triple
/// keep their initial rows), relation = KG relation index.
pub fn transr_on_kg(
    kg: &KnowledgeGraph,
    mut config: TransRConfig,
    train: &[[u32; 3]],
    cfg: &TransRTrainConfig,
    on_epoch: impl FnMut(&EpochStats),
) -> Result<TransR> {
    config.num_entities = kg.num_nodes();
    config.num_relations = kg.num_relations();
    let mut model = TransR::init(config, &mut Rng::new(cfg.seed));
    train_transr(&mut model, train, cfg, on_epoch)?;
    Ok(model)
}

/// Filtered MRR / Hits@k of `test` with every KG edge as a known triple.
pub fn transr_metrics(model: &TransR, kg: &KnowledgeGraph, test: &[[u32; 3]]) -> Result<LinkPredictionMetrics> {
    Ok(filtered_ranks(model, test, &kg.edges)?.metrics())
}

/// TransR entity rows as [N, d].
pub fn transr_embeddings(model: &TransR) -> Result<Tensor> {
    Tensor::from_slice(&model.entity, &[model.config.num_entities, model.config.entity_dim])
}
