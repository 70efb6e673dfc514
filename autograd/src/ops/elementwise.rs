//! Elementwise ops. Binary ops broadcast; their backward sums the gradient
//! back to each input's shape (`sum_to_shape`).

use kogner_tensor::ops::elementwise::sum_to_shape;
use kogner_tensor::{Result, Tensor};

use crate::Var;

impl Var {
    pub fn add(&self, rhs: &Var) -> Result<Var> {
        let (a, b) = (self.value(), rhs.value());
        let y = a.add(&b)?;
        if !Var::needs_grad(&[self, rhs]) {
            return Ok(Var::constant(y));
        }
        let (sa, sb) = (a.shape().to_vec(), b.shape().to_vec());
        Ok(Var::from_op("add", y, &[self, rhs], Box::new(move |g| {
            Ok(vec![Some(sum_to_shape(g, &sa)?), Some(sum_to_shape(g, &sb)?)])
        })))
    }

    pub fn sub(&self, rhs: &Var) -> Result<Var> {
        let (a, b) = (self.value(), rhs.value());
        let y = a.sub(&b)?;
        if !Var::needs_grad(&[self, rhs]) {
            return Ok(Var::constant(y));
        }
        let (sa, sb) = (a.shape().to_vec(), b.shape().to_vec());
        Ok(Var::from_op("sub", y, &[self, rhs], Box::new(move |g| {
            Ok(vec![Some(sum_to_shape(g, &sa)?), Some(sum_to_shape(&g.neg()?, &sb)?)])
        })))
    }

    pub fn mul(&self, rhs: &Var) -> Result<Var> {
        let (a, b) = (self.value(), rhs.value());
        let y = a.mul(&b)?;
        if !Var::needs_grad(&[self, rhs]) {
            return Ok(Var::constant(y));
        }
        let (ga, gb) = (self.requires_grad(), rhs.requires_grad());
        Ok(Var::from_op("mul", y, &[self, rhs], Box::new(move |g| {
            Ok(vec![
                if ga { Some(sum_to_shape(&g.mul(&b)?, a.shape())?) } else { None },
                if gb { Some(sum_to_shape(&g.mul(&a)?, b.shape())?) } else { None },
            ])
        })))
    }

    pub fn div(&self, rhs: &Var) -> Result<Var> {
        let (a, b) = (self.value(), rhs.value());
        let y = a.div(&b)?;
        if !Var::needs_grad(&[self, rhs]) {
            return Ok(Var::constant(y));
        }
        let (ga, gb) = (self.requires_grad(), rhs.requires_grad());
        let y_saved = y.clone();
        Ok(Var::from_op("div", y, &[self, rhs], Box::new(move |g| {
            // d(a/b)/da = 1/b ; d(a/b)/db = −a/b² = −y/b
            let g_over_b = g.div(&b)?;
            Ok(vec![
                if ga { Some(sum_to_shape(&g_over_b, a.shape())?) } else { None },
                if gb { Some(sum_to_shape(&g_over_b.mul(&y_saved)?.neg()?, b.shape())?) } else { None },
            ])
        })))
    }

    /// Unary op whose gradient is `g ⊙ dfdx(x, y)`.
    fn unary_op(
        &self,
        name: &'static str,
        forward: impl FnOnce(&Tensor) -> Result<Tensor>,
        dfdx: impl Fn(&Tensor, &Tensor) -> Result<Tensor> + Send + Sync + 'static,
    ) -> Result<Var> {
        let x = self.value();
        let y = forward(&x)?;
        if !Var::needs_grad(&[self]) {
            return Ok(Var::constant(y));
        }
        let y_saved = y.clone();
        Ok(Var::from_op(name, y, &[self], Box::new(move |g| Ok(vec![Some(g.mul(&dfdx(&x, &y_saved)?)?)]))))
    }

