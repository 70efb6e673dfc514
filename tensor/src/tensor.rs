//! The [`Tensor`] handle: constructors, accessors, layout changes that need
//! no arithmetic, and dtype conversion. Ops live in [`crate::ops`].

use std::sync::Arc;

use half::{bf16, f16};
use kogner_kernels::convert;

use crate::layout::{contiguous_strides, resolve_dim};
use crate::{DType, Device, Element, Error, Layout, Result, Storage};

#[derive(Clone)]
pub struct Tensor {
    storage: Arc<Storage>,
    layout: Layout,
    device: Device,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor[{:?}, {}]", self.shape(), self.dtype().name())
    }
}

impl Tensor {
    // ---------------------------------------------------------------- creation

    pub(crate) fn from_parts(storage: Arc<Storage>, layout: Layout) -> Tensor {
        Tensor { storage, layout, device: Device::Cpu }
    }

    /// A contiguous tensor owning `data` viewed as `shape`.
    pub fn from_vec<T: Element>(data: Vec<T>, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::shape("from_vec", format!("{} elements do not fill shape {shape:?}", data.len())));
        }
        Ok(Tensor::from_parts(Arc::new(T::into_storage(data)), Layout::contiguous(shape)))
    }

    pub fn from_slice<T: Element>(data: &[T], shape: &[usize]) -> Result<Tensor> {
        Tensor::from_vec(data.to_vec(), shape)
    }

    pub fn scalar<T: Element>(v: T) -> Tensor {
        Tensor::from_parts(Arc::new(T::into_storage(vec![v])), Layout::contiguous(&[]))
    }

    /// Indices as an i64 tensor (the index dtype of gather/index_select).
    pub fn from_indices(idx: &[usize], shape: &[usize]) -> Result<Tensor> {
        Tensor::from_vec(idx.iter().map(|&i| i as i64).collect::<Vec<_>>(), shape)
    }

    pub fn zeros(shape: &[usize], dtype: DType) -> Tensor {
        let n = shape.iter().product();
        Tensor::from_parts(Arc::new(Storage::zeros(dtype, n)), Layout::contiguous(shape))
    }

    pub fn full(shape: &[usize], value: f64, dtype: DType) -> Tensor {
        let n: usize = shape.iter().product();
        let storage = match dtype {
            DType::F32 => Storage::F32(vec![value as f32; n]),
            DType::F64 => Storage::F64(vec![value; n]),
            DType::BF16 => Storage::BF16(vec![bf16::from_f64(value); n]),
            DType::F16 => Storage::F16(vec![f16::from_f64(value); n]),
            DType::U8 => Storage::U8(vec![value as u8; n]),
            DType::I64 => Storage::I64(vec![value as i64; n]),
        };
        Tensor::from_parts(Arc::new(storage), Layout::contiguous(shape))
    }

    pub fn ones(shape: &[usize], dtype: DType) -> Tensor {
        Tensor::full(shape, 1.0, dtype)
    }

    pub fn zeros_like(&self) -> Tensor {
        Tensor::zeros(self.shape(), self.dtype())
    }

    pub fn ones_like(&self) -> Tensor {
        Tensor::ones(self.shape(), self.dtype())
    }

    /// `0, 1, …, n-1` as a 1-D tensor.
    pub fn arange(n: usize, dtype: DType) -> Result<Tensor> {
        let v: Vec<f64> = (0..n).map(|i| i as f64).collect();
        Tensor::from_vec(v, &[n])?.to_dtype(dtype)
    }

    // ---------------------------------------------------------------- accessors

    pub fn shape(&self) -> &[usize] {
        self.layout.shape()
    }
    pub fn dims(&self) -> &[usize] {
        self.layout.shape()
    }
    pub fn rank(&self) -> usize {
        self.layout.rank()
    }
    pub fn numel(&self) -> usize {
        self.layout.numel()
    }
    pub fn dtype(&self) -> DType {
        self.storage.dtype()
    }
    pub fn device(&self) -> Device {
        self.device
    }
    pub fn layout(&self) -> &Layout {
        &self.layout
    }
    pub fn storage(&self) -> &Storage {
        &self.storage
    }
    pub fn is_contiguous(&self) -> bool {
        self.layout.is_contiguous()
    }
    /// Size of a dim (negative counts from the end).
    pub fn dim(&self, dim: isize) -> Result<usize> {
        Ok(self.shape()[self.layout.dim("dim", dim)?])
    }
    pub(crate) fn resolve(&self, op: &'static str, dim: isize) -> Result<usize> {
        resolve_dim(op, dim, self.rank())
    }
    /// Whether two handles share one storage buffer.
    pub fn same_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.storage, &other.storage)
    }

    /// The storage slice behind this view, typed. Errors on the wrong dtype.
    pub fn storage_slice<T: Element>(&self) -> Result<&[T]> {
        T::slice(&self.storage).ok_or(Error::DTypeMismatch {
            op: "storage_slice",
            lhs: self.dtype(),
            rhs: T::DTYPE,
        })
    }

    /// The elements of a contiguous tensor as a slice.
    pub fn as_slice<T: Element>(&self) -> Result<&[T]> {
        if !self.is_contiguous() {
            return Err(Error::shape("as_slice", "tensor is not contiguous; call .contiguous() first"));
        }
        let s = self.storage_slice::<T>()?;
        Ok(&s[self.layout.offset()..self.layout.offset() + self.numel()])
    }

    /// Mutable elements of a contiguous tensor; copies the storage first if it
    /// is shared with another handle (copy-on-write).
    pub fn data_mut<T: Element>(&mut self) -> Result<&mut [T]> {
        if !self.is_contiguous() || self.storage.len() != self.numel() {
            *self = self.contiguous_copy()?;
        }
        let n = self.numel();
        let dtype = self.dtype();
        let s = T::slice_mut(Arc::make_mut(&mut self.storage))
            .ok_or(Error::DTypeMismatch { op: "data_mut", lhs: dtype, rhs: T::DTYPE })?;
        Ok(&mut s[..n])
    }

    /// All elements in row-major order.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        if self.is_contiguous() {
            return Ok(self.as_slice::<T>()?.to_vec());
        }
        let src = self.storage_slice::<T>()?;
        let mut out = Vec::with_capacity(self.numel());
        self.layout.for_each_run(|off, len, stride| {
            if stride == 1 {
                out.extend_from_slice(&src[off..off + len]);
            } else {
                out.extend((0..len).map(|i| src[off + i * stride]));
            }
        });
        Ok(out)
    }

    /// Elements converted to f64, any dtype (for tests and printing).
    pub fn to_f64_vec(&self) -> Result<Vec<f64>> {
        Ok(match self.dtype() {
            DType::F32 => self.to_vec::<f32>()?.into_iter().map(|v| v as f64).collect(),
            DType::F64 => self.to_vec::<f64>()?,
            DType::BF16 => self.to_vec::<bf16>()?.into_iter().map(|v| v.to_f64()).collect(),
            DType::F16 => self.to_vec::<f16>()?.into_iter().map(|v| v.to_f64()).collect(),
            DType::U8 => self.to_vec::<u8>()?.into_iter().map(|v| v as f64).collect(),
            DType::I64 => self.to_vec::<i64>()?.into_iter().map(|v| v as f64).collect(),
        })
    }

    /// Σ x² over all elements, each square and the sums in f64. A contiguous
    /// f32/f64 tensor is read in place (others are converted first), in
    /// chunks summed in parallel, the chunk sums added in order: the same
    /// number whatever the thread count (a gradient norm each step).
    pub fn sum_squares_f64(&self) -> Result<f64> {
        fn squares<T: Copy + Into<f64>>(c: &[T]) -> f64 {
            // Eight running sums let the compiler vectorise the loop.
            let mut lanes = [0f64; 8];
            let mut eights = c.chunks_exact(8);
            for x in &mut eights {
                for (l, &v) in lanes.iter_mut().zip(x) {
                    let v: f64 = v.into();
                    *l += v * v;
                }
            }
            let rest: f64 = eights.remainder().iter().map(|&v| v.into() * v.into()).sum();
            lanes.iter().sum::<f64>() + rest
        }
        Ok(self.reduce_chunks(squares::<f32>, squares::<f64>)?.into_iter().sum())
    }

    /// Whether no element is NaN or infinite (chunks checked in parallel).
    pub fn all_finite(&self) -> Result<bool> {
        fn finite<T: kogner_kernels::Float>(c: &[T]) -> bool {
            // x·0 is NaN exactly for NaN and ±∞, and a NaN stays in the sum.
            let mut lanes = [T::ZERO; 8];
            let mut eights = c.chunks_exact(8);
            for x in &mut eights {
                for (l, &v) in lanes.iter_mut().zip(x) {
                    *l += v * T::ZERO;
                }
            }
            lanes.iter().chain(eights.remainder()).all(|v| v.is_finite())
        }
        Ok(self.reduce_chunks(finite::<f32>, finite::<f64>)?.into_iter().all(|ok| ok))
    }

    /// `f32_chunk` / `f64_chunk` of each fixed-size chunk of the elements
    /// (in element order; in parallel when there are several), reading a
    /// contiguous f32/f64 tensor in place and converting others to f64.
    fn reduce_chunks<R: Send>(&self, f32_chunk: impl Fn(&[f32]) -> R + Sync, f64_chunk: impl Fn(&[f64]) -> R + Sync) -> Result<Vec<R>> {
        use rayon::prelude::*;
        // Fixed, not per thread, so the results do not depend on the thread count.
        const CHUNK: usize = 1 << 16;
        fn chunks<T: Sync, R: Send>(data: &[T], f: impl Fn(&[T]) -> R + Sync) -> Vec<R> {
            if data.len() <= CHUNK {
                return vec![f(data)];
            }
            data.par_chunks(CHUNK).map(&f).collect()
        }
        let t = self.contiguous()?;
        Ok(match t.dtype() {
            DType::F32 => chunks(t.as_slice::<f32>()?, f32_chunk),
            DType::F64 => chunks(t.as_slice::<f64>()?, f64_chunk),
            _ => chunks(&t.to_f64_vec()?, f64_chunk),
        })
    }

    /// The single value of a one-element tensor, as f64.
    pub fn to_scalar(&self) -> Result<f64> {
        if self.numel() != 1 {
            return Err(Error::shape("to_scalar", format!("tensor of shape {:?} is not a scalar", self.shape())));
        }
        Ok(self.to_f64_vec()?[0])
    }

    // ---------------------------------------------------------------- layout

    /// This tensor if already contiguous, else a contiguous copy.
    pub fn contiguous(&self) -> Result<Tensor> {
        if self.is_contiguous() {
            Ok(self.clone())
        } else {
            self.contiguous_copy()
        }
    }

    /// A contiguous copy in a buffer of its own (never shares storage, any dtype).
    pub fn contiguous_copy(&self) -> Result<Tensor> {
        let storage = match self.dtype() {
            DType::F32 => Storage::F32(self.to_vec()?),
            DType::F64 => Storage::F64(self.to_vec()?),
            DType::BF16 => Storage::BF16(self.to_vec()?),
            DType::F16 => Storage::F16(self.to_vec()?),
            DType::U8 => Storage::U8(self.to_vec()?),
            DType::I64 => Storage::I64(self.to_vec()?),
        };
        Ok(Tensor::from_parts(Arc::new(storage), Layout::contiguous(self.shape())))
    }

    /// Same elements in a new shape (one dim may be `usize::MAX` to infer…
    /// no: give the full shape). A view when contiguous, else a copy.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if shape.iter().product::<usize>() != self.numel() {
            return Err(Error::ShapeMismatch { op: "reshape", lhs: self.shape().to_vec(), rhs: shape.to_vec() });
        }
        let t = self.contiguous()?;
        let layout = Layout::new(shape.to_vec(), contiguous_strides(shape), t.layout.offset());
        Ok(Tensor::from_parts(t.storage, layout))
    }

    /// Flatten dims `start..=end` into one.
    pub fn flatten(&self, start: isize, end: isize) -> Result<Tensor> {
        if self.rank() == 0 {
            return self.reshape(&[1]);
        }
        let (s, e) = (self.resolve("flatten", start)?, self.resolve("flatten", end)?);
        if s > e {
            return Err(Error::shape("flatten", format!("start dim {s} after end dim {e}")));
        }
        let mut shape = self.shape()[..s].to_vec();
        shape.push(self.shape()[s..=e].iter().product());
        shape.extend_from_slice(&self.shape()[e + 1..]);
        self.reshape(&shape)
    }

    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        Ok(Tensor::from_parts(self.storage.clone(), self.layout.permute("permute", perm)?))
    }

    pub fn transpose(&self, a: isize, b: isize) -> Result<Tensor> {
        let (a, b) = (self.resolve("transpose", a)?, self.resolve("transpose", b)?);
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// Transpose of the last two dims.
    pub fn t(&self) -> Result<Tensor> {
        self.transpose(-2, -1)
    }

    pub fn narrow(&self, dim: isize, start: usize, len: usize) -> Result<Tensor> {
        let d = self.resolve("narrow", dim)?;
        Ok(Tensor::from_parts(self.storage.clone(), self.layout.narrow(d, start, len)?))
    }

    /// Index one entry of `dim`, removing the dim.
    pub fn select(&self, dim: isize, index: usize) -> Result<Tensor> {
        let d = self.resolve("select", dim)?;
        self.narrow(dim, index, 1)?.squeeze(d as isize)
    }

    pub fn broadcast_as(&self, shape: &[usize]) -> Result<Tensor> {
        Ok(Tensor::from_parts(self.storage.clone(), self.layout.broadcast_as(shape)?))
    }

    /// Like `broadcast_as`, PyTorch's name.
    pub fn expand(&self, shape: &[usize]) -> Result<Tensor> {
        self.broadcast_as(shape)
    }

    pub fn unsqueeze(&self, dim: isize) -> Result<Tensor> {
        let d = resolve_dim("unsqueeze", dim, self.rank() + 1)?;
        let mut shape = self.shape().to_vec();
        let mut strides = self.layout.strides().to_vec();
        let s = if d < self.rank() { strides[d] * shape[d] } else { 1 };
        shape.insert(d, 1);
        strides.insert(d, s);
        Ok(Tensor::from_parts(self.storage.clone(), Layout::new(shape, strides, self.layout.offset())))
    }

    pub fn squeeze(&self, dim: isize) -> Result<Tensor> {
        let d = self.resolve("squeeze", dim)?;
        if self.shape()[d] != 1 {
            return Err(Error::shape("squeeze", format!("dim {d} of {:?} has size != 1", self.shape())));
        }
        let mut shape = self.shape().to_vec();
        let mut strides = self.layout.strides().to_vec();
        shape.remove(d);
        strides.remove(d);
        Ok(Tensor::from_parts(self.storage.clone(), Layout::new(shape, strides, self.layout.offset())))
    }

    // ---------------------------------------------------------------- dtype

    /// Convert to another dtype (a copy unless already that dtype).
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        let t = self.contiguous()?;
        let n = t.numel();
        let storage = match (t.dtype(), dtype) {
            (DType::F32, DType::BF16) => {
                let mut out = vec![bf16::ZERO; n];
                convert::f32_to_bf16(t.as_slice()?, &mut out);
                Storage::BF16(out)
            }
            (DType::F32, DType::F16) => {
                let mut out = vec![f16::ZERO; n];
                convert::f32_to_f16(t.as_slice()?, &mut out);
                Storage::F16(out)
            }
            (DType::BF16, DType::F32) => {
                let mut out = vec![0f32; n];
                convert::bf16_to_f32(t.as_slice()?, &mut out);
                Storage::F32(out)
            }
            (DType::F16, DType::F32) => {
                let mut out = vec![0f32; n];
                convert::f16_to_f32(t.as_slice()?, &mut out);
                Storage::F32(out)
            }
            (DType::F32, DType::F64) => Storage::F64(t.as_slice::<f32>()?.iter().map(|&v| v as f64).collect()),
            (DType::F64, DType::F32) => Storage::F32(t.as_slice::<f64>()?.iter().map(|&v| v as f32).collect()),
            (_, to) => {
                let v = t.to_f64_vec()?;
                match to {
                    DType::F32 => Storage::F32(v.iter().map(|&x| x as f32).collect()),
                    DType::F64 => Storage::F64(v),
                    DType::BF16 => Storage::BF16(v.iter().map(|&x| bf16::from_f64(x)).collect()),
                    DType::F16 => Storage::F16(v.iter().map(|&x| f16::from_f64(x)).collect()),
                    DType::U8 => Storage::U8(v.iter().map(|&x| x as u8).collect()),
                    DType::I64 => Storage::I64(v.iter().map(|&x| x as i64).collect()),
                }
            }
        };
        Ok(Tensor::from_parts(Arc::new(storage), Layout::contiguous(self.shape())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_share_storage_and_read_correctly() {
        let t = Tensor::from_vec((0..24).map(|v| v as f32).collect(), &[2, 3, 4]).unwrap();
        let p = t.permute(&[2, 0, 1]).unwrap();
        assert!(p.same_storage(&t));
        assert_eq!(p.shape(), &[4, 2, 3]);
        // p[i, j, k] = t[j, k, i] = 12 j + 4 k + i
        let v = p.to_vec::<f32>().unwrap();
        for i in 0..4 {
            for j in 0..2 {
                for k in 0..3 {
                    assert_eq!(v[i * 6 + j * 3 + k], (12 * j + 4 * k + i) as f32);
                }
            }
        }
        let n = t.narrow(2, 1, 2).unwrap().to_vec::<f32>().unwrap();
        assert_eq!(&n[..4], &[1.0, 2.0, 5.0, 6.0]);
        let s = t.select(1, 2).unwrap();
        assert_eq!(s.shape(), &[2, 4]);
        assert_eq!(s.to_vec::<f32>().unwrap()[4..], [20.0, 21.0, 22.0, 23.0]);
        let u = t.unsqueeze(-1).unwrap();
        assert_eq!(u.shape(), &[2, 3, 4, 1]);
        assert!(u.is_contiguous());
    }

    #[test]
    fn copy_on_write_keeps_views_intact() {
        let a = Tensor::from_vec(vec![1f32, 2.0, 3.0], &[3]).unwrap();
        let mut b = a.clone();
        b.data_mut::<f32>().unwrap()[0] = 9.0;
        assert_eq!(a.to_vec::<f32>().unwrap(), vec![1.0, 2.0, 3.0]);
        assert_eq!(b.to_vec::<f32>().unwrap(), vec![9.0, 2.0, 3.0]);
    }

    #[test]
    fn dtype_round_trips() {
        let a = Tensor::from_vec(vec![1.5f32, -2.25, 65504.0], &[3]).unwrap();
        for dt in [DType::BF16, DType::F16, DType::F64] {
            let back = a.to_dtype(dt).unwrap().to_dtype(DType::F32).unwrap();
            assert_eq!(back.to_vec::<f32>().unwrap(), vec![1.5, -2.25, if dt == DType::BF16 { 65536.0 } else { 65504.0 }]);
        }
        assert!(Tensor::from_vec(vec![1f32; 5], &[2, 3]).is_err());
    }

    #[test]
    fn sum_of_squares_and_finiteness_without_copies() {
        let close = |a: f64, b: f64| assert!((a - b).abs() <= 1e-14 * b.abs(), "{a} vs {b}");
        let vals: Vec<f32> = (0..37).map(|i| (i as f32 - 18.0) * 0.37).collect();
        let t = Tensor::from_vec(vals.clone(), &[37]).unwrap();
        let want: f64 = vals.iter().map(|&v| v as f64 * v as f64).sum();
        close(t.sum_squares_f64().unwrap(), want);
        // A strided view: the elements it shows.
        let m = Tensor::from_vec(vals[..36].to_vec(), &[6, 6]).unwrap().transpose(0, 1).unwrap();
        let seen: f64 = m.to_f64_vec().unwrap().iter().map(|v| v * v).sum();
        close(m.sum_squares_f64().unwrap(), seen);
        let b16 = t.to_dtype(DType::BF16).unwrap();
        close(b16.sum_squares_f64().unwrap(), b16.to_f64_vec().unwrap().iter().map(|v| v * v).sum::<f64>());
        assert!(t.all_finite().unwrap() && m.all_finite().unwrap());
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut v = vals.clone();
            v[20] = bad;
            let b = Tensor::from_vec(v, &[37]).unwrap();
            assert!(!b.all_finite().unwrap());
            assert!(!b.to_dtype(DType::F64).unwrap().all_finite().unwrap());
            assert!(!b.to_dtype(DType::F16).unwrap().all_finite().unwrap());
        }
    }

    #[test]
    fn chunked_reductions_match_an_f64_sum_and_ignore_the_thread_count() {
        // Several chunks and a ragged tail; a non-finite value in the last chunk's tail.
        let n = 3 * 65536 + 13;
        let mut rng = crate::Rng::new(5);
        let vals: Vec<f32> = (0..n).map(|_| rng.normal() as f32 * 3.0).collect();
        let t = Tensor::from_vec(vals.clone(), &[n]).unwrap();
        let want: f64 = vals.iter().map(|&v| v as f64 * v as f64).sum();
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| (t.sum_squares_f64().unwrap(), t.to_dtype(DType::F64).unwrap().sum_squares_f64().unwrap()))
        };
        let (one, four) = (on(1), on(4));
        assert_eq!(one.0.to_bits(), four.0.to_bits());
        assert_eq!(one.1.to_bits(), four.1.to_bits());
        assert!((one.0 - want).abs() <= 1e-12 * want, "{} vs {want}", one.0);
        assert!(t.all_finite().unwrap());
        for at in [0, 65536 * 2 + 7, n - 1] {
            let mut v = vals.clone();
            v[at] = f32::NAN;
            assert!(!Tensor::from_vec(v, &[n]).unwrap().all_finite().unwrap(), "NaN at {at}");
        }
    }
}
