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
    /// The moments of each parameter, in the parameter's own storage.
    moments: Vec<Moments>,
}

/// First and second moments of one parameter. f32 CPU parameters keep them as plain vectors
/// and are updated in place by one fused loop; any other parameter keeps them as tensors and
/// is updated by the textbook formula written with tensor ops.
enum Moments {
    Fused { m: Vec<f32>, v: Vec<f32> },
    Tensors { m: Tensor, v: Tensor },
}

/// The scalars of one update, shared by both code paths.
#[derive(Debug, Clone, Copy)]
struct StepScalars {
    /// `1 - b1`, `1 - b2`.
    one_minus_b1: f64,
    one_minus_b2: f64,
    /// Multiplies `m` in the update: Chainer's `lr_t`, or PyTorch's `lr / (1 - b1^t)`.
    step_size: f64,
    /// Divides `v` before the square root: 1 for Chainer, `1 - b2^t` for PyTorch.
    v_scale: f64,
    eps: f64,
}

impl StepScalars {
    fn new(config: &AdamConfig, t: u64) -> StepScalars {
        let AdamConfig {
            lr,
            beta1: b1,
            beta2: b2,
            eps,
            form,
        } = *config;
        let fix1 = 1.0 - b1.powi(t as i32);
        let fix2 = 1.0 - b2.powi(t as i32);
        let (step_size, v_scale) = match form {
            // p -= lr_t * m / (sqrt(v) + eps), lr_t = lr * sqrt(fix2) / fix1.
            AdamForm::Chainer => (lr * fix2.sqrt() / fix1, 1.0),
            // p -= lr * (m / fix1) / (sqrt(v / fix2) + eps).
            AdamForm::Torch => (lr / fix1, fix2),
        };
        StepScalars {
            one_minus_b1: 1.0 - b1,
            one_minus_b2: 1.0 - b2,
            step_size,
            v_scale,
            eps,
        }
    }
}

impl Adam {
    pub fn new(config: AdamConfig, params: &[Var]) -> Result<Adam> {
        let moments = params
            .iter()
            .map(|p| {
                let p = p.as_tensor();
                Ok(if crate::cpu::is_f32_cpu(p) {
                    Moments::Fused {
                        m: vec![0.0; p.elem_count()],
                        v: vec![0.0; p.elem_count()],
                    }
                } else {
                    Moments::Tensors {
                        m: p.zeros_like()?,
                        v: p.zeros_like()?,
                    }
                })
            })
            .collect::<Result<_>>()?;
        Ok(Adam {
            config,
            step: 0,
            moments,
        })
    }

    /// One update of every parameter from its gradient (same order as at `new`).
    ///
    /// Returns the index of the first parameter whose update left a value that is not
    /// finite (from a NaN or infinite gradient, or an overflow), or `None`. All parameters
    /// are updated either way; a caller that stops on `Some` must not save them.
    pub fn update(&mut self, params: &[Var], grads: &[Tensor]) -> Result<Option<usize>> {
        self.step += 1;
        let scalars = StepScalars::new(&self.config, self.step);
        let mut first_bad = None;
        for (k, ((param, grad), moments)) in
            params.iter().zip(grads).zip(&mut self.moments).enumerate()
        {
            let finite = match moments {
                Moments::Fused { m, v } if crate::cpu::is_f32_cpu(grad) => {
                    let grad = grad.contiguous()?;
                    let mut finite = true;
                    crate::cpu::with_f32(&grad, |g| {
                        crate::cpu::update_f32(param.as_tensor(), |p| {
                            finite = fused_update(p, g, m, v, &scalars)
                        })
                    })??;
                    finite
                }
                Moments::Fused { .. } => candle_core::bail!(
                    "Adam: an f32 CPU parameter got a {:?} gradient on {:?}",
                    grad.dtype(),
                    grad.device()
                ),
                Moments::Tensors { m, v } => {
                    let (m_new, v_new) = tensor_update(param, grad, m, v, &scalars)?;
                    *m = m_new;
                    *v = v_new;
                    // A sum of squares is NaN or infinite if any term is.
                    let sum = param
                        .as_tensor()
                        .sqr()?
                        .sum_all()?
                        .to_dtype(candle_core::DType::F64)?
                        .to_scalar::<f64>()?;
                    sum.is_finite()
                }
            };
            if !finite && first_bad.is_none() {
                first_bad = Some(k);
            }
        }
        Ok(first_bad)
    }

    /// The moments of parameter `k` as tensors (for checkpoints and tests).
    pub fn moments(&self, k: usize) -> Result<(Tensor, Tensor)> {
        Ok(match &self.moments[k] {
            Moments::Fused { m, v } => (
                crate::cpu::tensor_from(m.clone(), &[m.len()])?,
                crate::cpu::tensor_from(v.clone(), &[v.len()])?,
            ),
            Moments::Tensors { m, v } => (m.flatten_all()?, v.flatten_all()?),
        })
    }

