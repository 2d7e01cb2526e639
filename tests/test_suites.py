"""``rewardkit eval --suite`` / ``run_suite`` around the scoring: one engine call per model with the
prompt as a user turn, reports, bad rows (one-line errors or counted skips), file layouts, the hub,
and the options the CLI refuses."""

from __future__ import annotations

import numpy as np
import pytest

from rewardkit.cli import main
from rewardkit.errors import DataError, ModelError
from rewardkit.eval import load_suite, run_suite
from rewardkit.eval.rewardbench import V1_SUBSETS
from tests.suite_fixtures import WordCountRM, v1_rows, v2_rows, write_jsonl


def _run(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


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


def test_a_non_finite_reward_names_the_model():
    class NaNRM(WordCountRM):
        def score_texts(self, texts):
            return np.full(len(texts), np.nan, dtype=np.float32)

    rows = [{"prompt": "p", "chosen": "a", "rejected": "b", "subset": "hep-go", "id": 0}]
    with pytest.raises(ModelError, match=r"^broken: suite rewards: 2 of 2 values are NaN or infinite$"):
        run_suite({"broken": NaNRM()}, "rewardbench", rows)


def test_bad_rows_are_one_line_errors_or_counted_skips(tmp_path):
    rows = v1_rows(per_subset=1)
    rows[1] = {**rows[1], "subset": "chat"}
    rows[3] = {k: v for k, v in rows[3].items() if k != "chosen"}
    rows[5] = {**rows[5], "id": rows[0]["id"]}
    path = write_jsonl(tmp_path / "v1.jsonl", rows)
    with pytest.raises(DataError, match=rf"^{path}:2: field 'subset': 'chat' is not a RewardBench subset"):
        load_suite("rewardbench", path)
    data = load_suite("rewardbench", path, on_error="skip")
    assert len(data) == 20 and [s.location for s in data.skipped] == [f"{path}:{i}" for i in (2, 4, 6)]
    assert (
        "field 'chosen' missing" in data.skipped[1].reason and "repeats the id of" in data.skipped[2].reason
    )
    assert data.missing == [V1_SUBSETS[i] for i in (1, 3, 5)]
    report = run_suite({"words": WordCountRM()}, "rewardbench", data, n_boot=20)
    assert len(report.to_dict()["skipped"]) == 3 and "Skipped 3 malformed row(s)" in report.to_markdown()

    good = v2_rows()
    cases = [
        ({**good[0], "num_correct": 2}, "field 'num_correct': 2, but 'chosen' holds 1"),
        ({**good[0], "total_completions": 5}, "field 'total_completions': 5, but the row holds 4"),
        ({**good[0], "chosen": "a"}, "field 'chosen': expected a list of strings"),
        ({**good[0], "chosen": [], "num_correct": 0}, "at least one is needed"),
        ({**good[-1], "id": "9"}, "a Ties id is 'ref:N' or 'tied:N'"),
        ({**good[0], "subset": "ties"}, "'ties' is not a RewardBench 2 subset"),
        ([1, 2], "expected a JSON object"),
    ]
    for bad, message in cases:
        path = write_jsonl(tmp_path / "v2.jsonl", [good[1], bad])
        with pytest.raises(DataError, match=rf"^{path}:2: .*{message}"):
            load_suite("rewardbench2", path)


def test_parquet_layout_and_offline_hub(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = v2_rows()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "test.parquet")
    from_parquet = load_suite("rewardbench2", tmp_path / "test.parquet")
    from_jsonl = load_suite("rewardbench2", write_jsonl(tmp_path / "test.jsonl", rows))
    assert [(e.id, e.completions, e.num_correct) for e in from_parquet.examples] == [
        (e.id, e.completions, e.num_correct) for e in from_jsonl.examples
    ]
    # HF_HUB_OFFLINE is set by conftest: no hub, and the error says what to do
    with pytest.raises(DataError, match=r"^allenai/reward-bench-2: .*HF_HUB_OFFLINE.*--data FILE$"):
        load_suite("rewardbench2")
    code, out, err = _run(["eval", "--suite", "rewardbench", "--rm", str(tmp_path / "nope")], capsys)
    assert code == 2 and err.count("\n") == 1 and "allenai/reward-bench:" in err and "--data FILE" in err


def test_cli_refuses_options_that_do_not_apply(tmp_path, capsys):
    data = str(write_jsonl(tmp_path / "v1.jsonl", v1_rows(per_subset=1)))
    base = ["eval", "--suite", "rewardbench", "--data", data, "--rm", str(tmp_path)]
    for extra, message in (
        (["--split-by", "subset"], "--suite does not take --split-by"),
        (["--ties", "half"], "does not take --ties (RewardBench counts a tie wrong)"),
        (["--json", data], "refusing to overwrite an input"),
        (["--json", str(tmp_path / "a"), "--per-example", str(tmp_path / "a")], "must be different files"),
    ):
        code, _, err = _run([*base, *extra], capsys)
        assert code == 2 and message in err, err
    code, _, err = _run(["eval", "--rm", str(tmp_path)], capsys)
    assert code == 2 and "give --data FILE (or --suite" in err
    code, _, err = _run(["eval", "--rm", str(tmp_path), "--data", data, "--per-example", "x.jsonl"], capsys)
    assert code == 2 and "--per-example needs --suite" in err


def test_online_without_data_reads_the_official_hub_splits(monkeypatch):
    import rewardkit.readers

    asked = []

    def fake_hub(name, split):
        asked.append((name, split))
        return v1_rows(per_subset=1) if name == "allenai/reward-bench" else v2_rows()

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(rewardkit.readers, "_load_hub", fake_hub)
    assert len(load_suite("rewardbench")) == 23 and len(load_suite("rewardbench2")) == 27
    assert asked == [("allenai/reward-bench", "filtered"), ("allenai/reward-bench-2", "test")]

    def unreachable(name, split):
        raise DataError(f"{name}: could not load hub dataset split {split!r} (ConnectionError: no route)")

    monkeypatch.setattr(rewardkit.readers, "_load_hub", unreachable)
    with pytest.raises(DataError, match=r"no route\); pass a local copy, --data FILE$"):
        load_suite("rewardbench")
