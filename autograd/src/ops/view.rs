//! Shape ops: reshape, flatten, permute/transpose, narrow/select, broadcast,
//! unsqueeze/squeeze, contiguous. Forward passes are views where the tensor
//! layer makes them views; backward passes are views too, except narrow /
//! select (zero padding) and broadcast (a sum).

use kogner_tensor::ops::elementwise::sum_to_shape;
use kogner_tensor::{with_float_dtype, FloatElement, Layout, Result, Tensor};

use crate::Var;

impl Var {
    /// Record a shape op whose gradient is `backward(g)` (shaped like the input).
    fn view_op(
        &self,
        name: &'static str,
        y: Tensor,
        backward: impl Fn(&Tensor) -> Result<Tensor> + Send + Sync + 'static,
    ) -> Result<Var> {
        if !Var::needs_grad(&[self]) {
            return Ok(Var::constant(y));
        }
        Ok(Var::from_op(name, y, &[self], Box::new(move |g| Ok(vec![Some(backward(g)?)]))))
    }

    /// Same elements in `shape` (same element count): x [..] → shape.
    pub fn reshape(&self, shape: &[usize]) -> Result<Var> {
        let x = self.value();
        let x_shape = x.shape().to_vec();
        self.view_op("reshape", x.reshape(shape)?, move |g| g.reshape(&x_shape))
    }

    /// Merge dims `start..=end` (negative counts from the end) into one.
    pub fn flatten(&self, start: isize, end: isize) -> Result<Var> {
        let x = self.value();
        let x_shape = x.shape().to_vec();
        self.view_op("flatten", x.flatten(start, end)?, move |g| g.reshape(&x_shape))
    }

    /// Reorder dims: output dim `i` is input dim `perm[i]`.
    pub fn permute(&self, perm: &[usize]) -> Result<Var> {
        let y = self.value().permute(perm)?;
        // perm was validated as a permutation by the forward.
        let mut inverse = vec![0; perm.len()];
        for (i, &p) in perm.iter().enumerate() {
            inverse[p] = i;
        }
        self.view_op("permute", y, move |g| g.permute(&inverse))
    }

    /// Swap dims `a` and `b` (negative counts from the end).
    pub fn transpose(&self, a: isize, b: isize) -> Result<Var> {
        let y = self.value().transpose(a, b)?;
        self.view_op("transpose", y, move |g| g.transpose(a, b))
    }

    /// Transpose of the last two dims: [..., m, n] → [..., n, m].
    pub fn t(&self) -> Result<Var> {
        self.transpose(-2, -1)
    }

    /// Entries `start..start + len` of `dim`: x [.., n, ..] → [.., len, ..].
    pub fn narrow(&self, dim: isize, start: usize, len: usize) -> Result<Var> {
        let x = self.value();
        let y = x.narrow(dim, start, len)?;
        let d = x.layout().dim("narrow", dim)?;
        let x_shape = x.shape().to_vec();
        self.view_op("narrow", y, move |g| pad_into_zeros(g, &x_shape, d, start))
    }

    /// Entry `index` of `dim`, removing the dim: x [.., n, ..] → [.., ..].
    pub fn select(&self, dim: isize, index: usize) -> Result<Var> {
        let x = self.value();
        let y = x.select(dim, index)?;
        let d = x.layout().dim("select", dim)?;
        let x_shape = x.shape().to_vec();
        self.view_op("select", y, move |g| pad_into_zeros(&g.unsqueeze(d as isize)?, &x_shape, d, index))
    }

    /// View as `shape` by numpy broadcasting (new leading dims allowed).
    pub fn broadcast_as(&self, shape: &[usize]) -> Result<Var> {
        let x = self.value();
        let x_shape = x.shape().to_vec();
        self.view_op("broadcast_as", x.broadcast_as(shape)?, move |g| sum_to_shape(g, &x_shape))
    }

    /// PyTorch's name for [`Var::broadcast_as`].
    pub fn expand(&self, shape: &[usize]) -> Result<Var> {
        self.broadcast_as(shape)
    }

    /// Insert a dim of size 1 at `dim` (in `-(rank+1)..=rank`).
    pub fn unsqueeze(&self, dim: isize) -> Result<Var> {
        let y = self.value().unsqueeze(dim)?;
        let d = y.layout().dim("unsqueeze", dim)? as isize;
        self.view_op("unsqueeze", y, move |g| g.squeeze(d))
    }

    /// Remove dim `dim`, which must have size 1.
    pub fn squeeze(&self, dim: isize) -> Result<Var> {
        let x = self.value();
        let y = x.squeeze(dim)?;
        let d = x.layout().dim("squeeze", dim)? as isize;
        self.view_op("squeeze", y, move |g| g.unsqueeze(d))
    }

    /// A contiguous copy (or the same tensor if already contiguous); the
    /// gradient passes through unchanged.
    pub fn contiguous(&self) -> Result<Var> {
        let y = self.value().contiguous()?;
        self.view_op("contiguous", y, |g| Ok(g.clone()))
    }
}

