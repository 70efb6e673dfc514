//! The GLiNER span head on top of the encoder (SPEC §4): projection, word
//! pooling (each word's first sub-token, as GLiNER; or its last, or the mean
//! of all), BiLSTM, markerV0 span representations, the label-prompt FFN,
//! and span·label logits.

use std::ops::Range;

use kogner_autograd::ops::lstm::{bilstm, LstmWeights};
use kogner_autograd::Var;
use kogner_tensor::{Error, PackedLinear, Result, Tensor};

use super::word_shape::WORD_SHAPES;
use crate::builder::{Init, ParamBuilder};
use crate::config::{GlinerConfig, SubtokenPooling};
use crate::nn::{Ffn, Linear, Mode};

/// What the head needs besides the encoder output, per batch of B examples.
#[derive(Clone, Debug)]
pub struct HeadInputs {
    /// Per example and word slot (0..N): the token positions of the word's
    /// sub-tokens, None for an empty slot (padding, or a word that produced
    /// no sub-token — GLiNER's shifted-slot quirk).
    pub word_tokens: Vec<Vec<Option<Range<usize>>>>,
    /// Words per example (N_b ≤ N); spans are valid iff end < text_length.
    pub text_lengths: Vec<usize>,
    /// Per example, the token position of each label's `<<ENT>>` (C_b ≤ C).
    pub ent_positions: Vec<Vec<usize>>,
    /// Per example, each word's [`word_shape`](super::word_shape::word_shape) class (N_b entries); read only
    /// by a head with a word-shape table.
    pub word_shapes: Vec<Vec<u8>>,
}

impl HeadInputs {
    pub fn num_words(&self) -> usize {
        self.word_tokens.iter().map(|w| w.len()).max().unwrap_or(0)
    }
    pub fn num_labels(&self) -> usize {
        self.ent_positions.iter().map(|c| c.len()).max().unwrap_or(0)
    }
}

/// The word-shape table's name in the state dict.
pub const WORD_SHAPE_TABLE: &str = "word_shape_embedding.weight";

/// markerV0: start/end FFNs per word, then an FFN over [ReLU(start_i); ReLU(end_j)].
pub struct SpanMarker {
    pub project_start: Ffn,
    pub project_end: Ffn,
    pub out_project: Ffn,
}

pub struct GlinerHead {
    pub hidden: usize,
    pub max_width: usize,
    pub dropout: f64,
    pub subtoken_pooling: SubtokenPooling,
    pub projection: Option<Linear>,
    pub lstm_fwd: LstmWeights,
    pub lstm_bwd: LstmWeights,
    pub span: SpanMarker,
    pub prompt_rep: Ffn,
    /// [WORD_SHAPES, D], added to the word vectors (`word_shape` in the config).
    pub word_shape_embedding: Option<Var>,
    /// Inference: out_project.0's start and end halves packed for the GEMM
    /// (see [`GlinerHead::pack_for_inference`]).
    out_l0_halves: Option<[PackedLinear; 2]>,
}

/// Every intermediate of a forward pass (handles; cheap to keep).
pub struct HeadOutput {
    /// [B, T, D]
    pub token_reps: Var,
    /// [B, N, D]
    pub words_embedding: Var,
    /// [B, N, D]
    pub lstm_output: Var,
    /// [B, C, D]
    pub prompts_before: Var,
    /// [B, C, D]
    pub prompts_after: Var,
    /// [B, N, D]
    pub start_rep: Var,
    /// [B, N, D]
    pub end_rep: Var,
    /// [B, N, K, D]; None on the inference fast path, which never forms them.
    pub span_reps: Option<Var>,
    /// [B, N, K, C]
    pub logits: Var,
}

/// Why `hidden` cannot be a GLiNER head width, if it cannot: the BiLSTM
/// runs two directions of `hidden / 2` each.
pub fn head_width_problem(hidden: usize) -> Option<String> {
    (hidden < 2 || !hidden.is_multiple_of(2)).then(|| format!("{hidden} must be even and at least 2 (the BiLSTM halves it)"))
}

