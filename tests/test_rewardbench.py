"""RewardBench / RewardBench 2 (``rewardkit eval --suite``): hand-computed scoring, the official
``rewardbench`` 0.1.4 scoring functions run on rewardkit's per-example rewards, ``rewardkit score``
parity, one engine call per model, and bad rows."""

from __future__ import annotations

import ast
import importlib.util
import json
import math
import os
import random
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rewardkit.base import RewardModel
from rewardkit.errors import DataError
from rewardkit.eval import load_suite, rewardbench_v1_scores, rewardbench_v2_scores, run_suite
from rewardkit.eval.rewardbench import (
    V1_SECTIONS,
    V1_SUBSETS,
    V2_SUBSETS,
    TiesTable,
    bon_credit,
    suite_intervals,
    ties_sample,
    ties_score,
    v1_subset_values,
)
from rewardkit.synthetic import vocabulary

#: where scripts/setup.sh installs rewardbench 0.1.4 (--no-deps --target: it pins transformers 4.51)
RB_DIR = Path(
    os.environ.get(
        "REWARDKIT_REWARDBENCH_DIR", Path(sys.prefix) / "share" / "rewardkit" / "rewardbench-0.1.4"
    )
)


# ----------------------------------------------------------------------------- the official code


@pytest.fixture(scope="module")
def official():
    """rewardbench 0.1.4's own ``constants`` module and its scoring functions from ``utils.py``
    (``calculate_scores_per_section``, ``reroll_and_score_dataset``, ``sample_stats``,
    ``process_single_model``), compiled from the installed file; the package's ``__init__`` and the
    top-level imports of utils.py (torch, fastchat, its model zoo) are not run."""
    import datasets
    import pandas

    pkg = RB_DIR / "rewardbench"
    if not (pkg / "utils.py").is_file():
        pytest.skip(f"rewardbench 0.1.4 is not installed in {RB_DIR} (bash scripts/setup.sh installs it)")
    spec = importlib.util.spec_from_file_location("rewardbench_constants", pkg / "constants.py")
    constants = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(constants)
    wanted = {
        "calculate_scores_per_section",
        "reroll_and_score_dataset",
        "sample_stats",
        "process_single_model",
    }
    tree = ast.parse((pkg / "utils.py").read_text())
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wanted]
    assert {d.name for d in defs} == wanted
    namespace = {"np": np, "pd": pandas, "math": math, "Dataset": datasets.Dataset}
    exec(compile(ast.Module(defs, type_ignores=[]), str(pkg / "utils.py"), "exec"), namespace)
    namespace["constants"] = constants
    return namespace


# ----------------------------------------------------------------------------- fixtures


WORDS = vocabulary()


def _text(rng: random.Random, k: int = 6) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(k))


def v1_rows(seed: int = 0, per_subset: int = 2) -> list[dict]:
    """Rows in allenai/reward-bench's layout, every official subset."""
    rng = random.Random(seed)
    return [
        {
            "prompt": _text(rng),
            "chosen": _text(rng, rng.randint(3, 9)),
            "chosen_model": "m1",
            "rejected": _text(rng, rng.randint(3, 9)),
            "rejected_model": "m2",
            "subset": subset,
            "id": 100 * i + j,
        }
        for i, subset in enumerate(V1_SUBSETS)
        for j in range(per_subset)
    ]


def v2_rows(seed: int = 0) -> list[dict]:
    """Rows in allenai/reward-bench-2's layout: five best-of-4 subsets and Ties prompts with both
    samples, a tied sample alone, a ref sample alone and a tied sample with one correct answer."""
    rng = random.Random(seed)

    def row(id_, subset, n_correct, n_rejected):
        chosen = [_text(rng, rng.randint(3, 9)) for _ in range(n_correct)]
        rejected = [_text(rng, rng.randint(3, 9)) for _ in range(n_rejected)]
        return {
            "id": id_,
            "prompt": _text(rng),
            "chosen": chosen,
            "rejected": rejected,
            "num_correct": n_correct,
            "num_rejected": n_rejected,
            "total_completions": n_correct + n_rejected,
            "models": ["m"] * (n_correct + n_rejected),
            "subset": subset,
        }

    rows = [row(str(10 * i + j), s, 1, 3) for i, s in enumerate(V2_SUBSETS[:-1]) for j in range(3)]
    for pid in range(4):
        rows += [row(f"ref:{pid}", "Ties", 1, 3), row(f"tied:{pid}", "Ties", 3, 3)]
    rows += [row("tied:7", "Ties", 2, 2), row("ref:8", "Ties", 1, 2), row("ref:9", "Ties", 1, 2)]
    rows += [row("tied:9", "Ties", 1, 2)]
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


