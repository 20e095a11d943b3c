//! The training loop, read top to bottom like nanoGPT's `train.py`: configuration, data,
//! model, optimizer, then per epoch: train, evaluate, append and flush one CSV row; at the
//! end, the checkpoint.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use frames::Dataset;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::adam::{Adam, AdamConfig};
use crate::error::{io_err, Error, Result};
use crate::metrics::FrameMetrics;
use crate::model::{window_loss, SequenceModel};
use crate::params::{init_parameters, load_parameters, save_parameters, var_builder};

/// The safetensors metadata key under which a checkpoint keeps, as JSON, the model kind,
/// both configurations and the number of epochs done.
pub const CHECKPOINT_METADATA_KEY: &str = "bench_cli";

/// How to train; every default is the seed's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Passes over the training windows. Seed: 10.
    pub epochs: usize,
    /// The optimizer. Seed: Chainer's Adam, lr 1e-3.
    pub adam: AdamConfig,
    /// Seed of the weight initialisation. Seed: 0.
    pub seed: u64,
    /// Folder for `<model>.csv` and `<model>.safetensors`.
    pub out_dir: PathBuf,
    /// Start from these weights instead of a seeded initialisation.
    pub init_from: Option<PathBuf>,
    /// No progress bar: one plain line per epoch, as when the output is not a terminal.
    pub quiet: bool,
    /// Replace the results of an earlier run of the same model in `out_dir`.
    pub overwrite: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 10,
            adam: AdamConfig::default(),
            seed: 0,
            out_dir: PathBuf::from("results"),
            init_from: None,
            quiet: false,
            overwrite: false,
        }
    }
}

/// One CSV row: what one epoch did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRow {
    /// From 1.
    pub epoch: usize,
    /// Mean over the epoch's windows of the window loss each update minimised, taken
    /// before that update.
    pub train_loss: f64,
    /// Mean window loss over the test windows after the epoch's last update.
    pub test_loss: f64,
    /// Wall time of the epoch's training (updates only, not the test pass).
    pub seconds: f64,
    /// Training steps (one frame in, one predicted) per second of `seconds`.
    pub frames_per_second: f64,
    /// One-step-ahead predictions of the test frames after the epoch, clipped to [0, 1],
    /// against the true frames: MSE and MAE per pixel, PSNR (dB), SSIM; each the mean over
    /// all predicted frames.
    pub test_mse: f64,
    pub test_mae: f64,
    pub test_psnr: f64,
    pub test_ssim: f64,
}

/// What a finished run leaves behind.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub rows: Vec<EpochRow>,
    pub csv: PathBuf,
    pub checkpoint: PathBuf,
}

/// Paths of a model's outputs in `out_dir`.
pub fn output_paths(out_dir: &Path, kind: &str) -> (PathBuf, PathBuf) {
    (
        out_dir.join(format!("{kind}.csv")),
        out_dir.join(format!("{kind}.safetensors")),
    )
}

