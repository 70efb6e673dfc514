//! The graph-transformer part Z' of the KoGNER teacher (SPEC §5.1): PyG's
//! `TransformerConv` and the UniMP stack around it (input projection,
//! `MaskLabel`-style label embedding of observed nodes, TransformerConv
//! layers with LayerNorm + ReLU between them, a node-type classifier).
//!
//! Messages flow `src → dst` (PyG `edge_index[0] → edge_index[1]`); the
//! attention softmax runs over the edges sharing a target. All per-edge work
//! is one fused op (`Var::graph_attention`) over a target-sorted CSR built
//! once per graph: no `[E, heads, C]` tensor is materialised (linear in the
//! edge count, alpha [E, heads] is the only per-edge state kept for
//! backward). A node without in-edges gets a zero message; no self-loops
//! are added. Parameter names follow the PyG / torch state dict
//! (`convs.0.lin_query.weight`, `norms.0.bias`, `label_emb.emb.weight`, …).

use std::sync::Arc;

use kogner_autograd::ops::graph_attention::EdgeEmbedding;
use kogner_autograd::ops::loss::{cross_entropy, Reduction};
use kogner_autograd::Var;
use kogner_tensor::ops::graph_attention::{AttentionGraph, EdgeTypes};
use kogner_tensor::{DType, Error, Result, Tensor};

use crate::builder::{Init, ParamBuilder};
use crate::nn::{LayerNorm, Linear};

/// A directed multigraph for message passing: edge `e` sends from
/// `src[e]` to `dst[e]` and has relation type `edge_type[e]`.
#[derive(Clone)]
pub struct Graph {
    pub num_nodes: usize,
    /// i64 [E] senders (PyG `edge_index[0]`).
    pub src: Tensor,
    /// i64 [E] receivers (PyG `edge_index[1]`): the softmax / sum segments.
    pub dst: Tensor,
    /// i64 [E] relation type per edge.
    pub edge_type: Tensor,
    /// The edges sorted by target (and grouped by source) for the fused
    /// attention; built once, shared by every layer and epoch.
    csr: Arc<AttentionGraph>,
}

impl Graph {
    /// From a PyG `edge_index` i64 [2, E] and `edge_type` i64 [E]; every
    /// node index must be in `0..num_nodes` and every type in `0..num_types`.
    pub fn from_edge_index(edge_index: &Tensor, edge_type: &Tensor, num_nodes: usize, num_types: usize) -> Result<Graph> {
        if edge_index.dtype() != DType::I64 || edge_index.rank() != 2 || edge_index.shape()[0] != 2 {
            return Err(Error::Msg(format!(
                "graph: edge_index must be i64 [2, E], got {} {:?}",
                edge_index.dtype().name(),
                edge_index.shape()
            )));
        }
        let e = edge_index.shape()[1];
        let idx = edge_index.to_vec::<i64>()?;
        let src: Vec<usize> = checked_indices("edge_index[0]", &idx[..e], num_nodes)?;
        let dst: Vec<usize> = checked_indices("edge_index[1]", &idx[e..], num_nodes)?;
        if edge_type.dtype() != DType::I64 || edge_type.shape() != [e] {
            return Err(Error::Msg(format!(
                "graph: edge_type must be i64 [{e}], got {} {:?}",
                edge_type.dtype().name(),
                edge_type.shape()
            )));
        }
        let types = checked_indices("edge_type", &edge_type.to_vec::<i64>()?, num_types)?;
        Graph::from_lists(&src, &dst, &types, num_nodes)
    }

