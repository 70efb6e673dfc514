//! kogner: knowledge-graph distilled biomedical NER (KoGNER) on a tensor +
//! autograd engine written from scratch. This facade re-exports the crates.

pub use kogner_autograd as autograd;
pub use kogner_kernels as kernels;
pub use kogner_models as models;
pub use kogner_tensor as tensor;
pub use kogner_train as train;
