//! Reverse pass: topological order of the recorded graph, then each op's
//! backward in reverse, accumulating gradients that meet at a node.

use std::collections::{HashMap, HashSet};

use kogner_tensor::{Error, Result, Tensor};

use crate::{Var, VarId};

/// Gradients of the leaves that require grad, keyed by their [`VarId`].
#[derive(Default, Clone)]
pub struct Grads {
    map: HashMap<VarId, Tensor>,
}

impl Grads {
    pub fn get(&self, v: &Var) -> Option<&Tensor> {
        self.map.get(&v.id())
    }
    pub fn get_id(&self, id: VarId) -> Option<&Tensor> {
        self.map.get(&id)
    }
    pub fn remove(&mut self, v: &Var) -> Option<Tensor> {
        self.map.remove(&v.id())
    }
    pub fn insert(&mut self, v: &Var, g: Tensor) {
        self.map.insert(v.id(), g);
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = (&VarId, &Tensor)> {
        self.map.iter()
    }

    /// Add another set of gradients into this one (gradient accumulation
    /// over micro-batches).
    pub fn accumulate(&mut self, other: Grads) -> Result<()> {
        for (id, g) in other.map {
            accumulate(&mut self.map, id, g)?;
        }
        Ok(())
    }

    /// Multiply every gradient by `s` (clipping, averaging).
    pub fn scale(&mut self, s: f64) -> Result<()> {
        for g in self.map.values_mut() {
            *g = g.mul_scalar(s)?;
        }
        Ok(())
    }

    /// Global L2 norm over all gradients (computed in f64, added in the
    /// leaves' creation order so a run's clipping is the same every time).
    pub fn global_norm(&self) -> Result<f64> {
        let mut ids: Vec<&VarId> = self.map.keys().collect();
        ids.sort_unstable();
        let mut acc = 0.0f64;
        for id in ids {
            acc += self.map[id].sum_squares_f64()?;
        }
        Ok(acc.sqrt())
    }
}

fn accumulate(map: &mut HashMap<VarId, Tensor>, id: VarId, g: Tensor) -> Result<()> {
    match map.get_mut(&id) {
        Some(prev) => prev.add_assign(&g),
        None => {
            map.insert(id, g);
            Ok(())
        }
    }
}

impl Var {
    /// Gradients of this var (seeded with ones: for a scalar loss, d loss / d leaf).
    pub fn backward(&self) -> Result<Grads> {
        let v = self.value();
        self.backward_with(Tensor::ones(v.shape(), v.dtype()))
    }

    /// Reverse pass seeded with `grad` (same shape as this var).
    pub fn backward_with(&self, grad: Tensor) -> Result<Grads> {
        if grad.shape() != self.value().shape() {
            return Err(Error::ShapeMismatch { op: "backward", lhs: grad.shape().to_vec(), rhs: self.shape() });
        }
        let order = self.topological_order();
        let mut pending: HashMap<VarId, Tensor> = HashMap::new();
        let mut grads = Grads::default();
        pending.insert(self.id(), grad);
        for node in order.iter().rev() {
            let Some(g) = pending.remove(&node.id()) else { continue };
            match &node.0.op {
                None => {
                    if node.requires_grad() {
                        accumulate(&mut grads.map, node.id(), g)?;
                    }
                }
                Some(rec) => {
                    let input_grads = (rec.backward)(&g)
                        .map_err(|e| Error::Msg(format!("backward of {}: {e}", rec.name)))?;
                    if input_grads.len() != rec.inputs.len() {
                        return Err(Error::Msg(format!("backward of {}: returned {} gradients for {} inputs", rec.name, input_grads.len(), rec.inputs.len())));
                    }
                    for (input, ig) in rec.inputs.iter().zip(input_grads) {
                        let Some(ig) = ig else { continue };
                        if !input.requires_grad() {
                            continue;
                        }
                        if ig.shape() != input.value().shape() {
                            return Err(Error::Msg(format!(
                                "backward of {}: gradient shape {:?} for an input of shape {:?}",
                                rec.name,
                                ig.shape(),
                                input.shape()
                            )));
                        }
                        accumulate(&mut pending, input.id(), ig)?;
                    }
                }
            }
        }
        Ok(grads)
    }

    /// Nodes reachable from `self` through recorded ops, inputs before users.
    fn topological_order(&self) -> Vec<Var> {
        let mut order = Vec::new();
        let mut visited = HashSet::new();
        // Iterative DFS (graphs of deep models overflow a recursive one).
        let mut stack: Vec<(Var, bool)> = vec![(self.clone(), false)];
        while let Some((v, expanded)) = stack.pop() {
            if expanded {
                order.push(v);
                continue;
            }
            if !v.requires_grad() || !visited.insert(v.id()) {
                continue;
            }
            stack.push((v.clone(), true));
            if let Some(rec) = &v.0.op {
                for input in &rec.inputs {
                    if !visited.contains(&input.id()) {
                        stack.push((input.clone(), false));
                    }
                }
            }
        }
        order
    }
}
