//! Image metrics of next-frame predictions, as the video-prediction literature reports
//! them (OpenSTL, PredRNN): MSE and MAE per pixel, PSNR and SSIM, each per frame, then
//! averaged over frames. Values are on the [0, 1] scale (data range 1).
//!
//! SSIM follows Wang et al. 2004 as scikit-image computes it with
//! `structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
//! use_sample_covariance=False, data_range=1.0)`: an 11x11 Gaussian window (sigma 1.5,
//! truncated at 3.5 sigma), `K1 = 0.01`, `K2 = 0.03`, population (not sample) variances,
//! and the mean taken over pixels at least 5 from every border, where the window lies
//! wholly inside the frame (so scikit-image's border handling never enters).

use serde::{Deserialize, Serialize};

/// The four metrics of one prediction, or their mean over many.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct FrameMetrics {
    /// Mean squared error per pixel.
    pub mse: f64,
    /// Mean absolute error per pixel.
    pub mae: f64,
    /// Peak signal-to-noise ratio in dB, data range 1: `10 log10(1 / mse)`, capped at
    /// [`PSNR_CAP_DB`] so that an exact frame keeps every mean finite.
    pub psnr: f64,
    /// Structural similarity, 1 for a perfect prediction.
    pub ssim: f64,
    /// Binary cross-entropy summed over the frame's values (Shi et al.'s measure on Moving
    /// MNIST, summed over a sequence's predicted frames there): `-(t ln p + (1-t) ln(1-p))`
    /// with the prediction clipped to `[BCE_EPS, 1 - BCE_EPS]`.
    #[serde(default)]
    pub bce: f64,
}

/// How far predictions are kept from 0 and 1 in the cross-entropy.
pub const BCE_EPS: f64 = 1e-7;

impl FrameMetrics {
    /// Metrics of `prediction` against `truth`, both `[C, H, W]` flattened. The prediction
    /// is clipped to [0, 1] first (the conv model's `h` lies in (-1, 1)). SSIM is the mean
    /// over channels.
    pub fn of(
        prediction: &[f32],
        truth: &[f32],
        channels: usize,
        height: usize,
        width: usize,
    ) -> FrameMetrics {
        assert_eq!(
            prediction.len(),
            channels * height * width,
            "prediction is not [C, H, W]"
        );
        assert_eq!(
            truth.len(),
            prediction.len(),
            "truth and prediction differ in size"
        );
        let clipped: Vec<f64> = prediction
            .iter()
            .map(|&p| (p as f64).clamp(0.0, 1.0))
            .collect();
        let truth: Vec<f64> = truth.iter().map(|&t| t as f64).collect();
        let n = truth.len() as f64;
        let mse = clipped
            .iter()
            .zip(&truth)
            .map(|(p, t)| (p - t) * (p - t))
            .sum::<f64>()
            / n;
        let mae = clipped
            .iter()
            .zip(&truth)
            .map(|(p, t)| (p - t).abs())
            .sum::<f64>()
            / n;
        let plane = height * width;
        let ssim = (0..channels)
            .map(|c| {
                let range = c * plane..(c + 1) * plane;
                ssim(&truth[range.clone()], &clipped[range], height, width)
            })
            .sum::<f64>()
            / channels as f64;
        let bce = clipped
            .iter()
            .zip(&truth)
            .map(|(&p, &t)| {
                let p = p.clamp(BCE_EPS, 1.0 - BCE_EPS);
                -(t * p.ln() + (1.0 - t) * (1.0 - p).ln())
            })
            .sum();
        FrameMetrics {
            mse,
            mae,
            psnr: psnr(mse),
            ssim,
            bce,
        }
    }

    /// The mean of each metric over `all` (PSNR averaged in dB, as per-frame PSNR is).
    pub fn mean(all: &[FrameMetrics]) -> FrameMetrics {
        let n = all.len().max(1) as f64;
        let sum = |f: fn(&FrameMetrics) -> f64| all.iter().map(f).sum::<f64>() / n;
        FrameMetrics {
            mse: sum(|m| m.mse),
            mae: sum(|m| m.mae),
            psnr: sum(|m| m.psnr),
            ssim: sum(|m| m.ssim),
            bce: sum(|m| m.bce),
        }
    }
}

