//! Parity with the real GLiNER + transformers (fixtures in
//! `../shared/fixtures/gliner/`): every stored intermediate and the logits
//! within 1e-4 (absolute, or relative for large values).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use kogner_autograd::no_grad;
use kogner_models::builder::TensorMap;
use kogner_models::config::GlinerConfig;
use kogner_models::gliner::head::HeadInputs;
use kogner_models::gliner::model::{EncoderInputs, Gliner};
use kogner_models::nn::Mode;
use kogner_models::weightgen::assemble_minilm_fixture;
use kogner_tensor::safetensors_io::SafeTensorsFile;
use kogner_tensor::Tensor;
use serde_json::Value;

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

fn fixture_dir(name: &str) -> PathBuf {
    shared().join("fixtures/gliner").join(name)
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array().expect("array").iter().map(|x| x.as_i64().expect("int")).collect()
}

/// The fixture batch as model inputs, from expected.json.
fn inputs(exp: &Value, class_token: i64) -> (EncoderInputs, HeadInputs, Vec<Vec<i64>>) {
    let ids: Vec<Vec<i64>> = exp["input_ids"].as_array().unwrap().iter().map(ints).collect();
    let masks: Vec<Vec<i64>> = exp["attention_mask"].as_array().unwrap().iter().map(ints).collect();
    let wmask: Vec<Vec<i64>> = exp["words_mask"].as_array().unwrap().iter().map(ints).collect();
    let lengths: Vec<usize> = ints(&exp["text_lengths"]).iter().map(|&v| v as usize).collect();
    let (b, t) = (ids.len(), ids[0].len());
    let n = *lengths.iter().max().unwrap();
    // the fixtures pool first sub-tokens: a one-token range at each
    let word_tokens = wmask
        .iter()
        .map(|wm| {
            let mut slots = vec![None; n];
            for (tok, &j) in wm.iter().enumerate() {
                if j > 0 {
                    slots[j as usize - 1] = Some(tok..tok + 1);
                }
            }
            slots
        })
        .collect();
    let ent_positions = ids.iter().map(|row| row.iter().enumerate().filter(|(_, &x)| x == class_token).map(|(p, _)| p).collect()).collect();
    let enc = EncoderInputs {
        input_ids: Tensor::from_vec(ids.concat(), &[b, t]).unwrap(),
        attention_mask: Tensor::from_vec(masks.concat().iter().map(|&m| m as f32).collect::<Vec<_>>(), &[b, t]).unwrap(),
    };
    (enc, HeadInputs { word_tokens, text_lengths: lengths, ent_positions, word_shapes: Vec::new() }, masks)
}

/// Compare `got` [B, L, ...] with the stored prefix of `want` where `keep(b, l)`.
fn compare(name: &str, got: &Tensor, want: &Tensor, keep: &dyn Fn(usize, usize) -> bool) -> f64 {
    let (gs, ws) = (got.shape().to_vec(), want.shape().to_vec());
    assert_eq!(gs.len(), ws.len(), "{name}: rank");
    assert_eq!(gs[0], ws[0], "{name}: batch");
    assert_eq!(&gs[2..], &ws[2..], "{name}: trailing dims");
    let inner: usize = ws[2..].iter().product();
    let g = got.to_f64_vec().unwrap();
    let w = want.to_f64_vec().unwrap();
    let mut worst = 0f64;
    let mut compared = 0usize;
    for b in 0..ws[0] {
        for l in 0..ws[1].min(gs[1]) {
            if !keep(b, l) {
                continue;
            }
            for e in 0..inner {
                let (x, y) = (g[(b * gs[1] + l) * inner + e], w[(b * ws[1] + l) * inner + e]);
                let err = (x - y).abs() / y.abs().max(1.0);
                worst = worst.max(err);
                compared += 1;
                assert!(err <= 1e-4, "{name}[{b}, {l}, elem {e}]: got {x}, want {y}");
            }
        }
    }
    assert!(compared > 0, "{name}: nothing compared");
    worst
}

