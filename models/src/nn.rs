//! Layers shared by the models, named as in PyTorch state dicts.

use std::sync::Mutex;

use kogner_autograd::Var;
use kogner_tensor::{DType, Error, PackedLinear, Result, Rng, Tensor};

use crate::builder::{Init, ParamBuilder};

/// Training or inference, and the dropout random stream.
pub struct Mode {
    pub training: bool,
    rng: Mutex<Rng>,
}

impl Mode {
    pub fn inference() -> Self {
        Mode { training: false, rng: Mutex::new(Rng::new(0)) }
    }
    pub fn training(seed: u64) -> Self {
        Mode { training: true, rng: Mutex::new(Rng::new(seed)) }
    }
    /// The dropout stream's state (checkpoints).
    pub fn rng_state(&self) -> (u64, u64) {
        self.rng.lock().expect("rng lock").state()
    }
    pub fn set_rng_state(&self, key: u64, counter: u64) {
        *self.rng.lock().expect("rng lock") = Rng::from_state(key, counter);
    }
    /// Inverted dropout when training with p > 0; identity otherwise.
    pub fn dropout(&self, x: &Var, p: f64) -> Result<Var> {
        if !self.training || p == 0.0 {
            return Ok(x.clone());
        }
        let mut rng = self.rng.lock().expect("rng lock");
        x.dropout(p, &mut rng, true)
    }
}

/// `y = x·Wᵀ + b`, W [out, in].
pub struct Linear {
    /// Empty `[0, in]` once the layer is packed for inference.
    pub weight: Var,
    pub bias: Option<Var>,
    /// The weight in the GEMM kernel's layout (see [`Linear::pack_for_inference`]).
    packed: Option<PackedLinear>,
}

impl Linear {
    /// PyTorch's default init: U(±1/√in) for weight and bias.
    pub fn new(b: &ParamBuilder, d_in: usize, d_out: usize, bias: bool) -> Result<Linear> {
        let bound = 1.0 / (d_in.max(1) as f64).sqrt();
        Ok(Linear {
            weight: b.get("weight", &[d_out, d_in], Init::Uniform(bound))?,
            bias: if bias { Some(b.get("bias", &[d_out], Init::Uniform(bound))?) } else { None },
            packed: None,
        })
    }
    /// x [..., in] → [..., out]
    pub fn forward(&self, x: &Var) -> Result<Var> {
        match &self.packed {
            None => x.linear(&self.weight, self.bias.as_ref()),
            Some(packed) => {
                if Var::needs_grad(&[x]) {
                    return Err(Error::Msg("linear: a layer packed for inference cannot pass gradients".into()));
                }
                let bias = self.bias.as_ref().map(Var::value);
                Ok(Var::constant(x.value().linear_packed(packed, bias.as_ref())?))
            }
        }
    }
    pub fn d_out(&self) -> usize {
        match &self.packed {
            Some(packed) => packed.d_out(),
            None => self.weight.shape()[0],
        }
    }

    /// Inference only: packs the weight once in the GEMM kernel's panel
    /// layout (products then skip the per-call packing, same results bit
    /// for bit) and lets go of the unpacked copy: `weight` becomes an empty
    /// constant. The memory is freed once no parameter store holds the old
    /// `Var` (see `Gliner::pack_for_inference`). The layer can no longer be
    /// trained or saved.
    pub fn pack_for_inference(&mut self) -> Result<()> {
        if self.packed.is_none() {
            let packed = self.weight.value().pack_linear_weight()?;
            self.weight = Var::constant(Tensor::zeros(&[0, packed.d_in()], DType::F32));
            self.packed = Some(packed);
        }
        Ok(())
    }
}

pub struct LayerNorm {
    pub weight: Var,
    pub bias: Var,
    pub eps: f64,
}

impl LayerNorm {
    pub fn new(b: &ParamBuilder, dim: usize, eps: f64) -> Result<LayerNorm> {
        Ok(LayerNorm { weight: b.get("weight", &[dim], Init::Ones)?, bias: b.get("bias", &[dim], Init::Zeros)?, eps })
    }
    /// Normalise the last dim.
    pub fn forward(&self, x: &Var) -> Result<Var> {
        x.layer_norm(Some(&self.weight), Some(&self.bias), self.eps)
    }
}

pub struct Embedding {
    pub weight: Var,
}

impl Embedding {
    pub fn new(b: &ParamBuilder, rows: usize, dim: usize, std: f64) -> Result<Embedding> {
        Ok(Embedding { weight: b.get("weight", &[rows, dim], Init::Normal(std))? })
    }
    /// ids (i64) of any shape → ids.shape + [dim]
    pub fn forward(&self, ids: &kogner_tensor::Tensor) -> Result<Var> {
        self.weight.embedding(ids)
    }
}

/// GLiNER's `create_projection_layer`: Linear(in→4·out) ReLU Dropout Linear(4·out→out),
/// stored as `.0` and `.3` of an `nn.Sequential`.
pub struct Ffn {
    pub l0: Linear,
    pub l3: Linear,
    pub dropout: f64,
}

impl Ffn {
    /// Packs both layers for inference ([`Linear::pack_for_inference`]).
    pub fn pack_for_inference(&mut self) -> Result<()> {
        self.l0.pack_for_inference()?;
        self.l3.pack_for_inference()
    }
}

impl Ffn {
    pub fn new(b: &ParamBuilder, d_in: usize, d_out: usize, dropout: f64) -> Result<Ffn> {
        Ok(Ffn { l0: Linear::new(&b.pp("0"), d_in, 4 * d_out, true)?, l3: Linear::new(&b.pp("3"), 4 * d_out, d_out, true)?, dropout })
    }
    /// x [..., in] → [..., out]
    pub fn forward(&self, x: &Var, mode: &Mode) -> Result<Var> {
        let h = self.l0.forward(x)?.relu()?;
        self.l3.forward(&mode.dropout(&h, self.dropout)?)
    }
}
