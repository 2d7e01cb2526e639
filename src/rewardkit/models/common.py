"""Device, dtype and loading helpers shared by the model kinds.

Loading is safe and its failures are one line: a model folder is checked before transformers reads it
(it exists, ``config.json`` is JSON, every safetensors file has a sound header and is not truncated,
tokenizer files are there), weights are read from safetensors only (a ``.bin`` pickle is never
unpickled), ``trust_remote_code`` is off unless asked, and whatever transformers still raises while
loading is reported as a :class:`~rewardkit.errors.ModelError` naming the folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rewardkit.errors import ModelError
from rewardkit.templating import prepare_tokenizer
from rewardkit.util import TOKENIZER_FILES, unwrap_peft

if TYPE_CHECKING:
    import torch


def check_model_folder(path: str | os.PathLike, what: str = "model", weights: bool = True) -> Path:
    """Refuse, with one line naming the file, a model folder transformers would fail on obscurely."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: {what} folder not found (rewardkit loads local model folders)")
    if not path.is_dir():
        raise ModelError(f"{path}: is a file, expected a {what} folder")
    for name in ("config.json", "adapter_config.json"):
        f = path / name
        if f.is_file():
            try:
                cfg = json.loads(f.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ModelError(f"{f}: invalid JSON ({e})") from None
            if not isinstance(cfg, dict):
                raise ModelError(f"{f}: expected a JSON object")
    if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
        raise ModelError(f"{path}: no config.json: not a model folder")
    if weights:
        from rewardkit.safetensors_io import read_header

        files = sorted(path.glob("*.safetensors"))
        if not files:
            pickled = sorted(p.name for p in path.glob("*.bin"))
            raise ModelError(
                f"{path}: no safetensors weights"
                + (f" (only {', '.join(pickled)}: rewardkit never unpickles weight files)" if pickled else "")
            )
        for f in files:
            read_header(f)
    return path


def hf_load(fn: Callable[..., Any], path: str | os.PathLike, what: str, **kwargs: Any) -> Any:
    """``fn(path, **kwargs)`` (a transformers / peft ``from_pretrained``) with its failures reported as one
    ModelError line naming the folder."""
    try:
        return fn(str(path), **kwargs)
    except ModelError:
        raise
    except (
        OSError,
        ValueError,
        KeyError,
        TypeError,
        RuntimeError,
        AttributeError,
        json.JSONDecodeError,
    ) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ModelError(f"{path}: cannot load the {what} ({type(e).__name__}: {first[:300]})") from None


def resolve_device(device=None) -> torch.device:
    """``device`` as given; by default this process's GPU (``LOCAL_RANK`` under torchrun / accelerate, so
    every rank works on its own GPU instead of all on cuda:0), else the CPU."""
    import torch

    if device is None:
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % max(1, torch.cuda.device_count()))
    return torch.device(device)


def resolve_dtype(dtype, device: torch.device) -> torch.dtype:
    """fp32 on CPU (bf16 matmul is hundreds of times slower there), bf16 on CUDA, unless asked."""
    import torch

    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        try:
            return {
                "float32": torch.float32,
                "fp32": torch.float32,
                "bfloat16": torch.bfloat16,
                "bf16": torch.bfloat16,
                "float16": torch.float16,
                "fp16": torch.float16,
            }[dtype]
        except KeyError:
            raise ValueError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16") from None
    return dtype


