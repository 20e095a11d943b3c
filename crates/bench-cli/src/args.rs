//! What was typed: clap's view of the command line. [`crate::config`] turns it into
//! validated configurations once.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use harness::Loss;
use serde::{Deserialize, Serialize};

/// Train and compare LSTM and ConvLSTM next-frame predictors: the seed's, and the
/// ConvLSTM of Shi et al. (layers, channels, peepholes, a head, patches, batches).
///
/// With no subcommand, trains `--model` on `--data` and writes results/<model>.csv (one row
/// per epoch) and results/<model>.safetensors.
///
/// Units of the figures: test_mse and test_mae per pixel (means over pixels and predicted
/// frames); test_psnr in dB per frame, mean over frames, an exact frame counted as 100 dB
/// (the PSNR of an MSE of 1e-10) so that the mean stays finite; test_ssim per frame, mean
/// over frames; test_bce, the cross-entropy summed over a window's predicted frames, mean
/// over windows. Memory in MiB (2^20 bytes).
#[derive(Debug, Parser)]
#[command(
    name = "bench-cli",
    version,
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub train: TrainArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what would be trained on: videos, frames, size, split, windows, and the
    /// copy-last-frame baseline of the test split; --export writes the frames as PNGs.
    Frames(FramesArgs),
    /// Time training epochs of each model in the seed configuration, each in its own
    /// process, and print median and min-max seconds per epoch, frames per second and
    /// peak memory. The first epoch of each run is warm-up and not counted.
    Bench(BenchArgs),
    /// Draw a trained model's predictions on the test split. PNG: a grid with one column
    /// per step and the rows input frame, true next frame, prediction, and absolute error
    /// (x2, so an error of 0.5 is white); with --horizon, the rows are true frame,
    /// rollout prediction and error. GIF: truth and prediction side by side, animated.
    Predict(PredictArgs),
    /// Plot train and test loss per epoch of any number of runs (their CSVs), one line
    /// each; --metric adds a panel for any other column, e.g. test_ssim. With --horizon,
    /// forecasts' summaries (<model>.summary.json or eval --json files): a metric against
    /// frames ahead, one line per file.
    Plot(PlotArgs),
    /// Evaluate a trained model (its configuration from the checkpoint) on any frames,
    /// without training: the metrics of its predictions on the test split beside copying
    /// the last frame; with --context and --horizon, of its forecasts, per frame ahead.
    /// Units: MSE and MAE per pixel, PSNR in dB per frame (an exact frame counts as 100
    /// dB), SSIM per frame, cross-entropy per frame and per window, as the keys of --json
    /// say.
    Eval(EvalArgs),
    /// Export a trained model as an ONNX graph (opset 17) of its one-step function: the
    /// frame and every layer's h and c in, the prediction and the next h and c out, so any
    /// sequence length runs in ONNX Runtime, TensorRT or another runtime.
    Export(ExportArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// A weights file written by training (results/<model>.safetensors). Where the run kept
    /// a validation split's best weights beside it, those export unless --last is given.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Export the --checkpoint file itself (the last epoch's weights).
    #[arg(long)]
    pub last: bool,
    /// The ONNX file to write (.onnx).
    #[arg(short, long)]
    pub output: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// A weights file or training checkpoint written by training. Where the run kept a
    /// validation split's best weights beside it (<model>.best.safetensors), those are
    /// evaluated unless --last is given.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Evaluate the --checkpoint file itself (the last epoch's weights), not the best
    /// validation epoch's kept beside it.
    #[arg(long)]
    pub last: bool,
    #[command(flatten)]
    pub data: DataArgs,
    /// Forecast: frames read before predicting (with --horizon).
    #[arg(long, requires = "horizon")]
    pub context: Option<usize>,
    /// Forecast: frames predicted, each step reading its own previous prediction.
    #[arg(long, requires = "context")]
    pub horizon: Option<usize>,
    /// Also write the figures as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also write the frames scored into this folder, as OpenSTL saves them: preds.npy
    /// (the model's predictions), trues.npy (the true frames) and inputs.npy (the frames
    /// read before them), each float32 [N, T, C, H, W], so any figure can be recomputed.
    #[arg(long, value_name = "DIR")]
    pub save_predictions: Option<PathBuf>,
    /// cpu or cuda, as for training.
    #[arg(long, value_enum)]
    pub device: Option<DeviceKind>,
}

