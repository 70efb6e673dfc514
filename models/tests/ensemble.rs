//! Ensembles (`Predictor::load_ensemble_for_inference`) on the deberta-tiny
//! fixture: the span probabilities are the mean of the members', one folder
//! is exactly that model, members may differ in their span heads, and
//! folders of another shape are refused.

use std::path::{Path, PathBuf};

use kogner_models::gliner::model::Gliner;
use kogner_models::gliner::pipeline::Predictor;
use kogner_models::gliner::processor::BatchItem;
use kogner_models::gliner::words::split_words;
use kogner_tensor::{DType, Tensor};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/gliner").join(name)
}

/// A copy of the deberta-tiny folder in a fresh temp dir, its weights
/// p turned into `f(p)`.
fn moved_copy(tag: &str, f: impl Fn(f32) -> f32) -> PathBuf {
    let src = fixture("deberta-tiny");
    let dir = std::env::temp_dir().join(format!("kogner-ensemble-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["gliner_config.json", "tokenizer.json", "tokenizer_config.json"] {
        if src.join(name).is_file() {
            std::fs::copy(src.join(name), dir.join(name)).unwrap();
        }
    }
    let model = Gliner::load(&src).unwrap();
    for (_, var) in model.parameters() {
        let v = var.value();
        let moved: Vec<f32> = v.to_vec::<f32>().unwrap().into_iter().map(&f).collect();
        var.set_value(Tensor::from_vec(moved, v.shape()).unwrap()).unwrap();
    }
    model.params.save_safetensors(dir.join("model.safetensors"), DType::F32).unwrap();
    dir
}

/// Span probabilities [B, W, K, C] of two short texts.
fn probs(predictor: &Predictor) -> Vec<f32> {
    let labels = vec!["disease".to_string(), "gene".to_string()];
    let words = [split_words("Two frequent missense mutations in Pendred syndrome."), split_words("BRCA1 and breast cancer.")];
    let items: Vec<BatchItem> = words.iter().map(|w| BatchItem { words: w, labels: &labels }).collect();
    predictor.span_probs(&predictor.processor.encode(&items).unwrap()).unwrap()
}

#[test]
fn ensemble_scores_are_the_mean_of_its_members() {
    let tiny = fixture("deberta-tiny");
    let moved = moved_copy("mean", |p| 0.9 * p + 0.01);
    let a = probs(&Predictor::load_for_inference(&tiny).unwrap());
    let b = probs(&Predictor::load_for_inference(&moved).unwrap());
    let both = probs(&Predictor::load_ensemble_for_inference(&[tiny.clone(), moved.clone()]).unwrap());
    assert_eq!(a.len(), both.len());
    // The members disagree, so the test sees whether they are averaged.
    assert!(a.iter().zip(&b).any(|(x, y)| (x - y).abs() > 1e-3));
    for (i, ((x, y), m)) in a.iter().zip(&b).zip(&both).enumerate() {
        assert!((m - (x + y) / 2.0).abs() <= 1e-6, "span {i}: ensemble {m}, members {x} and {y}");
    }
    // One folder is that model.
    assert_eq!(probs(&Predictor::load_ensemble_for_inference(&[tiny]).unwrap()), a);
    std::fs::remove_dir_all(&moved).unwrap();
}

/// A member with another head (mean sub-token pooling) scores the same
/// spans, each with its own head: the ensemble is still the members' mean.
#[test]
fn members_may_differ_in_their_heads() {
    let tiny = fixture("deberta-tiny");
    let mean = moved_copy("pooling", |p| p);
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(mean.join("gliner_config.json")).unwrap()).unwrap();
    json["subtoken_pooling"] = serde_json::json!("mean");
    std::fs::write(mean.join("gliner_config.json"), json.to_string()).unwrap();
    let a = probs(&Predictor::load_for_inference(&tiny).unwrap());
    let b = probs(&Predictor::load_for_inference(&mean).unwrap());
    let both = probs(&Predictor::load_ensemble_for_inference(&[tiny, mean.clone()]).unwrap());
    assert!(a.iter().zip(&b).any(|(x, y)| (x - y).abs() > 1e-3), "the pooling changes the scores");
    for (i, ((x, y), m)) in a.iter().zip(&b).zip(&both).enumerate() {
        assert!((m - (x + y) / 2.0).abs() <= 1e-6, "span {i}: ensemble {m}, members {x} and {y}");
    }
    std::fs::remove_dir_all(&mean).unwrap();
}

#[test]
fn ensemble_refuses_other_shapes_and_no_models() {
    let tiny = fixture("deberta-tiny");
    let wider = moved_copy("wider", |p| p);
    let config = std::fs::read_to_string(wider.join("gliner_config.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&config).unwrap();
    json["max_width"] = serde_json::json!(json["max_width"].as_u64().unwrap() + 1);
    std::fs::write(wider.join("gliner_config.json"), json.to_string()).unwrap();
    let e = Predictor::load_ensemble_for_inference(&[tiny.clone(), wider.clone()]).err().unwrap().to_string();
    assert!(e.contains("gliner_config.json") && e.contains("`max_width` differs") && e.contains("cannot ensemble"), "{e}");
    std::fs::write(wider.join("tokenizer.json"), "{}").unwrap();
    let e = Predictor::load_ensemble_for_inference(&[tiny, wider.clone()]).err().unwrap().to_string();
    assert!(e.contains("tokenizer.json") && e.contains("different vocabularies"), "{e}");
    assert!(Predictor::load_ensemble_for_inference(&[]).is_err());
    std::fs::remove_dir_all(&wider).unwrap();
}
