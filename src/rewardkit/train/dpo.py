"""DPO training on ``transformers.Trainer``; the trained policy is saved as a :class:`DPOImplicitRM`.

The reference log-probs of every pair are computed once before training (with a separate frozen
reference, or with the LoRA adapter disabled, or with the untouched starting weights), so no reference
copy stays in memory while the policy trains.

One precision rule for policy and reference: the reference pass runs under the same autocast as the
policy's training forward (bf16 on CUDA), so at step 0 the policy's log-ratios are exactly zero; the
returned model's policy and reference are in one dtype, the dtype ``load_reward_model`` gives the saved
model, so the returned model scores as the reloaded one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rewardkit.adapters import add_lora
from rewardkit.checkpoints import load_tokenizer, model_context
from rewardkit.data import as_pairs
from rewardkit.dtypes import resolve_device, resolve_dtype
from rewardkit.locks import hold_output
from rewardkit.logprobs import DEFAULT_CHUNK, sequence_logprobs, verify_logits
from rewardkit.models.implicit import DPOImplicitRM, adapter_disabled, load_causal_lm
from rewardkit.scoring import run_batches
from rewardkit.templating import Formatter
from rewardkit.train.config import DPOTrainingConfig
from rewardkit.train.losses import dpo_loss
from rewardkit.train.pairs import (
    PairDataset,
    PairTrainer,
    fresh_checkpoints,
    longest,
    prepare_run_dir,
    train_phase,
    use_bf16,
)
from rewardkit.train.precision import attention_for, cpu_bf16, frozen_weights_in
from rewardkit.train.result import Trained, TrainingRecord

logger = logging.getLogger(__name__)


class PolicyModule(nn.Module):
    """``forward(input_ids, attention_mask, response_start) -> ([B], [B])``: summed response log-probs
    (nats) and response lengths (tokens)."""

    def __init__(self, model: nn.Module, chunk_size: int | None = DEFAULT_CHUNK):
        super().__init__()
        self.model = model
        self.chunk_size = chunk_size

    @property
    def config(self):
        return self.model.config

    def forward(
        self, input_ids, attention_mask, response_start, **_: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return sequence_logprobs(self.model, input_ids, attention_mask, response_start, self.chunk_size)


class DPOTrainer(PairTrainer):
    def __init__(self, *args, beta: float, loss_type: str, label_smoothing: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.beta, self.loss_type, self.label_smoothing = beta, loss_type, label_smoothing

    def pair_loss(self, model, inputs):
        logps, lengths = model(
            inputs["input_ids"], inputs["attention_mask"], inputs["response_start"]
        )  # [2B]
        chosen, rejected = logps.chunk(2)
        len_c, len_r = lengths.chunk(2)
        losses, r_c, r_r = dpo_loss(
            chosen,
            rejected,
            inputs["ref_chosen"],
            inputs["ref_rejected"],
            self.beta,
            self.loss_type,
            self.label_smoothing,
            len_c,
            len_r,
        )
        return losses.mean(), r_c, r_r


def _add_reference_logprobs(ds: PairDataset, model: nn.Module, pad_id: int, device, bf16: bool) -> None:
    """Reference log-probs of every sequence, under the autocast the policy trains with."""
    seqs = [it["chosen"] for it in ds.items] + [it["rejected"] for it in ds.items]
    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16)
    with adapter_disabled(model), autocast:
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


def _starting_policy(model, config: DPOTrainingConfig, device) -> nn.Module:
    """The causal LM at ``model`` in float32 (with a fresh LoRA adapter when ``lora_r``), its logits
    checked to be the LM head's (:func:`~rewardkit.logprobs.verify_logits`)."""
    policy = load_causal_lm(model, device, torch.float32)
    if config.lora_r:
        policy = add_lora(
            policy, config.lora_r, config.lora_alpha, config.lora_dropout, task="CAUSAL_LM", seed=config.seed
        )
    verify_logits(policy)
    return policy


def _implicit_rm(policy, tok, model, ref_model, config: DPOTrainingConfig, device) -> DPOImplicitRM:
    """The trained policy's implicit reward against its reference: the ``ref_model`` checkpoint, else
    the starting policy (for LoRA: the base with the adapter disabled, so no second copy is loaded)."""
    ref_path = (
        str(Path(ref_model).resolve())
        if ref_model is not None
        else (None if config.lora_r else str(Path(model).resolve()))
    )
    return DPOImplicitRM(
        policy,
        load_causal_lm(ref_path, device, torch.float32) if ref_path is not None else None,
        tok,
        beta=config.beta,
        reduction=config.reduction,
        max_length=config.max_length,
        device=device,
        ref_model_path=ref_path,
        chat_template=config.chat_template,
    )


