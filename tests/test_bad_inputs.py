"""Careless and hostile input through the real CLI entry point (``rewardkit.cli.main``).

Every case asserts: the exit code; exactly one ``error:`` line (no traceback) naming the file, line,
field or tensor at fault; every input byte-for-byte unchanged (sha256); and nothing at the output path
or beside it (no hidden temporaries).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from rewardkit import BradleyTerryRM
from rewardkit.cli import main
from rewardkit.synthetic import make_synthetic_preferences


def _run(argv, capsys):
    code = 0
    try:
        main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def _digest(paths) -> dict[str, str]:
    """sha256 of every file under ``paths`` (files or folders)."""
    out = {}
    for p in map(Path, paths):
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else []
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def _leftovers(out: Path) -> list[str]:
    if not out.parent.is_dir():
        return []
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


@pytest.fixture(scope="module")
def env(tiny_lm, tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    data = d / "data.jsonl"
    make_synthetic_preferences(12, seed=1).save_jsonl(data)
    for i in range(2):
        BradleyTerryRM.from_pretrained(tiny_lm, head_seed=i).save(d / f"rm{i}")
    nan = BradleyTerryRM.from_pretrained(tiny_lm, head_seed=5)
    with torch.no_grad():
        nan.model.score.weight.fill_(float("nan"))
    nan.model.save_pretrained(d / "nan_rm")  # written past the library's own check: a corrupted model
    nan.tokenizer.save_pretrained(d / "nan_rm")
    (d / "nan_rm" / "rewardkit.json").write_text(json.dumps({"kind": "explicit", "format": 1}))
    for i in range(2):
        rm = BradleyTerryRM.from_pretrained(tiny_lm, head_seed=i, lora_r=4)
        rm.save(d / f"lora{i}")
    from rewardkit.tiny import build_tiny_model

    other_base = build_tiny_model(d / "other_base", seed=9)  # same shapes, other weights
    parent = d / "parent"
    parent.mkdir()
    for i in range(2):
        BradleyTerryRM.from_pretrained(tiny_lm, head_seed=i).save(parent / f"m{i}")
    blob = data.read_bytes()
    (d / "trunc.jsonl.gz").write_bytes(gzip.compress(blob)[:-20])
    (d / "latin1.jsonl").write_bytes(
        blob.splitlines(keepends=True)[0] + b'{"prompt": "caf\xe9", "chosen": " a", "rejected": " b"}\n'
    )
    (d / "fake.parquet").write_bytes(b"this is not parquet")
    (d / "null_prompt.jsonl").write_text(
        json.dumps({"prompt": None, "chosen": " Here is a cat", "rejected": " Here is a dog"}) + "\n"
    )
    (d / "missing_prompt.jsonl").write_text(
        json.dumps({"prompt": "q", "chosen": " a", "rejected": " b"})
        + "\n"
        + json.dumps({"chosen": " a b", "rejected": " a c"})
        + "\n"
    )
    (d / "afile").write_text("x")
    (d / "outdir").mkdir()
    # corrupt copies of rm0
    import shutil

    def corrupt(name, fn):
        shutil.copytree(d / "rm0", d / name)
        fn(d / name)
        return d / name

    def truncate(f):
        w = f / "model.safetensors"
        w.write_bytes(w.read_bytes()[:-1000])

    def flip(f):
        w = f / "model.safetensors"
        b = bytearray(w.read_bytes())
        b[10:20] = b"\xff" * 10
        w.write_bytes(bytes(b))

    def absurd(f):
        w = f / "model.safetensors"
        b = bytearray(w.read_bytes())
        b[:8] = (2**62).to_bytes(8, "little")
        w.write_bytes(bytes(b))

    corrupt("truncated", truncate)
    corrupt("flipped", flip)
    corrupt("absurd", absurd)
    corrupt("badconfig", lambda f: (f / "config.json").write_text("{not json"))
    corrupt(
        "strformat",
        lambda f: (f / "rewardkit.json").write_text(json.dumps({"kind": "explicit", "format": "1"})),
    )

    def no_tok(f):
        for t in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
            (f / t).unlink(missing_ok=True)

    corrupt("notok", no_tok)
    return SimpleNamespace(d=d, data=data, lm=tiny_lm, other_base=other_base, parent=parent)


def _o(e):
    return e.d / "o"


# name -> (argv(env) , inputs(env), output(env), error regex)
CASES = {
    # ---- lost work and destroyed inputs
    "merge output is an input": (
        lambda e: ["merge", e.d / "rm0", e.d / "rm1", "-o", e.d / "rm0", "--force"],
        lambda e: [e.d / "rm0", e.d / "rm1"],
        lambda e: None,
        r"output .*rm0 is the input .*rm0",
    ),
    "merge output inside an input": (
        lambda e: ["merge", e.d / "rm0", e.d / "rm1", "-o", e.d / "rm0" / "sub"],
        lambda e: [e.d / "rm0", e.d / "rm1"],
        lambda e: e.d / "rm0" / "sub",
        r"rm0/sub is inside the input .*rm0",
    ),
    "merge output holds the inputs": (
        lambda e: ["merge", e.parent / "m0", e.parent / "m1", "-o", e.parent, "--force"],
        lambda e: [e.parent],
        lambda e: None,
        r"parent contains the input .*m0",
    ),
    "ensemble output is an input": (
        lambda e: ["ensemble", e.d / "rm0", e.d / "rm1", "-o", e.d / "rm1", "--force"],
        lambda e: [e.d / "rm0", e.d / "rm1"],
        lambda e: None,
        r"rm1 is the input .*rm1",
    ),
    "score output is the data": (
        lambda e: ["score", "--rm", e.d / "rm0", "--data", e.data, "--out", e.data, "--force"],
        lambda e: [e.data, e.d / "rm0"],
        lambda e: None,
        r"data.jsonl is the input .*data.jsonl",
    ),
    "eval report is the data": (
        lambda e: ["eval", "--rm", e.d / "rm0", "--data", e.data, "--json", e.data, "--force"],
        lambda e: [e.data, e.d / "rm0"],
        lambda e: None,
        r"data.jsonl is the input",
    ),
    "train output inside the base model": (
        lambda e: ["train", "explicit", "--model", e.lm, "--data", e.data, "--out", e.lm / "rm"],
        lambda e: [e.lm, e.data],
        lambda e: e.lm / "rm",
        r"/rm is inside the input",
    ),
    # ---- NaN and infinity
    "merge weight nan": (
        lambda e: ["merge", e.d / "rm0", e.d / "rm1", "-o", _o(e), "--weights", "nan,1"],
        lambda e: [e.d / "rm0"],
        _o,
        r"--weights.*'nan' is not a finite non-negative number",
    ),
    "merge member with a NaN head": (
        lambda e: ["merge", e.d / "rm0", e.d / "nan_rm", "-o", _o(e)],
        lambda e: [e.d / "rm0", e.d / "nan_rm"],
        _o,
        r"merged tensor 'score.weight': 32 of 32 values are NaN or infinite",
    ),
    "score a NaN model": (
        lambda e: ["score", "--rm", e.d / "nan_rm", "--data", e.data, "--out", _o(e)],
        lambda e: [e.data, e.d / "nan_rm"],
        _o,
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
            _o(e),
        ],
        lambda e: [e.data],
        _o,
        r"--beta.*'nan' is not a finite number",
    ),
    "beta inf": (
        lambda e: ["train", "dpo", "--model", e.lm, "--data", e.data, "--out", _o(e), "--beta", "inf"],
        lambda e: [e.data, e.lm],
        _o,
        r"--beta.*'inf' is not a finite number",
    ),
    "lr inf": (
        lambda e: ["train", "explicit", "--model", e.lm, "--data", e.data, "--out", _o(e), "--lr", "inf"],
        lambda e: [e.data, e.lm],
        _o,
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
            _o(e),
            "--lr",
            "1e30",
            "--batch-size",
            "2",
        ],
        lambda e: [e.data, e.lm],
        _o,
        r"training loss is (nan|inf) at step \d+ .*nothing saved",
    ),
    "ensemble weight nan": (
        lambda e: [
            "ensemble",
            e.d / "rm0",
            e.d / "rm1",
            "-o",
            _o(e),
            "--aggregation",
            "weighted",
            "--weights",
            "nan,1",
        ],
        lambda e: [e.d / "rm0"],
        _o,
        r"--weights.*'nan' is not a finite",
    ),
    "z-score fitted on a NaN member": (
        lambda e: [
            "ensemble",
            e.d / "rm0",
            e.d / "nan_rm",
            "-o",
            _o(e),
            "--normalize",
            "zscore",
            "--calibration",
            e.data,
        ],
        lambda e: [e.d / "rm0", e.d / "nan_rm", e.data],
        _o,
        r"ensemble member #1: reward model .*nan_rm: \d+ of \d+ rewards are NaN",
    ),
    # ---- LoRA on the wrong base
    "LoRA RM on another base": (
        lambda e: [
            "score",
            "--rm",
            e.d / "lora0",
            "--base-model",
            e.other_base,
            "--data",
            e.data,
            "--out",
            _o(e),
        ],
        lambda e: [e.d / "lora0", e.other_base, e.data],
        _o,
        r"lora0: LoRA model was trained on another base model than .*other_base",
    ),
    "LoRA merge on another base": (
        lambda e: ["merge", e.d / "lora0", e.d / "lora1", "--base-model", e.other_base, "-o", _o(e)],
        lambda e: [e.d / "lora0", e.d / "lora1", e.other_base],
        _o,
        r"lora0: LoRA model was trained on another base model",
    ),
    # ---- unreadable input
    "truncated gzip": (
        lambda e: ["score", "--rm", e.d / "rm0", "--data", e.d / "trunc.jsonl.gz", "--out", _o(e)],
        lambda e: [e.d / "trunc.jsonl.gz"],
        _o,
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
            _o(e),
            "--on-error",
            "skip",
        ],
        lambda e: [e.d / "trunc.jsonl.gz"],
        _o,
        r"trunc.jsonl.gz after line \d+: truncated gzip stream",
    ),
    "bytes that are not UTF-8": (
        lambda e: ["score", "--rm", e.d / "rm0", "--data", e.d / "latin1.jsonl", "--out", _o(e)],
        lambda e: [e.d / "latin1.jsonl"],
        _o,
        r"latin1.jsonl:2: not UTF-8",
    ),
    "not a Parquet file": (
        lambda e: ["score", "--rm", e.d / "rm0", "--data", e.d / "fake.parquet", "--out", _o(e)],
        lambda e: [e.d / "fake.parquet"],
        _o,
        r"fake.parquet: not a readable Parquet file",
    ),
    "truncated safetensors (score)": (
        lambda e: ["score", "--rm", e.d / "truncated", "--data", e.data, "--out", _o(e)],
        lambda e: [e.d / "truncated"],
        _o,
        r"truncated/model.safetensors: truncated: tensor",
    ),
    "flipped safetensors header (score)": (
        lambda e: ["score", "--rm", e.d / "flipped", "--data", e.data, "--out", _o(e)],
        lambda e: [e.d / "flipped"],
        _o,
        r"flipped/model.safetensors: corrupt safetensors header",
    ),
    "absurd safetensors header length (merge)": (
        lambda e: ["merge", e.d / "rm0", e.d / "absurd", "-o", _o(e)],
        lambda e: [e.d / "absurd"],
        _o,
        r"absurd/model.safetensors: corrupt safetensors header \(length",
    ),
    "truncated safetensors (merge)": (
        lambda e: ["merge", e.d / "rm0", e.d / "truncated", "-o", _o(e)],
        lambda e: [e.d / "truncated"],
        _o,
        r"truncated/model.safetensors: truncated",
    ),
    "bad config.json": (
        lambda e: ["score", "--rm", e.d / "badconfig", "--data", e.data, "--out", _o(e)],
        lambda e: [e.d / "badconfig"],
        _o,
        r"badconfig/config.json: invalid JSON",
    ),
    "manifest format as a string": (
        lambda e: ["score", "--rm", e.d / "strformat", "--data", e.data, "--out", _o(e)],
        lambda e: [e.d / "strformat"],
        _o,
        r"strformat/rewardkit.json: field 'format' must be an integer",
    ),
    "no tokenizer files": (
        lambda e: ["score", "--rm", e.d / "notok", "--data", e.data, "--out", _o(e)],
        lambda e: [e.d / "notok"],
        _o,
        r"notok: no tokenizer files",
    ),
    "model folder that does not exist": (
        lambda e: ["train", "explicit", "--model", e.d / "nope", "--data", e.data, "--out", _o(e)],
        lambda e: [e.data],
        _o,
        r"nope: model folder not found",
    ),
    # ---- arguments
    "DPO beta 0": (
        lambda e: ["train", "dpo", "--model", e.lm, "--data", e.data, "--out", _o(e), "--beta", "0"],
        lambda e: [e.data],
        _o,
        r"--beta.*'0' must be > 0",
    ),
    "weights that are not numbers": (
        lambda e: ["merge", e.d / "rm0", e.d / "rm1", "-o", _o(e), "--weights", "a,b"],
        lambda e: [e.d / "rm0"],
        _o,
        r"--weights.*'a' is not a number",
    ),
    "shard size lots": (
        lambda e: ["merge", e.d / "rm0", e.d / "rm1", "-o", _o(e), "--shard-size", "lots"],
        lambda e: [e.d / "rm0"],
        _o,
        r"--shard-size.*'lots' is not a size",
    ),
    "shard size 0": (
        lambda e: ["merge", e.d / "rm0", e.d / "rm1", "-o", _o(e), "--shard-size", "0"],
        lambda e: [e.d / "rm0"],
        _o,
        r"--shard-size.*must be positive",
    ),
    "shard size -5MB": (
        lambda e: ["merge", e.d / "rm0", e.d / "rm1", "-o", _o(e), "--shard-size", "-5MB"],
        lambda e: [e.d / "rm0"],
        _o,
        r"--shard-size.*must be positive",
    ),
    "ensemble of one": (
        lambda e: ["ensemble", e.d / "rm0", "-o", _o(e)],
        lambda e: [e.d / "rm0"],
        _o,
        r"an ensemble needs at least 2 members",
    ),
    "weighted without weights": (
        lambda e: ["ensemble", e.d / "rm0", e.d / "rm1", "-o", _o(e), "--aggregation", "weighted"],
        lambda e: [e.d / "rm0"],
        _o,
        r"--aggregation weighted needs --weights",
    ),
    "weighted with the wrong count": (
        lambda e: [
            "ensemble",
            e.d / "rm0",
            e.d / "rm1",
            "-o",
            _o(e),
            "--aggregation",
            "weighted",
            "--weights",
            "1,2,3",
        ],
        lambda e: [e.d / "rm0"],
        _o,
        r"weights must be 2 finite non-negative numbers",
    ),
    "n-boot 0": (
        lambda e: ["eval", "--rm", e.d / "rm0", "--data", e.data, "--n-boot", "0", "--json", _o(e)],
        lambda e: [e.data],
        _o,
        r"--n-boot.*0 is not in the range x>=1",
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
            _o(e),
        ],
        lambda e: [e.data],
        _o,
        r"two reward models named",
    ),
    "output under a file": (
        lambda e: ["score", "--rm", e.d / "rm0", "--data", e.data, "--out", e.d / "afile" / "s.jsonl"],
        lambda e: [e.d / "afile"],
        lambda e: e.d / "afile" / "s.jsonl",
        r"afile is a file, not a folder",
    ),
    "output is a folder": (
        lambda e: ["score", "--rm", e.d / "rm0", "--data", e.data, "--out", e.d / "outdir", "--force"],
        lambda e: [e.data],
        lambda e: None,
        r"outdir: is a folder, expected a file path",
    ),
    "batch size 0": (
        lambda e: ["score", "--rm", e.d / "rm0", "--data", e.data, "--out", _o(e), "--batch-size", "0"],
        lambda e: [e.data],
        _o,
        r"--batch-size.*0 is not in the range x>=1",
    ),
    "batch size -3": (
        lambda e: ["score", "--rm", e.d / "rm0", "--data", e.data, "--out", _o(e), "--batch-size", "-3"],
        lambda e: [e.data],
        _o,
        r"--batch-size.*-3 is not in the range x>=1",
    ),
    "max tokens 0": (
        lambda e: ["score", "--rm", e.d / "rm0", "--data", e.data, "--out", _o(e), "--max-tokens", "0"],
        lambda e: [e.data],
        _o,
        r"--max-tokens.*0 is not in the range x>=1",
    ),
    "max tokens -1": (
        lambda e: ["score", "--rm", e.d / "rm0", "--data", e.data, "--out", _o(e), "--max-tokens", "-1"],
        lambda e: [e.data],
        _o,
        r"--max-tokens.*-1 is not in the range x>=1",
    ),
    "lam -5": (
        lambda e: ["ensemble", e.d / "rm0", e.d / "rm1", "-o", _o(e), "--lam", "-5"],
        lambda e: [e.d / "rm0"],
        _o,
        r"--lam.*'-5' must be >= 0",
    ),
    "merge the same model twice": (
        lambda e: ["merge", e.d / "rm0", e.d / "rm0", "-o", _o(e)],
        lambda e: [e.d / "rm0"],
        _o,
        r"merge source .*rm0 is given twice",
    ),
    "ensemble the same model twice": (
        lambda e: ["ensemble", e.d / "rm1", e.d / "rm1", "-o", _o(e)],
        lambda e: [e.d / "rm1"],
        _o,
        r"ensemble member .*rm1 is given twice",
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
            _o(e),
            "--elastic-reset-every",
            "2",
            "--ema-decay",
            "1",
        ],
        lambda e: [e.data],
        _o,
        r"--ema-decay.*'1' must be < 1",
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
            _o(e),
        ],
        lambda e: [e.data],
        _o,
        r"--ood lists every value of .chosen_generator.: no in-distribution pairs are left",
    ),
    # ---- data that would change meaning
    "null prompt": (
        lambda e: ["score", "--rm", e.d / "rm0", "--data", e.d / "null_prompt.jsonl", "--out", _o(e)],
        lambda e: [e.d / "null_prompt.jsonl"],
        _o,
        r"null_prompt.jsonl:1: field 'prompt' is null",
    ),
    "missing prompt where records have one": (
        lambda e: ["score", "--rm", e.d / "rm0", "--data", e.d / "missing_prompt.jsonl", "--out", _o(e)],
        lambda e: [e.d / "missing_prompt.jsonl"],
        _o,
        r"missing_prompt.jsonl:2: missing field 'prompt' \(the other records have one\)",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_error_line_and_touches_nothing(env, name, capsys):
    argv, inputs, output, pattern = CASES[name]
    out = output(env)
    if out is not None and out.exists():
        import shutil

        shutil.rmtree(out) if out.is_dir() else out.unlink()
    before = _digest(inputs(env))
    assert before, "the case must name inputs to protect"
    code, _, err = _run(argv(env), capsys)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert len(errors) == 1 and "Traceback" not in err and err.rstrip().endswith(errors[0]), err
    assert re.search(pattern, errors[0]), errors[0]
    assert _digest(inputs(env)) == before
    if out is not None:
        assert not out.exists() and _leftovers(out) == [], (out, _leftovers(out))


def test_skipped_records_keep_their_index_and_are_listed(env, tmp_path, capsys):
    """--on-error skip: a bad line is skipped and counted; output rows keep the input record's index."""
    code, out, _ = _run(
        [
            "score",
            "--rm",
            env.d / "rm0",
            "--data",
            env.d / "latin1.jsonl",
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
    lines = env.data.read_text().splitlines()
    data.write_text("\n".join([lines[0], '{"prompt": "x"}', lines[1], "not json", lines[2]]) + "\n")
    _run(
        ["score", "--rm", env.d / "rm0", "--data", data, "--out", tmp_path / "g.jsonl", "--on-error", "skip"],
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


def test_sequences_longer_than_the_context_are_truncated_with_a_warning(tiny_lm, caplog):
    rm = BradleyTerryRM.from_pretrained(tiny_lm, max_length=10_000)  # context: 512 positions
    long = " good" * 600
    assert rm.formatter.encode("q", long).truncated and len(rm.formatter.encode("q", long)) == 512
    rm.score(["q"], [long])
    assert "1 of 1 sequences were longer than the model's context of 512 tokens" in caplog.text


def test_interrupt_exits_130(env, monkeypatch, capsys):
    import rewardkit.data

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(rewardkit.data, "load_preferences", interrupted)
    code, _, err = _run(
        ["score", "--rm", env.d / "rm0", "--data", env.data, "--out", env.d / "s.jsonl"], capsys
    )
    assert code == 130 and err.strip() == "error: interrupted"


def test_outputs_follow_the_umask(env, tmp_path, capsys):
    old = os.umask(0o027)
    try:
        import rewardkit.io

        rewardkit.io._UMASK = None
        _run(["merge", env.d / "rm0", env.d / "rm1", "-o", tmp_path / "m"], capsys)
        _run(["score", "--rm", env.d / "rm0", "--data", env.data, "--out", tmp_path / "s.jsonl"], capsys)
    finally:
        os.umask(old)
        rewardkit.io._UMASK = None
    assert (tmp_path / "m").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "m" / "model.safetensors").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "s.jsonl").stat().st_mode & 0o777 == 0o640


def test_merge_copies_only_model_files_and_force_onto_a_file_leaves_nothing(env, tmp_path, capsys):
    import shutil

    src = tmp_path / "src"
    shutil.copytree(env.d / "rm0", src)
    (src / "training_args.bin").write_bytes(b"pickle")
    (src / "notes.txt").write_text("stray")
    (src / "pytorch_model.bin").write_bytes(b"stale")
    target = tmp_path / "target"
    target.write_text("a file in the way")
    code, _, _ = _run(["merge", src, env.d / "rm1", "-o", target, "--force"], capsys)
    assert code == 0 and target.is_dir()
    names = {p.name for p in target.iterdir()}
    assert not names & {"training_args.bin", "notes.txt", "pytorch_model.bin"}
    copied = json.loads((target / "merge.json").read_text())["copied_files"]
    assert "config.json" in copied and "tokenizer.json" in copied and "notes.txt" not in copied
    assert _leftovers(target) == []


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from rewardkit.io import atomic_dir
    with atomic_dir(sys.argv[1]) as tmp:
        (Path(tmp) / "part").write_bytes(b"x" * 1000)
        print("writing", flush=True)
        time.sleep(60)
    """
)


def test_kill_9_during_a_write_leaves_temporaries_that_the_next_write_cleans(tmp_path):
    target = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(target)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stale = _leftovers(target)
    assert not target.exists() and len(stale) == 1 and stale[0].startswith(f".out.tmp-{proc.pid}-")
    from rewardkit.io import atomic_dir

    with atomic_dir(target) as tmp:
        (tmp / "done").write_text("ok")
    assert (target / "done").is_file() and _leftovers(target) == []
    time.sleep(0)  # (the clean-up needs no waiting: the killed process is gone)


def test_base_fingerprint_follows_the_weights_not_the_config_text(tiny_lm, tmp_path):
    import json
    import shutil

    from rewardkit.models.common import base_fingerprint

    copy = tmp_path / "copy"
    shutil.copytree(tiny_lm, copy)
    cfg = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps(cfg, indent=4, sort_keys=True))  # re-saved, same model
    assert base_fingerprint(copy) == base_fingerprint(tiny_lm)
