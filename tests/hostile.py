"""Shared pieces of the hostile-input tests (tests/test_*_errors.py): the CLI run, input hashes, leftover
temporaries, the one-table-row check, and the models and files the tables point at."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import torch

from rewardkit import BradleyTerryRM
from rewardkit.cli import main
from rewardkit.synthetic import make_synthetic_preferences


def run(argv, capsys) -> tuple[int, str, str]:
    """``rewardkit ARGV`` in this process: (exit status, stdout, stderr)."""
    code = 0
    try:
        main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def digest(paths) -> dict[str, str]:
    """sha256 of every file under ``paths`` (files or folders)."""
    out = {}
    for p in map(Path, paths):
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else []
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def leftovers(out: Path) -> list[str]:
    """Hidden temporaries of a write to ``out`` left beside it."""
    if not out.parent.is_dir():
        return []
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def assert_one_error(code: int, err: str, pattern: str) -> str:
    """Exit status 2 and exactly one ``error:`` line, last, no traceback, matching ``pattern``."""
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert len(errors) == 1 and "Traceback" not in err and err.rstrip().endswith(errors[0]), err
    assert re.search(pattern, errors[0]), errors[0]
    return errors[0]


def check_case(case, ns, capsys) -> None:
    """One table row ``(argv(ns), inputs(ns), output(ns), error regex)``: one error line, exit status 2,
    every input byte-for-byte unchanged, nothing at the output path or beside it."""
    argv, inputs, output, pattern = case
    out = output(ns)
    if out is not None and out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    before = digest(inputs(ns))
    assert before, "the case must name inputs to protect"
    code, _, err = run(argv(ns), capsys)
    assert_one_error(code, err, pattern)
    assert digest(inputs(ns)) == before
    if out is not None:
        assert not out.exists() and leftovers(out) == [], (out, leftovers(out))


def out_of(e) -> Path:
    return e.d / "o"


def build_env(tiny_lm, d: Path) -> SimpleNamespace:
    """Models and files the hostile-input tables of tests/test_*_errors.py use (built once per session)."""
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


def rewrite_header(file: Path, fn) -> None:
    """Apply ``fn`` to a safetensors file's parsed header and write it back over the same data bytes."""
    import struct

    raw = file.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    fn(header)
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    file.write_bytes(struct.pack("<Q", len(blob)) + blob + raw[8 + n :])


def build_named(d: Path) -> SimpleNamespace:
    """(issue #20) Models whose manifests name other folders, and weights that do not match their architecture."""
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM

    from rewardkit import DPOImplicitRM
    from rewardkit.tiny import build_tiny_model

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
        return lambda f: rewrite_header(f / "model.safetensors", fn)

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
                "length_penalty": 0.5,
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
