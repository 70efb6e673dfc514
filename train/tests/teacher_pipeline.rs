//! The teacher pipeline: Z with its cache, neighbour sampling and
//! mini-batch training of the graph transformer, the H export; and (ignored,
//! run by hand) one sampled step on a synthetic BioMedGraphica-size graph.

use std::path::{Path, PathBuf};
use std::time::Instant;

use kogner_autograd::{Grads, ParamStore};
use kogner_models::builder::ParamBuilder;
use kogner_models::teacher::graph_transformer::{GraphTransformer, GraphTransformerConfig};
use kogner_models::teacher::transr::{PNorm, TransRConfig};
use kogner_tensor::{Rng, Tensor};
use kogner_train::kg::{InAdjacency, KnowledgeGraph};
use kogner_train::optim::{AdamW, AdamWConfig, ParamGroup};
use kogner_train::teacher::export::{graph_embeddings, split_edges, transr_embeddings, transr_metrics, transr_on_kg, TeacherEmbeddings};
use kogner_train::teacher::sampling::{heldout_accuracy_sampled, sample_subgraph, train_node_classifier_sampled, SampledTask, SampledTrainConfig};
use kogner_train::teacher::text::{cache_key, node_text_embeddings};
use kogner_train::teacher::transr::TransRTrainConfig;

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kogner-teacher-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn adamw(params: &ParamStore, lr: f64) -> AdamW {
    let names = params.iter().map(|(n, _)| n.clone()).collect();
    AdamW::new(vec![ParamGroup { name: "all".into(), lr, weight_decay: 0.0, params: names }], AdamWConfig::default()).unwrap()
}

fn small_model(seed: u64, in_dim: usize, num_edge_types: usize, num_classes: usize, num_layers: usize) -> (GraphTransformer, ParamStore) {
    let cfg = GraphTransformerConfig {
        in_dim,
        proj_dim: 16,
        num_edge_types,
        edge_dim: 8,
        out_channels: 8,
        heads: 2,
        num_layers,
        num_classes,
        beta: true,
        layernorm_eps: 1e-5,
    };
    let b = ParamBuilder::random(seed);
    let model = GraphTransformer::new(&b, cfg).unwrap();
    (model, b.params())
}

#[test]
fn node_name_embeddings_are_cached_by_content() {
    let kg = KnowledgeGraph::load_dir(shared().join("data/kg/tiny")).unwrap();
    let minilm = shared().join("data/models/all-MiniLM-L6-v2");
    let cache = scratch("zcache").join("z.safetensors");
    let mut calls = 0;
    let first = node_text_embeddings(&kg, &minilm, Some(&cache), 16, &mut |_, _| calls += 1).unwrap();
    assert!(!first.cache_hit);
    assert_eq!((first.z.shape(), calls), ([43, 384].as_slice(), 3));
    let second = node_text_embeddings(&kg, &minilm, Some(&cache), 16, &mut |_, _| panic!("cache miss")).unwrap();
    assert!(second.cache_hit);
    assert_eq!(first.z.to_vec::<f32>().unwrap(), second.z.to_vec::<f32>().unwrap());
    // Z of APC equals the sentence encoder's embedding of "APC" alone.
    let apc = kg.node_index("HGNC:583").unwrap();
    let enc = kogner_models::teacher::text::SentenceEncoder::from_dir(&minilm).unwrap();
    let alone = enc.embed(&["APC"]).unwrap().to_vec::<f32>().unwrap();
    let row = &first.z.to_vec::<f32>().unwrap()[apc * 384..(apc + 1) * 384];
    assert!(row.iter().zip(&alone).all(|(a, b)| (a - b).abs() <= 1e-5));
    // A renamed node changes the key: recomputed, and the cache is replaced.
    let mut renamed = kg.clone();
    renamed.nodes[apc].name = "adenomatous polyposis coli".into();
    assert_ne!(cache_key(&kg, &minilm).unwrap(), cache_key(&renamed, &minilm).unwrap());
    let third = node_text_embeddings(&renamed, &minilm, Some(&cache), 16, &mut |_, _| {}).unwrap();
    assert!(!third.cache_hit);
    assert!(node_text_embeddings(&renamed, &minilm, Some(&cache), 16, &mut |_, _| panic!("miss")).unwrap().cache_hit);
}

