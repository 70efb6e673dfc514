//! Strict span-level evaluation on hand-built cases (counts worked out by
//! hand in the comments).

use kogner_train::data::{Document, LabelMap, Mention};
use kogner_train::eval::{evaluate, gold_spans, EvalReport, Scores, Span};

fn sp(start: usize, end: usize, label: &str) -> Span {
    Span {
        start,
        end,
        label: label.to_string(),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn strict_micro_and_per_type() {
    // doc 1 gold: (0,5,disease) (10,15,chemical) (20,30,disease)
    // doc 1 pred: (0,5,disease) tp; (10,15,disease) wrong type -> fp disease, gold chemical fn;
    //             (20,29,disease) wrong boundary -> fp, gold (20,30) fn;
    //             (0,5,disease) again: duplicate, counts once.
    // doc 2 gold: (0,5,chemical); pred: (0,5,chemical) tp; (0,5,disease) fp
    //   (doc 1's (0,5,disease) must not match in doc 2).
    let g1 = [
        sp(0, 5, "disease"),
        sp(10, 15, "chemical"),
        sp(20, 30, "disease"),
    ];
    let p1 = [
        sp(0, 5, "disease"),
        sp(10, 15, "disease"),
        sp(20, 29, "disease"),
        sp(0, 5, "disease"),
    ];
    let g2 = [sp(0, 5, "chemical")];
    let p2 = [sp(0, 5, "chemical"), sp(0, 5, "disease")];
    let r = evaluate([(&g1[..], &p1[..]), (&g2[..], &p2[..])]);
    // disease: tp 1, fp 3 ((10,15),(20,29),(0,5)@doc2), fn 1 ((20,30))
    // chemical: tp 1, fp 0, fn 1 ((10,15))
    let d = r.per_type["disease"];
    let c = r.per_type["chemical"];
    assert_eq!((d.tp, d.fp, d.fn_), (1, 3, 1));
    assert_eq!((c.tp, c.fp, c.fn_), (1, 0, 1));
    assert!(close(d.precision, 0.25) && close(d.recall, 0.5) && close(d.f1, 1.0 / 3.0));
    assert!(close(c.precision, 1.0) && close(c.recall, 0.5) && close(c.f1, 2.0 / 3.0));
    // micro: tp 2, fp 3, fn 2 -> P 0.4, R 0.5, F1 = 2·0.4·0.5/0.9 = 0.4/0.9
    assert_eq!((r.micro.tp, r.micro.fp, r.micro.fn_), (2, 3, 2));
    assert!(
        close(r.micro.precision, 0.4) && close(r.micro.recall, 0.5) && close(r.micro.f1, 0.4 / 0.9)
    );
    assert_eq!(r.per_type.len(), 2);
}

#[test]
fn empty_and_degenerate_cases() {
    let none: Vec<Span> = Vec::new();
    let r = evaluate([(&none[..], &none[..])]);
    assert_eq!(r.micro, Scores::from_counts(0, 0, 0));
    assert!(r.per_type.is_empty());
    assert_eq!(
        (r.micro.precision, r.micro.recall, r.micro.f1),
        (0.0, 0.0, 0.0)
    );
    // Only predictions: precision 0, recall 0 (no gold), a type seen only in predictions is listed.
    let p = [sp(1, 2, "gene")];
    let r = evaluate([(&none[..], &p[..])]);
    assert_eq!((r.per_type["gene"].fp, r.micro.fp), (1, 1));
    // Duplicated gold counts once too: one prediction recovers it fully.
    let g = [sp(1, 2, "gene"), sp(1, 2, "gene")];
    let r = evaluate([(&g[..], &p[..])]);
    assert_eq!((r.micro.tp, r.micro.fp, r.micro.fn_), (1, 0, 0));
    assert!(close(r.micro.f1, 1.0));
}

#[test]
fn json_shape_and_table() {
    let g = [sp(0, 3, "cell type")];
    let p = [sp(0, 3, "cell type"), sp(4, 6, "dna")];
    let r = evaluate([(&g[..], &p[..])]);
    let json = r.to_json().unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    for key in ["precision", "recall", "f1", "tp", "fp", "fn"] {
        assert!(
            v["micro"].get(key).is_some(),
            "micro.{key} missing in {json}"
        );
    }
    assert_eq!(v["micro"]["fn"], 0);
    assert_eq!(v["micro"]["fp"], 1);
    assert_eq!(v["per_type"]["cell type"]["tp"], 1);
    assert_eq!(v["per_type"]["dna"]["precision"], 0.0);
    let back: EvalReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
    let t = r.table();
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines.len(), 4, "{t}");
    assert!(
        lines[1].starts_with("cell type") && lines[1].contains("100.00"),
        "{t}"
    );
    // micro: tp 1 fp 1 fn 0 -> P 50.00, R 100.00, F1 66.67
    assert!(
        lines[3].starts_with("micro") && lines[3].contains("50.00") && lines[3].contains("66.67"),
        "{t}"
    );
}

#[test]
fn gold_from_documents_through_label_map() {
    let doc = Document {
        id: "9".into(),
        text: "Aspirin and pain".into(),
        mentions: vec![
            Mention {
                start: 0,
                end: 7,
                label: "Chemical".into(),
                concept_ids: vec![],
            },
            Mention {
                start: 12,
                end: 16,
                label: "Disease".into(),
                concept_ids: vec![],
            },
        ],
    };
    let gold = gold_spans(&doc, &LabelMap::for_corpus("bc5cdr").unwrap()).unwrap();
    assert_eq!(gold, [sp(0, 7, "chemical"), sp(12, 16, "disease")]);
    let err = gold_spans(&doc, &LabelMap::parse("Chemical=chemical").unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"Disease\"") && err.contains("document 9"),
        "{err}"
    );
}

