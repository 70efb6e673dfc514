//! Global gradient-norm clipping, `torch.nn.utils.clip_grad_norm_`.

use kogner_autograd::Grads;
use kogner_tensor::{DType, Error, Result};

/// What [`clip_grad_norm`] measured and applied.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClipStats {
    /// L2 norm over every gradient before clipping.
    pub total_norm: f64,
    /// The factor every gradient was multiplied by: `min(1, max_norm / (total_norm + 1e-6))`.
    pub coef: f64,
}

/// Scale every gradient by `min(1, max_norm / (total_norm + 1e-6))`, with
/// `total_norm` the L2 norm over all of them (PyTorch's rule; the factor is
/// applied even when it is 1, a no-op). Like PyTorch the norm and the factor
/// are rounded to the gradients' precision (f32 when every gradient is f32).
/// Errors when `max_norm` is not positive or the norm is NaN or infinite
/// (one bad batch would otherwise poison every weight).
pub fn clip_grad_norm(grads: &mut Grads, max_norm: f64) -> Result<ClipStats> {
    let stats = clip_coef(grads, max_norm)?;
    grads.scale(stats.coef)?;
    Ok(stats)
}

/// [`clip_grad_norm`]'s norm and factor without scaling the gradients: the
/// caller applies the factor where it reads them anyway
/// ([`AdamW::step_scaled`](super::AdamW::step_scaled)).
pub fn clip_coef(grads: &Grads, max_norm: f64) -> Result<ClipStats> {
    if !(max_norm > 0.0 && max_norm.is_finite()) {
        return Err(Error::Msg(format!("clip_grad_norm: max_norm must be a positive number, got {max_norm}")));
    }
    let total = grads.global_norm()?;
    if !total.is_finite() {
        return Err(Error::Msg(format!("clip_grad_norm: the gradient norm is {total}; refusing to clip or step on it")));
    }
    let all_f32 = grads.iter().all(|(_, g)| g.dtype() == DType::F32);
    let (total_norm, coef) = if all_f32 {
        let t = total as f32;
        (t as f64, ((max_norm as f32) / (t + 1e-6f32)).min(1.0) as f64)
    } else {
        (total, (max_norm / (total + 1e-6)).min(1.0))
    };
    Ok(ClipStats { total_norm, coef })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kogner_autograd::Var;
    use kogner_tensor::Tensor;

    #[test]
    fn clips_to_max_norm_and_leaves_small_gradients() {
        let a = Var::leaf(Tensor::zeros(&[2], DType::F32));
        let b = Var::leaf(Tensor::zeros(&[1], DType::F32));
        let mut g = Grads::default();
        g.insert(&a, Tensor::from_vec(vec![3f32, 0.0], &[2]).unwrap());
        g.insert(&b, Tensor::from_vec(vec![4f32], &[1]).unwrap());
        let mut small = g.clone();
        let s = clip_grad_norm(&mut g, 1.0).unwrap();
        assert_eq!(s.total_norm, 5.0);
        assert!((s.coef - 0.2).abs() < 1e-7, "{}", s.coef);
        assert!((g.global_norm().unwrap() - 1.0).abs() < 1e-6);
        let s = clip_grad_norm(&mut small, 10.0).unwrap();
        assert_eq!(s.coef, 1.0);
        assert_eq!(small.get(&b).unwrap().to_vec::<f32>().unwrap(), vec![4.0]);
        assert!(clip_grad_norm(&mut small, 0.0).is_err());
        small.insert(&b, Tensor::from_vec(vec![f32::NAN], &[1]).unwrap());
        let e = clip_grad_norm(&mut small, 1.0).unwrap_err().to_string();
        assert!(e.contains("NaN"), "{e}");
    }
}
