//! The driver in candle ops: any device (CPU, CUDA) and dtype (f32, f64). Its forward is the
//! model's forward for library users and for prediction, and candle's autograd can
//! differentiate it; its backward ([`bptt`]) is backpropagation through time written out
//! with the same seam, so that a weight's gradient is one product over all steps rather
//! than one per step, and it is tested against autograd.
//!
//! Shapes: a batch of windows is `[L, B, C, H, W]` (time-major), predictions
//! `[T, B, C, H, W]`. Inside, a step's tensors are `[B, C, ...]` in model space and a run of
//! `n` steps folds time into the batch, `[n*B, C, ...]`.

use std::ops::Range;

use candle_core::{DType, Result, Tensor};

use crate::cell::{lstm_step_backward, lstm_step_forward, StepCache};
use crate::plan::{Loss, Objective, Plan};
use crate::seam::{GateOps, GateOpsBackward, Recurrent, StackStep};
use crate::stack::{Head, Stack};

/// Frames `[n, C, H, W]` to model space `[n, C_m, ...]`: flattened for the linear model,
/// cut into patches (PyTorch's `pixel_unshuffle`) for the conv model.
pub fn to_model_space(stack: &Stack, frames: &Tensor) -> Result<Tensor> {
    let n = frames.dim(0)?;
    let [c, h, w] = stack.frame;
    if stack.flat {
        return frames.reshape((n, c * h * w));
    }
    let p = stack.patch;
    if p == 1 {
        return Ok(frames.clone());
    }
    frames
        .reshape(vec![n, c, h / p, p, w / p, p])? // [n, C, H', P, W', P]
        .permute(vec![0, 1, 3, 5, 2, 4])? // [n, C, P, P, H', W']
        .reshape((n, c * p * p, h / p, w / p)) // [n, C*P*P, H', W']
}

/// The inverse of [`to_model_space`]: `[n, C_m, ...] -> [n, C, H, W]`.
pub fn from_model_space(stack: &Stack, x: &Tensor) -> Result<Tensor> {
    let n = x.dim(0)?;
    let [c, h, w] = stack.frame;
    if stack.flat || stack.patch == 1 {
        return x.reshape((n, c, h, w));
    }
    let p = stack.patch;
    x.reshape(vec![n, c, p, p, h / p, w / p])? // [n, C, P, P, H', W']
        .permute(vec![0, 1, 4, 2, 5, 3])? // [n, C, H', P, W', P]
        .reshape((n, c, h, w))
}

/// One-step-ahead predictions: `inputs` `[T, B, C, H, W]` (step `t` reads frame `t`; `h`
/// and `c` start at zero) to `[T, B, C, H, W]` (the prediction of frame `t + 1`).
/// Differentiable by candle's autograd.
pub fn forward<M: Recurrent + ?Sized>(model: &M, inputs: &Tensor) -> Result<Tensor> {
    let (steps, batch) = (inputs.dim(0)?, inputs.dim(1)?);
    let run = Run::forward(model, inputs, &Plan::one_step(steps + 1, batch))?;
    run.predictions(model.stack(), steps, batch)
}

/// Predictions of `plan` over `windows` `[L, B, C, H, W]`: steps before `plan.known` read
/// the true frame, later ones the previous prediction. Returns `[T, B, C, H, W]`.
pub fn forward_plan<M: Recurrent + ?Sized>(
    model: &M,
    windows: &Tensor,
    plan: &Plan,
) -> Result<Tensor> {
    let run = Run::forward(model, &step_inputs(windows, plan)?, plan)?;
    run.predictions(model.stack(), plan.steps, plan.batch)
}

/// The predictions of `plan` over `windows` `[L, B, C, H, W]` (as [`forward_plan`]) and
/// its batch loss, whatever it is measured by ([`Loss`]): the cross-entropy from the
/// head's logits. Training under autograd and the gradient checks take the loss from here.
pub fn forward_loss<M: Recurrent + ?Sized>(
    model: &M,
    windows: &Tensor,
    plan: &Plan,
) -> Result<(Tensor, Tensor)> {
    let run = Run::forward(model, &step_inputs(windows, plan)?, plan)?;
    let stack = model.stack();
    let predictions = run.predictions(stack, plan.steps, plan.batch)?;
    let loss = match plan.loss {
        Loss::Mse => loss(&predictions, windows, plan)?,
        Loss::Bce => bce_loss(&run.logits(stack, plan.steps, plan.batch)?, windows, plan)?,
    };
    Ok((predictions, loss))
}

