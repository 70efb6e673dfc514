//! LSTM with PyTorch semantics: gates stacked `i, f, g, o` in the weight
//! rows, bias `b_ih + b_hh`, zero initial state.
//!
//! * [`lstm_cell`]: one step, composed from differentiable ops (the readable
//!   reference).
//! * [`lstm_direction`] / [`bilstm`]: whole padded batches with
//!   packed-sequence semantics. Sequences are sorted by length and packed
//!   step-major (as `pack_padded_sequence` does), so at every step the live
//!   sequences are a prefix of the batch; x·W_ihᵀ + b for all steps is one
//!   `linear`, and the recurrence is a single recorded op whose backward is
//!   hand-written BPTT. Recording each step as small ops instead would make
//!   every step's slice of the projection send back a full-size padded
//!   gradient: quadratic in the sequence length.

use std::cmp::Reverse;

use kogner_kernels::gemm::{gemm, GemmDims, MatMut, MatRef};
use kogner_kernels::Float;
use kogner_tensor::{with_float_dtype, Error, FloatElement, Result, Tensor};

use crate::Var;

/// One direction's parameters, in PyTorch's layout (gate blocks i, f, g, o).
#[derive(Clone, Debug)]
pub struct LstmWeights {
    /// [4H, I]
    pub w_ih: Var,
    /// [4H, H]
    pub w_hh: Var,
    /// [4H]
    pub b_ih: Var,
    /// [4H]
    pub b_hh: Var,
}

impl LstmWeights {
    /// Check every shape against input size `input`; returns the hidden size H.
    pub fn hidden_size(&self, input: usize) -> Result<usize> {
        let (w_ih, w_hh) = (self.w_ih.shape(), self.w_hh.shape());
        let bad = |what: &str, got: &[usize], want: &str| {
            Err(Error::shape("lstm", format!("{what} has shape {got:?}, expected {want}")))
        };
        let h = match w_hh[..] {
            [rows, h] if h > 0 && rows == 4 * h => h,
            _ => return bad("w_hh", &w_hh, "[4H, H] with H > 0"),
        };
        if w_ih != [4 * h, input] {
            return bad("w_ih", &w_ih, &format!("[{}, {input}]", 4 * h));
        }
        for (name, b) in [("b_ih", &self.b_ih), ("b_hh", &self.b_hh)] {
            if b.shape() != [4 * h] {
                return bad(name, &b.shape(), &format!("[{}]", 4 * h));
            }
        }
        Ok(h)
    }
}

/// One step: x_t [B, I], h [B, H], c [B, H] → (h' [B, H], c' [B, H]).
pub fn lstm_cell(x_t: &Var, h: &Var, c: &Var, w: &LstmWeights) -> Result<(Var, Var)> {
    let hidden = w.hidden_size(x_t.value().dim(-1)?)?;
    let gates = x_t.linear(&w.w_ih, Some(&w.b_ih))?.add(&h.linear(&w.w_hh, Some(&w.b_hh))?)?;
    let gate = |k: usize| gates.narrow(-1, k * hidden, hidden);
    let (i, f, g, o) = (gate(0)?.sigmoid()?, gate(1)?.sigmoid()?, gate(2)?.tanh()?, gate(3)?.sigmoid()?);
    let c_next = f.mul(c)?.add(&i.mul(&g)?)?;
    let h_next = o.mul(&c_next.tanh()?)?;
    Ok((h_next, c_next))
}

/// One direction over a padded batch: x [B, T, I] → [B, T, H]. Sequence b
/// runs over positions `0..lengths[b]` only (backwards from
/// `lengths[b] - 1` when `reverse`); outputs at padded positions are 0.
pub fn lstm_direction(x: &Var, lengths: &[usize], w: &LstmWeights, reverse: bool) -> Result<Var> {
    let (b, t, i) = check_batch(x, lengths)?;
    let run = run_direction(x, lengths, (t, i), w, reverse)?;
    unpack(&[run], b, t)
}

