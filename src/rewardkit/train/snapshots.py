"""Training checkpoints that are complete or absent.

The HF Trainer writes ``checkpoint-N`` file by file in place, so a full disk or a kill during a save
leaves a partial folder that resuming would pick. Here the Trainer writes each checkpoint into a hidden
staging folder beside it (``.checkpoint-N.tmp/checkpoint-N``), together with what callbacks keep in a
checkpoint (:class:`CheckpointPart`, e.g. Elastic Reset's EMA); it is renamed into place only once every
rank has written its part, and a failed save removes its staging folder. Under torchrun every rank
reports whether its part succeeded before anything is renamed (and again after the rename): a failure on
one rank fails every rank at once, in one line, instead of leaving the others waiting at a barrier.

A ``checkpoint-N`` already there (a resumed run saving step N again) is swapped with the new one in one
step where the system can (Linux ``renameat2(RENAME_EXCHANGE)``). Elsewhere the old one is first renamed
aside to ``.checkpoint-N.old``; a crash between the two renames leaves it there, and
:func:`restore_replaced` (run by the next save and before resuming) puts it back, or removes it once the
new one is in place. Resuming takes the last checkpoint that holds the trainer state the Trainer writes
last (``trainer_state.json``), so a partial folder left by another writer is skipped too.
"""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from rewardkit.io import remove_path, set_modes

logger = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_ASIDE = re.compile(r"^\.(checkpoint-\d+)\.old$")  # a replaced checkpoint, until the new one is in place
STATE = "trainer_state.json"  # written last by Trainer._save_checkpoint
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2  # <fcntl.h>, <linux/fs.h>


class CheckpointPart:
    """A ``TrainerCallback`` that keeps files of its own in each checkpoint: :func:`save_atomically` calls
    :meth:`save_part` with the staging folder, so the files are renamed into place with the checkpoint."""

    def save_part(self, folder: Path, state: Any) -> None:
        """Write this callback's files into the checkpoint ``folder`` (``state``: the ``TrainerState``)."""
        raise NotImplementedError


def save_atomically(trainer: Any, save: Callable[[Any, Any], None], model: Any, trial: Any) -> None:
    """``save(model, trial)`` (``Trainer._save_checkpoint``) and every :class:`CheckpointPart` callback
    into a staging folder, then the checkpoint renamed into place under the run's output folder; on a
    failure on any rank nothing new is left there and every rank raises."""
    args = trainer.args
    run_dir = Path(trainer._get_output_dir(trial=trial))
    final = run_dir / f"checkpoint-{trainer.state.global_step}"
    staging = run_dir / f".{final.name}.tmp"

    def prepare() -> None:
        if args.should_save:
            run_dir.mkdir(parents=True, exist_ok=True)
            restore_replaced(run_dir)  # what a crash during an earlier replacement left
            remove_path(staging, ignore_errors=False)  # what a killed save left

    def write() -> None:
        args.output_dir = str(staging)
        try:
            save(model, trial)
            if args.should_save:
                for callback in trainer.callback_handler.callbacks:
                    if isinstance(callback, CheckpointPart):
                        callback.save_part(staging / final.name, trainer.state)
        finally:
            args.output_dir = str(run_dir)

    def put() -> None:
        if args.should_save:
            set_modes(staging / final.name)  # transformers writes weight shards through a 0600 temporary file
            _put_in_place(staging / final.name, final)
            remove_path(staging, ignore_errors=False)

    _on_every_rank(trainer, prepare, staging, f"preparing to save {final}", ": nothing was saved")
    _on_every_rank(trainer, write, staging, f"saving {final}", ": nothing was put in place")
    _on_every_rank(trainer, put, staging, f"putting {final} in place")


