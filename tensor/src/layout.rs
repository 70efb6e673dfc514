//! Shape, strides and offset of a tensor view into its storage.

use crate::{Error, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    shape: Vec<usize>,
    /// Elements to step in storage per index step; 0 for broadcast dims.
    strides: Vec<usize>,
    offset: usize,
}

impl Layout {
    /// Row-major contiguous layout of `shape` at offset 0.
    pub fn contiguous(shape: &[usize]) -> Self {
        Layout { shape: shape.to_vec(), strides: contiguous_strides(shape), offset: 0 }
    }
    pub fn new(shape: Vec<usize>, strides: Vec<usize>, offset: usize) -> Self {
        debug_assert_eq!(shape.len(), strides.len());
        Layout { shape, strides, offset }
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }
    pub fn offset(&self) -> usize {
        self.offset
    }
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    /// Row-major with no gaps (dims of size 1 may have any stride).
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1;
        for (&d, &s) in self.shape.iter().zip(&self.strides).rev() {
            if d != 1 && s != expected {
                return false;
            }
            expected *= d;
        }
        true
    }

    /// Resolve a possibly negative dim (`-1` = last) against the rank.
    pub fn dim(&self, op: &'static str, dim: isize) -> Result<usize> {
        resolve_dim(op, dim, self.rank())
    }

    pub fn permute(&self, op: &'static str, perm: &[usize]) -> Result<Layout> {
        let r = self.rank();
        let mut seen = vec![false; r];
        if perm.len() != r || perm.iter().any(|&p| p >= r || std::mem::replace(&mut seen[p], true)) {
            return Err(Error::shape(op, format!("{perm:?} is not a permutation of {r} dims")));
        }
        Ok(Layout {
            shape: perm.iter().map(|&p| self.shape[p]).collect(),
            strides: perm.iter().map(|&p| self.strides[p]).collect(),
            offset: self.offset,
        })
    }

    /// Keep `len` entries of `dim` starting at `start`.
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Layout> {
        if dim >= self.rank() || start + len > self.shape[dim] {
            return Err(Error::shape(
                "narrow",
                format!("range {start}..{} out of bounds for dim {dim} of shape {:?}", start + len, self.shape),
            ));
        }
        let mut l = self.clone();
        l.shape[dim] = len;
        if len > 0 {
            l.offset += start * self.strides[dim];
        }
        Ok(l)
    }

    /// View as `shape` by broadcasting (numpy rules; new leading dims allowed).
    pub fn broadcast_as(&self, shape: &[usize]) -> Result<Layout> {
        let r = shape.len();
        if r < self.rank() {
            return Err(Error::ShapeMismatch { op: "broadcast_as", lhs: self.shape.clone(), rhs: shape.to_vec() });
        }
        let lead = r - self.rank();
        let mut strides = vec![0; r];
        for i in 0..self.rank() {
            let (have, want) = (self.shape[i], shape[lead + i]);
            if have == want {
                strides[lead + i] = self.strides[i];
            } else if have != 1 {
                return Err(Error::ShapeMismatch { op: "broadcast_as", lhs: self.shape.clone(), rhs: shape.to_vec() });
            }
        }
        Ok(Layout { shape: shape.to_vec(), strides, offset: self.offset })
    }

    /// Calls `f(offset, len, stride)` for every run along the last dim, in
    /// row-major order. Zero-sized tensors call nothing; rank 0 gives one run of 1.
    pub fn for_each_run(&self, mut f: impl FnMut(usize, usize, usize)) {
        if self.numel() == 0 {
            return;
        }
        if self.rank() == 0 {
            f(self.offset, 1, 1);
            return;
        }
        let r = self.rank();
        let (len, stride) = (self.shape[r - 1], self.strides[r - 1]);
        let outer = &self.shape[..r - 1];
        let mut idx = vec![0usize; outer.len()];
        let mut off = self.offset;
        loop {
            f(off, len, stride);
            // odometer increment over the outer dims
            let mut d = outer.len();
            loop {
                if d == 0 {
                    return;
                }
                d -= 1;
                idx[d] += 1;
                off += self.strides[d];
                if idx[d] < outer[d] {
                    break;
                }
                off -= self.strides[d] * outer[d];
                idx[d] = 0;
            }
        }
    }
}

pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; shape.len()];
    let mut acc = 1;
    for i in (0..shape.len()).rev() {
        strides[i] = acc;
        acc *= shape[i];
    }
    strides
}

pub fn resolve_dim(op: &'static str, dim: isize, rank: usize) -> Result<usize> {
    let d = if dim < 0 { dim + rank as isize } else { dim };
    if d < 0 || d as usize >= rank {
        return Err(Error::DimOutOfRange { op, dim, rank });
    }
    Ok(d as usize)
}

/// Numpy broadcast of two shapes.
pub fn broadcast_shape(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r { a[i + a.len() - r] } else { 1 };
        let db = if i + b.len() >= r { b[i + b.len() - r] } else { 1 };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(Error::ShapeMismatch { op, lhs: a.to_vec(), rhs: b.to_vec() }),
        };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_a_transposed_view() {
        let l = Layout::contiguous(&[2, 3]).permute("t", &[1, 0]).unwrap();
        let mut runs = vec![];
        l.for_each_run(|o, n, s| runs.push((o, n, s)));
        assert_eq!(runs, vec![(0, 2, 3), (1, 2, 3), (2, 2, 3)]);
        assert!(!l.is_contiguous());
    }

    #[test]
    fn broadcast_rules() {
        assert_eq!(broadcast_shape("b", &[3, 1, 4], &[5, 1]).unwrap(), vec![3, 5, 4]);
        assert!(broadcast_shape("b", &[3], &[4]).is_err());
        let l = Layout::contiguous(&[4]).broadcast_as(&[2, 4]).unwrap();
        assert_eq!(l.strides(), &[0, 1]);
    }
}
