"""The HTTP app: any reward model behind FastAPI, with dynamic batching through the shared engine.

Requests are validated on the event loop and handed to one **batcher thread** (scoring never runs on
the event loop). The batcher pools the sequences of every request waiting (up to ``max_wait_ms`` for
more once the first arrives, at most ``max_pool_sequences``) and scores them in **one** engine call:
the engine sorts them by length into token-budget batches, so concurrent small requests share full
batches and little padding. Results are routed back to each request in order. A pooled call that fails
is retried request by request, so a bad request fails alone and never affects the others.

Endpoints: ``POST /score``, ``POST /score_pairs``, ``POST /get_reward`` (OpenRLHF's protocol),
``GET /health``, ``GET /info``, ``GET /metrics`` (Prometheus). See docs/serving.md.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rewardkit.errors import DataError, ModelError
from rewardkit.templating import Texts, completion_text

logger = logging.getLogger(__name__)


class Message(BaseModel):
    """A chat message: string ``role`` and ``content`` (other keys, e.g. ``name``, are kept)."""

    model_config = ConfigDict(extra="allow")
    role: str
    content: str


@dataclass
class ServeSettings:
    """Limits and batching knobs of one server (see ``rewardkit serve --help``)."""

    max_wait_ms: float = 5.0
    max_pool_sequences: int = 64
    max_queue_sequences: int = 8192
    max_request_sequences: int = 1024
    max_request_bytes: int = 16 * 2**20
    api_key: str | None = None
    retry_after_s: int = 1


def _plain(value: Any) -> Any:
    """Validated messages back to plain dicts (a string stays a string)."""
    if isinstance(value, Message):
        return value.model_dump()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class ScoreRequest(BaseModel):
    """``prompts`` and ``responses`` as TRL passes them (strings or message lists)."""

    model_config = ConfigDict(extra="forbid")
    prompts: list[str | list[Message]]
    responses: list[str | list[Message] | Message]
    members: bool = Field(False, description="also return each ensemble member's rewards and their std")
    reward_call: bool = Field(False, description="TRL reward_funcs convention (GRPOTrainer's nn.Module path)")
    metadata: list[dict[str, Any]] | None = Field(None, description="per-response fields, e.g. a reference")


class PairIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str | list[Message]
    chosen: str
    rejected: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class PairsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pairs: list[PairIn]
    members: bool = False


class OpenRLHFRequest(BaseModel):
    """OpenRLHF's remote reward model protocol: full texts (prompt + response) in ``query``."""

    model_config = ConfigDict(extra="allow")
    query: list[str]
    prompts: list[str] | None = None


class Unavailable(Exception):
    """The queue is full (503 with Retry-After)."""


@dataclass
class Job:
    key: tuple
    texts: Texts
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future

    @property
    def n(self) -> int:
        return len(self.texts)


def _concat(texts: list[Texts]) -> Texts:
    """One Texts of several requests' sequences (pairs: all chosen, then all rejected)."""
    if texts[0].pairs is not None:
        return Texts.from_pairs([p for t in texts for p in t.pairs])
    meta = None
    if any(t.metadata is not None for t in texts):
        meta = [m for t in texts for m in (t.metadata or [{}] * len(t))]
    return Texts(
        [p for t in texts for p in t.prompts],
        [r for t in texts for r in t.responses],
        reward_call=texts[0].reward_call,
        metadata=meta,
    )


def _split(values: np.ndarray, texts: list[Texts]) -> list[np.ndarray]:
    """Per-request slices of pooled outputs (last axis: sequences), undoing :func:`_concat`'s order."""
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


