"""``bench hacking --candidates`` files that are not what they claim (rewardkit.bench.hacking_data
read_candidates): one ``error:`` line naming file and line, exit status 2, inputs unchanged, and ``--out``
never created (the file is read before the run writes anything)."""

from __future__ import annotations

import json

import pytest

from tests.hostile import check_case

GOOD = json.dumps({"prompt": "q", "candidates": ["a", "b"]}).encode() + b"\n"

# name -> (bytes of line 2, error regex)
CASES = {
    "bad UTF-8": (b'{"prompt": "caf\xe9", "candidates": ["a", "b"]}\n', r"c.jsonl:2: not UTF-8 \(byte 15"),
    "nested JSON": (b'{"prompt": ' + b"[" * 100_000 + b"\n", r"c.jsonl:2: JSON nested too deeply"),
    "a number as the prompt": (
        b'{"prompt": 7, "candidates": ["a", "b"]}\n',
        r"c.jsonl:2: field 'prompt': expected a non-empty list of messages",
    ),
    "an object as the prompt": (
        b'{"prompt": {"role": "user"}, "candidates": ["a", "b"]}\n',
        r"c.jsonl:2: field 'prompt': expected a non-empty list",
    ),
    "messages without content": (
        b'{"prompt": [{"role": "user", "content": 3}], "candidates": ["a", "b"]}\n',
        r"c.jsonl:2: field 'prompt': message 0 needs string 'role' and 'content'",
    ),
    "a lone surrogate": (
        b'{"prompt": "q \\ud800", "candidates": ["a", "b"]}\n',
        r"c.jsonl:2: field 'prompt': not valid Unicode text \(a lone surrogate",
    ),
    "candidates nested": (
        b'{"prompt": "q", "candidates": [["a"], "b"]}\n',
        r"c.jsonl:2: field 'candidates' must be a list of strings",
    ),
    "invalid JSON": (b'{"prompt": "q", \n', r"c.jsonl:2: invalid JSON"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_candidates_are_one_error_line(hostile_env, name, tmp_path, capsys):
    line, pattern = CASES[name]
    cands = tmp_path / "c.jsonl"
    cands.write_bytes(GOOD + line + GOOD)
    case = (
        lambda e: [
            "bench",
            "hacking",
            "--preset",
            "ci",
            "--data",
            e.data,
            "--gold",
            e.d / "rm0",
            "--candidates",
            cands,
            "--k",
            "2",
            "--out",
            tmp_path / "out",
        ],
        lambda e: [cands, e.data, e.d / "rm0"],
        lambda e: tmp_path / "out",  # read before the run writes anything: --out is never created
        pattern,
    )
    check_case(case, hostile_env, capsys)
