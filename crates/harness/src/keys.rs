//! Names inside the files a run writes, shared by the modules that read and write them.

/// The safetensors metadata key under which a weights file or a training checkpoint keeps,
/// as JSON, the model kind, its configuration and the run's.
pub const CHECKPOINT_METADATA_KEY: &str = "bench_cli";

/// Prefix of Adam's tensors in a training checkpoint; no model parameter starts with it.
pub const ADAM_PREFIX: &str = "adam.";

/// Names of the first and second moment of parameter `name` (PyTorch's names for them).
pub fn moment_names(name: &str) -> (String, String) {
    (
        format!("{ADAM_PREFIX}exp_avg.{name}"),
        format!("{ADAM_PREFIX}exp_avg_sq.{name}"),
    )
}
