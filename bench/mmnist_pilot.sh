#!/usr/bin/env bash
# Short runs that choose the Moving MNIST ConvLSTM's shape for the 3-hour budget: each
# candidate trains for the same number of updates (160 batches of 16 sequences, one epoch
# of 2,560) with the paper's cross-entropy, then is evaluated on 500 held-out sequences.
# What each costs per update and where it stands after them is the trade the budget asks
# for. Usage: bash bench/log.sh mmnist-pilot bash bench/mmnist_pilot.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/bench-cli
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
common=(--model conv --data moving-mnist --sequences 2560 --test-sequences 500 --context 10
    --horizon 10 --patch 4 --kernel 5 --head conv1x1-sigmoid --loss bce --batch-size 16
    --shuffle --epochs 1 --quiet)
for hidden in 32,32 64,64; do
    echo "== --hidden-channels $hidden"
    "$bin" "${common[@]}" --hidden-channels "$hidden" --out "$out/$hidden"
    tail -n 1 "$out/$hidden/conv.csv"
done
# The same 32,32 model with the squared error and a linear 1x1 head (the README's first
# Moving MNIST recipe): its test_bce column is the cross-entropy of its predictions clipped
# to [1e-7, 1 - 1e-7].
echo "== --hidden-channels 32,32 --head conv1x1 --loss mse"
"$bin" --model conv --data moving-mnist --sequences 2560 --test-sequences 500 --context 10 \
    --horizon 10 --patch 4 --kernel 5 --head conv1x1 --batch-size 16 --shuffle --epochs 1 \
    --quiet --hidden-channels 32,32 --out "$out/mse"
tail -n 1 "$out/mse/conv.csv"
