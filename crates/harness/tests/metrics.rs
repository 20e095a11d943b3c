//! Image metrics against hand-worked cases.

use harness::metrics::{psnr, ssim, FrameMetrics, PSNR_CAP_DB};

fn ramp(h: usize, w: usize) -> Vec<f32> {
    (0..h * w)
        .map(|i| ((i % w) as f32 * 7.0 + (i / w) as f32 * 3.0) % 17.0 / 17.0)
        .collect()
}

#[test]
fn identical_frames_are_perfect() {
    let a = ramp(20, 24);
    let m = FrameMetrics::of(&a, &a, 1, 20, 24);
    assert_eq!(m.mse, 0.0);
    assert_eq!(m.mae, 0.0);
    assert_eq!(m.psnr, PSNR_CAP_DB);
    assert!((m.ssim - 1.0).abs() < 1e-12, "{}", m.ssim);
}

#[test]
fn constant_offset_by_hand() {
    // Every pixel off by 0.1: MSE 0.01, MAE 0.1, PSNR 20 dB.
    let a = vec![0.5f32; 16 * 16];
    let b = vec![0.6f32; 16 * 16];
    let m = FrameMetrics::of(&b, &a, 1, 16, 16);
    assert!(
        (m.mse - 0.01).abs() < 1e-8 && (m.mae - 0.1).abs() < 1e-7,
        "{m:?}"
    );
    assert!((m.psnr - 20.0).abs() < 1e-5, "{m:?}");
    // Flat images: variances and covariance are 0, so SSIM is the luminance term alone,
    // (2 * 0.5 * 0.6 + C1) / (0.5^2 + 0.6^2 + C1) with C1 = 1e-4.
    let want = (2.0 * 0.5 * 0.6 + 1e-4) / (0.25 + 0.36 + 1e-4);
    assert!((m.ssim - want).abs() < 1e-6, "{} vs {want}", m.ssim);
}

#[test]
fn predictions_are_clipped_to_the_unit_interval() {
    let truth = vec![0.0f32; 12 * 12];
    let prediction = vec![-0.7f32; 12 * 12];
    let m = FrameMetrics::of(&prediction, &truth, 1, 12, 12);
    assert_eq!(m.mse, 0.0);
}

#[test]
fn psnr_of_known_errors() {
    assert_eq!(psnr(0.0), 100.0);
    assert_eq!(psnr(1e-12), 100.0);
    assert!(psnr(f64::NAN).is_nan());
    assert!((psnr(1e-3) - 30.0).abs() < 1e-12);
    // Just above the cap's MSE, the formula itself.
    assert!((psnr(2e-10) - 96.98970004336019).abs() < 1e-9);
    assert!((psnr(0.5) - 3.010299956639812).abs() < 1e-12);
}

#[test]
fn an_exact_frame_keeps_the_mean_psnr_finite() {
    // Two frames: one exact (as copy-last is on Moving MNIST when both digits rest at a
    // bounce), one off by 0.1 everywhere (20 dB). The mean is (100 + 20) / 2, not infinite.
    let truth = vec![0.5f32; 16 * 16];
    let off = vec![0.6f32; 16 * 16];
    let frames = [
        FrameMetrics::of(&truth, &truth, 1, 16, 16),
        FrameMetrics::of(&off, &truth, 1, 16, 16),
    ];
    let mean = FrameMetrics::mean(&frames);
    assert!((mean.psnr - 60.0).abs() < 1e-5, "{mean:?}");
}

#[test]
fn ssim_is_symmetric_below_one_and_too_small_is_nan() {
    let a: Vec<f64> = ramp(15, 15).iter().map(|&v| v as f64).collect();
    let b: Vec<f64> = a.iter().map(|v| (v * 0.7 + 0.2).min(1.0)).collect();
    let ab = ssim(&a, &b, 15, 15);
    let ba = ssim(&b, &a, 15, 15);
    assert!((ab - ba).abs() < 1e-12 && ab < 1.0 && ab > 0.0, "{ab} {ba}");
    assert!(ssim(&a[..100], &b[..100], 10, 10).is_nan());
}
