//! Will the run fit? What the data and the model will take in memory, known from the flags,
//! the file names and one frame's header before anything large is allocated; a run that
//! cannot fit is refused naming the flags that size it.

use anyhow::{bail, Result};
use candle_core::Device;
use frames::Dataset;
use harness::memory::{self, human, Needs, RunShape};
use harness::SequenceModel;

use crate::args::{DataArgs, ValidationSize};
use crate::config::{self, MOVING_MNIST};

/// What loading the flags' data would give.
#[derive(Debug, Clone)]
pub struct DataProbe {
    /// Frames, every video's.
    pub frames: usize,
    /// `[C, H, W]` after `--size`.
    pub frame: [usize; 3],
    /// Frames per window.
    pub window: usize,
    /// At least as many training windows as the data will give: a batch is never larger
    /// (the seed's 5 windows make `--batch-size 16` a batch of 5).
    pub windows_at_most: usize,
    /// `moving-mnist` or the folder.
    pub source: String,
    /// Which flags size the frames, for advice.
    moving_mnist: bool,
    /// Frames of the training sequences a fresh draw replaces (Moving MNIST; 0 otherwise):
    /// a run with --fresh-sequences holds a second set while it draws the next.
    fresh_frames: usize,
}

/// Loads and splits the frames the flags name, once [`probe`] has checked that they
/// fit in memory. `seq_len` is the window length when the flags leave it to a forecast's
/// context and horizon.
pub fn load_data(args: &DataArgs, seq_len: Option<usize>) -> Result<Dataset> {
    let probe = probe(args, seq_len)?;
    check_frames(&probe)?;
    let windows = config::window_spec(args, seq_len)?;
    let data = match args.data.as_os_str() == MOVING_MNIST {
        true => Dataset::moving_mnist(&config::moving_mnist(args)?, windows)?,
        false => Dataset::load(
            &args.data,
            &config::load_options(args)?,
            windows,
            args.train_frames,
        )?,
    };
    with_validation(data, args)
}

/// `data` with the validation split `--validation` asks for.
fn with_validation(data: Dataset, args: &DataArgs) -> Result<Dataset> {
    let moving_mnist = args.data.as_os_str() == MOVING_MNIST;
    let n = match args.validation {
        ValidationSize::Off => 0,
        ValidationSize::Auto if moving_mnist => 0,
        ValidationSize::Auto => data.auto_validation(),
        ValidationSize::Count(n) => n,
    };
    if n > 0 && args.fresh_sequences {
        bail!(
            "--validation {n} with --fresh-sequences: the training sequences change every \
             epoch; validate on a fixed set (no --fresh-sequences) or use --validation off"
        );
    }
    Ok(data.with_validation(n)?)
}

/// Counts the frames and reads one header: nothing is decoded.
pub fn probe(args: &DataArgs, seq_len: Option<usize>) -> Result<DataProbe> {
    let windows = config::window_spec(args, seq_len)?;
    let window = windows.len;
    if args.data.as_os_str() == MOVING_MNIST {
        let spec = config::moving_mnist(args)?;
        let per_sequence = spec.frames.saturating_sub(window) / windows.stride + 1;
        return Ok(DataProbe {
            frames: (spec.train.saturating_add(spec.test)).saturating_mul(spec.frames),
            frame: [1, spec.size, spec.size],
            window,
            windows_at_most: spec.train.saturating_mul(per_sequence),
            source: MOVING_MNIST.into(),
            moving_mnist: true,
            fresh_frames: match args.fresh_sequences {
                true => spec.train.saturating_mul(spec.frames),
                false => 0,
            },
        });
    }
    let (frames, frame) = frames::probe(&args.data, &config::load_options(args)?)?;
    Ok(DataProbe {
        frames,
        frame,
        window,
        // A video of n frames has (n - L) / S + 1 windows; over all videos that is at most
        // frames / S + 1 while L >= S, and the split takes some for testing.
        windows_at_most: frames / windows.stride + 1,
        source: args.data.display().to_string(),
        moving_mnist: false,
        fresh_frames: 0,
    })
}

