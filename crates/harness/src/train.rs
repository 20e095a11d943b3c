//! The training loop, read top to bottom like nanoGPT's `train.py`: outputs, data, model
//! and optimizer (fresh, or restored from a training checkpoint), report, then per epoch:
//! train, evaluate, checkpoint, one CSV row; at the end, the weights file and a summary.
//! [`train`] is that list; each phase is a function below it.

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

use crate::adam::Adam;
use crate::error::{io_err, Error, Result};
use crate::evaluate::{copy_last, evaluate, Evaluation};
use crate::files::remove_stale_temporaries;
use crate::model::{train_step, Backward, ParamSpec, SequenceModel, Step};
use crate::params::{
    init_parameters, load_parameters, save_parameters, take_parameters, var_builder,
};
use crate::resume::{self, DataFingerprint, Progress, TrainingState};
use crate::settings::{Augment, TrainSettings};
use crate::tensorboard::EventWriter;
use image::ImageEncoder;
use lstm_core::plan::splitmix64;
use lstm_core::{Head, Loss, Plan, Sampling};

/// Mixed into the run's seed for scheduled sampling's draws, apart from every other use
/// of the seed.
const SAMPLING_STREAM: u64 = 0x5353_414d_504c_494e; // "SSAMPLIN"

use crate::keys::CHECKPOINT_METADATA_KEY;
use crate::rows::{write_csv, EpochRow};

/// How to train: the run's settings, and how this process runs it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    #[serde(flatten)]
    pub training: TrainSettings,
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
    /// With a validation split: stop after this many epochs without a lower validation
    /// loss than the best epoch's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patience: Option<usize>,
    /// Write TensorBoard event files here ([`crate::tensorboard`]): the training loss and
    /// learning rate after every update, the test and copy-last figures after every epoch,
    /// and a prediction grid every `tensorboard_images` epochs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensorboard: Option<PathBuf>,
    /// Epochs between the prediction grids written to TensorBoard (0: none).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub tensorboard_images: usize,
    /// Set (by a signal handler) to stop after the current window, with a checkpoint.
    #[serde(skip)]
    pub stop: Option<Arc<AtomicBool>>,
    /// Set by [`train`] once the inputs have loaded and the model is built, just before
    /// anything is written: until then a signal handler may end the process at once.
    #[serde(skip)]
    pub started: Option<Arc<AtomicBool>>,
    /// Recorded in the training checkpoint for the caller's own use on resume.
    #[serde(skip)]
    pub launch: serde_json::Value,
    /// Which way gradients are made (the fastest unless asked).
    #[serde(skip)]
    pub backward: Backward,
    /// Draws the training windows of an epoch (from 2; epoch 1 trains on the data's), with
    /// [`TrainSettings::fresh_windows`].
    #[serde(skip)]
    pub fresh_windows: Option<FreshWindows>,
}

/// The training windows (each `[L, C, H, W]`) of epoch `e`, drawn afresh: the same for the
/// same `e`, so a resumed run draws what the first one did.
#[derive(Clone)]
pub struct FreshWindows(pub Arc<dyn Fn(usize) -> frames::Result<Vec<Tensor>> + Send + Sync>);

impl std::fmt::Debug for FreshWindows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FreshWindows")
    }
}

fn one() -> usize {
    1
}

fn is_one(v: &usize) -> bool {
    *v == 1
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            training: TrainSettings::default(),
            out_dir: PathBuf::from("results"),
            init_from: None,
            quiet: false,
            overwrite: false,
            resume: false,
            checkpoint_every: 1,
            patience: None,
            tensorboard: None,
            tensorboard_images: 1,
            stop: None,
            started: None,
            launch: serde_json::Value::Null,
            backward: Backward::Fastest,
            fresh_windows: None,
        }
    }
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
    /// With a validation split, the weights of its best epoch (PyTorch names).
    pub best: PathBuf,
}

impl OutputPaths {
    pub fn new(out_dir: &Path, kind: &str) -> OutputPaths {
        OutputPaths {
            csv: out_dir.join(format!("{kind}.csv")),
            weights: out_dir.join(format!("{kind}.safetensors")),
            resume: out_dir.join(format!("{kind}.resume.safetensors")),
            summary: out_dir.join(format!("{kind}.summary.json")),
            best: out_dir.join(format!("{kind}.best.safetensors")),
        }
    }

    fn all(&self) -> [&Path; 5] {
        [
            &self.csv,
            &self.weights,
            &self.resume,
            &self.summary,
            &self.best,
        ]
    }
}

/// Trains model `M` on `data` and writes its CSV, training checkpoint and weights into
/// `config.out_dir`; with `config.resume`, continues the run found there.
pub fn train<M: SequenceModel>(
    model_config: &M::Config,
    data: &Dataset,
    config: &TrainConfig,
    device: &Device,
) -> Result<RunSummary> {
    // Outputs: fail on another run's results before any work; the folder itself is made
    // once the inputs have all loaded, so a bad input leaves nothing behind.
    let paths = OutputPaths::new(&config.out_dir, M::KIND);
    let (run_lock, restored) = lock_and_claim(&paths, config, M::KIND)?;

    // Data.
    let windows = Windows::new(data, device)?;
    check_forecast(config, data)?;
    check_objective::<M>(model_config, &windows, config)?;

    // Model and optimizer: fresh, or as the checkpoint left them.
    let specs = M::parameter_specs(model_config, windows.frame)?;
    let about_model = json(&(M::KIND, model_config))?;
    let resumed = restored.is_some();
    let (model, vars, adam, progress) = model_and_optimizer::<M>(
        model_config,
        restored,
        &specs,
        &about_model,
        &windows,
        config,
        device,
    )?;
    check_ranks_agree(config, &about_model, &windows, &progress, adam.step)?;
    let run_lock = begin_writing(config, run_lock, M::KIND)?;

    // Report: what runs, on what, and the baseline every figure is read against.
    let report = Report::new(config, windows.train.len(), &progress);
    report.header::<M>(
        model_config,
        &specs,
        data,
        &windows,
        config,
        device,
        resumed,
    );
    let resumed_at = resumed.then_some((&progress, adam.step));
    report.resumption(&paths, config.resume, resumed_at)?;
    let copy_last = copy_last(&windows.test, config.training.forecast)?;
    report.baseline(&copy_last);

    // Epochs: train, evaluate, checkpoint, row.
    let mut run = Run {
        board: open_board(config, M::KIND, resumed.then_some(adam.step))?,
        copy_last_test: copy_last,
        config,
        kind: M::KIND,
        about_model,
        paths,
        windows,
        specs,
        vars,
        adam,
        model,
        // Window order: the seed's, or shuffled by a generator of its own (stream 1),
        // apart from the initialisation's.
        rng: window_order(config.training.seed, progress.rng_word_pos),
        checkpoint_epoch: (progress.epochs_done > 0 || progress.windows_done > 0)
            .then_some(progress.epochs_done),
        progress,
        report,
        device: device.clone(),
        last_test: None,
        val_copy_last: None,
        _lock: run_lock,
    };
    run.val_copy_last = run.validation_baseline()?;
    run.start_from_copy_last()?;
    run.epochs(model_config)
}

