//! What the harness does with a model ([`SequenceModel`]: its name, configuration,
//! parameters and constructor): a training step is one of the core's drivers (forward,
//! backpropagation through time, the loss), then the harness's optimizer; models never see
//! the optimizer.

use std::borrow::Cow;

use candle_core::{DType, Result, Tensor, Var};
use lstm_core::cpu::{is_f32_cpu, with_f32_slices};
use lstm_core::{slices, tensors, Grad, Head, Loss, Plan, Recurrent, StackSlices};
use serde::{Deserialize, Serialize};

use crate::adam::Adam;
pub use lstm_core::{ParamInit, ParamSpec, SequenceModel};

/// What [`train_step`] did.
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

/// Which way the gradients of a training step are made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backward {
    /// The fastest the model and the tensors allow: the slice kernels on f32 CPU tensors,
    /// else the written-out backward in candle ops, else candle's autograd.
    #[default]
    Fastest,
    /// Candle's autograd over the model's forward, whatever fast paths the model has: the
    /// reference the fast paths are tested against, and what a model with no fast path
    /// gets.
    Autograd,
}

/// Whether the slice driver takes `batch`: the model has slice kernels, its stack is plain
/// (see [`lstm_core::Wiring`]), and `batch` and its parameters are f32 on the CPU.
pub fn runs_on_slices<M: Recurrent>(model: &M, batch: &Tensor) -> bool {
    model.kernels().is_some()
        && model.stack().wiring.is_plain()
        && is_f32_cpu(batch)
        && model.parameters().iter().all(|t| is_f32_cpu(t))
}

/// A batch of windows `[L, B, C, H, W]` (f32, CPU) in the slice driver's model space
/// `[L, B, C_m, S]`.
fn model_space<M: Recurrent>(model: &M, batch: &Tensor) -> Result<Vec<f32>> {
    let stack = model.stack();
    let values = batch.flatten_all()?.to_vec1::<f32>()?;
    Ok(if stack.flat || stack.patch == 1 {
        values
    } else {
        lstm_core::stack::to_model_space(&values, stack.frame, stack.patch)
    })
}

/// One training step on a batch of windows `[L, B, C, H, W]`: the loss of `plan`, and unless
/// it is not finite, one Adam update of `params` (the variables the model was built from, in
/// the drivers' layout order).
///
/// On f32 CPU tensors the slice driver runs where the model has slice kernels, and each
/// weight gradient that is a sum of outer products is formed inside Adam's update, a
/// register tile at a time, never stored (643 MB at the seed's linear size). Anything else
/// runs the candle-ops driver (the written-out backward, else autograd), then the update
/// (see [`Backward`]).
pub fn train_step<M: Recurrent>(
    model: &M,
    batch: &Tensor,
    plan: &Plan,
    params: &[Var],
    adam: &mut Adam,
    options: impl Into<StepOptions>,
) -> Result<Step> {
    let options = options.into();
    let run = gradients(model, batch, plan, options.backward)?;
    // Test scaffolding: a NaN gradient in the first parameter (see `fault`).
    let poisoned = crate::fault::reached("window");
    let loss = run.loss();
    if !loss.is_finite() {
        return Ok(Step::LossNotFinite(loss));
    }
    let run = match options.clip_grad_norm {
        Some(max_norm) => clip_grad_norm(model, run, max_norm)?,
        None => run,
    };
    let not_finite = match run {
        Gradients::Tensors(_, mut grads) => {
            if poisoned {
                grads[0] = (&grads[0] * f64::NAN)?;
            }
            adam.update(params, &grads)?
        }
        Gradients::Values(_, mut grads) => {
            if poisoned {
                grads[0].fill(f32::NAN);
            }
            adam.update_with(params, |k| Grad::Values(Cow::Borrowed(&grads[k])))?
        }
        Gradients::Slices(bptt) => {
            let mut grads = bptt.grads(kernels(model));
            if poisoned {
                grads[0] = Grad::Values(Cow::Owned(vec![f32::NAN; params[0].elem_count()]));
            }
            // The weights were read under their storage locks, released before Adam
            // writes them.
            adam.update_with(params, |k| grads[k].borrowed())?
        }
    };
    Ok(Step::Updated { loss, not_finite })
}