/// Both directions, concatenated on the last dim: x [B, T, I] →
/// [B, T, 2H] (forward hidden states first, as PyTorch's bidirectional LSTM).
pub fn bilstm(x: &Var, lengths: &[usize], fwd: &LstmWeights, bwd: &LstmWeights) -> Result<Var> {
    let (b, t, i) = check_batch(x, lengths)?;
    let (hf, hb) = (fwd.hidden_size(i)?, bwd.hidden_size(i)?);
    if hf != hb {
        return Err(Error::shape("bilstm", format!("hidden sizes differ: {hf} (forward) vs {hb} (backward)")));
    }
    let forward = run_direction(x, lengths, (t, i), fwd, false)?;
    let backward = run_direction(x, lengths, (t, i), bwd, true)?;
    unpack(&[forward, backward], b, t)
}

/// x must be [B, T, I] with one length ≤ T per sequence; returns (B, T, I).
fn check_batch(x: &Var, lengths: &[usize]) -> Result<(usize, usize, usize)> {
    let s = x.shape();
    if s.len() != 3 {
        return Err(Error::shape("lstm", format!("input must be [batch, time, features], got {s:?}")));
    }
    if lengths.len() != s[0] {
        return Err(Error::shape("lstm", format!("{} lengths for a batch of {}", lengths.len(), s[0])));
    }
    if let Some(&l) = lengths.iter().find(|&&l| l > s[1]) {
        return Err(Error::shape("lstm", format!("length {l} exceeds the {} time steps", s[1])));
    }
    Ok((s[0], s[1], s[2]))
}

/// Where each packed row comes from. Packed rows are step-major: step s
/// holds the first `batch_sizes[s]` sequences in descending-length order.
struct Packing {
    /// Live sequences per step (non-increasing, all ≥ 1).
    batch_sizes: Vec<usize>,
    /// Packed row → row `b·T + position` of the padded [B·T, ·] view.
    rows: Vec<usize>,
}

impl Packing {
    fn new(lengths: &[usize], t: usize, reverse: bool) -> Packing {
        let mut order: Vec<usize> = (0..lengths.len()).collect();
        order.sort_by_key(|&b| Reverse(lengths[b])); // stable: ties keep batch order
        let steps = lengths.iter().copied().max().unwrap_or(0);
        let mut batch_sizes = Vec::with_capacity(steps);
        let mut rows = Vec::with_capacity(lengths.iter().sum());
        for s in 0..steps {
            let live = order.iter().take_while(|&&b| lengths[b] > s).count();
            batch_sizes.push(live);
            for &b in &order[..live] {
                let pos = if reverse { lengths[b] - 1 - s } else { s };
                rows.push(b * t + pos);
            }
        }
        Packing { batch_sizes, rows }
    }
}

/// One direction's packed hidden states hs [N, H] and how to unpack them.
struct DirectionRun {
    hs: Var,
    packing: Packing,
    hidden: usize,
}

/// x [B, T, I] (checked against `lengths`) → packed hidden states.
fn run_direction(x: &Var, lengths: &[usize], (t, i): (usize, usize), w: &LstmWeights, reverse: bool) -> Result<DirectionRun> {
    let hidden = w.hidden_size(i)?;
    let packing = Packing::new(lengths, t, reverse);
    let packed = pack(x, &packing.rows)?;
    let xw = packed.linear(&w.w_ih, Some(&w.b_ih.add(&w.b_hh)?))?;
    let hs = recurrence(&xw, &w.w_hh, &packing.batch_sizes, hidden)?;
    Ok(DirectionRun { hs, packing, hidden })
}

/// Gather the packed rows: x [B, T, I] → [N, I].
fn pack(x: &Var, rows: &[usize]) -> Result<Var> {
    let xv = x.value();
    let (b, t, i) = (xv.shape()[0], xv.shape()[1], xv.shape()[2]);
    let y = gather_rows(&xv, rows, 0, i)?;
    if !Var::needs_grad(&[x]) {
        return Ok(Var::constant(y));
    }
    let rows = rows.to_vec();
    Ok(Var::from_op("lstm_pack", y, &[x], Box::new(move |g| {
        Ok(vec![Some(scatter_blocks(std::slice::from_ref(g), &[&rows], b * t, i)?.reshape(&[b, t, i])?)])
    })))
}

