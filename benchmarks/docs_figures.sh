#!/usr/bin/env bash
# The docs' benchmark figures (docs/figures.md lists them), as a new user gets them: a fresh clone of
# COMMIT in a fresh venv, the README's set-up, then each benchmark script one after another with its
# JSON written to the clone's out/ folder (never over the committed benchmarks/results/), each with its
# wall time. Each step takes the CPU lock /tmp/rk-cpu.lock (flock), so other locked jobs wait between
# steps and never run beside one.
#   bash benchmarks/docs_figures.sh TAG [COMMIT] [STEP ...]
# writes /tmp/rk-docfigs-TAG/ (the clone, out/, logs/ and times). With STEP names, runs only those.
# The body is one { ... } block, read whole before it runs: editing this file during a run is safe.
set -u
{
TAG=$1; COMMIT=${2:-HEAD}; shift $(( $# >= 2 ? 2 : $# )); ONLY=" $* "
REPO=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
D=/tmp/rk-docfigs-$TAG; LOCK=${LOCK:-/tmp/rk-cpu.lock}
if [ ! -d "$D/.venv" ]; then
  rm -rf "$D"; git clone -q "$REPO" "$D" && git -C "$D" checkout -q "$COMMIT" || exit 1
fi
cd "$D" || exit 1; mkdir -p out logs
LOG=$D/times
export REWARDKIT_ALPACA=${REWARDKIT_ALPACA:-$REPO/../shared/data/alpaca_eval_gpt4.jsonl.gz}
want() { [ "$ONLY" = "  " ] || [[ "$ONLY" == *" $1 "* ]]; }
timed() {  # timed NAME CMD...: under the lock, run CMD, append "NAME rc=RC SECONDS s" to $LOG
  local name=$1; shift; want "$name" || return 0; local s
  flock "$LOCK" bash -c 's=$(date +%s.%N); "$@" > "logs/'"$name"'.log" 2>&1; rc=$?;
    echo "'"$name"' rc=$rc $(python3 -c "print(round($(date +%s.%N) - $s, 1))") s $(date -u +%H:%M:%S)" >> "'"$LOG"'"' _ "$@"
}
echo "commit $(git rev-parse HEAD) cpu$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) start $(date -u +%FT%T)" >> "$LOG"
[ -d .venv ] || python3 -m venv .venv
source .venv/bin/activate
export REWARDKIT_CACHE=$D/.cache-rk
[ -x .venv/bin/rewardkit ] || ONLY=" setup$ONLY" timed setup bash scripts/setup.sh  # always, with or without STEP names
timed demo_model rewardkit demo-model
timed startup python3 benchmarks/startup.py --reps 5 --out out/startup.json
timed shift_cpu rewardkit bench shift --preset cpu --out runs/shift --force  # also at 0.1 (635b5d3): the release table
timed shift_cpu_32_fp32 rewardkit bench shift --preset cpu --n-eval 32 --dtype float32 --out runs/shift-32-fp32 --force
timed shift_ci rewardkit bench shift --preset ci --out runs/shift-ci --force
timed hacking_ci rewardkit bench hacking --preset ci --out runs/hacking-ci --force
timed hacking_ci_both rewardkit bench hacking --preset ci --optimizer both --out runs/hacking-ci-both --force
timed dporm python3 benchmarks/dporm_scoring.py --out out/dporm_scoring.json
timed dtype8 python3 benchmarks/dtype.py --pairs 8 --lora-std 0.02 --repeats 1 --out out/dtype.json
timed dtype_trained bash benchmarks/dtype_trained.sh out/dtype_trained_work out/dtype_trained.json
timed tp_cpu python3 benchmarks/training_profile.py --precisions float32,bf16-autocast,bf16 --out out/training_profile.json
timed tp_real python3 benchmarks/training_profile.py --recipe alpaca_eval --n-train 96 --max-length 256 --precisions float32,bf16 --out out/training_profile_real_pairs.json
timed merge python3 benchmarks/merge.py --reps 5 --out out/merge.json
timed ensemble python3 benchmarks/ensemble.py --out out/ensemble.json
timed st_engine python3 benchmarks/scoring_throughput.py --sections engine --out out/scoring_throughput.json
timed st_prefix python3 benchmarks/scoring_throughput.py --sections prefix --pairs 8 --long-prompts 1 --out out/scoring_prefix.json
timed serve_get_reward timeout 1200 python3 benchmarks/serve.py --endpoints get_reward --clients 1,16,64 --sequences 64 --out-dir out/serve_get_reward
timed serve_get_reward_256 timeout 1200 python3 benchmarks/serve.py --endpoints get_reward --clients 256 --sequences 256 --out-dir out/serve_get_reward_256
timed serve_score timeout 1200 python3 benchmarks/serve.py --endpoints score --clients 32 --requests-per-client 2 --out-dir out/serve_score_32
timed serve_score_128 timeout 1800 python3 benchmarks/serve.py --endpoints score --clients 128 --requests-per-client 2 --out-dir out/serve_score_128
timed probes python3 benchmarks/probes.py --out out/probes.json
timed serve_determinism python3 benchmarks/serve_determinism.py --out out/serve_determinism.json
timed card_precision python3 benchmarks/card_precision.py --out out/card_precision.json
timed card_engine python3 benchmarks/card_precision.py --engine-only --out out/card_precision.json
timed ex_report_card python3 examples/report_card.py
timed prefix_threshold python3 benchmarks/prefix_threshold.py --min-tokens 128 --repeats 2 --out out/prefix_threshold.json
timed training python3 benchmarks/training.py --out out/training.json
echo "done $(date -u +%FT%T)" >> "$LOG"
exit
}
