//! safetensors files: memory-mapped reading with checked access by name,
//! and atomic writing (temp file, fsync, rename).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use kogner_kernels::mmap::map_range;
use safetensors::{tensor::TensorView, Dtype as StDtype};
use serde_json::Value;

use crate::{DType, Error, Result, Tensor};

/// One tensor's entry in the header.
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    /// Byte range within the data section.
    start: u64,
    end: u64,
}

/// An open safetensors file. The header is read once; each tensor is
/// decoded on request from a memory map of just its bytes, which is dropped
/// right after — so loading a model never holds the whole file mapped on
/// top of the decoded weights (peak memory ≈ weights + one tensor).
pub struct SafeTensorsFile {
    path: PathBuf,
    file: File,
    data_start: u64,
    entries: HashMap<String, Entry>,
    metadata: HashMap<String, String>,
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

/// Bytes per element of a safetensors dtype name we decode.
fn dtype_size(name: &str) -> Option<usize> {
    Some(match name {
        "F64" | "I64" => 8,
        "F32" | "I32" => 4,
        "BF16" | "F16" => 2,
        "U8" | "BOOL" => 1,
        _ => return None,
    })
}

impl SafeTensorsFile {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bad = |msg: String| Error::file(path, format!("not a valid safetensors file: {msg}"));
        let mut file = File::open(path).map_err(|e| Error::file(path, e))?;
        let file_len = file.metadata().map_err(|e| Error::file(path, e))?.len();
        let mut len_bytes = [0u8; 8];
        file.read_exact(&mut len_bytes).map_err(|_| bad("shorter than its 8-byte header length".into()))?;
        let header_len = u64::from_le_bytes(len_bytes);
        if header_len > 100_000_000 || 8 + header_len > file_len {
            return Err(bad(format!("header length {header_len} does not fit a file of {file_len} bytes")));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header).map_err(|e| Error::file(path, e))?;
        let header: Value = serde_json::from_slice(&header).map_err(|e| bad(format!("header is not JSON: {e}")))?;
        let obj = header.as_object().ok_or_else(|| bad("header is not a JSON object".into()))?;
        let data_len = file_len - 8 - header_len;
        let mut entries = HashMap::new();
        let mut metadata = HashMap::new();
        for (name, v) in obj {
            if name == "__metadata__" {
                if let Some(m) = v.as_object() {
                    metadata = m.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string()))).collect();
                }
                continue;
            }
            let dtype = v["dtype"].as_str().ok_or_else(|| bad(format!("tensor `{name}` has no dtype")))?.to_string();
            let shape: Vec<usize> = v["shape"]
                .as_array()
                .and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect())
                .ok_or_else(|| bad(format!("tensor `{name}` has no valid shape")))?;
            let offs: Vec<u64> = v["data_offsets"].as_array().and_then(|a| a.iter().map(Value::as_u64).collect()).unwrap_or_default();
            let [start, end] = offs[..] else { return Err(bad(format!("tensor `{name}` has no valid data_offsets"))) };
            if start > end || end > data_len {
                return Err(bad(format!("tensor `{name}` data {start}..{end} outside the {data_len}-byte data section")));
            }
            if let Some(size) = dtype_size(&dtype) {
                let numel: usize = shape.iter().product();
                if (end - start) as usize != numel * size {
                    return Err(bad(format!("tensor `{name}` has {} bytes for shape {shape:?} of {dtype}", end - start)));
                }
            }
            entries.insert(name.clone(), Entry { dtype, shape, start, end });
        }
        Ok(SafeTensorsFile { path: path.to_path_buf(), file, data_start: 8 + header_len, entries, metadata })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.entries.keys().cloned().collect();
        v.sort();
        v
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    pub fn shape_of(&self, name: &str) -> Option<Vec<usize>> {
        self.entries.get(name).map(|e| e.shape.clone())
    }

    /// The `__metadata__` string map, if any.
    pub fn metadata(&self) -> HashMap<String, String> {
        self.metadata.clone()
    }

    /// Check that `__metadata__.format` is `format`; `what` names the kind
    /// of file in the error ("AdamW state", "EMA").
    pub fn expect_format(&self, format: &str, what: &str) -> Result<()> {
        if self.metadata.get("format").map(String::as_str) != Some(format) {
            return Err(Error::file(&self.path, format!("not an {what} file (metadata format ≠ {format})")));
        }
        Ok(())
    }

    /// The tensor `name` in its stored dtype.
    pub fn get(&self, name: &str) -> Result<Tensor> {
        let e = self.entries.get(name).ok_or_else(|| Error::file(&self.path, format!("missing tensor `{name}`")))?;
        let len = (e.end - e.start) as usize;
        let decoded = if len == 0 {
            decode(&e.dtype, &e.shape, &[])
        } else {
            let map = map_range(&self.file, self.data_start + e.start, len).map_err(|err| Error::file(&self.path, err))?;
            decode(&e.dtype, &e.shape, &map)
        };
        decoded.map_err(|msg| Error::file(&self.path, format!("tensor `{name}`: {msg}")))
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

fn decode(dtype: &str, shape: &[usize], b: &[u8]) -> std::result::Result<Tensor, String> {
    let t = match dtype {
        "F32" => Tensor::from_vec(le_vec(b, f32::from_le_bytes), shape),
        "F64" => Tensor::from_vec(le_vec(b, f64::from_le_bytes), shape),
        "BF16" => Tensor::from_vec(le_vec(b, |c: [u8; 2]| bf16::from_bits(u16::from_le_bytes(c))), shape),
        "F16" => Tensor::from_vec(le_vec(b, |c: [u8; 2]| f16::from_bits(u16::from_le_bytes(c))), shape),
        "U8" | "BOOL" => Tensor::from_vec(b.to_vec(), shape),
        "I64" => Tensor::from_vec(le_vec(b, i64::from_le_bytes), shape),
        "I32" => Tensor::from_vec(le_vec(b, |c: [u8; 4]| i32::from_le_bytes(c) as i64), shape),
        other => return Err(format!("unsupported dtype {other}")),
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
        // Like `kogner train --out`: missing folders are made, not an error after the work is done.
        std::fs::create_dir_all(dir)?;
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
        // Missing parent folders are created; a file in the way is an error naming the path.
        save(dir.join("new/deeper/t.safetensors"), &[("a", &a)], None).unwrap();
        assert_eq!(SafeTensorsFile::open(dir.join("new/deeper/t.safetensors")).unwrap().get("a").unwrap().to_vec::<f32>().unwrap(), a.to_vec::<f32>().unwrap());
        let e = save(dir.join("bad.safetensors/t.safetensors"), &[("a", &a)], None).unwrap_err().to_string();
        assert!(e.contains("bad.safetensors/t.safetensors"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
