"""scikit-image reference values of image metrics (MSE, MAE, PSNR, SSIM) for a fixed set
of image pairs, for testing the Rust implementation against.

Install:

    pip install numpy pillow scikit-image

Run from the repository root, e.g.:

    .venv/bin/python bench/metrics_reference.py
    .venv/bin/python bench/metrics_reference.py --explain   # also the SSIM kernel and a
                                                            # plain-numpy re-derivation

Images are the 65x65 8-bit grey PNGs in data/, read as float64 values / 255. Pairs (A, B):

    next_frame     A = 5126.png, B = 5127.png
    shift_right_1  A = 5126.png, B = A shifted right by one pixel
                   (B[:, 1:] = A[:, :-1], B[:, 0] = A[:, 0])
    far_frames     A = 5000.png, B = 5150.png
    identical      A = 5126.png, B = A
    affine         A = 5126.png, B = clip(0.8 * A + 0.1, 0, 1)
    crop_20x45     A = 5126.png[10:30, 5:50], B = 5127.png[10:30, 5:50] (20 rows, 45 columns)

Output: a comment line with the library versions, then one line per pair,
`name mse mae psnr ssim`, each number with 17 significant digits, where

    mse  = mean((A - B)^2)
    mae  = mean(|A - B|)
    psnr = skimage.metrics.peak_signal_noise_ratio(A, B, data_range=1.0)   (inf if A == B)
    ssim = skimage.metrics.structural_similarity(A, B, gaussian_weights=True, sigma=1.5,
               use_sample_covariance=False, data_range=1.0)

What scikit-image's SSIM does with these arguments (skimage/metrics/_structural_similarity.py):
the local means ux, uy and second moments uxx, uyy, uxy are scipy.ndimage.gaussian_filter of
A, B, A*A, B*B, A*B with sigma 1.5, truncate 3.5 (radius int(3.5 * 1.5 + 0.5) = 5, an 11-tap
kernel exp(-x^2 / (2 sigma^2)) normalised to sum 1 over x = -5..5, applied separably) and
mode 'reflect' (edge sample repeated: d c b a | a b c d). vx = uxx - ux^2, vy = uyy - uy^2,
vxy = uxy - ux*uy (no N/(N-1) factor when use_sample_covariance=False), C1 = (0.01 * 1)^2,
C2 = (0.03 * 1)^2, S = (2 ux uy + C1)(2 vxy + C2) / ((ux^2 + uy^2 + C1)(vx + vy + C2)), and
the result is the mean of S after cropping 5 pixels (= (11 - 1) // 2) off every border.
"""

import argparse
import os
import sys

import numpy as np
from PIL import Image
import skimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def load(data_dir, name):
    img = np.asarray(Image.open(os.path.join(data_dir, f"{name}.png")).convert("L"))
    return img.astype(np.float64) / 255.0


def pairs(data_dir):
    a = load(data_dir, "5126")
    b = load(data_dir, "5127")
    shifted = a.copy()
    shifted[:, 1:] = a[:, :-1]
    shifted[:, 0] = a[:, 0]
    return [
        ("next_frame", a, b),
        ("shift_right_1", a, shifted),
        ("far_frames", load(data_dir, "5000"), load(data_dir, "5150")),
        ("identical", a, a.copy()),
        ("affine", a, np.clip(a * 0.8 + 0.1, 0.0, 1.0)),
        ("crop_20x45", a[10:30, 5:50].copy(), b[10:30, 5:50].copy()),
    ]


def metrics(a, b):
    mse = float(np.mean((a - b) ** 2))
    mae = float(np.mean(np.abs(a - b)))
    with np.errstate(divide="ignore"):
        psnr = float(peak_signal_noise_ratio(a, b, data_range=1.0))
    ssim = float(
        structural_similarity(
            a,
            b,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
        )
    )
    return mse, mae, psnr, ssim


# ---- --explain: the same SSIM written out with numpy only --------------------------------


def gaussian_taps(sigma=1.5, truncate=3.5):
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 / (sigma * sigma) * x**2)
    return w / w.sum()


def blur(img, taps):
    r = len(taps) // 2
    out = img
    for axis in (0, 1):
        padded = np.pad(out, [(r, r) if ax == axis else (0, 0) for ax in (0, 1)],
                        mode="symmetric")  # scipy.ndimage mode 'reflect'
        n = out.shape[axis]
        acc = np.zeros_like(out)
        for k, w in enumerate(taps):
            sl = [slice(None), slice(None)]
            sl[axis] = slice(k, k + n)
            acc += w * padded[tuple(sl)]
        out = acc
    return out


def ssim_numpy(a, b, sigma=1.5, k1=0.01, k2=0.03, data_range=1.0):
    taps = gaussian_taps(sigma)
    ux, uy = blur(a, taps), blur(b, taps)
    vx = blur(a * a, taps) - ux * ux
    vy = blur(b * b, taps) - uy * uy
    vxy = blur(a * b, taps) - ux * uy
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    pad = len(taps) // 2
    return float(s[pad:-pad, pad:-pad].mean())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data", help="folder with the PNG frames")
    ap.add_argument("--explain", action="store_true",
                    help="also print the 11 Gaussian taps and a numpy-only SSIM per pair")
    args = ap.parse_args()

    print(f"# scikit-image {skimage.__version__} numpy {np.__version__}")
    results = []
    for name, a, b in pairs(args.data):
        mse, mae, psnr, ssim = metrics(a, b)
        results.append((name, a, b, ssim))
        print(f"{name} {mse:.17g} {mae:.17g} {psnr:.17g} {ssim:.17g}")

    if args.explain:
        taps = gaussian_taps()
        print("# gaussian taps (sigma 1.5, truncate 3.5): "
              + " ".join(f"{w:.17g}" for w in taps))
        worst = 0.0
        for name, a, b, ssim in results:
            mine = ssim_numpy(a, b)
            worst = max(worst, abs(mine - ssim))
            print(f"# {name} numpy_ssim {mine:.17g} diff {mine - ssim:.3g}")
        if worst > 1e-12:
            print(f"# numpy re-derivation disagrees with scikit-image by {worst:.3g}",
                  file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
