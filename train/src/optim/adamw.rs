//! AdamW with `torch.optim.AdamW`'s arithmetic (single-tensor path,
//! `amsgrad=False`, `maximize=False`), per named parameter.
//!
//! For a parameter `p` with gradient `g` at step `t` (1-based), group
//! learning rate `lr` and weight decay `wd`, in the parameter's precision
//! (scalars rounded to it as PyTorch does):
//! `p ← p·(1 − lr·wd)` (skipped when `wd = 0`); `m ← lerp(m, g, 1 − β₁)`;
//! `v ← v·β₂ + (1 − β₂)·g·g`; `denom = √v / √(1 − β₂ᵗ) + ε`;
//! `p ← p + (−lr / (1 − β₁ᵗ))·m / denom`. Parameters without a gradient are
//! skipped entirely (no decay, no step count), as in PyTorch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use kogner_autograd::{Grads, ParamStore};
use kogner_kernels::Float;
use kogner_tensor::safetensors_io::{self, SafeTensorsFile};
use kogner_tensor::{with_float_dtype, DType, Error, FloatElement, Result, Tensor};
use rayon::prelude::*;

use super::groups::ParamGroup;

/// Hyper-parameters shared by every group (PyTorch defaults: betas (0.9,
/// 0.999), eps 1e-8).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }
}

/// One parameter's optimiser state (PyTorch's `state[p]`).
#[derive(Clone, Debug)]
pub struct AdamState {
    /// Steps taken on this parameter.
    pub step: u64,
    /// First moment `m`, shaped like the parameter.
    pub exp_avg: Tensor,
    /// Second moment `v`.
    pub exp_avg_sq: Tensor,
}

#[derive(Debug)]
pub struct AdamW {
    config: AdamWConfig,
    groups: Vec<ParamGroup>,
    state: BTreeMap<String, AdamState>,
}

const FORMAT: &str = "kogner-adamw-v1";

fn err(msg: impl Into<String>) -> Error {
    Error::Msg(format!("AdamW: {}", msg.into()))
}

