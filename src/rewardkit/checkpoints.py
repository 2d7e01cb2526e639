"""Model folders on disk: checks before loading, load reports, base fingerprints, tokenizers.

Loading is safe and its failures are one line: a model folder is checked before transformers reads it
(it exists, ``config.json`` is JSON, every safetensors file has a sound header, is not truncated and
holds floating-point weights, tokenizer files are there), weights are read from safetensors only (a
``.bin`` pickle is never unpickled), ``trust_remote_code`` is off unless asked, the tensors loaded are
exactly those the architecture expects (:func:`check_load_report`: a missing or unexpected tensor is an
error, never a randomly initialised weight), and whatever transformers still raises while loading is
reported as a :class:`~rewardkit.errors.ModelError` naming the folder. Torch-free at import.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rewardkit.errors import ModelError
from rewardkit.safetensors_io import read_header
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
    adapter = (path / "adapter_config.json").is_file()
    files = sorted(path.glob("*.safetensors"))
    pickled = sorted(p.name for p in path.glob("*.bin"))
    never = f" (only {', '.join(pickled)}: rewardkit never unpickles weight files)" if pickled else ""
    if adapter and not (path / "adapter_model.safetensors").is_file():
        raise ModelError(f"{path}: LoRA adapter without adapter_model.safetensors{never}")
    if weights and not files:
        raise ModelError(f"{path}: no safetensors weights{never}")
    for f in files:
        check_weight_file(f)
    for index in path.glob("*.safetensors.index.json"):
        from rewardkit.safetensors_io import shard_files

        for name in shard_files(index):
            if not (path / name).is_file():
                raise ModelError(f"{index}: lists {name}, which is missing")
    return path


#: Parameter names (their last part) whose tensors a model's float weights are stored in.
PARAMETER_SUFFIXES = ("weight", "bias")
#: Causal-mask buffers older transformers saved (GPT-2 ``attn.bias``, GPT-NeoX ``attention.bias``,
#: GPT-J / Neo ``masked_bias``), boolean or uint8; transformers ignores them when loading.
MASK_BUFFERS = ("attn.bias", "attention.bias", "masked_bias")


def check_weight_file(file: Path) -> dict:
    """The validated header of one weight file (:func:`rewardkit.safetensors_io.read_header`), whose
    parameters (``*.weight``, ``*.bias``) are floating point: an integer or boolean dtype there is a
    mislabelled header (its bytes would be read as huge rewards), not a model."""
    from rewardkit.safetensors_io import FLOATS

    _, header = read_header(file)
    for k, v in header.items():
        if k == "__metadata__" or v["dtype"] in (*FLOATS, "F8_E4M3", "F8_E5M2"):
            continue
        if k.endswith(MASK_BUFFERS) and v["dtype"] in ("BOOL", "U8"):
            continue  # older transformers saved attention masks under *.bias names (dropped on load)
        if k.rsplit(".", 1)[-1] in PARAMETER_SUFFIXES:
            raise ModelError(
                f"{file}: tensor {k!r} is {v['dtype']}: a model's weights are floating point "
                f"({', '.join(FLOATS)})"
            )
    return header


def _shown(names) -> str:
    names = sorted(names)
    return ", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")


def check_load_report(
    report: dict[str, Any],
    path: str | os.PathLike,
    *,
    new_head: bool = False,
    model: Any = None,
) -> None:
    """Refuse a load whose tensors are not exactly the architecture's (transformers'
    ``output_loading_info``): a missing tensor would be scored with random weights, an unexpected one
    means the config and the weights disagree. ``new_head``: a pretrained base loaded under a fresh
    reward head may lack that head (``score`` / ``classifier``) and may hold the heads of its own
    pretraining task (an LM or MLM head) that the architecture drops; tensors of the backbone itself
    (``model``'s ``base_model_prefix``) must still match exactly."""
    heads = ("score.", "classifier.")
    missing = set(report.get("missing_keys") or ())
    unexpected = set(report.get("unexpected_keys") or ())
    if new_head:
        missing = {k for k in missing if not k.startswith(heads)}
        prefix = getattr(unwrap_peft(model), "base_model_prefix", None) if model is not None else None
        unexpected = {k for k in unexpected if prefix and k.startswith(f"{prefix}.")}
    mismatched = [str(m[0]) if isinstance(m, tuple) else str(m) for m in report.get("mismatched_keys") or ()]
    if missing:
        raise ModelError(
            f"{path}: {len(missing)} tensor(s) the architecture needs are not in the weights: {_shown(missing)} "
            "(they would be randomly initialised; is the checkpoint incomplete or config.json wrong?)"
        )
    if unexpected:
        raise ModelError(
            f"{path}: {len(unexpected)} tensor(s) in the weights are not in the architecture: "
            f"{_shown(unexpected)} (does config.json describe these weights?)"
        )
    if mismatched:
        raise ModelError(f"{path}: tensor(s) with shapes the architecture does not have: {_shown(mismatched)}")


def check_adapter_keys(model: Any, path: str | os.PathLike, adapter: str = "default") -> None:
    """Refuse a LoRA adapter folder whose ``adapter_model.safetensors`` lacks tensors its config makes
    (a missing ``lora_B`` or reward head would silently stay at its initial value) or holds others."""
    from peft.utils import get_peft_model_state_dict

    expected = set(get_peft_model_state_dict(model, adapter_name=adapter))
    _, header = read_header(Path(path) / "adapter_model.safetensors")
    present = set(header) - {"__metadata__"}
    check_load_report({"missing_keys": expected - present, "unexpected_keys": present - expected}, path)


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


def prepare_tokenizer(tokenizer):
    """Right padding, and a pad token when the tokenizer has none (EOS, else UNK), as TRL does.

    Padding positions are always known from the attention mask; an explicit reward is read at the last
    real token that is not the model's pad id (Hugging Face's rule, see ``models.explicit``).
    """
    if tokenizer.pad_token_id is None:
        fallback = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token
        if fallback is None:
            raise ModelError("tokenizer has no pad, eos or unk token to pad with")
        tokenizer.pad_token = fallback
    tokenizer.padding_side = "right"
    return tokenizer


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


FINGERPRINT_SAMPLE = 4096  # bytes per sample of rewardkit 0.2's sampled fingerprint (still checked)
_FINGERPRINTS: dict[tuple, str] = {}  # (folder, files with sizes and mtimes) -> fingerprint, per process


def _weight_entries(base: Path) -> list[tuple[str, Path, int, dict]]:
    entries = []
    for f in sorted(base.glob("*.safetensors")):
        n, header = read_header(f)
        entries += [(k, f, 8 + n, v) for k, v in header.items() if k != "__metadata__"]
    return sorted(entries, key=lambda e: e[0])


def base_fingerprint(base: str | os.PathLike) -> str:
    """Identity of a base checkpoint from its weights: xxh3-128 over every tensor's name, dtype, shape
    and all of its bytes, in name order. Two bases that differ in any weight differ; re-saving the same
    weights (or a reformatted config) does not change it. Computed once per process and folder state
    (a LoRA ensemble's members share one computation)."""
    import xxhash

    base = Path(base).resolve()
    state = tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(base.glob("*.safetensors")))
    key = (str(base), state)
    if key in _FINGERPRINTS:
        return _FINGERPRINTS[key]
    h = xxhash.xxh3_128()
    for k, f, data_start, v in _weight_entries(base):
        lo, hi = v["data_offsets"]
        h.update(f"{k}|{v['dtype']}|{v['shape']}".encode())
        with open(f, "rb") as fh:
            fh.seek(data_start + lo)
            left = hi - lo
            while left:
                chunk = fh.read(min(left, 16 * 2**20))
                if not chunk:
                    raise ModelError(f"{f}: truncated while reading tensor {k!r}")
                h.update(chunk)
                left -= len(chunk)
    _FINGERPRINTS[key] = out = "xxh3-full:" + h.hexdigest()
    return out


def _sampled_fingerprint(base: Path) -> str:
    """rewardkit 0.2's fingerprint (two 4 KB samples per tensor), to check the models it saved."""
    import xxhash

    h = xxhash.xxh3_128()
    for k, f, data_start, v in _weight_entries(base):
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


def check_base(
    model_dir: str | os.PathLike, recorded: str | None, base: str | os.PathLike, *, required: bool = False
) -> None:
    """Refuse to put a LoRA adapter on another base than the one it was trained on, naming both paths.
    ``required``: the adapter's manifest is rewardkit's, which always records the fingerprint, so a
    missing one (``null``) is refused rather than taken on trust."""
    if not recorded:
        if required:
            raise ModelError(
                f"{model_dir}: manifest records no base_fingerprint, so {base} cannot be checked as the "
                "base this LoRA model was trained on"
            )
        return
    if not isinstance(recorded, str):
        raise ModelError(f"{model_dir}: base_fingerprint must be a string, got {recorded!r}")
    base = Path(base)
    if recorded.startswith("xxh3-full:"):
        actual = base_fingerprint(base)
    elif recorded.startswith("xxh3-weights:"):
        actual = _sampled_fingerprint(base)
    else:
        actual = _legacy_fingerprint(base)
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
