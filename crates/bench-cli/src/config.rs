//! What the run will do: configurations built and validated once from the typed flags.

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::parser::ValueSource;
use clap::ArgMatches;
use frames::{ColorMode, Dataset, LoadOptions, Size, WindowSpec};
use harness::adam::{AdamConfig, AdamForm};
use harness::TrainConfig;
use serde::{Deserialize, Serialize};

use crate::args::{AdamKind, ColorKind, DataArgs, DeviceKind, ModelKind, TrainArgs};

/// Loads and splits the frames the flags name.
pub fn load_data(args: &DataArgs) -> Result<Dataset> {
    let size = args.size.as_deref().map(Size::parse).transpose()?;
    let options = LoadOptions {
        size,
        color: match args.color {
            ColorKind::Luma => ColorMode::Luma,
            ColorKind::Rgb => ColorMode::Rgb,
        },
    };
    let windows = WindowSpec::new(args.seq_len, args.stride)?;
    Ok(Dataset::load(
        &args.data,
        &options,
        windows,
        args.train_frames,
    )?)
}

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
            Device::new_cuda(0).context("--device cuda: no usable CUDA device")
        }
        None if cfg!(feature = "cuda") => Ok(Device::cuda_if_available(0)?),
        None => Ok(Device::Cpu),
    }
}

/// The training configuration, with flags that do not fit `model` refused.
pub fn train_config(args: &TrainArgs, model: ModelKind) -> Result<TrainConfig> {
    if args.hidden.is_some() && model != ModelKind::Linear {
        bail!("--hidden applies to --model linear only");
    }
    if args.kernel.is_some() && model != ModelKind::Conv {
        bail!("--kernel applies to --model conv only");
    }
    if args.hidden == Some(0) {
        bail!("--hidden 0: the linear model needs at least one hidden unit");
    }
    if let Some(k) = args.kernel {
        if k == 0 || k.is_multiple_of(2) {
            bail!("--kernel {k}: the kernel side must be odd (padding K/2 keeps the frame size)");
        }
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
        if !path.is_file() {
            bail!("--init-from {}: no such file", path.display());
        }
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
        out_dir: args.out.clone(),
        init_from: args.init_from.clone(),
        quiet: args.quiet,
        overwrite: args.force,
        resume: args.resume,
        checkpoint_every: args.checkpoint_every,
        stop: None,
        launch: serde_json::to_value(Launch::of(args))?,
    })
}

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
    pub hidden: Option<usize>,
    pub kernel: Option<usize>,
    pub checkpoint_every: usize,
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
            hidden: args.hidden,
            kernel: args.kernel,
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
        hidden,
        kernel,
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
    take_data!(data, size, train_frames, seq_len, stride, color);
}

/// Sizes the thread pool every CPU kernel shares (rayon's global pool, which candle and the
/// gemm crate use too). Must run before the first parallel operation.
pub fn set_threads(threads: Option<usize>, model: ModelKind) -> Result<usize> {
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = match threads {
        Some(0) => bail!("--threads 0: use at least one thread"),
        Some(n) => n,
        // A 208-parameter model gains nothing from a second thread and, on a shared
        // machine, a spinning second worker can stall the first; the linear model's
        // matrix-vector products are bandwidth-bound and do gain from two.
        None => match model {
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
