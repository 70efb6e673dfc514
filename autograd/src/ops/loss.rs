//! Losses, each one fused op: the per-element loss and its derivative are
//! computed together in the forward (the derivative only when recording),
//! then reduced. Targets, masks and class indices are plain tensors: they
//! never receive gradients (except `mse`'s target, a `Var`).
//!
//! Reductions follow PyTorch: `Sum` adds every per-element loss, `Mean`
//! divides that sum by the number of elements (for `cross_entropy`: by the
//! number of non-ignored rows), `None` returns the per-element losses. A
//! mean over zero elements is 0 rather than PyTorch's NaN.

use kogner_tensor::{with_float_dtype, DType, Error, FloatElement, Result, Tensor};

use crate::Var;

/// How a loss reduces its per-element values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// Per-element losses, shaped like the input (`[N]` for cross-entropy).
    None,
    /// Sum of all per-element losses, a rank-0 value.
    Sum,
    /// Sum divided by the element count, a rank-0 value.
    Mean,
}

/// The floor GLiNER clamps `p` and `1 − p` to before taking logs.
pub const GLINER_EPS: f64 = 1e-6;

/// Reduce `loss` and record the op. `dloss` is the derivative of each
/// per-element loss with respect to `inputs[0]`, shaped like `inputs[0]`;
/// it broadcasts against `loss`'s shape extended by trailing 1s (one loss
/// per row for cross-entropy). Input `k`'s gradient is `signs[k]` times
/// input 0's. `count` divides the sum for `Mean`.
fn finish(
    name: &'static str,
    inputs: &[&Var],
    signs: &'static [f64],
    loss: Tensor,
    dloss: Option<Tensor>,
    reduction: Reduction,
    count: usize,
) -> Result<Var> {
    let loss_shape = loss.shape().to_vec();
    let value = match reduction {
        Reduction::None => loss,
        Reduction::Sum => loss.sum_all()?,
        // Divide (not multiply by 1/count) to round as PyTorch's mean does.
        Reduction::Mean => loss.sum_all()?.div(&Tensor::full(&[], count.max(1) as f64, loss.dtype()))?,
    };
    let Some(dloss) = dloss else { return Ok(Var::constant(value)) };
    Ok(Var::from_op(name, value, inputs, Box::new(move |g| {
        let grad = match reduction {
            Reduction::None => {
                let mut bshape = loss_shape.clone();
                bshape.resize(dloss.rank(), 1);
                dloss.mul(&g.reshape(&bshape)?)?
            }
            Reduction::Sum => dloss.mul_scalar(g.to_scalar()?)?,
            Reduction::Mean => dloss.mul_scalar(g.to_scalar()? / count.max(1) as f64)?,
        };
        signs.iter().map(|&s| Ok(Some(if s == 1.0 { grad.clone() } else { grad.mul_scalar(s)? }))).collect()
    })))
}

/// The unweighted per-element term of a sigmoid loss.
#[derive(Clone, Copy)]
enum SigmoidCe {
    /// `max(x, 0) − x·t + ln(1 + e^{−|x|})`.
    StableLogits,
    /// `−t·ln(max(p, ε)) − (1 − t)·ln(max(1 − p, ε))`, `p = σ(x)`.
    GlinerClamped,
}

impl SigmoidCe {
    /// `(p, ce, d ce / d x)` for one logit `x` and target `t`.
    #[inline]
    fn terms<T: FloatElement>(self, x: T, t: T) -> (T, T, T) {
        let p = T::ONE / (T::ONE + (-x).exp());
        match self {
            SigmoidCe::StableLogits => {
                let ce = x.max(T::ZERO) - x * t + (T::ONE + (-x.abs()).exp()).ln();
                (p, ce, p - t)
            }
            SigmoidCe::GlinerClamped => {
                let eps = T::from_f64(GLINER_EPS);
                let q = T::ONE - p;
                let ce = -t * p.max(eps).ln() - (T::ONE - t) * q.max(eps).ln();
                // Through the clamps (torch.clamp passes gradient where x ≥ min):
                // d/dx −t·ln p = −t(1 − p), d/dx −(1 − t)·ln(1 − p) = (1 − t)p.
                let mut d = T::ZERO;
                if p >= eps {
                    d -= t * q;
                }
                if q >= eps {
                    d += (T::ONE - t) * p;
                }
                (p, ce, d)
            }
        }
    }
}

