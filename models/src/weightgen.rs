//! The GLiNER fixtures' bit-exact weight generator
//! (`shared/fixtures/gliner/weightgen.md`) and the fixtures' weight specs.
//!
//! Every randomly initialised fixture tensor comes from a counter-based
//! generator (fnv1a64 of the tensor name xor a seed, then splitmix64 per
//! element), so the weights can be regenerated bit for bit from an
//! `init_spec.json`: the MiniLM fixture stores no GLiNER head weights at all,
//! and [`assemble_minilm_fixture`] rebuilds its full state dict.

use std::path::Path;

use kogner_tensor::safetensors_io::SafeTensorsFile;
use kogner_tensor::{DType, Error, Result, Tensor};
use serde::Deserialize;

/// fnv1a64 of `bytes`.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The `n` values (row-major) of the tensor `name`:
/// `x_i * scale + offset` with `x_i` uniform in [-1, 1) from splitmix64 of
/// `fnv1a64(name) ^ seed` and the counter `i + 1`; two f32 roundings, no FMA.
pub fn generate(name: &str, n: usize, seed: u64, scale: f32, offset: f32) -> Vec<f32> {
    let key = fnv1a64(name.as_bytes()) ^ seed;
    (0..n as u64)
        .map(|i| {
            let mut z = key.wrapping_add((i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            // (z >> 40) < 2^24: exact in f32; / 2^24, * 2, - 1 are exact too.
            let x = ((z >> 40) as f32) / 16_777_216.0 * 2.0 - 1.0;
            // Written as two statements so no FMA contraction can happen
            // (Rust never contracts, but keep the two roundings explicit).
            let y = x * scale;
            y + offset
        })
        .collect()
}

/// One generated tensor of an `init_spec.json`.
#[derive(Clone, Debug, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    /// Decimal scale (informative; [`TensorSpec::scale`] uses `scale_bits`).
    #[serde(rename = "scale")]
    pub scale_decimal: f64,
    #[serde(rename = "offset")]
    pub offset_decimal: f64,
    /// The exact f32 scale as a bit pattern, e.g. `"0x3e4ccccd"`.
    #[serde(default)]
    pub scale_bits: Option<String>,
    #[serde(default)]
    pub offset_bits: Option<String>,
}

fn parse_bits(s: &str) -> Option<f32> {
    let h = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    u32::from_str_radix(h, 16).ok().map(f32::from_bits)
}

impl TensorSpec {
    /// The exact f32 scale: from `scale_bits` when present, else the decimal
    /// rounded to f32.
    pub fn scale(&self) -> Result<f32> {
        exact(&self.name, "scale_bits", self.scale_bits.as_deref(), self.scale_decimal)
    }
    pub fn offset(&self) -> Result<f32> {
        exact(&self.name, "offset_bits", self.offset_bits.as_deref(), self.offset_decimal)
    }
    pub fn numel(&self) -> Result<usize> {
        self.shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| Error::Msg(format!("init spec: tensor `{}`: shape {:?} overflows", self.name, self.shape)))
    }
    /// The generated tensor (f32, `shape`).
    pub fn generate(&self, seed: u64) -> Result<Tensor> {
        let v = generate(&self.name, self.numel()?, seed, self.scale()?, self.offset()?);
        Tensor::from_vec(v, &self.shape)
    }
}

fn exact(name: &str, field: &str, bits: Option<&str>, decimal: f64) -> Result<f32> {
    match bits {
        Some(b) => {
            let v = parse_bits(b)
                .ok_or_else(|| Error::Msg(format!("init spec: tensor `{name}`: {field} `{b}` is not a hex f32 bit pattern")))?;
            // The decimal is the f32 printed as f64: it must round to the same value.
            if (decimal as f32).to_bits() != v.to_bits() && !(v.is_nan() && decimal.is_nan()) {
                return Err(Error::Msg(format!(
                    "init spec: tensor `{name}`: {field} {b} ({v:e}) disagrees with the decimal value {decimal:e}"
                )));
            }
            Ok(v)
        }
        None => Ok(decimal as f32),
    }
}

/// `init_spec.json` of a GLiNER fixture.
#[derive(Clone, Debug, Deserialize)]
pub struct InitSpec {
    /// Where the spec came from (informative).
    #[serde(default)]
    pub generator: Option<String>,
    pub seed: u64,
    pub tensors: Vec<TensorSpec>,
    /// MiniLM only: the GLiNER tokens appended to the word embeddings (their
    /// values are stored in `added_embeddings.safetensors`).
    #[serde(default)]
    pub added_rows: Option<AddedRowsSpec>,
}

