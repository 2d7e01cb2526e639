"""RM-Bench as THU-KEG/RM-Bench's ``compute_accuracy`` scores it (scripts/utils.py @ 73c52d7). The
official code is not a package (``pip download`` finds no rm-bench / rmbench), so the summary is
checked against values worked out by hand from the official definition (tests/bench_fixtures.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rewardkit.cli import main
from rewardkit.errors import DataError
from rewardkit.eval.bench_data import load_bench
from rewardkit.eval.bench_report import report_from_rewards, run_bench
from rewardkit.eval.rmbench import RM_BENCH, levels, official_summary, style_matrix
from tests.bench_fixtures import RMBENCH_EXPECTED, RMBENCH_ROWS, rmbench_row
from tests.suite_fixtures import WordCountRM, write_jsonl


def test_style_matrix_triangles_hand_computed():
    m = style_matrix(np.array([1.0, 3.0, 5.0]), np.array([2.0, 2.0, 6.0]))
    assert m.tolist() == [[0, 0, 0], [1, 1, 0], [1, 1, 0]]
    np.testing.assert_allclose(levels(m), [0.0, 1 / 3, 1.0])
    # upper-right = a plainer chosen against a fancier rejected: only (0, 1), (0, 2), (1, 2) count as hard
    only_hard = np.zeros((3, 3))
    only_hard[0, 2] = 1.0
    np.testing.assert_allclose(levels(only_hard), [1 / 3, 0.0, 0.0])


def test_summary_equals_the_official_definition_by_hand(tmp_path):
    rows = [r for r, _ in RMBENCH_ROWS]
    path = write_jsonl(tmp_path / "rm.jsonl", rows)
    rm = WordCountRM()
    report = run_bench({"words": rm}, RM_BENCH, path, n_boot=300)
    assert len(rm.calls) == 1 and len(rm.calls[0]) == 36  # six completions per prompt, one engine call
    assert rm.calls[0].prompts[0] == [{"role": "user", "content": "question 0"}]
    p = report.points["words"]
    for key, value in RMBENCH_EXPECTED.items():
        assert p[key] == pytest.approx(value, abs=1e-12), key
    assert p["chat/hard"] == 0.5 and p["code/normal"] == pytest.approx(2 / 3)
    # the README's identity: overall = mean of hard, normal, easy = mean of the domains
    assert p["score"] == pytest.approx((p["hard"] + p["normal"] + p["easy"]) / 3)
    assert official_summary(p)["total_avg_acc"] == p["score"] and "chat/hard" not in official_summary(p)
    # both safety files count as safety; ids repeat across domains (as in the official files)
    assert report.to_dict()["counts"] == {"chat": 2, "math": 1, "code": 1, "safety": 2}
    # every CI holds its point; the per-example lines carry every reward the summary used
    for key, (lo, hi) in report.intervals["words"].items():
        assert lo - 1e-12 <= p[key] <= hi + 1e-12, key
    assert report.jsonl_rows()[0] == {
        "model": "words",
        "id": 0,
        "domain": "chat",
        "score_chosen": [1.0, 3.0, 5.0],
        "score_rejected": [2.0, 2.0, 6.0],
    }


def test_per_example_rewards_reproduce_the_summary():
    data = load_bench(RM_BENCH, [r for r, _ in RMBENCH_ROWS])
    rewards = list(np.random.default_rng(0).normal(size=(6, 6)).round(1))
    first = report_from_rewards(data, {"m": rewards}, n_boot=50)
    rows = first.jsonl_rows()
    again = report_from_rewards(
        data, {"m": [np.array(r["score_chosen"] + r["score_rejected"]) for r in rows]}, n_boot=50
    )
    assert again.points == first.points and again.intervals == first.intervals


def test_missing_domains_are_listed_and_averaged_over_the_present(tmp_path):
    data = load_bench(RM_BENCH, [RMBENCH_ROWS[0][0], RMBENCH_ROWS[3][0]])
    assert data.missing == ["math", "safety"]
    report = report_from_rewards(
        data, {"m": [np.array([1.0, 3, 5, 2, 2, 6]), np.array([3.0, 3, 3, 1, 2, 4])]}, n_boot=50
    )
    assert report.points["m"]["score"] == pytest.approx(((1 / 3 + 1 + 0) / 3 + 2 / 3) / 2)
    assert "Missing groups: math, safety" in report.to_markdown()


def test_paired_tests_between_models():
    data = load_bench(RM_BENCH, [rmbench_row(i, "chat", [2, 2, 2], [1, 1, 1]) for i in range(40)])
    good = [np.array([2.0, 2, 2, 1, 1, 1])] * 40
    bad = [np.array([1.0, 1, 1, 2, 2, 2])] * 40
    report = report_from_rewards(data, {"good": good, "same": good, "bad": bad}, n_boot=500)
    tests = {(t["a"], t["b"]): t for t in report.tests if t["metric"] == "score"}
    assert tests[("good", "same")]["diff"] == 0.0 and tests[("good", "same")]["p"] == 1.0
    assert tests[("good", "bad")]["diff"] == 1.0 and tests[("good", "bad")]["p"] == pytest.approx(1 / 501)


def test_bad_rows_name_file_line_and_field(tmp_path):
    good = rmbench_row(1, "chat", [1, 1, 1], [1, 1, 1])
    cases = [
        ({**good, "chosen": good["chosen"][:2]}, "field 'chosen': expected 3 strings, got 2"),
        ({k: v for k, v in good.items() if k != "domain"}, "field 'domain' missing"),
        ({**good, "domain": "poetry"}, "field 'domain': 'poetry' is not an RM-Bench domain"),
        ({**good, "rejected": "w"}, "field 'rejected': expected a list of strings"),
        (good, "field 'id': 1 repeats the id of"),
    ]
    for bad, message in cases:
        path = write_jsonl(tmp_path / "bad.jsonl", [good, bad])
        with pytest.raises(DataError) as info:
            load_bench(RM_BENCH, path)
        assert str(info.value).startswith(f"{path}:2: ") and message in str(info.value), str(info.value)
        assert "\n" not in str(info.value)
    skipped = load_bench(RM_BENCH, write_jsonl(tmp_path / "skip.jsonl", [good, cases[0][0]]), on_error="skip")
    assert len(skipped) == 1 and len(skipped.skipped) == 1 and skipped.skipped[0].location.endswith(":2")


def test_official_json_layout_and_offline_hub(tmp_path, capsys):
    path = tmp_path / "total_dataset.json"
    path.write_text(json.dumps([r for r, _ in RMBENCH_ROWS], indent=4))
    assert len(load_bench(RM_BENCH, path)) == 6
    with pytest.raises(DataError, match=r"^THU-KEG/RM-Bench: .*HF_HUB_OFFLINE.*--data FILE$"):
        load_bench(RM_BENCH)
    with pytest.raises(SystemExit) as info:
        main(["eval", "--suite", "rm-bench", "--rm", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and "THU-KEG/RM-Bench:" in err


def test_online_reads_the_official_hub_split(monkeypatch):
    import rewardkit.readers

    asked = []

    def fake_hub(name, split):
        asked.append((name, split))
        return [r for r, _ in RMBENCH_ROWS]

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(rewardkit.readers, "_load_hub", fake_hub)
    assert len(load_bench(RM_BENCH)) == 6 and asked == [("THU-KEG/RM-Bench", "train")]

    def unreachable(name, split):
        raise DataError(f"{name}: could not load hub dataset split {split!r} (ConnectionError: no route)")

    monkeypatch.setattr(rewardkit.readers, "_load_hub", unreachable)
    with pytest.raises(DataError, match=r"no route\); pass a local copy, --data FILE$"):
        load_bench(RM_BENCH)
