//! Integer indexing along one dim, with PyTorch semantics: `index_select`,
//! `index_add`, `gather`, `scatter_add` and `embedding`. Indices are i64
//! tensors; a negative or too-large index is an error naming the op, the
//! index and the size (no wrap-around).
//!
//! Copies move whole contiguous blocks (the dims after `dim`) and run in
//! parallel over output rows. Accumulating ops (`index_add`) first group the
//! indices by target with a counting sort, so each output row sums its own
//! sources and rows can be filled in parallel without write conflicts.

use std::ops::Range;

use kogner_kernels::Float;

use super::elementwise::from_storage_vec;
use super::par_rows_mut;
use crate::layout::{contiguous_strides, resolve_dim};
use crate::{with_float_dtype, DType, Element, Error, FloatElement, Result, Tensor};

/// Run `$body` with `$T` bound to the Rust type of any dtype (ops that only
/// move elements, such as selection and concatenation).
macro_rules! with_any_dtype {
    ($dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            $crate::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::DType::F64 => {
                type $T = f64;
                $body
            }
            $crate::DType::BF16 => {
                type $T = half::bf16;
                $body
            }
            $crate::DType::F16 => {
                type $T = half::f16;
                $body
            }
            $crate::DType::U8 => {
                type $T = u8;
                $body
            }
            $crate::DType::I64 => {
                type $T = i64;
                $body
            }
        }
    };
}
pub(crate) use with_any_dtype;

/// The zero of any element type (to preallocate outputs filled in parallel).
pub(crate) fn zero<T: Element>() -> T {
    T::elem_from_f64(0.0)
}

/// The values of an i64 index tensor in row-major order, each checked to
/// lie in `0..size`.
pub(crate) fn read_indices(op: &'static str, idx: &Tensor, size: usize) -> Result<Vec<usize>> {
    if idx.dtype() != DType::I64 {
        return Err(Error::DType { op, got: idx.dtype(), expected: "i64 indices" });
    }
    let idx = idx.contiguous()?;
    idx.as_slice::<i64>()?
        .iter()
        .map(|&i| match usize::try_from(i) {
            Ok(u) if u < size => Ok(u),
            _ => Err(Error::IndexOutOfRange { op, index: i, size }),
        })
        .collect()
}

/// A shape seen as `[outer, shape[d], inner]`.
pub(crate) fn split_at_dim(shape: &[usize], d: usize) -> (usize, usize, usize) {
    (shape[..d].iter().product(), shape[d], shape[d + 1..].iter().product())
}

/// Positions of an index list grouped by value (a stable counting sort):
/// the positions `j` with `idx[j] == r` are `members(r)`, ascending.
pub(crate) struct Groups {
    offsets: Vec<usize>,
    order: Vec<usize>,
}

impl Groups {
    /// `idx` values must lie in `0..n` (see [`read_indices`]).
    pub(crate) fn new(idx: &[usize], n: usize) -> Groups {
        let mut offsets = vec![0usize; n + 1];
        for &i in idx {
            offsets[i + 1] += 1;
        }
        for r in 0..n {
            offsets[r + 1] += offsets[r];
        }
        let mut next = offsets[..n].to_vec();
        let mut order = vec![0; idx.len()];
        for (j, &i) in idx.iter().enumerate() {
            order[next[i]] = j;
            next[i] += 1;
        }
        Groups { offsets, order }
    }

    pub(crate) fn members(&self, r: usize) -> &[usize] {
        &self.order[self.offsets[r]..self.offsets[r + 1]]
    }
}

/// `out [outer, n, inner] += src [outer, m, inner]` scattered by `groups`
/// (row `j` of `src` lands on row `r` when `j ∈ groups.members(r)`).
/// Each output row sums its members in index order: deterministic, and
/// parallel over output rows.
pub(crate) fn accumulate_rows<T: FloatElement>(out: &mut [T], src: &[T], groups: &Groups, n: usize, m: usize, inner: usize) {
    par_rows_mut(out, inner, |first, rows| {
        for (i, row) in rows.chunks_exact_mut(inner).enumerate() {
            let (o, r) = ((first + i) / n, (first + i) % n);
            for &j in groups.members(r) {
                let at = (o * m + j) * inner;
                // a plain loop (vectorised by the compiler): rows are often
                // short (attention heads), where a kernel call would dominate
                for (acc, &v) in row.iter_mut().zip(&src[at..at + inner]) {
                    *acc += v;
                }
            }
        }
    });
}

