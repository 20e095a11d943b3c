#!/usr/bin/env bash
# The real-video study (README, "Real video on other videos"): the recommended command
# trained on each video of data/videos/ (its first five sixths; their last sixth validates,
# the rest is held out), then evaluated one step ahead and five steps ahead (21 frames
# read) on the held-out frames, beside copy-last; and the pretrain-then-fine-tune route:
# one model pretrained on data/videos-pretrain/ (clips of other sources), fine-tuned on
# each video. Every run continues where it stopped (--resume), so the script can be run
# again after an interruption; finished runs are skipped. Results: results/reference/videos/.
#
#   cargo build --release -p bench-cli
#   bash data/make-videos.sh          # if data/videos/ is missing
#   bash bench/real_video_study.sh [parallel jobs, default 2]
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${1:-2}
BIN=./target/release/bench-cli
OUT=results/reference/videos
VIDEOS=(street animation city cockatoo diver ball film)
RECOMMENDED=(--model conv --hidden-channels 16,16 --kernel 5 --head residual)
export BIN OUT

# evaluate DIR DATA: one step and five steps ahead, as JSON files in DIR.
evaluate() {
    "$BIN" eval --checkpoint "$1/conv.safetensors" --data "$2" --json "$1/eval-1.json" >/dev/null
    "$BIN" eval --checkpoint "$1/conv.safetensors" --data "$2" --context 21 --horizon 5 \
        --json "$1/eval-21-5.json" >/dev/null
}
export -f evaluate

# train DIR DATA ARGS...: the run in DIR (continued from its checkpoint if it stopped, its
# settings then the checkpoint's), then its evaluation.
train() {
    local dir=$1 data=$2
    shift 2
    mkdir -p "$dir"
    if [[ -f $dir/conv.resume.safetensors && ! -f $dir/conv.summary.json ]]; then
        "$BIN" --model conv --resume --quiet --out "$dir" >>"$dir/train.log" 2>&1
    elif [[ ! -f $dir/conv.summary.json ]]; then
        "$BIN" "$@" --data "$data" --quiet --out "$dir" >>"$dir/train.log" 2>&1
    fi
    evaluate "$dir" "$data"
    echo "done: $dir"
}
export -f train

for v in "${VIDEOS[@]}"; do
    echo "$OUT/$v data/videos/$v ${RECOMMENDED[*]} --epochs 150 --threads 1"
done | xargs -P "$JOBS" -L 1 bash -c 'train "$@"' _

train "$OUT/pretrained" data/videos-pretrain "${RECOMMENDED[@]}" --epochs 60 --threads 2
for v in "${VIDEOS[@]}"; do
    echo "$OUT/$v-finetuned data/videos/$v ${RECOMMENDED[*]} --epochs 50 --lr 3e-4 --threads 1 --init-from $OUT/pretrained/conv.safetensors"
done | xargs -P "$JOBS" -L 1 bash -c 'train "$@"' _
