"""How many of each report-card suite's decisions ``--dtype auto`` changes against float32, on the demo
model (SmolLM2-135M-Instruct), with the time of the whole card per dtype.

Data: AlpacaEval pairs (fixed seed, ``benchmarks/common.py``) written in each suite's official layout:
RewardBench and PPE Preference as they are, JudgeBench with A / B alternating, RM-Bench with its three
styles imitated (concise = the first 40 words, detailed plain = the response with markdown marks removed,
detailed markdown = the response), PPE Correctness with K = 4 per prompt (its chosen and rejected
responses, correct and incorrect, and their first halves, labelled alike), RewardBench 2 best-of-4
(subset Focus: the chosen response against the rejected one, its first half and its first 40 words) and
RMB as its official folder (each pair once in Pairwise_set, and once in BoN_set with the rejected
response and its first half as the losers). The layouts are real, the texts are AlpacaEval's: the
numbers measure precision, not the benchmarks.

Models: an explicit RM (demo + LoRA r=8, random head, as ``benchmarks/dtype.py``) and a reference-free DPO
reward of the demo LM (beta 0.1). A decision is each comparison a suite's scoring makes: the pair
(RewardBench, JudgeBench, PPE Preference, RMB Pairwise), the 9 cells of RM-Bench's matrix, PPE
Correctness's (correct, incorrect) pairs and its top pick, RewardBench 2's correct response against each
rejected one, RMB best-of-N's best against each loser.

    python benchmarks/card_precision.py [--pairs 8] [--max-length 256] [--out benchmarks/results/card_precision.json]
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

import numpy as np
from common import DATA, sample_pairs, save_results


def _text(prompt) -> str:
    return prompt if isinstance(prompt, str) else prompt[-1]["content"]


def layouts(pairs) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {
        k: []
        for k in (
            "rewardbench",
            "rewardbench2",
            "rm-bench",
            "judgebench",
            "ppe-preference",
            "ppe-correctness",
            "rmb",
        )
    }
    for i, p in enumerate(pairs):
        q = _text(p.prompt)
        rows["rewardbench"].append(
            {"id": i, "prompt": q, "chosen": p.chosen, "rejected": p.rejected, "subset": "alpacaeval-hard"}
        )

        def styles(r: str) -> list[str]:
            return [" ".join(r.split()[:40]), re.sub(r"[*#`>|]|^\s*[-+] ", "", r, flags=re.M), r]

        rows["rm-bench"].append(
            {
                "id": i,
                "prompt": q,
                "chosen": styles(p.chosen),
                "rejected": styles(p.rejected),
                "domain": "chat",
            }
        )
        a, b, label = (p.chosen, p.rejected, "A>B") if i % 2 == 0 else (p.rejected, p.chosen, "B>A")
        rows["judgebench"].append(
            {
                "pair_id": f"p{i}",
                "source": "livebench-reasoning",
                "question": q,
                "response_A": a,
                "response_B": b,
                "label": label,
            }
        )
        rows["ppe-preference"].append(
            {
                "question_id": f"q{i}",
                "prompt": q,
                "response_1": a,
                "response_2": b,
                "winner": "model_a" if i % 2 == 0 else "model_b",
            }
        )

        def half(r: str) -> str:
            w = r.split()
            return " ".join(w[: max(1, len(w) // 2)])

        rows["ppe-correctness"].append(
            {
                "question_id": f"c{i}",
                "benchmark": "MATH",
                "prompt": q,
                "responses": [p.chosen, p.rejected, half(p.chosen), half(p.rejected)],
                "scores": [1, 0, 1, 0],
            }
        )
        rejected = [p.rejected, half(p.rejected), " ".join(p.rejected.split()[:40])]
        rows["rewardbench2"].append(
            {
                "id": str(i),
                "prompt": q,
                "chosen": [p.chosen],
                "rejected": rejected,
                "num_correct": 1,
                "num_rejected": 3,
                "total_completions": 4,
                "subset": "Focus",
            }
        )
        turn = [{"role": "user", "content": q, "language": "English"}]
        rows["rmb"].append(
            {
                "pair_uid": f"p{i}",
                "conversation_input": turn,
                "chosen": {"llm_name": "a", "answer": p.chosen},
                "reject": {"llm_name": "b", "answer": p.rejected},
                "category_path": "Pairwise_set/Helpfulness/Chat/AlpacaEval",
            }
        )
        rows["rmb"].append(
            {
                "bon_uid": f"b{i}",
                "conversation_input": turn,
                "bon_best": {"llm_name": "a", "answer": p.chosen},
                "loser_list": [{"llm_name": "b", "answer": r} for r in rejected[:2]],
                "category_path": "BoN_set/Helpfulness/Chat/AlpacaEval",
            }
        )
    return rows


def write_layouts(rows: dict[str, list[dict]], folder: Path) -> dict[str, Path]:
    """Each suite's rows as its official file; RMB as the RMB_dataset folder, a JSON list per scenario."""
    files = {}
    for suite, suite_rows in rows.items():
        if suite == "rmb":
            files[suite] = folder / "RMB_dataset"
            by_path: dict[str, list[dict]] = {}
            for r in suite_rows:
                by_path.setdefault(r["category_path"], []).append(r)
            for category, items in by_path.items():
                f = files[suite] / f"{category}.json"
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_text(json.dumps(items))
            continue
        files[suite] = folder / f"{suite}.jsonl"
        files[suite].write_text("".join(json.dumps(r) + "\n" for r in suite_rows))
    return files


