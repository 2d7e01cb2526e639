"""Training checkpoints are complete or absent (rewardkit.train.snapshots): a save that fails half-way
(a full disk) leaves no ``checkpoint-N``, a partial ``checkpoint-N`` another writer left is skipped, and
resuming from the last complete one ends with the same weights, bit for bit, as an uninterrupted run."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import Trainer

import rewardkit.io
from rewardkit import train_reward_model
from rewardkit.train import snapshots
from rewardkit.train.snapshots import (
    STATE,
    has_complete_checkpoint,
    is_complete,
    last_complete_checkpoint,
    save_atomically,
)


def test_a_failed_save_leaves_no_checkpoint_and_resume_takes_the_last_complete_one(
    tiny_lm, synthetic_split, tmp_path, monkeypatch, caplog
):
    train = synthetic_split[0][:32]
    kw = dict(epochs=3, lr=1e-3, batch_size=8, save_checkpoints=True, progress=False)
    old_umask = os.umask(0o027)
    try:
        rewardkit.io._UMASK = None
        full = train_reward_model(tiny_lm, train, out=tmp_path / "full", **kw).model
    finally:
        os.umask(old_umask)
        rewardkit.io._UMASK = None
    ckpts = tmp_path / "full" / "checkpoints" / "fine-tune"
    assert sorted(p.name for p in ckpts.iterdir()) == ["checkpoint-12", "checkpoint-4", "checkpoint-8"]
    assert all(is_complete(p) for p in ckpts.iterdir())
    for f in (ckpts / "checkpoint-4" / "model.safetensors", tmp_path / "full" / "model.safetensors"):
        assert f.stat().st_mode & 0o777 == 0o640, f  # the umask, not 0600
    assert (ckpts / "checkpoint-4").stat().st_mode & 0o777 == 0o750

    real = Trainer._save_rng_state

    def disk_full_at_step_8(self, output_dir):  # after the weights and optimizer, before the state
        if self.state.global_step == 8:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_rng_state", disk_full_at_step_8)
    with pytest.raises(OSError, match="No space left"):
        train_reward_model(tiny_lm, train, out=tmp_path / "cut", **kw)
    monkeypatch.undo()
    cut = tmp_path / "cut" / "checkpoints" / "fine-tune"
    assert sorted(p.name for p in cut.iterdir()) == ["checkpoint-4"]  # no checkpoint-8, no staging left
    assert not (tmp_path / "cut" / "rewardkit.json").exists()

    # a partial checkpoint-8 as a writer without staging leaves it: weights, no trainer state
    shutil.copytree(cut / "checkpoint-4", cut / "checkpoint-8")
    (cut / "checkpoint-8" / "trainer_state.json").write_text('{"global_st')
    assert last_complete_checkpoint(cut) == str(cut / "checkpoint-4")

    resumed = train_reward_model(tiny_lm, train, out=tmp_path / "cut", resume=True, **kw).model
    assert f"resuming from {cut / 'checkpoint-4'}" in caplog.text
    assert f"{cut / 'checkpoint-8'} is incomplete" in caplog.text
    a, b = full.module.state_dict(), resumed.module.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert sorted(p.name for p in cut.iterdir()) == ["checkpoint-12", "checkpoint-4", "checkpoint-8"]
    assert json.loads((cut / "checkpoint-8" / "trainer_state.json").read_text())["global_step"] == 8


def test_resume_is_refused_when_only_incomplete_or_staged_checkpoints_exist(tmp_path):
    """A killed save's staging folder or a checkpoint without its trainer state is nothing to resume
    from: refused in one line, never a silent fresh start."""
    from rewardkit.errors import RewardkitError
    from rewardkit.train.config import RewardTrainingConfig
    from rewardkit.train.pairs import checkpoint_root, prepare_run_dir

    config = RewardTrainingConfig(save_checkpoints=True)
    out = tmp_path / "run"
    root = checkpoint_root(out, config)
    (root / ".checkpoint-8.tmp" / "checkpoint-8").mkdir(parents=True)
    (root / ".checkpoint-8.tmp" / "checkpoint-8" / "trainer_state.json").write_text('{"global_step": 8}')
    (root / "checkpoint-4").mkdir()
    (root / "checkpoint-4" / "trainer_state.json").write_text("{trunc")
    with pytest.raises(RewardkitError, match="no complete checkpoint to resume from"):
        prepare_run_dir(out, config, force=False, resume=True)
    (root / "checkpoint-4" / "trainer_state.json").write_text('{"global_step": 4}')
    prepare_run_dir(out, config, force=False, resume=True)  # now checkpoint-4 is complete: accepted


class Crash(BaseException):
    """A kill: nothing after the point it is raised at runs, no clean-up (it is no ``Exception``)."""


class _Trainer:
    """What :func:`save_atomically` uses of a Trainer, for one process."""

    def __init__(self, run_dir, step):
        self.args = SimpleNamespace(output_dir=str(run_dir), should_save=True)
        self.state = SimpleNamespace(global_step=step)
        self.accelerator = SimpleNamespace(num_processes=1, wait_for_everyone=lambda: None)
        self.callback_handler = SimpleNamespace(callbacks=[])

    def _get_output_dir(self, trial):
        return self.args.output_dir

    def save(self, marker):
        """A ``save(model, trial)`` writing a complete checkpoint that holds ``marker``."""

        def save(model, trial):
            folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
            folder.mkdir(parents=True)
            (folder / "marker").write_text(marker)
            (folder / STATE).write_text(json.dumps({"global_step": self.state.global_step}))

        return save


# where a save that replaces checkpoint-8 is killed -> (swap available, the call killed, its nth
# call, what checkpoint-8 holds after restore_replaced, whether checkpoint-8 is missing meanwhile)
KILLS = {
    "before renaming the old one aside": (False, "rename", 1, "old", False),
    "between the two renames": (False, "rename", 2, "old", True),
    "before removing the aside copy": (False, "remove .old", 1, "new", False),
    "before the swap": (True, "exchange", 1, "old", False),
    "after the swap": (True, "remove .tmp", 1, "new", False),
}


@pytest.mark.parametrize("point", list(KILLS))
def test_a_save_killed_while_replacing_a_checkpoint_leaves_the_old_or_the_new_one(
    tmp_path, monkeypatch, point
):
    swap, killed, nth, holds, window = KILLS[point]
    run = tmp_path / "run"
    trainer = _Trainer(run, 8)
    save_atomically(trainer, trainer.save("old"), None, None)
    calls = []

    def counted(name, real):
        def call(*args, **kwargs):
            calls.append(name)
            if name == killed and calls.count(name) == nth:
                raise Crash
            return real(*args, **kwargs)

        return call

    real_remove, rename = snapshots.remove_path, counted("rename", os.rename)

    def remove(path, **kwargs):  # the removals of an aside copy or a staging folder that exist
        name = f"remove {path.suffix}" if path.exists() and path.suffix in (".old", ".tmp") else "remove"
        return counted(name, real_remove)(path, **kwargs)

    monkeypatch.setattr(
        snapshots, "exchange", counted("exchange", snapshots.exchange if swap else lambda a, b: False)
    )
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(snapshots, "remove_path", remove)
    with pytest.raises(Crash):
        save_atomically(trainer, trainer.save("new"), None, None)
    monkeypatch.undo()
    final = run / "checkpoint-8"
    assert final.exists() is not window  # the rename window: checkpoint-8 itself is missing
    assert has_complete_checkpoint(run)  # resume is accepted...
    snapshots.restore_replaced(run)
    assert last_complete_checkpoint(run) == str(final)  # ...and finds a whole checkpoint-8
    assert (final / "marker").read_text() == holds
    assert not (run / ".checkpoint-8.old").exists()
    save_atomically(trainer, trainer.save("newer"), None, None)  # the next save leaves nothing beside it
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint-8"]
    assert (final / "marker").read_text() == "newer"


def test_exchange_swaps_two_folders_in_one_step(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x").write_text("a")
    (tmp_path / "b" / "x").write_text("b")
    swapped = snapshots.exchange(tmp_path / "a", tmp_path / "b")
    assert swapped is sys.platform.startswith("linux")  # ext4 / tmpfs / btrfs / xfs have the flag
    expect = ("b", "a") if swapped else ("a", "b")
    assert ((tmp_path / "a" / "x").read_text(), (tmp_path / "b" / "x").read_text()) == expect
    with pytest.raises(FileNotFoundError):
        snapshots.exchange(tmp_path / "a", tmp_path / "missing")


@pytest.mark.parametrize("killed_after", [1, 2])
def test_a_resume_killed_in_the_rename_window_resumes_bit_identically(
    tiny_lm, synthetic_split, tmp_path, monkeypatch, caplog, killed_after
):
    """A resumed run re-saves checkpoint-8 over a partial one and is killed after the first rename (the
    old one aside, checkpoint-8 missing) or after both (the aside copy left): the next resume restores
    the partial one and starts from checkpoint-4, or removes the aside copy and starts from the new
    checkpoint-8; either way the model equals an uninterrupted run's, bit for bit."""
    train = synthetic_split[0][:32]
    kw = dict(epochs=3, lr=1e-3, batch_size=8, save_checkpoints=True, progress=False)
    full = train_reward_model(tiny_lm, train, out=tmp_path / "full", **kw).model
    monkeypatch.setattr(Trainer, "_save_rng_state", _disk_full_at(8))
    with pytest.raises(OSError, match="No space left"):
        train_reward_model(tiny_lm, train, out=tmp_path / "cut", **kw)
    monkeypatch.undo()
    cut = tmp_path / "cut" / "checkpoints" / "fine-tune"
    shutil.copytree(cut / "checkpoint-4", cut / "checkpoint-8")  # partial: no trainer state
    (cut / "checkpoint-8" / STATE).unlink()

    renames, real = [], os.rename

    def rename(src, dst):
        real(src, dst)
        if "checkpoint-8" in Path(dst).name:
            renames.append(dst)
            if len(renames) == killed_after:
                raise Crash

    monkeypatch.setattr(snapshots, "exchange", lambda a, b: False)
    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(Crash):
        train_reward_model(tiny_lm, train, out=tmp_path / "cut", resume=True, **kw)
    monkeypatch.undo()
    assert (cut / ".checkpoint-8.old").is_dir()
    assert (cut / "checkpoint-8").exists() is (killed_after == 2)

    caplog.clear()
    resumed = train_reward_model(tiny_lm, train, out=tmp_path / "cut", resume=True, **kw).model
    start = "checkpoint-4" if killed_after == 1 else "checkpoint-8"
    assert f"resuming from {cut / start}" in caplog.text
    a, b = full.module.state_dict(), resumed.module.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    left = sorted(p.name for p in cut.iterdir() if not p.name.startswith(".checkpoint-8.tmp"))
    assert left == ["checkpoint-12", "checkpoint-4", "checkpoint-8"]
    assert all(is_complete(cut / n) for n in left)


