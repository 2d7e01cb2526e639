"""A 2-process torchrun (gloo, CPU) training run through the CLI: the Trainer shards the data."""

import os
import re
import subprocess
import sys

from rewardkit import load_reward_model


def test_torchrun_two_processes_train(tiny_lm, synthetic_split, tmp_path):
    train, test = synthetic_split
    train.save_jsonl(tmp_path / "train.jsonl")
    out = tmp_path / "rm"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "rewardkit.cli",
        "train",
        "explicit",
        "--model",
        str(tiny_lm),
        "--data",
        str(tmp_path / "train.jsonl"),
        "--out",
        str(out),
        "--epochs",
        "3",
        "--lr",
        "3e-3",
        "--batch-size",
        "8",
        "--seed",
        "0",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    # 400 pairs over 2 ranks x 8 pairs per step = 25 steps per epoch (a single process would take 50)
    assert result.stdout.count("in 75 steps on 2 process(es)") == 2
    rm = load_reward_model(out)
    assert rm.score_pairs(test).accuracy() >= 0.9


def test_torchrun_two_processes_score_equals_single_process(trained_rm, synthetic_split, tmp_path):
    import json

    _, rm_dir = trained_rm
    _, test = synthetic_split
    test.save_jsonl(tmp_path / "test.jsonl")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    args = ["-m", "rewardkit.cli", "score", "--rm", str(rm_dir), "--data", str(tmp_path / "test.jsonl")]
    single = subprocess.run(
        [sys.executable, *args, "--out", str(tmp_path / "one.jsonl")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    multi = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            *args,
            "--out",
            str(tmp_path / "two.jsonl"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert single.returncode == 0 and multi.returncode == 0, multi.stderr[-3000:]
    assert "on 2 process(es)" in multi.stdout
    one = [json.loads(x) for x in (tmp_path / "one.jsonl").read_text().splitlines()]
    two = [json.loads(x) for x in (tmp_path / "two.jsonl").read_text().splitlines()]
    assert [r["index"] for r in two] == list(range(200))
    assert (
        max(abs(a["chosen"] - b["chosen"]) + abs(a["rejected"] - b["rejected"]) for a, b in zip(one, two))
        <= 1e-4
    )


def test_torchrun_two_processes_bench_shift(tmp_path):
    """The benchmark under torchrun: data-parallel training, sharded scoring, rank 0 writes the report."""
    import json

    out = tmp_path / "bench"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    small = ["--n-train", "128", "--n-eval", "24", "--members", "2", "--no-mixture", "--no-progress"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "rewardkit.cli", "bench", "shift", "--preset", "ci", "--out", str(out), *small]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rep = json.loads((out / "report.json").read_text())
    assert rep["splits"] == ["id", "prompt_shift", "response_shift"]
    for name, m in rep["models"].items():
        assert [m["splits"][s]["n"] for s in rep["splits"]] == [24, 24, 24], name
    assert rep["models"]["EXRM"]["id"] >= 0.75
    # rank 0 alone prints the table (one accuracy row per model) and writes
    assert sum(re.match(r"\| EXRM \| \d", line) is not None for line in result.stdout.splitlines()) == 1
    assert not (out / "models").exists()
