#!/usr/bin/env bash
# The whole GPU check, in one go, for a machine with an NVIDIA GPU (a few minutes after the
# build). Nothing here has run on a GPU yet: it was run on a CPU with a stand-in for a cuda
# build (see the README's CUDA section).
#   1. the tests: `cargo test --workspace --features cuda` (skipped only when BENCH_CLI names
#      a binary built elsewhere and SKIP_TESTS=1 says so);
#   2. a bench-cli built with `--features cuda`: BENCH_CLI=path (built elsewhere, e.g. with
#      nvcc from PyPI and CUDA_COMPUTE_CAP=90 for an H200), else built here (needs nvcc);
#   3. device selection: `--device cuda` trains; a cuda build without --device stays on CPU;
#      with no GPU visible (CUDA_VISIBLE_DEVICES=) `--device cuda` fails with its message;
#   4. agreement: for the seed's conv and linear models and a general forecasting ConvLSTM,
#      one epoch from the same --init-from weights on CPU and on the GPU; the train losses
#      must agree within 1e-4 relative;
#   5. speed: `bench-cli bench` on both devices, one table each (seconds per epoch of the
#      seed's models, per training batch of convlstm-32x2).
# Usage: bash scripts/gpu-check.sh            (or BENCH_CLI=./bench-cli-cuda bash ...)
# Exit status: non-zero if anything failed; the last lines say what.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${BENCH_CLI:-}
if [[ -z $bin ]] && ! command -v nvcc >/dev/null; then
    echo "gpu-check: no nvcc here; build with --features cuda elsewhere and pass BENCH_CLI=path" >&2
    exit 1
fi
# 1. The tests, with the feature on (they need nvcc and the CUDA libraries too).
if [[ ${SKIP_TESTS:-0} != 1 ]]; then
    echo "== cargo test --workspace --features cuda =="
    CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90} cargo test --workspace --features cuda
fi
# 2. The binary.
if [[ -z $bin ]]; then
    CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90} cargo build --release -p bench-cli --features cuda
    bin=target/release/bench-cli
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=()

# The first epoch's train_loss of a run's CSV.
first_loss() { awk -F, 'NR == 2 { print $2 }' "$1"; }

# 3. Device selection (the output is kept whole: `grep -q` on a pipe would cut it short).
said=$("$bin" --model conv --epochs 1 --quiet --out "$work/default")
[[ $said == *"device Cpu"* ]] || failures+=("a cuda build without --device did not train on the CPU")
said=$("$bin" --model conv --epochs 1 --quiet --device cuda --out "$work/select")
[[ $said == *"device Cuda"* ]] || failures+=("--device cuda did not train on the GPU")
if said=$(CUDA_VISIBLE_DEVICES= "$bin" --model conv --epochs 1 --quiet --device cuda --out "$work/none" 2>&1); then
    failures+=("--device cuda with no GPU visible trained instead of failing")
elif [[ $said != *"no usable NVIDIA GPU found"* ]]; then
    failures+=("--device cuda with no GPU visible said: $said")
fi
echo "no GPU visible: $said"

# 4. CPU and GPU from the same weights: each configuration's weights come from a one-epoch
# CPU run, then one more epoch on each device.
agree() {
    local name=$1 model=$2
    shift 2
    "$bin" --model "$model" --epochs 1 --quiet --checkpoint-every 0 --out "$work/$name-init" "$@" >/dev/null
    local weights="$work/$name-init/$model.safetensors"
    for device in cpu cuda; do
        /usr/bin/time -f "%e" -o "$work/$name-$device.time" \
            "$bin" --model "$model" --epochs 1 --quiet --checkpoint-every 0 --device "$device" \
            --init-from "$weights" --out "$work/$name-$device" "$@" >/dev/null
    done
    local cpu gpu
    cpu=$(first_loss "$work/$name-cpu/$model.csv")
    gpu=$(first_loss "$work/$name-cuda/$model.csv")
    if awk -v a="$cpu" -v b="$gpu" 'BEGIN { d = (a - b) / a; if (d < 0) d = -d; exit !(d <= 1e-4) }'; then
        verdict=agree
    else
        verdict=DIFFER
        failures+=("$name: CPU $cpu, GPU $gpu")
    fi
    printf '%-16s cpu %-14s gpu %-14s %s (wall s: cpu %s, gpu %s)\n' "$name" "$cpu" "$gpu" "$verdict" \
        "$(cat "$work/$name-cpu.time")" "$(cat "$work/$name-cuda.time")"
}
echo "== one epoch from the same weights: train loss on each device =="
agree seed-conv conv
agree seed-linear linear
agree forecast-conv conv --size 32 --context 10 --horizon 5 --hidden-channels 8,8 \
    --peephole --head conv1x1-sigmoid --patch 2 --batch-size 4
agree mmnist-conv conv --data moving-mnist --sequences 64 --test-sequences 16 --context 10 \
    --horizon 10 --patch 4 --hidden-channels 32,32 --head conv1x1-sigmoid --batch-size 16

# 5. Speed, both devices side by side.
for device in cpu cuda; do
    echo "== bench-cli bench --device $device =="
    "$bin" bench --configs conv,linear,convlstm-32x2 --device "$device" ||
        failures+=("bench on $device failed")
done

if ((${#failures[@]})); then
    printf 'gpu-check: FAILED: %s\n' "${failures[@]}" >&2
    exit 1
fi
echo "gpu-check: all passed"
