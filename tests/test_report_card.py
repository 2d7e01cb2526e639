"""``rewardkit eval --suite card`` and the report-card suites through the CLI, for every local kind of
reward model (explicit, DPO with a reference and reference-free, an untrained DPORM whose rewards all
tie, an ensemble, a WARM merge, a length-penalised RM): each suite's summary equals the suite's scoring
run again on the per-example rewards the CLI wrote, the rewards equal ``rm.score`` on the same texts,
and the all-ties model shows each suite's tie rule."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rewardkit.cli import main
from rewardkit.eval.bench_data import bench_texts, load_bench
from rewardkit.eval.bench_report import report_from_rewards
from rewardkit.eval.card import Card, load_card, run_card
from rewardkit.eval.plots import card_png_size
from rewardkit.eval.suite_registry import get_bench
from tests.bench_fixtures import (
    JUDGEBENCH_ROWS,
    PPE_CORRECTNESS_ROWS,
    PPE_PREFERENCE_ROWS,
    RMBENCH_ROWS,
    write_rmb,
)
from tests.suite_fixtures import WordCountRM, v1_rows, write_jsonl
from tests.test_rewardbench import FLOAT32_EVAL, model_dirs  # noqa: F401  (a fixture)


@pytest.fixture(scope="module")
def suite_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("card_data")
    return {
        "rewardbench": write_jsonl(d / "filtered.jsonl", v1_rows(per_subset=1)),
        "rm-bench": write_jsonl(d / "rm.jsonl", [r for r, _ in RMBENCH_ROWS]),
        "judgebench": write_jsonl(d / "jb.jsonl", [r for r, _, _ in JUDGEBENCH_ROWS]),
        "ppe-preference": write_jsonl(d / "pref.jsonl", PPE_PREFERENCE_ROWS),
        "ppe-correctness": write_jsonl(d / "corr.jsonl", PPE_CORRECTNESS_ROWS),
        "rmb": write_rmb(d),  # the official folder layout
    }


def test_card_cli_every_kind(model_dirs, suite_files, tmp_path, capsys):  # noqa: F811
    argv = ["eval", "--suite", "card", "--n-boot", "200", *FLOAT32_EVAL]
    for name, folder in model_dirs.items():
        argv += ["--rm", f"{name}={folder}"]
    for suite, path in suite_files.items():
        argv += ["--suite-data", f"{suite}={path}"]
    out = {k: tmp_path / f"card.{k}" for k in ("json", "md", "jsonl")}
    argv += ["--json", str(out["json"]), "--markdown", str(out["md"]), "--per-example", str(out["jsonl"])]
    main([*argv, "--plot", str(tmp_path / "card.png")])
    capsys.readouterr()
    card = json.loads(out["json"].read_text())
    assert set(card["suites"]) == set(suite_files)
    assert (
        list(card["skipped_suites"]) == ["rewardbench2"]
        and "HF_HUB_OFFLINE" in card["skipped_suites"]["rewardbench2"]
    )
    assert set(card["card"]) == set(model_dirs) and card["dtype"] == "float32"
    png = (tmp_path / "card.png").read_bytes()  # a panel per suite that ran, a row per model
    size = (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and size == card_png_size(len(suite_files), len(model_dirs))
    rows = [json.loads(line) for line in out["jsonl"].read_text().splitlines()]
    for suite in ("rm-bench", "judgebench", "ppe-preference", "ppe-correctness", "rmb"):
        spec = get_bench(suite)
        data = load_bench(spec, suite_files[suite])
        rewards = {
            name: [_rewards(suite, r) for r in rows if r["suite"] == suite and r["model"] == name]
            for name in model_dirs
        }
        again = report_from_rewards(data, rewards, n_boot=200).to_dict()["models"]
        written = card["suites"][suite]["models"]
        for name in model_dirs:
            assert again[name] == written[name], (suite, name)  # exactly: the rewards round-trip through JSON
            assert card["card"][name][suite]["score"] == written[name]["metrics"]["score"]
            lo, hi = card["card"][name][suite]["ci"]  # the one table carries each headline's 95% CI
            assert [lo, hi] == written[name]["ci"]["score"] and lo <= written[name]["metrics"]["score"] <= hi
    cell = card["card"]["bt"]["rm-bench"]  # and the Markdown table shows it: score [low, high] in %
    bt_line = next(line for line in out["md"].read_text().splitlines() if line.startswith("| bt |"))
    assert f"{100 * cell['score']:.1f} [{100 * cell['ci'][0]:.1f}, {100 * cell['ci'][1]:.1f}]" in bt_line
    # the untrained DPORM: every reward 0, so every pair ties
    tie = {
        s: card["suites"][s]["models"]["dpo_same"]["metrics"] for s in card["suites"] if s != "rewardbench"
    }
    assert card["suites"]["rewardbench"]["models"]["dpo_same"]["score"] == 0.0
    assert tie["rm-bench"]["score"] == 0.0  # a tie counts wrong
    assert tie["judgebench"]["score"] == pytest.approx(3 / 7)  # a tie decides B>A: right on the 3 B>A pairs
    assert tie["judgebench"]["two_game"] == 0.0
    assert tie["ppe-preference"]["score"] == 0.0
    assert tie["rmb"]["score"] == 0.0  # chosen / bon_best must be strictly above
    assert tie["ppe-correctness"]["best_of_k"] == pytest.approx(
        ((0.5 + 0.25) / 2 + 1.0) / 2
    )  # a uniform pick
    md = out["md"].read_text()
    assert (
        md.startswith("# Reward-model report card") and "skipped RewardBench 2" in md and "## RM-Bench" in md
    )
    tests = card["suites"]["rm-bench"]["paired_tests"]
    assert {(t["a"], t["b"]) for t in tests if t["metric"] == "score"} >= {("bt", "dpo")}


def _rewards(suite: str, row: dict) -> np.ndarray:
    keys = {
        "rm-bench": lambda r: r["score_chosen"] + r["score_rejected"],
        "judgebench": lambda r: [r["score_A"], r["score_B"]],
        "ppe-preference": lambda r: [r["score_1"], r["score_2"]],
        "ppe-correctness": lambda r: r["scores"],
        "rmb": lambda r: (
            [r["chosen_reward"], r["reject_reward"]]
            if "chosen_reward" in r
            else [r["bon_best_reward"], *r["loser_rewards"]]
        ),
    }
    return np.array(keys[suite](row))


def test_per_example_rewards_are_the_engine_scores(model_dirs, suite_files, tmp_path, capsys):  # noqa: F811
    from rewardkit import load_reward_model

    argv = [
        "eval",
        "--suite",
        "rm-bench",
        "--suite-data",
        f"rm-bench={suite_files['rm-bench']}",
        "--n-boot",
        "20",
    ]
    argv += ["--rm", f"ens={model_dirs['ens']}", "--rm", f"dpo={model_dirs['dpo']}", *FLOAT32_EVAL]
    main([*argv, "--per-example", str(tmp_path / "pe.jsonl")])
    capsys.readouterr()
    rows = [json.loads(line) for line in (tmp_path / "pe.jsonl").read_text().splitlines()]
    texts = bench_texts(load_bench(get_bench("rm-bench"), suite_files["rm-bench"]))
    for name in ("ens", "dpo"):
        rm = load_reward_model(model_dirs[name], dtype="float32")
        direct = rm.score(texts.prompts, texts.responses)
        written = np.concatenate([_rewards("rm-bench", r) for r in rows if r["model"] == name])
        np.testing.assert_allclose(written, direct, rtol=0, atol=1e-5)


def test_card_api_skips_unreachable_suites_and_refuses_bad_files(suite_files, tmp_path):
    data = load_card({"rm-bench": suite_files["rm-bench"]})
    assert list(data.loaded) == ["rm-bench"] and set(data.skipped) == {
        "rewardbench",
        "rewardbench2",
        "judgebench",
        "ppe-preference",
        "ppe-correctness",
        "rmb",
    }
    card = run_card({"words": WordCountRM()}, data, n_boot=50)
    assert isinstance(card, Card) and card.table()["words"]["rm-bench"]["score"] == pytest.approx(
        0.4722222222222222
    )
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"id": 1}])
    from rewardkit.errors import DataError

    with pytest.raises(DataError, match=r"bad.jsonl:1: field"):
        load_card({"judgebench": bad})  # a file given is an error, never a skip


def test_cli_refuses_bad_suite_data(suite_files, tmp_path, capsys):
    for extra, message in (
        (["--suite-data", "nope=x"], "expected SUITE=FILE"),
        (
            ["--data", str(suite_files["rm-bench"])],
            "--suite does not take --data (give --suite-data SUITE=FILE)",
        ),
        (["--suite", "rmb", "--plot", "x.png"], "--suite does not take --plot (only with --suite card)"),
    ):
        with pytest.raises(SystemExit) as info:
            main(["eval", "--suite", "card", "--rm", str(tmp_path), *extra])
        assert info.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["eval", "--rm", str(tmp_path), "--data", "x.jsonl", "--suite-data", "rm-bench=x"])
    assert info.value.code == 2 and "--suite-data needs --suite" in capsys.readouterr().err


class _NegWords(WordCountRM):
    def score_texts(self, texts):
        return -super().score_texts(texts)


def test_card_png_one_panel_per_suite(suite_files, tmp_path):
    import matplotlib.image

    files = {s: suite_files[s] for s in ("rm-bench", "judgebench", "rmb")}
    card = run_card({"words": WordCountRM(), "neg": _NegWords()}, load_card(files), n_boot=50)
    path = tmp_path / "card.png"
    card.to_png(path)
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR"
    width, height = int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")
    assert (width, height) == card_png_size(3, 2) == (720, 200)
    assert [p.name for p in tmp_path.iterdir()] == ["card.png"]  # atomic: no temporary file left
    img = matplotlib.image.imread(path)[..., :3]
    assert img.shape[:2] == (height, width)
    # each suite panel holds coloured marks (the dots and CI bars; the frame and text are grey / black)
    colour = (img.max(axis=2) - img.min(axis=2)) > 0.3
    thirds = [
        colour[:, int(width * (0.3 + 0.23 * i)) : int(width * (0.3 + 0.23 * (i + 1)))] for i in range(3)
    ]
    assert all(t.sum() > 20 for t in thirds), [int(t.sum()) for t in thirds]
