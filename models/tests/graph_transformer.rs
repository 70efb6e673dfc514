//! Parity with PyG 2.8.1 `TransformerConv` + `MaskLabel` (fixture in
//! `../shared/fixtures/teacher/graph_transformer/`): every layer's output
//! and attention, LayerNorm outputs, Z', logits and the CE loss within 1e-5;
//! every parameter gradient and d/dX within 1e-6 + 1e-4·|want|.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use kogner_autograd::Var;
use kogner_models::builder::{ParamBuilder, TensorMap};
use kogner_models::teacher::graph_transformer::{
    ConvConfig, EdgeAttr, Graph, GraphTransformer, GraphTransformerConfig, ObservedLabels, TransformerConv,
};
use kogner_tensor::safetensors_io::SafeTensorsFile;
use kogner_tensor::Tensor;
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/teacher/graph_transformer")
}

fn open_fixture() -> (SafeTensorsFile, Value) {
    let dir = fixture_dir();
    let st = SafeTensorsFile::open(dir.join("fixture.safetensors")).expect("fixture.safetensors missing");
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).expect("config.json missing")).unwrap();
    (st, cfg)
}

fn usize_of(cfg: &Value, key: &str) -> usize {
    cfg[key].as_u64().unwrap_or_else(|| panic!("config.json: {key}")) as usize
}

fn model_config(cfg: &Value) -> GraphTransformerConfig {
    let layers = cfg["layers"].as_array().expect("layers");
    let l0 = &layers[0];
    GraphTransformerConfig {
        in_dim: usize_of(cfg, "in_dim"),
        proj_dim: usize_of(cfg, "proj_dim"),
        num_edge_types: cfg["edge_type_names"].as_array().unwrap().len(),
        edge_dim: usize_of(cfg, "edge_dim"),
        out_channels: usize_of(l0, "out_channels"),
        heads: usize_of(l0, "heads"),
        num_layers: layers.len(),
        num_classes: usize_of(cfg, "num_classes"),
        beta: l0["beta"].as_bool().unwrap(),
        layernorm_eps: cfg["layernorm_eps"].as_f64().unwrap(),
    }
}

/// The fixture's `param.*` tensors under their PyG names.
fn params(st: &SafeTensorsFile) -> TensorMap {
    let tensors: HashMap<String, Tensor> = st
        .names()
        .into_iter()
        .filter_map(|n| n.strip_prefix("param.").map(|p| (p.to_string(), st.get(&n).unwrap())))
        .collect();
    TensorMap { name: "fixture params".into(), tensors }
}

fn assert_close(name: &str, got: &Tensor, want: &Tensor, atol: f64, rtol: f64) {
    assert_eq!(got.shape(), want.shape(), "{name}: shape");
    let (g, w) = (got.to_f64_vec().unwrap(), want.to_f64_vec().unwrap());
    for (i, (&x, &y)) in g.iter().zip(&w).enumerate() {
        assert!((x - y).abs() <= atol + rtol * y.abs(), "{name}[{i}]: got {x}, want {y}");
    }
}

struct Run {
    st: SafeTensorsFile,
    builder: ParamBuilder,
    x: Var,
    out: kogner_models::teacher::graph_transformer::GraphTransformerOutput,
    loss: Var,
}

fn run_fixture() -> Run {
    let (st, cfg) = open_fixture();
    let mc = model_config(&cfg);
    let builder = ParamBuilder::from_source(Box::new(params(&st)));
    let model = GraphTransformer::new(&builder, mc).unwrap();
    assert!(builder.unused().is_empty(), "fixture params not used: {:?}", builder.unused());
    assert_eq!(builder.params().len(), cfg["param_shapes"].as_object().unwrap().len());

    let n = usize_of(&cfg, "num_nodes");
    let graph = Graph::from_edge_index(&st.get("edge_index").unwrap(), &st.get("edge_type").unwrap(), n, mc.num_edge_types).unwrap();
    assert_eq!(graph.num_edges(), usize_of(&cfg, "num_edges_total"));
    let x = Var::leaf(st.get("x").unwrap());
    let y = st.get("y").unwrap();
    let obs = st.get("obs_index").unwrap();
    let train = st.get("train_index").unwrap();
    let obs_labels = y.index_select(0, &obs).unwrap();
    let out = model.forward(&x, &graph, Some(ObservedLabels { nodes: &obs, labels: &obs_labels })).unwrap();
    let loss = GraphTransformer::loss(&out.logits, &train, &y.index_select(0, &train).unwrap()).unwrap();
    Run { st, builder, x, out, loss }
}

