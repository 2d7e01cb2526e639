"""Absurd resource requests are refused before any work, naming the limit (rewardkit.limits.LIMITS,
check_lora_rank): one ``error:`` line, exit status 2, inputs unchanged, nothing written."""

from __future__ import annotations

import pytest

from rewardkit.limits import LIMITS
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


def _yaml(e, name: str, fields: dict):
    import yaml

    path = e.d / f"{name}.yaml"
    path.write_text(yaml.safe_dump(fields))
    return path


def _le(what: str, field: str, limit: int, name: str) -> str:
    return rf"{what} config field '{field}': Input should be less than or equal to {limit} \(config file .*{name}\.yaml\)"


# name -> (argv(env, yaml file) without it, the YAML's fields, error regex): a value given in a --config file
# meets the limit its flag has (rewardkit.limits.LIMITS), before any work, naming the file and the field
YAML_CASES = {
    "train batch_size": (
        lambda e, c: _train(e, "--config", c),
        {"batch_size": 10**9},
        lambda n: _le("train explicit", "batch_size", 65536, n),
    ),
    "train grad_accum": (
        lambda e, c: _train(e, "--config", c),
        {"grad_accum": 10**9},
        lambda n: _le("train explicit", "grad_accum", 65536, n),
    ),
    "train max_length": (
        lambda e, c: _train(e, "--config", c),
        {"max_length": 2**21},
        lambda n: _le("train explicit", "max_length", 2**20, n),
    ),
    "train epochs": (
        lambda e, c: _train(e, "--config", c),
        {"epochs": 1e9},
        lambda n: _le("train explicit", "epochs", 10000, n),
    ),
    "train save_steps": (
        lambda e, c: _train(e, "--config", c),
        {"save_steps": 10**12, "save_checkpoints": True},
        lambda n: _le("train explicit", "save_steps", 10**7, n),
    ),
    "train num_heads": (
        lambda e, c: _train(e, "--config", c),
        {"num_heads": 1000},
        lambda n: _le("train explicit", "num_heads", 64, n),
    ),
    "train dpo lora_r": (
        lambda e, c: ["train", "dpo", "--model", e.lm, "--data", e.data, "--out", out_of(e), "--config", c],
        {"lora_r": 10**9},
        lambda n: _le("train dpo", "lora_r", 65536, n),
    ),
    "bench shift n_boot": (
        lambda e, c: _shift(e, "--config", c),
        {"n_boot": 10**9},
        lambda n: _le("bench", "n_boot", 100000, n),
    ),
    "bench shift n_train": (
        lambda e, c: _shift(e, "--config", c),
        {"n_train": 10**9},
        lambda n: _le("bench", "n_train", 10**7, n),
    ),
    "bench shift exrm.batch_size": (
        lambda e, c: _shift(e, "--config", c),
        {"exrm": {"batch_size": 10**9}},
        lambda n: _le("bench", "exrm.batch_size", 65536, n),
    ),
    "bench shift members": (
        lambda e, c: _shift(e, "--config", c),
        {"members": 1000},
        lambda n: _le("bench", "members", 64, n),
    ),
    "bench shift seeds": (
        lambda e, c: _shift(e, "--config", c),
        {"seeds": list(range(1000))},
        lambda n: rf"bench config field 'seeds': List should have at most 64 items .*{n}\.yaml",
    ),
    "bench hacking k": (
        lambda e, c: _hacking(e, "--config", c),
        {"k": 10**6},
        lambda n: _le("bench hacking", "k", 4096, n),
    ),
    "bench hacking n_prompts": (
        lambda e, c: _hacking(e, "--config", c),
        {"n_prompts": 10**9},
        lambda n: _le("bench hacking", "n_prompts", 10**7, n),
    ),
    "bench hacking max_new_tokens": (
        lambda e, c: _hacking(e, "--config", c),
        {"max_new_tokens": 10**9},
        lambda n: _le("bench hacking", "max_new_tokens", 2**20, n),
    ),
    "bench hacking dpo.epochs": (
        lambda e, c: _hacking(e, "--config", c),
        {"dpo": {"epochs": 1e9}},
        lambda n: _le("bench hacking", "dpo.epochs", 10000, n),
    ),
    "bench hacking rl.steps": (
        lambda e, c: _hacking(e, "--config", c),
        {"optimizer": "rl", "rl": {"steps": 10**9}},
        lambda n: _le("bench hacking", "rl.steps", 10**7, n),
    ),
    "bench hacking rl.num_generations": (
        lambda e, c: _hacking(e, "--config", c),
        {"rl": {"num_generations": 10**6}},
        lambda n: _le("bench hacking", "rl.num_generations", 4096, n),
    ),
    "bench hacking rl.max_completion_length": (
        lambda e, c: _hacking(e, "--config", c),
        {"rl": {"max_completion_length": 10**9}},
        lambda n: _le("bench hacking", "rl.max_completion_length", 2**20, n),
    ),
    "bench hacking rl.eval_batch": (
        lambda e, c: _hacking(e, "--config", c),
        {"rl": {"eval_batch": 10**9}},
        lambda n: _le("bench hacking", "rl.eval_batch", 65536, n),
    ),
    "bench hacking warm_grid entry": (
        lambda e, c: _hacking(e, "--config", c),
        {"members": 2, "warm_grid": [{"head_seed": 0}, {"batch_size": 10**9}]},
        lambda n: (
            r"bench hacking config: warm_grid\[1\]\.batch_size: Input should be less than or equal "
            rf"to 65536 \(config file .*{n}\.yaml\)"
        ),
    ),
}


@pytest.mark.parametrize("name", list(YAML_CASES))
def test_an_absurd_value_in_a_config_file_meets_its_flags_limit(hostile_env, name, capsys):
    argv, fields, pattern = YAML_CASES[name]
    stem = "cfg_" + name.replace(" ", "_").replace(".", "_")
    cfg = _yaml(hostile_env, stem, fields)
    case = (lambda e: argv(e, cfg), lambda e: [cfg, e.data, e.lm], out_of, pattern(stem))
    check_case(case, hostile_env, capsys)


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
