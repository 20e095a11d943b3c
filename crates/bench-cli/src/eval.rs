//! `bench-cli eval`: a trained model on any frames, beside copying the last frame.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor};
use harness::evaluate::{copy_last, evaluate, evaluate_seeing, Evaluation, Forecast};
use harness::SequenceModel;

use crate::args::EvalArgs;
use crate::config;

pub fn run(mut args: EvalArgs, matches: &clap::ArgMatches) -> Result<()> {
    config::readable_file("--checkpoint", &args.checkpoint)?;
    args.checkpoint = config::best_weights(&args.checkpoint, args.last);
    if args.context.is_none() {
        // Evaluated as it was trained: a forecaster forecasts unless told otherwise.
        if let Some((context, horizon)) = config::recorded_forecast(&args.checkpoint)? {
            (args.context, args.horizon) = (Some(context), Some(horizon));
        }
    }
    let forecasting = args.context.is_some();
    config::recorded_data(&mut args.data, &args.checkpoint, matches, forecasting)?;
    let args = &args;
    let Some((kind, _)) = harness::resume::recorded_model(&args.checkpoint)? else {
        bail!(
            "--checkpoint {}: no record of the model it holds (a file saved by PyTorch?); \
             eval takes files written by training",
            args.checkpoint.display()
        );
    };
    let forecast = config::forecast(args.context, args.horizon)?;
    let data = crate::fit::load_data(&args.data, forecast.map(|f| f.context + f.horizon))?;
    let device = config::device(args.device)?;
    let job = Eval {
        args,
        data: &data,
        forecast,
        device: &device,
    };
    crate::models::with_model(&kind, job).unwrap_or_else(|| {
        bail!(
            "--checkpoint {}: a model of kind `{kind}`, which this bench-cli does not know",
            args.checkpoint.display()
        )
    })
}

/// Evaluation, once the model's type is known.
struct Eval<'a> {
    args: &'a EvalArgs,
    data: &'a frames::Dataset,
    forecast: Option<Forecast>,
    device: &'a candle_core::Device,
}

impl crate::models::WithModel for Eval<'_> {
    type Output = Result<()>;

    fn run<M: SequenceModel>(self) -> Result<()> {
        eval::<M>(self.args, self.data, self.forecast, self.device)
    }
}

