"""One server's settings: limits and batching knobs (:class:`ServeSettings`; ``rewardkit serve``'s
options are generated from its fields) and the per-sequence character cap they imply."""

from __future__ import annotations

from dataclasses import dataclass

#: Characters per token a sequence may average before it is refused: no tokenizer in use averages more
#: than a few, so a text over ``CHARS_PER_TOKEN`` x the model's context is refused (413) instead of
#: being tokenised only to keep its last tokens.
CHARS_PER_TOKEN = 16
DEFAULT_SEQUENCE_CHARS = 2**20  # when the model states no context


@dataclass
class ServeSettings:
    """Limits and batching knobs of one server (see ``rewardkit serve --help``)."""

    max_wait_ms: float = 5.0
    max_pool_sequences: int = 64
    max_pool_tokens: int = 32768
    max_queue_sequences: int = 8192
    max_queue_bytes: int = 256 * 2**20
    max_request_sequences: int = 1024
    max_request_bytes: int = 16 * 2**20
    max_json_values: int = 2**17  # JSON values per body, counted before validation (which holds the GIL)
    max_sequence_chars: int | None = None  # None: CHARS_PER_TOKEN x the model's token limit
    receive_timeout_s: float = 30.0
    header_timeout_s: float = 10.0  # request line and headers, from connect or the last response
    keep_alive_s: float = 5.0  # an idle connection after a response
    tls_handshake_timeout_s: float = 10.0
    max_connections: int = 1024
    api_key: str | None = None
    allow_from: tuple[str, ...] = ()
    forwarded_allow_ips: tuple[str, ...] = ()  # proxies whose X-Forwarded-For is trusted; none by default
    model_name: str = "rewardkit"
    retry_after_s: int = 1
    deterministic: bool = False  # one sequence per forward: a reward never depends on its batch mates


def sequence_char_cap(settings: ServeSettings, token_limit: int | None) -> int:
    """Characters allowed per prompt or response: the setting, else ``CHARS_PER_TOKEN`` x tokens."""
    if settings.max_sequence_chars is not None:
        return settings.max_sequence_chars
    return CHARS_PER_TOKEN * token_limit if token_limit else DEFAULT_SEQUENCE_CHARS
