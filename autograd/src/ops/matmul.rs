//! Matrix products: batched `matmul` and the fused `linear`. Backward passes
//! feed transposed *views* (`Tensor::t`) to the GEMM, which reads strides,
//! so no operand is copied to transpose it.

use kogner_tensor::ops::elementwise::sum_to_shape;
use kogner_tensor::{Result, Tensor};

use crate::Var;

impl Var {
    /// `a [..., m, k] @ b [..., k, n] → [..., m, n]`; batch dims broadcast as
    /// in [`Tensor::matmul`].
    pub fn matmul(&self, rhs: &Var) -> Result<Var> {
        let (a, b) = (self.value(), rhs.value());
        let y = a.matmul(&b)?;
        if !Var::needs_grad(&[self, rhs]) {
            return Ok(Var::constant(y));
        }
        let (ga, gb) = (self.requires_grad(), rhs.requires_grad());
        Ok(Var::from_op("matmul", y, &[self, rhs], Box::new(move |g| {
            Ok(vec![
                if ga { Some(matmul_grad_lhs(g, &b, a.shape())?) } else { None },
                if gb { Some(matmul_grad_rhs(&a, g, b.shape())?) } else { None },
            ])
        })))
    }

    /// `x [..., in] · w [out, in]ᵀ + b [out] → [..., out]` (PyTorch's Linear),
    /// through the fused [`Tensor::linear`].
    pub fn linear(&self, w: &Var, b: Option<&Var>) -> Result<Var> {
        let (x, wv) = (self.value(), w.value());
        let bv = b.map(Var::value);
        let y = x.linear(&wv, bv.as_ref())?;
        let mut inputs = vec![self, w];
        inputs.extend(b);
        if !Var::needs_grad(&inputs) {
            return Ok(Var::constant(y));
        }
        let need = [self.requires_grad(), w.requires_grad(), b.is_some_and(Var::requires_grad)];
        let has_bias = b.is_some();
        Ok(Var::from_op("linear", y, &inputs, Box::new(move |g| {
            let (n_out, n_in) = (wv.shape()[0], wv.shape()[1]);
            // Leading dims flattened: every row of x is one sample of the product.
            let rows = leading_rows(x.shape());
            let g2 = g.reshape(&[rows, n_out])?;
            let mut grads = vec![
                if need[0] { Some(g2.matmul(&wv)?.reshape(x.shape())?) } else { None },
                if need[1] { Some(g2.t()?.matmul(&x.reshape(&[rows, n_in])?)?) } else { None },
            ];
            if has_bias {
                grads.push(if need[2] { Some(g2.sum_dims(&[0], false)?) } else { None });
            }
            Ok(grads)
        })))
    }
}

/// d(a·b)/da = g · bᵀ, summed over the batch dims `a` was broadcast along.
/// g [..., m, n], b [..., k, n] → a_shape [..., m, k].
fn matmul_grad_lhs(g: &Tensor, b: &Tensor, a_shape: &[usize]) -> Result<Tensor> {
    sum_to_shape(&g.matmul(&b.t()?)?, a_shape)
}

/// d(a·b)/db = aᵀ · g, summed over the batch dims `b` was broadcast along.
/// a [..., m, k], g [..., m, n] → b_shape [..., k, n].
fn matmul_grad_rhs(a: &Tensor, g: &Tensor, b_shape: &[usize]) -> Result<Tensor> {
    if b_shape.len() == 2 && g.rank() > 2 {
        // A weight-like 2-D rhs: stack the batch into the rows, one product.
        let (k, n) = (b_shape[0], b_shape[1]);
        let rows = leading_rows(g.shape());
        let a_full = a.broadcast_as(&batched(g.shape(), a.shape()))?;
        return a_full.reshape(&[rows, k])?.t()?.matmul(&g.reshape(&[rows, n])?);
    }
    sum_to_shape(&a.t()?.matmul(g)?, b_shape)
}

/// The shape of an operand broadcast to the batch dims of `out`, keeping its
/// own last two dims.
fn batched(out: &[usize], operand: &[usize]) -> Vec<usize> {
    let mut s = out[..out.len() - 2].to_vec();
    s.extend_from_slice(&operand[operand.len() - 2..]);
    s
}

/// Product of all dims but the last: the row count of a flattened `[rows, last]` view.
fn leading_rows(shape: &[usize]) -> usize {
    shape[..shape.len() - 1].iter().product()
}
