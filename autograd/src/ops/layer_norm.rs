//! Layer norm over the last dim with optional affine parameters. The
//! forward's row mean and rstd are saved, so the backward does not
//! recompute the statistics.

use kogner_tensor::{Result, Tensor};

use crate::Var;

impl Var {
    /// Layer norm over the last dim (biased variance, PyTorch semantics):
    /// `x [.., D]`, `gamma [D]`, `beta [D]` → `[.., D]`. Differentiable in
    /// `x`, `gamma` and `beta`.
    pub fn layer_norm(&self, gamma: Option<&Var>, beta: Option<&Var>, eps: f64) -> Result<Var> {
        let x = self.value();
        let gamma_t = gamma.map(Var::value);
        let (y, mean, rstd) = x.layer_norm_with_stats(gamma_t.as_ref(), beta.map(Var::value).as_ref(), eps)?;
        let mut inputs = vec![self];
        inputs.extend(gamma);
        inputs.extend(beta);
        if !Var::needs_grad(&inputs) {
            return Ok(Var::constant(y));
        }
        let has_beta = beta.is_some();
        Ok(Var::from_op("layer_norm", y, &inputs, Box::new(move |g| {
            let (dx, dgamma, dbeta) = Tensor::layer_norm_backward(&x, gamma_t.as_ref(), &mean, &rstd, g)?;
            // One gradient per recorded input, in the order [x, gamma?, beta?].
            let mut grads = vec![Some(dx)];
            if gamma_t.is_some() {
                grads.push(Some(dgamma));
            }
            if has_beta {
                grads.push(Some(dbeta));
            }
            Ok(grads)
        })))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use crate::gradcheck::{check_f32_matches_f64, check_gradients, random_tensor, Tol};
    use crate::Var;
    use kogner_tensor::{DType, Tensor};

    fn shape() -> impl Strategy<Value = Vec<usize>> {
        prop::collection::vec(1usize..5, 1..4)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn layer_norm_gradients(s in shape(), seed in any::<u64>(), use_gamma in any::<bool>(), use_beta in any::<bool>()) {
            let d = *s.last().unwrap();
            let x = random_tensor(&s, seed, -2.0, 2.0);
            let gamma = random_tensor(&[d], seed ^ 1, 0.5, 1.5);
            let beta = random_tensor(&[d], seed ^ 2, -0.5, 0.5);
            // eps comparable to the variance keeps rows of one element (var 0) well-conditioned.
            let f = move |v: &[Var]| v[0].layer_norm(use_gamma.then_some(&v[1]), use_beta.then_some(&v[2]), 1e-2);
            let inputs = [x, gamma, beta];
            check_gradients(&f, &inputs, &[], Tol::default()).map_err(TestCaseError::fail)?;
            check_f32_matches_f64(&f, &inputs, 1e-5, 1e-5).map_err(TestCaseError::fail)?;
        }
    }

    #[test]
    fn constant_gamma_with_leaf_beta() {
        // gamma constant, beta a leaf: beta's gradient is the column sum of g.
        let x = Var::leaf(random_tensor(&[3, 4], 1, -1.0, 1.0));
        let gamma = Var::constant(Tensor::ones(&[4], DType::F64));
        let beta = Var::leaf(Tensor::zeros(&[4], DType::F64));
        let y = x.layer_norm(Some(&gamma), Some(&beta), 1e-5).unwrap();
        let g = y.backward_with(Tensor::ones(&[3, 4], DType::F64)).unwrap();
        assert_eq!(g.get(&beta).unwrap().to_vec::<f64>().unwrap(), vec![3.0; 4]);
        assert!(g.get(&gamma).is_none());
        // Σ_c dx_c = 0 per row: the output is invariant to shifting a row.
        for row in g.get(&x).unwrap().to_vec::<f64>().unwrap().chunks(4) {
            assert!(row.iter().sum::<f64>().abs() < 1e-12, "{row:?}");
        }
    }

    #[test]
    fn shape_errors_propagate() {
        let x = Var::leaf(Tensor::zeros(&[2, 3], DType::F64));
        let bad = Var::leaf(Tensor::ones(&[2], DType::F64));
        assert!(x.layer_norm(Some(&bad), None, 1e-5).is_err());
        assert!(x.layer_norm(None, Some(&bad), 1e-5).is_err());
    }
}
