//! Training the GLiNER student.