/// Per-element sigmoid loss and its logit derivative (when `want_grad`):
/// `ce`, times the focal factor `(1 − p_t)^γ` and `α_t` (when `α ≥ 0`),
/// times the mask.
fn sigmoid_loss_elems<T: FloatElement>(
    kind: SigmoidCe,
    x: &[T],
    t: &[T],
    mask: Option<&[T]>,
    focal: Option<(f64, f64)>,
    want_grad: bool,
) -> (Vec<T>, Option<Vec<T>>) {
    let mut loss = Vec::with_capacity(x.len());
    let mut dloss = Vec::with_capacity(if want_grad { x.len() } else { 0 });
    for i in 0..x.len() {
        let (p, ce, dce) = kind.terms(x[i], t[i]);
        let (mut l, mut d) = (ce, dce);
        if let Some((alpha, gamma)) = focal {
            let (alpha, gamma) = (T::from_f64(alpha), T::from_f64(gamma));
            let ti = t[i];
            // torchvision's order: p_t, then ce·(1 − p_t)^γ, then α_t·loss.
            let p_t = p * ti + (T::ONE - p) * (T::ONE - ti);
            let base = T::ONE - p_t;
            let m = base.powf(gamma);
            // d(1 − p_t)/dx = (1 − 2t)·p(1 − p); γ = 0 makes m constant (PyTorch's pow rule).
            let dm = if gamma == T::ZERO {
                T::ZERO
            } else {
                gamma * base.powf(gamma - T::ONE) * (T::ONE - ti - ti) * p * (T::ONE - p)
            };
            l = ce * m;
            d = dm * ce + m * dce;
            if alpha >= T::ZERO {
                let alpha_t = alpha * ti + (T::ONE - alpha) * (T::ONE - ti);
                l = alpha_t * l;
                d = alpha_t * d;
            }
        }
        if let Some(w) = mask {
            l *= w[i];
            d *= w[i];
        }
        loss.push(l);
        if want_grad {
            dloss.push(d);
        }
    }
    (loss, want_grad.then_some(dloss))
}

/// `t` converted to `x`'s dtype and broadcast to `x`'s shape, as a vector.
fn aligned<T: FloatElement>(op: &'static str, what: &str, t: &Tensor, x: &Tensor) -> Result<Vec<T>> {
    let b = t.broadcast_as(x.shape()).map_err(|_| {
        Error::shape(op, format!("{what} of shape {:?} does not broadcast to {:?}", t.shape(), x.shape()))
    })?;
    b.to_dtype(x.dtype())?.to_vec::<T>()
}

fn sigmoid_loss_impl<T: FloatElement>(
    name: &'static str,
    kind: SigmoidCe,
    logits: &Var,
    targets: &Tensor,
    mask: Option<&Tensor>,
    reduction: Reduction,
    focal: Option<(f64, f64)>,
) -> Result<Var> {
    let x = logits.value();
    if targets.shape() != x.shape() {
        return Err(Error::ShapeMismatch { op: name, lhs: x.shape().to_vec(), rhs: targets.shape().to_vec() });
    }
    if let Some((alpha, gamma)) = focal {
        if !(gamma >= 0.0 && gamma.is_finite() && alpha.is_finite()) {
            return Err(Error::shape(name, format!("focal (alpha {alpha}, gamma {gamma}) needs finite alpha and gamma ≥ 0")));
        }
    }
    let xs = x.contiguous()?.to_vec::<T>()?;
    let ts = aligned::<T>(name, "targets", targets, &x)?;
    let ms = mask.map(|m| aligned::<T>(name, "mask", m, &x)).transpose()?;
    let want_grad = Var::needs_grad(&[logits]);
    let (loss, dloss) = sigmoid_loss_elems(kind, &xs, &ts, ms.as_deref(), focal, want_grad);
    let loss = Tensor::from_vec(loss, x.shape())?;
    let dloss = dloss.map(|d| Tensor::from_vec(d, x.shape())).transpose()?;
    finish(name, &[logits], &[1.0], loss, dloss, reduction, x.numel())
}

