"""Training checkpoints that are complete or absent.

The HF Trainer writes ``checkpoint-N`` file by file in place, so a full disk or a kill during a save
leaves a partial folder that resuming would pick. Here the Trainer writes each checkpoint into a hidden
staging folder beside it (``.checkpoint-N.tmp/checkpoint-N``), which is renamed into place only once
every rank has finished writing; a failed save removes its staging folder. Resuming takes the last
checkpoint that holds the trainer state the Trainer writes last (``trainer_state.json``), so a partial
folder left by another writer is skipped too.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rewardkit.io import remove_path, set_modes

logger = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
STATE = "trainer_state.json"  # written last by Trainer._save_checkpoint


def save_atomically(trainer: Any, save: Callable[[Any, Any], None], model: Any, trial: Any) -> None:
    """``save(model, trial)`` (``Trainer._save_checkpoint``) into a staging folder, then the checkpoint
    renamed into place under the run's output folder; on failure nothing new is left there."""
    args = trainer.args
    run_dir = Path(trainer._get_output_dir(trial=trial))
    name = f"checkpoint-{trainer.state.global_step}"
    staging = run_dir / f".{name}.tmp"
    if args.should_save:
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_path(staging, ignore_errors=False)  # what a killed save left
    trainer.accelerator.wait_for_everyone()
    args.output_dir = str(staging)
    try:
        save(model, trial)
    except BaseException:
        if args.should_save:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        args.output_dir = str(run_dir)
    trainer.accelerator.wait_for_everyone()
    if args.should_save:
        set_modes(staging / name)  # transformers writes weight shards through a 0600 temporary file
        final, old = run_dir / name, run_dir / f".{name}.old"
        if final.exists() or final.is_symlink():  # a stale one (a resumed run saving step N again)
            remove_path(old, ignore_errors=False)
            os.rename(final, old)
        os.rename(staging / name, final)
        remove_path(staging, ignore_errors=False)
        remove_path(old, ignore_errors=False)
    trainer.accelerator.wait_for_everyone()


def is_complete(folder: Path) -> bool:
    """A checkpoint folder whose trainer state (written last) is there and parses."""
    try:
        return isinstance(json.loads((folder / STATE).read_text(encoding="utf-8")).get("global_step"), int)
    except (OSError, ValueError, AttributeError):
        return False


def last_complete_checkpoint(folder: Path) -> str | None:
    """The ``checkpoint-N`` under ``folder`` with the largest N that :func:`is_complete` (None: none);
    incomplete later ones are named in a warning."""
    found = sorted(
        ((int(m.group(1)), p) for p in folder.iterdir() if (m := _CHECKPOINT.match(p.name)) and p.is_dir()),
        reverse=True,
    )
    for _, path in found:
        if is_complete(path):
            return str(path)
        logger.warning("%s is incomplete (no readable %s): skipped", path, STATE)
    return None
