//! What the run will do: configurations built and validated once from the typed flags.

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::ArgMatches;
use frames::moving_mnist::MovingMnist;
use frames::{ColorMode, LoadOptions, Size, WindowSpec};
use harness::adam::{AdamConfig, AdamForm};
use harness::evaluate::Forecast;
use harness::{Backward, LrSchedule, SequenceModel, TrainConfig, TrainSettings};

use crate::args::{
    AdamKind, AugmentKind, BackwardKind, ColorKind, DataArgs, DeviceKind, NpyLayoutKind,
    OptimizerKind, RunSettings, ScheduleKind, TrainArgs,
};

/// The windows the flags ask for: `--seq-len`, or a forecast's context and horizon, or
/// the default (a whole sequence of Moving MNIST or of a .npy file, or the seed's 26
/// frames).
pub fn window_spec(args: &DataArgs, seq_len: Option<usize>) -> Result<WindowSpec> {
    let len = match (args.seq_len, seq_len) {
        (Some(typed), Some(needed)) if typed != needed => bail!(
            "--seq-len {typed}: a window of --context and --horizon is {needed} frames; leave \
             --seq-len out"
        ),
        (Some(len), _) | (None, Some(len)) => len,
        (None, None) if args.data.as_os_str() == MOVING_MNIST => 20,
        (None, None) if frames::npy::is_npy(&args.data) => {
            let header = frames::npy::read_header(&args.data)?;
            header
                .videos(&args.data, load_options(args)?.npy_layout)?
                .frames
        }
        (None, None) => 26,
    };
    Ok(WindowSpec::new(len, args.stride)?)
}

/// `--data moving-mnist`'s sequences, with the flags that do not apply refused.
pub fn moving_mnist(args: &DataArgs) -> Result<MovingMnist> {
    for (flag, typed) in [
        ("--size", args.size.is_some()),
        ("--train-frames", args.train_frames.is_some()),
        ("--test-videos", args.test_videos.is_some()),
        ("--color rgb", args.color == ColorKind::Rgb),
        ("--every", args.every.is_some()),
        ("--max-frames", args.max_frames.is_some()),
    ] {
        if typed {
            bail!("{flag}: Moving MNIST is generated 64x64 and grey; use --sequences and --test-sequences");
        }
    }
    let spec = MovingMnist {
        seed: args.mnist_seed,
        train: args.sequences,
        test: args.test_sequences,
        ..MovingMnist::default()
    };
    if spec.train == 0 || spec.test == 0 {
        bail!(
            "--sequences {} --test-sequences {}: Moving MNIST needs at least one of each",
            spec.train,
            spec.test
        );
    }
    Ok(spec)
}

/// How to read a folder's frames.
pub fn load_options(args: &DataArgs) -> Result<LoadOptions> {
    let size = args
        .size
        .as_deref()
        .map(Size::parse)
        .transpose()
        .map_err(|e| match e {
            frames::Error::TooLarge(why) => anyhow::anyhow!("--size {why}"),
            e => e.into(),
        })?;
    for (flag, value) in [("--every", args.every), ("--max-frames", args.max_frames)] {
        if value == Some(0) {
            bail!("{flag} 0: give at least 1");
        }
    }
    Ok(LoadOptions {
        every: args.every,
        max_frames: args.max_frames,
        size,
        color: match args.color {
            ColorKind::Luma => ColorMode::Luma,
            ColorKind::Rgb => ColorMode::Rgb,
        },
        test_videos: args.test_videos,
        npy_layout: match args.npy_layout {
            Some(NpyLayoutKind::Nthw) => frames::npy::Layout4::SequencesFirst,
            Some(NpyLayoutKind::Tnhw) | None => frames::npy::Layout4::FramesFirst,
        },
    })
}

/// Checks that `path`, given with `flag`, is a file that can be read: one that exists but
/// is a folder or a device is refused saying so.
pub fn readable_file(flag: &str, path: &std::path::Path) -> Result<()> {
    harness::files::open_regular(path).map_err(|e| anyhow::anyhow!("{flag} {e}"))?;
    Ok(())
}

