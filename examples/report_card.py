"""The reward-model report card of a trained reward model and of an untrained DPO implicit RM: RewardBench,
RM-Bench, JudgeBench, PPE Preference, PPE Correctness and RMB on small local files in each official layout
(RMB: its RMB_dataset folder), built here from the synthetic task (whose gold reward says which response
is better); RewardBench 2 has no file here, so the card lists it as skipped (offline) or reads it from the
hub (online). The card is written as Markdown, JSON, per-example JSONL and a PNG (a dot and 95% CI per
suite and model).

    python examples/report_card.py [--out runs/report_card]

The same from the command line, with the official data (or local copies, --suite-data SUITE=FILE):

    rewardkit eval --suite card --rm exrm=DIR --rm other=DIR2 --json card.json --markdown card.md \\
        --suite-data rm-bench=total_dataset.json --suite-data judgebench=gpt.jsonl \\
        --suite-data rmb=RMB-Reward-Model-Benchmark/RMB_dataset --plot card.png
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from rewardkit import DPOImplicitRM, train_reward_model
from rewardkit.eval.card import run_card
from rewardkit.eval.judgebench import CATEGORIES
from rewardkit.eval.rewardbench import V1_SUBSETS
from rewardkit.io import atomic_write_text
from rewardkit.records import PreferencePair
from rewardkit.synthetic import gold_reward, make_synthetic_preferences
from rewardkit.tiny import build_tiny_model

FILLER = "the a of and to it"  # neutral words: the gold reward does not see them
RM_DOMAINS = ("chat", "math", "code", "safety-refuse", "safety-response")


def styles(response: str) -> list[str]:
    """RM-Bench's three styles, imitated: concise, longer, longer still (same gold reward)."""
    return [response, f"{response} {FILLER}", f"{response} {FILLER} {FILLER}"]


def suite_rows(pairs) -> dict[str, list[dict]]:
    """One file's rows per suite, in each official layout, from gold-labelled pairs."""
    rows: dict[str, list[dict]] = {s: [] for s in ("rewardbench", "rm-bench", "judgebench", "ppe-preference")}
    for i, p in enumerate(pairs):
        rows["rewardbench"].append(
            {
                "id": i,
                "prompt": p.prompt,
                "chosen": p.chosen,
                "rejected": p.rejected,
                "subset": V1_SUBSETS[i % 23],
            }
        )
        rows["rm-bench"].append(
            {
                "id": i,
                "prompt": p.prompt,
                "chosen": styles(p.chosen),
                "rejected": styles(p.rejected),
                "domain": RM_DOMAINS[i % 5],
            }
        )
        a, b, label = (p.chosen, p.rejected, "A>B") if i % 2 == 0 else (p.rejected, p.chosen, "B>A")
        rows["judgebench"].append(
            {
                "pair_id": f"p{i}",
                "source": CATEGORIES[i % 4],
                "question": p.prompt,
                "response_A": a,
                "response_B": b,
                "label": label,
            }
        )
        winner = "model_a" if label == "A>B" else "model_b"
        rows["ppe-preference"].append(
            {
                "question_id": f"q{i}",
                "prompt": p.prompt,
                "response_1": a,
                "response_2": b,
                "winner": winner,
                "is_code": i % 3 == 0,
                "hard_prompt": i % 3 == 1,
            }
        )
    rows["ppe-correctness"] = []
    for j in range(len(pairs) // 2):
        a, b = pairs[2 * j], pairs[2 * j + 1]
        responses = [a.chosen, a.rejected, b.chosen, b.rejected]
        best = max(gold_reward(r) for r in responses)
        rows["ppe-correctness"].append(
            {
                "question_id": f"c{j}",
                "benchmark": ("MATH", "GPQA")[j % 2],
                "prompt": a.prompt,
                "responses": responses,
                "scores": [int(gold_reward(r) == best) for r in responses],
            }
        )
    return rows


def write_rmb_folder(pairs, root: Path) -> Path:
    """RMB's official folder: RMB_dataset/<category_path>.json, a JSON list each. Every other pair becomes a
    best-of-N list (its prompt; the best by gold of its own and the previous pair's four responses against
    the other three) when that best is strictly best, else a pairwise row."""
    files: dict[str, list[dict]] = {}
    for i, p in enumerate(pairs):
        goal, scenario = ("Helpfulness", "Chat/Discussion") if i % 2 else ("Harmlessness", "S1")
        row = {"conversation_input": [{"role": "user", "content": p.prompt, "language": "English"}]}
        q = pairs[i - 1]
        ranked = sorted([p.chosen, p.rejected, q.chosen, q.rejected], key=gold_reward, reverse=True)
        if i % 4 >= 2 and gold_reward(ranked[0]) > gold_reward(ranked[1]):
            row.update(bon_uid=str(i), bon_best={"llm_name": "a", "answer": ranked[0]})
            row["loser_list"] = [{"llm_name": "b", "answer": a} for a in ranked[1:]]
            row["category_path"] = f"BoN_set/{goal}/{scenario}"
        else:
            row.update(pair_uid=str(i), category_path=f"Pairwise_set/{goal}/{scenario}")
            row.update(
                chosen={"llm_name": "a", "answer": p.chosen}, reject={"llm_name": "b", "answer": p.rejected}
            )
        files.setdefault(row["category_path"], []).append(row)
    for path, rows in files.items():
        (root / f"{path}.json").parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(root / f"{path}.json", json.dumps(rows, indent=1))
    return root


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/report_card")
    ap.add_argument("--n-train", type=int, default=400)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rewardkit-card-") as tmp:
        lm = build_tiny_model(Path(tmp) / "lm")
        train = [
            PreferencePair([{"role": "user", "content": p.prompt}], p.chosen, p.rejected)
            for p in make_synthetic_preferences(args.n_train, seed=0)
        ]
        exrm = train_reward_model(lm, train, epochs=3, lr=3e-3, batch_size=16, progress=False).model
        untrained = DPOImplicitRM.from_pretrained(lm, lm, beta=0.1)  # policy == reference: every reward 0
        files = {}
        for suite, rows in suite_rows(make_synthetic_preferences(120, seed=1)).items():
            files[suite] = out / f"{suite}.jsonl"
            atomic_write_text(files[suite], "".join(json.dumps(r) + "\n" for r in rows))
        files["rmb"] = write_rmb_folder(make_synthetic_preferences(120, seed=2), out / "RMB_dataset")
        card = run_card({"exrm": exrm, "untrained-dporm": untrained}, files, n_boot=500)
        card.to_json(out / "card.json")
        card.to_jsonl(out / "card.jsonl")
        atomic_write_text(out / "card.md", card.to_markdown())
        card.to_png(out / "card.png")
        print(card.to_markdown())
        table = card.table()
        return {
            "scores": {m: {s: v["score"] for s, v in row.items()} for m, row in table.items()},
            "skipped": card.skipped,
            "rm_bench_hard": {m: card.reports["rm-bench"].points[m]["hard"] for m in table},
            "best_of_k": {m: card.reports["ppe-correctness"].points[m]["best_of_k"] for m in table},
            "bon": {n: card.reports["ppe-correctness"].points["exrm"][f"bon@{n}"] for n in range(1, 5)},
            "rmb": {m: card.reports["rmb"].points[m] for m in table},
        }


if __name__ == "__main__":
    main()