    pub fn neg(&self) -> Result<Var> {
        self.affine(-1.0, 0.0)
    }
    pub fn exp(&self) -> Result<Var> {
        self.unary_op("exp", |x| x.exp(), |_, y| Ok(y.clone()))
    }
    pub fn ln(&self) -> Result<Var> {
        self.unary_op("ln", |x| x.ln(), |x, _| x.recip())
    }
    pub fn tanh(&self) -> Result<Var> {
        // 1 − y²
        self.unary_op("tanh", |x| x.tanh(), |_, y| y.sqr()?.affine(-1.0, 1.0))
    }
    pub fn sigmoid(&self) -> Result<Var> {
        // y (1 − y)
        self.unary_op("sigmoid", |x| x.sigmoid(), |_, y| y.mul(&y.affine(-1.0, 1.0)?))
    }
    /// Exact (erf) GELU.
    pub fn gelu(&self) -> Result<Var> {
        let x = self.value();
        let y = x.gelu()?;
        if !Var::needs_grad(&[self]) {
            return Ok(Var::constant(y));
        }
        Ok(Var::from_op("gelu", y, &[self], Box::new(move |g| Ok(vec![Some(x.gelu_backward(g)?)]))))
    }
    pub fn relu(&self) -> Result<Var> {
        self.unary_op("relu", |x| x.relu(), |x, _| x.gt_scalar(0.0))
    }
    pub fn sqrt(&self) -> Result<Var> {
        // 1 / (2 y)
        self.unary_op("sqrt", |x| x.sqrt(), |_, y| y.mul_scalar(2.0)?.recip())
    }
    pub fn sqr(&self) -> Result<Var> {
        self.unary_op("sqr", |x| x.sqr(), |x, _| x.mul_scalar(2.0))
    }
    pub fn powf(&self, e: f64) -> Result<Var> {
        self.unary_op("powf", |x| x.powf(e), move |x, _| x.powf(e - 1.0)?.mul_scalar(e))
    }
    /// `x·mul + add`.
    pub fn affine(&self, mul: f64, add: f64) -> Result<Var> {
        let y = self.value().affine(mul, add)?;
        if !Var::needs_grad(&[self]) {
            return Ok(Var::constant(y));
        }
        Ok(Var::from_op("affine", y, &[self], Box::new(move |g| Ok(vec![Some(g.mul_scalar(mul)?)]))))
    }
    pub fn mul_scalar(&self, s: f64) -> Result<Var> {
        self.affine(s, 0.0)
    }
    pub fn add_scalar(&self, s: f64) -> Result<Var> {
        self.affine(1.0, s)
    }
    /// Clamp into `[lo, hi]`; gradient 1 strictly inside, 0 outside (PyTorch
    /// passes gradient at the boundary itself; so do we: `lo ≤ x ≤ hi`).
    pub fn clamp(&self, lo: f64, hi: f64) -> Result<Var> {
        self.unary_op("clamp", |x| x.clamp(lo, hi), move |x, _| x.in_range_mask(lo, hi))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use crate::gradcheck::{check_f32_matches_f64, check_gradients, random_tensor, random_tensor_away_from_zero, Tol};
    use crate::Var;

    fn shape() -> impl Strategy<Value = Vec<usize>> {
        prop::collection::vec(1usize..5, 1..4)
    }

    /// A shape `b` broadcastable against `a`: some dims set to 1, some leading dims dropped.
    fn broadcast_pair() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
        shape().prop_flat_map(|a| {
            let r = a.len();
            (Just(a), prop::collection::vec(any::<bool>(), r), 0..r)
        })
        .prop_map(|(a, ones, drop)| {
            let b: Vec<usize> = a.iter().zip(&ones).map(|(&d, &one)| if one { 1 } else { d }).skip(drop).collect();
            (a, b)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn binary_ops_gradients((sa, sb) in broadcast_pair(), seed in any::<u64>(), swap in any::<bool>()) {
            let (sa, sb) = if swap { (sb, sa) } else { (sa, sb) };
            let a = random_tensor(&sa, seed, -2.0, 2.0);
            let b = random_tensor_away_from_zero(&sb, seed ^ 1, 0.5, 2.0);
            type BinF = fn(&Var, &Var) -> kogner_tensor::Result<Var>;
            let ops: [(&str, BinF); 4] = [("add", |x, y| x.add(y)), ("sub", |x, y| x.sub(y)), ("mul", |x, y| x.mul(y)), ("div", |x, y| x.div(y))];
            for (name, op) in ops {
                let f = move |v: &[Var]| op(&v[0], &v[1]);
                check_gradients(&f, &[a.clone(), b.clone()], &[], Tol::default()).map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
                check_f32_matches_f64(&f, &[a.clone(), b.clone()], 1e-6, 1e-5).map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
            }
        }

        #[test]
        fn unary_ops_gradients(s in shape(), seed in any::<u64>()) {
            let x = random_tensor_away_from_zero(&s, seed, 0.05, 3.0);
            let pos = random_tensor(&s, seed ^ 7, 0.2, 3.0);
            type UnF = fn(&Var) -> kogner_tensor::Result<Var>;
            let ops: [(&str, UnF, bool); 13] = [
                ("neg", |x| x.neg(), false),
                ("exp", |x| x.exp(), false),
                ("ln", |x| x.ln(), true),
                ("tanh", |x| x.tanh(), false),
                ("sigmoid", |x| x.sigmoid(), false),
                ("gelu", |x| x.gelu(), false),
                ("relu", |x| x.relu(), false),
                ("sqrt", |x| x.sqrt(), true),
                ("sqr", |x| x.sqr(), false),
                ("powf", |x| x.powf(2.5), true),
                ("affine", |x| x.affine(-1.5, 0.25), false),
                ("clamp", |x| x.clamp(-1.0, 1.3), false),
                ("add_scalar", |x| x.add_scalar(3.0), false),
            ];
            for (name, op, positive) in ops {
                let input = if positive { pos.clone() } else { x.clone() };
                // keep clamp's finite differences off its corners
                if name == "clamp" && input.to_vec::<f64>().unwrap().iter().any(|v| (v.abs() - 1.0).abs() < 1e-3 || (v - 1.3).abs() < 1e-3) {
                    continue;
                }
                let f = move |v: &[Var]| op(&v[0]);
                check_gradients(&f, std::slice::from_ref(&input), &[], Tol::default()).map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
                check_f32_matches_f64(&f, std::slice::from_ref(&input), 1e-6, 2e-6).map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
            }
        }
    }

    #[test]
    fn no_grad_records_nothing_and_detach_cuts() {
        let x = Var::leaf(random_tensor(&[3], 1, -1.0, 1.0));
        let y = crate::no_grad(|| x.exp().unwrap());
        assert!(!y.requires_grad() && y.is_leaf());
        let z = x.exp().unwrap();
        assert_eq!(z.op_name(), Some("exp"));
        let d = z.detach().mul(&x).unwrap();
        let g = d.backward().unwrap();
        // d(detach(e^x)·x)/dx = e^x (the detached factor is a constant)
        assert_eq!(g.get(&x).unwrap().to_vec::<f64>().unwrap(), z.value().to_vec::<f64>().unwrap());
    }

    #[test]
    fn gradient_accumulates_over_shared_uses() {
        // y = x·x + x  → dy/dx = 2x + 1
        let x = Var::leaf(random_tensor(&[4], 3, -1.0, 1.0));
        let y = x.mul(&x).unwrap().add(&x).unwrap();
        let g = y.backward().unwrap();
        let want: Vec<f64> = x.value().to_vec::<f64>().unwrap().iter().map(|v| 2.0 * v + 1.0).collect();
        assert_eq!(g.get(&x).unwrap().to_vec::<f64>().unwrap(), want);
    }
}
