#!/usr/bin/env bash
# Speed before and after a change, side by side in one run: `bench-cli bench` of the seed's
# two models and Shi et al.'s 32x2 ConvLSTM with two binaries, alternated for each round so
# that both see the same machine.
#   bash bench/before_after.sh BEFORE_BINARY AFTER_BINARY [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
before=$1
after=$2
rounds=${3:-2}
for round in $(seq "$rounds"); do
    for which in before after; do
        bin=$before
        [[ $which == after ]] && bin=$after
        echo "## round $round, $which ($bin)"
        "$bin" bench --configs conv,linear,convlstm-32x2
    done
done
