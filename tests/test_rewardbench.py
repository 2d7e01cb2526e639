"""RewardBench / RewardBench 2 (``rewardkit eval --suite``): hand-computed scoring, the official
``rewardbench`` 0.1.4 scoring functions run on rewardkit's per-example rewards, ``rewardkit score``
parity, every local model kind through the CLI (tests/test_suites.py: the run around the scoring)."""

from __future__ import annotations

import ast
import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from rewardkit.cli import main
from rewardkit.eval import rewardbench_v1_scores, rewardbench_v2_scores
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
from tests.suite_fixtures import v1_rows, v2_rows, write_jsonl

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
    # both samples, but a single correct answer in the tied one: no spread, only the accuracy terms
    # (the official code's mean over no prompts is NaN there; rewardkit counts those terms 0)
    single = TiesTable.from_samples({"ref:0": samples["ref:0"], "tied:0": ties_sample([4, 1, 2], 1)})
    assert ties_score(single) == pytest.approx(0.3 + 0.3, abs=1e-15)


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


# ----------------------------------------------------------------------------- every kind, parity


@pytest.fixture(scope="module")
def model_dirs(tiny_lm, tmp_path_factory):
    """Saved models of every local kind: explicit, DPO implicit with a reference and reference-free,
    an untrained DPORM (policy == reference: every reward is 0, every completion tied), an ensemble,
    a WARM merge and a length-penalised RM."""
    from rewardkit import BradleyTerryRM, DPOImplicitRM, LengthPenalizedRM, load_ensemble
    from rewardkit.tiny import build_tiny_model

    d = tmp_path_factory.mktemp("suite_models")
    ref = build_tiny_model(d / "ref_lm", seed=1)
    dirs = {name: d / name for name in ("bt", "bt2", "dpo", "dpo_free", "dpo_same", "ens", "lp")}
    BradleyTerryRM.from_pretrained(tiny_lm, head_seed=3).save(dirs["bt"])
    BradleyTerryRM.from_pretrained(tiny_lm, head_seed=4).save(dirs["bt2"])
    DPOImplicitRM.from_pretrained(tiny_lm, ref, beta=0.5).save(dirs["dpo"])
    DPOImplicitRM.from_pretrained(tiny_lm, reference_free=True, beta=1.0).save(dirs["dpo_free"])
    DPOImplicitRM.from_pretrained(tiny_lm, tiny_lm, beta=0.5).save(dirs["dpo_same"])
    load_ensemble([dirs["bt"], dirs["bt2"]]).save(dirs["ens"])
    from rewardkit.merge import weight_average

    weight_average([dirs["bt"], dirs["bt2"]], out=d / "warm", progress=False)
    dirs["warm"] = d / "warm"
    from rewardkit import load_reward_model

    LengthPenalizedRM(load_reward_model(dirs["bt"]), length_penalty=0.1, reference=5).save(dirs["lp"])
    return {k: v for k, v in dirs.items() if k != "bt2"}


def _dtype_flag(command: str) -> list[str]:
    """``--dtype float32`` where the command takes it: ``eval`` and ``score`` then score alike."""
    from rewardkit.cli import cli

    params = {p.name for p in cli.commands[command].params}
    return ["--dtype", "float32"] if "dtype" in params else []


FLOAT32_EVAL = _dtype_flag("eval")


def _eval_suite(suite, data, model_dirs, out: Path, capsys, *extra):
    argv = ["eval", "--suite", suite, "--data", str(data), "--n-boot", "200"]
    for name, folder in model_dirs.items():
        argv += ["--rm", f"{name}={folder}"]
    argv += [
        "--json",
        str(out / "r.json"),
        "--markdown",
        str(out / "r.md"),
        "--per-example",
        str(out / "r.jsonl"),
    ]
    main([*argv, *FLOAT32_EVAL, *extra])
    capsys.readouterr()
    rows = [json.loads(line) for line in (out / "r.jsonl").read_text().splitlines()]
    return json.loads((out / "r.json").read_text()), rows


def test_v1_equals_the_official_functions_and_rewardkit_score(official, model_dirs, tmp_path, capsys):
    const = official["constants"]
    assert {
        k: {s: const.EXAMPLE_COUNTS[s] for s in v} for k, v in const.SUBSET_MAPPING.items()
    } == V1_SECTIONS
    data = write_jsonl(tmp_path / "filtered.jsonl", v1_rows())
    report, rows = _eval_suite("rewardbench", data, model_dirs, tmp_path, capsys)
    assert len(rows) == len(model_dirs) * 46 and report["missing_subsets"] == []
    for name in model_dirs:
        mine = report["models"][name]
        by_subset: dict[str, list[int]] = {}
        for r in rows:  # the official per-pair rule: 1 if chosen > rejected else 0
            if r["model"] == name:
                by_subset.setdefault(r["subset"], []).append(1 if r["scores"][0] > r["scores"][1] else 0)
        grouped = {s: sum(v) / len(v) for s, v in by_subset.items()}
        sections = official["calculate_scores_per_section"](
            const.EXAMPLE_COUNTS, const.SUBSET_MAPPING, grouped
        )
        assert mine["subsets"] == grouped
        assert mine["sections"] == pytest.approx(sections, abs=1e-12)
        assert mine["score"] == pytest.approx(np.mean(list(sections.values())), abs=1e-12)
        lo, hi = mine["ci"]["score"]
        assert lo <= mine["score"] <= hi
    assert report["models"]["dpo_same"]["score"] == 0.0  # every pair tied: all wrong
    assert 0 < report["models"]["bt"]["score"] < 1
    assert "uncertainty" in report["models"]["ens"] and "uncertainty" not in report["models"]["bt"]

    # per-example v1 rewards are `rewardkit score`'s on the same pairs (the prompt a user turn)
    pairs = tmp_path / "pairs.jsonl"
    write_jsonl(
        pairs,
        [
            {
                "prompt": [{"role": "user", "content": r["prompt"]}],
                "chosen": r["chosen"],
                "rejected": r["rejected"],
            }
            for r in v1_rows()
        ],
    )
    for name in ("bt", "dpo", "dpo_free", "ens", "warm", "lp"):
        out = tmp_path / f"score_{name}.jsonl"
        main(
            [
                "score",
                "--rm",
                str(model_dirs[name]),
                "--data",
                str(pairs),
                "--out",
                str(out),
                *_dtype_flag("score"),
            ]
        )
        scored = [json.loads(line) for line in out.read_text().splitlines()]
        suite = [r["scores"] for r in rows if r["model"] == name]
        assert [[s["chosen"], s["rejected"]] for s in scored] == suite, name
        if name == "ens":  # the uncertainty column is the ensemble's member std
            std = [r["std"] for r in rows if r["model"] == name]
            assert [[s["chosen_std"], s["rejected_std"]] for s in scored] == std
            mean_std = report["models"]["ens"]["uncertainty"]["score"]
            assert mean_std == pytest.approx(np.mean(std), rel=1e-6) and mean_std > 0
    capsys.readouterr()


