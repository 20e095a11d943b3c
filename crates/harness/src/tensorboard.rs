//! TensorBoard event files (`--tensorboard DIR`), written here: the format is a TFRecord
//! file of `Event` protocol buffers, and no crate that writes it (or protocol buffers at
//! all) is among this project's dependencies or reachable from its build machines, while
//! what a run writes needs a few dozen lines: three message types of TensorFlow's
//! `event.proto` and `summary.proto`, the TFRecord framing and its CRC-32C.
//!
//! - TFRecord: each record is its length (u64, little-endian), the masked CRC-32C of
//!   those 8 bytes, the data, and the masked CRC-32C of the data.
//! - `Event`: `wall_time` (1, double), `step` (2, int64), `file_version` (3, string) or
//!   `summary` (5, `Summary`). `Summary`: repeated `value` (1): `tag` (1, string) and
//!   `simple_value` (2, float) or `image` (4: `height` 1, `width` 2, `colorspace` 3,
//!   `encoded_image_string` 4, a PNG).
//!
//! A resumed run continues the same file: the records of steps after the checkpoint's
//! (which the interrupted run wrote and the resumed one writes again) are cut first, so
//! no step appears twice.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{io_err, Result};
use lstm_core::proto::Message;

/// The CRC-32C (Castagnoli) of `data`.
fn crc32c(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0x82f6_3b78 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &b in data {
        crc = TABLE[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// TFRecord's masked CRC.
fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c(data);
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// The step of an `Event` message, if it has one.
fn event_step(data: &[u8]) -> Option<u64> {
    let mut at = 0;
    let varint = |at: &mut usize| -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *data.get(*at)?;
            *at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    };
    while at < data.len() {
        let key = varint(&mut at)?;
        match (key >> 3, key & 7) {
            (2, 0) => return varint(&mut at),
            (_, 0) => {
                varint(&mut at)?;
            }
            (_, 1) => at += 8,
            (_, 5) => at += 4,
            (_, 2) => {
                let len = varint(&mut at)? as usize;
                at += len;
            }
            _ => return None,
        }
    }
    None
}

/// The records of a TFRecord file's bytes: `(offset, data)` each, as far as they are whole.
fn records(bytes: &[u8]) -> Vec<(usize, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 12 <= bytes.len() {
        let len = u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes")) as usize;
        let end = at + 12 + len + 4;
        if end > bytes.len() {
            break;
        }
        out.push((at, &bytes[at + 12..at + 12 + len]));
        at = end;
    }
    out
}

/// An event file being written.
pub struct EventWriter {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
}

impl EventWriter {
    /// The event file of model `kind` in `dir` (made if missing): a fresh run replaces any
    /// earlier one; a run resumed after `resumed_step` updates keeps its records up to that
    /// step and continues it.
    pub fn open(dir: &Path, kind: &str, resumed_step: Option<u64>) -> Result<EventWriter> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let suffix = format!(".bench-cli.{kind}");
        let existing = std::fs::read_dir(dir)
            .map_err(io_err(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("events.out.tfevents.") && n.ends_with(&suffix))
            });
        let kept = match (&existing, resumed_step) {
            (Some(path), Some(step)) => {
                let bytes = std::fs::read(path).map_err(io_err(path))?;
                let end = records(&bytes)
                    .into_iter()
                    .find(|(_, data)| event_step(data).is_some_and(|s| s > step))
                    .map_or_else(|| records_end(&bytes), |(offset, _)| offset);
                Some((path.clone(), bytes[..end].to_vec()))
            }
            _ => None,
        };
        if let (Some(path), None) = (&existing, &kept) {
            std::fs::remove_file(path).map_err(io_err(path))?;
        }
        let (path, prefix) = match kept {
            Some(kept) => kept,
            None => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                (
                    dir.join(format!("events.out.tfevents.{now}{suffix}")),
                    Vec::new(),
                )
            }
        };
        crate::files::write_atomic(&path, |tmp| std::fs::write(tmp, &prefix))?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let mut writer = EventWriter {
            path,
            file: std::io::BufWriter::new(file),
        };
        if prefix.is_empty() {
            let mut event = Message::default();
            event.double(1, wall_time()).bytes(3, b"brain.Event:2");
            writer.record(&event.0)?;
            writer.flush()?;
        }
        Ok(writer)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn record(&mut self, data: &[u8]) -> Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        let mut bytes = Vec::with_capacity(data.len() + 16);
        bytes.extend_from_slice(&len);
        bytes.extend(masked_crc(&len).to_le_bytes());
        bytes.extend_from_slice(data);
        bytes.extend(masked_crc(data).to_le_bytes());
        self.file.write_all(&bytes).map_err(io_err(&self.path))
    }

    /// One event at `step` with a summary of `values` (each a `Summary.Value` message).
    fn summary(&mut self, step: u64, values: &[Message]) -> Result<()> {
        let mut summary = Message::default();
        for v in values {
            summary.bytes(1, &v.0);
        }
        let mut event = Message::default();
        event
            .double(1, wall_time())
            .int(2, step)
            .bytes(5, &summary.0);
        self.record(&event.0)
    }

    /// Scalars `(tag, value)` at `step`.
    pub fn scalars(&mut self, step: u64, values: &[(&str, f64)]) -> Result<()> {
        let values: Vec<Message> = values
            .iter()
            .map(|(tag, v)| {
                let mut m = Message::default();
                m.bytes(1, tag.as_bytes()).float(2, *v as f32);
                m
            })
            .collect();
        self.summary(step, &values)
    }

    /// A PNG image `png` (`width x height`, `channels` 1 or 3) at `step`.
    pub fn image(
        &mut self,
        step: u64,
        tag: &str,
        png: &[u8],
        [width, height, channels]: [u32; 3],
    ) -> Result<()> {
        let mut image = Message::default();
        image
            .int(1, u64::from(height))
            .int(2, u64::from(width))
            .int(3, u64::from(channels))
            .bytes(4, png);
        let mut value = Message::default();
        value.bytes(1, tag.as_bytes()).bytes(4, &image.0);
        self.summary(step, &[value])
    }

    /// Writes what is buffered to the file, for TensorBoard to read while the run goes on.
    pub fn flush(&mut self) -> Result<()> {
        self.file.flush().map_err(io_err(&self.path))
    }
}

