//! Weight averaging of GLiNER folders fine-tuned from one starting point: a
//! uniform "model soup" (Wortsman et al. 2022), or checkpoint averaging as
//! fairseq's `average_checkpoints.py` does it. Runs that share the
//! pretrained encoder *and* the head's initialisation (same `--seed`, other
//! learning rates or step counts) land in one basin, and their mean often
//! scores above each of them; runs from different seeds do not average well.
//!
//! The sum is kept in f64 (one model in memory at a time besides it) and the
//! mean written as f32. Every folder must have the same `gliner_config.json`
//! (up to the training settings GLiNER keeps in it, such as `dropout`; the
//! first folder's are written) and `tokenizer.json` as the first: averaging
//! different architectures or vocabularies is refused, not attempted.

use std::path::{Path, PathBuf};

use kogner_models::gliner::model::Gliner;
use kogner_models::gliner::same_model::{check_same_models, Combine};
use kogner_tensor::{Error, Result, Tensor};

use super::checkpoint::{save_model, ModelFiles};

/// Writes to `out` (a GLiNER folder, swapped in atomically) the element-wise
/// mean of the weights of `dirs`; config and tokenizer come from `dirs[0]`.
/// Returns the number of averaged weights (elements).
pub fn average_models(dirs: &[PathBuf], out: &Path) -> Result<usize> {
    let Some((first, rest)) = dirs.split_first() else {
        return Err(Error::Msg("average: no model folders given".into()));
    };
    check_same_models(dirs, Combine::Average)?;
    let files = ModelFiles::read(first)?;
    let model = Gliner::load(first)?;
    // One f64 running sum per parameter, in the parameter store's order.
    let mut sums: Vec<(String, Vec<f64>)> = model.parameters().map(|(name, var)| (name.clone(), vec![0.0; var.value().numel()])).collect();
    add_weights(&mut sums, &model, first)?;

    for dir in rest {
        add_weights(&mut sums, &Gliner::load(dir)?, dir)?;
    }

    let n = dirs.len() as f64;
    let mut count = 0;
    for (name, sum) in sums {
        let var = model.params.var(&name)?;
        count += sum.len();
        let mean: Vec<f32> = sum.into_iter().map(|s| (s / n) as f32).collect();
        var.set_value(Tensor::from_vec(mean, &var.shape())?.to_dtype(var.dtype())?)?;
    }
    save_model(out, &files, &model.params)?;
    Ok(count)
}

/// Adds `model`'s weights (loaded from `dir`) to the running sums; a
/// non-finite weight is refused (it would silently poison the mean).
fn add_weights(sums: &mut [(String, Vec<f64>)], model: &Gliner, dir: &Path) -> Result<()> {
    for (name, sum) in sums {
        for (s, x) in sum.iter_mut().zip(model.params.var(name)?.value().to_f64_vec()?) {
            if !x.is_finite() {
                return Err(Error::file(dir, format!("weight `{name}` holds a non-finite value ({x})")));
            }
            *s += x;
        }
    }
    Ok(())
}
