//! KoGNER's distillation heads (SPEC §5.3): two small MLPs map a linked
//! span's representation and its KG node's teacher vector H into one
//! shared width, and L_dist is the mean squared error between them.
//!
//! MLP_span(x) = fc2(ReLU(fc1(x)))   D → span_hidden → shared
//! MLP_dist(x) = fc2(ReLU(fc1(x)))   r → dist_hidden → shared
//! L_dist = mean over all |linked| × shared elements of (MLP_span(S) − MLP_dist(H))²
//! (torch `F.mse_loss`, reduction "mean"). Parameters are named
//! `span.fc1.weight`, …, `dist.fc2.bias`, as in the fixture.

use kogner_autograd::ops::loss::{mse, Reduction};
use kogner_autograd::Var;
use kogner_tensor::{Error, Result};

use crate::builder::ParamBuilder;
use crate::nn::Linear;

/// Widths of the two heads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DistillConfig {
    /// D: the student's span representation width.
    pub span_dim: usize,
    /// r: the teacher's width (dz + dg + dt).
    pub teacher_dim: usize,
    pub span_hidden: usize,
    pub dist_hidden: usize,
    /// The shared width both heads map into (the paper's "KG hidden size 58").
    pub shared_dim: usize,
}

/// Linear → ReLU → Linear.
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
}

impl Mlp {
    fn new(b: &ParamBuilder, d_in: usize, hidden: usize, d_out: usize) -> Result<Mlp> {
        Ok(Mlp { fc1: Linear::new(&b.pp("fc1"), d_in, hidden, true)?, fc2: Linear::new(&b.pp("fc2"), hidden, d_out, true)? })
    }

    /// x [L, d_in] → [L, d_out]
    pub fn forward(&self, x: &Var) -> Result<Var> {
        self.fc2.forward(&self.fc1.forward(x)?.relu()?)
    }
}

pub struct DistillHeads {
    pub config: DistillConfig,
    pub span: Mlp,
    pub dist: Mlp,
}

impl DistillHeads {
    pub fn new(b: &ParamBuilder, config: DistillConfig) -> Result<DistillHeads> {
        let c = config;
        if [c.span_dim, c.teacher_dim, c.span_hidden, c.dist_hidden, c.shared_dim].contains(&0) {
            return Err(Error::Msg(format!("distillation heads: every width must be at least 1 ({c:?})")));
        }
        Ok(DistillHeads {
            config,
            span: Mlp::new(&b.pp("span"), c.span_dim, c.span_hidden, c.shared_dim)?,
            dist: Mlp::new(&b.pp("dist"), c.teacher_dim, c.dist_hidden, c.shared_dim)?,
        })
    }

    /// L_dist for linked spans `span_reps` [L, D] and their nodes' teacher
    /// rows `teacher` [L, r]; a rank-0 zero when L = 0 (no linked span).
    pub fn loss(&self, span_reps: &Var, teacher: &Var) -> Result<Var> {
        let (s, t) = (span_reps.shape(), teacher.shape());
        let c = &self.config;
        if s.len() != 2 || t.len() != 2 || s[0] != t[0] || s[1] != c.span_dim || t[1] != c.teacher_dim {
            return Err(Error::Msg(format!(
                "distillation loss: span reps {s:?} and teacher rows {t:?} must be [L, {}] and [L, {}]",
                c.span_dim, c.teacher_dim
            )));
        }
        mse(&self.span.forward(span_reps)?, &self.dist.forward(teacher)?, Reduction::Mean)
    }
}

#[cfg(test)]
mod tests {
    //! Parity with the torch fixture `shared/fixtures/teacher/distill/`:
    //! L_dist and L within 1e-5, every gradient (S, H, H_nodes, all MLP
    //! parameters) within 1e-6 + 1e-4·|want|.

    use std::collections::HashMap;
    use std::path::Path;

    use kogner_tensor::safetensors_io::SafeTensorsFile;
    use kogner_tensor::Tensor;

    use super::*;
    use crate::builder::TensorMap;

    fn assert_close(name: &str, got: &Tensor, want: &Tensor, atol: f64, rtol: f64) {
        assert_eq!(got.shape(), want.shape(), "{name}: shape");
        let (g, w) = (got.to_f64_vec().unwrap(), want.to_f64_vec().unwrap());
        for (i, (&x, &y)) in g.iter().zip(&w).enumerate() {
            assert!((x - y).abs() <= atol + rtol * y.abs(), "{name}[{i}]: got {x}, want {y}");
        }
    }