/// The window loss: the batch loss of `plan` (see [`Plan::weight`]) from `predictions`
/// `[T, B, C, H, W]` and `windows` `[L, B, C, H, W]`, as a scalar tensor that autograd can
/// differentiate. For the seed's plan this is the sum over steps of the per-step mean
/// squared error. Training under autograd, the written-out backward and every evaluation
/// take it from here; the slice driver fuses the same per-step weights with its gradient,
/// and is tested against it. The cross-entropy needs the logits: [`bce_loss`].
pub fn loss(predictions: &Tensor, windows: &Tensor, plan: &Plan) -> Result<Tensor> {
    if plan.loss != Loss::Mse {
        candle_core::bail!("the cross-entropy is taken from logits: see tensors::bce_loss");
    }
    let (steps, batch) = (plan.steps, plan.batch);
    let targets = windows.narrow(0, 1, steps)?; // [T, B, C, H, W]
    let per_frame = (predictions - targets)?
        .sqr()?
        .reshape((steps * batch, ()))?
        .mean(1)?; // [T*B]
    let windows = plan.mean_over;
    match plan.objective {
        Objective::SumOverSteps if windows == 1 => per_frame.sum_all(),
        Objective::SumOverSteps => per_frame.sum_all()?.affine(1.0 / windows as f64, 0.0),
        Objective::MeanOverLast(n) => per_frame
            .narrow(0, (steps - n) * batch, n * batch)?
            .sum_all()?
            .affine(1.0 / (n * windows) as f64, 0.0),
    }
}

/// The cross-entropy batch loss of `plan` (see [`Loss::Bce`], [`Plan::weight`]) from the
/// logits of the predictions `[T, B, C, H, W]` and `windows` `[L, B, C, H, W]`: per frame
/// the sum over its values of `max(z, 0) - z y + ln(1 + exp(-|z|))`.
pub fn bce_loss(logits: &Tensor, windows: &Tensor, plan: &Plan) -> Result<Tensor> {
    let (steps, batch) = (plan.steps, plan.batch);
    let targets = windows.narrow(0, 1, steps)?; // [T, B, C, H, W]
    let softplus = logits.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?;
    let per_value = ((logits.relu()? - (logits * targets)?)? + softplus)?;
    let per_frame = per_value.reshape((steps * batch, ()))?.sum(1)?; // [T*B]
    let weights: Vec<f64> = (0..steps * batch).map(|s| plan.weight(s / batch)).collect();
    let weights = Tensor::new(weights.as_slice(), logits.device())?.to_dtype(logits.dtype())?;
    (per_frame * weights)?.sum_all()
}

/// One step's forward of one layer: what its backward reads.
struct StepRun {
    cache: StepCache,
    h: Tensor,
}

/// A forward, kept for the backward.
struct Run {
    stack: Stack,
    /// Per layer: the inputs it read, in runs of steps (`[n*B, C_in, ...]` each), and
    /// every step's cache.
    inputs: Vec<Vec<Tensor>>,
    steps: Vec<Vec<StepRun>>,
    /// The predictions in model space, in runs of steps.
    preds: Vec<Tensor>,
    /// Their logits, in the same runs, where the head ends in a sigmoid.
    logits: Vec<Tensor>,
    /// Per layer, `h_0 = c_0 = 0`, `[B, C, ...]`.
    zeros: Vec<Tensor>,
    /// Per layer, the `h` and `c` its first step starts from where they are not zero (an
    /// encoder-forecaster's forecaster).
    starts: Vec<Option<(Tensor, Tensor)>>,
}

