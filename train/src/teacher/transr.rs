//! TransR training and evaluation, PyKEEN 1.11.1 semantics (SPEC §5.2):
//! PyKEEN's basic negative sampler (one negative per positive), margin
//! ranking loss, torch Adam on dense gradients, the entity/relation
//! constraint after every step, and filtered rank-based link-prediction
//! evaluation (optimistic / pessimistic / realistic ranks, both sides).

use std::collections::HashSet;
use std::time::Instant;

use kogner_models::teacher::transr::{TransR, TransRGrads};
use kogner_tensor::{Error, Result, Rng};
use rayon::prelude::*;

/// torch.optim.Adam (no weight decay, no amsgrad) over TransR's three
/// parameter arrays; the update is dense (rows with zero gradient still
/// move through their running moments, as in PyKEEN).
#[derive(Clone, Debug)]
pub struct Adam {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub step: u64,
    m: [Vec<f32>; 3],
    v: [Vec<f32>; 3],
}

impl Adam {
    /// torch defaults: betas (0.9, 0.999), eps 1e-8; zero state.
    pub fn new(model: &TransR, lr: f32) -> Adam {
        let sizes = [
            model.entity.len(),
            model.relation.len(),
            model.projection.len(),
        ];
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            step: 0,
            m: sizes.map(|n| vec![0.0; n]),
            v: sizes.map(|n| vec![0.0; n]),
        }
    }

    /// One torch Adam step (`param.addcdiv_(m, sqrt(v)/sqrt(bc2) + eps, value=-lr/bc1)`).
    pub fn update(&mut self, model: &mut TransR, grads: &TransRGrads) {
        self.step += 1;
        let t = self.step as i32;
        let bc1 = 1.0 - (self.beta1 as f64).powi(t);
        let bc2_sqrt = (1.0 - (self.beta2 as f64).powi(t)).sqrt() as f32;
        let step_size = (self.lr as f64 / bc1) as f32;
        let (b1, b2, eps) = (self.beta1, self.beta2, self.eps);
        let params = [
            &mut model.entity,
            &mut model.relation,
            &mut model.projection,
        ];
        let gs = [&grads.entity, &grads.relation, &grads.projection];
        for (((p, g), m), v) in params.into_iter().zip(gs).zip(&mut self.m).zip(&mut self.v) {
            const BLOCK: usize = 1 << 14;
            p.par_chunks_mut(BLOCK)
                .zip(g.par_chunks(BLOCK))
                .zip(m.par_chunks_mut(BLOCK))
                .zip(v.par_chunks_mut(BLOCK))
                .for_each(|(((p, g), m), v)| {
                    for i in 0..p.len() {
                        m[i] = m[i] * b1 + (1.0 - b1) * g[i];
                        v[i] = v[i] * b2 + (1.0 - b2) * g[i] * g[i];
                        let denom = v[i].sqrt() / bc2_sqrt + eps;
                        p[i] -= step_size * (m[i] / denom);
                    }
                });
        }
    }
}

/// PyKEEN's `BasicNegativeSampler` with one negative per positive: the first
/// ceil(B/2) rows get a new head, the others a new tail, drawn uniformly
/// among the N − 1 other entities (not filtered). Returns the negatives and
/// the corrupted column per row (0 head, 2 tail). Needs at least 2 entities.
pub fn sample_negatives(
    pos: &[[u32; 3]],
    num_entities: usize,
    rng: &mut Rng,
) -> Result<(Vec<[u32; 3]>, Vec<u8>)> {
    if num_entities < 2 {
        return Err(Error::Msg(format!(
            "negative sampling: need at least 2 entities, have {num_entities}"
        )));
    }
    let split = pos.len().div_ceil(2);
    let mut neg = Vec::with_capacity(pos.len());
    let mut cols = Vec::with_capacity(pos.len());
    for (i, &tr) in pos.iter().enumerate() {
        let col = if i < split { 0 } else { 2 };
        let mut e = rng.below(num_entities - 1) as u32;
        if e >= tr[col] {
            e += 1;
        }
        let mut n = tr;
        n[col] = e;
        neg.push(n);
        cols.push(col as u8);
    }
    Ok((neg, cols))
}

/// Training settings (defaults = the UMLS baseline of the fixture README).
#[derive(Clone, Debug)]
pub struct TransRTrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f32,
    pub margin: f32,
    pub seed: u64,
}

impl Default for TransRTrainConfig {
    fn default() -> Self {
        TransRTrainConfig {
            epochs: 200,
            batch_size: 256,
            lr: 0.01,
            margin: 1.0,
            seed: 0,
        }
    }
}

/// What one epoch did.
#[derive(Clone, Debug)]
pub struct EpochStats {
    pub epoch: usize,
    /// Mean of the batch losses (PyKEEN's epoch loss weighting aside).
    pub mean_loss: f32,
    pub seconds: f64,
}

