//! Gradient checking: analytic gradients from the tape against central
//! finite differences, all in f64; and f32 forward against f64 forward.
//!
//! Used by every op family's property tests (random shapes and values come
//! from proptest; tensors are built here from a seed so this module needs
//! no test-only dependency and other crates' tests can use it too).

use kogner_tensor::{DType, Result, Rng, Tensor};

use crate::{no_grad, Var};

/// Tolerances: `|analytic − numeric| ≤ atol + rtol·|numeric|` element-wise.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    pub atol: f64,
    pub rtol: f64,
    /// Finite-difference step.
    pub step: f64,
}

impl Default for Tol {
    fn default() -> Self {
        Tol { atol: 1e-6, rtol: 1e-5, step: 1e-5 }
    }
}

/// A tensor of `shape` with uniform values in `[lo, hi)`, from `seed`, in f64.
pub fn random_tensor(shape: &[usize], seed: u64, lo: f64, hi: f64) -> Tensor {
    let mut rng = Rng::new(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| lo + (hi - lo) * rng.next_f64()).collect();
    Tensor::from_vec(v, shape).expect("shape matches")
}

/// Uniform values in `[lo, hi)` whose magnitude is at least `min_abs`
/// (keeps finite differences away from kinks at 0: relu, abs, clamps).
pub fn random_tensor_away_from_zero(shape: &[usize], seed: u64, min_abs: f64, hi: f64) -> Tensor {
    let mut rng = Rng::new(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|_| {
            let m = min_abs + (hi - min_abs) * rng.next_f64();
            if rng.next_u64() & 1 == 0 { m } else { -m }
        })
        .collect();
    Tensor::from_vec(v, shape).expect("shape matches")
}

/// Compare the gradient of `f` at `inputs` (f64) with central differences.
///
/// The scalar differentiated is `Σ f(x) ⊙ w` with a fixed random `w`, so
/// every output element's gradient path is exercised with a distinct weight.
/// Inputs listed in `constant` are passed as constants (indices, masks) and
/// not checked. Returns a description of the first mismatch.
pub fn check_gradients(
    f: &dyn Fn(&[Var]) -> Result<Var>,
    inputs: &[Tensor],
    constant: &[usize],
    tol: Tol,
) -> std::result::Result<(), String> {
    let err = |e: kogner_tensor::Error| e.to_string();
    let vars: Vec<Var> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| if constant.contains(&i) { Var::constant(t.clone()) } else { Var::leaf(t.clone()) })
        .collect();
    let out = f(&vars).map_err(err)?;
    let out_val = out.value();
    if out_val.dtype() != DType::F64 {
        return Err(format!("gradcheck wants f64 outputs, got {:?}", out_val.dtype()));
    }
    let w = random_tensor(out_val.shape(), 0x5eed ^ out_val.numel() as u64, -1.0, 1.0);
    let wv = w.to_vec::<f64>().map_err(err)?;
    let grads = if out.requires_grad() { Some(out.backward_with(w.clone()).map_err(err)?) } else { None };

    let objective = |xs: &[Tensor]| -> std::result::Result<f64, String> {
        let vs: Vec<Var> = xs.iter().map(|t| Var::constant(t.clone())).collect();
        let y = no_grad(|| f(&vs)).map_err(err)?.value().to_vec::<f64>().map_err(err)?;
        Ok(y.iter().zip(&wv).map(|(a, b)| a * b).sum())
    };

    for (i, x) in inputs.iter().enumerate() {
        if constant.contains(&i) {
            continue;
        }
        let analytic = match grads.as_ref().and_then(|g| g.get(&vars[i])) {
            Some(g) => g.to_vec::<f64>().map_err(err)?,
            None => vec![0.0; x.numel()],
        };
        let base = x.contiguous().map_err(err)?.to_vec::<f64>().map_err(err)?;
        let mut xs: Vec<Tensor> = inputs.to_vec();
        for j in 0..base.len() {
            let h = tol.step * base[j].abs().max(1.0);
            let mut probe = |delta: f64| -> std::result::Result<f64, String> {
                let mut p = base.clone();
                p[j] += delta;
                xs[i] = Tensor::from_vec(p, x.shape()).map_err(err)?;
                objective(&xs)
            };
            let numeric = (probe(h)? - probe(-h)?) / (2.0 * h);
            let a = analytic[j];
            // Written so that a NaN on either side fails the check.
            let close = (a - numeric).abs() <= tol.atol + tol.rtol * numeric.abs();
            if !close {
                return Err(format!(
                    "input {i} (shape {:?}) element {j}: analytic {a:.10e} vs numeric {numeric:.10e}",
                    x.shape()
                ));
            }
        }
    }
    Ok(())
}

/// Run `f` on f32 copies of the (f64) inputs and on the inputs themselves;
/// the f32 result must match within `atol + rtol·|f64|`.
pub fn check_f32_matches_f64(
    f: &dyn Fn(&[Var]) -> Result<Var>,
    inputs: &[Tensor],
    atol: f64,
    rtol: f64,
) -> std::result::Result<(), String> {
    let err = |e: kogner_tensor::Error| e.to_string();
    let as_vars = |dt: DType| -> std::result::Result<Vec<Var>, String> {
        inputs
            .iter()
            .map(|t| {
                let t = if t.dtype().is_float() { t.to_dtype(dt).map_err(err)? } else { t.clone() };
                Ok(Var::constant(t))
            })
            .collect()
    };
    let y64 = no_grad(|| f(&as_vars(DType::F64)?).map_err(err))?.value().to_f64_vec().map_err(err)?;
    let y32v = no_grad(|| f(&as_vars(DType::F32)?).map_err(err))?.value();
    if y32v.dtype() != DType::F32 {
        return Err(format!("f32 inputs gave a {:?} output", y32v.dtype()));
    }
    let y32 = y32v.to_f64_vec().map_err(err)?;
    if y32.len() != y64.len() {
        return Err(format!("f32 output has {} elements, f64 has {}", y32.len(), y64.len()));
    }
    for (j, (a, b)) in y32.iter().zip(&y64).enumerate() {
        let close = (a - b).abs() <= atol + rtol * b.abs();
        if !close {
            return Err(format!("element {j}: f32 {a:.8e} vs f64 {b:.8e}"));
        }
    }
    Ok(())
}
