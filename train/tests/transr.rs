//! TransR against the PyKEEN fixture (p = 1 and p = 2: projections, clamps,
//! scores, margin loss, gradients, one Adam step + constraint, all-candidate
//! scores, filtered ranks with a tie) and a short UMLS training smoke run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use kogner_models::teacher::transr::{PNorm, TransR, TransRConfig};
use kogner_tensor::safetensors_io::SafeTensorsFile;
use kogner_tensor::Rng;
use kogner_train::kg::{KnowledgeGraph, TripleSplits};
use kogner_train::teacher::transr::{
    filtered_ranks, sample_negatives, train, Adam, TransRTrainConfig,
};

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared")
        .join(rel)
}

struct Fixture(SafeTensorsFile);

impl Fixture {
    fn open() -> Fixture {
        Fixture(
            SafeTensorsFile::open(shared("fixtures/teacher/transr/fixture.safetensors")).unwrap(),
        )
    }
    fn f32(&self, name: &str) -> Vec<f32> {
        self.0.get(name).unwrap().to_vec::<f32>().unwrap()
    }
    fn i64(&self, name: &str) -> Vec<i64> {
        self.0.get(name).unwrap().to_vec::<i64>().unwrap()
    }
    fn u8(&self, name: &str) -> Vec<u8> {
        self.0.get(name).unwrap().to_vec::<u8>().unwrap()
    }
    fn triples(&self, name: &str) -> Vec<[u32; 3]> {
        self.i64(name)
            .chunks(3)
            .map(|c| [c[0] as u32, c[1] as u32, c[2] as u32])
            .collect()
    }
}

fn close_abs(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "{what}[{i}]: got {g}, want {w}");
    }
}

