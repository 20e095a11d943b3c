//! Parameters: seeded initialisation, checkpoints in safetensors, atomic files.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

use crate::error::{io_err, Error, Result};
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
    let checkpoint = Checkpoint::read(path)?;
    let mut tensors = checkpoint.tensors;
    tensors.retain(|name, _| !name.starts_with(crate::resume::ADAM_PREFIX));
    take_parameters(path, &mut tensors, specs, dtype, device)
}

/// Takes the tensors of `specs` out of `tensors` (read from `path`), checking each name and
/// shape; fails on any tensor left over.
pub fn take_parameters(
    path: &Path,
    tensors: &mut HashMap<String, Tensor>,
    specs: &[ParamSpec],
    dtype: DType,
    device: &Device,
) -> Result<Vec<Var>> {
    let bad = |message: String| Error::Checkpoint {
        path: path.to_path_buf(),
        message,
    };
    let mut held: Vec<String> = tensors.keys().cloned().collect();
    held.sort();
    let mut vars = Vec::with_capacity(specs.len());
    for spec in specs {
        let Some(tensor) = tensors.remove(&spec.name) else {
            return Err(bad(format!(
                "tensor `{}` {:?} is missing; the file holds: {}",
                spec.name,
                spec.shape,
                held.join(", ")
            )));
        };
        if tensor.dims() != spec.shape.as_slice() {
            return Err(bad(format!(
                "tensor `{}` has shape {:?} in the file but the model needs {:?}",
                spec.name,
                tensor.dims(),
                spec.shape
            )));
        }
        let tensor = tensor.to_dtype(dtype)?.to_device(device)?;
        vars.push(Var::from_tensor(&tensor)?);
    }
    if !tensors.is_empty() {
        let mut extra: Vec<_> = tensors.keys().cloned().collect();
        extra.sort();
        return Err(bad(format!(
            "unexpected tensors for this model: {}",
            extra.join(", ")
        )));
    }
    Ok(vars)
}

/// A safetensors file as read back: tensors on the CPU, and the string metadata.
pub struct Checkpoint {
    pub names: Vec<String>,
    pub tensors: HashMap<String, Tensor>,
    pub metadata: HashMap<String, String>,
}

impl Checkpoint {
    pub fn read(path: &Path) -> Result<Checkpoint> {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        let bad = |message: String| Error::Checkpoint {
            path: path.to_path_buf(),
            message,
        };
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad(format!("not a readable safetensors file: {e}")))?;
        let metadata = header.metadata().clone().unwrap_or_default();
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| bad(format!("cannot read its tensors: {e}")))?;
        let mut names: Vec<String> = tensors.keys().cloned().collect();
        names.sort();
        Ok(Checkpoint {
            names,
            tensors,
            metadata,
        })
    }
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

/// Writes a file atomically: `write` fills a file in a fresh temporary folder beside `path`
/// (so on the same file system), which is then fsynced and renamed over `path`. A crash at
/// any instant leaves the old file or the new one, never half of one, and at worst a
/// leftover `.<name>.*.tmp` folder that [`remove_stale_temporaries`] clears.
///
/// A folder rather than a file, because some writers (safetensors') make their own
/// temporary beside the path they are given and rename it: inside our folder, those too are
/// recognisable as ours.
pub fn write_atomic(path: &Path, write: impl FnOnce(&Path) -> std::io::Result<()>) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp_dir = tempfile::Builder::new()
        .prefix(&temporary_prefix(&name))
        .suffix(TEMPORARY_SUFFIX)
        .tempdir_in(dir)
        .map_err(io_err(dir))?;
    let tmp = tmp_dir.path().join(&name);
    // Created here first, so it gets the usual mode of a new file (0666 less the umask),
    // which a writer's own owner-only temporary would not.
    let mode = File::create(&tmp)
        .and_then(|f| f.metadata())
        .map_err(io_err(path))?
        .permissions();
    write(&tmp).map_err(io_err(path))?;
    std::fs::set_permissions(&tmp, mode).map_err(io_err(path))?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io_err(path))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    // Make the rename itself durable.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

const TEMPORARY_SUFFIX: &str = ".tmp";

fn temporary_prefix(name: &str) -> String {
    format!(".{name}.")
}

/// Removes what [`write_atomic`] left behind when a process was killed mid-write: the
/// temporary folders for the files `names` in `dir`. Returns how many it removed.
pub fn remove_stale_temporaries(dir: &Path, names: &[&str]) -> Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        let ours = names.iter().any(|name| {
            file_name.starts_with(&temporary_prefix(name)) && file_name.ends_with(TEMPORARY_SUFFIX)
        });
        if ours && entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(entry.path()).map_err(io_err(entry.path()))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// [`write_atomic`] for bytes already in memory.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |tmp| File::create(tmp)?.write_all(bytes))
}

/// An f32 tensor's values borrowed for writing as safetensors, without a copy (candle's
/// own `View` copies the whole tensor first: 643 MB for the linear model's `W_hh`).
pub struct F32View<'a> {
    pub shape: Vec<usize>,
    pub values: &'a [f32],
    /// Announced to [`crate::fault`] as each tensor is written, for the crash tests.
    pub fault_point: Option<&'static str>,
}

impl safetensors::View for F32View<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        safetensors::Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        if let Some(point) = self.fault_point {
            crate::fault::reached(point);
        }
        f32_bytes(self.values)
    }
    fn data_len(&self) -> usize {
        std::mem::size_of_val(self.values)
    }
}

/// The little-endian bytes of `values` that safetensors stores: borrowed where that is the
/// machine's own order.
fn f32_bytes(values: &[f32]) -> std::borrow::Cow<'_, [u8]> {
    #[cfg(target_endian = "little")]
    {
        std::borrow::Cow::Borrowed(bytemuck::cast_slice(values))
    }
    #[cfg(not(target_endian = "little"))]
    {
        std::borrow::Cow::Owned(values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }
}
