//! Differentiable ops, one module per op family (matching
//! `kogner_tensor::ops`). Each op computes its value with tensor ops and,
//! when recording, a backward closure over what it saved.

pub mod concat;
pub mod dropout;
pub mod elementwise;
pub mod graph_attention;
pub mod index;
pub mod layer_norm;
pub mod loss;
pub mod lstm;
pub mod matmul;
pub mod norm_clamp;
pub mod reduce;
pub mod segment;
pub mod softmax;
pub mod view;
pub mod where_mask;
