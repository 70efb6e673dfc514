//! Teacher training: TransR (Z'') and the graph transformer (Z').

pub mod graph;
pub mod transr;
