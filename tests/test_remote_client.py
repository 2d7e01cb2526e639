"""RemoteRewardModel's HTTP client: retry delays taken from the server's Retry-After, sanely."""

from __future__ import annotations

import httpx
import pytest

from rewardkit.models import remote
from rewardkit.models.remote import RemoteRewardModel


@pytest.mark.parametrize("hint, slept", [("nan", 0.5), ("-1", 0.5), ("inf", 0.5), ("2", 2.0), ("99", 30.0)])
def test_a_503_is_retried_after_a_usable_retry_after_only(monkeypatch, hint, slept):
    answers = [httpx.Response(503, headers={"retry-after": hint}), httpx.Response(200, json={"ok": 1})]
    rm = RemoteRewardModel("http://127.0.0.1:9", api_key="")
    rm._client = httpx.Client(base_url=rm.url, transport=httpx.MockTransport(lambda request: answers.pop(0)))
    delays: list[float] = []
    monkeypatch.setattr(remote.time, "sleep", delays.append)
    assert rm._request("GET", "/info") == {"ok": 1}
    assert delays == [slept]  # an unusable hint ("nan", negative, infinite) falls back to the backoff
