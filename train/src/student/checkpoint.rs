//! The run folder's model directories, written so that a kill -9 at any
//! moment leaves a usable run: a directory is assembled as `<name>.tmp`
//! (every file fsynced), the old one moved to `<name>.old`, the new one
//! renamed into place, the old one removed. [`recover`] undoes a swap that
//! was cut between the two renames.
//!
//! `checkpoint/` = a GLiNER folder (loads in `kogner predict`) +
//! `optimizer.safetensors` + `trainer_state.json` (+ `ema.safetensors`, the
//! weights' moving average, when the run keeps one; + `distill.safetensors`,
//! the KoGNER distillation heads, when it distils); `best/` = a GLiNER
//! folder of the best dev F1.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use kogner_autograd::ParamStore;
use kogner_tensor::safetensors_io::write_atomic;
use kogner_tensor::{DType, Error, Result};

use crate::optim::{AdamW, Ema};

pub const CHECKPOINT: &str = "checkpoint";
pub const BEST: &str = "best";
const STATE_FILE: &str = "trainer_state.json";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const EMA_FILE: &str = "ema.safetensors";
const DISTILL_FILE: &str = "distill.safetensors";

/// Where a run stands after `step` optimiser steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    pub step: usize,
    pub best_f1: Option<f64>,
    pub best_step: Option<usize>,
}

/// A GLiNER folder's files other than the weights.
#[derive(Clone, Debug)]
pub struct ModelFiles {
    pub gliner_config: Value,
    pub tokenizer: Vec<u8>,
    pub tokenizer_config: Option<Vec<u8>>,
}

impl ModelFiles {
    pub fn read(dir: &Path) -> Result<ModelFiles> {
        let read = |name: &str| {
            let p = dir.join(name);
            fs::read(&p).map_err(|e| Error::file(&p, e))
        };
        let config_path = dir.join("gliner_config.json");
        let gliner_config = serde_json::from_slice(&read("gliner_config.json")?).map_err(|e| Error::file(&config_path, format!("invalid JSON: {e}")))?;
        let tokenizer_config = dir.join("tokenizer_config.json").is_file().then(|| read("tokenizer_config.json")).transpose()?;
        Ok(ModelFiles { gliner_config, tokenizer: read("tokenizer.json")?, tokenizer_config })
    }

    fn write(&self, dir: &Path, params: &ParamStore) -> Result<()> {
        let config = serde_json::to_string_pretty(&self.gliner_config).map_err(|e| Error::Msg(e.to_string()))?;
        write_atomic(dir.join("gliner_config.json"), config.as_bytes())?;
        write_atomic(dir.join("tokenizer.json"), &self.tokenizer)?;
        if let Some(tc) = &self.tokenizer_config {
            write_atomic(dir.join("tokenizer_config.json"), tc)?;
        }
        params.save_safetensors(dir.join("model.safetensors"), DType::F32)
    }
}

fn sibling(target: &Path, suffix: &str) -> PathBuf {
    let mut name = target.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    target.with_file_name(name)
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::file(path, e)
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Build `out/<name>` through `fill(tmp_dir)` and swap it into place.
pub fn replace_dir(out: &Path, name: &str, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let target = out.join(name);
    let (tmp, old) = (sibling(&target, ".tmp"), sibling(&target, ".old"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    fill(&tmp)?;
    sync_dir(&tmp);
    if old.exists() {
        fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    if target.exists() {
        fs::rename(&target, &old).map_err(io(&target))?;
    }
    fs::rename(&tmp, &target).map_err(io(&tmp))?;
    sync_dir(out);
    if old.exists() {
        fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    Ok(())
}

/// Finish or undo swaps that a kill cut short, and drop half-built dirs.
pub fn recover(out: &Path) -> Result<()> {
    for name in [CHECKPOINT, BEST] {
        let target = out.join(name);
        let (tmp, old) = (sibling(&target, ".tmp"), sibling(&target, ".old"));
        if !target.exists() && old.exists() {
            fs::rename(&old, &target).map_err(io(&old))?;
        }
        for leftover in [tmp, old] {
            if leftover.exists() {
                fs::remove_dir_all(&leftover).map_err(io(&leftover))?;
            }
        }
    }
    sync_dir(out);
    Ok(())
}

/// The parts of a run besides the model that a checkpoint keeps.
pub struct RunState<'a> {
    pub opt: &'a AdamW,
    pub ema: Option<&'a Ema>,
    /// The distillation heads' parameters.
    pub distill: Option<&'a ParamStore>,
    pub state: &'a TrainerState,
}

/// Write the resumable checkpoint.
pub fn save_checkpoint(out: &Path, files: &ModelFiles, params: &ParamStore, run: &RunState<'_>) -> Result<()> {
    replace_dir(out, CHECKPOINT, |dir| {
        files.write(dir, params)?;
        run.opt.save_state(dir.join(OPTIMIZER_FILE))?;
        if let Some(ema) = run.ema {
            ema.save(dir.join(EMA_FILE))?;
        }
        if let Some(distill) = run.distill {
            distill.save_safetensors(dir.join(DISTILL_FILE), DType::F32)?;
        }
        let json = serde_json::to_string_pretty(run.state).map_err(|e| Error::Msg(e.to_string()))?;
        write_atomic(dir.join(STATE_FILE), json.as_bytes())
    })
}

/// Write the best model so far.
pub fn save_best(out: &Path, files: &ModelFiles, params: &ParamStore) -> Result<()> {
    save_model(&out.join(BEST), files, params)
}

/// Write a GLiNER folder at `dir` (parents created as needed), swapped in atomically.
pub fn save_model(dir: &Path, files: &ModelFiles, params: &ParamStore) -> Result<()> {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name().and_then(|n| n.to_str())) else {
        return Err(Error::file(dir, "not a folder path to write a model to"));
    };
    let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
    replace_dir(parent, name, |d| files.write(d, params))
}

/// The trainer state of a checkpoint folder.
pub fn load_state(dir: &Path) -> Result<TrainerState> {
    let path = dir.join(STATE_FILE);
    let bytes = fs::read(&path).map_err(io(&path))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::file(&path, format!("invalid trainer state: {e}")))
}

pub fn optimizer_file(dir: &Path) -> PathBuf {
    dir.join(OPTIMIZER_FILE)
}

pub fn ema_file(dir: &Path) -> PathBuf {
    dir.join(EMA_FILE)
}

pub fn distill_file(dir: &Path) -> PathBuf {
    dir.join(DISTILL_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupted_swap_is_recovered() {
        let out = std::env::temp_dir().join(format!("kogner-ckpt-{}", std::process::id()));
        let _ = fs::remove_dir_all(&out);
        fs::create_dir_all(&out).unwrap();
        replace_dir(&out, CHECKPOINT, |d| write_atomic(d.join("x"), b"1")).unwrap();
        replace_dir(&out, CHECKPOINT, |d| write_atomic(d.join("x"), b"2")).unwrap();
        assert_eq!(fs::read(out.join("checkpoint/x")).unwrap(), b"2");
        // cut after moving the old dir away, before the new one was renamed in
        fs::rename(out.join(CHECKPOINT), out.join("checkpoint.old")).unwrap();
        fs::create_dir_all(out.join("checkpoint.tmp")).unwrap();
        recover(&out).unwrap();
        assert_eq!(fs::read(out.join("checkpoint/x")).unwrap(), b"2");
        assert!(!out.join("checkpoint.tmp").exists() && !out.join("checkpoint.old").exists());
        fs::remove_dir_all(&out).unwrap();
    }
}