def _disk_full_at(step):
    real = Trainer._save_rng_state

    def save_rng_state(self, output_dir):  # after the weights and optimizer, before the state
        if self.state.global_step == step:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, output_dir)

    return save_rng_state


# run as each rank: the disk of rank $FAIL_RANK is full while it saves step $FAIL_STEP; that rank then
# stays alive for 2 minutes (as a caller that caught the error would), having written its exit status
_FAILING_RANK = """
import os, sys, time
from transformers import Trainer
real = Trainer._save_rng_state
def save_rng_state(self, output_dir):
    if os.environ["RANK"] == os.environ["FAIL_RANK"] and self.state.global_step == int(os.environ["FAIL_STEP"]):
        raise OSError(28, "No space left on device")
    return real(self, output_dir)
Trainer._save_rng_state = save_rng_state
from rewardkit.cli import main
try:
    main(sys.argv[1:])
except SystemExit as e:
    if os.environ["RANK"] == os.environ["FAIL_RANK"]:
        with open(os.environ["CODE_FILE"], "w") as f:
            f.write(str(e.code))
        time.sleep(120)
    raise
"""


def test_a_save_failing_on_one_rank_fails_every_rank_at_once(tiny_lm, synthetic_split, tmp_path):
    """Two gloo processes; rank 1's save of checkpoint-4 fails and rank 1 stays alive: rank 0 exits
    non-zero at once (not when rank 1's process ends, nor at a barrier's 30-minute timeout), both with
    exit status 1 and one ``error:`` line (rank 0's names rank 1), and only the complete checkpoint-2 is
    left: no checkpoint-4, no staging folder."""
    synthetic_split[0][:32].save_jsonl(tmp_path / "train.jsonl")
    (tmp_path / "run.py").write_text(_FAILING_RANK)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out, code = tmp_path / "rm", tmp_path / "rank1.code"
    argv = [sys.executable, str(tmp_path / "run.py"), "train", "explicit", "--model", str(tiny_lm)]
    argv += ["--data", str(tmp_path / "train.jsonl"), "--out", str(out), "--save-checkpoints"]
    argv += ["--batch-size", "8", "--epochs", "2", "--seed", "0"]  # 2 ranks x 8 pairs: 2 steps an epoch
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "MASTER_ADDR": "127.0.0.1"}
    env.update(MASTER_PORT=str(port), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2", CODE_FILE=str(code))
    env.update(FAIL_RANK="1", FAIL_STEP="4")
    logs = [tmp_path / f"rank{r}.err" for r in (0, 1)]
    procs = []
    try:
        for r, log in enumerate(logs):
            with open(log, "w") as err:
                run_env = {**env, "RANK": str(r), "LOCAL_RANK": str(r)}
                procs.append(subprocess.Popen(argv, env=run_env, stdout=subprocess.DEVNULL, stderr=err))
        procs[0].wait(timeout=100)  # start-up and 4 steps on 2 cores: ~10 s
        assert procs[1].poll() is None  # rank 1 still alive: rank 0 did not wait for its process to end
        deadline = time.monotonic() + 60
        while not code.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        for p in procs:
            p.kill()
    errs = [log.read_text() for log in logs]
    assert (procs[0].returncode, code.read_text()) == (1, "1"), errs
    assert all("Traceback" not in e for e in errs), errs
    lines = [[x for x in e.splitlines() if x.startswith("error:")] for e in errs]
    ckpts = out / "checkpoints" / "fine-tune"
    assert lines[0] == [
        f"error: saving {ckpts / 'checkpoint-4'} failed on rank 1 (its error is in that rank's output): "
        "nothing was put in place"
    ]
    assert len(lines[1]) == 1 and "No space left on device" in lines[1][0]
    assert sorted(p.name for p in ckpts.iterdir()) == ["checkpoint-2"]
    assert is_complete(ckpts / "checkpoint-2")
