//! The knowledge-graph teacher's networks (SPEC §5).

pub mod graph_transformer;
pub mod transr;
pub mod text;
