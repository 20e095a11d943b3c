//! The training loop, read top to bottom like nanoGPT's `train.py`: configuration, data,
//! model, optimizer (fresh, or restored from a training checkpoint), then per epoch: train,
//! evaluate, checkpoint, append one CSV row; at the end, the weights file and a summary.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use frames::Dataset;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::adam::{Adam, AdamConfig};
use crate::error::{io_err, Error, Result};
use crate::metrics::FrameMetrics;
use crate::model::{predict, train_step, window_loss, SequenceModel, Step};
use crate::params::{
    init_parameters, load_parameters, remove_stale_temporaries, save_parameters, take_parameters,
    var_builder,
};
use crate::resume::{self, DataFingerprint, TrainingState};
use lstm_core::{cpu, Plan};

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
    /// Seed of the weight initialisation and of the window order. Seed: 0.
    pub seed: u64,
    /// Train on the windows in a new random order each epoch (the seed: in order).
    #[serde(default)]
    pub shuffle: bool,
    /// Windows per Adam update, the loss averaged over them. The seed: 1.
    #[serde(default = "one")]
    pub batch_size: usize,
    /// Folder for `<model>.csv`, `<model>.safetensors` and the training checkpoint.
    pub out_dir: PathBuf,
    /// Start from these weights instead of a seeded initialisation.
    pub init_from: Option<PathBuf>,
    /// No progress bar: one plain line per epoch, as when the output is not a terminal.
    pub quiet: bool,
    /// Replace the results of an earlier run of the same model in `out_dir`.
    pub overwrite: bool,
    /// Continue the run whose training checkpoint is in `out_dir`.
    #[serde(default)]
    pub resume: bool,
    /// Write the training checkpoint after every this many epochs (and always after the
    /// last, and when stopped); 0: only then.
    #[serde(default = "one")]
    pub checkpoint_every: usize,
    /// Set (by a signal handler) to stop after the current window, with a checkpoint.
    #[serde(skip)]
    pub stop: Option<Arc<AtomicBool>>,
    /// Recorded in the training checkpoint for the caller's own use on resume.
    #[serde(skip)]
    pub launch: serde_json::Value,
}

fn one() -> usize {
    1
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 10,
            adam: AdamConfig::default(),
            seed: 0,
            shuffle: false,
            batch_size: 1,
            out_dir: PathBuf::from("results"),
            init_from: None,
            quiet: false,
            overwrite: false,
            resume: false,
            checkpoint_every: 1,
            stop: None,
            launch: serde_json::Value::Null,
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

/// What a run leaves behind.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub rows: Vec<EpochRow>,
    pub paths: OutputPaths,
    /// Where the run stopped early on request (`TrainConfig::stop`): epochs finished and
    /// windows of the next; the training checkpoint holds that state.
    pub stopped_at: Option<(usize, usize)>,
}

/// A model's outputs in `out_dir`.
#[derive(Debug, Clone)]
pub struct OutputPaths {
    /// One row per epoch.
    pub csv: PathBuf,
    /// The final weights (PyTorch names), for `predict` and `--init-from`.
    pub weights: PathBuf,
    /// The training checkpoint, for `--resume`.
    pub resume: PathBuf,
    /// The last row and the copy-last-frame baseline, as JSON.
    pub summary: PathBuf,
}

impl OutputPaths {
    pub fn new(out_dir: &Path, kind: &str) -> OutputPaths {
        OutputPaths {
            csv: out_dir.join(format!("{kind}.csv")),
            weights: out_dir.join(format!("{kind}.safetensors")),
            resume: out_dir.join(format!("{kind}.resume.safetensors")),
            summary: out_dir.join(format!("{kind}.summary.json")),
        }
    }

    fn all(&self) -> [&Path; 4] {
        [&self.csv, &self.weights, &self.resume, &self.summary]
    }
}

