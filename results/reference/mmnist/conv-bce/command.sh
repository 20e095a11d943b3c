#!/usr/bin/env bash
# The ConvLSTM of the Moving MNIST comparison (issue 22): run from the repository root; run
# again to continue after an interruption (--resume starts it if nothing is there yet).
set -euo pipefail
cd "$(dirname "$0")/../../../.."
target/release/bench-cli --model conv --data moving-mnist --sequences 10000 --test-sequences 2000 \
    --fresh-sequences --context 10 --horizon 10 --patch 4 --hidden-channels 32,32 --kernel 5 \
    --head conv1x1-sigmoid --loss bce --batch-size 16 --shuffle --lr-schedule onecycle \
    --epochs 11 --quiet --resume --out results/reference/mmnist/conv-bce \
    2>&1 | tee -a results/reference/mmnist/conv-bce/train.log
