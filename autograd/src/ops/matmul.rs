//! Matrix products: batched `matmul` and the fused `linear`. Backward passes
//! feed transposed *views* (`Tensor::t`) to the GEMM, which reads strides,
//! so no operand is copied to transpose it.

use kogner_tensor::ops::elementwise::sum_to_shape;
use kogner_tensor::{Result, Tensor};

use crate::Var;

impl Var {
    /// `a [..., m, k] @ b [..., k, n] → [..., m, n]`; batch dims broadcast as
    /// in [`Tensor::matmul`].
    pub fn matmul(&self, rhs: &Var) -> Result<Var> {
        let (a, b) = (self.value(), rhs.value());
        let y = a.matmul(&b)?;
        if !Var::needs_grad(&[self, rhs]) {
            return Ok(Var::constant(y));
        }
        let (ga, gb) = (self.requires_grad(), rhs.requires_grad());
        Ok(Var::from_op("matmul", y, &[self, rhs], Box::new(move |g| {
            Ok(vec![
                if ga { Some(matmul_grad_lhs(g, &b, a.shape())?) } else { None },
                if gb { Some(matmul_grad_rhs(&a, g, b.shape())?) } else { None },
            ])
        })))
    }

    /// `x [..., in] · w [out, in]ᵀ + b [out] → [..., out]` (PyTorch's Linear),
    /// through the fused [`Tensor::linear`].
    pub fn linear(&self, w: &Var, b: Option<&Var>) -> Result<Var> {
        let (x, wv) = (self.value(), w.value());
        let bv = b.map(Var::value);
        let y = x.linear(&wv, bv.as_ref())?;
        let mut inputs = vec![self, w];
        inputs.extend(b);
        if !Var::needs_grad(&inputs) {
            return Ok(Var::constant(y));
        }
        let need = [self.requires_grad(), w.requires_grad(), b.is_some_and(Var::requires_grad)];
        let has_bias = b.is_some();
        Ok(Var::from_op("linear", y, &inputs, Box::new(move |g| {
            let (n_out, n_in) = (wv.shape()[0], wv.shape()[1]);
            // Leading dims flattened: every row of x is one sample of the product.
            let rows = leading_rows(x.shape());
            let g2 = g.reshape(&[rows, n_out])?;
            let mut grads = vec![
                if need[0] { Some(g2.matmul(&wv)?.reshape(x.shape())?) } else { None },
                if need[1] { Some(g2.t()?.matmul(&x.reshape(&[rows, n_in])?)?) } else { None },
            ];
            if has_bias {
                grads.push(if need[2] { Some(g2.sum_dims(&[0], false)?) } else { None });
            }
            Ok(grads)
        })))
    }
}

/// d(a·b)/da = g · bᵀ, summed over the batch dims `a` was broadcast along.
/// g [..., m, n], b [..., k, n] → a_shape [..., m, k].
fn matmul_grad_lhs(g: &Tensor, b: &Tensor, a_shape: &[usize]) -> Result<Tensor> {
    sum_to_shape(&g.matmul(&b.t()?)?, a_shape)
}

/// d(a·b)/db = aᵀ · g, summed over the batch dims `b` was broadcast along.
/// a [..., m, k], g [..., m, n] → b_shape [..., k, n].
fn matmul_grad_rhs(a: &Tensor, g: &Tensor, b_shape: &[usize]) -> Result<Tensor> {
    if b_shape.len() == 2 && g.rank() > 2 {
        // A weight-like 2-D rhs: stack the batch into the rows, one product.
        let (k, n) = (b_shape[0], b_shape[1]);
        let rows = leading_rows(g.shape());
        let a_full = a.broadcast_as(&batched(g.shape(), a.shape()))?;
        return a_full.reshape(&[rows, k])?.t()?.matmul(&g.reshape(&[rows, n])?);
    }
    sum_to_shape(&a.t()?.matmul(g)?, b_shape)
}

/// The shape of an operand broadcast to the batch dims of `out`, keeping its
/// own last two dims.
fn batched(out: &[usize], operand: &[usize]) -> Vec<usize> {
    let mut s = out[..out.len() - 2].to_vec();
    s.extend_from_slice(&operand[operand.len() - 2..]);
    s
}

/// Product of all dims but the last: the row count of a flattened `[rows, last]` view.
fn leading_rows(shape: &[usize]) -> usize {
    shape[..shape.len() - 1].iter().product()
}

#[cfg(test)]
mod tests {
    use kogner_tensor::{DType, Tensor};
    use proptest::prelude::*;

    use crate::gradcheck::{check_f32_matches_f64, check_gradients, random_tensor, Tol};
    use crate::Var;

