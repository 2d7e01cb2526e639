"""RewardBench and RewardBench 2 scores of a trained reward model and of an untrained DPO implicit RM,
on small local files in the two official layouts (built here from the synthetic task, whose gold
reward says which response is correct).

    python examples/rewardbench.py [--out runs/rewardbench]

The same from the command line, on the real datasets (or on local copies with --data FILE):

    rewardkit eval --suite rewardbench --rm exrm=DIR --json rb.json --markdown rb.md --per-example rb.jsonl
    rewardkit eval --suite rewardbench2 --rm exrm=DIR --json rb2.json --markdown rb2.md
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from rewardkit import DPOImplicitRM, train_reward_model
from rewardkit.eval import run_suite
from rewardkit.eval.rewardbench import V1_SUBSETS, V2_SUBSETS
from rewardkit.io import atomic_write_text
from rewardkit.records import PreferencePair
from rewardkit.synthetic import gold_reward, make_synthetic_preferences
from rewardkit.tiny import build_tiny_model


def user_turns(pairs):
    """The suites' prompts are user turns: train on the same shape."""
    return [PreferencePair([{"role": "user", "content": p.prompt}], p.chosen, p.rejected) for p in pairs]


def v1_rows(pairs) -> list[dict]:
    """allenai/reward-bench's layout, the pairs dealt over the 23 subsets."""
    return [
        {
            "id": i,
            "prompt": p.prompt,
            "chosen": p.chosen,
            "chosen_model": p.metadata["chosen_generator"],
            "rejected": p.rejected,
            "rejected_model": p.metadata["rejected_generator"],
            "subset": V1_SUBSETS[i % len(V1_SUBSETS)],
        }
        for i, p in enumerate(pairs)
    ]


def v2_rows(pairs) -> list[dict]:
    """allenai/reward-bench-2's layout: best-of-4 prompts (the response of the highest gold reward is
    correct) over the five subsets, and Ties prompts with a ``ref`` sample (one correct answer) and a
    ``tied`` sample (two)."""
    rows = []
    for j in range(len(pairs) // 2):
        a, b = pairs[2 * j], pairs[2 * j + 1]
        responses = sorted([a.chosen, a.rejected, b.chosen, b.rejected], key=gold_reward, reverse=True)
        gold = [gold_reward(r) for r in responses]
        subset = V2_SUBSETS[j % len(V2_SUBSETS)]
        if subset != "Ties" and gold[0] > gold[1]:
            rows.append(_v2(str(j), a.prompt, responses[:1], responses[1:], subset))
        elif subset == "Ties" and gold[1] > gold[2]:
            rows.append(_v2(f"ref:{j}", a.prompt, responses[:1], responses[2:], subset))
            rows.append(_v2(f"tied:{j}", a.prompt, responses[:2], responses[2:], subset))
    return rows


def _v2(id_, prompt, chosen, rejected, subset) -> dict:
    return {
        "id": id_,
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rejected,
        "num_correct": len(chosen),
        "num_rejected": len(rejected),
        "total_completions": len(chosen) + len(rejected),
        "models": [],
        "subset": subset,
    }


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
    return path


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/rewardbench")
    ap.add_argument("--n-train", type=int, default=400)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rewardkit-rewardbench-") as tmp:
        lm = build_tiny_model(Path(tmp) / "lm")
        train = user_turns(make_synthetic_preferences(args.n_train, seed=0))
        exrm = train_reward_model(lm, train, epochs=3, lr=3e-3, batch_size=16, progress=False).model
        # an untrained DPORM (policy == reference) gives every response the reward 0: a tie everywhere
        untrained = DPOImplicitRM.from_pretrained(lm, lm, beta=0.1)
        rms = {"exrm": exrm, "untrained-dporm": untrained}
        test = make_synthetic_preferences(184, seed=1)
        v1 = run_suite(rms, "rewardbench", write_jsonl(out / "filtered.jsonl", v1_rows(test)), n_boot=500)
        v2 = run_suite(rms, "rewardbench2", write_jsonl(out / "test.jsonl", v2_rows(test)), n_boot=500)
        for name, report in (("rewardbench", v1), ("rewardbench2", v2)):
            report.to_json(out / f"{name}.json")
            report.to_jsonl(out / f"{name}.jsonl")
            atomic_write_text(out / f"{name}.md", report.to_markdown())
            print(report.to_markdown())
        return {
            "v1": {name: s.score for name, s in v1.scores.items()},
            "v1_sections": v1.scores["exrm"].sections,
            "v2": {name: s.score for name, s in v2.scores.items()},
            "v2_subsets": {name: s.subsets for name, s in v2.scores.items()},
        }


if __name__ == "__main__":
    main()
