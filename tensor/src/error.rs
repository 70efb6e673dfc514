use crate::DType;

pub type Result<T> = std::result::Result<T, Error>;

/// Every failure of a tensor op, as one line naming what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op}: shape mismatch: {lhs:?} vs {rhs:?}")]
    ShapeMismatch { op: &'static str, lhs: Vec<usize>, rhs: Vec<usize> },
    #[error("{op}: {msg}")]
    Shape { op: &'static str, msg: String },
    #[error("{op}: dimension {dim} out of range for rank {rank}")]
    DimOutOfRange { op: &'static str, dim: isize, rank: usize },
    #[error("{op}: dtype {got:?} not supported (expected {expected})")]
    DType { op: &'static str, got: DType, expected: &'static str },
    #[error("{op}: dtypes differ: {lhs:?} vs {rhs:?}")]
    DTypeMismatch { op: &'static str, lhs: DType, rhs: DType },
    #[error("{op}: index {index} out of range for size {size}")]
    IndexOutOfRange { op: &'static str, index: i64, size: usize },
    #[error("{path}: {msg}")]
    File { path: String, msg: String },
    #[error("{0}")]
    Msg(String),
}

impl Error {
    pub fn shape(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Shape { op, msg: msg.into() }
    }
    pub fn file(path: impl AsRef<std::path::Path>, msg: impl std::fmt::Display) -> Self {
        Error::File { path: path.as_ref().display().to_string(), msg: msg.to_string() }
    }
}