/// Trains model `M` on `data` and writes its CSV and checkpoint into `config.out_dir`.
pub fn train<M: SequenceModel>(
    model_config: &M::Config,
    data: &Dataset,
    config: &TrainConfig,
    device: &Device,
) -> Result<RunSummary> {
    let dtype = DType::F32;
    // On a terminal: a bar over all windows of the run, with the loss and ETA, above
    // which the per-epoch lines scroll. Elsewhere (a pipe, a log file, CI) or with
    // --quiet: the plain lines only.
    let total_windows = (config.epochs * data.windows.count(data.split.train)) as u64;
    let bar = if config.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::with_draw_target(Some(total_windows), ProgressDrawTarget::stderr())
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} windows  epoch {prefix}  loss {msg}  eta {eta}",
        )
        .expect("a valid progress template"),
    );
    let say = |line: &str| {
        if bar.is_hidden() {
            println!("{line}");
        } else {
            bar.println(line);
        }
    };

    // Outputs: fail on an unwritable folder before any work.
    std::fs::create_dir_all(&config.out_dir).map_err(io_err(&config.out_dir))?;
    let (csv_path, checkpoint_path) = output_paths(&config.out_dir, M::KIND);
    if !config.overwrite && (csv_path.exists() || checkpoint_path.exists()) {
        return Err(Error::Config(format!(
            "{}: the results of an earlier {} run are here; pass --force to replace them, \
             or choose another --out",
            config.out_dir.display(),
            M::KIND
        )));
    }

    // Data.
    let to_device = |ws: Vec<Tensor>| -> Result<Vec<Tensor>> {
        ws.into_iter()
            .map(|w| Ok(w.to_dtype(dtype)?.to_device(device)?))
            .collect()
    };
    let train_windows = to_device(data.train_windows()?)?;
    let test_windows = to_device(data.test_windows()?)?;
    let steps_per_epoch: usize = train_windows
        .iter()
        .map(|w| w.dim(0).unwrap_or(1) - 1)
        .sum();

    // Model.
    let specs = M::parameter_specs(model_config);
    let vars: Vec<Var> = match &config.init_from {
        Some(path) => load_parameters(path, &specs, dtype, device)?,
        None => init_parameters(&specs, config.seed, dtype, device)?,
    };
    let model = M::load(model_config, var_builder(&specs, &vars, dtype, device))?;
    let n_params: usize = specs.iter().map(|s| s.numel()).sum();

    // Optimizer.
    let mut adam = Adam::new(config.adam, &vars)?;

    say(&format!(
        "model {} {:?}: {} parameters ({:.1} MB f32), device {:?}",
        M::KIND,
        model_config,
        n_params,
        n_params as f64 * 4.0 / 1e6,
        device
    ));
    say(&format!(
        "data {}: {} frames {}, train {} frames -> {} windows of {} (stride {}), test {} frames -> {} windows",
        data.frames.paths.first().and_then(|p| p.parent()).map(|p| p.display().to_string()).unwrap_or_default(),
        data.frames.len(),
        data.frames.size(),
        data.split.train,
        train_windows.len(),
        data.windows.len,
        data.windows.stride,
        data.split.test,
        test_windows.len(),
    ));
    say(&format!(
        "train: {} epochs, Adam ({:?} form) lr {} betas ({}, {}) eps {}, seed {}, {} thread(s){}",
        config.epochs,
        config.adam.form,
        config.adam.lr,
        config.adam.beta1,
        config.adam.beta2,
        config.adam.eps,
        config.seed,
        rayon::current_num_threads(),
        match &config.init_from {
            Some(p) => format!(", weights from {}", p.display()),
            None => String::new(),
        }
    ));

    // The trivial baseline every figure is read against: repeat the last frame.
    let mut baseline = Vec::new();
    for window in &test_windows {
        let steps = window.dim(0)? - 1;
        baseline.extend(per_frame_metrics(
            &window.narrow(0, 0, steps)?,
            &window.narrow(0, 1, steps)?,
        )?);
    }
    let copy_last = FrameMetrics::mean(&baseline);
    say(&format!(
        "copy-last-frame baseline on the test frames: mse {:.6}  mae {:.6}  psnr {:.2}  ssim {:.4}",
        copy_last.mse, copy_last.mae, copy_last.psnr, copy_last.ssim
    ));

    let mut rows = Vec::with_capacity(config.epochs);
    for epoch in 1..=config.epochs {
        // Train: one update per window, windows in order.
        let start = Instant::now();
        let mut loss_sum = 0.0;
        bar.set_prefix(format!("{epoch}/{}", config.epochs));
        for (k, window) in train_windows.iter().enumerate() {
            let (loss, grads) = model.loss_and_grads(window, &vars)?;
            if !loss.is_finite() {
                // Stop before the update: the weights on disk are those of the last epoch
                // that ended well, and the CSV holds its rows.
                return Err(Error::Numerical(format!(
                    "epoch {epoch}, window {}: the training loss is {loss}; stopping. \
                     The results of the epochs before are kept; a lower --lr may help",
                    k + 1
                )));
            }
            adam.update(&vars, &grads)?;
            loss_sum += loss;
            bar.set_message(format!("{loss:.4}"));
            bar.inc(1);
        }
        // Sync point: on a GPU the clock must not stop before the kernels do.
        device.synchronize()?;
        let seconds = start.elapsed().as_secs_f64();

        // Evaluate: same window loss on the held-out windows, no update, and the image
        // metrics of the same predictions.
        let mut test_sum = 0.0;
        let mut frame_metrics = Vec::new();
        for window in &test_windows {
            let predictions = model.predict(window)?.detach(); // [L-1, C, H, W]
            let loss = window_loss(&predictions, window)?;
            test_sum += loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            frame_metrics.extend(per_frame_metrics(
                &predictions,
                &window.narrow(0, 1, predictions.dim(0)?)?,
            )?);
        }
        let test_metrics = FrameMetrics::mean(&frame_metrics);
        if !test_sum.is_finite() {
            return Err(Error::Numerical(format!(
                "epoch {epoch}: the test loss is {test_sum} after the epoch's updates (a \
                 gradient was not finite); stopping. The results of the epochs before are \
                 kept; a lower --lr may help"
            )));
        }

        let row = EpochRow {
            epoch,
            train_loss: loss_sum / train_windows.len() as f64,
            test_loss: test_sum / test_windows.len() as f64,
            seconds,
            frames_per_second: steps_per_epoch as f64 / seconds,
            test_mse: test_metrics.mse,
            test_mae: test_metrics.mae,
            test_psnr: test_metrics.psnr,
            test_ssim: test_metrics.ssim,
        };
        say(&format!(
            "epoch {:>3}/{}  train_loss {:.6}  test_loss {:.6}  psnr {:.2}  ssim {:.4}  {:.3} s  {:.0} frames/s",
            row.epoch,
            config.epochs,
            row.train_loss,
            row.test_loss,
            row.test_psnr,
            row.test_ssim,
            row.seconds,
            row.frames_per_second
        ));
        rows.push(row);
        write_csv(&csv_path, &rows)?;
    }

    bar.finish_and_clear();
    // One metadata key: safetensors keeps metadata in a hash map, whose order would make
    // two identical runs write different headers.
    let about = serde_json::json!({
        "model": M::KIND,
        "model_config": model_config,
        "train_config": config,
        "epochs_done": rows.len(),
    });
    let metadata = HashMap::from([(CHECKPOINT_METADATA_KEY.to_string(), about.to_string())]);
    save_parameters(&checkpoint_path, &specs, &vars, metadata)?;
    let summary_path = config.out_dir.join(format!("{}.summary.json", M::KIND));
    let summary = serde_json::json!({
        "model": M::KIND,
        "model_config": model_config,
        "epochs": rows.len(),
        "final": rows.last(),
        "copy_last_frame": copy_last,
    });
    let text = serde_json::to_string_pretty(&summary).map_err(|e| Error::Config(e.to_string()))?;
    crate::params::write_bytes_atomic(&summary_path, text.as_bytes())?;
    say(&format!(
        "wrote {}, {} and {}",
        csv_path.display(),
        checkpoint_path.display(),
        summary_path.display()
    ));
    Ok(RunSummary {
        rows,
        csv: csv_path,
        checkpoint: checkpoint_path,
    })
}

/// Rewrites the whole CSV atomically, so a reader never sees half a row.
pub fn write_csv(path: &Path, rows: &[EpochRow]) -> Result<()> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        writer
            .serialize(row)
            .map_err(|e| Error::Config(e.to_string()))?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| Error::Config(e.to_string()))?;
    crate::params::write_bytes_atomic(path, &bytes)
}

/// Reads rows back from a CSV written by [`write_csv`].
pub fn read_csv(path: &Path) -> Result<Vec<EpochRow>> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| Error::Checkpoint {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    reader
        .deserialize()
        .map(|r| {
            r.map_err(|e| Error::Checkpoint {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
        })
        .collect()
}

/// Metrics of each predicted frame: `predictions` and `truth` are `[N, C, H, W]`.
fn per_frame_metrics(predictions: &Tensor, truth: &Tensor) -> Result<Vec<FrameMetrics>> {
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