/// Binary cross-entropy on logits, numerically stable:
/// `ℓ = max(x, 0) − x·t + ln(1 + e^{−|x|})`. `logits [..]`, `targets [..]`
/// (same shape, hard or soft labels, any dtype), `weight_mask` broadcastable
/// to `logits` (multiplies each element's loss). `focal = Some((α, γ))`
/// applies torchvision's `sigmoid_focal_loss`: `ℓ·(1 − p_t)^γ` with
/// `p_t = p·t + (1 − p)(1 − t)`, then `·α_t = α·t + (1 − α)(1 − t)` when
/// `α ≥ 0`. `Mean` divides by `logits.numel()` (mask or not, as PyTorch).
/// Returns `[..]` for `Reduction::None`, else a rank-0 value.
pub fn bce_with_logits(
    logits: &Var,
    targets: &Tensor,
    weight_mask: Option<&Tensor>,
    reduction: Reduction,
    focal: Option<(f64, f64)>,
) -> Result<Var> {
    with_float_dtype!(logits.dtype(), "bce_with_logits", T => sigmoid_loss_impl::<T>(
        "bce_with_logits", SigmoidCe::StableLogits, logits, targets, weight_mask, reduction, focal,
    ))
}

/// GLiNER's span-classification loss (not BCE-with-logits): `p = σ(x)`,
/// `ℓ = −t·ln(max(p, 1e-6)) − (1 − t)·ln(max(1 − p, 1e-6))` (a clamped
/// element passes no gradient through its log), focal weighting as in
/// [`bce_with_logits`] when `focal` is given, times `mask` (broadcastable
/// to `logits`). `logits [..]`, `targets [..]` → `[..]` for
/// `Reduction::None`, else rank 0; `Mean` divides by `logits.numel()`.
pub fn gliner_span_loss(
    logits: &Var,
    targets: &Tensor,
    mask: Option<&Tensor>,
    reduction: Reduction,
    focal: Option<(f64, f64)>,
) -> Result<Var> {
    with_float_dtype!(logits.dtype(), "gliner_span_loss", T => sigmoid_loss_impl::<T>(
        "gliner_span_loss", SigmoidCe::GlinerClamped, logits, targets, mask, reduction, focal,
    ))
}

/// Squared error `(pred − target)²`, differentiable in both: `pred [..]`,
/// `target [..]` (same shape and dtype) → `[..]` or rank 0. `Mean` (the
/// default of `F.mse_loss`) divides by the element count.
pub fn mse(pred: &Var, target: &Var, reduction: Reduction) -> Result<Var> {
    let (p, t) = (pred.value(), target.value());
    if p.shape() != t.shape() {
        return Err(Error::ShapeMismatch { op: "mse", lhs: p.shape().to_vec(), rhs: t.shape().to_vec() });
    }
    let diff = p.sub(&t)?;
    let loss = diff.sqr()?;
    let dloss = if Var::needs_grad(&[pred, target]) { Some(diff.mul_scalar(2.0)?) } else { None };
    finish("mse", &[pred, target], &[1.0, -1.0], loss, dloss, reduction, p.numel())
}

/// Per-row loss `−log_softmax(x)[t]` (0 for ignored rows), the gradient
/// `softmax(x) − onehot(t)` (zero rows where ignored) when `want_grad`, and
/// the number of rows not ignored.
fn cross_entropy_rows<T: FloatElement>(
    lsm: &[T],
    targets: &[i64],
    classes: usize,
    ignore_index: Option<i64>,
    want_grad: bool,
) -> Result<(Vec<T>, Option<Vec<T>>, usize)> {
    let mut loss = vec![T::ZERO; targets.len()];
    let mut grad = if want_grad { vec![T::ZERO; lsm.len()] } else { Vec::new() };
    let mut count = 0;
    for (r, &t) in targets.iter().enumerate() {
        if Some(t) == ignore_index {
            continue;
        }
        if t < 0 || t as usize >= classes {
            return Err(Error::IndexOutOfRange { op: "cross_entropy", index: t, size: classes });
        }
        let row = &lsm[r * classes..(r + 1) * classes];
        loss[r] = -row[t as usize];
        count += 1;
        if want_grad {
            let g = &mut grad[r * classes..(r + 1) * classes];
            for (gi, &l) in g.iter_mut().zip(row) {
                *gi = l.exp();
            }
            g[t as usize] -= T::ONE;
        }
    }
    Ok((loss, want_grad.then_some(grad), count))
}

