//! Adam in the two forms that matter here: Chainer's, which the seed ran, and PyTorch's.
//!
//! Both keep the same moments, `m <- b1 m + (1-b1) g` and `v <- b2 v + (1-b2) g^2`, and
//! differ only in where bias correction meets `eps`:
//! - Chainer: `p -= lr_t * m / (sqrt(v) + eps)`, with `lr_t = lr * sqrt(1-b2^t) / (1-b1^t)`;
//! - PyTorch: `p -= lr * m_hat / (sqrt(v_hat) + eps)`, `m_hat = m/(1-b1^t)`,
//!   `v_hat = v/(1-b2^t)`.
//!
//! Written out, Chainer's step is PyTorch's with `eps` scaled by `sqrt(1-b2^t)`: early on
//! (t = 1: by 0.03) it is much smaller, which matters where `sqrt(v)` is itself near 1e-8,
//! as it is for many of the linear model's 160M weights.

use candle_core::{Result, Tensor, Var};

/// Which Adam update to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdamForm {
    /// Chainer's `optimizers.Adam`, the seed's (default).
    #[default]
    Chainer,
    /// PyTorch's `torch.optim.Adam` (no weight decay).
    Torch,
}

/// Adam's hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamConfig {
    /// Step size (Chainer's `alpha`, PyTorch's `lr`). Seed: 1e-3.
    pub lr: f64,
    /// Decay of the first moment. Seed: 0.9.
    pub beta1: f64,
    /// Decay of the second moment. Seed: 0.999.
    pub beta2: f64,
    /// Added to the denominator; where depends on `form`. Seed: 1e-8.
    pub eps: f64,
    pub form: AdamForm,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            form: AdamForm::Chainer,
        }
    }
}

/// Adam's state for a fixed list of parameters.
pub struct Adam {
    pub config: AdamConfig,
    /// Updates taken so far, `t`.
    pub step: u64,
    /// First moments, one per parameter.
    pub m: Vec<Tensor>,
    /// Second moments, one per parameter.
    pub v: Vec<Tensor>,
}

impl Adam {
    pub fn new(config: AdamConfig, params: &[Var]) -> Result<Adam> {
        let zeros = |p: &Var| p.as_tensor().zeros_like();
        Ok(Adam {
            config,
            step: 0,
            m: params.iter().map(zeros).collect::<Result<_>>()?,
            v: params.iter().map(zeros).collect::<Result<_>>()?,
        })
    }

    /// One update of every parameter from its gradient (same order as at `new`).
    pub fn update(&mut self, params: &[Var], grads: &[Tensor]) -> Result<()> {
        let AdamConfig {
            lr,
            beta1: b1,
            beta2: b2,
            eps,
            form,
        } = self.config;
        self.step += 1;
        let t = self.step as i32;
        let fix1 = 1.0 - b1.powi(t);
        let fix2 = 1.0 - b2.powi(t);
        for (k, (param, grad)) in params.iter().zip(grads).enumerate() {
            // Detached, so the moments never hold on to the graph a gradient came from:
            // a tracked gradient would chain every update to the one before it.
            let grad = &grad.detach();
            // m += (1-b1)(g-m); v += (1-b2)(g^2-v): Chainer's spelling of the same moments.
            let m = (&self.m[k] + ((grad - &self.m[k])? * (1.0 - b1))?)?;
            let v = (&self.v[k] + ((grad.sqr()? - &self.v[k])? * (1.0 - b2))?)?;
            let delta = match form {
                AdamForm::Chainer => {
                    let lr_t = lr * fix2.sqrt() / fix1;
                    ((&m / (v.sqrt()? + eps)?)? * lr_t)?
                }
                AdamForm::Torch => {
                    let m_hat = (&m / fix1)?;
                    let v_hat = (&v / fix2)?;
                    ((m_hat / (v_hat.sqrt()? + eps)?)? * lr)?
                }
            };
            param.set(&(param.as_tensor().detach() - delta)?)?;
            self.m[k] = m;
            self.v[k] = v;
        }
        Ok(())
    }
}
