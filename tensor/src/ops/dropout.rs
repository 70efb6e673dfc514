//! Inverted dropout: each element is kept with probability `1 − p` and
//! scaled by `1/(1 − p)`, so the expectation is unchanged and inference
//! needs no rescaling.

use super::elementwise::from_storage_vec;
use super::par_chunks_mut;
use crate::{with_float_dtype, Error, FloatElement, Result, Rng, Tensor};

/// Output and keep-mask from uniforms `u`: element i is kept when `u[i] ≥ p`.
fn dropout_impl<T: FloatElement>(x: &Tensor, p: f64, u: &[f32]) -> Result<(Tensor, Tensor)> {
    let xc = x.contiguous()?;
    let src = xc.as_slice::<T>()?;
    let scale = T::from_f64(1.0 / (1.0 - p));
    let p32 = p as f32;
    let mut mask = vec![T::ZERO; src.len()];
    par_chunks_mut(&mut mask, |off, m| {
        for (mi, &ui) in m.iter_mut().zip(&u[off..]) {
            *mi = if ui >= p32 { T::ONE } else { T::ZERO };
        }
    });
    let mut out = vec![T::ZERO; src.len()];
    par_chunks_mut(&mut out, |off, o| {
        for ((oi, &xi), &mi) in o.iter_mut().zip(&src[off..]).zip(&mask[off..]) {
            *oi = xi * mi * scale;
        }
    });
    Ok((from_storage_vec(out, x.shape()), from_storage_vec(mask, x.shape())))
}

impl Tensor {
    /// Inverted dropout with drop probability `p ∈ [0, 1]`: `x [..]` →
    /// `(y [..], keep [..])`, `keep` is 1 where kept and 0 where dropped (in
    /// `x`'s dtype) and `y = x ⊙ keep / (1 − p)`. Draws one uniform per
    /// element from `rng` (same seed ⇒ same mask); `p = 0` returns `x` and
    /// `p = 1` zeros, both without drawing.
    pub fn dropout(&self, p: f64, rng: &mut Rng) -> Result<(Tensor, Tensor)> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::shape("dropout", format!("drop probability {p} is outside [0, 1]")));
        }
        with_float_dtype!(self.dtype(), "dropout", T => {
            if p == 0.0 {
                return Ok((self.clone(), Tensor::ones(self.shape(), self.dtype())));
            }
            if p == 1.0 {
                return Ok((self.zeros_like(), self.zeros_like()));
            }
            let u = rng.uniform_f32_vec(self.numel());
            dropout_impl::<T>(self, p, &u)
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::{DType, Rng, Tensor};

    #[test]
    fn keeps_about_one_minus_p_and_scales_kept() {
        let x = Tensor::full(&[200, 200], 2.0, DType::F32);
        let (y, keep) = x.dropout(0.3, &mut Rng::new(5)).unwrap();
        let keep = keep.to_vec::<f32>().unwrap();
        let frac = keep.iter().sum::<f32>() as f64 / keep.len() as f64;
        assert!((frac - 0.7).abs() < 0.01, "kept fraction {frac}");
        for (v, k) in y.to_vec::<f32>().unwrap().iter().zip(&keep) {
            assert_eq!(*v, if *k == 1.0 { 2.0 / 0.7f32 } else { 0.0 });
        }
    }

    #[test]
    fn same_seed_same_mask_and_edge_probabilities() {
        let x = Tensor::from_vec((0..50).map(|v| v as f64).collect(), &[5, 10]).unwrap();
        let (a, ma) = x.dropout(0.5, &mut Rng::new(9)).unwrap();
        let (b, mb) = x.dropout(0.5, &mut Rng::new(9)).unwrap();
        assert_eq!(a.to_vec::<f64>().unwrap(), b.to_vec::<f64>().unwrap());
        assert_eq!(ma.to_vec::<f64>().unwrap(), mb.to_vec::<f64>().unwrap());
        let (_, mc) = x.dropout(0.5, &mut Rng::new(10)).unwrap();
        assert_ne!(ma.to_vec::<f64>().unwrap(), mc.to_vec::<f64>().unwrap());

        let mut rng = Rng::new(1);
        let (same, keep) = x.dropout(0.0, &mut rng).unwrap();
        assert!(same.same_storage(&x));
        assert_eq!(keep.to_vec::<f64>().unwrap(), vec![1.0; 50]);
        let (zeros, _) = x.dropout(1.0, &mut rng).unwrap();
        assert_eq!(zeros.to_vec::<f64>().unwrap(), vec![0.0; 50]);
        assert_eq!(rng, Rng::new(1), "p = 0 and p = 1 draw nothing");
    }

    #[test]
    fn invalid_inputs_are_errors() {
        let x = Tensor::zeros(&[3], DType::F32);
        assert!(x.dropout(1.5, &mut Rng::new(0)).unwrap_err().to_string().contains("dropout"));
        assert!(x.dropout(f64::NAN, &mut Rng::new(0)).is_err());
        assert!(Tensor::zeros(&[3], DType::I64).dropout(0.5, &mut Rng::new(0)).is_err());
    }
}
