//! How a model does on held-out windows, and how copying the last frame does on the same
//! frames: the loss the model trains on, the image metrics of its predictions, the paper's
//! cross-entropy, and for forecasts each of those per frame ahead.

use candle_core::{DType, Tensor};
use lstm_core::{tensors, Loss, Objective, Plan, Recurrent};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::metrics::FrameMetrics;
use crate::model::{forward_plan, predict};

/// Test windows forecast at once.
pub const BATCH: usize = 16;

/// Forecasting: `context` frames in, `horizon` predicted. `None`: one step ahead (the seed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forecast {
    pub context: usize,
    pub horizon: usize,
}

impl Forecast {
    /// The plan of `batch` windows.
    pub fn plan(&self, batch: usize) -> Plan {
        Plan::forecast(self.context, self.horizon, batch)
    }
}

/// An evaluation over a set of windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Windows evaluated.
    pub windows: usize,
    /// Frames predicted per window.
    pub predicted_per_window: usize,
    /// Values in a frame, `C*H*W`.
    #[serde(default)]
    pub pixels_per_frame: usize,
    /// The window loss the model trains on, mean over windows (see
    /// [`Evaluation::measured_by`]).
    pub loss: f64,
    /// The metrics of every predicted frame, mean over frames (`bce` per frame).
    pub metrics: FrameMetrics,
    /// Shi et al.'s measure: the cross-entropy summed over a window's predicted frames and
    /// their pixels, mean over windows.
    pub bce_per_window: f64,
    /// Forecasts: the metrics of the `k`-th predicted frame (`k` from 1), mean over windows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_horizon: Vec<FrameMetrics>,
}

/// An evaluation as the files hold it (`<model>.summary.json`, `eval --json`): every name
/// says its unit, and the model's block and copy-last's share these keys, so two figures
/// under one key compare as they stand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Windows evaluated.
    pub windows: usize,
    /// Predicted frames per window (one step ahead: the window's length less one).
    pub predicted_frames_per_window: usize,
    /// The loss the model trains on (`--context`/`--horizon`: the mean over the predicted
    /// frames of the per-frame MSE; else the seed's sum over steps of the per-step MSE;
    /// with `--loss bce`, `bce_per_window`), mean over windows.
    #[serde(with = "crate::rows::metric")]
    pub loss_per_window: f64,
    /// Squared error per pixel (clipped to [0, 1]), mean over pixels and frames.
    #[serde(with = "crate::rows::metric")]
    pub mse_per_pixel: f64,
    /// Absolute error per pixel, mean over pixels and frames.
    #[serde(with = "crate::rows::metric")]
    pub mae_per_pixel: f64,
    /// OpenSTL's MSE (the convention of its Moving MNIST table): squared error summed over
    /// a frame's pixels (all channels), mean over frames: `mse_per_pixel` times the values
    /// in a frame.
    #[serde(with = "crate::rows::metric")]
    pub mse_sum_per_frame: f64,
    /// OpenSTL's MAE: absolute error summed over a frame's pixels, mean over frames.
    #[serde(with = "crate::rows::metric")]
    pub mae_sum_per_frame: f64,
    /// PSNR of each frame in dB (capped at [`crate::metrics::PSNR_CAP_DB`]), mean over
    /// frames.
    #[serde(with = "crate::rows::metric")]
    pub psnr_db_per_frame: f64,
    /// SSIM of each frame, mean over frames.
    #[serde(with = "crate::rows::metric")]
    pub ssim_per_frame: f64,
    /// Cross-entropy summed over a frame's pixels, mean over frames.
    #[serde(with = "crate::rows::metric")]
    pub bce_per_frame: f64,
    /// Cross-entropy summed over a window's predicted frames (Shi et al.'s figure per
    /// sequence), mean over windows: `bce_per_frame` times the predicted frames per window.
    #[serde(with = "crate::rows::metric")]
    pub bce_per_window: f64,
    /// Forecasts: the figures of the k-th predicted frame, mean over windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_frame_ahead: Option<PerFrameAhead>,
}

/// Forecasts' figures of the k-th predicted frame (`[k - 1]`), mean over windows; units as
/// in [`Figures`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerFrameAhead {
    #[serde(with = "crate::rows::metric_list")]
    pub mse_per_pixel: Vec<f64>,
    #[serde(with = "crate::rows::metric_list")]
    pub mae_per_pixel: Vec<f64>,
    #[serde(with = "crate::rows::metric_list")]
    pub psnr_db: Vec<f64>,
    #[serde(with = "crate::rows::metric_list")]
    pub ssim: Vec<f64>,
    #[serde(with = "crate::rows::metric_list")]
    pub bce_per_frame: Vec<f64>,
}

