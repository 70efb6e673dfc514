//! TransR (Z'' of the KoGNER teacher), PyKEEN 1.11.1 convention (SPEC §5.2,
//! `shared/fixtures/teacher/transr/README.md`):
//!
//! ```text
//! proj = e @ P[r]                     P stored (R, d, k)
//! c(x) = x if ‖x‖_p < 1 else x / max(‖x‖_p, eps32)        (strict <)
//! f(h, r, t) = −‖c(e_h @ P[r]) + r_r − c(e_t @ P[r])‖_p
//! loss = mean_b max(0, f(neg_b) − f(pos_b) + margin)
//! ```
//!
//! The clamp is differentiated through (x / ‖x‖ including the norm's
//! dependence on x); entity and relation rows are constrained with the same
//! `c` after each optimiser step ([`TransR::constrain`], not differentiated);
//! projections are never constrained. The math is written per triple with
//! hand-derived gradients (no autograd graph), which keeps a batch step
//! cheap and lets [`TransR::margin_loss_and_grads`] split the batch over
//! rayon in fixed chunks (the result does not depend on the thread count).

use kogner_tensor::{Error, Result, Rng, Tensor};
use rayon::prelude::*;

/// PyKEEN's floor on the norm before dividing (`torch.finfo(float32).eps`).
const EPS32: f32 = 1.192_092_9e-7;

/// Pairs per rayon task in [`TransR::margin_loss_and_grads`].
const CHUNK: usize = 16;

/// The scoring / clamp / constraint norm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PNorm {
    L1,
    L2,
}

impl PNorm {
    /// 1 → L1, 2 → L2; anything else is an error.
    pub fn from_p(p: u32) -> Result<PNorm> {
        match p {
            1 => Ok(PNorm::L1),
            2 => Ok(PNorm::L2),
            _ => Err(Error::Msg(format!(
                "TransR: scoring norm p = {p} not supported (1 or 2)"
            ))),
        }
    }

    pub fn p(self) -> u32 {
        match self {
            PNorm::L1 => 1,
            PNorm::L2 => 2,
        }
    }

    #[inline]
    pub fn norm(self, x: &[f32]) -> f32 {
        match self {
            PNorm::L1 => x.iter().map(|v| v.abs()).sum(),
            PNorm::L2 => x.iter().map(|v| v * v).sum::<f32>().sqrt(),
        }
    }

    /// ∂‖x‖/∂x_j with torch's conventions at zero (sign(0) = 0; 0 at x = 0 for L2).
    #[inline]
    fn norm_partial(self, v: f32, n: f32) -> f32 {
        match self {
            PNorm::L1 => {
                if v > 0.0 {
                    1.0
                } else if v < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
            PNorm::L2 => {
                if n > 0.0 {
                    v / n
                } else {
                    0.0
                }
            }
        }
    }
}

/// PyKEEN's `clamp_norm(x, p, maxnorm = 1)` in place; returns whether the
/// rescale branch was taken and the norm before it.
#[inline]
pub fn clamp_unit(p: PNorm, x: &mut [f32]) -> (bool, f32) {
    let n = p.norm(x);
    if n < 1.0 {
        (false, n)
    } else {
        let nc = n.max(EPS32);
        x.iter_mut().for_each(|v| *v = *v / nc * 1.0);
        (true, n)
    }
}

/// Sizes of a TransR model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransRConfig {
    pub num_entities: usize,
    pub num_relations: usize,
    /// Entity dimension d.
    pub entity_dim: usize,
    /// Relation dimension k.
    pub relation_dim: usize,
    pub p: PNorm,
}

/// Parameters (row-major f32): entity (N, d), relation (R, k), projection (R, d, k).
#[derive(Clone, Debug, PartialEq)]
pub struct TransR {
    pub config: TransRConfig,
    pub entity: Vec<f32>,
    pub relation: Vec<f32>,
    pub projection: Vec<f32>,
}

/// Gradients in the parameters' layouts.
#[derive(Clone, Debug, PartialEq)]
pub struct TransRGrads {
    pub entity: Vec<f32>,
    pub relation: Vec<f32>,
    pub projection: Vec<f32>,
}

/// One side's projection of a triple: before and after the clamp.
#[derive(Clone, Debug, PartialEq)]
pub struct Projected {
    pub proj: Vec<f32>,
    pub bot: Vec<f32>,
    pub clamped: bool,
}

/// Per-pair outputs of the margin ranking loss.
#[derive(Clone, Debug, PartialEq)]
pub struct MarginLoss {
    pub loss: f32,
    pub pos_scores: Vec<f32>,
    pub neg_scores: Vec<f32>,
    pub hinge: Vec<f32>,
    pub grads: TransRGrads,
}

