"""Runs a model exported by `bench-cli export` in ONNX Runtime over the windows that
`bench-cli eval --save-predictions DIR` scored (one step ahead: step t reads true frame t,
the states starting at zero) and compares its predictions with bench-cli's own
(DIR/preds.npy). Prints the largest difference relative to the largest prediction and
exits non-zero above --tolerance.

    python3 -m pip install onnxruntime numpy
    bench-cli eval --checkpoint results/conv.safetensors --save-predictions /tmp/p
    bench-cli export --checkpoint results/conv.safetensors -o /tmp/conv.onnx
    python3 bench/onnx_check.py /tmp/conv.onnx /tmp/p
"""

import argparse
import sys

import numpy as np
import onnxruntime as ort


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("predictions", help="the folder eval --save-predictions wrote")
    p.add_argument("--tolerance", type=float, default=1e-5)
    args = p.parse_args()
    preds = np.load(f"{args.predictions}/preds.npy")  # [N, T, C, H, W]
    inputs = np.load(f"{args.predictions}/inputs.npy")  # [N, T, C, H, W]: frames 0 .. T-1
    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    states = [i for i in session.get_inputs() if i.name != "frame"]
    outputs = [o.name for o in session.get_outputs()]
    n, steps = inputs.shape[:2]
    feed = {s.name: np.zeros([n] + list(s.shape[1:]), np.float32) for s in states}
    ours = []
    for t in range(steps):
        feed["frame"] = inputs[:, t]
        result = dict(zip(outputs, session.run(outputs, feed)))
        ours.append(result["prediction"])
        for s in states:
            feed[s.name] = result[f"{s.name}_out"]
    ours = np.stack(ours, 1)
    scale = float(np.abs(preds).max())
    diff = float(np.abs(ours - preds).max()) / scale
    print(f"onnxruntime {ort.__version__}: {n} window(s) of {steps} steps, largest difference "
          f"{diff:.3e} of the largest prediction {scale:.4f}")
    return 0 if diff <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
