"""Two writers on one output (rewardkit.locks.claim_output, rewardkit.io.atomic_file, atomic_dir): every CLI command holds
a lock on its outputs from its pre-check to its end, so a second run writing the same output fails at
once in one line (exit status 2) and changes nothing; a write without force never replaces a target that
appeared while it was being written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from rewardkit.errors import RewardkitError
from rewardkit.io import atomic_dir, atomic_file, atomic_write_text, run_inputs
from rewardkit.locks import claim_output
from tests.hostile import assert_one_error, digest, leftovers, run
from tests.suite_fixtures import v1_rows, write_jsonl

HOLD = textwrap.dedent(
    """
    import sys, time
    from rewardkit.io import run_inputs
    from rewardkit.locks import claim_output
    with run_inputs():
        claim_output(sys.argv[1])
        print("held", flush=True)
        time.sleep(120)
    """
)


@pytest.fixture
def other_run():
    """``other_run(path)``: another process (rewardkit.io's own lock) holds ``path`` until the test ends."""
    procs = []

    def hold(path):
        p = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout.readline().strip() == "held"
        return p.pid

    yield hold
    for p in procs:
        p.kill()
        p.wait()


def _score(e, out):
    return ["score", "--rm", e.d / "rm0", "--data", e.data, "--out", out]


# name -> (argv(env, out), the output the other run holds (env, out), inputs(env))
WRITERS = {
    "score": (_score, lambda e, o: o, lambda e: [e.data, e.d / "rm0"]),
    "train": (
        lambda e, o: [
            "train",
            "explicit",
            "--model",
            e.lm,
            "--data",
            e.data,
            "--out",
            o,
            "--save-checkpoints",
        ],
        lambda e, o: o,
        lambda e: [e.data, e.lm],
    ),
    "merge": (
        lambda e, o: ["merge", e.d / "rm0", e.d / "rm1", "-o", o],
        lambda e, o: o,
        lambda e: [e.d / "rm0"],
    ),
    "ensemble": (
        lambda e, o: ["ensemble", e.d / "rm0", e.d / "rm1", "-o", o],
        lambda e, o: o,
        lambda e: [e.d / "rm0", e.d / "rm1"],
    ),
    "eval --json": (
        lambda e, o: ["eval", "--rm", e.d / "rm0", "--data", e.data, "--json", o],
        lambda e, o: o,
        lambda e: [e.data],
    ),
    "eval --markdown (second output)": (
        lambda e, o: [
            "eval",
            "--rm",
            e.d / "rm0",
            "--data",
            e.data,
            "--json",
            o.with_name("a.json"),
            "--markdown",
            o,
        ],
        lambda e, o: o,
        lambda e: [e.data],
    ),
    "eval --suite --per-example": (
        lambda e, o: [
            "eval",
            "--suite",
            "rewardbench",
            "--data",
            write_jsonl(e.d / "v1.jsonl", v1_rows(per_subset=1)),
            "--rm",
            e.d / "rm0",
            "--per-example",
            o,
        ],
        lambda e, o: o,
        lambda e: [e.d / "rm0"],
    ),
    "bench shift --out": (
        lambda e, o: ["bench", "shift", "--preset", "ci", "--out", o, "--data", e.data],
        lambda e, o: o,
        lambda e: [e.data],
    ),
    "bench hacking --out": (
        lambda e, o: ["bench", "hacking", "--preset", "ci", "--out", o],
        lambda e, o: o,
        lambda e: [e.d / "rm0"],
    ),
}


@pytest.mark.parametrize("name", list(WRITERS))
def test_a_second_run_on_one_output_fails_at_once(hostile_env, name, other_run, tmp_path, capsys):
    argv, held, inputs = WRITERS[name]
    out = tmp_path / "out"
    pid = other_run(held(hostile_env, out))
    before = digest(inputs(hostile_env))
    code, _, err = run(argv(hostile_env, out), capsys)
    assert_one_error(code, err, rf"out: another rewardkit run \(pid {pid}\) is writing this output")
    assert digest(inputs(hostile_env)) == before
    assert not out.exists() and leftovers(out) == [".out.lock"]  # the other run's lock, still held


def test_the_lock_is_released_by_a_killed_run_and_removed_by_a_finished_one(
    hostile_env, other_run, tmp_path, capsys
):
    out = tmp_path / "s.jsonl"
    pid = other_run(out)
    code, _, err = run(_score(hostile_env, out), capsys)
    assert code == 2 and f"(pid {pid})" in err
    os.kill(pid, signal.SIGKILL)  # its lock file stays; the kernel released the lock
    os.waitpid(pid, 0)
    code, _, err = run(_score(hostile_env, out), capsys)
    assert code == 0, err
    assert len(out.read_text().splitlines()) == 12 and leftovers(out) == []
    with run_inputs():  # the same command claiming one output twice (e.g. a pre-check, then the write)
        claim_output(out)
        claim_output(out)
        assert leftovers(out) == [".s.jsonl.lock"]
    assert leftovers(out) == []


@pytest.mark.parametrize("force", [False, True])
def test_a_file_that_appeared_meanwhile_is_kept_without_force(tmp_path, force):
    target = tmp_path / "out.txt"
    ctx = atomic_file(target, force=force)
    tmp = ctx.__enter__()
    tmp.write_text("mine")
    target.write_text("theirs")  # another writer finished first
    if force:
        ctx.__exit__(None, None, None)
        assert target.read_text() == "mine"
    else:
        with pytest.raises(RewardkitError, match="out.txt: appeared while this run was writing it"):
            ctx.__exit__(None, None, None)
        assert target.read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]  # no temporary left


