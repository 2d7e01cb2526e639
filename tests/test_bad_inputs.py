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

    from rewardkit.checkpoints import base_fingerprint

    copy = tmp_path / "copy"
    shutil.copytree(tiny_lm, copy)
    cfg = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps(cfg, indent=4, sort_keys=True))  # re-saved, same model
    assert base_fingerprint(copy) == base_fingerprint(tiny_lm)


# ============================================================================ inputs named inside models
# (issue #20) A folder a saved model names (a LoRA base, a DPO reference, an ensemble member) is an input
# of every run that loads the model; weights are exactly what the architecture expects.


def _rewrite_header(file: Path, fn) -> None:
    """Apply ``fn`` to a safetensors file's parsed header and write it back over the same data bytes."""
    import struct

    raw = file.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    fn(header)
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    file.write_bytes(struct.pack("<Q", len(blob)) + blob + raw[8 + n :])


@pytest.fixture(scope="module")
def named(tmp_path_factory):
    import shutil

    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM

    from rewardkit import DPOImplicitRM
    from rewardkit.tiny import build_tiny_model

    d = tmp_path_factory.mktemp("named")
    base = build_tiny_model(d / "base", seed=3)  # this module's own base: a failed case cannot hurt others
    ref = build_tiny_model(d / "ref", seed=4)
    data = d / "data.jsonl"
    make_synthetic_preferences(6, seed=2).save_jsonl(data)
    for i in range(2):
        BradleyTerryRM.from_pretrained(base, head_seed=i, lora_r=4).save(d / f"lora{i}")
    BradleyTerryRM.from_pretrained(base, head_seed=7).save(d / "rm")
    BradleyTerryRM.from_pretrained(base, head_seed=8).save(d / "victim")
    DPOImplicitRM.from_pretrained(base, ref, beta=0.1).save(d / "dpo")
    peft = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=2, target_modules="all-linear")
    )
    peft.save_pretrained(d / "adapter")  # an HF adapter folder: its adapter_config.json names the base
    ens = d / "ens"
    ens.mkdir()
    shutil.copytree(d / "rm", ens / "member_0")
    (ens / "rewardkit.json").write_text(
        json.dumps(
            {"kind": "ensemble", "format": 1, "members": ["member_0", "../victim"], "aggregation": "mean"}
        )
    )

    def copy(src: str, name: str, fn) -> Path:
        shutil.copytree(d / src, d / name)
        fn(d / name)
        return d / name

    def drop(key):
        def fn(f):
            sd = load_file(f / "model.safetensors")
            del sd[key]
            save_file(sd, f / "model.safetensors", metadata={"format": "pt"})

        return fn

    def header(fn):
        return lambda f: _rewrite_header(f / "model.safetensors", fn)

    def share_bytes(h):
        h["model.layers.1.input_layernorm.weight"]["data_offsets"] = h[
            "model.layers.0.input_layernorm.weight"
        ]["data_offsets"]

    def manifest(**fields):
        def fn(f):
            m = json.loads((f / "rewardkit.json").read_text())
            m.update(fields)
            (f / "rewardkit.json").write_text(json.dumps(m))

        return fn

    def extra_layer(f):
        cfg = json.loads((f / "config.json").read_text())
        cfg["num_hidden_layers"] += 1
        (f / "config.json").write_text(json.dumps(cfg))

    def trailing(f):
        with open(f / "model.safetensors", "ab") as fh:
            fh.write(b"\0" * 8)

    copy("rm", "no_head", drop("score.weight"))
    copy("rm", "no_layer_tensor", drop("model.layers.1.mlp.up_proj.weight"))
    copy("rm", "extra_layer", extra_layer)
    copy("rm", "i32_head", header(lambda h: h["score.weight"].update(dtype="I32")))
    copy("rm", "shared_bytes", header(share_bytes))
    copy("rm", "negative_dim", header(lambda h: h["score.weight"].update(shape=[-1, 32])))
    copy("rm", "fractional_dim", header(lambda h: h["score.weight"].update(shape=[1, 32.0])))
    copy("rm", "trailing_bytes", trailing)
    copy("rm", "max_length_0", manifest(max_length=0))
    copy("rm", "max_length_neg", manifest(max_length=-5))
    copy("rm", "template_odd", manifest(chat_template="sometimes"))
    copy("dpo", "beta_neg", manifest(beta=-1))
    copy(
        "dpo",
        "beta_nan",
        lambda f: (f / "rewardkit.json").write_text(
            (f / "rewardkit.json").read_text().replace('"beta": 0.1', '"beta": NaN')
        ),
    )
    copy("ens", "ens_numbers", manifest(members=[1, 2]))
    copy("lora0", "only_bin", lambda f: (f / "adapter_model.safetensors").rename(f / "adapter_model.bin"))
    copy("lora0", "fp_null", manifest(base_fingerprint=None))

    def last_value(f):  # the base with only its last stored value changed
        w = f / "model.safetensors"
        b = bytearray(w.read_bytes())
        b[-1] ^= 0x01
        w.write_bytes(bytes(b))

    copy("base", "base_lastval", last_value)
    (d / "link").symlink_to(base, target_is_directory=True)  # a path into the base through a symlink

    def outside_index(f):  # a sharded checkpoint whose index points into another folder
        (f / "model.safetensors").rename(f / "model-00001-of-00001.safetensors")
        keys = json.loads(
            (f / "model-00001-of-00001.safetensors").read_bytes()[8:].split(b"}}", 1)[0] + b"}}"
        )
        (f / "model.safetensors.index.json").write_text(
            json.dumps(
                {"weight_map": {k: "../victim/model.safetensors" for k in keys if k != "__metadata__"}}
            )
        )

    copy("rm", "outside_index", outside_index)
    lp = d / "lp"
    lp.mkdir()
    (lp / "rewardkit.json").write_text(
        json.dumps(
            {
                "kind": "length_penalized",
                "format": 1,
                "model": "../victim",
                "alpha": 0.5,
                "unit": "words",
                "length_reference": {"length": 10},
            }
        )
    )
    lists = d / "lists.jsonl"
    lists.write_text(
        "".join(
            json.dumps({"prompt": "q", "chosen": "a", "rejected": "b", "tags": ["x"]}) + "\n"
            for _ in range(2)
        )
    )
    surrogate = d / "surrogate.jsonl"
    surrogate.write_text('{"prompt": "q \\ud800 x", "chosen": "a", "rejected": "b"}\n')
    nested = d / "nested.jsonl"
    nested.write_text('{"prompt": ' + "[" * 100_000 + "\n")
    return SimpleNamespace(d=d, base=base, ref=ref, data=data)


