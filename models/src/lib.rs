//! kogner-models
