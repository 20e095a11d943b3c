#!/usr/bin/env bash
# Shi et al.'s two Moving MNIST shapes, Rust and PyTorch alternating in one run so that both
# see the same machine: the three-layer ConvLSTM of 128, 64 and 64 channels (4x4 patches,
# 5x5 kernels, a 1x1 sigmoid head) and the FC-LSTM of two layers of 2048. Each a training
# batch of 16 windows of 20 64x64 frames (forward, backward through time, Adam), the
# loss as bench-cli's configurations train it (per step the mean squared error, summed over
# the steps, mean over windows). Each row one process's median over its timed batches.
#
#   cargo build --release -p bench-cli
#   python3 -m venv .venv && .venv/bin/pip install torch numpy
#   bash bench/side_by_side_paper_shapes.sh [.venv/bin/python] [rounds] [threads]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
ROUNDS=${2:-3}
THREADS=${3:-2}
for round in $(seq "$ROUNDS"); do
    echo "== round $round"
    ./target/release/bench-cli bench --configs convlstm-128-64-64 --threads "$THREADS" --batches 4 \
        | tail -1 | sed 's/^/rust     /'
    for variant in separate fused; do
        "$PY" bench/torch_convlstm.py --variant "$variant" --hidden 128 64 64 --threads "$THREADS" \
            --warmup 1 --batches 3 | tail -2 | sed 's/^/pytorch  /'
    done
    ./target/release/bench-cli bench --configs fc-2048x2 --threads "$THREADS" --batches 4 \
        | tail -1 | sed 's/^/rust     /'
    "$PY" bench/torch_fc_lstm.py --threads "$THREADS" --warmup 1 --batches 3 | sed 's/^/pytorch  /'
done
