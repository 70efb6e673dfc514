//! `kogner train` end to end on a tiny model: a run killed with SIGKILL at
//! arbitrary moments and continued with `--resume` has exactly the losses
//! of an uninterrupted run (and the same moving average of the weights);
//! its models load in `kogner predict`; a non-finite loss stops with a
//! message naming the step. The same for a run that distils from a KG
//! teacher, whose loss is the weighted sum of GLiNER's and L_dist.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use kogner_tensor::safetensors_io::{save, SafeTensorsFile};
use kogner_tensor::{DType, Rng, Tensor};
use kogner_train::data::iob::read_iob;
use kogner_train::data::pubtator::read_pubtator;
use kogner_train::teacher::export::TeacherEmbeddings;

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

/// The first `n` blank-line-separated blocks (IOB sentences, PubTator
/// documents) of the NCBI-disease file `rel`, written to `dir/name`.
fn head_of(dir: &Path, rel: &str, n: usize, name: &str) -> PathBuf {
    let text = std::fs::read_to_string(shared().join("data/ner/ncbi-disease").join(rel)).unwrap_or_else(|e| panic!("NCBI-disease {rel}: {e}"));
    let blocks: Vec<&str> = text.split("\n\n").filter(|s| !s.trim().is_empty()).take(n).collect();
    let path = dir.join(name);
    std::fs::write(&path, blocks.join("\n\n") + "\n").unwrap();
    path
}