/// A random multigraph: node `v` has a power-law-ish in-degree.
fn random_graph(n: usize, e: usize, relations: u32, seed: u64) -> Vec<[u32; 3]> {
    let mut rng = Rng::new(seed);
    (0..e)
        .map(|_| {
            let h = rng.below(n) as u32;
            // squaring a uniform skews tails towards low ids: a few hubs
            let t = ((rng.next_f64().powi(2)) * n as f64) as u32 % n as u32;
            [h, rng.below(relations as usize) as u32, t]
        })
        .collect()
}

#[test]
fn sampled_subgraphs_are_real_bounded_and_deterministic() {
    let (n, fanout) = (200, [4usize, 3]);
    let edges = random_graph(n, 1500, 3, 1);
    let adj = InAdjacency::with_reverse(n, 3, &edges);
    let seeds = [5usize, 0, 17, 199];
    let sub = sample_subgraph(&adj, &seeds, &fanout, &mut Rng::new(9)).unwrap();
    assert_eq!(sub.num_seeds, 4);
    assert_eq!(&sub.nodes[..4], &[5, 0, 17, 199]);
    let mut distinct = sub.nodes.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), sub.nodes.len(), "a node appears twice");
    // Every sampled edge is a real (possibly reversed) edge of the graph.
    for k in 0..sub.src.len() {
        let (s, t, slot) = (sub.nodes[sub.src[k]], sub.nodes[sub.dst[k]] as usize, sub.edge_slots[k]);
        assert!(adj.range(t).contains(&slot));
        assert_eq!((adj.sources[slot], adj.relations[slot] as usize), (s, sub.edge_type[k]));
        let c = adj.columns[slot] as usize;
        let [h, r, tl] = edges[c % edges.len()];
        let want = if c < edges.len() { (h, r, tl) } else { (tl, r + 3, h) };
        assert_eq!(want, (s, sub.edge_type[k] as u32, t as u32));
    }
    // Fan-out: hop 0 runs first and its targets are the seeds, so its edges
    // are the prefix with dst < 4, and the nodes it reached are 4..hop0_end.
    // Seeds draw min(in-degree, 4) distinct in-edges, those nodes min(deg, 3),
    // nodes first reached at the last hop none.
    let hop0 = sub.dst.iter().take_while(|&&d| d < 4).count();
    let hop0_end = sub.src[..hop0].iter().map(|&s| s + 1).max().unwrap_or(4).max(4);
    for local in 0..sub.nodes.len() {
        let drawn: Vec<usize> = (0..sub.dst.len()).filter(|&k| sub.dst[k] == local).map(|k| sub.edge_slots[k]).collect();
        let mut unique = drawn.clone();
        unique.dedup();
        assert_eq!(unique.len(), drawn.len(), "an edge drawn twice");
        let deg = adj.in_degree(sub.nodes[local] as usize);
        let want = if local < 4 { deg.min(4) } else if local < hop0_end { deg.min(3) } else { 0 };
        assert_eq!(drawn.len(), want, "node {local}");
    }
    let again = sample_subgraph(&adj, &seeds, &fanout, &mut Rng::new(9)).unwrap();
    assert_eq!(sub, again);
    assert_ne!(sub, sample_subgraph(&adj, &seeds, &fanout, &mut Rng::new(10)).unwrap());
    assert!(sample_subgraph(&adj, &[3, 3], &fanout, &mut Rng::new(0)).is_err());
    assert!(sample_subgraph(&adj, &[n], &fanout, &mut Rng::new(0)).is_err());
}

/// Clusters of one class linked densely inside, sparsely across; features
/// only weakly informative, so accuracy needs the neighbours' labels.
fn clustered_task(n: usize, classes: usize, seed: u64) -> (Tensor, Vec<usize>, Vec<[u32; 3]>) {
    let mut rng = Rng::new(seed);
    let labels: Vec<usize> = (0..n).map(|v| v % classes).collect();
    let mut edges = Vec::new();
    for (v, &label) in labels.iter().enumerate() {
        for _ in 0..4 {
            let same = (rng.below(n / classes) * classes + label) as u32;
            edges.push([v as u32, 0, same]);
        }
        edges.push([v as u32, 1, rng.below(n) as u32]);
    }
    let dim = 8;
    let feats: Vec<f32> = (0..n * dim).map(|i| (if i % dim == labels[i / dim] { 0.5 } else { 0.0 }) + rng.normal() as f32).collect();
    (Tensor::from_vec(feats, &[n, dim]).unwrap(), labels, edges)
}