fn lstm_weights(b: &ParamBuilder, suffix: &str, d_in: usize, h: usize) -> Result<LstmWeights> {
    let bound = 1.0 / (h as f64).sqrt();
    let u = Init::Uniform(bound);
    Ok(LstmWeights {
        w_ih: b.get(&format!("weight_ih_l0{suffix}"), &[4 * h, d_in], u)?,
        w_hh: b.get(&format!("weight_hh_l0{suffix}"), &[4 * h, h], u)?,
        b_ih: b.get(&format!("bias_ih_l0{suffix}"), &[4 * h], u)?,
        b_hh: b.get(&format!("bias_hh_l0{suffix}"), &[4 * h], u)?,
    })
}

impl GlinerHead {
    /// `b` is the model root.
    pub fn new(b: &ParamBuilder, config: &GlinerConfig) -> Result<Self> {
        let (encoder_hidden, hidden) = (config.encoder.hidden_size(), config.hidden_size);
        let (max_width, dropout) = (config.max_width, config.dropout);
        if let Some(problem) = head_width_problem(hidden) {
            return Err(Error::Msg(format!("gliner_config.json: hidden_size {problem}")));
        }
        let projection = if encoder_hidden != hidden {
            Some(Linear::new(&b.pp("token_rep_layer").pp("projection"), encoder_hidden, hidden, true)?)
        } else {
            None
        };
        let rnn = b.pp("rnn").pp("lstm");
        let span = b.pp("span_rep_layer").pp("span_rep_layer");
        Ok(GlinerHead {
            hidden,
            max_width,
            dropout,
            subtoken_pooling: config.subtoken_pooling,
            projection,
            lstm_fwd: lstm_weights(&rnn, "", hidden, hidden / 2)?,
            lstm_bwd: lstm_weights(&rnn, "_reverse", hidden, hidden / 2)?,
            span: SpanMarker {
                project_start: Ffn::new(&span.pp("project_start"), hidden, hidden, dropout)?,
                project_end: Ffn::new(&span.pp("project_end"), hidden, hidden, dropout)?,
                out_project: Ffn::new(&span.pp("out_project"), 2 * hidden, hidden, dropout)?,
            },
            prompt_rep: Ffn::new(&b.pp("prompt_rep_layer"), hidden, hidden, dropout)?,
            word_shape_embedding: match config.word_shape {
                true => Some(b.get(WORD_SHAPE_TABLE, &[WORD_SHAPES, hidden], Init::Zeros)?),
                false => None,
            },
            out_l0_halves: None,
        })
    }

    /// Inference only: packs the head's weight matrices once for the GEMM
    /// (the projection, the start / end / prompt FFNs, and the two halves of
    /// out_project.0 that [`Self::logits_inference`] multiplies by).
    pub fn pack_for_inference(&mut self) -> Result<()> {
        if let Some(p) = &mut self.projection {
            p.pack_for_inference()?;
        }
        for ffn in [&mut self.span.project_start, &mut self.span.project_end, &mut self.prompt_rep] {
            ffn.pack_for_inference()?;
        }
        let (w, d) = (self.span.out_project.l0.weight.value(), self.hidden);
        self.out_l0_halves = Some([w.narrow(1, 0, d)?.pack_linear_weight()?, w.narrow(1, d, d)?.pack_linear_weight()?]);
        Ok(())
    }