/// `x [outer, n, inner]` → `[outer, ids.len(), inner]`, row `j` copied from `ids[j]`.
fn select_rows<T: Element>(x: &[T], ids: &[usize], n: usize, inner: usize, shape: &[usize]) -> Result<Tensor> {
    let m = ids.len();
    let mut out = vec![zero::<T>(); shape.iter().product()];
    par_rows_mut(&mut out, inner, |first, rows| {
        for (i, row) in rows.chunks_exact_mut(inner).enumerate() {
            let (o, j) = ((first + i) / m, (first + i) % m);
            let at = (o * n + ids[j]) * inner;
            row.copy_from_slice(&x[at..at + inner]);
        }
    });
    Tensor::from_vec(out, shape)
}

/// Addressing shared by `gather` and `scatter_add`. The index tensor is
/// walked row by row (a row is its last dim). A row has a base offset into
/// the indexed tensor `x` (every coordinate except `dim`, which the index
/// value supplies) and into the row-aligned tensor `s` (gather's output,
/// scatter's source), which may be larger than the index.
struct IndexRows<'a> {
    ids: &'a [usize],
    ishape: &'a [usize],
    dim: usize,
    xstrides: Vec<usize>,
    sstrides: Vec<usize>,
}

impl IndexRows<'_> {
    /// Index rank is at least 1 (dim resolved against it).
    fn row_len(&self) -> usize {
        self.ishape[self.ishape.len() - 1]
    }

    fn num_rows(&self) -> usize {
        self.ishape[..self.ishape.len() - 1].iter().product()
    }

    /// Base offsets of index row `q` in `x` (without `dim`) and in `s`.
    fn bases(&self, q: usize) -> (usize, usize) {
        let (mut rest, mut xb, mut sb) = (q, 0, 0);
        for d in (0..self.ishape.len() - 1).rev() {
            let c = rest % self.ishape[d];
            rest /= self.ishape[d];
            if d != self.dim {
                xb += c * self.xstrides[d];
            }
            sb += c * self.sstrides[d];
        }
        (xb, sb)
    }

    /// Offset in `x` of element `k` of index row `q`, given its base.
    fn x_offset(&self, xbase: usize, q: usize, k: usize) -> usize {
        let last = self.ishape.len() - 1;
        let along_last = if self.dim == last { 0 } else { k * self.xstrides[last] };
        xbase + along_last + self.ids[q * self.row_len() + k] * self.xstrides[self.dim]
    }
}

fn gather_rows<T: Element>(x: &[T], rows: &IndexRows) -> Result<Tensor> {
    let len = rows.row_len();
    let mut out = vec![zero::<T>(); rows.ids.len()];
    par_rows_mut(&mut out, len, |first, chunk| {
        for (i, row) in chunk.chunks_exact_mut(len).enumerate() {
            let q = first + i;
            let (xb, _) = rows.bases(q);
            for (k, v) in row.iter_mut().enumerate() {
                *v = x[rows.x_offset(xb, q, k)];
            }
        }
    });
    Tensor::from_vec(out, rows.ishape)
}

/// Scatter index rows `qs` into `out`, whose first element sits at offset
/// `shift` of the full output.
fn scatter_rows<T: FloatElement>(out: &mut [T], src: &[T], rows: &IndexRows, qs: Range<usize>, shift: usize) {
    for q in qs {
        let (xb, sb) = rows.bases(q);
        for k in 0..rows.row_len() {
            out[rows.x_offset(xb, q, k) - shift] += src[sb + k];
        }
    }
}