/// `--context K --horizon N`, checked.
pub fn forecast(context: Option<usize>, horizon: Option<usize>) -> Result<Option<Forecast>> {
    match (context, horizon) {
        (Some(context), Some(horizon)) => {
            if context == 0 || horizon == 0 {
                bail!("--context {context} --horizon {horizon}: each must be at least 1");
            }
            Ok(Some(Forecast { context, horizon }))
        }
        (None, None) => Ok(None),
        _ => bail!("--context and --horizon go together"),
    }
}

/// `--data moving-mnist`.
pub const MOVING_MNIST: &str = "moving-mnist";

/// The device the flags ask for.
pub fn device(kind: Option<DeviceKind>) -> Result<Device> {
    match kind {
        Some(DeviceKind::Cpu) => Ok(Device::Cpu),
        Some(DeviceKind::Cuda) => {
            if !cfg!(feature = "cuda") {
                bail!(
                    "--device cuda: this bench-cli was built without CUDA; rebuild with \
                     `cargo build --release --features cuda` (needs nvcc) or use --device cpu"
                );
            }
            // The driver's own words (no libcuda, no device, a driver too old) follow ours.
            Device::new_cuda(0).map_err(|e| {
                anyhow::anyhow!(
                    "--device cuda: no usable NVIDIA GPU found (CUDA said: {}); use --device cpu",
                    crate::errors::without_backtrace(&e.to_string()).trim()
                )
            })
        }
        // The CPU unless asked: a `cuda` build gives the seed's results bit for bit too.
        None => Ok(Device::Cpu),
    }
}

/// The training configuration the flags describe, checked.
pub fn train_config(args: &TrainArgs) -> Result<TrainConfig> {
    check_run_flags(args)?;
    let run = &args.run;
    Ok(TrainConfig {
        training: TrainSettings {
            epochs: run.epochs,
            adam: match run.optimizer {
                OptimizerKind::Adam => AdamConfig {
                    lr: run.lr,
                    form: match run.adam {
                        AdamKind::Chainer => AdamForm::Chainer,
                        AdamKind::Torch => AdamForm::Torch,
                    },
                    ..AdamConfig::default()
                },
                OptimizerKind::Rmsprop => AdamConfig {
                    lr: run.lr,
                    beta1: 0.0,
                    beta2: run.rmsprop_decay,
                    form: AdamForm::Rmsprop,
                    ..AdamConfig::default()
                },
            },
            seed: run.seed,
            shuffle: run.shuffle,
            batch_size: run.batch_size,
            forecast: forecast(run.context, run.horizon)?,
            fresh_windows: run.data.fresh_sequences,
            clip_grad_norm: run.clip_grad_norm,
            loss: run.loss,
            scheduled_sampling: run.scheduled_sampling,
            augment: harness::Augment {
                flip: run.augment.contains(&AugmentKind::Flip),
                reverse: run.augment.contains(&AugmentKind::Reverse),
                crop: run.augment.contains(&AugmentKind::Crop),
            },
            lr_schedule: match run.lr_schedule {
                ScheduleKind::Constant => LrSchedule::Constant,
                ScheduleKind::Cosine => LrSchedule::Cosine,
                ScheduleKind::OneCycle => LrSchedule::OneCycle,
            },
        },
        out_dir: args.out.clone(),
        init_from: args.init_from.clone(),
        quiet: args.quiet,
        overwrite: args.force,
        resume: args.resume,
        checkpoint_every: run.checkpoint_every,
        patience: run.patience,
        tensorboard: run.tensorboard.clone(),
        tensorboard_images: run.tensorboard_images,
        stop: None,
        started: None,
        launch: serde_json::to_value(run)?,
        fresh_windows: None,
        backward: match args.backward {
            BackwardKind::Fastest => Backward::Fastest,
            BackwardKind::Autograd => Backward::Autograd,
        },
    })
}