/// The adjoint of narrow: zeros of `shape` with `g` written at
/// `start..start + g.shape()[d]` along dim `d`. g [.., len, ..] → shape.
fn pad_into_zeros(g: &Tensor, shape: &[usize], d: usize, start: usize) -> Result<Tensor> {
    with_float_dtype!(g.dtype(), "narrow backward", T => pad_typed::<T>(g, shape, d, start))
}

fn pad_typed<T: FloatElement>(g: &Tensor, shape: &[usize], d: usize, start: usize) -> Result<Tensor> {
    let mut out = vec![T::ZERO; shape.iter().product()];
    // The slice of the output g lands in, walked in the same row-major order
    // as g itself: the k-th run of one matches the k-th run of the other.
    let target = Layout::contiguous(shape).narrow(d, start, g.shape()[d])?;
    let mut targets = Vec::new();
    target.for_each_run(|off, _, _| targets.push(off));
    let src = g.storage_slice::<T>()?;
    let mut k = 0;
    g.layout().for_each_run(|off, len, stride| {
        let dst = &mut out[targets[k]..targets[k] + len];
        k += 1;
        if stride == 1 {
            dst.copy_from_slice(&src[off..off + len]);
        } else {
            for (i, o) in dst.iter_mut().enumerate() {
                *o = src[off + i * stride];
            }
        }
    });
    Tensor::from_vec(out, shape)
}

#[cfg(test)]
mod tests {
    use kogner_tensor::{DType, Tensor};
    use proptest::prelude::*;

    use crate::gradcheck::{check_f32_matches_f64, check_gradients, random_tensor, Tol};
    use crate::Var;

    type F = Box<dyn Fn(&[Var]) -> kogner_tensor::Result<Var>>;

    fn shape() -> impl Strategy<Value = Vec<usize>> {
        prop::collection::vec(1usize..5, 1..4)
    }

