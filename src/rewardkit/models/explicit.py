"""Explicit Bradley-Terry reward models: a scalar head on an HF causal LM or encoder, full or LoRA.

The reward is read where Hugging Face's ``*ForSequenceClassification`` reads it (and so TRL, RewardBench
and vLLM): at the rightmost real token whose id is not the model's ``config.pad_token_id``. With a
tokenizer whose pad is its EOS and text that ends with EOS, that is the token before the EOS, in HF as
here. Position ids come from the attention mask, so left and right padding give the same rewards.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rewardkit import adapters
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
    quiet_transformers,
)
from rewardkit.dtypes import adapters_like_base, cast_like_loaded, dtype_name, resolve_device, resolve_dtype
from rewardkit.errors import ModelError
from rewardkit.io import atomic_dir, check_output, protect
from rewardkit.manifest import lora_base, write_manifest
from rewardkit.models.engine import EngineRewardModel
from rewardkit.models.sequence import HEAD_NAMES, SequenceRewardModule, reward_head, reward_index  # noqa: F401 (re-exported)
from rewardkit.scoring import Batch, EngineSettings, SharedBatch
from rewardkit.templating import ChatTemplateMode, Encoded, Formatter, Texts
from rewardkit.util import unwrap_peft

logger = logging.getLogger(__name__)


def init_head(model: nn.Module, seed: int) -> None:
    """Re-initialise the reward head from its own seed: N(0, 1/(d+1)) weights, zero bias.

    (The 1/sqrt(d_model + 1) scale follows Stiennon et al.'s reward models.) WARM's diversity grid
    needs the head seed apart from the data-order seed.
    """
    head = reward_head(model)
    if isinstance(head, nn.Module) and hasattr(head, "modules_to_save"):  # peft wrapper
        head = head.modules_to_save[
            head.active_adapter if isinstance(head.active_adapter, str) else "default"
        ]
    if not isinstance(head, nn.Linear):
        return
    g = torch.Generator().manual_seed(seed)
    std = 1.0 / math.sqrt(head.in_features + 1)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=g) * std)
        if head.bias is not None:
            head.bias.zero_()


def add_lora(
    model: nn.Module,
    r: int,
    lora_alpha: float | None = None,
    dropout: float = 0.0,
    target_modules: str | list[str] = "all-linear",
) -> nn.Module:
    """Wrap with LoRA on every linear layer of the backbone; the reward head is trained in full and saved."""
    return adapters.add_lora(model, r, lora_alpha, dropout, target_modules=target_modules, exclude=HEAD_NAMES)


class BradleyTerryRM(EngineRewardModel):
    """Explicit reward model r(x, y) = head(h_last(x, y)); trained with the Bradley-Terry loss."""

    kind = "explicit"

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        *,
        max_length: int | None = None,
        device=None,
        max_tokens: int | None = None,
        max_batch_size: int | None = None,
        base_model: str | None = None,
        progress: bool | None = None,
        chat_template: ChatTemplateMode = "auto",
    ):
        self.engine = EngineSettings(resolve_device(device), max_tokens, max_batch_size, progress)
        self.module = SequenceRewardModule(model).to(self.device).eval()
        self.tokenizer = tokenizer
        # encoders (head "classifier", pooled from the first token) read (prompt, response) as a text pair
        encoder = not hasattr(unwrap_peft(model), "score")
        self.formatter = Formatter(
            tokenizer, max_length, chat_template, pair_encoding=encoder, context=model_context(model)
        )
        self.source: str | None = None  # the folder it was loaded from, to name it in errors
        self.base_model = base_model
        self.adapter_names: list[str] = []  # several LoRA reward models over this one base (ensembles)

    @property
    def model(self) -> nn.Module:
        return self.module.model

    @property
    def is_lora(self) -> bool:
        return hasattr(self.model, "peft_config")

    @property
    def num_heads(self) -> int:
        return unwrap_peft(self.model).config.num_labels

    @property
    def num_members(self) -> int:
        """Reward columns this model produces: heads x LoRA adapters sharing the base."""
        return self.num_heads * max(1, len(self.adapter_names))

    def add_lora_members(self, paths: Sequence[str | os.PathLike]) -> None:
        """Load further LoRA reward models trained on the same base as extra adapters of this model:
        one copy of the base weights, one adapter (and head) per member."""
        if not self.is_lora:
            raise ModelError("add_lora_members needs a LoRA reward model")
        if not self.adapter_names:
            self.adapter_names = [self.model.active_adapter]
        from rewardkit.manifest import read_manifest

        for p in paths:
            check_model_folder(p, "LoRA reward model", weights=False)
            if self.base_model:
                man = read_manifest(p) or {}
                check_base(
                    p, man.get("base_fingerprint"), self.base_model, required="base_fingerprint" in man
                )
            name = f"member_{len(self.adapter_names)}"
            hf_load(lambda q, n=name: self.model.load_adapter(q, adapter_name=n), p, "LoRA adapter")
            check_adapter_keys(self.model, p, name)
            self.adapter_names.append(name)
        adapters_like_base(self.model, unwrap_peft(self.model).get_input_embeddings().weight.dtype)
        self.module.head_to_float32()
        self.model.set_adapter(self.adapter_names[0])
        self.module.to(self.device).eval()

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        *,
        lora_r: int | None = None,
        lora_alpha: float | None = None,
        lora_dropout: float = 0.0,
        head_seed: int = 0,
        dropout: float | None = None,
        dtype=None,
        device=None,
        max_length: int | None = None,
        trust_remote_code: bool = False,
        num_heads: int = 1,
        chat_template: ChatTemplateMode = "auto",
    ) -> BradleyTerryRM:
        """A new reward model on a pre-trained checkpoint (causal LM or encoder) with a freshly seeded head.

        ``num_heads > 1`` gives a multi-head model: one backbone pass, ``num_heads`` independently
        initialised reward heads (e.g. a linear-probe ensemble); ``score`` returns their mean and
        ``member_scores`` each head.
        """
        from transformers import AutoConfig, AutoModelForSequenceClassification

        dev = resolve_device(device)
        check_model_folder(path)
        tok = load_tokenizer(path, trust_remote_code)
        config = hf_load(
            AutoConfig.from_pretrained,
            path,
            "config",
            num_labels=num_heads,
            trust_remote_code=trust_remote_code,
        )
        config.pad_token_id = tok.pad_token_id  # as TRL does: HF reads the reward at the last non-pad token
        if dropout is not None:  # WARM diversity grid: one dropout knob across architectures
            for key in (
                "attention_dropout",
                "hidden_dropout",
                "resid_pdrop",
                "embd_pdrop",
                "attn_pdrop",
                "hidden_dropout_prob",
                "attention_probs_dropout_prob",
            ):
                if hasattr(config, key):
                    setattr(config, key, dropout)
        protect([path])
        with quiet_transformers():  # a new head is expected; anything else missing is refused below
            model, report = hf_load(
                AutoModelForSequenceClassification.from_pretrained,
                path,
                "model",
                config=config,
                dtype=resolve_dtype(dtype, dev),
                trust_remote_code=trust_remote_code,
                use_safetensors=True,
                output_loading_info=True,
            )
        check_load_report(report, path, new_head=True, model=model)
        init_head(model, head_seed)
        if lora_r:
            model = adapters.add_lora(  # LoRA's A matrices: seeded with the head
                model, lora_r, lora_alpha, lora_dropout, exclude=HEAD_NAMES, seed=head_seed
            )
        return cls(
            model,
            tok,
            max_length=max_length,
            device=dev,
            base_model=str(Path(path).resolve()),
            chat_template=chat_template,
        )

    @property
    def dtype(self) -> str:
        """The backbone's dtype (the head stays float32)."""
        return dtype_name(unwrap_peft(self.model).get_input_embeddings().weight.dtype)

    def to_dtype(self, dtype) -> BradleyTerryRM:
        cast_like_loaded(self.model, resolve_dtype(dtype, self.device))
        self.module.head_to_float32()
        return self

    def _rewards(self, batch: Batch) -> torch.Tensor:
        return self.module(batch.input_ids, batch.attention_mask)

    def _shared_rewards(self, batch: SharedBatch) -> torch.Tensor:
        return self.module.forward_shared(batch)

    def member_rows(self, texts: Texts, items: Sequence[Encoded] | None = None) -> np.ndarray:
        """[num_members, n] rewards: every head of every LoRA adapter; tokenised once (or pass ``items``
        from another model with the same ``formatter.encoding_key``)."""
        if items is None:
            items = texts.encode(self.formatter)
        self.module.eval()
        rows = []
        for name in self.adapter_names or [None]:
            if name is not None:
                self.model.set_adapter(name)
            shared = self._shared_rewards if self.module.can_share_prefix() else None
            r = self._run_engine(items, self._rewards, boundary=False, shared=shared)
            rows.extend(r.T if r.ndim == 2 else [r])
        if self.adapter_names:
            self.model.set_adapter(self.adapter_names[0])
        return np.stack(rows)

    def named_inputs(self) -> list[Path]:
        return [Path(p) for p in (self.source, self.base_model if self.is_lora else None) if p]

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "lora": self.is_lora,
            "base_model": self.base_model,
            "heads": self.num_heads,
            "max_tokens": self.engine.max_tokens,
        }

    def merged(self) -> BradleyTerryRM:
        """A copy of a LoRA model with the (active) adapter folded into dense weights: it saves as a full
        checkpoint that needs no base model. A model without LoRA is returned as it is."""
        if not self.is_lora:
            return self
        import copy

        rm = BradleyTerryRM(
            copy.deepcopy(self.model).merge_and_unload(),
            self.tokenizer,
            max_length=self.formatter.max_length,
            device=self.device,
            chat_template=self.formatter.chat_template,
        )
        rm.engine, rm.source = self.engine, self.source
        return rm

    def _write(self, path: str | os.PathLike, *, force: bool, keep: Sequence[str] = ()) -> None:
        """An HF checkpoint (safetensors) + tokenizer + manifest (the active adapter only): a LoRA model
        saves its adapter and the full head (it needs its base model to load; :meth:`merged` does not)."""
        model = self.model
        lora = self.is_lora
        check_finite_weights(model, self.source or "reward model")
        check_output(path, self.named_inputs(), "reward model output")
        with atomic_dir(path, force=force, keep=keep) as tmp:
            model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            write_manifest(
                tmp,
                self._manifest(
                    lora=lora,
                    base_model=self.base_model if lora else None,
                    max_length=self.formatter.max_length,
                    chat_template=self.formatter.chat_template,
                    num_heads=self.num_heads,
                    pad_token_id=unwrap_peft(model).config.get_text_config().pad_token_id,
                    base_fingerprint=base_fingerprint(self.base_model) if lora and self.base_model else None,
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
        base_model: str | None = None,
        trust_remote_code: bool = False,
        load_member: Any = None,  # holds no other model
        **kwargs: Any,
    ) -> BradleyTerryRM:
        from transformers import AutoModelForSequenceClassification

        dev = resolve_device(device)
        check_model_folder(path, "reward model", weights=not manifest.get("lora"))
        tok = load_tokenizer(path, trust_remote_code)
        load = dict(
            dtype=resolve_dtype(dtype, dev), trust_remote_code=trust_remote_code, use_safetensors=True
        )
        if manifest.get("lora"):
            from peft import PeftModel

            found = lora_base(path, manifest, base_model)
            base = None if found is None else str(found)
            if not base or not Path(base).is_dir():
                raise ModelError(
                    f"{path}: LoRA reward model needs its base model, not found at {base!r} "
                    "(pass --base-model PATH / base_model=...)"
                )
            check_model_folder(base, "base model")
            check_base(path, manifest.get("base_fingerprint"), base, required="base_fingerprint" in manifest)
            with quiet_transformers():  # the head comes from the adapter (checked below)
                model, report = hf_load(
                    AutoModelForSequenceClassification.from_pretrained,
                    base,
                    "base model",
                    num_labels=manifest.get("num_heads") or 1,
                    output_loading_info=True,
                    **load,
                )
            check_load_report(report, base, new_head=True, model=model)
            if "pad_token_id" in manifest:  # the id the reward was read at in training
                model.config.get_text_config().pad_token_id = manifest["pad_token_id"]
            model = hf_load(lambda p: PeftModel.from_pretrained(model, p), path, "LoRA adapter")
            check_adapter_keys(model, path)
            adapters_like_base(model, load["dtype"])
        else:
            model, report = hf_load(
                AutoModelForSequenceClassification.from_pretrained,
                path,
                "reward model",
                output_loading_info=True,
                **load,
            )
            check_load_report(report, path)
            base = None
        rm = cls(
            model,
            tok,
            max_length=manifest.get("max_length"),
            device=dev,
            base_model=base,
            chat_template=manifest.get("chat_template", "auto"),
            **kwargs,
        )
        rm.source = str(path)
        return rm