/// Refuses, by flag, training flags no run can take.
fn check_run_flags(args: &TrainArgs) -> Result<()> {
    let run = &args.run;
    if run.batch_size == 0 {
        bail!("--batch-size 0: use at least one window per update");
    }
    if !(run.lr.is_finite() && run.lr > 0.0) {
        bail!(
            "--lr {}: the learning rate must be a positive number",
            run.lr
        );
    }
    if !(0.0..1.0).contains(&run.rmsprop_decay) {
        bail!("--rmsprop-decay {}: a decay in [0, 1)", run.rmsprop_decay);
    }
    if run.epochs == 0 {
        bail!("--epochs 0: train at least one epoch");
    }
    if let Some(x) = run.clip_grad_norm.filter(|x| !(x.is_finite() && *x > 0.0)) {
        bail!("--clip-grad-norm {x}: the largest norm must be a positive number");
    }
    if run.patience == Some(0) {
        bail!("--patience 0: wait at least one epoch for a better validation loss");
    }
    if run.scheduled_sampling == Some(0) {
        bail!("--scheduled-sampling 0: sample the truth over at least one update");
    }
    if run.data.fresh_sequences && run.data.data.as_os_str() != MOVING_MNIST {
        bail!("--fresh-sequences draws Moving MNIST afresh: it needs --data moving-mnist");
    }
    if let Some(path) = &args.init_from {
        readable_file("--init-from", path)?;
    }
    Ok(())
}

/// The model to train: the one the flags describe or, with `--init-from` a file a run
/// wrote, the one recorded in it: it must take these frames, and typed model flags that
/// differ from it are refused, naming both. A file without a record (PyTorch's) takes the
/// flags' model.
pub fn model_config<M: SequenceModel>(
    args: &TrainArgs,
    matches: &ArgMatches,
    frame: [usize; 3],
    flags: &M::Flags,
) -> Result<M::Config> {
    let from_flags = M::config(flags, frame)?;
    let Some(path) = &args.init_from else {
        return Ok(from_flags);
    };
    let Some((kind, recorded)) = harness::resume::recorded_model(path)? else {
        return Ok(from_flags);
    };
    if kind != M::KIND {
        bail!(
            "--init-from {}: it holds a {kind} model, not a {} model",
            path.display(),
            M::KIND
        );
    }
    let recorded: M::Config = serde_json::from_value(recorded).with_context(|| {
        format!(
            "--init-from {}: unreadable model configuration",
            path.display()
        )
    })?;
    if let Err(e) = M::parameter_specs(&recorded, frame) {
        bail!("--init-from {}: {e}", path.display());
    }
    let typed: Vec<String> = crate::models::flags::<M>()
        .into_iter()
        .filter(|flag| crate::models::typed(matches, &flag.id))
        .map(|flag| format!("--{}", flag.long))
        .collect();
    if !typed.is_empty() && recorded != from_flags {
        bail!(
            "--init-from {}: it holds the model {}, but {} ask for {}; leave them out to \
             train the file's model",
            path.display(),
            serde_json::to_string(&recorded)?,
            typed.join(" "),
            serde_json::to_string(&from_flags)?
        );
    }
    Ok(recorded)
}

/// For `--resume`: the run's settings as its training checkpoint at `path` records them
/// (`record`), each flag typed on this command line taking its typed value. The harness
/// then refuses a typed value that changes the run (a different --lr, say) rather than just
/// its length (--epochs), naming it.
pub fn resume_settings(
    run: &mut RunSettings,
    matches: &ArgMatches,
    record: serde_json::Value,
    path: &std::path::Path,
) -> Result<()> {
    let Some(mut saved) = migrate(record) else {
        bail!(
            "{}: no command-line settings recorded to resume with",
            path.display()
        );
    };
    merge_typed(&mut saved, &serde_json::to_value(&*run)?, matches);
    *run = serde_json::from_value(saved)
        .with_context(|| format!("{}: unreadable run settings", path.display()))?;
    Ok(())
}