#[test]
fn forward_matches_pyg() {
    let r = run_fixture();
    let want = |name: &str| r.st.get(name).unwrap();
    let act = |name: &str, got: &Var| assert_close(name, &got.value(), &want(name), 1e-5, 0.0);

    act("out.h_proj", &r.out.h_proj);
    act("out.h0", &r.out.h0);
    let types = r.st.get("edge_type").unwrap();
    let rel = r.builder.params().var("rel_emb.weight").unwrap();
    act("out.edge_attr", &rel.index_select(0, &types).unwrap());
    assert_eq!(r.out.convs.len(), 3);
    for (l, conv) in r.out.convs.iter().enumerate() {
        act(&format!("out.conv{}", l + 1), &conv.out);
        act(&format!("out.alpha{}", l + 1), &conv.alpha);
    }
    assert_eq!(r.out.norms.len(), 2);
    for (l, ln) in r.out.norms.iter().enumerate() {
        act(&format!("out.ln{}", l + 1), ln);
        act(&format!("out.h{}", l + 1), &ln.relu().unwrap());
    }
    act("out.z_gt", &r.out.z);
    act("out.logits", &r.out.logits);
    act("loss", &r.loss);
    let (_, cfg) = open_fixture();
    assert!((r.loss.value().to_scalar().unwrap() - cfg["loss"].as_f64().unwrap()).abs() < 1e-5);

    // Isolated nodes (no in-edges) get a zero message: their layer output is
    // the gated skip alone, and every node's attention sums to 1 per head.
    let alpha = r.out.convs[0].alpha.value();
    let dst = r.st.get("edge_index").unwrap().select(0, 1).unwrap();
    let sums = alpha.segment_sum(&dst.contiguous().unwrap(), 43).unwrap().to_f64_vec().unwrap();
    let isolated = sums.iter().filter(|&&s| s == 0.0).count();
    assert_eq!(isolated, 4, "two isolated nodes × two heads");
    assert!(sums.iter().all(|&s| s == 0.0 || (s - 1.0).abs() < 1e-6));
}

#[test]
fn gradients_match_pyg() {
    let r = run_fixture();
    let grads = r.loss.backward().unwrap();
    let store = r.builder.params();
    let mut checked = 0;
    for (name, var) in store.iter() {
        let got = grads.get(var).unwrap_or_else(|| panic!("no gradient for {name}"));
        assert_close(&format!("grad.{name}"), got, &r.st.get(&format!("grad.{name}")).unwrap(), 1e-6, 1e-4);
        checked += 1;
    }
    assert_close("grad.x", grads.get(&r.x).expect("no gradient for x"), &r.st.get("grad.x").unwrap(), 1e-6, 1e-4);
    checked += 1;
    let stored = r.st.names().iter().filter(|n| n.starts_with("grad.")).count();
    assert_eq!(checked, stored, "every stored gradient is compared");
}

#[test]
fn dense_edge_attr_equals_typed_and_bad_inputs_are_errors() {
    let (st, cfg) = open_fixture();
    let b = ParamBuilder::from_source(Box::new(params(&st)));
    let mc = model_config(&cfg);
    let conv = TransformerConv::new(&b.pp("convs").pp("0"), mc.conv_configs()[0]).unwrap();
    let rel = b.pp("rel_emb").get("weight", &[8, 8], kogner_models::builder::Init::Zeros).unwrap();
    let types = st.get("edge_type").unwrap();
    let graph = Graph::from_edge_index(&st.get("edge_index").unwrap(), &types, 43, 8).unwrap();
    let h0 = Var::constant(st.get("out.h0").unwrap());
    let dense = rel.index_select(0, &types).unwrap();
    let a = conv.forward(&h0, &graph, Some(EdgeAttr::Dense(&dense))).unwrap();
    assert_close("out.conv1 (dense edge_attr)", &a.out.value(), &st.get("out.conv1").unwrap(), 1e-5, 0.0);

    // Clear errors, no panics.
    let err = conv.forward(&h0, &graph, None).err().expect("missing edge_attr");
    assert!(err.to_string().contains("edge_attr"), "{err}");
    let short = Var::constant(Tensor::zeros(&[3, 16], kogner_tensor::DType::F32));
    assert!(conv.forward(&short, &graph, Some(EdgeAttr::Dense(&dense))).is_err());
    let bad = Tensor::from_vec(vec![0i64, 1, 2, 99], &[2, 2]).unwrap();
    let e = Graph::from_edge_index(&bad, &Tensor::from_vec(vec![0i64, 0], &[2]).unwrap(), 43, 8).err().unwrap();
    assert!(e.to_string().contains("99"), "{e}");
    let e = Graph::from_edge_index(&st.get("edge_index").unwrap(), &types, 43, 3).err().unwrap();
    assert!(e.to_string().contains("edge_type"), "{e}");

    // A layer without edge_dim refuses edge features.
    let plain = ConvConfig { edge_dim: None, beta: false, ..mc.conv_configs()[0] };
    let conv = TransformerConv::new(&ParamBuilder::random(1), plain).unwrap();
    assert!(conv.forward(&h0, &graph, Some(EdgeAttr::Dense(&dense))).is_err());
    let out = conv.forward(&h0, &graph, None).unwrap();
    assert_eq!(out.out.shape(), vec![43, 16]);
}
