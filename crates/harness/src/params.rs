//! Parameters: seeded initialisation, checkpoints in safetensors, atomic files.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

use crate::checkpoint::Checkpoint;
use crate::error::Result;
use crate::files::write_atomic;
use crate::model::{ParamInit, ParamSpec};

/// Draws every parameter in `specs` order from one ChaCha8 stream seeded with `seed`.
///
/// candle's own CPU generator cannot be seeded, so the draws happen here, in f64, and are
/// then cast: the same seed gives the same weights in f32 and f64, on any device.
pub fn init_parameters(
    specs: &[ParamSpec],
    seed: u64,
    dtype: DType,
    device: &Device,
) -> Result<Vec<Var>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut vars = Vec::with_capacity(specs.len());
    for spec in specs {
        let tensor = match spec.init {
            ParamInit::Zeros => Tensor::zeros(spec.shape.as_slice(), dtype, device)?,
            ParamInit::Normal { fan_in } => {
                let std = (1.0 / fan_in as f64).sqrt();
                let mut draw =
                    || -> f64 { Distribution::<f64>::sample(&StandardNormal, &mut rng) * std };
                let shape = spec.shape.as_slice();
                let cpu = match dtype {
                    DType::F64 => {
                        let values: Vec<f64> = (0..spec.numel()).map(|_| draw()).collect();
                        Tensor::from_vec(values, shape, &Device::Cpu)?
                    }
                    _ => {
                        let values: Vec<f32> = (0..spec.numel()).map(|_| draw() as f32).collect();
                        Tensor::from_vec(values, shape, &Device::Cpu)?.to_dtype(dtype)?
                    }
                };
                cpu.to_device(device)?
            }
        };
        vars.push(Var::from_tensor(&tensor)?);
    }
    Ok(vars)
}

/// A `VarBuilder` whose tensors are `vars`, so a model built from it trains them.
pub fn var_builder(
    specs: &[ParamSpec],
    vars: &[Var],
    dtype: DType,
    device: &Device,
) -> VarBuilder<'static> {
    let map = VarMap::new();
    {
        let mut data = map.data().lock().expect("fresh VarMap lock");
        for (spec, var) in specs.iter().zip(vars) {
            data.insert(spec.name.clone(), var.clone());
        }
    }
    VarBuilder::from_varmap(&map, dtype, device)
}

/// Loads parameters named as in `specs` from a safetensors file, strictly: every tensor
/// must be there with its shape, and nothing else may be. Tensors of another float type
/// (a PyTorch file in f16, say) are converted to `dtype`. A training checkpoint's optimizer
/// tensors are skipped, so it serves as a weights file too.
pub fn load_parameters(
    path: &Path,
    specs: &[ParamSpec],
    dtype: DType,
    device: &Device,
) -> Result<Vec<Var>> {
    let mut checkpoint = Checkpoint::read(path)?;
    checkpoint
        .tensors
        .retain(|name, _| !name.starts_with(crate::keys::ADAM_PREFIX));
    take_parameters(&mut checkpoint, specs, dtype, device)
}

/// Takes the tensors of `specs` out of `checkpoint`, checking each name and shape, as
/// variables of `dtype` on `device`; fails on any tensor left over.
pub fn take_parameters(
    checkpoint: &mut Checkpoint,
    specs: &[ParamSpec],
    dtype: DType,
    device: &Device,
) -> Result<Vec<Var>> {
    let vars = specs
        .iter()
        .map(|spec| {
            let tensor = checkpoint.take(&spec.name, &spec.shape)?.into_tensor()?;
            Ok(Var::from_tensor(
                &tensor.to_dtype(dtype)?.to_device(device)?,
            )?)
        })
        .collect::<Result<Vec<_>>>()?;
    checkpoint.nothing_left()?;
    Ok(vars)
}

/// Writes `vars` under the names of `specs` as safetensors, with `metadata` in the header,
/// atomically: a crash leaves either the old file or the new one, never half of one.
pub fn save_parameters(
    path: &Path,
    specs: &[ParamSpec],
    vars: &[Var],
    metadata: HashMap<String, String>,
) -> Result<()> {
    let tensors: Vec<(&str, &Tensor)> = specs
        .iter()
        .zip(vars)
        .map(|(s, v)| (s.name.as_str(), v.as_tensor()))
        .collect();
    write_atomic(path, |tmp| {
        safetensors::serialize_to_file(tensors, Some(metadata), tmp)
            .map_err(|e| std::io::Error::other(e.to_string()))
    })
}
