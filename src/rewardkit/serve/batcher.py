"""The batcher thread: pools waiting requests into engine calls (one model copy; scoring never runs on
the event loop).

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
from rewardkit.serve.metrics import Metrics
from rewardkit.serve.pooling import concat_texts, join_parts, slice_texts, split_values
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