/// The highest PSNR a frame is given, in dB: that of an MSE of 1e-10 per pixel. A frame
/// predicted exactly (copy-last on Moving MNIST when both digits rest at a bounce) would
/// otherwise have an infinite PSNR and make every mean over frames infinite. The cap
/// changes no frame with any error an 8-bit frame can show: one grey level in one pixel of
/// a 64x64 frame is an MSE of 3.8e-9, 84.3 dB.
pub const PSNR_CAP_DB: f64 = 100.0;

/// PSNR in dB for data range 1: `10 log10(1 / mse)`, at most [`PSNR_CAP_DB`] (reached at
/// `mse <= 1e-10`, an exact prediction included).
pub fn psnr(mse: f64) -> f64 {
    let db = -10.0 * mse.log10();
    // A NaN MSE stays NaN (min would hide it).
    if db > PSNR_CAP_DB {
        PSNR_CAP_DB
    } else {
        db
    }
}

/// Standard deviation of the Gaussian window.
const SIGMA: f64 = 1.5;
/// The window reaches `truncate * sigma` (rounded) from its centre: scikit-image's 3.5.
const TRUNCATE: f64 = 3.5;
/// SSIM's stabilising constants, for data range 1: `C1 = (0.01)^2`, `C2 = (0.03)^2`.
const C1: f64 = 0.01 * 0.01;
const C2: f64 = 0.03 * 0.03;

/// The normalised 1-D Gaussian taps, `2r + 1` of them, `r = int(3.5 * 1.5 + 0.5) = 5`.
fn gaussian_taps() -> Vec<f64> {
    let radius = (TRUNCATE * SIGMA + 0.5) as i64;
    let taps: Vec<f64> = (-radius..=radius)
        .map(|x| (-0.5 * (x * x) as f64 / (SIGMA * SIGMA)).exp())
        .collect();
    let total: f64 = taps.iter().sum();
    taps.into_iter().map(|t| t / total).collect()
}

/// Mean SSIM of two `[H, W]` images on the [0, 1] scale. Images smaller than the 11x11
/// window in either direction have no interior: their SSIM is NaN (scikit-image refuses
/// them).
pub fn ssim(a: &[f64], b: &[f64], height: usize, width: usize) -> f64 {
    assert_eq!(a.len(), height * width);
    assert_eq!(b.len(), height * width);
    let taps = gaussian_taps();
    let r = taps.len() / 2;
    if height < taps.len() || width < taps.len() {
        return f64::NAN;
    }
    // Weighted local means of a, b, a^2, b^2, ab over the interior.
    let (ih, iw) = (height - 2 * r, width - 2 * r);
    let inputs: [Vec<f64>; 5] = [
        a.to_vec(),
        b.to_vec(),
        a.iter().map(|x| x * x).collect(),
        b.iter().map(|x| x * x).collect(),
        a.iter().zip(b).map(|(x, y)| x * y).collect(),
    ];
    let filtered: Vec<Vec<f64>> = inputs
        .iter()
        .map(|img| {
            // Rows first, for every row and the interior columns: [H, iw].
            let mut rows = vec![0f64; height * iw];
            for y in 0..height {
                for x in 0..iw {
                    let src = &img[y * width + x..][..taps.len()];
                    rows[y * iw + x] = src.iter().zip(&taps).map(|(v, t)| v * t).sum();
                }
            }
            // Then columns, for the interior rows: [ih, iw].
            let mut out = vec![0f64; ih * iw];
            for y in 0..ih {
                for x in 0..iw {
                    out[y * iw + x] = (0..taps.len())
                        .map(|k| rows[(y + k) * iw + x] * taps[k])
                        .sum();
                }
            }
            out
        })
        .collect();
    let [ux, uy, uxx, uyy, uxy] = [0, 1, 2, 3, 4].map(|k| &filtered[k]);
    let mut total = 0f64;
    for i in 0..ih * iw {
        let (mx, my) = (ux[i], uy[i]);
        let vx = uxx[i] - mx * mx;
        let vy = uyy[i] - my * my;
        let vxy = uxy[i] - mx * my;
        total +=
            ((2.0 * mx * my + C1) * (2.0 * vxy + C2)) / ((mx * mx + my * my + C1) * (vx + vy + C2));
    }
    total / (ih * iw) as f64
}