/// How a training step runs beyond its batch: which way the gradients are made, and
/// whether their norm is clipped.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepOptions {
    pub backward: Backward,
    /// Scale the gradients, all parameters' together, so that their L2 norm is at most this
    /// (PyTorch's `clip_grad_norm_`: by `max_norm / (norm + 1e-6)` where that is below 1).
    pub clip_grad_norm: Option<f64>,
}

impl From<Backward> for StepOptions {
    fn from(backward: Backward) -> StepOptions {
        StepOptions {
            backward,
            clip_grad_norm: None,
        }
    }
}

/// `run`'s gradients scaled as [`StepOptions::clip_grad_norm`] says. The slice driver's
/// sums of outer products are formed to be measured (the linear model's 643 MB of weight
/// gradients are then stored once).
fn clip_grad_norm<M: Recurrent>(model: &M, run: Gradients, max_norm: f64) -> Result<Gradients> {
    Ok(match run {
        Gradients::Tensors(loss, grads) => {
            // One read back from the device for all parameters.
            let per_parameter = grads
                .iter()
                .map(|g| g.sqr()?.sum_all()?.to_dtype(DType::F64))
                .collect::<Result<Vec<_>>>()?;
            let squares = Tensor::stack(&per_parameter, 0)?
                .sum_all()?
                .to_scalar::<f64>()?;
            let coef = max_norm / (squares.sqrt() + 1e-6);
            let grads = match coef < 1.0 {
                true => grads
                    .iter()
                    .map(|g| g.affine(coef, 0.0))
                    .collect::<Result<Vec<_>>>()?,
                false => grads,
            };
            Gradients::Tensors(loss, grads)
        }
        Gradients::Values(loss, mut grads) => {
            let squares: f64 = grads
                .iter()
                .flatten()
                .map(|&v| f64::from(v) * f64::from(v))
                .sum();
            let coef = max_norm / (squares.sqrt() + 1e-6);
            if coef < 1.0 {
                grads
                    .iter_mut()
                    .flatten()
                    .for_each(|v| *v = (f64::from(*v) * coef) as f32);
            }
            Gradients::Values(loss, grads)
        }
        Gradients::Slices(bptt) => {
            let grads = values(model, &bptt.grads(kernels(model)));
            clip_grad_norm(model, Gradients::Values(bptt.loss, grads), max_norm)?
        }
    })
}

/// A batch's loss and gradients, from the driver that takes it: the one place the driver
/// is chosen, for training ([`train_step`]) and checks ([`loss_and_grads`]) alike.
enum Gradients {
    /// The candle-ops driver's (f64, CUDA), as tensors.
    Tensors(f64, Vec<Tensor>),
    /// The slice driver's over a batch of shards, summed in shard order, as values.
    Values(f64, Vec<Vec<f32>>),
    /// One run of the slice driver, whose weight gradients may be sums of outer products
    /// that are formed only inside Adam's update.
    Slices(Box<slices::Bptt>),
}

impl Gradients {
    fn loss(&self) -> f64 {
        match self {
            Gradients::Tensors(loss, _) | Gradients::Values(loss, _) => *loss,
            Gradients::Slices(bptt) => bptt.loss,
        }
    }
}

/// Runs the driver that takes `batch` `[L, B, C, H, W]` (see [`Backward`]): the slice
/// driver (a batch of more than [`SHARD`] windows in shards), the written-out backward in
/// candle ops, or candle's autograd.
fn gradients<M: Recurrent>(
    model: &M,
    batch: &Tensor,
    plan: &Plan,
    backward: Backward,
) -> Result<Gradients> {
    check_batch(model, batch, plan)?;
    let fastest = backward == Backward::Fastest;
    Ok(if fastest && runs_on_slices(model, batch) {
        if plan.batch > SHARD {
            let (loss, grads) = sharded(model, batch, plan)?;
            Gradients::Values(loss, grads)
        } else {
            Gradients::Slices(Box::new(slice_bptt(model, batch, plan)?))
        }
    } else if fastest && model.backward_ops().is_some() && model.stack().wiring.is_plain() {
        let (loss, grads) = tensors::bptt(model, batch, plan)?;
        Gradients::Tensors(loss, grads)
    } else {
        let (loss, grads) = autograd(model, batch, plan)?;
        Gradients::Tensors(loss, grads)
    })
}

