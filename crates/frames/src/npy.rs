//! Videos in NumPy `.npy` files, the form the field's Moving MNIST test set comes in
//! (`mnist_test_seq.npy`, Srivastava et al. 2015: uint8 `[20, 10000, 64, 64]`, frames
//! first). Read layouts: `[T, N, H, W]` (frames first, that file's), `[N, T, H, W]`
//! (`--npy-layout nthw`) and `[N, T, C, H, W]`; uint8 values are scaled by 1/255, float32 and
//! float64 ones must lie in [0, 1]. Each sequence is a video. The header is checked whole
//! (magic, version, dtype, order, shape, and the data's length against the file's) before
//! anything large is allocated, and every refusal names the file.
//!
//! The format (numpy's `lib/format.py`): the magic `\x93NUMPY`, a version byte pair, the
//! header's length (u16 little-endian in version 1, u32 in 2 and 3), and the header: a Python
//! dict literal with `descr`, `fortran_order` and `shape`, padded so the data starts on a
//! multiple of 64 bytes.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::{luma, ColorMode, Error, Frames, Result};

/// How a four-dimensional file's axes are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout4 {
    /// `[T, N, H, W]`: frames first, as `mnist_test_seq.npy`.
    #[default]
    FramesFirst,
    /// `[N, T, H, W]`: sequences first.
    SequencesFirst,
}

/// The element types read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    U8,
    F32,
    F64,
}

impl Dtype {
    fn bytes(self) -> usize {
        match self {
            Dtype::U8 => 1,
            Dtype::F32 => 4,
            Dtype::F64 => 8,
        }
    }
}

/// A checked `.npy` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Where the data starts in the file.
    data_start: u64,
}

