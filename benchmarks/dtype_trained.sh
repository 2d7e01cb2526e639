#!/usr/bin/env bash
# scoring.md's "trained models" table: bf16 against float32 through `rewardkit score`, on a reward model
# and a DPO policy trained on AlpacaEval pairs that exclude the ones scored.
#   bash benchmarks/dtype_trained.sh WORKDIR [JSON]
# 1. WORKDIR/train.jsonl: --n-train (160) AlpacaEval pairs (alpaca_eval recipe, so the instruction is a
#    user message and both tools template it), drawn with seed 1 from the pool minus the 32 pairs
#    benchmarks/dtype.py scores (common.sample_pairs(32), seed 0) and its 2 warm-up pairs.
# 2. `rewardkit train explicit` and `rewardkit train dpo` on it: demo model, LoRA r 8, max length 512,
#    lr 5e-4, batch 4, --dtype auto.
# 3. `python3 benchmarks/dtype.py --pairs 32 --rm RM --dpo DPO --dtypes float32,bfloat16 --cli --out JSON`
#    (default JSON: WORKDIR/dtype_trained.json; never the committed file unless named).
set -eu
W=$1; OUT=${2:-$W/dtype_trained.json}; N_TRAIN=${N_TRAIN:-160}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$W"
python3 - "$HERE" "$W/train.jsonl" "$N_TRAIN" <<'EOF'
import random, sys
sys.path.insert(0, sys.argv[1])
from common import DATA, sample_pairs
from rewardkit.bench.recipes import load_recipe
from rewardkit.data import PreferenceDataset

pool = load_recipe("alpaca_eval", DATA, on_error="skip")
scored = {(str(p.prompt), p.chosen, p.rejected) for p in sample_pairs(32) + sample_pairs(2, seed=1)}
rest = [p for p in pool if (str(p.prompt), p.chosen, p.rejected) not in scored]
train = random.Random(1).sample(rest, int(sys.argv[3]))
PreferenceDataset(train).save_jsonl(sys.argv[2])
print(f"{len(train)} training pairs (pool {len(pool)}, {len(pool) - len(rest)} excluded) -> {sys.argv[2]}")
EOF
MODEL=$(rewardkit demo-model)
COMMON=(--model "$MODEL" --data "$W/train.jsonl" --lora-r 8 --max-length 512 --lr 5e-4 --batch-size 4 --dtype auto --seed 0 --force)
s=$(date +%s); rewardkit train explicit "${COMMON[@]}" --out "$W/rm"; echo "train explicit $(( $(date +%s) - s )) s"
s=$(date +%s); rewardkit train dpo "${COMMON[@]}" --out "$W/dpo"; echo "train dpo $(( $(date +%s) - s )) s"
python3 "$HERE/dtype.py" --pairs 32 --rm "$W/rm" --dpo "$W/dpo" --dtypes float32,bfloat16 --cli --out "$OUT"
