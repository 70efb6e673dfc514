//! Text in, entities out: word splitting, long-text windows, batching by
//! length, the model under no-grad, and GLiNER decoding merged per document.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use kogner_autograd::no_grad;
use kogner_tensor::{Error, Result, Tensor};

use super::decode::{span_candidates, DecodeMode, Entity, SpanCandidate, SpanProbs};
use super::head::HeadInputs;
use super::long_text::{merge, plan_windows, refine_windows, WindowCandidates};
use super::model::{EncoderInputs, Gliner};
use super::processor::{dedup_labels, BatchItem, GlinerBatch, GlinerProcessor};
use super::same_model::{check_same_models, Combine};
use super::word_shape::word_shape;
use super::words::{split_words, Word};
use crate::nn::Mode;

/// A model folder (or an ensemble of same-shaped folders) ready to predict.
pub struct Predictor {
    pub model: Gliner,
    /// Further models of the same architecture and vocabulary whose span
    /// probabilities are averaged with `model`'s (an ensemble); empty for one model.
    pub ensemble: Vec<Gliner>,
    pub processor: GlinerProcessor,
}

#[derive(Clone, Copy, Debug)]
pub struct PredictOptions {
    /// Keep spans with probability strictly above this.
    pub threshold: f32,
    pub mode: DecodeMode,
    /// Model examples (word windows) per forward pass.
    pub batch_size: usize,
}

impl Default for PredictOptions {
    fn default() -> Self {
        PredictOptions { threshold: 0.5, mode: DecodeMode::FLAT, batch_size: 8 }
    }
}

/// One text and the labels to look for in it.
pub struct Document<'a> {
    pub text: &'a str,
    pub labels: &'a [String],
}

/// The model inputs of a processed batch.
pub fn model_inputs(batch: &GlinerBatch) -> Result<(EncoderInputs, HeadInputs)> {
    let (b, t, n) = (batch.batch_size, batch.seq_len, batch.num_words);
    let input_ids = Tensor::from_vec(batch.input_ids.clone(), &[b, t])?;
    let attention_mask = Tensor::from_vec(batch.attention_mask.iter().map(|&m| m as f32).collect::<Vec<_>>(), &[b, t])?;
    let word_tokens = batch
        .token_words
        .chunks(t.max(1))
        .map(|tw| {
            let mut slots: Vec<Option<Range<usize>>> = vec![None; n];
            for (tok, &j) in tw.iter().enumerate() {
                if j > 0 && (j as usize) <= n {
                    let slot = &mut slots[j as usize - 1];
                    *slot = Some(slot.as_ref().map_or(tok, |r| r.start)..tok + 1);
                }
            }
            slots
        })
        .collect();
    let head = HeadInputs {
        word_tokens,
        text_lengths: batch.text_lengths.clone(),
        ent_positions: batch.ent_token_positions.clone(),
        word_shapes: batch.words.iter().map(|ws| ws.iter().map(|w| word_shape(&w.text)).collect()).collect(),
    };
    Ok((EncoderInputs { input_ids, attention_mask }, head))
}

