//! Reverse-mode automatic differentiation over `kogner-tensor`.
//!
//! A [`Var`] is a tensor plus, when it was computed by a recorded op, the
//! op's backward closure and its inputs. Ops record themselves only when
//! gradients are enabled (see [`no_grad`]) and some input requires grad, so
//! inference pays no tape cost. [`Var::backward`] walks the recorded graph
//! in reverse topological order (the tape, replayed backwards) and returns
//! the gradient of every leaf that requires grad.
//!
//! Op families live in [`ops`], one module each, with forward, backward and
//! their gradient property tests side by side.

mod backward;
pub mod gradcheck;
mod grad_mode;
pub mod ops;
mod params;
mod var;

pub use backward::Grads;
pub use grad_mode::{is_grad_enabled, no_grad, NoGradGuard};
pub use params::ParamStore;
pub use var::{Var, VarId};

pub use kogner_tensor::{DType, Error, Result, Tensor};
