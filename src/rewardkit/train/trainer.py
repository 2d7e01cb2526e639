"""Thin ``transformers.Trainer`` subclasses: they run unchanged under torchrun / accelerate (DDP, FSDP,
DeepSpeed), because all the model computation happens inside one module ``forward``."""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from transformers import Trainer, TrainingArguments

from rewardkit.base import pairwise_accuracy
from rewardkit.data import PreferencePair, as_pairs
from rewardkit.errors import DataError, RewardkitError
from rewardkit.scoring import PAD_MULTIPLE, collate, report_encoding
from rewardkit.templating import Encoded, Formatter
from rewardkit.train.config import RewardTrainingConfig
from rewardkit.train.losses import reward_model_loss

logger = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 512  # tokens per sequence of a new reward model, unless the config says otherwise


class PairDataset(Dataset):
    """Tokenised pairs: item i = {"chosen": Encoded, "rejected": Encoded, "margin": float}; the two
    responses of a pair share one response boundary (``Formatter.encode_pair``).

    ``boundary``: whether the response boundary matters (DPO) and merged boundaries are reported."""

    def __init__(
        self,
        pairs: Sequence[PreferencePair],
        formatter: Formatter,
        margin_field: str | None = None,
        boundary: bool = False,
    ):
        self.items = []
        for i, p in enumerate(pairs):
            c, r = formatter.encode_pair(p.prompt, p.chosen, p.rejected, i)
            margin = 0.0
            if margin_field is not None:
                value = p.metadata.get(margin_field)
                if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                    raise DataError(f"pair {i}: margin field {margin_field!r} missing or not a finite number")
                margin = float(value)
            self.items.append({"chosen": c, "rejected": r, "margin": margin})
        report_encoding(
            [it[k] for it in self.items for k in ("chosen", "rejected")],
            formatter.max_length,
            "training sequences",
            boundary=boundary,
        )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


class PairCollator:
    """B pairs -> one right-padded batch of 2B sequences: rows [0, B) chosen, rows [B, 2B) rejected.

    Every other (numeric) field of the items, e.g. ``margin`` or reference log-probs, becomes a [B] tensor.
    """

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        seqs: list[Encoded] = [f["chosen"] for f in features] + [f["rejected"] for f in features]
        batch = collate(seqs, list(range(len(seqs))), self.pad_id, PAD_MULTIPLE)
        extra = {
            k: torch.tensor([f[k] for f in features], dtype=torch.float32)
            for k in features[0]
            if k not in ("chosen", "rejected")
        }
        return {
            "input_ids": batch.input_ids,
            "attention_mask": batch.attention_mask,
            "response_start": batch.response_start,
            **extra,
        }


