"""Reads a TensorBoard log folder with TensorBoard's own reader (EventAccumulator) and prints
what it holds as JSON: {"scalars": {tag: [[step, value], ...]}, "images": {tag: [[step,
width, height], ...]}}. The tests of `bench-cli --tensorboard` compare it with the CSV.

    python3 -m pip install tensorboard
    python3 bench/read_tensorboard.py results/tb
"""

import json
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main(folder):
    acc = EventAccumulator(folder, size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    out = {
        "scalars": {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags["scalars"]},
        "images": {t: [[e.step, e.width, e.height] for e in acc.Images(t)] for t in tags["images"]},
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
