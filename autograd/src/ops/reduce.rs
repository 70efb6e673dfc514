//! Reductions: sum and mean over dims, max and min along one dim.
//!
//! Sum/mean backward broadcasts the gradient back over the reduced dims (a
//! stride-0 view, no copy). Max/min send the gradient to the first extremal
//! position of each reduced row only, as PyTorch does for `max(dim)`.

use kogner_tensor::{DType, Result, Tensor};

use crate::Var;

impl Var {
    /// Sum over `dims` (each once, any order): x [..] → x's shape without
    /// `dims` (or with them as 1 when `keepdim`).
    pub fn sum_dims(&self, dims: &[usize], keepdim: bool) -> Result<Var> {
        let x = self.value();
        let y = x.sum_dims(dims, keepdim)?;
        if !Var::needs_grad(&[self]) {
            return Ok(Var::constant(y));
        }
        let x_shape = x.shape().to_vec();
        let kept = keepdim_shape(&x_shape, dims);
        Ok(Var::from_op("sum", y, &[self], Box::new(move |g| Ok(vec![Some(g.reshape(&kept)?.broadcast_as(&x_shape)?)]))))
    }

    /// Sum along `dim` (negative counts from the end).
    pub fn sum(&self, dim: isize, keepdim: bool) -> Result<Var> {
        let d = self.value().layout().dim("sum", dim)?;
        self.sum_dims(&[d], keepdim)
    }

    /// Sum of every element → rank-0.
    pub fn sum_all(&self) -> Result<Var> {
        let dims: Vec<usize> = (0..self.value().rank()).collect();
        self.sum_dims(&dims, false)
    }

    /// Mean over `dims`; shapes as [`Var::sum_dims`].
    pub fn mean_dims(&self, dims: &[usize], keepdim: bool) -> Result<Var> {
        let s = self.sum_dims(dims, keepdim)?;
        let shape = self.shape();
        // dims were validated by sum_dims, so indexing is in range.
        let n: usize = dims.iter().map(|&d| shape[d]).product();
        s.mul_scalar(1.0 / n.max(1) as f64)
    }

    /// Mean along `dim` (negative counts from the end).
    pub fn mean(&self, dim: isize, keepdim: bool) -> Result<Var> {
        let d = self.value().layout().dim("mean", dim)?;
        self.mean_dims(&[d], keepdim)
    }

    /// Mean of every element → rank-0.
    pub fn mean_all(&self) -> Result<Var> {
        let dims: Vec<usize> = (0..self.value().rank()).collect();
        self.mean_dims(&dims, false)
    }

    /// Maximum along `dim`; the gradient goes to the first maximal entry.
    pub fn max(&self, dim: isize, keepdim: bool) -> Result<Var> {
        self.extremum(dim, keepdim, Extremum::Max)
    }

    /// Minimum along `dim`; the gradient goes to the first minimal entry.
    pub fn min(&self, dim: isize, keepdim: bool) -> Result<Var> {
        self.extremum(dim, keepdim, Extremum::Min)
    }

    fn extremum(&self, dim: isize, keepdim: bool, kind: Extremum) -> Result<Var> {
        let x = self.value();
        let y = match kind {
            Extremum::Max => x.max(dim, keepdim)?,
            Extremum::Min => x.min(dim, keepdim)?,
        };
        if !Var::needs_grad(&[self]) {
            return Ok(Var::constant(y));
        }
        let d = x.layout().dim(kind.name(), dim)?;
        // The first argmin of x is the first argmax of −x (negation is exact,
        // so ties stay ties).
        let idx = match kind {
            Extremum::Max => x.argmax(dim, true)?,
            Extremum::Min => x.neg()?.argmax(dim, true)?,
        };
        let (x_shape, dtype) = (x.shape().to_vec(), x.dtype());
        let kept = keepdim_shape(&x_shape, &[d]);
        Ok(Var::from_op(kind.name(), y, &[self], Box::new(move |g| {
            let mask = one_hot_along(&idx, &x_shape, d, dtype)?;
            Ok(vec![Some(mask.mul(&g.reshape(&kept)?)?)])
        })))
    }
}

