"""``rewardkit train`` with out-of-domain hyper-parameters or a diverging run (rewardkit.train): one ``error:``
line, nothing saved."""

from __future__ import annotations

import pytest

from tests.hostile import check_case, out_of

# name -> (argv(env), inputs(env), output(env), error regex); env: tests.hostile.build_env
CASES = {
    "beta inf": (
        lambda e: ["train", "dpo", "--model", e.lm, "--data", e.data, "--out", out_of(e), "--beta", "inf"],
        lambda e: [e.data, e.lm],
        out_of,
        r"--beta.*'inf' is not a finite number",
    ),
    "lr inf": (
        lambda e: ["train", "explicit", "--model", e.lm, "--data", e.data, "--out", out_of(e), "--lr", "inf"],
        lambda e: [e.data, e.lm],
        out_of,
        r"--lr.*'inf' is not a finite number",
    ),
    "training diverges": (
        lambda e: [
            "train",
            "explicit",
            "--model",
            e.lm,
            "--data",
            e.data,
            "--out",
            out_of(e),
            "--lr",
            "1e30",
            "--batch-size",
            "2",
        ],
        lambda e: [e.data, e.lm],
        out_of,
        r"training loss is (nan|inf) at step \d+ .*nothing saved",
    ),
    "DPO beta 0": (
        lambda e: ["train", "dpo", "--model", e.lm, "--data", e.data, "--out", out_of(e), "--beta", "0"],
        lambda e: [e.data],
        out_of,
        r"--beta.*'0' must be > 0",
    ),
    "ema decay 1": (
        lambda e: [
            "train",
            "explicit",
            "--model",
            e.lm,
            "--data",
            e.data,
            "--out",
            out_of(e),
            "--elastic-reset-every",
            "2",
            "--ema-decay",
            "1",
        ],
        lambda e: [e.data],
        out_of,
        r"--ema-decay.*'1' must be < 1",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_error_line_and_touches_nothing(hostile_env, name, capsys):
    check_case(CASES[name], hostile_env, capsys)


# name -> (argv(n), inputs(n), output(n), error regex); n: tests.hostile.build_named
NAMED_CASES = {
    "train seed -5": (
        lambda n: [
            "train",
            "explicit",
            "--model",
            n.base,
            "--data",
            n.data,
            "--out",
            n.d / "t",
            "--seed",
            "-5",
        ],
        lambda n: [n.data],
        lambda n: n.d / "t",
        r"--seed.*-5 is not in the range 0<=x<=4294967295",
    ),
    "train seed 2**70": (
        lambda n: [
            "train",
            "explicit",
            "--model",
            n.base,
            "--data",
            n.data,
            "--out",
            n.d / "t",
            "--seed",
            str(2**70),
        ],
        lambda n: [n.data],
        lambda n: n.d / "t",
        r"--seed.*1180591620717411303424 is not in the range",
    ),
}


@pytest.mark.parametrize("name", list(NAMED_CASES))
def test_inputs_named_inside_models_and_honest_weights(hostile_named, name, capsys):
    check_case(NAMED_CASES[name], hostile_named, capsys)