/// Cross-entropy over classes via log-softmax: `logits [N, C]`, `targets`
/// i64 `[N]` in `0..C` (a target equal to `ignore_index` contributes 0 and
/// is not counted) → `[N]` for `Reduction::None`, else rank 0. `Mean`
/// divides by the number of non-ignored rows (PyTorch). A target outside
/// `0..C` (and not ignored) is an error.
pub fn cross_entropy(logits: &Var, targets: &Tensor, ignore_index: Option<i64>, reduction: Reduction) -> Result<Var> {
    let x = logits.value();
    if x.rank() != 2 {
        return Err(Error::shape("cross_entropy", format!("logits must be [N, C], got {:?}", x.shape())));
    }
    if targets.dtype() != DType::I64 {
        return Err(Error::DType { op: "cross_entropy", got: targets.dtype(), expected: "i64 targets" });
    }
    if targets.shape() != [x.shape()[0]] {
        return Err(Error::shape("cross_entropy", format!("targets {:?} do not match logits {:?}", targets.shape(), x.shape())));
    }
    let lsm = x.log_softmax(-1)?;
    let ts = targets.to_vec::<i64>()?;
    let want_grad = Var::needs_grad(&[logits]);
    with_float_dtype!(x.dtype(), "cross_entropy", T => {
        let (loss, grad, count) = cross_entropy_rows::<T>(lsm.as_slice()?, &ts, x.shape()[1], ignore_index, want_grad)?;
        let loss = Tensor::from_vec(loss, &[x.shape()[0]])?;
        let grad = grad.map(|g| Tensor::from_vec(g, x.shape())).transpose()?;
        finish("cross_entropy", &[logits], &[1.0], loss, grad, reduction, count)
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::gradcheck::{check_f32_matches_f64, check_gradients, random_tensor, Tol};
    use kogner_tensor::Rng;

    type LossFn = fn(&Var, &Tensor, Option<&Tensor>, Reduction, Option<(f64, f64)>) -> Result<Var>;

    fn shape() -> impl Strategy<Value = Vec<usize>> {
        prop::collection::vec(1usize..5, 1..4)
    }

    fn reduction() -> impl Strategy<Value = Reduction> {
        prop_oneof![Just(Reduction::None), Just(Reduction::Sum), Just(Reduction::Mean)]
    }

    fn focal() -> impl Strategy<Value = Option<(f64, f64)>> {
        prop_oneof![
            Just(None),
            Just(Some((0.25, 2.0))),
            Just(Some((-1.0, 2.0))),
            Just(Some((0.75, 0.0))),
            Just(Some((0.4, 1.5))),
        ]
    }

    /// Hard {0, 1} or soft (0, 1) targets of `shape`.
    fn targets(shape: &[usize], seed: u64, soft: bool) -> Tensor {
        let u = random_tensor(shape, seed, 0.02, 0.98);
        if soft {
            u
        } else {
            u.gt_scalar(0.5).unwrap()
        }
    }

    /// A 0/1 u8 mask over `shape`, or over it with the first dim set to 1 (broadcast).
    fn mask(shape: &[usize], seed: u64, broadcast: bool) -> Tensor {
        let mut s = shape.to_vec();
        if broadcast {
            s[0] = 1;
        }
        let keep = random_tensor(&s, seed, 0.0, 1.0).gt_scalar(0.3).unwrap();
        keep.to_dtype(DType::U8).unwrap()
    }

    const SIGMOID_LOSSES: [(&str, LossFn); 2] = [("bce_with_logits", bce_with_logits), ("gliner_span_loss", gliner_span_loss)];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn sigmoid_loss_gradients(
            s in shape(), seed in any::<u64>(), soft in any::<bool>(), masked in 0u8..3,
            red in reduction(), foc in focal(),
        ) {
            let x = random_tensor(&s, seed, -4.0, 4.0);
            let t = targets(&s, seed ^ 1, soft);
            let m = match masked { 0 => None, b => Some(mask(&s, seed ^ 2, b == 2)) };
            for (name, loss) in SIGMOID_LOSSES {
                let m = m.clone();
                let f = move |v: &[Var]| loss(&v[0], &v[1].value(), m.as_ref(), red, foc);
                let inputs = [x.clone(), t.clone()];
                check_gradients(&f, &inputs, &[1], Tol::default()).map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
                check_f32_matches_f64(&f, &inputs, 1e-5, 1e-5).map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
            }
        }

        #[test]
        fn mse_gradients(s in shape(), seed in any::<u64>(), red in reduction()) {
            let inputs = [random_tensor(&s, seed, -2.0, 2.0), random_tensor(&s, seed ^ 1, -2.0, 2.0)];
            let f = move |v: &[Var]| mse(&v[0], &v[1], red);
            check_gradients(&f, &inputs, &[], Tol::default()).map_err(TestCaseError::fail)?;
            check_f32_matches_f64(&f, &inputs, 1e-5, 1e-5).map_err(TestCaseError::fail)?;
        }

        #[test]
        fn cross_entropy_gradients(n in 1usize..5, c in 1usize..5, seed in any::<u64>(), red in reduction(), ignore in any::<bool>()) {
            let x = random_tensor(&[n, c], seed, -3.0, 3.0);
            let mut rng = Rng::new(seed ^ 1);
            let t: Vec<i64> = (0..n).map(|_| if ignore && rng.below(3) == 0 { -100 } else { rng.below(c) as i64 }).collect();
            let t = Tensor::from_vec(t, &[n]).unwrap();
            let ign = ignore.then_some(-100);
            let f = move |v: &[Var]| cross_entropy(&v[0], &v[1].value(), ign, red);
            let inputs = [x, t];
            check_gradients(&f, &inputs, &[1], Tol::default()).map_err(TestCaseError::fail)?;
            check_f32_matches_f64(&f, &inputs, 1e-5, 1e-5).map_err(TestCaseError::fail)?;
        }
    }

    fn leaf(v: &[f64]) -> Var {
        Var::leaf(Tensor::from_vec(v.to_vec(), &[v.len()]).unwrap())
    }

    fn t64(v: &[f64]) -> Tensor {
        Tensor::from_vec(v.to_vec(), &[v.len()]).unwrap()
    }

    fn grad_of(loss: &Var, x: &Var) -> Vec<f64> {
        loss.backward().unwrap().get(x).unwrap().to_vec::<f64>().unwrap()
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    #[test]
    fn gliner_loss_clamps_and_blocks_gradient() {
        // x = −20, t = 1: p ≈ 2e-9 < 1e-6 → loss −ln(1e-6), no gradient.
        // x = 20, t = 0: 1 − p < 1e-6 likewise. x = 0, t = 1: ln 2, gradient −1/2.
        let x = leaf(&[-20.0, 20.0, 0.0]);
        let loss = gliner_span_loss(&x, &t64(&[1.0, 0.0, 1.0]), None, Reduction::None, None).unwrap();
        let v = loss.value().to_vec::<f64>().unwrap();
        let floor = -(1e-6f64).ln();
        close(v[0], floor);
        close(v[1], floor);
        close(v[2], 2f64.ln());
        assert_eq!(grad_of(&loss, &x), vec![0.0, 0.0, -0.5]);
        // Same logits with the f32 path hit the same clamp.
        let x32 = Var::constant(Tensor::from_vec(vec![-20.0f32, 20.0, 0.0], &[3]).unwrap());
        let t32 = Tensor::from_vec(vec![1.0f32, 0.0, 1.0], &[3]).unwrap();
        let v32 = gliner_span_loss(&x32, &t32, None, Reduction::None, None).unwrap().value().to_vec::<f32>().unwrap();
        assert_eq!(v32[..2], [-(1e-6f32).ln(); 2]);
    }

    #[test]
    fn bce_with_logits_hand_values_and_stability() {
        // x = 0: ln 2 for either target; x = ±100 stays finite (no exp overflow).
        let x = leaf(&[0.0, 100.0, -100.0, 2.0]);
        let t = t64(&[1.0, 0.0, 0.0, 0.25]);
        let loss = bce_with_logits(&x, &t, None, Reduction::None, None).unwrap();
        let v = loss.value().to_vec::<f64>().unwrap();
        close(v[0], 2f64.ln());
        close(v[1], 100.0 + (-100f64).exp().ln_1p());
        close(v[2], (-100f64).exp().ln_1p());
        close(v[3], 2.0 - 0.5 + (-2f64).exp().ln_1p());
        // d/dx = σ(x) − t
        let g = grad_of(&loss, &x);
        close(g[0], -0.5);
        close(g[3], 1.0 / (1.0 + (-2f64).exp()) - 0.25);
    }

    #[test]
    fn focal_mask_and_reductions_by_hand() {
        // x = 0, t = 1: p = p_t = 1/2, (1 − p_t)² = 1/4, α_t = α = 0.25.
        let x = leaf(&[0.0, 0.0]);
        let t = t64(&[1.0, 1.0]);
        let mask = Tensor::from_vec(vec![1u8, 0], &[2]).unwrap();
        let one = 0.25 * 0.25 * 2f64.ln();
        for (loss_fn, name) in [(bce_with_logits as LossFn, "bce"), (gliner_span_loss, "gliner")] {
            let none = loss_fn(&x, &t, Some(&mask), Reduction::None, Some((0.25, 2.0))).unwrap();
            let v = none.value().to_vec::<f64>().unwrap();
            assert!((v[0] - one).abs() < 1e-12 && v[1] == 0.0, "{name}: {v:?}");
            let sum = loss_fn(&x, &t, Some(&mask), Reduction::Sum, Some((0.25, 2.0))).unwrap();
            close(sum.value().to_scalar().unwrap(), one);
            // Mean divides by all elements, masked ones included.
            let mean = loss_fn(&x, &t, Some(&mask), Reduction::Mean, Some((0.25, 2.0))).unwrap();
            assert_eq!(mean.value().rank(), 0);
            close(mean.value().to_scalar().unwrap(), one / 2.0);
        }
    }

    #[test]
    fn mse_and_cross_entropy_by_hand() {
        let p = leaf(&[1.0, 2.0]);
        let t = leaf(&[0.0, 4.0]);
        let loss = mse(&p, &t, Reduction::Mean).unwrap();
        close(loss.value().to_scalar().unwrap(), 2.5);
        let g = loss.backward().unwrap();
        assert_eq!(g.get(&p).unwrap().to_vec::<f64>().unwrap(), vec![1.0, -2.0]);
        assert_eq!(g.get(&t).unwrap().to_vec::<f64>().unwrap(), vec![-1.0, 2.0]);

        // rows [0, ln 3] → log p = [ln 1/4, ln 3/4]; target 1, second row ignored.
        let x = Var::leaf(Tensor::from_vec(vec![0.0, 3f64.ln(), 5.0, 1.0], &[2, 2]).unwrap());
        let tg = Tensor::from_vec(vec![1i64, -100], &[2]).unwrap();
        let ce = cross_entropy(&x, &tg, Some(-100), Reduction::Mean).unwrap();
        close(ce.value().to_scalar().unwrap(), -(0.75f64).ln());
        let gx = grad_of(&ce, &x);
        close(gx[0], 0.25);
        close(gx[1], -0.25);
        assert_eq!(gx[2..], [0.0, 0.0]);
        let none = cross_entropy(&x, &tg, Some(-100), Reduction::None).unwrap();
        assert_eq!(none.value().shape(), &[2]);
        assert_eq!(none.value().to_vec::<f64>().unwrap()[1], 0.0);
        // Everything ignored: mean is 0, not NaN.
        let all = Tensor::from_vec(vec![-100i64, -100], &[2]).unwrap();
        assert_eq!(cross_entropy(&x, &all, Some(-100), Reduction::Mean).unwrap().value().to_scalar().unwrap(), 0.0);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let x = leaf(&[0.0, 1.0]);
        let err = bce_with_logits(&x, &t64(&[1.0]), None, Reduction::Sum, None).unwrap_err();
        assert!(err.to_string().contains("bce_with_logits"), "{err}");
        let bad_mask = Tensor::ones(&[3], DType::U8);
        assert!(gliner_span_loss(&x, &t64(&[1.0, 0.0]), Some(&bad_mask), Reduction::Sum, None).unwrap_err().to_string().contains("mask"));
        assert!(gliner_span_loss(&x, &t64(&[1.0, 0.0]), None, Reduction::Sum, Some((0.25, -1.0))).is_err());
        assert!(mse(&x, &leaf(&[1.0]), Reduction::Mean).is_err());

        let logits = Var::leaf(Tensor::zeros(&[2, 3], DType::F64));
        let out_of_range = Tensor::from_vec(vec![0i64, 3], &[2]).unwrap();
        let err = cross_entropy(&logits, &out_of_range, None, Reduction::Mean).unwrap_err();
        assert!(err.to_string().contains("index 3 out of range"), "{err}");
        let negative = Tensor::from_vec(vec![0i64, -1], &[2]).unwrap();
        assert!(cross_entropy(&logits, &negative, Some(-100), Reduction::Mean).is_err());
        assert!(cross_entropy(&logits, &Tensor::zeros(&[2], DType::F32), None, Reduction::Mean).is_err());
        assert!(cross_entropy(&logits, &Tensor::zeros(&[3], DType::I64), None, Reduction::Mean).is_err());
        assert!(cross_entropy(&x, &Tensor::zeros(&[2], DType::I64), None, Reduction::Mean).is_err());
    }
}
