"""Training checkpoints are complete or absent (rewardkit.train.snapshots): a save that fails half-way
(a full disk) leaves no ``checkpoint-N``, a partial ``checkpoint-N`` another writer left is skipped, and
resuming from the last complete one ends with the same weights, bit for bit, as an uninterrupted run."""

from __future__ import annotations

import errno
import json
import os
import shutil

import pytest
import torch
from transformers import Trainer

import rewardkit.io
from rewardkit import train_reward_model
from rewardkit.train.snapshots import is_complete, last_complete_checkpoint


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