impl Run {
    /// `inputs` `[known or T, B, C, H, W]`: the true frames steps may read (the first
    /// `plan.known` do; later ones where the plan samples the truth: [`step_inputs`]).
    fn forward<M: Recurrent + ?Sized>(model: &M, inputs: &Tensor, plan: &Plan) -> Result<Run> {
        let (steps, batch, known) = (plan.steps, plan.batch, plan.known);
        let stack = model.stack();
        let (dtype, device) = (inputs.dtype(), inputs.device());
        let (_, _, c, h, w) = inputs.dims5()?;
        let x0 = inputs
            .narrow(0, 0, known)?
            .reshape((known * batch, c, h, w))?;
        let x0 = to_model_space(stack, &x0)?;
        let wired = !stack.wiring.is_plain();
        let zeros = stack
            .hidden
            .iter()
            .map(|&c| {
                let mut shape = vec![batch, c];
                shape.extend(stack.spatial_dims());
                Tensor::zeros(shape, dtype, device)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut run = Run {
            stack: stack.clone(),
            inputs: vec![Vec::new(); stack.layers()],
            steps: (0..stack.layers()).map(|_| Vec::new()).collect(),
            preds: Vec::new(),
            logits: Vec::new(),
            starts: vec![None; stack.layers()],
            zeros,
        };
        if let Some(own) = model.own_step() {
            run.forward_own(model, own, &x0, inputs, plan)?;
            return Ok(run);
        }
        if wired {
            run.forward_wired(model, &x0, inputs, plan)?;
            return Ok(run);
        }
        // Known inputs: layer by layer; each layer's input half folded over the steps.
        let mut input = x0.clone();
        for k in 0..stack.layers() {
            run.inputs[k].push(input.clone());
            let px = GateOps::input_preact(model, k, &input)?; // [known*B, 4C, ...]
            for t in 0..known {
                run.step(model, k, &px.narrow(0, t * batch, batch)?)?;
            }
            let hs: Vec<&Tensor> = run.steps[k].iter().map(|s| &s.h).collect();
            input = Tensor::cat(&hs, 0)?; // [known*B, C, ...]
        }
        run.push_head(model, &input, &x0)?;
        // Each later step reads the prediction before it (or, sampled, the true frame).
        for t in known..steps {
            let last = run.preds.last().expect("the known steps' predictions");
            let pred = last.narrow(0, last.dim(0)? - batch, batch)?; // [B, C_m, ...]
            let fed = fed(stack, inputs, plan, t, &pred)?;
            let mut input = fed.clone();
            for k in 0..stack.layers() {
                run.inputs[k].push(input.clone());
                let px = GateOps::input_preact(model, k, &input)?; // [B, 4C, ...]
                run.step(model, k, &px)?;
                input = run.steps[k].last().expect("a step").h.clone();
            }
            run.push_head(model, &input, &fed)?;
        }
        Ok(run)
    }

    /// A model's own step ([`StackStep`]), step by step, each step's prediction in a run
    /// of its own. `x0`: the known inputs in model space, `[known*B, C_m, ...]`.
    fn forward_own<M: Recurrent + ?Sized>(
        &mut self,
        model: &M,
        own: &dyn StackStep,
        x0: &Tensor,
        inputs: &Tensor,
        plan: &Plan,
    ) -> Result<()> {
        let (steps, batch, known) = (plan.steps, plan.batch, plan.known);
        let stack = model.stack();
        if !stack.wiring.is_plain() {
            candle_core::bail!("a model with its own step takes the plain stack only");
        }
        let mut state = own.initial_state(batch, x0.dtype(), x0.device())?;
        for t in 0..steps {
            let x = match t < known {
                true => x0.narrow(0, t * batch, batch)?,
                false => fed(stack, inputs, plan, t, self.preds.last().expect("a step"))?,
            }; // [B, C_m, ...]
            let (read, next) = own.step(&x, &state)?; // [B, C_head, ...]
            state = next;
            self.push_head(model, &read, &x)?;
        }
        Ok(())
    }

    /// Any [`crate::stack::Wiring`], step by step (a state may flow from the top layer of
    /// one step to the bottom layer of the next), each step's prediction in a run of its
    /// own. `x0`: the known inputs in model space, `[known*B, C_m, ...]`.
    fn forward_wired<M: Recurrent + ?Sized>(
        &mut self,
        model: &M,
        x0: &Tensor,
        inputs: &Tensor,
        plan: &Plan,
    ) -> Result<()> {
        let (steps, batch, known) = (plan.steps, plan.batch, plan.known);
        let stack = model.stack();
        let (layers, encoder) = (stack.layers(), stack.wiring.encoder_layers);
        if encoder > 0 && known >= steps {
            candle_core::bail!(
                "an encoder-forecaster forecasts: it needs a plan with steps that read \
                 predictions (--context and --horizon)"
            );
        }
        for t in 0..steps {
            let x = match t < known {
                true => x0.narrow(0, t * batch, batch)?,
                false => fed(
                    stack,
                    inputs,
                    plan,
                    t,
                    self.preds.last().expect("a step before"),
                )?,
            }; // [B, C_m, ...]
            let (encoding, forecasting) = active_layers(stack, t, known);
            // No inputs are kept: only the written-out backward reads them, and it takes
            // plain stacks alone.
            let mut input = x.clone();
            if stack.wiring.top_down {
                let top = layers - 1;
                let h_top = self.steps[top].last().map_or(&self.zeros[top], |s| &s.h);
                input = Tensor::cat(&[&input, h_top], 1)?;
            }
            for k in encoding.clone() {
                let px = GateOps::input_preact(model, k, &input)?; // [B, 4C, ...]
                self.step(model, k, &px)?;
                input = self.steps[k].last().expect("a step").h.clone();
            }
            if encoder > 0 && t + 1 == known {
                // The forecaster starts from the encoder's last states, layer by layer.
                for k in 0..encoder {
                    self.starts[encoder + k] = self.steps[k]
                        .last()
                        .map(|s| (s.h.clone(), s.cache.c.clone()));
                }
            }
            let mut input = match stack.wiring.blind_forecaster {
                true => x.zeros_like()?,
                false => x.clone(),
            };
            for k in forecasting.clone() {
                let px = GateOps::input_preact(model, k, &input)?; // [B, 4C, ...]
                self.step(model, k, &px)?;
                input = self.steps[k].last().expect("a step").h.clone();
            }
            let active = |k: usize| encoding.contains(&k) || forecasting.contains(&k);
            // The head reads the states of this step, or zeros for a layer that has not
            // stepped yet (the forecaster's, during the encoder's steps).
            let h_of = |k: usize| match active(k) {
                true => &self.steps[k].last().expect("a step").h,
                false => &self.zeros[k],
            };
            let read = match stack.wiring.head_reads.as_slice() {
                [] => h_of(layers - 1).clone(),
                reads => Tensor::cat(&reads.iter().map(|&k| h_of(k)).collect::<Vec<_>>(), 1)?,
            }; // [B, C_head, ...]
            self.push_head(model, &read, &x)?;
        }
        Ok(())
    }

    /// Layer `k`'s next step from the input half of its pre-activations `px` `[B, 4C, ...]`.
    fn step<M: Recurrent + ?Sized>(&mut self, model: &M, k: usize, px: &Tensor) -> Result<()> {
        let done = &self.steps[k];
        let (h_prev, c_prev) = match (done.last(), &self.starts[k]) {
            (Some(s), _) => (Some(&s.h), &s.cache.c),
            (None, Some((h, c))) => (Some(h), c),
            (None, None) => (None, &self.zeros[k]),
        };
        let preact = GateOps::add_recurrent(model, k, px, h_prev)?; // [B, 4C, ...]
        let (h, cache) = lstm_step_forward(&preact, c_prev, GateOps::peepholes(model, k))?;
        self.steps[k].push(StepRun { cache, h });
        Ok(())
    }

    /// The head's predictions `[n, C_m, ...]` from the top layer's `h` `[n, C_top, ...]`
    /// and the steps' inputs `x` `[n, C_m, ...]` (read by the residual head only), kept
    /// with their logits where the head ends in a sigmoid.
    fn push_head<M: Recurrent + ?Sized>(
        &mut self,
        model: &M,
        h: &Tensor,
        x: &Tensor,
    ) -> Result<()> {
        let pred = match self.stack.head {
            Head::None => h.clone(),
            Head::Affine => GateOps::head_forward(model, h)?,
            Head::AffineSigmoid => {
                let logits = GateOps::head_forward(model, h)?;
                let pred = candle_nn::ops::sigmoid(&logits)?;
                self.logits.push(logits);
                pred
            }
            Head::Residual => (x + GateOps::head_forward(model, h)?)?,
        };
        self.preds.push(pred);
        Ok(())
    }

    /// `[T, B, C, H, W]`.
    fn predictions(&self, stack: &Stack, steps: usize, batch: usize) -> Result<Tensor> {
        frames_of(stack, &self.preds, steps, batch)
    }

    /// The predictions' logits `[T, B, C, H, W]`; an error without a head that ends in a
    /// sigmoid.
    fn logits(&self, stack: &Stack, steps: usize, batch: usize) -> Result<Tensor> {
        if self.logits.is_empty() {
            candle_core::bail!(
                "the cross-entropy loss is taken from the logits of a head that ends in a \
                 sigmoid; this model's head is {}",
                stack.head.name()
            );
        }
        frames_of(stack, &self.logits, steps, batch)
    }
}

/// The layers that step at step `t` of a plan with `known` context steps: those of the
/// stack (or of the encoder) and those of an encoder-forecaster's forecaster. The encoder
/// reads the context's frames but the last, which the forecaster reads as it starts; a
/// blind forecaster reads no frame, so the encoder reads every context frame and the
/// forecaster starts at the same step, after it.
fn active_layers(stack: &Stack, t: usize, known: usize) -> (Range<usize>, Range<usize>) {
    let (layers, encoder) = (stack.layers(), stack.wiring.encoder_layers);
    if encoder == 0 {
        return (0..layers, 0..0);
    }
    let encoded = match stack.wiring.blind_forecaster {
        true => known,
        false => known - 1,
    };
    let encoding = if t < encoded { 0..encoder } else { 0..0 };
    let forecasting = if t + 1 >= known {
        encoder..layers
    } else {
        0..0
    };
    (encoding, forecasting)
}

/// The true frames the steps of `plan` may read, of `windows` `[L, B, C, H, W]`: the
/// context's, and under scheduled sampling every step's (a rollout passes the context
/// alone).
fn step_inputs(windows: &Tensor, plan: &Plan) -> Result<Tensor> {
    match plan.sampling {
        None => windows.narrow(0, 0, plan.known),
        Some(_) => windows.narrow(0, 0, plan.steps),
    }
}

/// What forecast step `t` reads, `[B, C_m, ...]`: each window's previous prediction (of
/// `pred`), or its true frame `t` (of `inputs` `[T, B, C, H, W]`) where the plan samples
/// the truth ([`Plan::reads_truth`]).
fn fed(stack: &Stack, inputs: &Tensor, plan: &Plan, t: usize, pred: &Tensor) -> Result<Tensor> {
    let truth: Vec<bool> = (0..plan.batch).map(|b| plan.reads_truth(t, b)).collect();
    if !truth.contains(&true) {
        return Ok(pred.clone());
    }
    let frames = to_model_space(stack, &inputs.get(t)?)?; // [B, C_m, ...]
    let rows = truth
        .iter()
        .enumerate()
        .map(|(b, &truth)| match truth {
            true => frames.narrow(0, b, 1),
            false => pred.narrow(0, b, 1),
        })
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&rows, 0)
}

/// Runs of steps in model space `[n*B, C_m, ...]` as frames `[T, B, C, H, W]`.
fn frames_of(stack: &Stack, runs: &[Tensor], steps: usize, batch: usize) -> Result<Tensor> {
    let all = Tensor::cat(runs, 0)?; // [T*B, C_m, ...]
    let [c, h, w] = stack.frame;
    from_model_space(stack, &all)?.reshape((steps, batch, c, h, w))
}

/// The loss of `plan` over `windows` `[L, B, C, H, W]` and the gradient of every
/// parameter (in the layout order of [`Stack::params_per_layer`]), by backpropagation
/// through time written out. Reads the loss back from the device once.
pub fn bptt<M: Recurrent + ?Sized>(
    model: &M,
    windows: &Tensor,
    plan: &Plan,
) -> Result<(f64, Vec<Tensor>)> {
    let stack = model.stack();
    check_plain(stack)?;
    let (steps, batch, known) = (plan.steps, plan.batch, plan.known);
    let run = Run::forward(model, &step_inputs(windows, plan)?, plan)?;

    let (loss, d_preds, d_logits) = output_grads(&run, windows, plan)?;
    let d_logits_of = |from: usize, len: usize| -> Result<Option<Tensor>> {
        d_logits
            .as_ref()
            .map(|d| d.narrow(0, from, len))
            .transpose()
    };

    let mut back = Backward::new(model, &run)?;
    let model = model.backward_ops().ok_or_else(|| {
        candle_core::Error::Msg(
            "the model has no written-out backward: differentiate tensors::forward_plan with \
             candle's autograd instead"
                .into(),
        )
    })?;
    // Steps that read the previous prediction, last first.
    let mut d_fed: Option<Tensor> = None;
    for t in (known..steps).rev() {
        let mut d_pred = d_preds.narrow(0, t * batch, batch)?;
        if let Some(d) = d_fed.take() {
            d_pred = (d_pred + d)?;
        }
        let segment = 1 + t - known;
        let d_logit = d_logits_of(t * batch, batch)?;
        let (d_top, d_x) = back.head(model, &run, segment, &d_pred, d_logit)?;
        let mut d_above = d_top;
        for k in (0..stack.layers()).rev() {
            let d_preact = back.layer_step(model, &run, k, t, &d_above)?;
            d_above = GateOpsBackward::input_backward(model, k, &d_preact)?;
        }
        let d = match d_x {
            Some(d_x) => (d_above + d_x)?,
            None => d_above,
        };
        // What step t read reaches the prediction of step t - 1 where it was not the truth.
        d_fed = Some(match (0..batch).any(|b| plan.reads_truth(t, b)) {
            false => d,
            true => {
                let read: Vec<f64> = (0..batch)
                    .map(|b| f64::from(u8::from(!plan.reads_truth(t, b))))
                    .collect();
                d.broadcast_mul(&per_sample(&read, &d)?)?
            }
        });
    }
    back.known_steps(
        model,
        &run,
        plan,
        &d_preds,
        d_logits_of(0, known * batch)?,
        d_fed,
    )?;
    Ok((loss, back.grads(model, &run, steps, batch)?))
}

/// The batch loss of `run` and its gradient in model space, `[T*B, C_m, ...]`: its weights
/// are the plan's, as [`loss`]'s are. The squared error's reaches the predictions (the
/// second); the cross-entropy's, `p - y`, the logits (the third), and the predictions then
/// only what a later step's reading them sends back.
fn output_grads(run: &Run, windows: &Tensor, plan: &Plan) -> Result<(f64, Tensor, Option<Tensor>)> {
    let stack = &run.stack;
    let (steps, batch) = (plan.steps, plan.batch);
    let [c, h, w] = stack.frame;
    let targets = windows
        .narrow(0, 1, steps)?
        .reshape((steps * batch, c, h, w))?;
    let targets = to_model_space(stack, &targets)?; // [T*B, C_m, ...]
    let preds = Tensor::cat(&run.preds, 0)?; // [T*B, C_m, ...]
    let diff = (&preds - &targets)?;
    let weights: Vec<f64> = (0..steps * batch).map(|s| plan.weight(s / batch)).collect();
    let weights = per_sample(&weights, &preds)?;
    let (loss, d_preds, d_logits) = match plan.loss {
        Loss::Mse => (
            loss(&run.predictions(stack, steps, batch)?, windows, plan)?,
            diff.broadcast_mul(&weights.affine(2.0 / (c * h * w) as f64, 0.0)?)?,
            None,
        ),
        Loss::Bce => (
            bce_loss(&run.logits(stack, steps, batch)?, windows, plan)?,
            diff.zeros_like()?,
            Some(diff.broadcast_mul(&weights)?),
        ),
    };
    let loss = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    Ok((loss, d_preds, d_logits))
}

/// One value per sample of `like` (`[n, ...]`) as a tensor that broadcasts over it,
/// `[n, 1, ...]`, of its dtype and device.
fn per_sample(values: &[f64], like: &Tensor) -> Result<Tensor> {
    let mut shape = vec![values.len()];
    shape.extend(std::iter::repeat_n(1, like.rank() - 1));
    Tensor::new(values, like.device())?
        .to_dtype(like.dtype())?
        .reshape(shape)
}

/// Refuses a stack that is not plain: the written-out backward runs plain stacks only.
fn check_plain(stack: &Stack) -> Result<()> {
    if !stack.wiring.is_plain() {
        candle_core::bail!(
            "the written-out backward runs plain stacks only; differentiate \
             tensors::forward_plan with candle's autograd for {:?}",
            stack.wiring
        );
    }
    Ok(())
}

/// What the backward accumulates.
struct Backward {
    /// Per layer, the gradient reaching `h` and `c` from the step after the current one.
    dh_next: Vec<Tensor>,
    dc_next: Vec<Tensor>,
    /// Per layer and step, dLoss/d(pre-activations) `[B, 4C, ...]`.
    d_preact: Vec<Vec<Option<Tensor>>>,
    /// Per layer, the peephole gradients summed so far.
    d_peep: Vec<Option<[Tensor; 3]>>,
    /// Per run of steps, the gradient at the head's affine output.
    d_y: Vec<Option<Tensor>>,
}

impl Backward {
    fn new<M: GateOps + ?Sized>(model: &M, run: &Run) -> Result<Backward> {
        let layers = run.steps.len();
        Ok(Backward {
            dh_next: run.zeros.clone(),
            dc_next: run.zeros.clone(),
            d_preact: run.steps.iter().map(|s| vec![None; s.len()]).collect(),
            d_peep: (0..layers)
                .map(|k| match GateOps::peepholes(model, k) {
                    Some(p) => Ok(Some([
                        p.ci.zeros_like()?,
                        p.cf.zeros_like()?,
                        p.co.zeros_like()?,
                    ])),
                    None => Ok(None),
                })
                .collect::<Result<Vec<_>>>()?,
            d_y: vec![None; run.preds.len()],
        })
    }

