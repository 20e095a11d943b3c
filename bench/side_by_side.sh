#!/usr/bin/env bash
# Rust and PyTorch on the same data and configuration, one after the other in one run, so
# both see the same machine state. Needs the release build and a PyTorch venv:
#   cargo build --release -p bench-cli
#   python3 -m venv .venv && .venv/bin/pip install torch numpy pillow safetensors
#   bash bench/side_by_side.sh [.venv/bin/python]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

echo "== Rust: bench-cli bench (medians exclude the first epoch)"
./target/release/bench-cli bench --conv-epochs 21 --linear-epochs 4

median() { # CSV file: median of the seconds column, first epoch excluded
    tail -n +3 "$1" | cut -d, -f4 | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}
peak() { /usr/bin/time -f "%M" "$@" 2>&1 >/dev/null | tail -1; }

echo "== PyTorch $("$PY" -c 'import torch; print(torch.__version__)')"
for threads in 1 2; do
    kb=$(peak "$PY" bench/torch_reference.py --model conv --epochs 21 --threads "$threads" --csv "$OUT/conv$threads.csv")
    echo "conv, fused gates, $threads thread(s): $(median "$OUT/conv$threads.csv") s/epoch, peak $((kb / 1024)) MiB"
done
"$PY" bench/torch_reference.py --model conv --epochs 11 --threads 1 --separate --csv "$OUT/conv_sep.csv" >/dev/null
echo "conv, seed's eight layers, 1 thread: $(median "$OUT/conv_sep.csv") s/epoch"
kb=$(peak "$PY" bench/torch_reference.py --model linear --epochs 4 --threads 2 --csv "$OUT/linear.csv")
echo "linear, nn.LSTM + nn.Linear, 2 threads: $(median "$OUT/linear.csv") s/epoch, peak $((kb / 1024)) MiB"