    /// encoder_out [B, T, H] → logits [B, N, K, C] and every intermediate.
    pub fn forward(&self, encoder_out: &Var, inputs: &HeadInputs, mode: &Mode) -> Result<HeadOutput> {
        let s = encoder_out.shape();
        let (bsz, t) = (s[0], s[1]);
        if inputs.word_tokens.len() != bsz || inputs.ent_positions.len() != bsz || inputs.text_lengths.len() != bsz {
            return Err(Error::Msg(format!("gliner head: inputs describe {} examples, encoder output has {bsz}", inputs.word_tokens.len())));
        }
        let token_reps = match &self.projection {
            Some(p) => p.forward(encoder_out)?,
            None => encoder_out.clone(),
        };
        let d = self.hidden;
        let flat_tokens = token_reps.reshape(&[bsz * t, d])?;

        let (n, c) = (inputs.num_words(), inputs.num_labels());
        let (pooling, word_mask) = word_pooling(inputs, self.subtoken_pooling, t, n)?;
        let mut words_embedding = match pooling {
            WordPooling::Gather(idx) => flat_tokens.index_select(0, &idx)?.reshape(&[bsz, n, d])?,
            WordPooling::Average(weights) => Var::constant(weights).matmul(&token_reps)?,
        };
        if let Some(table) = &self.word_shape_embedding {
            words_embedding = words_embedding.add(&table.index_select(0, &shape_index(inputs, n)?)?.reshape(&[bsz, n, d])?)?;
        }
        let words_embedding = words_embedding.mul(&Var::constant(word_mask))?;

        let lengths: Vec<usize> = inputs.text_lengths.iter().map(|&l| l.min(n)).collect();
        let lstm_output = bilstm(&words_embedding, &lengths, &self.lstm_fwd, &self.lstm_bwd)?;

        let prompt_idx = prompt_gather(inputs, t, c)?;
        let prompts_before = flat_tokens.index_select(0, &prompt_idx)?.reshape(&[bsz, c, d])?;
        let prompts_after = self.prompt_rep.forward(&prompts_before, mode)?;

        let start_rep = self.span.project_start.forward(&lstm_output, mode)?;
        let end_rep = self.span.project_end.forward(&lstm_output, mode)?;

        let k = self.max_width;
        let (span_reps, logits) = if mode.training || Var::needs_grad(&[&start_rep, &end_rep, &prompts_after]) {
            let span_reps = self.span_reps(&start_rep, &end_rep, &inputs.text_lengths, mode)?;
            let logits = span_reps
                .reshape(&[bsz, n * k, d])?
                .matmul(&prompts_after.transpose(-2, -1)?)?
                .reshape(&[bsz, n, k, c])?;
            (Some(span_reps), logits)
        } else {
            (None, Var::constant(self.logits_inference(&start_rep, &end_rep, &prompts_after, &inputs.text_lengths)?))
        };
        Ok(HeadOutput { token_reps, words_embedding, lstm_output, prompts_before, prompts_after, start_rep, end_rep, span_reps, logits })
    }

    /// Span representations [B, N, K, D] by the split first layer:
    /// out_project.0 acts on [ReLU(start_i); ReLU(end_j)], so its product
    /// splits into a per-word start part and a per-word end part, summed
    /// per span — the 2D→4D product runs per word, not per span (3× fewer
    /// span FLOPs than GLiNER's code; equal up to rounding, see the test).
    pub fn span_reps(&self, start_rep: &Var, end_rep: &Var, text_lengths: &[usize], mode: &Mode) -> Result<Var> {
        let s = start_rep.shape();
        let (bsz, n, d) = (s[0], s[1], s[2]);
        let k = self.max_width;
        let l0 = &self.span.out_project.l0;
        let w_start = l0.weight.narrow(1, 0, d)?;
        let w_end = l0.weight.narrow(1, d, d)?;
        let from_start = start_rep.relu()?.linear(&w_start, None)?.reshape(&[bsz * n, 4 * d])?;
        let from_end = end_rep.relu()?.linear(&w_end, l0.bias.as_ref())?.reshape(&[bsz * n, 4 * d])?;
        let (si, ei) = span_word_index(bsz, n, k, text_lengths)?;
        let hidden = from_start.index_select(0, &si)?.add(&from_end.index_select(0, &ei)?)?.relu()?;
        let hidden = mode.dropout(&hidden, self.span.out_project.dropout)?;
        self.span.out_project.l3.forward(&hidden)?.reshape(&[bsz, n, k, d])
    }

