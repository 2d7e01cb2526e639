"""JudgeBench for reward models as ScalerLab/JudgeBench scores them (utils/metrics.py @ e2c52c2, the
reward-model judges of utils/judges.py @ d8740a8). The official code is not a package, so the summary is
checked against values worked out by hand (tests/bench_fixtures.py)."""

from __future__ import annotations

import numpy as np
import pytest

from rewardkit.errors import DataError
from rewardkit.eval.bench_data import load_bench
from rewardkit.eval.bench_report import run_bench
from rewardkit.eval.judgebench import JUDGEBENCH, decision, single_game, two_game
from tests.bench_fixtures import JUDGEBENCH_ROWS, judgebench_row
from tests.suite_fixtures import WordCountRM, write_jsonl


def test_a_tie_decides_b_and_two_games_need_a_strict_win():
    a, b = np.array([1.0, 2.0, 2.0]), np.array([2.0, 2.0, 1.0])
    assert decision(a, b).tolist() == ["B>A", "B>A", "A>B"]
    labels = np.array(["B>A", "B>A", "B>A"])
    assert single_game(a, b, labels).tolist() == [1.0, 1.0, 0.0]
    assert two_game(a, b, labels).tolist() == [1.0, 0.0, 0.0]  # the tie: one vote each way
    assert two_game(a, b, np.array(["A>B"] * 3)).tolist() == [0.0, 0.0, 1.0]


def test_summary_by_hand(tmp_path):
    path = write_jsonl(
        tmp_path / "dataset=judgebench,response_model=gpt-4o-2024-05-13.jsonl",
        [r for r, _, _ in JUDGEBENCH_ROWS],
    )
    rm = WordCountRM()
    report = run_bench({"words": rm}, JUDGEBENCH, path, n_boot=300)
    assert len(rm.calls) == 1 and rm.calls[0].responses[:2] == ["w w w", "w"]
    p = report.points["words"]
    # single game: mmlu-pro 1/2, reasoning 1/1, math 1/2, code 0/1; overall 4/7 (every pair, not a mean)
    assert p == pytest.approx(
        {
            "mmlu-pro": 0.5,
            "livebench-reasoning": 1.0,
            "livebench-math": 0.5,
            "livecodebench": 0.0,
            "score": 4 / 7,
            "two_game/mmlu-pro": 0.5,
            "two_game/livebench-reasoning": 1.0,
            "two_game/livebench-math": 0.0,
            "two_game/livecodebench": 0.0,
            "two_game": 3 / 7,
        }
    )
    assert p["score"] == np.mean([s for _, s, _ in JUDGEBENCH_ROWS])
    assert p["two_game"] == np.mean([t for _, _, t in JUDGEBENCH_ROWS])
    assert report.jsonl_rows()[2] == {
        "model": "words",
        "id": "p3",
        "source": "livebench-math",
        "label": "B>A",
        "score_A": 2.0,
        "score_B": 2.0,
    }
    for key, (lo, hi) in report.intervals["words"].items():
        assert lo - 1e-12 <= p[key] <= hi + 1e-12, key


def test_bad_rows_name_file_line_and_field(tmp_path):
    good = judgebench_row("p1", "livecodebench", 1, 2, "B>A")
    cases = [
        ({**good, "label": "A=B"}, "field 'label': expected 'A>B' or 'B>A', got 'A=B'"),
        ({k: v for k, v in good.items() if k != "response_B"}, "field 'response_B' missing"),
        ({**good, "pair_id": None}, "field 'pair_id': expected a string or an integer"),
        (good, "field 'id': 'p1' repeats the id of"),
    ]
    for bad, message in cases:
        path = write_jsonl(tmp_path / "bad.jsonl", [good, bad])
        with pytest.raises(DataError) as info:
            load_bench(JUDGEBENCH, path)
        assert str(info.value).startswith(f"{path}:2: ") and message in str(info.value), str(info.value)
    with pytest.raises(DataError, match=r"^ScalerLab/JudgeBench: .*HF_HUB_OFFLINE.*--data FILE$"):
        load_bench(JUDGEBENCH)
