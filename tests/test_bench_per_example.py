"""The report-card suites' per-example files reproduce their summaries exactly, their online paths ask for
exactly the official sources, and ids that are equal as text are one id.

None of RM-Bench's, JudgeBench's, PPE's or RMB's scoring codes is a package (docs/evaluation.md), so each
summary is recomputed here from the per-example file alone (``report.to_jsonl``), by the official
definition written out as plain loops over the file's rows (PPE Correctness's best-of-n by brute force
over every n-subset, not by order statistics), and compared with the report; the word-count rewards of
tests/bench_fixtures.py also give the values worked out by hand there."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pytest

from rewardkit.errors import DataError
from rewardkit.eval.bench_data import load_bench
from rewardkit.eval.bench_report import report_from_rewards
from rewardkit.eval.suite_registry import get_bench
from tests.bench_fixtures import (
    JUDGEBENCH_ROWS,
    PPE_CORRECTNESS_ROWS,
    PPE_PREFERENCE_ROWS,
    RMB_EXPECTED,
    RMBENCH_EXPECTED,
    RMBENCH_ROWS,
    judgebench_row,
    ppe_correctness_row,
    ppe_preference_row,
    rmbench_row,
    write_rmb,
)
from tests.suite_fixtures import write_jsonl


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


# ----------------------------------------------------------------------------- the official definitions


def rmbench_from_file(rows: list[dict]) -> dict[str, float]:
    """compute_accuracy (THU-KEG/RM-Bench scripts/utils.py @ 73c52d7): per row the 3 x 3 strict
    comparisons; hard = upper-right, normal = diagonal, easy = lower-left; domains by startswith."""
    by_domain: dict[str, list[tuple[float, float, float]]] = {}
    for r in rows:
        c, j = r["score_chosen"], r["score_rejected"]
        m = [[1.0 if c[a] > j[b] else 0.0 for b in range(3)] for a in range(3)]
        hard = _mean([m[0][1], m[0][2], m[1][2]])
        normal = _mean([m[0][0], m[1][1], m[2][2]])
        easy = _mean([m[1][0], m[2][0], m[2][1]])
        domain = next(d for d in ("chat", "math", "code", "safety") if r["domain"].startswith(d))
        by_domain.setdefault(domain, []).append((hard, normal, easy))
    out = {}
    for d, triples in by_domain.items():
        for k, level in enumerate(("hard", "normal", "easy")):
            out[f"{d}/{level}"] = _mean([t[k] for t in triples])
        out[d] = _mean([out[f"{d}/{level}"] for level in ("hard", "normal", "easy")])
    for level in ("hard", "normal", "easy"):
        out[level] = _mean([out[f"{d}/{level}"] for d in by_domain])
    out["score"] = _mean([out[d] for d in by_domain])
    return out


JUDGEBENCH_CATEGORIES = ("mmlu-pro", "livebench-reasoning", "livebench-math", "livecodebench")


def judgebench_from_file(rows: list[dict]) -> dict[str, float]:
    """A reward-model judge decides A>B when r(A) > r(B), else B>A; single game right when the decision
    is the label; two games: right on a strict win only (a tie votes each way)."""
    single, double = {}, {}
    for r in rows:
        a, b = r["score_A"], r["score_B"]
        one = float(("A>B" if a > b else "B>A") == r["label"])
        two = float((a > b) if r["label"] == "A>B" else (b > a))
        keys = ["score"] + [c for c in JUDGEBENCH_CATEGORIES if r["source"].startswith(c)]
        for k in keys:
            single.setdefault(k, []).append(one)
            double.setdefault(k, []).append(two)
    out = {k: _mean(v) for k, v in single.items()}
    out.update({("two_game" if k == "score" else f"two_game/{k}"): _mean(v) for k, v in double.items()})
    return out


def ppe_preference_from_file(rows: list[dict]) -> dict[str, float]:
    right: dict[str, list[float]] = {}
    for r in rows:
        if r["winner"] not in ("model_a", "model_b"):
            continue  # a human tie does not count
        s1, s2 = r["score_1"], r["score_2"]
        ok = float(s1 > s2 if r["winner"] == "model_a" else s2 > s1)
        for k in ["score", *r["categories"]]:
            right.setdefault(k, []).append(ok)
    out = {k: _mean(v) for k, v in right.items()}
    out["lower_bound"] = min(v for k, v in out.items() if k != "score")
    return out


def _top_pick(scores: list[float], correct: list[int]) -> float:
    best = max(scores)
    tied = [c for s, c in zip(scores, correct) if s == best]
    return sum(tied) / len(tied)


def ppe_correctness_from_file(rows: list[dict]) -> dict[str, float]:
    """Pairs, Brier and best-of-n by brute force: bon@n = the mean over every n-subset of the top pick's
    correctness (ties split)."""
    per: dict[str, dict[str, list[float]]] = {}
    k = len(rows[0]["scores"])
    for r in rows:
        s, c = r["scores"], r["correct"]
        good = [x for x, y in zip(s, c) if y]
        bad = [x for x, y in zip(s, c) if not y]
        d = per.setdefault(
            r["benchmark"], {"accuracy": [], "brier": [], **{f"bon@{n}": [] for n in range(1, k + 1)}}
        )
        if good and bad:
            margins = [g - b for g in good for b in bad]
            d["accuracy"].append(_mean([float(m > 0) for m in margins]))
            d["brier"].append(_mean([(1 - 1 / (1 + np.exp(-m))) ** 2 for m in margins]))
        for n in range(1, k + 1):
            picks = [_top_pick([s[i] for i in sub], [c[i] for i in sub]) for sub in combinations(range(k), n)]
            d[f"bon@{n}"].append(_mean(picks))
    out = {}
    for b, d in per.items():
        out[f"{b}/accuracy"] = _mean(d["accuracy"])
        out[f"{b}/brier"] = _mean(d["brier"])
        out[f"{b}/best_of_k"] = _mean(d[f"bon@{k}"])
    for metric in ["accuracy", "brier", *(f"bon@{n}" for n in range(1, k + 1))]:
        values = [_mean(d[metric]) for d in per.values()]
        out["score" if metric == "accuracy" else metric] = _mean([v for v in values if not np.isnan(v)])
    out["best_of_k"] = out[f"bon@{k}"]
    return out


def rmb_from_file(rows: list[dict]) -> dict[str, float]:
    """my_run_rm.py's ACC over a folder's rows: chosen (bon_best) strictly above the other reward(s)."""
    flags: dict[str, list[float]] = {}
    for r in rows:
        first = r.get("chosen_reward", r.get("bon_best_reward"))
        others = [r["reject_reward"]] if "reject_reward" in r else r["loser_rewards"]
        ok = float(first > max(others))
        assert ok == r["is_correct"]
        parts = r["category_path"].split("/")
        for key in ("/".join(parts[:2]), r["category_path"]):
            flags.setdefault(key, []).append(ok)
    out = {k: _mean(v) for k, v in flags.items()}
    out["score"] = _mean([out[k] for k in out if k.count("/") == 1])
    return out


# ----------------------------------------------------------------------------- the fixtures


def _rmb_rows(tmp_path):
    return write_rmb(tmp_path)


SUITES = {
    # suite: (data for load_bench, recomputation, hand-computed values of the word-count rewards)
    "rm-bench": (lambda _: [r for r, _ in RMBENCH_ROWS], rmbench_from_file, RMBENCH_EXPECTED),
    "judgebench": (
        lambda _: [r for r, _, _ in JUDGEBENCH_ROWS],
        judgebench_from_file,
        {"score": 4 / 7, "two_game": 3 / 7, "livebench-math": 0.5, "two_game/livebench-math": 0.0},
    ),
    "ppe-preference": (
        lambda _: PPE_PREFERENCE_ROWS,
        ppe_preference_from_file,
        {"score": 0.5, "hard_prompt": 0.5, "is_code": 0.0, "english_prompt": 0.5, "lower_bound": 0.0},
    ),
    "ppe-correctness": (
        lambda _: PPE_CORRECTNESS_ROWS,
        ppe_correctness_from_file,
        {"MATH/accuracy": (0.5 + 2 / 3) / 2, "MATH/best_of_k": 0.25, "GPQA/best_of_k": 1.0},
    ),
    "rmb": (_rmb_rows, rmb_from_file, RMB_EXPECTED),
}


def _word_counts(data) -> list[np.ndarray]:
    return [np.array([float(len(c.split())) for c in e.completions]) for e in data.examples]


@pytest.mark.parametrize("suite", list(SUITES))
def test_the_per_example_file_reproduces_the_summary(suite, tmp_path):
    make, from_file, by_hand = SUITES[suite]
    data = load_bench(get_bench(suite), make(tmp_path))
    rng = np.random.default_rng(7)
    rewards = {
        "words": _word_counts(data),  # ties included: equal lengths
        "noisy": [np.round(rng.normal(size=len(e.completions)), 1) for e in data.examples],
    }
    report = report_from_rewards(data, rewards, n_boot=20)
    path = tmp_path / "pe.jsonl"
    report.to_jsonl(path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 2 * len(data)
    for name in rewards:
        again = from_file([r for r in rows if r["model"] == name])
        points = report.points[name]
        assert set(again) <= set(points), set(again) - set(points)
        for key, value in again.items():
            assert points[key] == pytest.approx(value, abs=1e-12, nan_ok=True), (name, key)
        for key in points:  # every metric the report gives is recomputed, except the suite's derived ones
            assert key in again or key.endswith(("/hard", "/normal", "/easy")), key
    for key, value in by_hand.items():
        assert report.points["words"][key] == pytest.approx(value, abs=1e-12), key


# ----------------------------------------------------------------------------- the official sources


HUB_SOURCES = {
    "rm-bench": [("THU-KEG/RM-Bench", "train")],
    "judgebench": [("ScalerLab/JudgeBench", "gpt")],
    "ppe-preference": [("lmarena-ai/PPE-Human-Preference-V1", "test")],
    "ppe-correctness": [
        (f"lmarena-ai/PPE-{b}-Best-of-K", "train")
        for b in ("MMLU-Pro", "MATH", "GPQA", "IFEval", "MBPP-Plus")
    ],
}
HUB_ROWS = {
    "rm-bench": lambda name: [rmbench_row(1, "chat", [2, 2, 2], [1, 1, 1])],
    "judgebench": lambda name: [judgebench_row("p", "livecodebench", 2, 1, "A>B")],
    "ppe-preference": lambda name: [ppe_preference_row("q", 2, 1, "model_a")],
    "ppe-correctness": lambda name: [
        {k: v for k, v in ppe_correctness_row(f"{name}:1", "", [1, 2], [0, 1]).items() if k != "benchmark"}
    ],
}


@pytest.mark.parametrize("suite", list(HUB_SOURCES))
def test_the_online_path_asks_for_exactly_the_official_source(suite, monkeypatch):
    import rewardkit.readers

    asked = []

    def fake_hub(name, split):
        asked.append((name, split))
        return HUB_ROWS[suite](name)

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(rewardkit.readers, "_load_hub", fake_hub)
    data = load_bench(get_bench(suite))
    assert asked == HUB_SOURCES[suite]
    assert data.source == ", ".join(name for name, _ in HUB_SOURCES[suite])  # named in every report
    if suite == "ppe-correctness":  # each row tagged with its dataset's benchmark
        assert [e.groups for e in data.examples] == [(b,) for b in get_bench(suite).groups]


def test_rmb_names_its_repository_and_commit():
    spec = get_bench("rmb")
    assert spec.hub == () and "2be3180857f2190b7ffa929d43190835627f1f4d" in spec.scoring_source
    with pytest.raises(DataError, match=r"github.com/Zhou-Zoey/RMB-Reward-Model-Benchmark: clone it"):
        load_bench(spec)


# ----------------------------------------------------------------------------- ids equal as text
# (the one rule of every suite, rewardkit.eval.bench_data.id_text: 1, "1" and " 01" are one id)


ID_CASES = {
    "rm-bench": [
        rmbench_row(1, "chat", [1, 1, 1], [1, 1, 1]),
        rmbench_row("1", "chat", [1, 1, 1], [1, 1, 1]),
    ],
    "judgebench": [
        judgebench_row(5, "livecodebench", 1, 2, "B>A"),
        judgebench_row(" 05", "livecodebench", 1, 2, "B>A"),
    ],
    "ppe-preference": [ppe_preference_row(3, 1, 2, "model_b"), ppe_preference_row("3", 1, 2, "model_b")],
    "ppe-correctness": [
        ppe_correctness_row(9, "MATH", [1, 2], [0, 1]),
        ppe_correctness_row("9", "MATH", [1, 2], [0, 1]),
    ],
}


@pytest.mark.parametrize("suite", list(ID_CASES))
def test_ids_equal_as_text_are_one_id(suite, tmp_path):
    path = write_jsonl(tmp_path / "ids.jsonl", ID_CASES[suite])
    with pytest.raises(DataError) as info:
        load_bench(get_bench(suite), path)
    message = str(info.value)
    assert message.startswith(f"{path}:2: field 'id': ") and "repeats the id of" in message, message
    assert f"{path}:1" in message and "\n" not in message
    skipped = load_bench(get_bench(suite), path, on_error="skip")
    assert len(skipped) == 1 and [s.location for s in skipped.skipped] == [f"{path}:2"]


def test_rmb_ids_equal_as_text_are_one_id(tmp_path):
    from tests.bench_fixtures import rmb_pair

    path = tmp_path / "Discussion.json"
    rows = [rmb_pair("1", "Pairwise_set/Helpfulness/Chat/Discussion", 2, 1)]
    rows.append({**rows[0], "pair_uid": 1})
    path.write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"field 'id': 1 repeats the id of .*Discussion.json"):
        load_bench(get_bench("rmb"), path)


def test_a_pinned_revision_reaches_the_hub_loader(monkeypatch):
    """``--data org/name@REV`` (or ``--suite-data SUITE=org/name@REV``) reads that revision of the hub
    dataset; a suite's own hub dataset keeps its split and, for PPE Correctness, its benchmark."""
    import datasets

    from rewardkit.eval.suite_data import load_suite
    from tests.suite_fixtures import v1_rows

    asked = []

    def fake_load_dataset(name, split=None, revision=None):
        asked.append((name, split, revision))
        if name == "allenai/reward-bench":
            return v1_rows(per_subset=1)
        return HUB_ROWS["ppe-correctness"](name)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    data = load_bench(get_bench("ppe-correctness"), "lmarena-ai/PPE-GPQA-Best-of-K@0123abcd")
    assert asked == [("lmarena-ai/PPE-GPQA-Best-of-K", "train", "0123abcd")]
    assert data.groups == ["GPQA"] and data.source == "lmarena-ai/PPE-GPQA-Best-of-K@0123abcd"
    assert len(load_suite("rewardbench", "allenai/reward-bench@v1.0")) == 23
    assert asked[-1] == ("allenai/reward-bench", "filtered", "v1.0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    load_bench(get_bench("ppe-correctness"))  # the default: each dataset's main revision
    assert [r for _, _, r in asked[-5:]] == [None] * 5


# ----------------------------------------------------------------------------- bad rows through the CLI


def _bad(rows: list[dict], line: int, **fields) -> list[dict]:
    rows = [dict(r) for r in rows]
    rows[line - 1].update(fields)
    return rows


_RM = [r for r, _ in RMBENCH_ROWS]
_JB = [r for r, _, _ in JUDGEBENCH_ROWS]
# (suite, rows, bad line, what the message says)
CLI_CASES = [
    ("rm-bench", _bad(_RM, 3, chosen=["w", "w"]), 3, "field 'chosen': expected 3 strings, got 2"),
    ("rm-bench", _bad(_RM, 2, id=" 00", domain="chat"), 2, "field 'id': ' 00' repeats the id of"),
    ("judgebench", _bad(_JB, 4, label="A=B"), 4, "field 'label': expected 'A>B' or 'B>A'"),
    ("ppe-preference", _bad(PPE_PREFERENCE_ROWS, 2, winner="modelA"), 2, "field 'winner'"),
    (
        "ppe-preference",
        _bad(PPE_PREFERENCE_ROWS, 1, language=["en"]),
        1,
        "field 'language': expected a string",
    ),
    ("ppe-correctness", _bad(PPE_CORRECTNESS_ROWS, 2, score_3=2), 2, "field 'score_N': correctness must be"),
    (
        "ppe-correctness",
        PPE_CORRECTNESS_ROWS[:1] + [ppe_correctness_row("z", "MATH", [1, 2, 3], [0, 1, 1])],
        2,
        "field 'response_N' / 'responses': 3 responses, but",
    ),
]


@pytest.mark.parametrize("suite,rows,line,message", CLI_CASES, ids=[f"{c[0]}:{c[3][:24]}" for c in CLI_CASES])
def test_a_bad_row_is_one_line_naming_file_line_and_field(suite, rows, line, message, tmp_path, capsys):
    import hashlib

    from tests.cli_helpers import run_cli

    data = write_jsonl(tmp_path / "data.jsonl", rows)
    before = hashlib.sha256(data.read_bytes()).hexdigest()
    out = tmp_path / "r.json"
    argv = ["eval", "--suite", suite, "--data", data, "--rm", tmp_path / "no-model", "--json", out]
    code, err = run_cli(argv, capsys)
    assert code == 2 and len(err.splitlines()) == 1, err  # refused before any model is loaded
    assert err.startswith(f"error: {data}:{line}: field ") and message in err, err
    assert not out.exists() and hashlib.sha256(data.read_bytes()).hexdigest() == before


def test_a_report_names_the_hub_commit_it_read(monkeypatch, tmp_path):
    """``datasets`` keeps a hub split's files under a folder named by the commit it resolved; the report's
    ``data`` (and every row's location) names that commit, so an online number says what it scored."""
    import datasets

    import rewardkit.readers

    commit = "0123456789abcdef0123456789abcdef01234567"
    folder = tmp_path / "lmarena-ai___ppe-human-preference-v1" / "default" / "0.0.0" / commit
    folder.mkdir(parents=True)
    rows = PPE_PREFERENCE_ROWS[:2]
    split = datasets.Dataset.from_list(rows).map(lambda r: r, cache_file_name=str(folder / "test.arrow"))
    assert rewardkit.readers.hub_commit(split) == commit
    assert (
        rewardkit.readers.hub_commit(rows) is None
        and rewardkit.readers.hub_commit(datasets.Dataset.from_list(rows)) is None
    )

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(rewardkit.readers, "_load_hub", lambda name, split_name: split)
    data = load_bench(get_bench("ppe-preference"))
    assert data.source == f"lmarena-ai/PPE-Human-Preference-V1@{commit}"
    assert data.examples[1].where == f"lmarena-ai/PPE-Human-Preference-V1@{commit}: row 1"
    report = report_from_rewards(data, {"m": _word_counts(data)}, n_boot=10)
    assert report.to_dict()["data"] == data.source
