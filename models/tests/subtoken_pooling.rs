//! `subtoken_pooling` on the deberta-tiny fixture: the batch's sub-token
//! ranges tile each word's sub-tokens; `first` is GLiNER's pooling bit for
//! bit, `last` reads the range's last sub-token, `mean` averages the range
//! and spreads a word's gradient evenly over its sub-tokens.

use std::path::{Path, PathBuf};

use kogner_autograd::{no_grad, Var};
use kogner_models::builder::{open_weights, weight_file, ParamBuilder};
use kogner_models::config::{GlinerConfig, SubtokenPooling};
use kogner_models::gliner::head::HeadInputs;
use kogner_models::gliner::model::{EncoderInputs, Gliner};
use kogner_models::gliner::pipeline::{model_inputs, Predictor};
use kogner_models::gliner::processor::{BatchItem, GlinerBatch};
use kogner_models::gliner::words::split_words;
use kogner_models::nn::Mode;
use serde_json::{json, Value};

fn tiny_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/gliner/deberta-tiny")
}

fn with_pooling(pooling: SubtokenPooling) -> Gliner {
    let dir = tiny_dir();
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("gliner_config.json")).unwrap()).unwrap();
    v["subtoken_pooling"] = json!(pooling.name());
    let config = GlinerConfig::from_value(&v, "test config").unwrap();
    let source = open_weights(&weight_file(&dir).unwrap()).unwrap();
    Gliner::build(config, &ParamBuilder::from_source_or_random(source, 0)).unwrap()
}

/// Two texts of different lengths (the second leaves empty word slots),
/// with words the tokenizer cuts into several pieces.
fn batch(predictor: &Predictor) -> (GlinerBatch, EncoderInputs, HeadInputs) {
    let labels = vec!["disease".to_string(), "gene".to_string()];
    let words = [split_words("Adenomatous polyposis coli and BRCA1-associated hypercholesterolaemia."), split_words("Pendred syndrome.")];
    let items: Vec<BatchItem> = words.iter().map(|w| BatchItem { words: w, labels: &labels }).collect();
    let batch = predictor.processor.encode(&items).unwrap();
    let (enc, head) = model_inputs(&batch).unwrap();
    (batch, enc, head)
}

#[test]
fn ranges_tile_each_words_sub_tokens_and_start_at_words_mask() {
    let predictor = Predictor::load(&tiny_dir()).unwrap();
    let (batch, _, head) = batch(&predictor);
    let t = batch.seq_len;
    let mut multi_piece = 0;
    for (b, slots) in head.word_tokens.iter().enumerate() {
        let n = head.text_lengths[b];
        let ranges: Vec<_> = slots[..n].iter().map(|r| r.clone().expect("every word has sub-tokens")).collect();
        assert!(slots[n..].iter().all(Option::is_none), "padding slots stay empty");
        // consecutive, no gap: the text's sub-tokens run from the first word to the last
        for pair in ranges.windows(2) {
            assert_eq!(pair[0].end, pair[1].start, "example {b}: {ranges:?}");
        }
        let real = batch.attention_mask[b * t..(b + 1) * t].iter().filter(|&&m| m == 1).count();
        assert_eq!(ranges[n - 1].end, real - 1, "example {b}: the last word ends before the closing special token");
        for (j, r) in ranges.iter().enumerate() {
            assert_eq!(batch.words_mask[b * t + r.start], j as i64 + 1, "example {b} word {j} starts at its words_mask entry");
            assert!(r.clone().skip(1).all(|tok| batch.words_mask[b * t + tok] == 0));
            multi_piece += (r.len() > 1) as usize;
        }
    }
    assert!(multi_piece >= 3, "the texts have words of several sub-tokens ({multi_piece})");
}

#[test]
fn first_is_gliners_pooling_and_last_and_mean_read_the_range() {
    let plain = Predictor::load(&tiny_dir()).unwrap();
    let (_, enc, head) = batch(&plain);
    let run = |m: &Gliner| no_grad(|| m.forward(&enc, &head, &Mode::inference())).unwrap().head;
    let bits = |v: &Var| v.value().to_vec::<f32>().unwrap().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let base = run(&plain.model);
    let first = run(&with_pooling(SubtokenPooling::First));
    assert_eq!(bits(&first.logits), bits(&base.logits), "first is the fixture's pooling");

    let tokens = base.token_reps.value().to_vec::<f32>().unwrap();
    let (t, d, n) = (base.token_reps.shape()[1], base.token_reps.shape()[2], head.num_words());
    for pooling in [SubtokenPooling::Last, SubtokenPooling::Mean] {
        let words = run(&with_pooling(pooling)).words_embedding.value().to_vec::<f32>().unwrap();
        for (b, slots) in head.word_tokens.iter().enumerate() {
            for j in 0..n {
                for e in 0..d {
                    let want = match slots.get(j).cloned().flatten() {
                        None => 0.0,
                        Some(r) if pooling == SubtokenPooling::Last => tokens[(b * t + r.end - 1) * d + e] as f64,
                        Some(r) => r.clone().map(|tok| tokens[(b * t + tok) * d + e] as f64).sum::<f64>() / r.len() as f64,
                    };
                    let got = words[(b * n + j) * d + e] as f64;
                    assert!((got - want).abs() <= 1e-5 * (1.0 + want.abs()), "{pooling:?}: example {b} word {j} elem {e}: {got} vs {want}");
                }
            }
        }
    }
}

/// d/d token of Σ words ⊙ R is R[word] / len at each of the word's sub-tokens
/// and 0 at every other token (prompt, specials, padding).
#[test]
fn mean_spreads_a_words_gradient_over_its_sub_tokens() {
    let plain = Predictor::load(&tiny_dir()).unwrap();
    let mut model = with_pooling(SubtokenPooling::Mean);
    let (_, enc, head) = batch(&plain);
    // the head from a leaf copy of its projected token vectors (projection
    // applied here, then taken out of the head)
    let encoder_out = no_grad(|| {
        let hidden = model.encoder.forward(&enc.input_ids, &enc.attention_mask, &Mode::inference())?;
        model.head.projection.as_ref().expect("deberta-tiny projects into the head's width").forward(hidden.last())
    })
    .unwrap()
    .value();
    model.head.projection = None;
    let leaf = Var::leaf(encoder_out.clone());
    let out = model.head.forward(&leaf, &head, &Mode::inference()).unwrap();
    let shape = out.words_embedding.shape();
    let (n, d, t) = (shape[1], shape[2], encoder_out.shape()[1]);
    let weights = kogner_autograd::gradcheck::random_tensor(&shape, 3, -1.0, 1.0).to_dtype(kogner_tensor::DType::F32).unwrap();
    let loss = out.words_embedding.mul(&Var::constant(weights.clone())).unwrap().sum_all().unwrap();
    let grad = loss.backward().unwrap().get(&leaf).unwrap().to_vec::<f32>().unwrap();
    let r = weights.to_vec::<f32>().unwrap();
    let mut want = vec![0f64; grad.len()];
    for (b, slots) in head.word_tokens.iter().enumerate() {
        for (j, range) in slots.iter().enumerate() {
            let Some(range) = range else { continue };
            for tok in range.clone() {
                for e in 0..d {
                    want[(b * t + tok) * d + e] = r[(b * n + j) * d + e] as f64 / range.len() as f64;
                }
            }
        }
    }
    for (i, (&g, &w)) in grad.iter().zip(&want).enumerate() {
        assert!((g as f64 - w).abs() <= 1e-6, "token row {} elem {}: {g} vs {w}", i / d, i % d);
    }
}
