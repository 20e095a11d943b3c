#!/usr/bin/env bash
# Data-parallel training on this machine: the general ConvLSTM configuration
# (`bench-cli bench --configs convlstm-32x2`: 32,32 channels, 4x4 patches, batches of 16
# windows of 20 64x64 frames) on 2 MPI ranks of 1 thread each, against 1 process of 2
# threads, alternating in one run. Seconds per batch are bench's medians; peak memory is
# the largest rank's.
#
#   cargo build --release -p bench-cli --features mpi
#   bash bench/log.sh side-by-side-ranks bash bench/side_by_side_ranks.sh [rounds] [batches]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
BATCHES=${2:-6}
for round in $(seq "$ROUNDS"); do
    echo "== round $round: 1 process x 2 threads"
    ./target/release/bench-cli bench --configs convlstm-32x2 --batches "$BATCHES" --threads 2
    echo "== round $round: 2 ranks x 1 thread"
    ./target/release/bench-cli bench --configs convlstm-32x2 --batches "$BATCHES" --threads 1 --ranks 2
done