fn close_grad(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-6 + 1e-4 * w.abs(),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

fn check_p(p: u32) {
    let fx = Fixture::open();
    let pre = format!("p{p}.");
    let config = TransRConfig {
        num_entities: 43,
        num_relations: 4,
        entity_dim: 8,
        relation_dim: 6,
        p: PNorm::from_p(p).unwrap(),
    };
    let mut model = TransR::from_parts(
        config,
        fx.f32(&format!("{pre}param.entity")),
        fx.f32(&format!("{pre}param.relation")),
        fx.f32(&format!("{pre}param.projection")),
    )
    .unwrap();
    let (pos, neg) = (fx.triples("pos_hrt"), fx.triples("neg_hrt"));
    // Projections and clamps.
    for (set, triples) in [("pos", &pos), ("neg", &neg)] {
        for (side, col) in [("h", 0), ("t", 2)] {
            let (mut proj, mut bot, mut clamped) = (Vec::new(), Vec::new(), Vec::new());
            for tr in triples.iter() {
                let pr = model.project(tr[col] as usize, tr[1] as usize);
                proj.extend(pr.proj);
                bot.extend(pr.bot);
                clamped.push(pr.clamped as u8);
            }
            close_abs(
                &format!("{set}.{side}_proj"),
                &proj,
                &fx.f32(&format!("{pre}{set}.{side}_proj")),
                1e-5,
            );
            close_abs(
                &format!("{set}.{side}_bot"),
                &bot,
                &fx.f32(&format!("{pre}{set}.{side}_bot")),
                1e-5,
            );
            assert_eq!(
                clamped,
                fx.u8(&format!("{pre}{set}.{side}_proj_clamped")),
                "{set}.{side} clamped"
            );
        }
    }
    // Scores, hinge, loss, gradients.
    let out = model.margin_loss_and_grads(&pos, &neg, 1.0).unwrap();
    close_abs(
        "pos_scores",
        &out.pos_scores,
        &fx.f32(&format!("{pre}pos_scores")),
        1e-5,
    );
    close_abs(
        "neg_scores",
        &out.neg_scores,
        &fx.f32(&format!("{pre}neg_scores")),
        1e-5,
    );
    close_abs("hinge", &out.hinge, &fx.f32(&format!("{pre}hinge")), 1e-5);
    close_abs("loss", &[out.loss], &fx.f32(&format!("{pre}loss")), 1e-5);
    let single: Vec<f32> = pos.iter().map(|&t| model.score(t)).collect();
    close_abs("score", &single, &out.pos_scores, 0.0);
    close_grad(
        "grad.entity",
        &out.grads.entity,
        &fx.f32(&format!("{pre}grad.entity")),
    );
    close_grad(
        "grad.relation",
        &out.grads.relation,
        &fx.f32(&format!("{pre}grad.relation")),
    );
    close_grad(
        "grad.projection",
        &out.grads.projection,
        &fx.f32(&format!("{pre}grad.projection")),
    );
    // Filtered ranks on both sides (before the step: the fixture ranks with the forward params).
    let kg = KnowledgeGraph::load_dir(shared("data/kg/tiny")).unwrap();
    let ranks = filtered_ranks(&model, &pos, &kg.edges).unwrap();
    for (side, got) in [("head", &ranks.head), ("tail", &ranks.tail)] {
        let r = format!("{pre}rank.{side}.");
        let opt: Vec<i64> = got.iter().map(|x| x.optimistic as i64).collect();
        let pes: Vec<i64> = got.iter().map(|x| x.pessimistic as i64).collect();
        let num: Vec<i64> = got.iter().map(|x| x.num_options as i64).collect();
        let real: Vec<f32> = got.iter().map(|x| x.realistic()).collect();
        assert_eq!(opt, fx.i64(&format!("{r}optimistic")), "{side} optimistic");
        assert_eq!(
            pes,
            fx.i64(&format!("{r}pessimistic")),
            "{side} pessimistic"
        );
        assert_eq!(
            num,
            fx.i64(&format!("{r}num_options")),
            "{side} num_options"
        );
        close_abs(
            &format!("{side} realistic"),
            &real,
            &fx.f32(&format!("{r}realistic")),
            0.0,
        );
        let want_scores = fx.f32(&format!("{r}scores"));
        let mut scores = Vec::new();
        for &[h, rel, t] in &pos {
            let bots = model.project_all(rel as usize);
            scores.extend(if side == "head" {
                model.score_all_heads(&bots, rel as usize, t as usize)
            } else {
                model.score_all_tails(&bots, h as usize, rel as usize)
            });
        }
        close_abs(&format!("{side} scores"), &scores, &want_scores, 1e-5);
    }
    // The tie: tail side of positive #0 has optimistic != pessimistic.
    assert!(ranks.tail[0].optimistic < ranks.tail[0].pessimistic);
    // One Adam step from zero state, then the constraint.
    let mut adam = Adam::new(&model, 0.01);
    adam.update(&mut model, &out.grads);
    close_abs(
        "step.raw.entity",
        &model.entity,
        &fx.f32(&format!("{pre}step.raw.entity")),
        1e-5,
    );
    close_abs(
        "step.raw.relation",
        &model.relation,
        &fx.f32(&format!("{pre}step.raw.relation")),
        1e-5,
    );
    close_abs(
        "step.raw.projection",
        &model.projection,
        &fx.f32(&format!("{pre}step.raw.projection")),
        1e-5,
    );
    model.constrain();
    close_abs(
        "step.constrained.entity",
        &model.entity,
        &fx.f32(&format!("{pre}step.constrained.entity")),
        1e-5,
    );
    close_abs(
        "step.constrained.relation",
        &model.relation,
        &fx.f32(&format!("{pre}step.constrained.relation")),
        1e-5,
    );
    close_abs(
        "step.constrained.projection",
        &model.projection,
        &fx.f32(&format!("{pre}step.constrained.projection")),
        1e-5,
    );
}

#[test]
fn fixture_parity_p1() {
    check_p(1);
}

#[test]
fn fixture_parity_p2() {
    check_p(2);
}

#[test]
fn sampler_follows_pykeen_layout() {
    let fx = Fixture::open();
    let pos = fx.triples("pos_hrt");
    let (neg, cols) = sample_negatives(&pos, 43, &mut Rng::new(5)).unwrap();
    assert!(sample_negatives(&pos, 1, &mut Rng::new(5)).is_err());
    let want: Vec<u8> = fx
        .i64("neg_corrupted_column")
        .iter()
        .map(|&c| c as u8)
        .collect();
    assert_eq!(cols, want);
    for ((p, n), &c) in pos.iter().zip(&neg).zip(&cols) {
        for j in 0..3 {
            assert_eq!(p[j] == n[j], j != c as usize, "{p:?} -> {n:?} col {c}");
        }
        assert!(n[c as usize] < 43);
    }
}

#[test]
fn errors_are_clear() {
    let config = TransRConfig {
        num_entities: 3,
        num_relations: 1,
        entity_dim: 2,
        relation_dim: 2,
        p: PNorm::L1,
    };
    assert!(
        TransR::from_parts(config, vec![0.0; 5], vec![0.0; 2], vec![0.0; 4])
            .unwrap_err()
            .to_string()
            .contains("entity")
    );
    assert!(PNorm::from_p(3).is_err());
    let model = TransR::init(config, &mut Rng::new(0));
    let err = model
        .margin_loss_and_grads(&[[0, 0, 3]], &[[0, 0, 1]], 1.0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("out of range"), "{err}");
}

#[test]
fn umls_smoke_training_beats_random() {
    let splits = TripleSplits::load_dir(shared("data/kg/umls-benchmark")).unwrap();
    let config = TransRConfig {
        num_entities: splits.num_entities(),
        num_relations: splits.num_relations(),
        entity_dim: 50,
        relation_dim: 30,
        p: PNorm::L1,
    };
    let mut model = TransR::init(config, &mut Rng::new(1));
    let known = splits.all_triples();
    let before = filtered_ranks(&model, &splits.test, &known)
        .unwrap()
        .metrics();
    let cfg = TransRTrainConfig {
        epochs: 5,
        ..TransRTrainConfig::default()
    };
    let t0 = Instant::now();
    let stats = train(&mut model, &splits.train, &cfg, |_| {}).unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let after = filtered_ranks(&model, &splits.test, &known)
        .unwrap()
        .metrics();
    eprintln!(
        "UMLS {} epochs in {secs:.2} s; MRR {:.3} -> {:.3}, loss {:.3} -> {:.3}",
        cfg.epochs,
        before.mrr,
        after.mrr,
        stats[0].mean_loss,
        stats.last().unwrap().mean_loss
    );
    assert!(stats.last().unwrap().mean_loss < stats[0].mean_loss);
    assert!(
        after.mrr > 0.25 && after.mrr > 2.0 * before.mrr,
        "MRR {before:?} -> {after:?}"
    );
    assert_eq!(after.count, 2 * splits.test.len());
}

/// The fixture README's UMLS baseline (d 50, k 30, batch 256, Adam 0.01, 200
/// epochs, margin 1), p = 1 and p = 2; prints metrics and times. Run with
/// `cargo test --release -p kogner-train --test transr -- --ignored --nocapture`.
#[test]
#[ignore]
fn umls_full_benchmark() {
    let splits = TripleSplits::load_dir(shared("data/kg/umls-benchmark")).unwrap();
    let known = splits.all_triples();
    for p in [PNorm::L1, PNorm::L2] {
        let config = TransRConfig {
            num_entities: splits.num_entities(),
            num_relations: splits.num_relations(),
            entity_dim: 50,
            relation_dim: 30,
            p,
        };
        let mut model = TransR::init(config, &mut Rng::new(1));
        let cfg = TransRTrainConfig::default();
        let t0 = Instant::now();
        train(&mut model, &splits.train, &cfg, |_| {}).unwrap();
        let secs = t0.elapsed().as_secs_f64();
        let m = filtered_ranks(&model, &splits.test, &known)
            .unwrap()
            .metrics();
        eprintln!(
            "UMLS TransR p={}: {} epochs {secs:.1} s ({:.0} triples/s); MRR {:.3} H@1 {:.3} H@3 {:.3} H@10 {:.3}",
            p.p(),
            cfg.epochs,
            (cfg.epochs * splits.train.len()) as f64 / secs,
            m.mrr,
            m.hits_at_1,
            m.hits_at_3,
            m.hits_at_10
        );
        assert!(m.mrr > 0.4);
    }
}

/// One TransR epoch (d 50, k 30, p = 1, batch 256) over all 490,270 biomed
/// triples, for the time comparison with PyKEEN in the fixture README. Run
/// with `-- --ignored --nocapture`.
#[test]
#[ignore]
fn biomed_one_epoch_timing() {
    let kg = KnowledgeGraph::load_dir(shared("data/kg/biomed")).unwrap();
    let config = TransRConfig {
        num_entities: kg.num_nodes(),
        num_relations: kg.num_relations(),
        entity_dim: 50,
        relation_dim: 30,
        p: PNorm::L1,
    };
    let mut model = TransR::init(config, &mut Rng::new(1));
    let cfg = TransRTrainConfig {
        epochs: 1,
        ..TransRTrainConfig::default()
    };
    let stats = train(&mut model, &kg.edges, &cfg, |_| {}).unwrap();
    let s = &stats[0];
    eprintln!(
        "biomed TransR epoch: {:.1} s ({:.0} triples/s), mean loss {:.3}",
        s.seconds,
        kg.edges.len() as f64 / s.seconds,
        s.mean_loss
    );
    assert!(s.mean_loss.is_finite());
}