/// Trains `model` on `train` triples: per epoch a shuffled pass in batches
/// (the last one may be smaller), each batch = sample negatives, loss and
/// gradients, Adam step, constraint. `on_epoch` sees every epoch's stats.
pub fn train(
    model: &mut TransR,
    train: &[[u32; 3]],
    cfg: &TransRTrainConfig,
    mut on_epoch: impl FnMut(&EpochStats),
) -> Result<Vec<EpochStats>> {
    if train.is_empty() || cfg.batch_size == 0 {
        return Err(Error::Msg(
            "TransR training: no triples or batch size 0".into(),
        ));
    }
    if model.config.num_entities < 2 {
        return Err(Error::Msg(
            "TransR training: need at least 2 entities to corrupt triples".into(),
        ));
    }
    for &tr in train {
        model.check_triple(tr)?;
    }
    let mut rng = Rng::new(cfg.seed);
    let mut adam = Adam::new(model, cfg.lr);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut stats = Vec::with_capacity(cfg.epochs);
    for epoch in 0..cfg.epochs {
        let start = Instant::now();
        rng.shuffle(&mut order);
        let (mut loss_sum, mut batches) = (0.0f64, 0usize);
        for idx in order.chunks(cfg.batch_size) {
            let pos: Vec<[u32; 3]> = idx.iter().map(|&i| train[i]).collect();
            let (neg, _) = sample_negatives(&pos, model.config.num_entities, &mut rng)?;
            let out = model.margin_loss_and_grads(&pos, &neg, cfg.margin)?;
            adam.update(model, &out.grads);
            model.constrain();
            loss_sum += out.loss as f64;
            batches += 1;
        }
        let s = EpochStats {
            epoch,
            mean_loss: (loss_sum / batches as f64) as f32,
            seconds: start.elapsed().as_secs_f64(),
        };
        on_epoch(&s);
        stats.push(s);
    }
    Ok(stats)
}

/// Filtered rank of one test triple on one side.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rank {
    /// 1 + #(non-filtered candidates scoring > true).
    pub optimistic: u64,
    /// #(non-filtered candidates scoring ≥ true), the true one included.
    pub pessimistic: u64,
    /// Candidates left after filtering (the true one included).
    pub num_options: u64,
}

impl Rank {
    /// (optimistic + pessimistic) / 2 in f32, as PyKEEN.
    pub fn realistic(&self) -> f32 {
        (self.optimistic + self.pessimistic) as f32 / 2.0
    }
}

/// Ranks from one side's candidate scores: `filtered[e]` marks candidates
/// that form a known triple other than the test one (PyKEEN sets them NaN).
pub fn rank_from_scores(
    scores: &[f32],
    true_index: usize,
    filtered: impl Fn(usize) -> bool,
) -> Rank {
    let s = scores[true_index];
    let (mut gt, mut ge, mut opts) = (0u64, 0u64, 0u64);
    for (e, &c) in scores.iter().enumerate() {
        if e != true_index && filtered(e) {
            continue;
        }
        opts += 1;
        gt += (c > s) as u64;
        ge += (c >= s) as u64;
    }
    Rank {
        optimistic: 1 + gt,
        pessimistic: ge,
        num_options: opts,
    }
}

/// Head-side and tail-side filtered ranks of every test triple.
#[derive(Clone, Debug)]
pub struct SideRanks {
    pub head: Vec<Rank>,
    pub tail: Vec<Rank>,
}

/// Filtered ranks of `test` against `known` (all true triples: train +
/// valid + test). Candidates: every entity; scores as `TransR::score`.
pub fn filtered_ranks(model: &TransR, test: &[[u32; 3]], known: &[[u32; 3]]) -> Result<SideRanks> {
    for &tr in test.iter().chain(known) {
        model.check_triple(tr)?;
    }
    let known: HashSet<[u32; 3]> = known.iter().copied().collect();
    let nr = model.config.num_relations;
    // Clamped projections of all entities under every relation.
    let bots: Vec<Vec<f32>> = (0..nr)
        .into_par_iter()
        .map(|r| model.project_all(r))
        .collect();
    let ranks: Vec<(Rank, Rank)> = test
        .par_iter()
        .map(|&[h, r, t]| {
            let b = &bots[r as usize];
            let heads = model.score_all_heads(b, r as usize, t as usize);
            let tails = model.score_all_tails(b, h as usize, r as usize);
            let hr = rank_from_scores(&heads, h as usize, |e| known.contains(&[e as u32, r, t]));
            let tr = rank_from_scores(&tails, t as usize, |e| known.contains(&[h, r, e as u32]));
            (hr, tr)
        })
        .collect();
    let (head, tail) = ranks.into_iter().unzip();
    Ok(SideRanks { head, tail })
}

/// MRR and Hits@k over both sides with the realistic rank.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkPredictionMetrics {
    pub mrr: f64,
    pub hits_at_1: f64,
    pub hits_at_3: f64,
    pub hits_at_10: f64,
    /// Number of ranks averaged (2 × test triples).
    pub count: usize,
}

impl SideRanks {
    pub fn metrics(&self) -> LinkPredictionMetrics {
        let all: Vec<f64> = self
            .head
            .iter()
            .chain(&self.tail)
            .map(|r| r.realistic() as f64)
            .collect();
        let n = all.len().max(1) as f64;
        let hits = |k: f64| all.iter().filter(|&&r| r <= k).count() as f64 / n;
        LinkPredictionMetrics {
            mrr: all.iter().map(|r| 1.0 / r).sum::<f64>() / n,
            hits_at_1: hits(1.0),
            hits_at_3: hits(3.0),
            hits_at_10: hits(10.0),
            count: all.len(),
        }
    }
}
