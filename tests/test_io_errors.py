"""Outputs through the real CLI: an input (also one a saved model names: a LoRA base, a DPO reference, an
ensemble member) is never written over or into; writes are atomic and follow the umask; an interrupt exits 130
(rewardkit.io). Each table row asserts exit status 2, one ``error:`` line, unchanged input hashes and nothing
left at the output path or beside it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.hostile import assert_one_error, check_case, digest, leftovers, run

# name -> (argv(env), inputs(env), output(env), error regex); env: tests.hostile.build_env
CASES = {
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
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_error_line_and_touches_nothing(hostile_env, name, capsys):
    check_case(CASES[name], hostile_env, capsys)


# name -> (argv(n), inputs(n), output(n), error regex); n: tests.hostile.build_named
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
    "wrapped model outside its folder": (
        lambda n: ["score", "--rm", n.d / "lp", "--data", n.data, "--out", n.d / "victim" / "x.jsonl"],
        lambda n: [n.d / "victim"],
        lambda n: n.d / "victim" / "x.jsonl",
        r"member '../victim' resolves outside the wrapper folder",
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
}


@pytest.mark.parametrize("name", list(NAMED_CASES))
def test_inputs_named_inside_models_and_honest_weights(hostile_named, name, capsys):
    check_case(NAMED_CASES[name], hostile_named, capsys)


def test_interrupt_exits_130(hostile_env, monkeypatch, capsys):
    import rewardkit.data

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(rewardkit.data, "load_preferences", interrupted)
    code, _, err = run(
        [
            "score",
            "--rm",
            hostile_env.d / "rm0",
            "--data",
            hostile_env.data,
            "--out",
            hostile_env.d / "s.jsonl",
        ],
        capsys,
    )
    assert code == 130 and err.strip() == "error: interrupted"


def test_outputs_follow_the_umask(hostile_env, tmp_path, capsys):
    old = os.umask(0o027)
    try:
        import rewardkit.io

        rewardkit.io._UMASK = None
        run(["merge", hostile_env.d / "rm0", hostile_env.d / "rm1", "-o", tmp_path / "m"], capsys)
        run(
            [
                "score",
                "--rm",
                hostile_env.d / "rm0",
                "--data",
                hostile_env.data,
                "--out",
                tmp_path / "s.jsonl",
            ],
            capsys,
        )
    finally:
        os.umask(old)
        rewardkit.io._UMASK = None
    assert (tmp_path / "m").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "m" / "model.safetensors").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "s.jsonl").stat().st_mode & 0o777 == 0o640


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
    stale = leftovers(target)
    assert not target.exists() and len(stale) == 1 and stale[0].startswith(f".out.tmp-{proc.pid}-")
    from rewardkit.io import atomic_dir

    with atomic_dir(target) as tmp:
        (tmp / "done").write_text("ok")
    assert (target / "done").is_file() and leftovers(target) == []
    time.sleep(0)  # (the clean-up needs no waiting: the killed process is gone)


def test_a_loaded_model_refuses_to_save_over_what_it_depends_on(hostile_named, tmp_path):
    from rewardkit import ModelError, RewardkitError, load_reward_model

    lora = load_reward_model(hostile_named.d / "lora0")
    with pytest.raises(RewardkitError, match="is the input"):
        lora.save(hostile_named.base, force=True)
    dpo = load_reward_model(hostile_named.d / "dpo")
    with pytest.raises(RewardkitError, match="inside the input"):
        dpo.save(hostile_named.ref / "sub", force=True)
    assert isinstance(ModelError("x"), RewardkitError)


def test_an_hf_adapters_relative_base_is_read_from_the_working_directory(
    hostile_named, tmp_path, monkeypatch, capsys
):
    """peft records base_model_name_or_path as given (often relative to where training ran): it is the
    base the loader reads, so it is the input protected, and a --base-model override is too."""
    import shutil

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    monkeypatch.chdir(tmp_path)
    shutil.copytree(hostile_named.base, tmp_path / "base")
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
    before = digest([tmp_path / "base"])
    argv = ["score", "--dpo-policy", "adapter", "--beta", "0.1", "--data", hostile_named.data, "--out"]
    code, _, err = run([*argv, "base/s.jsonl"], capsys)
    assert code == 2 and re.search(r"base/s.jsonl is inside the input .*base", err), err
    code, _, err = run([*argv, "s.jsonl"], capsys)  # the same run, its output elsewhere: fine
    assert code == 0 and (tmp_path / "s.jsonl").is_file(), err
    code, _, err = run([*argv, "base/t.jsonl", "--base-model", "base"], capsys)
    assert code == 2 and "inside the input" in err, err
    assert digest([tmp_path / "base"]) == before


def test_a_dangling_symlink_at_the_output_is_replaced_only_with_force(hostile_env, tmp_path, capsys):
    out = tmp_path / "s.jsonl"
    out.symlink_to(tmp_path / "nowhere")
    argv = ["score", "--rm", hostile_env.d / "rm0", "--data", hostile_env.data, "--out", out]
    code, _, err = run(argv, capsys)
    assert_one_error(code, err, r"s.jsonl: already exists \(use --force")
    assert out.is_symlink() and not (tmp_path / "nowhere").exists()
    code, _, err = run([*argv, "--force"], capsys)
    assert code == 0 and not out.is_symlink() and len(out.read_text().splitlines()) == 12, err


@pytest.mark.parametrize(
    "failure",
    [
        OSError(28, "No space left on device"),  # os.write / file.write: no file name
        RuntimeError(
            'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space" })'
        ),
    ],
)
def test_a_full_disk_is_one_line_naming_the_output(hostile_env, tmp_path, monkeypatch, capsys, failure):
    import rewardkit.io

    def full(*args, **kwargs):
        raise failure

    monkeypatch.setattr(rewardkit.io, "atomic_write_text", full)
    out = tmp_path / "s.jsonl"
    code, _, err = run(
        ["score", "--rm", hostile_env.d / "rm0", "--data", hostile_env.data, "--out", out], capsys
    )
    assert code == 1 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == f"error: {out}: No space left on device"
    assert not out.exists() and leftovers(out) == []