/// The first `n` sentences of NCBI-disease's IOB train file.
fn tiny_corpus(dir: &Path, n: usize) -> PathBuf {
    head_of(dir, "iob/train.tsv", n, "tiny.tsv")
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

/// A random teacher whose nodes are every other concept id of `corpus`
/// (so some mentions link and some do not) plus one id no mention has, and
/// its KG in `kg/`: each node named by the text of one of its mentions, the
/// first nodes with one of `synonyms` each.
fn toy_teacher(corpus: &Path, dir: &Path, synonyms: &[String]) -> PathBuf {
    let mut named: Vec<(String, String)> = read_pubtator(corpus)
        .unwrap()
        .iter()
        .flat_map(|d| d.mentions.iter().flat_map(|m| m.concept_ids.iter().map(|id| (id.clone(), d.mention_text(m).unwrap().to_string()))))
        .collect();
    named.sort();
    named.dedup_by(|a, b| a.0 == b.0);
    let mut nodes: Vec<(String, String)> = named.into_iter().step_by(2).collect();
    nodes.push(("MESH:D999999".into(), "no such disease".into()));
    let n = nodes.len();
    assert!(n > 2);
    let kg = dir.join("kg");
    std::fs::create_dir_all(&kg).unwrap();
    let synonyms = synonyms.iter().map(String::as_str).chain(std::iter::repeat(""));
    let rows: String = nodes.iter().zip(synonyms).map(|((id, name), syn)| format!("{id}\t{name}\tDisease\t{syn}\n")).collect();
    std::fs::write(kg.join("nodes.tsv"), format!("id\tname\ttype\tsynonyms\n{rows}")).unwrap();
    std::fs::write(kg.join("edges.tsv"), format!("head\trelation\ttail\n{}\tis_a\t{}\n", nodes[0].0, nodes[1].0)).unwrap();
    let mut rng = Rng::new(3);
    let mut random = |d: usize| Tensor::from_vec((0..n * d).map(|_| rng.normal() as f32).collect::<Vec<f32>>(), &[n, d]).unwrap();
    let teacher = TeacherEmbeddings { node_ids: nodes.into_iter().map(|(id, _)| id).collect(), z: random(8), z_graph: random(4), z_transr: random(3) };
    let path = dir.join("teacher.safetensors");
    teacher.save(&path).unwrap();
    path
}

#[test]
fn a_distilling_run_adds_the_weighted_kg_loss_and_resumes_with_the_same_losses() {
    let dir = scratch("distill");
    let corpus = head_of(&dir, "pubtator/NCBItrainset_corpus.txt", 3, "tiny.pubtator");
    let iob = tiny_corpus(&dir, 30);
    let iob_mentions: Vec<String> = read_iob(&iob).unwrap().documents.iter().flat_map(|d| d.mentions.iter().map(|m| d.mention_text(m).unwrap().to_string())).take(2).collect();
    let teacher = toy_teacher(&corpus, &dir, &iob_mentions);
    let init = shared().join("fixtures/gliner/deberta-tiny");
    let cmd = |out: &Path, resume: bool, distill: &[&str]| {
        let mut c = train_cmd(&corpus, &init, out, resume);
        c.args(["--train-format", "pubtator"]).args(distill);
        c
    };
    let with_teacher = |weights: &[&'static str]| {
        let mut args = vec!["--teacher", teacher.to_str().unwrap()];
        args.extend_from_slice(weights);
        args
    };

    let plain = dir.join("plain");
    ok(cmd(&plain, false, &[]).output().unwrap(), "run without a teacher");
    // b = 0, a = 1: the heads train on nothing and the student's losses are the plain run's.
    let silent = dir.join("silent");
    let out = cmd(&silent, false, &with_teacher(&["--distill-weight", "0", "--bce-weight", "1"])).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("training mentions linked to a KG node"));
    ok(out, "run with a teacher at weight 0");
    assert_eq!(losses(&silent), losses(&plain));
    assert!(weights_of(&silent) == weights_of(&plain));

    // The paper's a = 0.8, b = 0.2: step 1 (same weights, same batch) is
    // 0.8 · the plain loss + 0.2 · L_dist with L_dist > 0, and later steps differ.
    let straight = dir.join("straight");
    ok(cmd(&straight, false, &with_teacher(&[])).output().unwrap(), "distilling run");
    let (p, d) = (losses(&plain), losses(&straight));
    let (p1, d1): (f64, f64) = (p[0].1.parse().unwrap(), d[0].1.parse().unwrap());
    let l_dist = (d1 - 0.8 * p1) / 0.2;
    assert!(l_dist > 1e-3 && l_dist.is_finite(), "L_dist at step 1: {l_dist} (plain {p1}, distilling {d1})");
    let first_line = std::fs::read_to_string(straight.join("metrics.jsonl")).unwrap().lines().next().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).unwrap();
    let logged = first_line["l_dist"].as_f64().expect("metrics.jsonl has l_dist when distilling");
    assert!((logged - l_dist).abs() <= 1e-4 * (1.0 + p1), "logged L_dist {logged}, from the losses {l_dist}");
    assert!(std::fs::metadata(straight.join("checkpoint/distill.safetensors")).is_ok());
    assert!(SafeTensorsFile::open(straight.join("best/model.safetensors")).unwrap().names().iter().all(|n| !n.starts_with("distill")), "the heads stay out of the model");

    // --freeze-mlp-dist true: MLP_dist stays at its seeded initialisation
    // whatever b is (two frozen runs share it), while the trained run's moved.
    let heads = |run: &Path, part: &str| -> Vec<Vec<f64>> {
        let f = SafeTensorsFile::open(run.join("checkpoint/distill.safetensors")).unwrap();
        let mut names: Vec<String> = f.names().into_iter().filter(|n| n.starts_with(&format!("distill.{part}."))).collect();
        names.sort();
        assert_eq!(names.len(), 4, "{part}: {names:?}");
        names.iter().map(|n| f.get(n).unwrap().to_f64_vec().unwrap()).collect()
    };
    let frozen: Vec<PathBuf> = ["0.2", "5"]
        .iter()
        .map(|b| {
            let run = dir.join(format!("frozen-{b}"));
            ok(cmd(&run, false, &with_teacher(&["--freeze-mlp-dist", "true", "--distill-weight", b])).output().unwrap(), "distilling run with MLP_dist frozen");
            run
        })
        .collect();
    assert!(heads(&frozen[0], "dist") == heads(&frozen[1], "dist"), "a frozen MLP_dist must not move");
    assert!(heads(&frozen[0], "span") != heads(&frozen[1], "span"));
    assert!(heads(&straight, "dist") != heads(&frozen[0], "dist"), "a trained MLP_dist moves");

    let killed = dir.join("killed");
    let mut kills = 0;
    for (i, (after, delay_ms)) in [(3u64, 0u64), (6, 5)].into_iter().enumerate() {
        kills += kill_during(cmd(&killed, i > 0, &with_teacher(&[])), &killed, after, Duration::from_millis(delay_ms)) as usize;
    }
    assert!(kills >= 1, "the runs finished before they could be killed");
    ok(cmd(&killed, true, &with_teacher(&[])).output().unwrap(), "resumed distilling run");
    assert_eq!(losses(&killed), d, "losses after kill -9 + --resume differ from the uninterrupted distilling run");
    assert!(weights_of(&killed) == weights_of(&straight));

    // A corpus without concept ids has nothing to distil (one clear error)
    // until the teacher's KG links its mentions by name.
    let mut no_ids = train_cmd(&iob, &init, &dir.join("iob"), false);
    let out = no_ids.arg("--teacher").arg(&teacher).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("nothing to distil") && stderr.contains("--teacher-kg"), "{stderr}");
    let mut by_name = train_cmd(&iob, &init, &dir.join("iob-by-name"), false);
    let out = by_name.arg("--teacher").arg(&teacher).arg("--teacher-kg").arg(dir.join("kg")).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(out, "distilling run linked by name");
    let linked: usize = stderr.split("from ").nth(1).and_then(|t| t.split(": ").nth(1)).and_then(|t| t.split(' ').next()).and_then(|t| t.parse().ok()).expect(&stderr);
    assert!(linked > 0, "{stderr}");

    // A teacher that is not a teacher file is one clear error naming it.
    std::fs::write(dir.join("bad.safetensors"), b"not safetensors").unwrap();
    let bad = cmd(&dir.join("bad"), false, &["--teacher", dir.join("bad.safetensors").to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && stderr.contains("bad.safetensors"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// One training step (batch 2, max width 6) of the tiny fixture model on
/// `corpus` with `args` added, into `out`.
fn run_one_step(corpus: &Path, out: &Path, args: &[&str]) -> Output {
    Command::new(KOGNER)
        .args(["train", "--steps", "1", "--batch-size", "2", "--max-width", "6"])
        .args(args)
        .arg("--train")
        .arg(corpus)
        .arg("--init")
        .arg(shared().join("fixtures/gliner/deberta-tiny"))
        .arg("--out")
        .arg(out)
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .unwrap()
}

/// [`run_one_step`]'s stderr, the run having succeeded.
fn train_one_step(corpus: &Path, out: &Path, args: &[&str]) -> String {
    let run = run_one_step(corpus, out, args);
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "{stderr}");
    stderr
}

/// [`run_one_step`]'s stderr, the run having failed before making its folder.
fn failed_start(corpus: &Path, out: &Path, args: &[&str]) -> String {
    let run = run_one_step(corpus, out, args);
    assert!(!run.status.success(), "{args:?} must fail");
    assert!(!out.exists(), "a failed start left {}", out.display());
    String::from_utf8_lossy(&run.stderr).into_owned()
}

/// GLiNER JSON records are GLiNER's training examples: `kogner train` takes
/// each whole (as GLiNER does), not cut into sentences like a PubTator
/// abstract, whatever `--context` says.
#[test]
fn gliner_json_records_train_whole() {
    let dir = scratch("gliner-json");
    let corpus = dir.join("train.json");
    let two_sentences = r#"{"tokenized_text": ["Ataxia", "telangiectasia", "is", "rare", ".", "The", "ATM", "gene", "causes", "it", "."], "ner": [[0, 1, "disease"]]}"#;
    let one_sentence = r#"{"tokenized_text": ["Breast", "cancer", "is", "common", "."], "ner": [[0, 1, "disease"]]}"#;
    std::fs::write(&corpus, format!("[{two_sentences}, {one_sentence}]")).unwrap();
    let stderr = train_one_step(&corpus, &dir.join("run"), &["--train-format", "gliner"]);
    assert!(stderr.contains("training on 2 examples"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--context document` on an IOB file without `-DOCSTART-` lines reads the
/// file as one document: consecutive sentences are packed into examples,
/// and `kogner eval --whole-documents` scores the same gold mentions as the
/// sentence-by-sentence evaluation.
#[test]
fn sentence_level_iob_packs_consecutive_sentences_with_document_context() {
    let dir = scratch("iob-context");
    let corpus = tiny_corpus(&dir, 12);
    let run = |context: &str| -> usize {
        let dev = corpus.to_str().unwrap();
        let stderr = train_one_step(&corpus, &dir.join(context), &["--labels", "ncbi-disease", "--max-len", "64", "--context", context, "--dev", dev]);
        stderr.split("training on ").nth(1).and_then(|t| t.split(' ').next()).and_then(|t| t.parse().ok()).expect(&stderr)
    };
    assert_eq!(run("sentence"), 12);
    let packed = run("document");
    assert!((2..12).contains(&packed), "{packed} examples from 12 sentences");

    let gold = |whole: bool| -> u64 {
        let mut c = Command::new(KOGNER);
        c.args(["eval", "--format", "iob", "--labels", "ncbi-disease", "--json", "--threshold", "0.0"]).arg("--model").arg(dir.join("document/best")).arg("--data").arg(&corpus);
        if whole {
            c.arg("--whole-documents");
        }
        let report: serde_json::Value = serde_json::from_str(&ok(c.output().unwrap(), "eval")).unwrap();
        let micro = &report["micro"];
        micro["tp"].as_u64().unwrap() + micro["fn"].as_u64().unwrap()
    };
    let n_gold: usize = read_iob(&corpus).unwrap().documents.iter().map(|d| d.mentions.len()).sum();
    assert!(n_gold > 0);
    assert_eq!(gold(false), n_gold as u64);
    assert_eq!(gold(true), n_gold as u64);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A mistyped label map fails before the run folder is made, so the same
/// command with the map fixed starts the run (no "already holds a run").
#[test]
fn a_bad_label_map_leaves_no_run_folder() {
    let dir = scratch("bad-labels");
    let corpus = tiny_corpus(&dir, 4);
    let out = dir.join("run");
    let stderr = failed_start(&corpus, &out, &["--labels", "ncbi"]);
    assert!(stderr.contains("--labels") && stderr.contains("ncbi-disease"), "{stderr}");
    train_one_step(&corpus, &out, &["--labels", "ncbi-disease"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--span-teacher` (repeated: an ensemble) reaches the run's settings, and
/// a folder that is not a GLiNER model is refused, naming it, before the
/// run folder is made.
#[test]
fn span_teachers_are_settings_and_a_bad_one_is_named() {
    let dir = scratch("span-teacher");
    let corpus = tiny_corpus(&dir, 4);
    let tiny = shared().join("fixtures/gliner/deberta-tiny");
    let tiny = tiny.to_str().unwrap();
    let stderr = train_one_step(&corpus, &dir.join("run"), &["--labels", "ncbi-disease", "--span-teacher", tiny, "--span-teacher", tiny, "--span-teacher-weight", "0.3"]);
    assert!(stderr.contains("softened (λ 0.3)"), "{stderr}");
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("run/train_config.json")).unwrap()).unwrap();
    assert_eq!(saved["span_teacher"].as_array().map(Vec::len), Some(2));

    let not_a_model = dir.to_str().unwrap();
    let stderr = failed_start(&corpus, &dir.join("bad"), &["--labels", "ncbi-disease", "--span-teacher", not_a_model]);
    assert!(stderr.contains(not_a_model), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
