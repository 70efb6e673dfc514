//! `init_model` on the real all-MiniLM-L6-v2: the GLiNER folder keeps the
//! pretrained encoder bit for bit, and `hidden_size` sets the head width —
//! GLiNER's `token_rep_layer.projection` [hidden, 384] when it differs from
//! the encoder's 384, no projection when it does not.

use std::path::{Path, PathBuf};

use kogner_models::gliner::init::{init_model, InitSources, Preset};
use kogner_models::gliner::model::ENCODER_PREFIX;
use kogner_models::gliner::pipeline::{Document, PredictOptions, Predictor};
use kogner_tensor::safetensors_io::SafeTensorsFile;

fn minilm() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/models/all-MiniLM-L6-v2")
}

fn init(out: &Path, hidden_size: Option<usize>) -> kogner_tensor::Result<kogner_models::config::GlinerConfig> {
    let dir = minilm();
    let sources = InitSources { tokenizer_dir: None, minilm_dir: Some(&dir) };
    init_model(Preset::MiniLm, &sources, out, 3, hidden_size)
}

#[test]
fn minilm_head_width_follows_hidden_size() {
    let root = std::env::temp_dir().join(format!("kogner-init-width-{}", std::process::id()));
    let pretrained = SafeTensorsFile::open(minilm().join("model.safetensors")).unwrap();
    let query = "encoder.layer.3.attention.self.query.weight";
    for (hidden_size, width) in [(None, 384), (Some(384), 384), (Some(512), 512), (Some(768), 768)] {
        let out = root.join(format!("{width}-{hidden_size:?}"));
        let config = init(&out, hidden_size).unwrap();
        assert_eq!(config.hidden_size, width);

        let saved = SafeTensorsFile::open(out.join("model.safetensors")).unwrap();
        let shape = |name: &str| saved.names().contains(&name.to_string()).then(|| saved.get(name).unwrap().shape().to_vec());
        let projection = shape("token_rep_layer.projection.weight");
        assert_eq!(projection, (width != 384).then(|| vec![width, 384]), "hidden_size {hidden_size:?}");
        assert_eq!(shape("prompt_rep_layer.0.weight"), Some(vec![4 * width, width]));
        assert_eq!(shape("rnn.lstm.weight_hh_l0"), Some(vec![4 * (width / 2), width / 2]));
        assert_eq!(shape("span_rep_layer.span_rep_layer.out_project.0.weight"), Some(vec![4 * width, 2 * width]));
        let encoder_query = saved.get(&format!("{ENCODER_PREFIX}.{query}")).unwrap().to_f64_vec().unwrap();
        assert_eq!(encoder_query, pretrained.get(query).unwrap().to_f64_vec().unwrap(), "the pretrained encoder is kept");

        // the folder loads and runs: one probability per span × label, all in (0, 1)
        let predictor = Predictor::load(&out).unwrap();
        let labels = vec!["disease".to_string()];
        let entities = predictor.predict(&[Document { text: "Familial adenomatous polyposis is inherited.", labels: &labels }], &PredictOptions { threshold: 0.0, ..Default::default() }, |_| {}).unwrap();
        assert!(!entities[0].is_empty() && entities[0].iter().all(|e| e.score > 0.0 && e.score < 1.0), "{entities:?}");
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn odd_or_zero_hidden_size_is_refused() {
    let root = std::env::temp_dir().join(format!("kogner-init-odd-{}", std::process::id()));
    for bad in [0, 385] {
        let err = init(&root, Some(bad)).unwrap_err().to_string();
        assert!(err.contains(&format!("--hidden-size {bad} must be even")), "{err}");
    }
    assert!(!root.exists(), "nothing is written for a refused width");
}
