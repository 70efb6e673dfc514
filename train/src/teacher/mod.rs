//! Teacher training: TransR (Z'') and the graph transformer (Z').

pub mod export;
pub mod graph;
pub mod sampling;
pub mod text;
pub mod transr;