/// Scatter each direction's packed states into its column block of the
/// padded output: → [B, T, D·H] (zeros at padded positions).
fn unpack(runs: &[DirectionRun], b: usize, t: usize) -> Result<Var> {
    let hidden = runs[0].hidden;
    let width = runs.len() * hidden;
    let parts: Vec<Tensor> = runs.iter().map(|r| r.hs.value()).collect();
    let block_rows: Vec<&[usize]> = runs.iter().map(|r| r.packing.rows.as_slice()).collect();
    let y = scatter_blocks(&parts, &block_rows, b * t, hidden)?.reshape(&[b, t, width])?;
    let inputs: Vec<&Var> = runs.iter().map(|r| &r.hs).collect();
    if !Var::needs_grad(&inputs) {
        return Ok(Var::constant(y));
    }
    let rows: Vec<Vec<usize>> = runs.iter().map(|r| r.packing.rows.clone()).collect();
    Ok(Var::from_op("lstm_unpack", y, &inputs, Box::new(move |g| {
        let g = g.reshape(&[b * t, width])?;
        rows.iter().enumerate().map(|(k, r)| gather_rows(&g, r, k * hidden, hidden).map(Some)).collect()
    })))
}

/// The recurrence over packed pre-activations xw [N, 4H] (x·W_ihᵀ + biases)
/// with w_hh [4H, H] → packed hidden states [N, H].
fn recurrence(xw: &Var, w_hh: &Var, batch_sizes: &[usize], hidden: usize) -> Result<Var> {
    let (xv, wv) = (xw.value(), w_hh.value());
    let dtype = xv.dtype();
    let fwd = with_float_dtype!(dtype, "lstm", T => recurrence_forward::<T>(&xv, &wv, batch_sizes, hidden)?);
    if !Var::needs_grad(&[xw, w_hh]) {
        return Ok(Var::constant(fwd.hs));
    }
    let need_w = w_hh.requires_grad();
    let sizes = batch_sizes.to_vec();
    let hs = fwd.hs.clone();
    Ok(Var::from_op("lstm_recurrence", hs, &[xw, w_hh], Box::new(move |g| {
        let (dxw, dw) = with_float_dtype!(dtype, "lstm backward", T => recurrence_backward::<T>(&fwd, &wv, g, &sizes, hidden, need_w)?);
        Ok(vec![Some(dxw), dw])
    })))
}

/// What the recurrence keeps for its backward pass, all packed row-major.
struct Forward {
    /// Gate activations σ(i), σ(f), tanh(g), σ(o): [N, 4H].
    acts: Tensor,
    /// Cell states: [N, H].
    cs: Tensor,
    /// Hidden states (the output): [N, H].
    hs: Tensor,
}

/// Start row of each step in the packed layout.
fn step_offsets(batch_sizes: &[usize]) -> Vec<usize> {
    batch_sizes.iter().scan(0, |acc, &n| Some(std::mem::replace(acc, *acc + n))).collect()
}

fn sigmoid<T: FloatElement>(v: T) -> T {
    T::ONE / (T::ONE + (-v).exp())
}

