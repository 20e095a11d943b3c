//! The training checkpoint `<model>.resume.safetensors`: everything a run needs to continue
//! exactly where it stopped.
//!
//! Tensors: the model's parameters under their own names, and Adam's moments of each as
//! `adam.exp_avg.<name>` and `adam.exp_avg_sq.<name>` (PyTorch's names for them). Metadata,
//! as one JSON object under [`CHECKPOINT_METADATA_KEY`]: a [`TrainingState`] (the run's
//! configuration, the data it trained on, the counters, the RNG position and the CSV rows so
//! far). Because the rows travel with the weights, a resumed run rewrites its CSV from the
//! checkpoint and can neither duplicate nor lose a row, wherever the last run died.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::adam::Adam;
use crate::checkpoint::{read_header, Checkpoint};
use crate::error::{Error, Result};
use crate::files::{write_atomic, F32View};
use crate::keys::{moment_names, CHECKPOINT_METADATA_KEY};
use crate::model::ParamSpec;
use crate::rows::EpochRow;
use crate::settings::TrainSettings;

/// The version of the layout below; a reader refuses any other.
pub const FORMAT: u32 = 1;

/// What identifies the frames a run trains on: their shape, the split, the windows, and a
/// hash of every value, so a resume on other data is refused rather than silently mixed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataFingerprint {
    pub frames: usize,
    pub channels: usize,
    pub height: u32,
    pub width: u32,
    /// One video: the frames that train. Several: 0.
    pub train_frames: usize,
    pub seq_len: usize,
    pub stride: usize,
    /// FNV-1a (64 bit) of the frames' f32 values, little-endian, in order (video after
    /// video); hex.
    pub values_fnv1a: String,
    /// Several videos: how many, and how many of them are held out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub videos: Option<[usize; 2]>,
    /// Frames or videos of the training part held out to validate on.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub validation: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl DataFingerprint {
    pub fn of(data: &frames::Dataset) -> Result<DataFingerprint> {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        // Frame by frame: a copy of all of them at once would double the run's frames.
        for video in &data.videos {
            for t in 0..video.len() {
                let values = video
                    .data
                    .get(t)?
                    .to_dtype(candle_core::DType::F32)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                for byte in values.iter().flat_map(|v| v.to_le_bytes()) {
                    hash ^= u64::from(byte);
                    hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
                }
            }
        }
        let size = data.size();
        let (train_frames, videos) = match data.holdout {
            frames::Holdout::Frames(split) => (split.train, None),
            frames::Holdout::Videos { train, test } => (0, Some([train + test, test])),
        };
        Ok(DataFingerprint {
            frames: data.frame_count(),
            channels: data.channels(),
            height: size.height,
            width: size.width,
            train_frames,
            seq_len: data.windows.len,
            stride: data.windows.stride,
            values_fnv1a: format!("{hash:016x}"),
            videos,
            validation: data.validation,
        })
    }
}

/// A run's state between two windows: what it is (model, data, training settings), where it
/// stands, and how the command line launched it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingState {
    pub format: u32,
    /// The model's kind and configuration (also what `predict` reads).
    pub model: String,
    pub model_config: serde_json::Value,
    pub data: DataFingerprint,
    #[serde(flatten)]
    pub training: TrainSettings,
    #[serde(flatten)]
    pub progress: Progress,
    /// Adam's step count `t`.
    pub adam_step: u64,
    /// Whatever the caller (the command line) recorded about how it launched the run, so a
    /// resume can reuse its settings.
    #[serde(default)]
    pub launch: serde_json::Value,
}

/// What must be the same for a run to continue another: everything that is not its
/// length or its progress.
pub fn identity(
    model: &str,
    model_config: &serde_json::Value,
    data: &DataFingerprint,
    training: &TrainSettings,
) -> serde_json::Value {
    let mut identity = match serde_json::to_value(training) {
        Ok(serde_json::Value::Object(fields)) => fields,
        _ => unreachable!("training settings are a JSON object"),
    };
    identity.remove("epochs");
    identity.insert("model".into(), model.into());
    identity.insert("model_config".into(), model_config.clone());
    identity.insert(
        "data".into(),
        serde_json::to_value(data).expect("a fingerprint is JSON"),
    );
    serde_json::Value::Object(identity)
}

