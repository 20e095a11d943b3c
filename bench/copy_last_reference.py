"""The copy-last-frame figures the CLI tests expect, computed independently of the Rust
code (numpy, Pillow and scikit-image): predict frame t+1 by frame t on data/'s frames
scaled to [0, 1].

The seed's split: frames 5000..5125 train (126 frames, 5 windows of 26), 5126..5151 test
(one window of 26, 25 predictions). Writes crates/bench-cli/tests/fixtures/copy_last.json:
a few loose figures, then `one_step` and `forecast_21_5` (the test window read for 21
frames, the last 5 forecast by repeating frame 21), each holding every key of the
`copy_last_frame` block of a summary or `eval --json` file, in the same units:

    loss_per_window     one step: the seed's loss, the sum over the 25 steps of the per-step
                        MSE; forecast: the mean over the 5 predicted frames of their MSE
    mse_per_pixel       squared error, mean over pixels and predicted frames
    mae_per_pixel       absolute error, mean over pixels and predicted frames
    mse_sum_per_frame   OpenSTL's MSE: squared error summed over a frame's pixels, mean
                        over frames
    mae_sum_per_frame   OpenSTL's MAE: absolute error summed likewise
    psnr_db_per_frame   10 log10(1 / frame MSE), capped at 100 dB, mean over frames
    ssim_per_frame      skimage structural_similarity(gaussian_weights=True, sigma=1.5,
                        use_sample_covariance=False, data_range=1.0), mean over frames
    bce_per_frame       -sum(t ln p + (1 - t) ln(1 - p)) over a frame's pixels, p clipped to
                        [1e-7, 1 - 1e-7], mean over frames
    bce_per_window      the same summed over a window's predicted frames, mean over windows

Install and run (from the repository root):

    python3 -m venv .venv && .venv/bin/pip install numpy pillow scikit-image
    .venv/bin/python bench/copy_last_reference.py
"""
import json
import pathlib

import numpy as np
from PIL import Image
from skimage.metrics import structural_similarity

PSNR_CAP_DB = 100.0
BCE_EPS = 1e-7

root = pathlib.Path(__file__).resolve().parent.parent
data = root / "data"
x = np.stack(
    [np.asarray(Image.open(data / f"{i}.png"), dtype=np.float64) / 255 for i in range(5000, 5152)]
)
train, test = x[:126], x[126:]


def figures(predicted, truth, loss):
    """Every figure of predicted frames [N, H, W] against truth [N, H, W] of one window."""
    err = predicted - truth
    frame_mse = (err**2).mean(axis=(1, 2))
    psnr = np.minimum(-10 * np.log10(frame_mse), PSNR_CAP_DB)
    ssim = [
        structural_similarity(
            t, p, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0
        )
        for p, t in zip(predicted, truth)
    ]
    p = np.clip(predicted, BCE_EPS, 1 - BCE_EPS)
    bce = -(truth * np.log(p) + (1 - truth) * np.log(1 - p)).sum(axis=(1, 2))
    return {
        "windows": 1,
        "predicted_frames_per_window": len(predicted),
        "loss_per_window": float(loss(frame_mse)),
        "mse_per_pixel": float(frame_mse.mean()),
        "mae_per_pixel": float(np.abs(err).mean()),
        "mse_sum_per_frame": float((err**2).sum(axis=(1, 2)).mean()),
        "mae_sum_per_frame": float(np.abs(err).sum(axis=(1, 2)).mean()),
        "psnr_db_per_frame": float(psnr.mean()),
        "ssim_per_frame": float(np.mean(ssim)),
        "bce_per_frame": float(bce.mean()),
        "bce_per_window": float(bce.sum()),
        "per_frame_ahead": {
            "mse_per_pixel": frame_mse.tolist(),
            "mae_per_pixel": np.abs(err).mean(axis=(1, 2)).tolist(),
            "psnr_db": psnr.tolist(),
            "ssim": [float(s) for s in ssim],
            "bce_per_frame": bce.tolist(),
        },
    }


one_step = figures(test[:-1], test[1:], loss=np.sum)
del one_step["per_frame_ahead"]  # one step ahead has no frames ahead
context, horizon = 21, 5
forecast = figures(np.repeat(test[context - 1 : context], horizon, axis=0), test[context:], loss=np.mean)
out = {
    "all_frames_mean_abs_difference": float(np.abs(np.diff(x, axis=0)).mean()),
    "source": "bench/copy_last_reference.py (numpy, Pillow, scikit-image) on data/5000.png .. 5151.png",
    "test_frames": "5126..5151",
    "test_mse": one_step["mse_per_pixel"],
    "test_mae": one_step["mae_per_pixel"],
    "train_frames": "5000..5125",
    "train_mse": float(((train[1:] - train[:-1]) ** 2).mean()),
    "one_step": one_step,
    "forecast_21_5": forecast,
}
path = root / "crates/bench-cli/tests/fixtures/copy_last.json"
path.write_text(json.dumps(out, indent=2) + "\n")
print(json.dumps(out, indent=2))
