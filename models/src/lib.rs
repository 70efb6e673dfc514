//! Models on the kogner engine: encoders (DeBERTa-v2/v3, BERT), the GLiNER
//! span model, and (coming) the knowledge-graph teacher's networks.

pub mod builder;
pub mod config;
pub mod encoder;
pub mod gliner;
pub mod nn;
pub mod teacher;
pub mod weightgen;