def test_v2_equals_the_official_functions(official, model_dirs, tmp_path, capsys):
    import datasets

    data = write_jsonl(tmp_path / "test.jsonl", v2_rows())
    report, rows = _eval_suite("rewardbench2", data, model_dirs, tmp_path, capsys)
    ties_checked = 0
    for name in model_dirs:
        mine = [r for r in rows if r["model"] == name]
        # the official pipeline: one row per completion, rerolled per prompt with its `results`
        unrolled = {"text": [], "scores": [], "subset": [], "id": []}
        for r in mine:
            for i, score in enumerate(r["scores"]):
                unrolled["text"].append(f"{r['id']}/{i}")
                unrolled["scores"].append(score)
                unrolled["subset"].append(r["subset"])
                unrolled["id"].append(r["id"])
        rerolled = official["reroll_and_score_dataset"](
            datasets.Dataset.from_dict(unrolled),
            [len(r["scores"]) for r in mine],
            cols_to_combine=["text", "scores"],
        ).add_column("num_correct", [r["num_correct"] for r in mine])
        expected = {}
        for subset in V2_SUBSETS:
            part = rerolled.select([i for i, s in enumerate(rerolled["subset"]) if s == subset])
            if subset == "Ties":
                expected[subset] = official["process_single_model"](part)[1]
            else:
                expected[subset] = sum(part["results"]) / len(part["results"])
        got = report["models"][name]
        assert got["subsets"] == pytest.approx(expected, abs=1e-12), name
        assert got["score"] == pytest.approx(np.mean(list(expected.values())), abs=1e-12)
        assert got["counts"]["Ties"] == 7 and got["counts"]["Math"] == 3  # Ties counts prompts
        ties_checked += expected["Ties"] != 0
    assert ties_checked >= 2  # the Ties rule was exercised with non-zero scores
    same = report["models"]["dpo_same"]["subsets"]  # every completion tied at the maximum: 1/4 each
    assert [same[s] for s in V2_SUBSETS[:-1]] == [0.25] * 5
    md = (tmp_path / "r.md").read_text()
    assert md.count("\n| ") >= 1 + len(model_dirs) + 1 + 6 and "Uncertainty (member std)" in md


# ----------------------------------------------------------------------------- seeds, length penalty, edge case


def test_seeds_are_reported_one_by_one_and_length_penalty_adds_models(model_dirs, tmp_path, capsys):
    data = write_jsonl(tmp_path / "v1.jsonl", v1_rows(per_subset=1))
    seeds = f"s={model_dirs['bt']},{model_dirs['dpo_same']}"
    argv = ["eval", "--suite", "rewardbench", "--data", str(data), "--rm", seeds, "--n-boot", "50"]
    argv += ["--length-penalty", "0.5", "--reference-length", "3", "--length-unit", "words"]
    argv += ["--json", str(tmp_path / "r.json")]
    main([*argv, *FLOAT32_EVAL])
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    assert list(report["models"]) == ["s#1", "s#2", "s#1+LP", "s#2+LP"] and "## RewardBench" in out
    assert report["models"]["s#2"]["score"] == 0.0  # the untrained DPORM: every pair tied
    # a length penalty on all-zero rewards prefers the shorter response: it wins exactly where it is shorter
    rows = v1_rows(per_subset=1)
    shorter = {r["subset"]: float(len(r["chosen"].split()) < len(r["rejected"].split())) for r in rows}
    assert report["models"]["s#2+LP"]["subsets"] == pytest.approx(shorter)


def test_the_one_ties_case_where_the_official_mean_is_nan(official):
    import datasets

    rows = {"id": ["ref:0", "tied:0"], "scores": [[3.0, 1.0, 2.0], [4.0, 1.0, 2.0]], "num_correct": [1, 1]}
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning):
        theirs = official["process_single_model"](datasets.Dataset.from_dict(rows))[1]
    ours = rewardbench_v2_scores(["Ties", "Ties"], rows["id"], rows["scores"], rows["num_correct"])
    assert math.isnan(theirs) and ours.subsets["Ties"] == pytest.approx(0.6, abs=1e-15)