    /// The head's backward for run `segment` of predictions, from the gradient reaching
    /// the predictions and, for the cross-entropy, the one reaching their logits: returns
    /// the gradient reaching the top layer's `h` and, for the residual head, the one
    /// reaching the input.
    fn head<M: GateOpsBackward + ?Sized>(
        &mut self,
        model: &M,
        run: &Run,
        segment: usize,
        d_pred: &Tensor,
        d_logit: Option<Tensor>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let head = run.stack.head;
        let d_y = match head {
            Head::None => return Ok((d_pred.clone(), None)),
            Head::AffineSigmoid => {
                let p = &run.preds[segment];
                let d_y = (d_pred * (p * p.affine(-1.0, 1.0)?)?)?;
                match d_logit {
                    Some(d) => (d_y + d)?,
                    None => d_y,
                }
            }
            Head::Affine | Head::Residual => d_pred.clone(),
        };
        let d_top = GateOpsBackward::head_backward(model, &d_y)?;
        self.d_y[segment] = Some(d_y);
        let d_x = (head == Head::Residual).then(|| d_pred.clone());
        Ok((d_top, d_x))
    }

    /// Layer `k`'s step `t`, given the gradient reaching its `h` from above; returns and
    /// keeps dLoss/d(pre-activations).
    fn layer_step<M: GateOpsBackward + ?Sized>(
        &mut self,
        model: &M,
        run: &Run,
        k: usize,
        t: usize,
        d_above: &Tensor,
    ) -> Result<Tensor> {
        let steps = &run.steps[k];
        let c_prev = match t {
            0 => &run.zeros[k],
            _ => &steps[t - 1].cache.c,
        };
        let dh = (d_above + &self.dh_next[k])?;
        let grads = lstm_step_backward(
            &steps[t].cache,
            c_prev,
            GateOps::peepholes(model, k),
            &dh,
            &self.dc_next[k],
        )?;
        if t > 0 {
            self.dh_next[k] = GateOpsBackward::recurrent_backward(model, k, &grads.d_preact)?;
        }
        self.dc_next[k] = grads.dc_prev;
        if let (Some(sum), Some(step)) = (&mut self.d_peep[k], grads.d_peepholes) {
            for (s, g) in sum.iter_mut().zip(step) {
                *s = (&*s + g)?;
            }
        }
        self.d_preact[k][t] = Some(grads.d_preact.clone());
        Ok(grads.d_preact)
    }

