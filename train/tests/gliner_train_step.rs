//! Parity with GLiNER's own training step on the `deberta-tiny` fixture
//! (`shared/fixtures/gliner/deberta-tiny/train.json` + `train.safetensors`):
//! batch → targets → training forward (dropout 0) → GLiNER's loss →
//! backward → every gradient → clipping → one AdamW step → every parameter.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use kogner_autograd::ops::loss::{gliner_span_loss, Reduction};
use kogner_autograd::Grads;
use kogner_models::builder::open_weights;
use kogner_models::config::GlinerConfig;
use kogner_models::gliner::model::Gliner;
use kogner_models::gliner::pipeline::model_inputs;
use kogner_models::gliner::processor::{BatchItem, GlinerProcessor};
use kogner_models::gliner::words::Word;
use kogner_models::nn::Mode;
use kogner_tensor::safetensors_io::SafeTensorsFile;
use kogner_tensor::{DType, Tensor};
use kogner_train::student::targets::{loss_mask, negative_mask, smooth_targets, span_targets, NegativeMasking};
use kogner_train::optim::{clip_grad_norm, gliner_param_groups, AdamW, AdamWConfig, GlinerGroupHyper, Schedule};
use serde_json::Value;

const WORD_EMB: &str = "token_rep_layer.bert_layer.model.embeddings.word_embeddings.weight";

fn fixture_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/gliner/deberta-tiny"))
}

fn train_json() -> Value {
    let path = fixture_dir().join("train.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {} missing: {e}", path.display()));
    serde_json::from_str(&text).expect("train.json is JSON")
}

/// A record's pre-split words, placed in a text joined by single spaces.
fn words_of(tokens: &[Value]) -> Vec<Word> {
    let mut out = Vec::new();
    let (mut chars, mut bytes) = (0usize, 0usize);
    for t in tokens {
        let text = t.as_str().expect("word").to_string();
        let (nc, nb) = (text.chars().count(), text.len());
        out.push(Word { text, start: chars, end: chars + nc, byte_start: bytes, byte_end: bytes + nb });
        chars += nc + 1;
        bytes += nb + 1;
    }
    out
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().expect("array").iter().map(|s| s.as_str().expect("string").to_string()).collect()
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array().expect("array").iter().flat_map(|x| if x.is_array() { ints(x) } else { vec![x.as_i64().expect("int")] }).collect()
}

/// Each record's gold spans `(first word, last word, label)`.
fn record_spans(records: &[Value]) -> Vec<Vec<(usize, usize, String)>> {
    records
        .iter()
        .map(|rec| {
            rec["ner"]
                .as_array()
                .expect("ner")
                .iter()
                .map(|span| {
                    let word = |i: usize| span[i].as_u64().expect("word index") as usize;
                    (word(0), word(1), span[2].as_str().expect("label").to_string())
                })
                .collect()
        })
        .collect()
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.contiguous().expect("contiguous").to_vec::<f32>().expect("f32")
}

/// Worst `|got − want|`, worst `|got − want| / (atol + rtol·|want|)` (≤ 1
/// passes) and worst `max|got − want| / max|want|` of one tensor.
#[derive(Default, Clone, Copy, Debug)]
struct Worst {
    abs: f64,
    ratio: f64,
    of_max: f64,
}

fn max_abs(v: &[f32]) -> f64 {
    v.iter().fold(0f64, |a, &x| a.max((x as f64).abs()))
}

fn compare(what: &str, got: &[f32], want: &[f32], atol: f64, rtol: f64, worst: &mut Worst) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = (g as f64 - w as f64).abs();
        let r = d / (atol + rtol * (w as f64).abs());
        assert!(r <= 1.0, "{what}[{i}]: got {g}, want {w} (|diff| {d:e} > {atol:e} + {rtol:e}·|want|)");
        worst.abs = worst.abs.max(d);
        worst.ratio = worst.ratio.max(r);
    }
    let md = got.iter().zip(want).fold(0f64, |a, (&g, &w)| a.max((g as f64 - w as f64).abs()));
    worst.of_max = worst.of_max.max(md / max_abs(want).max(f64::MIN_POSITIVE));
}

