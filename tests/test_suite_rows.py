"""RewardBench rows are scored only when they have the shape the official code scores: a non-Ties
RewardBench 2 row is best-of-4 (1 correct, 3 rejected), and ids are unique after normalisation (v1 ``1``
and ``"1"``; Ties ``ref:01`` and ``ref:1``). Anything else is one line naming file, line and field (exit
2), or skipped and listed with --on-error skip."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from rewardkit.eval.rewardbench import TiesSample, TiesTable
from rewardkit.eval.suite_data import load_suite
from tests.cli_helpers import run_cli as _run
from tests.suite_fixtures import WordCountRM, v1_rows, v2_rows, write_jsonl


def _v2(edit) -> list[dict]:
    rows = v2_rows()
    edit(rows)
    return rows


def _set(i, **fields):
    def edit(rows):
        rows[i].update(fields)
        if "rejected" in fields:
            rows[i]["num_rejected"] = len(fields["rejected"])
        if "chosen" in fields:
            rows[i]["num_correct"] = len(fields["chosen"])
        rows[i]["total_completions"] = len(rows[i]["chosen"]) + len(rows[i]["rejected"])

    return edit


def _ties_id(i, new):
    def edit(rows):
        rows[i]["id"] = new

    return edit


TIES_FIRST = next(i for i, r in enumerate(v2_rows()) if r["subset"] == "Ties")  # ref:0
# (name, suite, rows, line, message)
CASES = [
    (
        "Factuality with no rejected",
        "rewardbench2",
        _v2(_set(0, rejected=[])),
        1,
        "field 'rejected': a Factuality row is best-of-4",
    ),
    ("Factuality with one rejected", "rewardbench2", _v2(_set(1, rejected=["x"])), 2, "got 1 rejected"),
    (
        "Math with two correct",
        "rewardbench2",
        _v2(_set(6, chosen=["a", "b"])),
        7,
        "field 'chosen': a Math row is best-of-4",
    ),
    ("Focus with five rejected", "rewardbench2", _v2(_set(12, rejected=list("abcde"))), 13, "got 5 rejected"),
    (
        "Ties ids equal after parsing",
        "rewardbench2",
        _v2(_ties_id(TIES_FIRST + 2, "ref:00")),
        TIES_FIRST + 3,
        "repeats the id of",
    ),
    ("v1 ids 1 and '1'", "rewardbench", v1_rows(per_subset=1)[:2], 2, "repeats the id of"),
]
CASES[-1][2][0]["id"], CASES[-1][2][1]["id"] = 1, "1"


@pytest.mark.parametrize("name,suite,rows,line,message", CASES, ids=[c[0] for c in CASES])
def test_rows_the_official_code_cannot_score_are_one_line_errors(
    tmp_path, capsys, name, suite, rows, line, message
):
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    before = hashlib.sha256(data.read_bytes()).hexdigest()
    out = tmp_path / "r.json"
    code, err = _run(
        ["eval", "--suite", suite, "--data", data, "--rm", tmp_path / "rm", "--json", out], capsys
    )
    assert code == 2, err
    assert err.startswith(f"error: {data}:{line}: field ") and len(err.splitlines()) == 1, err
    assert message in err
    assert not out.exists() and hashlib.sha256(data.read_bytes()).hexdigest() == before
    # --on-error skip: the row is skipped and listed, the others load
    suite_data = load_suite(suite, data, on_error="skip")
    assert [s.location for s in suite_data.skipped] == [f"{data}:{line}"]
    assert len(suite_data) == len(rows) - 1


def test_a_skipped_row_is_listed_in_the_report_and_not_scored(tmp_path, capsys):
    """A Factuality subset of rows with one completion each would score 100 as best-of-1; refused rows
    are skipped and the report says so."""
    rows = _v2(_set(0, rejected=[]))
    for i in (1, 2):
        _set(i, rejected=[])(rows)
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    from rewardkit.eval.suites import run_suite

    suite_data = load_suite("rewardbench2", data, on_error="skip")
    report = run_suite({"words": WordCountRM()}, "rewardbench2", suite_data, n_boot=10)
    assert [s.location for s in report.skipped] == [f"{data}:{i}" for i in (1, 2, 3)]
    assert "Factuality" in report.data.missing
    assert json.loads(json.dumps(report.to_dict()))["skipped"][0]["location"] == f"{data}:1"


def test_ties_table_refuses_ids_that_collide():
    s = TiesSample(True, 1.0, None)
    with pytest.raises(ValueError, match="repeats the sample ref:1"):
        TiesTable.from_samples({"ref:1": s, "ref:01": s})
    table = TiesTable.from_samples({"ref:1": s, "tied:1": s, "ref:2": s})
    assert table.prompt_ids == [1, 2] and np.array_equal(table.has_tied, [True, False])


def test_the_official_shapes_still_load(tmp_path):
    data = write_jsonl(tmp_path / "ok.jsonl", v2_rows())
    assert len(load_suite("rewardbench2", data)) == len(v2_rows())
    assert Path(data).exists()
