"""Prefix sharing's threshold on the report-card formats and on long prompts: seconds with sharing off, on
with the engine's rule (``scoring.share_groups`` defaults), and on with a higher minimum prompt length,
each workload's three settings interleaved (best of ``--repeats``) so the ratios share the run's conditions.

Workloads: RM-Bench (6 per prompt) and PPE Correctness (K = 4) from ``card_precision.layouts`` (8 AlpacaEval
pairs, max length 256), and one 1,000-token prompt with 8 responses (``scoring_throughput.long_prompt_texts``);
the demo model as an explicit RM (LoRA r=8, random head) in bf16 (``--dtype auto`` on this CPU).

    python benchmarks/prefix_threshold.py [--min-tokens 128] [--repeats 2]
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
import time
from pathlib import Path

from common import DATA, sample_pairs, save_results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--min-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "prefix_threshold.json"))
    args = ap.parse_args()
    if not DATA.is_file():
        print(f"skipped: {DATA} not found")
        return
    import card_precision
    import scoring_throughput

    import rewardkit.scoring as scoring
    from rewardkit import BradleyTerryRM, demo_model_path, load_reward_model
    from rewardkit.eval.bench_data import bench_texts, load_bench
    from rewardkit.eval.suite_registry import get_bench

    rule = scoring.share_groups
    higher = functools.partial(rule, min_tokens=args.min_tokens)
    pairs = sample_pairs(8)
    res: dict = {"min_tokens": args.min_tokens, "engine_min_tokens": scoring.PREFIX_MIN_TOKENS}
    with tempfile.TemporaryDirectory() as tmp:
        BradleyTerryRM.from_pretrained(demo_model_path(), lora_r=8, head_seed=0, max_length=256).save(
            Path(tmp) / "rm"
        )
        rm = load_reward_model(Path(tmp) / "rm", dtype="auto")
        rm.configure(progress=False)
        workloads = {}
        for suite, rows in card_precision.layouts(pairs).items():
            if suite in ("rm-bench", "ppe-correctness"):
                f = Path(tmp) / f"{suite}.jsonl"
                f.write_text("".join(json.dumps(r) + "\n" for r in rows))
                workloads[suite] = bench_texts(load_bench(get_bench(suite), f))
        long_rm = BradleyTerryRM.from_pretrained(
            demo_model_path(), lora_r=8, head_seed=0, max_length=1400, dtype="auto"
        )
        long_rm.configure(progress=False)
        workloads["long_prompt_1000x8"] = scoring_throughput.long_prompt_texts(
            long_rm.tokenizer, pairs, 1, 1000, 8, 100
        )
        for name, texts in workloads.items():
            model = long_rm if name.startswith("long") else rm
            model.score_texts(texts)  # warm-up
            times: dict[str, list[float]] = {
                "off": [],
                "engine_rule": [],
                f"min_tokens_{args.min_tokens}": [],
            }
            for _ in range(args.repeats):
                for setting in times:
                    scoring.share_groups = higher if setting.startswith("min_tokens") else rule
                    model.configure(prefix_sharing=setting != "off", progress=False)
                    t = time.perf_counter()
                    model.score_texts(texts)
                    times[setting].append(time.perf_counter() - t)
            scoring.share_groups = rule
            row = {k: min(v) for k, v in times.items()}
            row.update({f"{k}_over_off": row[k] / row["off"] for k in times if k != "off"})
            res[name] = row
            print(name, json.dumps(row), flush=True)
    save_results(args.out, res)


if __name__ == "__main__":
    main()