fn recurrence_forward<T: FloatElement>(xw: &Tensor, w_hh: &Tensor, batch_sizes: &[usize], h: usize) -> Result<Forward> {
    let n_rows: usize = batch_sizes.iter().sum();
    let g4 = 4 * h;
    // W_hhᵀ [H, 4H] row-major, made once: each step's few rows then read it
    // in place instead of re-packing a transposed W_hh per step.
    let wt = w_hh.t()?.contiguous()?;
    let wt = wt.as_slice::<T>()?;
    // Pre-activations are copied in, then overwritten step by step with the activations.
    let mut acts = xw.contiguous()?.to_vec::<T>()?;
    let mut cs = vec![T::ZERO; n_rows * h];
    let mut hs = vec![T::ZERO; n_rows * h];
    let offsets = step_offsets(batch_sizes);
    for (s, (&n, &off)) in batch_sizes.iter().zip(&offsets).enumerate() {
        let gates = &mut acts[off * g4..(off + n) * g4];
        let (done, current) = hs.split_at_mut(off * h);
        if s > 0 {
            // gates += h_prev[..n] · W_hhᵀ (the live prefix of the previous step)
            let prev = &done[offsets[s - 1] * h..];
            gemm(
                GemmDims { batch: 1, m: n, n: g4, k: h },
                T::ONE,
                MatRef { data: prev, row_stride: h, col_stride: 1, batch_stride: 0 },
                MatRef { data: wt, row_stride: g4, col_stride: 1, batch_stride: 0 },
                T::ONE,
                MatMut { data: gates, row_stride: g4, batch_stride: 0 },
            );
        }
        let (c_done, c_current) = cs.split_at_mut(off * h);
        let c_prev = if s > 0 { Some(&c_done[offsets[s - 1] * h..]) } else { None };
        for j in 0..n {
            let a = &mut gates[j * g4..(j + 1) * g4];
            for u in 0..h {
                let (i, f, g, o) = (sigmoid(a[u]), sigmoid(a[h + u]), a[2 * h + u].tanh(), sigmoid(a[3 * h + u]));
                (a[u], a[h + u], a[2 * h + u], a[3 * h + u]) = (i, f, g, o);
                let cp = c_prev.map_or(T::ZERO, |c| c[j * h + u]);
                let c = f * cp + i * g;
                c_current[j * h + u] = c;
                current[j * h + u] = o * c.tanh();
            }
        }
    }
    Ok(Forward {
        acts: Tensor::from_vec(acts, &[n_rows, g4])?,
        cs: Tensor::from_vec(cs, &[n_rows, h])?,
        hs: Tensor::from_vec(hs, &[n_rows, h])?,
    })
}

/// BPTT: g [N, H] (gradient of the packed hidden states) → (dxw [N, 4H],
/// dW_hh [4H, H] when `need_w`).
fn recurrence_backward<T: FloatElement>(
    fwd: &Forward,
    w_hh: &Tensor,
    g: &Tensor,
    batch_sizes: &[usize],
    h: usize,
    need_w: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let g4 = 4 * h;
    let (acts, cs, hs) = (fwd.acts.as_slice::<T>()?, fwd.cs.as_slice::<T>()?, fwd.hs.as_slice::<T>()?);
    let g = g.contiguous()?;
    let g = g.as_slice::<T>()?;
    let w = w_hh.contiguous()?;
    let w = w.as_slice::<T>()?;
    let n_rows = hs.len() / h;
    let mut dxw = vec![T::ZERO; n_rows * g4];
    let mut dw = vec![T::ZERO; if need_w { g4 * h } else { 0 }];
    // Gradients flowing from step s+1 into step s's h and c, for the first
    // `n_next` rows (the sequences still live at s+1).
    let widest = batch_sizes.first().copied().unwrap_or(0);
    let (mut dh_rec, mut dc_rec) = (vec![T::ZERO; widest * h], vec![T::ZERO; widest * h]);
    let mut n_next = 0;
    let offsets = step_offsets(batch_sizes);
    for s in (0..batch_sizes.len()).rev() {
        let (n, off) = (batch_sizes[s], offsets[s]);
        let prev = if s > 0 { Some(offsets[s - 1]) } else { None };
        let dgates = &mut dxw[off * g4..(off + n) * g4];
        for j in 0..n {
            let a = &acts[(off + j) * g4..(off + j + 1) * g4];
            let d = &mut dgates[j * g4..(j + 1) * g4];
            for u in 0..h {
                let k = j * h + u;
                let (rec_h, rec_c) = if j < n_next { (dh_rec[k], dc_rec[k]) } else { (T::ZERO, T::ZERO) };
                let (i, f, gg, o) = (a[u], a[h + u], a[2 * h + u], a[3 * h + u]);
                let dh = g[(off + j) * h + u] + rec_h;
                let tc = cs[(off + j) * h + u].tanh();
                let dc = dh * o * (T::ONE - tc * tc) + rec_c;
                let cp = prev.map_or(T::ZERO, |p| cs[(p + j) * h + u]);
                d[u] = dc * gg * i * (T::ONE - i);
                d[h + u] = dc * cp * f * (T::ONE - f);
                d[2 * h + u] = dc * i * (T::ONE - gg * gg);
                d[3 * h + u] = dh * tc * o * (T::ONE - o);
                dc_rec[k] = dc * f;
            }
        }
        if let Some(p) = prev {
            // dh_prev = dgates · W_hh ; dW_hh += dgatesᵀ · h_prev
            gemm(
                GemmDims { batch: 1, m: n, n: h, k: g4 },
                T::ONE,
                MatRef { data: dgates, row_stride: g4, col_stride: 1, batch_stride: 0 },
                MatRef { data: w, row_stride: h, col_stride: 1, batch_stride: 0 },
                T::ZERO,
                MatMut { data: &mut dh_rec[..n * h], row_stride: h, batch_stride: 0 },
            );
            if need_w {
                gemm(
                    GemmDims { batch: 1, m: g4, n: h, k: n },
                    T::ONE,
                    MatRef { data: dgates, row_stride: 1, col_stride: g4, batch_stride: 0 },
                    MatRef { data: &hs[p * h..], row_stride: h, col_stride: 1, batch_stride: 0 },
                    T::ONE,
                    MatMut { data: &mut dw, row_stride: h, batch_stride: 0 },
                );
            }
        }
        n_next = n;
    }
    let dw = if need_w { Some(Tensor::from_vec(dw, &[g4, h])?) } else { None };
    Ok((Tensor::from_vec(dxw, &[n_rows, g4])?, dw))
}