/// A model reading a two-sentence document sentence by sentence reports
/// exactly the entities it finds in each sentence alone, shifted to the
/// document's offsets.
#[test]
fn sentence_by_sentence_offsets_map_back_to_the_document() {
    use kogner_models::gliner::pipeline::{Document as Text, PredictOptions, Predictor};
    use kogner_train::student::evaluate_model;

    let dir = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/gliner/deberta-tiny"));
    let predictor = Predictor::load(&dir).expect("fixture model");
    let labels = vec!["disease".to_string(), "gene".to_string()];
    let opts = PredictOptions { threshold: 0.3, ..PredictOptions::default() };
    let (first, second) = ("Cystic fibrosis is a common disease.", "Mutations of BRCA1 cause hereditary breast cancer.");
    let text = format!("{first} {second}");
    let shift = first.chars().count() + 1;
    let alone = predictor
        .predict(&[Text { text: first, labels: &labels }, Text { text: second, labels: &labels }], &opts, |_| {})
        .expect("predict");
    let mentions: Vec<Mention> = alone[0]
        .iter()
        .map(|e| (e.start, e.end, &e.label))
        .chain(alone[1].iter().map(|e| (e.start + shift, e.end + shift, &e.label)))
        .map(|(start, end, label)| Mention { start, end, label: label.clone(), concept_ids: vec![] })
        .collect();
    assert!(!alone[1].is_empty(), "the fixture model should find something in the second sentence at threshold 0.3");
    let doc = Document { id: "d".into(), text, mentions };
    let map = LabelMap::for_corpus("gliner").unwrap();
    let report = evaluate_model(&predictor, std::slice::from_ref(&doc), &map, &labels, &opts, true, |_, _| {}).expect("eval");
    assert_eq!((report.micro.tp, report.micro.fp, report.micro.fn_), (doc.mentions.len(), 0, 0));
}

/// Scores at several thresholds from one prediction pass equal a separate
/// evaluation at each threshold.
#[test]
fn threshold_sweep_equals_separate_evaluations() {
    use kogner_models::gliner::pipeline::{Document as Text, PredictOptions, Predictor};
    use kogner_train::student::{evaluate_model, evaluate_model_at_thresholds};

    let dir = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/gliner/deberta-tiny"));
    let predictor = Predictor::load(&dir).expect("fixture model");
    let labels = vec!["disease".to_string(), "gene".to_string()];
    let text = "Mutations of BRCA1 cause hereditary breast cancer.";
    // Gold: what the model finds at 0.9, so lower thresholds add false
    // positives and higher ones lose true positives.
    let at = |t: f32| {
        let opts = PredictOptions { threshold: t, ..PredictOptions::default() };
        predictor.predict(&[Text { text, labels: &labels }], &opts, |_| {}).expect("predict").remove(0)
    };
    let mentions: Vec<Mention> =
        at(0.9).iter().map(|e| Mention { start: e.start, end: e.end, label: e.label.clone(), concept_ids: vec![] }).collect();
    let doc = Document { id: "d".into(), text: text.into(), mentions };
    let map = LabelMap::for_corpus("gliner").unwrap();
    let thresholds = [0.75f32, 0.9, 0.97];
    let opts = PredictOptions::default();
    let swept = evaluate_model_at_thresholds(&predictor, std::slice::from_ref(&doc), &map, &labels, &opts, &thresholds, false, |_, _| {})
        .expect("sweep");
    for (t, report) in thresholds.iter().zip(&swept) {
        let alone = evaluate_model(&predictor, std::slice::from_ref(&doc), &map, &labels, &PredictOptions { threshold: *t, ..opts }, false, |_, _| {})
            .expect("eval");
        assert_eq!(report, &alone, "threshold {t}");
    }
    let counts: Vec<(usize, usize, usize)> = swept.iter().map(|r| (r.micro.tp, r.micro.fp, r.micro.fn_)).collect();
    assert_eq!(counts[1], (doc.mentions.len(), 0, 0));
    assert!(counts[0].1 > 0 && counts[2].2 > 0, "the fixture model should add and lose entities around 0.9: {counts:?}");
}