/// The end of the last whole record.
fn records_end(bytes: &[u8]) -> usize {
    records(bytes)
        .last()
        .map_or(0, |(offset, data)| offset + 12 + data.len() + 4)
}

fn wall_time() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CRC-32C's check value (RFC 3720's "123456789" -> 0xe3069283) and the varints of
    /// protocol buffers' documentation (150 -> 96 01).
    #[test]
    fn the_encodings_give_their_specifications_values() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        let mut m = Message::default();
        m.int(1, 150);
        assert_eq!(m.0, [0x08, 0x96, 0x01]);
        let mut event = Message::default();
        event.double(1, 1.5).int(2, 300).bytes(5, b"xy");
        assert_eq!(event_step(&event.0), Some(300));
    }

    #[test]
    fn a_resumed_log_keeps_the_steps_up_to_its_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::open(dir.path(), "conv", None).unwrap();
        for step in 1..=10 {
            w.scalars(step, &[("train/loss", step as f64)]).unwrap();
        }
        w.flush().unwrap();
        let path = w.path().to_path_buf();
        drop(w);
        let mut w = EventWriter::open(dir.path(), "conv", Some(6)).unwrap();
        assert_eq!(w.path(), path);
        w.scalars(7, &[("train/loss", 70.0)]).unwrap();
        w.flush().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let steps: Vec<u64> = records(&bytes)
            .iter()
            .filter_map(|(_, d)| event_step(d))
            .collect();
        assert_eq!(steps, [1, 2, 3, 4, 5, 6, 7]);
        // A fresh run replaces the file.
        drop(w);
        let w = EventWriter::open(dir.path(), "conv", None).unwrap();
        let bytes = std::fs::read(w.path()).unwrap();
        assert_eq!(records(&bytes).len(), 1, "the file_version event alone");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
