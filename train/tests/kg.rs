//! KG readers: the tiny and full biomed graphs, the CSR adjacency (checked
//! against the graph-transformer fixture's edge_index), the UMLS triples,
//! and clear errors on bad input.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use kogner_tensor::safetensors_io::SafeTensorsFile;
use kogner_train::kg::{KnowledgeGraph, TripleSplits};

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared")
        .join(rel)
}

fn count_by<'a>(items: impl Iterator<Item = &'a str>) -> HashMap<&'a str, usize> {
    let mut m = HashMap::new();
    items.for_each(|s| *m.entry(s).or_insert(0) += 1);
    m
}

#[test]
fn tiny_kg_matches_readme() {
    let kg = KnowledgeGraph::load_dir(shared("data/kg/tiny")).unwrap();
    assert_eq!((kg.num_nodes(), kg.edges.len()), (43, 52));
    assert_eq!(
        kg.relation_names,
        ["has_phenotype", "is_a", "mapped_to", "xref"]
    );
    let rel = count_by(
        kg.edges
            .iter()
            .map(|e| kg.relation_names[e[1] as usize].as_str()),
    );
    assert_eq!(
        rel,
        HashMap::from([
            ("has_phenotype", 23),
            ("is_a", 19),
            ("xref", 8),
            ("mapped_to", 2)
        ])
    );
    let types = count_by(
        kg.node_types
            .iter()
            .map(|&t| kg.type_names[t as usize].as_str()),
    );
    assert_eq!(
        types,
        HashMap::from([
            ("Disease", 17),
            ("Phenotype", 11),
            ("Chemical", 10),
            ("Gene", 4),
            ("Other", 1)
        ])
    );
    assert_eq!(kg.nodes.iter().filter(|n| n.synonyms.is_empty()).count(), 9);
    let isolated: Vec<&str> = kg
        .isolated_nodes()
        .iter()
        .map(|&i| kg.nodes[i].id.as_str())
        .collect();
    assert_eq!(isolated, ["HGNC:5", "MESH:D005260"]);
    let apc = kg.node_index("HGNC:583").unwrap();
    assert_eq!(kg.nodes[apc].name, "APC");
    assert_eq!(
        kg.nodes[apc].synonyms,
        [
            "APC regulator of WNT signaling pathway",
            "DP2",
            "DP3",
            "DP2.5",
            "PPP1R46"
        ]
    );
    // Degree (undirected) = in-degree with reverse edges; APC is the maximum, 7.
    let adj = kg.in_adjacency();
    let max = (0..kg.num_nodes())
        .max_by_key(|&i| adj.in_degree(i))
        .unwrap();
    assert_eq!(
        (kg.nodes[max].id.as_str(), adj.in_degree(max)),
        ("HGNC:583", 7)
    );
    assert_eq!(
        kg.relation_names_with_reverse(),
        [
            "has_phenotype",
            "is_a",
            "mapped_to",
            "xref",
            "rev_has_phenotype",
            "rev_is_a",
            "rev_mapped_to",
            "rev_xref"
        ]
    );
}

#[test]
fn tiny_indices_match_teacher_fixtures() {
    let kg = KnowledgeGraph::load_dir(shared("data/kg/tiny")).unwrap();
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(shared("fixtures/teacher/transr/config.json")).unwrap(),
    )
    .unwrap();
    let ids: Vec<&str> = cfg["entity_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        kg.nodes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>()
    );
    // CSR entries reproduce the graph-transformer fixture's edge_index / edge_type columns.
    let f = SafeTensorsFile::open(shared(
        "fixtures/teacher/graph_transformer/fixture.safetensors",
    ))
    .unwrap();
    let ei = f.get("edge_index").unwrap().to_vec::<i64>().unwrap();
    let et = f.get("edge_type").unwrap().to_vec::<i64>().unwrap();
    let e2 = et.len();
    let adj = kg.in_adjacency();
    assert_eq!(adj.num_edges(), e2);
    let mut seen = vec![false; e2];
    for i in 0..kg.num_nodes() {
        let mut prev = None;
        for s in adj.range(i) {
            let c = adj.columns[s] as usize;
            assert_eq!(
                (ei[c], ei[e2 + c], et[c]),
                (adj.sources[s] as i64, i as i64, adj.relations[s] as i64)
            );
            assert!(prev < Some(c), "columns increase within a target");
            prev = Some(c);
            seen[c] = true;
        }
    }
    assert!(seen.iter().all(|&s| s));
}