/// The shape of the videos a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Videos {
    /// Sequences.
    pub count: usize,
    /// Frames per sequence.
    pub frames: usize,
    /// `[C, H, W]` of a frame.
    pub frame: [usize; 3],
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::Npy {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Whether `path` names a `.npy` file (by its extension).
pub fn is_npy(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"))
}

/// Reads and checks the header of the `.npy` file at `path`.
pub fn read_header(path: &Path) -> Result<Header> {
    let mut file = open(path)?;
    header_of(&mut file, path)
}

fn open(path: &Path) -> Result<std::fs::File> {
    let file = std::fs::File::open(path).map_err(|e| bad(path, format!("cannot open: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| bad(path, format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(bad(path, "not a regular file"));
    }
    Ok(file)
}

fn header_of(file: &mut std::fs::File, path: &Path) -> Result<Header> {
    let file_len = file
        .metadata()
        .map_err(|e| bad(path, format!("cannot read: {e}")))?
        .len();
    let mut lead = [0u8; 8];
    file.read_exact(&mut lead)
        .map_err(|_| bad(path, "not a .npy file: shorter than its magic and version"))?;
    if &lead[..6] != b"\x93NUMPY" {
        return Err(bad(
            path,
            "not a .npy file: no \\x93NUMPY magic at its start",
        ));
    }
    let (major, minor) = (lead[6], lead[7]);
    let (len_bytes, header_len) = match major {
        1 => {
            let mut b = [0u8; 2];
            file.read_exact(&mut b)
                .map_err(|_| bad(path, "truncated header"))?;
            (2u64, u64::from(u16::from_le_bytes(b)))
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            file.read_exact(&mut b)
                .map_err(|_| bad(path, "truncated header"))?;
            (4u64, u64::from(u32::from_le_bytes(b)))
        }
        _ => {
            return Err(bad(
                path,
                format!("format version {major}.{minor}; versions 1, 2 and 3 are read"),
            ))
        }
    };
    // numpy writes headers of a few hundred bytes; anything past 1 MB is not one.
    if header_len > 1 << 20 || 8 + len_bytes + header_len > file_len {
        return Err(bad(
            path,
            format!("truncated or damaged: a {header_len}-byte header in a {file_len}-byte file"),
        ));
    }
    let mut text = vec![0u8; header_len as usize];
    file.read_exact(&mut text)
        .map_err(|_| bad(path, "truncated header"))?;
    let text = String::from_utf8(text).map_err(|_| bad(path, "a header that is not text"))?;
    let header = parse_dict(&text).map_err(|reason| bad(path, reason))?;
    let data_start = 8 + len_bytes + header_len;
    let values = header
        .shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .and_then(|n| n.checked_mul(header.dtype.bytes()))
        .ok_or_else(|| bad(path, format!("shape {:?}: too large", header.shape)))?;
    if data_start + values as u64 != file_len {
        return Err(bad(
            path,
            format!(
                "truncated or damaged: shape {:?} of {:?} is {values} bytes of data, the file \
                 holds {}",
                header.shape,
                header.dtype,
                file_len.saturating_sub(data_start)
            ),
        ));
    }
    Ok(Header {
        data_start,
        ..header
    })
}

/// The header dict: `{'descr': '|u1', 'fortran_order': False, 'shape': (20, 10000, 64, 64), }`.
fn parse_dict(text: &str) -> std::result::Result<Header, String> {
    let value_of = |key: &str| -> std::result::Result<&str, String> {
        let at = text
            .find(&format!("'{key}'"))
            .ok_or_else(|| format!("a header without '{key}'"))?;
        let rest = text[at + key.len() + 2..].trim_start();
        rest.strip_prefix(':')
            .map(str::trim_start)
            .ok_or_else(|| format!("a header whose '{key}' has no value"))
    };
    let descr = value_of("descr")?;
    let descr = descr
        .strip_prefix('\'')
        .and_then(|d| d.split('\'').next())
        .ok_or("a header whose 'descr' is not a string")?;
    let dtype = match descr {
        "|u1" | "<u1" | "u1" | "|b1" => Dtype::U8,
        "<f4" => Dtype::F32,
        "<f8" => Dtype::F64,
        other if other.starts_with('>') => {
            return Err(format!(
                "dtype {other}: big-endian; save it little-endian (numpy's default)"
            ))
        }
        other => {
            return Err(format!(
                "dtype {other}: frames are read as uint8 (|u1), float32 (<f4) or float64 (<f8)"
            ))
        }
    };
    if value_of("fortran_order")?.starts_with("True") {
        return Err("Fortran (column-major) order; save it in C order".into());
    }
    let shape = value_of("shape")?;
    let shape = shape
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or("a header whose 'shape' is not a tuple")?;
    let shape = shape
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.trim_end_matches('L').parse::<usize>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| format!("shape ({shape}): not a tuple of sizes"))?;
    Ok(Header {
        dtype,
        shape,
        data_start: 0,
    })
}

impl Header {
    /// The videos the array holds, in `layout` if it is four-dimensional.
    pub fn videos(&self, path: &Path, layout: Layout4) -> Result<Videos> {
        let videos = match (self.shape.as_slice(), layout) {
            (&[t, n, h, w], Layout4::FramesFirst) => Videos {
                count: n,
                frames: t,
                frame: [1, h, w],
            },
            (&[n, t, h, w], Layout4::SequencesFirst) => Videos {
                count: n,
                frames: t,
                frame: [1, h, w],
            },
            (&[n, t, c, h, w], _) => Videos {
                count: n,
                frames: t,
                frame: [c, h, w],
            },
            (shape, _) => {
                return Err(bad(
                    path,
                    format!(
                        "shape {shape:?}: videos are [T, N, H, W], [N, T, H, W] \
                         (--npy-layout nthw) or [N, T, C, H, W]"
                    ),
                ))
            }
        };
        if self.shape.contains(&0) {
            return Err(bad(path, format!("shape {:?}: an empty array", self.shape)));
        }
        if ![1, 3].contains(&videos.frame[0]) {
            return Err(bad(
                path,
                format!(
                    "{} channels: frames are grey (1) or RGB (3)",
                    videos.frame[0]
                ),
            ));
        }
        Ok(videos)
    }
}

/// Reads every sequence of the `.npy` file at `path` as a video `[T, C, H, W]` in [0, 1]:
/// grey, or RGB kept or turned to luma as `color` asks.
pub fn load(path: &Path, layout: Layout4, color: ColorMode) -> Result<Vec<Frames>> {
    let mut file = open(path)?;
    let header = header_of(&mut file, path)?;
    let videos = header.videos(path, layout)?;
    if color == ColorMode::Rgb && videos.frame[0] == 1 {
        return Err(bad(path, "--color rgb: the file's frames are grey"));
    }
    let [c, h, w] = videos.frame;
    let frame = c * h * w;
    let per_video = videos.frames * frame;
    let mut values: Vec<Vec<f32>> = (0..videos.count)
        .map(|_| Vec::with_capacity(per_video))
        .collect();
    file.seek(SeekFrom::Start(header.data_start))
        .map_err(|e| bad(path, format!("cannot read its data: {e}")))?;
    let mut read = |count: usize| -> Result<Vec<f32>> {
        let mut bytes = vec![0u8; count * header.dtype.bytes()];
        file.read_exact(&mut bytes)
            .map_err(|e| bad(path, format!("cannot read its data: {e}")))?;
        decode(&bytes, header.dtype).map_err(|reason| bad(path, reason))
    };
    match (header.shape.len(), layout) {
        (4, Layout4::FramesFirst) => {
            // One time step of every sequence at a time: the file's rows.
            for _ in 0..videos.frames {
                let row = read(videos.count * frame)?;
                for (video, values) in values.iter_mut().zip(row.chunks_exact(frame)) {
                    video.extend_from_slice(values);
                }
            }
        }
        _ => {
            for video in &mut values {
                *video = read(per_video)?;
            }
        }
    }
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    values
        .into_iter()
        .enumerate()
        .map(|(k, v)| {
            let (v, c) = match (c, color) {
                (3, ColorMode::Luma) => (to_luma(&v, h * w), 1),
                _ => (v, c),
            };
            Ok(Frames {
                data: Tensor::from_vec(v, (videos.frames, c, h, w), &Device::Cpu)?,
                paths: Vec::new(),
                name: format!("{name}-{k:05}"),
            })
        })
        .collect()
}

/// Values in [0, 1]: uint8 scaled by 1/255, floats as they are (refused outside [0, 1]).
fn decode(bytes: &[u8], dtype: Dtype) -> std::result::Result<Vec<f32>, String> {
    let checked = |v: f64| -> std::result::Result<f32, String> {
        match (0.0..=1.0).contains(&v) {
            true => Ok(v as f32),
            false => Err(format!(
                "a value of {v}: float frames must lie in [0, 1] (uint8 ones are scaled by 1/255)"
            )),
        }
    };
    match dtype {
        Dtype::U8 => Ok(bytes.iter().map(|&b| f32::from(b) / 255.0).collect()),
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| checked(f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))))
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|b| checked(f64::from_le_bytes(b.try_into().expect("8 bytes"))))
            .collect(),
    }
}