impl AdamW {
    /// Validates the hyper-parameters and that no parameter is in two groups.
    pub fn new(groups: Vec<ParamGroup>, config: AdamWConfig) -> Result<AdamW> {
        for (what, b) in [("beta1", config.beta1), ("beta2", config.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(err(format!("{what} must be in [0, 1), got {b}")));
            }
        }
        if !(config.eps >= 0.0 && config.eps.is_finite()) {
            return Err(err(format!("eps must be a finite number ≥ 0, got {}", config.eps)));
        }
        let mut seen = HashSet::new();
        for g in &groups {
            if !(g.lr >= 0.0 && g.lr.is_finite() && g.weight_decay >= 0.0 && g.weight_decay.is_finite()) {
                return Err(err(format!("group `{}`: lr {} and weight decay {} must be finite numbers ≥ 0", g.name, g.lr, g.weight_decay)));
            }
            for p in &g.params {
                if !seen.insert(p.as_str()) {
                    return Err(err(format!("parameter `{p}` is in more than one group")));
                }
            }
        }
        Ok(AdamW { config, groups, state: BTreeMap::new() })
    }

    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }
    pub fn groups(&self) -> &[ParamGroup] {
        &self.groups
    }
    /// The state of parameter `name` (None before its first step).
    pub fn state(&self, name: &str) -> Option<&AdamState> {
        self.state.get(name)
    }

    /// One update of every grouped parameter that has a gradient in
    /// `grads`, at each group's `lr · lr_factor` (the schedule's factor).
    /// Every gradient is checked (shape, dtype, finite values) before any
    /// parameter changes, so an error leaves parameters and state untouched.
    pub fn step(&mut self, params: &ParamStore, grads: &Grads, lr_factor: f64) -> Result<()> {
        self.step_scaled(params, grads, lr_factor, 1.0)
    }

    /// [`step`](Self::step) with every gradient multiplied by `grad_scale`
    /// first (as `g · s` in the gradient's dtype: bit for bit a step on
    /// gradients scaled beforehand, e.g. by [`clip_coef`](super::clip_coef)'s
    /// factor, without a pass that writes them).
    pub fn step_scaled(&mut self, params: &ParamStore, grads: &Grads, lr_factor: f64, grad_scale: f64) -> Result<()> {
        if !(lr_factor >= 0.0 && lr_factor.is_finite()) {
            return Err(err(format!("learning-rate factor must be a finite number ≥ 0, got {lr_factor}")));
        }
        let mut work = Vec::new();
        for group in &self.groups {
            for name in &group.params {
                let var = params.var(name).map_err(|e| err(e.to_string()))?;
                let Some(g) = grads.get(&var) else { continue };
                let p = var.value();
                if g.shape() != p.shape() || g.dtype() != p.dtype() {
                    return Err(err(format!(
                        "gradient of `{name}` is {:?} {:?}, the parameter {:?} {:?}",
                        g.dtype(),
                        g.shape(),
                        p.dtype(),
                        p.shape()
                    )));
                }
                if !g.all_finite()? {
                    return Err(err(format!("gradient of `{name}` has NaN or infinite values")));
                }
                work.push((name.clone(), var, g.contiguous()?, group.lr * lr_factor, group.weight_decay));
            }
        }
        let cfg = self.config;
        for (name, var, g, lr, wd) in work {
            let st = self.state.entry(name).or_insert_with(|| {
                let p = var.value();
                AdamState { step: 0, exp_avg: Tensor::zeros(p.shape(), p.dtype()), exp_avg_sq: Tensor::zeros(p.shape(), p.dtype()) }
            });
            st.step += 1;
            let h = Hyper::new(&cfg, lr, wd, st.step);
            var.update_value(|p| {
                with_float_dtype!(p.dtype(), "AdamW", T => update_par::<T>(
                    p.data_mut::<T>()?,
                    g.as_slice::<T>()?,
                    st.exp_avg.data_mut::<T>()?,
                    st.exp_avg_sq.data_mut::<T>()?,
                    T::from_f64(grad_scale),
                    &h,
                ));
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Write the state of every stepped parameter: `exp_avg.<name>`,
    /// `exp_avg_sq.<name>` (the parameter's dtype) and `step.<name>` (i64 [1]).
    pub fn save_state(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut owned: Vec<(String, Tensor)> = Vec::with_capacity(3 * self.state.len());
        for (name, st) in &self.state {
            owned.push((format!("exp_avg.{name}"), st.exp_avg.clone()));
            owned.push((format!("exp_avg_sq.{name}"), st.exp_avg_sq.clone()));
            owned.push((format!("step.{name}"), Tensor::from_vec(vec![st.step as i64], &[1])?));
        }
        let refs: Vec<(&str, &Tensor)> = owned.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let meta = HashMap::from([("format".to_string(), FORMAT.to_string())]);
        safetensors_io::save(path, &refs, Some(meta))
    }

    /// Replace the state with a file written by [`AdamW::save_state`]. Every
    /// entry must belong to a grouped parameter of `params`, shaped like it;
    /// parameters absent from the file start fresh.
    pub fn load_state(&mut self, path: impl AsRef<Path>, params: &ParamStore) -> Result<()> {
        let path = path.as_ref();
        let file = SafeTensorsFile::open(path)?;
        file.expect_format(FORMAT, "AdamW state")?;
        let grouped: HashSet<&str> = self.groups.iter().flat_map(|g| g.params.iter().map(String::as_str)).collect();
        let mut state = BTreeMap::new();
        let mut expected = 0usize;
        for tensor_name in file.names() {
            let Some(name) = tensor_name.strip_prefix("step.") else { continue };
            if !grouped.contains(name) {
                return Err(Error::file(path, format!("state for `{name}`, which is in no parameter group")));
            }
            let p = params.var(name).map_err(|e| Error::file(path, e))?.value();
            let step = file.get_as(&tensor_name, &[1], DType::I64)?.to_vec::<i64>()?[0];
            if step < 1 {
                return Err(Error::file(path, format!("`{tensor_name}` is {step}, expected ≥ 1")));
            }
            let exp_avg = file.get_as(&format!("exp_avg.{name}"), p.shape(), p.dtype())?;
            let exp_avg_sq = file.get_as(&format!("exp_avg_sq.{name}"), p.shape(), p.dtype())?;
            state.insert(name.to_string(), AdamState { step: step as u64, exp_avg, exp_avg_sq });
            expected += 3;
        }
        if expected != file.names().len() {
            return Err(Error::file(path, "tensors without a matching `step.<name>` entry"));
        }
        self.state = state;
        Ok(())
    }
}

/// The scalars of one parameter's update, as PyTorch rounds them.
struct Hyper {
    decay: Option<f64>,
    lerp_w: f64,
    beta2: f64,
    one_minus_beta2: f64,
    bc2_sqrt: f64,
    eps: f64,
    neg_step_size: f64,
}

impl Hyper {
    fn new(c: &AdamWConfig, lr: f64, wd: f64, step: u64) -> Hyper {
        let t = step as f64;
        let bc1 = 1.0 - c.beta1.powf(t);
        let bc2 = 1.0 - c.beta2.powf(t);
        Hyper {
            decay: (wd != 0.0).then_some(1.0 - lr * wd),
            lerp_w: 1.0 - c.beta1,
            beta2: c.beta2,
            one_minus_beta2: 1.0 - c.beta2,
            bc2_sqrt: bc2.powf(0.5),
            eps: c.eps,
            neg_step_size: -(lr / bc1),
        }
    }
}

/// [`update`] over chunks of the parameter in parallel (each element's
/// update is independent, so the thread count changes nothing).
fn update_par<T: FloatElement>(p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], grad_scale: T, h: &Hyper) {
    const CHUNK: usize = 1 << 15;
    if p.len() <= CHUNK {
        return update(p, g, m, v, grad_scale, h);
    }
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| update(p, g, m, v, grad_scale, h));
}

fn update<T: FloatElement>(p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], grad_scale: T, h: &Hyper) {
    let w = T::from_f64(h.lerp_w);
    let one_minus_w = T::ONE - w;
    let small_w = h.lerp_w.abs() < 0.5;
    let (b2, omb2) = (T::from_f64(h.beta2), T::from_f64(h.one_minus_beta2));
    let (bc2s, eps, neg_step) = (T::from_f64(h.bc2_sqrt), T::from_f64(h.eps), T::from_f64(h.neg_step_size));
    let decay = h.decay.map(T::from_f64);
    for i in 0..p.len() {
        let gi = g[i] * grad_scale;
        let mut pi = p[i];
        if let Some(d) = decay {
            pi *= d;
        }
        // torch.lerp's two-branch formula.
        let mi = if small_w { m[i] + w * (gi - m[i]) } else { gi - (gi - m[i]) * one_minus_w };
        let vi = v[i] * b2 + omb2 * gi * gi;
        let denom = Float::sqrt(vi) / bc2s + eps;
        p[i] = pi + neg_step * mi / denom;
        m[i] = mi;
        v[i] = vi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(vals: &[f32]) -> ParamStore {
        let mut ps = ParamStore::new();
        ps.insert("w", Tensor::from_vec(vals.to_vec(), &[vals.len()]).unwrap()).unwrap();
        ps.insert("b", Tensor::from_vec(vec![0.5f32], &[1]).unwrap()).unwrap();
        ps
    }

    fn grads_for(ps: &ParamStore, w: &[f32]) -> Grads {
        let mut g = Grads::default();
        g.insert(&ps.var("w").unwrap(), Tensor::from_vec(w.to_vec(), &[w.len()]).unwrap());
        g
    }

    /// Textbook AdamW in f64, three steps.
    #[test]
    fn matches_reference_over_steps_and_skips_params_without_grad() {
        let ps = store(&[1.0, -2.0]);
        let groups = vec![
            ParamGroup { name: "a".into(), lr: 0.1, weight_decay: 0.5, params: vec!["w".into()] },
            ParamGroup { name: "b".into(), lr: 0.1, weight_decay: 0.5, params: vec!["b".into()] },
        ];
        let mut opt = AdamW::new(groups, AdamWConfig::default()).unwrap();
        let gs = [[0.3f32, -1.0], [0.1, 2.0], [-0.2, 0.5]];
        let (mut p, mut m, mut v) = ([1.0f64, -2.0], [0.0f64; 2], [0.0f64; 2]);
        for (t, g) in gs.iter().enumerate() {
            let factor = 1.0 / (t + 1) as f64;
            opt.step(&ps, &grads_for(&ps, g), factor).unwrap();
            let lr = 0.1 * factor;
            let t = (t + 1) as i32;
            for i in 0..2 {
                let gi = g[i] as f64;
                p[i] *= 1.0 - lr * 0.5;
                m[i] = 0.9 * m[i] + 0.1 * gi;
                v[i] = 0.999 * v[i] + 0.001 * gi * gi;
                let mh = m[i] / (1.0 - 0.9f64.powi(t));
                let vh = v[i] / (1.0 - 0.999f64.powi(t));
                p[i] -= lr * mh / (vh.sqrt() + 1e-8);
            }
        }
        let got = ps.var("w").unwrap().value().to_vec::<f32>().unwrap();
        for i in 0..2 {
            assert!((got[i] as f64 - p[i]).abs() < 1e-6, "{got:?} vs {p:?}");
        }
        assert_eq!(opt.state("w").unwrap().step, 3);
        assert!(opt.state("b").is_none());
        assert_eq!(ps.var("b").unwrap().value().to_vec::<f32>().unwrap(), vec![0.5]);
    }

    #[test]
    fn rejects_bad_input_without_touching_anything() {
        let ps = store(&[1.0, 2.0]);
        let g = |lr| vec![ParamGroup { name: "a".into(), lr, weight_decay: 0.0, params: vec!["w".into(), "b".into()] }];
        assert!(AdamW::new(g(-1.0), AdamWConfig::default()).is_err());
        assert!(AdamW::new(g(0.1), AdamWConfig { beta1: 1.0, ..AdamWConfig::default() }).is_err());
        let mut twice = g(0.1);
        twice.push(ParamGroup { name: "c".into(), lr: 0.1, weight_decay: 0.0, params: vec!["w".into()] });
        assert!(AdamW::new(twice, AdamWConfig::default()).unwrap_err().to_string().contains("`w`"));
        let mut opt = AdamW::new(g(0.1), AdamWConfig::default()).unwrap();
        let e = opt.step(&ps, &grads_for(&ps, &[1.0, f32::INFINITY]), 1.0).unwrap_err().to_string();
        assert!(e.contains("`w`") && e.contains("infinite"), "{e}");
        let e = opt.step(&ps, &grads_for(&ps, &[1.0]), 1.0).unwrap_err().to_string();
        assert!(e.contains("`w`"), "{e}");
        assert!(opt.state("w").is_none());
        assert_eq!(ps.var("w").unwrap().value().to_vec::<f32>().unwrap(), vec![1.0, 2.0]);
        let missing = vec![ParamGroup { name: "a".into(), lr: 0.1, weight_decay: 0.0, params: vec!["nope".into()] }];
        let e = AdamW::new(missing, AdamWConfig::default()).unwrap().step(&ps, &Grads::default(), 1.0).unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
    }

    /// A step on gradients scaled in the update equals a step on gradients
    /// scaled beforehand (clip_grad_norm), bit for bit, whatever the thread
    /// count, for a parameter spread over several parallel chunks.
    #[test]
    fn scaled_step_equals_a_step_on_clipped_gradients_on_any_thread_count() {
        let n = 3 * (1 << 15) + 5;
        let mut rng = kogner_tensor::Rng::new(9);
        let w: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
        let g: Vec<f32> = (0..n).map(|_| rng.normal() as f32 * 0.1).collect();
        let groups = || vec![ParamGroup { name: "a".into(), lr: 0.01, weight_decay: 0.1, params: vec!["w".into(), "b".into()] }];
        let run = |threads: usize, fused: bool| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let ps = store(&w);
                let mut opt = AdamW::new(groups(), AdamWConfig::default()).unwrap();
                for _ in 0..2 {
                    let mut grads = grads_for(&ps, &g);
                    if fused {
                        let clip = crate::optim::clip_coef(&grads, 1.0).unwrap();
                        assert!(clip.coef < 1.0);
                        opt.step_scaled(&ps, &grads, 1.0, clip.coef).unwrap();
                    } else {
                        crate::optim::clip_grad_norm(&mut grads, 1.0).unwrap();
                        opt.step(&ps, &grads, 1.0).unwrap();
                    }
                }
                ps.var("w").unwrap().value().to_vec::<f32>().unwrap()
            })
        };
        let want = run(1, false);
        assert_ne!(want, w);
        assert!(run(1, true) == want && run(3, true) == want && run(3, false) == want);
    }

    /// Two steps straight equal one step, save, load into a fresh optimiser, one step.
    #[test]
    fn state_round_trip_resumes_exactly() {
        let dir = std::env::temp_dir().join(format!("kogner-adamw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("opt.safetensors");
        let groups = || vec![ParamGroup { name: "a".into(), lr: 0.01, weight_decay: 0.1, params: vec!["w".into(), "b".into()] }];
        let (g1, g2) = ([0.3f32, -1.0], [0.7f32, 0.2]);

        let ps = store(&[1.0, -2.0]);
        let mut opt = AdamW::new(groups(), AdamWConfig::default()).unwrap();
        opt.step(&ps, &grads_for(&ps, &g1), 1.0).unwrap();
        opt.step(&ps, &grads_for(&ps, &g2), 1.0).unwrap();

        let ps2 = store(&[1.0, -2.0]);
        let mut first = AdamW::new(groups(), AdamWConfig::default()).unwrap();
        first.step(&ps2, &grads_for(&ps2, &g1), 1.0).unwrap();
        first.save_state(&path).unwrap();
        let mut resumed = AdamW::new(groups(), AdamWConfig::default()).unwrap();
        resumed.load_state(&path, &ps2).unwrap();
        assert_eq!(resumed.state("w").unwrap().step, 1);
        resumed.step(&ps2, &grads_for(&ps2, &g2), 1.0).unwrap();
        assert_eq!(ps.var("w").unwrap().value().to_vec::<f32>().unwrap(), ps2.var("w").unwrap().value().to_vec::<f32>().unwrap());

        let other = vec![ParamGroup { name: "a".into(), lr: 0.01, weight_decay: 0.1, params: vec!["b".into()] }];
        let e = AdamW::new(other, AdamWConfig::default()).unwrap().load_state(&path, &ps2).unwrap_err().to_string();
        assert!(e.contains("`w`"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