/// The TensorBoard log of `--tensorboard`, if given: a resumed run continues its log from
/// the checkpoint's update `resumed_step`.
fn open_board(
    config: &TrainConfig,
    kind: &str,
    resumed_step: Option<u64>,
) -> Result<Option<EventWriter>> {
    config
        .tensorboard
        .as_ref()
        .filter(|_| crate::collective::writes())
        .map(|dir| EventWriter::open(dir, kind, resumed_step))
        .transpose()
}

/// The model and its optimizer: fresh, or as the checkpoint `restored` left them.
fn model_and_optimizer<M: SequenceModel>(
    model_config: &M::Config,
    restored: Option<resume::Loaded>,
    specs: &[ParamSpec],
    about_model: &serde_json::Value,
    windows: &Windows,
    config: &TrainConfig,
    device: &Device,
) -> Result<(M, Vec<Var>, Adam, Progress)> {
    let (vars, adam, progress) = match restored {
        None => fresh(specs, config, device)?,
        Some(loaded) => restore(
            loaded,
            specs,
            about_model,
            &windows.fingerprint,
            config,
            device,
        )?,
    };
    let model = M::load(
        model_config,
        windows.frame,
        var_builder(specs, &vars, DType::F32, device),
    )?;
    Ok((model, vars, adam, progress))
}

/// With several ranks: refuses to start unless every rank runs the same binary with the same
/// settings, model, data and starting point (the same checkpoint, on resume).
fn check_ranks_agree(
    config: &TrainConfig,
    about_model: &serde_json::Value,
    windows: &Windows,
    progress: &Progress,
    adam_step: u64,
) -> Result<()> {
    let collective = crate::collective::current();
    if collective.ranks() == 1 {
        return Ok(());
    }
    let about = serde_json::json!({
        "binary": crate::collective::binary_identity()?,
        "training": config.training,
        "model": about_model,
        "data": windows.fingerprint,
        "out_dir": config.out_dir,
        "resume": config.resume,
        "init_from": config.init_from,
        "start": [progress.epochs_done as u64, progress.windows_done as u64, adam_step],
    });
    crate::collective::check_same(collective, &about)
}

/// Everything has loaded: from here a signal stops the run after a window rather than at
/// once, and the output folder exists, locked (the lock taken before if it existed); on
/// ranks other than 0, which write nothing, no folder and no lock.
fn begin_writing(
    config: &TrainConfig,
    lock: Option<crate::lock::RunLock>,
    kind: &str,
) -> Result<Option<crate::lock::RunLock>> {
    if let Some(started) = &config.started {
        started.store(true, Ordering::SeqCst);
    }
    if !crate::collective::writes() {
        return Ok(None);
    }
    std::fs::create_dir_all(&config.out_dir).map_err(io_err(&config.out_dir))?;
    match lock {
        Some(lock) => Ok(Some(lock)),
        None => crate::lock::lock(&config.out_dir, kind).map(Some),
    }
}

/// A forecast needs windows of exactly its context and horizon; fresh windows need a way
/// to draw them.
fn check_forecast(config: &TrainConfig, data: &Dataset) -> Result<()> {
    if config.training.fresh_windows != config.fresh_windows.is_some() {
        return Err(Error::Config(
            "fresh training windows every epoch need both the setting and a way to draw them"
                .into(),
        ));
    }
    match config.training.forecast {
        Some(f)
            if f.context == 0 || f.horizon == 0 || data.windows.len != f.context + f.horizon =>
        {
            Err(Error::Config(format!(
                "--context {} --horizon {}: windows of {} frames are needed, these are {}",
                f.context,
                f.horizon,
                f.context + f.horizon,
                data.windows.len
            )))
        }
        _ => Ok(()),
    }
}

/// An encoder-forecaster forecasts, the cross-entropy is taken from the logits of a head
/// that ends in a sigmoid, and early stopping watches a validation split.
fn check_objective<M: SequenceModel>(
    model_config: &M::Config,
    windows: &Windows,
    config: &TrainConfig,
) -> Result<()> {
    if let (Some(n), true) = (config.patience, windows.validation.is_empty()) {
        return Err(Error::Config(format!(
            "--patience {n} stops on the validation loss, and this run has no validation \
             split: give --validation N (auto found too little data for one)"
        )));
    }
    let stack = M::layout(model_config, windows.frame)?;
    if stack.wiring.encoder_layers > 0 && config.training.forecast.is_none() {
        return Err(Error::Config(
            "an encoder-forecaster forecasts: give --context and --horizon".into(),
        ));
    }
    let head = stack.head;
    if config.training.loss == Loss::Bce && head != Head::AffineSigmoid {
        let fix = match M::SIGMOID_HEAD_FLAG {
            Some(flag) => format!("add {flag}"),
            None => format!("--model {} has no such head", M::KIND),
        };
        return Err(Error::Config(format!(
            "--loss bce takes the cross-entropy from the logits of an output that ends in a \
             sigmoid, and this model's ends in {}: {fix}",
            head.name()
        )));
    }
    Ok(())
}

