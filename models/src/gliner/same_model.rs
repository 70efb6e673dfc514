//! Whether GLiNER folders can be combined: the same `tokenizer.json` and the
//! same `gliner_config.json` up to the training settings GLiNER keeps in it.
//! Weight averaging (model soups) averages weights tensor by tensor, so it
//! needs every architecture field equal. Ensembles (mean span
//! probabilities) only need the models to read the same windows and score
//! the same spans: their heads may differ (width, sub-token pooling, word
//! shapes). Both refuse folders that disagree instead of producing silent
//! nonsense.

use std::path::{Path, PathBuf};

use serde_json::Value;

use kogner_tensor::{Error, Result};

/// Top-level `gliner_config.json` keys that steer training only.
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

/// Top-level keys of the span head alone: each ensemble member runs its
/// own head on the same batch.
const HEAD_ONLY: &[&str] = &["hidden_size", "subtoken_pooling", "word_shape"];

/// What the folders are combined for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combine {
    /// Weight averaging: every architecture field must agree.
    Average,
    /// Probability averaging: the head-only fields may differ.
    Ensemble,
}

/// Refuses `dirs` unless every folder's vocabulary and architecture (for
/// an ensemble, up to the head) are `dirs[0]`'s (whose files are read
/// once; nothing is read for one folder, the common case of `kogner
/// predict`); the error names the differing folder's file and the first
/// differing (dotted) field.
pub fn check_same_models(dirs: &[PathBuf], combine: Combine) -> Result<()> {
    let Some((first, rest)) = dirs.split_first().filter(|(_, rest)| !rest.is_empty()) else {
        return Ok(());
    };
    let purpose = match combine {
        Combine::Average => "average",
        Combine::Ensemble => "ensemble",
    };
    let (tokenizer, arch) = (tokenizer(first)?, architecture(first, combine)?);
    for other in rest {
        if tokenizer != self::tokenizer(other)? {
            return Err(Error::file(other.join("tokenizer.json"), format!("differs from {}'s: cannot {purpose} models with different vocabularies", first.display())));
        }
        if let Some(field) = first_difference(&arch, &architecture(other, combine)?, "") {
            return Err(Error::file(other.join("gliner_config.json"), format!("`{field}` differs from {}'s: cannot {purpose} different architectures", first.display())));
        }
    }
    Ok(())
}

/// A folder's `tokenizer.json`, as bytes.
fn tokenizer(dir: &Path) -> Result<Vec<u8>> {
    let path = dir.join("tokenizer.json");
    std::fs::read(&path).map_err(|e| Error::file(&path, e))
}

/// A folder's `gliner_config.json` without its training-only keys (and,
/// for an ensemble, without its head-only keys).
fn architecture(dir: &Path, combine: Combine) -> Result<Value> {
    let path = dir.join("gliner_config.json");
    let text = std::fs::read(&path).map_err(|e| Error::file(&path, e))?;
    let mut config: Value = serde_json::from_slice(&text).map_err(|e| Error::file(&path, format!("invalid JSON: {e}")))?;
    let ignored = |key: &str| TRAINING_ONLY.contains(&key) || (combine == Combine::Ensemble && HEAD_ONLY.contains(&key));
    if let Value::Object(map) = &mut config {
        map.retain(|k, _| !ignored(k));
    }
    Ok(config)
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
    }

    #[test]
    fn training_settings_do_not_count() {
        let dir = std::env::temp_dir().join(format!("kogner-same-model-{}", std::process::id()));
        let (a, b) = (dir.join("a"), dir.join("b"));
        for (d, dropout, width) in [(&a, 0.4, 12), (&b, 0.1, 12)] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("tokenizer.json"), "{}").unwrap();
            std::fs::write(d.join("gliner_config.json"), json!({"max_width": width, "dropout": dropout}).to_string()).unwrap();
        }
        let dirs = [a.clone(), b.clone()];
        assert!(check_same_models(&dirs, Combine::Average).is_ok());
        std::fs::write(b.join("gliner_config.json"), json!({"max_width": 8, "dropout": 0.4}).to_string()).unwrap();
        let e = check_same_models(&dirs, Combine::Ensemble).unwrap_err().to_string();
        assert!(e.contains("`max_width` differs") && e.contains("cannot ensemble different architectures"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Ensemble members may differ in their heads; a soup may not.
    #[test]
    fn heads_may_differ_in_an_ensemble_only() {
        let dir = std::env::temp_dir().join(format!("kogner-same-head-{}", std::process::id()));
        let (a, b) = (dir.join("a"), dir.join("b"));
        let head = |hidden: usize, pooling: &str| json!({"max_width": 12, "hidden_size": hidden, "subtoken_pooling": pooling, "encoder_config": {"hidden_size": 384}});
        for (d, config) in [(&a, head(384, "first")), (&b, head(512, "mean"))] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("tokenizer.json"), "{}").unwrap();
            std::fs::write(d.join("gliner_config.json"), config.to_string()).unwrap();
        }
        let dirs = [a.clone(), b.clone()];
        assert!(check_same_models(&dirs, Combine::Ensemble).is_ok());
        let e = check_same_models(&dirs, Combine::Average).unwrap_err().to_string();
        assert!(e.contains("`hidden_size` differs") && e.contains("cannot average different architectures"), "{e}");
        let other_encoder = json!({"max_width": 12, "hidden_size": 384, "encoder_config": {"hidden_size": 768}});
        std::fs::write(b.join("gliner_config.json"), other_encoder.to_string()).unwrap();
        let e = check_same_models(&dirs, Combine::Ensemble).unwrap_err().to_string();
        assert!(e.contains("`encoder_config.hidden_size` differs") && e.contains("cannot ensemble"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
