//! safetensors files: memory-mapped reading with checked access by name,
//! and atomic writing (temp file, fsync, rename).

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use memmap2::Mmap;
use safetensors::{tensor::TensorView, Dtype as StDtype, SafeTensors};

use crate::{DType, Error, Result, Tensor};

/// An open safetensors file. Tensors are decoded on request from the mapping.
pub struct SafeTensorsFile {
    path: PathBuf,
    mmap: Mmap,
}

fn st_dtype(d: DType) -> StDtype {
    match d {
        DType::F32 => StDtype::F32,
        DType::F64 => StDtype::F64,
        DType::BF16 => StDtype::BF16,
        DType::F16 => StDtype::F16,
        DType::U8 => StDtype::U8,
        DType::I64 => StDtype::I64,
    }
}

impl SafeTensorsFile {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::file(path, e))?;
        // SAFETY note (not an unsafe block of ours to justify beyond this): the
        // mapping is read-only and we copy tensors out before returning them;
        // a file truncated underneath us would fault, as with any mmap reader.
        #[allow(unsafe_code)]
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::file(path, e))?;
        // Validate the header once so later errors are about tensors, not format.
        SafeTensors::deserialize(&mmap).map_err(|e| Error::file(path, format!("not a valid safetensors file: {e}")))?;
        Ok(SafeTensorsFile { path: path.to_path_buf(), mmap })
    }

    fn parsed(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.mmap).expect("validated in open")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.parsed().names().into_iter().cloned().collect();
        v.sort();
        v
    }

    pub fn contains(&self, name: &str) -> bool {
        self.parsed().tensor(name).is_ok()
    }

    pub fn shape_of(&self, name: &str) -> Option<Vec<usize>> {
        self.parsed().tensor(name).ok().map(|t| t.shape().to_vec())
    }

    /// The `__metadata__` string map, if any.
    pub fn metadata(&self) -> HashMap<String, String> {
        let (_, meta) = SafeTensors::read_metadata(&self.mmap).expect("validated in open");
        meta.metadata().clone().unwrap_or_default()
    }

    /// The tensor `name` in its stored dtype.
    pub fn get(&self, name: &str) -> Result<Tensor> {
        let st = self.parsed();
        let view = st
            .tensor(name)
            .map_err(|_| Error::file(&self.path, format!("missing tensor `{name}`")))?;
        decode(&view).map_err(|msg| Error::file(&self.path, format!("tensor `{name}`: {msg}")))
    }

    /// The tensor `name`, checked to have `shape`, converted to `dtype`
    /// (float dtypes convert into each other; others must match).
    pub fn get_as(&self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let t = self.get(name)?;
        if t.shape() != shape {
            return Err(Error::file(&self.path, format!("tensor `{name}` has shape {:?}, expected {shape:?}", t.shape())));
        }
        if t.dtype() != dtype && !(t.dtype().is_float() && dtype.is_float()) {
            return Err(Error::file(&self.path, format!("tensor `{name}` has dtype {}, expected {}", t.dtype().name(), dtype.name())));
        }
        t.to_dtype(dtype)
    }
}

fn le_vec<T, const N: usize>(bytes: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
    bytes.chunks_exact(N).map(|c| f(c.try_into().unwrap())).collect()
}

fn decode(view: &TensorView<'_>) -> std::result::Result<Tensor, String> {
    let shape = view.shape().to_vec();
    let b = view.data();
    let t = match view.dtype() {
        StDtype::F32 => Tensor::from_vec(le_vec(b, f32::from_le_bytes), &shape),
        StDtype::F64 => Tensor::from_vec(le_vec(b, f64::from_le_bytes), &shape),
        StDtype::BF16 => Tensor::from_vec(le_vec(b, |c: [u8; 2]| bf16::from_bits(u16::from_le_bytes(c))), &shape),
        StDtype::F16 => Tensor::from_vec(le_vec(b, |c: [u8; 2]| f16::from_bits(u16::from_le_bytes(c))), &shape),
        StDtype::U8 => Tensor::from_vec(b.to_vec(), &shape),
        StDtype::BOOL => Tensor::from_vec(b.to_vec(), &shape),
        StDtype::I64 => Tensor::from_vec(le_vec(b, i64::from_le_bytes), &shape),
        StDtype::I32 => Tensor::from_vec(le_vec(b, |c: [u8; 4]| i32::from_le_bytes(c) as i64), &shape),
        other => return Err(format!("unsupported dtype {other:?}")),
    };
    t.map_err(|e| e.to_string())
}