class WordCountRM(RewardModel):
    """reward = number of words of the response; records every engine call."""

    def __init__(self):
        self.calls = []

    def score_texts(self, texts):
        self.calls.append(texts)
        return np.array([len(r.split()) for r in texts.responses], dtype=np.float32)

    def score(self, prompts, responses):  # pragma: no cover - score_texts is the hook used
        raise AssertionError("not used")

    def save(self, path):  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def _load(cls, path, manifest, **kwargs):  # pragma: no cover
        raise NotImplementedError


# ----------------------------------------------------------------------------- hand-computed maths


def test_v1_scores_hand_computed():
    rows = [  # (subset, chosen, rejected)
        ("alpacaeval-easy", 2, 1),
        ("alpacaeval-easy", 1, 1),  # a tie counts 0
        ("mt-bench-med", 3, 1),
        ("llmbar-natural", 0, 1),
        ("donotanswer", 1, 0),
        ("math-prm", 1, 0),
        ("math-prm", 0, 0),
        ("hep-go", 1, 0),
    ]
    s = rewardbench_v1_scores(
        [r[0] for r in rows], np.array([r[1] for r in rows]), np.array([r[2] for r in rows])
    )
    assert s.subsets["alpacaeval-easy"] == 0.5 and s.subsets["math-prm"] == 0.5
    chat, reasoning = (0.5 * 100 + 1.0 * 40) / 140, (0.5 * 984 + 1.0 * 164) / (984 + 164)
    assert s.sections == pytest.approx(
        {"Chat": chat, "Chat Hard": 0.0, "Safety": 1.0, "Reasoning": reasoning}
    )
    assert s.score == pytest.approx((chat + 0.0 + 1.0 + reasoning) / 4)
    assert s.counts["math-prm"] == 2 and list(s.subsets)[0] == "alpacaeval-easy"  # official order
    with pytest.raises(ValueError, match="unknown RewardBench subsets"):
        rewardbench_v1_scores(["chat"], np.ones(1), np.zeros(1))


def test_bon_credit_splits_ties_at_the_maximum():
    assert bon_credit([3, 1, 2, 0]) == 1.0
    assert bon_credit([3, 3, 1, 0]) == 0.5
    assert bon_credit([0, 0, 0, 0]) == 0.25
    assert bon_credit([1, 3, 2, 0]) == 0.0 and bon_credit([2, 3, 3, 1]) == 0.0


def test_ties_score_hand_computed():
    samples = {
        "ref:0": ties_sample([3, 1, 2], 1),  # accurate, margin 1
        "tied:0": ties_sample([5, 4, 1, 2], 2),  # accurate, margin 2, spread 1
        "ref:1": ties_sample([2, 0], 1),  # margin 2
        "tied:1": ties_sample([3, 2.5, 0], 2),  # margin 2.5, spread 0.5
        "tied:2": ties_sample([1, 1, 0], 2),  # no ref sample: only tied accuracy counts
        "ref:3": ties_sample([0, 1], 1),  # inaccurate, no tied sample
    }
    assert samples["tied:0"] == (True, 2.0, 1.0) and samples["ref:3"] == (False, -1.0, None)
    assert ties_sample([1, 2], 2) == (False, 0.0, None)  # no rejected completion
    table = TiesTable.from_samples(samples)
    # acc tied 3/3, acc ref 2/3; over prompts 0, 1: margin > spread 2/2, min margin > spread 1/2 (prompt 0:
    # 1 > 1 is false), tanh(min margin / spread - 1) = tanh(0), tanh(3)
    expected = 0.3 * 1 + 0.3 * 2 / 3 + 0.2 * 1 + 0.2 * 0.5 + 0.01 * (math.tanh(0) + math.tanh(3)) / 2
    assert ties_score(table) == pytest.approx(expected, abs=1e-15)
    # prompt weights are multiplicities: prompt 0 drawn twice is prompt 0 alone
    alone = TiesTable.from_samples({k: v for k, v in samples.items() if k.endswith(":0")})
    w = np.array([[2.0, 0, 0, 0], [1, 1, 1, 1]])
    assert ties_score(table, w) == pytest.approx([ties_score(alone), expected], abs=1e-15)
    assert ties_score(alone) == pytest.approx(0.3 + 0.3 + 0.2, abs=1e-15)
    with pytest.raises(ValueError, match="ref:N"):
        TiesTable.from_samples({"0": samples["ref:0"]})