    /// The moments of parameter `k` as borrowed f32 slices, where they are kept that way
    /// (f32 CPU parameters): what a checkpoint writes without copying 1.3 GB.
    pub fn moment_slices(&self, k: usize) -> Option<(&[f32], &[f32])> {
        match &self.moments[k] {
            Moments::Fused { m, v } => Some((m, v)),
            Moments::Tensors { .. } => None,
        }
    }

    /// Restores the state a checkpoint saved: the step count, and the two moments of each
    /// parameter as flat f32 values (moved in, not copied, where the parameter keeps them
    /// that way).
    pub fn restore(&mut self, step: u64, moments: Vec<(Vec<f32>, Vec<f32>)>) -> Result<()> {
        if moments.len() != self.moments.len() {
            candle_core::bail!(
                "Adam: {} pairs of moments for {} parameters",
                moments.len(),
                self.moments.len()
            );
        }
        for (slot, (m, v)) in self.moments.iter_mut().zip(moments) {
            match slot {
                Moments::Fused { m: sm, v: sv } => {
                    for (target, source) in [(sm, m), (sv, v)] {
                        if source.len() != target.len() {
                            candle_core::bail!(
                                "Adam: a moment of {} values for a parameter of {}",
                                source.len(),
                                target.len()
                            );
                        }
                        *target = source;
                    }
                }
                Moments::Tensors { m: tm, v: tv } => {
                    for (target, source) in [(tm, m), (tv, v)] {
                        if source.len() != target.elem_count() {
                            candle_core::bail!(
                                "Adam: a moment of {} values for a parameter of {}",
                                source.len(),
                                target.elem_count()
                            );
                        }
                        *target = crate::cpu::tensor_from(source, target.dims())?
                            .to_dtype(target.dtype())?
                            .to_device(target.device())?;
                    }
                }
            }
        }
        self.step = step;
        Ok(())
    }
}

/// The textbook update with tensor ops, for any device and dtype.
fn tensor_update(
    param: &Var,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    s: &StepScalars,
) -> Result<(Tensor, Tensor)> {
    // Detached, so the moments never hold on to the graph a gradient came from: a tracked
    // gradient would chain every update to the one before it.
    let grad = &grad.detach();
    // m += (1-b1)(g-m); v += (1-b2)(g^2-v): Chainer's spelling of the same moments.
    let m = (m + ((grad - m)? * s.one_minus_b1)?)?;
    let v = (v + ((grad.sqr()? - v)? * s.one_minus_b2)?)?;
    let denom = ((&v / s.v_scale)?.sqrt()? + s.eps)?;
    let delta = ((&m / denom)? * s.step_size)?;
    param.set(&(param.as_tensor().detach() - delta)?)?;
    Ok((m, v))
}

/// The same update as [`tensor_update`] in one pass over memory, in place: for the linear
/// model's 160M parameters the tensor form makes a dozen 643 MB temporaries per update.
/// Split across rayon's threads in blocks that fit in cache. Returns whether every updated
/// parameter is finite.
fn fused_update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: &StepScalars) -> bool {
    use rayon::prelude::*;
    debug_assert!(p.len() == g.len() && p.len() == m.len() && p.len() == v.len());
    let (b1c, b2c) = (s.one_minus_b1 as f32, s.one_minus_b2 as f32);
    let (step, eps) = (s.step_size as f32, s.eps as f32);
    let inv_v_scale = (1.0 / s.v_scale) as f32;
    const BLOCK: usize = 1 << 14;
    if p.len() <= BLOCK {
        // Small tensors (the conv model's 208 weights): handing them to the pool costs
        // more than the update, a thread wake-up each.
        return fused_block(p, g, m, v, (b1c, b2c, step, eps, inv_v_scale));
    }
    // `reduce`, not `all`: every block must be updated even after a bad one.
    p.par_chunks_mut(BLOCK)
        .zip(g.par_chunks(BLOCK))
        .zip(m.par_chunks_mut(BLOCK))
        .zip(v.par_chunks_mut(BLOCK))
        .map(|(((p, g), m), v)| fused_block(p, g, m, v, (b1c, b2c, step, eps, inv_v_scale)))
        .reduce(|| true, |a, b| a && b)
}

/// One block of [`fused_update`]; scalars are `(1-b1, 1-b2, step size, eps, 1/v_scale)`.
#[inline]
fn fused_block(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    (b1c, b2c, step, eps, inv_v_scale): (f32, f32, f32, f32, f32),
) -> bool {
    // Checked while the values are in registers: a separate pass over the linear model's
    // gradients would cost 0.3 s an epoch.
    let mut finite = true;
    for i in 0..p.len() {
        let gi = g[i];
        let mi = m[i] + (gi - m[i]) * b1c;
        let vi = v[i] + (gi * gi - v[i]) * b2c;
        m[i] = mi;
        v[i] = vi;
        p[i] -= mi / ((vi * inv_v_scale).sqrt() + eps) * step;
        finite &= p[i].is_finite();
    }
    finite
}
