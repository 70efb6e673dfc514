//! Full-batch training of the graph-transformer teacher (Z', SPEC §5.1) on
//! node-type classification, with UniMP's label trick: every epoch the
//! train nodes are shuffled, one half feeds its labels in (added to the
//! projected input) and the cross-entropy runs over the other half, so no
//! predicted node ever sees its own label. Evaluation feeds all train
//! labels in and predicts the held-out nodes, whose labels are never input.
//!
//! The optimiser is a closure over the gradients (it owns the parameter
//! store), so any optimiser of `crate::optim` plugs in.

use std::time::Instant;

use kogner_autograd::{no_grad, Grads, Var};
use kogner_models::teacher::graph_transformer::{Graph, GraphTransformer, ObservedLabels};
use kogner_tensor::{Error, Result, Rng, Tensor};

/// A node-classification task on one graph.
pub struct NodeClassification {
    /// [N, in_dim] node features.
    pub features: Tensor,
    pub graph: Graph,
    /// Class of every node.
    pub labels: Vec<usize>,
    /// Nodes whose labels are used for training (fed in or predicted).
    pub train: Vec<usize>,
    /// Nodes only ever predicted (never input, never in the loss).
    pub heldout: Vec<usize>,
}

impl NodeClassification {
    /// Checks sizes and that train and held-out nodes are distinct, in
    /// range and disjoint (a held-out label must never be input).
    pub fn validate(&self, num_classes: usize) -> Result<()> {
        let n = self.graph.num_nodes;
        if self.labels.len() != n {
            return Err(Error::Msg(format!("node classification: {} labels for {n} nodes", self.labels.len())));
        }
        if let Some(&c) = self.labels.iter().find(|&&c| c >= num_classes) {
            return Err(Error::Msg(format!("node classification: label {c} out of range for {num_classes} classes")));
        }
        if self.train.len() < 2 {
            return Err(Error::Msg(format!(
                "node classification: the label trick needs at least 2 train nodes, got {}",
                self.train.len()
            )));
        }
        let mut seen = vec![false; n];
        for (what, nodes) in [("train", &self.train), ("held-out", &self.heldout)] {
            for &v in nodes.iter() {
                if v >= n {
                    return Err(Error::Msg(format!("node classification: {what} node {v} out of range for {n} nodes")));
                }
                if seen[v] {
                    return Err(Error::Msg(format!("node classification: node {v} listed twice in train/held-out")));
                }
                seen[v] = true;
            }
        }
        Ok(())
    }

    /// i64 tensors of `nodes` and their labels.
    fn indexed(&self, nodes: &[usize]) -> Result<(Tensor, Tensor)> {
        let labels: Vec<usize> = nodes.iter().map(|&v| self.labels[v]).collect();
        Ok((Tensor::from_indices(nodes, &[nodes.len()])?, Tensor::from_indices(&labels, &[nodes.len()])?))
    }
}

/// A random split of `0..n` into (train, held-out) with `round(n·heldout_fraction)` held out.
pub fn split_nodes(n: usize, heldout_fraction: f64, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
    if !(0.0..1.0).contains(&heldout_fraction) {
        return Err(Error::Msg(format!("node split: held-out fraction must be in [0, 1), got {heldout_fraction}")));
    }
    let mut nodes: Vec<usize> = (0..n).collect();
    Rng::new(seed).shuffle(&mut nodes);
    let held = ((n as f64) * heldout_fraction).round() as usize;
    let mut heldout = nodes.split_off(n - held);
    nodes.sort_unstable();
    heldout.sort_unstable();
    Ok((nodes, heldout))
}

#[derive(Clone, Copy, Debug)]
pub struct GraphTrainConfig {
    pub epochs: usize,
    /// Shuffles of the label-trick halves.
    pub seed: u64,
}

/// One epoch's record.
#[derive(Clone, Copy, Debug)]
pub struct EpochStats {
    pub epoch: usize,
    /// Mean CE over the predicted half of the train nodes.
    pub loss: f64,
    /// Wall time of forward + backward + optimiser step.
    pub seconds: f64,
}

