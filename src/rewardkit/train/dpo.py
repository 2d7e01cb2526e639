"""DPO training on ``transformers.Trainer``; the trained policy is saved as a :class:`DPOImplicitRM`.

The reference log-probs of every pair are computed once before training (with a separate frozen
reference, or with the LoRA adapter disabled, or with the untouched starting weights), so no reference
copy stays in memory while the policy trains.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rewardkit.data import as_pairs
from rewardkit.errors import RewardkitError
from rewardkit.logprobs import DEFAULT_CHUNK, sequence_logprobs
from rewardkit.models.common import load_tokenizer, resolve_device
from rewardkit.models.implicit import DPOImplicitRM, adapter_disabled, load_causal_lm
from rewardkit.scoring import run_batches
from rewardkit.templating import Formatter
from rewardkit.train.config import DPOTrainingConfig
from rewardkit.train.losses import dpo_loss
from rewardkit.train.trainer import PairCollator, PairDataset, PairTrainer, margin_metrics, training_arguments

logger = logging.getLogger(__name__)


class PolicyModule(nn.Module):
    """``forward(input_ids, attention_mask, response_start) -> [B]`` summed response log-probs (nats)."""

    def __init__(self, model: nn.Module, chunk_size: int | None = DEFAULT_CHUNK):
        super().__init__()
        self.model = model
        self.chunk_size = chunk_size

    @property
    def config(self):
        return self.model.config

    def forward(self, input_ids, attention_mask, response_start, **_: Any) -> torch.Tensor:
        return sequence_logprobs(self.model, input_ids, attention_mask, response_start, self.chunk_size)[0]


class DPOTrainer(PairTrainer):
    def __init__(self, *args, beta: float, loss_type: str, label_smoothing: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.beta, self.loss_type, self.label_smoothing = beta, loss_type, label_smoothing

    def pair_loss(self, model, inputs):
        logps = model(inputs["input_ids"], inputs["attention_mask"], inputs["response_start"])  # [2B]
        chosen, rejected = logps.chunk(2)
        losses, r_c, r_r = dpo_loss(
            chosen,
            rejected,
            inputs["ref_chosen"],
            inputs["ref_rejected"],
            self.beta,
            self.loss_type,
            self.label_smoothing,
        )
        return losses.mean(), r_c, r_r

    def _save(self, output_dir: str | None = None, state_dict=None):
        output_dir = output_dir or self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        self.accelerator.unwrap_model(self.model).model.save_pretrained(output_dir, safe_serialization=True)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)


def _add_reference_logprobs(ds: PairDataset, model: nn.Module, pad_id: int, device) -> None:
    seqs = [it["chosen"] for it in ds.items] + [it["rejected"] for it in ds.items]
    with adapter_disabled(model):
        lp = run_batches(
            seqs,
            lambda b: sequence_logprobs(model, b.input_ids, b.attention_mask, b.response_start)[0],
            pad_id=pad_id,
            device=device,
            desc="reference log-probs",
        )
    n = len(ds.items)
    for i, it in enumerate(ds.items):
        it["ref_chosen"], it["ref_rejected"] = float(lp[i]), float(lp[n + i])


def train_dpo(
    model: str | os.PathLike,
    train_data: Any,
    *,
    reference: str | os.PathLike | None = None,
    eval_data: Any = None,
    out: str | os.PathLike | None = None,
    config: DPOTrainingConfig | None = None,
    force: bool = False,
    **overrides: Any,
) -> DPOImplicitRM:
    """DPO-train the causal LM at ``model`` and return its implicit reward model.

    ``reference``: a frozen reference checkpoint; default: the starting policy itself (for LoRA, the
    base with the adapter disabled). With ``out``, saves a folder that ``load_reward_model`` restores as a
    ``DPOImplicitRM`` recording the reference, beta and reduction.
    """
    config = DPOTrainingConfig.model_validate({**(config or DPOTrainingConfig()).model_dump(), **overrides})
    if out is not None and Path(out).exists() and not force:
        raise RewardkitError(f"{out}: already exists (pass force=True / --force to overwrite)")
    train_pairs = as_pairs(train_data)
    eval_pairs = as_pairs(eval_data) if eval_data is not None else None
    device = resolve_device(None)
    tok = load_tokenizer(model)
    policy = load_causal_lm(model, device, torch.float32)
    if config.lora_r:
        from peft import LoraConfig, TaskType, get_peft_model

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            policy = get_peft_model(
                policy,
                LoraConfig(
                    task_type=TaskType.CAUSAL_LM,
                    r=config.lora_r,
                    lora_dropout=config.lora_dropout,
                    lora_alpha=config.lora_alpha if config.lora_alpha is not None else 2 * config.lora_r,
                    target_modules="all-linear",
                ),
            )
    formatter = Formatter(tok, config.max_length)
    datasets = [PairDataset(train_pairs, formatter)] + (
        [PairDataset(eval_pairs, formatter)] if eval_pairs else []
    )
    ref_model = load_causal_lm(reference, device, torch.float32) if reference is not None else policy
    for ds in datasets:
        _add_reference_logprobs(ds, ref_model, tok.pad_token_id, device)
    del ref_model
    module = PolicyModule(policy).train()
    with tempfile.TemporaryDirectory(prefix="rewardkit-dpo-") as scratch:
        args = training_arguments(
            config,
            str(Path(out) / "checkpoints") if config.save_checkpoints and out else scratch,
            epochs=config.epochs,
            lr=config.lr,
            has_eval=eval_pairs is not None,
        )
        trainer = DPOTrainer(
            model=module,
            args=args,
            train_dataset=datasets[0],
            eval_dataset=datasets[1] if eval_pairs else None,
            data_collator=PairCollator(tok.pad_token_id),
            processing_class=tok,
            compute_metrics=margin_metrics,
            beta=config.beta,
            loss_type=config.loss,
            label_smoothing=config.label_smoothing,
            group_by_length=config.group_by_length,
        )
        trainer.train()
    policy.eval()
    ref_path = (
        str(Path(reference).resolve())
        if reference is not None
        else (None if config.lora_r else str(Path(model).resolve()))
    )
    ref_for_scoring = load_causal_lm(ref_path, device) if ref_path is not None else None
    rm = DPOImplicitRM(
        policy,
        ref_for_scoring,
        tok,
        beta=config.beta,
        reduction=config.reduction,
        max_length=config.max_length,
        device=device,
        reference_path=ref_path,
    )
    rm.training_info = {
        "world_size": trainer.args.world_size,
        "optimizer_steps": trainer.state.global_step,
        "train_pairs": len(datasets[0]),
        "config": config.model_dump(),
    }
    if out is not None and trainer.is_world_process_zero():
        rm.save(out, force=force)
    return rm
