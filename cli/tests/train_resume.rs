//! `kogner train` end to end on a tiny model: a run killed with SIGKILL at
//! arbitrary moments and continued with `--resume` has exactly the losses
//! of an uninterrupted run (and the same moving average of the weights);
//! its models load in `kogner predict`; a non-finite loss stops with a
//! message naming the step.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use kogner_tensor::safetensors_io::{save, SafeTensorsFile};
use kogner_tensor::{DType, Tensor};

const KOGNER: &str = env!("CARGO_BIN_EXE_kogner");

fn shared() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kogner-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The first `n` sentences of NCBI-disease's IOB train file.
fn tiny_corpus(dir: &Path, n: usize) -> PathBuf {
    let text = std::fs::read_to_string(shared().join("data/ner/ncbi-disease/iob/train.tsv")).expect("NCBI-disease train.tsv");
    let sentences: Vec<&str> = text.split("\n\n").filter(|s| !s.trim().is_empty()).take(n).collect();
    let path = dir.join("tiny.tsv");
    std::fs::write(&path, sentences.join("\n\n") + "\n").unwrap();
    path
}

fn train_cmd(corpus: &Path, init: &Path, out: &Path, resume: bool) -> Command {
    let mut c = Command::new(KOGNER);
    c.args(["train", "--labels", "ncbi-disease", "--steps", "10", "--batch-size", "2", "--grad-accum", "2", "--save-every", "1"])
        .args(["--lr-encoder", "1e-3", "--lr-head", "3e-3", "--warmup-ratio", "0.2", "--seed", "5", "--max-width", "6", "--ema-decay", "0.8"])
        .arg("--train")
        .arg(corpus)
        .arg("--init")
        .arg(init)
        .arg("--out")
        .arg(out)
        .env("RAYON_NUM_THREADS", "2");
    if resume {
        c.arg("--resume");
    }
    c
}

fn ok(out: Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{what} failed: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

/// (step, loss as written) of every training-step line of a run.
fn losses(out: &Path) -> Vec<(u64, String)> {
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("loss").is_some())
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].to_string()))
        .collect()
}

fn weights_of(out: &Path) -> Vec<u8> {
    std::fs::read(out.join("best/model.safetensors")).unwrap()
}

fn checkpoint_step(out: &Path) -> u64 {
    std::fs::read_to_string(out.join("checkpoint/trainer_state.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["step"].as_u64())
        .unwrap_or(0)
}

/// Start a run, wait until its checkpoint reaches `after` steps, wait
/// `delay` more, and kill it with SIGKILL. Returns whether it was still
/// running when killed.
fn kill_during(mut cmd: Command, out: &Path, after: u64, delay: Duration) -> bool {
    let mut child = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let t = Instant::now();
    while checkpoint_step(out) < after && t.elapsed() < Duration::from_secs(120) {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(delay);
    let running = child.try_wait().unwrap().is_none();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    running
}

#[test]
fn a_killed_run_resumes_with_the_same_losses() {
    let dir = scratch("resume");
    let corpus = tiny_corpus(&dir, 30);
    let init = shared().join("fixtures/gliner/deberta-tiny");

    let straight = dir.join("straight");
    ok(train_cmd(&corpus, &init, &straight, false).output().unwrap(), "uninterrupted run");
    let want = losses(&straight);
    assert_eq!(want.iter().map(|l| l.0).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
    let first: f64 = want[0].1.parse().unwrap();
    let last: f64 = want[9].1.parse().unwrap();
    assert!(first.is_finite() && last < first, "the loss should fall on 30 sentences: {first} → {last}");

    // Kill at several moments: right after a checkpoint, and some
    // milliseconds later (inside a step or inside the next checkpoint write).
    let killed = dir.join("killed");
    let mut kills = 0;
    for (i, (after, delay_ms)) in [(2u64, 0u64), (4, 3), (6, 11), (8, 1)].into_iter().enumerate() {
        kills += kill_during(train_cmd(&corpus, &init, &killed, i > 0), &killed, after, Duration::from_millis(delay_ms)) as usize;
    }
    assert!(kills >= 2, "the runs finished before they could be killed");
    ok(train_cmd(&corpus, &init, &killed, true).output().unwrap(), "resumed run");
    assert_eq!(losses(&killed), want, "losses after kill -9 + --resume differ from the uninterrupted run");

    // Starting over in a run folder is refused; the result is a model folder.
    let again = train_cmd(&corpus, &init, &killed, false).output().unwrap();
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("--resume"));
    for sub in ["best", "checkpoint"] {
        let line = ok(
            Command::new(KOGNER)
                .args(["predict", "--labels", "disease", "--threshold", "0.0"])
                .arg("--model")
                .arg(killed.join(sub))
                .arg("Hereditary breast cancer is linked to BRCA1.")
                .output()
                .unwrap(),
            "predict with the trained model",
        );
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert!(v.is_array(), "{line}");
    }
    // Without a dev set the best model is the final moving average, which
    // is not the last weights; both equal the uninterrupted run's.
    let weights = |run: &Path, sub: &str| std::fs::read(run.join(sub).join("model.safetensors")).unwrap();
    assert!(weights(&killed, "best") != weights(&killed, "checkpoint"));
    assert!(weights(&killed, "best") == weights_of(&straight), "the resumed run ends with the uninterrupted run's averaged weights");
    assert!(weights(&killed, "checkpoint") == weights(&straight, "checkpoint"), "the resumed run ends with the uninterrupted run's weights");
    let last = SafeTensorsFile::open(straight.join("checkpoint/model.safetensors")).unwrap();
    let ema = SafeTensorsFile::open(straight.join("checkpoint/ema.safetensors")).unwrap();
    let best = SafeTensorsFile::open(straight.join("best/model.safetensors")).unwrap();
    let name = "span_rep_layer.span_rep_layer.out_project.3.weight";
    let read = |f: &SafeTensorsFile| f.get(name).unwrap().to_f64_vec().unwrap();
    assert_eq!(read(&best), read(&ema), "best/ holds the moving average");
    assert!(read(&best) != read(&last));
    assert!(std::fs::read_to_string(killed.join("curve.svg")).unwrap().contains("<polyline"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_non_finite_loss_stops_naming_the_step() {
    let dir = scratch("nan");
    let corpus = tiny_corpus(&dir, 6);
    // deberta-tiny with a NaN in the prompt FFN's last bias
    let src = shared().join("fixtures/gliner/deberta-tiny");
    let bad = dir.join("bad-model");
    std::fs::create_dir_all(&bad).unwrap();
    for f in ["gliner_config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(src.join(f), bad.join(f)).unwrap();
    }
    let weights = SafeTensorsFile::open(src.join("model.safetensors")).unwrap();
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for name in weights.names() {
        let mut t = weights.get(&name).unwrap();
        if name == "prompt_rep_layer.3.bias" {
            let mut v = t.to_dtype(DType::F32).unwrap().to_vec::<f32>().unwrap();
            v[0] = f32::NAN;
            t = Tensor::from_vec(v, t.shape()).unwrap();
        }
        tensors.push((name, t));
    }
    let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    save(bad.join("model.safetensors"), &refs, None).unwrap();
    let out = train_cmd(&corpus, &bad, &dir.join("run"), false).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "training on NaN weights must fail");
    assert!(stderr.contains("step 1") && stderr.to_lowercase().contains("nan"), "{stderr}");
    assert_eq!(stderr.trim().lines().filter(|l| l.starts_with("error")).count(), 1, "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
