use half::{bf16, f16};
use kogner_kernels::Float;

use crate::Storage;

/// Element types a tensor can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
    BF16,
    F16,
    U8,
    I64,
}

impl DType {
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::U8 => 1,
            DType::BF16 | DType::F16 => 2,
            DType::F32 => 4,
            DType::F64 | DType::I64 => 8,
        }
    }
    pub fn is_float(self) -> bool {
        !matches!(self, DType::U8 | DType::I64)
    }
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::BF16 => "bf16",
            DType::F16 => "f16",
            DType::U8 => "u8",
            DType::I64 => "i64",
        }
    }
}

/// A Rust type that maps to one [`DType`] and its [`Storage`] variant.
pub trait Element: Copy + Send + Sync + std::fmt::Debug + 'static {
    const DTYPE: DType;
    fn slice(s: &Storage) -> Option<&[Self]>;
    fn slice_mut(s: &mut Storage) -> Option<&mut [Self]>;
    fn into_storage(v: Vec<Self>) -> Storage;
    fn elem_to_f64(self) -> f64;
    fn elem_from_f64(v: f64) -> Self;
}

macro_rules! element {
    ($t:ty, $dt:ident, $to:expr, $from:expr) => {
        impl Element for $t {
            const DTYPE: DType = DType::$dt;
            fn slice(s: &Storage) -> Option<&[Self]> {
                match s {
                    Storage::$dt(v) => Some(v),
                    _ => None,
                }
            }
            fn slice_mut(s: &mut Storage) -> Option<&mut [Self]> {
                match s {
                    Storage::$dt(v) => Some(v),
                    _ => None,
                }
            }
            fn into_storage(v: Vec<Self>) -> Storage {
                Storage::$dt(v)
            }
            fn elem_to_f64(self) -> f64 {
                #[allow(clippy::redundant_closure_call)]
                ($to)(self)
            }
            fn elem_from_f64(v: f64) -> Self {
                #[allow(clippy::redundant_closure_call)]
                ($from)(v)
            }
        }
    };
}

element!(f32, F32, |x: f32| x as f64, |v: f64| v as f32);
element!(f64, F64, |x: f64| x, |v: f64| v);
element!(bf16, BF16, |x: bf16| x.to_f64(), bf16::from_f64);
element!(f16, F16, |x: f16| x.to_f64(), f16::from_f64);
element!(u8, U8, |x: u8| x as f64, |v: f64| v as u8);
element!(i64, I64, |x: i64| x as f64, |v: f64| v as i64);

/// The dtypes ops compute in: f32 (SIMD kernels) and f64 (gradient checks).
pub trait FloatElement: Element + Float {}
impl FloatElement for f32 {}
impl FloatElement for f64 {}

/// Run `$body` with `$T` bound to the Rust type of a float dtype (f32/f64);
/// any other dtype returns a [`crate::Error::DType`] naming `$op`.
#[macro_export]
macro_rules! with_float_dtype {
    ($dtype:expr, $op:expr, $T:ident => $body:expr) => {
        match $dtype {
            $crate::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::DType::F64 => {
                type $T = f64;
                $body
            }
            other => {
                return Err($crate::Error::DType { op: $op, got: other, expected: "f32 or f64" })
            }
        }
    };
}
