"""Request bodies the server accepts (pydantic, validated off the event loop; one-line 400 otherwise).

rewardkit's own (``/score``, ``/score_pairs``), OpenRLHF's (``/get_reward``) and vLLM's (``/pooling``,
``/classify``, ``/tokenize``, ``/detokenize``: the fields of vLLM's completion-style and chat-style
requests that change a reward; see docs/serving.md for those accepted and ignored).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator


class Message(BaseModel):
    """A chat message: string ``role`` and ``content`` (other keys, e.g. ``name``, are kept)."""

    model_config = ConfigDict(extra="allow")
    role: str
    content: str


def plain(value: Any) -> Any:
    """Validated messages back to plain dicts (a string stays a string)."""
    if isinstance(value, Message):
        return value.model_dump()
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def text_chars(value: Any) -> int:
    """Characters of a prompt or response: a string, a message or a list of messages."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, Message):
        return len(value.content) + len(value.role)
    if isinstance(value, list):
        return sum(text_chars(v) for v in value)
    return 0


class ScoreRequest(BaseModel):
    """``prompts`` and ``responses`` as TRL passes them (strings or message lists)."""

    model_config = ConfigDict(extra="forbid")
    prompts: list[str | list[Message]]
    responses: list[str | list[Message] | Message]
    members: bool = Field(False, description="also return each ensemble member's rewards and their std")
    reward_call: bool = Field(False, description="TRL reward_funcs convention (GRPOTrainer's nn.Module path)")
    metadata: list[dict[str, Any]] | None = Field(None, description="per-response fields, e.g. a reference")


class PairIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str | list[Message]
    chosen: str
    rejected: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class PairsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pairs: list[PairIn]
    members: bool = False


class OpenRLHFRequest(BaseModel):
    """OpenRLHF's remote reward protocol: already-templated full texts (prompt + response) in ``query``;
    ``labels`` and other fields are accepted and not read."""

    model_config = ConfigDict(extra="allow")
    query: list[str]
    prompts: list[str] | None = None


TokenIds = list[StrictInt]  # JSON true / false are not token ids


class Pooled(BaseModel):
    """Fields every vLLM pooling-family request may carry that change the output."""

    model_config = ConfigDict(extra="allow")
    model: str | None = None
    use_activation: bool | None = None
    activation: bool | None = None  # vLLM <= 0.11.1's name (verl sends it)
    softmax: bool | None = None  # likewise
    truncate_prompt_tokens: int | None = None
    truncation_side: str | None = None


class VLLMRequest(Pooled):
    """vLLM's pooling / classification request: ``input`` (a string, strings, token ids or lists of
    them; completion style) or ``messages`` (chat style, the last one the assistant's response)."""

    input: str | list[str] | TokenIds | list[TokenIds] | None = None
    messages: list[Message] | None = None
    add_special_tokens: bool | None = None
    encoding_format: str = "float"
    dimensions: int | None = None
    normalize: bool | None = None
    task: str | None = None

    @model_validator(mode="after")
    def _one_input(self) -> VLLMRequest:
        if (self.input is None) == (self.messages is None):
            raise ValueError("give exactly one of 'input' and 'messages'")
        if isinstance(self.input, list) and not self.input:
            raise ValueError("'input' is empty")
        if self.messages is not None and not self.messages:
            raise ValueError("'messages' is empty")
        return self


class TokenizeRequest(BaseModel):
    """vLLM's ``/tokenize``: ``prompt`` (completion style) or ``messages`` (chat style)."""

    model_config = ConfigDict(extra="allow")
    model: str | None = None
    prompt: str | None = None
    messages: list[Message] | None = None
    add_special_tokens: bool | None = None
    add_generation_prompt: bool = True
    return_token_strs: bool | None = False

    @model_validator(mode="after")
    def _one_input(self) -> TokenizeRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' and 'messages'")
        return self


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    tokens: TokenIds = Field(max_length=2**20)


class ScorePairsRequest(Pooled):
    """vLLM's ``/score``: two sides under any of vLLM's names (``queries`` / ``documents``, ``data_1`` /
    ``data_2``, ``text_1`` / ``text_2``); one side of one item is paired with every item of the other."""

    queries: str | list[str] | None = None
    documents: str | list[str] | None = None
    data_1: str | list[str] | None = None
    data_2: str | list[str] | None = None
    text_1: str | list[str] | None = None
    text_2: str | list[str] | None = None

    @model_validator(mode="after")
    def _one_naming(self) -> ScorePairsRequest:
        given = [
            (a, b) for a, b in SCORE_NAMES if getattr(self, a) is not None or getattr(self, b) is not None
        ]
        if len(given) != 1:
            raise ValueError("give one pair of fields: queries/documents, data_1/data_2 or text_1/text_2")
        a, b = given[0]
        if getattr(self, a) is None or getattr(self, b) is None:
            raise ValueError(f"'{a}' and '{b}' go together")
        return self

    def sides(self) -> tuple[list[str], list[str]]:
        a, b = next((a, b) for a, b in SCORE_NAMES if getattr(self, a) is not None)
        left, right = getattr(self, a), getattr(self, b)
        return ([left] if isinstance(left, str) else left), ([right] if isinstance(right, str) else right)


SCORE_NAMES = (("queries", "documents"), ("data_1", "data_2"), ("text_1", "text_2"))


class RerankRequest(Pooled):
    """vLLM's ``/rerank`` (Jina / Cohere style): one ``query``, its ``documents``, the best ``top_n``."""

    query: str
    documents: list[str]
    top_n: int = Field(0, ge=0)
    return_documents: bool = True


class EmbeddingsRequest(BaseModel):
    """SGLang's (and OpenAI's) ``/v1/embeddings``: for a reward model the embedding is ``[reward]``."""

    model_config = ConfigDict(extra="allow")
    model: str | None = None
    input: str | list[str] | TokenIds | list[TokenIds]
    encoding_format: str = "float"
    dimensions: int | None = None


class SGLangClassifyRequest(BaseModel):
    """SGLang's native ``/classify``: ``text`` (one templated conversation or a list) or ``input_ids``."""

    model_config = ConfigDict(extra="allow")
    model: str | None = None
    text: str | list[str] | None = None
    input_ids: TokenIds | list[TokenIds] | None = None

    @model_validator(mode="after")
    def _one_input(self) -> SGLangClassifyRequest:
        if (self.text is None) == (self.input_ids is None):
            raise ValueError("give exactly one of 'text' and 'input_ids'")
        return self