/// Runs `run` on every batch and hands each result to `take` on the calling
/// thread, in completion order.
///
/// With several threads and batches, the batches run concurrently, one per
/// thread, each thread computing its batch alone (a one-thread rayon pool, so
/// every product and kernel of the batch stays on it) and taking the next
/// batch when done. Splitting every product of one batch between the threads
/// instead synchronises them a few hundred times per forward pass, leaves the
/// sequential parts (the BiLSTM, decoding) on one thread, and cuts the
/// products of a short text into slivers: whole batches per thread ran
/// 1.2–1.5× faster (2 threads). Each batch's numbers do not depend on which
/// thread ran it.
pub fn for_each_batch<'u, U: Sync, R: Send>(
    batches: &[&'u [U]],
    run: impl Fn(&'u [U]) -> Result<R> + Sync,
    mut take: impl FnMut(&'u [U], R),
) -> Result<()> {
    let threads = rayon::current_num_threads().min(batches.len());
    if threads <= 1 {
        for &chunk in batches {
            take(chunk, run(chunk)?);
        }
        return Ok(());
    }
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<(usize, Result<R>)>();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let (tx, next, run) = (tx.clone(), &next, &run);
            s.spawn(move || {
                let pool = match rayon::ThreadPoolBuilder::new().num_threads(1).build() {
                    Ok(pool) => pool,
                    Err(e) => return drop(tx.send((usize::MAX, Err(Error::Msg(format!("cannot start a worker thread: {e}")))))),
                };
                pool.install(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= batches.len() {
                        break;
                    }
                    if tx.send((i, run(batches[i]))).is_err() {
                        break;
                    }
                })
            });
        }
        drop(tx);
        for (i, r) in rx {
            match r {
                Ok(found) => take(batches[i], found),
                Err(e) => {
                    // Stop the workers after their current batch.
                    next.store(batches.len(), Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        Ok(())
    })
}

/// A document's word window, the unit the model sees.
struct Unit {
    doc: usize,
    window: std::ops::Range<usize>,
    tokens: usize,
}

impl Predictor {
    /// A model that can also be trained (its parameters stay in `model.params`).
    pub fn load(dir: &Path) -> Result<Predictor> {
        Ok(Predictor { model: Gliner::load(dir)?, ensemble: Vec::new(), processor: GlinerProcessor::from_dir(dir)? })
    }

    /// A model for inference only, its encoder weights packed once
    /// ([`Gliner::pack_for_inference`]).
    pub fn load_for_inference(dir: &Path) -> Result<Predictor> {
        Self::load_ensemble_for_inference(&[dir.to_path_buf()])
    }

    /// Models for inference (what `kogner predict` and `kogner eval` use):
    /// one folder is one model; several are an ensemble, every span's
    /// probability the mean of the models' (probability averaging, the usual
    /// way to ensemble span classifiers). The folders must share `dirs[0]`'s
    /// tokenizer and architecture up to the span head ([`check_same_models`],
    /// checked before any weights are read), so that they read the same
    /// windows and score the same spans.
    pub fn load_ensemble_for_inference(dirs: &[PathBuf]) -> Result<Predictor> {
        let Some(first) = dirs.first() else {
            return Err(Error::Msg("no model folder given".into()));
        };
        check_same_models(dirs, Combine::Ensemble)?;
        let mut models = dirs
            .iter()
            .map(|dir| {
                let mut model = Gliner::load(dir)?;
                model.pack_for_inference()?;
                Ok(model)
            })
            .collect::<Result<Vec<Gliner>>>()?;
        let model = models.remove(0);
        Ok(Predictor { model, ensemble: models, processor: GlinerProcessor::from_dir(first)? })
    }

    /// Entities of every document, in input order. `progress(done)` is
    /// called with the number of finished documents.
    pub fn predict(&self, docs: &[Document<'_>], opts: &PredictOptions, mut progress: impl FnMut(usize)) -> Result<Vec<Vec<Entity>>> {
        if !(opts.threshold >= 0.0 && opts.threshold < 1.0) {
            return Err(Error::Msg(format!("threshold {} must be in [0, 1)", opts.threshold)));
        }
        if opts.batch_size == 0 {
            return Err(Error::Msg("batch size must be at least 1".into()));
        }
        let cfg = &self.model.config;
        let mut words: Vec<Vec<Word>> = Vec::with_capacity(docs.len());
        let mut labels: Vec<Vec<String>> = Vec::with_capacity(docs.len());
        let mut units = Vec::new();
        for (d, doc) in docs.iter().enumerate() {
            let doc_labels = dedup_labels(doc.labels).map_err(|e| Error::Msg(format!("document {d}: {e}")))?;
            let doc_words = split_words(doc.text);
            let budget = self.processor.token_budget(&doc_labels, &doc_words)?;
            let windows = refine_windows(plan_windows(doc_words.len(), cfg.max_len, cfg.max_width)?, cfg.max_width, |w| budget.fits(w));
            units.extend(windows.into_iter().map(|window| Unit { doc: d, tokens: budget.tokens(&window), window }));
            words.push(doc_words);
            labels.push(doc_labels);
        }
        // Similar lengths share a batch: less padding.
        units.sort_by_key(|u| std::cmp::Reverse(u.tokens));
        let mut per_doc: Vec<Vec<WindowCandidates>> = vec![Vec::new(); docs.len()];
        let mut units_left: Vec<usize> = vec![0; docs.len()];
        for u in &units {
            units_left[u.doc] += 1;
        }
        let mut done = units_left.iter().filter(|&&n| n == 0).count();
        if done > 0 {
            progress(done);
        }
        let batches: Vec<&[Unit]> = units.chunks(opts.batch_size).collect();
        let run = |chunk: &[Unit]| -> Result<Vec<Vec<SpanCandidate>>> {
            let items: Vec<BatchItem<'_>> = chunk.iter().map(|u| BatchItem { words: &words[u.doc][u.window.clone()], labels: &labels[u.doc] }).collect();
            let batch = self.processor.encode(&items)?;
            let probs = self.span_probs(&batch)?;
            let probs = SpanProbs::new(&probs, [batch.batch_size, batch.num_words, batch.max_width, batch.num_classes])?;
            chunk.iter().enumerate().map(|(b, u)| span_candidates(&probs, b, batch.text_lengths[b], labels[u.doc].len(), opts.threshold)).collect()
        };
        for_each_batch(&batches, run, |chunk, found| {
            for (u, candidates) in chunk.iter().zip(found) {
                per_doc[u.doc].push(WindowCandidates { window: u.window.clone(), candidates });
                units_left[u.doc] -= 1;
                if units_left[u.doc] == 0 {
                    done += 1;
                    progress(done);
                }
            }
        })?;
        docs.iter()
            .enumerate()
            .map(|(d, doc)| merge(doc.text, &words[d], &labels[d], &per_doc[d], opts.mode))
            .collect()
    }

    /// sigmoid(logits) [B, W, K, C] of one batch, flat; for an ensemble,
    /// the mean over its models.
    pub fn span_probs(&self, batch: &GlinerBatch) -> Result<Vec<f32>> {
        let (enc, head) = model_inputs(batch)?;
        let member_probs = |model: &Gliner| -> Result<Vec<f32>> {
            let logits = no_grad(|| model.forward(&enc, &head, &Mode::inference()))?.head.logits.value();
            let probs = logits.sigmoid()?.to_vec::<f32>()?;
            if probs.iter().any(|p| p.is_nan()) {
                return Err(Error::Msg("the model produced NaN scores (corrupt weights?)".into()));
            }
            Ok(probs)
        };
        let mut probs = member_probs(&self.model)?;
        if self.ensemble.is_empty() {
            return Ok(probs);
        }
        for model in &self.ensemble {
            probs.iter_mut().zip(member_probs(model)?).for_each(|(s, p)| *s += p);
        }
        let n = (1 + self.ensemble.len()) as f32;
        probs.iter_mut().for_each(|s| *s /= n);
        Ok(probs)
    }
}
