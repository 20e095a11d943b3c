"""The copy-last-frame figures the CLI tests expect, computed independently of the Rust
code (numpy and Pillow): predict frame t+1 by frame t on data/'s frames scaled to [0, 1].

The seed's split: frames 5000..5125 train (126 frames, 5 windows of 26), 5126..5151 test
(one window of 26, 25 predictions). Writes crates/bench-cli/tests/fixtures/copy_last.json.

    python bench/copy_last_reference.py
"""
import json
import pathlib

import numpy as np
from PIL import Image

root = pathlib.Path(__file__).resolve().parent.parent
data = root / "data"
x = np.stack(
    [np.asarray(Image.open(data / f"{i}.png"), dtype=np.float64) / 255 for i in range(5000, 5152)]
)
train, test = x[:126], x[126:]
figures = {
    "all_frames_mean_abs_difference": float(np.abs(np.diff(x, axis=0)).mean()),
    "source": "bench/copy_last_reference.py (numpy, Pillow) on data/5000.png .. 5151.png",
    "test_frames": "5126..5151",
    "test_mse": float(((test[1:] - test[:-1]) ** 2).mean()),
    "test_mae": float(np.abs(test[1:] - test[:-1]).mean()),
    "train_frames": "5000..5125",
    "train_mse": float(((train[1:] - train[:-1]) ** 2).mean()),
}
out = root / "crates/bench-cli/tests/fixtures/copy_last.json"
out.write_text(json.dumps(figures, indent=2) + "\n")
print(json.dumps(figures, indent=2))
