//! Reading safetensors files, the one reader every loader uses: weights files (`predict`,
//! `eval`, `--init-from`, PyTorch's files), training checkpoints (`--resume`) and the tests'
//! fixtures. The header is checked first (safetensors' own validation of offsets and shapes,
//! and the tensors ending exactly where the file does), then each tensor is read straight
//! from the file into a buffer of its own: a 1.9 GB checkpoint is held once, not read whole
//! and then decoded. The name and shape checks of a model's tensors are here too.

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::error::{io_err, Error, Result};
use crate::keys::CHECKPOINT_METADATA_KEY;

/// A safetensors header, checked.
pub struct Header {
    /// Where the tensor data starts in the file.
    data_start: u64,
    metadata: safetensors::tensor::Metadata,
}

impl Header {
    /// The run's record in the metadata (one JSON object), if the file has one.
    pub fn about(&self) -> Option<&str> {
        self.metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get(CHECKPOINT_METADATA_KEY))
            .map(String::as_str)
    }
}

/// Reads and checks the header of the safetensors file at `path`: nothing else is read.
pub fn read_header(path: &Path) -> Result<Header> {
    let mut file = crate::files::open_regular(path)?;
    header_of(&mut file, path)
}

fn header_of(file: &mut std::fs::File, path: &Path) -> Result<Header> {
    let bad = |message: String| Error::Checkpoint {
        path: path.to_path_buf(),
        message,
    };
    let file_len = file.metadata().map_err(io_err(path))?.len();
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes)
        .map_err(|_| bad("not a safetensors file: shorter than its 8-byte header length".into()))?;
    let header_len = u64::from_le_bytes(len_bytes);
    // safetensors' own limit on a header; anything longer is not a checkpoint.
    if header_len > 100_000_000 || 8 + header_len > file_len {
        return Err(bad(format!(
            "not a safetensors file, or truncated: it announces a {header_len}-byte header in \
             a {file_len}-byte file"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(io_err(path))?;
    let metadata: safetensors::tensor::Metadata = serde_json::from_slice(&header)
        .map_err(|e| bad(format!("not a readable safetensors file: {e}")))?;
    let data_start = 8 + header_len;
    let data_len = metadata
        .tensors()
        .values()
        .map(|info| info.data_offsets.1 as u64)
        .max()
        .unwrap_or(0);
    if data_start + data_len != file_len {
        return Err(bad(format!(
            "truncated or damaged: its header describes {} bytes, the file has {file_len}",
            data_start + data_len
        )));
    }
    Ok(Header {
        data_start,
        metadata,
    })
}

/// One tensor as read back: its shape and values, f32 as they are, any other float type
/// as a CPU tensor of its own type.
#[derive(Debug)]
pub struct Stored {
    pub shape: Vec<usize>,
    values: Values,
}

#[derive(Debug)]
enum Values {
    F32(Vec<f32>),
    Other(Tensor),
}

impl Stored {
    /// As a CPU tensor (f32 values are moved in, not copied).
    pub fn into_tensor(self) -> Result<Tensor> {
        Ok(match self.values {
            Values::F32(values) => Tensor::from_vec(values, self.shape.as_slice(), &Device::Cpu)?,
            Values::Other(tensor) => tensor,
        })
    }

    /// As f32 values (f32 values are moved out, not copied).
    pub fn into_f32(self) -> Result<Vec<f32>> {
        Ok(match self.values {
            Values::F32(values) => values,
            Values::Other(tensor) => tensor.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?,
        })
    }
}

/// A safetensors file as read back.
pub struct Checkpoint {
    pub path: PathBuf,
    /// The header's string metadata.
    pub metadata: HashMap<String, String>,
    pub tensors: HashMap<String, Stored>,
}

impl Checkpoint {
    /// Reads the whole file at `path`, each tensor into a buffer of its own.
    pub fn read(path: &Path) -> Result<Checkpoint> {
        let bad = |message: String| Error::Checkpoint {
            path: path.to_path_buf(),
            message,
        };
        let mut file = crate::files::open_regular(path)?;
        let header = header_of(&mut file, path)?;
        let mut tensors = HashMap::new();
        for (name, info) in header.metadata.tensors() {
            // The header was checked against the file's length, so this is no larger.
            let (start, end) = info.data_offsets;
            file.seek(std::io::SeekFrom::Start(header.data_start + start as u64))
                .map_err(io_err(path))?;
            let values = match info.dtype {
                safetensors::Dtype::F32 => {
                    let mut values = vec![0f32; (end - start) / 4];
                    file.read_exact(bytemuck::cast_slice_mut(&mut values))
                        .map_err(io_err(path))?;
                    #[cfg(not(target_endian = "little"))]
                    for v in &mut values {
                        *v = f32::from_bits(u32::from_le(v.to_bits()));
                    }
                    Values::F32(values)
                }
                other => {
                    let dtype = match other {
                        safetensors::Dtype::F64 => DType::F64,
                        safetensors::Dtype::F16 => DType::F16,
                        safetensors::Dtype::BF16 => DType::BF16,
                        _ => {
                            return Err(bad(format!(
                                "tensor `{name}` is {other:?}; weights are floats (F32, F64, \
                                 F16 or BF16)"
                            )))
                        }
                    };
                    let mut bytes = vec![0u8; end - start];
                    file.read_exact(&mut bytes).map_err(io_err(path))?;
                    let tensor = Tensor::from_raw_buffer(&bytes, dtype, &info.shape, &Device::Cpu)?;
                    Values::Other(tensor)
                }
            };
            tensors.insert(
                name,
                Stored {
                    shape: info.shape.clone(),
                    values,
                },
            );
        }
        Ok(Checkpoint {
            path: path.to_path_buf(),
            metadata: header.metadata.metadata().clone().unwrap_or_default(),
            tensors,
        })
    }

    /// The run's record in the metadata, if the file has one.
    pub fn about(&self) -> Option<&str> {
        self.metadata
            .get(CHECKPOINT_METADATA_KEY)
            .map(String::as_str)
    }

    /// Takes tensor `name` out, checking that it is there with `shape`.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<Stored> {
        let bad = |message: String| Error::Checkpoint {
            path: self.path.clone(),
            message,
        };
        let Some(stored) = self.tensors.remove(name) else {
            let mut held: Vec<&String> = self.tensors.keys().collect();
            held.sort();
            let held: Vec<&str> = held.iter().map(|s| s.as_str()).collect();
            return Err(bad(format!(
                "tensor `{name}` {shape:?} is missing; the file holds: {}",
                held.join(", ")
            )));
        };
        if stored.shape != shape {
            return Err(bad(format!(
                "tensor `{name}` has shape {:?} in the file but the model needs {shape:?}",
                stored.shape
            )));
        }
        Ok(stored)
    }

    /// Fails, naming them, if tensors are left that nothing took.
    pub fn nothing_left(&self) -> Result<()> {
        if self.tensors.is_empty() {
            return Ok(());
        }
        let mut extra: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
        extra.sort();
        Err(Error::Checkpoint {
            path: self.path.clone(),
            message: format!("unexpected tensors for this model: {}", extra.join(", ")),
        })
    }

    /// Tensor `name` as a CPU tensor, for tests and fixtures.
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        let stored = self.tensors.get(name).ok_or_else(|| Error::Checkpoint {
            path: self.path.clone(),
            message: format!("no tensor `{name}`"),
        })?;
        Ok(match &stored.values {
            Values::F32(values) => {
                Tensor::from_slice(values.as_slice(), stored.shape.as_slice(), &Device::Cpu)?
            }
            Values::Other(tensor) => tensor.clone(),
        })
    }

    /// The tensors' names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.tensors.keys().cloned().collect();
        names.sort();
        names
    }
}
