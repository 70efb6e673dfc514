//! The knowledge graph: readers for the generic `nodes.tsv[.gz]` /
//! `edges.tsv[.gz]` format of `shared/data/kg/` ([`graph`]), the target-node
//! CSR adjacency with reverse relations used by the graph transformer
//! ([`adjacency`]), and the header-less `h<TAB>r<TAB>t` triple files of link
//! prediction benchmarks ([`triples`]).
//!
//! Index conventions (shared with the teacher fixtures): node index = row
//! order of `nodes.tsv`; relation index = position in the sorted list of
//! relation names; node-type index = position in the sorted list of type
//! names; reverse relation of `r` = `r + R`, named `rev_<name>`.

pub mod adjacency;
pub mod graph;
pub mod triples;
mod tsv;

pub use adjacency::InAdjacency;
pub use graph::{KnowledgeGraph, Node};
pub use triples::TripleSplits;