    /// From per-edge lists; node indices are checked here, edge types when
    /// a model runs on the graph (it knows how many types it has).
    pub fn from_lists(src: &[usize], dst: &[usize], edge_type: &[usize], num_nodes: usize) -> Result<Graph> {
        if src.len() != dst.len() || src.len() != edge_type.len() {
            return Err(Error::Msg(format!(
                "graph: {} sources, {} targets and {} edge types differ in length",
                src.len(),
                dst.len(),
                edge_type.len()
            )));
        }
        if let Some(&bad) = src.iter().chain(dst).find(|&&v| v >= num_nodes) {
            return Err(Error::Msg(format!("graph: node index {bad} out of range for {num_nodes} nodes")));
        }
        let e = src.len();
        Ok(Graph {
            csr: Arc::new(AttentionGraph::new(src, dst, num_nodes)?),
            num_nodes,
            src: Tensor::from_indices(src, &[e])?,
            dst: Tensor::from_indices(dst, &[e])?,
            edge_type: Tensor::from_indices(edge_type, &[e])?,
        })
    }

    pub fn num_edges(&self) -> usize {
        self.src.shape()[0]
    }
}

fn checked_indices(what: &str, v: &[i64], n: usize) -> Result<Vec<usize>> {
    v.iter()
        .map(|&i| {
            if i < 0 || i as usize >= n {
                Err(Error::Msg(format!("graph: {what} holds {i}, out of range 0..{n}")))
            } else {
                Ok(i as usize)
            }
        })
        .collect()
}

/// Edge features of a layer (`edge_attr`).
pub enum EdgeAttr<'a> {
    /// One row per edge: [E, edge_dim].
    Dense(&'a Var),
    /// One row per edge type, `edge_attr = table[types]`: the projection
    /// `W_e` is applied to the table and the result gathered per edge
    /// (same values, T×edge_dim work instead of E×edge_dim).
    Typed { table: &'a Var, types: &'a Tensor },
}

/// `TransformerConv` hyper-parameters (PyG argument names; dropout is 0).
#[derive(Clone, Copy, Debug)]
pub struct ConvConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub heads: usize,
    pub concat: bool,
    pub beta: bool,
    pub root_weight: bool,
    pub edge_dim: Option<usize>,
    pub bias: bool,
}

impl ConvConfig {
    /// Output width: heads·C when concatenating, C when averaging.
    pub fn output_dim(&self) -> usize {
        if self.concat {
            self.heads * self.out_channels
        } else {
            self.out_channels
        }
    }
}

/// PyG 2.8 `TransformerConv` (see the module doc and the fixture README).
pub struct TransformerConv {
    pub cfg: ConvConfig,
    pub lin_key: Linear,
    pub lin_query: Linear,
    pub lin_value: Linear,
    pub lin_edge: Option<Linear>,
    pub lin_skip: Option<Linear>,
    pub lin_beta: Option<Linear>,
}

/// One layer's result.
pub struct ConvOutput {
    /// [N, output_dim]
    pub out: Var,
    /// Attention per edge and head [E, heads], edge order (a constant:
    /// no gradient flows back through it).
    pub alpha: Var,
}

impl TransformerConv {
    pub fn new(b: &ParamBuilder, cfg: ConvConfig) -> Result<TransformerConv> {
        if cfg.heads == 0 || cfg.out_channels == 0 || cfg.in_channels == 0 {
            return Err(Error::Msg(format!("TransformerConv: heads, in and out channels must be positive, got {cfg:?}")));
        }
        let hc = cfg.heads * cfg.out_channels;
        let out = cfg.output_dim();
        Ok(TransformerConv {
            lin_key: Linear::new(&b.pp("lin_key"), cfg.in_channels, hc, true)?,
            lin_query: Linear::new(&b.pp("lin_query"), cfg.in_channels, hc, true)?,
            lin_value: Linear::new(&b.pp("lin_value"), cfg.in_channels, hc, true)?,
            lin_edge: match cfg.edge_dim {
                Some(d) => Some(Linear::new(&b.pp("lin_edge"), d, hc, false)?),
                None => None,
            },
            lin_skip: if cfg.root_weight { Some(Linear::new(&b.pp("lin_skip"), cfg.in_channels, out, cfg.bias)?) } else { None },
            lin_beta: if cfg.root_weight && cfg.beta { Some(Linear::new(&b.pp("lin_beta"), 3 * out, 1, false)?) } else { None },
            cfg,
        })
    }

