#!/usr/bin/env bash
# The GPU check (issue #25): every GPU path of rewardkit, in at most 8 minutes on one GPU, each step's
# figures as JSON under OUT (summary.json lists every step, its seconds and its status).
#
#   bash benchmarks/gpu_check.sh [OUT]            # one CUDA GPU: the demo model, bf16, full sizes
#   bash benchmarks/gpu_check.sh --cpu [OUT]      # reduced, on CPU (CI): tiny model, < ~60 s on 2 cores
#   bash benchmarks/gpu_check.sh --cpu --full     # CPU, also the serving benchmark and both ci presets
#
# Steps: environment (device, bf16 support, what dtype=auto picks); train an explicit RM (two seeds, for
# the ensemble and the merge) and a DPO policy, LoRA, bf16; score explicit / implicit / ensemble / merged
# with prefix sharing on and off on long-prompt pairs (seconds, ratio, max |delta r|) and through
# `rewardkit score --dtype auto`; the out-of-memory split (batches over 2 sequences fail as CUDA OOM
# would; rewards must equal the unsplit ones); merge; serving throughput against per-request
# (benchmarks/serve.py); `rewardkit bench shift` and `rewardkit bench hacking` on their ci presets.
# Any failing step stops the script with a non-zero status and says which step failed.
set -euo pipefail

MODE=gpu
FULL=0
OUT=""
for arg in "$@"; do
  case "$arg" in
    --cpu) MODE=cpu ;;
    --full) FULL=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "gpu_check: unknown option $arg" >&2; exit 2 ;;
    *) OUT="$arg" ;;
  esac
done
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${OUT:-$HERE/results/gpu_check_$MODE}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="$OUT/work"
rm -rf "$WORK" && mkdir -p "$WORK"
export OUT WORK MODE HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}"
if [ "$MODE" = cpu ]; then
  export CUDA_VISIBLE_DEVICES=""
fi
RK=(python3 -m rewardkit.cli)
STEPS="$OUT/steps.jsonl"
: > "$STEPS"
START=$(date +%s.%N)

fail() { echo "gpu_check: FAILED: $*" >&2; exit 1; }

# step NAME CMD...: run CMD, record its seconds and status; a failure stops the check, loudly
step() {
  local name="$1"; shift
  local t0 t1 rc=0
  echo "== $name" >&2
  t0=$(date +%s.%N)
  "$@" > "$WORK/$name.log" 2>&1 || rc=$?
  t1=$(date +%s.%N)
  python3 -c 'import json,sys; print(json.dumps({"step": sys.argv[1], "seconds": round(float(sys.argv[3]) - float(sys.argv[2]), 3), "rc": int(sys.argv[4])}))' \
    "$name" "$t0" "$t1" "$rc" >> "$STEPS"
  if [ "$rc" != 0 ]; then
    tail -n 30 "$WORK/$name.log" >&2
    fail "step '$name' exited $rc (log: $WORK/$name.log)"
  fi
  tail -n 1 "$WORK/$name.log" >&2
}

skip() { python3 -c 'import json,sys; print(json.dumps({"step": sys.argv[1], "skipped": sys.argv[2]}))' "$1" "$2" >> "$STEPS"; echo "== $1: skipped ($2)" >&2; }

# --- environment, model and data -------------------------------------------------------------------
step setup python3 - <<'EOF'
import json, os
from pathlib import Path

import torch

from rewardkit.dtypes import cpu_has_fast_bf16, dtype_name, resolve_device, resolve_dtype
from rewardkit.synthetic import make_synthetic_preferences

mode, work = os.environ["MODE"], Path(os.environ["WORK"])
if mode == "gpu" and not torch.cuda.is_available():
    raise SystemExit("no CUDA GPU visible: run with --cpu for the reduced CPU check")
device = resolve_device()
if mode == "gpu":
    from rewardkit.demo import demo_model_path

    model, n_train, n_eval, prompt_words = str(demo_model_path()), 512, 128, 300
else:
    from rewardkit.tiny import build_tiny_model

    model, n_train, n_eval, prompt_words = str(build_tiny_model(work / "tiny")), 64, 16, 60
make_synthetic_preferences(n_train, seed=0).save_jsonl(work / "train.jsonl")
test = make_synthetic_preferences(n_eval, seed=1)
test.save_jsonl(work / "test.jsonl")
# pairs whose prompt is long against the answers: prefix sharing triggers on them
words = " ".join(str(p.prompt) for p in test).split()
with open(work / "long.jsonl", "w") as f:
    for i, p in enumerate(test):
        prompt = " ".join(words[(i * 7 + j) % len(words)] for j in range(prompt_words)) + " " + str(p.prompt)
        f.write(json.dumps({"prompt": prompt, "chosen": p.chosen, "rejected": p.rejected}) + "\n")
env = {
    "mode": mode,
    "model": model,
    "torch": torch.__version__,
    "device": str(device),
    "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    "cuda_bf16": bool(device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)),
    "cpu_fast_bf16": cpu_has_fast_bf16(),
    "auto_dtype": dtype_name(resolve_dtype("auto", device)),
    "train_pairs": n_train,
    "eval_pairs": n_eval,
}
(work / "model.txt").write_text(model)
Path(os.environ["OUT"], "environment.json").write_text(json.dumps(env, indent=2))
print(json.dumps(env))
EOF
MODEL="$(cat "$WORK/model.txt")"
if [ "$MODE" = gpu ]; then LORA=8; LEN=256; LR=1e-3; else LORA=4; LEN=96; LR=3e-3; fi
TRAIN=(--model "$MODEL" --data "$WORK/train.jsonl" --eval-data "$WORK/test.jsonl" --lora-r "$LORA"
       --max-length "$LEN" --lr "$LR" --batch-size 16 --epochs 1 --dtype bfloat16)

