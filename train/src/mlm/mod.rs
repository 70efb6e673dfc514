//! Continued masked-language-model pretraining of an encoder on a corpus's
//! own text before NER fine-tuning (task-adaptive pretraining, Gururangan
//! et al. 2020, "Don't Stop Pretraining"): `kogner mlm`.
//!
//! The corpus's text → word-piece blocks ([`blocks`]) → whole-word masks
//! ([`masking`]) → the encoder + BERT's MLM head, cross-entropy over the
//! masked tokens ([`trainer`]). The result is an encoder folder like the
//! input one, which `kogner train --encoder` takes.

pub mod blocks;
pub mod masking;
pub mod trainer;

pub use trainer::{MlmConfig, MlmEvent, MlmStepStats, MlmTrainer, ENCODER_DIR};
