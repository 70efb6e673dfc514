//! PyKEEN's `clamp_norm`: rows whose p-norm reaches `max_norm` are rescaled
//! onto the sphere of radius `max_norm`, others pass unchanged. The
//! rescale is differentiated through, including the norm's dependence on x.

use kogner_tensor::{with_float_dtype, Error, FloatElement, Result, Tensor};

use crate::Var;

/// PyKEEN's floor on the norm before dividing (`norm.clamp_min(eps)`).
const NORM_EPS: f64 = 1e-8;

/// The p-norm of one row (p ≥ 1).
fn row_norm<T: FloatElement>(row: &[T], p: f64) -> T {
    if p == 2.0 {
        row.iter().map(|&v| v * v).sum::<T>().sqrt()
    } else if p == 1.0 {
        row.iter().map(|&v| v.abs()).sum()
    } else {
        let pt = T::from_f64(p);
        row.iter().map(|&v| v.abs().powf(pt)).sum::<T>().powf(T::ONE / pt)
    }
}

/// `∂‖x‖_p/∂x_j = sign(x_j)·|x_j|^{p−1} / ‖x‖^{p−1}` for `n = ‖x‖ > 0`.
fn norm_partial<T: FloatElement>(v: T, n: T, p: f64) -> T {
    let sign = if v > T::ZERO {
        T::ONE
    } else if v < T::ZERO {
        -T::ONE
    } else {
        T::ZERO
    };
    if p == 2.0 {
        v / n
    } else if p == 1.0 {
        sign
    } else {
        let e = T::from_f64(p - 1.0);
        sign * (v.abs() / n).powf(e)
    }
}

/// Forward: the clamped rows and each row's norm.
fn forward<T: FloatElement>(x: &Tensor, p: f64, max_norm: f64) -> Result<(Tensor, Tensor)> {
    let d = x.shape()[x.rank() - 1];
    let src = x.contiguous()?.to_vec::<T>()?;
    let (c, eps) = (T::from_f64(max_norm), T::from_f64(NORM_EPS));
    let mut out = src.clone();
    let mut norms = Vec::with_capacity(src.len() / d.max(1));
    if d > 0 {
        for row in out.chunks_exact_mut(d) {
            let n = row_norm(row, p);
            if n >= c {
                // PyKEEN's order: x / max(n, eps) * max_norm.
                let nc = n.max(eps);
                row.iter_mut().for_each(|v| *v = *v / nc * c);
            }
            norms.push(n);
        }
    }
    let rows = norms.len();
    Ok((Tensor::from_vec(out, x.shape())?, Tensor::from_vec(norms, &[rows])?))
}

/// Backward: unchanged rows pass `g`; a rescaled row `y = c·x/n` gets
/// `dx = c/n·(g − (Σ g⊙x)/n · ∂n/∂x)` (the second term vanishes where the
/// eps floor, not n, was the divisor).
fn backward<T: FloatElement>(x: &Tensor, norms: &Tensor, g: &Tensor, p: f64, max_norm: f64) -> Result<Tensor> {
    let d = x.shape()[x.rank() - 1];
    let (xs, ns) = (x.contiguous()?.to_vec::<T>()?, norms.to_vec::<T>()?);
    let mut dx = g.contiguous()?.to_vec::<T>()?;
    let (c, eps) = (T::from_f64(max_norm), T::from_f64(NORM_EPS));
    if d > 0 {
        for ((xr, dr), &n) in xs.chunks_exact(d).zip(dx.chunks_exact_mut(d)).zip(&ns) {
            if n < c {
                continue;
            }
            let nc = n.max(eps);
            let dot: T = xr.iter().zip(dr.iter()).map(|(&a, &b)| a * b).sum();
            let through_norm = if n >= eps { dot / nc } else { T::ZERO };
            for (dv, &xv) in dr.iter_mut().zip(xr) {
                *dv = c / nc * (*dv - through_norm * norm_partial(xv, n, p));
            }
        }
    }
    Tensor::from_vec(dx, x.shape())
}