# --- training (LoRA, bf16) -------------------------------------------------------------------------
step train_explicit "${RK[@]}" train explicit "${TRAIN[@]}" --out "$WORK/exrm" --seed 0
step train_explicit_seed1 "${RK[@]}" train explicit "${TRAIN[@]}" --out "$WORK/exrm1" --seed 1
step train_dpo "${RK[@]}" train dpo "${TRAIN[@]}" --out "$WORK/dporm" --beta 0.1 --seed 0
step ensemble "${RK[@]}" ensemble "$WORK/exrm" "$WORK/exrm1" -o "$WORK/ensemble"
step merge "${RK[@]}" merge "$WORK/exrm" "$WORK/exrm1" -o "$WORK/merged"
step score_cli "${RK[@]}" score --rm "$WORK/exrm" --data "$WORK/long.jsonl" --out "$WORK/scores.jsonl" \
  --dtype auto --no-progress

# --- scoring with prefix sharing on and off; the out-of-memory split -------------------------------
step scoring python3 - <<'EOF'
import json, os, time
from pathlib import Path

import numpy as np
import torch

from rewardkit import load_reward_model
from rewardkit.data import load_preferences
from rewardkit.scoring import share_groups
from rewardkit.templating import Texts

work, out = Path(os.environ["WORK"]), Path(os.environ["OUT"])
pairs = list(load_preferences(work / "long.jsonl"))
texts, warm = Texts.from_pairs(pairs), Texts.from_pairs(pairs[:2])
res = {}
for name in ("exrm", "dporm", "ensemble", "merged"):
    rm = load_reward_model(work / name, dtype="auto")
    rm.configure(progress=False)
    rm.score_texts(warm)
    row, rewards = {}, {}
    for on in (False, True):
        rm.configure(prefix_sharing=on)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        rewards[on] = rm.score_texts(texts)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        row["shared_seconds" if on else "unshared_seconds"] = time.perf_counter() - t
    row["speedup"] = row["unshared_seconds"] / row["shared_seconds"]
    row["max_abs_diff"] = float(np.abs(rewards[True] - rewards[False]).max())
    row["reward_std"] = float(rewards[False].std())
    res[name] = row
    print(name, row, flush=True)
    assert np.isfinite(rewards[True]).all(), f"{name}: non-finite rewards"
    # bf16 shared vs unshared: different matmul shapes round differently; far above that is a bug
    assert row["max_abs_diff"] <= 0.05 * max(1.0, row["reward_std"]), f"{name}: prefix sharing changed rewards {row}"
exrm = load_reward_model(work / "exrm", dtype="auto")
exrm.configure(progress=False)
items = texts.encode(exrm.formatter)
res["shared_groups"] = len(share_groups(items)[0])
assert res["shared_groups"] > 0, "prefix sharing did not trigger on the long-prompt pairs"

# out-of-memory split: batches of more than 2 sequences fail as CUDA's allocator would
reference = exrm.score_texts(texts)
calls = {"oom": 0}
for attr in ("_rewards", "_shared_rewards"):
    real = getattr(exrm, attr)

    def failing(batch, real=real):
        if len(batch.indices) > 2:
            calls["oom"] += 1
            raise torch.OutOfMemoryError("CUDA out of memory (injected by gpu_check)")
        return real(batch)

    setattr(exrm, attr, failing)
split = exrm.score_texts(texts)
res["oom_split"] = {"injected_ooms": calls["oom"], "max_abs_diff": float(np.abs(split - reference).max())}
assert calls["oom"] > 0 and res["oom_split"]["max_abs_diff"] <= 1e-3, res["oom_split"]
(out / "scoring.json").write_text(json.dumps(res, indent=2))
print(json.dumps(res["oom_split"]))
EOF

# --- serving and the two benchmarks' ci presets ----------------------------------------------------
if [ "$MODE" = gpu ] || [ "$FULL" = 1 ]; then
  CLIENTS=64,256
  [ "$MODE" = cpu ] && CLIENTS=8
  step serve python3 "$HERE/serve.py" --clients "$CLIENTS" --requests-per-client 2
  cp "$HERE/results/serve.json" "$OUT/serve.json"
  step bench_shift "${RK[@]}" bench shift --preset ci --out "$OUT/shift" --force
  step bench_hacking "${RK[@]}" bench hacking --preset ci --out "$OUT/hacking" --force
else
  for s in serve bench_shift bench_hacking; do skip "$s" "--cpu without --full (the test suite runs them)"; done
fi

python3 - "$STEPS" "$START" <<'EOF'
import json, os, sys, time
from pathlib import Path

steps = [json.loads(line) for line in open(sys.argv[1])]
total = time.time() - float(sys.argv[2])
summary = {"mode": os.environ["MODE"], "total_seconds": round(total, 1), "steps": steps, "limit_seconds": 480}
Path(os.environ["OUT"], "summary.json").write_text(json.dumps(summary, indent=2))
print(json.dumps(summary, indent=2))
if os.environ["MODE"] == "gpu" and total > 480:
    sys.exit(f"gpu_check: FAILED: took {total:.0f} s, over the 8-minute budget")
EOF
echo "gpu_check: all steps passed; figures under $OUT" >&2
