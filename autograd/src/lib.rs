//! kogner-autograd