fn run_parity(model: &Gliner, dir: &Path, encoder_layers: usize) {
    let exp: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let want = SafeTensorsFile::open(dir.join("expected.safetensors")).unwrap();
    let (enc, head, masks) = inputs(&exp, model.config.class_token_index as i64);
    let out = no_grad(|| model.forward(&enc, &head, &Mode::inference())).unwrap();
    let lengths = head.text_lengths.clone();
    let tok = |b: usize, l: usize| masks[b][l] == 1;
    let word = |b: usize, l: usize| l < lengths[b];
    let mut report = vec![];
    report.push(("encoder.embeddings", compare("encoder.embeddings", &out.encoder.hidden_states[0].value(), &want.get("encoder.embeddings").unwrap(), &tok)));
    for l in 0..encoder_layers {
        let name = format!("encoder.layer.{l}");
        let e = compare(&name, &out.encoder.hidden_states[l + 1].value(), &want.get(&name).unwrap(), &tok);
        report.push(("encoder.layer", e));
    }
    if want.contains("token_reps") {
        report.push(("token_reps", compare("token_reps", &out.head.token_reps.value(), &want.get("token_reps").unwrap(), &tok)));
    }
    if want.contains("encoder.rel_embeddings_ln") {
        // checked indirectly through every layer (the table feeds each one)
    }
    let h = &out.head;
    report.push(("words_embedding", compare("words_embedding", &h.words_embedding.value(), &want.get("words_embedding").unwrap(), &word)));
    report.push(("lstm_output", compare("lstm_output", &h.lstm_output.value(), &want.get("lstm_output").unwrap(), &word)));
    report.push(("prompts_before", compare("prompts_before", &h.prompts_before.value(), &want.get("prompts_before").unwrap(), &|_, _| true)));
    report.push(("prompts_after", compare("prompts_after", &h.prompts_after.value(), &want.get("prompts_after").unwrap(), &|_, _| true)));
    report.push(("span.start_rep", compare("span.start_rep", &h.start_rep.value(), &want.get("span.start_rep").unwrap(), &word)));
    report.push(("span.end_rep", compare("span.end_rep", &h.end_rep.value(), &want.get("span.end_rep").unwrap(), &word)));
    let k = model.config.max_width;
    let span_ok = |b: usize, l: usize, w: usize| l + w < lengths[b];
    // span-level tensors [B, N, K, …]: keep rows whose (word, width) is a valid span
    let flat = |t: &Tensor| {
        let s = t.shape().to_vec();
        t.reshape(&[s[0], s[1] * s[2], s[3..].iter().product()]).unwrap()
    };
    let span_keep = |b: usize, l: usize| span_ok(b, l / k, l % k);
    // inference forms no span representations; compute them as training does
    let span_reps = model.head.span_reps(&h.start_rep, &h.end_rep, &lengths, &Mode::inference()).unwrap();
    report.push(("span_reps", compare("span_reps", &flat(&span_reps.value()), &flat(&want.get("span_reps").unwrap()), &span_keep)));
    assert!(h.span_reps.is_none(), "inference takes the fast path");
    // the training path's logits (span reps · prompts) agree as well
    let sr = span_reps.value();
    let (b, n, d) = (sr.shape()[0], sr.shape()[1], sr.shape()[3]);
    let train_logits = sr.reshape(&[b, n * k, d]).unwrap().matmul(&h.prompts_after.value().transpose(-2, -1).unwrap()).unwrap();
    report.push(("logits (span-rep path)", compare("logits (span-rep path)", &train_logits, &flat(&want.get("logits").unwrap()), &span_keep)));
    report.push(("logits", compare("logits", &flat(&h.logits.value()), &flat(&want.get("logits").unwrap()), &span_keep)));
    let probs = h.logits.value().sigmoid().unwrap();
    report.push(("probs", compare("probs", &flat(&probs), &flat(&want.get("probs").unwrap()), &span_keep)));
    eprintln!("{}: worst relative error per tensor: {report:?}", dir.display());
}

#[test]
fn deberta_tiny_matches_gliner() {
    let dir = fixture_dir("deberta-tiny");
    let model = Gliner::load(&dir).unwrap();
    run_parity(&model, &dir, 2);
}

