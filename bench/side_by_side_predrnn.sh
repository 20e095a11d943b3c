#!/usr/bin/env bash
# PredRNN (two spatiotemporal LSTM layers of 32 channels, 5x5 kernels, 64x64 frames in 4x4
# patches, a 1x1 sigmoid head, batches of 16 windows of 20 frames, the squared error, Adam),
# bench-cli and PyTorch (bench/torch_predrnn_speed.py, the same model as OpenSTL's cell)
# alternating in one run. Seconds per training batch: bench-cli's from its CSV (data/ at
# 64x64 makes one batch of 16 windows an epoch), its first epoch left out; PyTorch's the
# median of its timed batches after one warm-up batch.
#
#   cargo build --release -p bench-cli
#   bash bench/side_by_side_predrnn.sh [python] [rounds] [threads]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-/work/torch-venv/bin/python}
ROUNDS=${2:-3}
THREADS=${3:-1}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for round in $(seq "$ROUNDS"); do
    echo "== round $round"
    rm -rf "$out/run"
    ./target/release/bench-cli --model predrnn --size 64 --seq-len 20 --stride 7 --batch-size 16 \
        --patch 4 --hidden-channels 32,32 --kernel 5 --head conv1x1-sigmoid --epochs 4 \
        --validation off --threads "$THREADS" --quiet --out "$out/run" | grep -E "peak memory"
    python3 - "$out/run/predrnn.csv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
s = [float(r["seconds"]) for r in rows[1:]]
print(f"rust     predrnn 2x32: {statistics.median(s):.3f} s/batch median ({min(s):.3f} - {max(s):.3f}) over {len(s)} batches")
PY
    "$PY" bench/torch_predrnn_speed.py --threads "$THREADS" --warmup 1 --batches 3 | sed 's/^/pytorch  /'
done
