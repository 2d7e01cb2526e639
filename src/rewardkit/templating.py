"""Turning (prompt, response) into token ids, with the response boundary every model kind agrees on.

Token convention (shared by explicit and implicit reward models):

- **Chat template present**: the conversation ``[*prompt messages, {"role": "assistant", "content":
  response}]`` is rendered with the tokenizer's chat template and tokenised without adding special
  tokens again (the template already holds BOS where the model wants one: no double BOS). The response
  tokens are those after the rendered prompt *with the generation prompt*; end-of-turn tokens after the
  response are part of the response. The rendered prompt must be a token prefix of the rendered
  conversation; where it is not, :class:`~rewardkit.errors.DataError` names the example's index.
- **No chat template** (base models, encoders): prompt and response are tokenised separately and joined
  by the tokenizer's pair template (``[CLS] prompt [SEP] response [SEP]`` for BERT-like models, plain
  concatenation for GPT-like ones). Message-list prompts are rendered as ``"Role: content"`` paragraphs.
  The boundary is exact by construction.

Sequences longer than ``max_length`` keep their **last** ``max_length`` tokens (the reward is read at the
end); the number of truncated sequences is reported by the caller, never hidden.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rewardkit.data import Prompt
from rewardkit.errors import DataError, ModelError


@dataclass(frozen=True)
class Encoded:
    """Token ids of one (prompt, response) and where the response starts (``ids[response_start:]``)."""

    ids: list[int]
    response_start: int
    truncated: bool = False

    def __len__(self) -> int:
        return len(self.ids)


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


def _render_plain(prompt: Prompt) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in prompt)


def prepare_tokenizer(tokenizer):
    """Right padding, and a pad token when the tokenizer has none.

    A missing pad token is set to EOS (or UNK). That is safe here because rewardkit never locates the
    last real token by searching for the pad id: it always reads it from the attention mask.
    """
    if tokenizer.pad_token_id is None:
        fallback = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token
        if fallback is None:
            raise ModelError("tokenizer has no pad, eos or unk token to pad with")
        tokenizer.pad_token = fallback
    tokenizer.padding_side = "right"
    return tokenizer


class Formatter:
    """Encodes (prompt, response) pairs for one tokenizer; caches rendered prompts."""

    def __init__(self, tokenizer, max_length: int | None = None):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.chat = bool(getattr(tokenizer, "chat_template", None))
        self._prompt_cache: dict[Any, tuple[str, list[int]]] = {}

    @property
    def encoding_key(self) -> str:
        """Identity of how this formatter turns text into ids (tokenizer, chat template, max_length):
        models whose keys are equal can share one tokenisation (e.g. ensemble members)."""
        import hashlib

        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        tok = backend.to_str() if backend is not None else repr(sorted(self.tokenizer.get_vocab().items()))
        h = hashlib.sha256(tok.encode())
        h.update(
            repr((self.tokenizer.chat_template, self.max_length, type(self.tokenizer).__name__)).encode()
        )
        return h.hexdigest()

    def _key(self, prompt: Prompt):
        return prompt if isinstance(prompt, str) else tuple((m["role"], m["content"]) for m in prompt)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _chat_prompt(self, prompt: Prompt) -> tuple[str, list[int]]:
        key = self._key(prompt)
        hit = self._prompt_cache.get(key)
        if hit is None:
            text = self.tokenizer.apply_chat_template(
                to_messages(prompt), tokenize=False, add_generation_prompt=True
            )
            hit = self._prompt_cache[key] = (text, self._ids(text))
        return hit

    def encode(self, prompt: Prompt, response: str, index: int = 0) -> Encoded:
        if not isinstance(response, str):
            raise DataError(f"example {index}: response must be a string, got {type(response).__name__}")
        if self.chat:
            # The prompt and the rest of the conversation are tokenised separately and concatenated, so
            # the response boundary is exact even when the response starts with characters that BPE
            # would merge with the template's trailing newline (e.g. a response starting with "\n").
            prompt_text, prompt_ids = self._chat_prompt(prompt)
            conv = to_messages(prompt) + [{"role": "assistant", "content": response}]
            text = self.tokenizer.apply_chat_template(conv, tokenize=False)
            if not text.startswith(prompt_text):
                raise DataError(
                    f"example {index}: the chat template renders the prompt differently with and without "
                    "the response; the response boundary is undefined"
                )
            ids = prompt_ids + self._ids(text[len(prompt_text) :])
            start = len(prompt_ids)
        else:
            enc = self.tokenizer(_render_plain(prompt), response, add_special_tokens=True)
            ids = enc["input_ids"]
            seq = enc.sequence_ids() if hasattr(enc, "sequence_ids") else None
            if seq is None or 1 not in seq:
                raise ModelError("a tokenizer without a chat template must be a fast tokenizer")
            start = seq.index(1)
        return self._truncate(ids, start)

    def _truncate(self, ids: list[int], start: int) -> Encoded:
        if self.max_length is None or len(ids) <= self.max_length:
            return Encoded(ids, start)
        cut = len(ids) - self.max_length
        return Encoded(ids[cut:], max(0, start - cut), truncated=True)

    def encode_many(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[Encoded]:
        if len(prompts) != len(responses):
            raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
        return [self.encode(p, r, i) for i, (p, r) in enumerate(zip(prompts, responses))]