/// One run of a model per folder: the folder (if it exists) is locked before anything in it
/// is read or removed, then its earlier results are claimed ([`claim_outputs`]).
fn lock_and_claim(
    paths: &OutputPaths,
    config: &TrainConfig,
    kind: &str,
) -> Result<(Option<crate::lock::RunLock>, Option<resume::Loaded>)> {
    let lock = match config.out_dir.is_dir() && crate::collective::writes() {
        true => Some(crate::lock::lock(&config.out_dir, kind)?),
        false => None,
    };
    Ok((lock, claim_outputs(paths, config, kind)?))
}

/// Refuses to touch another run's results (unless asked to replace them) and reads the
/// training checkpoint a resume continues from; clears what a run killed mid-write left.
fn claim_outputs(
    paths: &OutputPaths,
    config: &TrainConfig,
    kind: &str,
) -> Result<Option<resume::Loaded>> {
    let existing = paths.all().into_iter().find(|p| p.exists());
    let restored = if config.resume && paths.resume.exists() {
        Some(resume::load(&paths.resume)?)
    } else {
        match existing {
            // A run killed before its first checkpoint left nothing: --resume starts it
            // over, so that "run again with --resume" works after a crash at any moment.
            None => None,
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
                    "{}: the results of an earlier {kind} run are here ({}); pass --resume to \
                     continue that run, --force to replace it, or choose another --out",
                    config.out_dir.display(),
                    found.display()
                )))
            }
            Some(_) => {
                // Replaced: an earlier run's best weights must not pass for this one's.
                if paths.best.exists() && crate::collective::writes() {
                    std::fs::remove_file(&paths.best).map_err(io_err(&paths.best))?;
                }
                None
            }
        }
    };
    // What a run killed mid-write left behind; ours alone, by name.
    let names: Vec<String> = paths
        .all()
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    if crate::collective::writes() {
        remove_stale_temporaries(&config.out_dir, &names)?;
    }
    Ok(restored)
}

/// The windows a run trains and tests on, on its device, and what identifies them.
struct Windows {
    /// Each `[L, C, H, W]`.
    train: Vec<Tensor>,
    test: Vec<Tensor>,
    /// Held out of the training part; empty without a validation split.
    validation: Vec<Tensor>,
    /// Steps (one frame in, one predicted) in an epoch.
    steps_per_epoch: usize,
    /// `[C, H, W]`.
    frame: [usize; 3],
    fingerprint: DataFingerprint,
}

impl Windows {
    fn new(data: &Dataset, device: &Device) -> Result<Windows> {
        let train = Self::on_device(data.train_windows()?, device)?;
        let test = Self::on_device(data.test_windows()?, device)?;
        let validation = Self::on_device(data.validation_windows()?, device)?;
        let steps_per_epoch = train.iter().map(|w| w.dim(0).unwrap_or(1) - 1).sum();
        Ok(Windows {
            train,
            test,
            validation,
            steps_per_epoch,
            frame: data.frame_shape(),
            fingerprint: DataFingerprint::of(data)?,
        })
    }
}

impl Windows {
    /// `windows` as f32 on `device`.
    fn on_device(windows: Vec<Tensor>, device: &Device) -> Result<Vec<Tensor>> {
        windows
            .into_iter()
            .map(|w| Ok(w.to_dtype(DType::F32)?.to_device(device)?))
            .collect()
    }
}

/// A fresh start: seeded weights (or `--init-from`'s), zero moments.
fn fresh(
    specs: &[ParamSpec],
    config: &TrainConfig,
    device: &Device,
) -> Result<(Vec<Var>, Adam, Progress)> {
    let vars: Vec<Var> = match &config.init_from {
        Some(path) => load_parameters(path, specs, DType::F32, device)?,
        None => init_parameters(specs, config.training.seed, DType::F32, device)?,
    };
    let adam = Adam::new(config.training.adam, &vars)?;
    Ok((vars, adam, Progress::default()))
}

/// The weights, Adam's state and the counters a training checkpoint holds, checked against
/// the run that resumes it: any setting that would change the run is refused by name.
/// Refuses to resume `loaded` with settings other than its own (the refusal names each
/// setting and both values) or with fewer epochs than it has done.
fn check_resumable(
    loaded: &resume::Loaded,
    about_model: &serde_json::Value,
    fingerprint: &DataFingerprint,
    config: &TrainConfig,
) -> Result<()> {
    let state = &loaded.state;
    let there = resume::identity(
        &state.model,
        &state.model_config,
        &state.data,
        &state.training,
    );
    let here = resume::identity(
        about_model[0].as_str().unwrap_or_default(),
        &about_model[1],
        fingerprint,
        &config.training,
    );
    let differences = resume::differences(&there, &here);
    if !differences.is_empty() {
        return Err(Error::Checkpoint {
            path: loaded.path.clone(),
            message: format!(
                "cannot resume: this run differs from the checkpoint's in {}; resume with the \
                 settings it was started with",
                differences.join(", ")
            ),
        });
    }
    if config.training.epochs < state.progress.epochs_done {
        return Err(Error::Config(format!(
            "--epochs {}: the run to resume has already done {} epochs",
            config.training.epochs, state.progress.epochs_done
        )));
    }
    Ok(())
}

fn restore(
    mut loaded: resume::Loaded,
    specs: &[ParamSpec],
    about_model: &serde_json::Value,
    fingerprint: &DataFingerprint,
    config: &TrainConfig,
    device: &Device,
) -> Result<(Vec<Var>, Adam, Progress)> {
    check_resumable(&loaded, about_model, fingerprint, config)?;
    let file = &mut loaded.checkpoint;
    let mut moments = Vec::with_capacity(specs.len());
    for spec in specs {
        let (m_name, v_name) = crate::keys::moment_names(&spec.name);
        let m = file.take(&m_name, &spec.shape)?.into_f32()?;
        let v = file.take(&v_name, &spec.shape)?.into_f32()?;
        moments.push((m, v));
    }
    let vars = take_parameters(file, specs, DType::F32, device)?;
    let mut adam = Adam::new(config.training.adam, &vars)?;
    adam.restore(loaded.state.adam_step, moments)?;
    let progress = loaded.state.progress;
    Ok((vars, adam, progress))
}

