//! Differentiable selection by a (constant) mask: the gradient flows to
//! whichever operand each output element came from.

use kogner_tensor::ops::elementwise::sum_to_shape;
use kogner_tensor::{Result, Tensor};

use crate::Var;

impl Var {
    /// `a` where `mask` is nonzero, else `b`; mask (u8 or float), a and b
    /// broadcast together → the broadcast shape. Gradients are summed back
    /// to a's and b's shapes.
    pub fn where_cond(mask: &Tensor, a: &Var, b: &Var) -> Result<Var> {
        let (av, bv) = (a.value(), b.value());
        let y = Tensor::where_cond(mask, &av, &bv)?;
        if !Var::needs_grad(&[a, b]) {
            return Ok(Var::constant(y));
        }
        let (ga, gb, mask) = (a.requires_grad(), b.requires_grad(), mask.clone());
        let (sa, sb) = (av.shape().to_vec(), bv.shape().to_vec());
        Ok(Var::from_op("where_cond", y, &[a, b], Box::new(move |g| {
            let zero = Tensor::zeros(&[], g.dtype());
            Ok(vec![
                if ga { Some(sum_to_shape(&Tensor::where_cond(&mask, g, &zero)?, &sa)?) } else { None },
                if gb { Some(sum_to_shape(&Tensor::where_cond(&mask, &zero, g)?, &sb)?) } else { None },
            ])
        })))
    }

    /// `self` with `value` where `mask` is nonzero (the mask broadcasts to
    /// self's shape) → self's shape; filled elements get no gradient.
    pub fn masked_fill(&self, mask: &Tensor, value: f64) -> Result<Var> {
        let y = self.value().masked_fill(mask, value)?;
        if !Var::needs_grad(&[self]) {
            return Ok(Var::constant(y));
        }
        let mask = mask.clone();
        Ok(Var::from_op("masked_fill", y, &[self], Box::new(move |g| Ok(vec![Some(g.masked_fill(&mask, 0.0)?)]))))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use crate::gradcheck::{check_f32_matches_f64, check_gradients, random_tensor, Tol};
    use crate::Var;
    use kogner_tensor::{DType, Rng, Tensor};

    fn shape() -> impl Strategy<Value = Vec<usize>> {
        prop::collection::vec(1usize..5, 1..4)
    }

    /// `s` with some dims set to 1 and some leading dims dropped (drawn from `seed`).
    fn broadcastable(s: &[usize], seed: u64) -> Vec<usize> {
        let mut rng = Rng::new(seed);
        let drop = (rng.next_u64() % (s.len() as u64 + 1)) as usize;
        s[drop..].iter().map(|&d| if rng.next_u64() & 1 == 0 { 1 } else { d }).collect()
    }

    /// A random 0/1 mask of `shape`, as u8 or as f64.
    fn random_mask(shape: &[usize], seed: u64, float: bool) -> Tensor {
        let mut rng = Rng::new(seed);
        let n: usize = shape.iter().product();
        let m: Vec<u8> = (0..n).map(|_| (rng.next_u64() & 1) as u8).collect();
        let t = Tensor::from_vec(m, shape).unwrap();
        if float { t.to_dtype(DType::F64).unwrap() } else { t }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn where_cond_gradients(s in shape(), seed in any::<u64>(), float_mask in any::<bool>()) {
            let mask = random_mask(&broadcastable(&s, seed), seed ^ 1, float_mask);
            let a = random_tensor(&broadcastable(&s, seed ^ 2), seed ^ 3, -2.0, 2.0);
            let b = random_tensor(&broadcastable(&s, seed ^ 4), seed ^ 5, -2.0, 2.0);
            // a full-shape operand keeps the output at the full shape s
            let full = random_tensor(&s, seed ^ 6, -2.0, 2.0);
            let f = move |v: &[Var]| Var::where_cond(&mask, &v[0], &v[1])?.mul(&v[2]);
            let inputs = [a, b, full];
            check_gradients(&f, &inputs, &[], Tol::default()).map_err(TestCaseError::fail)?;
            check_f32_matches_f64(&f, &inputs, 1e-6, 1e-6).map_err(TestCaseError::fail)?;
        }

        #[test]
        fn masked_fill_gradients(s in shape(), seed in any::<u64>()) {
            let mask = random_mask(&broadcastable(&s, seed), seed ^ 1, false);
            let x = random_tensor(&s, seed ^ 2, -2.0, 2.0);
            let f = move |v: &[Var]| v[0].masked_fill(&mask, -3.5)?.sqr();
            let inputs = [x];
            check_gradients(&f, &inputs, &[], Tol::default()).map_err(TestCaseError::fail)?;
            check_f32_matches_f64(&f, &inputs, 1e-6, 1e-6).map_err(TestCaseError::fail)?;
        }
    }

    #[test]
    fn gradient_routes_by_mask() {
        let mask = Tensor::from_vec(vec![1u8, 0, 1], &[3]).unwrap();
        let a = Var::leaf(random_tensor(&[3], 1, -1.0, 1.0));
        let b = Var::leaf(random_tensor(&[1], 2, -1.0, 1.0));
        let y = Var::where_cond(&mask, &a, &b).unwrap();
        let g = y.backward().unwrap();
        assert_eq!(g.get(&a).unwrap().to_vec::<f64>().unwrap(), vec![1., 0., 1.]);
        assert_eq!(g.get(&b).unwrap().to_vec::<f64>().unwrap(), vec![1.]);
        let z = a.masked_fill(&mask, 9.0).unwrap();
        assert_eq!(z.value().to_vec::<f64>().unwrap()[0], 9.0);
        assert_eq!(z.backward().unwrap().get(&a).unwrap().to_vec::<f64>().unwrap(), vec![0., 1., 0.]);
    }
}
