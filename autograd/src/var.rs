//! [`Var`]: a node of the autograd graph.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use kogner_tensor::{DType, Result, Tensor};

use crate::grad_mode::is_grad_enabled;

/// Identity of a node, stable for the life of the `Var` (gradients are keyed by it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VarId(u64);

impl VarId {
    fn fresh() -> VarId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        VarId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// Gradient of an op's output → gradients of its inputs (None: no gradient
/// flows to that input, e.g. an index).
pub type BackwardFn = Box<dyn Fn(&Tensor) -> Result<Vec<Option<Tensor>>> + Send + Sync>;

pub(crate) struct Recorded {
    pub(crate) name: &'static str,
    pub(crate) inputs: Vec<Var>,
    pub(crate) backward: BackwardFn,
}

pub(crate) struct Node {
    pub(crate) id: VarId,
    /// Leaves may have their value replaced (optimiser steps); op outputs never change.
    pub(crate) value: RwLock<Tensor>,
    pub(crate) requires_grad: bool,
    pub(crate) op: Option<Recorded>,
}

impl Drop for Node {
    /// Free long chains (an LSTM over hundreds of words) iteratively: the
    /// default recursive drop through `inputs` could overflow the stack.
    fn drop(&mut self) {
        let Some(op) = self.op.take() else { return };
        let mut stack = op.inputs;
        while let Some(v) = stack.pop() {
            if let Ok(mut node) = Arc::try_unwrap(v.0) {
                if let Some(op) = node.op.take() {
                    stack.extend(op.inputs);
                }
            }
        }
    }
}

/// A tensor in the autograd graph. Cloning is cheap (shared node).
#[derive(Clone)]
pub struct Var(pub(crate) Arc<Node>);

impl std::fmt::Debug for Var {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.value();
        write!(f, "Var#{}[{:?}, {}{}]", self.0.id.0, v.shape(), v.dtype().name(), if self.requires_grad() { ", grad" } else { "" })
    }
}

impl Var {
    fn make(value: Tensor, requires_grad: bool, op: Option<Recorded>) -> Var {
        Var(Arc::new(Node { id: VarId::fresh(), value: RwLock::new(value), requires_grad, op }))
    }

    /// A leaf that receives a gradient (a parameter or a checked input).
    pub fn leaf(value: Tensor) -> Var {
        Var::make(value, true, None)
    }

    /// A leaf that never receives a gradient (data, masks, frozen weights).
    pub fn constant(value: Tensor) -> Var {
        Var::make(value, false, None)
    }

    /// Record the result of an op. `backward` maps the output gradient to one
    /// optional gradient per input, each shaped like that input. When nothing
    /// needs a gradient (no-grad mode, or constant inputs) no node is recorded.
    pub fn from_op(name: &'static str, value: Tensor, inputs: &[&Var], backward: BackwardFn) -> Var {
        if Var::needs_grad(inputs) {
            let inputs = inputs.iter().map(|v| (*v).clone()).collect();
            Var::make(value, true, Some(Recorded { name, inputs, backward }))
        } else {
            Var::constant(value)
        }
    }

    /// Whether an op over `inputs` must record itself. Ops check this before
    /// saving tensors for backward, so inference allocates nothing extra.
    pub fn needs_grad(inputs: &[&Var]) -> bool {
        is_grad_enabled() && inputs.iter().any(|v| v.requires_grad())
    }

    pub fn id(&self) -> VarId {
        self.0.id
    }
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad
    }
    pub fn is_leaf(&self) -> bool {
        self.0.op.is_none()
    }
    /// Name of the op that produced this var (None for leaves).
    pub fn op_name(&self) -> Option<&'static str> {
        self.0.op.as_ref().map(|o| o.name)
    }

    /// The current value (a cheap handle clone).
    pub fn value(&self) -> Tensor {
        self.0.value.read().expect("var lock poisoned").clone()
    }
    pub fn shape(&self) -> Vec<usize> {
        self.value().shape().to_vec()
    }
    pub fn dtype(&self) -> DType {
        self.value().dtype()
    }

    /// Replace a leaf's value (optimiser step). Graphs already recorded keep
    /// the old value they captured.
    pub fn set_value(&self, value: Tensor) -> Result<()> {
        if !self.is_leaf() {
            return Err(kogner_tensor::Error::Msg("set_value: only leaves can be assigned".into()));
        }
        let mut v = self.0.value.write().expect("var lock poisoned");
        if v.shape() != value.shape() || v.dtype() != value.dtype() {
            return Err(kogner_tensor::Error::ShapeMismatch { op: "set_value", lhs: v.shape().to_vec(), rhs: value.shape().to_vec() });
        }
        *v = value;
        Ok(())
    }

    /// Mutate a leaf's value in place (copy-on-write if shared).
    pub fn update_value<R>(&self, f: impl FnOnce(&mut Tensor) -> Result<R>) -> Result<R> {
        let mut v = self.0.value.write().expect("var lock poisoned");
        f(&mut v)
    }

    /// Same value, cut from the graph.
    pub fn detach(&self) -> Var {
        Var::constant(self.value())
    }
}