    /// Gradient check (f64) and f32-vs-f64 forward of every named op on `x`.
    fn check_all(x: &Tensor, ops: Vec<(&str, F)>) -> Result<(), TestCaseError> {
        for (name, f) in ops {
            check_gradients(&*f, std::slice::from_ref(x), &[], Tol::default()).map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
            check_f32_matches_f64(&*f, std::slice::from_ref(x), 1e-6, 1e-6).map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn reshape_flatten_permute_transpose_gradients(
            s in shape(),
            perm_seed in Just(vec![0usize, 1, 2]).prop_shuffle(),
            a in any::<prop::sample::Index>(),
            b in any::<prop::sample::Index>(),
            seed in any::<u64>(),
        ) {
            let r = s.len();
            let x = random_tensor(&s, seed, -2.0, 2.0);
            let perm: Vec<usize> = perm_seed.into_iter().filter(|&p| p < r).collect();
            let reversed: Vec<usize> = s.iter().rev().copied().collect();
            let (a, b) = (a.index(r) as isize, b.index(r) as isize - r as isize);
            let ops: Vec<(&str, F)> = vec![
                ("reshape", Box::new(move |v: &[Var]| v[0].reshape(&reversed))),
                // flatten of a permuted (non-contiguous) view copies; its gradient is reshaped back.
                ("permute+flatten", Box::new(move |v: &[Var]| v[0].permute(&perm)?.flatten(a.min(r as isize + b), -1))),
                ("transpose", Box::new(move |v: &[Var]| v[0].transpose(a, b))),
                ("t", Box::new(move |v: &[Var]| if r >= 2 { v[0].t()?.contiguous() } else { v[0].contiguous() })),
            ];
            check_all(&x, ops)?;
        }

        #[test]
        fn narrow_and_select_gradients(
            s in shape(),
            dim in any::<prop::sample::Index>(),
            start in any::<prop::sample::Index>(),
            len in any::<prop::sample::Index>(),
            seed in any::<u64>(),
        ) {
            let x = random_tensor(&s, seed, -2.0, 2.0);
            let d = dim.index(s.len());
            let start = start.index(s[d]);
            let len = len.index(s[d] - start + 1);
            let r = s.len() as isize;
            let ops: Vec<(&str, F)> = vec![
                ("narrow", Box::new(move |v: &[Var]| v[0].narrow(d as isize, start, len))),
                ("select (negative dim)", Box::new(move |v: &[Var]| v[0].select(d as isize - r, start))),
                // The gradient reaching narrow is a strided view here.
                ("narrow of a transposed view", Box::new(move |v: &[Var]| {
                    let rev: Vec<usize> = (0..r as usize).rev().collect();
                    v[0].permute(&rev)?.narrow(r - 1 - d as isize, start, len)?.permute(&rev)
                })),
            ];
            check_all(&x, ops)?;
        }

        #[test]
        fn broadcast_unsqueeze_squeeze_gradients(
            s in shape(),
            ones in prop::collection::vec(any::<bool>(), 3),
            lead in 1usize..4,
            dim in any::<prop::sample::Index>(),
            seed in any::<u64>(),
        ) {
            let small: Vec<usize> = s.iter().zip(&ones).map(|(&d, &one)| if one { 1 } else { d }).collect();
            let x = random_tensor(&small, seed, -2.0, 2.0);
            let mut big = vec![lead];
            big.extend(&s);
            let r = small.len();
            let d = dim.index(r + 1) as isize;
            let ops: Vec<(&str, F)> = vec![
                ("broadcast_as", Box::new({ let big = big.clone(); move |v: &[Var]| v[0].broadcast_as(&big) })),
                ("expand", Box::new(move |v: &[Var]| v[0].expand(&big[1..]))),
                ("unsqueeze", Box::new(move |v: &[Var]| v[0].unsqueeze(d))),
                ("unsqueeze (negative) + squeeze", Box::new(move |v: &[Var]| {
                    v[0].unsqueeze(d - r as isize - 1)?.mul_scalar(3.0)?.squeeze(d)
                })),
            ];
            check_all(&x, ops)?;
        }
    }

    fn leaf(shape: &[usize]) -> Var {
        let n: usize = shape.iter().product();
        Var::leaf(Tensor::from_vec((0..n).map(|v| v as f64).collect(), shape).unwrap())
    }

    fn grad_of(x: &Var, y: &Var) -> Vec<f64> {
        y.backward().unwrap().get(x).unwrap().to_vec::<f64>().unwrap()
    }

    #[test]
    fn narrow_and_select_values_and_padded_gradients() {
        let x = leaf(&[2, 3]);
        let n = x.narrow(1, 1, 2).unwrap();
        assert_eq!(n.value().to_vec::<f64>().unwrap(), vec![1., 2., 4., 5.]);
        assert_eq!(grad_of(&x, &n), vec![0., 1., 1., 0., 1., 1.]);
        let s = x.select(0, 1).unwrap();
        assert_eq!(s.shape(), vec![3]);
        assert_eq!(s.value().to_vec::<f64>().unwrap(), vec![3., 4., 5.]);
        assert_eq!(grad_of(&x, &s), vec![0., 0., 0., 1., 1., 1.]);
        // A weighted upstream gradient lands in the right slots.
        let w = Tensor::from_vec(vec![10., 20.], &[2]).unwrap();
        let g = x.select(1, 2).unwrap().backward_with(w).unwrap();
        assert_eq!(g.get(&x).unwrap().to_vec::<f64>().unwrap(), vec![0., 0., 10., 0., 0., 20.]);
    }

    #[test]
    fn permute_and_broadcast_values_and_gradients() {
        let x = leaf(&[2, 3]);
        let p = x.t().unwrap();
        assert_eq!(p.value().to_vec::<f64>().unwrap(), vec![0., 3., 1., 4., 2., 5.]);
        let w = Tensor::from_vec(vec![1., 2., 3., 4., 5., 6.], &[3, 2]).unwrap();
        let g = p.backward_with(w).unwrap();
        assert_eq!(g.get(&x).unwrap().to_vec::<f64>().unwrap(), vec![1., 3., 5., 2., 4., 6.]);
        let b = leaf(&[3, 1]).broadcast_as(&[2, 3, 4]).unwrap();
        assert_eq!(b.value().to_vec::<f64>().unwrap()[..8], [0., 0., 0., 0., 1., 1., 1., 1.]);
        let xb = leaf(&[3, 1]);
        assert_eq!(grad_of(&xb, &xb.expand(&[2, 3, 4]).unwrap()), vec![8.; 3]);
        let c = leaf(&[2, 3]);
        assert_eq!(grad_of(&c, &c.unsqueeze(-1).unwrap().squeeze(2).unwrap().contiguous().unwrap()), vec![1.; 6]);
    }

    #[test]
    fn bad_shapes_are_errors() {
        let x = leaf(&[2, 3]);
        let e = x.reshape(&[4]).unwrap_err().to_string();
        assert!(e.contains("reshape"), "{e}");
        assert!(x.permute(&[0, 0]).is_err());
        assert!(x.permute(&[1]).is_err());
        assert!(x.transpose(0, 2).is_err());
        assert!(leaf(&[3]).t().is_err());
        let e = x.narrow(1, 2, 2).unwrap_err().to_string();
        assert!(e.contains("narrow") && e.contains("out of bounds"), "{e}");
        assert!(x.narrow(2, 0, 1).is_err());
        assert!(x.select(0, 2).is_err());
        assert!(x.select(-3, 0).is_err());
        assert!(x.broadcast_as(&[2, 4]).is_err());
        assert!(x.expand(&[3]).is_err());
        assert!(x.unsqueeze(3).is_err());
        assert!(x.unsqueeze(-4).is_err());
        let e = x.squeeze(0).unwrap_err().to_string();
        assert!(e.contains("squeeze"), "{e}");
        assert!(x.flatten(1, 0).is_err());
        // narrow's padded gradient is float-only: an integer tensor errors, not panics.
        let ints = Var::leaf(Tensor::zeros(&[2], DType::I64));
        let Err(e) = ints.narrow(0, 0, 1).unwrap().backward() else { panic!("integer gradient accepted") };
        let e = e.to_string();
        assert!(e.contains("narrow backward"), "{e}");
    }
}