#[derive(Debug, Clone, Args)]
pub struct FramesArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Write every video as a folder of PNG frames into this folder (e.g. to look at
    /// --data moving-mnist), or, for a name ending in .npy, all of them as one uint8 array
    /// in the layout of the field's mnist_test_seq.npy ([T, N, H, W]).
    #[arg(long, value_name = "DIR")]
    pub export: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct PlotArgs {
    /// CSV files written by training (results/<model>.csv); with --horizon, summary JSON
    /// files of forecasts.
    #[arg(required = true)]
    pub csvs: Vec<PathBuf>,
    /// Output image, .png or .svg.
    #[arg(short, long)]
    pub output: PathBuf,
    /// A further column to plot in a third panel; with --horizon, the metric per frame
    /// ahead: mse (default), ssim or bce.
    #[arg(long)]
    pub metric: Option<String>,
    /// Plot a metric against frames ahead, from forecasts' summaries.
    #[arg(long)]
    pub horizon: bool,
}

#[derive(Debug, Clone, Args)]
pub struct PredictArgs {
    /// Which model the checkpoint holds (it says itself; given, it is checked).
    #[arg(long, value_parser = crate::models::kind_parser())]
    pub model: Option<String>,
    /// A checkpoint written by training (results/<model>.safetensors). Where the run kept
    /// a validation split's best weights beside it, those predict unless --last is given.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Predict with the --checkpoint file itself (the last epoch's weights), not the best
    /// validation epoch's kept beside it.
    #[arg(long)]
    pub last: bool,
    #[command(flatten)]
    pub data: DataArgs,
    /// Roll out N steps, feeding predictions back, after the window's first L-N frames.
    #[arg(long)]
    pub horizon: Option<usize>,
    /// Steps (columns) to draw for one-step predictions.
    #[arg(long, default_value_t = 10)]
    pub frames: usize,
    /// Which test window to draw (from 0).
    #[arg(long, default_value_t = 0)]
    pub window: usize,
    /// Pixels per frame pixel (nearest neighbour).
    #[arg(long, default_value_t = 3)]
    pub scale: u32,
    /// Output image: .png (grid) or .gif (animation).
    #[arg(short, long)]
    pub output: PathBuf,
    /// cpu or cuda, as for training.
    #[arg(long, value_enum)]
    pub device: Option<DeviceKind>,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Configurations to time, in order: the seed's two models, and Shi et al.'s ConvLSTM
    /// and FC-LSTM at sizes they train at (see the variants below).
    #[arg(
        long,
        visible_alias = "models",
        value_enum,
        value_delimiter = ',',
        default_value = "conv,linear"
    )]
    pub configs: Vec<BenchConfig>,
    /// Epochs of the conv model (the first is warm-up).
    #[arg(long, default_value_t = 21)]
    pub conv_epochs: usize,
    /// Epochs of the linear model (the first is warm-up).
    #[arg(long, default_value_t = 4)]
    pub linear_epochs: usize,
    /// Batches of each batched configuration (convlstm-32x2, convlstm-128-64-64,
    /// fc-2048x2; the first is warm-up).
    #[arg(long, default_value_t = 4)]
    pub batches: usize,
    /// Threads, as for training (default: each model's own choice).
    #[arg(long)]
    pub threads: Option<usize>,
    /// How gradients are made, as for training.
    #[arg(long, value_enum, default_value_t = BackwardKind::Fastest)]
    pub backward: BackwardKind,
    /// Folder of frames.
    #[arg(long, default_value = "data")]
    pub data: PathBuf,
    /// cpu or cuda, as for training.
    #[arg(long, value_enum)]
    pub device: Option<DeviceKind>,
    /// Train each configuration data-parallel on this many ranks (`mpirun -np N`; needs a
    /// build with the `mpi` feature); the peak memory is then the largest rank's.
    #[arg(long, default_value_t = 1)]
    pub ranks: usize,
}

