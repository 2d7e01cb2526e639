"""The batcher thread: pools waiting requests into engine calls (one model copy; scoring never runs on
the event loop), and the server's Prometheus metrics.

Jobs wait in one FIFO bounded in sequences and in bytes. A pool takes jobs in turn up to
``max_pool_sequences`` and ``max_pool_tokens`` (counted when each job was encoded); a job larger than
what is left is **split**: its first part joins this pool and the rest goes to the back of the queue, so a single-sequence request is never stuck behind a large one.
A job whose client has gone is dropped before it is scored. A pooled call that fails is **bisected**
until the failing job is alone, so one bad request fails alone and costs the others O(log n) calls.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rewardkit.errors import DataError
from rewardkit.templating import Texts

logger = logging.getLogger(__name__)


class Unavailable(Exception):
    """The queue is full (503 with Retry-After)."""


@dataclass(eq=False)
class Job:
    """One request's sequences. Units are what can be split apart: pairs for pair jobs, else sequences."""

    key: tuple
    texts: Texts
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    cost: int = 0  # bytes of text held while queued
    tokens: list[int] | None = None  # tokens per unit (encoded at admission), None when unknown
    taken: int = 0  # units handed to pools so far
    scored: int = 0  # units scored so far
    parts: list = field(default_factory=list)
    abandoned: bool = False  # the client went away (set from the event loop)
    failed: bool = False

    @property
    def n(self) -> int:
        return len(self.texts)

    @property
    def units(self) -> int:
        return len(self.texts.pairs) if self.texts.pairs is not None else len(self.texts)

    @property
    def per_unit(self) -> int:
        return 2 if self.texts.pairs is not None else 1


def slice_texts(texts: Texts, lo: int, hi: int) -> Texts:
    """Units ``lo:hi`` of ``texts`` (pairs for pair texts, else sequences)."""
    if texts.pairs is not None:
        return Texts.from_pairs(texts.pairs[lo:hi])
    return Texts(
        texts.prompts[lo:hi],
        texts.responses[lo:hi],
        reward_call=texts.reward_call,
        metadata=None if texts.metadata is None else texts.metadata[lo:hi],
        raw=texts.raw,
        special_tokens=texts.special_tokens,
        ids=None if texts.ids is None else texts.ids[lo:hi],
    )


def concat_texts(texts: list[Texts]) -> Texts:
    """One Texts of several pieces' sequences (pairs: all chosen, then all rejected)."""
    first = texts[0]
    if first.pairs is not None:
        return Texts.from_pairs([p for t in texts for p in t.pairs])
    meta = None
    if any(t.metadata is not None for t in texts):
        meta = [m for t in texts for m in (t.metadata or [{}] * len(t))]
    return Texts(
        [p for t in texts for p in t.prompts],
        [r for t in texts for r in t.responses],
        reward_call=first.reward_call,
        metadata=meta,
        raw=first.raw,
        special_tokens=first.special_tokens,
        ids=None if first.ids is None else [x for t in texts for x in t.ids],
    )


def split_values(values: np.ndarray, texts: list[Texts]) -> list[np.ndarray]:
    """Per-piece slices of pooled outputs (last axis: sequences), undoing :func:`concat_texts`."""
    if texts[0].pairs is not None:
        half = values.shape[-1] // 2
        chosen, rejected = values[..., :half], values[..., half:]
        out, lo = [], 0
        for t in texts:
            k = len(t.pairs)
            out.append(np.concatenate([chosen[..., lo : lo + k], rejected[..., lo : lo + k]], axis=-1))
            lo += k
        return out
    out, lo = [], 0
    for t in texts:
        out.append(values[..., lo : lo + len(t)])
        lo += len(t)
    return out


