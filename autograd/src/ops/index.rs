//! Differentiable indexing: `index_select`, `index_add`, `gather`,
//! `scatter_add`, `embedding`. Each backward is the adjoint indexing op
//! applied to the output gradient (select ↔ add, gather ↔ scatter_add);
//! index tensors get no gradient.

use kogner_tensor::{Result, Tensor};

use crate::Var;

/// Zero-pad `t` at the end of every dim up to `shape` (scatter_add reads
/// only a leading index-shaped block of its source; the rest gets 0).
fn pad_to(mut t: Tensor, shape: &[usize]) -> Result<Tensor> {
    for (d, &want) in shape.iter().enumerate() {
        let have = t.shape()[d];
        if have < want {
            let mut fill = t.shape().to_vec();
            fill[d] = want - have;
            t = Tensor::cat(&[&t, &Tensor::zeros(&fill, t.dtype())], d as isize)?;
        }
    }
    Ok(t)
}

impl Var {
    /// Entries `idx` of `dim`: x [.., n, ..], idx i64 [m] → [.., m, ..].
    pub fn index_select(&self, dim: isize, idx: &Tensor) -> Result<Var> {
        let x = self.value();
        let y = x.index_select(dim, idx)?;
        if !Var::needs_grad(&[self]) {
            return Ok(Var::constant(y));
        }
        let (shape, dtype, idx) = (x.shape().to_vec(), x.dtype(), idx.clone());
        Ok(Var::from_op("index_select", y, &[self], Box::new(move |g| {
            Ok(vec![Some(Tensor::zeros(&shape, dtype).index_add(dim, &idx, g)?)])
        })))
    }

    /// `self` plus the slices of `src` added at `idx` along `dim` (repeats
    /// accumulate): self [.., n, ..], idx i64 [m], src [.., m, ..] → self's shape.
    pub fn index_add(&self, dim: isize, idx: &Tensor, src: &Var) -> Result<Var> {
        let y = self.value().index_add(dim, idx, &src.value())?;
        if !Var::needs_grad(&[self, src]) {
            return Ok(Var::constant(y));
        }
        let (g_self, g_src, idx) = (self.requires_grad(), src.requires_grad(), idx.clone());
        Ok(Var::from_op("index_add", y, &[self, src], Box::new(move |g| {
            Ok(vec![
                g_self.then(|| g.clone()),
                if g_src { Some(g.index_select(dim, &idx)?) } else { None },
            ])
        })))
    }

    /// Pick along `dim` by a same-rank i64 index (for dim 1,
    /// `out[i][j][k] = x[i][index[i][j][k]][k]`) → index.shape.
    pub fn gather(&self, dim: isize, index: &Tensor) -> Result<Var> {
        let x = self.value();
        let y = x.gather(dim, index)?;
        if !Var::needs_grad(&[self]) {
            return Ok(Var::constant(y));
        }
        let (shape, dtype, index) = (x.shape().to_vec(), x.dtype(), index.clone());
        Ok(Var::from_op("gather", y, &[self], Box::new(move |g| {
            Ok(vec![Some(Tensor::zeros(&shape, dtype).scatter_add(dim, &index, g)?)])
        })))
    }

    /// `self` with `src` added at `index` along `dim` (for dim 1,
    /// `out[i][index[i][j][k]][k] += src[i][j][k]`) → self's shape.
    pub fn scatter_add(&self, dim: isize, index: &Tensor, src: &Var) -> Result<Var> {
        let s = src.value();
        let y = self.value().scatter_add(dim, index, &s)?;
        if !Var::needs_grad(&[self, src]) {
            return Ok(Var::constant(y));
        }
        let (g_self, g_src, index) = (self.requires_grad(), src.requires_grad(), index.clone());
        let src_shape = s.shape().to_vec();
        Ok(Var::from_op("scatter_add", y, &[self, src], Box::new(move |g| {
            Ok(vec![
                g_self.then(|| g.clone()),
                if g_src { Some(pad_to(g.gather(dim, &index)?, &src_shape)?) } else { None },
            ])
        })))
    }

