//! Differentiable `cat` and `stack`: the gradient of each input is its own
//! slice of the output gradient.

use kogner_tensor::{Result, Tensor};

use crate::Var;

fn values(vars: &[&Var]) -> Vec<Tensor> {
    vars.iter().map(|v| v.value()).collect()
}

impl Var {
    /// Join along `dim`: k × [.., n_i, ..] → [.., Σ n_i, ..].
    pub fn cat(vars: &[&Var], dim: isize) -> Result<Var> {
        let xs = values(vars);
        let y = Tensor::cat(&xs.iter().collect::<Vec<_>>(), dim)?;
        if !Var::needs_grad(vars) {
            return Ok(Var::constant(y));
        }
        let sizes: Vec<usize> = xs.iter().map(|x| x.dim(dim)).collect::<Result<_>>()?;
        let wanted: Vec<bool> = vars.iter().map(|v| v.requires_grad()).collect();
        Ok(Var::from_op("cat", y, vars, Box::new(move |g| {
            let mut start = 0;
            sizes
                .iter()
                .zip(&wanted)
                .map(|(&len, &want)| {
                    start += len;
                    if want { g.narrow(dim, start - len, len)?.contiguous().map(Some) } else { Ok(None) }
                })
                .collect()
        })))
    }

    /// Join equal shapes along a new dim: k × [..] → [.., k, ..] (dim counts
    /// in the output's rank).
    pub fn stack(vars: &[&Var], dim: isize) -> Result<Var> {
        let xs = values(vars);
        let y = Tensor::stack(&xs.iter().collect::<Vec<_>>(), dim)?;
        if !Var::needs_grad(vars) {
            return Ok(Var::constant(y));
        }
        let wanted: Vec<bool> = vars.iter().map(|v| v.requires_grad()).collect();
        Ok(Var::from_op("stack", y, vars, Box::new(move |g| {
            (0..wanted.len())
                .map(|i| if wanted[i] { g.select(dim, i)?.contiguous().map(Some) } else { Ok(None) })
                .collect()
        })))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use crate::gradcheck::{check_f32_matches_f64, check_gradients, random_tensor, Tol};
    use crate::Var;
    use kogner_tensor::Tensor;

    /// A base shape, a dim in it, and per-input sizes along that dim (0 allowed).
    fn cat_case() -> impl Strategy<Value = (Vec<usize>, usize, Vec<usize>)> {
        prop::collection::vec(1usize..4, 1..4).prop_flat_map(|s| {
            let r = s.len();
            (Just(s), 0..r, prop::collection::vec(0usize..4, 1..4))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn cat_gradients((base, d, sizes) in cat_case(), seed in any::<u64>(), negative_dim in any::<bool>()) {
            let inputs: Vec<Tensor> = sizes.iter().enumerate().map(|(i, &n)| {
                let mut s = base.clone();
                s[d] = n;
                random_tensor(&s, seed ^ i as u64, -2.0, 2.0)
            }).collect();
            let dim = if negative_dim { d as isize - base.len() as isize } else { d as isize };
            // sqr: each input's gradient depends on its own values, so a
            // misplaced slice cannot pass
            let f = move |v: &[Var]| Var::cat(&v.iter().collect::<Vec<_>>(), dim)?.sqr();
            check_gradients(&f, &inputs, &[], Tol::default()).map_err(TestCaseError::fail)?;
            check_f32_matches_f64(&f, &inputs, 1e-6, 1e-6).map_err(TestCaseError::fail)?;
        }

        #[test]
        fn stack_gradients(s in prop::collection::vec(1usize..4, 0..3), k in 1usize..4, seed in any::<u64>(), d_pick in any::<usize>()) {
            let inputs: Vec<Tensor> = (0..k).map(|i| random_tensor(&s, seed ^ i as u64, -2.0, 2.0)).collect();
            let dim = (d_pick % (s.len() + 1)) as isize;
            let f = move |v: &[Var]| Var::stack(&v.iter().collect::<Vec<_>>(), dim)?.sqr();
            check_gradients(&f, &inputs, &[], Tol::default()).map_err(TestCaseError::fail)?;
            check_f32_matches_f64(&f, &inputs, 1e-6, 1e-6).map_err(TestCaseError::fail)?;
        }
    }

    #[test]
    fn constant_parts_get_no_gradient() {
        let a = Var::leaf(random_tensor(&[2, 1], 1, -1.0, 1.0));
        let b = Var::constant(random_tensor(&[2, 2], 2, -1.0, 1.0));
        let y = Var::cat(&[&b, &a], 1).unwrap();
        assert_eq!(y.shape(), vec![2, 3]);
        let g = y.backward().unwrap();
        assert_eq!(g.len(), 1);
        assert_eq!(g.get(&a).unwrap().shape(), &[2, 1]);
        assert!(Var::cat(&[], 0).is_err());
        assert!(Var::stack(&[&a, &b], 0).is_err());
    }
}
