//! The word-shape table (`word_shape: true`) on the deberta-tiny fixture:
//! a zero table changes nothing, a table adds its row of each word's shape
//! to that word's vector (empty slots stay zero), and its gradient is the
//! sum of its words' gradients and matches finite differences of the loss.

use std::path::{Path, PathBuf};

use kogner_autograd::{no_grad, Var};
use kogner_models::builder::{open_weights, weight_file, ParamBuilder};
use kogner_models::config::GlinerConfig;
use kogner_models::gliner::head::{HeadInputs, WORD_SHAPE_TABLE};
use kogner_models::gliner::model::{EncoderInputs, Gliner};
use kogner_models::gliner::pipeline::{model_inputs, Predictor};
use kogner_models::gliner::processor::BatchItem;
use kogner_models::gliner::word_shape::{word_shape, WORD_SHAPES};
use kogner_models::gliner::words::split_words;
use kogner_models::nn::Mode;
use kogner_tensor::Tensor;
use serde_json::{json, Value};

fn tiny_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/gliner/deberta-tiny")
}

/// deberta-tiny with a (zero) word-shape table.
fn with_table() -> Gliner {
    let dir = tiny_dir();
    let mut v: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("gliner_config.json")).unwrap())
            .unwrap();
    v["word_shape"] = json!(true);
    let config = GlinerConfig::from_value(&v, "test config").unwrap();
    let source = open_weights(&weight_file(&dir).unwrap()).unwrap();
    Gliner::build(config, &ParamBuilder::from_source_or_random(source, 0)).unwrap()
}

/// Two texts of different lengths (so the second has empty word slots).
fn batch(predictor: &Predictor) -> (EncoderInputs, HeadInputs) {
    let labels = vec!["disease".to_string(), "gene".to_string()];
    let words = [
        split_words("BRCA1 and HeLa cells: 2 of T-cell lines (APC) mutated."),
        split_words("Pendred syndrome."),
    ];
    let items: Vec<BatchItem> = words
        .iter()
        .map(|w| BatchItem {
            words: w,
            labels: &labels,
        })
        .collect();
    model_inputs(&predictor.processor.encode(&items).unwrap()).unwrap()
}

fn table_var(model: &Gliner) -> Var {
    model.params.var(WORD_SHAPE_TABLE).unwrap()
}

fn random_table(hidden: usize, seed: u64) -> Tensor {
    kogner_autograd::gradcheck::random_tensor(&[WORD_SHAPES, hidden], seed, -0.5, 0.5)
        .to_dtype(kogner_tensor::DType::F32)
        .unwrap()
}

#[test]
fn inputs_carry_each_words_shape() {
    let plain = Predictor::load(&tiny_dir()).unwrap();
    let (_, head) = batch(&plain);
    let want: Vec<u8> = split_words("Pendred syndrome.")
        .iter()
        .map(|w| word_shape(&w.text))
        .collect();
    assert_eq!(head.word_shapes[1], want);
    assert_eq!(want, vec![2, 1, 8]);
    assert_eq!(head.word_shapes[0].len(), head.text_lengths[0]);
}

#[test]
fn zero_table_changes_nothing_and_a_table_adds_one_row_per_word() {
    let plain = Predictor::load(&tiny_dir()).unwrap();
    let shaped = with_table();
    let (enc, head) = batch(&plain);
    let run = |m: &Gliner| no_grad(|| m.forward(&enc, &head, &Mode::inference())).unwrap();
    let (a, b) = (run(&plain.model), run(&shaped));
    let bits = |v: &Var| {
        v.value()
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        bits(&a.head.logits),
        bits(&b.head.logits),
        "a zero table leaves the logits bit for bit"
    );

    let d = shaped.config.hidden_size;
    let table = random_table(d, 5);
    table_var(&shaped).set_value(table.clone()).unwrap();
    let c = run(&shaped);
    let (base, got, rows) = (
        a.head.words_embedding.value().to_vec::<f32>().unwrap(),
        c.head.words_embedding.value().to_vec::<f32>().unwrap(),
        table.to_vec::<f32>().unwrap(),
    );
    let n = head.num_words();
    for (bi, shapes) in head.word_shapes.iter().enumerate() {
        for j in 0..n {
            for e in 0..d {
                let at = (bi * n + j) * d + e;
                let add = shapes.get(j).map_or(0.0, |&s| rows[s as usize * d + e]);
                assert!(
                    (got[at] - (base[at] + add)).abs() <= 1e-6,
                    "example {bi} word {j} elem {e}: {} vs {} + {add}",
                    got[at],
                    base[at]
                );
            }
        }
    }
    assert_ne!(
        bits(&a.head.logits),
        bits(&c.head.logits),
        "the table reaches the logits"
    );
}