#[derive(Clone, Copy)]
enum Extremum {
    Max,
    Min,
}

impl Extremum {
    fn name(self) -> &'static str {
        match self {
            Extremum::Max => "max",
            Extremum::Min => "min",
        }
    }
}

/// `shape` with every dim in `dims` set to 1 (what `keepdim` gives).
fn keepdim_shape(shape: &[usize], dims: &[usize]) -> Vec<usize> {
    let mut s = shape.to_vec();
    for &d in dims {
        s[d] = 1;
    }
    s
}

/// A 0/1 tensor of `shape` with a 1 at `idx` along dim `d` of each row.
/// idx (i64) has `shape` with dim `d` set to 1.
fn one_hot_along(idx: &Tensor, shape: &[usize], d: usize, dtype: DType) -> Result<Tensor> {
    let (n, inner) = (shape[d], shape[d + 1..].iter().product::<usize>());
    let outer: usize = shape[..d].iter().product();
    let idx = idx.to_vec::<i64>()?;
    let mut mask = vec![0.0f64; shape.iter().product()];
    for o in 0..outer {
        for i in 0..inner {
            // argmax of the same shape: always a valid index along d.
            let k = idx[o * inner + i] as usize;
            mask[(o * n + k) * inner + i] = 1.0;
        }
    }
    Tensor::from_vec(mask, shape)?.to_dtype(dtype)
}

#[cfg(test)]
mod tests {
    use kogner_tensor::{DType, Tensor};
    use proptest::prelude::*;

    use crate::gradcheck::{check_f32_matches_f64, check_gradients, random_tensor, Tol};
    use crate::Var;

    fn shape() -> impl Strategy<Value = Vec<usize>> {
        prop::collection::vec(1usize..5, 1..4)
    }

