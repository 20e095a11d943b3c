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
    #[serde(with = "metric")]
    pub train_loss: f64,
    /// Mean window loss over the test windows after the epoch's last update.
    #[serde(with = "metric")]
    pub test_loss: f64,
    /// Wall time of the epoch's training (updates only, not the test pass).
    #[serde(with = "metric")]
    pub seconds: f64,
    /// Training steps (one frame in, one predicted) per second of `seconds`.
    #[serde(with = "metric")]
    pub frames_per_second: f64,
    /// One-step-ahead predictions of the test frames after the epoch, clipped to [0, 1],
    /// against the true frames: MSE and MAE per pixel, PSNR (dB), SSIM; each the mean over
    /// all predicted frames.
    #[serde(with = "metric")]
    pub test_mse: f64,
    #[serde(with = "metric")]
    pub test_mae: f64,
    #[serde(with = "metric")]
    pub test_psnr: f64,
    #[serde(with = "metric")]
    pub test_ssim: f64,
    /// Shi et al.'s measure: the binary cross-entropy summed over a test window's predicted
    /// frames and their pixels (predictions clipped to [1e-7, 1 - 1e-7]), mean over windows.
    #[serde(default, with = "metric")]
    pub test_bce: f64,
    /// With a validation split, the window loss on its windows after the epoch, and copy-
    /// last's on the same windows (the columns are absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_copy_last: Option<f64>,
    /// With a validation split: empty, but in the last row of a finished run whether the
    /// model beats copying the last frame on the validation windows, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The learning rate of the epoch's last update, where a schedule moves it (the column
    /// is absent otherwise, as in the seed's CSVs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
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

/// An epoch's figures may be NaN (the SSIM of frames smaller than its window) or infinite
/// (the PSNR of a perfect prediction). JSON has no such numbers: serde_json writes them as
/// `null` and then cannot read them back as numbers, so a training checkpoint holding such
/// a row could not be resumed. They are written as the strings `NaN`, `inf` and `-inf`, as
/// the CSV writes them, and read back from those, from numbers, and from `null` (NaN, as
/// checkpoints of earlier versions hold them). Finite values are written as before.
pub(crate) mod metric {
    use serde::de::{Deserializer, Error, Visitor};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
        match *value {
            v if v.is_finite() => s.serialize_f64(v),
            v if v.is_nan() => s.serialize_str("NaN"),
            v if v > 0.0 => s.serialize_str("inf"),
            _ => s.serialize_str("-inf"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        struct Figure;
        impl Visitor<'_> for Figure {
            type Value = f64;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number, NaN, inf or -inf")
            }
            fn visit_f64<E: Error>(self, v: f64) -> Result<f64, E> {
                Ok(v)
            }
            fn visit_i64<E: Error>(self, v: i64) -> Result<f64, E> {
                Ok(v as f64)
            }
            fn visit_u64<E: Error>(self, v: u64) -> Result<f64, E> {
                Ok(v as f64)
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<f64, E> {
                v.parse()
                    .map_err(|_| E::custom(format!("`{v}` is not a number")))
            }
            fn visit_unit<E: Error>(self) -> Result<f64, E> {
                Ok(f64::NAN)
            }
            fn visit_none<E: Error>(self) -> Result<f64, E> {
                Ok(f64::NAN)
            }
        }
        d.deserialize_any(Figure)
    }
}

/// [`metric`] for a list of figures (per frame ahead).
pub(crate) mod metric_list {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Figure(#[serde(with = "super::metric")] f64);

    pub fn serialize<S: Serializer>(values: &[f64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(values.iter().map(|&v| Figure(v)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        let figures = Vec::<Figure>::deserialize(d)?;
        Ok(figures.into_iter().map(|Figure(v)| v).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> EpochRow {
        EpochRow {
            epoch: 1,
            train_loss: 6.297913408197209,
            test_loss: 5.7215,
            seconds: 0.002,
            frames_per_second: 58790.4,
            test_mse: 0.19784,
            test_mae: 0.41,
            test_psnr: f64::INFINITY,
            test_ssim: f64::NAN,
            test_bce: 6837.3,
            val_loss: None,
            val_copy_last: None,
            note: None,
            lr: None,
        }
    }

    #[test]
    fn a_learning_rate_column_appears_only_with_a_schedule() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.csv");
        write_csv(&path, &[row()]).unwrap();
        let plain = std::fs::read_to_string(&path).unwrap();
        assert!(!plain.contains("lr"), "{plain}");
        let scheduled = EpochRow {
            lr: Some(2.5e-4),
            ..row()
        };
        write_csv(&path, &[scheduled]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().next().unwrap().ends_with(",lr"), "{text}");
        assert_eq!(read_csv(&path).unwrap()[0].lr, Some(2.5e-4));
    }

    /// Bit for bit, NaN included.
    fn same(a: &EpochRow, b: &EpochRow) -> bool {
        let bits = |r: &EpochRow| {
            [
                r.train_loss,
                r.test_loss,
                r.seconds,
                r.frames_per_second,
                r.test_mse,
                r.test_mae,
                r.test_psnr,
                r.test_ssim,
                r.test_bce,
            ]
            .map(f64::to_bits)
        };
        a.epoch == b.epoch && bits(a) == bits(b)
    }

    #[test]
    fn non_finite_figures_survive_json_and_csv() {
        // A linear model on 9x9 frames has a NaN SSIM (its window is 11 wide): the
        // checkpoint that holds the row must still resume.
        let text = serde_json::to_string(&row()).unwrap();
        assert!(text.contains(r#""test_ssim":"NaN""#) && text.contains(r#""test_psnr":"inf""#));
        assert!(same(&serde_json::from_str(&text).unwrap(), &row()));
        let old = text.replace(r#""NaN""#, "null");
        let read: EpochRow = serde_json::from_str(&old).unwrap();
        assert!(read.test_ssim.is_nan());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.csv");
        write_csv(&path, &[row()]).unwrap();
        let csv = std::fs::read_to_string(&path).unwrap();
        // Finite figures are written exactly as the seed's CSVs have them.
        assert!(
            csv.lines().nth(1).unwrap().starts_with(
                "1,6.297913408197209,5.7215,0.002,58790.4,0.19784,0.41,inf,NaN,6837.3"
            ),
            "{csv}"
        );
        let rows = read_csv(&path).unwrap();
        assert!(same(&rows[0], &row()));
    }
}