/// Chunk-local gradient: sparse entity rows, dense relation/projection.
struct ChunkGrads {
    entity_rows: Vec<(u32, Vec<f32>)>,
    relation: Vec<f32>,
    projection: Vec<f32>,
}

impl TransR {
    /// PyKEEN's initialisation followed by the constraint: entities
    /// U(−a, a), a = sqrt(6/d); relations torch xavier-uniform on (R, k) then
    /// L2-normalised rows; projections torch xavier-uniform on (R, d, k)
    /// (fan_in = d·k, fan_out = R·k).
    pub fn init(config: TransRConfig, rng: &mut Rng) -> TransR {
        let TransRConfig {
            num_entities: n,
            num_relations: r,
            entity_dim: d,
            relation_dim: k,
            ..
        } = config;
        let mut uniform = |len: usize, a: f32| -> Vec<f32> {
            (0..len).map(|_| (2.0 * rng.next_f32() - 1.0) * a).collect()
        };
        let entity = uniform(n * d, (6.0 / d as f32).sqrt());
        let mut relation = uniform(r * k, (6.0 / (r + k) as f32).sqrt());
        for row in relation.chunks_exact_mut(k) {
            let nrm = PNorm::L2.norm(row).max(1e-12);
            row.iter_mut().for_each(|v| *v /= nrm);
        }
        let projection = uniform(r * d * k, (6.0 / (d * k + r * k) as f32).sqrt());
        let mut model = TransR {
            config,
            entity,
            relation,
            projection,
        };
        model.constrain();
        model
    }

    /// Wraps given parameters after checking their sizes.
    pub fn from_parts(
        config: TransRConfig,
        entity: Vec<f32>,
        relation: Vec<f32>,
        projection: Vec<f32>,
    ) -> Result<TransR> {
        let TransRConfig {
            num_entities: n,
            num_relations: r,
            entity_dim: d,
            relation_dim: k,
            ..
        } = config;
        for (name, got, want) in [
            ("entity", entity.len(), n * d),
            ("relation", relation.len(), r * k),
            ("projection", projection.len(), r * d * k),
        ] {
            if got != want {
                return Err(Error::Msg(format!(
                    "TransR: {name} has {got} values, expected {want} for {config:?}"
                )));
            }
        }
        Ok(TransR {
            config,
            entity,
            relation,
            projection,
        })
    }

