//! Exponential moving average of the weights (Polyak averaging): after each
//! optimiser step every shadow weight moves toward its parameter,
//! `s ← s + (1 − d)·(p − s)`, with TensorFlow's `ExponentialMovingAverage`
//! warm-up of the decay, `d = min(decay, (1 + t) / (10 + t))` at update `t`
//! (0-based), so early shadows are not stuck near the initial weights.
//! Evaluating and saving the shadow weights instead of the last ones
//! smooths out the noise of the final steps of a small-batch fine-tune.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use kogner_autograd::ParamStore;
use kogner_kernels::Float;
use kogner_tensor::safetensors_io::{self, SafeTensorsFile};
use kogner_tensor::{with_float_dtype, Error, FloatElement, Result, Tensor};

const FORMAT: &str = "kogner-ema-v1";

#[derive(Debug)]
pub struct Ema {
    decay: f64,
    /// Updates applied so far.
    updates: u64,
    /// One shadow per parameter, its own storage, shaped and typed like it.
    shadow: BTreeMap<String, Tensor>,
}

impl Ema {
    /// Shadows start as copies of the parameters.
    pub fn new(decay: f64, params: &ParamStore) -> Result<Ema> {
        let shadow = params.iter().map(|(name, var)| Ok((name.clone(), var.value().contiguous_copy()?))).collect::<Result<_>>()?;
        Ok(Ema { decay: checked(decay)?, updates: 0, shadow })
    }

    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// The decay the next update uses.
    pub fn current_decay(&self) -> f64 {
        let t = self.updates as f64;
        self.decay.min((1.0 + t) / (10.0 + t))
    }

    /// The shadow of parameter `name`.
    pub fn shadow(&self, name: &str) -> Option<&Tensor> {
        self.shadow.get(name)
    }

    /// Move every shadow toward its parameter's current value.
    pub fn update(&mut self, params: &ParamStore) -> Result<()> {
        let w = 1.0 - self.current_decay();
        for (name, s) in self.shadow.iter_mut() {
            let p = params.var(name)?.value().contiguous()?;
            with_float_dtype!(s.dtype(), "EMA", T => lerp_toward::<T>(s.data_mut::<T>()?, p.as_slice::<T>()?, T::from_f64(w)));
        }
        self.updates += 1;
        Ok(())
    }

