//! The knowledge-graph teacher's networks (SPEC §5).

pub mod distill;
pub mod graph_transformer;
pub mod transr;
pub mod text;
