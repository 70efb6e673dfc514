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

use serde_json::Value;

use kogner_models::gliner::model::Gliner;
use kogner_tensor::{Error, Result, Tensor};

use super::checkpoint::{save_model, ModelFiles};

/// Writes to `out` (a GLiNER folder, swapped in atomically) the element-wise
/// mean of the weights of `dirs`; config and tokenizer come from `dirs[0]`.
/// Returns the number of averaged weights (elements).
pub fn average_models(dirs: &[PathBuf], out: &Path) -> Result<usize> {
    let Some((first, rest)) = dirs.split_first() else {
        return Err(Error::Msg("average: no model folders given".into()));
    };
    let files = ModelFiles::read(first)?;
    let model = Gliner::load(first)?;
    // One f64 running sum per parameter, in the parameter store's order.
    let mut sums: Vec<(String, Vec<f64>)> = model.parameters().map(|(name, var)| (name.clone(), vec![0.0; var.value().numel()])).collect();
    add_weights(&mut sums, &model, first)?;

    let arch = architecture(&files.gliner_config);
    for dir in rest {
        let other = ModelFiles::read(dir)?;
        if other.tokenizer != files.tokenizer {
            return Err(Error::file(dir.join("tokenizer.json"), format!("differs from {}'s: cannot average models with different vocabularies", first.display())));
        }
        if let Some(field) = first_difference(&arch, &architecture(&other.gliner_config), "") {
            return Err(Error::file(dir.join("gliner_config.json"), format!("`{field}` differs from {}'s: cannot average different architectures", first.display())));
        }
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

/// Top-level `gliner_config.json` keys that steer training only (GLiNER
/// stores its training settings beside the architecture).
const TRAINING_ONLY: &[&str] = &[
    "dropout",
    "fine_tune",
    "freeze_token_rep",
    "eval_every",
    "loss_alpha",
    "loss_gamma",
    "loss_reduction",
    "lr_encoder",
    "lr_others",
    "max_grad_norm",
    "max_neg_type_ratio",
    "max_types",
    "neg_spans_ratio",
    "num_steps",
    "random_drop",
    "save_total_limit",
    "scheduler_type",
    "shuffle_types",
    "size_sup",
    "train_batch_size",
    "warmup_ratio",
    "weight_decay_encoder",
    "weight_decay_other",
];

/// A config without its training-only keys.
fn architecture(config: &Value) -> Value {
    let mut c = config.clone();
    if let Value::Object(map) = &mut c {
        map.retain(|k, _| !TRAINING_ONLY.contains(&k.as_str()));
    }
    c
}

/// The dotted path of the first field where two JSON values differ, if any.
fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    let join = |key: &str| if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|k| match (x.get(k), y.get(k)) {
                (Some(u), Some(v)) => first_difference(u, v, &join(k)),
                _ => Some(join(k)),
            })
        }
        _ if a == b => None,
        _ => Some(if path.is_empty() { "(root)".to_string() } else { path.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn first_difference_names_the_nested_field() {
        let a = json!({"max_width": 12, "encoder_config": {"hidden_size": 384, "layers": 6}});
        assert_eq!(first_difference(&a, &a.clone(), ""), None);
        let b = json!({"max_width": 12, "encoder_config": {"hidden_size": 768, "layers": 6}});
        assert_eq!(first_difference(&a, &b, "").as_deref(), Some("encoder_config.hidden_size"));
        let c = json!({"max_width": 12});
        assert_eq!(first_difference(&a, &c, "").as_deref(), Some("encoder_config"));
        let trained = json!({"max_width": 12, "dropout": 0.4});
        assert_eq!(first_difference(&architecture(&trained), &architecture(&json!({"max_width": 12, "dropout": 0.1})), ""), None);
    }
}