#[test]
fn minibatch_training_learns_a_clustered_graph() {
    let (n, classes) = (400, 4);
    let (features, labels, edges) = clustered_task(n, classes, 3);
    let adj = InAdjacency::with_reverse(n, 2, &edges);
    let (train, heldout) = kogner_train::teacher::graph::split_nodes(n, 0.2, 5).unwrap();
    let task = SampledTask { features: &features, adj: &adj, labels: &labels, train: &train, heldout: &heldout };
    let (model, params) = small_model(2, 8, 4, classes, 2);
    let mut opt = adamw(&params, 0.01);
    let cfg = SampledTrainConfig { epochs: 15, batch_size: 32, fanout: vec![6, 6], seed: 1 };
    let mut batches = 0;
    let stats = train_node_classifier_sampled(&model, &task, &cfg, &mut |g: &Grads| opt.step(&params, g, 1.0), &mut |_, _, total, _| {
        assert_eq!(total, 10);
        batches += 1
    })
    .unwrap();
    assert_eq!((stats.len(), batches), (15, 150));
    assert!(stats[14].loss < 0.5 * stats[0].loss, "loss {} -> {}", stats[0].loss, stats[14].loss);
    let acc = heldout_accuracy_sampled(&model, &task, &cfg).unwrap();
    assert!(acc >= 0.9, "held-out accuracy {acc}");
    // the held-out labels never reach the model: scrambling them changes nothing
    let mut scrambled = labels.clone();
    heldout.iter().for_each(|&v| scrambled[v] = (labels[v] + 1) % classes);
    let t2 = SampledTask { labels: &scrambled, ..task };
    let acc2 = heldout_accuracy_sampled(&model, &t2, &cfg).unwrap();
    // (predictions unchanged: right for the true labels means wrong for these)
    assert!(acc2 <= 1.0 - acc + 1e-9, "held-out labels leaked: {acc} vs {acc2}");
}

#[test]
fn teacher_file_round_trip_on_the_tiny_kg() {
    let kg = KnowledgeGraph::load_dir(shared().join("data/kg/tiny")).unwrap();
    let n = kg.num_nodes();
    let mut rng = Rng::new(4);
    let z = Tensor::from_vec((0..n * 12).map(|_| rng.normal() as f32).collect::<Vec<_>>(), &[n, 12]).unwrap();
    let (model, _) = small_model(1, 12, 2 * kg.num_relations(), kg.type_names.len(), 3);
    let graph = kogner_models::teacher::graph_transformer::Graph::from_lists(
        &kg.edges.iter().flat_map(|e| [e[0] as usize, e[2] as usize]).collect::<Vec<_>>(),
        &kg.edges.iter().flat_map(|e| [e[2] as usize, e[0] as usize]).collect::<Vec<_>>(),
        &kg.edges.iter().flat_map(|e| [e[1] as usize, e[1] as usize + kg.num_relations()]).collect::<Vec<_>>(),
        n,
    )
    .unwrap();
    let labels: Vec<usize> = kg.node_types.iter().map(|&t| t as usize).collect();
    let z_graph = graph_embeddings(&model, &z, &graph, &labels).unwrap();
    assert_eq!(z_graph.shape(), [n, 8]);
    let (train, test) = split_edges(&kg, 0.1, 0).unwrap();
    assert_eq!((train.len(), test.len()), (47, 5));
    let tcfg = TransRConfig { num_entities: 0, num_relations: 0, entity_dim: 6, relation_dim: 4, p: PNorm::from_p(2).unwrap() };
    let transr = transr_on_kg(&kg, tcfg, &train, &TransRTrainConfig { epochs: 3, batch_size: 16, ..Default::default() }, |_| {}).unwrap();
    let m = transr_metrics(&transr, &kg, &test).unwrap();
    assert!(m.mrr > 0.0 && m.mrr <= 1.0 && m.count == 10);
    let teacher = TeacherEmbeddings {
        node_ids: kg.nodes.iter().map(|v| v.id.clone()).collect(),
        z: z.clone(),
        z_graph,
        z_transr: transr_embeddings(&transr).unwrap(),
    };
    assert_eq!(teacher.dims().unwrap(), [12, 8, 6]);
    let path = scratch("export").join("teacher.safetensors");
    teacher.save(&path).unwrap();
    let back = TeacherEmbeddings::load(&path).unwrap();
    assert_eq!(back.node_ids, teacher.node_ids);
    assert_eq!(back.h().unwrap().to_vec::<f32>().unwrap(), teacher.h().unwrap().to_vec::<f32>().unwrap());
    let file = kogner_tensor::safetensors_io::SafeTensorsFile::open(&path).unwrap();
    assert_eq!(file.shape_of("H"), Some(vec![n, 26]));
    let h = file.get("H").unwrap().to_vec::<f32>().unwrap();
    let row = kg.node_index("HGNC:583").unwrap();
    assert_eq!(&h[row * 26..row * 26 + 12], &z.to_vec::<f32>().unwrap()[row * 12..row * 12 + 12]);
    // a part with the wrong row count is an error, not a file
    let bad = TeacherEmbeddings { z: Tensor::zeros(&[n - 1, 12], kogner_tensor::DType::F32), ..teacher };
    assert!(bad.save(&path).is_err());
}

