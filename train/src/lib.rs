//! Training-side code: corpus readers, evaluation, the knowledge graph,
//! optimisers and schedules, and the teacher's training loops.

pub mod data;
pub mod eval;
pub mod kg;
pub mod mlm;
pub mod optim;
pub mod student;
pub mod teacher;
