//! What the run will do: configurations built and validated once from the typed flags.

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::parser::ValueSource;
use clap::ArgMatches;
use frames::moving_mnist::MovingMnist;
use frames::{ColorMode, LoadOptions, Size, WindowSpec};
use harness::adam::{AdamConfig, AdamForm};
use harness::evaluate::Forecast;
use harness::{SequenceModel, TrainConfig};
use serde::{Deserialize, Serialize};

use crate::args::{AdamKind, ColorKind, DataArgs, DeviceKind, HeadKind, ModelKind, TrainArgs};

/// The windows the flags ask for: `--seq-len`, or a forecast's context and horizon, or
/// the default (a whole Moving MNIST sequence, or the seed's 26 frames).
pub fn window_spec(args: &DataArgs, seq_len: Option<usize>) -> Result<WindowSpec> {
    let len = match (args.seq_len, seq_len) {
        (Some(typed), Some(needed)) if typed != needed => bail!(
            "--seq-len {typed}: a window of --context and --horizon is {needed} frames; leave \
             --seq-len out"
        ),
        (typed, needed) => typed
            .or(needed)
            .unwrap_or(if args.data.as_os_str() == MOVING_MNIST {
                20
            } else {
                26
            }),
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
    Ok(LoadOptions {
        size,
        color: match args.color {
            ColorKind::Luma => ColorMode::Luma,
            ColorKind::Rgb => ColorMode::Rgb,
        },
        test_videos: args.test_videos,
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
                    crate::without_backtrace(&e.to_string()).trim()
                )
            })
        }
        // The CPU unless asked: a `cuda` build gives the seed's results bit for bit too.
        None => Ok(Device::Cpu),
    }
}

/// The training configuration, with flags that do not fit `model` refused.
pub fn train_config(args: &TrainArgs, model: ModelKind) -> Result<TrainConfig> {
    let conv_only = [
        ("--hidden-channels", args.hidden_channels.is_some()),
        ("--kernel", args.kernel.is_some()),
        ("--peephole", args.peephole),
        ("--head", args.head.is_some()),
        ("--patch", args.patch.is_some()),
    ];
    for (flag, given) in conv_only {
        if given && model != ModelKind::Conv {
            bail!("{flag} applies to --model conv only");
        }
    }
    if args.hidden.is_some() && model != ModelKind::Linear {
        bail!("--hidden applies to --model linear only (the conv model's is --hidden-channels)");
    }
    if args.batch_size == 0 {
        bail!("--batch-size 0: use at least one window per update");
    }
    if !(args.lr.is_finite() && args.lr > 0.0) {
        bail!(
            "--lr {}: the learning rate must be a positive number",
            args.lr
        );
    }
    if args.epochs == 0 {
        bail!("--epochs 0: train at least one epoch");
    }
    if let Some(path) = &args.init_from {
        readable_file("--init-from", path)?;
    }
    Ok(TrainConfig {
        epochs: args.epochs,
        adam: AdamConfig {
            lr: args.lr,
            form: match args.adam {
                AdamKind::Chainer => AdamForm::Chainer,
                AdamKind::Torch => AdamForm::Torch,
            },
            ..AdamConfig::default()
        },
        seed: args.seed,
        shuffle: args.shuffle,
        batch_size: args.batch_size,
        forecast: forecast(args.context, args.horizon)?,
        out_dir: args.out.clone(),
        init_from: args.init_from.clone(),
        quiet: args.quiet,
        overwrite: args.force,
        resume: args.resume,
        checkpoint_every: args.checkpoint_every,
        stop: None,
        started: None,
        launch: serde_json::to_value(Launch::of(args))?,
    })
}

/// The conv model the flags describe, over frames of `frame` `[C, H, W]`, checked.
pub fn conv_config(args: &TrainArgs, frame: [usize; 3]) -> Result<lstm_conv::Config> {
    let list = |flag: &str, values: &Option<Vec<usize>>| -> Result<()> {
        if let Some(v) = values {
            if v.is_empty() || v.contains(&0) {
                bail!("{flag} {}: every entry must be at least 1", join(v));
            }
        }
        Ok(())
    };
    list("--hidden-channels", &args.hidden_channels)?;
    list("--kernel", &args.kernel)?;
    if let Some(k) = args.kernel.iter().flatten().find(|k| k.is_multiple_of(2)) {
        bail!(
            "--kernel {}: {k} is even; a kernel side must be odd (padding K/2 keeps the \
             frame size)",
            join(args.kernel.as_deref().unwrap_or_default())
        );
    }
    if args.patch == Some(0) {
        bail!("--patch 0: use 1 (no patches) or more");
    }
    let config = lstm_conv::Config {
        channels: frame[0],
        kernel: args.kernel.clone().unwrap_or_else(|| vec![5]),
        hidden_channels: args.hidden_channels.clone().unwrap_or_default(),
        peephole: args.peephole,
        head: args.head.map_or(lstm_core::Head::None, |h| h.head()),
        patch: args.patch.unwrap_or(1),
    };
    let layers = config.hidden().len();
    if config.kernel.len() != 1 && config.kernel.len() != layers {
        bail!(
            "--kernel {}: give one kernel side for every layer or one per layer ({layers} \
             layers)",
            join(&config.kernel)
        );
    }
    let size = [frame[1], frame[2]];
    config
        .stack(size)
        .and_then(|_| config.check_kernel_fits(size))
        .map_err(|e| anyhow::anyhow!("{}", flag_names(&e.to_string())))?;
    Ok(config)
}