    /// Inference logits [B, N, K, C] without forming span representations.
    ///
    /// logit(span, c) = (ReLU(h_span)·W3ᵀ + b3)·p_c = ReLU(h_span)·(W3ᵀ p_c) + b3·p_c,
    /// so the 4D→D product per span (the head's largest GEMM) becomes C dot
    /// products of length 4D per span against W3ᵀ p_c, computed once per
    /// example. h_span = from_start[i] + from_end[j] as in [`Self::span_reps`].
    /// Same numbers up to rounding (tested against the fixtures' logits).
    pub fn logits_inference(&self, start_rep: &Var, end_rep: &Var, prompts: &Var, text_lengths: &[usize]) -> Result<Tensor> {
        use rayon::prelude::*;
        let s = start_rep.shape();
        let (bsz, n, d) = (s[0], s[1], s[2]);
        let (k, c, hid) = (self.max_width, prompts.shape()[1], 4 * d);
        let l0 = &self.span.out_project.l0;
        let l3 = &self.span.out_project.l3;
        let bias0 = l0.bias.as_ref().map(|b| b.value());
        let (starts, ends) = (start_rep.value().relu()?, end_rep.value().relu()?);
        let (from_start, from_end) = match &self.out_l0_halves {
            Some([w_start, w_end]) => (starts.linear_packed(w_start, None)?, ends.linear_packed(w_end, bias0.as_ref())?),
            None => {
                let w0 = l0.weight.value();
                (starts.linear(&w0.narrow(1, 0, d)?, None)?, ends.linear(&w0.narrow(1, d, d)?, bias0.as_ref())?)
            }
        };
        // q[b, c, :] = W3ᵀ p_{b,c} (4D), beta[b, c] = b3·p_{b,c}
        let p = prompts.value().contiguous()?;
        let q = p.matmul(&l3.weight.value())?.contiguous()?;
        let beta = match &l3.bias {
            Some(b3) => p.matmul(&b3.value().reshape(&[d, 1])?)?.contiguous()?.to_vec::<f32>()?,
            None => vec![0.0; bsz * c],
        };
        let (fs, fe, qs) = (from_start.as_slice::<f32>()?, from_end.as_slice::<f32>()?, q.as_slice::<f32>()?);
        let mut out = vec![0f32; bsz * n * k * c];
        out.par_chunks_mut(k * c).enumerate().for_each_init(
            || vec![0f32; hid],
            |h, (row, o)| {
                let (b, i) = (row / n, row % n);
                for w in 0..k {
                    // invalid spans read word 0, as GLiNER's zeroed span_idx
                    let (si, ei) = if i + w < text_lengths[b] { (i, i + w) } else { (0, 0) };
                    let (a, e) = (&fs[(b * n + si) * hid..][..hid], &fe[(b * n + ei) * hid..][..hid]);
                    for j in 0..hid {
                        h[j] = (a[j] + e[j]).max(0.0);
                    }
                    for cc in 0..c {
                        o[w * c + cc] = kogner_kernels::reduce::dot(h, &qs[(b * c + cc) * hid..][..hid]) + beta[b * c + cc];
                    }
                }
            },
        );
        Tensor::from_vec(out, &[bsz, n, k, c])
    }

    /// GLiNER's literal span computation (concatenate, then the full FFN):
    /// the reference the fast path is tested against.
    pub fn span_reps_literal(&self, start_rep: &Var, end_rep: &Var, text_lengths: &[usize], mode: &Mode) -> Result<Var> {
        let s = start_rep.shape();
        let (bsz, n, d) = (s[0], s[1], s[2]);
        let k = self.max_width;
        let (si, ei) = span_word_index(bsz, n, k, text_lengths)?;
        let starts = start_rep.reshape(&[bsz * n, d])?.index_select(0, &si)?;
        let ends = end_rep.reshape(&[bsz * n, d])?.index_select(0, &ei)?;
        let cat = Var::cat(&[&starts, &ends], 1)?.relu()?;
        self.span.out_project.forward(&cat, mode)?.reshape(&[bsz, n, k, d])
    }
}

/// Row of the flattened [B·N] word sequence where each span (b, i, k)
/// starts and ends; invalid spans (i + k ≥ text length) use word 0, as
/// GLiNER zeroes their span_idx.
fn span_word_index(bsz: usize, n: usize, k: usize, text_lengths: &[usize]) -> Result<(Tensor, Tensor)> {
    let mut si = Vec::with_capacity(bsz * n * k);
    let mut ei = Vec::with_capacity(bsz * n * k);
    for (b, &len) in text_lengths.iter().enumerate() {
        for i in 0..n {
            for w in 0..k {
                let valid = i + w < len;
                si.push(b * n + if valid { i } else { 0 });
                ei.push(b * n + if valid { i + w } else { 0 });
            }
        }
    }
    Ok((Tensor::from_indices(&si, &[si.len()])?, Tensor::from_indices(&ei, &[ei.len()])?))
}