/// What `bench-cli bench` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchConfig {
    /// The seed's ConvLSTM: s/epoch of 5 windows of 26 frames, 65x65.
    Conv,
    /// The seed's fully connected LSTM: s/epoch.
    Linear,
    /// Shi et al.'s shape: 64x64 frames in 4x4 patches, two layers of 32 channels, 5x5
    /// kernels, a 1x1 sigmoid head; s per batch of 16 windows of 20 frames.
    #[value(name = "convlstm-32x2")]
    Convlstm32x2,
    /// The paper's Moving MNIST ConvLSTM shape: three layers of 128, 64 and 64 channels,
    /// 5x5 kernels, 4x4 patches of 64x64 frames, a 1x1 sigmoid head; s per batch of 16
    /// windows of 20 frames.
    #[value(name = "convlstm-128-64-64")]
    Convlstm128x64x64,
    /// The paper's FC-LSTM shape: two fully connected layers of 2048 units over 64x64
    /// frames; s per batch of 16 windows of 20 frames.
    #[value(name = "fc-2048x2")]
    Fc2048x2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdamKind {
    /// Chainer's Adam, as the seed ran it (eps added to sqrt(v) before bias correction).
    Chainer,
    /// PyTorch's torch.optim.Adam.
    Torch,
}

/// `--backward`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackwardKind {
    Fastest,
    Autograd,
}

impl BackwardKind {
    /// The flag's value.
    pub fn name(self) -> &'static str {
        match self {
            BackwardKind::Fastest => "fastest",
            BackwardKind::Autograd => "autograd",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceKind {
    Cpu,
    Cuda,
}

impl DeviceKind {
    /// The flag's value.
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Cuda => "cuda",
        }
    }
}

/// `--lr-schedule`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    #[default]
    Constant,
    Cosine,
    #[value(name = "onecycle")]
    #[serde(rename = "onecycle")]
    OneCycle,
}

/// `--npy-layout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NpyLayoutKind {
    /// `[T, N, H, W]`: frames first.
    Tnhw,
    /// `[N, T, H, W]`: sequences first.
    Nthw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorKind {
    /// One channel, BT.601 luma.
    Luma,
    /// Three channels.
    Rgb,
}

/// Where the frames come from and how they are cut.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct DataArgs {
    /// A folder of frames (png, jpg, bmp, in natural name order: one video), a video file
    /// (mp4, avi, mkv, mov, webm, gif, ...: decoded by ffmpeg), a folder of such folders or
    /// video files (one video each, the last --test-videos held out whole), a .npy file of
    /// sequences (uint8, or floats in [0, 1]; one video each, held out as folders are), or
    /// `moving-mnist`: Moving MNIST generated in memory (--sequences, --test-sequences).
    #[arg(long, default_value = "data")]
    pub data: PathBuf,
    /// Video files: keep every Nth frame. Default: every frame.
    #[arg(long, value_name = "N")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<usize>,
    /// Video files: at most N frames of each (after --every).
    #[arg(long, value_name = "N")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_frames: Option<usize>,
    /// Resize every frame: N (square) or HxW, e.g. 65 or 64x80.
    #[arg(long)]
    pub size: Option<String>,
    /// Leading frames of a single video that train; the rest are held out. Default: 5/6 of
    /// the frames, but at least one window's worth held out (126 of the default 152).
    #[arg(long)]
    pub train_frames: Option<usize>,
    /// A folder of videos: how many of them, the last in name order, are held out for
    /// testing. Default: a sixth, at least one.
    #[arg(long)]
    pub test_videos: Option<usize>,
    /// Held out of the training part to validate on after every epoch: its last N frames
    /// (one video) or videos (several); auto: a sixth of it where that holds a window and
    /// leaves five to train on (none for the seed's data, nor for generated Moving MNIST,
    /// which has its own test digits); off: none.
    #[arg(long, default_value = "auto", value_name = "auto|off|N")]
    #[serde(default)]
    pub validation: ValidationSize,
    /// Frames per window: one input and one target per step, so L-1 steps. Default: 26 (a
    /// whole sequence for Moving MNIST and .npy files), or --context + --horizon.
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Frames between window starts. Default: seq-len - 1, neighbours share one frame.
    #[arg(long)]
    pub stride: Option<usize>,
    /// Luma (one channel) or RGB.
    #[arg(long, value_enum, default_value_t = ColorKind::Luma)]
    pub color: ColorKind,
    /// A four-dimensional .npy file's axes: tnhw (frames first, as the field's
    /// mnist_test_seq.npy) or nthw. Five dimensions are always [N, T, C, H, W].
    #[arg(long, value_enum)]
    #[serde(default)]
    pub npy_layout: Option<NpyLayoutKind>,
    /// Moving MNIST: training sequences of 20 frames, 64x64, two digits each.
    #[arg(long, default_value_t = 2000)]
    #[serde(default = "default_sequences")]
    pub sequences: usize,
    /// Moving MNIST: test sequences, made of digits the training sequences never show.
    #[arg(long, default_value_t = 500)]
    #[serde(default = "default_test_sequences")]
    pub test_sequences: usize,
    /// Moving MNIST: the seed the sequences are drawn from.
    #[arg(long, default_value_t = 0)]
    #[serde(default)]
    pub mnist_seed: u64,
    /// Moving MNIST: draw the training sequences afresh every epoch from the training
    /// digits, as OpenSTL trains (the same for a seed and an epoch, so --resume stays
    /// exact); the test sequences stay.
    #[arg(long)]
    #[serde(default)]
    pub fresh_sequences: bool,
}

