#!/usr/bin/env bash
# The FC-LSTM of the Moving MNIST comparison (issue 22): Shi et al.'s two layers of 2048 on
# whole 64x64 frames, with the ConvLSTM's recipe (conv-mse/command.sh: squared error, Adam
# 1e-3 with OneCycle, 10,000 sequences drawn afresh each epoch, batches of 16), three
# epochs, within the ConvLSTM's wall time (its 11 epochs took 8575 s). The run began on one
# thread (about 5 s a batch while builds and CI shared the machine) and was continued on
# two from window 9680 of epoch 1 (--threads changes the speed, not the result: the two
# shards of a batch are summed in a fixed order).
# Run from anywhere; run again to continue after an interruption (--resume starts it if
# nothing is there yet). Its training checkpoint (1.1 GB) and weights (370 MB) are not
# committed.
set -euo pipefail
cd "$(dirname "$0")/../../../.."
target/release/bench-cli --model linear --data moving-mnist --sequences 10000 --test-sequences 2000 \
    --fresh-sequences --context 10 --horizon 10 --hidden 2048,2048 \
    --batch-size 16 --shuffle --lr-schedule onecycle --threads 2 \
    --epochs 3 --quiet --resume --out results/reference/mmnist/fc-mse \
    2>&1 | tee -a results/reference/mmnist/fc-mse/train.log
