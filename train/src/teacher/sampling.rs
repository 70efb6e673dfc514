//! Neighbour-sampled mini-batches for the graph transformer (GraphSAGE /
//! PyG `NeighborLoader` style), and mini-batch node-type training on them.
//!
//! Sampling: start from the seed nodes; for hop `l`, every node first
//! reached at hop `l - 1` (the seeds for hop 0) draws up to `fanout[l]` of
//! its in-edges uniformly without replacement (all of them when it has
//! fewer) and the senders join the subgraph. Local index = order of first
//! appearance, so the seeds are `0..num_seeds`. Messages flow along the
//! sampled edges only, which is why a graph of any size trains in memory
//! bounded by batch size × Π fan-out.
//!
//! Label trick as in full-batch training ([`super::graph`]): the seeds are
//! predicted and their labels are never input; the other sampled train
//! nodes feed theirs in; held-out nodes never do.

use std::collections::HashMap;
use std::time::Instant;

use kogner_autograd::{no_grad, Grads, Var};
use kogner_models::teacher::graph_transformer::{Graph, GraphTransformer, ObservedLabels};
use kogner_tensor::{Error, Result, Rng, Tensor};

use super::graph::EpochStats;
use crate::kg::InAdjacency;

/// A sampled subgraph with local node indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampledSubgraph {
    /// Global node of every local index; the seeds come first.
    pub nodes: Vec<u32>,
    pub num_seeds: usize,
    /// Local sender, receiver and relation type of every sampled edge.
    pub src: Vec<usize>,
    pub dst: Vec<usize>,
    pub edge_type: Vec<usize>,
    /// Each sampled edge's position in the adjacency's edge arrays.
    pub edge_slots: Vec<usize>,
}

impl SampledSubgraph {
    /// The subgraph as a message-passing graph over its local nodes.
    pub fn graph(&self) -> Result<Graph> {
        Graph::from_lists(&self.src, &self.dst, &self.edge_type, self.nodes.len())
    }
}

/// `k` distinct values of `0..n` (all when `n ≤ k`), ascending; Floyd's
/// algorithm so a hub of huge degree costs O(k²), not O(n).
fn choose(n: usize, k: usize, rng: &mut Rng) -> Vec<usize> {
    if n <= k {
        return (0..n).collect();
    }
    let mut picked: Vec<usize> = Vec::with_capacity(k);
    for j in n - k..n {
        let t = rng.below(j + 1);
        picked.push(if picked.contains(&t) { j } else { t });
    }
    picked.sort_unstable();
    picked
}

/// Samples the `fanout.len()`-hop in-neighbourhood of `seeds` (distinct, in range).
pub fn sample_subgraph(adj: &InAdjacency, seeds: &[usize], fanout: &[usize], rng: &mut Rng) -> Result<SampledSubgraph> {
    let n = adj.num_nodes();
    let mut local: HashMap<u32, usize> = HashMap::with_capacity(seeds.len() * 4);
    let mut nodes = Vec::with_capacity(seeds.len() * 4);
    for &s in seeds {
        if s >= n {
            return Err(Error::Msg(format!("neighbour sampling: seed {s} out of range for {n} nodes")));
        }
        if local.insert(s as u32, nodes.len()).is_some() {
            return Err(Error::Msg(format!("neighbour sampling: seed {s} given twice")));
        }
        nodes.push(s as u32);
    }
    let mut sub = SampledSubgraph { nodes, num_seeds: seeds.len(), src: vec![], dst: vec![], edge_type: vec![], edge_slots: vec![] };
    let mut frontier = 0..seeds.len();
    for &k in fanout {
        let end = sub.nodes.len();
        for target in frontier {
            let range = adj.range(sub.nodes[target] as usize);
            for pick in choose(range.len(), k, rng) {
                let slot = range.start + pick;
                let source = adj.sources[slot];
                let next = sub.nodes.len();
                let s = *local.entry(source).or_insert(next);
                if s == next {
                    sub.nodes.push(source);
                }
                sub.src.push(s);
                sub.dst.push(target);
                sub.edge_type.push(adj.relations[slot] as usize);
                sub.edge_slots.push(slot);
            }
        }
        frontier = end..sub.nodes.len();
    }
    Ok(sub)
}

/// A node-classification task on an adjacency (no full-graph tensors, so
/// it scales to graphs whose edge list would not fit as i64 tensors).
pub struct SampledTask<'a> {
    /// [N, in_dim] node features.
    pub features: &'a Tensor,
    pub adj: &'a InAdjacency,
    pub labels: &'a [usize],
    /// Nodes whose labels train (predicted as seeds or fed in as neighbours).
    pub train: &'a [usize],
    /// Nodes only ever predicted.
    pub heldout: &'a [usize],
}

#[derive(Clone, Debug)]
pub struct SampledTrainConfig {
    pub epochs: usize,
    /// Seed nodes per mini-batch.
    pub batch_size: usize,
    /// Neighbours drawn per node at each hop.
    pub fanout: Vec<usize>,
    pub seed: u64,
}

