"""Turning (prompt, response) into token ids: the one token convention every model kind and both
trainers use, TRL's (1.16), stated here and tested against TRL and transformers themselves.

``chat_template`` chooses when the tokenizer's chat template is applied:

- ``"auto"`` (default, TRL's rule): conversational prompts (lists of ``{"role", "content"}``) are
  templated; plain-string prompts are scored as raw text, ``prompt + response + eos_token`` (EOS added
  unless the response already ends with it), tokenised with the tokenizer's own special tokens (BOS
  where it adds one) -- what ``RewardTrainer`` and ``DPOTrainer`` train on.
- ``"always"``: a plain-string prompt becomes one user message and is templated too (a tokenizer
  without a chat template is refused).
- ``"never"``: everything is raw text; message lists are rendered as ``Role: content`` paragraphs.

**Templated sequences** are ``apply_chat_template([*prompt, {"role": "assistant", "content":
response}], tokenize=True)``: the template holds BOS and end-of-turn tokens, no special tokens are
added again.

**The whole sequence is tokenised once**, so no token at the boundary is ever split into non-canonical
pieces. The response starts where the tokenised prompt (raw text, or templated with the generation
prompt) and the tokenised whole sequence first differ, TRL's ``common_prefix_length`` rule; a pair's
two responses share the earlier of their two boundaries (``encode_pair``), as in ``DPOTrainer``. When
the prompt is not a token prefix of the sequence (a prompt ending in a space: ``'is '`` + ``'Here'``
tokenise to ``'is' 'ĠHere'``), the merged token belongs to the response and the caller counts it in a
warning.

**Encoders** (BERT-like, bidirectional; ``pair_encoding=True``) tokenise ``(prompt, response)`` as a
text pair, ``[CLS] prompt [SEP] response [SEP]``, no EOS: how cross-encoder reward models are trained.

**The TRL reward-function call** (``RewardModel.__call__``, ``reward_call=True``) scores exactly what
``GRPOTrainer`` scores when given an ``nn.Module`` reward model: conversations templated as above, plain
text as ``prompt + completion`` with no EOS and no special tokens added.

**Already-templated text** (``Texts(raw=True)``: what OpenRLHF's ``/get_reward`` and vLLM's ``input``
send, the template's special tokens written out in the text) is tokenised as it is: no template, no EOS,
and the tokenizer's own special tokens only with ``special_tokens=True`` (vLLM's ``add_special_tokens``).
**Token ids** (``Texts(ids=...)``) are scored as given.

Sequences longer than ``max_length`` keep their **last** ``max_length`` tokens (an explicit reward is
read at the end); the number of truncated sequences is reported by the caller, never hidden.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from rewardkit.errors import DataError, ModelError
from rewardkit.records import Prompt

logger = logging.getLogger(__name__)

ChatTemplateMode = Literal["auto", "always", "never"]
PROMPT_CACHE_SIZE = 4096  # tokenised prompts kept per formatter (least recently used dropped first)
PROMPT_CACHE_BYTES = 64 * 2**20  # and at most this many bytes of prompt text and ids (servers, RL loops)
CHAT_TEMPLATE_MODES: tuple[str, ...] = ("auto", "always", "never")


@dataclass(frozen=True)
class Encoded:
    """Token ids of one (prompt, response) and where the response starts (``ids[response_start:]``).

    ``merged``: the tokenised prompt is not a token prefix of the whole sequence (tokens merge across
    the boundary, or the template renders the prompt differently); the response starts where they
    diverge.
    """

    ids: list[int]
    response_start: int
    truncated: bool = False
    merged: bool = False

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Texts:
    """What a model is asked to score: n (prompt, response) sequences.

    ``pairs``: the sequences are the chosen responses of these pairs, then the rejected ones (this
    layout is known here alone: :meth:`from_pairs` builds it, :meth:`split_pairs` cuts values of it back
    into chosen and rejected), and each pair's two sequences share one response boundary
    (``Formatter.encode_pair``). ``reward_call``: the
    TRL reward-function convention (module docstring). ``metadata``: per-sequence fields (the pairs'
    metadata; the dataset columns a TRL trainer passes to a reward function), for models that read them
    (e.g. a reference length). ``raw``: ``prompt + response`` is already-templated text (module
    docstring; ``special_tokens``: the tokenizer adds its own too). ``ids``: the sequences as token ids
    (the responses hold their decoded text, for models that read text).
    """

    prompts: list
    responses: list
    pairs: list | None = None
    reward_call: bool = False
    metadata: list | None = None
    raw: bool = False
    special_tokens: bool = False
    ids: list | None = None

    @classmethod
    def of(cls, prompts: Sequence[Any], responses: Sequence[Any], **kwargs: Any) -> Texts:
        """``Texts`` of n prompts and n responses, checked: each a sequence (a lone string is refused:
        ``score("qq", " a")`` would score each character), of equal length, responses strings."""
        for name, value in (("prompts", prompts), ("responses", responses)):
            if isinstance(value, (str, bytes, dict)) or not isinstance(value, Sequence):
                raise TypeError(f"{name} must be a list (one item per sequence), got {type(value).__name__}")
        if len(prompts) != len(responses):
            raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
        bad = next((i for i, r in enumerate(responses) if not isinstance(r, str)), None)
        if bad is not None:
            raise TypeError(f"responses[{bad}] must be a string, got {type(responses[bad]).__name__}")
        return cls(list(prompts), list(responses), **kwargs)

    @classmethod
    def from_pairs(cls, pairs: Sequence[Any]) -> Texts:
        pairs = list(pairs)
        return cls(
            [p.prompt for p in pairs] * 2,
            [p.chosen for p in pairs] + [p.rejected for p in pairs],
            pairs,
            metadata=[p.metadata for p in pairs] * 2,
        )

    def split_pairs(self, values: Any, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(chosen, rejected): ``values`` of these pair texts (one per sequence along ``axis``, e.g. rewards
        [2n], member rewards [M, 2n] with ``axis=1``, a column [2n, k]) cut into the two halves, [n] each
        along ``axis``."""
        if self.pairs is None:
            raise ValueError("split_pairs needs pair texts (Texts.from_pairs)")
        values = np.asarray(values)
        n = len(self.pairs)
        if values.shape[axis] != 2 * n:
            raise ValueError(f"{values.shape[axis]} values along axis {axis} for {n} pairs (want {2 * n})")
        chosen, rejected = np.split(values, [n], axis=axis)
        return chosen, rejected

    def __len__(self) -> int:
        return len(self.responses)

    def encode(self, formatter: Formatter) -> list[Encoded]:
        if self.ids is not None:
            return [formatter.encode_ids(x) for x in self.ids]
        if self.raw:
            return formatter.encode_raw(self.prompts, self.responses, special=self.special_tokens)
        if self.pairs is not None:
            return formatter.encode_pairs(self.pairs)
        return formatter.encode_many(self.prompts, self.responses, reward_call=self.reward_call)


