//! Differentiable segment ops (graph attention over edges grouped by target
//! node). Backwards are built from segment sums and row selections, so they
//! stay linear in the edge count like the forwards.

use kogner_tensor::{Result, Tensor};

use crate::Var;

impl Var {
    /// Sum of each segment's rows: x [E, ...], segment i64 [E] in `0..n` → [n, ...].
    pub fn segment_sum(&self, segment: &Tensor, n: usize) -> Result<Var> {
        let y = self.value().segment_sum(segment, n)?;
        if !Var::needs_grad(&[self]) {
            return Ok(Var::constant(y));
        }
        let segment = segment.clone();
        Ok(Var::from_op("segment_sum", y, &[self], Box::new(move |g| Ok(vec![Some(g.index_select(0, &segment)?)]))))
    }

    /// Elementwise max of each segment's rows: x [E, ...], segment i64 [E]
    /// in `0..n` → [n, ...] (0 for empty segments). The gradient goes to
    /// the maximal edge, split evenly between ties (as `torch.amax`).
    pub fn segment_max(&self, segment: &Tensor, n: usize) -> Result<Var> {
        let x = self.value();
        let y = x.segment_max(segment, n)?;
        if !Var::needs_grad(&[self]) {
            return Ok(Var::constant(y));
        }
        let segment = segment.clone();
        let y_saved = y.clone();
        Ok(Var::from_op("segment_max", y, &[self], Box::new(move |g| {
            let hit = x.eq(&y_saved.index_select(0, &segment)?)?.to_dtype(x.dtype())?;
            // Every non-empty segment has at least one hit; empty ones are
            // never selected back, the clamp only keeps them finite.
            let ties = hit.segment_sum(&segment, n)?.clamp(1.0, f64::INFINITY)?;
            Ok(vec![Some(hit.mul(&g.div(&ties)?.index_select(0, &segment)?)?)])
        })))
    }

    /// Softmax over the edges of each segment, per column: scores [E, ...],
    /// segment i64 [E] in `0..n` → [E, ...] (PyG `softmax(scores, index, num_nodes=n)`).
    pub fn segment_softmax(&self, segment: &Tensor, n: usize) -> Result<Var> {
        let y = self.value().segment_softmax(segment, n)?;
        if !Var::needs_grad(&[self]) {
            return Ok(Var::constant(y));
        }
        let segment = segment.clone();
        let y_saved = y.clone();
        Ok(Var::from_op("segment_softmax", y, &[self], Box::new(move |g| {
            // dx_e = y_e · (g_e − Σ_{e' in seg(e)} g_e' y_e')
            let dot = g.mul(&y_saved)?.segment_sum(&segment, n)?.index_select(0, &segment)?;
            Ok(vec![Some(y_saved.mul(&g.sub(&dot)?)?)])
        })))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use crate::gradcheck::{check_f32_matches_f64, check_gradients, random_tensor, Tol};
    use crate::Var;
    use kogner_tensor::{Rng, Tensor};

    /// Edge count, trailing (column) dims, segment count and segment ids
    /// (random: repeats, unsorted, and usually some empty segments).
    fn graph() -> impl Strategy<Value = (Vec<usize>, usize, Tensor)> {
        (1usize..9, prop::collection::vec(1usize..4, 0..3), 1usize..6, any::<u64>()).prop_map(|(e, cols, n, seed)| {
            let mut rng = Rng::new(seed);
            let ids: Vec<usize> = (0..e).map(|_| (rng.next_u64() % n as u64) as usize).collect();
            let mut shape = vec![e];
            shape.extend(cols);
            (shape, n, Tensor::from_indices(&ids, &[e]).unwrap())
        })
    }

    /// Whether two edges of one segment have (almost) equal values in some
    /// column: max is not differentiable there.
    fn has_near_ties(x: &Tensor, segment: &Tensor) -> bool {
        let (v, ids) = (x.to_vec::<f64>().unwrap(), segment.to_vec::<i64>().unwrap());
        let cols = v.len() / ids.len();
        (0..ids.len()).any(|a| {
            (a + 1..ids.len()).any(|b| ids[a] == ids[b] && (0..cols).any(|c| (v[a * cols + c] - v[b * cols + c]).abs() < 1e-3))
        })
    }

    fn check(f: &dyn Fn(&[Var]) -> kogner_tensor::Result<Var>, x: Tensor) -> Result<(), TestCaseError> {
        let inputs = [x];
        check_gradients(f, &inputs, &[], Tol::default()).map_err(TestCaseError::fail)?;
        check_f32_matches_f64(f, &inputs, 1e-6, 1e-5).map_err(TestCaseError::fail)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn segment_softmax_gradients((shape, n, segment) in graph(), seed in any::<u64>()) {
            let x = random_tensor(&shape, seed, -3.0, 3.0);
            check(&move |v: &[Var]| v[0].segment_softmax(&segment, n), x)?;
        }

        #[test]
        fn segment_sum_gradients((shape, n, segment) in graph(), seed in any::<u64>()) {
            let x = random_tensor(&shape, seed, -3.0, 3.0);
            check(&move |v: &[Var]| v[0].segment_sum(&segment, n)?.sqr(), x)?;
        }

        #[test]
        fn segment_max_gradients((shape, n, segment) in graph(), seed in any::<u64>()) {
            let x = random_tensor(&shape, seed, -3.0, 3.0);
            prop_assume!(!has_near_ties(&x, &segment));
            check(&move |v: &[Var]| v[0].segment_max(&segment, n)?.sqr(), x)?;
        }
    }

    #[test]
    fn segment_max_splits_ties_evenly() {
        let x = Var::leaf(Tensor::from_vec(vec![2.0f64, 2.0, 1.0], &[3]).unwrap());
        let y = x.segment_max(&Tensor::from_indices(&[0, 0, 0], &[3]).unwrap(), 2).unwrap();
        assert_eq!(y.value().to_vec::<f64>().unwrap(), vec![2.0, 0.0]);
        assert_eq!(y.backward().unwrap().get(&x).unwrap().to_vec::<f64>().unwrap(), vec![0.5, 0.5, 0.0]);
    }

    #[test]
    fn softmax_gradient_of_segment_total_is_zero() {
        // Σ over a segment is 1 whatever the scores: the gradient vanishes.
        let x = Var::leaf(random_tensor(&[6, 2], 3, -2.0, 2.0));
        let segment = Tensor::from_indices(&[1, 1, 0, 1, 0, 3], &[6]).unwrap();
        let total = x.segment_softmax(&segment, 4).unwrap().segment_sum(&segment, 4).unwrap();
        let g = total.backward().unwrap();
        assert!(g.get(&x).unwrap().to_vec::<f64>().unwrap().iter().all(|v| v.abs() < 1e-15));
    }
}