    fn grads<M: GateOpsBackward + ?Sized>(
        self,
        model: &M,
        run: &Run,
        steps: usize,
        batch: usize,
    ) -> Result<Vec<Tensor>> {
        let stack = &run.stack;
        let mut grads = Vec::with_capacity(stack.param_count());
        for k in 0..stack.layers() {
            let inputs = Tensor::cat(&run.inputs[k], 0)?; // [T*B, C_in, ...]
            let d_preact = self.d_preact[k]
                .iter()
                .map(|d| d.clone().expect("every step went backward"))
                .collect::<Vec<_>>();
            let d_preact = Tensor::cat(&d_preact, 0)?; // [T*B, 4C, ...]
            let hs: Vec<&Tensor> = run.steps[k].iter().map(|s| &s.h).collect();
            let recurrent = if steps > 1 {
                let n = (steps - 1) * batch;
                let hs_prev = Tensor::cat(&hs[..steps - 1], 0)?; // [(T-1)*B, C, ...]
                Some((hs_prev, d_preact.narrow(0, batch, n)?))
            } else {
                None
            };
            let recurrent = recurrent.as_ref().map(|(h, d)| (h, d));
            grads.extend(GateOpsBackward::gate_grads(
                model, k, &inputs, &d_preact, recurrent,
            )?);
            if let Some(d_peep) = &self.d_peep[k] {
                grads.extend(d_peep.iter().cloned());
            }
        }
        if stack.head.has_affine() {
            let top = stack.layers() - 1;
            let hs: Vec<&Tensor> = run.steps[top].iter().map(|s| &s.h).collect();
            let d_y: Vec<Tensor> = self
                .d_y
                .into_iter()
                .map(|d| d.expect("every run of steps went through the head"))
                .collect();
            grads.extend(GateOpsBackward::head_grads(
                model,
                &Tensor::cat(&hs, 0)?,
                &Tensor::cat(&d_y, 0)?,
            )?);
        }
        Ok(grads)
    }
}

impl Backward {
    /// The steps with known inputs, layer by layer, from the gradient reaching their
    /// predictions (`d_preds` `[T*B, ...]`, its first `known` steps), their logits', and
    /// `d_fed`, what the first forecast step's input sent back to the last known step's
    /// prediction.
    fn known_steps<M: GateOpsBackward + ?Sized>(
        &mut self,
        model: &M,
        run: &Run,
        plan: &Plan,
        d_preds: &Tensor,
        d_logit: Option<Tensor>,
        d_fed: Option<Tensor>,
    ) -> Result<()> {
        let (batch, known) = (plan.batch, plan.known);
        let mut d_pred = d_preds.narrow(0, 0, known * batch)?;
        if let Some(d) = d_fed {
            let last = d_pred.narrow(0, (known - 1) * batch, batch)?;
            let head = d_pred.narrow(0, 0, (known - 1) * batch)?;
            d_pred = Tensor::cat(&[head, (last + d)?], 0)?;
        }
        let (mut d_above, _) = self.head(model, run, 0, &d_pred, d_logit)?;
        for k in (0..run.stack.layers()).rev() {
            for t in (0..known).rev() {
                self.layer_step(model, run, k, t, &d_above.narrow(0, t * batch, batch)?)?;
            }
            if k > 0 {
                let d_preact = self.d_preact[k][..known]
                    .iter()
                    .map(|d| d.clone().expect("every known step went backward"))
                    .collect::<Vec<_>>();
                d_above = GateOpsBackward::input_backward(model, k, &Tensor::cat(&d_preact, 0)?)?;
            }
        }
        Ok(())
    }
}
