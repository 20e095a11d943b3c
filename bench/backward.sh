#!/usr/bin/env bash
# What a model gains from its fast paths: the seed's ConvLSTM (s/epoch) and Shi et al.'s
# 32x2 ConvLSTM (s/batch of 16) trained with the fastest backward (the slice kernels) and
# with candle's autograd over the forward alone (what a model written in candle ops gets),
# alternated twice so that both see the same machine; peak memory of each run.
#   bash bench/log.sh backward bash bench/backward.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BENCH_CLI:-target/release/bench-cli}
for round in 1 2; do
    for backward in fastest autograd; do
        echo "## round $round, --backward $backward"
        "$bin" bench --configs conv,convlstm-32x2 --conv-epochs 11 --batches 4 --backward "$backward"
    done
done
