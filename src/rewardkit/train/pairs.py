"""Pair training shared by both trainers: pair datasets and their collator, length-bucketed batches, a
``transformers.Trainer`` subclass that checks every loss, checkpoints and resumption, training arguments.
:mod:`rewardkit.train.bradley_terry` (explicit RMs) and :mod:`rewardkit.train.dpo` build on it."""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from transformers import Trainer, TrainerCallback, TrainingArguments

from rewardkit.accuracy import pairwise_accuracy
from rewardkit.errors import DataError, ModelError, RewardkitError
from rewardkit.io import refuse_existing
from rewardkit.records import PreferencePair
from rewardkit.scoring import PAD_MULTIPLE, collate, report_encoding
from rewardkit.templating import Encoded, Formatter
from rewardkit.train.precision import attention_for, cpu_bf16, frozen_weights_in, original_weights
from rewardkit.train.snapshots import has_complete_checkpoint, resume_checkpoint, save_atomically
from rewardkit.util import show_progress

logger = logging.getLogger(__name__)


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
            formatter,
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

    def set_epoch(self, epoch: int) -> None:
        """Called by the Trainer each epoch (also when resuming mid-run): the epoch's order is fixed."""
        self.epoch = epoch
        self._fixed = True

    def __iter__(self):
        rng = np.random.default_rng(self.seed + self.epoch)
        if not getattr(self, "_fixed", False):
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


class _LogCallback(TrainerCallback):
    """Training logs (loss, accuracy, margin, learning rate) as INFO log lines."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and state.is_world_process_zero:
            logger.info(
                "step %d: %s",
                state.global_step,
                ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in logs.items()),
            )


class PairTrainer(Trainer):
    """Shared by the reward and DPO trainers: subclasses implement ``pair_loss`` returning
    ``(loss, chosen_rewards [B], rejected_rewards [B])``; accuracy and margins are logged.

    Training batches come from a :class:`LengthBucketSampler` (``group_by_length=False`` restores
    plain shuffling).
    """

    def __init__(self, *args, group_by_length: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        if self.args.disable_tqdm:  # no bar: log lines go to the logger (--verbose), not printed dicts
            from transformers.trainer_callback import PrinterCallback

            self.remove_callback(PrinterCallback)
            self.add_callback(_LogCallback())
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

    def _save_checkpoint(self, model, trial):  # complete or absent: rewardkit.train.snapshots
        save_atomically(self, super()._save_checkpoint, model, trial)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, chosen, rejected = self.pair_loss(model, inputs)
        if model.training and not bool(torch.isfinite(loss)):
            raise ModelError(
                f"training loss is {float(loss)} at step {self.state.global_step + 1} "
                f"(learning rate {self.args.learning_rate:g}): the run diverged and stopped; nothing saved"
            )
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
        inner = self.accelerator.unwrap_model(self.model).model
        with original_weights(inner):  # not the bf16 copies of a bf16 CPU run (train/precision.py)
            inner.save_pretrained(output_dir, safe_serialization=True)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        """Resume: the checkpoint holds the wrapped HF model (see ``_save``); load it into that model."""
        inner = self.accelerator.unwrap_model(model or self.model).model
        load_checkpoint_weights(inner, Path(resume_from_checkpoint))

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._stats["accuracy"]:
            logs["accuracy"] = float(np.mean(self._stats["accuracy"]))
            logs["margin"] = float(np.mean(self._stats["margin"]))
            self._stats = {"accuracy": [], "margin": []}
        super().log(logs, start_time)


def load_checkpoint_weights(model: torch.nn.Module, folder: Path) -> None:
    """Load a checkpoint written by ``PairTrainer._save`` into ``model`` in place: a peft model's
    adapter (and saved modules), or full safetensors weights (tied weights may be absent)."""
    from safetensors.torch import load_file

    adapter = folder / "adapter_model.safetensors"
    if hasattr(model, "peft_config"):
        from peft import set_peft_model_state_dict

        if not adapter.is_file():
            raise RewardkitError(f"{folder}: no adapter_model.safetensors to resume a LoRA run from")
        set_peft_model_state_dict(model, load_file(adapter), adapter_name=model.active_adapter)
        return
    state: dict[str, torch.Tensor] = {}
    for f in sorted(folder.glob("model*.safetensors")):  # the weights, not a callback's own files
        state.update(load_file(f))
    if not state:
        raise RewardkitError(f"{folder}: no safetensors weights to resume from")
    missing, unexpected = model.load_state_dict(state, strict=False)
    ptrs = {t.data_ptr() for n, t in model.state_dict().items() if n in state}
    untied = [k for k in missing if model.state_dict()[k].data_ptr() not in ptrs]
    if unexpected or untied:
        raise RewardkitError(f"{folder}: checkpoint does not fit the model ({(unexpected + untied)[:3]})")


def checkpoint_root(out: str | os.PathLike | None, config: Any) -> Path | None:
    """Where training checkpoints go: ``OUT/checkpoints`` when the config saves them and there is an
    ``out``; they stay there beside the final model."""
    return Path(out) / "checkpoints" if out is not None and config.save_checkpoints else None


def prepare_run_dir(out: str | os.PathLike | None, config: Any, force: bool, resume: bool) -> None:
    """Before any work: refuse an existing ``out`` (unless ``force`` or ``resume``); ``resume`` needs a
    checkpoint to resume from."""
    if out is None:
        if resume:
            raise RewardkitError("resume needs out= (the folder whose checkpoints to resume)")
        return
    out = Path(out)
    if resume:
        root = checkpoint_root(out, config)
        if root is None:
            raise RewardkitError("resume needs save_checkpoints (the run's checkpoints)")
        if not has_complete_checkpoint(root):
            raise RewardkitError(f"{out}: no complete checkpoint to resume from under {root}")
    else:
        refuse_existing(out, force, hint=", or resume")


def run_phase(trainer: Trainer, output_dir: Path | None, resume: bool) -> None:
    """``trainer.train()``, resuming from the last complete checkpoint under ``output_dir`` when asked and
    one exists (a phase that already finished resumes to its end at once)."""
    last = None
    if resume and output_dir is not None and output_dir.is_dir():
        last = resume_checkpoint(trainer, output_dir)
    if last is not None:
        logger.warning("resuming from %s", last)
    trainer.train(resume_from_checkpoint=last)


def fresh_checkpoints(out: str | os.PathLike | None, config: Any, force: bool, resume: bool) -> Path | None:
    """:func:`checkpoint_root`, emptied of another run's checkpoints when ``force`` replaces that run."""
    root = checkpoint_root(out, config)
    if root is not None and force and not resume and root.exists():
        shutil.rmtree(root)
    return root


