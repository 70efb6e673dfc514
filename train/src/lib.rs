//! kogner-train
