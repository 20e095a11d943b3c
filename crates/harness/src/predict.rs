//! Using a trained model: load it back from its checkpoint, predict one step ahead, or
//! roll it out for several steps feeding its own predictions back.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};
use crate::keys::CHECKPOINT_METADATA_KEY;
use crate::model::SequenceModel;
use crate::params::{load_parameters, var_builder};
use lstm_core::{tensors, Plan, Recurrent};

/// Loads model `M` over frames `[C, H, W]` from a checkpoint written by [`crate::train`],
/// with the configuration saved in it. A checkpoint of another model kind, one without that
/// configuration (a file saved from PyTorch), or one whose model cannot take these frames
/// is a clear error.
pub fn load_model<M: SequenceModel>(
    path: &Path,
    frame: [usize; 3],
    device: &Device,
) -> Result<(M, M::Config)> {
    let bad = |message: String| Error::Checkpoint {
        path: path.to_path_buf(),
        message,
    };
    // The record from the header alone; the tensors are read once, below.
    let Some((kind, config)) = crate::resume::recorded_model(path)? else {
        return Err(bad(format!(
            "no `{CHECKPOINT_METADATA_KEY}` metadata, so the model's configuration is unknown; \
             use a checkpoint written by bench-cli training (a PyTorch file can seed one with \
             --init-from)"
        )));
    };
    if kind != M::KIND {
        return Err(bad(format!(
            "this is a checkpoint of the {kind} model, not the {} model",
            M::KIND
        )));
    }
    let config: M::Config = serde_json::from_value(config)
        .map_err(|e| bad(format!("unreadable model configuration: {e}")))?;
    let specs = M::parameter_specs(&config, frame).map_err(|e| {
        bad(format!(
            "the {} model it holds cannot take {}x{}x{} frames: {e}",
            M::KIND,
            frame[0],
            frame[1],
            frame[2]
        ))
    })?;
    let vars = load_parameters(path, &specs, DType::F32, device)?;
    let model = M::load(
        &config,
        frame,
        var_builder(&specs, &vars, DType::F32, device),
    )?;
    Ok((model, config))
}

/// Predicts `horizon` frames after `context`, feeding each prediction back as the next
/// input.
///
/// ## Parameters
/// - `context`: `[K, C, H, W]`, `K >= 1` true frames; h and c start at zero on the first.
///
/// ## Returns
/// `[horizon, C, H, W]`: frames `K .. K + horizon - 1` as the model sees them. One pass of
/// the driver's forward: the context once, then one step per predicted frame.
pub fn rollout<M: Recurrent>(model: &M, context: &Tensor, horizon: usize) -> Result<Tensor> {
    let k = context.dim(0)?;
    if k == 0 || horizon == 0 {
        return Err(Error::Config(format!(
            "a rollout needs at least one context frame and one to predict ({k} and {horizon})"
        )));
    }
    let plan = Plan::forecast(k, horizon, 1);
    let predictions = tensors::forward_plan(model, &context.unsqueeze(1)?, &plan)?; // [T, 1, C, H, W]
    Ok(predictions.narrow(0, k - 1, horizon)?.squeeze(1)?.detach())
}
