#!/usr/bin/env bash
# The seed linear model's training checkpoint: its size, and the peak memory of a run that
# resumes from it against one that trains from scratch (both one epoch; /usr/bin/time's
# maximum resident set, in MiB):
#   cargo build --release -p bench-cli
#   bash bench/log.sh checkpoint bash bench/checkpoint.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=./target/release/bench-cli
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
peak() { # runs "$@", prints its peak resident memory in MiB and its wall time
    /usr/bin/time -f '%M %e' -o "$out/time" "$@" >/dev/null
    awk '{ printf "peak %.0f MiB, wall %.1f s", $1 / 1024, $2 }' "$out/time"
}
echo "fresh, 1 epoch:   $(peak "$bin" --model linear --epochs 1 --quiet --out "$out/run")"
bytes=$(stat -c %s "$out/run/linear.resume.safetensors")
echo "checkpoint linear.resume.safetensors: $bytes bytes ($(awk -v b="$bytes" 'BEGIN { printf "%.0f MiB", b / 1048576 }'))"
echo "resumed, 1 more:  $(peak "$bin" --model linear --epochs 2 --resume --quiet --out "$out/run")"