class Metrics:
    """Prometheus metrics of one app (its own registry)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "rewardkit_requests", "HTTP requests", ["endpoint", "status"], registry=self.registry
        )
        self.sequences = Counter("rewardkit_sequences", "sequences scored", registry=self.registry)
        self.tokens = Counter("rewardkit_tokens", "real tokens scored", registry=self.registry)
        self.padded = Counter(
            "rewardkit_padded_tokens", "tokens computed, padding included", registry=self.registry
        )
        buckets = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
        self.batch = Histogram(
            "rewardkit_batch_sequences", "sequences per engine batch", buckets=buckets, registry=self.registry
        )
        self.pool = Histogram(
            "rewardkit_pool_requests",
            "requests pooled into one engine call",
            buckets=buckets,
            registry=self.registry,
        )
        self.queue = Gauge(
            "rewardkit_queue_sequences", "sequences waiting to be scored", registry=self.registry
        )
        self.latency = Histogram(
            "rewardkit_request_latency_seconds",
            "request latency",
            ["endpoint"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )

    def observe_batch(self, sequences: int, tokens: int, padded: int) -> None:
        self.batch.observe(sequences)
        self.tokens.inc(tokens)
        self.padded.inc(padded)


class Batcher(threading.Thread):
    """Pools waiting requests into engine calls on one thread (one model copy, nothing on the event loop)."""

    def __init__(self, get_model: Callable[[], Any], settings: ServeSettings, metrics: Metrics):
        super().__init__(name="rewardkit-batcher", daemon=True)
        self.get_model, self.settings, self.metrics = get_model, settings, metrics
        self.jobs: queue.Queue[Job] = queue.Queue()
        self.pending = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def submit(self, job: Job) -> None:
        with self.lock:
            if self.pending + job.n > self.settings.max_queue_sequences:
                raise Unavailable
            self.pending += job.n
            self.metrics.queue.set(self.pending)
        self.jobs.put(job)

    def run(self) -> None:
        while not (self.stopping.is_set() and self.jobs.empty()):
            try:
                first = self.jobs.get(timeout=0.1)
            except queue.Empty:
                continue
            jobs = [first]
            try:
                self._pool_and_score(jobs)
            except BaseException as e:  # noqa: BLE001 - never die silently: fail this pool, keep serving
                logger.exception("the batcher failed on a pool of %d request(s)", len(jobs))
                for job in jobs:
                    self._resolve(job, e)
            finally:
                with self.lock:
                    self.pending -= sum(j.n for j in jobs)
                    self.metrics.queue.set(self.pending)

    def _pool_and_score(self, jobs: list[Job]) -> None:
        """Add waiting jobs to ``jobs`` (in place, up to the pool's limits), then score them."""
        n = jobs[0].n
        deadline = time.perf_counter() + self.settings.max_wait_ms / 1000
        while n < self.settings.max_pool_sequences:
            try:
                job = self.jobs.get(timeout=max(0.0, deadline - time.perf_counter()))
            except queue.Empty:
                break
            jobs.append(job)
            n += job.n
        groups: dict[tuple, list[Job]] = {}
        for job in jobs:
            groups.setdefault(job.key, []).append(job)
        for group in groups.values():
            self._process(group)

    def _score(self, texts: Texts, members: bool) -> np.ndarray:
        """[n] rewards, or [1 + M + 1, n]: rewards, member rewards, their std."""
        rm = self.get_model()
        if members and hasattr(rm, "uncertainty"):
            u = rm.uncertainty(texts)
            return np.concatenate([u.aggregate[None], u.members, u.std[None]]).astype(np.float64)
        return np.asarray(rm.score_texts(texts), dtype=np.float64)

    def _process(self, group: list[Job]) -> None:
        self.metrics.pool.observe(len(group))
        try:
            out = self._score(_concat([j.texts for j in group]), group[0].key[2])
        except Exception as e:  # noqa: BLE001 - isolated below: one bad request must not fail the others
            if len(group) > 1:
                for job in group:
                    self._process([job])
                return
            self._resolve(group[0], e)
            return
        self.metrics.sequences.inc(sum(j.n for j in group))
        for job, values in zip(group, _split(out, [j.texts for j in group])):
            self._resolve(job, values)

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


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": _one_line(message)}, status_code=status, headers=headers)


def build_app(
    load: Callable[[], Any],
    settings: ServeSettings | None = None,
    describe: dict | None = None,
    start_in_lifespan: bool = True,
) -> FastAPI:
    """A FastAPI app serving the reward model that ``load()`` returns (called once, on a background
    thread at start-up: ``/health`` answers 503 until it is loaded). ``describe``: extra ``/info`` fields.
    ``start_in_lifespan=False``: the host starts it with ``app.state.start()`` (Ray Serve replicas)."""
    from contextlib import asynccontextmanager

    from prometheus_client import generate_latest

    settings = settings or ServeSettings()
    metrics = Metrics()
    state: dict[str, Any] = {"model": None, "error": None, "info": {}}
    ready = threading.Event()

    def loader() -> None:
        try:
            rm = load()
            state["model"] = rm
            state["info"] = model_info(rm, describe)
        except BaseException as e:  # noqa: BLE001 - reported by /health and the CLI
            state["error"] = e
            logger.error("could not load the reward model: %s", e)
        finally:
            ready.set()

    batcher = Batcher(lambda: state["model"], settings, metrics)
    started = threading.Event()

    def start() -> None:
        """Load the model on a background thread and start the batcher (once)."""
        if started.is_set():
            return
        started.set()
        from rewardkit.scoring import BATCH_OBSERVERS

        BATCH_OBSERVERS.append(metrics.observe_batch)
        threading.Thread(target=loader, name="rewardkit-loader", daemon=True).start()
        batcher.start()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if start_in_lifespan:
            start()
        try:
            yield
        finally:  # uvicorn has drained in-flight requests; finish whatever is still queued
            from rewardkit.scoring import BATCH_OBSERVERS

            batcher.stopping.set()
            if batcher.is_alive():
                await asyncio.get_running_loop().run_in_executor(None, batcher.join, 60)
            if metrics.observe_batch in BATCH_OBSERVERS:
                BATCH_OBSERVERS.remove(metrics.observe_batch)

    app = FastAPI(title="rewardkit", lifespan=lifespan)
    app.state.rewardkit = state
    app.state.ready = ready
    app.state.metrics = metrics
    app.state.settings = settings
    app.state.start = start

    async def parse(request: Request, model: type[BaseModel]) -> BaseModel | JSONResponse:
        """The request body as ``model``, whatever its content type; a one-line 413 / 422 otherwise."""
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > settings.max_request_bytes:
                metrics.requests.labels(request.url.path, "413").inc()
                return _error(413, f"request body exceeds the limit of {settings.max_request_bytes} bytes")
        try:
            data = json.loads(bytes(body))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            metrics.requests.labels(request.url.path, "422").inc()
            return _error(422, f"invalid JSON ({e})")
        try:
            return model.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in err.get("loc", ())) or "body"
            metrics.requests.labels(request.url.path, "422").inc()
            return _error(422, f"field {loc!r}: {err.get('msg')}")

    routes = {"/score", "/score_pairs", "/get_reward", "/health", "/info", "/metrics"}

    @app.middleware("http")
    async def guard(request: Request, call_next):
        path = request.url.path if request.url.path in routes else "other"  # bounded metric labels
        if settings.api_key and path != "/health":
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, f"Bearer {settings.api_key}".encode()):
                metrics.requests.labels(path, "401").inc()
                return _error(401, "missing or wrong bearer token (Authorization: Bearer KEY)")
        if request.method == "POST":
            size = request.headers.get("content-length")
            if size is not None and size.isdigit() and int(size) > settings.max_request_bytes:
                metrics.requests.labels(path, "413").inc()
                return _error(
                    413, f"request body of {size} bytes exceeds the limit of {settings.max_request_bytes}"
                )
        return await call_next(request)

    async def run(texts: Texts, members: bool) -> np.ndarray | JSONResponse:
        """Queue ``texts`` for the batcher and wait for its rewards, or an error response."""
        if not ready.is_set():
            return _error(503, "the model is still loading", {"Retry-After": str(settings.retry_after_s)})
        if state["error"] is not None:
            return _error(500, f"the model failed to load: {state['error']}")
        if not batcher.is_alive():
            return _error(500, "the server's scoring thread is not running")
        if len(texts) > settings.max_request_sequences:
            return _error(
                413,
                f"{len(texts)} sequences exceed the limit of {settings.max_request_sequences} per request",
            )
        loop = asyncio.get_running_loop()
        key = (texts.pairs is not None, texts.reward_call, members, texts.metadata is not None)
        job = Job(key, texts, loop, loop.create_future())
        try:
            batcher.submit(job)
        except Unavailable:
            return _error(503, "the queue is full; retry later", {"Retry-After": str(settings.retry_after_s)})
        try:
            return await job.future
        except ModelError as e:  # the model's fault (e.g. NaN rewards), not the request's
            return _error(500, str(e))
        except (DataError, ValueError) as e:  # bad data in the request (e.g. a missing reference field)
            return _error(422, str(e))
        except Exception as e:  # noqa: BLE001 - this request fails, the server keeps serving
            logger.exception("scoring failed")
            return _error(500, f"scoring failed: {type(e).__name__}: {e}")

    def respond(endpoint: str, started: float, out, members: bool, extra: dict | None = None):
        if isinstance(out, JSONResponse):
            metrics.requests.labels(endpoint, str(out.status_code)).inc()
            return out
        metrics.requests.labels(endpoint, "200").inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
        body: dict[str, Any]
        if out.ndim == 2:  # rewards, members..., std
            body = {"rewards": out[0].tolist(), "members": out[1:-1].tolist(), "std": out[-1].tolist()}
        else:
            body = {"rewards": out.tolist()}
        if extra:
            body.update(extra)
        return JSONResponse(body)

    @app.post("/score")
    async def score(request: Request):
        started = time.perf_counter()
        req = await parse(request, ScoreRequest)
        if isinstance(req, JSONResponse):
            return req
        if len(req.prompts) != len(req.responses):
            metrics.requests.labels("/score", "422").inc()
            return _error(
                422,
                f"fields 'prompts' and 'responses' have {len(req.prompts)} and {len(req.responses)} items",
            )
        if req.metadata is not None and len(req.metadata) != len(req.responses):
            metrics.requests.labels("/score", "422").inc()
            return _error(
                422, f"field 'metadata' has {len(req.metadata)} items for {len(req.responses)} responses"
            )
        texts = Texts(
            [_plain(p) for p in req.prompts],
            [completion_text(_plain(r)) for r in req.responses],
            reward_call=req.reward_call,
            metadata=req.metadata,
        )
        return respond("/score", started, await run(texts, req.members), req.members)

    @app.post("/score_pairs")
    async def score_pairs(request: Request):
        from rewardkit.data import PreferencePair

        started = time.perf_counter()
        req = await parse(request, PairsRequest)
        if isinstance(req, JSONResponse):
            return req
        pairs = [PreferencePair(_plain(p.prompt), p.chosen, p.rejected, p.metadata) for p in req.pairs]
        out = await run(Texts.from_pairs(pairs), req.members)
        if isinstance(out, JSONResponse):
            return respond("/score_pairs", started, out, req.members)
        n = len(pairs)
        body = {"chosen": out[..., :n].tolist(), "rejected": out[..., n:].tolist()}
        if out.ndim == 2:
            body = {
                "chosen": out[0, :n].tolist(),
                "rejected": out[0, n:].tolist(),
                "chosen_members": out[1:-1, :n].tolist(),
                "rejected_members": out[1:-1, n:].tolist(),
            }
        metrics.requests.labels("/score_pairs", "200").inc()
        metrics.latency.labels("/score_pairs").observe(time.perf_counter() - started)
        return JSONResponse(body)

    @app.post("/get_reward")
    async def get_reward(request: Request):
        started = time.perf_counter()
        req = await parse(request, OpenRLHFRequest)
        if isinstance(req, JSONResponse):
            return req
        if req.prompts is not None and len(req.prompts) != len(req.query):
            metrics.requests.labels("/get_reward", "422").inc()
            return _error(
                422, f"fields 'query' and 'prompts' have {len(req.query)} and {len(req.prompts)} items"
            )
        prompts = req.prompts if req.prompts is not None else [""] * len(req.query)
        for i, (q, p) in enumerate(zip(req.query, prompts)):
            if not q.startswith(p):
                metrics.requests.labels("/get_reward", "422").inc()
                return _error(422, f"field 'query.{i}': does not start with its prompt")
        texts = Texts(list(prompts), [q[len(p) :] for q, p in zip(req.query, prompts)])
        out = await run(texts, False)
        if isinstance(out, JSONResponse):
            return respond("/get_reward", started, out, False)
        return respond("/get_reward", started, out, False, {"scores": out.tolist()})

    @app.get("/health")
    async def health():
        if not ready.is_set():
            return JSONResponse({"status": "loading"}, status_code=503)
        if state["error"] is not None:
            return JSONResponse(
                {"status": "failed", "error": _one_line(str(state["error"]))}, status_code=500
            )
        return {"status": "ok"}

    @app.get("/info")
    async def info():
        if not ready.is_set() or state["error"] is not None:
            return _error(503, "the model is not loaded")
        return {
            **state["info"],
            "limits": {
                "max_request_sequences": settings.max_request_sequences,
                "max_request_bytes": settings.max_request_bytes,
                "max_queue_sequences": settings.max_queue_sequences,
                "max_wait_ms": settings.max_wait_ms,
            },
        }

    @app.get("/metrics")
    async def prometheus():
        return PlainTextResponse(
            generate_latest(metrics.registry).decode(), media_type="text/plain; version=0.0.4"
        )

    return app


