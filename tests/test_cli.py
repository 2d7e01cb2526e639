import json
import subprocess
import sys

import pytest

from rewardkit.cli import main


def _run(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


@pytest.fixture(scope="module")
def data_files(synthetic_split, tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    train, test = synthetic_split
    train.save_jsonl(d / "train.jsonl")
    test.save_jsonl(d / "test.jsonl")
    return d


def test_train_score_eval(tiny_lm, data_files, tmp_path, capsys):
    out = tmp_path / "rm"
    main(
        [
            "train",
            "explicit",
            "--model",
            str(tiny_lm),
            "--data",
            str(data_files / "train.jsonl"),
            "--eval-data",
            str(data_files / "test.jsonl"),
            "--out",
            str(out),
            "--epochs",
            "3",
            "--lr",
            "3e-3",
            "--batch-size",
            "16",
            "--seed",
            "0",
        ]
    )
    printed = capsys.readouterr().out
    assert "trained on 400 pairs in 75 steps on 1 process(es)" in printed  # ceil(400/16) * 3
    acc = float(printed.rsplit("held-out accuracy ", 1)[1].rstrip(")\n"))
    assert acc >= 0.9

    scores = tmp_path / "scores.jsonl"
    main(  # float32, as the in-process accuracy was measured (auto may pick bf16 on the CPU)
        [
            "score",
            "--rm",
            str(out),
            "--data",
            str(data_files / "test.jsonl"),
            "--out",
            str(scores),
            "--dtype",
            "float32",
        ]
    )
    lines = [json.loads(x) for x in scores.read_text().splitlines()]
    assert [x["index"] for x in lines] == list(range(200))
    assert abs(sum(x["chosen"] > x["rejected"] for x in lines) / 200 - acc) < 1e-9
    assert all(abs(x["margin"] - (x["chosen"] - x["rejected"])) < 1e-6 for x in lines)

    report, md, png = tmp_path / "eval.json", tmp_path / "eval.md", tmp_path / "eval.png"
    main(
        [
            "eval",
            "--rm",
            f"exrm={out}",
            "--rm",
            f"again={out}",
            "--data",
            str(data_files / "test.jsonl"),
            "--split-by",
            "subset",
            "--ood",
            "science,travel",
            "--json",
            str(report),
            "--markdown",
            str(md),
            "--plot",
            str(png),
            "--n-boot",
            "500",
        ]
    )
    capsys.readouterr()
    result = json.loads(report.read_text())
    assert result["ties"] == "half" and result["splits"] == ["id", "science", "travel"]
    rows = result["models"]["exrm"]["splits"]
    assert sum(r["n"] for r in rows.values()) == 200
    assert sum(r["n"] * r["accuracy"] for r in rows.values()) / 200 == pytest.approx(acc)
    assert all(r["ci_low"] <= r["accuracy"] <= r["ci_high"] for r in rows.values())
    m = result["models"]["exrm"]
    assert m["drop"] == pytest.approx(
        m["id"] - (rows["science"]["accuracy"] + rows["travel"]["accuracy"]) / 2
    )
    # the same model twice: every paired test has a zero difference and p = 1
    assert {(t["split"], t["diff"], t["p_value"]) for t in result["paired_tests"]} == {
        ("id", 0.0, 1.0),
        ("science", 0.0, 1.0),
        ("travel", 0.0, 1.0),
    }
    table = md.read_text().split("\n\n")[0].splitlines()
    assert [row.split(" | ")[0] for row in table[2:]] == ["| exrm", "| again"] and png.stat().st_size > 1000
    code, _, err = _run(
        ["score", "--rm", str(out), "--data", str(data_files / "test.jsonl"), "--out", str(scores)], capsys
    )
    assert code == 2 and "already exists (use --force" in err


def test_errors_are_one_line_and_nonzero(tiny_lm, data_files, tmp_path, capsys):
    code, _, err = _run(
        [
            "score",
            "--rm",
            str(tmp_path / "missing"),
            "--data",
            str(data_files / "test.jsonl"),
            "--out",
            str(tmp_path / "s.jsonl"),
        ],
        capsys,
    )
    assert code == 2 and err.strip().count("\n") == 0 and "reward model folder not found" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x", "chosen": "a", "rejected": "b"}\n{"prompt": "x", "chosen": "a"}\n')
    code, _, err = _run(
        ["train", "explicit", "--model", str(tiny_lm), "--data", str(bad), "--out", str(tmp_path / "o")],
        capsys,
    )
    assert code == 2 and f"{bad}:2: missing field 'rejected'" in err and err.count("\n") == 1
    code, _, err = _run(
        [
            "train",
            "explicit",
            "--model",
            str(tiny_lm),
            "--data",
            str(data_files / "train.jsonl"),
            "--out",
            str(tmp_path / "o"),
            "--lr",
            "-1",
        ],
        capsys,
    )
    assert code == 2 and err == "error: Invalid value for '--lr': '-1' must be > 0\n"
    code, _, err = _run(["eval", "--rm", str(tiny_lm), "--data", str(bad), "--ood", "x"], capsys)
    assert code == 2 and "--ood needs --split-by" in err


def test_console_script_entry_point():
    result = subprocess.run([sys.executable, "-m", "rewardkit.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "train" in result.stdout and "score" in result.stdout


def test_dpo_train_score_and_eval(tiny_lm, data_files, tmp_path, capsys):
    out = tmp_path / "dpo"
    main(
        [
            "train",
            "dpo",
            "--model",
            str(tiny_lm),
            "--data",
            str(data_files / "train.jsonl"),
            "--out",
            str(out),
            "--eval-data",
            str(data_files / "test.jsonl"),
            "--epochs",
            "3",
            "--lr",
            "3e-3",
            "--beta",
            "0.1",
            "--batch-size",
            "16",
        ]
    )
    printed = capsys.readouterr().out
    assert "saved DPO implicit reward model" in printed
    acc = float(printed.rsplit("accuracy ", 1)[1].rstrip(")\n"))
    assert acc >= 0.9
    via_rm, via_pair = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    main(["score", "--rm", str(out), "--data", str(data_files / "test.jsonl"), "--out", str(via_rm)])
    main(
        [
            "score",
            "--dpo-policy",
            str(out),
            "--dpo-ref-model",
            str(tiny_lm),
            "--beta",
            "0.1",
            "--data",
            str(data_files / "test.jsonl"),
            "--out",
            str(via_pair),
        ]
    )
    a = [json.loads(x)["margin"] for x in via_rm.read_text().splitlines()]
    b = [json.loads(x)["margin"] for x in via_pair.read_text().splitlines()]
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-5
    assert abs(sum(x > 0 for x in a) / len(a) - acc) < 1e-9
    capsys.readouterr()
    main(
        [
            "eval",
            "--rm",
            str(out),
            "--data",
            str(data_files / "test.jsonl"),
            "--json",
            str(tmp_path / "e.json"),
        ]
    )
    assert json.loads((tmp_path / "e.json").read_text())["models"]["dpo"]["splits"]["all"][
        "accuracy"
    ] == pytest.approx(acc)
    code, _, err = _run(
        [
            "score",
            "--dpo-policy",
            str(out),
            "--data",
            str(data_files / "test.jsonl"),
            "--out",
            str(tmp_path / "c.jsonl"),
        ],
        capsys,
    )
    assert code == 2 and "--dpo-policy needs --beta" in err
    code, _, err = _run(
        [
            "score",
            "--dpo-policy",
            str(out),
            "--beta",
            "0.1",
            "--data",
            str(data_files / "test.jsonl"),
            "--out",
            str(tmp_path / "c.jsonl"),
        ],
        capsys,
    )
    assert code == 2 and "needs a reference model" in err


HEAVY = ("torch", "transformers", "datasets", "peft", "accelerate", "scipy", "matplotlib", "trl")


def test_import_and_help_load_no_heavy_module():
    """`import rewardkit` and `rewardkit --help` stay fast: no torch / transformers / datasets / peft
    (start-up time itself is measured in benchmarks/startup.py)."""
    code = (
        "import sys, rewardkit, rewardkit.cli\n"
        "from rewardkit.cli import cli\n"
        "try:\n    cli.main(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    import rewardkit

    assert callable(rewardkit.load_reward_model) and "BradleyTerryRM" in dir(rewardkit)
