//! What a run needs in memory, estimated before anything large is allocated, and what the
//! machine has: a run that cannot fit is refused up front, naming what to change, rather
//! than grinding into swap until the out-of-memory killer ends it (or another process).
//!
//! The estimate follows where the CPU run's memory goes: the frames, decoded and resized;
//! each parameter's value, gradient and Adam's two moments (and a gradient per shard that
//! runs at once, see [`SHARD`]); what the slice driver keeps of a batch for
//! backpropagation through time; what evaluation's forward keeps; and the process itself.
//! `bench-cli`'s tests hold it against the measured peak of real runs.

use lstm_core::slices;
use lstm_core::spec::ParamSpec;
use lstm_core::stack::Stack;

use crate::model::SHARD;

/// Bytes of an f32.
const F32: f64 = 4.0;

/// The process before any data: the binary, the allocator's and the thread pool's own
/// memory (measured: 40 to 50 MiB for the seed's conv run, whose data and model are tiny).
const BASE_BYTES: f64 = 40e6;

/// What a run will hold, in bytes, by what holds it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Needs {
    /// The frames, after resizing, as f32.
    pub frames: f64,
    /// Weights, gradients, Adam's moments, per-shard gradients.
    pub model: f64,
    /// One training batch's forward and backward through time, and one evaluation batch's
    /// forward.
    pub activations: f64,
    /// The process itself.
    pub base: f64,
}

impl Needs {
    pub fn total(&self) -> f64 {
        self.frames + self.model + self.activations + self.base
    }
}

/// The shape of a run, as far as memory goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunShape {
    /// Frames loaded (train and test, every video).
    pub frames: usize,
    /// Windows per training batch.
    pub batch: usize,
    /// Steps per window (frames per window, less one).
    pub steps: usize,
    /// Worker threads.
    pub threads: usize,
    /// Windows evaluated at once: one for one-step evaluation, [`crate::evaluate::BATCH`]
    /// for forecasts.
    pub eval_batch: usize,
    /// Which way gradients are made: [`crate::Backward::Autograd`] wherever the model
    /// has no fast path for this stack.
    pub backward: crate::Backward,
    /// What autograd keeps per sample, step and layer, in states `C*S`
    /// ([`lstm_core::SequenceModel::AUTOGRAD_STATES_PER_STEP`]).
    pub autograd_states: usize,
}

pub use lstm_core::stack::LSTM_AUTOGRAD_STATES_PER_STEP as AUTOGRAD_STATES_PER_STEP;

/// The frames alone: `count` frames of `frame` `[C, H, W]` as f32.
pub fn frame_bytes(count: usize, [c, h, w]: [usize; 3]) -> f64 {
    count as f64 * c as f64 * h as f64 * w as f64 * F32
}

/// Estimates what training the model of `specs` and `stack` on frames of `stack.frame`
/// needs. Computed in f64, so that absurd sizes give absurd numbers rather than overflow.
pub fn estimate(specs: &[ParamSpec], stack: &Stack, run: &RunShape) -> Needs {
    let parameters = lstm_core::spec::parameter_count(specs);
    // Value, gradient, two moments; a batch of shards sums each shard's gradient, in a
    // fixed order once all are done (what keeps the sum's bits independent of threads).
    let shards = if run.batch > SHARD {
        run.batch.div_ceil(SHARD)
    } else {
        0
    };
    let shards_at_once = shards.min(run.threads.max(1));
    let model = parameters * F32 * (4 + shards) as f64;

    let positions = stack.positions() as f64;
    let frame = stack.model_channels() as f64 * positions;
    let state: f64 = stack.hidden.iter().map(|&c| c as f64 * positions).sum();
    // Per sample and step, the slice driver keeps what each layer's forward and backward
    // hold (its own counts, in states C*S); the gradients' working buffers add about two
    // states more (measured). Then the frames in model space, the inputs, the predictions
    // and their gradient.
    const WORKING_STATES: usize = 2;
    let kept = match run.backward {
        crate::Backward::Fastest => {
            slices::FORWARD_STATES_PER_STEP + slices::BACKWARD_STATES_PER_STEP + WORKING_STATES
        }
        crate::Backward::Autograd => run.autograd_states,
    };
    let per_step_train = kept as f64 * state + 4.0 * frame;
    // Windows whose buffers are held at once: a batch of up to one shard runs whole (and
    // any batch under autograd); a larger one runs a shard per thread, each thread keeping
    // its shard's buffers pooled.
    let windows_train = if run.batch > SHARD && run.backward == crate::Backward::Fastest {
        (shards_at_once * SHARD).min(run.batch)
    } else {
        run.batch
    };
    let train = windows_train as f64 * run.steps as f64 * per_step_train * F32
        + run.batch as f64 * (run.steps + 1) as f64 * frame * F32;
    // Evaluation's forward keeps the gates, c, tanh(c) and h of every step, the frames, the
    // inputs and the predictions.
    let per_step_eval = slices::FORWARD_STATES_PER_STEP as f64 * state + 4.0 * frame;
    let eval = run.eval_batch as f64 * run.steps as f64 * per_step_eval * F32;

    Needs {
        frames: frame_bytes(run.frames, stack.frame),
        model,
        activations: train + eval,
        base: BASE_BYTES,
    }
}

