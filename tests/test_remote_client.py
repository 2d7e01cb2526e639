"""RemoteRewardModel's HTTP client: retry delays taken from the server's Retry-After, sanely."""

from __future__ import annotations

import httpx
import pytest

from rewardkit.models import remote
from rewardkit.models.remote import RemoteRewardModel
from rewardkit.records import PreferencePair


@pytest.mark.parametrize("hint, slept", [("nan", 0.5), ("-1", 0.5), ("inf", 0.5), ("2", 2.0), ("99", 30.0)])
def test_a_503_is_retried_after_a_usable_retry_after_only(monkeypatch, hint, slept):
    answers = [httpx.Response(503, headers={"retry-after": hint}), httpx.Response(200, json={"ok": 1})]
    rm = RemoteRewardModel("http://127.0.0.1:9", api_key="")
    rm._client = httpx.Client(base_url=rm.url, transport=httpx.MockTransport(lambda request: answers.pop(0)))
    delays: list[float] = []
    monkeypatch.setattr(remote.time, "sleep", delays.append)
    assert rm._request("GET", "/info") == {"ok": 1}
    assert delays == [slept]  # an unusable hint ("nan", negative, infinite) falls back to the backoff


def test_score_pairs_requests_stay_within_the_servers_byte_limit():
    """Long pairs are split by bytes as well as by count (a count-only split hit the server's 413)."""
    limit, bodies = 6000, []

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/info":
            return httpx.Response(200, json={"limits": {"max_request_sequences": 256, "max_request_bytes": limit}})
        bodies.append(len(request.content))
        if len(request.content) > limit:
            return httpx.Response(413, json={"detail": "too large"})
        pairs = __import__("json").loads(request.content)["pairs"]
        return httpx.Response(
            200, json={"chosen": [len(p["chosen"]) for p in pairs], "rejected": [-len(p["rejected"]) for p in pairs]}
        )

    rm = RemoteRewardModel("http://127.0.0.1:9", api_key="")
    rm._client = httpx.Client(base_url=rm.url, transport=httpx.MockTransport(server))
    pairs = [("p", "c" * (400 + i), "r" * (300 + i)) for i in range(20)]  # ~14 KB in all, 20 pairs << 128
    scores = rm.score_pairs([PreferencePair(prompt=p, chosen=c, rejected=r) for p, c, r in pairs])
    assert list(scores.chosen) == [400 + i for i in range(20)]  # order kept across requests
    assert list(scores.rejected) == [-(300 + i) for i in range(20)]
    assert len(bodies) >= 3 and max(bodies) <= limit  # split by bytes: a count-only split sends one 14 KB body
