"""Elastic Reset (Noukhovitch et al., "Language Model Alignment with Elastic Reset", 2023).

RL or preference fine-tuning drifts: reward up, quality and KL to the initial model worse. Elastic Reset
keeps an exponential moving average of the online model and periodically resets:

- after every optimizer step: ``theta_ema <- (1 - eta) * theta + eta * theta_ema`` (eta = ``ema_decay``,
  0.99-0.995 in the paper);
- every ``reset_every`` steps: ``theta <- theta_ema`` (the online model restarts from the EMA), then
  ``theta_ema <- theta_init`` (the EMA restarts from the initial model).

:class:`ElasticResetCallback` is a ``transformers.TrainerCallback``, so it works in any ``Trainer``:
TRL's (GRPO, PPO, DPO, RLOO) and rewardkit's own. Only trainable parameters are tracked, so with LoRA
the EMA and the initial copy are adapter-sized; both live on the CPU by default (as in the paper).
Under DDP every rank holds the full parameters and applies identical updates, so the copies agree;
FSDP and DeepSpeed shard the parameters and are refused. The EMA and initial copies and the reset count
are saved in every checkpoint (``elastic_reset.safetensors``): into rewardkit's staging folder, so they
are renamed into place with the checkpoint (:class:`rewardkit.train.snapshots.CheckpointPart`), or after
the Trainer's files where a trainer writes checkpoints in place. Resuming restores them from the
checkpoint it resumes; one without them is refused (the resumed weights are not the initial model). As
in the paper, only the policy is reset: a value model (TRL's PPO wraps ``policy`` and ``value_model``) or
value head is kept.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import torch
from transformers import TrainerCallback

from rewardkit.errors import ModelError
from rewardkit.train.snapshots import CheckpointPart

logger = logging.getLogger(__name__)

STATE_FILE = "elastic_reset.safetensors"
#: module names of a value function (TRL's PolicyAndValueWrapper.value_model, value heads): never reset
VALUE_MODULES = ("value_model", "v_head", "value_head")


class ElasticResetCallback(TrainerCallback, CheckpointPart):
    """Elastic Reset as a TrainerCallback.

    ``reset_every``: optimizer steps between resets. ``ema_decay``: eta of the EMA update.
    ``ema_device``: where the EMA and initial copies live (``"cpu"``; ``None``: beside the parameters).
    ``optimizer_state``: what happens to the optimizer's per-parameter state (Adam's moments) at a reset:
    ``"reset"`` (default) clears it, so the restarted model is not pushed back along the pre-reset
    trajectory by stale momentum; ``"keep"`` leaves it. ``keep_modules``: parameters under these module
    names are never tracked nor reset (the value function Elastic Reset maintains).
    """

    def __init__(
        self,
        reset_every: int,
        ema_decay: float = 0.995,
        *,
        ema_device: str | torch.device | None = "cpu",
        optimizer_state: Literal["reset", "keep"] = "reset",
        keep_modules: tuple[str, ...] = VALUE_MODULES,
    ):
        if not isinstance(reset_every, int) or reset_every < 1:
            raise ModelError(f"reset_every must be a positive integer, got {reset_every!r}")
        if not 0.0 < ema_decay < 1.0:
            raise ModelError(f"ema_decay must be in (0, 1), got {ema_decay}")
        if optimizer_state not in ("reset", "keep"):
            raise ModelError(f"optimizer_state must be 'reset' or 'keep', got {optimizer_state!r}")
        self.reset_every, self.ema_decay = reset_every, float(ema_decay)
        self.ema_device, self.optimizer_state = ema_device, optimizer_state
        self.keep_modules = tuple(keep_modules)
        self.params: dict[str, torch.nn.Parameter] = {}
        self.ema: dict[str, torch.Tensor] = {}
        self.init: dict[str, torch.Tensor] = {}
        self.resets = 0
        self._saved_step: int | None = None  # the step whose checkpoint holds our state already

    def _copy(self, p: torch.Tensor) -> torch.Tensor:
        return p.detach().to(self.ema_device if self.ema_device is not None else p.device, copy=True)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if getattr(args, "fsdp", None) or getattr(args, "deepspeed", None):
            raise ModelError(
                "Elastic Reset needs every rank to hold full parameters: FSDP and DeepSpeed are refused"
            )
        self.params = {
            n: p
            for n, p in model.named_parameters()
            if p.requires_grad and not any(k in n.split(".") for k in self.keep_modules)
        }
        if not self.params:
            raise ModelError("Elastic Reset: the model has no trainable parameters")
        saved = Path(args.output_dir) / f"checkpoint-{state.global_step}" / STATE_FILE
        if state.global_step > 0:  # resuming: restore the EMA and initial copies
            if not saved.is_file():
                raise ModelError(
                    f"{saved.parent}: resuming at step {state.global_step} without {STATE_FILE}: the "
                    "initial weights Elastic Reset returns to cannot be restored (was the run trained "
                    "with Elastic Reset?)"
                )
            from safetensors.torch import load_file

            blob = load_file(saved, device="cpu")
            missing = [n for n in self.params if f"ema.{n}" not in blob or f"init.{n}" not in blob]
            if missing:
                raise ModelError(
                    f"{saved}: no saved EMA / initial copy of {len(missing)} parameter(s): {missing[:3]}"
                )
            self.ema = {n: self._copy(blob[f"ema.{n}"].to(p.device)) for n, p in self.params.items()}
            self.init = {n: self._copy(blob[f"init.{n}"].to(p.device)) for n, p in self.params.items()}
            # checkpoints from before the count was saved: the resets up to this step, reset_every unchanged
            count = blob.get("resets")
            self.resets = int(count) if count is not None else state.global_step // self.reset_every
        else:
            self.init = {n: self._copy(p) for n, p in self.params.items()}
            self.ema = {n: t.clone() for n, t in self.init.items()}

    @torch.no_grad()
    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        eta = self.ema_decay
        for n, p in self.params.items():
            self.ema[n].mul_(eta).add_(p.detach().to(self.ema[n].device), alpha=1.0 - eta)
        if state.global_step % self.reset_every == 0:
            for n, p in self.params.items():
                p.copy_(self.ema[n].to(p.device))
                self.ema[n].copy_(self.init[n])
            if self.optimizer_state == "reset" and optimizer is not None:
                inner = getattr(optimizer, "optimizer", optimizer)
                for p in self.params.values():
                    inner.state.pop(p, None)
            self.resets += 1
            logger.info("elastic reset %d at step %d", self.resets, state.global_step)

    def save_part(self, folder: Path, state) -> None:
        """The EMA and initial copies and the reset count into the checkpoint ``folder``."""
        from safetensors.torch import save_file

        blob = {f"ema.{n}": t.contiguous() for n, t in self.ema.items()}
        blob.update({f"init.{n}": t.contiguous() for n, t in self.init.items()})
        blob["resets"] = torch.tensor(self.resets, dtype=torch.int64)
        save_file(blob, str(folder / STATE_FILE))
        self._saved_step = state.global_step

    def on_save(self, args, state, control, **kwargs):
        """A trainer that writes checkpoints in place (TRL's): our state after the Trainer's files."""
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if self._saved_step != state.global_step and folder.is_dir() and state.is_world_process_zero:
            self.save_part(folder, state)