/// Where training stands between two windows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Progress {
    /// Epochs finished, each with its row in `rows`.
    pub epochs_done: usize,
    /// Windows of epoch `epochs_done + 1` already trained on (0 at an epoch's end).
    pub windows_done: usize,
    /// Sum of those windows' losses and their training seconds, to finish the epoch's row.
    #[serde(rename = "partial_loss_sum")]
    pub loss_sum: f64,
    #[serde(rename = "partial_seconds")]
    pub seconds: f64,
    /// The window-order generator's position (ChaCha8 word position; decimal in JSON) at
    /// the start of epoch `epochs_done + 1`; it only moves with `shuffle`.
    #[serde(with = "decimal")]
    pub rng_word_pos: u128,
    pub rows: Vec<EpochRow>,
    /// With a validation split: the epoch of the lowest validation loss so far, whose
    /// weights are the best-weights file's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_epoch: Option<usize>,
}

/// A `u128` as a decimal string: JSON readers keep no more than 53 bits of a number.
mod decimal {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&value.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map_err(|_| D::Error::custom(format!("bad rng_word_pos `{text}`")))
    }
}

/// Writes a training checkpoint atomically. f32 CPU parameters and their moments are
/// written from their own memory, without a copy.
pub fn save(
    path: &Path,
    specs: &[ParamSpec],
    vars: &[Var],
    adam: &Adam,
    state: &TrainingState,
) -> Result<()> {
    let about = serde_json::to_string(state).map_err(|e| Error::Config(e.to_string()))?;
    let metadata = HashMap::from([(CHECKPOINT_METADATA_KEY.to_string(), about)]);
    // Borrowed views need the storage guards alive for the whole write.
    let guards: Vec<_> = vars
        .iter()
        .map(|v| v.as_tensor().storage_and_layout())
        .collect();
    let mut views: Vec<(String, AnyView)> = Vec::with_capacity(3 * vars.len());
    for (k, ((spec, var), (storage, layout))) in specs.iter().zip(vars).zip(&guards).enumerate() {
        let (m_name, v_name) = moment_names(&spec.name);
        let weights = match crate::cpu::is_f32_cpu(var.as_tensor()) {
            true => AnyView::Slice(F32View {
                shape: spec.shape.clone(),
                values: crate::cpu::f32_slice(storage, layout)?,
                fault_point: Some("checkpoint-tensor"),
            }),
            false => AnyView::Owned(var.as_tensor().to_device(&candle_core::Device::Cpu)?),
        };
        views.push((spec.name.clone(), weights));
        match adam.moment_slices(k) {
            Some((m, v)) => {
                for (name, values) in [(m_name, m), (v_name, v)] {
                    let view = F32View {
                        shape: spec.shape.clone(),
                        values,
                        fault_point: Some("checkpoint-tensor"),
                    };
                    views.push((name, AnyView::Slice(view)));
                }
            }
            None => {
                let (m, v) = adam.moments(k)?;
                for (name, t) in [(m_name, m), (v_name, v)] {
                    let t = t
                        .reshape(spec.shape.as_slice())?
                        .to_device(&candle_core::Device::Cpu)?;
                    views.push((name, AnyView::Owned(t)));
                }
            }
        }
    }
    write_atomic(path, |tmp| {
        safetensors::serialize_to_file(views, Some(metadata), tmp)
            .map_err(|e| std::io::Error::other(e.to_string()))
    })
}

/// A tensor to write: borrowed f32 values, or a CPU copy of anything else.
enum AnyView<'a> {
    Slice(F32View<'a>),
    Owned(Tensor),
}

impl safetensors::View for AnyView<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        match self {
            AnyView::Slice(v) => v.dtype(),
            AnyView::Owned(t) => safetensors::View::dtype(t),
        }
    }
    fn shape(&self) -> &[usize] {
        match self {
            AnyView::Slice(v) => v.shape(),
            AnyView::Owned(t) => t.dims(),
        }
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        match self {
            AnyView::Slice(v) => v.data(),
            AnyView::Owned(t) => {
                crate::fault::reached("checkpoint-tensor");
                safetensors::View::data(t)
            }
        }
    }
    fn data_len(&self) -> usize {
        match self {
            AnyView::Slice(v) => v.data_len(),
            AnyView::Owned(t) => safetensors::View::data_len(t),
        }
    }
}

/// Reads only the state of a training checkpoint (its header), not its tensors: cheap even
/// for the linear model's 1.9 GB file.
pub fn peek(path: &Path) -> Result<TrainingState> {
    state_of(read_header(path)?.about(), path)
}

