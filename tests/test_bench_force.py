"""``bench shift|hacking --force`` replaces only what an earlier run of the same benchmark wrote, and
nothing under --out is touched before the configuration and the data are valid."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from rewardkit.bench import resolve_config
from rewardkit.bench.run import RUN_MARKER, check_run_output, start_run
from rewardkit.errors import RewardkitError
from tests.cli_helpers import run_cli as _run


def _digest(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        key = str(p.relative_to(root))
        out[key] = (
            "link:" + str(p.readlink())
            if p.is_symlink()
            else (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
        )
    return out


def _user_folder(root: Path, marker: str | None) -> Path:
    """An --out holding someone's own models/ (and, optionally, a marker naming a benchmark)."""
    out = root / "out"
    (out / "models" / "mine").mkdir(parents=True)
    (out / "models" / "mine" / "weights.bin").write_bytes(b"precious" * 100)
    (out / "notes.txt").write_text("my notes\n")
    if marker is not None:
        (out / RUN_MARKER).write_text(marker + "\n")
    return out


# (name, bench, marker in --out, extra flags, message): each exits 2 and changes nothing under --out
CASES = [
    ("no marker, bad flag", "shift", None, ["--data", "missing.jsonl"], "not the output of an earlier"),
    ("no marker, valid", "shift", None, [], "not the output of an earlier `rewardkit bench shift` run"),
    ("no marker, hacking", "hacking", None, [], "not the output of an earlier `rewardkit bench hacking` run"),
    ("other benchmark's", "shift", "hacking", [], "not the output of an earlier `rewardkit bench shift` run"),
    ("other benchmark's (hacking)", "hacking", "shift", [], "`rewardkit bench hacking`"),
    ("own marker, missing data", "shift", "shift", ["--data", "missing.jsonl"], "missing.jsonl"),
    ("own marker, bad recipe", "shift", "shift", ["--recipe", "nope"], "nope"),
    ("own marker, bad preset field", "shift", "shift", ["--seeds", "x"], "--seeds"),
    ("own marker, bad flag (hacking)", "hacking", "hacking", ["--corruption", "2"], "--corruption"),
]


@pytest.mark.parametrize("name,bench,marker,flags,message", CASES, ids=[c[0] for c in CASES])
def test_force_never_deletes_what_the_benchmark_did_not_write(
    tmp_path, capsys, name, bench, marker, flags, message
):
    out = _user_folder(tmp_path, marker)
    before = _digest(tmp_path)
    code, err = _run(["bench", bench, "--preset", "ci", "--out", out, "--force", *flags], capsys)
    assert code == 2, err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert message in err
    assert _digest(tmp_path) == before


def test_without_force_a_non_empty_out_is_refused(tmp_path, capsys):
    out = _user_folder(tmp_path, "shift")
    before = _digest(tmp_path)
    code, err = _run(["bench", "shift", "--preset", "ci", "--out", out], capsys)
    assert code == 2 and "already exists and is not empty" in err
    assert _digest(tmp_path) == before


def test_force_replaces_an_earlier_run_of_the_same_benchmark(tmp_path):
    """start_run: the marker first, the earlier run's models/ gone (a link there is removed, not followed),
    other files kept; an empty or absent --out needs no --force."""
    config = resolve_config("ci")
    out = _user_folder(tmp_path, "shift")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "keep.bin").write_bytes(b"x")
    start_run(out, config, True, log=lambda m: None)
    assert (out / RUN_MARKER).read_text() == "shift\n"
    assert not (out / "models").exists() and (out / "notes.txt").read_text() == "my notes\n"
    assert "preset: ci" in (out / "config.yaml").read_text()
    (out / "models").symlink_to(outside, target_is_directory=True)
    start_run(out, config, True, log=lambda m: None)
    assert not (out / "models").exists() and (outside / "keep.bin").read_bytes() == b"x"
    fresh = tmp_path / "fresh"
    start_run(fresh, config, False, log=lambda m: None)
    assert sorted(p.name for p in fresh.iterdir()) == [RUN_MARKER, "config.yaml"]


@pytest.mark.parametrize(
    "setup,message",
    [
        (lambda p: p.write_text("a file"), "is not a folder"),
        (lambda p: p.symlink_to(p.parent / "target"), "is not a folder"),
        (lambda p: (p.mkdir(), (p / RUN_MARKER).mkdir()), "not the output of an earlier"),
    ],
)
def test_check_run_output_refuses_odd_outs(tmp_path, setup, message):
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "x").write_text("x")
    out = tmp_path / "out"
    setup(out)
    before = _digest(tmp_path)
    with pytest.raises(RewardkitError, match=message):
        check_run_output(out, True, "shift")
    assert _digest(tmp_path) == before