/// The linear model the flags describe, over frames of `frame` `[C, H, W]`.
pub fn linear_config(args: &TrainArgs, [c, h, w]: [usize; 3]) -> Result<lstm_linear::Config> {
    let hidden = args.hidden.clone().unwrap_or_else(|| vec![c * h * w]);
    if hidden.is_empty() || hidden.contains(&0) {
        bail!(
            "--hidden {}: the linear model needs at least one hidden unit in every layer",
            join(&hidden)
        );
    }
    Ok(lstm_linear::Config {
        channels: c,
        height: h,
        width: w,
        hidden,
    })
}

/// `1,2,3`.
fn join(values: &[usize]) -> String {
    values
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// A shape error from the model, with the flags that set each thing named.
pub fn flag_names(message: &str) -> String {
    message
        .replace("head none:", "--head none:")
        .replace("add a head (conv1x1)", "add --head conv1x1")
        .replace("patch ", "--patch ")
        .replace("kernel ", "--kernel ")
}

/// The model to train: the one the flags describe or, with `--init-from` a file a run
/// wrote, the one recorded in it: it must take these frames, and typed model flags that
/// differ from it are refused, naming both. A file without a record (PyTorch's) takes the
/// flags' model.
pub fn model_config<M: SequenceModel>(
    args: &TrainArgs,
    matches: &ArgMatches,
    frame: [usize; 3],
    from_flags: M::Config,
) -> Result<M::Config> {
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
    let typed: Vec<String> = MODEL_FLAGS
        .iter()
        .filter(|id| matches.value_source(id) == Some(ValueSource::CommandLine))
        .map(|id| format!("--{}", id.replace('_', "-")))
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

/// The flags (clap ids) that shape a model.
const MODEL_FLAGS: [&str; 6] = [
    "hidden",
    "hidden_channels",
    "kernel",
    "peephole",
    "head",
    "patch",
];

/// The settings a run was started with, kept in its training checkpoint so that
/// `--resume` needs no more than `--model` (and `--out`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Launch {
    pub data: DataArgs,
    pub epochs: usize,
    pub lr: f64,
    pub seed: u64,
    pub adam: AdamKind,
    pub shuffle: bool,
    #[serde(default = "one")]
    pub batch_size: usize,
    #[serde(default, with = "lstm_core::stack::one_or_many_opt")]
    pub hidden: Option<Vec<usize>>,
    #[serde(default)]
    pub hidden_channels: Option<Vec<usize>>,
    #[serde(default, with = "lstm_core::stack::one_or_many_opt")]
    pub kernel: Option<Vec<usize>>,
    #[serde(default)]
    pub peephole: bool,
    #[serde(default)]
    pub head: Option<HeadKind>,
    #[serde(default)]
    pub patch: Option<usize>,
    #[serde(default)]
    pub context: Option<usize>,
    #[serde(default)]
    pub horizon: Option<usize>,
    pub checkpoint_every: usize,
}

fn one() -> usize {
    1
}

impl Launch {
    fn of(args: &TrainArgs) -> Launch {
        Launch {
            data: args.data.clone(),
            epochs: args.epochs,
            lr: args.lr,
            seed: args.seed,
            adam: args.adam,
            shuffle: args.shuffle,
            batch_size: args.batch_size,
            hidden: args.hidden.clone(),
            hidden_channels: args.hidden_channels.clone(),
            kernel: args.kernel.clone(),
            peephole: args.peephole,
            head: args.head,
            patch: args.patch,
            context: args.context,
            horizon: args.horizon,
            checkpoint_every: args.checkpoint_every,
        }
    }
}

/// For `--resume`: every setting not typed on this command line comes from the run being
/// resumed. One typed differently is kept, and the harness refuses it if it changes the
/// run (a different --lr, say) rather than just its length (--epochs).
pub fn resume_settings(args: &mut TrainArgs, matches: &ArgMatches, launch: Launch) {
    let typed = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    macro_rules! take {
        ($($field:ident),*) => {$(
            if !typed(stringify!($field)) {
                args.$field = launch.$field;
            }
        )*};
    }
    take!(
        epochs,
        lr,
        seed,
        adam,
        shuffle,
        batch_size,
        hidden,
        hidden_channels,
        kernel,
        peephole,
        head,
        patch,
        context,
        horizon,
        checkpoint_every
    );
    let data = &mut args.data;
    let saved = launch.data;
    macro_rules! take_data {
        ($($field:ident),*) => {$(
            if !typed(stringify!($field)) {
                data.$field = saved.$field;
            }
        )*};
    }
    take_data!(
        data,
        size,
        train_frames,
        test_videos,
        seq_len,
        stride,
        color,
        sequences,
        test_sequences,
        mnist_seed
    );
}

/// Sizes the thread pool every CPU kernel shares (rayon's global pool, which candle and the
/// gemm crate use too). Must run before the first parallel operation, and before any other
/// thread exists (it sets an environment variable).
pub fn set_threads(args: &TrainArgs, model: ModelKind) -> Result<usize> {
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = match args.threads {
        Some(0) => bail!("--threads 0: use at least one thread"),
        Some(n) => n,
        // The seed's 208-parameter ConvLSTM gains nothing from a second thread and, on a
        // shared machine, a spinning second worker can stall the first; the linear model's
        // matrix-vector products are bandwidth-bound and do gain from two. A ConvLSTM of
        // many channels is matrix products: every core.
        None => match model {
            ModelKind::Conv if args.hidden_channels.is_some() => available,
            ModelKind::Conv => 1,
            ModelKind::Linear => available.min(2),
        },
    };
    // candle reads this for its own CPU kernels; rayon's pool is sized below.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .context("cannot start the thread pool")?;
    Ok(threads)
}
