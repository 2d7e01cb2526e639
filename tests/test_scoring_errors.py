"""``rewardkit score`` / ``eval`` arguments and models that would give wrong numbers (rewardkit.scoring,
rewardkit.eval): one ``error:`` line, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from rewardkit import BradleyTerryRM
from tests.hostile import check_case, out_of

# name -> (argv(env), inputs(env), output(env), error regex); env: tests.hostile.build_env
CASES = {
    "score a NaN model": (
        lambda e: ["score", "--rm", e.d / "nan_rm", "--data", e.data, "--out", out_of(e)],
        lambda e: [e.data, e.d / "nan_rm"],
        out_of,
        r"reward model .*nan_rm: 24 of 24 rewards are NaN or infinite",
    ),
    "beta nan": (
        lambda e: [
            "score",
            "--dpo-policy",
            e.lm,
            "--reference-free",
            "--beta",
            "nan",
            "--data",
            e.data,
            "--out",
            out_of(e),
        ],
        lambda e: [e.data],
        out_of,
        r"--beta.*'nan' is not a finite number",
    ),
    "n-boot 0": (
        lambda e: ["eval", "--rm", e.d / "rm0", "--data", e.data, "--n-boot", "0", "--json", out_of(e)],
        lambda e: [e.data],
        out_of,
        r"--n-boot.*0 is not in the range 1<=x<=100000",
    ),
    "eval: a DPO policy named like an --rm": (
        lambda e: [
            "eval",
            "--rm",
            f"{Path(e.lm).name}={e.d / 'rm0'}",
            "--dpo-policy",
            e.lm,
            "--reference-free",
            "--beta",
            "0.1",
            "--data",
            e.data,
            "--json",
            out_of(e),
        ],
        lambda e: [e.data],
        out_of,
        r"two reward models named",
    ),
    "batch size 0": (
        lambda e: [
            "score",
            "--rm",
            e.d / "rm0",
            "--data",
            e.data,
            "--out",
            out_of(e),
            "--max-batch-size",
            "0",
        ],
        lambda e: [e.data],
        out_of,
        r"--max-batch-size.*0 is not in the range 1<=x<=65536",
    ),
    "batch size -3": (
        lambda e: [
            "score",
            "--rm",
            e.d / "rm0",
            "--data",
            e.data,
            "--out",
            out_of(e),
            "--max-batch-size",
            "-3",
        ],
        lambda e: [e.data],
        out_of,
        r"--max-batch-size.*-3 is not in the range 1<=x<=65536",
    ),
    "max tokens 0": (
        lambda e: ["score", "--rm", e.d / "rm0", "--data", e.data, "--out", out_of(e), "--max-tokens", "0"],
        lambda e: [e.data],
        out_of,
        r"--max-tokens.*0 is not in the range 1<=x<=16777216",
    ),
    "max tokens -1": (
        lambda e: ["score", "--rm", e.d / "rm0", "--data", e.data, "--out", out_of(e), "--max-tokens", "-1"],
        lambda e: [e.data],
        out_of,
        r"--max-tokens.*-1 is not in the range 1<=x<=16777216",
    ),
    "every value is OOD": (
        lambda e: [
            "eval",
            "--rm",
            e.d / "rm0",
            "--data",
            e.data,
            "--split-by",
            "chosen_generator",
            "--ood",
            "gen_a,gen_b",
            "--json",
            out_of(e),
        ],
        lambda e: [e.data],
        out_of,
        r"--ood lists every value of .chosen_generator.: no in-distribution pairs are left",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_error_line_and_touches_nothing(hostile_env, name, capsys):
    check_case(CASES[name], hostile_env, capsys)


# name -> (argv(n), inputs(n), output(n), error regex); n: tests.hostile.build_named
NAMED_CASES = {
    "eval split by a list field": (
        lambda n: [
            "eval",
            "--rm",
            n.d / "rm",
            "--data",
            n.d / "lists.jsonl",
            "--split-by",
            "tags",
            "--json",
            n.d / "o.json",
        ],
        lambda n: [n.d / "lists.jsonl"],
        lambda n: n.d / "o.json",
        r"pair 0: field 'tags' holds a list, not a single value",
    ),
}


@pytest.mark.parametrize("name", list(NAMED_CASES))
def test_inputs_named_inside_models_and_honest_weights(hostile_named, name, capsys):
    check_case(NAMED_CASES[name], hostile_named, capsys)


def test_sequences_longer_than_the_context_are_truncated_with_a_warning(tiny_lm, caplog):
    rm = BradleyTerryRM.from_pretrained(tiny_lm, max_length=10_000)  # context: 512 positions
    long = " good" * 600
    assert rm.formatter.encode("q", long).truncated and len(rm.formatter.encode("q", long)) == 512
    rm.score(["q"], [long])
    assert "1 of 1 sequences were longer than the model's context of 512 tokens" in caplog.text


def test_a_string_where_a_list_is_expected_is_refused(hostile_named):
    from rewardkit import load_reward_model

    rm = load_reward_model(hostile_named.d / "rm")
    with pytest.raises(TypeError, match="prompts must be a list"):
        rm.score("qq", " a")
    with pytest.raises(TypeError, match="responses must be a list"):
        rm.score(["q", "q"], " a")
    assert rm.score(["q"], [" a"]).shape == (1,)