fn eval<M: SequenceModel>(
    args: &EvalArgs,
    data: &frames::Dataset,
    forecast: Option<Forecast>,
    device: &candle_core::Device,
) -> Result<()> {
    let (model, config) =
        harness::predict::load_model::<M>(&args.checkpoint, data.frame_shape(), device)?;
    let windows = data
        .test_windows()?
        .into_iter()
        .map(|w| Ok(w.to_dtype(DType::F32)?.to_device(device)?))
        .collect::<Result<Vec<_>>>()?;
    let test = evaluate_and_save(&model, &windows, forecast, args, data)?
        .measured_by(recorded_loss(&args.checkpoint)?);
    let copy = copy_last(&windows, forecast)?;
    println!(
        "model {} {} from {}",
        M::KIND,
        serde_json::to_string(&config)?,
        args.checkpoint.display()
    );
    println!(
        "data {} ({}, {} channel(s)): {} test window(s) of {} frames, {}",
        data.source,
        data.size(),
        data.channels(),
        windows.len(),
        data.windows.len,
        match forecast {
            Some(f) => format!("{} frames read, {} forecast", f.context, f.horizon),
            None => "one step ahead".into(),
        }
    );
    print_figures(M::KIND, &test, &copy);
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "model": M::KIND,
            "model_config": config,
            "checkpoint": args.checkpoint,
            "data": data.source,
            "forecast": forecast,
            "test": test.figures(),
            "copy_last_frame": copy.figures(),
        });
        let text = serde_json::to_string_pretty(&json)?;
        harness::files::write_bytes_atomic(path, text.as_bytes())
            .with_context(|| format!("--json {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// The loss the run that wrote `checkpoint` trained with, as its record says (none: the
/// seed's squared error).
fn recorded_loss(checkpoint: &std::path::Path) -> Result<harness::Loss> {
    let launch = harness::resume::recorded_launch(checkpoint)?;
    match launch.and_then(|l| l.get("loss").cloned()) {
        Some(loss) => serde_json::from_value(loss).with_context(|| {
            format!(
                "--checkpoint {}: unreadable loss setting",
                checkpoint.display()
            )
        }),
        None => Ok(harness::Loss::Mse),
    }
}

/// The model's evaluation on `windows`, with `--save-predictions`'s files written from it.
fn evaluate_and_save<M: SequenceModel>(
    model: &M,
    windows: &[Tensor],
    forecast: Option<Forecast>,
    args: &EvalArgs,
    data: &frames::Dataset,
) -> Result<Evaluation> {
    let Some(dir) = &args.save_predictions else {
        return Ok(evaluate(model, windows, forecast)?);
    };
    let mut saved = Saved::default();
    let test = evaluate_seeing(model, windows, forecast, &mut |predicted, truth| {
        saved.add(predicted, truth)
    })?;
    let read = match forecast {
        Some(f) => f.context,
        None => data.windows.len - 1,
    };
    saved.write(dir, windows, read)?;
    Ok(test)
}

/// The table of the model's figures beside copy-last's, in the units of the summary's
/// keys: per pixel, dB and SSIM per frame (means over frames), cross-entropy per frame and
/// per window; OpenSTL's sums; per frame ahead for forecasts.
fn print_figures(kind: &str, test: &Evaluation, copy: &Evaluation) {
    println!(
        "{:<16} {:>10} {:>10} {:>8} {:>8} {:>10} {:>12}",
        "", "mse/pixel", "mae/pixel", "psnr dB", "ssim", "bce/frame", "bce/window"
    );
    for (name, e) in [(kind, test), ("copy last frame", copy)] {
        let m = &e.metrics;
        println!(
            "{:<16} {:>10.6} {:>10.6} {:>8.2} {:>8.4} {:>10.1} {:>12.1}",
            name, m.mse, m.mae, m.psnr, m.ssim, m.bce, e.bce_per_window
        );
    }
    let (t, c) = (test.figures(), copy.figures());
    println!(
        "OpenSTL's convention (error summed over a frame's pixels, mean over frames): mse \
         {:.2} / {:.2}, mae {:.2} / {:.2} (model / copy last)",
        t.mse_sum_per_frame, c.mse_sum_per_frame, t.mae_sum_per_frame, c.mae_sum_per_frame
    );
    if !test.per_horizon.is_empty() {
        println!("frames ahead: mse/pixel (model / copy last), ssim (model / copy last)");
        for (k, (a, b)) in test.per_horizon.iter().zip(&copy.per_horizon).enumerate() {
            println!(
                "{:>3}  {:.6} / {:.6}   {:.4} / {:.4}",
                k + 1,
                a.mse,
                b.mse,
                a.ssim,
                b.ssim
            );
        }
    }
}

/// The frames an evaluation scored, window after window, for `--save-predictions`.
#[derive(Default)]
struct Saved {
    predicted: Vec<f32>,
    truth: Vec<f32>,
    /// `[T, C, H, W]` of one window's predicted frames.
    shape: Vec<usize>,
    windows: usize,
}

impl Saved {
    fn add(&mut self, predicted: &Tensor, truth: &Tensor) -> harness::Result<()> {
        self.shape = predicted.dims().to_vec();
        self.predicted
            .extend(predicted.flatten_all()?.to_vec1::<f32>()?);
        self.truth.extend(truth.flatten_all()?.to_vec1::<f32>()?);
        self.windows += 1;
        Ok(())
    }

    /// Writes `dir/preds.npy`, `dir/trues.npy` and `dir/inputs.npy` (the first `read`
    /// frames of each window), each float32 `[N, T, C, H, W]`: OpenSTL's names and layout.
    fn write(&self, dir: &std::path::Path, windows: &[Tensor], read: usize) -> Result<()> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--save-predictions {}: cannot make it", dir.display()))?;
        let shape: Vec<usize> = [self.windows].iter().chain(&self.shape).copied().collect();
        let mut inputs = Vec::new();
        for window in windows {
            inputs.extend(window.narrow(0, 0, read)?.flatten_all()?.to_vec1::<f32>()?);
        }
        let mut input_shape = shape.clone();
        input_shape[1] = read;
        for (name, values, shape) in [
            ("preds.npy", &self.predicted, &shape),
            ("trues.npy", &self.truth, &shape),
            ("inputs.npy", &inputs, &input_shape),
        ] {
            frames::npy::write_f32(&dir.join(name), shape, values)?;
        }
        println!(
            "wrote {0}/preds.npy, {0}/trues.npy and {0}/inputs.npy (float32 {shape:?}, the \
             inputs {input_shape:?})",
            dir.display()
        );
        Ok(())
    }
}