fn scatter_add_impl<T: FloatElement>(x: &Tensor, src: &Tensor, rows: &IndexRows) -> Result<Tensor> {
    let mut out = x.to_vec::<T>()?;
    if rows.ids.is_empty() {
        return Ok(from_storage_vec(out, x.shape()));
    }
    let src = src.contiguous()?;
    let s = src.as_slice::<T>()?;
    let n_rows = rows.num_rows();
    if rows.dim == 0 {
        // Any row may hit any slab: accumulate sequentially.
        scatter_rows(&mut out, s, rows, 0..n_rows, 0);
    } else {
        // Index rows with leading coordinate c write only into slab c of the
        // output (dim 0 is not the scattered dim), so slabs run in parallel.
        let slab = rows.xstrides[0];
        let (lead, per_slab) = (rows.ishape[0], n_rows / rows.ishape[0]);
        par_rows_mut(&mut out, slab, |first, chunk| {
            for c in first..(first + chunk.len() / slab).min(lead) {
                scatter_rows(chunk, s, rows, c * per_slab..(c + 1) * per_slab, first * slab);
            }
        });
    }
    Ok(from_storage_vec(out, x.shape()))
}

/// Check an index tensor against the indexed shape `x` (and, for scatter,
/// the source shape `src`): same rank, no larger than `x` off `dim`, no
/// larger than `src` anywhere.
fn check_index_shape(op: &'static str, index: &[usize], x: &[usize], d: usize, src: Option<&[usize]>) -> Result<()> {
    let fits_x = index.len() == x.len() && index.iter().zip(x).enumerate().all(|(i, (a, b))| i == d || a <= b);
    if !fits_x {
        return Err(Error::shape(op, format!("index shape {index:?} does not fit input shape {x:?} off dim {d}")));
    }
    if let Some(s) = src {
        if s.len() != index.len() || index.iter().zip(s).any(|(a, b)| a > b) {
            return Err(Error::shape(op, format!("index shape {index:?} exceeds source shape {s:?}")));
        }
    }
    Ok(())
}

fn check_same_dtype(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.dtype() != b.dtype() {
        return Err(Error::DTypeMismatch { op, lhs: a.dtype(), rhs: b.dtype() });
    }
    Ok(())
}

/// `base` (zeros when None) of shape `shape`, plus `src`'s slices along
/// `dim` at `idx` (repeats accumulate).
fn index_add_onto(shape: &[usize], base: Option<&Tensor>, dim: isize, idx: &Tensor, src: &Tensor) -> Result<Tensor> {
    let op = "index_add";
    let d = resolve_dim(op, dim, shape.len())?;
    check_1d(op, idx)?;
    let ids = read_indices(op, idx, shape[d])?;
    let mut want = shape.to_vec();
    want[d] = ids.len();
    if src.shape() != want.as_slice() {
        return Err(Error::ShapeMismatch { op, lhs: src.shape().to_vec(), rhs: want });
    }
    with_float_dtype!(src.dtype(), op, T => {
        let (_, n, inner) = split_at_dim(shape, d);
        let mut out = match base {
            Some(b) => b.to_vec::<T>()?,
            None => vec![T::ZERO; shape.iter().product()],
        };
        let src = src.contiguous()?;
        accumulate_rows(&mut out, src.as_slice::<T>()?, &Groups::new(&ids, n), n, ids.len(), inner);
        Ok(from_storage_vec(out, shape))
    })
}

fn check_1d(op: &'static str, idx: &Tensor) -> Result<()> {
    if idx.rank() != 1 {
        return Err(Error::shape(op, format!("indices must be 1-D, got shape {:?}", idx.shape())));
    }
    Ok(())
}

impl Tensor {
    /// Entries `idx` of `dim`, any dtype: x [.., n, ..], idx i64 [m] → [.., m, ..].
    pub fn index_select(&self, dim: isize, idx: &Tensor) -> Result<Tensor> {
        let op = "index_select";
        let d = self.resolve(op, dim)?;
        check_1d(op, idx)?;
        let ids = read_indices(op, idx, self.shape()[d])?;
        self.select_impl(d, &ids)
    }

    fn select_impl(&self, d: usize, ids: &[usize]) -> Result<Tensor> {
        let (_, n, inner) = split_at_dim(self.shape(), d);
        let mut shape = self.shape().to_vec();
        shape[d] = ids.len();
        let x = self.contiguous()?;
        with_any_dtype!(x.dtype(), T => select_rows::<T>(x.as_slice::<T>()?, ids, n, inner, &shape))
    }

