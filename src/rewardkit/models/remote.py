"""A reward model served by ``rewardkit serve``, used like a local one.

:class:`RemoteRewardModel` implements :class:`~rewardkit.RewardModel` over HTTP (``score``,
``score_pairs`` with the pairs' shared response boundary, the TRL ``reward_funcs`` call), so evaluation,
best-of-N, the shift benchmark and TRL trainers can use a served model. Requests are split to the
server's per-request limit; a 503 (queue full, model loading) is retried after its Retry-After, as are
timeouts and refused connections, up to ``retries`` times.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rewardkit.base import RewardModel, write_manifest
from rewardkit.data import Prompt
from rewardkit.errors import ModelError, RewardkitError
from rewardkit.io import atomic_dir
from rewardkit.templating import Texts
from rewardkit.util import is_url

API_KEY_ENV = "REWARDKIT_API_KEY"


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
    ):
        if not is_url(url):
            raise ModelError(f"{url!r} is not an http(s) URL")
        self.url = url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        self.timeout, self.retries, self.chunk = timeout, retries, chunk
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
            self._client = httpx.Client(base_url=self.url, timeout=self.timeout, headers=headers)
        return self._client

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        """One call, retried on 503 (after its Retry-After) and on transport errors (with backoff)."""
        import httpx

        wait, attempt = 0.5, 0
        while True:
            try:
                r = self.client.request(method, path, json=body)
            except httpx.TransportError as e:  # timeouts, refused or dropped connections
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
                time.sleep(min(delay, 30.0))
                continue
            try:
                data = r.json()
            except ValueError:
                data = None
            if r.status_code != 200:
                msg = data.get("error", r.text) if isinstance(data, dict) else r.text
                raise RewardkitError(
                    f"{self.url}{path}: HTTP {r.status_code}: {' '.join(str(msg).split())[:300]}"
                )
            if not isinstance(data, dict):
                raise RewardkitError(f"{self.url}{path}: the answer is not a JSON object")
            return data

    def _field(self, data: dict, key: str, path: str) -> list:
        if not isinstance(data.get(key), list):
            raise RewardkitError(f"{self.url}{path}: the answer has no list {key!r}")
        return data[key]

    def info(self) -> dict[str, Any]:
        """The served model's ``/info``: kind, members, base model, convention, versions, limits."""
        return self._request("GET", "/info")

    def _chunk(self) -> int:
        if self.chunk is None:
            self.chunk = int(self.info().get("limits", {}).get("max_request_sequences", 256))
        return max(1, self.chunk)

    def _pooling(self, texts: Texts) -> np.ndarray:
        """Already-templated text or token ids, through the server's vLLM-compatible ``/pooling``."""
        seqs = texts.ids if texts.ids is not None else [p + r for p, r in zip(texts.prompts, texts.responses)]
        out, step = [], self._chunk()
        for lo in range(0, len(seqs), step):
            body = {"input": seqs[lo : lo + step], "add_special_tokens": texts.special_tokens}
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
            step = max(1, self._chunk() // 2)
            chosen, rejected = [], []
            for lo in range(0, len(texts.pairs), step):
                part = texts.pairs[lo : lo + step]
                body = {
                    "pairs": [
                        {
                            "prompt": p.prompt,
                            "chosen": p.chosen,
                            "rejected": p.rejected,
                            "metadata": p.metadata,
                        }
                        for p in part
                    ]
                }
                r = self._request("POST", "/score_pairs", body)
                chosen += self._field(r, "chosen", "/score_pairs")
                rejected += self._field(r, "rejected", "/score_pairs")
            return np.asarray(chosen + rejected, dtype=np.float32)
        step = self._chunk()
        for lo in range(0, len(texts), step):
            body: dict[str, Any] = {
                "prompts": texts.prompts[lo : lo + step],
                "responses": texts.responses[lo : lo + step],
                "reward_call": texts.reward_call,
            }
            if texts.metadata is not None:
                body["metadata"] = texts.metadata[lo : lo + step]
            out += self._field(self._request("POST", "/score", body), "rewards", "/score")
        return np.asarray(out, dtype=np.float32)

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
        if not is_url(manifest.get("url")):
            raise ModelError(f"{path}: manifest field 'url' must be an http(s) URL")
        return cls(manifest["url"])