fn encode(t: &Tensor) -> Result<Vec<u8>> {
    let t = t.contiguous()?;
    Ok(match t.dtype() {
        DType::F32 => t.as_slice::<f32>()?.iter().flat_map(|v| v.to_le_bytes()).collect(),
        DType::F64 => t.as_slice::<f64>()?.iter().flat_map(|v| v.to_le_bytes()).collect(),
        DType::BF16 => t.as_slice::<bf16>()?.iter().flat_map(|v| v.to_bits().to_le_bytes()).collect(),
        DType::F16 => t.as_slice::<f16>()?.iter().flat_map(|v| v.to_bits().to_le_bytes()).collect(),
        DType::U8 => t.as_slice::<u8>()?.to_vec(),
        DType::I64 => t.as_slice::<i64>()?.iter().flat_map(|v| v.to_le_bytes()).collect(),
    })
}

/// Serialise named tensors (any order; written sorted by name) to bytes.
pub fn serialize(tensors: &[(&str, &Tensor)], metadata: Option<HashMap<String, String>>) -> Result<Vec<u8>> {
    let mut encoded = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        encoded.push((name.to_string(), t.dtype(), t.shape().to_vec(), encode(t)?));
    }
    let views: Vec<(String, TensorView<'_>)> = encoded
        .iter()
        .map(|(n, d, s, b)| {
            TensorView::new(st_dtype(*d), s.clone(), b).map(|v| (n.clone(), v)).map_err(|e| Error::Msg(format!("tensor `{n}`: {e}")))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize(views, &metadata).map_err(|e| Error::Msg(format!("safetensors: {e}")))
}

/// Write named tensors to `path` atomically.
pub fn save(path: impl AsRef<Path>, tensors: &[(&str, &Tensor)], metadata: Option<HashMap<String, String>>) -> Result<()> {
    let bytes = serialize(tensors, metadata)?;
    write_atomic(path, &bytes)
}

/// Write `bytes` to `path` so that readers see either the old file or the
/// complete new one: temp file in the same directory, fsync, rename, fsync dir.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    let path = path.as_ref();
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| Error::file(path, "not a file path"))?;
    let tmp = dir.join(format!(".{}.tmp{}", name.to_string_lossy(), std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| Error::file(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_dtype_and_clear_errors() {
        let dir = std::env::temp_dir().join(format!("kogner-st-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.safetensors");
        let a = Tensor::from_vec(vec![1.5f32, -2.0, 3.25, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
        let at = a.t().unwrap(); // non-contiguous view is written in row-major order
        let b = a.to_dtype(DType::BF16).unwrap();
        let i = Tensor::from_vec(vec![3i64, -1], &[2]).unwrap();
        let m = Tensor::from_vec(vec![0u8, 1, 1], &[3]).unwrap();
        let d = a.to_dtype(DType::F64).unwrap();
        let h = a.to_dtype(DType::F16).unwrap();
        save(&path, &[("a", &a), ("at", &at), ("b", &b), ("i", &i), ("m", &m), ("d", &d), ("h", &h)], None).unwrap();
        let f = SafeTensorsFile::open(&path).unwrap();
        assert_eq!(f.names(), vec!["a", "at", "b", "d", "h", "i", "m"]);
        assert_eq!(f.get("at").unwrap().to_vec::<f32>().unwrap(), at.to_vec::<f32>().unwrap());
        assert_eq!(f.get("i").unwrap().to_vec::<i64>().unwrap(), vec![3, -1]);
        assert_eq!(f.get("m").unwrap().to_vec::<u8>().unwrap(), vec![0, 1, 1]);
        assert_eq!(f.get("d").unwrap().to_vec::<f64>().unwrap(), d.to_vec::<f64>().unwrap());
        assert_eq!(f.get_as("b", &[2, 3], DType::F32).unwrap().to_vec::<f32>().unwrap(), a.to_vec::<f32>().unwrap());
        assert_eq!(f.get_as("h", &[2, 3], DType::F32).unwrap().to_vec::<f32>().unwrap(), a.to_vec::<f32>().unwrap());
        let e = f.get("nope").unwrap_err().to_string();
        assert!(e.contains("missing tensor `nope`") && e.contains("t.safetensors"), "{e}");
        let e = f.get_as("a", &[3, 2], DType::F32).unwrap_err().to_string();
        assert!(e.contains("shape [2, 3], expected [3, 2]"), "{e}");
        assert!(f.get_as("i", &[2], DType::F32).is_err());
        std::fs::write(dir.join("bad.safetensors"), b"garbage").unwrap();
        let e = SafeTensorsFile::open(dir.join("bad.safetensors")).err().unwrap().to_string();
        assert!(e.contains("not a valid safetensors file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