/// `added_rows` of the MiniLM `init_spec.json` (decimal scale only).
#[derive(Clone, Debug, Deserialize)]
pub struct AddedRowsSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub scale: f64,
    pub offset: f64,
    #[serde(default)]
    pub note: Option<String>,
}

impl AddedRowsSpec {
    /// The rows regenerated (scale and offset are the decimals rounded to
    /// f32); the assembly itself uses the stored `added_embeddings.safetensors`.
    pub fn generate(&self, seed: u64) -> Result<Tensor> {
        let n = self
            .shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| Error::Msg(format!("init spec: `{}`: shape {:?} overflows", self.name, self.shape)))?;
        Tensor::from_vec(generate(&self.name, n, seed, self.scale as f32, self.offset as f32), &self.shape)
    }
}

impl InitSpec {
    pub fn from_json(json: &str) -> Result<Self> {
        let spec: InitSpec = serde_json::from_str(json).map_err(|e| Error::Msg(format!("init spec: {e}")))?;
        spec.validate().map_err(Error::Msg)?;
        Ok(spec)
    }

    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
        let spec: InitSpec = serde_json::from_str(&text).map_err(|e| Error::file(path, format!("not a valid init spec: {e}")))?;
        spec.validate().map_err(|e| Error::file(path, e))?;
        Ok(spec)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for t in &self.tensors {
            if !seen.insert(t.name.as_str()) {
                return Err(format!("tensor `{}` listed twice", t.name));
            }
            t.numel().map_err(|e| e.to_string())?;
            t.scale().map_err(|e| e.to_string())?;
            t.offset().map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&TensorSpec> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Every tensor of `spec`, generated, in the spec's order.
pub fn generate_all(spec: &InitSpec) -> Result<Vec<(String, Tensor)>> {
    spec.tensors.iter().map(|t| Ok((t.name.clone(), t.generate(spec.seed)?))).collect()
}

/// Prefix of the encoder's keys inside a GLiNER state dict.
pub const ENCODER_PREFIX: &str = "token_rep_layer.bert_layer.model.";

/// The full GLiNER state dict of the `minilm` fixture, assembled as its
/// README says, from `shared_dir` (the `shared/` folder holding
/// `data/models/all-MiniLM-L6-v2/` and `fixtures/gliner/minilm/`):
///
/// 1. every MiniLM key K except `embeddings.position_ids` becomes
///    `token_rep_layer.bert_layer.model.K` (pooler included);
/// 2. the word embeddings get the rows of
///    `added_embeddings.safetensors:added_rows` appended ([30522, 384] →
///    [30525, 384]);
/// 3. every tensor of `init_spec.json` (`rnn.*`, `span_rep_layer.*`,
///    `prompt_rep_layer.*`) is generated.
///
/// Encoder tensors come first (sorted by MiniLM key), then the generated
/// ones in the spec's order. Every tensor is f32.
pub fn assemble_minilm_fixture(shared_dir: &Path) -> Result<Vec<(String, Tensor)>> {
    let fixture = shared_dir.join("fixtures/gliner/minilm");
    let encoder_path = shared_dir.join("data/models/all-MiniLM-L6-v2/model.safetensors");
    let added_path = fixture.join("added_embeddings.safetensors");
    let encoder = SafeTensorsFile::open(&encoder_path)?;
    let added_file = SafeTensorsFile::open(&added_path)?;
    let added = added_file.get("added_rows")?;
    if added.rank() != 2 {
        return Err(Error::file(&added_path, format!("tensor `added_rows` has shape {:?}, expected [rows, hidden]", added.shape())));
    }
    let added = added.to_dtype(DType::F32)?;

    let mut out = Vec::new();
    for key in encoder.names() {
        if key == "embeddings.position_ids" {
            continue;
        }
        let t = encoder.get(&key)?;
        if !t.dtype().is_float() {
            return Err(Error::file(&encoder_path, format!("tensor `{key}` has dtype {}, expected a float", t.dtype().name())));
        }
        let mut t = t.to_dtype(DType::F32)?;
        if key == "embeddings.word_embeddings.weight" {
            if t.rank() != 2 || t.shape()[1] != added.shape()[1] {
                return Err(Error::file(
                    &added_path,
                    format!("tensor `added_rows` has shape {:?}, word embeddings {:?}: widths differ", added.shape(), t.shape()),
                ));
            }
            let rows = t.shape()[0] + added.shape()[0];
            let mut v = t.to_vec::<f32>()?;
            v.extend(added.to_vec::<f32>()?);
            t = Tensor::from_vec(v, &[rows, added.shape()[1]])?;
        }
        out.push((format!("{ENCODER_PREFIX}{key}"), t));
    }
    let spec = InitSpec::from_file(fixture.join("init_spec.json"))?;
    out.extend(generate_all(&spec)?);
    Ok(out)
}