def _on_every_rank(
    trainer: Any, step: Callable[[], None], staging: Path, what: str, outcome: str = ""
) -> None:
    """Run ``step`` on this rank, then every rank learns whether it succeeded everywhere (one all-gather,
    which is also the barrier). After a failure anywhere each rank removes its staging folder, waits for
    the others to have done so, and raises: its own error, or one line naming the ranks that failed."""
    acc = trainer.accelerator
    try:
        step()
        error = None
    except Exception as e:  # every rank learns of it below, then it is raised
        error = e
    except BaseException:  # an interrupt: no collective, the other ranks are interrupted too
        if trainer.args.should_save:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    if acc.num_processes > 1:
        flags = [torch.zeros(1, dtype=torch.int64, device=acc.device) for _ in range(acc.num_processes)]
        dist.all_gather(flags, torch.tensor([int(error is None)], device=acc.device))
        failed = [rank for rank, ok in enumerate(flags) if not int(ok)]
    else:
        failed = [] if error is None else [0]
    if not failed:
        return
    if trainer.args.should_save:
        shutil.rmtree(staging, ignore_errors=True)
    acc.wait_for_everyone()
    if error is not None:
        raise error
    ranks = ", ".join(str(r) for r in failed)  # the environment (a peer's full disk): OSError, as there
    raise OSError(f"{what} failed on rank {ranks} (its error is in that rank's output){outcome}")


def _put_in_place(new: Path, final: Path) -> None:
    """Rename the finished checkpoint ``new`` to ``final``. One already at ``final`` is replaced so that,
    whenever a crash comes, ``final`` or its aside copy (:func:`restore_replaced`) is a whole checkpoint:
    swapped in one step where the system can (the old one is then at ``new``, removed with the staging
    folder), else renamed aside, the new one renamed in, and the aside copy removed."""
    if not (final.exists() or final.is_symlink()):
        os.rename(new, final)
        return
    if exchange(new, final):
        return
    aside = final.with_name(f".{final.name}.old")
    remove_path(aside, ignore_errors=False)
    os.rename(final, aside)
    os.rename(new, final)
    remove_path(aside, ignore_errors=False)


def exchange(a: Path, b: Path) -> bool:
    """Swap the paths ``a`` and ``b`` in one atomic step (Linux ``renameat2`` with ``RENAME_EXCHANGE``);
    False, with nothing changed, where the system, its C library or the file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a C library without it (glibc < 2.28, some musl)
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EPERM):
        return False  # a kernel or file system without the flag
    raise OSError(err, os.strerror(err), str(b))


def restore_replaced(folder: Path) -> None:
    """Finish a replacement a crash interrupted under ``folder``: an aside copy ``.checkpoint-N.old`` goes
    back to ``checkpoint-N`` when that is missing (the crash came before the new one was in place), and is
    removed when ``checkpoint-N`` is there (the new one). Run on one rank, before the others look."""
    for aside in sorted(folder.iterdir()):
        m = _ASIDE.match(aside.name)
        if m is None:
            continue
        final = folder / m.group(1)
        if final.exists() or final.is_symlink():
            remove_path(aside, ignore_errors=False)
        else:
            logger.warning(
                "%s: a save was interrupted while replacing it: the previous one is restored", final
            )
            os.rename(aside, final)


def is_complete(folder: Path) -> bool:
    """A checkpoint folder whose trainer state (written last) is there and parses."""
    try:
        return isinstance(json.loads((folder / STATE).read_text(encoding="utf-8")).get("global_step"), int)
    except (OSError, ValueError, AttributeError):
        return False


def last_complete_checkpoint(folder: Path) -> str | None:
    """The ``checkpoint-N`` under ``folder`` with the largest N that :func:`is_complete` (None: none);
    incomplete later ones are named in a warning. Run :func:`restore_replaced` first."""
    found = sorted(
        ((int(m.group(1)), p) for p in folder.iterdir() if (m := _CHECKPOINT.match(p.name)) and p.is_dir()),
        reverse=True,
    )
    for _, path in found:
        if is_complete(path):
            return str(path)
        logger.warning("%s is incomplete (no readable %s): skipped", path, STATE)
    return None


def resume_checkpoint(trainer: Any, folder: Path) -> str | None:
    """The checkpoint a resumed run starts from: :func:`last_complete_checkpoint` once one rank has run
    :func:`restore_replaced`, the same on every rank."""
    if trainer.args.should_save:
        restore_replaced(folder)
    trainer.accelerator.wait_for_everyone()
    return last_complete_checkpoint(folder)


def has_complete_checkpoint(root: Path) -> bool:
    """Whether a complete checkpoint to resume from is under ``root`` (in any phase's folder): a
    ``checkpoint-N`` or the aside copy an interrupted replacement left, never one being staged."""
    for path in root.rglob("*checkpoint-*"):
        above = path.relative_to(root).parts[:-1]
        named = _CHECKPOINT.match(path.name) or _ASIDE.match(path.name)
        if named and not any(p.startswith(".") for p in above) and path.is_dir() and is_complete(path):
            return True
    return False
