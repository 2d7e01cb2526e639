"""``bench shift`` / ``bench hacking`` read and check every input before they write anything (#29): a data
file, shift spec, candidates file, backbone, policy or gold model that cannot serve is one ``error:`` line,
exit status 2, inputs unchanged, and ``--out`` is never created (nor anything left beside it)."""

from __future__ import annotations

import json

import pytest

from tests.hostile import check_case, out_of


def _hacking(e, *flags):
    return ["bench", "hacking", "--preset", "ci", "--out", out_of(e), *flags]


def _real(e, *flags, preset="ci"):
    """bench hacking on real data: the env's pairs labelled by its rm0 as gold, a good candidates file."""
    argv = _hacking(e, "--data", e.data, "--gold", e.d / "rm0", "--candidates", e.d / "cands.jsonl", "--k", 2)
    return [*argv, "--preset", preset, *flags]


def _shift(e, *flags):
    return ["bench", "shift", "--preset", "ci", "--out", out_of(e), "--data", e.data, *flags]


def _pairs(path, n: int, conversation: bool = False) -> None:
    """A preference file of ``n`` pairs (conversation prompts when asked)."""
    rows = [
        {
            "prompt": [{"role": "user", "content": f"question {i}"}] if conversation else f"question {i}",
            "chosen": f" good answer {i}",
            "rejected": f" bad {i}",
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _write_inputs(e) -> None:
    """The files the table's cases read, written before their hashes are taken."""
    if not (e.d / "cands.jsonl").exists():
        rows = [{"prompt": f"q{i}", "candidates": ["a", "b"]} for i in range(3)]
        (e.d / "cands.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        _pairs(e.d / "five.jsonl", 5)
        _pairs(e.d / "conv.jsonl", 24, conversation=True)


# name -> (argv(env), inputs(env), output(env), error regex); env: tests.hostile.build_env
CASES = {
    "hacking: a gold model with truncated weights": (
        lambda e: _hacking(
            e, "--data", e.data, "--gold", e.d / "truncated", "--candidates", e.d / "cands.jsonl", "--k", 2
        ),
        lambda e: [e.data, e.d / "truncated"],
        out_of,
        r"truncated",
    ),
    "hacking: --policy is a file": (
        lambda e: _hacking(e, "--data", e.data, "--gold", e.d / "rm0", "--policy", e.d / "afile"),
        lambda e: [e.data, e.d / "afile"],
        out_of,
        r"afile: is a file, expected a --policy model folder",
    ),
    "hacking: --model is not a model folder": (
        lambda e: _real(e, "--model", e.d / "outdir", preset="cpu"),
        lambda e: [e.data, e.d / "rm0"],
        out_of,
        r"outdir: no config.json: not a model folder",
    ),
    "hacking: too few pairs outside the best-of-N prompts": (
        lambda e: _real(e, "--data", e.d / "five.jsonl"),
        lambda e: [e.d / "five.jsonl", e.d / "rm0"],
        out_of,
        r"too few training pairs outside the best-of-N prompts \(5 in the data\)",
    ),
    "hacking --optimizer rl: conversation prompts": (
        lambda e: _hacking(
            e,
            "--data",
            e.d / "conv.jsonl",
            "--n-prompts",
            8,
            "--gold",
            e.d / "rm0",
            "--policy",
            e.lm,
            "--optimizer",
            "rl",
        ),
        lambda e: [e.d / "conv.jsonl", e.d / "rm0", e.lm],
        out_of,
        r"--optimizer rl needs plain-text prompts",
    ),
    "shift: --model is a file": (
        lambda e: _shift(e, "--model", e.d / "afile"),
        lambda e: [e.data, e.d / "afile"],
        out_of,
        r"afile: is a file, expected a --model model folder",
    ),
    "shift: --prompt-field the data lacks": (
        lambda e: _shift(e, "--prompt-field", "nosuch", "--id-prompts", "cooking"),
        lambda e: [e.data],
        out_of,
        r"metadata has no field 'nosuch'",
    ),
    "shift: --id-prompts the data lacks": (
        lambda e: _shift(e, "--id-prompts", "nosuch"),
        lambda e: [e.data],
        out_of,
        r"no pair has an ID prompt source and ID responses \(prompt sources seen: \['cooking', 'science'\]\)",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_every_input_is_read_before_anything_is_written(hostile_env, name, capsys):
    _write_inputs(hostile_env)
    check_case(CASES[name], hostile_env, capsys)


HOLD = """
import sys, time
from rewardkit.locks import hold_output
with hold_output(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def test_the_python_bench_api_locks_its_output(tmp_path):
    """``run_shift_benchmark`` / ``run_hacking_benchmark`` hold ``out``'s lock as the training API does: while
    another process writes ``out`` each call fails at once in one line naming that process, before any
    work, and leaves ``out`` absent."""
    import re
    import subprocess
    import sys

    from rewardkit.bench.hacking import run_hacking_benchmark
    from rewardkit.bench.hacking_config import resolve_hacking_config
    from rewardkit.bench.shift import run_shift_benchmark
    from rewardkit.bench.shift_config import resolve_config
    from rewardkit.errors import RewardkitError

    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        runs = {
            "shift": lambda: run_shift_benchmark(resolve_config("ci", None, {}), out),
            "hacking": lambda: run_hacking_benchmark(resolve_hacking_config("ci", None, {}), out),
        }
        for name, call in runs.items():
            with pytest.raises(RewardkitError) as err:
                call()
            assert re.fullmatch(
                rf"{re.escape(str(out))}: another rewardkit run \(pid {holder.pid}\) is writing this output; "
                "wait for it to finish or choose another output",
                str(err.value),
            ), (name, str(err.value))
            assert not out.exists(), name
    finally:
        holder.kill()
        holder.wait()