    /// x [N, in_channels] over `graph` → [N, output_dim] and the attention.
    /// `edge_attr` is required exactly when the layer has an `edge_dim`.
    pub fn forward(&self, x: &Var, graph: &Graph, edge_attr: Option<EdgeAttr>) -> Result<ConvOutput> {
        let (n, e) = (graph.num_nodes, graph.num_edges());
        let (h, c) = (self.cfg.heads, self.cfg.out_channels);
        if x.shape() != [n, self.cfg.in_channels] {
            return Err(Error::Msg(format!(
                "TransformerConv: input {:?} does not match [{n}, {}]",
                x.shape(),
                self.cfg.in_channels
            )));
        }
        let q = self.lin_query.forward(x)?.reshape(&[n, h, c])?;
        let k = self.lin_key.forward(x)?.reshape(&[n, h, c])?;
        let v = self.lin_value.forward(x)?.reshape(&[n, h, c])?;
        let table = match (&self.lin_edge, edge_attr) {
            (None, None) => None,
            (Some(lin), Some(attr)) => Some(project_edges(lin, attr, &graph.csr, e, h, c)?),
            (None, Some(_)) => return Err(Error::Msg("TransformerConv: edge_attr given to a layer without edge_dim".into())),
            (Some(_), None) => return Err(Error::Msg("TransformerConv: layer has edge_dim but no edge_attr was given".into())),
        };
        // PyG adds the projected edge feature to both key and value of each edge
        let emb = table.as_ref().map(|(t, types)| EdgeEmbedding { table: t, types: types.clone() });
        let (msg, alpha) = Var::graph_attention(&q, &k, &v, emb, &graph.csr)?;
        let alpha = Var::constant(alpha);
        let agg = if self.cfg.concat { msg.reshape(&[n, h * c])? } else { msg.mean(1, false)? };
        let out = match (&self.lin_skip, &self.lin_beta) {
            (Some(skip), Some(lin_beta)) => {
                let r = skip.forward(x)?;
                let gate = Var::cat(&[&agg, &r, &agg.sub(&r)?], 1)?;
                let beta = lin_beta.forward(&gate)?.sigmoid()?;
                // β·r + (1 − β)·agg
                agg.add(&beta.mul(&r.sub(&agg)?)?)?
            }
            (Some(skip), None) => agg.add(&skip.forward(x)?)?,
            (None, _) => agg,
        };
        Ok(ConvOutput { out, alpha })
    }
}

/// `W_e · edge_attr` as a table [rows, heads, C] and each edge's row of it:
/// the projected type table (T rows) or one row per edge.
fn project_edges(lin: &Linear, attr: EdgeAttr, csr: &AttentionGraph, e: usize, h: usize, c: usize) -> Result<(Var, Arc<EdgeTypes>)> {
    let d = lin.weight.shape()[1];
    match attr {
        EdgeAttr::Dense(a) => {
            if a.shape() != [e, d] {
                return Err(Error::Msg(format!("TransformerConv: edge_attr {:?} does not match [{e}, {d}]", a.shape())));
            }
            Ok((lin.forward(a)?.reshape(&[e, h, c])?, Arc::new(EdgeTypes::per_edge(csr))))
        }
        EdgeAttr::Typed { table, types } => {
            if table.shape().len() != 2 || table.shape()[1] != d {
                return Err(Error::Msg(format!("TransformerConv: edge-type table {:?} does not have width {d}", table.shape())));
            }
            if types.shape() != [e] {
                return Err(Error::Msg(format!("TransformerConv: {:?} edge types for {e} edges", types.shape())));
            }
            let t = table.shape()[0];
            Ok((lin.forward(table)?.reshape(&[t, h, c])?, Arc::new(EdgeTypes::new(csr, types, t)?)))
        }
    }
}

