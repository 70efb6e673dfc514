//! `kogner mlm` end to end on the real MiniLM encoder and a few NCBI-disease
//! sentences: the dev masked-LM loss falls, the adapted folder continues
//! exactly where it stopped (encoder and head saved whole), it is an encoder
//! folder `kogner train --encoder` takes, and bad settings are one-line errors.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const KOGNER: &str = env!("CARGO_BIN_EXE_kogner");

fn shared() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kogner-mlm-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The first `n` sentences of an NCBI-disease IOB file, written to `dir/name`.
fn sentences(dir: &Path, split: &str, n: usize, name: &str) -> PathBuf {
    let text = std::fs::read_to_string(shared().join("data/ner/ncbi-disease/iob").join(split)).unwrap();
    let blocks: Vec<&str> = text.split("\n\n").filter(|s| !s.trim().is_empty()).take(n).collect();
    let path = dir.join(name);
    std::fs::write(&path, blocks.join("\n\n") + "\n").unwrap();
    path
}

fn mlm(encoder: &Path, train: &Path, dev: &Path, out: &Path, steps: &str) -> std::process::Output {
    Command::new(KOGNER)
        .args(["mlm", "--steps", steps, "--batch-size", "4", "--max-tokens", "32", "--eval-every", "5", "--seed", "3"])
        .arg("--encoder")
        .arg(encoder)
        .arg("--train")
        .arg(train)
        .arg("--dev")
        .arg(dev)
        .arg("--out")
        .arg(out)
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .unwrap()
}

/// The dev losses of a run's metrics.jsonl, in step order.
fn dev_losses(out: &Path) -> Vec<(u64, f64)> {
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).filter(|v| v.get("dev_loss").is_some()).map(|v| (v["step"].as_u64().unwrap(), v["dev_loss"].as_f64().unwrap())).collect()
}

#[test]
fn adapted_encoder_learns_continues_exactly_and_trains_gliner() {
    let dir = scratch("run");
    let (train, dev) = (sentences(&dir, "train.tsv", 40, "train.tsv"), sentences(&dir, "devel.tsv", 12, "devel.tsv"));
    let minilm = shared().join("data/models/all-MiniLM-L6-v2");
    let first = mlm(&minilm, &train, &dev, &dir.join("a"), "10");
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let a = dev_losses(&dir.join("a"));
    assert_eq!(a.iter().map(|d| d.0).collect::<Vec<_>>(), [0, 5, 10]);
    // a fresh head starts near uniform over the 30k vocabulary (ln 30522 = 10.3) and learns fast
    assert!(a[0].1 > 9.0 && a[2].1 < a[0].1 - 2.0, "{a:?}");

    // continuing from the adapted folder: its encoder and head reproduce the last dev loss
    let encoder = dir.join("a/encoder");
    let second = mlm(&encoder, &train, &dev, &dir.join("b"), "1");
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    let b = dev_losses(&dir.join("b"));
    assert!((b[0].1 - a[2].1).abs() < 1e-6 * a[2].1, "{b:?} against {a:?}");
    for f in ["tokenizer.json", "vocab.txt", "sentence_bert_config.json", "1_Pooling/config.json"] {
        assert!(encoder.join(f).is_file(), "{f} not copied");
    }

    // the folder is an encoder `kogner train` puts a GLiNER head on
    let run = Command::new(KOGNER)
        .args(["train", "--labels", "ncbi-disease", "--steps", "1", "--batch-size", "2", "--max-width", "4"])
        .arg("--train")
        .arg(&train)
        .arg("--encoder")
        .arg(&encoder)
        .arg("--out")
        .arg(dir.join("gliner"))
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(dir.join("gliner/best/model.safetensors").is_file());

    // a finished run is not overwritten
    let again = mlm(&minilm, &train, &dev, &dir.join("a"), "1");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success() && stderr.contains("already holds"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_settings_are_one_line_errors() {
    let dir = scratch("bad");
    let train = sentences(&dir, "train.tsv", 4, "train.tsv");
    let minilm = shared().join("data/models/all-MiniLM-L6-v2");
    for (flag, value, named) in [("--mask-prob", "1.5", "mask_prob"), ("--max-tokens", "2", "max_tokens"), ("--train-format", "xml", "format")] {
        let out = Command::new(KOGNER).args(["mlm", flag, value]).arg("--encoder").arg(&minilm).arg("--train").arg(&train).arg("--out").arg(dir.join("o")).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(named) && stderr.trim().lines().count() == 1, "{flag} {value}: {stderr}");
    }
    let out = Command::new(KOGNER).args(["mlm", "--encoder"]).arg(&dir).arg("--train").arg(&train).arg("--out").arg(dir.join("o")).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("config.json"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