/// The label-trick halves of one epoch: (observed, predicted).
fn label_trick_halves(train: &[usize], rng: &mut Rng) -> (Vec<usize>, Vec<usize>) {
    let mut nodes = train.to_vec();
    rng.shuffle(&mut nodes);
    let predicted = nodes.split_off(nodes.len() / 2);
    (nodes, predicted)
}

/// Trains `model` full-batch for `cfg.epochs`; `step` applies the
/// optimiser to the gradients of each epoch, `on_epoch` sees each epoch's
/// stats as it ends.
pub fn train_node_classifier(
    model: &GraphTransformer,
    data: &NodeClassification,
    cfg: &GraphTrainConfig,
    step: &mut dyn FnMut(&Grads) -> Result<()>,
    on_epoch: &mut dyn FnMut(&EpochStats),
) -> Result<Vec<EpochStats>> {
    data.validate(model.cfg.num_classes)?;
    let x = Var::constant(data.features.clone());
    let mut rng = Rng::new(cfg.seed);
    let mut stats = Vec::with_capacity(cfg.epochs);
    for epoch in 0..cfg.epochs {
        let start = Instant::now();
        let (observed, predicted) = label_trick_halves(&data.train, &mut rng);
        let (obs_nodes, obs_labels) = data.indexed(&observed)?;
        let (pred_nodes, pred_labels) = data.indexed(&predicted)?;
        let out = model.forward(&x, &data.graph, Some(ObservedLabels { nodes: &obs_nodes, labels: &obs_labels }))?;
        let loss = GraphTransformer::loss(&out.logits, &pred_nodes, &pred_labels)?;
        let grads = loss.backward()?;
        step(&grads)?;
        let s = EpochStats { epoch, loss: loss.value().to_scalar()?, seconds: start.elapsed().as_secs_f64() };
        on_epoch(&s);
        stats.push(s);
    }
    Ok(stats)
}