/// The UniMP node-type classifier's sizes.
#[derive(Clone, Copy, Debug)]
pub struct GraphTransformerConfig {
    /// Node feature width.
    pub in_dim: usize,
    /// Width after `in_proj` (= label-embedding width = first layer input).
    pub proj_dim: usize,
    /// Edge types (relations and their reverses): rows of `rel_emb`.
    pub num_edge_types: usize,
    pub edge_dim: usize,
    /// Per-head width C of every layer.
    pub out_channels: usize,
    pub heads: usize,
    /// TransformerConv layers; all but the last concatenate heads, the last
    /// averages them, so Z' has width `out_channels`.
    pub num_layers: usize,
    pub num_classes: usize,
    pub beta: bool,
    pub layernorm_eps: f64,
}

impl GraphTransformerConfig {
    /// Each layer's `TransformerConv` configuration.
    pub fn conv_configs(&self) -> Vec<ConvConfig> {
        (0..self.num_layers)
            .map(|l| {
                let last = l + 1 == self.num_layers;
                ConvConfig {
                    in_channels: if l == 0 { self.proj_dim } else { self.heads * self.out_channels },
                    out_channels: self.out_channels,
                    heads: self.heads,
                    concat: !last,
                    beta: self.beta,
                    root_weight: true,
                    edge_dim: Some(self.edge_dim),
                    bias: true,
                }
            })
            .collect()
    }

    fn validate(&self) -> Result<()> {
        let sizes = [
            ("in_dim", self.in_dim),
            ("proj_dim", self.proj_dim),
            ("num_edge_types", self.num_edge_types),
            ("edge_dim", self.edge_dim),
            ("out_channels", self.out_channels),
            ("heads", self.heads),
            ("num_layers", self.num_layers),
            ("num_classes", self.num_classes),
        ];
        match sizes.iter().find(|(_, v)| *v == 0) {
            Some((name, _)) => Err(Error::Msg(format!("graph transformer config: {name} must be positive"))),
            None => Ok(()),
        }
    }
}

/// UniMP stack: `in_proj`, `label_emb.emb`, `rel_emb`, `convs.l`, `norms.l`, `cls`.
pub struct GraphTransformer {
    pub cfg: GraphTransformerConfig,
    pub in_proj: Linear,
    /// `label_emb.emb.weight` [num_classes, proj_dim].
    pub label_emb: Var,
    /// `rel_emb.weight` [num_edge_types, edge_dim].
    pub rel_emb: Var,
    pub convs: Vec<TransformerConv>,
    pub norms: Vec<LayerNorm>,
    pub cls: Linear,
}

/// Nodes whose labels are fed in (UniMP masked label input).
pub struct ObservedLabels<'a> {
    /// i64 [M] node indices.
    pub nodes: &'a Tensor,
    /// i64 [M] their classes.
    pub labels: &'a Tensor,
}

/// Every intermediate of a forward pass.
pub struct GraphTransformerOutput {
    /// X W_inᵀ + b_in.
    pub h_proj: Var,
    /// `h_proj` plus the label embedding on observed rows.
    pub h0: Var,
    /// Each layer's TransformerConv output and attention.
    pub convs: Vec<ConvOutput>,
    /// LayerNorm output after every layer but the last.
    pub norms: Vec<Var>,
    /// Z' = last layer's output [N, out_channels].
    pub z: Var,
    /// [N, num_classes]
    pub logits: Var,
}