impl Var {
    /// PyKEEN `clamp_norm` over the last dim: `x [.., D] → [.., D]`; each row
    /// with `‖x‖_p ≥ max_norm` becomes `x / ‖x‖_p · max_norm`, other rows are
    /// kept. `p ≥ 1` (1 and 2 have exact fast paths). Differentiable; for
    /// `p = 1` the norm's gradient is `sign(x)` (0 at 0).
    pub fn clamp_norm(&self, p: f64, max_norm: f64) -> Result<Var> {
        let x = self.value();
        if x.rank() == 0 {
            return Err(Error::shape("clamp_norm", "needs a tensor of rank >= 1"));
        }
        if !(p >= 1.0 && p.is_finite() && max_norm >= 0.0 && max_norm.is_finite()) {
            return Err(Error::shape("clamp_norm", format!("needs finite p >= 1 and max_norm >= 0, got p {p}, max_norm {max_norm}")));
        }
        let (y, norms) = with_float_dtype!(x.dtype(), "clamp_norm", T => forward::<T>(&x, p, max_norm)?);
        if !Var::needs_grad(&[self]) {
            return Ok(Var::constant(y));
        }
        Ok(Var::from_op("clamp_norm", y, &[self], Box::new(move |g| {
            let dx = with_float_dtype!(x.dtype(), "clamp_norm", T => backward::<T>(&x, &norms, g, p, max_norm)?);
            Ok(vec![Some(dx)])
        })))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::gradcheck::{check_f32_matches_f64, check_gradients, random_tensor_away_from_zero, Tol};
    use kogner_tensor::DType;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn clamp_norm_gradients(
            s in prop::collection::vec(1usize..5, 1..4), seed in any::<u64>(),
            p in prop_oneof![Just(1.0f64), Just(2.0), Just(3.0)], max_norm in 0.3f64..3.0,
        ) {
            let x = random_tensor_away_from_zero(&s, seed, 0.1, 1.5);
            // Keep finite differences off the kink where a row's norm meets max_norm.
            let d = *s.last().unwrap();
            let rows = x.to_vec::<f64>().unwrap();
            let near_kink = rows.chunks(d).any(|r| {
                let n = r.iter().map(|v| v.abs().powf(p)).sum::<f64>().powf(1.0 / p);
                (n - max_norm).abs() < 1e-3
            });
            prop_assume!(!near_kink);
            let f = move |v: &[Var]| v[0].clamp_norm(p, max_norm);
            check_gradients(&f, std::slice::from_ref(&x), &[], Tol::default()).map_err(TestCaseError::fail)?;
            check_f32_matches_f64(&f, &[x], 1e-6, 1e-5).map_err(TestCaseError::fail)?;
        }
    }

    fn rows(v: &[f64], shape: &[usize]) -> Var {
        Var::leaf(Tensor::from_vec(v.to_vec(), shape).unwrap())
    }

    #[test]
    fn rescales_only_rows_over_the_limit() {
        let x = rows(&[3.0, 4.0, 0.3, 0.4], &[2, 2]);
        assert_eq!(x.clamp_norm(2.0, 1.0).unwrap().value().to_vec::<f64>().unwrap(), vec![0.6, 0.8, 0.3, 0.4]);
        let x1 = rows(&[1.0, -3.0], &[2]);
        assert_eq!(x1.clamp_norm(1.0, 2.0).unwrap().value().to_vec::<f64>().unwrap(), vec![0.5, -1.5]);
    }

    #[test]
    fn gradient_by_hand() {
        // y = x/‖x‖ at x = [3, 4]; g = [1, 0]: dx = (g − (g·x)x/25)/5 = [16, −12]/125.
        let x = rows(&[3.0, 4.0], &[2]);
        let y = x.clamp_norm(2.0, 1.0).unwrap();
        let g = y.backward_with(Tensor::from_vec(vec![1.0f64, 0.0], &[2]).unwrap()).unwrap();
        let gx = g.get(&x).unwrap().to_vec::<f64>().unwrap();
        assert!((gx[0] - 16.0 / 125.0).abs() < 1e-15 && (gx[1] + 12.0 / 125.0).abs() < 1e-15, "{gx:?}");
        // A row under the limit passes the gradient unchanged.
        let small = rows(&[0.1, 0.2], &[2]);
        let gs = small.clamp_norm(2.0, 1.0).unwrap().backward().unwrap();
        assert_eq!(gs.get(&small).unwrap().to_vec::<f64>().unwrap(), vec![1.0, 1.0]);
    }

    #[test]
    fn invalid_arguments_are_errors() {
        let x = Var::leaf(Tensor::ones(&[2, 2], DType::F64));
        assert!(x.clamp_norm(0.5, 1.0).is_err());
        assert!(x.clamp_norm(2.0, -1.0).is_err());
        assert!(x.clamp_norm(f64::INFINITY, 1.0).is_err());
        assert!(Var::leaf(Tensor::scalar(1.0f64)).clamp_norm(2.0, 1.0).is_err());
        assert!(Var::leaf(Tensor::ones(&[2], DType::I64)).clamp_norm(2.0, 1.0).is_err());
    }
}