/// For `eval` and `predict`: the data settings of the run that wrote `checkpoint` (its
/// frames' size and colour, the data it read, its windows), each flag typed on this command
/// line taking its typed value. With `own_windows` (a forecast asked for here) the windows
/// stay this command's. A file without that record leaves `data` as typed.
pub fn recorded_data(
    data: &mut DataArgs,
    checkpoint: &std::path::Path,
    matches: &ArgMatches,
    own_windows: bool,
) -> Result<()> {
    let Some(launch) = harness::resume::recorded_launch(checkpoint)? else {
        return Ok(());
    };
    let Some(mut saved) = launch.get("data").cloned().filter(|d| d.is_object()) else {
        return Ok(());
    };
    let here = serde_json::to_value(&*data)?;
    if own_windows {
        for key in ["seq_len", "stride"] {
            saved[key] = here[key].clone();
        }
    }
    merge_typed(&mut saved, &here, matches);
    *data = serde_json::from_value(saved).with_context(|| {
        format!(
            "--checkpoint {}: unreadable data settings",
            checkpoint.display()
        )
    })?;
    Ok(())
}

/// The weights `eval` and `predict` read for `--checkpoint`: the best validation epoch's,
/// where training kept them beside it (`<model>.best.safetensors` next to
/// `<model>.safetensors`), unless `last`; else the file itself. Says which when it swaps.
pub fn best_weights(checkpoint: &std::path::Path, last: bool) -> std::path::PathBuf {
    let best = checkpoint
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".safetensors"))
        .filter(|stem| !stem.ends_with(".best") && !stem.ends_with(".resume"))
        .map(|stem| checkpoint.with_file_name(format!("{stem}.best.safetensors")));
    match best {
        Some(best) if !last && best.is_file() => {
            println!(
                "weights: the best validation epoch's, {} (--last for {})",
                best.display(),
                checkpoint.display()
            );
            best
        }
        _ => checkpoint.to_path_buf(),
    }
}

/// The `--context` and `--horizon` the run that wrote `checkpoint` trained with, if it
/// forecast.
pub fn recorded_forecast(checkpoint: &std::path::Path) -> Result<Option<(usize, usize)>> {
    let Some(launch) = harness::resume::recorded_launch(checkpoint)? else {
        return Ok(None);
    };
    let number = |key: &str| launch.get(key).and_then(|v| v.as_u64()).map(|v| v as usize);
    Ok(number("context").zip(number("horizon")))
}

/// A record of [`RunSettings`] as this version reads it: records written before the models'
/// flags had a field of their own kept them among the rest, where each model's `Flags`
/// still finds its own (and ignores the others). `None` for no record.
fn migrate(record: serde_json::Value) -> Option<serde_json::Value> {
    let serde_json::Value::Object(mut fields) = record else {
        return None;
    };
    if !fields.contains_key("model_flags") {
        let flat = serde_json::Value::Object(fields.clone());
        fields.insert("model_flags".into(), flat);
    }
    Some(serde_json::Value::Object(fields))
}

/// Into `saved`, every flag of `here` that was typed (or that `saved` lacks: one added
/// since), walking nested flag groups; the serde names are the clap ids.
fn merge_typed(saved: &mut serde_json::Value, here: &serde_json::Value, matches: &ArgMatches) {
    let (serde_json::Value::Object(saved), serde_json::Value::Object(here)) = (saved, here) else {
        return;
    };
    for (key, value) in here {
        match saved.get_mut(key) {
            Some(inner @ serde_json::Value::Object(_)) if value.is_object() => {
                merge_typed(inner, value, matches)
            }
            Some(_) if !crate::models::typed(matches, key) => {}
            _ => {
                saved.insert(key.clone(), value.clone());
            }
        }
    }
}

/// Sizes the thread pool every CPU kernel shares (rayon's global pool, which candle and the
/// gemm crate use too): `--threads`, or the model's `default` choice. Must run before the
/// first parallel operation, and before any other thread exists (it sets an environment
/// variable).
pub fn set_threads(threads: Option<usize>, default: usize) -> Result<usize> {
    let threads = match threads {
        Some(0) => bail!("--threads 0: use at least one thread"),
        Some(n) => n,
        None => default,
    };
    // candle reads this for its own CPU kernels; rayon's pool is sized below.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .context("cannot start the thread pool")?;
    Ok(threads)
}

/// Cores this process may use.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