    /// Exchange the parameters' values with the shadows (no copies): call it
    /// to evaluate or save the averaged weights, and again to go on training.
    pub fn swap(&mut self, params: &ParamStore) -> Result<()> {
        for (name, s) in self.shadow.iter_mut() {
            params.var(name)?.update_value(|p| {
                std::mem::swap(p, s);
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Write the shadows (under the parameters' names) and the update count.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let refs: Vec<(&str, &Tensor)> = self.shadow.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let meta = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("decay".to_string(), self.decay.to_string()),
            ("updates".to_string(), self.updates.to_string()),
        ]);
        safetensors_io::save(path, &refs, Some(meta))
    }

    /// Read a file written by [`Ema::save`]: it must hold a shadow for every
    /// parameter of `params`, shaped like it, and nothing else.
    pub fn load(path: impl AsRef<Path>, decay: f64, params: &ParamStore) -> Result<Ema> {
        let path = path.as_ref();
        let decay = checked(decay)?;
        let file = SafeTensorsFile::open(path)?;
        file.expect_format(FORMAT, "EMA")?;
        let updates = file
            .metadata()
            .get("updates")
            .and_then(|u| u.parse().ok())
            .ok_or_else(|| Error::file(path, "metadata `updates` is missing or not a count"))?;
        let mut shadow = BTreeMap::new();
        for (name, var) in params.iter() {
            let p = var.value();
            shadow.insert(name.clone(), file.get_as(name, p.shape(), p.dtype())?);
        }
        if file.names().len() != params.len() {
            return Err(Error::file(path, format!("{} tensors for {} parameters", file.names().len(), params.len())));
        }
        Ok(Ema { decay, updates, shadow })
    }
}

fn checked(decay: f64) -> Result<f64> {
    if !(0.0..1.0).contains(&decay) {
        return Err(Error::Msg(format!("EMA decay must be in [0, 1), got {decay}")));
    }
    Ok(decay)
}

fn lerp_toward<T: FloatElement>(s: &mut [T], p: &[T], w: T) {
    for (s, &p) in s.iter_mut().zip(p) {
        *s += w * (p - *s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(w: &[f32]) -> ParamStore {
        let mut ps = ParamStore::new();
        ps.insert("w", Tensor::from_vec(w.to_vec(), &[w.len()]).unwrap()).unwrap();
        ps
    }

    fn set(ps: &ParamStore, w: &[f32]) {
        ps.var("w").unwrap().set_value(Tensor::from_vec(w.to_vec(), &[w.len()]).unwrap()).unwrap();
    }

    fn values(t: &Tensor) -> Vec<f64> {
        t.to_f64_vec().unwrap()
    }

    /// Three updates against the formula by hand, in f64.
    #[test]
    fn follows_the_warmed_up_decay() {
        let ps = store(&[1.0, -2.0]);
        let mut ema = Ema::new(0.5, &ps).unwrap();
        let mut want = [1.0f64, -2.0];
        for (t, w) in [[3.0f32, 0.0], [5.0, 4.0], [-1.0, 2.0]].iter().enumerate() {
            set(&ps, w);
            // d = min(0.5, (1 + t) / (10 + t)): 0.1, 0.1818…, 0.25
            let d = 0.5f64.min((1.0 + t as f64) / (10.0 + t as f64));
            assert!((ema.current_decay() - d).abs() < 1e-15);
            ema.update(&ps).unwrap();
            for i in 0..2 {
                want[i] = d * want[i] + (1.0 - d) * w[i] as f64;
            }
        }
        let got = values(ema.shadow("w").unwrap());
        for i in 0..2 {
            assert!((got[i] - want[i]).abs() < 1e-6, "{got:?} vs {want:?}");
        }
        assert_eq!(ema.updates(), 3);
        // a long run reaches the configured decay
        ema.updates = 1000;
        assert_eq!(ema.current_decay(), 0.5);
    }

    /// Swapping twice restores the live weights; the shadow is its own copy.
    #[test]
    fn swap_exchanges_and_restores() {
        let ps = store(&[1.0, 2.0]);
        let mut ema = Ema::new(0.9, &ps).unwrap();
        set(&ps, &[5.0, 6.0]);
        ema.update(&ps).unwrap(); // d = 0.1: s = 0.1·[1, 2] + 0.9·[5, 6]
        let shadow = values(ema.shadow("w").unwrap());
        assert!((shadow[0] - 4.6).abs() < 1e-6 && (shadow[1] - 5.6).abs() < 1e-6, "{shadow:?}");
        ema.swap(&ps).unwrap();
        assert_eq!(values(&ps.var("w").unwrap().value()), shadow);
        ema.swap(&ps).unwrap();
        assert_eq!(values(&ps.var("w").unwrap().value()), vec![5.0, 6.0]);
        assert_eq!(values(ema.shadow("w").unwrap()), shadow);
    }

    #[test]
    fn save_load_round_trip_and_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("kogner-ema-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ema.safetensors");
        let ps = store(&[1.0, 2.0]);
        let mut ema = Ema::new(0.99, &ps).unwrap();
        set(&ps, &[3.0, -4.0]);
        ema.update(&ps).unwrap();
        ema.save(&path).unwrap();
        let back = Ema::load(&path, 0.99, &ps).unwrap();
        assert_eq!(back.updates(), 1);
        assert_eq!(values(back.shadow("w").unwrap()), values(ema.shadow("w").unwrap()));

        let mut more = ParamStore::new();
        more.insert("w", Tensor::from_vec(vec![0f32; 2], &[2]).unwrap()).unwrap();
        more.insert("b", Tensor::from_vec(vec![0f32; 1], &[1]).unwrap()).unwrap();
        let e = Ema::load(&path, 0.99, &more).unwrap_err().to_string();
        assert!(e.contains("ema.safetensors") && e.contains("`b`"), "{e}");
        assert!(Ema::load(&path, 0.99, &store(&[1.0, 2.0, 3.0])).is_err());
        assert!(Ema::new(1.0, &ps).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