impl Evaluation {
    /// This evaluation with `loss` the window loss of a run trained with `loss`: the
    /// cross-entropy per window ([`Evaluation::bce_per_window`]) for [`Loss::Bce`].
    pub fn measured_by(self, loss: Loss) -> Evaluation {
        match loss {
            Loss::Mse => self,
            Loss::Bce => Evaluation {
                loss: self.bce_per_window,
                ..self
            },
        }
    }

    /// The figures as the files hold them.
    pub fn figures(&self) -> Figures {
        let m = &self.metrics;
        let list = |f: fn(&FrameMetrics) -> f64| self.per_horizon.iter().map(f).collect();
        Figures {
            windows: self.windows,
            predicted_frames_per_window: self.predicted_per_window,
            loss_per_window: self.loss,
            mse_per_pixel: m.mse,
            mae_per_pixel: m.mae,
            mse_sum_per_frame: m.mse * self.pixels_per_frame as f64,
            mae_sum_per_frame: m.mae * self.pixels_per_frame as f64,
            psnr_db_per_frame: m.psnr,
            ssim_per_frame: m.ssim,
            bce_per_frame: m.bce,
            bce_per_window: self.bce_per_window,
            per_frame_ahead: (!self.per_horizon.is_empty()).then(|| PerFrameAhead {
                mse_per_pixel: list(|m| m.mse),
                mae_per_pixel: list(|m| m.mae),
                psnr_db: list(|m| m.psnr),
                ssim: list(|m| m.ssim),
                bce_per_frame: list(|m| m.bce),
            }),
        }
    }
}

/// Evaluates `model` on `windows` (each `[L, C, H, W]`): one step ahead, or forecasting.
/// One-step windows go one at a time through [`predict`] and [`tensors::loss`], as the seed's
/// runs were evaluated; forecasts [`BATCH`] at a time through [`forward_plan`].
pub fn evaluate<M: Recurrent>(
    model: &M,
    windows: &[Tensor],
    forecast: Option<Forecast>,
) -> Result<Evaluation> {
    evaluate_seeing(model, windows, forecast, &mut |_, _| Ok(()))
}

/// What an evaluation scored, window by window: the predicted frames `[N, C, H, W]` and
/// the true ones.
pub type Seen<'a> = dyn FnMut(&Tensor, &Tensor) -> Result<()> + 'a;

/// [`evaluate`], showing `seen` each window's predicted and true frames as they are scored
/// (to save them, say).
pub fn evaluate_seeing<M: Recurrent>(
    model: &M,
    windows: &[Tensor],
    forecast: Option<Forecast>,
    seen: &mut Seen,
) -> Result<Evaluation> {
    let Some(f) = forecast else {
        return one_step(windows, |window| Ok(predict(model, window)?.detach()), seen);
    };
    forecasts(
        windows,
        f,
        |batch, plan| {
            let predictions = forward_plan(model, batch, plan)?; // [T, B, C, H, W]
            Ok(predictions.narrow(0, f.context - 1, f.horizon)?) // [N, B, C, H, W]
        },
        seen,
    )
}

/// Copying the last frame, on the same windows and frames as [`evaluate`]: one step ahead,
/// each frame from the one before; forecasting, every predicted frame from the last frame
/// of the context.
pub fn copy_last(windows: &[Tensor], forecast: Option<Forecast>) -> Result<Evaluation> {
    let seen = &mut |_: &Tensor, _: &Tensor| Ok(());
    let Some(f) = forecast else {
        return one_step(
            windows,
            |window| {
                let steps = window.dim(0)? - 1;
                Ok(window.narrow(0, 0, steps)?)
            },
            seen,
        );
    };
    forecasts(
        windows,
        f,
        |batch, _| {
            let last = batch.narrow(0, f.context - 1, 1)?; // [1, B, C, H, W]
            Ok(last.repeat((f.horizon, 1, 1, 1, 1))?) // [N, B, C, H, W]
        },
        seen,
    )
}

/// Forecasts of `windows` (each `[L, C, H, W]`), [`BATCH`] at a time: `ahead` turns a batch
/// `[L, B, C, H, W]` and its plan into the `N` predicted frames `[N, B, C, H, W]`; each
/// window's are scored against its last `N` frames.
fn forecasts(
    windows: &[Tensor],
    f: Forecast,
    ahead: impl Fn(&Tensor, &Plan) -> Result<Tensor>,
    seen: &mut Seen,
) -> Result<Evaluation> {
    let mut losses = Vec::new();
    let mut per_window = Vec::new();
    let mut by_horizon: Vec<Vec<FrameMetrics>> = vec![Vec::new(); f.horizon];
    for chunk in windows.chunks(BATCH) {
        let members: Vec<&Tensor> = chunk.iter().collect();
        let batch = Tensor::stack(&members, 1)?; // [L, B, C, H, W]
        let plan = f.plan(chunk.len());
        check_len(&batch, &plan)?;
        let predicted_all = ahead(&batch, &plan)?; // [N, B, C, H, W]
        for (b, window) in chunk.iter().enumerate() {
            let predicted = predicted_all.narrow(1, b, 1)?.squeeze(1)?; // [N, C, H, W]
            let truth = window.narrow(0, f.context, f.horizon)?;
            seen(&predicted, &truth)?;
            let metrics = per_frame_metrics(&predicted, &truth)?;
            // The window loss of the predicted frames alone: a forecast of them after the
            // last context frame.
            let read = window.narrow(0, f.context - 1, f.horizon + 1)?; // [N+1, C, H, W]
            let plan = Plan::forecast(1, f.horizon, 1);
            losses.push(window_loss(&predicted, &read, &plan)?);
            per_window.push(metrics.iter().map(|m| m.bce).sum::<f64>());
            for (k, m) in metrics.into_iter().enumerate() {
                by_horizon[k].push(m);
            }
        }
    }
    Ok(summarise(
        losses,
        per_window,
        by_horizon,
        pixels_per_frame(windows),
    ))
}

