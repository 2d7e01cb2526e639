"""Exact averaging of LoRA reward models (or LoRA DPO policies) trained on one base model."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from rewardkit.errors import ModelError
from rewardkit.io import atomic_dir
from rewardkit.manifest import lora_base
from rewardkit.merge.common import copy_model_files, lora_scaling, mismatch, provenance
from rewardkit.safetensors_io import CheckpointReader

PREFIX = "base_model.model."


def lora_delta(
    a: torch.Tensor, b: torch.Tensor, scaling: float, fan_in_fan_out: bool = False
) -> torch.Tensor:
    """DeltaW = scaling * B @ A. ``a``: [r, in], ``b``: [out, r] -> [out, in] (float32); transposed to
    [in, out] for layers that store their weight that way (GPT-2's Conv1D: ``fan_in_fan_out``)."""
    delta = scaling * (b.float() @ a.float())
    return delta.T if fan_in_fan_out else delta


def _untie_output_embeddings(model) -> bool:
    """Give a model whose LM head shares the input embedding its own head weight (a LoRA delta on the
    head must not change the embedding); returns whether it was tied."""
    out, emb = model.get_output_embeddings(), model.get_input_embeddings()
    if out is None or emb is None or out.weight.data_ptr() != emb.weight.data_ptr():
        return False
    out.weight = torch.nn.Parameter(out.weight.detach().clone())
    for cfg in {
        id(model.config): model.config,
        id(model.config.get_text_config()): model.config.get_text_config(),
    }.values():
        cfg.tie_word_embeddings = False
    return True


def average_lora(
    srcs: Sequence[Path],
    w: Sequence[float],
    manifests: Sequence[dict[str, Any]],
    out: Path,
    *,
    dtype: str | None,
    force: bool,
    base_model: str | Path | None = None,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """The exact average of LoRA members on one base, merged into the base (dense output). Every
    member's recorded base fingerprint is checked against the base (``base_model`` overrides its path)."""

    from rewardkit.checkpoints import check_base, check_model_folder

    configs = [json.loads((s / "adapter_config.json").read_text()) for s in srcs]
    scalings = [lora_scaling(c, s) for c, s in zip(configs, srcs)]
    if base_model is not None:
        base = str(Path(base_model).resolve())
    else:
        bases = [str(lora_base(s, m) or Path("").resolve()) for s, m in zip(srcs, manifests)]
        if len(set(bases)) > 1:
            raise ModelError(
                f"cannot merge: members were trained on different base models: {sorted(set(bases))}"
            )
        base = bases[0]
    if not Path(base).is_dir():
        raise ModelError(f"cannot merge: base model {base!r} not found (pass --base-model PATH)")
    check_model_folder(base, "base model")
    for s, m in zip(srcs, manifests):
        check_base(s, m.get("base_fingerprint"), base, required="base_fingerprint" in m)
    readers: list[CheckpointReader] = []
    try:
        for s in srcs:
            readers.append(CheckpointReader(s, stem="adapter_model"))
        return _average_adapters(srcs, w, manifests, out, readers, scalings, base, dtype, force, extra_files)
    finally:
        for r in readers:
            r.close()


def _dense_base(base, kind: str, num_labels: int):
    """The members' base model in float32, as the kind's HF class (a causal LM for implicit RMs, a
    sequence classifier with ``num_labels`` fresh heads otherwise: the heads come from the adapters)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from rewardkit.checkpoints import check_load_report, hf_load

    load = dict(dtype=torch.float32, use_safetensors=True, output_loading_info=True)
    if kind == "implicit":
        model, report = hf_load(AutoModelForCausalLM.from_pretrained, base, "base model", **load)
    else:
        model, report = hf_load(
            AutoModelForSequenceClassification.from_pretrained, base, "base model", num_labels=num_labels, **load
        )
    check_load_report(report, base, new_head=kind != "implicit", model=model)
    return model


def _average_adapters(srcs, w, manifests, out, readers, scalings, base, dtype, force, extra_files) -> Path:
    configs = [json.loads((s / "adapter_config.json").read_text()) for s in srcs]
    keys = set(readers[0].keys())
    for r, s in zip(readers[1:], srcs[1:]):
        if set(r.keys()) != keys:
            raise mismatch(f"{s} adapts different modules than {srcs[0]}", list(set(r.keys()) ^ keys))
    dense = [k for k in keys if ".lora_A." not in k and ".lora_B." not in k]
    bad = [k for k in dense for r in readers[1:] if r.meta(k) != readers[0].meta(k)]
    if bad:
        raise mismatch("reward heads / saved modules differ in shape", bad)
    kind = manifests[0].get("kind", "explicit")
    model = _dense_base(base, kind, manifests[0].get("num_heads") or 1)
    fan_in_fan_out = {bool(c.get("fan_in_fan_out")) for c in configs}
    if len(fan_in_fan_out) > 1:
        raise ModelError("cannot merge: members disagree on fan_in_fan_out")
    transposed = fan_in_fan_out.pop()
    head = model.get_output_embeddings()
    head_names = {n for n, m in model.named_modules() if head is not None and m is head}
    if any(k[len(PREFIX) : k.index(".lora_A.")] in head_names for k in keys if ".lora_A." in k):
        _untie_output_embeddings(model)  # the adapted head gets its own weight; the embedding is kept
    if "pad_token_id" in manifests[0]:  # where an explicit reward is read, as in training
        model.config.get_text_config().pad_token_id = manifests[0]["pad_token_id"]
    state = model.state_dict()
    with torch.no_grad():
        # saved modules first (reward heads; peft's copy of a targeted layer's base weight), then updates
        for k in sorted(k for k in keys if ".lora_A." not in k and ".lora_B." not in k):
            name = (k[len(PREFIX) :] if k.startswith(PREFIX) else k).replace(".base_layer.", ".")
            if name not in state:
                raise mismatch("saved module not found in the base model", [name])
            state[name].copy_(sum(wi * r.get_tensor(k).float() for wi, r in zip(w, readers)))
        for k in sorted(k for k in keys if ".lora_A." in k):
            module = k[len(PREFIX) : k.index(".lora_A.")]
            target = f"{module}.weight"
            if target not in state:
                raise mismatch("adapted module not found in the base model", [target])
            kb = k.replace(".lora_A.", ".lora_B.")
            delta = sum(
                wi * lora_delta(r.get_tensor(k), r.get_tensor(kb), s, transposed)
                for wi, r, s in zip(w, readers, scalings)
            )
            if delta.shape != state[target].shape:
                raise mismatch(
                    f"LoRA update of shape {tuple(delta.shape)} does not fit the base weight "
                    f"{tuple(state[target].shape)} (fan_in_fan_out={transposed})",
                    [target],
                )
            state[target] += delta.to(state[target].dtype)
    model.load_state_dict(state)
    if dtype is not None:
        model = model.to(getattr(torch, dtype))  # float32 / bfloat16 / float16, checked by the caller
    hashes = [hashlib.sha256((s / "adapter_model.safetensors").read_bytes()).hexdigest() for s in srcs]
    manifest = dict(manifests[0])
    if kind == "implicit" and not manifest.get("ref_model") and not manifest.get("reference_free"):
        manifest["ref_model"] = base  # the members' reference was their adapter-disabled base
    bad = [n for n, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise ModelError(f"merged tensor(s) {bad[:3]} hold NaN or infinite values; nothing written")
    with atomic_dir(out, force=force) as tmp:
        model.save_pretrained(tmp)
        copied = copy_model_files(srcs[0], tmp)
        model.config.save_pretrained(tmp)  # the dense model's config, not an adapter's
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
        provenance(tmp, srcs, w, hashes, manifest, dtype, lora=True, copied=sorted({*copied, "config.json"}))
    return out