def load_tokenizer(path: str | os.PathLike, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    path = Path(path)
    if path.is_dir() and not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise ModelError(
            f"{path}: no tokenizer files (expected one of {', '.join(TOKENIZER_FILES[:4])}, ...)"
        )
    tok = hf_load(AutoTokenizer.from_pretrained, path, "tokenizer", trust_remote_code=trust_remote_code)
    return prepare_tokenizer(tok)


@contextmanager
def quiet_transformers():
    """Silence transformers' expected warnings (e.g. a freshly initialised reward head)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def cast_like_loaded(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Cast a model in place to ``dtype`` the way loading it in ``dtype`` would: floating parameters
    only (buffers such as rotary ``inv_freq`` keep their dtype, as ``from_pretrained`` leaves them),
    modules the model keeps in float32 stay so, and a peft model's adapter weights stay in float32, as
    ``PeftModel.from_pretrained`` keeps them (``autocast_adapter_dtype``)."""
    inner = unwrap_peft(model)
    keep = set(getattr(inner, "_keep_in_fp32_modules", None) or []) | set(
        getattr(inner, "_keep_in_fp32_modules_strict", None) or []
    )
    for name, param in model.named_parameters():
        if param.is_floating_point() and not any(k in name.split(".") for k in keep):
            param.data = param.data.to(dtype)
    if hasattr(model, "peft_config"):
        from peft.tuners.tuners_utils import cast_adapter_dtype

        for name in model.peft_config:
            cast_adapter_dtype(model, name, autocast_adapter_dtype=True)
    return model


FINGERPRINT_SAMPLE = 4096  # bytes hashed from the start and from the middle of every tensor


def base_fingerprint(base: str | os.PathLike) -> str:
    """Identity of a base checkpoint from its weights, cheaply: xxh3-128 over every tensor's name, dtype,
    shape and two samples of its bytes (start and middle, 4 KB each). Two bases with the same shapes but
    other weights differ; re-saving the same weights (or a reformatted config) does not change it;
    reading is a few MB at most."""
    import xxhash

    from rewardkit.safetensors_io import read_header

    base = Path(base)
    h = xxhash.xxh3_128()
    entries = []
    for f in sorted(base.glob("*.safetensors")):
        n, header = read_header(f)
        entries += [(k, f, 8 + n, v) for k, v in header.items() if k != "__metadata__"]
    for k, f, data_start, v in sorted(entries, key=lambda e: e[0]):
        lo, hi = v["data_offsets"]
        h.update(f"{k}|{v['dtype']}|{v['shape']}".encode())
        with open(f, "rb") as fh:
            for at in (lo, lo + max(0, (hi - lo) // 2 - FINGERPRINT_SAMPLE // 2)):
                fh.seek(data_start + at)
                h.update(fh.read(min(FINGERPRINT_SAMPLE, hi - at)))
    return "xxh3-weights:" + h.hexdigest()


def _legacy_fingerprint(base: Path) -> str:
    """rewardkit 0.1's fingerprint (config and weight-file sizes only), to check models it saved."""
    import hashlib

    h = hashlib.sha256((base / "config.json").read_bytes() if (base / "config.json").is_file() else b"")
    for f in sorted(base.glob("*.safetensors")):
        h.update(f"{f.name}:{f.stat().st_size}".encode())
    return h.hexdigest()


def check_base(model_dir: str | os.PathLike, recorded: str | None, base: str | os.PathLike) -> None:
    """Refuse to put a LoRA adapter on another base than the one it was trained on, naming both paths."""
    if not recorded:
        return
    base = Path(base)
    actual = base_fingerprint(base) if recorded.startswith("xxh3-weights:") else _legacy_fingerprint(base)
    if actual != recorded:
        raise ModelError(
            f"{model_dir}: LoRA model was trained on another base model than {base} (its weights differ); "
            "pass the right one with --base-model PATH (base_model=...)"
        )


def model_context(model: torch.nn.Module) -> int | None:
    """The longest sequence the model's positions cover (``max_position_embeddings``), if it says."""
    inner = unwrap_peft(model)
    config = getattr(inner, "config", None)
    if config is None:
        return None
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    n = getattr(text, "max_position_embeddings", None)
    return int(n) if isinstance(n, int) and n > 0 else None


def check_finite_weights(model: torch.nn.Module, name: str) -> None:
    """Refuse to save a model with NaN or infinite weights (e.g. after a diverged run), naming the first
    tensors and the count."""
    import torch

    bad = []
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if p.is_floating_point():
                n = int((~torch.isfinite(p)).sum())
                if n:
                    bad.append(f"{pname} ({n} of {p.numel()})")
    if bad:
        raise ModelError(
            f"{name}: {len(bad)} weight tensor(s) hold NaN or infinite values: "
            + ", ".join(bad[:3])
            + (f", +{len(bad) - 3} more" if len(bad) > 3 else "")
            + "; nothing written"
        )
