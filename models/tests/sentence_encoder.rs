//! The MiniLM sentence encoder (teacher Z) against sentence embeddings made
//! by HF transformers 5.16.1 / torch 2.15 on the same folder. Reference
//! (run with /work/pyenv/bin/python; sentence-transformers' pipeline spelled
//! out: strip, tokenise, mean pool over the mask, F.normalize):
//!
//! ```python
//! import torch
//! from transformers import AutoModel, AutoTokenizer
//! d = "shared/data/models/all-MiniLM-L6-v2"
//! tok = AutoTokenizer.from_pretrained(d); model = AutoModel.from_pretrained(d).eval()
//! texts = [t.strip() for t in TEXTS]
//! b = tok(texts, padding=True, truncation="longest_first", max_length=256, return_tensors="pt")
//! with torch.no_grad(): h = model(**b).last_hidden_state
//! m = b["attention_mask"].unsqueeze(-1).float()
//! e = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1e-9), p=2, dim=1)
//! print(e[:, :8], e.sum(1))
//! ```

use std::path::PathBuf;

use kogner_models::teacher::text::SentenceEncoder;

fn minilm() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/models/all-MiniLM-L6-v2")
}

const TEXTS: [&str; 5] = ["APC", "Colonic Neoplasms", "Adenomatous polyposis coli", "Sjögren's syndrome, type 2", "  alpha-Methyldopa  "];

/// (first 8 dims, sum of all 384 dims) per text, from the script above.
const REFERENCE: [([f32; 8], f32); 5] = [
    ([-0.116664, -0.0667144, -0.0696929, 0.0022162, -0.0729958, 0.0057667, 0.137401, 0.0150938], 0.6225761),
    ([0.0619375, -0.0120607, -0.0358388, 0.0193046, -0.0766838, -0.0861035, 0.020213, -0.0401231], 0.0422751),
    ([-0.0031452, -0.0561338, 0.0140061, -0.0049568, -0.1314281, -0.0031037, 0.0491533, 0.0006832], 0.0192227),
    ([0.0102783, -0.0536596, 0.0221057, 0.0336156, 0.0036918, 0.0229983, -0.0290443, 0.1612164], -0.0120613),
    ([0.0043205, 0.0208521, -0.0924751, -0.0275824, 0.0088107, 0.0138904, 0.0280537, 0.0538762], 0.280457),
];

#[test]
fn minilm_sentence_embeddings_match_transformers() {
    let enc = SentenceEncoder::from_dir(minilm()).unwrap();
    assert_eq!((enc.dim(), enc.max_seq_length()), (384, 256));
    // batch size 2: the texts are split over several differently padded batches
    let z = enc.embed_with_progress(&TEXTS, 2, &mut |_, _| {}).unwrap();
    assert_eq!(z.shape(), [5, 384]);
    let z = z.to_vec::<f32>().unwrap();
    for (i, (head, sum)) in REFERENCE.iter().enumerate() {
        let row = &z[i * 384..(i + 1) * 384];
        for (k, (&got, &want)) in row.iter().zip(head).enumerate() {
            assert!((got - want).abs() <= 1e-5, "{:?} dim {k}: {got} vs {want}", TEXTS[i]);
        }
        let got_sum: f32 = row.iter().sum();
        assert!((got_sum - sum).abs() <= 1e-4, "{:?}: sum {got_sum} vs {sum}", TEXTS[i]);
        let norm: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() <= 1e-5, "{:?}: norm {norm}", TEXTS[i]);
    }
}

#[test]
fn batching_and_order_do_not_change_embeddings() {
    let enc = SentenceEncoder::from_dir(minilm()).unwrap();
    let all = enc.embed(&TEXTS).unwrap().to_vec::<f32>().unwrap();
    let mut calls = Vec::new();
    let reversed: Vec<&str> = TEXTS.iter().rev().copied().collect();
    let rev = enc.embed_with_progress(&reversed, 1, &mut |done, total| calls.push((done, total))).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(calls, (1..=5).map(|d| (d, 5)).collect::<Vec<_>>());
    for i in 0..5 {
        let (a, b) = (&all[i * 384..(i + 1) * 384], &rev[(4 - i) * 384..(5 - i) * 384]);
        let diff = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(diff <= 1e-5, "{:?}: batch-dependent embedding, max diff {diff}", TEXTS[i]);
    }
    assert!(enc.embed_with_progress(&TEXTS, 0, &mut |_, _| {}).is_err());
    assert!(SentenceEncoder::from_dir("/nonexistent").is_err());
}
