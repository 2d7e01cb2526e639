"""DPO implicit reward models: r(x, y) = beta * (log pi(y|x) - log pi_ref(y|x)).

Response tokens follow the shared token convention (``rewardkit.templating``, TRL's): the tokens of the
whole sequence after its common prefix with the tokenised prompt (with the generation prompt when
templated), EOS / end-of-turn tokens included; a pair's two responses share one boundary, so
``score_pairs`` equals ``DPOTrainer``'s ``rewards/chosen`` and ``rewards/rejected``. ``reduction="sum"`` sums the per-token log-ratio; ``"mean"`` divides by the response length.
``reference_free=True`` drops the reference (r = beta * log pi(y|x)), as RewardBench offers.

A LoRA policy whose reference is its own base model needs no second copy of the weights: the reference
pass runs through the same modules with the adapter disabled.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from rewardkit.backbone import can_share_prefix
from rewardkit.checkpoints import (
    base_fingerprint,
    check_adapter_keys,
    check_base,
    check_finite_weights,
    check_load_report,
    check_model_folder,
    hf_load,
    load_tokenizer,
    model_context,
)
from rewardkit.dtypes import adapters_like_base, cast_like_loaded, dtype_name, resolve_device, resolve_dtype
from rewardkit.errors import ModelError
from rewardkit.io import atomic_dir, check_output, protect
from rewardkit.logprobs import DEFAULT_CHUNK, sequence_logprobs, shared_sequence_logprobs, verify_logits
from rewardkit.manifest import lora_base, named_folder, write_manifest
from rewardkit.models.engine import EngineRewardModel
from rewardkit.scoring import Batch, EngineSettings, SharedBatch
from rewardkit.templating import ChatTemplateMode, Encoded, Formatter, Texts

Reduction = Literal["sum", "mean"]


def is_adapter_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def load_causal_lm(
    path: str | os.PathLike,
    device: torch.device,
    dtype=None,
    trust_remote_code: bool = False,
    base_model: str | os.PathLike | None = None,
    fingerprint: str | None = None,
    fingerprint_required: bool = False,
):
    """A causal LM from a full checkpoint, or base + LoRA adapter from an adapter folder (the base from
    ``base_model``, else the adapter's config; checked against ``fingerprint`` when recorded, and
    refused without one when ``fingerprint_required``). Its tensors must be exactly the architecture's
    (:func:`rewardkit.checkpoints.check_load_report`); its folders join the run's inputs."""
    from transformers import AutoModelForCausalLM

    path = check_model_folder(path, "model", weights=not is_adapter_dir(path))
    protect([p for p in (Path(path).resolve(), lora_base(path, override=base_model)) if p is not None])
    dt = resolve_dtype(dtype, device)
    load = dict(dtype=dt, trust_remote_code=trust_remote_code, use_safetensors=True, output_loading_info=True)
    if is_adapter_dir(path):
        from peft import PeftModel

        base = lora_base(path, override=base_model)
        if base is None or not base.is_dir():
            raise ModelError(
                f"{path}: LoRA adapter needs its base model, not found at {base!r} (pass --base-model PATH)"
            )
        check_model_folder(base, "base model")
        protect([base])  # the base actually loaded (an override or the adapter's own record)
        check_base(path, fingerprint, base, required=fingerprint_required)
        model, report = hf_load(AutoModelForCausalLM.from_pretrained, base, "base model", **load)
        check_load_report(report, base)
        model = hf_load(lambda p: PeftModel.from_pretrained(model, p), path, "LoRA adapter")
        check_adapter_keys(model, path)
        adapters_like_base(model, dt)
    else:
        model, report = hf_load(AutoModelForCausalLM.from_pretrained, path, "model", **load)
        check_load_report(report, path)
    return model.to(device).eval()


def adapter_disabled(model: nn.Module):
    """Context in which a peft model runs as its base model (no-op for plain models)."""
    return model.disable_adapter() if hasattr(model, "disable_adapter") else nullcontext()


