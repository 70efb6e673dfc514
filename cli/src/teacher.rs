//! `kogner teacher`: the knowledge-graph teacher (SPEC §5). Without a
//! sub-command it builds H = [Z ; Z' ; Z''] for every node of `--kg` and
//! writes it to `--out`; `text`, `graph` and `transr` run one part alone.
//! Progress bars go to stderr, results to stdout.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use kogner_autograd::{Grads, ParamStore};
use kogner_models::builder::ParamBuilder;
use kogner_models::teacher::graph_transformer::{Graph, GraphTransformer, GraphTransformerConfig};
use kogner_models::teacher::transr::{PNorm, TransR, TransRConfig};
use kogner_tensor::Tensor;
use kogner_train::kg::{KnowledgeGraph, TripleSplits};
use kogner_train::optim::{AdamW, AdamWConfig, ParamGroup};
use kogner_train::teacher::export::{graph_embeddings, split_edges, transr_embeddings, transr_metrics, transr_on_kg, TeacherEmbeddings};
use kogner_train::teacher::graph::{heldout_accuracy, split_nodes, train_node_classifier, GraphTrainConfig, NodeClassification};
use kogner_train::teacher::sampling::{heldout_accuracy_sampled, train_node_classifier_sampled, SampledTask, SampledTrainConfig};
use kogner_train::teacher::text::node_text_embeddings;
use kogner_train::teacher::transr::{filtered_ranks, train as train_transr, LinkPredictionMetrics, TransRTrainConfig};
use serde_json::json;

use crate::emit;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TeacherArgs {
    #[command(subcommand)]
    command: Option<TeacherCommand>,
    #[command(flatten)]
    build: BuildArgs,
}

#[derive(Subcommand)]
enum TeacherCommand {
    /// Z alone: sentence embeddings of every node name, written to --out (safetensors `Z`, node ids in the metadata).
    Text(TextArgs),
    /// Z' alone: train the graph transformer on node types, print held-out accuracy.
    Graph(GraphArgs),
    /// Z'' alone: train TransR on a KG (--kg) or a benchmark split (--train/--valid/--test); --eval prints MRR and Hits@k.
    Transr(TransrArgs),
}

/// The sentence encoder and Z's cache.
#[derive(Args, Clone)]
struct TextOpts {
    /// Sentence-transformers folder (config.json, model.safetensors, tokenizer.json).
    #[arg(long, default_value = "../shared/data/models/all-MiniLM-L6-v2")]
    encoder: PathBuf,
    /// Cache of Z, keyed by the node names and the encoder files (recomputed when either changes).
    #[arg(long, default_value = ".kogner-cache/z.safetensors")]
    z_cache: PathBuf,
    /// Names per encoder forward pass.
    #[arg(long, default_value_t = 64)]
    text_batch_size: usize,
}

/// Graph-transformer settings (defaults: SPEC §5.1 / the fixture README's reference run).
#[derive(Args, Clone)]
struct GraphOpts {
    /// Per-head width C; Z' has this width.
    #[arg(long, default_value_t = 64)]
    hidden: usize,
    #[arg(long, default_value_t = 2)]
    heads: usize,
    #[arg(long, default_value_t = 3)]
    layers: usize,
    /// Relation-type embedding width.
    #[arg(long, default_value_t = 16)]
    edge_dim: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 0.01)]
    graph_lr: f64,
    /// Fraction of nodes held out for the node-type accuracy.
    #[arg(long, default_value_t = 0.1)]
    heldout: f64,
    /// Neighbour-sampled mini-batches instead of full-batch epochs.
    #[arg(long)]
    sampled: bool,
    /// Neighbours per node per hop (with --sampled).
    #[arg(long, value_delimiter = ',', default_value = "10,10")]
    fanout: Vec<usize>,
    /// Seed nodes per mini-batch (with --sampled).
    #[arg(long, visible_alias = "batch-size", default_value_t = 1024)]
    graph_batch_size: usize,
}

