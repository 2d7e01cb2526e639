"""Bradley-Terry training of explicit reward models (``train_reward_model``) on the shared pair trainer."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from rewardkit.data import as_pairs
from rewardkit.locks import hold_output
from rewardkit.templating import Formatter
from rewardkit.train.config import RewardTrainingConfig
from rewardkit.train.losses import reward_model_loss
from rewardkit.train.pairs import PairDataset, PairTrainer, fresh_checkpoints, prepare_run_dir, train_phase
from rewardkit.train.result import Trained, TrainingRecord

if TYPE_CHECKING:
    from rewardkit.models.explicit import BradleyTerryRM

logger = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 512  # tokens per sequence of a new reward model, unless the config says otherwise


class RewardTrainer(PairTrainer):
    """Bradley-Terry training of a :class:`~rewardkit.models.explicit.SequenceRewardModule`."""

    def __init__(self, *args, label_smoothing: float = 0.0, center_coef: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.label_smoothing = label_smoothing
        self.center_coef = center_coef

    def pair_loss(self, model, inputs):
        rewards = model(inputs["input_ids"], inputs["attention_mask"])  # [2B] or [2B, heads]
        chosen, rejected = rewards.chunk(2)
        margin = inputs["margin"] if rewards.dim() == 1 else inputs["margin"][:, None]
        loss = reward_model_loss(
            chosen, rejected, margin if bool(margin.any()) else None, self.label_smoothing, self.center_coef
        )
        return loss, chosen, rejected


def _set_trainable(module: torch.nn.Module, head_only: bool, trainable: dict[str, bool]) -> None:
    from rewardkit.models.explicit import HEAD_NAMES

    for name, p in module.named_parameters():
        is_head = any(f".{h}." in f".{name}" for h in HEAD_NAMES)
        p.requires_grad_(trainable[name] and (is_head or not head_only))


def _starting_model(model: Any, config: RewardTrainingConfig):
    """The :class:`BradleyTerryRM` training starts from: ``model`` itself when it is one (its own
    max_length and chat template kept unless the config sets them), else loaded from the checkpoint
    with a fresh head seeded with ``head_seed``."""
    from rewardkit.models.explicit import BradleyTerryRM

    if not isinstance(model, BradleyTerryRM):
        return BradleyTerryRM.from_pretrained(
            model,
            lora_r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            head_seed=config.head_seed,
            dropout=config.dropout,
            max_length=config.max_length or DEFAULT_MAX_LENGTH,
            num_heads=config.num_heads,
            chat_template=config.chat_template or "auto",
        )
    rm = model
    if config.max_length is not None:
        rm.formatter.max_length = config.max_length
    if config.chat_template is not None and config.chat_template != rm.formatter.chat_template:
        f = rm.formatter
        rm.formatter = Formatter(rm.tokenizer, f.max_length, config.chat_template, f.pair_encoding, f.context)
    return rm


def train_reward_model(
    model: Any,
    train_data: Any,
    *,
    eval_data: Any = None,
    out: str | os.PathLike | None = None,
    config: RewardTrainingConfig | None = None,
    force: bool = False,
    resume: bool = False,
    callbacks: Sequence[Any] | None = None,
    **overrides: Any,
) -> Trained[BradleyTerryRM]:
    """Train an explicit Bradley-Terry reward model; returns :class:`~rewardkit.train.result.Trained`:
    the trained :class:`BradleyTerryRM` (``.model``) and the run's record (``.record``).

    ``model``: a checkpoint path (causal LM or encoder; a fresh head is seeded with ``head_seed``) or an
    existing ``BradleyTerryRM``. ``train_data``/``eval_data``: anything ``load_preferences`` takes.
    ``config`` fields may also be given as keyword overrides (``lr=1e-4, lora_r=8``). With ``out``, the
    final model is saved there (refused if it exists, unless ``force``); with ``save_checkpoints``,
    checkpoints go to ``out/checkpoints`` and stay there beside the final model, and ``resume=True``
    continues an interrupted run from its last checkpoint; ``out`` is locked for the call (a second process
    training into it fails at once). ``callbacks``: extra
    ``transformers.TrainerCallback``s (e.g. :class:`rewardkit.ElasticResetCallback`). Under torchrun /
    accelerate every rank trains and rank 0 saves. A NaN or infinite loss stops the run; nothing is saved.
    """
    config = (config or RewardTrainingConfig()).model_copy(update=overrides)
    config = RewardTrainingConfig.model_validate(config.model_dump())
    with hold_output(out):  # one writer per output (the CLI's command holds it already: passed through)
        return _train(model, train_data, eval_data, out, config, force, resume, callbacks)


def _train(
    model: Any,
    train_data: Any,
    eval_data: Any,
    out: str | os.PathLike | None,
    config: RewardTrainingConfig,
    force: bool,
    resume: bool,
    callbacks: Sequence[Any] | None,
) -> Trained[BradleyTerryRM]:
    """:func:`train_reward_model` once its config is valid and its output is held."""
    prepare_run_dir(out, config, force, resume)
    train_pairs = as_pairs(train_data)
    eval_pairs = as_pairs(eval_data) if eval_data is not None else None
    rm = _starting_model(model, config)
    train_ds = PairDataset(train_pairs, rm.formatter, config.margin_field)
    eval_ds = PairDataset(eval_pairs, rm.formatter, config.margin_field) if eval_pairs is not None else None
    module = rm.module.train()
    trainable = {n: p.requires_grad for n, p in module.named_parameters()}
    phases = []
    if config.lp_epochs:
        phases.append(("linear-probe", True, config.lp_epochs, config.lp_lr or 10 * config.lr))
    phases.append(("fine-tune", False, config.epochs, config.lr))
    steps, first_loss, history = 0, None, []
    root = fresh_checkpoints(out, config, force, resume)
    for name, head_only, epochs, lr in phases:
        _set_trainable(module, head_only, trainable)
        logger.info("phase %s: %s epochs at lr %g", name, epochs, lr)
        trainer = train_phase(
            RewardTrainer,
            module,
            config,
            output_dir=root / name if root is not None else None,
            epochs=epochs,
            lr=lr,
            train_dataset=train_ds,
            eval_dataset=eval_ds,
            tokenizer=rm.tokenizer,
            callbacks=callbacks,
            resume=resume,
            label_smoothing=config.label_smoothing,
            center_coef=config.center_coef,
        )
        steps += trainer.state.global_step
        first_loss = trainer.first_loss if first_loss is None else first_loss
        history += trainer.state.log_history
    _set_trainable(module, False, trainable)
    module.eval()
    rm.engine = dataclasses.replace(rm.engine, device=next(module.parameters()).device)  # where HF left it
    record = TrainingRecord(
        world_size=trainer.args.world_size,
        optimizer_steps=steps,
        train_pairs=len(train_ds),
        first_loss=first_loss,
        config=config.model_dump(),
        log_history=history,
    )
    if out is not None and trainer.is_world_process_zero():
        # out exists now only if it was ours to replace (force, resume) or holds this run's checkpoints
        rm._write(out, force=True, keep=("checkpoints",))
    return Trained(rm, record)