/// Accuracy on the held-out nodes with every train label fed in (no
/// gradients recorded). Errors when there are no held-out nodes.
pub fn heldout_accuracy(model: &GraphTransformer, data: &NodeClassification) -> Result<f64> {
    data.validate(model.cfg.num_classes)?;
    if data.heldout.is_empty() {
        return Err(Error::Msg("node classification: no held-out nodes to evaluate".into()));
    }
    let (obs_nodes, obs_labels) = data.indexed(&data.train)?;
    let logits = no_grad(|| {
        let x = Var::constant(data.features.clone());
        model.forward(&x, &data.graph, Some(ObservedLabels { nodes: &obs_nodes, labels: &obs_labels })).map(|o| o.logits.value())
    })?;
    let pred = logits.argmax(1, false)?.to_vec::<i64>()?;
    let correct = data.heldout.iter().filter(|&&v| pred[v] as usize == data.labels[v]).count();
    Ok(correct as f64 / data.heldout.len() as f64)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use kogner_autograd::ParamStore;
    use kogner_models::builder::ParamBuilder;
    use kogner_models::teacher::graph_transformer::GraphTransformerConfig;
    use kogner_tensor::safetensors_io::SafeTensorsFile;

    use super::*;

    /// Minimal Adam (β = 0.9, 0.999, ε = 1e-8) for the smoke test.
    struct Adam {
        lr: f64,
        t: i32,
        state: Vec<(Var, Vec<f64>, Vec<f64>)>,
    }

    impl Adam {
        fn new(params: &ParamStore, lr: f64) -> Adam {
            let state = params
                .iter()
                .map(|(_, v)| {
                    let n = v.value().numel();
                    (v.clone(), vec![0.0; n], vec![0.0; n])
                })
                .collect();
            Adam { lr, t: 0, state }
        }

        fn step(&mut self, grads: &Grads) -> Result<()> {
            self.t += 1;
            let (b1, b2) = (0.9f64, 0.999f64);
            let (c1, c2) = (1.0 - b1.powi(self.t), 1.0 - b2.powi(self.t));
            for (var, m, v) in &mut self.state {
                let Some(g) = grads.get(var) else { continue };
                let g = g.to_f64_vec()?;
                let mut w = var.value().to_f64_vec()?;
                for i in 0..w.len() {
                    m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                    v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                    w[i] -= self.lr * (m[i] / c1) / ((v[i] / c2).sqrt() + 1e-8);
                }
                let w: Vec<f32> = w.into_iter().map(|x| x as f32).collect();
                var.set_value(Tensor::from_vec(w, &var.shape())?)?;
            }
            Ok(())
        }
    }

    /// The tiny KG (graph, node types, random features) as stored in the
    /// graph-transformer fixture.
    fn tiny_task() -> (NodeClassification, GraphTransformerConfig) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/teacher/graph_transformer/fixture.safetensors");
        let st = SafeTensorsFile::open(&path).expect("graph-transformer fixture missing");
        let x = st.get("x").unwrap();
        let n = x.shape()[0];
        let graph = Graph::from_edge_index(&st.get("edge_index").unwrap(), &st.get("edge_type").unwrap(), n, 8).unwrap();
        let labels: Vec<usize> = st.get("y").unwrap().to_vec::<i64>().unwrap().into_iter().map(|c| c as usize).collect();
        let (train, heldout) = split_nodes(n, 0.3, 7).unwrap();
        let cfg = GraphTransformerConfig {
            in_dim: 16,
            proj_dim: 16,
            num_edge_types: 8,
            edge_dim: 8,
            out_channels: 8,
            heads: 2,
            num_layers: 3,
            num_classes: 5,
            beta: true,
            layernorm_eps: 1e-5,
        };
        (NodeClassification { features: x, graph, labels, train, heldout }, cfg)
    }

    #[test]
    fn training_loss_decreases_on_tiny_kg() {
        let (data, cfg) = tiny_task();
        assert_eq!((data.train.len(), data.heldout.len()), (30, 13));
        let builder = ParamBuilder::random(3);
        let model = GraphTransformer::new(&builder, cfg).unwrap();
        let mut adam = Adam::new(&builder.params(), 0.01);
        let mut seen = 0;
        let stats = train_node_classifier(
            &model,
            &data,
            &GraphTrainConfig { epochs: 60, seed: 11 },
            &mut |g| adam.step(g),
            &mut |_| seen += 1,
        )
        .unwrap();
        assert_eq!((stats.len(), seen), (60, 60));
        let mean = |s: &[EpochStats]| s.iter().map(|e| e.loss).sum::<f64>() / s.len() as f64;
        let (first, last) = (mean(&stats[..10]), mean(&stats[50..]));
        assert!(last < 0.5 * first, "loss did not decrease: first 10 epochs {first:.4}, last 10 {last:.4}");
        let acc = heldout_accuracy(&model, &data).unwrap();
        assert!((0.0..=1.0).contains(&acc));
    }

    #[test]
    fn label_trick_halves_are_disjoint_and_cover_train() {
        let train: Vec<usize> = (10..25).collect();
        let mut rng = Rng::new(5);
        let (a, b) = label_trick_halves(&train, &mut rng);
        assert_eq!((a.len(), b.len()), (7, 8));
        let mut all: Vec<usize> = a.iter().chain(&b).copied().collect();
        all.sort_unstable();
        assert_eq!(all, train);
    }

    #[test]
    fn leaking_or_bad_splits_are_errors() {
        let (mut data, cfg) = tiny_task();
        data.heldout.push(data.train[0]);
        let e = data.validate(cfg.num_classes).err().unwrap();
        assert!(e.to_string().contains("twice"), "{e}");
        let (mut data, _) = tiny_task();
        data.labels[0] = 9;
        assert!(data.validate(cfg.num_classes).is_err());
        let (mut data, _) = tiny_task();
        data.train.truncate(1);
        assert!(data.validate(cfg.num_classes).is_err());
        assert!(split_nodes(10, 1.5, 0).is_err());
    }
}
