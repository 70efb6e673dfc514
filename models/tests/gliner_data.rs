//! Data side of GLiNER inference against the fixtures made by GLiNER 0.2.29:
//! word splitting, the model batch, decoding in all four modes, and the
//! long-document windowing/merge.

use std::collections::HashSet;
use std::ops::Range;
use std::path::PathBuf;

use kogner_models::gliner::decode::{
    decode_batch, greedy_search, span_candidates, to_entities, DecodeMode, Entity, SpanProbs,
};
use kogner_models::gliner::long_text::{merge, plan_windows, refine_windows, WindowCandidates};
use kogner_models::gliner::processor::{BatchItem, GlinerProcessor};
use kogner_models::gliner::words::{split_words, Word};
use kogner_tensor::safetensors_io::SafeTensorsFile;
use serde_json::Value;

const FIXTURES: [&str; 2] = ["deberta-tiny", "minilm"];
const MODES: [(&str, DecodeMode); 4] = [
    ("flat", DecodeMode::FLAT),
    ("nested", DecodeMode::NESTED),
    ("flat_multi", DecodeMode::FLAT_MULTI),
    ("nested_multi", DecodeMode::NESTED_MULTI),
];

fn fixture_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/gliner").join(name)
}

fn expected(name: &str) -> Value {
    let path = fixture_dir(name).join("expected.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

fn ints(v: &Value) -> Vec<i64> {
    fn walk(v: &Value, out: &mut Vec<i64>) {
        match v {
            Value::Array(items) => items.iter().for_each(|x| walk(x, out)),
            Value::Bool(b) => out.push(i64::from(*b)),
            other => out.push(other.as_i64().unwrap()),
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out);
    out
}

fn texts(exp: &Value) -> Vec<String> {
    strings(&exp["texts"])
}

#[test]
fn words_match_fixture_splitter() {
    for name in FIXTURES {
        let exp = expected(name);
        for (b, text) in texts(&exp).iter().enumerate() {
            let got = split_words(text);
            let want = exp["words"][b].as_array().unwrap();
            assert_eq!(got.len(), want.len(), "{name} text {b}: word count");
            assert_eq!(got.len() as u64, exp["num_words"][b].as_u64().unwrap());
            for (w, e) in got.iter().zip(want) {
                assert_eq!(w.text, e[0].as_str().unwrap(), "{name} text {b}");
                assert_eq!(w.start as u64, e[1].as_u64().unwrap(), "{name} text {b} word {}", w.text);
                assert_eq!(w.end as u64, e[2].as_u64().unwrap(), "{name} text {b} word {}", w.text);
                assert_eq!(&text[w.byte_start..w.byte_end], w.text);
            }
        }
    }
}

#[test]
fn batch_matches_fixture() {
    for name in FIXTURES {
        let exp = expected(name);
        let proc = GlinerProcessor::from_dir(fixture_dir(name)).unwrap();
        let labels = strings(&exp["labels"]);
        assert_eq!(proc.prompt_words(&labels), strings(&exp["prompt_words"]), "{name}");
        assert_eq!(proc.config().max_width as u64, exp["config"]["max_width"].as_u64().unwrap());
        assert_eq!(i64::from(proc.ent_token_id()), exp["config"]["class_token_index"].as_i64().unwrap());

        let words: Vec<Vec<Word>> = texts(&exp).iter().map(|t| split_words(t)).collect();
        let items: Vec<BatchItem> = words.iter().map(|w| BatchItem { words: w, labels: &labels }).collect();
        let batch = proc.encode(&items).unwrap();

        assert_eq!(batch.input_ids, ints(&exp["input_ids"]), "{name}: input_ids");
        assert_eq!(batch.attention_mask, ints(&exp["attention_mask"]), "{name}: attention_mask");
        assert_eq!(batch.words_mask, ints(&exp["words_mask"]), "{name}: words_mask");
        let lengths: Vec<i64> = batch.text_lengths.iter().map(|&n| n as i64).collect();
        assert_eq!(lengths, ints(&exp["text_lengths"]), "{name}: text_lengths");
        assert_eq!(batch.span_idx, ints(&exp["span_idx"]), "{name}: span_idx");
        let span_mask: Vec<i64> = batch.span_mask.iter().map(|&m| i64::from(m)).collect();
        assert_eq!(span_mask, ints(&exp["span_mask"]), "{name}: span_mask");
        let pmask: Vec<i64> = batch.prompts_embedding_mask.iter().map(|&m| i64::from(m)).collect();
        assert_eq!(pmask, ints(&exp["prompts_embedding_mask"]), "{name}: prompts_embedding_mask");
        for (c, label) in labels.iter().enumerate() {
            assert_eq!(exp["id_to_classes"][(c + 1).to_string()].as_str().unwrap(), label);
        }
        assert!(batch.labels.iter().all(|l| *l == labels));
        assert!(batch.cut_words.iter().all(|&c| c == 0));

        // Label representations sit at the <<ENT>> tokens, in label order.
        let t = batch.seq_len;
        for b in 0..batch.batch_size {
            let row = &batch.input_ids[b * t..(b + 1) * t];
            let ents: Vec<usize> = (0..t).filter(|&i| row[i] == i64::from(proc.ent_token_id())).collect();
            assert_eq!(batch.ent_token_positions[b], ents, "{name} example {b}");
            let real = batch.attention_mask[b * t..(b + 1) * t].iter().filter(|&&m| m == 1).count();
            assert_eq!(real, exp["tokens"][b].as_array().unwrap().len(), "{name} example {b}: tokens");
        }
        // The model reads invalid spans from (0, 0).
        let masked = batch.masked_span_idx();
        for (s, &valid) in batch.span_mask.iter().enumerate() {
            let want = if valid { [batch.span_idx[2 * s], batch.span_idx[2 * s + 1]] } else { [0, 0] };
            assert_eq!([masked[2 * s], masked[2 * s + 1]], want);
        }
    }
}

#[test]
fn minilm_zero_subtoken_word_shifts_words_mask() {
    // Text 4 has a standalone U+200B: word 3 has no sub-token, so words 4..10
    // land in slots 3..9 and slot 10 stays empty (GLiNER behaviour).
    let exp = expected("minilm");
    let proc = GlinerProcessor::from_dir(fixture_dir("minilm")).unwrap();
    let labels = strings(&exp["labels"]);
    let words = split_words(&texts(&exp)[4]);
    assert_eq!(words[3].text, "\u{200b}");
    let batch = proc.encode(&[BatchItem { words: &words, labels: &labels }]).unwrap();
    let slots: Vec<i64> = batch.words_mask.iter().copied().filter(|&m| m > 0).collect();
    assert_eq!(slots, (1..=10).collect::<Vec<i64>>());
    assert_eq!(batch.text_lengths, vec![11]);
}

fn entity_json_eq(got: &Entity, want: &Value) -> bool {
    got.start as u64 == want["start"].as_u64().unwrap()
        && got.end as u64 == want["end"].as_u64().unwrap()
        && got.text == want["text"].as_str().unwrap()
        && got.label == want["label"].as_str().unwrap()
        && got.score == want["score"].as_f64().unwrap() as f32
        && got.word_start as u64 == want["word_start"].as_u64().unwrap()
        && got.word_end as u64 == want["word_end"].as_u64().unwrap()
        && got.class_index as u64 == want["class_index"].as_u64().unwrap()
}

#[test]
fn decoding_matches_fixture_in_all_modes() {
    for name in FIXTURES {
        let exp = expected(name);
        let proc = GlinerProcessor::from_dir(fixture_dir(name)).unwrap();
        let labels = strings(&exp["labels"]);
        let texts = texts(&exp);
        let words: Vec<Vec<Word>> = texts.iter().map(|t| split_words(t)).collect();
        let items: Vec<BatchItem> = words.iter().map(|w| BatchItem { words: w, labels: &labels }).collect();
        let batch = proc.encode(&items).unwrap();

        let st = SafeTensorsFile::open(fixture_dir(name).join("expected.safetensors")).unwrap();
        let probs_t = st.get("probs").unwrap();
        let shape: [usize; 4] = probs_t.shape().try_into().unwrap();
        assert_eq!(shape, [batch.batch_size, batch.num_words, batch.max_width, batch.num_classes]);
        let data = probs_t.to_vec::<f32>().unwrap();
        let probs = SpanProbs::new(&data, shape).unwrap();
        let threshold = exp["threshold"].as_f64().unwrap() as f32;
        let text_refs: Vec<&str> = texts.iter().map(String::as_str).collect();

        for (mode_name, mode) in MODES {
            let decoded = decode_batch(&probs, &batch, &text_refs, threshold, mode).unwrap();
            let want = exp["decoded"][mode_name].as_array().unwrap();
            let mut total = 0;
            for (b, (got, want)) in decoded.iter().zip(want).enumerate() {
                let want = want.as_array().unwrap();
                assert_eq!(got.len(), want.len(), "{name} {mode_name} text {b}: entity count");
                for (i, (g, w)) in got.iter().zip(want).enumerate() {
                    assert!(entity_json_eq(g, w), "{name} {mode_name} text {b} entity {i}: got {g:?}, want {w}");
                }
                total += got.len();
            }
            assert_eq!(total as u64, exp["entity_counts"][mode_name]["total"].as_u64().unwrap());
        }
    }
}

#[test]
fn processor_rejects_bad_input() {
    let proc = GlinerProcessor::from_dir(fixture_dir("minilm")).unwrap();
    let labels = vec!["disease".to_string()];
    let words = split_words("Huntington disease");
    let none: Vec<Word> = Vec::new();
    assert!(proc.encode(&[]).is_err());
    assert!(proc.encode(&[BatchItem { words: &none, labels: &labels }]).is_err());
    assert!(proc.encode(&[BatchItem { words: &words, labels: &[] }]).is_err());
    assert!(proc.encode(&[BatchItem { words: &words, labels: &[String::new()] }]).is_err());
    let long = split_words(&"word ".repeat(proc.config().max_len + 1));
    assert!(proc.encode(&[BatchItem { words: &long, labels: &labels }]).is_err());

    // Duplicate labels are dropped, keeping the first occurrence.
    let dup = vec!["gene".to_string(), "drug".to_string(), "gene".to_string()];
    let batch = proc.encode(&[BatchItem { words: &words, labels: &dup }]).unwrap();
    assert_eq!(batch.labels[0], vec!["gene".to_string(), "drug".to_string()]);
    assert_eq!(batch.ent_token_positions[0].len(), 2);
    assert_eq!(batch.num_classes, 2);
}

/// A ≥ 5,000-word document built from the fixture texts.
fn long_document() -> String {
    let mut pieces = Vec::new();
    for name in FIXTURES {
        pieces.extend(texts(&expected(name)));
    }
    let mut doc = String::new();
    let mut i = 0;
    while split_words(&doc).len() < 5000 {
        doc.push_str(&pieces[i % pieces.len()]);
        doc.push_str(if i % 3 == 0 { "\n\n" } else { " " });
        i += 1;
    }
    doc
}

/// Deterministic fake probability of the absolute span (start, end, class).
fn fake_prob(start: usize, end: usize, class: usize) -> f32 {
    let mut z = (start as u64) << 32 ^ (end as u64) << 8 ^ class as u64;
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let u = (z >> 40) as f32 / (1u64 << 24) as f32;
    // About 16 % of spans above 0.5, quantised so that ties occur.
    (u.powi(4) * 256.0).round() / 256.0
}

/// probs [1, len, K, C] for the document words `window`; spans past the
/// window end get 0.99, which decoding must ignore.
fn window_probs(window: &Range<usize>, k: usize, c: usize) -> Vec<f32> {
    let len = window.end - window.start;
    let mut data = Vec::with_capacity(len * k * c);
    for i in 0..len {
        for w in 0..k {
            for class in 0..c {
                let (s, e) = (window.start + i, window.start + i + w);
                data.push(if i + w < len { fake_prob(s, e, class) } else { 0.99 });
            }
        }
    }
    data
}

#[test]
fn windowed_decoding_equals_whole_document_decoding() {
    let doc = long_document();
    let words = split_words(&doc);
    let n = words.len();
    assert!(n >= 5000);
    let proc = GlinerProcessor::from_dir(fixture_dir("minilm")).unwrap();
    let cfg = proc.config().clone();
    let (k, labels) = (cfg.max_width, strings(&expected("deberta-tiny")["labels"]));
    let c = labels.len();

    // Windows: ≤ max_len words, then shrunk to MiniLM's 512-token cap.
    let budget = proc.token_budget(&labels, &words).unwrap();
    let planned = plan_windows(n, cfg.max_len, k).unwrap();
    assert!(planned.iter().any(|w| !budget.fits(w)), "the cap should force some splits");
    let windows = refine_windows(planned.clone(), k, |w| budget.fits(w));
    assert!(windows.len() > planned.len());
    assert!(windows.iter().all(|w| w.end - w.start <= cfg.max_len && budget.fits(w)));
    let mut covered = vec![false; n];
    windows.iter().for_each(|w| covered[w.clone()].iter_mut().for_each(|x| *x = true));
    assert!(covered.iter().all(|&x| x), "every word is in some window");

    // The windows batch without hitting the cap, and the budget is exact.
    let items: Vec<BatchItem> =
        windows.iter().map(|w| BatchItem { words: &words[w.clone()], labels: &labels }).collect();
    let batch = proc.encode(&items).unwrap();
    assert!(batch.cut_words.iter().all(|&x| x == 0));
    assert!(batch.seq_len <= 512);
    for (b, w) in windows.iter().enumerate() {
        let real = batch.attention_mask[b * batch.seq_len..(b + 1) * batch.seq_len].iter().sum::<i64>();
        assert_eq!(real as usize, budget.tokens(w));
    }

    // Whole document in one go (as if no limits existed).
    let full = window_probs(&(0..n), k, c);
    let full_probs = SpanProbs::new(&full, [1, n, k, c]).unwrap();
    let full_cands = span_candidates(&full_probs, 0, n, c, 0.5).unwrap();

    let window_cands: Vec<WindowCandidates> = windows
        .iter()
        .map(|w| {
            let data = window_probs(w, k, c);
            let probs = SpanProbs::new(&data, [1, w.end - w.start, k, c]).unwrap();
            WindowCandidates {
                window: w.clone(),
                candidates: span_candidates(&probs, 0, w.end - w.start, c, 0.5).unwrap(),
            }
        })
        .collect();

    for (mode_name, mode) in MODES {
        let whole = to_entities(&doc, &words, &labels, &greedy_search(&full_cands, mode)).unwrap();
        let windowed = merge(&doc, &words, &labels, &window_cands, mode).unwrap();
        assert!(whole.len() > 100, "{mode_name}: {} entities", whole.len());
        assert_eq!(windowed, whole, "{mode_name}");
        let keys: HashSet<(usize, usize, &str)> = windowed.iter().map(|e| (e.start, e.end, e.label.as_str())).collect();
        assert_eq!(keys.len(), windowed.len(), "{mode_name}: duplicate entity");
        assert!(windowed.windows(2).all(|p| p[0].start <= p[1].start));
        for e in &windowed {
            assert_eq!(e.text, doc.chars().skip(e.start).take(e.end - e.start).collect::<String>());
        }
    }
}

#[test]
fn short_text_windowing_is_plain_decoding() {
    let exp = expected("deberta-tiny");
    let proc = GlinerProcessor::from_dir(fixture_dir("deberta-tiny")).unwrap();
    let labels = strings(&exp["labels"]);
    let text = &texts(&exp)[2];
    let words = split_words(text);
    let windows = plan_windows(words.len(), proc.config().max_len, proc.config().max_width).unwrap();
    assert_eq!(windows, vec![0..words.len()]);

    let st = SafeTensorsFile::open(fixture_dir("deberta-tiny").join("expected.safetensors")).unwrap();
    let probs_t = st.get("probs").unwrap();
    let shape: [usize; 4] = probs_t.shape().try_into().unwrap();
    let data = probs_t.to_vec::<f32>().unwrap();
    let probs = SpanProbs::new(&data, shape).unwrap();
    let cands = span_candidates(&probs, 2, words.len(), labels.len(), 0.5).unwrap();
    for (mode_name, mode) in MODES {
        let merged = merge(
            text,
            &words,
            &labels,
            &[WindowCandidates { window: windows[0].clone(), candidates: cands.clone() }],
            mode,
        )
        .unwrap();
        let want = exp["decoded"][mode_name][2].as_array().unwrap();
        assert_eq!(merged.len(), want.len());
        assert!(merged.iter().zip(want).all(|(g, w)| entity_json_eq(g, w)), "{mode_name}");
    }
}

#[test]
fn sub_token_cap_truncates_like_gliner() {
    // A max_len window of long biomedical words overflows MiniLM's 512
    // sub-tokens: the tail words keep their slots but lose words_mask entries.
    let doc = long_document();
    let words = split_words(&doc);
    let proc = GlinerProcessor::from_dir(fixture_dir("minilm")).unwrap();
    let labels = strings(&expected("minilm")["labels"]);
    let budget = proc.token_budget(&labels, &words).unwrap();
    let max_len = proc.config().max_len;
    let start = (0..words.len() - max_len).find(|&s| budget.tokens(&(s..s + max_len)) > 530).unwrap();
    let window = start..start + max_len;
    let slice = &words[window.clone()];
    assert!(slice.iter().all(|w| w.text != "\u{200b}"));

    let batch = proc.encode(&[BatchItem { words: slice, labels: &labels }]).unwrap();
    assert_eq!(batch.seq_len, 512);
    assert_eq!(batch.text_lengths, vec![max_len]);
    let slots = batch.words_mask.iter().filter(|&&m| m > 0).count();
    assert!(batch.cut_words[0] > 0);
    assert_eq!(slots + batch.cut_words[0], max_len);
    assert_eq!(batch.input_ids.last(), Some(&102), "[SEP] closes the truncated sequence");
    assert_eq!(
        batch.span_mask.iter().filter(|&&m| m).count(),
        (0..max_len).map(|i| (max_len - i).min(12)).sum::<usize>()
    );
}
