//! Using a trained model: load it back from its checkpoint, predict one step ahead, or
//! roll it out for several steps feeding its own predictions back.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};
use crate::model::SequenceModel;
use crate::params::{load_parameters, var_builder, Checkpoint};
use crate::train::CHECKPOINT_METADATA_KEY;

/// Loads model `M` from a checkpoint written by [`crate::train`], with the configuration
/// saved in it. A checkpoint of another model kind, or one without that configuration (a
/// file saved from PyTorch), is a clear error.
pub fn load_model<M: SequenceModel>(path: &Path, device: &Device) -> Result<(M, M::Config)> {
    let bad = |message: String| Error::Checkpoint {
        path: path.to_path_buf(),
        message,
    };
    let checkpoint = Checkpoint::read(path)?;
    let about = checkpoint
        .metadata
        .get(CHECKPOINT_METADATA_KEY)
        .ok_or_else(|| {
            bad(format!(
            "no `{CHECKPOINT_METADATA_KEY}` metadata, so the model's configuration is unknown; \
             use a checkpoint written by bench-cli training (a PyTorch file can seed one \
             with --init-from)"
        ))
        })?;
    let about: serde_json::Value =
        serde_json::from_str(about).map_err(|e| bad(format!("unreadable metadata: {e}")))?;
    let kind = about["model"].as_str().unwrap_or("?");
    if kind != M::KIND {
        return Err(bad(format!(
            "this is a checkpoint of the {kind} model, not the {} model",
            M::KIND
        )));
    }
    let config: M::Config = serde_json::from_value(about["model_config"].clone())
        .map_err(|e| bad(format!("unreadable model configuration: {e}")))?;
    let specs = M::parameter_specs(&config);
    let vars = load_parameters(path, &specs, DType::F32, device)?;
    let model = M::load(&config, var_builder(&specs, &vars, DType::F32, device))?;
    Ok((model, config))
}

/// Predicts `horizon` frames after `context`, feeding each prediction back as the next
/// input.
///
/// ## Parameters
/// - `context`: `[K, C, H, W]`, `K >= 1` true frames; h and c start at zero on the first.
///
/// ## Returns
/// `[horizon, C, H, W]`: frames `K .. K + horizon - 1` as the model sees them.
///
/// Each new frame re-runs the model over the whole sequence so far (the models only
/// expose whole windows), which gives the same numbers as stepping h and c forward.
pub fn rollout<M: SequenceModel>(model: &M, context: &Tensor, horizon: usize) -> Result<Tensor> {
    let (k, c, h, w) = context.dims4()?;
    if k == 0 {
        return Err(Error::Config(
            "a rollout needs at least one context frame".into(),
        ));
    }
    let placeholder = Tensor::zeros((1, c, h, w), context.dtype(), context.device())?;
    let mut sequence = context.clone(); // [K + i, C, H, W]
    let mut predicted = Vec::with_capacity(horizon);
    for _ in 0..horizon {
        // predict() maps a window of n frames to predictions of frames 1 .. n-1; the last
        // one reads every frame of `sequence` and the placeholder is never an input.
        let window = Tensor::cat(&[&sequence, &placeholder], 0)?;
        let predictions = model.predict(&window)?.detach(); // [len, C, H, W]
        let next = predictions.narrow(0, predictions.dim(0)? - 1, 1)?; // [1, C, H, W]
        predicted.push(next.clone());
        sequence = Tensor::cat(&[&sequence, &next], 0)?;
    }
    Ok(Tensor::cat(&predicted, 0)?)
}