def join_parts(parts: list[np.ndarray], pairs: bool) -> np.ndarray:
    """A job's values from its parts in order (pairs: chosen of every part, then rejected)."""
    if len(parts) == 1:
        return parts[0]
    if not pairs:
        return np.concatenate(parts, axis=-1)
    halves = [p.shape[-1] // 2 for p in parts]
    chosen = [p[..., :h] for p, h in zip(parts, halves)]
    rejected = [p[..., h:] for p, h in zip(parts, halves)]
    return np.concatenate(chosen + rejected, axis=-1)


class Metrics:
    """Prometheus metrics of one app (its own registry)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        r = CollectorRegistry()
        self.registry = r
        self.requests = Counter("rewardkit_requests", "HTTP requests", ["endpoint", "status"], registry=r)
        self.sequences = Counter("rewardkit_sequences", "sequences scored", registry=r)
        self.tokens = Counter("rewardkit_tokens", "real tokens scored", registry=r)
        self.padded = Counter("rewardkit_padded_tokens", "tokens computed, padding included", registry=r)
        self.dropped = Counter("rewardkit_dropped_jobs", "jobs dropped: their client went away", registry=r)
        self.faults = Counter("rewardkit_engine_faults", "engine calls failed by the model", registry=r)
        buckets = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
        self.batch = Histogram(
            "rewardkit_batch_sequences", "sequences per engine batch", buckets=buckets, registry=r
        )
        self.pool = Histogram(
            "rewardkit_pool_requests", "requests pooled into one engine call", buckets=buckets, registry=r
        )
        self.queue = Gauge("rewardkit_queue_sequences", "sequences waiting to be scored", registry=r)
        self.latency = Histogram(
            "rewardkit_request_latency_seconds",
            "request latency",
            ["endpoint"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )

    def observe_batch(self, sequences: int, tokens: int, padded: int) -> None:
        self.batch.observe(sequences)
        self.tokens.inc(tokens)
        self.padded.inc(padded)


def request_fault(e: BaseException) -> bool:
    """Whether an exception is the request's fault (bad data) rather than the model's."""
    from rewardkit.errors import ModelError

    return isinstance(e, (DataError, ValueError, TypeError)) and not isinstance(e, ModelError)


class Batcher(threading.Thread):
    """Pools waiting jobs into engine calls on one thread; ``score(texts, members)`` scores a pool."""

    def __init__(self, score: Callable[[Texts, bool], np.ndarray], settings, metrics: Metrics):
        super().__init__(name="rewardkit-batcher", daemon=True)
        self.score, self.settings, self.metrics = score, settings, metrics
        self.jobs: deque[Job] = deque()
        self.cond = threading.Condition()
        self.pending = 0  # sequences queued or being scored
        self.pending_bytes = 0
        self.stopping = threading.Event()
        self.fault: str | None = None  # the last engine call failed by the model (None once one succeeds)
        self.fault_count = 0

    def submit(self, job: Job) -> None:
        with self.cond:
            s = self.settings
            if (
                self.pending + job.n > s.max_queue_sequences
                or self.pending_bytes + job.cost > s.max_queue_bytes
            ):
                raise Unavailable
            self.pending += job.n
            self.pending_bytes += job.cost
            self.metrics.queue.set(self.pending)
            self.jobs.append(job)
            self.cond.notify()

    def run(self) -> None:
        while True:
            with self.cond:
                if not self.jobs:
                    if self.stopping.is_set():
                        return
                    self.cond.wait(0.1)
                    continue
            pieces = self._gather()
            if not pieces:
                continue
            try:
                groups: dict[tuple, list] = {}
                for piece in pieces:
                    groups.setdefault(piece[0].key, []).append(piece)
                for group in groups.values():
                    self._process(group)
            except BaseException as e:  # noqa: BLE001 - never die silently: fail this pool, keep serving
                logger.exception("the batcher failed on a pool of %d piece(s)", len(pieces))
                for job, _, _ in pieces:
                    self._fail(job, e)

    def _take(self, capacity: int, budget: int) -> tuple[Job, int, int, int] | None:
        """The next live job's next part, at most ``capacity`` sequences and ``budget`` tokens (at least
        one unit), and its tokens."""
        with self.cond:
            while self.jobs:
                job = self.jobs.popleft()
                if job.abandoned or job.failed:
                    self._release(job, job.units - job.taken)
                    if job.abandoned:
                        self.metrics.dropped.inc()
                    continue
                lo = job.taken
                k = min(job.units - lo, max(1, capacity // job.per_unit))
                used = 0
                if job.tokens is not None:
                    used = job.tokens[lo]
                    for j in range(lo + 1, lo + k):
                        if used + job.tokens[j] > budget:
                            k = j - lo
                            break
                        used += job.tokens[j]
                job.taken += k
                if job.taken < job.units:
                    self.jobs.append(job)  # the rest waits its turn behind the jobs queued meanwhile
                return job, lo, lo + k, used
        return None

    def _gather(self) -> list[tuple[Job, int, int]]:
        cap, budget = self.settings.max_pool_sequences, self.settings.max_pool_tokens
        first = self._take(cap, budget)
        if first is None:
            return []
        pieces = [first[:3]]
        n, t = (first[2] - first[1]) * first[0].per_unit, first[3]
        deadline = time.perf_counter() + self.settings.max_wait_ms / 1000
        while n < cap and t < budget:
            piece = self._take(cap - n, budget - t)
            if piece is not None and piece[3] > budget - t:  # its first unit alone is over: next pool
                with self.cond:
                    piece[0].taken = piece[1]
                    if piece[0] not in self.jobs:
                        self.jobs.appendleft(piece[0])
                break
            if piece is None:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                with self.cond:
                    if not self.jobs:
                        self.cond.wait(left)
                continue
            pieces.append(piece[:3])
            n, t = n + (piece[2] - piece[1]) * piece[0].per_unit, t + piece[3]
        return pieces

    def _release(self, job: Job, units: int) -> None:
        """Sequences of ``job`` no longer pending (call with ``self.cond`` held)."""
        self.pending -= units * job.per_unit
        if job.scored + units >= job.units or job.failed or job.abandoned:
            if job.cost:
                self.pending_bytes -= job.cost
                job.cost = 0
        self.metrics.queue.set(self.pending)

    def _process(self, group: list[tuple[Job, int, int]]) -> None:
        live = [p for p in group if not (p[0].abandoned or p[0].failed)]
        with self.cond:
            for p in group:
                if p not in live:
                    self._release(p[0], p[2] - p[1])
                    if p[0].abandoned:
                        self.metrics.dropped.inc()
        if not live:
            return
        self.metrics.pool.observe(len(live))
        texts = [slice_texts(job.texts, lo, hi) for job, lo, hi in live]
        try:
            out = self.score(concat_texts(texts), live[0][0].key[2])
        except Exception as e:  # noqa: BLE001 - bisected below: one bad request must not fail the others
            if len(live) > 1:
                half = len(live) // 2
                self._process(live[:half])
                self._process(live[half:])
                return
            if not request_fault(e):
                self.fault, self.fault_count = f"{type(e).__name__}", self.fault_count + 1
                self.metrics.faults.inc()
            with self.cond:
                self._release(live[0][0], live[0][2] - live[0][1])
            self._fail(live[0][0], e)
            return
        self.fault = None
        self.metrics.sequences.inc(sum(len(t) for t in texts))
        for (job, lo, hi), values in zip(live, split_values(out, texts)):
            job.parts.append(values)
            with self.cond:
                self._release(job, hi - lo)
                job.scored += hi - lo
            if job.scored == job.units:
                self._resolve(job, join_parts(job.parts, job.texts.pairs is not None))

    def _fail(self, job: Job, e: BaseException) -> None:
        job.failed = True
        self._resolve(job, e)

    @staticmethod
    def _resolve(job: Job, value: Any) -> None:
        def set_it():
            if job.future.done():  # the client went away
                return
            if isinstance(value, BaseException):
                job.future.set_exception(value)
            else:
                job.future.set_result(value)

        try:
            job.loop.call_soon_threadsafe(set_it)
        except RuntimeError:  # the event loop is closed (shutting down): nobody is waiting
            pass