#[test]
fn table_gradient_sums_its_words_gradients_and_matches_finite_differences() {
    let mut model = with_table();
    let d = model.config.hidden_size;
    table_var(&model).set_value(random_table(d, 7)).unwrap();
    let plain = Predictor::load(&tiny_dir()).unwrap();
    let (enc, head) = batch(&plain);
    // loss = Σ logits ⊙ R over a fixed random R
    let logits_shape = no_grad(|| model.forward(&enc, &head, &Mode::inference()))
        .unwrap()
        .head
        .logits
        .shape();
    let r = Var::constant(
        kogner_autograd::gradcheck::random_tensor(&logits_shape, 9, -1.0, 1.0)
            .to_dtype(kogner_tensor::DType::F32)
            .unwrap(),
    );
    // The head from a leaf copy of its projected token vectors (projection
    // applied here, then taken out of the head): a word's vector is that
    // leaf's row at its first sub-token plus its shape row, so
    // d loss / d table[s] is the sum of d loss / d leaf over the rows of the
    // words of shape s.
    let encoder_out = no_grad(|| {
        let hidden =
            model
                .encoder
                .forward(&enc.input_ids, &enc.attention_mask, &Mode::inference())?;
        model
            .head
            .projection
            .as_ref()
            .expect("deberta-tiny projects into the head's width")
            .forward(hidden.last())
    })
    .unwrap()
    .value();
    model.head.projection = None;
    let encoder_leaf = Var::leaf(encoder_out.clone());
    let loss_of = |encoder_out: &Var| {
        model
            .head
            .forward(encoder_out, &head, &Mode::inference())
            .unwrap()
            .logits
            .mul(&r)
            .unwrap()
            .sum_all()
            .unwrap()
    };
    let grads = loss_of(&encoder_leaf).backward().unwrap();
    let g = grads
        .get(&table_var(&model))
        .expect("the table gets a gradient")
        .to_vec::<f32>()
        .unwrap();
    let per_token = grads.get(&encoder_leaf).unwrap().to_vec::<f32>().unwrap();
    let t = encoder_out.shape()[1];
    let mut want = vec![0f64; WORD_SHAPES * d];
    for (bi, shapes) in head.word_shapes.iter().enumerate() {
        for (j, &sh) in shapes.iter().enumerate() {
            let pos = head.word_tokens[bi][j].as_ref().expect("every word has a sub-token").start;
            for e in 0..d {
                want[sh as usize * d + e] += per_token[(bi * t + pos) * d + e] as f64;
            }
        }
    }
    for (i, (&got, &w)) in g.iter().zip(&want).enumerate() {
        assert!(
            (got as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()),
            "table[{}, {}]: {got} vs Σ words {w}",
            i / d,
            i % d
        );
    }
    assert!(
        g[..d].iter().all(|&x| x == 0.0),
        "row 0 (empty slots) gets no gradient"
    );

    // Finite differences (f32 loss of ~200 through ReLUs: a small step, a loose bound).
    let value = || {
        no_grad(|| loss_of(&Var::constant(encoder_out.clone())))
            .value()
            .to_vec::<f32>()
            .unwrap()[0] as f64
    };
    let base = table_var(&model).value().to_vec::<f32>().unwrap();
    let eps = 1e-3f32;
    let mut checked = 0;
    for &s in head
        .word_shapes
        .iter()
        .flatten()
        .collect::<std::collections::BTreeSet<_>>()
    {
        for e in [0, d / 2, d - 1] {
            let at = s as usize * d + e;
            let probe = |delta: f32| {
                let mut t = base.clone();
                t[at] += delta;
                table_var(&model)
                    .set_value(Tensor::from_vec(t, &[WORD_SHAPES, d]).unwrap())
                    .unwrap();
                value()
            };
            let fd = (probe(eps) - probe(-eps)) / (2.0 * eps as f64);
            let an = g[at] as f64;
            assert!(
                (fd - an).abs() <= 5e-2 + 5e-2 * an.abs(),
                "shape {s} elem {e}: finite difference {fd}, gradient {an}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 15, "the texts cover several shapes");
}
