//! Named parameters: what a model owns, what an optimiser updates, and what
//! round-trips through safetensors by name.

use std::collections::BTreeMap;
use std::path::Path;

use kogner_tensor::safetensors_io::{self, SafeTensorsFile};
use kogner_tensor::{DType, Error, Result, Tensor};

use crate::Var;

/// Parameters by dotted name (`encoder.layer.0.attention.self.query_proj.weight`).
#[derive(Default, Clone)]
pub struct ParamStore {
    params: BTreeMap<String, Var>,
}

impl ParamStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a trainable parameter. Names are unique.
    pub fn insert(&mut self, name: impl Into<String>, value: Tensor) -> Result<Var> {
        let name = name.into();
        if self.params.contains_key(&name) {
            return Err(Error::Msg(format!("parameter `{name}` defined twice")));
        }
        let v = Var::leaf(value);
        self.params.insert(name, v.clone());
        Ok(v)
    }

    /// Add every parameter of `other` as the same variables (shared, not
    /// copied): one store for an optimiser that updates a model and an
    /// auxiliary head together. Names stay unique.
    pub fn extend(&mut self, other: &ParamStore) -> Result<()> {
        for (name, var) in other.iter() {
            if self.params.contains_key(name) {
                return Err(Error::Msg(format!("parameter `{name}` defined twice")));
            }
            self.params.insert(name.clone(), var.clone());
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Var> {
        self.params.get(name)
    }

    /// The parameter `name`, or an error naming it.
    pub fn var(&self, name: &str) -> Result<Var> {
        self.params.get(name).cloned().ok_or_else(|| Error::Msg(format!("missing parameter `{name}`")))
    }

    pub fn len(&self) -> usize {
        self.params.len()
    }
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }
    /// Total number of scalar parameters.
    pub fn num_elements(&self) -> usize {
        self.params.values().map(|v| v.value().numel()).sum()
    }
    /// `(name, var)` sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Var)> {
        self.params.iter()
    }

    /// Assign values from a safetensors file to the parameters of the same
    /// name. Every parameter must be present with its exact shape; tensors
    /// in the file that are not parameters are reported when `strict`.
    pub fn load_safetensors(&self, path: impl AsRef<Path>, strict: bool) -> Result<()> {
        let file = SafeTensorsFile::open(path.as_ref())?;
        for (name, var) in &self.params {
            let cur = var.value();
            let t = file.get_as(name, cur.shape(), cur.dtype())?;
            var.set_value(t)?;
        }
        if strict {
            let unknown: Vec<String> = file.names().into_iter().filter(|n| !self.params.contains_key(n)).collect();
            if !unknown.is_empty() {
                return Err(Error::file(path, format!("unexpected tensors: {}", unknown.join(", "))));
            }
        }
        Ok(())
    }

    /// Write every parameter (in `dtype`, e.g. F32) atomically.
    pub fn save_safetensors(&self, path: impl AsRef<Path>, dtype: DType) -> Result<()> {
        let values: Vec<(String, Tensor)> =
            self.params.iter().map(|(n, v)| Ok((n.clone(), v.value().to_dtype(dtype)?))).collect::<Result<_>>()?;
        let refs: Vec<(&str, &Tensor)> = values.iter().map(|(n, t)| (n.as_str(), t)).collect();
        safetensors_io::save(path, &refs, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_by_name_with_checked_shapes() {
        let dir = std::env::temp_dir().join(format!("kogner-params-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.safetensors");
        let mut a = ParamStore::new();
        a.insert("lin.weight", Tensor::from_vec(vec![1f32, 2.0, 3.0, 4.0], &[2, 2]).unwrap()).unwrap();
        a.insert("lin.bias", Tensor::from_vec(vec![5f32, 6.0], &[2]).unwrap()).unwrap();
        assert!(a.insert("lin.bias", Tensor::zeros(&[2], DType::F32)).is_err());
        a.save_safetensors(&path, DType::F32).unwrap();

        let mut b = ParamStore::new();
        b.insert("lin.weight", Tensor::zeros(&[2, 2], DType::F32)).unwrap();
        b.insert("lin.bias", Tensor::zeros(&[2], DType::F32)).unwrap();
        b.load_safetensors(&path, true).unwrap();
        assert_eq!(b.var("lin.bias").unwrap().value().to_vec::<f32>().unwrap(), vec![5.0, 6.0]);

        let mut c = ParamStore::new();
        c.insert("lin.weight", Tensor::zeros(&[3, 2], DType::F32)).unwrap();
        let e = c.load_safetensors(&path, false).unwrap_err().to_string();
        assert!(e.contains("`lin.weight` has shape [2, 2], expected [3, 2]"), "{e}");
        let e = c.load_safetensors(&path, true).unwrap_err().to_string();
        assert!(e.contains("lin.weight"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn extend_shares_the_variables_and_rejects_a_name_twice() {
        let mut model = ParamStore::new();
        let w = model.insert("w", Tensor::zeros(&[2], DType::F32)).unwrap();
        let mut head = ParamStore::new();
        head.insert("head.w", Tensor::zeros(&[3], DType::F32)).unwrap();
        let mut all = model.clone();
        all.extend(&head).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all.var("w").unwrap().id(), w.id());
        assert!(all.extend(&head).unwrap_err().to_string().contains("`head.w` defined twice"));
    }
}