    /// A shape and a non-empty subset of its dims, in shuffled order.
    fn shape_and_dims() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
        shape().prop_flat_map(|s| {
            let r = s.len();
            (Just(s), prop::sample::subsequence((0..r).collect::<Vec<_>>(), 1..=r).prop_shuffle())
        })
    }

    /// A shape and distinct values (a shuffled grid 0.3 apart), so no row
    /// has a tie for its max or min and finite differences see one argmax.
    fn distinct_values() -> impl Strategy<Value = Tensor> {
        shape().prop_flat_map(|s| {
            let n: usize = s.iter().product();
            (Just(s), Just((0..n).collect::<Vec<_>>()).prop_shuffle())
        })
        .prop_map(|(s, perm)| {
            let v: Vec<f64> = perm.iter().map(|&p| p as f64 * 0.3 - 2.0).collect();
            Tensor::from_vec(v, &s).unwrap()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn sum_and_mean_gradients((s, dims) in shape_and_dims(), keepdim in any::<bool>(), seed in any::<u64>()) {
            let x = random_tensor(&s, seed, -2.0, 2.0);
            let last = -(s.len() as isize);
            let d0 = dims[0];
            type F = Box<dyn Fn(&[Var]) -> kogner_tensor::Result<Var>>;
            let ops: Vec<(&str, F)> = vec![
                ("sum_dims", Box::new({ let dims = dims.clone(); move |v: &[Var]| v[0].sum_dims(&dims, keepdim) })),
                ("mean_dims", Box::new({ let dims = dims.clone(); move |v: &[Var]| v[0].mean_dims(&dims, keepdim) })),
                ("sum", Box::new(move |v: &[Var]| v[0].sum(d0 as isize, keepdim))),
                ("mean (negative dim)", Box::new(move |v: &[Var]| v[0].mean(last, keepdim))),
                ("sum_all", Box::new(|v: &[Var]| v[0].sum_all())),
                ("mean_all", Box::new(|v: &[Var]| v[0].mean_all())),
            ];
            for (name, f) in ops {
                check_gradients(&*f, std::slice::from_ref(&x), &[], Tol::default()).map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
                check_f32_matches_f64(&*f, std::slice::from_ref(&x), 1e-5, 1e-5).map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
            }
        }

        #[test]
        fn max_and_min_gradients(x in distinct_values(), dim_pick in any::<prop::sample::Index>(), keepdim in any::<bool>()) {
            let rank = x.rank() as isize;
            let d = dim_pick.index(x.rank()) as isize;
            type F = Box<dyn Fn(&[Var]) -> kogner_tensor::Result<Var>>;
            let ops: [(&str, F); 2] = [
                ("max", Box::new(move |v: &[Var]| v[0].max(d, keepdim))),
                ("min", Box::new(move |v: &[Var]| v[0].min(d - rank, keepdim))),
            ];
            for (name, f) in ops {
                check_gradients(&*f, std::slice::from_ref(&x), &[], Tol::default()).map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
                check_f32_matches_f64(&*f, std::slice::from_ref(&x), 1e-7, 1e-6).map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
            }
        }
    }

    fn leaf(v: &[f64], shape: &[usize]) -> Var {
        Var::leaf(Tensor::from_vec(v.to_vec(), shape).unwrap())
    }

    fn grad_of(x: &Var, y: &Var) -> Vec<f64> {
        y.backward().unwrap().get(x).unwrap().to_vec::<f64>().unwrap()
    }

    #[test]
    fn sum_and_mean_values_and_gradients_by_hand() {
        let x = leaf(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
        let s = x.sum(0, false).unwrap();
        assert_eq!(s.value().to_vec::<f64>().unwrap(), vec![5., 7., 9.]);
        assert_eq!(grad_of(&x, &s), vec![1.; 6]);
        let m = x.mean(-1, true).unwrap();
        assert_eq!(m.shape(), vec![2, 1]);
        assert_eq!(m.value().to_vec::<f64>().unwrap(), vec![2., 5.]);
        assert_eq!(grad_of(&x, &m), vec![1. / 3.; 6]);
        let a = x.mean_all().unwrap();
        assert_eq!(a.value().to_scalar().unwrap(), 3.5);
        assert_eq!(grad_of(&x, &a), vec![1. / 6.; 6]);
    }

    #[test]
    fn ties_send_the_gradient_to_the_first_extremum() {
        let x = leaf(&[1., 3., 3., 2., 2., 0.], &[2, 3]);
        let mx = x.max(1, false).unwrap();
        assert_eq!(mx.value().to_vec::<f64>().unwrap(), vec![3., 2.]);
        assert_eq!(grad_of(&x, &mx), vec![0., 1., 0., 1., 0., 0.]);
        let mn = x.min(-1, true).unwrap();
        assert_eq!(mn.value().to_vec::<f64>().unwrap(), vec![1., 0.]);
        assert_eq!(grad_of(&x, &mn), vec![1., 0., 0., 0., 0., 1.]);
        // Along dim 0 (rows tie in column 1): the first row wins.
        let x = leaf(&[1., 2., 5., 2.], &[2, 2]);
        assert_eq!(grad_of(&x, &x.max(0, false).unwrap()), vec![0., 1., 1., 0.]);
    }

    #[test]
    fn bad_dims_and_dtypes_are_errors() {
        let x = leaf(&[0.; 6], &[2, 3]);
        let e = x.sum_dims(&[2], false).unwrap_err().to_string();
        assert!(e.contains("dim 2"), "{e}");
        assert!(x.sum_dims(&[1, 1], false).is_err());
        assert!(x.mean_dims(&[0, 5], true).is_err());
        assert!(x.sum(2, false).is_err());
        assert!(x.mean(-3, false).is_err());
        let e = x.max(-3, false).unwrap_err().to_string();
        assert!(e.contains("max"), "{e}");
        assert!(x.min(2, true).is_err());
        assert!(leaf(&[], &[2, 0]).max(1, false).is_err());
        let ints = Var::constant(Tensor::zeros(&[3], DType::I64));
        assert!(ints.sum_all().is_err());
        assert!(ints.max(0, false).is_err());
    }
}