/// One step ahead over each window `[L, C, H, W]`, its predictions `[L-1, C, H, W]` of
/// frames `1 .. L-1` from `predictions`: the seed's window loss and the metrics of each
/// predicted frame.
fn one_step(
    windows: &[Tensor],
    predictions: impl Fn(&Tensor) -> Result<Tensor>,
    seen: &mut Seen,
) -> Result<Evaluation> {
    let mut loss_sum = 0.0;
    let mut frames = Vec::new();
    let mut per_window = Vec::new();
    for window in windows {
        let predicted = predictions(window)?; // [L-1, C, H, W]
        let plan = Plan::one_step(window.dim(0)?, 1);
        loss_sum += window_loss(&predicted, window, &plan)?;
        let truth = window.narrow(0, 1, predicted.dim(0)?)?;
        seen(&predicted, &truth)?;
        let metrics = per_frame_metrics(&predicted, &truth)?;
        per_window.push(metrics.iter().map(|m| m.bce).sum::<f64>());
        frames.extend(metrics);
    }
    Ok(Evaluation {
        windows: windows.len(),
        predicted_per_window: frames.len() / windows.len().max(1),
        pixels_per_frame: pixels_per_frame(windows),
        loss: loss_sum / windows.len().max(1) as f64,
        metrics: FrameMetrics::mean(&frames),
        bce_per_window: mean(&per_window),
        per_horizon: Vec::new(),
    })
}

fn summarise(
    losses: Vec<f64>,
    per_window: Vec<f64>,
    by_horizon: Vec<Vec<FrameMetrics>>,
    pixels_per_frame: usize,
) -> Evaluation {
    let all: Vec<FrameMetrics> = by_horizon.iter().flatten().copied().collect();
    Evaluation {
        windows: losses.len(),
        predicted_per_window: by_horizon.len(),
        pixels_per_frame,
        loss: mean(&losses),
        metrics: FrameMetrics::mean(&all),
        bce_per_window: mean(&per_window),
        per_horizon: by_horizon.iter().map(|m| FrameMetrics::mean(m)).collect(),
    }
}

/// [`tensors::loss`] of one window `[L, C, H, W]` and its predictions `[T, C, H, W]`.
fn window_loss(predicted: &Tensor, window: &Tensor, plan: &Plan) -> Result<f64> {
    let loss = tensors::loss(&predicted.unsqueeze(1)?, &window.unsqueeze(1)?, plan)?;
    Ok(loss.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// `C*H*W` of the windows' frames (`[L, C, H, W]` each).
fn pixels_per_frame(windows: &[Tensor]) -> usize {
    windows
        .first()
        .map_or(0, |w| w.dims()[1..].iter().product())
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

fn check_len(batch: &Tensor, plan: &Plan) -> Result<()> {
    let len = batch.dim(0)?;
    if len != plan.window_len() {
        return Err(Error::Config(format!(
            "windows of {len} frames for a forecast of {} after {} (windows of {})",
            match plan.objective {
                Objective::MeanOverLast(n) => n,
                Objective::SumOverSteps => 1,
            },
            plan.known,
            plan.window_len()
        )));
    }
    Ok(())
}

/// Metrics of each predicted frame: `predictions` and `truth` are `[N, C, H, W]`.
pub fn per_frame_metrics(predictions: &Tensor, truth: &Tensor) -> Result<Vec<FrameMetrics>> {
    let (n, c, h, w) = truth.dims4()?;
    let flat = |t: &Tensor| -> Result<Vec<f32>> {
        Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
    };
    let (p, t) = (flat(predictions)?, flat(truth)?);
    let frame = c * h * w;
    Ok((0..n)
        .map(|k| {
            FrameMetrics::of(
                &p[k * frame..(k + 1) * frame],
                &t[k * frame..(k + 1) * frame],
                c,
                h,
                w,
            )
        })
        .collect())
}
