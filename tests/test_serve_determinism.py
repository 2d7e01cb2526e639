"""`rewardkit serve --deterministic`: a reward does not depend on which requests share its pool."""

from __future__ import annotations

import threading

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from tests.test_serve import server  # noqa: E402
from tests.test_serve_hostile import rm_dir  # noqa: E402, F401

TARGET = {"prompts": ["tell me about pasta"], "responses": [" good clear answer"]}
MATES = [{"prompts": ["explain " + "the star " * k], "responses": [" bad" * (1 + k % 5)]} for k in range(1, 24)]


def _pooled_rewards(url: str) -> list[float]:
    """The target, sent 4 times among 23 mates of other lengths, all at once (pooled: max-wait 200 ms)."""
    bodies = MATES[:6] + [TARGET] + MATES[6:12] + [TARGET] + MATES[12:18] + [TARGET] + MATES[18:] + [TARGET]
    out: dict[int, float] = {}

    def call(i: int) -> None:
        out[i] = httpx.post(f"{url}/score", json=bodies[i], timeout=60).json()["rewards"][0]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [out[i] for i, b in enumerate(bodies) if b is TARGET]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_deterministic_rewards_equal_the_reward_alone_bit_for_bit(rm_dir, dtype):  # noqa: F811
    with server("--rm", str(rm_dir), "--dtype", dtype, "--deterministic", "--max-wait-ms", "200") as (url, _):
        alone = httpx.post(f"{url}/score", json=TARGET).json()["rewards"][0]
        pooled = _pooled_rewards(url)
        metrics = httpx.get(f"{url}/metrics").text
        assert httpx.get(f"{url}/info").json()["limits"]["deterministic"] is True
    assert pooled == [alone] * 4, (alone, pooled)
    pools = next(x for x in metrics.splitlines() if x.startswith("rewardkit_pool_requests_count"))
    assert float(pools.split()[-1]) < 28  # requests were pooled, so mates did share engine calls