/// Shape-table row of every word slot [B·N] (0 for empty slots).
fn shape_index(inputs: &HeadInputs, n: usize) -> Result<Tensor> {
    if inputs.word_shapes.len() != inputs.text_lengths.len() {
        return Err(Error::Msg(format!("gliner head: word shapes for {} examples, expected {}", inputs.word_shapes.len(), inputs.text_lengths.len())));
    }
    let mut idx = vec![0usize; inputs.word_shapes.len() * n];
    for (b, shapes) in inputs.word_shapes.iter().enumerate() {
        if shapes.len() > n || shapes.iter().any(|&s| s as usize >= WORD_SHAPES) {
            return Err(Error::Msg(format!("gliner head: example {b}'s word shapes do not fit {n} slots of {WORD_SHAPES} classes")));
        }
        for (j, &s) in shapes.iter().enumerate() {
            idx[b * n + j] = s as usize;
        }
    }
    Tensor::from_indices(&idx, &[idx.len()])
}

/// How the head reads word vectors off the token vectors.
enum WordPooling {
    /// The flattened token row [B·N] of every word slot (first / last).
    Gather(Tensor),
    /// [B, N, T] weights 1/len on the word's sub-tokens (mean), so that
    /// words = weights · token_reps.
    Average(Tensor),
}

/// The pooling of every word slot, and a [B, N, 1] mask zeroing empty slots.
fn word_pooling(inputs: &HeadInputs, pooling: SubtokenPooling, t: usize, n: usize) -> Result<(WordPooling, Tensor)> {
    let bsz = inputs.word_tokens.len();
    // [B·N] sub-token range of every slot (None: empty), checked against T
    let mut ranges = Vec::with_capacity(bsz * n);
    for (b, slots) in inputs.word_tokens.iter().enumerate() {
        for j in 0..n {
            let range = slots.get(j).cloned().flatten();
            if let Some(r) = range.as_ref().filter(|r| r.is_empty() || r.end > t) {
                return Err(Error::Msg(format!("word slot {j} of example {b} points at tokens {r:?} of {t}")));
            }
            ranges.push(range);
        }
    }
    let mask: Vec<f32> = ranges.iter().map(|r| if r.is_some() { 1.0 } else { 0.0 }).collect();
    let pooled = match pooling {
        SubtokenPooling::First | SubtokenPooling::Last => {
            // empty slots read their example's token 0 (masked to zero)
            let row = |(slot, r): (usize, &Option<Range<usize>>)| {
                (slot / n) * t
                    + match r {
                        None => 0,
                        Some(r) if pooling == SubtokenPooling::First => r.start,
                        Some(r) => r.end - 1,
                    }
            };
            let idx: Vec<usize> = ranges.iter().enumerate().map(row).collect();
            WordPooling::Gather(Tensor::from_indices(&idx, &[bsz * n])?)
        }
        SubtokenPooling::Mean => {
            let mut weights = vec![0f32; bsz * n * t];
            for (slot, r) in ranges.iter().enumerate() {
                if let Some(r) = r {
                    weights[slot * t..][r.clone()].fill(1.0 / r.len() as f32);
                }
            }
            WordPooling::Average(Tensor::from_vec(weights, &[bsz, n, t])?)
        }
    };
    Ok((pooled, Tensor::from_vec(mask, &[bsz, n, 1])?))
}

/// Flattened token row of every label's `<<ENT>>`; examples with fewer
/// labels repeat their first one (masked downstream).
fn prompt_gather(inputs: &HeadInputs, t: usize, c: usize) -> Result<Tensor> {
    let bsz = inputs.ent_positions.len();
    let mut idx = Vec::with_capacity(bsz * c);
    for (b, pos) in inputs.ent_positions.iter().enumerate() {
        if pos.is_empty() {
            return Err(Error::Msg(format!("example {b} has no labels")));
        }
        for j in 0..c {
            let p = *pos.get(j).unwrap_or(&pos[0]);
            if p >= t {
                return Err(Error::Msg(format!("label {j} of example {b} points at token {p} of {t}")));
            }
            idx.push(b * t + p);
        }
    }
    Tensor::from_indices(&idx, &[bsz * c])
}
