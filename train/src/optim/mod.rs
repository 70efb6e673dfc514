//! Optimisation: PyTorch-exact AdamW with named parameter groups (GLiNER's
//! grouping rule), global gradient-norm clipping (`clip_grad_norm_`),
//! learning-rate schedules (Hugging Face's constant / linear / cosine with
//! warm-up), gradient accumulation over micro-batches, an exponential
//! moving average of the weights, and resumable optimiser state in
//! safetensors.
//!
//! A training step: `grads = loss.backward()`, optionally accumulated with
//! [`GradAccumulator`]; [`clip_grad_norm`]; [`AdamW::step`] with the
//! schedule's factor for the step ([`Schedule::factor`]).

pub mod accumulate;
pub mod adamw;
pub mod clip;
pub mod ema;
pub mod groups;
pub mod schedule;

pub use accumulate::GradAccumulator;
pub use adamw::{AdamState, AdamW, AdamWConfig};
pub use clip::{clip_coef, clip_grad_norm, ClipStats};
pub use ema::Ema;
pub use groups::{gliner_param_groups, is_decayed, layer_decayed_groups, split_param_groups, GlinerGroupHyper, ParamGroup, GLINER_ENCODER_MARKER};
pub use schedule::Schedule;
