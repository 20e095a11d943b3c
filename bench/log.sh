#!/usr/bin/env bash
# Runs a benchmark command and keeps its output with what it ran on, so that a figure quoted
# in README.md or BENCHMARKS.md points at the file that holds it:
#   bash bench/log.sh NAME COMMAND [ARGS...]
# writes bench/logs/<date>-NAME.log: the date, the CPU model and its flags of note, the
# cores, the commit, the command, then everything the command printed (stdout and stderr).
# The log is written to a temporary file and renamed into place when the command ends, so
# an interrupted run leaves no half log; a failing command keeps its log and its status.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -lt 2 ]]; then
    echo "usage: bash bench/log.sh NAME COMMAND [ARGS...]" >&2
    exit 2
fi
name=$1
shift
log="bench/logs/$(date -u +%Y-%m-%d)-$name.log"
tmp=$(mktemp "bench/logs/.$name.XXXXXX")
trap 'rm -f "$tmp"' EXIT
cpu=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
flags=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -xE 'avx2|fma|avx512f' | tr '\n' ' ')
{
    echo "# date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "# cpu: $cpu; $(nproc) cores available; flags of note: ${flags:-none}"
    echo "# memory: $(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "# commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo ' (with uncommitted changes under crates/)')"
    echo "# command: $*"
    echo
} >"$tmp"
status=0
"$@" 2>&1 | tee -a "$tmp" || status=${PIPESTATUS[0]}
mv "$tmp" "$log"
trap - EXIT
echo "wrote $log"
exit "$status"
