use half::{bf16, f16};

use crate::DType;

/// A tensor's flat buffer. Shared between views through an `Arc`;
/// written only when uniquely owned (copy-on-write, see `Tensor::data_mut`).
#[derive(Clone, Debug)]
pub enum Storage {
    F32(Vec<f32>),
    F64(Vec<f64>),
    BF16(Vec<bf16>),
    F16(Vec<f16>),
    U8(Vec<u8>),
    I64(Vec<i64>),
}

impl Storage {
    pub fn dtype(&self) -> DType {
        match self {
            Storage::F32(_) => DType::F32,
            Storage::F64(_) => DType::F64,
            Storage::BF16(_) => DType::BF16,
            Storage::F16(_) => DType::F16,
            Storage::U8(_) => DType::U8,
            Storage::I64(_) => DType::I64,
        }
    }
    pub fn len(&self) -> usize {
        match self {
            Storage::F32(v) => v.len(),
            Storage::F64(v) => v.len(),
            Storage::BF16(v) => v.len(),
            Storage::F16(v) => v.len(),
            Storage::U8(v) => v.len(),
            Storage::I64(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn zeros(dtype: DType, n: usize) -> Storage {
        match dtype {
            DType::F32 => Storage::F32(vec![0.0; n]),
            DType::F64 => Storage::F64(vec![0.0; n]),
            DType::BF16 => Storage::BF16(vec![bf16::ZERO; n]),
            DType::F16 => Storage::F16(vec![f16::ZERO; n]),
            DType::U8 => Storage::U8(vec![0; n]),
            DType::I64 => Storage::I64(vec![0; n]),
        }
    }
}