def decisions(suite: str, rewards: list[np.ndarray], examples) -> np.ndarray:
    """Every comparison the suite's scoring makes, as 1 / 0 (a > b strictly), plus top picks."""
    if suite in ("rmb", "rewardbench2"):  # the first reward against each other one
        return np.concatenate([ri[0] > ri[1:] for ri in rewards])
    r = np.stack(rewards)
    if suite == "rm-bench":
        return (r[:, :3, None] > r[:, None, 3:6]).reshape(len(r), -1).ravel()
    if suite == "ppe-correctness":
        out = []
        for e, ri in zip(examples, r):
            c = np.array(e.labels["correct"])
            out += list((ri[c == 1][:, None] > ri[c == 0][None, :]).ravel()) + [int(np.argmax(ri)) + 2]
        return np.array(out, dtype=np.int64)
    return r[:, 0] > r[:, 1]


def run(load, files: dict, dtypes: list[str]) -> dict:
    from rewardkit.eval.card import run_card

    out, ref = {}, None
    for dtype in dtypes:
        rm = load(dtype)
        t = time.perf_counter()
        card = run_card({"m": rm}, files, n_boot=200)
        seconds = time.perf_counter() - t
        dec = {
            s: decisions(s, rep.rewards["m"], rep.data.examples)
            for s, rep in card.reports.items()
            if hasattr(rep, "points")
        }
        dec["rewardbench"] = np.array([r[0] > r[1] for r in card.reports["rewardbench"].rewards["m"]])
        dec["rewardbench2"] = decisions("rewardbench2", card.reports["rewardbench2"].rewards["m"], None)
        table = card.table()["m"]
        row = {
            "seconds": seconds,
            "scores": {s: v["score"] for s, v in table.items()},
            "ci": {s: v["ci"] for s, v in table.items()},
        }
        if ref is None:
            ref = dec
        else:
            row["changed_vs_float32"] = {
                s: {"changed": int(np.sum(dec[s] != ref[s])), "decisions": int(dec[s].size)} for s in dec
            }
        out[dtype] = row
        print(dtype, json.dumps(row), flush=True)
    return out


def engine_costs(rm, files: dict, repeats: int = 2) -> dict:
    """Seconds to score RM-Bench's 6 and PPE Correctness's K = 4 responses per prompt: one engine call
    with prefix sharing (what the suites do), one call without it, and one call per prompt."""
    from rewardkit.eval.bench_data import bench_texts, load_bench
    from rewardkit.eval.suite_registry import get_bench
    from rewardkit.templating import Texts

    out = {}
    for suite in ("rm-bench", "ppe-correctness"):
        data = load_bench(get_bench(suite), files[suite])
        texts = bench_texts(data)
        per_prompt = [Texts([e.prompt] * len(e.completions), list(e.completions)) for e in data.examples]
        row = {"sequences": len(texts.responses)}
        for name, sharing, calls in (
            ("one_call_shared", True, [texts]),
            ("one_call_unshared", False, [texts]),
            ("per_prompt_shared", True, per_prompt),
        ):
            rm.configure(prefix_sharing=sharing, progress=False)
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                for c in calls:
                    rm.score_texts(c)
                times.append(time.perf_counter() - t)
            row[name] = min(times)
        rm.configure(prefix_sharing=True)
        out[suite] = row
        print("engine", suite, json.dumps(row), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--engine-only", action="store_true", help="only time the engine variants (auto dtype)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "card_precision.json"))
    args = ap.parse_args()
    if not DATA.is_file():
        print(f"skipped: {DATA} not found")
        return
    import torch

    from rewardkit import BradleyTerryRM, DPOImplicitRM, demo_model_path, load_reward_model
    from rewardkit.dtypes import dtype_name, resolve_dtype

    path = demo_model_path()
    res: dict = {
        "pairs": args.pairs,
        "auto": dtype_name(resolve_dtype("auto", torch.device("cpu"))),
        "threads": torch.get_num_threads(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        files = write_layouts(layouts(sample_pairs(args.pairs)), Path(tmp))
        BradleyTerryRM.from_pretrained(path, lora_r=8, head_seed=0, max_length=args.max_length).save(
            Path(tmp) / "explicit"
        )
        res["engine_auto_explicit"] = engine_costs(
            load_reward_model(Path(tmp) / "explicit", dtype="auto"), files
        )
        if args.engine_only:
            save_results(args.out.replace(".json", "_engine.json"), res)
            return
        res["explicit"] = run(
            lambda dt: load_reward_model(Path(tmp) / "explicit", dtype=dt), files, ["float32", "auto"]
        )
        res["implicit_reference_free"] = run(
            lambda dt: DPOImplicitRM.from_pretrained(
                path, reference_free=True, beta=0.1, dtype=dt, max_length=args.max_length
            ),
            files,
            ["float32", "auto"],
        )
    save_results(args.out, res)


if __name__ == "__main__":
    main()
