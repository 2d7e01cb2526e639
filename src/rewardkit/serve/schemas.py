"""Request bodies the server accepts (pydantic, validated off the event loop; one-line 422 otherwise).

rewardkit's own (``/score``, ``/score_pairs``), OpenRLHF's (``/get_reward``) and vLLM's (``/pooling``,
``/classify``, ``/tokenize``, ``/detokenize``: the fields of vLLM's completion-style and chat-style
requests that change a reward; see docs/serving.md for those accepted and ignored).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


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


class VLLMRequest(BaseModel):
    """vLLM's pooling / classification request: ``input`` (a string, strings, token ids or lists of
    them; completion style) or ``messages`` (chat style, the last one the assistant's response)."""

    model_config = ConfigDict(extra="allow")
    model: str | None = None
    input: str | list[str] | list[int] | list[list[int]] | None = None
    messages: list[Message] | None = None
    add_special_tokens: bool | None = None
    use_activation: bool | None = None
    encoding_format: str = "float"
    truncate_prompt_tokens: int | None = None
    dimensions: int | None = None

    @model_validator(mode="after")
    def _one_input(self) -> VLLMRequest:
        if (self.input is None) == (self.messages is None):
            raise ValueError("give exactly one of 'input' and 'messages'")
        if isinstance(self.input, list) and not self.input:
            raise ValueError("'input' is empty")
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
    tokens: list[int] = Field(max_length=2**20)
