//! Building a model's parameters by name, from a weight file or from a
//! random initialisation (`kogner init`), with every shape checked.
//!
//! Models ask for `builder.pp("encoder").get("weight", &[out, in], init)`;
//! the builder looks the full dotted name up in the source, checks the
//! shape, converts to f32, and records the parameter in a [`ParamStore`]
//! so the model round-trips through safetensors by name.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kogner_autograd::{ParamStore, Var};
use kogner_tensor::pytorch_io::PytorchFile;
use kogner_tensor::safetensors_io::SafeTensorsFile;
use kogner_tensor::{DType, Error, Result, Rng, Tensor};

/// Where parameter values come from.
pub trait TensorSource: Send {
    /// The tensor stored under `name`, or None when absent.
    fn tensor(&self, name: &str) -> Result<Option<Tensor>>;
    fn names(&self) -> Vec<String>;
    /// The file (for error messages).
    fn describe(&self) -> String;
}

/// The two weight-file readers share their access methods.
macro_rules! file_source {
    ($t:ty) => {
        impl TensorSource for $t {
            fn tensor(&self, name: &str) -> Result<Option<Tensor>> {
                if self.contains(name) {
                    self.get(name).map(Some)
                } else {
                    Ok(None)
                }
            }
            fn names(&self) -> Vec<String> {
                <$t>::names(self)
            }
            fn describe(&self) -> String {
                self.path().display().to_string()
            }
        }
    };
}

file_source!(SafeTensorsFile);
file_source!(PytorchFile);

/// An in-memory state dict (tests, assembled fixtures).
pub struct TensorMap {
    pub name: String,
    pub tensors: HashMap<String, Tensor>,
}

impl TensorSource for TensorMap {
    fn tensor(&self, name: &str) -> Result<Option<Tensor>> {
        Ok(self.tensors.get(name).cloned())
    }
    fn names(&self) -> Vec<String> {
        self.tensors.keys().cloned().collect()
    }
    fn describe(&self) -> String {
        self.name.clone()
    }
}

/// The weight files a model folder may hold, in the order they are preferred.
pub const WEIGHT_FILES: [&str; 2] = ["model.safetensors", "pytorch_model.bin"];

/// A model folder's weight file: `model.safetensors`, else `pytorch_model.bin`.
pub fn weight_file(dir: &Path) -> Result<PathBuf> {
    WEIGHT_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::file(dir, "no model.safetensors or pytorch_model.bin in the model folder"))
}

/// Open a weight file by extension: `.safetensors` or a PyTorch `.bin`.
pub fn open_weights(path: &Path) -> Result<Box<dyn TensorSource>> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => Ok(Box::new(SafeTensorsFile::open(path)?)),
        Some("bin") | Some("pt") | Some("pth") => Ok(Box::new(PytorchFile::open(path)?)),
        _ => Err(Error::file(path, "unknown weight format (expected .safetensors or .bin)")),
    }
}

/// How a parameter absent from the source is initialised.
#[derive(Clone, Copy, Debug)]
pub enum Init {
    Zeros,
    Ones,
    /// Normal(0, std).
    Normal(f64),
    /// Uniform(−bound, bound).
    Uniform(f64),
}

struct Inner {
    store: ParamStore,
    source: Option<Box<dyn TensorSource>>,
    /// Initialise tensors the source lacks instead of failing (a pretrained
    /// encoder under a fresh GLiNER head).
    init_missing: bool,
    rng: Rng,
    used: BTreeSet<String>,
}

/// A handle that builds parameters under a name prefix. Cheap to clone.
#[derive(Clone)]
pub struct ParamBuilder {
    inner: Arc<Mutex<Inner>>,
    prefix: String,
}

impl ParamBuilder {
    /// Parameters read from `source` (every requested name must be there).
    pub fn from_source(source: Box<dyn TensorSource>) -> Self {
        Self::make(Some(source), false, 0)
    }

    /// Parameters read from `source` where present, initialised from `seed` otherwise.
    pub fn from_source_or_random(source: Box<dyn TensorSource>, seed: u64) -> Self {
        Self::make(Some(source), true, seed)
    }

    /// Parameters initialised randomly from `seed` (nothing is read).
    pub fn random(seed: u64) -> Self {
        Self::make(None, true, seed)
    }

    fn make(source: Option<Box<dyn TensorSource>>, init_missing: bool, seed: u64) -> Self {
        let inner = Inner { store: ParamStore::new(), source, init_missing, rng: Rng::new(seed), used: BTreeSet::new() };
        ParamBuilder { inner: Arc::new(Mutex::new(inner)), prefix: String::new() }
    }

    /// A builder for the sub-module `name` (names join with '.').
    pub fn pp(&self, name: impl AsRef<str>) -> ParamBuilder {
        let name = name.as_ref();
        let prefix = if self.prefix.is_empty() { name.to_string() } else { format!("{}.{name}", self.prefix) };
        ParamBuilder { inner: self.inner.clone(), prefix }
    }

    pub fn full_name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// The parameter `name` of `shape` (f32).
    pub fn get(&self, name: &str, shape: &[usize], init: Init) -> Result<Var> {
        let full = self.full_name(name);
        let mut inner = self.inner.lock().expect("builder lock");
        let stored = match &inner.source {
            Some(src) => src.tensor(&full)?,
            None => None,
        };
        let from = inner.source.as_ref().map(|s| s.describe()).unwrap_or_default();
        let value = match stored {
            Some(t) => {
                if t.shape() != shape {
                    return Err(Error::Msg(format!("{from}: tensor `{full}` has shape {:?}, the config implies {shape:?}", t.shape())));
                }
                if !t.dtype().is_float() {
                    return Err(Error::Msg(format!("{from}: tensor `{full}` has non-float dtype {}", t.dtype().name())));
                }
                t.to_dtype(DType::F32)?
            }
            None if inner.init_missing => random_init(&mut inner.rng, shape, init)?,
            None => return Err(Error::Msg(format!("{from}: missing tensor `{full}`"))),
        };
        inner.used.insert(full.clone());
        inner.store.insert(full, value)
    }

    /// Whether the source holds `name` (optional tensors, e.g. a projection
    /// that exists only when widths differ). A random builder has none.
    pub fn has(&self, name: &str) -> Result<bool> {
        let inner = self.inner.lock().expect("builder lock");
        match &inner.source {
            Some(src) => Ok(src.tensor(&self.full_name(name))?.is_some()),
            None => Ok(false),
        }
    }

    /// Source tensors no parameter asked for (e.g. an unused pooler).
    pub fn unused(&self) -> Vec<String> {
        let inner = self.inner.lock().expect("builder lock");
        match &inner.source {
            Some(src) => {
                let mut v: Vec<String> = src.names().into_iter().filter(|n| !inner.used.contains(n)).collect();
                v.sort();
                v
            }
            None => vec![],
        }
    }

    /// Every parameter built so far.
    pub fn params(&self) -> ParamStore {
        self.inner.lock().expect("builder lock").store.clone()
    }
}

fn random_init(rng: &mut Rng, shape: &[usize], init: Init) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = match init {
        Init::Zeros => vec![0.0; n],
        Init::Ones => vec![1.0; n],
        Init::Normal(std) => (0..n).map(|_| (rng.normal() * std) as f32).collect(),
        Init::Uniform(b) => (0..n).map(|_| ((rng.next_f64() * 2.0 - 1.0) * b) as f32).collect(),
    };
    Tensor::from_vec(v, shape)
}