impl DataProbe {
    /// What loading is about to do, for the progress line.
    pub fn describe(&self) -> String {
        let [c, h, w] = self.frame;
        let verb = if self.moving_mnist {
            "generating"
        } else {
            "loading"
        };
        format!(
            "{verb} {} frames of {h}x{w}x{c} from {} ({})",
            self.frames,
            self.source,
            human(memory::frame_bytes(self.frames, self.frame))
        )
    }

    fn frame_flags(&self) -> &'static str {
        if self.moving_mnist {
            "lower --sequences or --test-sequences"
        } else {
            "lower --size, or train on fewer frames (a smaller folder, or fewer videos)"
        }
    }
}

/// Refuses frames that alone cannot fit.
pub fn check_frames(probe: &DataProbe) -> Result<()> {
    let needs = Needs {
        frames: memory::frame_bytes(probe.frames, probe.frame),
        model: 0.0,
        activations: 0.0,
        base: 0.0,
    };
    if let Some((available, what)) = memory::available() {
        if needs.frames > available {
            bail!(
                "{}: {} frames of {}x{}x{} take {} in memory, more than the {} of {what} \
                 here; {}",
                probe.source,
                probe.frames,
                probe.frame[1],
                probe.frame[2],
                probe.frame[0],
                human(needs.frames),
                human(available),
                probe.frame_flags()
            );
        }
    }
    Ok(())
}

/// Estimates what training `model` on the probed data needs and refuses a run that cannot
/// fit, naming the flags of its largest part. On a GPU the model and its activations live
/// in the device's memory, which is not checked here: only the frames are.
pub fn check_run<M: SequenceModel>(
    model: &M::Config,
    probe: &DataProbe,
    config: &harness::TrainConfig,
    threads: usize,
    device: &Device,
) -> Result<Needs> {
    let specs = M::parameter_specs(model, probe.frame)?;
    let stack = M::layout(model, probe.frame)?;
    let run = RunShape {
        frames: probe.frames.saturating_add(probe.fresh_frames),
        batch: config.training.batch_size.min(probe.windows_at_most.max(1)),
        steps: probe.window.saturating_sub(1),
        threads,
        eval_batch: if config.training.forecast.is_some() {
            harness::evaluate::BATCH
        } else {
            1
        },
        backward: match M::SLICE_KERNELS && stack.wiring.is_plain() {
            true => config.backward,
            false => harness::Backward::Autograd,
        },
        autograd_states: M::AUTOGRAD_STATES_PER_STEP,
    };
    let mut needs = memory::estimate(&specs, &stack, &run);
    if !device.is_cpu() {
        needs.model = 0.0;
        needs.activations = 0.0;
    }
    let Some((available, what)) = memory::available() else {
        return Ok(needs);
    };
    if needs.total() > available {
        let parameters = lstm_core::spec::parameter_count(&specs);
        let hidden = M::SIZE_FLAG;
        let advice = if needs.frames >= needs.model.max(needs.activations) {
            probe.frame_flags().to_string()
        } else if needs.model >= needs.activations {
            format!("lower {hidden}")
        } else {
            let size = if probe.moving_mnist { "" } else { "--size, " };
            format!(
                "lower {size}--batch-size or --seq-len (the steps kept for backpropagation), \
                 or {hidden}"
            )
        };
        let parameters = if parameters < 1e15 {
            format!("{parameters:.0}")
        } else {
            format!("{parameters:.2e}")
        };
        bail!(
            "this run needs about {} of memory, more than the {} of {what} here: frames {}, \
             model {} ({parameters} parameters with their gradients and Adam's moments), \
             activations {} (batches of {} windows of {} steps); {advice}",
            human(needs.total()),
            human(available),
            human(needs.frames),
            human(needs.model),
            human(needs.activations),
            run.batch,
            run.steps,
        );
    }
    Ok(needs)
}

/// The estimate, for a run's first lines.
pub fn describe(needs: &Needs) -> String {
    let available = memory::available()
        .map(|(bytes, what)| format!(" of {} ({what})", human(bytes)))
        .unwrap_or_default();
    format!(
        "memory: about {:.0} MiB needed{available}: frames {}, model {}, activations {}",
        needs.total() / harness::memory::MIB,
        human(needs.frames),
        human(needs.model),
        human(needs.activations)
    )
}
