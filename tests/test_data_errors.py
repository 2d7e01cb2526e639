"""Preference files that are unreadable, malformed or would change meaning (rewardkit.data, rewardkit.readers):
one ``error:`` line naming file, line and field, or a skipped record counted with its location."""

from __future__ import annotations

import json
import os

import pytest

from tests.hostile import assert_one_error, check_case, out_of, run

# name -> (argv(env), inputs(env), output(env), error regex); env: tests.hostile.build_env
CASES = {
    "truncated gzip": (
        lambda e: ["score", "--rm", e.d / "rm0", "--data", e.d / "trunc.jsonl.gz", "--out", out_of(e)],
        lambda e: [e.d / "trunc.jsonl.gz"],
        out_of,
        r"trunc.jsonl.gz after line \d+: truncated gzip stream",
    ),
    "truncated gzip, skip mode": (
        lambda e: [
            "score",
            "--rm",
            e.d / "rm0",
            "--data",
            e.d / "trunc.jsonl.gz",
            "--out",
            out_of(e),
            "--on-error",
            "skip",
        ],
        lambda e: [e.d / "trunc.jsonl.gz"],
        out_of,
        r"trunc.jsonl.gz after line \d+: truncated gzip stream",
    ),
    "bytes that are not UTF-8": (
        lambda e: ["score", "--rm", e.d / "rm0", "--data", e.d / "latin1.jsonl", "--out", out_of(e)],
        lambda e: [e.d / "latin1.jsonl"],
        out_of,
        r"latin1.jsonl:2: not UTF-8",
    ),
    "not a Parquet file": (
        lambda e: ["score", "--rm", e.d / "rm0", "--data", e.d / "fake.parquet", "--out", out_of(e)],
        lambda e: [e.d / "fake.parquet"],
        out_of,
        r"fake.parquet: not a readable Parquet file",
    ),
    "null prompt": (
        lambda e: ["score", "--rm", e.d / "rm0", "--data", e.d / "null_prompt.jsonl", "--out", out_of(e)],
        lambda e: [e.d / "null_prompt.jsonl"],
        out_of,
        r"null_prompt.jsonl:1: field 'prompt' is null",
    ),
    "missing prompt where records have one": (
        lambda e: ["score", "--rm", e.d / "rm0", "--data", e.d / "missing_prompt.jsonl", "--out", out_of(e)],
        lambda e: [e.d / "missing_prompt.jsonl"],
        out_of,
        r"missing_prompt.jsonl:2: missing field 'prompt' \(the other records have one\)",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_error_line_and_touches_nothing(hostile_env, name, capsys):
    check_case(CASES[name], hostile_env, capsys)


# name -> (argv(n), inputs(n), output(n), error regex); n: tests.hostile.build_named
NAMED_CASES = {
    "lone surrogate in a prompt": (
        lambda n: ["score", "--rm", n.d / "rm", "--data", n.d / "surrogate.jsonl", "--out", n.d / "o.jsonl"],
        lambda n: [n.d / "surrogate.jsonl"],
        lambda n: n.d / "o.jsonl",
        r"surrogate.jsonl:1: field 'prompt': not valid Unicode text \(a lone surrogate",
    ),
    "deeply nested JSON": (
        lambda n: [
            "score",
            "--rm",
            n.d / "rm",
            "--data",
            n.d / "nested.jsonl",
            "--out",
            n.d / "o.jsonl",
            "--on-error",
            "skip",
        ],
        lambda n: [n.d / "nested.jsonl"],
        lambda n: n.d / "o.jsonl",
        r"nested.jsonl: no valid preference pairs \(1 skipped\)",
    ),
}


@pytest.mark.parametrize("name", list(NAMED_CASES))
def test_inputs_named_inside_models_and_honest_weights(hostile_named, name, capsys):
    check_case(NAMED_CASES[name], hostile_named, capsys)


def test_skipped_records_keep_their_index_and_are_listed(hostile_env, tmp_path, capsys):
    """--on-error skip: a bad line is skipped and counted; output rows keep the input record's index."""
    code, out, _ = run(
        [
            "score",
            "--rm",
            hostile_env.d / "rm0",
            "--data",
            hostile_env.d / "latin1.jsonl",
            "--out",
            tmp_path / "s.jsonl",
            "--on-error",
            "skip",
        ],
        capsys,
    )
    rows = [json.loads(x) for x in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert code == 0 and [r["index"] for r in rows] == [0]
    assert "skipped 1 malformed record(s): " in out and "latin1.jsonl:2" in out
    data = tmp_path / "gap.jsonl"
    lines = hostile_env.data.read_text().splitlines()
    data.write_text("\n".join([lines[0], '{"prompt": "x"}', lines[1], "not json", lines[2]]) + "\n")
    run(
        [
            "score",
            "--rm",
            hostile_env.d / "rm0",
            "--data",
            data,
            "--out",
            tmp_path / "g.jsonl",
            "--on-error",
            "skip",
        ],
        capsys,
    )
    assert [json.loads(x)["index"] for x in (tmp_path / "g.jsonl").read_text().splitlines()] == [0, 2, 4]


def test_degenerate_pairs_are_kept_and_counted(tmp_path, caplog):
    from rewardkit import load_preferences

    rows = [
        {"prompt": "q", "chosen": " same", "rejected": " same"},
        {"prompt": "q", "chosen": "  ", "rejected": " b"},
        {"prompt": " ", "chosen": " a", "rejected": " b"},
        {"prompt": [{"role": "robot", "content": "q"}], "chosen": "a", "rejected": "b"},
        {
            "prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}],
            "chosen": "a",
            "rejected": "b",
        },
        {"prompt": "q", "chosen": " same", "rejected": " same"},
    ]
    f = tmp_path / "d.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = load_preferences(f)
    assert len(ds) == 6
    assert ds.issues["chosen == rejected"] == [f"{f}:1", f"{f}:6"]
    assert ds.issues["an empty or whitespace-only response"] == [f"{f}:2"]
    assert ds.issues["an empty or whitespace-only prompt"] == [f"{f}:3"]
    assert ds.issues["unknown role(s) ['robot']"] == [f"{f}:4"]
    assert ds.issues["a prompt ending with an assistant turn"] == [f"{f}:5"]
    assert f"2 pair(s) with chosen == rejected (first: {f}:1)" in caplog.text
    csv = tmp_path / "d.csv"
    csv.write_text("prompt,chosen,rejected\nq, a, b\nq, a, b,extra,more\n")
    assert len(load_preferences(csv)) == 2
    assert "1 row(s) with more cells than the header's columns (extra cells ignored" in caplog.text


def test_utf8_bom_is_accepted(tmp_path):
    from rewardkit import load_preferences

    f = tmp_path / "bom.jsonl"
    f.write_bytes(
        b"\xef\xbb\xbf" + json.dumps({"prompt": "q", "chosen": " a", "rejected": " b"}).encode() + b"\n"
    )
    assert load_preferences(f)[0].prompt == "q"


def test_nested_and_surrogate_records_are_skipped_with_their_line(hostile_named, tmp_path):
    from rewardkit import load_preferences

    good = json.dumps({"prompt": "q", "chosen": " a", "rejected": " b"})
    f = tmp_path / "mixed.jsonl"
    f.write_text(
        good
        + "\n"
        + "[" * 50_000
        + "\n"
        + '{"prompt": "\\udc80", "chosen": "a", "rejected": "b"}\n'
        + good
        + "\n"
    )
    ds = load_preferences(f, on_error="skip")
    assert ds.indices == [0, 3]
    assert [s.location for s in ds.skipped] == [f"{f}:2", f"{f}:3"]


def test_csv_cells_are_text_unless_a_conversation(tmp_path):
    import csv as csvmod

    from rewardkit import load_preferences

    f = tmp_path / "d.csv"
    with open(f, "w", newline="") as fh:
        w = csvmod.writer(fh)
        w.writerow(["prompt", "chosen", "rejected"])
        w.writerow(["q", "[1, 2, 3]", '{"role": "assistant", "content": "x"}'])
        w.writerow([json.dumps([{"role": "user", "content": "hi"}]), "a", "b"])
    ds = load_preferences(f)
    assert ds[0].chosen == "[1, 2, 3]" and ds[0].rejected == '{"role": "assistant", "content": "x"}'
    assert ds[1].prompt == [{"role": "user", "content": "hi"}]


def test_a_fifo_as_data_is_not_called_a_directory(hostile_env, tmp_path, capsys):
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    out = tmp_path / "o.jsonl"
    code, _, err = run(["score", "--rm", hostile_env.d / "rm0", "--data", fifo, "--out", out], capsys)
    assert_one_error(code, err, rf"^error: {fifo}: not a regular file, expected a preference file$")
    assert not out.exists()