/// TransR settings (defaults: PyKEEN's, as in the UMLS reference run).
#[derive(Args, Clone)]
struct TransrOpts {
    /// Entity dimension d (Z'' width).
    #[arg(long, default_value_t = 50)]
    entity_dim: usize,
    /// Relation dimension k.
    #[arg(long, default_value_t = 30)]
    relation_dim: usize,
    /// Norm of the score, clamp and constraint (PyKEEN's default is 1).
    #[arg(long, default_value_t = 1)]
    p: u32,
    #[arg(long, default_value_t = 256)]
    transr_batch_size: usize,
    #[arg(long, default_value_t = 0.01)]
    transr_lr: f32,
    #[arg(long, default_value_t = 1.0)]
    margin: f32,
}

#[derive(Args)]
struct BuildArgs {
    /// KG folder (nodes.tsv[.gz], edges.tsv[.gz]).
    #[arg(long)]
    kg: Option<PathBuf>,
    /// Teacher file to write (safetensors: H, Z, Z_graph, Z_transr; node ids in the metadata).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    text: TextOpts,
    #[command(flatten)]
    graph: GraphOpts,
    #[command(flatten)]
    transr: TransrOpts,
    #[arg(long, default_value_t = 50)]
    graph_epochs: usize,
    #[arg(long, default_value_t = 20)]
    transr_epochs: usize,
    /// Fraction of KG edges held out of TransR training to report MRR (0 = no evaluation).
    #[arg(long, default_value_t = 0.002)]
    test_fraction: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args)]
struct TextArgs {
    #[arg(long)]
    kg: PathBuf,
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    text: TextOpts,
}

