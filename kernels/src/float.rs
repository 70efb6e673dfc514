//! The element trait shared by the scalar kernels (f32 and f64).
//!
//! f64 exists for gradient checks: the same generic scalar code runs in f64,
//! while f32 slices are routed to SIMD paths through [`Float::as_f32`].

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

pub trait Float:
    Copy
    + Send
    + Sync
    + 'static
    + Debug
    + Display
    + Default
    + PartialOrd
    + PartialEq
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
{
    const ZERO: Self;
    const ONE: Self;
    const INFINITY: Self;
    const NEG_INFINITY: Self;
    /// `"f32"` / `"f64"`.
    const NAME: &'static str;

    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn sqrt(self) -> Self;
    fn tanh(self) -> Self;
    fn erf(self) -> Self;
    fn abs(self) -> Self;
    fn powf(self, e: Self) -> Self;
    fn mul_add(self, a: Self, b: Self) -> Self;
    fn is_finite(self) -> bool;
    fn is_nan(self) -> bool;

    fn max(self, o: Self) -> Self {
        if self >= o || o.is_nan() { self } else { o }
    }
    fn min(self, o: Self) -> Self {
        if self <= o || o.is_nan() { self } else { o }
    }
    fn from_usize(v: usize) -> Self {
        Self::from_f64(v as f64)
    }
    fn recip(self) -> Self {
        Self::ONE / self
    }

    /// `Some` when `Self` is f32: lets generic kernels take the SIMD path.
    fn as_f32(s: &[Self]) -> Option<&[f32]>;
    fn as_f32_mut(s: &mut [Self]) -> Option<&mut [f32]>;
}

macro_rules! impl_float {
    ($t:ty, $name:literal, $erf:path, $cast:ident, $cast_mut:ident) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const INFINITY: Self = <$t>::INFINITY;
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
            const NAME: &'static str = $name;
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline(always)]
            fn erf(self) -> Self {
                $erf(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn powf(self, e: Self) -> Self {
                <$t>::powf(self, e)
            }
            #[inline(always)]
            fn mul_add(self, a: Self, b: Self) -> Self {
                <$t>::mul_add(self, a, b)
            }
            #[inline(always)]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            #[inline(always)]
            fn as_f32(s: &[Self]) -> Option<&[f32]> {
                $cast(s)
            }
            #[inline(always)]
            fn as_f32_mut(s: &mut [Self]) -> Option<&mut [f32]> {
                $cast_mut(s)
            }
        }
    };
}

fn f32_some(s: &[f32]) -> Option<&[f32]> {
    Some(s)
}
fn f32_some_mut(s: &mut [f32]) -> Option<&mut [f32]> {
    Some(s)
}
fn f64_none(_: &[f64]) -> Option<&[f32]> {
    None
}
fn f64_none_mut(_: &mut [f64]) -> Option<&mut [f32]> {
    None
}

impl_float!(f32, "f32", libm::erff, f32_some, f32_some_mut);
impl_float!(f64, "f64", libm::erf, f64_none, f64_none_mut);
