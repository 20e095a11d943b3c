//! The one seam between the harness and a model.

use std::fmt::Debug;

use candle_core::{Result, Tensor, Var};
use candle_nn::VarBuilder;
use serde::{de::DeserializeOwned, Serialize};

use crate::adam::Adam;

/// One named parameter a model needs, in PyTorch's naming and layout.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// PyTorch-style name, e.g. `lstm.weight_ih_l0`.
    pub name: String,
    /// Shape in PyTorch's layout (weights `[out, in]`, conv kernels `[out, in, kh, kw]`).
    pub shape: Vec<usize>,
    /// How the seed initialises it.
    pub init: ParamInit,
}

/// The seed's initialisation: weights `~ Normal(0, sqrt(1 / fan_in))`, biases zero.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamInit {
    /// Normal with mean 0 and standard deviation `sqrt(1 / fan_in)`.
    Normal {
        fan_in: usize,
    },
    Zeros,
}

impl ParamSpec {
    pub fn weight(name: impl Into<String>, shape: &[usize], fan_in: usize) -> ParamSpec {
        ParamSpec {
            name: name.into(),
            shape: shape.to_vec(),
            init: ParamInit::Normal { fan_in },
        }
    }

    pub fn bias(name: impl Into<String>, shape: &[usize]) -> ParamSpec {
        ParamSpec {
            name: name.into(),
            shape: shape.to_vec(),
            init: ParamInit::Zeros,
        }
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A next-frame model as the harness sees it. The harness never asks which model it has.
///
/// Dimension legend: `L` frames in a window, `C` channels, `H x W` frame size.
pub trait SequenceModel: Sized {
    /// Short name of the model family: the stem of its CSV and checkpoint files.
    const KIND: &'static str;

    /// Everything that shapes the model (frame size, hidden size, ...). Saved in checkpoints.
    type Config: Clone + Debug + Serialize + DeserializeOwned;

    /// The parameters, in a fixed order: the order they are initialised, optimised and
    /// saved in.
    fn parameter_specs(config: &Self::Config) -> Vec<ParamSpec>;

    /// Builds the model from tensors named as in [`SequenceModel::parameter_specs`].
    fn load(config: &Self::Config, vb: VarBuilder) -> Result<Self>;

    /// One-step-ahead predictions over a window.
    ///
    /// ## Parameters
    /// - `window`: `[L, C, H, W]`; step `t` reads frame `t`, h and c start at zero.
    ///
    /// ## Returns
    /// `[L-1, C, H, W]`: the prediction of frame `t + 1` for `t = 0 .. L-2`.
    fn predict(&self, window: &Tensor) -> Result<Tensor>;

    /// The window loss and its gradient with respect to each parameter, in
    /// [`SequenceModel::parameter_specs`] order; `params` are the variables the model was
    /// built from, in that order. The default is [`autograd_loss_and_grads`]: `predict`
    /// and candle's autograd, the reference a hand-written backward is tested against.
    fn loss_and_grads(&self, window: &Tensor, params: &[Var]) -> Result<(f64, Vec<Tensor>)> {
        autograd_loss_and_grads(self, window, params)
    }

    /// One training step on a window: the loss, and unless it is not finite, one Adam
    /// update of `params` (the variables the model was built from, in
    /// [`SequenceModel::parameter_specs`] order).
    ///
    /// The default is [`SequenceModel::loss_and_grads`] then [`Adam::update`]; a model may
    /// fuse the two (the linear model computes its weight gradients inside the update and
    /// never stores them). Either way the result must be the same within rounding: the
    /// tests compare the two.
    fn train_step(&self, window: &Tensor, params: &[Var], adam: &mut Adam) -> Result<Step> {
        unfused_train_step(self, window, params, adam)
    }
}

/// The default [`SequenceModel::train_step`]: gradients first, then the update.
pub fn unfused_train_step<M: SequenceModel>(
    model: &M,
    window: &Tensor,
    params: &[Var],
    adam: &mut Adam,
) -> Result<Step> {
    let (loss, mut grads) = model.loss_and_grads(window, params)?;
    if crate::fault::reached("window") {
        grads[0] = (&grads[0] * f64::NAN)?;
    }
    if !loss.is_finite() {
        return Ok(Step::LossNotFinite(loss));
    }
    Ok(Step::Updated {
        loss,
        not_finite: adam.update(params, &grads)?,
    })
}

/// What [`SequenceModel::train_step`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// The parameters were updated; `not_finite` is the first parameter whose update left a
    /// value that is not finite, as [`Adam::update`] reports it.
    Updated {
        loss: f64,
        not_finite: Option<usize>,
    },
    /// The loss was NaN or infinite; nothing was updated.
    LossNotFinite(f64),
}

/// The reference gradient path: [`SequenceModel::predict`], [`window_loss`], and candle's
/// autograd.
///
/// Fine for small models; for the linear model at the seed's size it is not: each step's
/// weight gradient is built from tracked tensors, so autograd keeps every step's
/// 285 MB outer product alive until the end of the window.
pub fn autograd_loss_and_grads<M: SequenceModel>(
    model: &M,
    window: &Tensor,
    params: &[Var],
) -> Result<(f64, Vec<Tensor>)> {
    let loss = window_loss(&model.predict(window)?, window)?; // []
    let grads = loss.backward()?;
    let loss = loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
    let grads = params
        .iter()
        .map(|p| match grads.get(p.as_tensor()) {
            Some(g) => Ok(g.clone()),
            // A parameter the loss does not reach has a zero gradient.
            None => p.as_tensor().zeros_like(),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((loss, grads))
}

/// The seed's window loss: the sum over steps of the per-step mean squared error.
///
/// ## Parameters
/// - `predictions`: `[L-1, C, H, W]`.
/// - `window`: `[L, C, H, W]`; targets are frames `1 .. L-1`.
///
/// ## Returns
/// A scalar tensor: `sum_t mean_{c,y,x} (pred_t - frame_{t+1})^2`.
pub fn window_loss(predictions: &Tensor, window: &Tensor) -> Result<Tensor> {
    let steps = predictions.dim(0)?;
    let targets = window.narrow(0, 1, steps)?; // [L-1, C, H, W]
    let per_step = (predictions - targets)?.sqr()?.flatten_from(1)?.mean(1)?; // [L-1]
    per_step.sum_all()
}

/// [`window_loss`] and its gradient with respect to the predictions, for hand-written
/// backward passes.
///
/// ## Returns
/// `(loss, d_pred)`: the loss as a number, and `[L-1, C, H, W]`
/// `dLoss/dpred_t = 2 (pred_t - frame_{t+1}) / P`, `P = C*H*W`, since each step's error is
/// a mean over its `P` values and the steps are summed.
pub fn window_loss_and_grad(predictions: &Tensor, window: &Tensor) -> Result<(f64, Tensor)> {
    let steps = predictions.dim(0)?;
    let per_frame = predictions.elem_count() / steps.max(1);
    let targets = window.narrow(0, 1, steps)?; // [L-1, C, H, W]
    let diff = (predictions - targets)?; // [L-1, C, H, W]
    let loss = diff
        .sqr()?
        .sum_all()?
        .to_dtype(candle_core::DType::F64)?
        .to_scalar::<f64>()?
        / per_frame as f64;
    let d_pred = diff.affine(2.0 / per_frame as f64, 0.0)?; // [L-1, C, H, W]
    Ok((loss, d_pred))
}
