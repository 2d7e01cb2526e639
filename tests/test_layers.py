"""The layers of DESIGN.md, enforced: pyproject.toml's import-linter contract (imports inside functions
count) holds, and it places every module of the package."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import rewardkit

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def _layers() -> list[list[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["id"] == "layers"]
    return [[m.strip() for m in layer.replace(":", "|").split("|")] for layer in contract["layers"]]


def test_every_module_has_a_layer():
    placed = {m for layer in _layers() for m in layer}
    top = {f"rewardkit.{m.name}" for m in pkgutil.iter_modules(rewardkit.__path__)}
    models = {
        f"rewardkit.models.{m.name}"
        for m in pkgutil.iter_modules([str(Path(rewardkit.__path__[0]) / "models")])
    }
    # the models package is split (registry above the kinds, their engine below them); the others are whole
    missing = sorted(((top - {"rewardkit.models"}) | models) - placed)
    assert missing == [], f"modules outside pyproject.toml's layers contract: {missing}"
    assert len(placed) == sum(len(layer) for layer in _layers())  # no module in two layers


def test_lint_imports_keeps_the_layers_contract():
    pytest.importorskip("importlinter")
    run = subprocess.run(
        [sys.executable, "-c", "import sys, importlinter.cli as c; sys.exit(c.lint_imports(no_cache=True))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "1 kept, 0 broken" in run.stdout