/// Peak resident memory (VmHWM) in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
}

/// BioMedGraphica-size synthetic graph (2.3M nodes, 27M edges, heavy-tailed
/// degrees, 384-d features like Z): build the adjacency and take one
/// neighbour-sampled training step of the graph transformer.
/// `cargo test -p kogner-train --test teacher_pipeline -- --ignored --nocapture`
#[test]
#[ignore]
fn biomedgraphica_scale_sampled_step() {
    let (n, e, relations, classes, dim) = (2_300_000usize, 27_000_000usize, 20u32, 12usize, 384usize);
    let t0 = Instant::now();
    // Power-law endpoints: node i drawn with weight (i + 1)^-0.8 (a few
    // hubs of degree ~10^5, a long tail of degree 1-5), via the inverse CDF.
    let mut cdf = Vec::with_capacity(n);
    let mut acc = 0f64;
    for i in 0..n {
        acc += ((i + 1) as f64).powf(-0.8);
        cdf.push(acc);
    }
    let mut rng = Rng::new(7);
    let draw = |rng: &mut Rng| cdf.partition_point(|&c| c < rng.next_f64() * acc).min(n - 1) as u32;
    let edges: Vec<[u32; 3]> = (0..e).map(|_| [draw(&mut rng), rng.below(relations as usize) as u32, draw(&mut rng)]).collect();
    let gen_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let adj = InAdjacency::with_reverse(n, relations as usize, &edges);
    let adj_s = t1.elapsed().as_secs_f64();
    drop(edges);
    let max_deg = (0..n).map(|v| adj.in_degree(v)).max().unwrap();
    let features = Tensor::from_vec(rng.uniform_f32_vec(n * dim), &[n, dim]).unwrap();
    let labels: Vec<usize> = (0..n).map(|v| v % classes).collect();
    let (train, heldout) = kogner_train::teacher::graph::split_nodes(n, 0.1, 1).unwrap();
    let task = SampledTask { features: &features, adj: &adj, labels: &labels, train: &train[..1024], heldout: &heldout };
    let cfg = GraphTransformerConfig { in_dim: dim, proj_dim: 64, num_edge_types: 2 * relations as usize, edge_dim: 16, out_channels: 64, heads: 2, num_layers: 3, num_classes: classes, beta: true, layernorm_eps: 1e-5 };
    let b = ParamBuilder::random(0);
    let model = GraphTransformer::new(&b, cfg).unwrap();
    let params = b.params();
    let mut opt = adamw(&params, 1e-3);
    let t2 = Instant::now();
    let scfg = SampledTrainConfig { epochs: 1, batch_size: 1024, fanout: vec![10, 10, 10], seed: 0 };
    let stats = train_node_classifier_sampled(&model, &task, &scfg, &mut |g: &Grads| opt.step(&params, g, 1.0), &mut |_, _, _, _| {}).unwrap();
    let sub = sample_subgraph(&adj, &train[..1024], &scfg.fanout, &mut Rng::new(0)).unwrap();
    println!(
        "synthetic graph: {n} nodes, {e} edges ({} with reverses), max in-degree {max_deg}; generate {gen_s:.1} s, adjacency {adj_s:.1} s; \
         one step (1024 seeds, fan-out 10,10,10 -> {} nodes, {} edges): {:.2} s, loss {:.3}; peak RSS {:.2} GiB",
        adj.num_edges(),
        sub.nodes.len(),
        sub.src.len(),
        t2.elapsed().as_secs_f64(),
        stats[0].loss,
        peak_rss_kib() as f64 / (1024.0 * 1024.0)
    );
    assert!(peak_rss_kib() < 24 * 1024 * 1024, "over 24 GiB");
}
