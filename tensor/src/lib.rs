//! kogner-tensor