/// The inference model (weights packed once for the GEMM) gives the
/// unpacked model's hidden states and logits bit for bit, and refuses gradients.
#[test]
fn packed_model_gives_the_same_bits() {
    let dir = fixture_dir("deberta-tiny");
    let exp: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let plain = Gliner::load(&dir).unwrap();
    let mut packed = Gliner::load(&dir).unwrap();
    packed.pack_for_inference().unwrap();
    assert_eq!(packed.params.len(), 0, "the store lets go of the unpacked weights");
    let (enc, head, _) = inputs(&exp, plain.config.class_token_index as i64);
    let run = |m: &Gliner| no_grad(|| m.forward(&enc, &head, &Mode::inference())).unwrap();
    let (a, b) = (run(&plain), run(&packed));
    let bits = |v: &kogner_autograd::Var| v.value().to_vec::<f32>().unwrap().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(a.encoder.hidden_states.len(), b.encoder.hidden_states.len());
    for (x, y) in a.encoder.hidden_states.iter().zip(&b.encoder.hidden_states) {
        assert_eq!(bits(x), bits(y));
    }
    assert_eq!(bits(&a.head.logits), bits(&b.head.logits));
    run_parity(&packed, &dir, 2);
    // With gradients on, the packed layers refuse instead of silently not training.
    // (The embeddings are still parameters, so the first layer's input needs a gradient.)
    let err = packed.forward(&enc, &head, &Mode::inference()).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("packed for inference"), "{err}");
}

#[test]
fn deberta_tiny_bin_loads_the_same_weights() {
    let a = Gliner::load(&fixture_dir("deberta-tiny")).unwrap();
    let b = Gliner::load(&fixture_dir("deberta-tiny-bin")).unwrap();
    assert_eq!(a.params.len(), b.params.len());
    for (name, v) in a.params.iter() {
        let w = b.params.var(name).unwrap();
        assert_eq!(v.value().to_vec::<f32>().unwrap(), w.value().to_vec::<f32>().unwrap(), "{name}");
    }
    run_parity(&b, &fixture_dir("deberta-tiny"), 2);
}

#[test]
fn minilm_matches_gliner() {
    let dir = fixture_dir("minilm");
    let tensors: HashMap<String, Tensor> = assemble_minilm_fixture(&shared()).unwrap().into_iter().collect();
    let config = GlinerConfig::from_file(&dir.join("gliner_config.json")).unwrap();
    let model = Gliner::from_source(config, Box::new(TensorMap { name: "assembled minilm fixture".into(), tensors })).unwrap();
    run_parity(&model, &dir, 6);
}

#[test]
fn split_span_ffn_equals_literal_concatenation() {
    // The fast path splits out_project.0 over [ReLU(start); ReLU(end)]; it must
    // equal GLiNER's literal concatenate-then-FFN on every span, valid or not.
    let model = Gliner::load(&fixture_dir("deberta-tiny")).unwrap();
    let d = model.config.hidden_size;
    let (b, n) = (3, 7);
    let start = kogner_autograd::Var::constant(kogner_autograd::gradcheck::random_tensor(&[b, n, d], 11, -1.0, 1.0).to_dtype(kogner_tensor::DType::F32).unwrap());
    let end = kogner_autograd::Var::constant(kogner_autograd::gradcheck::random_tensor(&[b, n, d], 12, -1.0, 1.0).to_dtype(kogner_tensor::DType::F32).unwrap());
    let lengths = [7, 3, 1];
    let mode = Mode::inference();
    let fast = model.head.span_reps(&start, &end, &lengths, &mode).unwrap().value().to_vec::<f32>().unwrap();
    let literal = model.head.span_reps_literal(&start, &end, &lengths, &mode).unwrap().value().to_vec::<f32>().unwrap();
    assert_eq!(fast.len(), b * n * model.config.max_width * d);
    for (i, (x, y)) in fast.iter().zip(&literal).enumerate() {
        assert!((x - y).abs() <= 1e-5 * y.abs().max(1.0), "element {i}: fast {x} vs literal {y}");
    }
}

