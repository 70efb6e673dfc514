//! Learning-rate schedules as factors of each group's base learning rate,
//! with Hugging Face's formulas (`LambdaLR`: `lr = base_lr · factor(step)`,
//! `step` = optimiser steps taken so far, 0 for the first).

use kogner_tensor::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    /// `get_constant_schedule`: 1.
    Constant,
    /// `get_linear_schedule_with_warmup`: `s / w` while `s < w`, then
    /// `max(0, (T − s) / max(1, T − w))`.
    LinearWarmup { warmup_steps: usize, total_steps: usize },
    /// `get_cosine_schedule_with_warmup`: `s / w` while `s < w`, then with
    /// `q = (s − w) / max(1, T − w)`:
    /// `max(0, ½(1 + cos(π · 2 · cycles · q)))` (`cycles` = 0.5: one half cosine to 0).
    CosineWarmup { warmup_steps: usize, total_steps: usize, num_cycles: f64 },
}

impl Schedule {
    /// Linear warm-up over `ratio · total` steps (Hugging Face's
    /// `warmup_ratio`: `ceil(ratio · total)`), then cosine decay to 0.
    pub fn cosine_with_warmup_ratio(total_steps: usize, warmup_ratio: f64) -> Result<Schedule> {
        if !(0.0..=1.0).contains(&warmup_ratio) {
            return Err(Error::Msg(format!("warm-up ratio must be in [0, 1], got {warmup_ratio}")));
        }
        let warmup_steps = (warmup_ratio * total_steps as f64).ceil() as usize;
        Ok(Schedule::CosineWarmup { warmup_steps, total_steps, num_cycles: 0.5 })
    }

    /// The factor for optimiser step `step` (0-based).
    pub fn factor(&self, step: usize) -> f64 {
        let s = step as f64;
        match *self {
            Schedule::Constant => 1.0,
            Schedule::LinearWarmup { warmup_steps, total_steps } => {
                if step < warmup_steps {
                    return s / warmup_steps.max(1) as f64;
                }
                let rest = total_steps.saturating_sub(warmup_steps).max(1) as f64;
                ((total_steps as f64 - s) / rest).max(0.0)
            }
            Schedule::CosineWarmup { warmup_steps, total_steps, num_cycles } => {
                if step < warmup_steps {
                    return s / warmup_steps.max(1) as f64;
                }
                let rest = total_steps.saturating_sub(warmup_steps).max(1) as f64;
                let progress = (s - warmup_steps as f64) / rest;
                (0.5 * (1.0 + (std::f64::consts::PI * num_cycles * 2.0 * progress).cos())).max(0.0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hugging_face_values() {
        assert_eq!(Schedule::Constant.factor(123), 1.0);
        let lin = Schedule::LinearWarmup { warmup_steps: 10, total_steps: 110 };
        assert_eq!(lin.factor(0), 0.0);
        assert_eq!(lin.factor(5), 0.5);
        assert_eq!(lin.factor(10), 1.0);
        assert_eq!(lin.factor(60), 0.5);
        assert_eq!(lin.factor(110), 0.0);
        assert_eq!(lin.factor(500), 0.0);
        let cos = Schedule::cosine_with_warmup_ratio(100, 0.1).unwrap();
        assert_eq!(cos, Schedule::CosineWarmup { warmup_steps: 10, total_steps: 100, num_cycles: 0.5 });
        assert_eq!(cos.factor(0), 0.0);
        assert_eq!(cos.factor(1), 0.1);
        assert_eq!(cos.factor(10), 1.0);
        assert!((cos.factor(55) - 0.5).abs() < 1e-15);
        assert!(cos.factor(100).abs() < 1e-15);
        // 10 000 steps, ratio 0.1 (the paper's setting): 1000 warm-up steps.
        let paper = Schedule::cosine_with_warmup_ratio(10_000, 0.1).unwrap();
        assert_eq!(paper.factor(500), 0.5);
        assert!(Schedule::cosine_with_warmup_ratio(10, 1.5).is_err());
    }
}
