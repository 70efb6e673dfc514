//! Strided n-d tensors over shared storage, with ops that dispatch to
//! `kogner-kernels`.
//!
//! A [`Tensor`] is a cheap handle: an `Arc` to its storage plus a [`Layout`]
//! (shape, strides, offset). Views (reshape of contiguous data, permute,
//! narrow, broadcast) share storage; ops allocate a fresh contiguous result.
//! Compute ops run on f32 and f64 (f64 backs the gradient checks); bf16 and
//! f16 are storage dtypes converted with [`Tensor::to_dtype`]; u8 and i64
//! hold masks and indices.

mod device;
mod dtype;
mod error;
mod layout;
pub mod ops;
pub mod rng;
pub mod pytorch_io;
pub mod safetensors_io;
mod storage;
mod tensor;

pub use device::Device;
pub use dtype::{DType, Element, FloatElement};
pub use error::{Error, Result};
pub use layout::Layout;
pub use ops::matmul::PackedLinear;
pub use rng::Rng;
pub use storage::Storage;
pub use tensor::Tensor;