def train_phase(
    trainer_cls: type[PairTrainer],
    module: torch.nn.Module,
    config: Any,
    *,
    output_dir: Path | None,
    epochs: float,
    lr: float,
    train_dataset: Dataset,
    eval_dataset: Dataset | None,
    tokenizer: Any,
    callbacks: Sequence[Any] | None,
    resume: bool,
    **loss_settings: Any,
) -> PairTrainer:
    """One training phase of either trainer: TrainingArguments from the config, the pair collator and
    margin metrics, then :func:`run_phase` (checkpoints under ``output_dir``, else a scratch folder).
    ``loss_settings`` go to ``trainer_cls`` (beta, label smoothing, ...). Returns the trainer."""
    with tempfile.TemporaryDirectory(prefix="rewardkit-train-") as scratch:
        args = training_arguments(
            config,
            str(output_dir) if output_dir is not None else scratch,
            epochs=epochs,
            lr=lr,
            has_eval=eval_dataset is not None,
        )
        trainer = trainer_cls(
            model=module,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            data_collator=PairCollator(tokenizer.pad_token_id),
            processing_class=tokenizer,
            compute_metrics=margin_metrics,
            group_by_length=config.group_by_length,
            callbacks=list(callbacks or []),
            **loss_settings,
        )
        # a bf16 run on CPU: frozen weights in bf16, eager attention for short sequences (train/precision.py)
        on_cpu = cpu_bf16(args.bf16, args.device)
        n = longest(train_dataset, eval_dataset)
        with frozen_weights_in(module, torch.bfloat16, on_cpu), attention_for(module, n, on_cpu):
            run_phase(trainer, output_dir, resume)
    return trainer


def longest(*datasets: Dataset | None) -> int:
    """The longest sequence (tokens) of the :class:`PairDataset` s given (None: skipped; another kind
    of dataset: unknown, a large number)."""
    n = 0
    for ds in datasets:
        if ds is None:
            continue
        if not isinstance(ds, PairDataset):
            return 2**31
        n = max([n, *(len(it[k].ids) for it in ds.items for k in ("chosen", "rejected"))])
    return n


def margin_metrics(eval_pred) -> dict[str, float]:
    margins = np.asarray(eval_pred.predictions)
    return {"accuracy": pairwise_accuracy(margins), "margin": float(margins.mean())}


def use_bf16(config: Any) -> bool:
    """bf16 autocast: as the config says, else on CUDA when the GPU supports it (the Python default)."""
    if config.bf16 is not None:
        return config.bf16
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def auto_bf16() -> bool:
    """``--dtype auto`` for training: bf16 autocast wherever ``dtype="auto"`` scores in bfloat16 (a GPU
    that computes it natively, a CPU with hardware bf16 matmuls); docs/training.md has the measurements."""
    from rewardkit.dtypes import resolve_device, resolve_dtype

    return resolve_dtype("auto", resolve_device(None)) == torch.bfloat16


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
        save_strategy=("steps" if config.save_steps else "epoch") if config.save_checkpoints else "no",
        save_steps=config.save_steps or 500,
        eval_strategy="epoch" if has_eval else "no",
        remove_unused_columns=False,
        label_names=[],
        report_to=[],
        disable_tqdm=not show_progress(config.progress),
        use_cpu=not torch.cuda.is_available(),
        bf16=use_bf16(config),
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
        **extra,
    )