def test_v2_overall_is_the_mean_of_the_subsets():
    s = rewardbench_v2_scores(
        ["Math", "Math", "Focus", "Ties", "Ties"],
        ["1", "2", "3", "ref:0", "tied:0"],
        [
            np.array([2.0, 1, 0, 0]),
            np.array([1.0, 1, 1, 1]),
            np.array([0.0, 1, 0, 0]),
            [3, 1, 2],
            [5, 4, 1, 2],
        ],
        [1, 1, 1, 1, 2],
    )
    assert s.subsets == pytest.approx({"Math": (1 + 0.25) / 2, "Focus": 0.0, "Ties": 0.8})
    assert s.score == pytest.approx((0.625 + 0 + 0.8) / 3) and s.sections == {}
    assert s.counts == {"Math": 2, "Focus": 1, "Ties": 1}


def test_intervals_bracket_the_scores():
    rng = np.random.default_rng(0)
    subsets = [s for s in V1_SUBSETS for _ in range(30)]
    values = v1_subset_values(subsets, rng.normal(0.3, 1, len(subsets)), rng.normal(0, 1, len(subsets)))
    ci = suite_intervals(values, sections=True, n_boot=500)
    assert set(ci["sections"]) == set(V1_SECTIONS)
    for name, v in values.items():
        lo, hi = ci["subsets"][name]
        assert lo <= v.mean() <= hi
    lo, hi = ci["score"]
    point = np.mean(
        [
            np.average([values[k].mean() for k in sec], weights=list(sec.values()))
            for sec in V1_SECTIONS.values()
        ]
    )
    assert lo < point < hi and hi - lo < 0.2  # 690 pairs: a few points wide
    one = suite_intervals({"Math": np.ones(5)}, sections=False, n_boot=50)
    assert one == {"subsets": {"Math": (1.0, 1.0)}, "sections": {}, "score": (1.0, 1.0)}


# ----------------------------------------------------------------------------- the run: one engine call


def test_one_engine_call_with_user_turns_and_hand_computed_report(tmp_path):
    rows = [
        {"prompt": "p0", "chosen": "a b c", "rejected": "a", "subset": "alpacaeval-easy", "id": 0},
        {"prompt": "p1", "chosen": "a", "rejected": "a b", "subset": "alpacaeval-easy", "id": 1},
        {"prompt": "p2", "chosen": "a b", "rejected": "a b", "subset": "hep-go", "id": 2},  # tie: wrong
        {"prompt": "p3", "chosen": "a b", "rejected": "a", "subset": "hep-go", "id": 3},
    ]
    rm = WordCountRM()
    report = run_suite({"words": rm}, "rewardbench", write_jsonl(tmp_path / "v1.jsonl", rows), n_boot=100)
    assert len(rm.calls) == 1 and len(rm.calls[0]) == 8  # every completion of the data in one call
    assert rm.calls[0].prompts[0] == [{"role": "user", "content": "p0"}]
    assert rm.calls[0].pairs is not None  # pairs: as `rewardkit score` encodes them
    s = report.scores["words"]
    assert s.subsets == {"alpacaeval-easy": 0.5, "hep-go": 0.5} and s.sections == {
        "Chat": 0.5,
        "Reasoning": 0.5,
    }
    assert s.score == 0.5 and len(report.data.missing) == 21
    rows_out = report.jsonl_rows()
    assert rows_out[2] == {"model": "words", "id": 2, "subset": "hep-go", "scores": [2.0, 2.0]}
    md = report.to_markdown()
    assert "| words | 50.0 | 50.0 | 50.0 |" in md and "Missing subsets (21)" in md

    rows2 = [
        {
            "id": "1",
            "prompt": "q",
            "chosen": ["a b"],
            "rejected": ["a b", "a", "a"],
            "num_correct": 1,
            "subset": "Math",
        },
        {
            "id": "2",
            "prompt": "q",
            "chosen": ["a"],
            "rejected": ["a b", "a", "a"],
            "num_correct": 1,
            "subset": "Focus",
        },
    ]
    rm = WordCountRM()
    report = run_suite({"words": rm}, "rewardbench2", rows2, n_boot=100)
    assert len(rm.calls) == 1 and rm.calls[0].responses == ["a b", "a b", "a", "a", "a", "a b", "a", "a"]
    assert (
        report.scores["words"].subsets == {"Math": 0.5, "Focus": 0.0} and report.scores["words"].score == 0.25
    )
    assert report.jsonl_rows()[0] == {
        "model": "words",
        "id": "1",
        "subset": "Math",
        "scores": [2.0, 2.0, 1.0, 1.0],
        "num_correct": 1,
    }
