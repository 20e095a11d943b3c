#!/usr/bin/env bash
# Memory under candle's autograd stays bounded over windows: the seed's ConvLSTM trained
# with --backward autograd for 3, 30 and 60 epochs (15 to 300 windows); its peak memory.
#   bash bench/log.sh autograd-memory bash bench/autograd_memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BENCH_CLI:-target/release/bench-cli}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for epochs in 3 30 60; do
    echo "## --epochs $epochs"
    "$bin" --model conv --epochs "$epochs" --backward autograd --checkpoint-every 0 --quiet \
        --out "$out/$epochs" | grep -E '^(memory|peak)'
done