/// Rows `rows` of columns `col..col + width` of a 2-D tensor → [rows.len(), width].
fn gather_rows(src: &Tensor, rows: &[usize], col: usize, width: usize) -> Result<Tensor> {
    with_float_dtype!(src.dtype(), "lstm", T => {
        let cols = src.shape()[src.rank() - 1];
        let src = src.contiguous()?;
        let s = src.as_slice::<T>()?;
        let mut out = Vec::with_capacity(rows.len() * width);
        for &r in rows {
            out.extend_from_slice(&s[r * cols + col..r * cols + col + width]);
        }
        Tensor::from_vec(out, &[rows.len(), width])
    })
}

/// Zeros [n_rows, parts.len()·width]; row i of `parts[k]` (each [·, width])
/// is written to row `rows[k][i]`, columns `k·width..(k + 1)·width`. The
/// adjoint of [`gather_rows`] per block.
fn scatter_blocks(parts: &[Tensor], rows: &[&[usize]], n_rows: usize, width: usize) -> Result<Tensor> {
    with_float_dtype!(parts[0].dtype(), "lstm", T => {
        let cols = parts.len() * width;
        let mut out = vec![T::ZERO; n_rows * cols];
        for (k, (part, rows)) in parts.iter().zip(rows).enumerate() {
            let part = part.contiguous()?;
            let p = part.as_slice::<T>()?;
            for (i, &r) in rows.iter().enumerate() {
                out[r * cols + k * width..r * cols + (k + 1) * width].copy_from_slice(&p[i * width..(i + 1) * width]);
            }
        }
        Tensor::from_vec(out, &[n_rows, cols])
    })
}

#[cfg(test)]
mod tests {
    use kogner_tensor::Tensor;
    use proptest::prelude::*;

    use super::{bilstm, lstm_cell, lstm_direction, LstmWeights};
    use crate::gradcheck::{check_f32_matches_f64, check_gradients, random_tensor, Tol};
    use crate::Var;

    /// w_ih [4H, I], w_hh [4H, H], b_ih [4H], b_hh [4H], small values.
    fn weight_tensors(i: usize, h: usize, seed: u64) -> Vec<Tensor> {
        vec![
            random_tensor(&[4 * h, i], seed, -0.6, 0.6),
            random_tensor(&[4 * h, h], seed ^ 1, -0.6, 0.6),
            random_tensor(&[4 * h], seed ^ 2, -0.5, 0.5),
            random_tensor(&[4 * h], seed ^ 3, -0.5, 0.5),
        ]
    }