/// Where an epoch's training stands: restored from a checkpoint or fresh.
struct Progress {
    epochs_done: usize,
    windows_done: usize,
    loss_sum: f64,
    seconds: f64,
    rng_word_pos: u128,
    rows: Vec<EpochRow>,
}

/// Trains model `M` on `data` and writes its CSV, training checkpoint and weights into
/// `config.out_dir`; with `config.resume`, continues the run found there.
pub fn train<M: SequenceModel>(
    model_config: &M::Config,
    data: &Dataset,
    config: &TrainConfig,
    device: &Device,
) -> Result<RunSummary> {
    let dtype = DType::F32;

    // Outputs: fail on another run's results before any work; the folder itself is made
    // once the inputs have all loaded, so a bad input leaves nothing behind.
    let paths = OutputPaths::new(&config.out_dir, M::KIND);
    let names: Vec<String> = paths
        .all()
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let existing = paths.all().into_iter().find(|p| p.exists());
    let restored = if config.resume && paths.resume.exists() {
        Some(resume::load(&paths.resume)?)
    } else {
        match existing {
            // A run killed before its first checkpoint left nothing: --resume starts it
            // over, so that "run again with --resume" works after a crash at any moment.
            None => {}
            Some(found) if config.resume => {
                return Err(Error::Config(format!(
                    "--resume: {} is here but no training checkpoint {} to resume from; pass \
                     --force instead to start over",
                    found.display(),
                    paths.resume.display()
                )))
            }
            Some(found) if !config.overwrite => {
                return Err(Error::Config(format!(
                    "{}: the results of an earlier {} run are here ({}); pass --resume to \
                     continue that run, --force to replace it, or choose another --out",
                    config.out_dir.display(),
                    M::KIND,
                    found.display()
                )))
            }
            Some(_) => {}
        }
        None
    };
    let resumed = restored.is_some();
    // What a run killed mid-write left behind; ours alone, by name.
    remove_stale_temporaries(&config.out_dir, &names)?;

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
    let fingerprint = DataFingerprint::of(data)?;

    // Model and optimizer: fresh, or as the checkpoint left them.
    let size = data.frames.size();
    let frame = [
        data.frames.channels(),
        size.height as usize,
        size.width as usize,
    ];
    let specs = M::parameter_specs(model_config, frame)?;
    let model_config_json =
        serde_json::to_value(model_config).map_err(|e| Error::Config(e.to_string()))?;
    let (vars, mut adam, progress) = match restored {
        None => {
            let vars: Vec<Var> = match &config.init_from {
                Some(path) => load_parameters(path, &specs, dtype, device)?,
                None => init_parameters(&specs, config.seed, dtype, device)?,
            };
            let adam = Adam::new(config.adam, &vars)?;
            let progress = Progress {
                epochs_done: 0,
                windows_done: 0,
                loss_sum: 0.0,
                seconds: 0.0,
                rng_word_pos: 0,
                rows: Vec::new(),
            };
            (vars, adam, progress)
        }
        Some(mut loaded) => {
            let state = &loaded.state;
            let identity = |model: &str, model_config, data, adam, seed, shuffle| {
                serde_json::json!({"model": model, "model_config": model_config,
                    "data": data, "adam": adam, "seed": seed, "shuffle": shuffle})
            };
            let there = identity(
                &state.model,
                &state.model_config,
                &state.data,
                &state.adam,
                state.seed,
                state.shuffle,
            );
            let here = identity(
                M::KIND,
                &model_config_json,
                &fingerprint,
                &config.adam,
                config.seed,
                config.shuffle,
            );
            let differences = resume::differences(&there, &here);
            if !differences.is_empty() {
                return Err(Error::Checkpoint {
                    path: loaded.path.clone(),
                    message: format!(
                        "cannot resume: this run differs from the checkpoint's in {}; resume \
                         with the settings it was started with",
                        differences.join(", ")
                    ),
                });
            }
            if config.epochs < state.epochs_done {
                return Err(Error::Config(format!(
                    "--epochs {}: the run to resume has already done {} epochs",
                    config.epochs, state.epochs_done
                )));
            }
            let bad = |message: String| Error::Checkpoint {
                path: loaded.path.clone(),
                message,
            };
            let rng_word_pos = state
                .rng_word_pos
                .parse()
                .map_err(|_| bad(format!("bad rng_word_pos `{}`", state.rng_word_pos)))?;
            let mut take = |name: &str, spec: &crate::ParamSpec| {
                let (shape, values) = loaded
                    .tensors
                    .remove(name)
                    .ok_or_else(|| bad(format!("tensor `{name}` is missing")))?;
                if shape != spec.shape {
                    return Err(bad(format!(
                        "tensor `{name}` has shape {shape:?} but the model needs {:?}",
                        spec.shape
                    )));
                }
                Ok(values)
            };
            let mut moments = Vec::with_capacity(specs.len());
            let mut weights = HashMap::new();
            for spec in &specs {
                let (m_name, v_name) = resume::moment_names(&spec.name);
                moments.push((take(&m_name, spec)?, take(&v_name, spec)?));
                let values = take(&spec.name, spec)?;
                weights.insert(spec.name.clone(), cpu::tensor_from(values, &spec.shape)?);
            }
            if let Some(extra) = loaded.tensors.keys().next() {
                return Err(bad(format!("unexpected tensor `{extra}`")));
            }
            let vars = take_parameters(&loaded.path, &mut weights, &specs, dtype, device)?;
            let mut adam = Adam::new(config.adam, &vars)?;
            adam.restore(state.adam_step, moments)?;
            let progress = Progress {
                epochs_done: state.epochs_done,
                windows_done: state.windows_done,
                loss_sum: state.partial_loss_sum,
                seconds: state.partial_seconds,
                rng_word_pos,
                rows: state.rows.clone(),
            };
            (vars, adam, progress)
        }
    };
    let model = M::load(
        model_config,
        frame,
        var_builder(&specs, &vars, dtype, device),
    )?;
    std::fs::create_dir_all(&config.out_dir).map_err(io_err(&config.out_dir))?;
    let n_params: usize = specs.iter().map(|s| s.numel()).sum();

    // On a terminal: a bar over all windows of the run, with the loss and ETA, above
    // which the per-epoch lines scroll. Elsewhere (a pipe, a log file, CI) or with
    // --quiet: the plain lines only.
    let windows_per_epoch = train_windows.len();
    let bar = if config.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::with_draw_target(
            Some((config.epochs * windows_per_epoch) as u64),
            ProgressDrawTarget::stderr(),
        )
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} windows  epoch {prefix}  loss {msg}  eta {eta}",
        )
        .expect("a valid progress template"),
    );
    bar.set_position((progress.epochs_done * windows_per_epoch + progress.windows_done) as u64);
    bar.reset_eta();
    let say = |line: &str| {
        if bar.is_hidden() {
            println!("{line}");
        } else {
            bar.println(line);
        }
    };

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
        "train: {} epochs, Adam ({:?} form) lr {} betas ({}, {}) eps {}, seed {}{}, {} thread(s){}",
        config.epochs,
        config.adam.form,
        config.adam.lr,
        config.adam.beta1,
        config.adam.beta2,
        config.adam.eps,
        config.seed,
        if config.shuffle {
            ", shuffled windows"
        } else {
            ""
        },
        rayon::current_num_threads(),
        match &config.init_from {
            Some(p) if !resumed => format!(", weights from {}", p.display()),
            _ => String::new(),
        }
    ));
    if config.resume && !resumed {
        say(&format!(
            "no training checkpoint {} yet: starting the run from the beginning",
            paths.resume.display()
        ));
    }
    if resumed {
        say(&format!(
            "resuming from {}: {} epoch(s) and {} window(s) done, Adam step {}",
            paths.resume.display(),
            progress.epochs_done,
            progress.windows_done,
            adam.step
        ));
        // The checkpoint's rows are the truth: rows a killed run wrote after it go.
        write_csv(&paths.csv, &progress.rows)?;
    }

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

    // Window order: the seed's, or shuffled by a generator of its own (stream 1), apart
    // from the initialisation's.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(config.seed);
    rng.set_stream(1);
    rng.set_word_pos(progress.rng_word_pos);

    let stop_requested = || {
        config
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::SeqCst))
    };
    let mut checkpoint_epoch =
        (progress.epochs_done > 0 || progress.windows_done > 0).then_some(progress.epochs_done);
    let mut progress = progress;
    // The checkpoint of the run as it stands.
    let state_of = |progress: &Progress, adam_step: u64| TrainingState {
        format: resume::FORMAT,
        model: M::KIND.to_string(),
        model_config: model_config_json.clone(),
        data: fingerprint.clone(),
        adam: config.adam,
        seed: config.seed,
        shuffle: config.shuffle,
        epochs: config.epochs,
        epochs_done: progress.epochs_done,
        windows_done: progress.windows_done,
        partial_loss_sum: progress.loss_sum,
        partial_seconds: progress.seconds,
        adam_step,
        rng_word_pos: progress.rng_word_pos.to_string(),
        rows: progress.rows.clone(),
        launch: config.launch.clone(),
    };
    let checkpoint_hint = |epoch: Option<usize>| match epoch {
        Some(e) => format!(
            "the training checkpoint {} (epoch {e}) is kept",
            paths.resume.display()
        ),
        None => "no training checkpoint had been written yet".to_string(),
    };
    for epoch in progress.epochs_done + 1..=config.epochs {
        // Where this epoch's order is drawn from: a checkpoint taken in the middle of the
        // epoch records it, to draw the same order again on resume.
        progress.rng_word_pos = rng.get_word_pos();
        let mut order: Vec<usize> = (0..windows_per_epoch).collect();
        if config.shuffle {
            order.shuffle(&mut rng);
        }
        // Train: one update per window.
        let start = Instant::now();
        bar.set_prefix(format!("{epoch}/{}", config.epochs));
        while progress.windows_done < windows_per_epoch {
            let k = progress.windows_done;
            let batch_size = config.batch_size.min(windows_per_epoch - k);
            let members: Vec<&Tensor> = order[k..k + batch_size]
                .iter()
                .map(|&w| &train_windows[w])
                .collect();
            let batch = Tensor::stack(&members, 1)?; // [L, B, C, H, W]
            let plan = Plan::one_step(batch.dim(0)?, batch_size);
            let loss = match train_step(&model, &batch, &plan, &vars, &mut adam)? {
                Step::LossNotFinite(loss) => {
                    // Stopped before the update: what is on disk is what the last good
                    // epochs left.
                    return Err(Error::Numerical(format!(
                        "epoch {epoch}, window {}: the training loss is {loss}; stopping. {}; \
                         a lower --lr may help",
                        k + 1,
                        checkpoint_hint(checkpoint_epoch)
                    )));
                }
                Step::Updated {
                    not_finite: Some(bad),
                    ..
                } => {
                    return Err(Error::Numerical(format!(
                        "epoch {epoch}, window {}: the gradient of `{}` (or the update it gave) \
                         is not finite; stopping. {}; a lower --lr may help",
                        k + 1,
                        specs[bad].name,
                        checkpoint_hint(checkpoint_epoch)
                    )));
                }
                Step::Updated { loss, .. } => loss,
            };
            // Summed per window, so the row's mean is over windows whatever the batches.
            progress.loss_sum += loss * batch_size as f64;
            progress.windows_done += batch_size;
            bar.set_message(format!("{loss:.4}"));
            bar.inc(batch_size as u64);
            if stop_requested() && progress.windows_done < windows_per_epoch {
                // Mid-epoch: save where we are; the epoch finishes on resume.
                device.synchronize()?;
                progress.seconds += start.elapsed().as_secs_f64();
                resume::save(
                    &paths.resume,
                    &specs,
                    &vars,
                    &adam,
                    &state_of(&progress, adam.step),
                )?;
                bar.finish_and_clear();
                say(&format!(
                    "stopped in epoch {epoch} after window {} of {windows_per_epoch}; \
                     wrote the training checkpoint {}",
                    progress.windows_done,
                    paths.resume.display()
                ));
                return Ok(RunSummary {
                    rows: progress.rows,
                    paths,
                    stopped_at: Some((epoch - 1, progress.windows_done)),
                });
            }
        }
        // Sync point: on a GPU the clock must not stop before the kernels do.
        device.synchronize()?;
        let seconds = progress.seconds + start.elapsed().as_secs_f64();

        // Evaluate: same window loss on the held-out windows, no update, and the image
        // metrics of the same predictions.
        let mut test_sum = 0.0;
        let mut frame_metrics = Vec::new();
        for window in &test_windows {
            let predictions = predict(&model, window)?.detach(); // [L-1, C, H, W]
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
                "epoch {epoch}: the test loss is {test_sum} after the epoch's updates; \
                 stopping. {}; a lower --lr may help",
                checkpoint_hint(checkpoint_epoch)
            )));
        }

        let row = EpochRow {
            epoch,
            train_loss: progress.loss_sum / windows_per_epoch as f64,
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
        progress.rows.push(row);
        progress.epochs_done = epoch;
        (progress.windows_done, progress.loss_sum, progress.seconds) = (0, 0.0, 0.0);
        progress.rng_word_pos = rng.get_word_pos();

        // Checkpoint, then the row: a run killed between the two resumes from the
        // checkpoint, whose rows rewrite the CSV.
        let stopping = stop_requested() && epoch < config.epochs;
        let due = config.checkpoint_every > 0 && epoch % config.checkpoint_every == 0;
        if due || stopping || epoch == config.epochs {
            resume::save(
                &paths.resume,
                &specs,
                &vars,
                &adam,
                &state_of(&progress, adam.step),
            )?;
            checkpoint_epoch = Some(epoch);
            crate::fault::reached("checkpoint-saved");
        }
        write_csv(&paths.csv, &progress.rows)?;
        if stopping {
            bar.finish_and_clear();
            say(&format!(
                "stopped after epoch {epoch}; wrote the training checkpoint {}",
                paths.resume.display()
            ));
            return Ok(RunSummary {
                rows: progress.rows,
                paths,
                stopped_at: Some((epoch, 0)),
            });
        }
    }

    bar.finish_and_clear();
    crate::fault::reached("final");
    let rows = progress.rows;
    // One metadata key: safetensors keeps metadata in a hash map, whose order would make
    // two identical runs write different headers.
    let about = serde_json::json!({
        "model": M::KIND,
        "model_config": model_config,
        "train_config": config,
        "epochs_done": rows.len(),
    });
    let metadata = HashMap::from([(CHECKPOINT_METADATA_KEY.to_string(), about.to_string())]);
    save_parameters(&paths.weights, &specs, &vars, metadata)?;
    let summary = serde_json::json!({
        "model": M::KIND,
        "model_config": model_config,
        "epochs": rows.len(),
        "final": rows.last(),
        "copy_last_frame": copy_last,
    });
    let text = serde_json::to_string_pretty(&summary).map_err(|e| Error::Config(e.to_string()))?;
    crate::params::write_bytes_atomic(&paths.summary, text.as_bytes())?;
    say(&format!(
        "wrote {}, {}, {} and {}",
        paths.csv.display(),
        paths.weights.display(),
        paths.resume.display(),
        paths.summary.display()
    ));
    Ok(RunSummary {
        rows,
        paths,
        stopped_at: None,
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
