"""rewardkit.json manifests with fields out of their domain (rewardkit.base): one ``error:`` line naming the
file and field."""

from __future__ import annotations

import pytest

from tests.hostile import check_case, out_of

# name -> (argv(env), inputs(env), output(env), error regex); env: tests.hostile.build_env
CASES = {
    "manifest format as a string": (
        lambda e: ["score", "--rm", e.d / "strformat", "--data", e.data, "--out", out_of(e)],
        lambda e: [e.d / "strformat"],
        out_of,
        r"strformat/rewardkit.json: field 'format' must be an integer",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_error_line_and_touches_nothing(hostile_env, name, capsys):
    check_case(CASES[name], hostile_env, capsys)


# name -> (argv(n), inputs(n), output(n), error regex); n: tests.hostile.build_named
NAMED_CASES = {
    "manifest max_length 0": (
        lambda n: ["score", "--rm", n.d / "max_length_0", "--data", n.data, "--out", n.d / "o.jsonl"],
        lambda n: [n.d / "max_length_0"],
        lambda n: n.d / "o.jsonl",
        r"field 'max_length' must be a positive integer, got 0",
    ),
    "manifest max_length -5": (
        lambda n: ["score", "--rm", n.d / "max_length_neg", "--data", n.data, "--out", n.d / "o.jsonl"],
        lambda n: [n.d / "max_length_neg"],
        lambda n: n.d / "o.jsonl",
        r"field 'max_length' must be a positive integer, got -5",
    ),
    "manifest unknown chat_template": (
        lambda n: ["score", "--rm", n.d / "template_odd", "--data", n.data, "--out", n.d / "o.jsonl"],
        lambda n: [n.d / "template_odd"],
        lambda n: n.d / "o.jsonl",
        r"field 'chat_template' must be one of auto, always, never, got 'sometimes'",
    ),
    "manifest beta -1": (
        lambda n: ["score", "--rm", n.d / "beta_neg", "--data", n.data, "--out", n.d / "o.jsonl"],
        lambda n: [n.d / "beta_neg"],
        lambda n: n.d / "o.jsonl",
        r"field 'beta' must be a positive finite number, got -1",
    ),
    "manifest beta NaN": (
        lambda n: ["score", "--rm", n.d / "beta_nan", "--data", n.data, "--out", n.d / "o.jsonl"],
        lambda n: [n.d / "beta_nan"],
        lambda n: n.d / "o.jsonl",
        r"field 'beta' must be a positive finite number, got nan",
    ),
    "manifest members not strings": (
        lambda n: ["score", "--rm", n.d / "ens_numbers", "--data", n.data, "--out", n.d / "o.jsonl"],
        lambda n: [n.d / "ens_numbers"],
        lambda n: n.d / "o.jsonl",
        r"field 'members' must be a list of folder names, got \[1, 2\]",
    ),
}


@pytest.mark.parametrize("name", list(NAMED_CASES))
def test_inputs_named_inside_models_and_honest_weights(hostile_named, name, capsys):
    check_case(NAMED_CASES[name], hostile_named, capsys)