fn is_one(v: &usize) -> bool {
    *v == 1
}

fn default_sequences() -> usize {
    2000
}

fn default_test_sequences() -> usize {
    500
}

/// `bench-cli --model ...`: what the run is ([`RunSettings`]) and how this process runs
/// it.
#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub run: RunSettings,
    /// Folder for <model>.csv and <model>.safetensors.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Start from the weights in this safetensors file (PyTorch names).
    #[arg(long)]
    pub init_from: Option<PathBuf>,
    /// cpu (the default) or cuda (a build with the `cuda` feature and an NVIDIA GPU).
    #[arg(long, value_enum)]
    pub device: Option<DeviceKind>,
    /// How gradients are made: fastest (the model's own backward: slice kernels on the
    /// CPU, its written-out backward in candle ops elsewhere) or autograd (candle's autograd
    /// over the model's forward: the reference they are tested against; slower, and it
    /// keeps every op's output of a window).
    #[arg(long, value_enum, default_value_t = BackwardKind::Fastest)]
    pub backward: BackwardKind,
    /// Worker threads for the CPU kernels. Default: the model's own choice (the seed's conv
    /// model: 1, its kernels are too small to share; with --hidden-channels: every core;
    /// linear: up to 2, for memory bandwidth).
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress bar: one plain line per epoch, as when the output is not a terminal.
    #[arg(long, short)]
    pub quiet: bool,
    /// Replace the results of an earlier run of the same model in --out.
    #[arg(long, conflicts_with = "resume")]
    pub force: bool,
    /// Continue the run whose training checkpoint (<model>.resume.safetensors) is in
    /// --out, with its settings; --epochs may raise its length.
    #[arg(long, conflicts_with = "init_from")]
    pub resume: bool,
}

/// A transform `--augment` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AugmentKind {
    Flip,
    Reverse,
    Crop,
}

/// `--validation`: how much of the training part validates. A record without it (a run
/// of an earlier version) had none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ValidationSize {
    #[default]
    Off,
    Auto,
    Count(usize),
}

impl std::str::FromStr for ValidationSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(ValidationSize::Auto),
            "off" | "0" => Ok(ValidationSize::Off),
            n => n.parse().map(ValidationSize::Count).map_err(|_| {
                format!("`{n}`: auto, off, or a number of frames (one video) or videos")
            }),
        }
    }
}