    fn weights(v: &[Var]) -> LstmWeights {
        LstmWeights { w_ih: v[0].clone(), w_hh: v[1].clone(), b_ih: v[2].clone(), b_hh: v[3].clone() }
    }

    fn sigmoid(v: f64) -> f64 {
        1.0 / (1.0 + (-v).exp())
    }

    /// One literal LSTM step in f64 on plain vectors: (h, c) updated in place.
    fn reference_step(x: &[f64], h: &mut [f64], c: &mut [f64], w: &[Vec<f64>]) {
        let (hid, inp) = (h.len(), x.len());
        let gate = |q: usize| -> f64 {
            let xi: f64 = (0..inp).map(|p| w[0][q * inp + p] * x[p]).sum();
            let hh: f64 = (0..hid).map(|p| w[1][q * hid + p] * h[p]).sum();
            xi + hh + w[2][q] + w[3][q]
        };
        let pre: Vec<f64> = (0..4 * hid).map(gate).collect();
        for u in 0..hid {
            let (i, f, g, o) = (sigmoid(pre[u]), sigmoid(pre[hid + u]), pre[2 * hid + u].tanh(), sigmoid(pre[3 * hid + u]));
            c[u] = f * c[u] + i * g;
            h[u] = o * c[u].tanh();
        }
    }

    /// A literal per-sequence, unbatched LSTM: x [B, T, I] → [B, T, H],
    /// each sequence over its own length, zeros at padded positions.
    fn reference(x: &Tensor, lengths: &[usize], w: &[Tensor], reverse: bool) -> Vec<f64> {
        let (b, t, i) = (x.shape()[0], x.shape()[1], x.shape()[2]);
        let h = w[1].shape()[1];
        let xv = x.to_f64_vec().unwrap();
        let wv: Vec<Vec<f64>> = w.iter().map(|t| t.to_f64_vec().unwrap()).collect();
        let mut out = vec![0.0; b * t * h];
        for (bi, &len) in lengths.iter().enumerate() {
            let (mut hs, mut cs) = (vec![0.0; h], vec![0.0; h]);
            let positions: Vec<usize> = if reverse { (0..len).rev().collect() } else { (0..len).collect() };
            for pos in positions {
                let row = (bi * t + pos) * i;
                reference_step(&xv[row..row + i], &mut hs, &mut cs, &wv);
                out[(bi * t + pos) * h..(bi * t + pos + 1) * h].copy_from_slice(&hs);
            }
        }
        out
    }