def _cache_bytes(key: Any, ids: list[int]) -> int:
    """Approximate bytes one prompt-cache entry holds: its text (4 bytes a character at worst) and ids."""
    text = key[0] if isinstance(key[0], str) else "".join(r + c for r, c in key[0])
    return 4 * len(text) + 8 * len(ids) + 200


def check_chat_template_mode(mode: str) -> str:
    if mode not in CHAT_TEMPLATE_MODES:
        raise ValueError(f"chat_template must be one of {', '.join(CHAT_TEMPLATE_MODES)}; got {mode!r}")
    return mode


def to_messages(prompt: Prompt) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def completion_text(completion: Any) -> str:
    """A completion as TRL passes it: a string, or a list of assistant messages (conversational)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, list) and all(isinstance(m, dict) and "content" in m for m in completion):
        return "".join(m["content"] for m in completion if m.get("role", "assistant") == "assistant")
    raise TypeError(f"completion must be a string or a list of messages, got {type(completion).__name__}")


def render_plain(prompt: Prompt) -> str:
    """A prompt as raw text: a string as it is, messages as ``Role: content`` paragraphs."""
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in prompt)


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Number of leading tokens ``a`` and ``b`` have in common."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class Formatter:
    """Encodes (prompt, response) pairs for one tokenizer under one convention; caches prompt ids."""

    def __init__(
        self,
        tokenizer,
        max_length: int | None = None,
        chat_template: ChatTemplateMode = "auto",
        pair_encoding: bool = False,
        context: int | None = None,
    ):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.context = context  # the model's own limit (max_position_embeddings): never exceeded
        self.chat_template = check_chat_template_mode(chat_template)
        self.pair_encoding = pair_encoding
        self.has_template = bool(getattr(tokenizer, "chat_template", None))
        if chat_template == "always" and not self.has_template and not pair_encoding:
            raise ModelError("chat_template='always' but the tokenizer has no chat template")
        if self.has_template and not pair_encoding and self.chat_template != "never":
            from rewardkit.template_guard import probe

            probe(tokenizer)  # a template that cannot render, or passes a bound, fails on load
        self._prompt_cache: OrderedDict[Any, list[int]] = OrderedDict()  # bounded LRU (servers, RL loops)
        self._prompt_cache_bytes = 0
        self._warned_fallback = False

    @property
    def encoding_key(self) -> str:
        """Identity of how this formatter turns text into ids (tokenizer, template, convention,
        max_length): models whose keys are equal can share one tokenisation (e.g. ensemble members).
        The tokenizer's digest is computed once per formatter (it costs milliseconds; ensembles ask
        per call); the settings are read each time, so changing ``max_length`` changes the key."""
        import hashlib

        digest = self.__dict__.get("_tokenizer_digest")
        if digest is None:
            backend = getattr(self.tokenizer, "backend_tokenizer", None)
            tok = (
                backend.to_str() if backend is not None else repr(sorted(self.tokenizer.get_vocab().items()))
            )
            digest = self._tokenizer_digest = hashlib.sha256(tok.encode()).hexdigest()
        h = hashlib.sha256(digest.encode())
        h.update(
            repr(
                (
                    getattr(self.tokenizer, "chat_template", None),
                    self.tokenizer.eos_token,
                    self.limit,
                    self.chat_template,
                    self.pair_encoding,
                    type(self.tokenizer).__name__,
                )
            ).encode()
        )
        return h.hexdigest()

    # ------------------------------------------------------------------ which path a prompt takes

    def templated(self, prompt: Prompt) -> bool:
        """Whether ``prompt`` goes through the chat template under this convention."""
        if self.pair_encoding or self.chat_template == "never":
            return False
        if self.chat_template == "always":
            return True
        if isinstance(prompt, str):
            return False
        if not self.has_template:
            if not self._warned_fallback:
                logger.warning(
                    "conversational prompts but the tokenizer has no chat template: messages are rendered "
                    "as 'Role: content' paragraphs (TRL would refuse them)"
                )
                self._warned_fallback = True
            return False
        return True

    def _ids(self, text: str, special: bool) -> list[int]:
        return self.tokenizer(text, add_special_tokens=special)["input_ids"]

    def _template_ids(self, messages: list[dict[str, str]], generation_prompt: bool) -> list[int]:
        from rewardkit.template_guard import check_render

        check_render(self.tokenizer, messages, generation_prompt)  # bounded first, then for real
        out = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=generation_prompt, tokenize=True, return_dict=True
        )
        return list(out["input_ids"])

    def _prompt_ids(self, prompt: Prompt, templated: bool, special: bool) -> list[int]:
        key = (
            prompt if isinstance(prompt, str) else tuple((m["role"], m["content"]) for m in prompt),
            templated,
            special,
        )
        hit = self._prompt_cache.get(key)
        if hit is None:
            if templated:
                hit = self._template_ids(to_messages(prompt), generation_prompt=True)
            else:
                hit = self._ids(render_plain(prompt), special)
            size = _cache_bytes(key, hit)
            if size <= PROMPT_CACHE_BYTES // 16:  # a huge prompt is not worth evicting many for
                self._prompt_cache[key] = hit
                self._prompt_cache_bytes += size
            while (
                len(self._prompt_cache) > PROMPT_CACHE_SIZE or self._prompt_cache_bytes > PROMPT_CACHE_BYTES
            ):
                old_key, old = self._prompt_cache.popitem(last=False)
                self._prompt_cache_bytes -= _cache_bytes(old_key, old)
        else:
            self._prompt_cache.move_to_end(key)
        return hit

    def _sequence(
        self, prompt: Prompt, response: str, index: int, reward_call: bool
    ) -> tuple[list[int], list[int]]:
        """(prompt ids, whole-sequence ids) under this convention."""
        if not isinstance(response, str):
            raise DataError(f"example {index}: response must be a string, got {type(response).__name__}")
        if self.templated(prompt):
            conv = to_messages(prompt) + [{"role": "assistant", "content": response}]
            return self._prompt_ids(prompt, True, False), self._template_ids(conv, generation_prompt=False)
        special = not reward_call
        text = render_plain(prompt) + response
        eos = self.tokenizer.eos_token
        if not reward_call and eos and not response.endswith(eos):
            text += eos
        return self._prompt_ids(prompt, False, special), self._ids(text, special)

    # ------------------------------------------------------------------ public encoders

    def encode(self, prompt: Prompt, response: str, index: int = 0, *, reward_call: bool = False) -> Encoded:
        """One (prompt, response); ``reward_call``: the TRL reward-function convention (module docstring)."""
        if self.pair_encoding:
            return self._encode_pair_template(prompt, response, index)
        prompt_ids, ids = self._sequence(prompt, response, index, reward_call)
        start = common_prefix_length(prompt_ids, ids)
        return self._truncate(ids, start, merged=start < len(prompt_ids))

    def encode_pair(
        self, prompt: Prompt, chosen: str, rejected: str, index: int = 0
    ) -> tuple[Encoded, Encoded]:
        """Both responses of a pair with one shared boundary, the earlier of the two (``DPOTrainer``)."""
        if self.pair_encoding:
            return self.encode(prompt, chosen, index), self.encode(prompt, rejected, index)
        prompt_ids, c = self._sequence(prompt, chosen, index, False)
        _, r = self._sequence(prompt, rejected, index, False)
        start = min(common_prefix_length(prompt_ids, c), common_prefix_length(prompt_ids, r))
        merged = start < len(prompt_ids)
        return self._truncate(c, start, merged), self._truncate(r, start, merged)

    def encode_many(
        self, prompts: Sequence[Prompt], responses: Sequence[str], *, reward_call: bool = False
    ) -> list[Encoded]:
        if len(prompts) != len(responses):
            raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
        return [
            self.encode(p, r, i, reward_call=reward_call) for i, (p, r) in enumerate(zip(prompts, responses))
        ]

    def encode_raw(
        self, prompts: Sequence[str], responses: Sequence[str], special: bool = False
    ) -> list[Encoded]:
        """Already-templated ``prompt + response`` texts, tokenised as they are (no template, no EOS;
        the tokenizer's special tokens only with ``special``); the response starts where the tokenised
        prompt and the whole text first differ."""
        out = []
        for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
            if not isinstance(p, str) or not isinstance(r, str):
                raise DataError(f"example {i}: templated text must be strings")
            prompt_ids, ids = self._prompt_ids(p, False, special), self._ids(p + r, special)
            start = common_prefix_length(prompt_ids, ids)
            out.append(self._truncate(ids, start, merged=start < len(prompt_ids)))
        return out

    def encode_ids(self, ids: Sequence[int]) -> Encoded:
        """Token ids scored as given (the response is the whole sequence)."""
        return self._truncate(list(ids), 0)

    def encode_pairs(self, pairs: Sequence[Any]) -> list[Encoded]:
        """Chosen sequences of every pair, then rejected ones (``score_pairs`` order)."""
        enc = [self.encode_pair(p.prompt, p.chosen, p.rejected, i) for i, p in enumerate(pairs)]
        return [c for c, _ in enc] + [r for _, r in enc]

    def _encode_pair_template(self, prompt: Prompt, response: str, index: int) -> Encoded:
        if not isinstance(response, str):
            raise DataError(f"example {index}: response must be a string, got {type(response).__name__}")
        enc = self.tokenizer(render_plain(prompt), response, add_special_tokens=True)
        seq = enc.sequence_ids() if hasattr(enc, "sequence_ids") else None
        if seq is None or 1 not in seq:
            raise ModelError("an encoder reward model needs a fast tokenizer with a text-pair template")
        return self._truncate(enc["input_ids"], seq.index(1))

    @property
    def limit(self) -> int | None:
        """Tokens kept per sequence: ``max_length``, and never more than the model's context."""
        limits = [n for n in (self.max_length, self.context) if n is not None]
        return min(limits) if limits else None

    def _truncate(self, ids: list[int], start: int, merged: bool = False) -> Encoded:
        limit = self.limit
        if limit is None or len(ids) <= limit:
            return Encoded(ids, start, merged=merged)
        cut = len(ids) - limit
        return Encoded(ids[cut:], max(0, start - cut), truncated=True, merged=merged)


Unit = Literal["tokens", "chars", "words"]
UNITS = ("tokens", "chars", "words")


def text_length(texts: Sequence[str], unit: Unit, tokenizer=None) -> np.ndarray:
    """Lengths of ``texts`` in ``unit``: tokens (``tokenizer``, no special tokens), characters or words."""
    if unit == "chars":
        return np.array([len(t) for t in texts], dtype=np.float64)
    if unit == "words":
        return np.array([len(t.split()) for t in texts], dtype=np.float64)
    if unit == "tokens":
        if tokenizer is None:
            raise ModelError(
                "length unit 'tokens' needs a tokenizer: use 'chars' or 'words', or pass tokenizer="
            )
        ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []
        return np.array([len(x) for x in ids], dtype=np.float64)
    raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
