#!/usr/bin/env bash
# Trains both seed models with the default flags (as the README made results/reference/)
# and checks that every CSV column but the timing ones is the same, digit for digit, as in
# results/reference/. Usage: bash scripts/check-reference.sh [conv|linear|both] [BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-both}
bin=${2:-./target/release/bench-cli}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Every column but the timing ones (seconds, frames_per_second): epoch, train_loss,
# test_loss, test_mse, test_mae, test_psnr, test_ssim, test_bce and any appended later.
strip() { cut -d, -f1-3,6- "$1"; }
status=0
for model in conv linear; do
    [[ $which == both || $which == "$model" ]] || continue
    "$bin" --model "$model" --out "$out" --quiet --checkpoint-every 0 >/dev/null
    if diff <(strip "results/reference/$model.csv") <(strip "$out/$model.csv"); then
        echo "$model: the same as results/reference/$model.csv"
    else
        echo "$model: DIFFERS from results/reference/$model.csv" >&2
        status=1
    fi
done
exit $status
