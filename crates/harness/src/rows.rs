//! The CSV a run writes, one row per epoch.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One CSV row: what one epoch did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRow {
    /// From 1.
    pub epoch: usize,
    /// Mean over the epoch's windows of the window loss each update minimised, taken
    /// before that update.
    pub train_loss: f64,
    /// Mean window loss over the test windows after the epoch's last update.
    pub test_loss: f64,
    /// Wall time of the epoch's training (updates only, not the test pass).
    pub seconds: f64,
    /// Training steps (one frame in, one predicted) per second of `seconds`.
    pub frames_per_second: f64,
    /// One-step-ahead predictions of the test frames after the epoch, clipped to [0, 1],
    /// against the true frames: MSE and MAE per pixel, PSNR (dB), SSIM; each the mean over
    /// all predicted frames.
    pub test_mse: f64,
    pub test_mae: f64,
    pub test_psnr: f64,
    pub test_ssim: f64,
    /// Shi et al.'s measure: the binary cross-entropy summed over a test window's predicted
    /// frames and their pixels (predictions clipped to [1e-7, 1 - 1e-7]), mean over windows.
    #[serde(default)]
    pub test_bce: f64,
}

/// Rewrites the whole CSV atomically, so a reader never sees half a row.
pub fn write_csv(path: &Path, rows: &[EpochRow]) -> Result<()> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        writer
            .serialize(row)
            .map_err(|e| Error::Config(e.to_string()))?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| Error::Config(e.to_string()))?;
    crate::files::write_bytes_atomic(path, &bytes)
}

/// Reads rows back from a CSV written by [`write_csv`].
pub fn read_csv(path: &Path) -> Result<Vec<EpochRow>> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| Error::Checkpoint {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    reader
        .deserialize()
        .map(|r| {
            r.map_err(|e| Error::Checkpoint {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
        })
        .collect()
}
