"""A reward model served by ``rewardkit serve``, used like a local one.

:class:`RemoteRewardModel` implements :class:`~rewardkit.RewardModel` over HTTP (``score``,
``score_pairs`` with the pairs' shared response boundary, the TRL ``reward_funcs`` call), so evaluation,
best-of-N, the shift benchmark and TRL trainers can use a served model. Requests are split to the
server's per-request limit; a 503 (queue full, model loading) is retried after its Retry-After, as are
timeouts and refused connections, up to ``retries`` times.

A folder is data: ``load_reward_model`` restores a remote model only for an endpoint the user named
(``allow_remote=[url]``, ``--allow-remote URL``; ``$REWARDKIT_API_KEY`` is sent to it) or with
``allow_remote=True`` (any endpoint the folder records, never with the key), also when the folder is an
ensemble member or a wrapped model.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np

from rewardkit.base import RewardModel
from rewardkit.errors import ModelError, RewardkitError
from rewardkit.io import atomic_dir
from rewardkit.manifest import write_manifest
from rewardkit.models.http_client import (
    BODY_SHARE,
    bounded,
    certificate_error,
    item_bytes,
    record_columns,
    tls_verify,
)
from rewardkit.records import Prompt
from rewardkit.templating import Texts, completion_text
from rewardkit.util import is_url

API_KEY_ENV = "REWARDKIT_API_KEY"

#: what the folders loaded now may reach: True (any endpoint, no key) or the endpoints the user named
_ALLOWED: ContextVar[bool | frozenset[str]] = ContextVar("rewardkit_remote_allowed", default=frozenset())


def endpoint(url: str) -> str:
    """``url`` as endpoints are compared: scheme and host lower-cased, no trailing slash."""
    from urllib.parse import urlsplit

    u = urlsplit(url.strip())
    return f"{u.scheme.lower()}://{u.netloc.lower()}{u.path.rstrip('/')}"


@contextmanager
def remote_allowed(allow: bool | str | Iterable[str] | None) -> Iterator[None]:
    """Within, remote folders may reach ``allow``: True (any endpoint, without the key), an endpoint or
    endpoints the user named (with the key), False (none); None keeps what an outer scope allowed."""
    if allow is None:
        yield
        return
    value = (
        bool(allow)
        if isinstance(allow, bool)
        else frozenset(endpoint(u) for u in ([allow] if isinstance(allow, str) else allow))
    )
    token = _ALLOWED.set(value)
    try:
        yield
    finally:
        _ALLOWED.reset(token)


def remote_endpoints(rm: RewardModel) -> list[str]:
    """Every endpoint ``rm`` (its members and wrapped models included) sends requests to, in order."""
    own = [rm.url] if isinstance(rm, RemoteRewardModel) else []
    for m in rm.members:
        own += [u for u in remote_endpoints(m) if u not in own]
    return own


class RemoteRewardModel(RewardModel):
    """A model served at ``url`` (e.g. ``http://127.0.0.1:8000``). ``api_key``: the server's bearer token
    (default: ``$REWARDKIT_API_KEY``). ``chunk``: sequences per request (the server's limit by default)."""

    kind = "remote"

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout: float = 300.0,
        retries: int = 8,
        chunk: int | None = None,
        verify: bool | str = True,
        ca: str | None = None,
    ):
        if not is_url(url):
            raise ModelError(f"{url!r} is not an http(s) URL")
        self.url = url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        self.timeout, self.retries, self.chunk = timeout, retries, chunk
        self.verify = tls_verify(verify, ca)  # False: no verification; a path or ca=: that CA bundle
        self._info: dict[str, Any] | None = None
        self.source = self.url
        self._client = None

    @property
    def client(self):
        if self._client is None:
            try:
                import httpx
            except ImportError:
                raise ModelError("RemoteRewardModel needs httpx: pip install 'rewardkit[serve]'") from None

            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._client = httpx.Client(
                base_url=self.url, timeout=self.timeout, headers=headers, verify=self.verify
            )
        return self._client

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        """One call, retried on 503 (after its Retry-After) and on transport errors (with backoff)."""
        import httpx

        wait, attempt = 0.5, 0
        while True:
            try:
                r = self.client.request(method, path, json=body)
            except httpx.TransportError as e:  # timeouts, refused or dropped connections
                bad_tls = certificate_error(e)
                if bad_tls is not None:  # no retry fixes a certificate: say how to trust it
                    raise RewardkitError(
                        f"{self.url}{path}: TLS: {getattr(bad_tls, 'verify_message', None) or bad_tls} "
                        "(give RemoteRewardModel(..., ca='ca.pem') for a private CA, or verify=False)"
                    ) from None
                if attempt >= self.retries:
                    raise RewardkitError(f"{self.url}{path}: {type(e).__name__}: {e}") from None
                attempt += 1
                time.sleep(wait)
                wait = min(wait * 2, 10.0)
                continue
            except httpx.HTTPError as e:  # e.g. an invalid URL
                raise RewardkitError(f"{self.url}{path}: {type(e).__name__}: {e}") from None
            if r.status_code == 503 and attempt < self.retries:
                attempt += 1
                try:
                    delay = float(r.headers.get("retry-after", wait))
                except ValueError:
                    delay = wait
                if not math.isfinite(delay) or delay < 0:  # "nan", "-1": the server's hint is unusable
                    delay = wait
                time.sleep(min(delay, 30.0))
                continue
            try:
                data = r.json()
            except ValueError:
                data = None
            if r.status_code != 200:
                msg = data.get("error", r.text) if isinstance(data, dict) else r.text
                if isinstance(msg, dict):  # vLLM's shape: {"error": {"message", "type", "param", "code"}}
                    msg = msg.get("message", msg)
                raise RewardkitError(
                    f"{self.url}{path}: HTTP {r.status_code}: {' '.join(str(msg).split())[:300]}"
                )
            if not isinstance(data, dict):
                raise RewardkitError(f"{self.url}{path}: the answer is not a JSON object")
            return data

    def post(self, path: str, body: dict) -> dict:
        """POST ``body`` to ``path`` of the server (retried as every call is); its JSON answer."""
        return self._request("POST", path, body)

    def _field(self, data: dict, key: str, path: str) -> list:
        if not isinstance(data.get(key), list):
            raise RewardkitError(f"{self.url}{path}: the answer has no list {key!r}")
        return data[key]

    def info(self) -> dict[str, Any]:
        """The served model's ``/info``: kind, members, base model, convention, versions, limits."""
        self._info = self._request("GET", "/info")
        return self._info

    def _limits(self) -> dict[str, Any]:
        if self._info is None:
            self.info()
        return self._info.get("limits", {}) if isinstance(self._info, dict) else {}

    def _chunk(self) -> int:
        if self.chunk is None:
            self.chunk = int(self._limits().get("max_request_sequences", 256))
        return max(1, self.chunk)

    def _parts(self, sizes: Sequence[int], per_item: int = 1) -> Iterator[tuple[int, int]]:
        """Runs of items whose requests stay within the server's sequence and byte limits."""
        max_bytes = int(BODY_SHARE * int(self._limits().get("max_request_bytes", 16 * 2**20)))
        return bounded(sizes, max(1, self._chunk() // per_item), max_bytes)

    def _pooling(self, texts: Texts) -> np.ndarray:
        """Already-templated text or token ids, through the server's vLLM-compatible ``/pooling``."""
        seqs = texts.ids if texts.ids is not None else [p + r for p, r in zip(texts.prompts, texts.responses)]
        out = []
        for lo, hi in self._parts([item_bytes(x) for x in seqs]):
            body = {"input": seqs[lo:hi], "add_special_tokens": texts.special_tokens}
            for item in self._field(self._request("POST", "/pooling", body), "data", "/pooling"):
                value = item.get("data") if isinstance(item, dict) else None
                if not isinstance(value, list) or len(value) != 1:
                    raise RewardkitError(f"{self.url}/pooling: an item of 'data' is not one reward")
                out.append(value[0])
        return np.asarray(out, dtype=np.float32)

    def score_texts(self, texts: Texts) -> np.ndarray:
        out = []
        if texts.raw or texts.ids is not None:
            return self._pooling(texts)
        if texts.pairs is not None:
            pairs = texts.pairs
            chosen, rejected = [], []
            sizes = [item_bytes(p.prompt, p.chosen, p.rejected, p.metadata) for p in pairs]
            for lo, hi in self._parts(sizes, per_item=2):
                body = {
                    "pairs": [
                        {"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected, "metadata": p.metadata}
                        for p in pairs[lo:hi]
                    ]
                }
                r = self._request("POST", "/score_pairs", body)
                chosen += self._field(r, "chosen", "/score_pairs")
                rejected += self._field(r, "rejected", "/score_pairs")
            return np.asarray(chosen + rejected, dtype=np.float32)
        meta = texts.metadata
        sizes = [item_bytes(p, r, None if meta is None else meta[i]) for i, (p, r) in enumerate(zip(texts.prompts, texts.responses))]  # fmt: skip
        for lo, hi in self._parts(sizes):
            body: dict[str, Any] = {
                "prompts": texts.prompts[lo:hi],
                "responses": texts.responses[lo:hi],
                "reward_call": texts.reward_call,
            }
            if meta is not None:
                body["metadata"] = meta[lo:hi]
            out += self._field(self._request("POST", "/score", body), "rewards", "/score")
        return np.asarray(out, dtype=np.float32)

    def __call__(self, prompts: Sequence[Prompt], completions: Sequence[Any], **kwargs) -> list[float]:
        """TRL's ``reward_funcs`` call, sending only what the served model reads: the prompts, the
        completions and the per-example columns it names in ``/info`` (``record_fields``: e.g. a length
        penalty's reference), never ``completion_ids`` or columns JSON cannot carry; in requests bounded
        in sequences and bytes."""
        if self._info is None:
            self.info()
        reads = self._info.get("record_fields") if isinstance(self._info, dict) else None
        cols = record_columns(kwargs, len(completions), reads)
        metadata = [{k: v[i] for k, v in cols.items()} for i in range(len(completions))] if cols else None
        texts = Texts.of(
            prompts, [completion_text(c) for c in completions], reward_call=True, metadata=metadata
        )
        return [float(x) for x in self.score_texts(texts)]

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> np.ndarray:
        if len(prompts) != len(responses):
            raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
        return self.score_texts(Texts(list(prompts), list(responses)))

    def save(self, path: str | os.PathLike, *, force: bool = False) -> None:
        """A folder that ``load_reward_model`` turns back into this client (the URL; never the key)."""
        with atomic_dir(path, force=force) as tmp:
            write_manifest(tmp, self._manifest(url=self.url))

    @classmethod
    def _load(cls, path: Path, manifest: dict[str, Any], **kwargs: Any) -> RemoteRewardModel:
        url = manifest.get("url")
        if not is_url(url):
            raise ModelError(f"{path}: manifest field 'url' must be an http(s) URL")
        allowed = _ALLOWED.get()
        if isinstance(allowed, frozenset) and endpoint(url) in allowed:
            return cls(url)  # an endpoint the user named: the key goes to it
        if allowed is True:
            return cls(url, api_key="")  # allowed, but the key was never given for this endpoint
        raise ModelError(
            f"{path}: a remote reward model sends every input to {url!r}; a folder does not reach the network "
            f"unless asked: name the endpoint (--allow-remote {url!r}, or allow_remote=[{url!r}])"
        )
