//! Gradient accumulation: sum the gradients of several micro-batches, then
//! scale once (e.g. by `1 / micro-batches` when each loss was a mean).

use kogner_autograd::Grads;
use kogner_tensor::{Error, Result};

#[derive(Default)]
pub struct GradAccumulator {
    sum: Option<Grads>,
    count: usize,
}

impl GradAccumulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add one micro-batch's gradients.
    pub fn add(&mut self, grads: Grads) -> Result<()> {
        match &mut self.sum {
            Some(sum) => sum.accumulate(grads)?,
            None => self.sum = Some(grads),
        }
        self.count += 1;
        Ok(())
    }

    /// Micro-batches added so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The summed gradients times `scale`; the accumulator is empty again.
    pub fn take(&mut self, scale: f64) -> Result<Grads> {
        let mut sum = self.sum.take().ok_or_else(|| Error::Msg("gradient accumulation: no micro-batch was added".into()))?;
        self.count = 0;
        if scale != 1.0 {
            sum.scale(scale)?;
        }
        Ok(sum)
    }

    /// The mean over the micro-batches added.
    pub fn take_mean(&mut self) -> Result<Grads> {
        let n = self.count.max(1);
        self.take(1.0 / n as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kogner_autograd::Var;
    use kogner_tensor::{DType, Tensor};

    #[test]
    fn sums_then_scales() {
        let a = Var::leaf(Tensor::zeros(&[2], DType::F32));
        let b = Var::leaf(Tensor::zeros(&[1], DType::F32));
        let mut acc = GradAccumulator::new();
        assert!(acc.take(1.0).is_err());
        let mut g1 = Grads::default();
        g1.insert(&a, Tensor::from_vec(vec![1f32, 2.0], &[2]).unwrap());
        let mut g2 = Grads::default();
        g2.insert(&a, Tensor::from_vec(vec![3f32, 4.0], &[2]).unwrap());
        g2.insert(&b, Tensor::from_vec(vec![6f32], &[1]).unwrap());
        acc.add(g1).unwrap();
        acc.add(g2).unwrap();
        assert_eq!(acc.count(), 2);
        let m = acc.take_mean().unwrap();
        assert_eq!(m.get(&a).unwrap().to_vec::<f32>().unwrap(), vec![2.0, 3.0]);
        assert_eq!(m.get(&b).unwrap().to_vec::<f32>().unwrap(), vec![3.0]);
        assert_eq!(acc.count(), 0);
    }
}
