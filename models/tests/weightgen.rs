//! The fixtures' weight generator: the documented test vector, the
//! deberta-tiny weights regenerated bit for bit, and the MiniLM assembly.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use kogner_models::weightgen::{assemble_minilm_fixture, generate, generate_all, InitSpec};
use kogner_tensor::safetensors_io::SafeTensorsFile;
use kogner_tensor::Tensor;

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

fn fixture(name: &str) -> PathBuf {
    shared().join("fixtures/gliner").join(name)
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.to_vec::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
}

#[test]
fn weightgen_md_test_vector() {
    let v = generate("test", 4, 1, 0.5, 0.25);
    let b: Vec<u32> = v.iter().map(|x| x.to_bits()).collect();
    assert_eq!(b, [0x3e9ed1ae, 0x3e93ae30, 0xbc603280, 0x3e1974b4]);
    // Python's repr of the f32 values, digit for digit.
    #[allow(clippy::excessive_precision)]
    let python = [0.3101934790611267f32, 0.2884383201599121, -0.013683915138244629, 0.1498592495918274];
    assert_eq!(v, python);
    // Prefix property: the i-th value does not depend on n.
    assert_eq!(generate("test", 2, 1, 0.5, 0.25), v[..2]);
    assert!(generate("test", 0, 1, 0.5, 0.25).is_empty());
}

#[test]
fn deberta_tiny_model_regenerates_bit_for_bit() {
    let spec = InitSpec::from_file(fixture("deberta-tiny/init_spec.json")).unwrap();
    assert_eq!(spec.seed, 2001);
    let st = SafeTensorsFile::open(fixture("deberta-tiny/model.safetensors")).unwrap();
    let generated = generate_all(&spec).unwrap();
    // The spec covers every tensor of the model (nothing is zero or copied).
    let listed: HashSet<&str> = generated.iter().map(|(n, _)| n.as_str()).collect();
    let stored: HashSet<String> = st.names().into_iter().collect();
    assert_eq!(listed.len(), generated.len());
    assert_eq!(listed, stored.iter().map(String::as_str).collect::<HashSet<_>>());
    for (name, t) in &generated {
        let want = st.get(name).unwrap();
        assert_eq!(t.shape(), want.shape(), "{name}");
        assert!(bits(t) == bits(&want), "tensor {name} differs from model.safetensors");
    }
    // The logit spread tuning of expected.json is already folded into the
    // spec: the final span bias is shifted by -shift (exactly, in f32).
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("deberta-tiny/expected.json")).unwrap()).unwrap();
    let shift = expected["spread_tuning"]["shift"].as_f64().unwrap();
    let out_bias = spec.get("span_rep_layer.span_rep_layer.out_project.3.bias").unwrap();
    assert_eq!(out_bias.offset().unwrap(), -(shift as f32));
    assert_eq!(out_bias.offset_bits.as_deref(), Some("0xbe3ae148"));
}

#[test]
fn minilm_assembly_matches_keys_txt() {
    let tensors = assemble_minilm_fixture(&shared()).unwrap();
    let keys = std::fs::read_to_string(fixture("minilm/keys.txt")).unwrap();
    let want: Vec<(String, Vec<usize>)> = keys
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split('\t');
            let name = f.next().unwrap().to_string();
            let shape = f.next().unwrap();
            let shape = shape.trim_matches(|c| c == '[' || c == ']');
            let shape = if shape.is_empty() { vec![] } else { shape.split(',').map(|d| d.trim().parse().unwrap()).collect() };
            (name, shape)
        })
        .collect();
    assert_eq!(want.len(), 127);
    let mut got: Vec<(String, Vec<usize>)> = tensors.iter().map(|(n, t)| (n.clone(), t.shape().to_vec())).collect();
    let mut want_sorted = want.clone();
    got.sort();
    want_sorted.sort();
    assert_eq!(got, want_sorted);
    assert!(tensors.iter().all(|(_, t)| t.dtype() == kogner_tensor::DType::F32));

    // Word embeddings: MiniLM rows, then the stored added rows (which are
    // themselves the generator's output for `...weight[added]`).
    let minilm = SafeTensorsFile::open(shared().join("data/models/all-MiniLM-L6-v2/model.safetensors")).unwrap();
    let added = SafeTensorsFile::open(fixture("minilm/added_embeddings.safetensors")).unwrap().get("added_rows").unwrap();
    let (_, we) = tensors.iter().find(|(n, _)| n == "token_rep_layer.bert_layer.model.embeddings.word_embeddings.weight").unwrap();
    assert_eq!(we.shape(), [30525, 384]);
    let we = bits(we);
    assert!(we[..30522 * 384] == bits(&minilm.get("embeddings.word_embeddings.weight").unwrap()));
    assert!(we[30522 * 384..] == bits(&added));
    let spec = InitSpec::from_file(fixture("minilm/init_spec.json")).unwrap();
    let rows = spec.added_rows.as_ref().unwrap();
    assert!(bits(&rows.generate(spec.seed).unwrap()) == bits(&added));
    // An encoder tensor is copied unchanged; the head is generated.
    let (_, q) = tensors.iter().find(|(n, _)| n == "token_rep_layer.bert_layer.model.encoder.layer.3.attention.self.query.weight").unwrap();
    assert!(bits(q) == bits(&minilm.get("encoder.layer.3.attention.self.query.weight").unwrap()));
    let (_, p) = tensors.iter().find(|(n, _)| n == "prompt_rep_layer.3.bias").unwrap();
    assert!(bits(p) == bits(&spec.get("prompt_rep_layer.3.bias").unwrap().generate(spec.seed).unwrap()));
    assert!(!tensors.iter().any(|(n, _)| n.ends_with("position_ids")));
}

#[test]
fn init_spec_errors_are_clear() {
    let ok = r#"{"seed": 3, "tensors": [{"name": "w", "shape": [2, 3], "scale": 0.5, "offset": 0.0, "scale_bits": "0x3f000000", "offset_bits": "0x00000000"}]}"#;
    let spec = InitSpec::from_json(ok).unwrap();
    let all = generate_all(&spec).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].1.shape(), [2, 3]);
    assert_eq!(all[0].1.to_vec::<f32>().unwrap(), generate("w", 6, 3, 0.5, 0.0));
    // Without bit patterns the decimals are used.
    let spec = InitSpec::from_json(r#"{"seed": 3, "tensors": [{"name": "w", "shape": [6], "scale": 0.5, "offset": 0.0}]}"#).unwrap();
    assert_eq!(generate_all(&spec).unwrap()[0].1.to_vec::<f32>().unwrap(), generate("w", 6, 3, 0.5, 0.0));

    let e = InitSpec::from_json(&ok.replace("0x3f000000", "0xzz")).unwrap_err().to_string();
    assert!(e.contains("tensor `w`") && e.contains("scale_bits `0xzz`"), "{e}");
    let e = InitSpec::from_json(&ok.replace("0x3f000000", "0x3f800000")).unwrap_err().to_string();
    assert!(e.contains("tensor `w`") && e.contains("disagrees"), "{e}");
    let e = InitSpec::from_json(r#"{"tensors": []}"#).unwrap_err().to_string();
    assert!(e.contains("seed"), "{e}");
    let e = InitSpec::from_file("/nonexistent/init_spec.json").unwrap_err().to_string();
    assert!(e.starts_with("/nonexistent/init_spec.json: "), "{e}");
    let e = assemble_minilm_fixture(Path::new("/nonexistent")).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/data/models/all-MiniLM-L6-v2/model.safetensors"), "{e}");
}