/// Windows per shard of a batch on the slice driver. A batch of more is cut into shards of
/// this many windows (the last one shorter), each run by the driver on its own thread with
/// its matrix products single-threaded, and their losses and gradients are summed in shard
/// order: all of a step parallelises, and the result is the same bits whatever the number of
/// threads. Eight windows keep each convolution's product wide (2048 columns for 16x16
/// planes) on the 2-core machines this was tuned on.
pub const SHARD: usize = 8;

/// A batch `[L, B, C, H, W]` of more than [`SHARD`] windows, shard by shard: the loss, and
/// each parameter's gradient as values. With several ranks, this one computes its block of
/// the shards and gathers the others' ([`crate::collective`]); the sum is the same either way.
fn sharded<M: Recurrent>(model: &M, batch: &Tensor, plan: &Plan) -> Result<(f64, Vec<Vec<f32>>)> {
    use rayon::prelude::*;
    let collective = crate::collective::current();
    let starts: Vec<usize> = (0..plan.batch).step_by(SHARD).collect();
    let block =
        crate::collective::blocks(starts.len(), collective.ranks())[collective.rank()].clone();
    let mine = starts[block]
        .par_iter()
        .map(|&start| {
            let windows = SHARD.min(plan.batch - start);
            let part = batch.narrow(1, start, windows)?.contiguous()?;
            lstm_core::linalg::serial(|| -> Result<(f64, Vec<Vec<f32>>)> {
                let bptt = slice_bptt(model, &part, &plan.shard(start, windows))?;
                let grads = values(model, &bptt.grads(kernels(model)));
                Ok((bptt.loss, grads))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let sizes: Vec<usize> = model.parameters().iter().map(|p| p.elem_count()).collect();
    let shards = crate::collective::gather_shards(collective, starts.len(), mine, &sizes)
        .map_err(candle_core::Error::wrap)?;
    let mut shards = shards.into_iter();
    let (mut loss, mut grads) = shards.next().expect("a batch has windows");
    for (l, g) in shards {
        loss += l;
        for (sum, part) in grads.iter_mut().zip(g) {
            for (a, b) in sum.iter_mut().zip(part) {
                *a += b;
            }
        }
    }
    Ok((loss, grads))
}

/// The slice driver's forward and backward of a batch.
fn slice_bptt<M: Recurrent>(model: &M, batch: &Tensor, plan: &Plan) -> Result<slices::Bptt> {
    let frames = model_space(model, batch)?;
    let stack = model.stack();
    with_f32_slices(&model.parameters(), |params| {
        let weights = StackSlices::new(stack, params);
        slices::bptt(kernels(model), stack, &weights, frames, plan)
    })
}

/// The model's slice kernels, where [`runs_on_slices`] said it has them.
fn kernels<M: Recurrent>(model: &M) -> &dyn lstm_core::GateKernels {
    model
        .kernels()
        .expect("runs_on_slices checked the model has slice kernels")
}

/// Each gradient as values in its parameter's layout.
fn values<M: Recurrent>(model: &M, grads: &[Grad]) -> Vec<Vec<f32>> {
    grads
        .iter()
        .zip(model.parameters())
        .map(|(g, p)| {
            let rows = p.dims().first().copied().unwrap_or(1);
            g.to_values(rows, p.elem_count() / rows.max(1))
        })
        .collect()
}

/// The loss of `plan` on a batch `[L, B, C, H, W]` and the gradient of every parameter, as
/// tensors shaped like the parameters, from the driver [`Backward`] picks. For tests and
/// checks; training uses [`train_step`].
pub fn loss_and_grads<M: Recurrent>(
    model: &M,
    batch: &Tensor,
    plan: &Plan,
    backward: Backward,
) -> Result<(f64, Vec<Tensor>)> {
    let (loss, grads) = match gradients(model, batch, plan, backward)? {
        Gradients::Tensors(loss, grads) => return Ok((loss, grads)),
        Gradients::Values(loss, grads) => (loss, grads),
        Gradients::Slices(bptt) => (bptt.loss, values(model, &bptt.grads(kernels(model)))),
    };
    let grads = grads
        .into_iter()
        .zip(model.parameters())
        .map(|(g, p)| Tensor::from_vec(g, p.dims(), p.device()))
        .collect::<Result<Vec<_>>>()?;
    Ok((loss, grads))
}

/// The reference gradient path, and a model's whole backward when it has no fast path: the
/// candle-ops forward and loss ([`tensors::forward_loss`]), and candle's autograd. Its graph holds every op's
/// output of the window until the backward.
fn autograd<M: Recurrent>(model: &M, batch: &Tensor, plan: &Plan) -> Result<(f64, Vec<Tensor>)> {
    let (_, loss) = tensors::forward_loss(model, batch, plan)?;
    let grads = loss.backward()?;
    let loss = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    let grads = model
        .parameters()
        .into_iter()
        .map(|p| match grads.get(p) {
            Some(g) => Ok(g.clone()),
            // A parameter the loss does not reach has a zero gradient.
            None => p.zeros_like(),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((loss, grads))
}

/// Checks a batch `[L, B, C, H, W]` against the plan and the model's frame.
fn check_batch<M: Recurrent>(model: &M, batch: &Tensor, plan: &Plan) -> Result<()> {
    plan.check().map_err(candle_core::Error::Msg)?;
    let head = model.stack().head;
    if plan.loss == Loss::Bce && head != Head::AffineSigmoid {
        candle_core::bail!(
            "the cross-entropy loss is taken from the logits of a head that ends in a \
             sigmoid; this model's head is {}",
            head.name()
        );
    }
    let (l, b, c, h, w) = batch.dims5()?;
    if l != plan.window_len() || b != plan.batch || [c, h, w] != model.stack().frame {
        candle_core::bail!(
            "a batch of [{l}, {b}, {c}, {h}, {w}] for windows of {} frames, {} at a time, of a \
             model built for {:?} frames",
            plan.window_len(),
            plan.batch,
            model.stack().frame
        );
    }
    Ok(())
}

/// The predictions of `plan` on a batch of windows `[L, B, C, H, W]`: `[T, B, C, H, W]`,
/// each step after `plan.known` reading the prediction before it. On f32 CPU tensors the
/// slice driver runs: candle ops' forward keeps every op's output for a backward, six times
/// the memory for a 32-channel ConvLSTM (measured), and takes longer. Anything else runs
/// the candle-ops driver.
pub fn forward_plan<M: Recurrent>(model: &M, batch: &Tensor, plan: &Plan) -> Result<Tensor> {
    check_batch(model, batch, plan)?;
    if !runs_on_slices(model, batch) {
        return tensors::forward_plan(model, batch, plan);
    }
    let frames = model_space(model, batch)?;
    let stack = model.stack();
    let run = with_f32_slices(&model.parameters(), |params| {
        let weights = StackSlices::new(stack, params);
        slices::forward(kernels(model), stack, &weights, frames, plan)
    })?;
    let predictions = if stack.flat || stack.patch == 1 {
        run.predictions().to_vec()
    } else {
        lstm_core::stack::from_model_space(run.predictions(), stack.frame, stack.patch)
    };
    let [c, h, w] = stack.frame;
    Tensor::from_vec(
        predictions,
        (plan.steps, plan.batch, c, h, w),
        batch.device(),
    )
}

/// One-step-ahead predictions over a window `[L, C, H, W]`: `[L-1, C, H, W]`, the
/// prediction of frame `t + 1` for `t = 0 .. L-2` (h and c start at zero).
pub fn predict<M: Recurrent>(model: &M, window: &Tensor) -> Result<Tensor> {
    let steps = window.dim(0)? - 1;
    let inputs = window.narrow(0, 0, steps)?.unsqueeze(1)?; // [T, 1, C, H, W]
    tensors::forward(model, &inputs)?.squeeze(1) // [T, C, H, W]
}