impl std::fmt::Display for ValidationSize {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            ValidationSize::Off => f.write_str("off"),
            ValidationSize::Auto => f.write_str("auto"),
            ValidationSize::Count(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for ValidationSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ValidationSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Everything the command line chose for a run: the model and its flags, the data and its
/// windows, the optimiser, the seed, the checkpointing. Recorded whole in the training
/// checkpoint; `--resume` restores it, each flag typed again taking its new value. The
/// serde names are the clap ids (the field names), which is what lets a record and a
/// command line be merged flag by flag.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct RunSettings {
    /// Which model to train.
    #[arg(long, required = true, value_parser = crate::models::kind_parser())]
    pub model: Option<String>,
    /// The model's own flags, as its crate records them (filled in from them after
    /// parsing).
    #[arg(skip)]
    #[serde(default)]
    pub model_flags: serde_json::Value,
    #[command(flatten)]
    pub data: DataArgs,
    /// Passes over the training windows.
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Adam step size.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Seed of the weight initialisation (and of the window order with --shuffle).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Train on the windows in a new random order each epoch (the seed keeps their order).
    #[arg(long)]
    pub shuffle: bool,
    /// The optimiser: Adam (the seed's, in the form --adam says) or RMSProp (Shi et al.'s,
    /// as PyTorch's RMSprop: no momentum, not centred; decay --rmsprop-decay).
    #[arg(long, value_enum, default_value_t = OptimizerKind::Adam)]
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// Adam's form.
    #[arg(long, value_enum, default_value_t = AdamKind::Chainer)]
    pub adam: AdamKind,
    /// RMSProp's decay of the squared gradients' average (Shi et al.: 0.9).
    #[arg(long, default_value_t = 0.9, value_name = "A")]
    #[serde(default = "rmsprop_decay")]
    pub rmsprop_decay: f64,
    /// What the training loss measures: mse (the per-frame mean squared error, the seed's)
    /// or bce (Shi et al.'s cross-entropy, summed over a frame's values and the frames that
    /// count, taken from the logits of an output that ends in a sigmoid: --head
    /// conv1x1-sigmoid or --output sigmoid).
    #[arg(long, value_enum, default_value_t = Loss::Mse)]
    #[serde(default)]
    pub loss: Loss,
    /// Clip the gradients' L2 norm, all parameters' together, to at most X before each
    /// update (PyTorch's clip_grad_norm_). Default: no clipping.
    #[arg(long, value_name = "X")]
    #[serde(default)]
    pub clip_grad_norm: Option<f64>,
    /// How the learning rate moves over the run's updates, --lr its peak: constant (the
    /// seed), cosine (decay to 0), onecycle (PyTorch's OneCycleLR defaults, as OpenSTL
    /// trains). The CSV gains an lr column with a schedule.
    #[arg(long, value_enum, default_value_t = ScheduleKind::Constant)]
    #[serde(default)]
    pub lr_schedule: ScheduleKind,
    /// Forecast: read K frames, then predict --horizon frames, each step reading its own
    /// previous prediction; windows are K + N frames and the loss is the mean over the N
    /// predicted frames of the per-frame mean squared error. Without it: one step ahead,
    /// the loss the sum over the steps (the seed's).
    #[arg(long, value_name = "K", requires = "horizon")]
    #[serde(default)]
    pub context: Option<usize>,
    /// Scheduled sampling (Bengio et al. 2015, as PredRNN and OpenSTL train): during
    /// training each forecast step of each window reads the true frame instead of its own
    /// previous prediction with a chance that falls linearly from 1 at the first update to
    /// 0 after N updates (drawn from --seed; evaluation always reads its own predictions).
    #[arg(long, value_name = "N", requires = "context")]
    #[serde(default)]
    pub scheduled_sampling: Option<u64>,
    /// Forecast: frames predicted after --context.
    #[arg(long, value_name = "N", requires = "context")]
    #[serde(default)]
    pub horizon: Option<usize>,
    /// Windows per Adam update, the loss averaged over them (the seed: 1). The last batch
    /// of an epoch takes the windows left.
    #[arg(long, default_value_t = 1, value_name = "B")]
    #[serde(default = "one")]
    pub batch_size: usize,
    /// Write the training checkpoint every N epochs (always after the last one, and on
    /// Ctrl-C); 0: only then.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub checkpoint_every: usize,
    /// Augment the training windows: each transform listed is applied to each window of
    /// each epoch with chance 1/2, drawn from --seed (so --resume stays exact): flip
    /// (mirror left to right), reverse (play backwards), crop (zoom in: a random crop of
    /// 80-100% of each side, resized back to the frame size, --size). E.g. flip,reverse.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        value_name = "flip,reverse,crop"
    )]
    #[serde(default)]
    pub augment: Vec<AugmentKind>,
    /// Early stopping: end the run after N epochs without a lower validation loss than
    /// the best epoch's (needs a validation split, --validation).
    #[arg(long, value_name = "N")]
    #[serde(default)]
    pub patience: Option<usize>,
    /// Write TensorBoard event files into DIR while training (`tensorboard --logdir DIR`):
    /// the training loss and learning rate after every update, the test and copy-last
    /// figures after every epoch, and the prediction grid (see --tensorboard-images). A
    /// resumed run continues the same log.
    #[arg(long, value_name = "DIR")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensorboard: Option<PathBuf>,
    /// Epochs between the prediction grids written to TensorBoard; 0: none.
    #[arg(long, default_value_t = 1, value_name = "N")]
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub tensorboard_images: usize,
}

fn one() -> usize {
    1
}

fn rmsprop_decay() -> f64 {
    0.9
}

/// `--optimizer`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    #[default]
    Adam,
    Rmsprop,
}