    #[test]
    fn matches_the_torch_fixture() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/teacher/distill");
        let st = SafeTensorsFile::open(dir.join("fixture.safetensors")).expect("distill fixture missing");
        let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
        let get = |n: &str| st.get(n).unwrap_or_else(|e| panic!("fixture tensor {n}: {e}"));
        let width = |k: &str| cfg[k].as_u64().unwrap() as usize;
        let params: HashMap<String, Tensor> =
            st.names().into_iter().filter_map(|n| n.strip_prefix("param.").map(|p| (p.to_string(), st.get(&n).unwrap()))).collect();
        let builder = ParamBuilder::from_source(Box::new(TensorMap { name: "distill fixture".into(), tensors: params }));
        let config = DistillConfig {
            span_dim: width("span_dim"),
            teacher_dim: width("teacher_dim"),
            span_hidden: width("span_hidden"),
            dist_hidden: width("dist_hidden"),
            shared_dim: width("shared_dim"),
        };
        let heads = DistillHeads::new(&builder, config).unwrap();

        // Spans → nodes, as the trainer links them: gather the linked rows of S and H_nodes.
        let s = Var::leaf(get("S"));
        let h_nodes = Var::leaf(get("H_nodes"));
        let links: Vec<i64> = get("span_node_index").to_vec::<i64>().unwrap();
        let linked: Vec<i64> = (0..links.len() as i64).filter(|&i| links[i as usize] >= 0).collect();
        assert_eq!(linked, get("linked_span_index").to_vec::<i64>().unwrap());
        let nodes: Vec<i64> = linked.iter().map(|&i| links[i as usize]).collect();
        let span_rows = s.index_select(0, &Tensor::from_vec(linked.clone(), &[linked.len()]).unwrap()).unwrap();
        let h = h_nodes.index_select(0, &Tensor::from_vec(nodes.clone(), &[nodes.len()]).unwrap()).unwrap();

        let l_dist = heads.loss(&span_rows, &h).unwrap();
        let (a, b) = (cfg["a"].as_f64().unwrap(), cfg["b"].as_f64().unwrap());
        let loss = l_dist.mul_scalar(b).unwrap().add_scalar(a * cfg["l_bce"].as_f64().unwrap()).unwrap();
        assert_close("out.p_span", &heads.span.forward(&span_rows).unwrap().value(), &get("out.p_span"), 1e-5, 0.0);
        assert_close("out.p_dist", &heads.dist.forward(&h).unwrap().value(), &get("out.p_dist"), 1e-5, 0.0);
        assert_close("out.l_dist", &l_dist.value(), &get("out.l_dist"), 1e-5, 0.0);
        assert_close("out.loss", &loss.value(), &get("out.loss"), 1e-5, 0.0);

        let grads = loss.backward().unwrap();
        assert_close("grad.S", grads.get(&s).unwrap(), &get("grad.S"), 1e-6, 1e-4);
        assert_close("grad.H_nodes", grads.get(&h_nodes).unwrap(), &get("grad.H_nodes"), 1e-6, 1e-4);
        // dL/dH per linked span: the same loss with the gathered H as the leaf.
        let h_leaf = Var::leaf(get("H"));
        assert_close("H", &h.value(), &h_leaf.value(), 0.0, 0.0);
        let grads_h = heads.loss(&span_rows, &h_leaf).unwrap().mul_scalar(b).unwrap().backward().unwrap();
        assert_close("grad.H", grads_h.get(&h_leaf).unwrap(), &get("grad.H"), 1e-6, 1e-4);
        for (name, var) in builder.params().iter() {
            assert_close(name, grads.get(var).unwrap(), &get(&format!("grad.{name}")), 1e-6, 1e-4);
        }
        assert_eq!(builder.params().len(), 8);
    }

    #[test]
    fn no_linked_span_gives_zero_loss_and_wrong_widths_are_errors() {
        let config = DistillConfig { span_dim: 4, teacher_dim: 6, span_hidden: 5, dist_hidden: 3, shared_dim: 2 };
        let heads = DistillHeads::new(&ParamBuilder::random(1), config).unwrap();
        let empty = |d| Var::constant(Tensor::zeros(&[0, d], kogner_tensor::DType::F32));
        assert_eq!(heads.loss(&empty(4), &empty(6)).unwrap().value().to_scalar().unwrap(), 0.0);
        let err = heads.loss(&empty(4), &empty(5)).err().unwrap().to_string();
        assert!(err.contains("[L, 6]"), "{err}");
        assert!(DistillHeads::new(&ParamBuilder::random(1), DistillConfig { shared_dim: 0, ..config }).is_err());
    }
}
