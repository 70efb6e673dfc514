//! Inverted dropout. The keep-mask drawn in the forward is saved; the
//! backward scales the gradient by the same mask and factor.

use kogner_tensor::{Result, Rng};

use crate::Var;

impl Var {
    /// Inverted dropout: `x [..] → [..]`, each element kept with
    /// probability `1 − p` and scaled by `1/(1 − p)`, from `rng` (same seed ⇒
    /// same mask). When `training` is false, or `p = 0`, returns `x` itself
    /// and draws nothing. Backward: `g ⊙ keep / (1 − p)` (zero for `p = 1`).
    pub fn dropout(&self, p: f64, rng: &mut Rng, training: bool) -> Result<Var> {
        if !training || p == 0.0 {
            return Ok(self.clone());
        }
        let (y, keep) = self.value().dropout(p, rng)?;
        if !Var::needs_grad(&[self]) {
            return Ok(Var::constant(y));
        }
        // p = 1 drops everything: the mask is all zeros, so skip 1/(1 − p) = inf.
        let scale = if p < 1.0 { 1.0 / (1.0 - p) } else { 0.0 };
        let factor = keep.mul_scalar(scale)?;
        Ok(Var::from_op("dropout", y, &[self], Box::new(move |g| Ok(vec![Some(g.mul(&factor)?)]))))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use crate::gradcheck::{check_f32_matches_f64, check_gradients, random_tensor, random_tensor_away_from_zero, Tol};
    use crate::Var;
    use kogner_tensor::{DType, Rng, Tensor};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        /// The gradient is exactly the mask scaled by 1/(1 − p), read off the
        /// forward: y/x for nonzero x.
        #[test]
        fn backward_matches_the_forward_mask(s in prop::collection::vec(1usize..5, 1..4), seed in any::<u64>(), p in 0.05f64..0.95) {
            let x = Var::leaf(random_tensor_away_from_zero(&s, seed, 0.1, 2.0));
            let y = x.dropout(p, &mut Rng::new(seed), true).unwrap();
            let w = random_tensor(&s, seed ^ 1, -1.0, 1.0);
            let grads = y.backward_with(w.clone()).unwrap();
            let gx = grads.get(&x).unwrap().to_vec::<f64>().unwrap();
            let (xv, yv, wv) = (x.value().to_vec::<f64>().unwrap(), y.value().to_vec::<f64>().unwrap(), w.to_vec::<f64>().unwrap());
            for i in 0..xv.len() {
                let factor = yv[i] / xv[i];
                prop_assert!(factor == 0.0 || (factor - 1.0 / (1.0 - p)).abs() < 1e-12);
                prop_assert!((gx[i] - wv[i] * factor).abs() < 1e-12, "element {}: grad {} vs {}", i, gx[i], wv[i] * factor);
            }
            // A fresh generator per call draws the same mask every time.
            let f = move |v: &[Var]| v[0].dropout(p, &mut Rng::new(seed), true);
            check_gradients(&f, &[x.value()], &[], Tol::default()).map_err(TestCaseError::fail)?;
            check_f32_matches_f64(&f, &[x.value()], 1e-6, 1e-6).map_err(TestCaseError::fail)?;
        }
    }

    #[test]
    fn kept_fraction_and_reproducibility() {
        let x = Var::leaf(Tensor::ones(&[100, 100], DType::F32));
        let y = x.dropout(0.25, &mut Rng::new(3), true).unwrap();
        let v = y.value().to_vec::<f32>().unwrap();
        let kept = v.iter().filter(|&&e| e != 0.0).count() as f64 / v.len() as f64;
        assert!((kept - 0.75).abs() < 0.015, "kept {kept}");
        let again = x.dropout(0.25, &mut Rng::new(3), true).unwrap();
        assert_eq!(again.value().to_vec::<f32>().unwrap(), v);
    }

    #[test]
    fn eval_mode_and_extreme_p() {
        let x = Var::leaf(random_tensor(&[4, 3], 2, -1.0, 1.0));
        let mut rng = Rng::new(4);
        assert_eq!(x.dropout(0.5, &mut rng, false).unwrap().id(), x.id());
        assert_eq!(x.dropout(0.0, &mut rng, true).unwrap().id(), x.id());
        assert_eq!(rng, Rng::new(4), "eval mode and p = 0 draw nothing");
        let y = x.dropout(1.0, &mut rng, true).unwrap();
        assert_eq!(y.value().to_vec::<f64>().unwrap(), vec![0.0; 12]);
        let g = y.backward().unwrap();
        assert_eq!(g.get(&x).unwrap().to_vec::<f64>().unwrap(), vec![0.0; 12]);
        assert!(x.dropout(-0.1, &mut rng, true).is_err());
    }
}
