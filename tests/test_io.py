"""io.py: atomic writes, no input overwritten (run scopes), strict JSON."""

import json
import os

import numpy as np
import pytest

from rewardkit.errors import RewardkitError
from rewardkit.io import (
    atomic_dir,
    atomic_write_text,
    check_distinct,
    check_output,
    dumps,
    glob_escape,
    protect,
    protected,
    refuse_existing,
    run_inputs,
    write_json,
)


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_atomic_write_text_replaces_only_with_force(tmp_path):
    f = tmp_path / "a" / "out.txt"
    atomic_write_text(f, "one")
    assert f.read_text() == "one"
    with pytest.raises(RewardkitError, match="already exists"):
        atomic_write_text(f, "two", force=False)
    atomic_write_text(f, "three")
    assert f.read_text() == "three" and _leftovers(f.parent) == []
    with pytest.raises(RewardkitError, match="is a file, not a folder"):
        atomic_write_text(f / "below.txt", "x")


def test_atomic_dir_failure_leaves_the_old_folder_and_keep_carries_entries(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "weights").write_text("v1")
        (tmp / "checkpoints").mkdir()
        (tmp / "checkpoints" / "step-1").write_text("c1")
    with pytest.raises(RuntimeError), atomic_dir(target, force=True) as tmp:
        (tmp / "weights").write_text("half-written")
        raise RuntimeError("crash while writing")
    assert (target / "weights").read_text() == "v1" and _leftovers(tmp_path) == []
    with pytest.raises(RewardkitError, match="already exists"), atomic_dir(target):
        pass
    with atomic_dir(target, force=True, keep=("checkpoints",)) as tmp:
        (tmp / "weights").write_text("v2")
    assert (target / "weights").read_text() == "v2"
    assert (target / "checkpoints" / "step-1").read_text() == "c1" and _leftovers(tmp_path) == []
    with atomic_dir(target, force=True) as tmp:
        (tmp / "weights").write_text("v3")
    assert sorted(os.listdir(target)) == ["weights"]  # without keep, nothing of the old folder stays


def test_no_output_touches_an_input(tmp_path):
    data, model = tmp_path / "data.jsonl", tmp_path / "model"
    model.mkdir()
    with pytest.raises(RewardkitError, match="is the input"):
        check_output(data, [data])
    with pytest.raises(RewardkitError, match="inside the input"):
        check_output(model / "sub", [None, model])
    with pytest.raises(RewardkitError, match="contains the input"):
        check_output(tmp_path, [model])
    check_output(tmp_path / "other", [model, data])  # a sibling is fine
    with run_inputs([data]) as scope:
        protect([model, None])
        assert scope == protected() == {data.resolve(), model.resolve()}
        with pytest.raises(RewardkitError, match="refusing to write into an input"):
            atomic_write_text(model / "x.txt", "x")
        with (
            pytest.raises(RewardkitError, match="refusing to overwrite an input"),
            atomic_dir(model, force=True),
        ):
            pass
    assert protected() == set()
    protect([model])  # outside any scope: nothing to protect
    atomic_write_text(model / "x.txt", "x")


def test_refusals_are_one_line(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(RewardkitError, match=r"f: already exists \(use --force / force=True to overwrite\)"):
        refuse_existing(tmp_path / "f", False)
    refuse_existing(tmp_path / "f", True)
    refuse_existing(None, False)
    with pytest.raises(RewardkitError, match="is given twice"):
        check_distinct([tmp_path / "f", tmp_path / "." / "f"])


def test_json_is_strict_and_numpy_aware(tmp_path):
    assert json.loads(dumps({"a": np.float32(0.5), "b": np.arange(3), "c": np.int64(7)})) == {
        "a": 0.5,
        "b": [0, 1, 2],
        "c": 7,
    }
    with pytest.raises(RewardkitError, match="NaN or infinite"):
        dumps({"x": float("nan")})
    with pytest.raises(RewardkitError, match="NaN or infinite"):
        write_json(tmp_path / "r.json", {"x": np.array([1.0, np.inf])})
    assert not (tmp_path / "r.json").exists()
    assert glob_escape("a*b?[c") == "a[*]b[?][[]c"
