//! Files written so that a crash at any instant leaves the old file or the new one, never
//! half of one: every output of a run goes through [`write_atomic`].

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::error::{io_err, Result};

/// Opens a file to read, refusing a path that exists but is no regular file with what it is:
/// reading a folder fails with an unhelpful message, and a device such as `/dev/zero`
/// never ends.
pub fn open_regular(path: &Path) -> Result<File> {
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    let what = if meta.is_dir() {
        "a folder"
    } else if meta.is_file() {
        return File::open(path).map_err(io_err(path));
    } else {
        "not a regular file (a device, pipe or socket)"
    };
    Err(crate::Error::Checkpoint {
        path: path.to_path_buf(),
        message: format!("{what}; expected a safetensors file"),
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
    let (tmp_dir, _registered) = InFlight::create(dir, &name)?;
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

/// The temporary folders of the writes under way, so that a process told to exit at once
/// (a second Ctrl-C) can remove them first: [`remove_in_flight_temporaries`].
static IN_FLIGHT: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());

/// A temporary folder listed in [`IN_FLIGHT`] while it lives.
struct InFlight(std::path::PathBuf);

impl InFlight {
    /// A fresh temporary folder for `name` in `dir`, listed as it is made: made under the
    /// list's lock, so no folder exists that [`remove_in_flight_temporaries`] cannot see.
    fn create(dir: &Path, name: &str) -> Result<(tempfile::TempDir, InFlight)> {
        let mut list = in_flight();
        if EXITING.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(io_err(dir)(std::io::Error::other(
                "the process is exiting: nothing more is written",
            )));
        }
        let tmp_dir = tempfile::Builder::new()
            .prefix(&temporary_prefix(name))
            .suffix(TEMPORARY_SUFFIX)
            .tempdir_in(dir)
            .map_err(io_err(dir))?;
        list.push(tmp_dir.path().to_path_buf());
        let listed = InFlight(tmp_dir.path().to_path_buf());
        Ok((tmp_dir, listed))
    }
}

/// The list of writes under way; a poisoned lock still holds it: a panicking writer is no
/// reason to leave files.
fn in_flight() -> std::sync::MutexGuard<'static, Vec<std::path::PathBuf>> {
    match IN_FLIGHT.lock() {
        Ok(list) => list,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut list) = IN_FLIGHT.lock() {
            list.retain(|p| p != &self.0);
        }
    }
}

/// Removes the temporary folders of the writes under way, for a process about to exit
/// without finishing them (a second Ctrl-C): the files they were to replace keep their
/// previous version, and no `.<name>.*.tmp` folder is left behind. A write whose rename has
/// already happened has an empty folder left, which goes too.
///
/// A write that would start after this (on another thread, before the process has exited)
/// is refused: folders are made under the list's lock, which this holds while it marks the
/// process as exiting.
pub fn remove_in_flight_temporaries() {
    let list = in_flight();
    EXITING.store(true, std::sync::atomic::Ordering::SeqCst);
    for path in list.iter() {
        let _ = std::fs::remove_dir_all(path);
    }
}

/// Set by [`remove_in_flight_temporaries`]: no write starts after it.
static EXITING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

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