class LengthBucketSampler(torch.utils.data.Sampler[int]):
    """Random batches of similar length, so little compute goes to padding.

    Each epoch: shuffle (seeded with ``seed + epoch``), sort by length within windows of ``window``
    batches, cut into batches of ``batch_size``, and shuffle the order of the full batches (a partial
    batch comes last). Batch *order* stays random, so training sees no length curriculum.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, window: int = 16):
        self.lengths = np.asarray(lengths)
        self.batch_size, self.seed, self.window, self.epoch = batch_size, seed, window, 0

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        rng = np.random.default_rng(self.seed + self.epoch)
        self.epoch += 1
        order = rng.permutation(len(self.lengths))
        span = self.batch_size * self.window
        runs = [
            order[s : s + span][np.argsort(self.lengths[order[s : s + span]], kind="stable")]
            for s in range(0, len(order), span)
        ]
        flat = np.concatenate(runs) if runs else order
        n_full = len(flat) // self.batch_size
        batches = [flat[i * self.batch_size : (i + 1) * self.batch_size] for i in range(n_full)]
        batches = [batches[i] for i in rng.permutation(n_full)] + [flat[n_full * self.batch_size :]]
        return iter(int(i) for b in batches for i in b)


class PairTrainer(Trainer):
    """Shared by the reward and DPO trainers: subclasses implement ``pair_loss`` returning
    ``(loss, chosen_rewards [B], rejected_rewards [B])``; accuracy and margins are logged.

    Training batches come from a :class:`LengthBucketSampler` (``group_by_length=False`` restores
    plain shuffling).
    """

    def __init__(self, *args, group_by_length: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.group_by_length = group_by_length
        self._stats: dict[str, list[float]] = {"accuracy": [], "margin": []}
        self.first_loss: float | None = None  # loss of the first training batch (DPO: log 2 at step 0)

    def _get_train_sampler(self, train_dataset=None):
        ds = train_dataset if train_dataset is not None else self.train_dataset
        if not self.group_by_length or not isinstance(ds, PairDataset):
            return super()._get_train_sampler(train_dataset)
        lengths = [max(len(it["chosen"].ids), len(it["rejected"].ids)) for it in ds.items]
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return LengthBucketSampler(
            lengths, self.args.train_batch_size * self.args.gradient_accumulation_steps, seed
        )

    def pair_loss(self, model, inputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, chosen, rejected = self.pair_loss(model, inputs)
        if model.training:
            if self.first_loss is None:
                self.first_loss = float(loss.detach())
            margins = (chosen - rejected).detach().float().cpu().numpy()
            self._stats["accuracy"].append(pairwise_accuracy(margins))
            self._stats["margin"].append(float(margins.mean()))
        return (loss, {"margins": chosen - rejected}) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss, chosen, rejected = self.pair_loss(model, inputs)
        margins = (chosen - rejected).detach().float()
        return loss.detach(), margins, torch.zeros_like(margins)

    def _save(self, output_dir: str | None = None, state_dict=None):
        """Checkpoints hold the wrapped HF model (full weights or the LoRA adapter) and the tokenizer."""
        output_dir = output_dir or self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        self.accelerator.unwrap_model(self.model).model.save_pretrained(output_dir, safe_serialization=True)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._stats["accuracy"]:
            logs["accuracy"] = float(np.mean(self._stats["accuracy"]))
            logs["margin"] = float(np.mean(self._stats["margin"]))
            self._stats = {"accuracy": [], "margin": []}
        super().log(logs, start_time)


def margin_metrics(eval_pred) -> dict[str, float]:
    margins = np.asarray(eval_pred.predictions)
    return {"accuracy": pairwise_accuracy(margins), "margin": float(margins.mean())}


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


def use_bf16(config: Any) -> bool:
    """bf16 autocast: as the config says, else on CUDA when the GPU supports it."""
    if config.bf16 is not None:
        return config.bf16
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def training_arguments(
    config: Any, output_dir: str, *, epochs: float, lr: float, has_eval: bool, **extra: Any
) -> TrainingArguments:
    """TrainingArguments from a rewardkit config (shared by the reward and DPO trainers).

    ``warmup_steps`` below 1 is a ratio of the total steps in transformers >= 5 (required)."""
    return TrainingArguments(
        output_dir=output_dir,
        num_train_epochs=epochs,
        learning_rate=lr,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_ratio,
        lr_scheduler_type=config.lr_scheduler,
        seed=config.seed,
        data_seed=config.data_seed,
        logging_steps=config.logging_steps,
        save_strategy="epoch" if config.save_checkpoints else "no",
        eval_strategy="epoch" if has_eval else "no",
        remove_unused_columns=False,
        label_names=[],
        report_to=[],
        disable_tqdm=not config.progress,
        use_cpu=not torch.cuda.is_available(),
        bf16=use_bf16(config),
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
        **extra,
    )


def _set_trainable(module: torch.nn.Module, head_only: bool, trainable: dict[str, bool]) -> None:
    from rewardkit.models.explicit import HEAD_NAMES

    for name, p in module.named_parameters():
        is_head = any(f".{h}." in f".{name}" for h in HEAD_NAMES)
        p.requires_grad_(trainable[name] and (is_head or not head_only))


def train_reward_model(
    model: Any,
    train_data: Any,
    *,
    eval_data: Any = None,
    out: str | os.PathLike | None = None,
    config: RewardTrainingConfig | None = None,
    force: bool = False,
    **overrides: Any,
):
    """Train an explicit Bradley-Terry reward model; returns the trained :class:`BradleyTerryRM`.

    ``model``: a checkpoint path (causal LM or encoder; a fresh head is seeded with ``head_seed``) or an
    existing ``BradleyTerryRM``. ``train_data``/``eval_data``: anything ``load_preferences`` takes.
    ``config`` fields may also be given as keyword overrides (``lr=1e-4, lora_r=8``). With ``out``, the
    final model is saved there (refused if it exists, unless ``force``). Under torchrun / accelerate
    every rank trains and rank 0 saves.
    """
    from rewardkit.models.explicit import BradleyTerryRM

    config = (config or RewardTrainingConfig()).model_copy(update=overrides)
    config = RewardTrainingConfig.model_validate(config.model_dump())
    if out is not None and Path(out).exists() and not force:
        raise RewardkitError(f"{out}: already exists (pass force=True / --force to overwrite)")
    train_pairs = as_pairs(train_data)
    eval_pairs = as_pairs(eval_data) if eval_data is not None else None
    if isinstance(model, BradleyTerryRM):
        rm = model  # keeps its own max_length and convention unless the config sets them
        if config.max_length is not None:
            rm.formatter.max_length = config.max_length
        if config.chat_template is not None and config.chat_template != rm.formatter.chat_template:
            rm.formatter = Formatter(
                rm.tokenizer, rm.formatter.max_length, config.chat_template, rm.formatter.pair_encoding
            )
    else:
        rm = BradleyTerryRM.from_pretrained(
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
    train_ds = PairDataset(train_pairs, rm.formatter, config.margin_field)
    eval_ds = PairDataset(eval_pairs, rm.formatter, config.margin_field) if eval_pairs is not None else None
    module = rm.module.train()
    trainable = {n: p.requires_grad for n, p in module.named_parameters()}
    phases = []
    if config.lp_epochs:
        phases.append(("linear-probe", True, config.lp_epochs, config.lp_lr or 10 * config.lr))
    phases.append(("fine-tune", False, config.epochs, config.lr))
    steps = 0
    with tempfile.TemporaryDirectory(prefix="rewardkit-train-") as scratch:
        for name, head_only, epochs, lr in phases:
            _set_trainable(module, head_only, trainable)
            args = training_arguments(
                config,
                str(Path(out) / "checkpoints") if config.save_checkpoints and out else scratch,
                epochs=epochs,
                lr=lr,
                has_eval=eval_ds is not None,
            )
            trainer = RewardTrainer(
                model=module,
                args=args,
                train_dataset=train_ds,
                eval_dataset=eval_ds,
                data_collator=PairCollator(rm.tokenizer.pad_token_id),
                processing_class=rm.tokenizer,
                compute_metrics=margin_metrics,
                label_smoothing=config.label_smoothing,
                center_coef=config.center_coef,
                group_by_length=config.group_by_length,
            )
            logger.info("phase %s: %s epochs at lr %g", name, epochs, lr)
            trainer.train()
            steps += trainer.state.global_step
    _set_trainable(module, False, trainable)
    module.eval()
    rm.device = next(module.parameters()).device
    rm.training_info = {
        "world_size": trainer.args.world_size,
        "optimizer_steps": steps,
        "train_pairs": len(train_ds),
        "log_history": trainer.state.log_history,
        "config": config.model_dump(),
    }
    if out is not None and trainer.is_world_process_zero():
        rm.save(out, force=force)
    return rm