    /// The parameters as tensors: entity (N, d), relation (R, k), projection (R, d, k).
    pub fn to_tensors(&self) -> Result<[(&'static str, Tensor); 3]> {
        let TransRConfig {
            num_entities: n,
            num_relations: r,
            entity_dim: d,
            relation_dim: k,
            ..
        } = self.config;
        Ok([
            ("entity", Tensor::from_slice(&self.entity, &[n, d])?),
            ("relation", Tensor::from_slice(&self.relation, &[r, k])?),
            (
                "projection",
                Tensor::from_slice(&self.projection, &[r, d, k])?,
            ),
        ])
    }

    /// Entity embedding rows (the teacher's Z'').
    pub fn entity_row(&self, e: usize) -> &[f32] {
        let d = self.config.entity_dim;
        &self.entity[e * d..(e + 1) * d]
    }

    fn relation_row(&self, r: usize) -> &[f32] {
        let k = self.config.relation_dim;
        &self.relation[r * k..(r + 1) * k]
    }

    fn proj_matrix(&self, r: usize) -> &[f32] {
        let dk = self.config.entity_dim * self.config.relation_dim;
        &self.projection[r * dk..(r + 1) * dk]
    }

    /// Checks that a triple's indices are in range.
    pub fn check_triple(&self, [h, r, t]: [u32; 3]) -> Result<()> {
        let (n, nr) = (self.config.num_entities, self.config.num_relations);
        if h as usize >= n || t as usize >= n || r as usize >= nr {
            return Err(Error::Msg(format!(
                "TransR: triple ({h}, {r}, {t}) out of range ({n} entities, {nr} relations)"
            )));
        }
        Ok(())
    }

    /// `e @ P[r]` written into `out` (k).
    #[inline]
    fn project_into(&self, e: usize, r: usize, out: &mut [f32]) {
        let k = self.config.relation_dim;
        let m = self.proj_matrix(r);
        out.iter_mut().for_each(|v| *v = 0.0);
        for (i, &ei) in self.entity_row(e).iter().enumerate() {
            for (o, &pij) in out.iter_mut().zip(&m[i * k..(i + 1) * k]) {
                *o += ei * pij;
            }
        }
    }

    /// `e @ P[r]` and its clamp.
    pub fn project(&self, e: usize, r: usize) -> Projected {
        let mut proj = vec![0.0; self.config.relation_dim];
        self.project_into(e, r, &mut proj);
        let mut bot = proj.clone();
        let (clamped, _) = clamp_unit(self.config.p, &mut bot);
        Projected { proj, bot, clamped }
    }

    /// `−‖h_bot + r − t_bot‖_p`.
    #[inline]
    fn score_bots(&self, h_bot: &[f32], r: usize, t_bot: &[f32]) -> f32 {
        let p = self.config.p;
        let rr = self.relation_row(r);
        match p {
            PNorm::L1 => -h_bot
                .iter()
                .zip(rr)
                .zip(t_bot)
                .map(|((a, b), c)| (a + b - c).abs())
                .sum::<f32>(),
            PNorm::L2 => -h_bot
                .iter()
                .zip(rr)
                .zip(t_bot)
                .map(|((a, b), c)| (a + b - c) * (a + b - c))
                .sum::<f32>()
                .sqrt(),
        }
    }

    /// f(h, r, t).
    pub fn score(&self, [h, r, t]: [u32; 3]) -> f32 {
        let r = r as usize;
        self.score_bots(
            &self.project(h as usize, r).bot,
            r,
            &self.project(t as usize, r).bot,
        )
    }

    /// Clamped projections of every entity under relation `r`: (N, k).
    pub fn project_all(&self, r: usize) -> Vec<f32> {
        let k = self.config.relation_dim;
        let mut out = vec![0.0; self.config.num_entities * k];
        for (e, row) in out.chunks_exact_mut(k).enumerate() {
            self.project_into(e, r, row);
            clamp_unit(self.config.p, row);
        }
        out
    }

    /// f(e, r, t) for every entity e, given `bots = project_all(r)`.
    pub fn score_all_heads(&self, bots: &[f32], r: usize, t: usize) -> Vec<f32> {
        let k = self.config.relation_dim;
        let t_bot = &bots[t * k..(t + 1) * k];
        bots.chunks_exact(k)
            .map(|h_bot| self.score_bots(h_bot, r, t_bot))
            .collect()
    }

    /// f(h, r, e) for every entity e, given `bots = project_all(r)`.
    pub fn score_all_tails(&self, bots: &[f32], h: usize, r: usize) -> Vec<f32> {
        let k = self.config.relation_dim;
        let h_bot = &bots[h * k..(h + 1) * k];
        bots.chunks_exact(k)
            .map(|t_bot| self.score_bots(h_bot, r, t_bot))
            .collect()
    }

    /// Adds `w · ∂f(h, r, t)/∂θ` to `acc`; returns f.
    fn score_backward(&self, [h, r, t]: [u32; 3], w: f32, acc: &mut ChunkGrads) -> f32 {
        let (d, k, p) = (
            self.config.entity_dim,
            self.config.relation_dim,
            self.config.p,
        );
        let r = r as usize;
        let (ph, pt) = (self.project(h as usize, r), self.project(t as usize, r));
        let rr = self.relation_row(r);
        let u: Vec<f32> = (0..k).map(|j| ph.bot[j] + rr[j] - pt.bot[j]).collect();
        let un = p.norm(&u);
        let f = -un;
        if w == 0.0 {
            return f;
        }
        // g_u = w · ∂f/∂u = −w · ∂‖u‖/∂u.
        let gu: Vec<f32> = u.iter().map(|&v| -w * p.norm_partial(v, un)).collect();
        let rel = &mut acc.relation[r * k..(r + 1) * k];
        rel.iter_mut().zip(&gu).for_each(|(a, g)| *a += g);
        let m = self.proj_matrix(r);
        for (side, sign, e) in [(&ph, 1.0f32, h as usize), (&pt, -1.0f32, t as usize)] {
            // Gradient w.r.t. the clamped vector, then back through the clamp.
            let gb: Vec<f32> = gu.iter().map(|g| sign * g).collect();
            let gx: Vec<f32> = if side.clamped {
                let n = p.norm(&side.proj).max(EPS32);
                let dot: f32 = gb.iter().zip(&side.proj).map(|(g, x)| g * x).sum();
                side.proj
                    .iter()
                    .zip(&gb)
                    .map(|(&x, &g)| g / n - dot * p.norm_partial(x, n) / (n * n))
                    .collect()
            } else {
                gb
            };
            let er = self.entity_row(e);
            let pr = &mut acc.projection[r * d * k..(r + 1) * d * k];
            let mut ge = vec![0.0f32; d];
            for i in 0..d {
                let (mrow, prow) = (&m[i * k..(i + 1) * k], &mut pr[i * k..(i + 1) * k]);
                ge[i] = mrow.iter().zip(&gx).map(|(a, b)| a * b).sum();
                prow.iter_mut().zip(&gx).for_each(|(a, g)| *a += er[i] * g);
            }
            acc.entity_rows.push((e as u32, ge));
        }
        f
    }

    /// PyKEEN's margin ranking loss over pairs (pos_b, neg_b), mean
    /// reduction, with its gradients. Runs in parallel over fixed chunks of
    /// pairs, reduced in chunk order (deterministic for any thread count).
    pub fn margin_loss_and_grads(
        &self,
        pos: &[[u32; 3]],
        neg: &[[u32; 3]],
        margin: f32,
    ) -> Result<MarginLoss> {
        if pos.len() != neg.len() || pos.is_empty() {
            return Err(Error::Msg(format!(
                "TransR loss: {} positives vs {} negatives (need equal, non-zero)",
                pos.len(),
                neg.len()
            )));
        }
        for &tr in pos.iter().chain(neg) {
            self.check_triple(tr)?;
        }
        let TransRConfig {
            num_entities: n,
            num_relations: nr,
            entity_dim: d,
            relation_dim: k,
            ..
        } = self.config;
        let b = pos.len();
        let inv_b = 1.0 / b as f32;
        struct ChunkOut {
            pos: Vec<f32>,
            neg: Vec<f32>,
            grads: ChunkGrads,
        }
        let chunks: Vec<ChunkOut> = pos
            .par_chunks(CHUNK)
            .zip(neg.par_chunks(CHUNK))
            .map(|(pc, nc)| {
                let mut grads = ChunkGrads {
                    entity_rows: Vec::with_capacity(4 * pc.len()),
                    relation: vec![0.0; nr * k],
                    projection: vec![0.0; nr * d * k],
                };
                let (mut ps, mut ns) = (Vec::with_capacity(pc.len()), Vec::with_capacity(pc.len()));
                for (&pt, &nt) in pc.iter().zip(nc) {
                    let (fp, fn_) = (self.score(pt), self.score(nt));
                    // relu'(0) = 0 as in torch.
                    if fn_ - fp + margin > 0.0 {
                        self.score_backward(pt, -inv_b, &mut grads);
                        self.score_backward(nt, inv_b, &mut grads);
                    }
                    ps.push(fp);
                    ns.push(fn_);
                }
                ChunkOut {
                    pos: ps,
                    neg: ns,
                    grads,
                }
            })
            .collect();
        let mut grads = TransRGrads {
            entity: vec![0.0; n * d],
            relation: vec![0.0; nr * k],
            projection: vec![0.0; nr * d * k],
        };
        let (mut pos_scores, mut neg_scores) = (Vec::with_capacity(b), Vec::with_capacity(b));
        for c in chunks {
            pos_scores.extend(c.pos);
            neg_scores.extend(c.neg);
            for (e, g) in c.grads.entity_rows {
                let row = &mut grads.entity[e as usize * d..(e as usize + 1) * d];
                row.iter_mut().zip(&g).for_each(|(a, v)| *a += v);
            }
            grads
                .relation
                .iter_mut()
                .zip(&c.grads.relation)
                .for_each(|(a, v)| *a += v);
            grads
                .projection
                .iter_mut()
                .zip(&c.grads.projection)
                .for_each(|(a, v)| *a += v);
        }
        let hinge: Vec<f32> = pos_scores
            .iter()
            .zip(&neg_scores)
            .map(|(p, q)| (q - p + margin).max(0.0))
            .collect();
        let loss = hinge.iter().sum::<f32>() / b as f32;
        Ok(MarginLoss {
            loss,
            pos_scores,
            neg_scores,
            hinge,
            grads,
        })
    }

    /// PyKEEN's `post_parameter_update`: clamp every entity and relation row
    /// to p-norm ≤ 1 (projections untouched).
    pub fn constrain(&mut self) {
        let (d, k, p) = (
            self.config.entity_dim,
            self.config.relation_dim,
            self.config.p,
        );
        self.entity.par_chunks_mut(d * 256).for_each(|block| {
            block.chunks_exact_mut(d).for_each(|row| {
                clamp_unit(p, row);
            })
        });
        self.relation.chunks_exact_mut(k).for_each(|row| {
            clamp_unit(p, row);
        });
    }
}
