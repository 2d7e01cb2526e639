"""Copying a model (``ensemble``, ``merge``, ``EnsembleRM.save``) takes only the model's own regular files:
a link out of the folder, a link to a folder (a loop), a dangling link or a special file is a one-line error,
before anything is written; a link to a file inside the folder is copied as that file."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest

from rewardkit import BradleyTerryRM
from rewardkit.errors import RewardkitError
from rewardkit.io import copy_model_tree
from tests.cli_helpers import run_cli as _run


@pytest.fixture(scope="module")
def saved(tiny_lm, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("copies")
    for i in range(2):
        BradleyTerryRM.from_pretrained(tiny_lm, head_seed=i).save(d / f"m{i}")
    return d


def _digest(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(root))] = "link:" + str(os.readlink(p))
        elif p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _secret(m: Path) -> None:
    (m.parent / "secret.txt").write_text("API_KEY=hunter2\n")
    (m / "notes.txt").symlink_to(m.parent / "secret.txt")


def _loop(m: Path) -> None:
    (m / "loop").symlink_to(m, target_is_directory=True)


def _file_loop(m: Path) -> None:
    (m / "a.json").symlink_to(m / "b.json")
    (m / "b.json").symlink_to(m / "a.json")


def _dangling(m: Path) -> None:
    (m / "gone.json").symlink_to(m / "nothing-here.json")


def _fifo(m: Path) -> None:
    os.mkfifo(m / "pipe")


def _outside_tokenizer(m: Path) -> None:  # a valid tokenizer, but kept outside the folder
    shutil.move(m / "tokenizer.json", m.parent / "shared-tokenizer.json")
    (m / "tokenizer.json").symlink_to(m.parent / "shared-tokenizer.json")


# (name, command, what is done to the first member, message)
CASES = [
    ("ensemble: link to a secret outside", "ensemble", _secret, "outside the model folder"),
    ("ensemble: link loop to the folder", "ensemble", _loop, "a link to a folder"),
    ("ensemble: file link loop", "ensemble", _file_loop, "a symlink loop"),
    ("ensemble: dangling link", "ensemble", _dangling, "a dangling link"),
    ("ensemble: fifo", "ensemble", _fifo, "not a regular file"),
    ("merge: tokenizer outside", "merge", _outside_tokenizer, "outside the model folder"),
]


@pytest.mark.parametrize("name,command,make,message", CASES, ids=[c[0] for c in CASES])
def test_copies_refuse_links_out_loops_and_special_files(
    saved, tmp_path, capsys, name, command, make, message
):
    root = tmp_path / "in"
    for i in range(2):
        shutil.copytree(saved / f"m{i}", root / f"m{i}")
    make(root / "m0")
    before = _digest(root)
    out = tmp_path / "out"
    t = time.perf_counter()
    code, err = _run([command, root / "m0", root / "m1", "-o", out], capsys)
    assert time.perf_counter() - t < 30
    assert code == 2, err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert message in err and str(root / "m0") in err
    assert "hunter2" not in err
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["in"]  # no temporaries left
    assert _digest(root) == before


def test_a_link_inside_the_folder_is_copied_as_its_file(saved, tmp_path, capsys):
    root = tmp_path / "in"
    for i in range(2):
        shutil.copytree(saved / f"m{i}", root / f"m{i}")
    (root / "m0" / "extra").mkdir()
    (root / "m0" / "extra" / "config-copy.json").symlink_to(root / "m0" / "config.json")
    code, err = _run(["ensemble", root / "m0", root / "m1", "-o", tmp_path / "ens"], capsys)
    assert code == 0, err
    copied = tmp_path / "ens" / "member_0" / "extra" / "config-copy.json"
    assert not copied.is_symlink() and copied.read_bytes() == (root / "m0" / "config.json").read_bytes()
    links = [p for p in (tmp_path / "ens").rglob("*") if p.is_symlink()]
    assert links == []


def test_copy_model_tree_skips_patterns_and_lists_what_it_copied(tmp_path):
    src = tmp_path / "m"
    (src / "checkpoints" / "checkpoint-1").mkdir(parents=True)
    (src / "checkpoints" / "checkpoint-1" / "optimizer.pt").write_bytes(b"x")
    (src / "sub").mkdir()
    (src / "sub" / "w.bin").write_bytes(b"abc")
    (src / "config.json").write_text("{}")
    (src / ".config.json.tmp-1-x").write_text("partial")
    assert copy_model_tree(src, tmp_path / "c", ("checkpoints", ".*.tmp-*")) == ["config.json", "sub/w.bin"]
    assert (tmp_path / "c" / "sub" / "w.bin").read_bytes() == b"abc"
    (src / "up").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(RewardkitError, match="a link to a folder"):
        copy_model_tree(src, tmp_path / "d")