impl SampledTask<'_> {
    /// Train mask: `Some(true)` train, `Some(false)` held out, `None` unlabelled.
    fn roles(&self, num_classes: usize) -> Result<Vec<Option<bool>>> {
        let n = self.adj.num_nodes();
        if self.features.rank() != 2 || self.features.shape()[0] != n || self.labels.len() != n {
            return Err(Error::Msg(format!(
                "sampled node classification: features {:?} and {} labels for {n} nodes",
                self.features.shape(),
                self.labels.len()
            )));
        }
        if let Some(&c) = self.labels.iter().find(|&&c| c >= num_classes) {
            return Err(Error::Msg(format!("sampled node classification: label {c} out of range for {num_classes} classes")));
        }
        let mut role = vec![None; n];
        for (is_train, nodes) in [(true, self.train), (false, self.heldout)] {
            for &v in nodes {
                if v >= n || role[v].is_some() {
                    return Err(Error::Msg(format!("sampled node classification: node {v} out of range or listed twice")));
                }
                role[v] = Some(is_train);
            }
        }
        Ok(role)
    }

    /// Logits [B, classes] of the seeds, with the labels of every other
    /// sampled train node fed in.
    fn seed_logits(&self, model: &GraphTransformer, sub: &SampledSubgraph, role: &[Option<bool>]) -> Result<Var> {
        let ids: Vec<usize> = sub.nodes.iter().map(|&v| v as usize).collect();
        let x = Var::constant(self.features.index_select(0, &Tensor::from_indices(&ids, &[ids.len()])?)?);
        // why: seeds are skipped, so no predicted node ever sees its own label
        let observed: Vec<usize> = (sub.num_seeds..ids.len()).filter(|&l| role[ids[l]] == Some(true)).collect();
        let obs_labels: Vec<usize> = observed.iter().map(|&l| self.labels[ids[l]]).collect();
        let obs_nodes = Tensor::from_indices(&observed, &[observed.len()])?;
        let obs_labels = Tensor::from_indices(&obs_labels, &[observed.len()])?;
        let out = model.forward(&x, &sub.graph()?, Some(ObservedLabels { nodes: &obs_nodes, labels: &obs_labels }))?;
        out.logits.narrow(0, 0, sub.num_seeds)
    }
}

fn check_config(cfg: &SampledTrainConfig) -> Result<()> {
    if cfg.batch_size == 0 || cfg.fanout.is_empty() || cfg.fanout.contains(&0) {
        return Err(Error::Msg(format!(
            "sampled training: batch size and every fan-out must be positive, got batch {} fan-out {:?}",
            cfg.batch_size, cfg.fanout
        )));
    }
    Ok(())
}

/// Mini-batch training: each epoch shuffles the train nodes into batches of
/// seeds; per batch sample, forward, CE over the seeds, backward, `step`.
/// `on_batch(epoch, batch, batches, loss)` after every batch.
pub fn train_node_classifier_sampled(
    model: &GraphTransformer,
    task: &SampledTask,
    cfg: &SampledTrainConfig,
    step: &mut dyn FnMut(&Grads) -> Result<()>,
    on_batch: &mut dyn FnMut(usize, usize, usize, f64),
) -> Result<Vec<EpochStats>> {
    check_config(cfg)?;
    let role = task.roles(model.cfg.num_classes)?;
    if task.train.is_empty() {
        return Err(Error::Msg("sampled training: no train nodes".into()));
    }
    let mut rng = Rng::new(cfg.seed);
    let mut order = task.train.to_vec();
    let batches = order.len().div_ceil(cfg.batch_size);
    let mut stats = Vec::with_capacity(cfg.epochs);
    for epoch in 0..cfg.epochs {
        let start = Instant::now();
        rng.shuffle(&mut order);
        let mut loss_sum = 0.0;
        for (b, seeds) in order.chunks(cfg.batch_size).enumerate() {
            let sub = sample_subgraph(task.adj, seeds, &cfg.fanout, &mut rng)?;
            let logits = task.seed_logits(model, &sub, &role)?;
            let labels: Vec<usize> = seeds.iter().map(|&v| task.labels[v]).collect();
            let nodes = Tensor::from_indices(&(0..seeds.len()).collect::<Vec<_>>(), &[seeds.len()])?;
            let loss = GraphTransformer::loss(&logits, &nodes, &Tensor::from_indices(&labels, &[labels.len()])?)?;
            let grads = loss.backward()?;
            step(&grads)?;
            let l = loss.value().to_scalar()?;
            loss_sum += l;
            on_batch(epoch, b, batches, l);
        }
        stats.push(EpochStats { epoch, loss: loss_sum / batches as f64, seconds: start.elapsed().as_secs_f64() });
    }
    Ok(stats)
}

/// Held-out accuracy with sampled neighbourhoods (every train label may be
/// fed in; sampling seeded by `cfg.seed`, so the figure is reproducible).
pub fn heldout_accuracy_sampled(model: &GraphTransformer, task: &SampledTask, cfg: &SampledTrainConfig) -> Result<f64> {
    check_config(cfg)?;
    let role = task.roles(model.cfg.num_classes)?;
    if task.heldout.is_empty() {
        return Err(Error::Msg("sampled evaluation: no held-out nodes to evaluate".into()));
    }
    let mut rng = Rng::new(cfg.seed);
    let mut correct = 0usize;
    for seeds in task.heldout.chunks(cfg.batch_size) {
        let sub = sample_subgraph(task.adj, seeds, &cfg.fanout, &mut rng)?;
        let logits = no_grad(|| task.seed_logits(model, &sub, &role).map(|l| l.value()))?;
        let pred = logits.argmax(1, false)?.to_vec::<i64>()?;
        correct += seeds.iter().zip(&pred).filter(|(&v, &p)| p as usize == task.labels[v]).count();
    }
    Ok(correct as f64 / task.heldout.len() as f64)
}