def model_info(rm: Any, extra: dict | None = None) -> dict[str, Any]:
    """What ``/info`` says of a model: kind, members, base model, token convention, versions."""
    from rewardkit.util import versions

    inner = getattr(rm, "rm", None)
    f = getattr(rm, "formatter", None) or getattr(inner, "formatter", None)
    info = {
        "kind": getattr(rm, "kind", type(rm).__name__),
        "members": getattr(rm, "num_members", 1),
        "source": getattr(rm, "source", None),
        "base_model": getattr(rm, "base_model", None),
        "chat_template": getattr(f, "chat_template", None),
        "max_length": getattr(f, "max_length", None),
        "max_tokens": getattr(rm, "max_tokens", None),
        "versions": versions(),
    }
    if getattr(rm, "kind", None) == "implicit":
        info.update(beta=rm.beta, reduction=rm.reduction, reference=rm.reference_path)
    if getattr(rm, "kind", None) == "ensemble":
        info.update(aggregation=rm.aggregation, normalize=rm.normalize, sources=rm.sources)
    if getattr(rm, "kind", None) == "length_penalized":
        info.update(alpha=rm.alpha, unit=rm.unit, wrapped=getattr(inner, "kind", None))
    source = getattr(rm, "source", None)
    if source:
        from pathlib import Path

        merge = Path(source) / "merge.json"
        if merge.is_file():
            info["merge_provenance"] = json.loads(merge.read_text())
    return {**info, **(extra or {})}