    /// Rows of a lookup table: weight [V, D], ids i64 of any shape → ids.shape + [D].
    pub fn embedding(&self, ids: &Tensor) -> Result<Tensor> {
        let op = "embedding";
        if self.rank() != 2 {
            return Err(Error::shape(op, format!("weight must be [V, D], got {:?}", self.shape())));
        }
        let rows = self.select_impl(0, &read_indices(op, ids, self.shape()[0])?)?;
        let mut shape = ids.shape().to_vec();
        shape.push(self.shape()[1]);
        rows.reshape(&shape)
    }

    /// `self` with the slices of `src` added at `idx` along `dim` (repeated
    /// indices accumulate): self [.., n, ..], idx i64 [m], src [.., m, ..] → self's shape.
    pub fn index_add(&self, dim: isize, idx: &Tensor, src: &Tensor) -> Result<Tensor> {
        check_same_dtype("index_add", self, src)?;
        index_add_onto(self.shape(), Some(self), dim, idx, src)
    }

    /// `Tensor::zeros(shape, src.dtype()).index_add(dim, idx, src)` without
    /// writing the zeros twice: an embedding's gradient, a whole vocabulary
    /// (393 MB for DeBERTa-v3) of which a batch touches a few rows.
    pub fn index_add_to_zeros(shape: &[usize], dim: isize, idx: &Tensor, src: &Tensor) -> Result<Tensor> {
        index_add_onto(shape, None, dim, idx, src)
    }

    /// Pick along `dim` by an index of the same rank, any dtype. For dim 1:
    /// `out[i][j][k] = x[i][index[i][j][k]][k]`. index i64 with
    /// `index.shape[d] ≤ x.shape[d]` for `d ≠ dim` → index.shape.
    pub fn gather(&self, dim: isize, index: &Tensor) -> Result<Tensor> {
        let op = "gather";
        let d = self.resolve(op, dim)?;
        check_index_shape(op, index.shape(), self.shape(), d, None)?;
        let ids = read_indices(op, index, self.shape()[d])?;
        let rows = IndexRows {
            ids: &ids,
            ishape: index.shape(),
            dim: d,
            xstrides: contiguous_strides(self.shape()),
            sstrides: contiguous_strides(index.shape()),
        };
        let x = self.contiguous()?;
        with_any_dtype!(x.dtype(), T => gather_rows::<T>(x.as_slice::<T>()?, &rows))
    }

