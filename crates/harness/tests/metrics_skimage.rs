//! Image metrics against scikit-image 0.26.0 on frames of `data/`.
//!
//! The reference values were printed by `bench/metrics_reference.py` (run it to regenerate
//! them); SSIM there is `structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
//! use_sample_covariance=False, data_range=1.0)`, PSNR `peak_signal_noise_ratio(a, b,
//! data_range=1.0)`.

// The reference values are pasted as the script printed them (%.17g, round-trip form).
#![allow(clippy::excessive_precision)]

use std::path::Path;

use harness::metrics::{ssim, FrameMetrics};

/// `(name, mse, mae, psnr, ssim)` as the script printed them.
const REFERENCE: [(&str, f64, f64, f64, f64); 6] = [
    (
        "next_frame",
        0.0057486929242053005,
        0.014178907065784891,
        22.404308892814836,
        0.89764361857287722,
    ),
    (
        "shift_right_1",
        0.0080014960108651893,
        0.039755888154078198,
        20.968288069426897,
        0.73954735269528449,
    ),
    (
        "far_frames",
        0.0083705338638530025,
        0.022549251653324054,
        20.772468422777575,
        0.84611573004240015,
    ),
    ("identical", 0.0, 0.0, f64::INFINITY, 1.0),
    (
        "affine",
        0.0014403945319164909,
        0.032830815639865417,
        28.415185359837587,
        0.9798973128273567,
    ),
    (
        "crop_20x45",
        0.0091987867914050166,
        0.022623093681917211,
        20.362694470611689,
        0.91413309945795684,
    ),
];

/// A frame of `data/` as float64 `value / 255`, `[65, 65]`.
fn frame(n: u32) -> Vec<f64> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../data/{n}.png"));
    let image = frames::decode(&path).unwrap().to_luma8();
    image.as_raw().iter().map(|&v| v as f64 / 255.0).collect()
}

/// The script's six pairs: `(a, b, height, width)`, `a` the truth.
fn pairs() -> Vec<(Vec<f64>, Vec<f64>, usize, usize)> {
    let a = frame(5126);
    let mut shifted = a.clone();
    for y in 0..65 {
        for x in (1..65).rev() {
            shifted[y * 65 + x] = a[y * 65 + x - 1];
        }
    }
    let affine = a.iter().map(|v| (v * 0.8 + 0.1).clamp(0.0, 1.0)).collect();
    let crop = |img: &[f64]| -> Vec<f64> {
        (10..30)
            .flat_map(|y| (5..50).map(move |x| (y, x)))
            .map(|(y, x)| img[y * 65 + x])
            .collect()
    };
    vec![
        (a.clone(), frame(5127), 65, 65),
        (a.clone(), shifted, 65, 65),
        (frame(5000), frame(5150), 65, 65),
        (a.clone(), a.clone(), 65, 65),
        (a.clone(), affine, 65, 65),
        (crop(&a), crop(&frame(5127)), 20, 45),
    ]
}

#[test]
fn ssim_matches_scikit_image_to_1e_12() {
    for ((a, b, h, w), (name, _, _, _, want)) in pairs().into_iter().zip(REFERENCE) {
        let got = ssim(&a, &b, h, w);
        println!("{name}: ssim {got} (scikit-image {want})");
        assert!((got - want).abs() < 1e-12, "{name}: {got} vs {want}");
    }
}

#[test]
fn frame_metrics_of_f32_frames_match_scikit_image() {
    // The harness sees frames as f32; the issue asks for agreement within 1e-4.
    for ((a, b, h, w), (name, mse, mae, psnr, ssim)) in pairs().into_iter().zip(REFERENCE) {
        let a32: Vec<f32> = a.iter().map(|&v| v as f32).collect();
        let b32: Vec<f32> = b.iter().map(|&v| v as f32).collect();
        let m = FrameMetrics::of(&b32, &a32, 1, h, w);
        println!("{name}: {m:?}");
        assert!(
            (m.mse - mse).abs() <= 1e-6 * mse.max(1e-12),
            "{name} mse {m:?}"
        );
        assert!(
            (m.mae - mae).abs() <= 1e-6 * mae.max(1e-12),
            "{name} mae {m:?}"
        );
        if psnr.is_infinite() {
            // scikit-image's PSNR of an exact frame is infinite; ours is capped.
            assert_eq!(m.psnr, harness::metrics::PSNR_CAP_DB, "{name}");
        } else {
            assert!((m.psnr - psnr).abs() < 1e-5, "{name} psnr {m:?}");
        }
        assert!((m.ssim - ssim).abs() < 1e-6, "{name} ssim {m:?}");
    }
}
