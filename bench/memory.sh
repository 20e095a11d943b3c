#!/usr/bin/env bash
# The memory estimate a run prints first against the peak it prints last, both in MiB, for
# runs where the frames, the weights or the activations dominate (one epoch each):
#   cargo build --release -p bench-cli
#   bash bench/log.sh memory bash bench/memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=./target/release/bench-cli
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
run() {
    local name=$1
    shift
    local said estimate peak
    said=$("$bin" "$@" --epochs 1 --quiet --checkpoint-every 0 --out "$out/$name")
    estimate=$(sed -n 's/^memory: about \([0-9]*\) MiB needed.*/\1/p' <<<"$said")
    peak=$(sed -n 's/^peak memory: \([0-9]*\) MiB$/\1/p' <<<"$said")
    printf '%-28s estimate %6s MiB  peak %6s MiB  ratio %s\n' "$name" "$estimate" "$peak" \
        "$(awk -v e="$estimate" -v p="$peak" 'BEGIN { printf "%.2f", e / p }')"
    echo "    bench-cli $*"
}
run seed-conv --model conv
run seed-linear --model linear
run convlstm-16x2-batch16 --model conv --hidden-channels 16,16 --head conv1x1 --batch-size 16
run mmnist-convlstm-32x2 --model conv --data moving-mnist --sequences 250 --test-sequences 50 \
    --context 10 --horizon 10 --patch 4 --hidden-channels 32,32 --head conv1x1 --batch-size 16
run mmnist-3100-seed-conv --model conv --data moving-mnist --sequences 3100 --test-sequences 50