/// The window-order generator at `word_pos`: stream 1 of the seed's ChaCha8, apart from
/// the initialisation's stream 0.
fn window_order(seed: u64, word_pos: u128) -> rand_chacha::ChaCha8Rng {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(1);
    rng.set_word_pos(word_pos);
    rng
}

/// Where the run's lines go. On a terminal: a bar over all windows of the run, with the
/// loss and ETA, above which the per-epoch lines scroll. Elsewhere (a pipe, a log file, CI)
/// or with --quiet: the plain lines only.
struct Report {
    bar: ProgressBar,
}

impl Report {
    /// Says whether the run resumes, and from where; a resumed run's CSV is rewritten from
    /// the checkpoint's rows, which are the truth (rows a killed run wrote after it go).
    fn resumption(
        &self,
        paths: &OutputPaths,
        asked: bool,
        resumed: Option<(&Progress, u64)>,
    ) -> Result<()> {
        match resumed {
            None if asked => self.say(&format!(
                "no training checkpoint {} yet: starting the run from the beginning",
                paths.resume.display()
            )),
            None => {}
            Some((progress, step)) => {
                self.say(&format!(
                    "resuming from {}: {} epoch(s) and {} window(s) done, Adam step {step}",
                    paths.resume.display(),
                    progress.epochs_done,
                    progress.windows_done,
                ));
                if crate::collective::writes() {
                    write_csv(&paths.csv, &progress.rows)?;
                }
            }
        }
        Ok(())
    }

    /// The baseline every figure is read against: copying the last frame.
    fn baseline(&self, copy_last: &Evaluation) {
        let m = &copy_last.metrics;
        self.say(&format!(
            "copy-last-frame baseline on the test frames: mse {:.6}  mae {:.6}  psnr {:.2}  ssim {:.4}{}",
            m.mse,
            m.mae,
            m.psnr,
            m.ssim,
            bce_note(copy_last)
        ));
    }

