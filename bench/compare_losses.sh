#!/usr/bin/env bash
# Trains one seed model in PyTorch (bench/torch_reference.py) and in bench-cli from the same
# initial weights, and prints the largest relative difference of the per-epoch train and
# test losses, for the fused and the separate (--separate, the seed's eight gate layers)
# PyTorch models. What BENCHMARKS.md's "agree with PyTorch" figures come from.
# Usage: bash bench/compare_losses.sh conv|linear EPOCHS [PYTHON] [BENCH_CLI] [--hidden N]
#   e.g. bash bench/compare_losses.sh conv 10 .venv/bin/python
#        bash bench/compare_losses.sh linear 2 .venv/bin/python
#        bash bench/compare_losses.sh linear 3 .venv/bin/python ./target/release/bench-cli --hidden 64
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?conv or linear}
epochs=${2:?epochs}
python=${3:-python3}
bin=${4:-./target/release/bench-cli}
shift $(($# < 4 ? $# : 4))
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$python" bench/torch_reference.py --model "$model" --epochs "$epochs" "$@" \
    --save-init "$work/init.safetensors" --csv "$work/torch.csv" >/dev/null
"$python" bench/torch_reference.py --model "$model" --epochs "$epochs" "$@" --separate \
    --init-from "$work/init.safetensors" --csv "$work/torch-separate.csv" >/dev/null
"$bin" --model "$model" --epochs "$epochs" "$@" --init-from "$work/init.safetensors" \
    --out "$work/rust" --quiet --checkpoint-every 0 >/dev/null

for torch in torch torch-separate; do
    "$python" - "$work/rust/$model.csv" "$work/$torch.csv" "$model" "$torch" <<'EOF'
import csv, sys
rust, torch = ([r for r in csv.DictReader(open(f))] for f in sys.argv[1:3])
assert len(rust) == len(torch), (len(rust), len(torch))
worst = 0.0
for a, b in zip(rust, torch):
    for col in ("train_loss", "test_loss"):
        x, y = float(a[col]), float(b[col])
        worst = max(worst, abs(x - y) / abs(y))
print(f"{sys.argv[3]}: bench-cli against {sys.argv[4]}.py over {len(rust)} epochs: "
      f"largest relative difference of train/test loss {worst:.2e}")
EOF
done
