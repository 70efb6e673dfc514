//! Differentiable ops, one module per op family (matching
//! `kogner_tensor::ops`). Each op computes its value with tensor ops and,
//! when recording, a backward closure over what it saved.

pub mod elementwise;
