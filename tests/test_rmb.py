"""RMB as Zhou-Zoey/RMB-Reward-Model-Benchmark scores it (eval/scripts/my_run_rm.py @ 2be3180: a pair is
right when chosen > rejected strictly, ACC a mean over rows) and the paper's best-of-N rule (bon_best above
every loser). The official script needs a GPU model and fastchat, so the summary is checked against values
worked out by hand on a fixture in the official folder layout (tests/bench_fixtures.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rewardkit.cli import main
from rewardkit.errors import DataError
from rewardkit.eval.bench_data import load_bench
from rewardkit.eval.bench_report import run_bench
from rewardkit.eval.card import load_card
from rewardkit.eval.rmb import RMB
from tests.bench_fixtures import RMB_EXPECTED, RMB_FILES, rmb_bon, rmb_pair, write_rmb
from tests.suite_fixtures import WordCountRM


def test_summary_by_hand_on_the_official_folder(tmp_path):
    folder = write_rmb(tmp_path)
    rm = WordCountRM()
    report = run_bench({"words": rm}, RMB, folder, n_boot=300)
    assert len(rm.calls) == 1 and len(rm.calls[0].responses) == 2 * 4 + 3 + 3 + 4 + 3
    p = report.points["words"]
    assert p == pytest.approx(RMB_EXPECTED) and list(p)[:5] == [*list(RMB_EXPECTED)[:4], "score"]
    # the official ACC over a folder is the mean over its rows: recompute it from the per-example output
    rows = report.jsonl_rows()
    for group in ("Pairwise_set/Helpfulness", "BoN_set/Harmlessness"):
        flags = [r["is_correct"] for r in rows if r["category_path"].startswith(group + "/")]
        assert sum(flags) / len(flags) == p[group]
    # files in sorted order: BoN_set/Harmlessness, BoN_set/Helpfulness, Pairwise_set/Harmlessness, ...
    assert [r["is_correct"] for r in rows] == [0, 1, 1, 0, 1, 1, 0, 0]
    pair = next(r for r in rows if r["id"] == "1" and "chosen_reward" in r)
    assert pair == {
        "model": "words",
        "id": "1",
        "category_path": "Pairwise_set/Helpfulness/Chat/Discussion",
        "chosen_reward": 3.0,
        "reject_reward": 1.0,
        "is_correct": 1,
    }
    assert rows[0]["loser_rewards"] == [1.0, 5.0, 1.0] and rows[0]["bon_best_reward"] == 2.0
    # a multi-turn conversation reaches the model as the conversation
    prompts = rm.calls[0].prompts
    assert [t["role"] for t in prompts[4 + 3 + 3 + 3 + 2]] == ["user", "assistant", "user"]
    lo, hi = report.intervals["words"]["score"]
    assert lo <= p["score"] <= hi and report.to_dict()["data"] == str(folder)


def test_one_file_and_rows_equal_the_folder(tmp_path):
    folder = write_rmb(tmp_path)
    one = folder / "BoN_set" / "Harmlessness" / "S1.json"
    data = load_bench(RMB, one)
    assert [e.id for e in data.examples] == ["3", "4"] and data.missing == list(RMB.groups[:3])
    report = run_bench({"words": WordCountRM()}, RMB, one, n_boot=50)
    assert report.points["words"]["score"] == 0.5  # the mean of the set-and-goal groups present
    rows = [r for rs in RMB_FILES.values() for r, _ in rs]
    assert len(load_bench(RMB, rows)) == len(load_bench(RMB, folder)) == 8


def test_bad_rows_name_file_line_and_field(tmp_path):
    good = rmb_pair("9", "Pairwise_set/Helpfulness/Chat/Discussion", 2, 1)
    bon = rmb_bon("9", "BoN_set/Helpfulness/Chat/Discussion", 2, [1])
    cases = [
        ({**good, "category_path": "Pairwise_set/Kindness/Chat"}, "field 'category_path': expected"),
        ({**good, "category_path": "Pairwise_set/Helpfulness"}, "field 'category_path': expected"),
        ({**good, "reject": "w"}, "field 'reject': expected an object with a string 'answer'"),
        ({**bon, "loser_list": []}, "field 'loser_list': expected a non-empty list of answers"),
        ({**bon, "loser_list": [{"answer": 3}]}, "field 'loser_list[0]': expected an object"),
        (
            {
                **good,
                "conversation_input": [
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "content": "a"},
                ],
            },
            "field 'conversation_input': the last turn must be the user's",
        ),
        ({**good, "conversation_input": [{"role": "human", "content": "q"}]}, "'conversation_input[0]'"),
        ({k: v for k, v in bon.items() if k != "bon_uid"}, "field 'bon_uid' missing"),
        (good, "field 'id': '9' repeats the id of"),
    ]
    for bad, message in cases:
        path = tmp_path / "bad.json"
        path.write_text(json.dumps([good, bad]))
        with pytest.raises(DataError) as info:
            load_bench(RMB, path)
        assert str(info.value).startswith(f"{path}:") and message in str(info.value), str(info.value)
    path.write_text(json.dumps([good, bon]))  # the same uid in the two sets is not a repeat
    assert len(load_bench(RMB, path)) == 2
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no .json files"):
        load_bench(RMB, tmp_path / "empty")


def test_no_hub_dataset_one_line_and_the_card_skips_it(tmp_path):
    with pytest.raises(DataError) as info:
        load_bench(RMB, None)
    assert "\n" not in str(info.value) and "pass --data RMB_dataset" in str(info.value)
    card = load_card({"rmb": write_rmb(tmp_path)})
    assert len(card.loaded["rmb"]) == 8 and "rmb" not in card.skipped
    skipped = load_card({"judgebench": _judgebench_file(tmp_path)}).skipped
    assert "rmb" in skipped and "clone it and pass --data RMB_dataset" in skipped["rmb"]


def _judgebench_file(tmp_path):
    from tests.bench_fixtures import JUDGEBENCH_ROWS
    from tests.suite_fixtures import write_jsonl

    return write_jsonl(tmp_path / "jb.jsonl", [r for r, _, _ in JUDGEBENCH_ROWS])


def test_cli_suite_rmb_reads_the_folder_and_writes_per_example(trained_rm, tmp_path, capsys):
    rm, model_dir = trained_rm
    folder = write_rmb(tmp_path)
    out, summary = tmp_path / "pe.jsonl", tmp_path / "r.json"
    argv = ["eval", "--suite", "rmb", "--rm", f"bt={model_dir}", "--data", str(folder), "--n-boot", "50"]
    main([*argv, "--per-example", str(out), "--json", str(summary)])
    assert "## RMB" in capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    metrics = json.loads(summary.read_text())["models"]["bt"]["metrics"]
    assert len(rows) == 8 and {r["model"] for r in rows} == {"bt"}
    for group in (*RMB_EXPECTED, "Pairwise_set", "BoN_set"):
        if group == "score":
            continue
        flags = [r["is_correct"] for r in rows if r["category_path"].startswith(group)]
        if group in metrics:  # the mean over rows, as the official script prints it for a folder
            assert metrics[group] == pytest.approx(np.mean(flags)), group
        for r in rows:  # each flag is the official strict comparison of the written rewards
            first = r.get("chosen_reward", r.get("bon_best_reward"))
            others = [r["reject_reward"]] if "reject_reward" in r else r["loser_rewards"]
            assert r["is_correct"] == int(first > max(others))
