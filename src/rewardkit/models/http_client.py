"""The HTTP side of :class:`~rewardkit.models.remote.RemoteRewardModel`: TLS verification, which errors
are final, request bodies bounded in sequences and bytes, and the per-example columns worth sending.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator, Sequence
from typing import Any

from rewardkit.errors import DataError

#: per-example keyword arguments TRL's GRPOTrainer passes that no served model reads (token ids of the
#: completions: 2048 ints each would dwarf the text)
NOT_RECORDS = frozenset({"completion_ids", "trainer_state", "log_extra", "log_metric", "environments"})
#: a request body's share of the server's ``max_request_bytes`` (JSON escapes can grow text)
BODY_SHARE = 0.5


def tls_verify(verify: bool | str, ca: str | None) -> bool | ssl.SSLContext:
    """httpx's ``verify``: the system's CAs (True), none (False: no verification), or a context trusting
    ``ca`` (a PEM bundle; ``verify`` may also be that path)."""
    if isinstance(verify, str):
        ca, verify = verify, True
    if not verify:
        return False
    if ca is None:
        return True
    try:
        return ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as e:
        raise DataError(f"ca={ca!r}: not a readable PEM certificate bundle ({e})") from None


def certificate_error(e: BaseException) -> ssl.SSLError | None:
    """The TLS error behind a transport error (a certificate no retry can fix), or None."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, ssl.SSLError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def json_column(name: str, values: Sequence[Any]) -> list:
    """A per-example column as JSON values (numpy scalars and arrays to Python), or a one-line error
    naming the column when it holds something JSON cannot carry (an image, a tensor...)."""
    out = []
    for i, v in enumerate(values):
        if hasattr(v, "tolist") and not isinstance(v, (str, bytes)):  # numpy / torch scalars and arrays
            v = v.tolist()
        try:
            json.dumps(v, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise DataError(
                f"column {name!r}, example {i}: {type(v).__name__} cannot be sent to a served model ({e})"
            ) from None
        out.append(v)
    return out


def record_columns(kwargs: dict[str, Any], n: int, reads: Sequence[str] | None) -> dict[str, list] | None:
    """The per-example columns of a TRL reward call to send: those the served model reads (``reads``, from
    its ``/info``), or, from a server that does not say, every JSON-able list column but TRL's own."""
    cols = {k: v for k, v in kwargs.items() if isinstance(v, (list, tuple)) and len(v) == n}
    if reads is not None:
        return {k: json_column(k, cols[k]) for k in reads if k in cols} or None
    out = {}
    for k, v in cols.items():
        if k in NOT_RECORDS:
            continue
        try:
            out[k] = json_column(k, v)
        except DataError:
            continue  # an older server reads no such column (it reads text only)
    return out or None


def bounded(sizes: Sequence[int], max_items: int, max_bytes: int) -> Iterator[tuple[int, int]]:
    """``(lo, hi)`` runs of items with at most ``max_items`` items and ``max_bytes`` bytes each (an item
    over the byte bound goes alone: the server names it in its refusal)."""
    lo, used = 0, 0
    for i, size in enumerate(sizes):
        if i > lo and (i - lo >= max_items or used + size > max_bytes):
            yield lo, i
            lo, used = i, 0
        used += size
    if lo < len(sizes):
        yield lo, len(sizes)


def item_bytes(*parts: Any) -> int:
    """Bytes one item adds to a JSON body (its parts encoded, plus separators)."""
    return sum(len(json.dumps(p, ensure_ascii=False).encode()) for p in parts) + 8