    /// Rows of a lookup table: weight [V, D], ids i64 of any shape →
    /// ids.shape + [D]. The weight's gradient is dense [V, D].
    pub fn embedding(&self, ids: &Tensor) -> Result<Var> {
        let w = self.value();
        let y = w.embedding(ids)?;
        if !Var::needs_grad(&[self]) {
            return Ok(Var::constant(y));
        }
        let shape = w.shape().to_vec();
        let flat = ids.reshape(&[ids.numel()])?;
        Ok(Var::from_op("embedding", y, &[self], Box::new(move |g| {
            let rows = g.reshape(&[flat.numel(), shape[1]])?;
            Ok(vec![Some(Tensor::index_add_to_zeros(&shape, 0, &flat, &rows)?)])
        })))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use crate::gradcheck::{check_f32_matches_f64, check_gradients, random_tensor, Tol};
    use crate::Var;
    use kogner_tensor::{Rng, Tensor};

    fn shape() -> impl Strategy<Value = Vec<usize>> {
        prop::collection::vec(1usize..5, 1..4)
    }

    /// A shape with a dim inside it.
    fn shape_and_dim() -> impl Strategy<Value = (Vec<usize>, usize)> {
        shape().prop_flat_map(|s| {
            let r = s.len();
            (Just(s), 0..r)
        })
    }

    /// `shape` i64 indices in `0..size` from `seed` (repeats likely).
    fn random_indices(shape: &[usize], size: usize, seed: u64) -> Tensor {
        let mut rng = Rng::new(seed);
        let n: usize = shape.iter().product();
        let v: Vec<usize> = (0..n).map(|_| (rng.next_u64() % size as u64) as usize).collect();
        Tensor::from_indices(&v, shape).unwrap()
    }

    /// Each dim of `s` shrunk to a size in `1..=s[d]` (drawn from `seed`).
    fn shrink(s: &[usize], seed: u64) -> Vec<usize> {
        let mut rng = Rng::new(seed);
        s.iter().map(|&d| 1 + (rng.next_u64() % d as u64) as usize).collect()
    }

    fn check(f: &dyn Fn(&[Var]) -> kogner_tensor::Result<Var>, inputs: &[Tensor]) -> Result<(), TestCaseError> {
        check_gradients(f, inputs, &[], Tol::default()).map_err(TestCaseError::fail)?;
        check_f32_matches_f64(f, inputs, 1e-6, 1e-6).map_err(TestCaseError::fail)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn index_select_gradients((s, d) in shape_and_dim(), m in 0usize..6, seed in any::<u64>()) {
            let idx = random_indices(&[m], s[d], seed);
            let x = random_tensor(&s, seed ^ 1, -2.0, 2.0);
            check(&move |v: &[Var]| v[0].index_select(d as isize, &idx), &[x])?;
        }

        #[test]
        fn index_add_gradients((s, d) in shape_and_dim(), m in 1usize..6, seed in any::<u64>()) {
            let idx = random_indices(&[m], s[d], seed);
            let mut src_shape = s.clone();
            src_shape[d] = m;
            let x = random_tensor(&s, seed ^ 1, -2.0, 2.0);
            let src = random_tensor(&src_shape, seed ^ 2, -2.0, 2.0);
            // a product makes the gradient depend on where each slice landed
            check(&move |v: &[Var]| v[0].index_add(-(s.len() as isize) + d as isize, &idx, &v[1])?.sqr(), &[x, src])?;
        }

        #[test]
        fn gather_gradients((s, d) in shape_and_dim(), seed in any::<u64>()) {
            let mut ishape = shrink(&s, seed);
            ishape[d] = 1 + (seed % 5) as usize; // the gathered dim may also grow
            let index = random_indices(&ishape, s[d], seed ^ 3);
            let x = random_tensor(&s, seed ^ 1, -2.0, 2.0);
            check(&move |v: &[Var]| v[0].gather(d as isize, &index), &[x])?;
        }

        #[test]
        fn scatter_add_gradients((s, d) in shape_and_dim(), seed in any::<u64>()) {
            let mut src_shape = s.clone();
            src_shape[d] = 1 + (seed % 5) as usize;
            let ishape = shrink(&src_shape, seed ^ 4);
            let index = random_indices(&ishape, s[d], seed ^ 3);
            let x = random_tensor(&s, seed ^ 1, -2.0, 2.0);
            let src = random_tensor(&src_shape, seed ^ 2, -2.0, 2.0);
            check(&move |v: &[Var]| v[0].scatter_add(d as isize, &index, &v[1])?.sqr(), &[x, src])?;
        }

        #[test]
        fn embedding_gradients(vocab in 1usize..6, dim in 1usize..4, ids_shape in prop::collection::vec(1usize..4, 0..3), seed in any::<u64>()) {
            let ids = random_indices(&ids_shape, vocab, seed);
            let w = random_tensor(&[vocab, dim], seed ^ 1, -2.0, 2.0);
            check(&move |v: &[Var]| v[0].embedding(&ids), &[w])?;
        }
    }

    #[test]
    fn embedding_gradient_sums_repeated_rows() {
        let w = Var::leaf(Tensor::from_vec(vec![0.0f64; 6], &[3, 2]).unwrap());
        let y = w.embedding(&Tensor::from_indices(&[2, 0, 2], &[3]).unwrap()).unwrap();
        let g = y.backward().unwrap();
        assert_eq!(g.get(&w).unwrap().to_vec::<f64>().unwrap(), vec![1., 1., 0., 0., 2., 2.]);
    }

    #[test]
    fn constant_inputs_record_nothing() {
        let x = Var::constant(random_tensor(&[3, 2], 1, -1.0, 1.0));
        let y = x.index_select(0, &Tensor::from_indices(&[1], &[1]).unwrap()).unwrap();
        assert!(y.is_leaf() && !y.requires_grad());
        // only src requires grad: self's slot gets no gradient
        let src = Var::leaf(random_tensor(&[1, 2], 2, -1.0, 1.0));
        let z = x.index_add(0, &Tensor::from_indices(&[2], &[1]).unwrap(), &src).unwrap();
        let g = z.backward().unwrap();
        assert_eq!(g.len(), 1);
        assert_eq!(g.get(&src).unwrap().to_vec::<f64>().unwrap(), vec![1.0, 1.0]);
    }
}
