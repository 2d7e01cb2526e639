"""The batcher thread alone (no HTTP, no model): pools bounded in sequences and tokens, large jobs split
so small ones go first, results routed back in order, a failing job bisected out of its pool."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

pytest.importorskip("prometheus_client")

from rewardkit.errors import DataError  # noqa: E402
from rewardkit.serve.batcher import Batcher, Job  # noqa: E402
from rewardkit.serve.metrics import Metrics  # noqa: E402
from rewardkit.serve.settings import ServeSettings  # noqa: E402
from rewardkit.templating import Texts  # noqa: E402


def _run(jobs_spec, settings, bad=()):
    """Submit jobs (name, responses, tokens per sequence) at once; returns results and the pools seen
    (each a list of (response, tokens))."""
    tokens_of = {r: t for _, rs, ts in jobs_spec for r, t in zip(rs, ts)}
    pools: list[list[tuple[str, int]]] = []

    def score(texts: Texts, members: bool) -> np.ndarray:
        pools.append([(r, tokens_of[r]) for r in texts.responses])
        if any(r in bad for r in texts.responses):
            raise DataError(f"bad response in {texts.responses}")
        return np.array([float(r.split(":")[1]) for r in texts.responses])

    async def main():
        loop = asyncio.get_running_loop()
        batcher = Batcher(score, settings, Metrics())
        jobs = {}
        for name, rs, ts in jobs_spec:
            jobs[name] = Job(
                ("k", 0, False), Texts([""] * len(rs), list(rs)), loop, loop.create_future(), tokens=list(ts)
            )
            batcher.submit(jobs[name])
        batcher.start()
        out = {}
        for name, job in jobs.items():
            try:
                out[name] = (await asyncio.wait_for(job.future, 30)).tolist()
            except DataError as e:
                out[name] = str(e)
        batcher.stopping.set()
        await loop.run_in_executor(None, batcher.join, 10)
        assert batcher.pending == 0 and batcher.pending_bytes == 0
        return out

    return asyncio.run(main()), pools


def test_pools_are_bounded_in_tokens_and_large_jobs_split():
    big = [f"a:{i}" for i in range(10)]
    spec = [("big", big, [30] * 10), ("single", ["b:100"], [5]), ("huge", ["c:200"], [150])]
    settings = ServeSettings(max_wait_ms=0, max_pool_sequences=64, max_pool_tokens=100)
    out, pools = _run(spec, settings)
    assert out == {"big": [float(i) for i in range(10)], "single": [100.0], "huge": [200.0]}
    for pool in pools:
        assert sum(t for _, t in pool) <= 100 or len(pool) == 1, pools  # one unit may exceed alone
    assert pools[0] == [("a:0", 30), ("a:1", 30), ("a:2", 30), ("b:100", 5)]  # 95 tokens; the rest waits
    assert [r for pool in pools for r, _ in pool].index("b:100") < 9  # not stuck behind the big job
    assert ("c:200", 150) in [p[0] for p in pools if len(p) == 1]


def test_pools_are_bounded_in_sequences():
    spec = [(f"j{i}", [f"x:{i}{k}" for k in range(3)], [1] * 3) for i in range(5)]
    out, pools = _run(spec, ServeSettings(max_wait_ms=0, max_pool_sequences=4, max_pool_tokens=10**6))
    assert all(len(p) <= 4 for p in pools) and sum(len(p) for p in pools) == 15
    assert out == {f"j{i}": [float(f"{i}{k}") for k in range(3)] for i in range(5)}


def test_a_failing_job_is_bisected_out_and_fails_alone():
    spec = [(f"j{i}", [f"x:{i}"], [1]) for i in range(8)]
    out, pools = _run(spec, ServeSettings(max_wait_ms=0, max_pool_sequences=64), bad={"x:5"})
    assert "bad response" in out["j5"]
    assert {k: v for k, v in out.items() if k != "j5"} == {f"j{i}": [float(i)] for i in range(8) if i != 5}
    assert len(pools) <= 1 + 2 * 3  # the pool, then halves down to the bad job: O(log n) calls


def test_the_prompt_cache_is_bounded_in_bytes(monkeypatch):
    """A server sees many distinct prompts: the formatter's prompt cache keeps within its byte budget
    (and its running total equals the sum over what it holds)."""
    from rewardkit import templating
    from rewardkit.tiny import build_tiny_tokenizer

    monkeypatch.setattr(templating, "PROMPT_CACHE_BYTES", 80_000)
    fmt = templating.Formatter(build_tiny_tokenizer(["tell", "me", "about", "good"]))
    for i in range(60):
        fmt.encode(f"{i} " + "tell me about " * 20, " good")
    held = sum(templating._cache_bytes(k, v) for k, v in fmt._prompt_cache.items())
    assert fmt._prompt_cache_bytes == held <= 80_000
    assert 0 < len(fmt._prompt_cache) < 60
    big = "tell me " * 1000  # over a sixteenth of the budget: not cached at all
    fmt.encode(big, " good")
    assert all(k[0] != big for k in fmt._prompt_cache)
