#!/usr/bin/env bash
# The README's measured figures, as a new user gets them: a fresh clone of COMMIT in a fresh venv, the
# README's set-up, then each job the README times, one after another (nothing else should run), each
# with its wall time; an empty demo-model cache, so the main job includes the one-off conversion.
#   bash benchmarks/readme_figures.sh TAG [COMMIT] [--tests]
# writes /tmp/rk-figures-TAG/ (the clone and its runs/) and TAG.times beside this script's --log folder
# (default /tmp/rk-figures-logs); benchmarks/collect_readme_figures.py turns two such runs into
# benchmarks/results/readme_figures.json. Run with a lock (e.g. `flock`) if other jobs share the CPU.
# The body is one { ... } block, read whole before it runs: editing this file during a run is safe.
set -u
{
TAG=$1; COMMIT=${2:-HEAD}; TESTS=${3:-}
REPO=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
DATA=${REWARDKIT_ALPACA:-$REPO/../shared/data/alpaca_eval_gpt4.jsonl.gz}
LOGS=${LOGS:-/tmp/rk-figures-logs}; D=/tmp/rk-figures-$TAG; LOG=$LOGS/$TAG.times
mkdir -p "$LOGS"; rm -rf "$D"; git clone -q "$REPO" "$D" && git -C "$D" checkout -q "$COMMIT" || exit 1
cd "$D" || exit 1
timed() {  # timed NAME CMD...: run CMD, append "NAME rc=RC SECONDS s" to $LOG
  local name=$1; shift; local s; s=$(date +%s.%N)
  "$@" > "$LOGS/$TAG.$name.log" 2>&1; local rc=$?
  echo "$name rc=$rc $(python3 -c "print(round($(date +%s.%N) - $s, 1))") s $(date -u +%H:%M:%S)" >> "$LOG"
}
echo "commit $(git rev-parse HEAD) cpu$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) start $(date -u +%FT%T)" > "$LOG"
python3 -m venv .venv && source .venv/bin/activate
export REWARDKIT_CACHE=$D/.cache-rk
timed setup bash scripts/setup.sh
[ "$TESTS" = "--tests" ] && timed tests python3 -m pytest -q -p no:cacheprovider
timed main rewardkit bench shift --preset cpu --out runs/shift --force
timed hacking rewardkit bench hacking --preset cpu --out runs/hacking --force
timed rl rewardkit bench hacking --preset cpu --optimizer rl --out runs/hacking-rl --force
timed alpaca rewardkit bench shift --preset cpu --recipe alpaca_eval --data "$DATA" --out runs/shift-alpaca --force
echo "done $(date -u +%FT%T)" >> "$LOG"
exit
}
