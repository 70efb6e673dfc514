//! `average_models` (model soups / checkpoint averaging) on the deberta-tiny
//! fixture: the mean is element-wise exact, and folders that differ in
//! architecture or vocabulary are refused with the field named.

use std::path::{Path, PathBuf};

use kogner_models::gliner::model::Gliner;
use kogner_train::student::average_models;
use kogner_train::student::checkpoint::{save_model, ModelFiles};
use kogner_tensor::Tensor;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/gliner")).join(name)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kogner-average-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every parameter of the model in `dir` by name, as f64.
fn weights(dir: &Path) -> Vec<(String, Vec<f64>)> {
    let m = Gliner::load(dir).unwrap();
    let mut w: Vec<_> = m.parameters().map(|(n, v)| (n.clone(), v.value().to_f64_vec().unwrap())).collect();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

#[test]
fn the_average_is_the_elementwise_mean() {
    let tmp = scratch("mean");
    let tiny = fixture("deberta-tiny");
    // A second "fine-tune": every weight p becomes 3p + 1.
    let model = Gliner::load(&tiny).unwrap();
    for (_, var) in model.parameters() {
        let v = var.value();
        let moved: Vec<f32> = v.to_f64_vec().unwrap().iter().map(|&p| (3.0 * p + 1.0) as f32).collect();
        var.set_value(Tensor::from_vec(moved, v.shape()).unwrap()).unwrap();
    }
    let moved_dir = tmp.join("moved");
    save_model(&moved_dir, &ModelFiles::read(&tiny).unwrap(), &model.params).unwrap();

    let out = tmp.join("soup");
    let n = average_models(&[tiny.clone(), moved_dir], &out).unwrap();
    let (base, soup) = (weights(&tiny), weights(&out));
    assert_eq!(n, base.iter().map(|(_, w)| w.len()).sum::<usize>());
    assert_eq!(base.len(), soup.len());
    for ((name, p), (name2, s)) in base.iter().zip(&soup) {
        assert_eq!(name, name2);
        for (&p, &s) in p.iter().zip(s) {
            // (p + f32(3p + 1)) / 2, rounded to f32 twice.
            let want = 2.0 * p + 0.5;
            assert!((s - want).abs() <= 1e-6 * want.abs().max(1.0), "{name}: {s} vs {want}");
        }
    }
    // The result is a GLiNER folder with the first model's config and tokenizer.
    assert_eq!(std::fs::read(out.join("tokenizer.json")).unwrap(), std::fs::read(tiny.join("tokenizer.json")).unwrap());
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn safetensors_and_pytorch_bin_of_the_same_weights_average_to_them() {
    let tmp = scratch("same");
    let out = tmp.join("soup");
    average_models(&[fixture("deberta-tiny"), fixture("deberta-tiny-bin")], &out).unwrap();
    assert_eq!(weights(&out), weights(&fixture("deberta-tiny")));
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn different_architectures_vocabularies_or_missing_folders_are_refused() {
    let tmp = scratch("refuse");
    let tiny = fixture("deberta-tiny");
    let files = ModelFiles::read(&tiny).unwrap();
    let model = Gliner::load(&tiny).unwrap();

    let mut wider = files.clone();
    wider.gliner_config["max_width"] = serde_json::json!(7);
    save_model(&tmp.join("wider"), &wider, &model.params).unwrap();
    let e = average_models(&[tiny.clone(), tmp.join("wider")], &tmp.join("o")).unwrap_err().to_string();
    assert!(e.contains("wider/gliner_config.json") && e.contains("`max_width` differs"), "{e}");

    let mut vocab = files.clone();
    vocab.tokenizer.extend_from_slice(b" ");
    save_model(&tmp.join("vocab"), &vocab, &model.params).unwrap();
    let e = average_models(&[tiny.clone(), tmp.join("vocab")], &tmp.join("o")).unwrap_err().to_string();
    assert!(e.contains("vocab/tokenizer.json") && e.contains("different vocabularies"), "{e}");

    let (name, var) = model.parameters().next().unwrap();
    let mut poisoned = var.value().to_f64_vec().unwrap().iter().map(|&x| x as f32).collect::<Vec<f32>>();
    poisoned[0] = f32::NAN;
    var.set_value(Tensor::from_vec(poisoned, var.value().shape()).unwrap()).unwrap();
    save_model(&tmp.join("nan"), &files, &model.params).unwrap();
    let e = average_models(&[tiny.clone(), tmp.join("nan")], &tmp.join("o")).unwrap_err().to_string();
    assert!(e.contains("nan") && e.contains(&format!("`{name}` holds a non-finite value")), "{e}");

    let e = average_models(&[tiny.clone(), tmp.join("absent")], &tmp.join("o")).unwrap_err().to_string();
    assert!(e.contains("absent"), "{e}");
    assert!(average_models(&[], &tmp.join("o")).is_err());
    assert!(!tmp.join("o").exists(), "nothing is written when averaging fails");
    std::fs::remove_dir_all(&tmp).unwrap();
}