    /// The adjoint of `gather`: `self` with, for dim 1,
    /// `out[i][index[i][j][k]][k] += src[i][j][k]` (repeats accumulate).
    /// index i64 of the same rank, no larger than `src` and than `self` off
    /// `dim` (only src's leading index-shaped block is used) → self's shape.
    pub fn scatter_add(&self, dim: isize, index: &Tensor, src: &Tensor) -> Result<Tensor> {
        let op = "scatter_add";
        let d = self.resolve(op, dim)?;
        check_same_dtype(op, self, src)?;
        check_index_shape(op, index.shape(), self.shape(), d, Some(src.shape()))?;
        let ids = read_indices(op, index, self.shape()[d])?;
        let rows = IndexRows {
            ids: &ids,
            ishape: index.shape(),
            dim: d,
            xstrides: contiguous_strides(self.shape()),
            sstrides: contiguous_strides(src.shape()),
        };
        with_float_dtype!(self.dtype(), op, T => scatter_add_impl::<T>(self, src, &rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f64], shape: &[usize]) -> Tensor {
        Tensor::from_slice(v, shape).unwrap()
    }

    fn idx(v: &[usize], shape: &[usize]) -> Tensor {
        Tensor::from_indices(v, shape).unwrap()
    }

    fn range(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        t(&(0..n).map(|v| v as f64).collect::<Vec<_>>(), shape)
    }

    #[test]
    fn index_select_picks_slices_along_any_dim() {
        let x = range(&[2, 3, 2]);
        let y = x.index_select(1, &idx(&[2, 0, 2], &[3])).unwrap();
        assert_eq!(y.shape(), &[2, 3, 2]);
        assert_eq!(y.to_vec::<f64>().unwrap(), vec![4., 5., 0., 1., 4., 5., 10., 11., 6., 7., 10., 11.]);
        let last = x.index_select(-1, &idx(&[1], &[1])).unwrap();
        assert_eq!(last.to_vec::<f64>().unwrap(), vec![1., 3., 5., 7., 9., 11.]);
        // transposed input, integer dtype
        let xi = Tensor::from_vec((0..6i64).collect(), &[2, 3]).unwrap().t().unwrap();
        assert_eq!(xi.index_select(0, &idx(&[2, 1], &[2])).unwrap().to_vec::<i64>().unwrap(), vec![2, 5, 1, 4]);
        assert_eq!(x.index_select(0, &idx(&[], &[0])).unwrap().shape(), &[0, 3, 2]);
    }

    #[test]
    fn index_errors_name_op_index_and_size() {
        let x = range(&[2, 3]);
        let e = x.index_select(1, &Tensor::from_vec(vec![0i64, 3], &[2]).unwrap()).unwrap_err();
        assert_eq!(e.to_string(), "index_select: index 3 out of range for size 3");
        let e = x.index_select(0, &Tensor::from_vec(vec![-1i64], &[1]).unwrap()).unwrap_err();
        assert_eq!(e.to_string(), "index_select: index -1 out of range for size 2");
        assert!(x.index_select(0, &t(&[0.0], &[1])).unwrap_err().to_string().contains("i64"));
        assert!(x.index_select(0, &idx(&[0], &[1, 1])).unwrap_err().to_string().contains("1-D"));
        assert!(x.index_select(2, &idx(&[0], &[1])).is_err());
        let e = x.gather(0, &idx(&[0, 5], &[1, 2])).unwrap_err();
        assert_eq!(e.to_string(), "gather: index 5 out of range for size 2");
        assert!(x.gather(0, &idx(&[0], &[1])).is_err(), "rank mismatch");
        assert!(x.gather(0, &idx(&[0; 4], &[1, 4])).is_err(), "index wider than x off dim");
        assert!(x.scatter_add(1, &idx(&[0; 2], &[1, 2]), &range(&[1, 1])).is_err(), "index exceeds src");
        assert!(x.index_add(0, &idx(&[1], &[1]), &range(&[1, 2])).is_err(), "src shape");
        assert!(x.index_add(0, &idx(&[1], &[1]), &range(&[1, 3]).to_dtype(DType::F32).unwrap()).is_err());
        assert!(x.scatter_add(0, &idx(&[0], &[1, 1]), &range(&[1, 1])).is_ok());
        let e = range(&[3]).embedding(&idx(&[0], &[1])).unwrap_err();
        assert!(e.to_string().starts_with("embedding: weight must be [V, D]"));
        let e = x.embedding(&idx(&[2], &[1])).unwrap_err();
        assert_eq!(e.to_string(), "embedding: index 2 out of range for size 2");
    }

    #[test]
    fn index_add_accumulates_repeated_indices() {
        let x = Tensor::ones(&[3, 2], DType::F64);
        let src = t(&[1., 2., 10., 20., 100., 200.], &[3, 2]);
        let y = x.index_add(0, &idx(&[2, 0, 2], &[3]), &src).unwrap();
        assert_eq!(y.to_vec::<f64>().unwrap(), vec![11., 21., 1., 1., 102., 203.]);
        let y1 = x.index_add(1, &idx(&[1], &[1]), &t(&[5., 6., 7.], &[3, 1])).unwrap();
        assert_eq!(y1.to_vec::<f64>().unwrap(), vec![1., 6., 1., 7., 1., 8.]);
        // Onto zeros: the rows added, nothing else; the same checks.
        let z = Tensor::index_add_to_zeros(&[3, 2], 0, &idx(&[2, 0, 2], &[3]), &src).unwrap();
        assert_eq!((z.shape(), z.to_vec::<f64>().unwrap()), (&[3usize, 2][..], vec![10., 20., 0., 0., 101., 202.]));
        assert!(Tensor::index_add_to_zeros(&[3, 2], 0, &idx(&[3], &[1]), &t(&[1., 2.], &[1, 2])).is_err(), "index out of range");
        assert!(Tensor::index_add_to_zeros(&[3, 2], 0, &idx(&[1], &[1]), &src).is_err(), "src shape");
    }

    #[test]
    fn gather_follows_pytorch_and_scatter_add_is_its_adjoint() {
        // torch.gather(x, 1, [[0, 0], [1, 0]]) on [[1, 2], [3, 4]] = [[1, 1], [4, 3]]
        let x = t(&[1., 2., 3., 4.], &[2, 2]);
        let g = x.gather(1, &idx(&[0, 0, 1, 0], &[2, 2])).unwrap();
        assert_eq!(g.to_vec::<f64>().unwrap(), vec![1., 1., 4., 3.]);
        // dim 0 with an index smaller than x off dim: [[x[1][0], x[0][1]]]... shape [1, 2]
        let x3 = range(&[3, 3]);
        let g0 = x3.gather(0, &idx(&[2, 1], &[1, 2])).unwrap();
        assert_eq!(g0.to_vec::<f64>().unwrap(), vec![6., 4.]);
        // scatter_add: PyTorch example, src [[1..5]], index [[0, 1, 2, 0, 0]], dim 0 into zeros [3, 5]
        let src = t(&[1., 2., 3., 4., 5.], &[1, 5]);
        let z = Tensor::zeros(&[3, 5], DType::F64);
        let s = z.scatter_add(0, &idx(&[0, 1, 2, 0, 0], &[1, 5]), &src).unwrap();
        assert_eq!(s.to_vec::<f64>().unwrap(), vec![1., 0., 0., 4., 5., 0., 2., 0., 0., 0., 0., 0., 3., 0., 0.]);
        // along dim 1 (the slab-parallel path), repeats accumulate, src larger than index
        let s1 = Tensor::zeros(&[2, 3], DType::F64).scatter_add(1, &idx(&[2, 2, 0, 1], &[2, 2]), &range(&[2, 3])).unwrap();
        assert_eq!(s1.to_vec::<f64>().unwrap(), vec![0., 0., 1., 3., 4., 0.]);
    }

    #[test]
    fn embedding_keeps_id_shape() {
        let w = range(&[4, 2]).to_dtype(DType::F32).unwrap();
        let y = w.embedding(&idx(&[3, 0, 3, 1], &[2, 2])).unwrap();
        assert_eq!(y.shape(), &[2, 2, 2]);
        assert_eq!(y.to_vec::<f32>().unwrap(), vec![6., 7., 0., 1., 6., 7., 2., 3.]);
        assert_eq!(w.embedding(&Tensor::from_vec(vec![2i64], &[]).unwrap()).unwrap().shape(), &[2]);
    }

    #[test]
    fn large_inputs_take_the_parallel_paths() {
        let (n, d) = (300, 130);
        let x = range(&[n, d]);
        let ids: Vec<usize> = (0..2 * n).map(|i| (i * 7) % n).collect();
        let y = x.index_select(0, &idx(&ids, &[2 * n])).unwrap().to_vec::<f64>().unwrap();
        for (j, &i) in ids.iter().enumerate() {
            assert_eq!(y[j * d + 5], (i * d + 5) as f64);
        }
        let acc = Tensor::zeros(&[n, d], DType::F64).index_add(0, &idx(&ids, &[2 * n]), &range(&[2 * n, d])).unwrap();
        let acc = acc.to_vec::<f64>().unwrap();
        let mut want = vec![0.0; n * d];
        for (j, &i) in ids.iter().enumerate() {
            for c in 0..d {
                want[i * d + c] += (j * d + c) as f64;
            }
        }
        assert_eq!(acc, want);
        // scatter along dim 1 of a big tensor, then gather it back
        let index = idx(&(0..n * d).map(|v| (v * 31) % d).collect::<Vec<_>>(), &[n, d]);
        let sc = Tensor::zeros(&[n, d], DType::F64).scatter_add(1, &index, &x).unwrap();
        assert_eq!(sc.sum_all().unwrap().to_scalar().unwrap(), x.sum_all().unwrap().to_scalar().unwrap());
        let ga = x.gather(1, &index).unwrap().to_vec::<f64>().unwrap();
        assert_eq!(ga[d + 3], (d + (d + 3) * 31 % d) as f64);
    }
}
