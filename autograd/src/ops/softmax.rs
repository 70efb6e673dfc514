//! Softmax, log-softmax and masked softmax. Each backward needs only the
//! forward's output (`Tensor::softmax_backward` / `log_softmax_backward`).

use kogner_tensor::{Result, Tensor};

use crate::Var;

/// Record `y = op(x)` with a backward that maps `(y, g)` to the input gradient.
fn from_output(
    x: &Var,
    name: &'static str,
    y: Tensor,
    backward: fn(&Tensor, &Tensor, isize) -> Result<Tensor>,
    dim: isize,
) -> Result<Var> {
    if !Var::needs_grad(&[x]) {
        return Ok(Var::constant(y));
    }
    let saved = y.clone();
    Ok(Var::from_op(name, y, &[x], Box::new(move |g| Ok(vec![Some(backward(&saved, g, dim)?)]))))
}

impl Var {
    /// Softmax along `dim`: `x [..] → [..]`. `-inf` entries are masked;
    /// fully masked rows give zeros and zero gradient.
    pub fn softmax(&self, dim: isize) -> Result<Var> {
        let y = self.value().softmax(dim)?;
        from_output(self, "softmax", y, Tensor::softmax_backward, dim)
    }

    /// Log-softmax along `dim`: `x [..] → [..]`.
    pub fn log_softmax(&self, dim: isize) -> Result<Var> {
        let y = self.value().log_softmax(dim)?;
        from_output(self, "log_softmax", y, Tensor::log_softmax_backward, dim)
    }

    /// Softmax along `dim` with `mask` (u8 or float, broadcastable to `x`,
    /// 0 = masked): `x [..] → [..]`. Masked positions get probability 0 and
    /// no gradient; a fully masked row gives all zeros and zero gradient
    /// (attention over padding).
    pub fn masked_softmax(&self, mask: &Tensor, dim: isize) -> Result<Var> {
        let y = self.value().masked_softmax(mask, dim)?;
        // y = 0 at masked positions, so softmax's backward y ⊙ (g − Σ g⊙y)
        // already gives them (and fully masked rows) zero gradient.
        from_output(self, "masked_softmax", y, Tensor::softmax_backward, dim)
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

    /// A shape and a dim of it (as a negative or positive index).
    fn shape_and_dim() -> impl Strategy<Value = (Vec<usize>, isize)> {
        shape().prop_flat_map(|s| {
            let r = s.len() as isize;
            (Just(s), -r..r)
        })
    }

    /// A random 0/1 u8 mask of `shape` from `seed` (about a third masked).
    fn random_mask(shape: &[usize], seed: u64) -> Tensor {
        let u = random_tensor(shape, seed, 0.0, 1.0).to_vec::<f64>().unwrap();
        Tensor::from_vec(u.iter().map(|&v| (v > 0.33) as u8).collect::<Vec<_>>(), shape).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn softmax_and_log_softmax_gradients((s, dim) in shape_and_dim(), seed in any::<u64>()) {
            let x = random_tensor(&s, seed, -3.0, 3.0);
            let sm = move |v: &[Var]| v[0].softmax(dim);
            let lsm = move |v: &[Var]| v[0].log_softmax(dim);
            for (name, f) in [("softmax", &sm as &dyn Fn(&[Var]) -> kogner_tensor::Result<Var>), ("log_softmax", &lsm)] {
                check_gradients(f, std::slice::from_ref(&x), &[], Tol::default()).map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
                check_f32_matches_f64(f, std::slice::from_ref(&x), 1e-6, 1e-5).map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
            }
        }

        #[test]
        fn masked_softmax_gradients((s, dim) in shape_and_dim(), seed in any::<u64>(), broadcast_first in any::<bool>()) {
            let x = random_tensor(&s, seed, -3.0, 3.0);
            // Either a full mask or one broadcast along the first dim.
            let mut mshape = s.clone();
            if broadcast_first {
                mshape[0] = 1;
            }
            let mask = random_mask(&mshape, seed ^ 3);
            let m = mask.clone();
            let f = move |v: &[Var]| v[0].masked_softmax(&m, dim);
            check_gradients(&f, std::slice::from_ref(&x), &[], Tol::default()).map_err(TestCaseError::fail)?;
            check_f32_matches_f64(&f, std::slice::from_ref(&x), 1e-6, 1e-5).map_err(TestCaseError::fail)?;
            // Masked positions: probability exactly 0 and gradient exactly 0.
            let xv = Var::leaf(x.clone());
            let y = xv.masked_softmax(&mask, dim).unwrap();
            let g = y.backward_with(random_tensor(&s, seed ^ 5, -1.0, 1.0)).unwrap();
            let keep = mask.broadcast_as(&s).unwrap().to_f64_vec().unwrap();
            let yv = y.value().to_vec::<f64>().unwrap();
            let gv = g.get(&xv).unwrap().to_vec::<f64>().unwrap();
            for i in 0..keep.len() {
                if keep[i] == 0.0 {
                    prop_assert!(yv[i] == 0.0 && gv[i] == 0.0, "masked element {} has y {} grad {}", i, yv[i], gv[i]);
                }
            }
        }
    }

    #[test]
    fn fully_masked_row_gives_zeros_and_zero_gradient() {
        let x = Var::leaf(Tensor::from_vec(vec![0.5f64, -1.0, 2.0, 0.1, 0.2, 0.3], &[2, 3]).unwrap());
        let mask = Tensor::from_vec(vec![1.0f64, 0.0, 1.0, 0.0, 0.0, 0.0], &[2, 3]).unwrap();
        let y = x.masked_softmax(&mask, -1).unwrap();
        let yv = y.value().to_vec::<f64>().unwrap();
        let e = (1.5f64).exp();
        let want = [1.0 / (1.0 + e), 0.0, e / (1.0 + e), 0.0, 0.0, 0.0];
        for (a, b) in yv.iter().zip(&want) {
            assert!((a - b).abs() < 1e-15, "{yv:?}");
        }
        let g = y.backward_with(Tensor::ones(&[2, 3], DType::F64)).unwrap();
        let gx = g.get(&x).unwrap().to_vec::<f64>().unwrap();
        assert!(gx.iter().all(|v| v.is_finite()));
        assert_eq!(gx[3..], [0.0; 3]);
    }

    #[test]
    fn log_softmax_gradient_by_hand() {
        // d/dx Σ_j w_j·log_softmax(x)_j = w − softmax(x)·Σ w; x = [0, ln 3] → p = [1/4, 3/4]
        let x = Var::leaf(Tensor::from_vec(vec![0.0f64, 3f64.ln()], &[2]).unwrap());
        let y = x.log_softmax(0).unwrap();
        let g = y.backward_with(Tensor::from_vec(vec![1.0f64, 1.0], &[2]).unwrap()).unwrap();
        let gx = g.get(&x).unwrap().to_vec::<f64>().unwrap();
        assert!((gx[0] - 0.5).abs() < 1e-15 && (gx[1] + 0.5).abs() < 1e-15, "{gx:?}");
    }

    #[test]
    fn errors_propagate() {
        let x = Var::leaf(Tensor::zeros(&[2, 3], DType::F64));
        assert!(x.softmax(2).is_err());
        assert!(x.masked_softmax(&Tensor::zeros(&[2], DType::U8), -1).is_err());
    }
}