/// What memory there is, in bytes, and what limits it: the machine's physical memory, or a
/// cgroup's limit (a container's, a job scheduler's) where that is lower. `None` where
/// neither can be read (not Linux).
pub fn available() -> Option<(f64, &'static str)> {
    let physical = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| meminfo_total(&text))
        .map(|bytes| (bytes, "physical memory"));
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .filter_map(|path| std::fs::read_to_string(path).ok())
    .filter_map(|text| text.trim().parse::<f64>().ok())
    .map(|bytes| (bytes, "the cgroup's memory limit"))
    .reduce(|a, b| if b.0 < a.0 { b } else { a });
    match (physical, cgroup) {
        (Some(p), Some(c)) if c.0 < p.0 => Some(c),
        (Some(p), _) => Some(p),
        (None, c) => c,
    }
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn meminfo_total(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

/// Bytes in a mebibyte: every memory figure the tool prints is in binary units (MiB, GiB,
/// TiB), as `/proc` counts them (the peak is `VmHWM` in KiB), so an estimate and a measured
/// peak printed side by side are in one unit.
pub const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;
const TIB: f64 = 1024.0 * GIB;

/// Bytes for people, in binary units: `412 MiB`, `3.2 GiB`, `1.6e5 TiB`.
pub fn human(bytes: f64) -> String {
    if bytes < GIB {
        format!("{:.0} MiB", bytes / MIB)
    } else if bytes < TIB {
        format!("{:.1} GiB", bytes / GIB)
    } else if bytes < 1000.0 * TIB {
        format!("{:.1} TiB", bytes / TIB)
    } else {
        format!("{:.1e} TiB", bytes / TIB)
    }
}

/// A figure [`human`] printed (`412 MiB`, `2.4 GiB`), back in bytes.
pub fn parse_human(text: &str) -> Option<f64> {
    let mut words = text.split_whitespace();
    let number: f64 = words.next()?.parse().ok()?;
    let unit = match words.next()? {
        "MiB" => MIB,
        "GiB" => GIB,
        "TiB" => TIB,
        _ => return None,
    };
    Some(number * unit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lstm_core::stack::Head;

    fn conv_stack(hidden: Vec<usize>) -> Stack {
        Stack {
            frame: [1, 64, 64],
            patch: 4,
            flat: false,
            hidden,
            peephole: false,
            head: Head::Affine,
            wiring: Default::default(),
        }
    }

    #[test]
    fn activations_worked_by_hand_for_a_two_layer_conv_stack() {
        // 16 model channels at 16x16 positions; layers of 32 and 32 channels.
        let stack = conv_stack(vec![32, 32]);
        let run = RunShape {
            frames: 100,
            batch: 4,
            steps: 19,
            threads: 2,
            eval_batch: 16,
            backward: crate::Backward::Fastest,
            autograd_states: AUTOGRAD_STATES_PER_STEP,
        };
        let needs = estimate(&[], &stack, &run);
        let (s, state, frame) = (256.0, 64.0 * 256.0, 16.0 * 256.0);
        assert_eq!(s, stack.positions() as f64);
        let train = 4.0 * 19.0 * (14.0 * state + 4.0 * frame) * 4.0 + 4.0 * 20.0 * frame * 4.0;
        let eval = 16.0 * 19.0 * (7.0 * state + 4.0 * frame) * 4.0;
        assert_eq!(needs.activations, train + eval);
        assert_eq!(needs.frames, 100.0 * 4096.0 * 4.0);
        assert_eq!(needs.model, 0.0);
    }

    #[test]
    fn shards_add_a_gradient_each_and_cap_the_windows_held() {
        let stack = conv_stack(vec![8]);
        let spec = ParamSpec {
            name: "w".into(),
            shape: vec![10, 10],
            init: lstm_core::spec::ParamInit::Zeros,
        };
        let shape = |batch, threads| RunShape {
            frames: 1,
            batch,
            steps: 1,
            threads,
            eval_batch: 1,
            backward: crate::Backward::Fastest,
            autograd_states: AUTOGRAD_STATES_PER_STEP,
        };
        let small = estimate(std::slice::from_ref(&spec), &stack, &shape(8, 2));
        assert_eq!(small.model, 100.0 * 4.0 * 4.0);
        // 64 windows: 8 shards, each with its own gradient; on 2 threads, the buffers of 16
        // windows held at once, and the batch itself.
        let big = estimate(std::slice::from_ref(&spec), &stack, &shape(64, 2));
        assert_eq!(big.model, 100.0 * 4.0 * 12.0);
        let eval = (7.0 * 8.0 + 4.0 * 16.0) * 256.0 * 4.0;
        let batch = |windows: f64| windows * 2.0 * 16.0 * 256.0 * 4.0;
        let per_window = (small.activations - eval - batch(8.0)) / 8.0;
        assert_eq!(big.activations - eval - batch(64.0), 16.0 * per_window);
        // On one thread, one shard at a time.
        let one = estimate(std::slice::from_ref(&spec), &stack, &shape(64, 1));
        assert_eq!(
            one.activations - batch(64.0),
            small.activations - batch(8.0)
        );
    }

    #[test]
    fn absurd_sizes_give_absurd_numbers_not_overflow() {
        let stack = Stack {
            frame: [1, 65, 65],
            patch: 1,
            flat: true,
            hidden: vec![100_000_000],
            peephole: false,
            head: Head::Affine,
            wiring: Default::default(),
        };
        let spec = ParamSpec {
            name: "w".into(),
            shape: vec![400_000_000, 100_000_000],
            init: lstm_core::spec::ParamInit::Zeros,
        };
        let run = RunShape {
            frames: 152,
            batch: 1,
            steps: 25,
            threads: 2,
            eval_batch: 1,
            backward: crate::Backward::Fastest,
            autograd_states: AUTOGRAD_STATES_PER_STEP,
        };
        let needs = estimate(&[spec], &stack, &run);
        assert!(needs.model > 1e17 && needs.total().is_finite());
    }

    #[test]
    fn meminfo_total_reads_kib() {
        let text = "MemTotal:       24608392 kB\nMemFree:         1234 kB\n";
        assert_eq!(meminfo_total(text), Some(24608392.0 * 1024.0));
        assert_eq!(meminfo_total("nothing"), None);
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(412.0 * MIB), "412 MiB");
        assert_eq!(human(3.24 * GIB), "3.2 GiB");
        // 1.6e17 bytes are 1.455e5 TiB, not 1.6e5: a decimal-unit slip would show here.
        assert_eq!(human(1.6e17), "1.5e5 TiB");
        assert_eq!(parse_human("412 MiB"), Some(412.0 * MIB));
        assert_eq!(parse_human("2.5 GiB"), Some(2.5 * GIB));
        assert_eq!(parse_human("412 MB"), None);
    }
}