    fn new(config: &TrainConfig, windows_per_epoch: usize, progress: &Progress) -> Report {
        let bar = if config.quiet || !crate::collective::writes() {
            ProgressBar::hidden()
        } else {
            ProgressBar::with_draw_target(
                Some((config.training.epochs * windows_per_epoch) as u64),
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
        Report { bar }
    }

    /// Prints `line` (rank 0 only: the others' lines would repeat its own).
    fn say(&self, line: &str) {
        if !crate::collective::writes() {
            return;
        }
        if self.bar.is_hidden() {
            println!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    /// The run's first lines: model, data, training settings.
    #[allow(clippy::too_many_arguments)]
    fn header<M: SequenceModel>(
        &self,
        model_config: &M::Config,
        specs: &[ParamSpec],
        data: &Dataset,
        windows: &Windows,
        config: &TrainConfig,
        device: &Device,
        resumed: bool,
    ) {
        let n_params = lstm_core::spec::parameter_count(specs);
        self.say(&format!(
            "model {} {}: {n_params:.0} parameters ({} as f32), device {:?}",
            M::KIND,
            serde_json::to_string(model_config).unwrap_or_default(),
            crate::memory::human(n_params * 4.0),
            device
        ));
        self.say(&format!(
            "data {}: {}",
            data.source,
            describe_split(data, windows)
        ));
        let a = &config.training.adam;
        let optimizer = match a.form {
            crate::adam::AdamForm::Rmsprop => {
                format!("RMSProp lr {} decay {} eps {}", a.lr, a.beta2, a.eps)
            }
            form => format!(
                "Adam ({form:?} form) lr {} betas ({}, {}) eps {}",
                a.lr, a.beta1, a.beta2, a.eps
            ),
        };
        let optimizer = match config.training.loss {
            Loss::Mse => optimizer,
            Loss::Bce => format!("{optimizer}, loss bce (cross-entropy from the logits)"),
        };
        self.say(&format!(
            "train: {} epochs, {optimizer}, seed {}{}{}, {} thread(s){}",
            config.training.epochs,
            config.training.seed,
            if config.training.shuffle {
                ", shuffled windows"
            } else {
                ""
            },
            match config.training.batch_size {
                1 => String::new(),
                b => format!(", batches of {b}"),
            },
            rayon::current_num_threads(),
            match &config.init_from {
                Some(p) if !resumed => format!(", weights from {}", p.display()),
                _ => String::new(),
            }
        ));
        let collective = crate::collective::current();
        if collective.ranks() > 1 {
            self.say(&format!(
                "data-parallel: {}, each with {} thread(s); rank 0 writes every file",
                collective.describe(),
                rayon::current_num_threads()
            ));
        }
    }
}

/// A run between its set-up and its end.
struct Run<'a, M> {
    config: &'a TrainConfig,
    kind: &'static str,
    /// `[kind, model configuration]` as JSON, as checkpoints record them.
    about_model: serde_json::Value,
    paths: OutputPaths,
    windows: Windows,
    specs: Vec<ParamSpec>,
    vars: Vec<Var>,
    adam: Adam,
    model: M,
    progress: Progress,
    rng: rand_chacha::ChaCha8Rng,
    report: Report,
    /// The last epoch whose training checkpoint is on disk, for error messages.
    checkpoint_epoch: Option<usize>,
    device: Device,
    /// The last epoch's test evaluation, for the summary.
    last_test: Option<Evaluation>,
    /// Copy-last's window loss on the validation windows, where there are any.
    val_copy_last: Option<f64>,
    /// Copy-last on the test windows: the baseline of the summary and the TensorBoard log.
    copy_last_test: Evaluation,
    /// The TensorBoard log (`--tensorboard`).
    board: Option<EventWriter>,
    /// Held until the run ends (rank 0's; other ranks write nothing).
    _lock: Option<crate::lock::RunLock>,
}

impl<M: SequenceModel> Run<'_, M> {
    /// The epochs left, each trained, evaluated, checkpointed and written as a row, then
    /// the run's end (or its stop on request, or early stopping's).
    fn epochs(mut self, model_config: &M::Config) -> Result<RunSummary> {
        // A resumed run's earlier end is no longer its end.
        for row in &mut self.progress.rows {
            row.note = row.note.as_ref().map(|_| String::new());
        }
        for epoch in self.progress.epochs_done + 1..=self.config.training.epochs {
            if self.patience_spent() {
                break;
            }
            if let Some(stopped) = self.epoch(epoch)? {
                return Ok(stopped);
            }
        }
        self.finish(model_config)
    }

    /// One epoch: train, evaluate, checkpoint, row. Returns the run's summary if it stopped
    /// on request.
    fn epoch(&mut self, epoch: usize) -> Result<Option<RunSummary>> {
        let Some(seconds) = self.train_epoch(epoch)? else {
            return Ok(Some(self.stopped(epoch - 1)));
        };
        let test = self.evaluate(epoch)?;
        let row = self.row(epoch, seconds, &test)?;
        self.report.say(&format!(
            "epoch {:>3}/{}  train_loss {:.6}  test_loss {:.6}  psnr {:.2}  ssim {:.4}{}{}  {:.3} s  {:.0} frames/s",
            row.epoch,
            self.config.training.epochs,
            row.train_loss,
            row.test_loss,
            row.test_psnr,
            row.test_ssim,
            bce_note(&test),
            match (row.val_loss, row.val_copy_last) {
                (Some(v), Some(c)) => format!("  val_loss {v:.6} (copy-last {c:.6})"),
                _ => String::new(),
            },
            row.seconds,
            row.frames_per_second
        ));
        self.last_test = Some(test);
        // Before the checkpoint: a run killed between the two resumes from the one before,
        // and the log's records of this epoch, past that checkpoint's update, go.
        self.log_epoch(epoch, &row)?;
        self.keep_if_best(epoch, &row)?;
        let progress = &mut self.progress;
        progress.rows.push(row);
        progress.epochs_done = epoch;
        (progress.windows_done, progress.loss_sum, progress.seconds) = (0, 0.0, 0.0);
        progress.rng_word_pos = self.rng.get_word_pos();

        // Checkpoint, then the row: a run killed between the two resumes from the
        // checkpoint, whose rows rewrite the CSV.
        let stopping = self.stop_requested()? && epoch < self.config.training.epochs;
        let every = self.config.checkpoint_every;
        if (every > 0 && epoch.is_multiple_of(every))
            || stopping
            || epoch == self.config.training.epochs
            || self.patience_spent()
        {
            self.checkpoint()?;
            self.checkpoint_epoch = Some(epoch);
            crate::fault::reached("checkpoint-saved");
        }
        if crate::collective::writes() {
            write_csv(&self.paths.csv, &self.progress.rows)?;
        }
        Ok(stopping.then(|| self.stopped(epoch)))
    }

    /// The names of the parameters that, all zero, make the model copy the last frame it
    /// read: a residual head's (`x + head(h)`), where the model reads the frames it
    /// forecasts from (not a blind forecaster's).
    fn copy_last_fallback(&self) -> Option<[&'static str; 2]> {
        let stack = self.model.stack();
        (stack.head == Head::Residual && stack.wiring.encoder_layers == 0)
            .then_some(["head.weight", "head.bias"])
    }

    /// Do no harm: with a validation split and a model that can copy the last frame, the
    /// best weights start as that copy ("epoch 0", the residual head zeroed), and an epoch
    /// replaces them only by beating copy-last on the validation frames; so `eval` and
    /// `predict`, which use the best weights, are never worse than copy-last there.
    fn start_from_copy_last(&mut self) -> Result<()> {
        let fresh = self.progress.epochs_done == 0 && self.progress.windows_done == 0;
        let Some(zeroed) = self.copy_last_fallback() else {
            return Ok(());
        };
        if !fresh || self.val_copy_last.is_none() || self.progress.best_epoch.is_some() {
            return Ok(());
        }
        let vars = self
            .specs
            .iter()
            .zip(&self.vars)
            .map(|(spec, var)| match zeroed.contains(&spec.name.as_str()) {
                true => Ok(Var::from_tensor(&var.zeros_like()?)?),
                false => Ok(var.clone()),
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let metadata = self.weights_metadata(0);
        save_weights(&self.paths.best, &self.specs, &vars, metadata)?;
        self.progress.best_epoch = Some(0);
        Ok(())
    }

    /// The validation loss of the best weights so far: the best epoch's, or copy-last's
    /// where they are the copy-last fallback (epoch 0).
    fn best_val_loss(&self) -> Option<f64> {
        match self.progress.best_epoch? {
            0 => self.val_copy_last,
            e => self.progress.rows.get(e - 1)?.val_loss,
        }
    }

    /// The epoch's figures in the TensorBoard log, at the epoch's last update: the test
    /// metrics (the CSV row's), copy-last's, the validation losses, and every
    /// `tensorboard_images` epochs the prediction grid.
    fn log_epoch(&mut self, epoch: usize, row: &EpochRow) -> Result<()> {
        if self.board.is_none() {
            return Ok(());
        }
        let copy = &self.copy_last_test;
        let mut values = vec![
            ("epoch", epoch as f64),
            ("train/epoch_loss", row.train_loss),
            ("test/loss", row.test_loss),
            ("test/mse", row.test_mse),
            ("test/mae", row.test_mae),
            ("test/psnr", row.test_psnr),
            ("test/ssim", row.test_ssim),
            ("test/bce", row.test_bce),
            ("copy_last/loss", copy.loss),
            ("copy_last/mse", copy.metrics.mse),
            ("copy_last/mae", copy.metrics.mae),
            ("copy_last/psnr", copy.metrics.psnr),
            ("copy_last/ssim", copy.metrics.ssim),
            ("copy_last/bce", copy.bce_per_window),
        ];
        if let (Some(v), Some(c)) = (row.val_loss, row.val_copy_last) {
            values.extend([("val/loss", v), ("val/copy_last", c)]);
        }
        let every = self.config.tensorboard_images;
        let grid = match every > 0 && epoch.is_multiple_of(every) {
            true => Some(self.prediction_grid()?),
            false => None,
        };
        let step = self.adam.step;
        let board = self.board.as_mut().expect("checked above");
        board.scalars(step, &values)?;
        if let Some((png, dims)) = grid {
            board.image(step, "test/predictions", &png, dims)?;
        }
        board.flush()
    }

    /// The first test window's true frames (top row) above the model's predictions of
    /// them (bottom row), the last ten at most, as a PNG and its `[width, height, channels]`.
    fn prediction_grid(&self) -> Result<(Vec<u8>, [u32; 3])> {
        let window = &self.windows.test[0]; // [L, C, H, W]
        let len = window.dim(0)?;
        let plan = match self.config.training.forecast {
            Some(f) => f.plan(1),
            None => Plan::one_step(len, 1),
        };
        let predictions =
            crate::model::forward_plan(&self.model, &window.unsqueeze(1)?, &plan)?.squeeze(1)?; // [T, C, H, W]
        let steps = predictions.dim(0)?;
        let shown = steps.min(10);
        let rows = [
            window.narrow(0, len - shown, shown)?,
            predictions
                .narrow(0, steps - shown, shown)?
                .clamp(0f32, 1f32)?,
        ];
        let [c, h, w] = self.windows.frame;
        let (width, height) = (shown * w, 2 * h);
        let mut pixels = vec![0u8; width * height * c];
        for (r, frames) in rows.iter().enumerate() {
            let values: Vec<f32> = frames.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
            for (i, v) in values.iter().enumerate() {
                let (k, ch, y, x) = (i / (c * h * w), i / (h * w) % c, i / w % h, i % w);
                let at = ((r * h + y) * width + k * w + x) * c + ch;
                pixels[at] = (v * 255.0).round() as u8;
            }
        }
        let mut png = Vec::new();
        let color = match c {
            1 => image::ExtendedColorType::L8,
            _ => image::ExtendedColorType::Rgb8,
        };
        image::codecs::png::PngEncoder::new(&mut png)
            .write_image(&pixels, width as u32, height as u32, color)
            .map_err(|e| Error::Config(format!("cannot encode the prediction grid: {e}")))?;
        Ok((png, [width as u32, height as u32, c as u32]))
    }

    /// Writes the weights, as the best-weights file, where `row`'s validation loss is the
    /// lowest so far.
    fn keep_if_best(&mut self, epoch: usize, row: &EpochRow) -> Result<()> {
        let Some(loss) = row.val_loss else {
            return Ok(());
        };
        if self.best_val_loss().is_none_or(|b| loss < b) {
            let metadata = self.weights_metadata(epoch);
            save_weights(&self.paths.best, &self.specs, &self.vars, metadata)?;
            self.progress.best_epoch = Some(epoch);
        }
        Ok(())
    }

    /// Whether `--patience` epochs have passed since the best validation epoch.
    fn patience_spent(&self) -> bool {
        match (self.config.patience, self.progress.best_epoch) {
            (Some(patience), Some(best)) => self.progress.epochs_done >= best + patience,
            _ => false,
        }
    }

    /// The one metadata key of a weights file written after `epochs_done` epochs. One key:
    /// safetensors keeps metadata in a hash map, whose order would make two identical runs
    /// write different headers.
    fn weights_metadata(&self, epochs_done: usize) -> HashMap<String, String> {
        let about = serde_json::json!({
            "model": self.kind,
            "model_config": self.about_model[1],
            "frame": self.windows.frame,
            "train_config": self.config,
            "epochs_done": epochs_done,
            "launch": self.config.launch,
        });
        HashMap::from([(CHECKPOINT_METADATA_KEY.to_string(), about.to_string())])
    }

    /// With a validation split: the best epoch's validation loss beside copy-last's, and
    /// whether the model beats it, in words.
    fn verdict(&self) -> Option<serde_json::Value> {
        let epoch = self.progress.best_epoch?;
        let (ours, copy) = (self.best_val_loss()?, self.val_copy_last?);
        let words = match (ours < copy, epoch) {
            (true, _) => "this model beats copying the last frame on the validation frames",
            (false, 0) => {
                "this model is worse than copying the last frame on the validation frames; \
                 its best weights are the copy-last fallback (the residual head zeroed), \
                 which predicts the last frame"
            }
            (false, _) => {
                "this model is worse than copying the last frame on the validation frames"
            }
        };
        Some(serde_json::json!({
            "best_epoch": epoch,
            "val_loss": ours,
            "val_copy_last": copy,
            "best_weights": self.paths.best,
            "verdict": words,
        }))
    }

    /// Copy-last's window loss on the validation windows (none without them): the same
    /// every epoch, so taken once.
    fn validation_baseline(&self) -> Result<Option<f64>> {
        if self.windows.validation.is_empty() {
            return Ok(None);
        }
        let copy = copy_last(&self.windows.validation, self.config.training.forecast)?;
        Ok(Some(copy.measured_by(self.config.training.loss).loss))
    }

    /// The CSV row of `epoch`: its training, `test`, and the validation windows' loss
    /// beside copy-last's where there are any.
    fn row(&self, epoch: usize, seconds: f64, test: &Evaluation) -> Result<EpochRow> {
        let val_loss = match self.windows.validation.is_empty() {
            true => None,
            false => {
                let forecast = self.config.training.forecast;
                let ours = evaluate(&self.model, &self.windows.validation, forecast)?;
                Some(ours.measured_by(self.config.training.loss).loss)
            }
        };
        Ok(EpochRow {
            epoch,
            train_loss: self.progress.loss_sum / self.windows.train.len() as f64,
            test_loss: test.loss,
            seconds,
            frames_per_second: self.windows.steps_per_epoch as f64 / seconds,
            test_mse: test.metrics.mse,
            test_mae: test.metrics.mae,
            test_psnr: test.metrics.psnr,
            test_ssim: test.metrics.ssim,
            test_bce: test.bce_per_window,
            note: val_loss.map(|_| String::new()),
            val_loss,
            val_copy_last: self.val_copy_last,
            lr: (!self.config.training.lr_schedule.is_constant()).then_some(self.adam.config.lr),
        })
    }

    /// The epoch's updates, one per batch of windows, from where the progress stands.
    /// Returns its training seconds, or `None` if it stopped on request (with a
    /// checkpoint) before its end.
    fn train_epoch(&mut self, epoch: usize) -> Result<Option<f64>> {
        let windows_per_epoch = self.windows.train.len();
        self.draw_fresh_windows(epoch)?;
        // Where this epoch's order is drawn from: a checkpoint taken in the middle of the
        // epoch records it, to draw the same order again on resume.
        self.progress.rng_word_pos = self.rng.get_word_pos();
        let mut order: Vec<usize> = (0..windows_per_epoch).collect();
        if self.config.training.shuffle {
            order.shuffle(&mut self.rng);
        }
        let start = Instant::now();
        self.report
            .bar
            .set_prefix(format!("{epoch}/{}", self.config.training.epochs));
        while self.progress.windows_done < windows_per_epoch {
            let k = self.progress.windows_done;
            let batch_size = self.config.training.batch_size.min(windows_per_epoch - k);
            let augment = self.config.training.augment;
            let members = order[k..k + batch_size]
                .iter()
                .map(|&w| match augment.is_none() {
                    true => Ok(self.windows.train[w].clone()),
                    false => {
                        let drawn = augment.draw(self.config.training.seed, epoch, w);
                        Augment::apply(&self.windows.train[w], drawn)
                    }
                })
                .collect::<candle_core::Result<Vec<_>>>()?;
            let batch = Tensor::stack(&members, 1)?; // [L, B, C, H, W]
            let plan = match self.config.training.forecast {
                Some(f) => f.plan(batch_size),
                None => Plan::one_step(batch.dim(0)?, batch_size),
            }
            .with_loss(self.config.training.loss)
            .with_sampling(self.sampling());
            self.schedule_lr(windows_per_epoch);
            let step = train_step(
                &self.model,
                &batch,
                &plan,
                &self.vars,
                &mut self.adam,
                crate::model::StepOptions {
                    backward: self.config.backward,
                    clip_grad_norm: self.config.training.clip_grad_norm,
                },
            )?;
            let loss = self.check_step(epoch, k, step)?;
            if let Some(board) = &mut self.board {
                let lr = self.adam.config.lr;
                board.scalars(self.adam.step, &[("train/loss", loss), ("train/lr", lr)])?;
            }
            // Summed per window, so the row's mean is over windows whatever the batches.
            self.progress.loss_sum += loss * batch_size as f64;
            self.progress.windows_done += batch_size;
            self.report.bar.set_message(format!("{loss:.4}"));
            self.report.bar.inc(batch_size as u64);
            if self.stop_requested()? && self.progress.windows_done < windows_per_epoch {
                // Mid-epoch: save where we are; the epoch finishes on resume.
                self.device.synchronize()?;
                self.progress.seconds += start.elapsed().as_secs_f64();
                self.checkpoint()?;
                self.report.bar.finish_and_clear();
                self.report.say(&format!(
                    "stopped in epoch {epoch} after window {} of {windows_per_epoch}; \
                     wrote the training checkpoint {}",
                    self.progress.windows_done,
                    self.paths.resume.display()
                ));
                return Ok(None);
            }
        }
        // Sync point: on a GPU the clock must not stop before the kernels do.
        self.device.synchronize()?;
        Ok(Some(self.progress.seconds + start.elapsed().as_secs_f64()))
    }

    /// With fresh windows, epoch `epoch`'s training windows (epoch 1 trains on the data's).
    fn draw_fresh_windows(&mut self, epoch: usize) -> Result<()> {
        let windows_per_epoch = self.windows.train.len();
        if let (Some(fresh), true) = (&self.config.fresh_windows, epoch > 1) {
            // The last epoch's windows go first: both sets at once would be the peak.
            self.windows.train = Vec::new();
            let drawn = (fresh.0)(epoch)?;
            if drawn.len() != windows_per_epoch {
                return Err(Error::Config(format!(
                    "epoch {epoch}: {} fresh training windows for {windows_per_epoch}",
                    drawn.len()
                )));
            }
            self.windows.train = Windows::on_device(drawn, &self.device)?;
        }
        Ok(())
    }

    /// With a learning-rate schedule, Adam's rate for its next update.
    fn schedule_lr(&mut self, windows_per_epoch: usize) {
        let training = &self.config.training;
        if !training.lr_schedule.is_constant() {
            let total = (training.epochs * windows_per_epoch.div_ceil(training.batch_size)) as u64;
            self.adam.config.lr = training
                .lr_schedule
                .lr(training.adam.lr, self.adam.step, total);
        }
    }

    /// Scheduled sampling for the next update: the chance that a forecast step reads the
    /// true frame falls linearly from 1 at the first update to 0 after
    /// `scheduled_sampling` updates; the draws' seed is the run's seed and the update's
    /// number, so a resumed run draws what the uninterrupted one did.
    fn sampling(&self) -> Option<Sampling> {
        let updates = self.config.training.scheduled_sampling?;
        let done = self.adam.step;
        let truth = 1.0 - done as f64 / updates as f64;
        (truth > 0.0).then(|| Sampling {
            truth,
            seed: splitmix64(splitmix64(self.config.training.seed ^ SAMPLING_STREAM) ^ done),
        })
    }

    /// The loss of an update, or the error that stops the run when it was not finite.
    fn check_step(&self, epoch: usize, window: usize, step: Step) -> Result<f64> {
        match step {
            // Stopped before the update: what is on disk is what the last good epochs
            // left.
            Step::LossNotFinite(loss) => Err(Error::Numerical(format!(
                "epoch {epoch}, window {}: the training loss is {loss}; stopping. {}; a lower \
                 --lr may help",
                window + 1,
                self.checkpoint_hint()
            ))),
            Step::Updated {
                not_finite: Some(bad),
                ..
            } => Err(Error::Numerical(format!(
                "epoch {epoch}, window {}: the gradient of `{}` (or the update it gave) is not \
                 finite; stopping. {}; a lower --lr may help",
                window + 1,
                self.specs[bad].name,
                self.checkpoint_hint()
            ))),
            Step::Updated { loss, .. } => Ok(loss),
        }
    }

    /// The same window loss on the held-out windows, no update, and the image metrics of
    /// the same predictions.
    fn evaluate(&self, epoch: usize) -> Result<Evaluation> {
        let test = evaluate(
            &self.model,
            &self.windows.test,
            self.config.training.forecast,
        )?
        .measured_by(self.config.training.loss);
        if !test.loss.is_finite() {
            return Err(Error::Numerical(format!(
                "epoch {epoch}: the test loss is {} after the epoch's updates; stopping. {}; a \
                 lower --lr may help",
                test.loss,
                self.checkpoint_hint()
            )));
        }
        Ok(test)
    }

    /// Writes the training checkpoint of the run as it stands (rank 0 only).
    fn checkpoint(&self) -> Result<()> {
        if !crate::collective::writes() {
            return Ok(());
        }
        let state = TrainingState {
            format: resume::FORMAT,
            model: self.kind.to_string(),
            model_config: self.about_model[1].clone(),
            data: self.windows.fingerprint.clone(),
            training: self.config.training.clone(),
            progress: self.progress.clone(),
            adam_step: self.adam.step,
            launch: self.config.launch.clone(),
        };
        resume::save(
            &self.paths.resume,
            &self.specs,
            &self.vars,
            &self.adam,
            &state,
        )
    }

    /// Whether to stop here on request: this process's signal flag, or with several ranks
    /// any rank's, so that all stop after the same update.
    fn stop_requested(&self) -> Result<bool> {
        let asked = self
            .config
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::SeqCst));
        crate::collective::any(crate::collective::current(), asked)
    }

    fn checkpoint_hint(&self) -> String {
        match self.checkpoint_epoch {
            Some(e) => format!(
                "the training checkpoint {} (epoch {e}) is kept",
                self.paths.resume.display()
            ),
            None => "no training checkpoint had been written yet".to_string(),
        }
    }

    /// The summary of a run stopped on request after `epochs` whole epochs.
    fn stopped(&mut self, epochs: usize) -> RunSummary {
        let windows = self.progress.windows_done;
        if windows == 0 {
            self.report.bar.finish_and_clear();
            self.report.say(&format!(
                "stopped after epoch {epochs}; wrote the training checkpoint {}",
                self.paths.resume.display()
            ));
        }
        RunSummary {
            rows: self.progress.rows.clone(),
            paths: self.paths.clone(),
            stopped_at: Some((epochs, windows)),
        }
    }

    /// The weights file (with the configurations in its metadata) and the summary.
    fn finish(mut self, model_config: &M::Config) -> Result<RunSummary> {
        self.report.bar.finish_and_clear();
        crate::fault::reached("final");
        let metadata = self.weights_metadata(self.progress.rows.len());
        save_weights(&self.paths.weights, &self.specs, &self.vars, metadata)?;
        let verdict = self.verdict();
        if let (Some(v), Some(last)) = (&verdict, self.progress.rows.last_mut()) {
            let words = v["verdict"].as_str().unwrap_or_default();
            self.report.say(&format!(
                "validation: {words} (best epoch {})",
                v["best_epoch"]
            ));
            last.note = Some(words.to_string());
            if crate::collective::writes() {
                write_csv(&self.paths.csv, &self.progress.rows)?;
            }
        }
        let rows = self.progress.rows;
        // A resumed run that had nothing left to train has no evaluation yet.
        let test = match self.last_test.take() {
            Some(test) => test,
            None => evaluate(
                &self.model,
                &self.windows.test,
                self.config.training.forecast,
            )?
            .measured_by(self.config.training.loss),
        };
        // The model's and copy-last's figures side by side under the same unit-named keys;
        // `final` is the CSV's last row, in the CSV's units (the README lists them).
        let summary = serde_json::json!({
            "model": self.kind,
            "model_config": model_config,
            "epochs": rows.len(),
            "final": rows.last(),
            "forecast": self.config.training.forecast,
            "test": test.figures(),
            "copy_last_frame": self.copy_last_test.figures(),
        });
        let mut summary = summary;
        if let Some(v) = verdict {
            summary["validation"] = v;
        }
        let text =
            serde_json::to_string_pretty(&summary).map_err(|e| Error::Config(e.to_string()))?;
        if crate::collective::writes() {
            crate::files::write_bytes_atomic(&self.paths.summary, text.as_bytes())?;
        }
        let paths = self.paths;
        self.report.say(&format!(
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
}

/// Writes `vars` as a weights file at `path`: rank 0's job, as every file of a run is.
fn save_weights(
    path: &Path,
    specs: &[ParamSpec],
    vars: &[Var],
    metadata: HashMap<String, String>,
) -> Result<()> {
    match crate::collective::writes() {
        true => save_parameters(path, specs, vars, metadata),
        false => Ok(()),
    }
}

/// The split a run trains on, in words: frames or videos, windows of each part, and the
/// validation split if there is one.
fn describe_split(data: &Dataset, windows: &Windows) -> String {
    let parts = match data.holdout {
        frames::Holdout::Frames(split) => format!(
            "{} frames {}, train {} frames -> {} windows of {} (stride {}), test {} frames -> {} windows",
            data.frame_count(),
            data.size(),
            split.train,
            windows.train.len(),
            data.windows.len,
            data.windows.stride,
            split.test,
            windows.test.len(),
        ),
        frames::Holdout::Videos { train, test } => format!(
            "{} videos of {} frames {}, train {train} videos -> {} windows of {} (stride {}), test {test} videos -> {} windows",
            train + test,
            data.videos[0].len(),
            data.size(),
            windows.train.len(),
            data.windows.len,
            data.windows.stride,
            windows.test.len(),
        ),
    };
    let validation = match (data.validation, data.holdout) {
        (0, _) => String::new(),
        (n, frames::Holdout::Frames(_)) => format!(
            "; validation: the last {n} training frames -> {} windows",
            windows.validation.len()
        ),
        (n, frames::Holdout::Videos { .. }) => format!(
            "; validation: the last {n} training videos -> {} windows",
            windows.validation.len()
        ),
    };
    format!("{parts}{validation}")
}

/// `  bce <per sequence>` where the cross-entropy is the figure to read (forecasts).
fn bce_note(test: &Evaluation) -> String {
    match test.per_horizon.is_empty() {
        true => String::new(),
        false => format!("  bce {:.1}", test.bce_per_window),
    }
}

fn json<T: Serialize>(value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| Error::Config(e.to_string()))
}