def test_a_folder_that_appeared_meanwhile_is_kept_without_force(tmp_path):
    target = tmp_path / "model"
    with pytest.raises(RewardkitError, match="model: appeared while this run was writing it"):
        with atomic_dir(target) as tmp:
            (tmp / "weights").write_text("mine")
            target.mkdir()
            (target / "weights").write_text("theirs")
    assert (target / "weights").read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    atomic_write_text(tmp_path / "x", "1", force=False)
    with pytest.raises(RewardkitError, match="already exists"):
        atomic_write_text(tmp_path / "x", "2", force=False)
    assert (tmp_path / "x").read_text() == "1"


def test_a_cli_output_absent_when_claimed_is_not_replaced_at_the_end(
    hostile_env, tmp_path, monkeypatch, capsys
):
    """A writer outside rewardkit puts a file at ``score --out`` while the run scores: the run's final
    rename keeps it and fails in one line (its own default write is force=True)."""
    import rewardkit.data

    out = tmp_path / "s.jsonl"
    real = rewardkit.data.load_preferences

    def someone_writes_meanwhile(*args, **kwargs):  # after score's pre-check, before its write
        out.write_text('{"other": 1}\n')
        return real(*args, **kwargs)

    monkeypatch.setattr(rewardkit.data, "load_preferences", someone_writes_meanwhile)
    code, _, err = run(_score(hostile_env, out), capsys)
    assert_one_error(code, err, r"s.jsonl: appeared while this run was writing it")
    assert out.read_text() == '{"other": 1}\n' and leftovers(out) == []


@pytest.mark.parametrize("spelling", [".", "./", "../t"])
def test_the_lock_of_an_output_given_as_dot_is_beside_it_not_inside(tmp_path, monkeypatch, spelling):
    """``bench --out .`` in an empty folder: the lock goes beside the folder (``../.t.lock``), so the
    folder stays empty and the benchmark's emptiness check still passes."""
    from rewardkit.bench.run import check_run_output

    (tmp_path / "t").mkdir()
    monkeypatch.chdir(tmp_path / "t")
    with run_inputs():
        check_run_output(spelling, force=False, bench="shift")  # empty: accepted
        assert (tmp_path / ".t.lock").is_file()
        assert list((tmp_path / "t").iterdir()) == []