    /// Batch dims of a and b that broadcast together: from one full batch
    /// shape, each side may drop leading dims, and per dim one side may be 1.
    fn batch_pair() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
        prop::collection::vec(1usize..4, 0..3)
            .prop_flat_map(|full| {
                let r = full.len();
                (Just(full), prop::collection::vec(0u8..3, r), 0..=r, 0..=r)
            })
            .prop_map(|(full, mode, drop_a, drop_b)| {
                let side = |one: u8, drop: usize| -> Vec<usize> {
                    full.iter().zip(&mode).map(|(&d, &m)| if m == one { 1 } else { d }).skip(drop).collect()
                };
                (side(1, drop_a), side(2, drop_b))
            })
    }

    fn with(batch: &[usize], rows: usize, cols: usize) -> Vec<usize> {
        let mut s = batch.to_vec();
        s.extend([rows, cols]);
        s
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn matmul_gradients((ba, bb) in batch_pair(), m in 1usize..4, k in 1usize..4, n in 1usize..4,
                            transposed_rhs in any::<bool>(), seed in any::<u64>()) {
            let a = random_tensor(&with(&ba, m, k), seed, -2.0, 2.0);
            // A transposed rhs reaches the GEMM as a strided view.
            let b = if transposed_rhs { random_tensor(&with(&bb, n, k), seed ^ 1, -2.0, 2.0) } else { random_tensor(&with(&bb, k, n), seed ^ 1, -2.0, 2.0) };
            let f = move |v: &[Var]| if transposed_rhs { v[0].matmul(&v[1].t()?) } else { v[0].matmul(&v[1]) };
            check_gradients(&f, &[a.clone(), b.clone()], &[], Tol::default()).map_err(TestCaseError::fail)?;
            check_f32_matches_f64(&f, &[a, b], 1e-5, 1e-5).map_err(TestCaseError::fail)?;
        }

        #[test]
        fn linear_gradients(lead in prop::collection::vec(1usize..4, 0..3), n_in in 1usize..5, n_out in 1usize..5,
                            bias in any::<bool>(), frozen_w in any::<bool>(), seed in any::<u64>()) {
            let mut xs = lead.clone();
            xs.push(n_in);
            let mut inputs = vec![random_tensor(&xs, seed, -2.0, 2.0), random_tensor(&[n_out, n_in], seed ^ 1, -1.0, 1.0)];
            if bias {
                inputs.push(random_tensor(&[n_out], seed ^ 2, -1.0, 1.0));
            }
            let f = |v: &[Var]| v[0].linear(&v[1], v.get(2));
            let constant: &[usize] = if frozen_w { &[1] } else { &[] };
            check_gradients(&f, &inputs, constant, Tol::default()).map_err(TestCaseError::fail)?;
            check_f32_matches_f64(&f, &inputs, 1e-5, 1e-5).map_err(TestCaseError::fail)?;
        }
    }

    fn var(v: &[f64], shape: &[usize]) -> Var {
        Var::leaf(Tensor::from_vec(v.to_vec(), shape).unwrap())
    }

    #[test]
    fn matmul_value_and_gradient_by_hand() {
        let a = var(&[1., 2., 3., 4.], &[2, 2]);
        let b = var(&[5., 6., 7., 8.], &[2, 2]);
        let y = a.matmul(&b).unwrap();
        assert_eq!(y.value().to_vec::<f64>().unwrap(), vec![19., 22., 43., 50.]);
        let g = y.backward().unwrap();
        // d Σ(AB) / dA = 1·Bᵀ (row sums of B); d / dB = Aᵀ·1 (column sums of A, repeated).
        assert_eq!(g.get(&a).unwrap().to_vec::<f64>().unwrap(), vec![11., 15., 11., 15.]);
        assert_eq!(g.get(&b).unwrap().to_vec::<f64>().unwrap(), vec![4., 4., 6., 6.]);
    }

    #[test]
    fn linear_value_and_frozen_input_gets_no_gradient() {
        let x = Var::constant(Tensor::from_vec(vec![1., 2., 3., 4., 5., 6.], &[2, 3]).unwrap());
        let w = var(&[1., 0., -1., 2., 1., 0.], &[2, 3]);
        let b = var(&[0.5, -0.5], &[2]);
        let y = x.linear(&w, Some(&b)).unwrap();
        assert_eq!(y.value().to_vec::<f64>().unwrap(), vec![-1.5, 3.5, -1.5, 12.5]);
        let g = y.backward().unwrap();
        assert!(g.get(&x).is_none());
        // dW = gᵀ·x with g = 1: column sums of x, per output row.
        assert_eq!(g.get(&w).unwrap().to_vec::<f64>().unwrap(), vec![5., 7., 9., 5., 7., 9.]);
        assert_eq!(g.get(&b).unwrap().to_vec::<f64>().unwrap(), vec![2., 2.]);
    }

    #[test]
    fn bad_operands_are_errors() {
        let a = var(&[0.; 6], &[2, 3]);
        let e = a.matmul(&a).unwrap_err().to_string();
        assert!(e.contains("matmul"), "{e}");
        assert!(a.matmul(&var(&[0.; 3], &[3])).is_err());
        let f32b = Var::leaf(Tensor::zeros(&[3, 2], DType::F32));
        assert!(a.matmul(&f32b).is_err());
        let e = a.linear(&var(&[0.; 8], &[2, 4]), None).unwrap_err().to_string();
        assert!(e.contains("linear"), "{e}");
        assert!(a.linear(&var(&[0.; 6], &[2, 3]), Some(&var(&[0.; 3], &[3]))).is_err());
        assert!(a.linear(&f32b.t().unwrap(), None).is_err());
    }
}