/// The whole pipeline (words, tokenizer, batching, model, decoding) on the
/// fixture texts reproduces GLiNER's entities in all four decoding modes,
/// with batches run in turn or concurrently.
fn pipeline_matches(name: &str, model: Gliner) {
    use kogner_models::gliner::decode::DecodeMode;
    use kogner_models::gliner::pipeline::{Document, PredictOptions, Predictor};
    use kogner_models::gliner::processor::GlinerProcessor;
    let dir = fixture_dir(name);
    let exp: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let predictor = Predictor { model, ensemble: Vec::new(), processor: GlinerProcessor::from_dir(&dir).unwrap() };
    let texts: Vec<String> = exp["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
    let labels: Vec<String> = exp["labels"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
    let docs: Vec<Document> = texts.iter().map(|t| Document { text: t, labels: &labels }).collect();
    for (key, mode) in [("flat", DecodeMode::FLAT), ("nested", DecodeMode::NESTED), ("flat_multi", DecodeMode::FLAT_MULTI), ("nested_multi", DecodeMode::NESTED_MULTI)] {
        // One thread: batches in turn; three: batches run concurrently.
        for (batch_size, threads) in [(1, 1), (1, 3), (3, 1), (3, 3)] {
            let opts = PredictOptions { threshold: exp["threshold"].as_f64().unwrap() as f32, mode, batch_size };
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let got = pool.install(|| predictor.predict(&docs, &opts, |_| {})).unwrap();
            let want = exp["decoded"][key].as_array().unwrap();
            for (d, (g, w)) in got.iter().zip(want).enumerate() {
                let w = w.as_array().unwrap();
                assert_eq!(g.len(), w.len(), "{name} {key} text {d}: {} entities, GLiNER {}", g.len(), w.len());
                for (e, we) in g.iter().zip(w) {
                    assert_eq!((e.start as i64, e.end as i64), (we["start"].as_i64().unwrap(), we["end"].as_i64().unwrap()), "{name} {key} text {d}");
                    assert_eq!(e.label, we["label"].as_str().unwrap());
                    assert_eq!(e.text, we["text"].as_str().unwrap());
                    assert!((e.score as f64 - we["score"].as_f64().unwrap()).abs() < 1e-4, "{name} {key} text {d}: score {} vs {}", e.score, we["score"]);
                }
            }
        }
    }
}

#[test]
fn deberta_tiny_pipeline_matches_gliner_entities() {
    pipeline_matches("deberta-tiny", Gliner::load(&fixture_dir("deberta-tiny")).unwrap());
    // As `kogner predict` runs it: weights packed for inference.
    let mut packed = Gliner::load(&fixture_dir("deberta-tiny")).unwrap();
    packed.pack_for_inference().unwrap();
    pipeline_matches("deberta-tiny", packed);
}

#[test]
fn minilm_pipeline_matches_gliner_entities() {
    let tensors: HashMap<String, Tensor> = assemble_minilm_fixture(&shared()).unwrap().into_iter().collect();
    let config = GlinerConfig::from_file(&fixture_dir("minilm").join("gliner_config.json")).unwrap();
    let model = Gliner::from_source(config, Box::new(TensorMap { name: "assembled minilm fixture".into(), tensors })).unwrap();
    pipeline_matches("minilm", model);
}

#[test]
fn long_document_is_windowed_without_loss_or_duplicates() {
    use kogner_models::gliner::decode::DecodeMode;
    use kogner_models::gliner::pipeline::{Document, PredictOptions, Predictor};
    let dir = fixture_dir("deberta-tiny");
    let exp: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let texts: Vec<&str> = exp["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    let labels: Vec<String> = exp["labels"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
    // ≥ 5,000 words: the fixture texts repeated
    let mut doc = String::new();
    while doc.split_whitespace().count() < 5000 {
        for t in &texts {
            doc.push_str(t);
            doc.push(' ');
        }
    }
    let predictor = Predictor::load(&dir).unwrap();
    for mode in [DecodeMode::FLAT, DecodeMode::NESTED] {
        let opts = PredictOptions { threshold: 0.5, mode, batch_size: 4 };
        let got = predictor.predict(&[Document { text: &doc, labels: &labels }], &opts, |_| {}).unwrap().remove(0);
        let chars: Vec<char> = doc.chars().collect();
        let mut seen = std::collections::HashSet::new();
        for e in &got {
            assert!(seen.insert((e.start, e.end, e.label.clone())), "duplicate {e:?}");
            assert_eq!(e.text, chars[e.start..e.end].iter().collect::<String>());
        }
        assert!(got.windows(2).all(|w| w[0].start <= w[1].start), "sorted by start");
        if mode == DecodeMode::FLAT {
            assert!(got.windows(2).all(|w| w[0].end <= w[1].start), "flat entities never overlap");
        }
        // entities come from the whole document, not only the first window
        let last = got.iter().map(|e| e.end).max().unwrap();
        assert!(last > chars.len() * 9 / 10, "last entity ends at {last} of {}", chars.len());
    }
}
