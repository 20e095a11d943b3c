#!/usr/bin/env bash
# The general ConvLSTM (Shi et al.'s shape here: 64x64 frames in 4x4 patches, two layers of 32
# channels, 5x5 kernels, a 1x1 sigmoid head, batches of 16 windows of 20 frames), Rust and
# PyTorch alternating in one run, so that both see the same machine. Seconds per training
# batch (forward, backward through time, Adam); each row is one process's median over its
# timed batches, its first batch (Rust) or warm-up batch (PyTorch) left out.
#
#   cargo build --release -p bench-cli
#   python3 -m venv .venv && .venv/bin/pip install torch numpy
#   bash bench/side_by_side_convlstm.sh [.venv/bin/python] [rounds] [threads]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
ROUNDS=${2:-3}
THREADS=${3:-2}
for round in $(seq "$ROUNDS"); do
    echo "== round $round"
    ./target/release/bench-cli bench --configs convlstm-32x2 --threads "$THREADS" --batches 6 | tail -1 | sed 's/^/rust     /'
    for variant in separate fused; do
        "$PY" bench/torch_convlstm.py --variant "$variant" --threads "$THREADS" --warmup 1 --batches 5 \
            | tail -1 | sed 's/^/pytorch  /'
    done
done
