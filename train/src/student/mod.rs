//! Training the GLiNER student (SPEC §3, §6): settings, data order and
//! label sampling, targets, the loop, checkpoints, metrics, evaluation.

pub mod average;
pub mod checkpoint;
pub mod config;
pub mod corpus;
pub mod distill;
pub mod evaluate;
pub mod metrics;
pub mod sampler;
pub mod shards;
pub mod span_teacher;
pub mod targets;
pub mod trainer;

pub use average::average_models;
pub use config::TrainConfig;
pub use corpus::{label_map, prompt_labels, read_corpus, Format};
pub use evaluate::{evaluate_model, evaluate_model_at_thresholds};
pub use trainer::{Event, StepStats, Trainer};