    fn assert_close(got: &[f64], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len());
        for (k, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= tol, "element {k}: {g} vs {w}");
        }
    }

    /// (B, T, I, H, lengths) with B ≤ 3, T ≤ 4, I, H ≤ 3 and lengths in 0..=T.
    fn batch() -> impl Strategy<Value = (usize, usize, usize, usize, Vec<usize>)> {
        (1usize..4, 1usize..5, 1usize..4, 1usize..4)
            .prop_flat_map(|(b, t, i, h)| (Just(b), Just(t), Just(i), Just(h), prop::collection::vec(0..=t, b)))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]

        #[test]
        fn cell_gradients(b in 1usize..4, i in 1usize..4, h in 1usize..4, seed in any::<u64>()) {
            let mut inputs = vec![
                random_tensor(&[b, i], seed, -1.0, 1.0),
                random_tensor(&[b, h], seed ^ 10, -1.0, 1.0),
                random_tensor(&[b, h], seed ^ 11, -1.0, 1.0),
            ];
            inputs.extend(weight_tensors(i, h, seed ^ 12));
            type F = fn(&[Var]) -> kogner_tensor::Result<Var>;
            let outputs: [(&str, F); 2] = [
                ("h'", |v| Ok(lstm_cell(&v[0], &v[1], &v[2], &weights(&v[3..]))?.0)),
                ("c'", |v| Ok(lstm_cell(&v[0], &v[1], &v[2], &weights(&v[3..]))?.1)),
            ];
            for (name, f) in outputs {
                check_gradients(&f, &inputs, &[], Tol::default()).map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
                check_f32_matches_f64(&f, &inputs, 1e-5, 1e-5).map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
            }
        }

        #[test]
        fn sequences_match_the_unbatched_reference((b, t, i, h, lengths) in batch(), seed in any::<u64>()) {
            let x = random_tensor(&[b, t, i], seed, -1.0, 1.0);
            let (wf, wb) = (weight_tensors(i, h, seed ^ 20), weight_tensors(i, h, seed ^ 30));
            let lw = |w: &[Tensor]| weights(&w.iter().cloned().map(Var::constant).collect::<Vec<_>>());
            let xv = Var::constant(x.clone());
            let (want_f, want_b) = (reference(&x, &lengths, &wf, false), reference(&x, &lengths, &wb, true));
            let got_f = lstm_direction(&xv, &lengths, &lw(&wf), false).unwrap();
            prop_assert_eq!(got_f.shape(), vec![b, t, h]);
            assert_close(&got_f.value().to_vec::<f64>().unwrap(), &want_f, 1e-12);
            let got_b = lstm_direction(&xv, &lengths, &lw(&wb), true).unwrap();
            assert_close(&got_b.value().to_vec::<f64>().unwrap(), &want_b, 1e-12);
            let both = bilstm(&xv, &lengths, &lw(&wf), &lw(&wb)).unwrap().value();
            prop_assert_eq!(both.shape(), &[b, t, 2 * h]);
            let want: Vec<f64> = want_f.chunks(h).zip(want_b.chunks(h)).flat_map(|(f, r)| f.iter().chain(r).copied()).collect();
            assert_close(&both.to_vec::<f64>().unwrap(), &want, 1e-12);
        }

        #[test]
        fn bilstm_gradients((b, t, i, h, lengths) in batch(), frozen_recurrent in any::<bool>(), seed in any::<u64>()) {
            let mut inputs = vec![random_tensor(&[b, t, i], seed, -1.0, 1.0)];
            inputs.extend(weight_tensors(i, h, seed ^ 40));
            inputs.extend(weight_tensors(i, h, seed ^ 50));
            let f = move |v: &[Var]| bilstm(&v[0], &lengths, &weights(&v[1..5]), &weights(&v[5..9]));
            // Frozen w_hh of both directions: the recurrence skips its weight gradient.
            let constant: &[usize] = if frozen_recurrent { &[2, 6] } else { &[] };
            check_gradients(&f, &inputs, constant, Tol::default()).map_err(TestCaseError::fail)?;
            check_f32_matches_f64(&f, &inputs, 1e-5, 1e-5).map_err(TestCaseError::fail)?;
        }
    }

    #[test]
    fn cell_matches_a_hand_step() {
        let (b, i, h) = (2, 3, 2);
        let x = random_tensor(&[b, i], 1, -1.0, 1.0);
        let (h0, c0) = (random_tensor(&[b, h], 2, -1.0, 1.0), random_tensor(&[b, h], 3, -1.0, 1.0));
        let w = weight_tensors(i, h, 4);
        let wv: Vec<Vec<f64>> = w.iter().map(|t| t.to_vec::<f64>().unwrap()).collect();
        let vars: Vec<Var> = w.iter().cloned().map(Var::leaf).collect();
        let (h1, c1) = lstm_cell(&Var::leaf(x.clone()), &Var::leaf(h0.clone()), &Var::leaf(c0.clone()), &weights(&vars)).unwrap();
        let (xv, mut hv, mut cv) = (x.to_vec::<f64>().unwrap(), h0.to_vec::<f64>().unwrap(), c0.to_vec::<f64>().unwrap());
        for r in 0..b {
            reference_step(&xv[r * i..(r + 1) * i], &mut hv[r * h..(r + 1) * h], &mut cv[r * h..(r + 1) * h], &wv);
        }
        assert_close(&h1.value().to_vec::<f64>().unwrap(), &hv, 1e-14);
        assert_close(&c1.value().to_vec::<f64>().unwrap(), &cv, 1e-14);
    }

    #[test]
    fn long_sequence_matches_reference_and_backpropagates() {
        let (b, t, i, h) = (3, 300, 2, 3);
        let lengths = [300, 17, 299];
        let x = random_tensor(&[b, t, i], 5, -1.0, 1.0);
        let w = weight_tensors(i, h, 6);
        let xv = Var::leaf(x.clone());
        let vars: Vec<Var> = w.iter().cloned().map(Var::leaf).collect();
        let y = lstm_direction(&xv, &lengths, &weights(&vars), true).unwrap();
        assert_close(&y.value().to_vec::<f64>().unwrap(), &reference(&x, &lengths, &w, true), 1e-12);
        let g = y.sum_all().unwrap().backward().unwrap();
        let gx = g.get(&xv).unwrap().to_vec::<f64>().unwrap();
        // Padded positions of the short sequence receive no gradient.
        assert!(gx[(t + 17) * i..2 * t * i].iter().all(|&v| v == 0.0));
        assert!(gx[t * i..(t + 17) * i].iter().any(|&v| v != 0.0));
        assert!(vars.iter().all(|v| g.get(v).is_some()));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let w = weights(&weight_tensors(3, 2, 7).into_iter().map(Var::leaf).collect::<Vec<_>>());
        let x = Var::leaf(random_tensor(&[2, 4, 3], 8, -1.0, 1.0));
        let err = |r: kogner_tensor::Result<Var>| r.unwrap_err().to_string();
        let e = err(lstm_direction(&x, &[4], &w, false));
        assert!(e.contains("1 lengths for a batch of 2"), "{e}");
        let e = err(lstm_direction(&x, &[4, 5], &w, false));
        assert!(e.contains("length 5 exceeds"), "{e}");
        let e = err(lstm_direction(&Var::leaf(random_tensor(&[2, 3], 8, -1.0, 1.0)), &[1, 1], &w, false));
        assert!(e.contains("[batch, time, features]"), "{e}");
        let e = err(lstm_direction(&Var::leaf(random_tensor(&[2, 4, 5], 8, -1.0, 1.0)), &[4, 4], &w, false));
        assert!(e.contains("w_ih"), "{e}");
        let mut bad = w.clone();
        bad.b_hh = Var::leaf(random_tensor(&[7], 9, -1.0, 1.0));
        let e = err(bilstm(&x, &[4, 2], &w, &bad));
        assert!(e.contains("b_hh"), "{e}");
        bad.w_hh = Var::leaf(random_tensor(&[8, 3], 9, -1.0, 1.0));
        assert!(err(lstm_direction(&x, &[4, 2], &bad, false)).contains("w_hh"));
        let other = weights(&weight_tensors(3, 3, 7).into_iter().map(Var::leaf).collect::<Vec<_>>());
        assert!(err(bilstm(&x, &[4, 2], &w, &other)).contains("hidden sizes differ"));
        let h = Var::leaf(random_tensor(&[2, 3], 8, -1.0, 1.0));
        assert!(lstm_cell(&x.select(1, 0).unwrap(), &h, &h, &w).is_err());
        let f32x = Var::leaf(random_tensor(&[2, 4, 3], 8, -1.0, 1.0).to_dtype(kogner_tensor::DType::F32).unwrap());
        assert!(lstm_direction(&f32x, &[4, 2], &w, false).is_err());
    }

    #[test]
    fn empty_sequences_give_zero_outputs() {
        let w = weights(&weight_tensors(2, 2, 3).into_iter().map(Var::leaf).collect::<Vec<_>>());
        let x = Var::leaf(random_tensor(&[2, 3, 2], 4, -1.0, 1.0));
        let y = bilstm(&x, &[0, 0], &w, &w).unwrap();
        assert_eq!(y.shape(), vec![2, 3, 4]);
        assert!(y.value().to_vec::<f64>().unwrap().iter().all(|&v| v == 0.0));
    }
}
