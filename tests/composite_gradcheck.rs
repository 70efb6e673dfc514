//! End-to-end gradient check of a composite model: a 2-layer MLP
//! (linear → GELU → layer norm → linear) under softmax cross-entropy,
//! differentiated through the tape and compared with central finite
//! differences (f64) with respect to every parameter and the input.
//! Each op has its own gradient test; this one checks that they compose:
//! gradients meeting at shared nodes, leading-dim flattening, reductions.

use kogner::autograd::gradcheck::{check_f32_matches_f64, check_gradients, random_tensor, Tol};
use kogner::autograd::ops::loss::{cross_entropy, Reduction};
use kogner::autograd::Var;
use kogner::tensor::{Result, Tensor};
use proptest::prelude::*;

/// The PyTorch default, and the index the targets below use for ignored tokens.
const IGNORE: i64 = -100;

/// Inputs in gradcheck order: x [B, T, D], w1 [H, D], b1 [H], gamma [H],
/// beta [H], w2 [C, H], b2 [C].
fn inputs(b: usize, t: usize, d: usize, h: usize, c: usize, seed: u64) -> Vec<Tensor> {
    vec![
        random_tensor(&[b, t, d], seed, -2.0, 2.0),
        random_tensor(&[h, d], seed ^ 1, -1.5, 1.5),
        random_tensor(&[h], seed ^ 2, -0.5, 0.5),
        random_tensor(&[h], seed ^ 3, 0.5, 1.5),
        random_tensor(&[h], seed ^ 4, -0.5, 0.5),
        random_tensor(&[c, h], seed ^ 5, -1.0, 1.0),
        random_tensor(&[c], seed ^ 6, -0.5, 0.5),
    ]
}

/// Mean token cross-entropy of the model: v as [`inputs`], targets i64
/// [B·T] (class or `IGNORE`) → rank-0 loss.
fn model_loss(v: &[Var], targets: &Tensor) -> Result<Var> {
    let hidden = v[0].linear(&v[1], Some(&v[2]))?.gelu()?.layer_norm(Some(&v[3]), Some(&v[4]), 1e-5)?;
    let logits = hidden.linear(&v[5], Some(&v[6]))?.flatten(0, 1)?;
    cross_entropy(&logits, targets, Some(IGNORE), Reduction::Mean)
}

/// (B, T, D, H, C, target per token with −1 meaning ignored).
fn sizes() -> impl Strategy<Value = (usize, usize, usize, usize, usize, Vec<i64>)> {
    (1usize..4, 1usize..4, 1usize..5, 2usize..6, 2usize..5).prop_flat_map(|(b, t, d, h, c)| {
        (Just(b), Just(t), Just(d), Just(h), Just(c), prop::collection::vec(-1..c as i64, b * t))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn mlp_layer_norm_cross_entropy_gradients((b, t, d, h, c, classes) in sizes(), seed in any::<u64>()) {
        let targets: Vec<i64> = classes.iter().map(|&k| if k < 0 { IGNORE } else { k }).collect();
        let targets = Tensor::from_vec(targets, &[b * t]).unwrap();
        let xs = inputs(b, t, d, h, c, seed);
        let f = move |v: &[Var]| model_loss(v, &targets);
        // Layer norm over as few as 2 features bends sharply (gradients ~60
        // here): a 1e-5 step's O(h²) central-difference error can exceed the
        // 1e-5 relative tolerance, so the step is 1e-6 (round-off ~1e-10).
        let tol = Tol { step: 1e-6, ..Tol::default() };
        check_gradients(&f, &xs, &[], tol).map_err(TestCaseError::fail)?;
        check_f32_matches_f64(&f, &xs, 1e-5, 1e-4).map_err(TestCaseError::fail)?;
    }
}

/// The check must notice a wrong gradient: scaling one parameter's
/// contribution in the forward only (through a detached copy) breaks the
/// analytic gradient, and the harness reports it.
#[test]
fn a_broken_gradient_is_detected() {
    let xs = inputs(2, 3, 3, 4, 3, 7);
    let targets = Tensor::from_indices(&[0, 2, 1, 1, 0, 2], &[6]).unwrap();
    // Doubling b2 in value while its gradient flows only once: d/db2 is half the truth.
    let broken = |v: &[Var]| -> Result<Var> {
        let b2 = v[6].add(&v[6].detach())?;
        let mut v = v.to_vec();
        v[6] = b2;
        model_loss(&v, &targets)
    };
    let err = check_gradients(&broken, &xs, &[], Tol::default()).unwrap_err();
    assert!(err.contains("input 6"), "{err}");
    let healthy = |v: &[Var]| model_loss(v, &targets);
    check_gradients(&healthy, &xs, &[], Tol::default()).unwrap();
}
