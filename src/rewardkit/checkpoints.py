"""Model folders on disk: checks before loading, load reports, base fingerprints, devices and dtypes.

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


def resolve_device(device=None) -> torch.device:
    """``device`` as given; by default this process's GPU (``LOCAL_RANK`` under torchrun / accelerate, so
    every rank works on its own GPU instead of all on cuda:0), else the CPU."""
    import torch

    if device is None:
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % max(1, torch.cuda.device_count()))
    return torch.device(device)


#: ``dtype=`` names rewardkit takes (``auto`` is resolved per device by :func:`auto_dtype_name`)
DTYPES = ("auto", "float32", "bfloat16", "float16")
_DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
#: CPU flags (``/proc/cpuinfo``) of hardware bf16 matmuls: AMX tiles (Sapphire Rapids and later Xeons),
#: AVX512-BF16 (Cooper Lake, Zen 4 and later)
FAST_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags the OS reports (Linux ``/proc/cpuinfo``); empty where it does not."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    return {f for line in text.splitlines() if line.startswith("flags") for f in line.split(":", 1)[-1].split()}


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AMX-BF16 or AVX512-BF16), from the OS's
    flags or, where it reports none (macOS, Windows), torch's own probes."""
    if set(FAST_BF16_FLAGS) & cpu_flags():
        return True
    import torch

    probes = (getattr(torch.cpu, n, None) for n in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
    return any(bool(p()) for p in probes if p is not None)


def auto_dtype_name(device_type: str, cuda_bf16: bool, cpu_fast_bf16: bool) -> str:
    """``dtype="auto"``: bfloat16 on a GPU that computes it natively and on a CPU with hardware bf16
    matmuls (``cpu_fast_bf16``), float32 elsewhere (an old GPU, a CPU without them, other devices)."""
    if device_type == "cuda":
        return "bfloat16" if cuda_bf16 else "float32"
    if device_type == "cpu":
        return "bfloat16" if cpu_fast_bf16 else "float32"
    return "float32"


def resolve_dtype(dtype, device: torch.device) -> torch.dtype:
    """The torch dtype to load in. ``None``: bf16 on CUDA, fp32 on CPU (the Python API's default, which
    parity tests rely on); ``"auto"``: :func:`auto_dtype_name` for this device and hardware (the
    command-line default); a name (``float32``, ``bfloat16``, ``float16``, or ``fp32`` / ``bf16`` /
    ``fp16``) or a ``torch.dtype`` as given."""
    import torch

    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        name = _DTYPE_ALIASES.get(dtype, dtype)
        if name == "auto":
            cuda = device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
            name = auto_dtype_name(device.type, cuda, device.type == "cpu" and cpu_has_fast_bf16())
        if name not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; use {', '.join(DTYPES)}")
        return getattr(torch, name)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)} or a floating torch.dtype, got {dtype!r}")
    return dtype


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"`` (as recorded in outputs)."""
    return str(dtype).removeprefix("torch.")


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


def adapters_like_base(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """For scoring: a peft model's LoRA weights cast in place to ``dtype``, its base weights' dtype, when
    that is a 16-bit float, instead of the float32 peft keeps them in (``autocast_adapter_dtype``); a
    16-bit base with float32 adapters converts every adapted layer's input and output (scoring a LoRA RM
    in bf16 on CPU took ~20% longer that way, docs/scoring.md). Reward heads keep their dtype; training
    loads in float32, where this does nothing."""
    import torch

    if dtype not in (torch.bfloat16, torch.float16) or not hasattr(model, "peft_config"):
        return model
    for name, param in model.named_parameters():
        if "lora_" in name and param.is_floating_point() and param.dtype != dtype:
            param.data = param.data.to(dtype)
    return model


def cast_like_loaded(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Cast a model in place to ``dtype`` the way loading it in ``dtype`` would: floating parameters
    only (buffers such as rotary ``inv_freq`` keep their dtype, as ``from_pretrained`` leaves them),
    modules the model keeps in float32 stay so, and a peft model's adapters as rewardkit's loaders leave
    them (peft's float32, then :func:`adapters_like_base`)."""
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
    return adapters_like_base(model, dtype)


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