def train_dpo(
    model: str | os.PathLike,
    train_data: Any,
    *,
    ref_model: str | os.PathLike | None = None,
    eval_data: Any = None,
    out: str | os.PathLike | None = None,
    config: DPOTrainingConfig | None = None,
    force: bool = False,
    resume: bool = False,
    callbacks: Sequence[Any] | None = None,
    **overrides: Any,
) -> Trained[DPOImplicitRM]:
    """DPO-train the causal LM at ``model``; returns :class:`~rewardkit.train.result.Trained`: its implicit
    reward model (``.model``) and the run's record (``.record``).

    ``ref_model``: a frozen reference checkpoint (TRL's name); default: the starting policy itself (for LoRA, the
    base with the adapter disabled). With ``out``, saves a folder that ``load_reward_model`` restores as a
    ``DPOImplicitRM`` recording the reference, beta and reduction. Checkpoints (``save_checkpoints``),
    ``resume``, ``callbacks`` and the lock on ``out`` work as in :func:`~rewardkit.train.train_reward_model`.
    """
    config = DPOTrainingConfig.model_validate({**(config or DPOTrainingConfig()).model_dump(), **overrides})
    with hold_output(out):  # one writer per output (the CLI's command holds it already: passed through)
        return _train(model, train_data, ref_model, eval_data, out, config, force, resume, callbacks)


def _train(
    model: str | os.PathLike,
    train_data: Any,
    ref_model: str | os.PathLike | None,
    eval_data: Any,
    out: str | os.PathLike | None,
    config: DPOTrainingConfig,
    force: bool,
    resume: bool,
    callbacks: Sequence[Any] | None,
) -> Trained[DPOImplicitRM]:
    """:func:`train_dpo` once its config is valid and its output is held."""
    prepare_run_dir(out, config, force, resume)
    train_pairs = as_pairs(train_data)
    eval_pairs = as_pairs(eval_data) if eval_data is not None else None
    device = resolve_device(None)
    tok = load_tokenizer(model)
    policy = _starting_policy(model, config, device)
    formatter = Formatter(tok, config.max_length, config.chat_template, context=model_context(policy))
    datasets = [PairDataset(train_pairs, formatter, boundary=True)] + (
        [PairDataset(eval_pairs, formatter, boundary=True)] if eval_pairs else []
    )
    bf16 = use_bf16(config)
    # one precision for the reference pass and training: on CPU in bf16 the frozen weights are stored
    # in bf16 and short runs attend eagerly, from the reference pass to the end of training
    # (train/precision.py)
    on_cpu, n = cpu_bf16(bf16, device), longest(*datasets)  # train_phase's rule: train and eval
    with frozen_weights_in(policy, torch.bfloat16, on_cpu), attention_for(policy, n, on_cpu):
        frozen = (
            load_causal_lm(ref_model, device, torch.float32).requires_grad_(False)  # inference only
            if ref_model is not None
            else policy
        )
        separate = on_cpu and frozen is not policy
        with frozen_weights_in(frozen, torch.bfloat16, separate), attention_for(frozen, n, separate):
            for ds in datasets:
                _add_reference_logprobs(ds, frozen, tok.pad_token_id, device, bf16)
        del frozen
        trainer = train_phase(
            DPOTrainer,
            PolicyModule(policy).train(),
            config,
            output_dir=fresh_checkpoints(out, config, force, resume),
            epochs=config.epochs,
            lr=config.lr,
            train_dataset=datasets[0],
            eval_dataset=datasets[1] if eval_pairs else None,
            tokenizer=tok,
            callbacks=callbacks,
            resume=resume,
            beta=config.beta,
            loss_type=config.loss,
            label_smoothing=config.label_smoothing,
        )
    rm = _implicit_rm(policy.eval(), tok, model, ref_model, config, device)
    if out is not None and trainer.is_world_process_zero():
        rm._write(out, force=True, keep=("checkpoints",))  # in the trained (fp32) precision
    if resolve_dtype(config.dtype, device) != torch.float32:  # as load_reward_model would give it back
        rm.to_dtype(config.dtype)
    record = TrainingRecord(
        world_size=trainer.args.world_size,
        optimizer_steps=trainer.state.global_step,
        train_pairs=len(datasets[0]),
        first_loss=trainer.first_loss,
        config=config.model_dump(),
        log_history=trainer.state.log_history,
    )
    return Trained(rm, record)
