"""A broken ``rewardkit.kinds`` entry-point plugin (rewardkit.models.registry): loading a folder of that
kind is one ``error:`` line naming the folder's manifest, the kind and the target, never a traceback."""

from __future__ import annotations

import json
import sys
from importlib.metadata import EntryPoint

import pytest

import rewardkit.models.registry as registry
from tests.hostile import check_case

PLUGINS = {
    "rk_plugin_raises.py": "raise RuntimeError('plugin needs a GPU\\n and a licence')\n",
    "rk_plugin_syntax.py": "def broken(:\n",
    "rk_plugin_not_a_model.py": "class Model:\n    pass\n",
}

# name -> (kind, entry-point value, error regex)
CASES = {
    "module raises on import": (
        "k_raises",
        "rk_plugin_raises:Model",
        r"cannot import 'rk_plugin_raises:Model' \(RuntimeError: plugin needs a GPU and a licence\)",
    ),
    "module does not parse": (
        "k_syntax",
        "rk_plugin_syntax:Model",
        r"cannot import 'rk_plugin_syntax:Model' \(SyntaxError: ",
    ),
    "module missing": (
        "k_missing",
        "rk_no_such_plugin:Model",
        r"cannot import 'rk_no_such_plugin:Model' \(ModuleNotFoundError",
    ),
    "no such class": ("k_attr", "rk_plugin_not_a_model:Nope", r"cannot import .rk_plugin_not_a_model:Nope. \(AttributeError"),
    "not a RewardModel": (
        "k_class",
        "rk_plugin_not_a_model:Model",
        r"kind 'k_class': rk_plugin_not_a_model:Model is not a RewardModel class",
    ),
}


@pytest.fixture
def plugins(hostile_env, tmp_path, monkeypatch):
    """The plugin modules on sys.path, the entry points announcing them, and a folder of each kind."""
    for name, text in PLUGINS.items():
        (tmp_path / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = [EntryPoint(name=k, value=v, group="rewardkit.kinds") for k, v, _ in CASES.values()]
    monkeypatch.setattr(
        "importlib.metadata.entry_points", lambda group=None, **kw: eps if group == "rewardkit.kinds" else []
    )
    monkeypatch.setattr(registry, "_ENTRY_POINTS_READ", False)
    monkeypatch.setattr(registry, "KINDS", dict(registry.KINDS))
    for kind, _, _ in CASES.values():
        folder = tmp_path / kind
        folder.mkdir()
        (folder / "rewardkit.json").write_text(json.dumps({"kind": kind, "format": 1}))
    yield tmp_path
    for name in PLUGINS:
        sys.modules.pop(name[:-3], None)


@pytest.mark.parametrize("name", list(CASES))
def test_a_broken_kind_plugin_is_one_error_line(hostile_env, plugins, name, capsys):
    kind, _, pattern = CASES[name]
    case = (
        lambda e: ["score", "--rm", plugins / kind, "--data", e.data, "--out", plugins / "o.jsonl"],
        lambda e: [e.data, plugins / kind],
        lambda e: plugins / "o.jsonl",
        rf"{kind}/rewardkit.json: kind '{kind}': .*" if "RewardModel" not in pattern else pattern,
    )
    check_case(case, hostile_env, capsys)
    check_case((*case[:3], pattern), hostile_env, capsys)