/// Elements further than one f32 ulp (of `want`) from `want`.
fn beyond_one_ulp(got: &[f32], want: &[f32]) -> usize {
    got.iter()
        .zip(want)
        .filter(|(&g, &w)| {
            let a = w.abs();
            let ulp = f32::from_bits(a.to_bits() + 1) - a;
            (g - w).abs() > ulp
        })
        .count()
}

/// Rows `rows` of a `[V, H]` tensor.
fn gather_rows(full: &[f32], h: usize, rows: &[i64]) -> Vec<f32> {
    rows.iter().flat_map(|&r| full[r as usize * h..(r as usize + 1) * h].iter().copied()).collect()
}

#[test]
fn gliner_training_step_matches_torch() {
    let dir = fixture_dir();
    let spec = train_json();
    let fx = SafeTensorsFile::open(dir.join("train.safetensors")).expect("fixture train.safetensors");

    // Model with every dropout at 0 (the fixture sets p = 0 on all 13 Dropout modules).
    let mut config = GlinerConfig::from_file(&dir.join("gliner_config.json")).expect("config");
    config.dropout = 0.0;
    let dims = config.encoder.dims_mut();
    dims.hidden_dropout = 0.0;
    dims.attention_dropout = 0.0;
    let model = Gliner::from_source(config, open_weights(&dir.join("model.safetensors")).expect("weights")).expect("model");
    let processor = GlinerProcessor::from_dir(&dir).expect("processor");

    // The batch: each record's words and its fixed label set.
    let records = spec["examples"].as_array().expect("examples").clone();
    let words: Vec<Vec<Word>> = records.iter().map(|r| words_of(r["tokenized_text"].as_array().expect("words"))).collect();
    let labels: Vec<Vec<String>> = records.iter().map(|r| strings(&r["ner_labels"])).collect();
    let items: Vec<BatchItem> = words.iter().zip(&labels).map(|(w, l)| BatchItem { words: w, labels: l }).collect();
    let batch = processor.encode(&items).expect("encode");
    assert_eq!(batch.input_ids, ints(&spec["input_ids"]), "input_ids");
    assert_eq!(batch.attention_mask, ints(&spec["attention_mask"]), "attention_mask");
    assert_eq!(batch.words_mask, ints(&spec["words_mask"]), "words_mask");
    assert_eq!(batch.span_idx, ints(&spec["span_idx"]), "span_idx");
    let want_span_mask: Vec<bool> = ints(&spec["span_mask"]).into_iter().map(|m| m != 0).collect();
    assert_eq!(batch.span_mask, want_span_mask, "span_mask");
    for (b, map) in spec["classes_to_id"].as_array().expect("classes_to_id").iter().enumerate() {
        for (label, id) in map.as_object().expect("map") {
            assert_eq!(batch.labels[b][id.as_u64().expect("id") as usize - 1], *label, "class ids of example {b}");
        }
    }
    let (b, w, k, c) = (batch.batch_size, batch.num_words, batch.max_width, batch.num_classes);

    let spans = record_spans(&records);
    let span_refs: Vec<&[(usize, usize, String)]> = spans.iter().map(Vec::as_slice).collect();
    let targets = span_targets(&batch, &span_refs).expect("targets");
    assert_eq!(f32s(&targets), f32s(&fx.get_as("labels", &[b, w * k, c], DType::F32).expect("labels")), "targets");

    // Training forward, logits.
    let (enc, head) = model_inputs(&batch).expect("inputs");
    let mode = Mode::training(0);
    let out = model.forward(&enc, &head, &mode).expect("forward");
    let logits = &out.head.logits;
    // Every logit of a real label (invalid spans included). Padded label
    // slots (examples with fewer than C labels) differ: GLiNER and kogner
    // fill the padded prompt embedding differently, and the loss masks them.
    let mask = loss_mask(&batch).expect("mask");
    let keep: Vec<bool> = (0..b * w * k * c).map(|i| batch.prompts_embedding_mask[(i / (w * k * c)) * c + i % c]).collect();
    let masked = |v: Vec<f32>| -> Vec<f32> { v.into_iter().zip(&keep).filter(|(_, &k)| k).map(|(x, _)| x).collect() };
    let want_logits = f32s(&fx.get_as("logits", &[b, w, k, c], DType::F32).expect("logits"));
    let mut worst_logit = Worst::default();
    compare("logits (real labels)", &masked(f32s(&logits.value())), &masked(want_logits), 5e-5, 1e-4, &mut worst_logit);

    // GLiNER's loss: clamped-probability BCE, alpha −1 / gamma 0 (no focal
    // weighting), masking 'global' with negatives 1.0 keeps everything,
    // × span mask × label mask, summed.
    let kw = &spec["loss"]["kwargs"];
    assert_eq!((kw["alpha"].as_f64(), kw["gamma"].as_f64(), kw["reduction"].as_str()), (Some(-1.0), Some(0.0), Some("sum")));
    assert_eq!((kw["masking"].as_str(), kw["negatives"].as_f64(), kw["label_smoothing"].as_f64()), (Some("global"), Some(1.0), Some(0.0)));
    // The same settings through kogner's negative sampling and smoothing (which must then change nothing).
    let masking: NegativeMasking = kw["masking"].as_str().expect("masking").parse().expect("masking");
    let mask = mask.mul(&negative_mask(&targets, masking, 1.0, &vec![7; b]).expect("negative mask")).expect("mask");
    let targets = smooth_targets(&targets, 0.0).expect("smoothing");
    let loss = gliner_span_loss(logits, &targets, Some(&mask), Reduction::Sum, None).expect("loss");
    let got_loss = loss.value().to_scalar().expect("scalar");
    let want_loss = spec["loss"]["value"].as_f64().expect("loss value");
    let loss_rel = (got_loss - want_loss).abs() / want_loss;
    assert!(loss_rel < 1e-5, "loss {got_loss} vs {want_loss}");

    // Backward: every gradient (the word-embedding gradient only in the listed rows, zero elsewhere).
    let mut grads: Grads = loss.backward().expect("backward");
    let rows = fx.get(&format!("rows.{WORD_EMB}")).expect("rows").to_vec::<i64>().expect("i64 rows");
    let fixture_params: BTreeSet<String> =
        fx.names().into_iter().filter_map(|n| n.strip_prefix("grad.").map(str::to_string)).collect();
    let model_params: BTreeSet<String> = model.params.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(model_params, fixture_params, "parameter names");
    // Gradients: f32 sums over many terms in a different order than torch;
    // errors scale with the tensor's largest gradient (measured ≤ 5.1e-6 of it).
    let grad_tol = |want: &[f32]| 1e-4 * max_abs(want);
    let mut worst_grad = Worst::default();
    let mut pre: BTreeMap<String, Tensor> = BTreeMap::new();
    for (name, var) in model.params.iter() {
        pre.insert(name.clone(), var.value());
        let g = grads.get(var).unwrap_or_else(|| panic!("no gradient for {name}"));
        let g = f32s(g);
        let want = fx.get(&format!("grad.{name}")).expect("grad");
        if name == WORD_EMB {
            let hdim = var.shape()[1];
            let mut other = g.clone();
            for &r in &rows {
                other[r as usize * hdim..(r as usize + 1) * hdim].iter_mut().for_each(|x| *x = 0.0);
            }
            assert!(other.iter().all(|&x| x == 0.0), "word-embedding gradient outside the fixture's rows");
            let want = f32s(&want);
            compare(&format!("grad.{name}"), &gather_rows(&g, hdim, &rows), &want, grad_tol(&want), 1e-3, &mut worst_grad);
        } else {
            let want = f32s(&want);
            compare(&format!("grad.{name}"), &g, &want, grad_tol(&want), 1e-3, &mut worst_grad);
        }
    }

    // Clipping.
    let opt_spec = &spec["optimizer"];
    let hp = &opt_spec["hyperparameters"];
    let clip = clip_grad_norm(&mut grads, hp["max_grad_norm"].as_f64().expect("max_grad_norm")).expect("clip");
    let want_norm = opt_spec["grad_total_norm_before_clip"].as_f64().expect("norm");
    let want_coef = opt_spec["clip_coef"].as_f64().expect("coef");
    let norm_rel = (clip.total_norm - want_norm).abs() / want_norm;
    let coef_rel = (clip.coef - want_coef).abs() / want_coef;
    assert!(norm_rel < 1e-4 && coef_rel < 1e-4, "clip: norm {} vs {want_norm}, coef {} vs {want_coef}", clip.total_norm, clip.coef);

    // GLiNER's parameter groups, exactly as the fixture lists them.
    let hyper = GlinerGroupHyper {
        encoder_lr: hp["learning_rate"].as_f64().expect("lr"),
        encoder_weight_decay: hp["weight_decay"].as_f64().expect("wd"),
        head_lr: hp["others_lr"].as_f64().expect("others_lr"),
        head_weight_decay: hp["others_weight_decay"].as_f64().expect("others_wd"),
    };
    let groups = gliner_param_groups(&model.params, &hyper);
    let want_groups = opt_spec["param_groups"].as_array().expect("param_groups");
    assert_eq!(groups.len(), want_groups.len(), "group count");
    for (i, (got, want)) in groups.iter().zip(want_groups).enumerate() {
        assert_eq!(got.lr, want["lr"].as_f64().expect("lr"), "group {i} lr");
        assert_eq!(got.weight_decay, want["weight_decay"].as_f64().expect("wd"), "group {i} weight decay");
        let got_names: BTreeSet<&String> = got.params.iter().collect();
        let want_names = strings(&want["params"]);
        assert_eq!(got_names, want_names.iter().collect::<BTreeSet<_>>(), "group {i} parameters");
    }

    // One AdamW step at the constant schedule's factor.
    let d = &opt_spec["defaults"];
    let betas = d["betas"].as_array().expect("betas");
    let cfg = AdamWConfig { beta1: betas[0].as_f64().expect("b1"), beta2: betas[1].as_f64().expect("b2"), eps: d["eps"].as_f64().expect("eps") };
    let mut opt = AdamW::new(groups.clone(), cfg).expect("optimiser");
    opt.step(&model.params, &grads, Schedule::Constant.factor(0)).expect("step");

    let mut worst_post = Worst::default();
    // One step moves a weight by about lr (≤ 5e-5); where a clipped gradient
    // is near eps the step lr·g/(|g| + eps) magnifies its relative error.
    // Nearly every element is within one ulp (which also pins the decay
    // factor, ≈ 4 ulps of a head weight).
    let (post_atol, post_rtol) = (2e-6, 0.0);
    let (mut post_off, mut post_total) = (0usize, 0usize);
    for (name, var) in model.params.iter() {
        let got = f32s(&var.value());
        let want = f32s(&fx.get(&format!("post.{name}")).expect("post"));
        if name == WORD_EMB {
            let hdim = var.shape()[1];
            let got_rows = gather_rows(&got, hdim, &rows);
            compare(&format!("post.{name}"), &got_rows, &want, post_atol, post_rtol, &mut worst_post);
            post_off += beyond_one_ulp(&got_rows, &want);
            post_total += want.len();
            let g = groups.iter().find(|g| g.params.contains(name)).expect("group");
            let decay = (1.0 - g.lr * g.weight_decay) as f32;
            let before = f32s(&pre[name]);
            let listed: BTreeSet<usize> = rows.iter().map(|&r| r as usize).collect();
            for (i, (&p, &q)) in got.iter().zip(&before).enumerate() {
                if !listed.contains(&(i / hdim)) {
                    assert_eq!(p, q * decay, "post.{name}[{i}] outside the gradient rows: decay only");
                }
            }
        } else {
            compare(&format!("post.{name}"), &got, &want, post_atol, post_rtol, &mut worst_post);
            post_off += beyond_one_ulp(&got, &want);
            post_total += want.len();
        }
    }
    assert!(post_off * 1000 <= post_total, "{post_off} of {post_total} updated parameters differ from torch by more than one ulp");
    eprintln!(
        "parity: loss {got_loss} (rel {loss_rel:e}); logits max|Δ| {:e} (worst tol ratio {:.3}); grads max|Δ| {:e} (worst tol ratio {:.3}, worst max|Δ|/max|want| per tensor {:e}); \
         norm {} (rel {norm_rel:e}), coef {} (rel {coef_rel:e}); post max|Δ| {:e} (worst tol ratio {:.3}), {post_off} of {post_total} beyond 1 ulp",
        worst_logit.abs, worst_logit.ratio, worst_grad.abs, worst_grad.ratio, worst_grad.of_max, clip.total_norm, clip.coef, worst_post.abs, worst_post.ratio
    );
}