#[test]
fn biomed_kg_loads_fast_and_matches_stats() {
    let t0 = Instant::now();
    let kg = KnowledgeGraph::load_dir(shared("data/kg/biomed")).unwrap();
    let load_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let adj = kg.in_adjacency();
    let csr_s = t1.elapsed().as_secs_f64();
    eprintln!("biomed: load {load_s:.2} s, CSR {csr_s:.3} s");
    let stats: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(shared("data/kg/biomed/stats.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(kg.num_nodes() as u64, stats["nodes"].as_u64().unwrap());
    assert_eq!(kg.edges.len() as u64, stats["edges"].as_u64().unwrap());
    assert_eq!((kg.num_nodes(), kg.edges.len()), (107_433, 490_270));
    let rel = count_by(
        kg.edges
            .iter()
            .map(|e| kg.relation_names[e[1] as usize].as_str()),
    );
    for (name, n) in stats["edges_by_relation"].as_object().unwrap() {
        assert_eq!(rel[name.as_str()] as u64, n.as_u64().unwrap(), "{name}");
    }
    let types = count_by(
        kg.node_types
            .iter()
            .map(|&t| kg.type_names[t as usize].as_str()),
    );
    for (name, n) in stats["nodes_by_type"].as_object().unwrap() {
        assert_eq!(types[name.as_str()] as u64, n.as_u64().unwrap(), "{name}");
    }
    assert_eq!(
        kg.isolated_nodes().len() as u64,
        stats["isolated_nodes"].as_u64().unwrap()
    );
    assert_eq!(adj.num_edges(), 2 * 490_270);
    assert!(load_s < 20.0, "biomed load took {load_s:.1} s");
}

#[test]
fn umls_triples_vocab() {
    let s = TripleSplits::load_dir(shared("data/kg/umls-benchmark")).unwrap();
    assert_eq!(
        (s.train.len(), s.valid.len(), s.test.len()),
        (5216, 652, 661)
    );
    assert_eq!((s.num_entities(), s.num_relations()), (135, 46));
    assert!(s.entity_names.windows(2).all(|w| w[0] < w[1]));
    assert!(s.relation_names.windows(2).all(|w| w[0] < w[1]));
    let [h, r, t] = s.train[0];
    let first = std::fs::read_to_string(shared("data/kg/umls-benchmark/train.tsv")).unwrap();
    let first: Vec<&str> = first.lines().next().unwrap().split('\t').collect();
    assert_eq!(
        [
            &s.entity_names[h as usize],
            &s.relation_names[r as usize],
            &s.entity_names[t as usize]
        ],
        [first[0], first[1], first[2]]
    );
    assert_eq!(s.all_triples().len(), 5216 + 652 + 661);
}

/// A fresh scratch directory holding the given files.
fn scratch(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kogner-kg-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (f, text) in files {
        std::fs::write(dir.join(f), text).unwrap();
    }
    dir
}

const NODES: &str = "id\tname\ttype\tsynonyms\nA\tAlpha\tGene\t\nB\tBeta\tDisease\tb1|b2\n";

#[test]
fn bad_input_errors_name_file_and_line() {
    let cases: [(&str, &str, &str, &str, &str); 6] = [
        (
            "dangling",
            NODES,
            "head\trelation\ttail\nA\tr\tB\nA\tr\tC\n",
            "edges.tsv",
            "line 3: dangling edge: tail \"C\"",
        ),
        (
            "dup",
            "id\tname\ttype\tsynonyms\nA\ta\tT\t\nA\tb\tT\t\n",
            "head\trelation\ttail\n",
            "nodes.tsv",
            "line 3: duplicate node id \"A\"",
        ),
        (
            "cells",
            NODES,
            "head\trelation\ttail\nA\tr\n",
            "edges.tsv",
            "line 2: expected 3 TAB-separated cells, found 2",
        ),
        (
            "header",
            "id\tname\ttype\n",
            "head\trelation\ttail\n",
            "nodes.tsv",
            "line 1: header",
        ),
        (
            "syn",
            "id\tname\ttype\tsynonyms\nA\ta\tT\tx||y\n",
            "head\trelation\ttail\n",
            "nodes.tsv",
            "line 2: empty item in synonyms",
        ),
        (
            "emptyrel",
            NODES,
            "head\trelation\ttail\nA\t\tB\n",
            "edges.tsv",
            "line 2: empty relation",
        ),
    ];
    for (name, nodes, edges, file, want) in cases {
        let dir = scratch(name, &[("nodes.tsv", nodes), ("edges.tsv", edges)]);
        let err = KnowledgeGraph::load_dir(&dir).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.contains(file) && err.contains(want), "{name}: {err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
    let dir = scratch("missing", &[("nodes.tsv", NODES)]);
    let err = KnowledgeGraph::load_dir(&dir).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(err.contains("neither edges.tsv nor edges.tsv.gz"), "{err}");
    let dir = scratch(
        "triples",
        &[
            ("train.tsv", "a\tr\tb\nc\tr\n"),
            ("valid.tsv", ""),
            ("test.tsv", ""),
        ],
    );
    let err = TripleSplits::load_dir(&dir).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        err.contains("train.tsv") && err.contains("line 2: expected 3"),
        "{err}"
    );
}

#[test]
fn gz_and_plain_read_the_same() {
    use std::io::Write;
    let edges = "head\trelation\ttail\nA\tr\tB\nB\ts\tA\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(edges.as_bytes()).unwrap();
    let dir = scratch("gz", &[("nodes.tsv", NODES)]);
    std::fs::write(dir.join("edges.tsv.gz"), gz.finish().unwrap()).unwrap();
    let kg = KnowledgeGraph::load_dir(&dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(kg.relation_names, ["r", "s"]);
    assert_eq!(kg.edges, [[0, 0, 1], [1, 1, 0]]);
    assert_eq!(kg.nodes[1].synonyms, ["b1", "b2"]);
    let adj = kg.in_adjacency();
    // Node A: in-edges from column 1 (B -s-> A) and column 2 (reverse of A -r-> B).
    let a: Vec<(u32, u32, u32)> = adj
        .range(0)
        .map(|s| (adj.sources[s], adj.relations[s], adj.columns[s]))
        .collect();
    assert_eq!(a, [(1, 1, 1), (1, 2, 2)]);
}
