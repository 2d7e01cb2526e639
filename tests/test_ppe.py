"""PPE preference and correctness. lmarena/PPE could not be read here (no snapshot) and is not a package,
so the rules follow the paper and the hub dataset cards (docs/evaluation.md says which choices are
rewardkit's) and the summaries are checked against values worked out by hand (tests/bench_fixtures.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rewardkit.errors import DataError
from rewardkit.eval.bench_data import load_bench
from rewardkit.eval.bench_report import run_bench
from rewardkit.eval.ppe import PPE_CORRECTNESS, PPE_PREFERENCE, pair_stats
from tests.bench_fixtures import (
    PPE_CORRECTNESS_ROWS,
    PPE_PREFERENCE_ROWS,
    ppe_correctness_row,
    ppe_preference_row,
)
from tests.suite_fixtures import WordCountRM, write_jsonl


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_preference_accuracy_categories_and_lower_bound(tmp_path):
    report = run_bench(
        {"words": WordCountRM()},
        PPE_PREFERENCE,
        write_jsonl(tmp_path / "p.jsonl", PPE_PREFERENCE_ROWS),
        n_boot=200,
    )
    p = report.points["words"]
    # counted: q1 right, q2 wrong, q3 wrong (reward tie), q5 right; q4 is a human tie. Every row's
    # language is English: q1-q4 get english_prompt from it, q5 gives the boolean itself
    assert p == pytest.approx(
        {"hard_prompt": 0.5, "is_code": 0.0, "english_prompt": 0.5, "lower_bound": 0.0, "score": 0.5}
    )
    assert report.to_dict()["counts"] == {"overall": 5, "hard_prompt": 2, "is_code": 3, "english_prompt": 5}
    assert report.jsonl_rows()[3] == {
        "model": "words",
        "id": "q4",
        "winner": "tie (bothbad)",
        "categories": ["is_code", "english_prompt"],
        "score_1": 1.0,
        "score_2": 2.0,
    }


def test_correctness_pairs_brier_and_exact_best_of_n(tmp_path):
    rm = WordCountRM()
    report = run_bench(
        {"words": rm}, PPE_CORRECTNESS, write_jsonl(tmp_path / "c.jsonl", PPE_CORRECTNESS_ROWS), n_boot=200
    )
    assert len(rm.calls) == 1 and len(rm.calls[0]) == 12
    p = report.points["words"]
    # a: correct {3, 2} vs incorrect {4, 1}: 2 of 4 pairs; margins -1, 2, -2, 1
    brier_a = np.mean([(1 - _sig(m)) ** 2 for m in (-1, 2, -2, 1)])
    # b: correct {2} vs incorrect {2, 1, 1}: a tie is wrong, 2 of 3; margins 0, 1, 1
    brier_b = np.mean([(1 - _sig(m)) ** 2 for m in (0, 1, 1)])
    assert p["MATH/accuracy"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert p["MATH/brier"] == pytest.approx((brier_a + brier_b) / 2)
    # top pick: a's is the incorrect 4; b's is split between a correct and an incorrect 2
    assert p["MATH/best_of_k"] == pytest.approx(0.25) and p["GPQA/best_of_k"] == 1.0
    assert np.isnan(p["GPQA/accuracy"]) and p["score"] == pytest.approx((0.5 + 2 / 3) / 2)
    # every n-subset by hand. a (rewards 4 3 2 1, correct 0 1 1 0): pairs with the 4 pick it (3 of 6), the
    # other 3 pick a correct one; triples: only {3, 2, 1} (1 of 4). b (2 2 1 1, correct 1 0 0 0): pairs
    # {0,1} 1/2, {0,2} 1, {0,3} 1, the other 3 pairs 0 -> 2.5 / 6; triples 1/2, 1/2, 1, 0 -> 2 / 4
    bon_a = [0.5, 3 / 6, 1 / 4, 0.0]
    bon_b = [0.25, 2.5 / 6, 2 / 4, 0.5]
    for n in range(1, 5):
        math_mean = (bon_a[n - 1] + bon_b[n - 1]) / 2
        assert p[f"bon@{n}"] == pytest.approx((math_mean + 1.0) / 2), n
    assert p["best_of_k"] == p["bon@4"]
    row = report.jsonl_rows()[0]
    assert row == {
        "model": "words",
        "id": "a",
        "benchmark": "MATH",
        "scores": [4.0, 3.0, 2.0, 1.0],
        "correct": [0, 1, 1, 0],
    }


def test_pair_stats_without_pairs_is_nan():
    assert all(np.isnan(pair_stats(np.array([1.0, 2.0]), np.array([1, 1]))))


def test_list_layout_equals_numbered_columns(tmp_path):
    listed = [
        {
            "question_id": r["question_id"],
            "benchmark": r["benchmark"],
            "prompt": r["prompt"],
            "responses": [r[f"response_{i}"] for i in range(1, 5)],
            "scores": [int(r[f"score_{i}"]) for i in range(1, 5)],
        }
        for r in PPE_CORRECTNESS_ROWS
    ]
    hub = [  # lmarena-ai/PPE-*-Best-of-K: numbered responses, a list of booleans 'scores'
        {
            **{k: v for k, v in r.items() if not k.startswith("score_")},
            "scores": [r[f"score_{i}"] for i in range(1, 5)],
        }
        for r in PPE_CORRECTNESS_ROWS
    ]
    a = load_bench(PPE_CORRECTNESS, listed)
    b = load_bench(PPE_CORRECTNESS, PPE_CORRECTNESS_ROWS)
    c = load_bench(PPE_CORRECTNESS, hub)
    assert [(e.completions, e.labels) for e in a.examples] == [(e.completions, e.labels) for e in b.examples]
    assert [(e.completions, e.labels) for e in c.examples] == [(e.completions, e.labels) for e in b.examples]


def test_bad_rows_name_file_line_and_field(tmp_path):
    good = ppe_correctness_row("x", "MATH", [1, 2], [0, 1])
    cases = [
        ({**good, "score_2": 0.5}, "field 'score_N': correctness must be 0 / 1"),
        (
            {k: v for k, v in good.items() if k != "score_2"},
            "field 'score_N': 1 correctness labels for 2 responses",
        ),
        ({k: v for k, v in good.items() if not k.startswith("response")}, "field 'response_1' missing"),
        (good, "field 'id': 'x' repeats the id of"),
    ]
    for bad, message in cases:
        path = write_jsonl(tmp_path / "bad.jsonl", [good, bad])
        with pytest.raises(DataError) as info:
            load_bench(PPE_CORRECTNESS, path)
        assert str(info.value).startswith(f"{path}:2: ") and message in str(info.value), str(info.value)
    odd_k = write_jsonl(tmp_path / "k.jsonl", [good, ppe_correctness_row("y", "MATH", [1, 2, 3], [0, 1, 1])])
    with pytest.raises(DataError) as info:  # a shape across rows: still one line naming both rows
        load_bench(PPE_CORRECTNESS, odd_k)
    assert str(info.value) == (
        f"{odd_k}:2: field 'response_N' / 'responses': 3 responses, but {odd_k}:1 has 2: "
        "best-of-K needs the same K on every row"
    )
    pref = ppe_preference_row("q", 1, 2, "model_a")
    for bad, message in (
        ({**pref, "winner": "modelA"}, "field 'winner': expected 'model_a', 'model_b' or a tie"),
        ({**pref, "is_code": "yes"}, "field 'is_code': expected true or false"),
    ):
        path = write_jsonl(tmp_path / "badp.jsonl", [bad])
        with pytest.raises(DataError, match=rf"^{path}:1: {message}"):
            load_bench(PPE_PREFERENCE, path)


def test_online_reads_every_correctness_set_and_tags_its_benchmark(monkeypatch):
    import rewardkit.readers

    asked = []

    def fake_hub(name, split):
        asked.append((name, split))
        return [
            {
                k: v
                for k, v in ppe_correctness_row(f"{name}-1", "", [1, 2], [0, 1]).items()
                if k != "benchmark"
            }
        ]

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(rewardkit.readers, "_load_hub", fake_hub)
    data = load_bench(PPE_CORRECTNESS)
    assert data.groups == ["MMLU-Pro", "MATH", "GPQA", "IFEval", "MBPP-Plus"] and len(asked) == 5
    assert asked[0] == ("lmarena-ai/PPE-MMLU-Pro-Best-of-K", "train")


def hub_preference_row(qid: str, r1: int, r2: int, winner: str, language: str, **tags) -> dict:
    """A row of lmarena-ai/PPE-Human-Preference-V1 with every feature of its dataset card: a language
    string, nested metadata, ``sim`` and ``longer_won``, and the five boolean tags the hub has."""
    row = {k: v for k, v in ppe_preference_row(qid, r1, r2, winner).items() if k != "language"}
    flags = ("hard_prompt", "easy_prompt", "if_prompt", "math_prompt", "is_code")
    return {
        **row,
        "language": language,
        "conv_metadata": {"context_a_tokens": 5, "turns": 1},
        "is_refusal": False,
        "category_tag": {"criteria_v0.1": {"complexity": True}, "math_v0.1": {"math": False}},
        "sim": 0.5,
        "length_a": r1,
        "length_b": r2,
        "token_diff": 0.1,
        "longer_won": "no",
        **{f: tags.get(f, False) for f in flags},
    }


def test_hub_layout_language_categories_from_the_language_string(tmp_path):
    rows = [
        hub_preference_row("h1", 3, 1, "model_a", "English", hard_prompt=True),  # right
        hub_preference_row("h2", 3, 1, "model_b", "Chinese", math_prompt=True),  # wrong
        hub_preference_row("h3", 1, 2, "model_b", "Russian"),  # right
        hub_preference_row("h4", 2, 1, "model_a", "German", hard_prompt=True),  # right
    ]
    report = run_bench(
        {"words": WordCountRM()}, PPE_PREFERENCE, write_jsonl(tmp_path / "hub.jsonl", rows), n_boot=50
    )
    p = report.points["words"]
    assert p == pytest.approx(
        {
            "hard_prompt": 1.0,
            "math_prompt": 0.0,
            "english_prompt": 1.0,
            "non_english_prompt": 2 / 3,
            "chinese_prompt": 0.0,
            "russian_prompt": 1.0,
            "lower_bound": 0.0,
            "score": 0.75,
        }
    )
    assert report.jsonl_rows()[1]["categories"] == ["math_prompt", "non_english_prompt", "chinese_prompt"]
    # the hub has no shorter_won / similar_response column: listed as missing, never guessed
    missing = report.to_dict()["missing_groups"]
    assert {"shorter_won", "similar_response", "easy_prompt", "if_prompt", "is_code"} <= set(missing)
    bad = write_jsonl(tmp_path / "bad.jsonl", [{**rows[0], "language": 3}])
    with pytest.raises(DataError, match=rf"^{bad}:1: field 'language': expected a string, got int$"):
        load_bench(PPE_PREFERENCE, bad)


def test_hub_parquet_files_load_as_their_rows(tmp_path):
    """The hub's own file format (data/test-*.parquet, data/train-*.parquet): nested structs, booleans
    and a list of booleans survive the file and load as the same examples."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pref = [hub_preference_row("h1", 3, 1, "model_a", "English", hard_prompt=True)]
    pref.append(hub_preference_row("h2", 1, 2, "model_b", "Russian"))
    corr = [  # the Best-of-K layout: numbered responses, 'scores' a list of booleans, no benchmark field
        {
            **{k: v for k, v in r.items() if not k.startswith("score_") and k != "benchmark"},
            "scores": [r[f"score_{i}"] for i in range(1, 5)],
        }
        for r in PPE_CORRECTNESS_ROWS
    ]
    for spec, rows, name in ((PPE_PREFERENCE, pref, "test"), (PPE_CORRECTNESS, corr, "train")):
        path = tmp_path / f"{name}-00000-of-00001.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path)
        from_file, from_rows = load_bench(spec, path), load_bench(spec, rows)
        assert len(from_file) == len(rows) and from_file.source == str(path)
        assert [(e.id, e.groups, e.completions, e.labels) for e in from_file.examples] == [
            (e.id, e.groups, e.completions, e.labels) for e in from_rows.examples
        ]
    assert load_bench(PPE_PREFERENCE, tmp_path / "test-00000-of-00001.parquet").examples[1].groups == (
        "overall",
        "non_english_prompt",
        "russian_prompt",
    )


class _FailingRM(WordCountRM):
    """A reward model whose reward for one response failed (-inf), as PPE's result files mark an error."""

    def score_texts(self, texts):
        r = super().score_texts(texts)
        r[1] = -np.inf
        return r


def test_an_errored_reward_is_refused_not_counted_as_minus_infinity(tmp_path):
    """PPE's BestOfKScorer reads "$ERROR$" rewards as -inf (the response then loses every comparison and
    is never the top pick); rewardkit refuses a non-finite reward, naming the suite and the count, so a
    failing model never scores as a weak one."""
    from rewardkit.errors import ModelError

    path = write_jsonl(tmp_path / "c.jsonl", PPE_CORRECTNESS_ROWS)
    with pytest.raises(
        ModelError, match=r"^words: ppe-correctness rewards: 1 of 12 values are NaN or infinite$"
    ):
        run_bench({"words": _FailingRM()}, PPE_CORRECTNESS, path, n_boot=10)