# name -> (argv(n), inputs(n), output(n), error regex)
NAMED_CASES = {
    "score over a LoRA RM's base weights": (
        lambda n: [
            "score",
            "--rm",
            n.d / "lora0",
            "--data",
            n.data,
            "--out",
            n.base / "model.safetensors",
            "--force",
        ],
        lambda n: [n.base, n.d / "lora0"],
        lambda n: None,
        r"model.safetensors is inside the input .*base",
    ),
    "score into a LoRA RM's base folder": (
        lambda n: ["score", "--rm", n.d / "lora0", "--data", n.data, "--out", n.base / "scores.jsonl"],
        lambda n: [n.base],
        lambda n: n.base / "scores.jsonl",
        r"scores.jsonl is inside the input .*base",
    ),
    "score over a DPO RM's reference": (
        lambda n: ["score", "--rm", n.d / "dpo", "--data", n.data, "--out", n.ref / "config.json", "--force"],
        lambda n: [n.ref, n.d / "dpo"],
        lambda n: None,
        r"config.json is inside the input .*ref",
    ),
    "merge LoRA members over their base": (
        lambda n: ["merge", n.d / "lora0", n.d / "lora1", "-o", n.base, "--force"],
        lambda n: [n.base, n.d / "lora0", n.d / "lora1"],
        lambda n: None,
        r"output .*base is the input .*base",
    ),
    "train dpo over an adapter's base": (
        lambda n: ["train", "dpo", "--model", n.d / "adapter", "--data", n.data, "--out", n.base, "--force"],
        lambda n: [n.base, n.d / "adapter"],
        lambda n: None,
        r"output .*base is the input .*base",
    ),
    "ensemble member outside its folder": (
        lambda n: [
            "score",
            "--rm",
            n.d / "ens",
            "--data",
            n.data,
            "--out",
            n.d / "victim" / "model.safetensors",
            "--force",
        ],
        lambda n: [n.d / "victim", n.d / "ens"],
        lambda n: None,
        r"member '../victim' resolves outside the ensemble folder",
    ),
    "score into a base through a symlink": (
        lambda n: ["score", "--rm", n.d / "lora0", "--data", n.data, "--out", n.d / "link" / "s.jsonl"],
        lambda n: [n.base],
        lambda n: n.base / "s.jsonl",
        r"link/s.jsonl is inside the input .*base",
    ),
    "shard index pointing outside its folder": (
        lambda n: ["merge", n.d / "rm", n.d / "outside_index", "-o", n.d / "m"],
        lambda n: [n.d / "victim", n.d / "outside_index"],
        lambda n: n.d / "m",
        r"shard '../victim/model.safetensors' is not a file name beside the index",
    ),
    "wrapped model outside its folder": (
        lambda n: ["score", "--rm", n.d / "lp", "--data", n.data, "--out", n.d / "victim" / "x.jsonl"],
        lambda n: [n.d / "victim"],
        lambda n: n.d / "victim" / "x.jsonl",
        r"member '../victim' resolves outside the wrapper folder",
    ),
    "missing reward head": (
        lambda n: ["score", "--rm", n.d / "no_head", "--data", n.data, "--out", n.d / "o.jsonl"],
        lambda n: [n.d / "no_head"],
        lambda n: n.d / "o.jsonl",
        r"no_head: 1 tensor\(s\) the architecture needs are not in the weights: score.weight",
    ),
    "missing layer tensor": (
        lambda n: ["score", "--rm", n.d / "no_layer_tensor", "--data", n.data, "--out", n.d / "o.jsonl"],
        lambda n: [n.d / "no_layer_tensor"],
        lambda n: n.d / "o.jsonl",
        r"needs are not in the weights: model.layers.1.mlp.up_proj.weight",
    ),
    "config declares a layer more than the weights": (
        lambda n: ["score", "--rm", n.d / "extra_layer", "--data", n.data, "--out", n.d / "o.jsonl"],
        lambda n: [n.d / "extra_layer"],
        lambda n: n.d / "o.jsonl",
        r"9 tensor\(s\) the architecture needs are not in the weights: model.layers.2",
    ),
    "float head relabelled I32": (
        lambda n: ["score", "--rm", n.d / "i32_head", "--data", n.data, "--out", n.d / "o.jsonl"],
        lambda n: [n.d / "i32_head"],
        lambda n: n.d / "o.jsonl",
        r"tensor 'score.weight' is I32: a model's weights are floating point",
    ),
    "merge from tensors sharing bytes": (
        lambda n: ["merge", n.d / "rm", n.d / "shared_bytes", "-o", n.d / "m"],
        lambda n: [n.d / "rm", n.d / "shared_bytes"],
        lambda n: n.d / "m",
        r"shared_bytes/model.safetensors: tensors .*input_layernorm.* overlap",
    ),
    "score tensors sharing bytes": (
        lambda n: ["score", "--rm", n.d / "shared_bytes", "--data", n.data, "--out", n.d / "o.jsonl"],
        lambda n: [n.d / "shared_bytes"],
        lambda n: n.d / "o.jsonl",
        r"tensors .*input_layernorm.* overlap",
    ),
    "negative dimension": (
        lambda n: ["score", "--rm", n.d / "negative_dim", "--data", n.data, "--out", n.d / "o.jsonl"],
        lambda n: [n.d / "negative_dim"],
        lambda n: n.d / "o.jsonl",
        r"entry for tensor 'score.weight' \(shape and data_offsets must be non-negative integers\)",
    ),
    "fractional dimension": (
        lambda n: ["merge", n.d / "rm", n.d / "fractional_dim", "-o", n.d / "m"],
        lambda n: [n.d / "fractional_dim"],
        lambda n: n.d / "m",
        r"entry for tensor 'score.weight' \(shape and data_offsets must be non-negative integers\)",
    ),
    "trailing bytes": (
        lambda n: ["score", "--rm", n.d / "trailing_bytes", "--data", n.data, "--out", n.d / "o.jsonl"],
        lambda n: [n.d / "trailing_bytes"],
        lambda n: n.d / "o.jsonl",
        r"8 bytes after the last tensor \(trailing data\)",
    ),
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
    "LoRA adapter only as a pickle": (
        lambda n: ["score", "--rm", n.d / "only_bin", "--data", n.data, "--out", n.d / "o.jsonl"],
        lambda n: [n.d / "only_bin"],
        lambda n: n.d / "o.jsonl",
        r"without adapter_model.safetensors \(only adapter_model.bin: rewardkit never unpickles",
    ),
    "LoRA manifest without a base fingerprint": (
        lambda n: ["score", "--rm", n.d / "fp_null", "--data", n.data, "--out", n.d / "o.jsonl"],
        lambda n: [n.d / "fp_null", n.base],
        lambda n: n.d / "o.jsonl",
        r"records no base_fingerprint, so .*base cannot be checked",
    ),
    "base differing only in its last value": (
        lambda n: [
            "score",
            "--rm",
            n.d / "lora0",
            "--base-model",
            n.d / "base_lastval",
            "--data",
            n.data,
            "--out",
            n.d / "o.jsonl",
        ],
        lambda n: [n.d / "lora0", n.d / "base_lastval"],
        lambda n: n.d / "o.jsonl",
        r"trained on another base model than .*base_lastval",
    ),
    "eval reports at one path twice": (
        lambda n: [
            "eval",
            "--rm",
            n.d / "rm",
            "--data",
            n.data,
            "--json",
            n.d / "a.json",
            "--markdown",
            n.d / "x" / ".." / "a.json",
        ],
        lambda n: [n.data],
        lambda n: n.d / "a.json",
        r"--json, --markdown and --plot must be different files",
    ),
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
def test_inputs_named_inside_models_and_honest_weights(named, name, capsys):
    argv, inputs, output, pattern = NAMED_CASES[name]
    out = output(named)
    before = _digest(inputs(named))
    assert before, "the case must name inputs to protect"
    code, _, err = _run(argv(named), capsys)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert len(errors) == 1 and "Traceback" not in err and err.rstrip().endswith(errors[0]), err
    assert re.search(pattern, errors[0]), errors[0]
    assert _digest(inputs(named)) == before
    if out is not None:
        assert not out.exists() and _leftovers(out) == [], (out, _leftovers(out))


def test_nested_and_surrogate_records_are_skipped_with_their_line(named, tmp_path):
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


def test_a_string_where_a_list_is_expected_is_refused(named):
    from rewardkit import load_reward_model

    rm = load_reward_model(named.d / "rm")
    with pytest.raises(TypeError, match="prompts must be a list"):
        rm.score("qq", " a")
    with pytest.raises(TypeError, match="responses must be a list"):
        rm.score(["q", "q"], " a")
    assert rm.score(["q"], [" a"]).shape == (1,)


def test_huge_and_tiny_weights_mean_what_1_1_means(named, tmp_path, capsys):
    import numpy as np
    from safetensors.numpy import load_file

    from rewardkit import EnsembleRM, load_reward_model

    ds = make_synthetic_preferences(6, seed=5)
    members = [load_reward_model(named.d / "rm"), load_reward_model(named.d / "victim")]
    plain = EnsembleRM(members, aggregation="weighted", weights=[1, 1]).score_pairs(ds).margins
    for w in ([1e308, 1e308], [1e-50, 1e-50], [5e-324, 5e-324]):
        got = EnsembleRM(members, aggregation="weighted", weights=w).score_pairs(ds).margins
        np.testing.assert_array_equal(got, plain)
    assert np.abs(plain).max() > 0
    merged = {}
    for name, w in (("one", "1,1"), ("huge", "1e308,1e308"), ("tiny", "1e-50,1e-50")):
        code, _, err = _run(
            ["merge", named.d / "lora0", named.d / "lora1", "-o", tmp_path / name, "--weights", w], capsys
        )
        assert code == 0, err
        merged[name] = load_file(tmp_path / name / "model.safetensors")
    for name in ("huge", "tiny"):
        assert merged[name].keys() == merged["one"].keys()
        for k in merged["one"]:
            np.testing.assert_array_equal(merged[name][k], merged["one"][k], err_msg=f"{name}: {k}")
    for name, w in (("full_one", "1,1"), ("full_huge", "1e308,1e308")):
        code, _, err = _run(
            ["merge", named.d / "rm", named.d / "victim", "-o", tmp_path / name, "--weights", w], capsys
        )
        assert code == 0, err
    a, b = (load_file(tmp_path / n / "model.safetensors") for n in ("full_one", "full_huge"))
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_a_loaded_model_refuses_to_save_over_what_it_depends_on(named, tmp_path):
    from rewardkit import ModelError, RewardkitError, load_reward_model

    lora = load_reward_model(named.d / "lora0")
    with pytest.raises(RewardkitError, match="is the input"):
        lora.save(named.base, force=True)
    dpo = load_reward_model(named.d / "dpo")
    with pytest.raises(RewardkitError, match="inside the input"):
        dpo.save(named.ref / "sub", force=True)
    assert isinstance(ModelError("x"), RewardkitError)


def test_a_new_head_on_a_base_may_drop_its_pretraining_heads_but_not_backbone_tensors(tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    from rewardkit import ModelError
    from rewardkit.tiny import build_tiny_model

    base = build_tiny_model(tmp_path / "base", seed=5)
    sd = load_file(base / "model.safetensors")
    sd["cls.predictions.bias"] = torch.zeros(3)  # e.g. an MLM head: not part of a reward model
    save_file(sd, base / "model.safetensors", metadata={"format": "pt"})
    rm = BradleyTerryRM.from_pretrained(base)
    assert rm.score(["q"], [" a"]).shape == (1,)
    sd["model.layers.7.mlp.up_proj.weight"] = torch.zeros(3)  # a layer config.json does not have
    save_file(sd, base / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelError, match=r"not in the architecture: model.layers.7.mlp.up_proj.weight"):
        BradleyTerryRM.from_pretrained(base)


def test_an_hf_adapters_relative_base_is_read_from_the_working_directory(
    named, tmp_path, monkeypatch, capsys
):
    """peft records base_model_name_or_path as given (often relative to where training ran): it is the
    base the loader reads, so it is the input protected, and a --base-model override is too."""
    import shutil

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    monkeypatch.chdir(tmp_path)
    shutil.copytree(named.base, tmp_path / "base")
    peft = get_peft_model(
        AutoModelForCausalLM.from_pretrained("base"), LoraConfig(r=2, target_modules="all-linear")
    )
    peft.save_pretrained(tmp_path / "adapter")
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained("base").save_pretrained(tmp_path / "adapter")
    assert (
        json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"]
        == "base"
    )
    before = _digest([tmp_path / "base"])
    argv = ["score", "--dpo-policy", "adapter", "--beta", "0.1", "--data", named.data, "--out"]
    code, _, err = _run([*argv, "base/s.jsonl"], capsys)
    assert code == 2 and re.search(r"base/s.jsonl is inside the input .*base", err), err
    code, _, err = _run([*argv, "s.jsonl"], capsys)  # the same run, its output elsewhere: fine
    assert code == 0 and (tmp_path / "s.jsonl").is_file(), err
    code, _, err = _run([*argv, "base/t.jsonl", "--base-model", "base"], capsys)
    assert code == 2 and "inside the input" in err, err
    assert _digest([tmp_path / "base"]) == before


def test_legacy_mask_buffers_are_not_mistaken_for_weights(tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    from rewardkit import ModelError
    from rewardkit.checkpoints import check_weight_file

    f = tmp_path / "model.safetensors"
    save_file(
        {"h.0.attn.bias": np.ones((1, 1, 4, 4), dtype=bool), "h.0.mlp.weight": np.ones(2, np.float32)}, f
    )
    assert set(check_weight_file(f)) >= {"h.0.attn.bias", "h.0.mlp.weight"}
    save_file({"h.0.mlp.bias": np.ones(2, np.int32)}, f)
    with pytest.raises(ModelError, match="tensor 'h.0.mlp.bias' is I32"):
        check_weight_file(f)