/// RGB frames `[T, 3, H, W]` (flattened, `plane = H*W`) to luma `[T, 1, H, W]`.
fn to_luma(rgb: &[f32], plane: usize) -> Vec<f32> {
    rgb.chunks_exact(3 * plane)
        .flat_map(|f| (0..plane).map(move |i| luma(f[i], f[plane + i], f[2 * plane + i])))
        .collect()
}

/// Writes `videos` (each `[T, C, H, W]` in [0, 1], all of one shape) as uint8, rounded, in
/// the layout of `mnist_test_seq.npy` (`[T, N, H, W]`) for grey frames and `[N, T, C, H, W]`
/// for RGB ones; atomically (a temporary beside it, renamed into place).
pub fn write(path: &Path, videos: &[Frames]) -> Result<()> {
    let first = videos
        .first()
        .ok_or_else(|| bad(path, "no videos to write"))?;
    let dims = first.data.dims().to_vec();
    if let Some(other) = videos.iter().find(|v| v.data.dims() != dims.as_slice()) {
        return Err(bad(
            path,
            format!(
                "video {} is {:?} but {} is {:?}; a .npy array needs videos of one shape",
                other.name,
                other.data.dims(),
                first.name,
                dims
            ),
        ));
    }
    let (t, c, h, w) = (dims[0], dims[1], dims[2], dims[3]);
    let n = videos.len();
    let byte = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    let all: Vec<Vec<f32>> = videos
        .iter()
        .map(|v| v.data.flatten_all()?.to_vec1::<f32>())
        .collect::<candle_core::Result<_>>()?;
    let (shape, data): (Vec<usize>, Vec<u8>) = match c {
        1 => (
            vec![t, n, h, w],
            (0..t)
                .flat_map(|k| all.iter().flat_map(move |v| &v[k * h * w..(k + 1) * h * w]))
                .map(|&v| byte(v))
                .collect(),
        ),
        _ => (
            vec![n, t, c, h, w],
            all.iter().flatten().map(|&v| byte(v)).collect(),
        ),
    };
    write_array(path, "|u1", &shape, &data)
}

/// Writes `values` (row-major, of `shape`) as a float32 array, atomically.
pub fn write_f32(path: &Path, shape: &[usize], values: &[f32]) -> Result<()> {
    if shape.iter().product::<usize>() != values.len() {
        return Err(bad(
            path,
            format!("{} values for shape {shape:?}", values.len()),
        ));
    }
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_array(path, "<f4", shape, &bytes)
}

/// Writes a version 1.0 `.npy` file of `descr` and `shape` holding `data`, atomically (a
/// temporary beside it, renamed into place).
fn write_array(path: &Path, descr: &str, shape: &[usize], data: &[u8]) -> Result<()> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': ({}), }}",
        dims.join(", ") + if shape.len() == 1 { "," } else { "" }
    );
    // The data starts on a multiple of 64 bytes; the header ends in a newline.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let tmp = PathBuf::from(format!("{}.tmp{}", path.display(), std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(b"\x93NUMPY\x01\x00")?;
        file.write_all(&(header.len() as u16).to_le_bytes())?;
        file.write_all(header.as_bytes())?;
        file.write_all(data)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    written.map_err(|e| {
        std::fs::remove_file(&tmp).ok();
        bad(path, format!("cannot write: {e}"))
    })
}