#[derive(Args)]
struct GraphArgs {
    #[arg(long)]
    kg: PathBuf,
    #[command(flatten)]
    text: TextOpts,
    #[command(flatten)]
    graph: GraphOpts,
    #[arg(long, default_value_t = 50)]
    epochs: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// One JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct TransrArgs {
    /// Train on a KG folder's edges (a --test-fraction of them held out for --eval).
    #[arg(long, conflicts_with_all = ["train", "valid", "test"])]
    kg: Option<PathBuf>,
    /// Benchmark split files (header-less head TAB relation TAB tail).
    #[arg(long, requires_all = ["valid", "test"])]
    train: Option<PathBuf>,
    #[arg(long)]
    valid: Option<PathBuf>,
    #[arg(long)]
    test: Option<PathBuf>,
    #[command(flatten)]
    transr: TransrOpts,
    #[arg(long, default_value_t = 200)]
    epochs: usize,
    /// Fraction of KG edges held out (with --kg).
    #[arg(long, default_value_t = 0.002)]
    test_fraction: f64,
    /// Filtered link-prediction evaluation on the test triples.
    #[arg(long)]
    eval: bool,
    /// Print {"mrr","hits_at_1","hits_at_3","hits_at_10"} as one JSON line.
    #[arg(long)]
    json: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(args: TeacherArgs) -> Result<()> {
    match args.command {
        Some(TeacherCommand::Text(a)) => run_text(a),
        Some(TeacherCommand::Graph(a)) => run_graph(a),
        Some(TeacherCommand::Transr(a)) => run_transr(a),
        None => run_build(args.build),
    }
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
fn bar(len: usize, unit: &str) -> ProgressBar {
    let b = if std::io::stderr().is_terminal() { ProgressBar::new(len as u64) } else { ProgressBar::hidden() };
    let template = format!("{{prefix}} {{bar:30}} {{pos}}/{{len}} {unit}  {{msg}}  [{{elapsed_precise}} < {{eta_precise}}]");
    b.set_style(ProgressStyle::with_template(&template).expect("static template"));
    b
}

fn load_kg(dir: &Path) -> Result<KnowledgeGraph> {
    let start = Instant::now();
    let kg = KnowledgeGraph::load_dir(dir).with_context(|| format!("loading the KG {}", dir.display()))?;
    eprintln!("KG {}: {} nodes, {} edges, {} relations, {} types ({:.1} s)", dir.display(), kg.num_nodes(), kg.edges.len(), kg.num_relations(), kg.type_names.len(), start.elapsed().as_secs_f64());
    Ok(kg)
}

/// Z of every node (from the cache when it matches).
fn text_embeddings(kg: &KnowledgeGraph, o: &TextOpts) -> Result<Tensor> {
    if let Some(dir) = o.z_cache.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let b = bar(kg.num_nodes(), "names").with_prefix("Z");
    let start = Instant::now();
    let z = node_text_embeddings(kg, &o.encoder, Some(&o.z_cache), o.text_batch_size, &mut |done, _| b.set_position(done as u64))?;
    b.finish_and_clear();
    let how = if z.cache_hit { format!("cache hit {}", o.z_cache.display()) } else { "computed".into() };
    eprintln!("Z: {:?} in {:.1} s ({how})", z.z.shape(), start.elapsed().as_secs_f64());
    Ok(z.z)
}

fn run_text(a: TextArgs) -> Result<()> {
    let kg = load_kg(&a.kg)?;
    let z = text_embeddings(&kg, &a.text)?;
    let ids: Vec<&str> = kg.nodes.iter().map(|n| n.id.as_str()).collect();
    let meta = std::collections::HashMap::from([("node_ids".to_string(), serde_json::to_string(&ids)?)]);
    kogner_tensor::safetensors_io::save(&a.out, &[("Z", &z)], Some(meta))?;
    emit(&format!("wrote Z {:?} to {}", z.shape(), a.out.display()))
}

/// The whole KG with reverse edges as a message-passing graph.
fn full_graph(kg: &KnowledgeGraph) -> Result<Graph> {
    let adj = kg.in_adjacency();
    let dst: Vec<usize> = (0..adj.num_nodes()).flat_map(|v| std::iter::repeat_n(v, adj.in_degree(v))).collect();
    let src: Vec<usize> = adj.sources.iter().map(|&s| s as usize).collect();
    let types: Vec<usize> = adj.relations.iter().map(|&r| r as usize).collect();
    Ok(Graph::from_lists(&src, &dst, &types, kg.num_nodes())?)
}

/// A trained graph transformer and its held-out accuracy.
struct GraphResult {
    model: GraphTransformer,
    accuracy: f64,
    seconds_per_epoch: f64,
    heldout: usize,
}

fn train_graph(kg: &KnowledgeGraph, z: &Tensor, o: &GraphOpts, epochs: usize, seed: u64) -> Result<GraphResult> {
    let n = kg.num_nodes();
    let labels: Vec<usize> = kg.node_types.iter().map(|&t| t as usize).collect();
    let (train, heldout) = split_nodes(n, o.heldout, seed)?;
    let cfg = GraphTransformerConfig {
        in_dim: z.shape()[1],
        proj_dim: o.hidden,
        num_edge_types: 2 * kg.num_relations(),
        edge_dim: o.edge_dim,
        out_channels: o.hidden,
        heads: o.heads,
        num_layers: o.layers,
        num_classes: kg.type_names.len(),
        beta: true,
        layernorm_eps: 1e-5,
    };
    let builder = ParamBuilder::random(seed);
    let model = GraphTransformer::new(&builder, cfg)?;
    let params = builder.params();
    let mut opt = adam(&params, o.graph_lr)?;
    let mut step = |g: &Grads| opt.step(&params, g, 1.0);
    let b;
    let (stats, accuracy) = if o.sampled {
        let adj = kg.in_adjacency();
        let task = SampledTask { features: z, adj: &adj, labels: &labels, train: &train, heldout: &heldout };
        let scfg = SampledTrainConfig { epochs, batch_size: o.graph_batch_size, fanout: o.fanout.clone(), seed };
        let batches = train.len().div_ceil(o.graph_batch_size.max(1));
        b = bar(epochs * batches, "batches").with_prefix("Z' (sampled)");
        let stats = train_node_classifier_sampled(&model, &task, &scfg, &mut step, &mut |e, _, _, loss| {
            b.inc(1);
            b.set_message(format!("epoch {} loss {loss:.4}", e + 1));
        })?;
        b.finish_and_clear();
        let acc = if heldout.is_empty() { f64::NAN } else { heldout_accuracy_sampled(&model, &task, &scfg)? };
        (stats, acc)
    } else {
        let data = NodeClassification { features: z.clone(), graph: full_graph(kg)?, labels, train, heldout: heldout.clone() };
        b = bar(epochs, "epochs").with_prefix("Z' (full batch)");
        let stats = train_node_classifier(&model, &data, &GraphTrainConfig { epochs, seed }, &mut step, &mut |s| {
            b.inc(1);
            b.set_message(format!("loss {:.4} ({:.1} s/epoch)", s.loss, s.seconds));
        })?;
        b.finish_and_clear();
        let acc = if heldout.is_empty() { f64::NAN } else { heldout_accuracy(&model, &data)? };
        (stats, acc)
    };
    let seconds_per_epoch = stats.iter().map(|s| s.seconds).sum::<f64>() / stats.len().max(1) as f64;
    Ok(GraphResult { model, accuracy, seconds_per_epoch, heldout: heldout.len() })
}

/// Adam (AdamW without decay) over every parameter.
fn adam(params: &ParamStore, lr: f64) -> Result<AdamW> {
    let names = params.iter().map(|(n, _)| n.clone()).collect();
    Ok(AdamW::new(vec![ParamGroup { name: "all".into(), lr, weight_decay: 0.0, params: names }], AdamWConfig::default())?)
}

fn run_graph(a: GraphArgs) -> Result<()> {
    if a.epochs == 0 {
        bail!("--epochs must be at least 1");
    }
    let kg = load_kg(&a.kg)?;
    let z = text_embeddings(&kg, &a.text)?;
    let r = train_graph(&kg, &z, &a.graph, a.epochs, a.seed)?;
    let mode = if a.graph.sampled { format!("sampled, fan-out {:?}, batch {}", a.graph.fanout, a.graph.graph_batch_size) } else { "full batch".into() };
    if a.json {
        emit(&json!({"accuracy": r.accuracy, "heldout_nodes": r.heldout, "epochs": a.epochs, "seconds_per_epoch": r.seconds_per_epoch, "sampled": a.graph.sampled}).to_string())
    } else {
        emit(&format!("held-out node-type accuracy {:.4} on {} nodes after {} epochs ({mode}; {:.1} s per epoch)", r.accuracy, r.heldout, a.epochs, r.seconds_per_epoch))
    }
}

fn transr_config(o: &TransrOpts, num_entities: usize, num_relations: usize) -> Result<TransRConfig> {
    if o.entity_dim == 0 || o.relation_dim == 0 {
        bail!("--entity-dim and --relation-dim must be positive");
    }
    Ok(TransRConfig { num_entities, num_relations, entity_dim: o.entity_dim, relation_dim: o.relation_dim, p: PNorm::from_p(o.p)? })
}

fn transr_train_config(o: &TransrOpts, epochs: usize, seed: u64) -> TransRTrainConfig {
    TransRTrainConfig { epochs, batch_size: o.transr_batch_size, lr: o.transr_lr, margin: o.margin, seed }
}

/// Trains with an epoch progress bar; returns the mean seconds per epoch.
fn train_transr_with_bar(epochs: usize, train: impl FnOnce(&mut dyn FnMut(f32, f64)) -> Result<()>) -> Result<f64> {
    let b = bar(epochs, "epochs").with_prefix("Z'' (TransR)");
    let mut total = 0.0;
    train(&mut |loss, seconds| {
        total += seconds;
        b.inc(1);
        b.set_message(format!("loss {loss:.4} ({seconds:.1} s/epoch)"));
    })?;
    b.finish_and_clear();
    Ok(total / epochs.max(1) as f64)
}

fn metrics_line(m: &LinkPredictionMetrics, json: bool) -> String {
    if json {
        json!({"mrr": m.mrr, "hits_at_1": m.hits_at_1, "hits_at_3": m.hits_at_3, "hits_at_10": m.hits_at_10}).to_string()
    } else {
        format!("MRR {:.4}  Hits@1 {:.4}  Hits@3 {:.4}  Hits@10 {:.4}  ({} ranks, filtered, realistic)", m.mrr, m.hits_at_1, m.hits_at_3, m.hits_at_10, m.count)
    }
}

fn run_transr(a: TransrArgs) -> Result<()> {
    let cfg = transr_train_config(&a.transr, a.epochs, a.seed);
    let (model, test, known, secs): (TransR, Vec<[u32; 3]>, Vec<[u32; 3]>, f64) = match (&a.kg, &a.train, &a.valid, &a.test) {
        (Some(dir), _, _, _) => {
            let kg = load_kg(dir)?;
            let (train, test) = split_edges(&kg, a.test_fraction, a.seed)?;
            let mut model = None;
            let secs = train_transr_with_bar(a.epochs, |cb| {
                model = Some(transr_on_kg(&kg, transr_config(&a.transr, 0, 0)?, &train, &cfg, |s| cb(s.mean_loss, s.seconds))?);
                Ok(())
            })?;
            (model.expect("trained"), test, kg.edges.clone(), secs)
        }
        (None, Some(train), Some(valid), Some(test)) => {
            let read = |p: &PathBuf| kogner_train::kg::triples::read_triple_names(p).with_context(|| format!("reading {}", p.display()));
            let splits = TripleSplits::from_names(&read(train)?, &read(valid)?, &read(test)?);
            let mut model = TransR::init(transr_config(&a.transr, splits.num_entities(), splits.num_relations())?, &mut kogner_tensor::Rng::new(a.seed));
            let secs = train_transr_with_bar(a.epochs, |cb| {
                train_transr(&mut model, &splits.train, &cfg, |s| cb(s.mean_loss, s.seconds))?;
                Ok(())
            })?;
            (model, splits.test.clone(), splits.all_triples(), secs)
        }
        _ => bail!("give --kg DIR or all of --train, --valid, --test"),
    };
    if !a.json {
        emit(&format!("TransR: {} epochs, {secs:.2} s per epoch", a.epochs))?;
    }
    if a.eval {
        if test.is_empty() {
            bail!("--eval: no test triples (raise --test-fraction)");
        }
        let m = filtered_ranks(&model, &test, &known)?.metrics();
        emit(&metrics_line(&m, a.json))?;
    }
    Ok(())
}

fn run_build(a: BuildArgs) -> Result<()> {
    let (Some(kg_dir), Some(out)) = (&a.kg, &a.out) else {
        bail!("kogner teacher needs --kg DIR and --out FILE (or a sub-command: text, graph, transr)");
    };
    if a.graph_epochs == 0 || a.transr_epochs == 0 {
        bail!("--graph-epochs and --transr-epochs must be at least 1");
    }
    let kg = load_kg(kg_dir)?;
    let z = text_embeddings(&kg, &a.text)?;
    let g = train_graph(&kg, &z, &a.graph, a.graph_epochs, a.seed)?;
    eprintln!("graph transformer: held-out node-type accuracy {:.4} ({:.1} s per epoch)", g.accuracy, g.seconds_per_epoch);
    let labels: Vec<usize> = kg.node_types.iter().map(|&t| t as usize).collect();
    let z_graph = graph_embeddings(&g.model, &z, &full_graph(&kg)?, &labels)?;
    let (train, test) = split_edges(&kg, a.test_fraction, a.seed)?;
    let cfg = transr_train_config(&a.transr, a.transr_epochs, a.seed);
    let mut transr = None;
    let transr_secs = train_transr_with_bar(a.transr_epochs, |cb| {
        transr = Some(transr_on_kg(&kg, transr_config(&a.transr, 0, 0)?, &train, &cfg, |s| cb(s.mean_loss, s.seconds))?);
        Ok(())
    })?;
    let transr = transr.expect("trained");
    let mrr = if test.is_empty() { None } else { Some(transr_metrics(&transr, &kg, &test)?) };
    let teacher = TeacherEmbeddings { node_ids: kg.nodes.iter().map(|n| n.id.clone()).collect(), z, z_graph, z_transr: transr_embeddings(&transr)? };
    let dims = teacher.dims()?;
    teacher.save(out).with_context(|| format!("writing {}", out.display()))?;
    emit(&format!("wrote H [{}, {}] = [Z {} ; Z' {} ; Z'' {}] to {}", kg.num_nodes(), dims.iter().sum::<usize>(), dims[0], dims[1], dims[2], out.display()))?;
    emit(&format!("node-type accuracy (held-out {:.0}%): {:.4}; graph transformer {:.1} s/epoch, TransR {transr_secs:.1} s/epoch", 100.0 * a.graph.heldout, g.accuracy, g.seconds_per_epoch))?;
    match mrr {
        Some(m) => emit(&format!("TransR on {} held-out edges: {}", test.len(), metrics_line(&m, false))),
        None => Ok(()),
    }
}