class DPOImplicitRM(EngineRewardModel):
    """Implicit reward of a DPO policy against a reference model.

    ``ref_model=None`` with a LoRA (peft) policy means "the policy's base model, adapter disabled".
    """

    kind = "implicit"

    def __init__(
        self,
        policy: nn.Module,
        ref_model: nn.Module | None,
        tokenizer,
        *,
        beta: float,
        reduction: Reduction = "sum",
        reference_free: bool = False,
        max_length: int | None = None,
        device=None,
        max_tokens: int | None = None,
        max_batch_size: int | None = None,
        chunk_size: int | None = DEFAULT_CHUNK,
        ref_model_path: str | None = None,
        progress: bool | None = None,
        chat_template: ChatTemplateMode = "auto",
    ):
        if reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
        if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta > 0):
            raise ValueError(f"beta must be a positive finite number, got {beta}")
        if ref_model is None and not reference_free and not hasattr(policy, "disable_adapter"):
            raise ModelError("a full (non-LoRA) policy needs a reference model (ref_model=), or reference_free=True")
        self.engine = EngineSettings(resolve_device(device), max_tokens, max_batch_size, progress)
        self.policy = policy.to(self.device).eval()
        self.ref_model = ref_model.to(self.device).eval() if ref_model is not None else None
        if self.ref_model is not None:
            p_dtype, r_dtype = next(self.policy.parameters()).dtype, next(self.ref_model.parameters()).dtype
            if p_dtype != r_dtype:  # one dtype rule: identical weights must give a zero reward
                raise ModelError(f"policy is {p_dtype} but reference is {r_dtype}: load both in one dtype")
        for m in (self.policy, self.ref_model):
            if m is not None:
                verify_logits(m)
        self.tokenizer = tokenizer
        self.formatter = Formatter(tokenizer, max_length, chat_template, context=model_context(self.policy))
        self.source: str | None = None  # the folder it was loaded from, to name it in errors
        self.beta, self.reduction, self.reference_free = float(beta), reduction, reference_free
        self.chunk_size, self.ref_model_path = chunk_size, ref_model_path

    @property
    def is_lora(self) -> bool:
        return hasattr(self.policy, "peft_config")

    @classmethod
    def from_pretrained(
        cls,
        policy: str | os.PathLike,
        ref_model: str | os.PathLike | None = None,
        *,
        beta: float = 0.1,
        reduction: Reduction = "sum",
        reference_free: bool = False,
        device=None,
        dtype=None,
        max_length: int | None = None,
        trust_remote_code: bool = False,
        chat_template: ChatTemplateMode = "auto",
        base_model: str | os.PathLike | None = None,
        base_fingerprint: str | None = None,
        fingerprint_required: bool = False,
        **kwargs: Any,
    ) -> DPOImplicitRM:
        """From any two causal LMs (no training needed), or a LoRA policy folder alone (reference = its
        base; ``base_model`` overrides where the base is)."""
        dev = resolve_device(device)
        pol = load_causal_lm(
            policy, dev, dtype, trust_remote_code, base_model, base_fingerprint, fingerprint_required
        )
        ref = (
            None
            if ref_model is None or reference_free
            else load_causal_lm(ref_model, dev, dtype, trust_remote_code)
        )
        return cls(
            pol,
            ref,
            load_tokenizer(policy, trust_remote_code),
            beta=beta,
            reduction=reduction,
            reference_free=reference_free,
            max_length=max_length,
            device=dev,
            ref_model_path=str(Path(ref_model).resolve()) if ref is not None else None,
            chat_template=chat_template,
            **kwargs,
        )

    def logprobs(self, batch: Batch | SharedBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(policy log-prob sums, reference log-prob sums, response lengths), each [B] (float32; a
        prefix-shared batch runs each prompt once per model)."""
        if isinstance(batch, SharedBatch):

            def run(m):
                return shared_sequence_logprobs(m, batch, self.chunk_size)
        else:
            args = (batch.input_ids, batch.attention_mask, batch.response_start, self.chunk_size)

            def run(m):
                return sequence_logprobs(m, *args)

        pi, n = run(self.policy)
        if self.reference_free:
            ref = torch.zeros_like(pi)
        elif self.ref_model is None:
            with adapter_disabled(self.policy):
                ref, _ = run(self.policy)
        else:
            ref, _ = run(self.ref_model)
        return pi, ref, n

    def can_share_prefix(self) -> bool:
        """Whether prompts can run once per group (policy and reference take a cache)."""
        return all(can_share_prefix(m) for m in (self.policy, self.ref_model) if m is not None)

    def _rewards(self, batch: Batch | SharedBatch) -> torch.Tensor:
        pi, ref, n = self.logprobs(batch)
        diff = pi - ref
        if self.reduction == "mean":
            diff = diff / n.clamp(min=1)
        return self.beta * diff

    def member_rows(self, texts: Texts, items: Sequence[Encoded] | None = None) -> np.ndarray:
        """[1, n] rewards; ``items`` may come from another model with the same ``formatter.encoding_key``."""
        if items is None:
            items = texts.encode(self.formatter)
        shared = self._rewards if self.can_share_prefix() else None
        return self._run_engine(items, self._rewards, shared=shared)[None]

    def _base_path(self) -> str | None:
        base = getattr(self.policy, "peft_config", {}).get("default")
        return base.base_model_name_or_path if base is not None else None

    def named_inputs(self) -> list[Path]:
        return [Path(p) for p in (self.source, self.ref_model_path, self._base_path()) if p]

    @property
    def dtype(self) -> str:
        """The policy's dtype (the reference is always in the same one)."""
        return dtype_name(next(self.policy.parameters()).dtype)

    def to_dtype(self, dtype) -> DPOImplicitRM:
        scoring = resolve_dtype(dtype, self.device)
        for model in (self.policy, self.ref_model):
            if model is not None:
                cast_like_loaded(model, scoring)
        return self

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "beta": self.beta,
            "reduction": self.reduction,
            "reference_free": self.reference_free,
            "ref_model": self.ref_model_path,
            "lora": self.is_lora,
            "max_tokens": self.engine.max_tokens,
        }

    def _write(self, path: str | os.PathLike, *, force: bool, keep: Sequence[str] = ()) -> None:
        """Policy (LoRA adapter or full weights, safetensors) + tokenizer + manifest recording beta,
        reduction and the reference (a path, or ``null`` = the LoRA policy's base)."""
        if self.ref_model is not None and not self.ref_model_path:
            raise ModelError("cannot save: the reference model has no path on disk (set ref_model_path)")
        base_path = self._base_path()
        base_path = str(Path(base_path).resolve()) if base_path and Path(base_path).is_dir() else base_path
        check_finite_weights(self.policy, self.source or "DPO policy")
        check_output(path, self.named_inputs(), "reward model output")
        with atomic_dir(path, force=force, keep=keep) as tmp:
            self.policy.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            write_manifest(
                tmp,
                self._manifest(
                    beta=self.beta,
                    reduction=self.reduction,
                    reference_free=self.reference_free,
                    ref_model=self.ref_model_path,
                    lora=self.is_lora,
                    max_length=self.formatter.max_length,
                    chat_template=self.formatter.chat_template,
                    base_model=base_path,
                    base_fingerprint=base_fingerprint(base_path)
                    if base_path and Path(base_path).is_dir()
                    else None,
                ),
            )

    @classmethod
    def _load(
        cls,
        path: Path,
        manifest: dict[str, Any],
        *,
        device=None,
        dtype=None,
        trust_remote_code: bool = False,
        base_model: str | os.PathLike | None = None,
        load_member: Any = None,  # holds no other model
        **kwargs: Any,
    ) -> DPOImplicitRM:
        ref = manifest.get("ref_model")
        if ref is not None:
            ref = named_folder(path, "ref_model", ref)
            if not ref.exists():
                raise ModelError(f"{path}: reference model not found at {str(ref)!r}")
        rm = cls.from_pretrained(
            path,
            ref,
            beta=manifest["beta"],
            reduction=manifest.get("reduction", "sum"),
            reference_free=manifest.get("reference_free", False),
            device=device,
            dtype=dtype,
            max_length=manifest.get("max_length"),
            trust_remote_code=trust_remote_code,
            chat_template=manifest.get("chat_template", "auto"),
            base_model=base_model,
            base_fingerprint=manifest.get("base_fingerprint"),
            fingerprint_required=bool(manifest.get("lora")) and "base_fingerprint" in manifest,
            **kwargs,
        )
        rm.source = str(path)
        return rm
