//! One run of a model at a time in an output folder: two would overwrite each other's CSV,
//! checkpoints and temporaries. A run holds an advisory lock (`flock`) on
//! `<out>/.<model>.lock`, which holds its process id; the kernel releases the lock when the
//! process ends, however it ends, so a crash leaves no stale lock to clean up.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::error::{io_err, Error, Result};

/// The lock a run holds until it is dropped.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    pub path: PathBuf,
}

/// The lock file of model `kind` in `dir`.
pub fn lock_path(dir: &Path, kind: &str) -> PathBuf {
    dir.join(format!(".{kind}.lock"))
}

/// Takes the lock of model `kind` in the existing folder `dir`, or says which process holds
/// it.
pub fn lock(dir: &Path, kind: &str) -> Result<RunLock> {
    let path = lock_path(dir, kind);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err(&path))?;
    if !try_lock(&file) {
        let mut holder = String::new();
        file.read_to_string(&mut holder).ok();
        let holder = holder.trim();
        return Err(Error::Config(format!(
            "{}: another {kind} run is writing its results here ({}); wait for it to end, or \
             choose another --out",
            dir.display(),
            match holder {
                "" => "its process id is not recorded".to_string(),
                pid => format!("process {pid}"),
            }
        )));
    }
    file.set_len(0)
        .and_then(|_| file.rewind())
        .and_then(|_| writeln!(file, "{}", std::process::id()))
        .and_then(|_| file.flush())
        .map_err(io_err(&path))?;
    Ok(RunLock { _file: file, path })
}

#[cfg(unix)]
fn try_lock(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor this process owns; no memory is involved.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

#[cfg(not(unix))]
fn try_lock(_file: &File) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_first_process_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path(), "conv").unwrap();
        let err = lock(dir.path(), "conv").unwrap_err().to_string();
        assert!(
            err.contains(&format!("process {}", std::process::id()))
                && err.contains("another conv run"),
            "{err}"
        );
        // Another model's lock is its own.
        let other = lock(dir.path(), "linear").unwrap();
        drop(first);
        lock(dir.path(), "conv").unwrap();
        drop(other);
    }
}
