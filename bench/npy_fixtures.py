"""Writes the .npy files numpy itself makes that crates/frames/tests/npy.rs reads (the
values are a formula of their index, so the test knows them without numpy):

    python bench/npy_fixtures.py crates/frames/tests/fixtures/npy

- frames_first_u8.npy: uint8 [T=2, N=3, H=4, W=5], value at (t, n, y, x) = t*60 + n*20 + y*5 + x;
- sequences_first_f32.npy: float32 [N=2, T=3, C=1, H=2, W=2], value k / 100 at flat index k;
- sequences_first_f64.npy: the same as float64, [N=2, T=3, H=2, W=2] (for --npy-layout nthw).
"""

import sys

import numpy as np


def main(out):
    np.save(f"{out}/frames_first_u8.npy", np.arange(120, dtype=np.uint8).reshape(2, 3, 4, 5))
    values = np.arange(24) / 100
    np.save(f"{out}/sequences_first_f32.npy", values.astype(np.float32).reshape(2, 3, 1, 2, 2))
    np.save(f"{out}/sequences_first_f64.npy", values.astype(np.float64).reshape(2, 3, 2, 2))
    print(f"wrote 3 files into {out}")


if __name__ == "__main__":
    main(sys.argv[1])
