"""Absurd resource requests are refused before any work, naming the limit (rewardkit.cli.options.LIMITS,
check_lora_rank): one ``error:`` line, exit status 2, inputs unchanged, nothing written."""

from __future__ import annotations

import pytest

from rewardkit.cli.options import LIMITS
from tests.hostile import check_case, out_of


def _train(e, *flags):
    return ["train", "explicit", "--model", e.lm, "--data", e.data, "--out", out_of(e), *flags]


def _score(e, *flags):
    return ["score", "--rm", e.d / "rm0", "--data", e.data, "--out", out_of(e), *flags]


def _hacking(e, *flags):
    return ["bench", "hacking", "--preset", "ci", "--out", out_of(e), *flags]


def _shift(e, *flags):
    return ["bench", "shift", "--preset", "ci", "--out", out_of(e), "--data", e.data, *flags]


def _range(flag, value, limit, low=1):
    return rf"{flag}.*{value} is not in the range {low}<=x<={limit}\b"


# name -> (argv(env), inputs(env), output(env), error regex)
CASES = {
    "eval --n-boot 10**9": (
        lambda e: ["eval", "--rm", e.d / "rm0", "--data", e.data, "--n-boot", 10**9, "--json", out_of(e)],
        lambda e: [e.data, e.d / "rm0"],
        out_of,
        _range("--n-boot", 10**9, 100000),
    ),
    "eval --suite card --n-boot 10**6": (
        lambda e: ["eval", "--suite", "card", "--rm", e.d / "rm0", "--n-boot", 10**6, "--json", out_of(e)],
        lambda e: [e.d / "rm0"],
        out_of,
        _range("--n-boot", 10**6, 100000),
    ),
    "train --lora-r 10**9": (
        lambda e: _train(e, "--lora-r", 10**9),
        lambda e: [e.data, e.lm],
        out_of,
        _range("--lora-r", 10**9, 65536),
    ),
    "train --lora-r above the hidden size": (
        lambda e: _train(e, "--lora-r", 64),
        lambda e: [e.data, e.lm],
        out_of,
        r"--lora-r 64 is above the hidden size 32 of .*config.json",
    ),
    "train --batch-size 10**9": (
        lambda e: _train(e, "--batch-size", 10**9),
        lambda e: [e.data, e.lm],
        out_of,
        _range("--batch-size", 10**9, 65536),
    ),
    "train --max-length 10**9": (
        lambda e: _train(e, "--max-length", 10**9),
        lambda e: [e.data, e.lm],
        out_of,
        _range("--max-length", 10**9, 2**20, 8),
    ),
    "train --epochs 1e9": (
        lambda e: _train(e, "--epochs", "1e9"),
        lambda e: [e.data, e.lm],
        out_of,
        r"--epochs.*'1e9' must be <= 10000",
    ),
    "train --save-steps 10**12": (
        lambda e: _train(e, "--save-steps", 10**12),
        lambda e: [e.data, e.lm],
        out_of,
        _range("--save-steps", 10**12, 10**7),
    ),
    "score --max-batch-size 10**9": (
        lambda e: _score(e, "--max-batch-size", 10**9),
        lambda e: [e.data, e.d / "rm0"],
        out_of,
        _range("--max-batch-size", 10**9, 65536),
    ),
    "score --max-tokens 10**12": (
        lambda e: _score(e, "--max-tokens", 10**12),
        lambda e: [e.data, e.d / "rm0"],
        out_of,
        _range("--max-tokens", 10**12, 2**24),
    ),
    "bench hacking --k 10**6": (
        lambda e: _hacking(e, "--k", 10**6),
        lambda e: [e.data],
        out_of,
        _range("--k", 10**6, 4096, 2),
    ),
    "bench hacking --members 1000": (
        lambda e: _hacking(e, "--members", 1000),
        lambda e: [e.data],
        out_of,
        _range("--members", 1000, 64, 2),
    ),
    "bench hacking --n-prompts 10**9": (
        lambda e: _hacking(e, "--n-prompts", 10**9),
        lambda e: [e.data],
        out_of,
        _range("--n-prompts", 10**9, 10**7, 2),
    ),
    "bench hacking --rl-steps 10**9": (
        lambda e: _hacking(e, "--rl-steps", 10**9),
        lambda e: [e.data],
        out_of,
        _range("--rl-steps", 10**9, 10**7),
    ),
    "bench shift --lora-r 10**6": (
        lambda e: _shift(e, "--lora-r", 10**6),
        lambda e: [e.data],
        out_of,
        _range("--lora-r", 10**6, 65536),
    ),
    "bench shift --n-train 10**9": (
        lambda e: _shift(e, "--n-train", 10**9),
        lambda e: [e.data],
        out_of,
        _range("--n-train", 10**9, 10**7),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_an_absurd_request_is_refused_before_any_work(hostile_env, name, capsys):
    check_case(CASES[name], hostile_env, capsys)


def test_the_limits_are_the_documented_ones():
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "cli.md").read_text()
    for flag, key in (
        ("--n-boot", "n_boot"),
        ("--batch-size", "batch_size"),
        ("--max-batch-size", "max_batch_size"),
        ("--k", "k"),
    ):
        assert f"`{flag}` <= {LIMITS[key]}" in doc