/// The record a weights file or training checkpoint written by a run holds in its metadata
/// (read from its header alone), as JSON, or `None` for a file without one (one saved from
/// PyTorch, say).
fn record(path: &Path) -> Result<Option<serde_json::Value>> {
    let header = read_header(path)?;
    let Some(about) = header.about() else {
        return Ok(None);
    };
    let about = serde_json::from_str(about).map_err(|e| Error::Checkpoint {
        path: path.to_path_buf(),
        message: format!("unreadable metadata: {e}"),
    })?;
    Ok(Some(about))
}

/// The model kind and configuration a file written by a run records, or `None` for a file
/// without them.
pub fn recorded_model(path: &Path) -> Result<Option<(String, serde_json::Value)>> {
    let Some(about) = record(path)? else {
        return Ok(None);
    };
    Ok(match (about["model"].as_str(), about.get("model_config")) {
        (Some(kind), Some(config)) => Some((kind.to_string(), config.clone())),
        _ => None,
    })
}

/// The frame shape `[C, H, W]` a file written by a run records, or `None` without it.
pub fn recorded_frame(path: &Path) -> Result<Option<[usize; 3]>> {
    let Some(about) = record(path)? else {
        return Ok(None);
    };
    let dims: Option<Vec<usize>> = about["frame"].as_array().map(|a| {
        a.iter()
            .filter_map(|v| v.as_u64().map(|v| v as usize))
            .collect()
    });
    Ok(match dims.as_deref() {
        Some(&[c, h, w]) => Some([c, h, w]),
        _ => None,
    })
}

/// What the command line recorded about the run that wrote the file (its settings), or
/// `None` for a file without that record (one written before weights files held it).
pub fn recorded_launch(path: &Path) -> Result<Option<serde_json::Value>> {
    Ok(record(path)?
        .and_then(|about| about.get("launch").cloned())
        .filter(|launch| launch.is_object()))
}

fn state_of(about: Option<&str>, path: &Path) -> Result<TrainingState> {
    let about = about.ok_or_else(|| Error::Checkpoint {
        path: path.to_path_buf(),
        message: format!("not a training checkpoint: no `{CHECKPOINT_METADATA_KEY}` metadata"),
    })?;
    parse_state(path, about)
}

fn parse_state(path: &Path, about: &str) -> Result<TrainingState> {
    let bad = |message: String| Error::Checkpoint {
        path: path.to_path_buf(),
        message,
    };
    let value: serde_json::Value =
        serde_json::from_str(about).map_err(|e| bad(format!("unreadable metadata: {e}")))?;
    match value.get("format").and_then(|f| f.as_u64()) {
        Some(f) if f == u64::from(FORMAT) => {}
        Some(f) => {
            return Err(bad(format!(
                "a training checkpoint of format {f}; this bench-cli reads format {FORMAT}"
            )))
        }
        None => {
            return Err(bad(
                "not a training checkpoint (a weights file, perhaps: those can seed a new run \
                 with --init-from, but hold no optimizer state to resume)"
                    .into(),
            ))
        }
    }
    serde_json::from_value(value).map_err(|e| bad(format!("unreadable training state: {e}")))
}

/// A training checkpoint as read back: its state, and the file's tensors.
pub struct Loaded {
    pub path: PathBuf,
    pub state: TrainingState,
    pub checkpoint: Checkpoint,
}

/// Reads a whole training checkpoint ([`Checkpoint::read`]: each tensor straight from the
/// file into its own buffer).
pub fn load(path: &Path) -> Result<Loaded> {
    let checkpoint = Checkpoint::read(path)?;
    let state = state_of(checkpoint.about(), path)?;
    Ok(Loaded {
        path: path.to_path_buf(),
        state,
        checkpoint,
    })
}

/// Where two JSON descriptions of a run differ, as `field (a there, b here)` items.
pub fn differences(there: &serde_json::Value, here: &serde_json::Value) -> Vec<String> {
    fn walk(prefix: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
        match (a, b) {
            (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                for key in keys {
                    let null = serde_json::Value::Null;
                    let path = match prefix {
                        "" => key.clone(),
                        p => format!("{p}.{key}"),
                    };
                    walk(
                        &path,
                        x.get(key).unwrap_or(&null),
                        y.get(key).unwrap_or(&null),
                        out,
                    );
                }
            }
            _ if a != b => out.push(format!("{prefix} ({a} there, {b} here)")),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", there, here, &mut out);
    out
}
