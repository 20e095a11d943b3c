"""Recomputes an evaluation's figures from the frames `bench-cli eval --save-predictions DIR`
wrote (preds.npy, trues.npy: float32 [N, T, C, H, W]) with numpy alone, in the units of the
`eval --json` keys, and prints them as JSON:

    python bench/recompute_figures.py DIR

mse_per_pixel: squared error of the predictions clipped to [0, 1], mean over pixels and
frames; mae_per_pixel: the same for absolute errors; bce_per_window: -sum(t ln p + (1 - t)
ln(1 - p)) over a window's predicted frames and pixels, p clipped to [1e-7, 1 - 1e-7], mean
over windows; mse_sum_per_frame: OpenSTL's MSE, squared error summed over a frame's pixels,
mean over frames and sequences.
"""

import json
import sys

import numpy as np


def main(folder):
    preds = np.load(f"{folder}/preds.npy").astype(np.float64)
    trues = np.load(f"{folder}/trues.npy").astype(np.float64)
    clipped = np.clip(preds, 0.0, 1.0)
    p = np.clip(preds, 1e-7, 1 - 1e-7)
    bce = -(trues * np.log(p) + (1 - trues) * np.log(1 - p))
    print(
        json.dumps(
            {
                "windows": preds.shape[0],
                "mse_per_pixel": float(((clipped - trues) ** 2).mean()),
                "mae_per_pixel": float(np.abs(clipped - trues).mean()),
                "bce_per_window": float(bce.sum(axis=(1, 2, 3, 4)).mean()),
                "mse_sum_per_frame": float(((clipped - trues) ** 2).sum(axis=(2, 3, 4)).mean()),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