impl GraphTransformer {
    pub fn new(b: &ParamBuilder, cfg: GraphTransformerConfig) -> Result<GraphTransformer> {
        cfg.validate()?;
        let convs = cfg
            .conv_configs()
            .into_iter()
            .enumerate()
            .map(|(l, c)| TransformerConv::new(&b.pp("convs").pp(l.to_string()), c))
            .collect::<Result<Vec<_>>>()?;
        let width = cfg.heads * cfg.out_channels;
        let norms = (0..cfg.num_layers - 1)
            .map(|l| LayerNorm::new(&b.pp("norms").pp(l.to_string()), width, cfg.layernorm_eps))
            .collect::<Result<Vec<_>>>()?;
        Ok(GraphTransformer {
            in_proj: Linear::new(&b.pp("in_proj"), cfg.in_dim, cfg.proj_dim, true)?,
            label_emb: b.pp("label_emb").pp("emb").get("weight", &[cfg.num_classes, cfg.proj_dim], Init::Normal(1.0))?,
            rel_emb: b.pp("rel_emb").get("weight", &[cfg.num_edge_types, cfg.edge_dim], Init::Normal(1.0))?,
            convs,
            norms,
            cls: Linear::new(&b.pp("cls"), cfg.out_channels, cfg.num_classes, true)?,
            cfg,
        })
    }

    /// Node features x [N, in_dim] over `graph`, with the labels of
    /// `observed` nodes added to their projected input.
    pub fn forward(&self, x: &Var, graph: &Graph, observed: Option<ObservedLabels>) -> Result<GraphTransformerOutput> {
        let n = graph.num_nodes;
        if x.shape() != [n, self.cfg.in_dim] {
            return Err(Error::Msg(format!("graph transformer: features {:?} do not match [{n}, {}]", x.shape(), self.cfg.in_dim)));
        }
        check_indices("edge_type", &graph.edge_type, self.cfg.num_edge_types)?;
        let h_proj = self.in_proj.forward(x)?;
        let h0 = match observed {
            None => h_proj.clone(),
            Some(obs) => {
                check_indices("observed nodes", obs.nodes, n)?;
                check_indices("observed labels", obs.labels, self.cfg.num_classes)?;
                if obs.nodes.shape() != obs.labels.shape() {
                    return Err(Error::Msg(format!(
                        "graph transformer: {:?} observed nodes but {:?} labels",
                        obs.nodes.shape(),
                        obs.labels.shape()
                    )));
                }
                h_proj.index_add(0, obs.nodes, &self.label_emb.index_select(0, obs.labels)?)?
            }
        };
        let mut h = h0.clone();
        let mut convs = Vec::with_capacity(self.convs.len());
        let mut norms = Vec::with_capacity(self.norms.len());
        for (l, conv) in self.convs.iter().enumerate() {
            let attr = EdgeAttr::Typed { table: &self.rel_emb, types: &graph.edge_type };
            let out = conv.forward(&h, graph, Some(attr))?;
            h = out.out.clone();
            convs.push(out);
            if let Some(norm) = self.norms.get(l) {
                let ln = norm.forward(&h)?;
                h = ln.relu()?;
                norms.push(ln);
            }
        }
        let logits = self.cls.forward(&h)?;
        Ok(GraphTransformerOutput { h_proj, h0, convs, norms, z: h, logits })
    }

    /// Mean cross-entropy of `logits[nodes]` against `labels` (both i64 [M]).
    pub fn loss(logits: &Var, nodes: &Tensor, labels: &Tensor) -> Result<Var> {
        if nodes.shape() != labels.shape() || nodes.rank() != 1 || nodes.shape()[0] == 0 {
            return Err(Error::Msg(format!(
                "graph transformer loss: need equal non-empty [M] nodes and labels, got {:?} and {:?}",
                nodes.shape(),
                labels.shape()
            )));
        }
        cross_entropy(&logits.index_select(0, nodes)?, labels, None, Reduction::Mean)
    }
}

/// `t` must be i64 [M] with values in `0..n`.
fn check_indices(what: &str, t: &Tensor, n: usize) -> Result<()> {
    if t.dtype() != DType::I64 || t.rank() != 1 {
        return Err(Error::Msg(format!("graph transformer: {what} must be i64 [M], got {} {:?}", t.dtype().name(), t.shape())));
    }
    checked_indices(what, &t.to_vec::<i64>()?, n).map(|_| ())
}
