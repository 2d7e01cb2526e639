"""The HTTP app: any reward model behind FastAPI, with dynamic batching through the shared engine.

A request is read within a deadline, parsed and validated in a worker thread, checked against the
per-sequence character cap, encoded in a worker thread (a bad request fails alone, before it is
pooled), then queued for the batcher thread (:mod:`rewardkit.serve.batcher`), which pools the
sequences of every waiting request into one engine call. A request whose client disconnects is dropped
before it is scored. Every error, FastAPI's own included, is vLLM's ``{"error": {"message", "type",
"param", "code"}}``.

Routes: rewardkit's and OpenRLHF's (:mod:`rewardkit.serve.routes`), vLLM's and SGLang's
(:mod:`rewardkit.serve.vllm`, :mod:`rewardkit.serve.vllm_score`). See docs/serving.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from rewardkit.base import RewardModel
from rewardkit.errors import ModelError
from rewardkit.serve.batcher import Batcher, Job, Unavailable, request_fault
from rewardkit.serve.limits import Guard, RequestError, check_chars, error_content
from rewardkit.serve.metrics import Metrics
from rewardkit.serve.routes import prompt_boundary
from rewardkit.serve.schemas import text_chars
from rewardkit.serve.settings import ServeSettings, sequence_char_cap
from rewardkit.templating import Texts

logger = logging.getLogger(__name__)

__all__ = ["build_app", "model_info", "prompt_boundary"]


async def _disconnected(receive) -> None:
    """Returns once the client has disconnected (the body is already read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


@dataclass(frozen=True)
class Problem:
    """Why the server cannot score: the HTTP status a route answers, a reason with no internal detail
    (safe for unauthenticated callers) and the detail (the load error) for ``/info`` and logs."""

    kind: Literal["loading", "load_failed", "scoring_thread", "engine_fault"]
    status: int
    reason: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


class Server:
    """What the routes share: settings, metrics, model state and the batcher."""

    def __init__(self, settings: ServeSettings, metrics: Metrics):
        self.settings, self.metrics = settings, metrics
        self.model: RewardModel | None = None
        self.error: BaseException | None = None  # why the model failed to load
        self.info: dict[str, Any] = {}  # what /info shows of the model
        self.ready = threading.Event()
        self.formatter = None  # the model's one token convention (None for an ensemble)
        self.counter = None  # what counts tokens: the formatter, else an ensemble member's
        self.token_limit: int | None = None
        self.char_cap = sequence_char_cap(settings, None)
        self.batcher = Batcher(self._score, settings, metrics)
        self.routes: set[str] = set()  # metric labels stay bounded: other paths count as "other"

    def count(self, path: str, status: int) -> None:
        self.metrics.requests.labels(path if path in self.routes else "other", str(status)).inc()

    def loaded(self, rm: RewardModel, describe: dict | None) -> None:
        if self.settings.deterministic:  # one sequence per forward, its prompt not shared: batch-invariant
            rm.configure(max_batch_size=1, prefix_sharing=False)
        self.formatter = rm.formatter
        self.counter = rm.formatter or next(
            (m.formatter for m in rm.members if m.formatter is not None), None
        )
        self.token_limit = None if self.counter is None else self.counter.limit
        self.char_cap = sequence_char_cap(self.settings, self.token_limit)
        self.info = model_info(rm, describe)
        self.model = rm

    def _score(self, texts: Texts, members: bool) -> np.ndarray:
        """[n] rewards, or [1 + M + 1, n]: rewards, member rewards, their std."""
        rm = self.model
        if not members:
            return np.asarray(rm.score_texts(texts), dtype=np.float64)
        rewards, cols = rm.score_columns(texts)
        if "members" not in cols:  # not an ensemble: the rewards alone
            return np.asarray(rewards, dtype=np.float64)
        rows = [np.asarray(rewards)[None], cols["members"].T, cols["std"][None]]
        return np.concatenate(rows).astype(np.float64)

    def load_problem(self) -> Problem | None:
        """Why no model can score yet: still loading (503) or failed to load (500); None once loaded."""
        if not self.ready.is_set():
            return Problem("loading", 503, "the model is still loading")
        if self.error is not None:
            return Problem("load_failed", 500, "the model failed to load", str(self.error))
        return None

    def problem(self, *, engine_faults: bool) -> Problem | None:
        """The one health rule of the server (the request gate, ``/health`` and Ray's replica check): a
        :meth:`load_problem`, a stopped scoring thread (500) and, with ``engine_faults``, an engine whose
        last call failed (503, until one succeeds); None when healthy."""
        found = self.load_problem()
        if found is not None:
            return found
        if not self.batcher.is_alive():
            return Problem("scoring_thread", 500, "the scoring thread stopped")
        if engine_faults and self.batcher.fault is not None:
            return Problem("engine_fault", 503, f"the last engine call failed ({self.batcher.fault})")
        return None

    def check_ready(self) -> None:
        """The request gate: refuse while the model cannot score (an engine fault does not refuse)."""
        found = self.problem(engine_faults=False)
        if found is not None:
            retry = {"Retry-After": str(self.settings.retry_after_s)} if found.status == 503 else None
            reason = found.reason + (" (see the server log or /info)" if found.kind == "load_failed" else "")
            raise RequestError(found.status, reason, retry)

    def check_chars(self, fields: dict[str, list]) -> None:
        check_chars({k: [text_chars(x) for x in v] for k, v in fields.items()}, self.char_cap)

    def encode_lengths(self, texts: Texts) -> list[int] | None:
        """Tokens per sequence (encoded now, in a worker thread, so a bad request fails here alone; an
        ensemble's counted by its first member with a tokenizer); None when no member has one."""
        if self.counter is None:
            return None
        try:
            return [len(x) for x in texts.encode(self.counter)]
        except Exception as e:  # noqa: BLE001 - the request's data, named in one line
            if request_fault(e):
                raise RequestError(400, str(e)) from None
            raise

    async def run(
        self, request: Request, texts: Texts, members: bool = False
    ) -> tuple[np.ndarray, list | None]:
        """Rewards of ``texts`` from the batcher (and tokens per sequence), or a :class:`RequestError`."""
        self.check_ready()
        s = self.settings
        if len(texts) > s.max_request_sequences:
            raise RequestError(
                413, f"{len(texts)} sequences exceed the limit of {s.max_request_sequences} per request"
            )
        if len(texts) == 0:  # e.g. OpenRLHF <= 0.11.1 sends empty shards to all but one of its URLs
            return np.empty(0), []
        lengths = await asyncio.to_thread(self.encode_lengths, texts)
        loop = asyncio.get_running_loop()
        key = (texts.pairs is not None, texts.reward_call, members, texts.metadata is not None, texts.raw,
               texts.special_tokens, texts.ids is not None)  # fmt: skip
        cost = sum(text_chars(p) for p in texts.prompts) + sum(len(r) for r in texts.responses)
        tokens = lengths
        if lengths is not None and texts.pairs is not None:  # a unit is a pair: chosen + rejected
            half = len(lengths) // 2
            tokens = [a + b for a, b in zip(lengths[:half], lengths[half:])]
        job = Job(key, texts, loop, loop.create_future(), cost=cost, tokens=tokens)
        try:
            self.batcher.submit(job)
        except Unavailable:
            raise RequestError(
                503, "the queue is full; retry later", {"Retry-After": str(s.retry_after_s)}
            ) from None
        gone = asyncio.ensure_future(_disconnected(request.receive))
        try:
            await asyncio.wait({job.future, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not job.future.done():
            job.abandoned = True
            job.future.cancel()
            raise RequestError(499, "the client went away")
        try:
            return job.future.result(), lengths
        except ModelError as e:  # the model's fault (e.g. NaN rewards), not the request's
            raise RequestError(500, str(e)) from None
        except Exception as e:  # noqa: BLE001 - this request fails, the server keeps serving
            if request_fault(e):
                raise RequestError(400, str(e)) from None
            logger.exception("scoring failed")
            raise RequestError(500, f"scoring failed: {type(e).__name__}: {e}") from None


def _lifecycle(srv: Server, load: Callable[[], RewardModel], describe: dict | None):
    """``start()`` (load the model on a background thread and start the batcher, once) and the app's
    lifespan (on exit: finish what is queued, stop the batcher)."""
    started = threading.Event()

    def loader() -> None:
        try:
            srv.loaded(load(), describe)
        except BaseException as e:  # noqa: BLE001 - reported by /health, /info and the CLI
            srv.error = e
            logger.error("could not load the reward model: %s", e)
        finally:
            srv.ready.set()

    def start() -> None:
        if started.is_set():
            return
        started.set()
        from rewardkit.scoring import BATCH_OBSERVERS

        BATCH_OBSERVERS.append(srv.metrics.observe_batch)
        threading.Thread(target=loader, name="rewardkit-loader", daemon=True).start()
        srv.batcher.start()

    @asynccontextmanager
    async def lifespan(app: FastAPI, start_here: bool):
        if start_here:
            start()
        try:
            yield
        finally:  # uvicorn has drained in-flight requests; finish whatever is still queued
            from rewardkit.scoring import BATCH_OBSERVERS

            srv.batcher.stopping.set()
            if srv.batcher.is_alive():
                await asyncio.get_running_loop().run_in_executor(None, srv.batcher.join, 60)
            if srv.metrics.observe_batch in BATCH_OBSERVERS:
                BATCH_OBSERVERS.remove(srv.metrics.observe_batch)

    return start, lifespan


def _registrar(app: FastAPI, srv: Server):
    """``route(path, method)``: registers ``fn(request) -> body`` at ``path``; a :class:`RequestError`
    answers its status in vLLM's error shape; requests and latency are counted by path."""

    def route(path: str, method: str = "POST"):
        srv.routes.add(path)

        def deco(fn: Callable[[Request], Awaitable[Any]]):
            async def handler(request: Request):
                t0 = time.perf_counter()
                try:
                    body = await fn(request)
                except RequestError as e:
                    srv.count(path, e.status)
                    return error_response(e.status, e.message, e.param, e.headers)
                srv.count(path, 200)
                srv.metrics.latency.labels(path).observe(time.perf_counter() - t0)
                return JSONResponse(body)

            app.add_api_route(path, handler, methods=[method], name=f"{method} {path}")
            return fn

        return deco

    return route


def error_response(status: int, message: str, param: str | None = None, headers=None) -> JSONResponse:
    return JSONResponse(error_content(status, message, param), status_code=status, headers=headers)


def _error_handlers(app: FastAPI, srv: Server) -> None:
    """FastAPI's own answers (unknown path, wrong method, validation) in vLLM's error shape."""

    async def http_error(request: Request, exc: HTTPException):
        srv.count(request.url.path, exc.status_code)
        message = {404: f"no route {request.url.path} (see /docs or docs/serving.md)",
                   405: f"method {request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))  # fmt: skip
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    async def invalid(request: Request, exc: RequestValidationError):
        srv.count(request.url.path, 400)
        errors = exc.errors()
        loc = ".".join(str(x) for x in errors[0]["loc"]) if errors else None
        return error_response(400, f"field {loc!r}: {errors[0]['msg'] if errors else 'invalid'}", loc)

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)


def build_app(
    load: Callable[[], RewardModel],
    settings: ServeSettings | None = None,
    describe: dict | None = None,
    start_in_lifespan: bool = True,
) -> FastAPI:
    """A FastAPI app serving the reward model that ``load()`` returns (called once, on a background
    thread at start-up: ``/health`` answers 503 until it is loaded). ``describe``: extra ``/info`` fields.
    ``start_in_lifespan=False``: the host starts it with ``app.state.start()`` (Ray Serve replicas)."""
    from rewardkit.serve.routes import add_routes
    from rewardkit.serve.vllm import add_vllm_routes
    from rewardkit.serve.vllm_score import add_score_routes

    settings = settings or ServeSettings()
    srv = Server(settings, Metrics())
    start, lifespan = _lifecycle(srv, load, describe)
    app = FastAPI(title="rewardkit", lifespan=lambda a: lifespan(a, start_in_lifespan))
    app.state.ready, app.state.metrics = srv.ready, srv.metrics
    app.state.settings, app.state.start, app.state.server = settings, start, srv
    app.add_middleware(Guard, settings=settings, count=srv.count)
    _error_handlers(app, srv)
    route = _registrar(app, srv)
    add_routes(route, app, srv)
    add_vllm_routes(route, srv)
    add_score_routes(route, srv)
    srv.routes.update({"/metrics", "/docs", "/openapi.json"})
    return app


def record_fields(rm: RewardModel) -> list[str]:
    """The per-example record fields ``rm`` reads (a length penalty's reference field), its members'
    included: what a client sends beside the texts (``RemoteRewardModel`` sends only these)."""
    ref = rm.describe().get("reference") if rm.kind == "length_penalized" else None
    own = [ref] if isinstance(ref, str) and ref != "callable" else []
    for m in rm.members:
        own += [f for f in record_fields(m) if f not in own]
    return own


def model_info(rm: RewardModel, extra: dict | None = None) -> dict[str, Any]:
    """What ``/info`` says of a model: its ``describe()``, library versions, merge provenance."""
    from pathlib import Path

    from rewardkit.util import versions

    info = {**rm.describe(), "versions": versions(), "record_fields": record_fields(rm)}
    if rm.source and (Path(rm.source) / "merge.json").is_file():
        info["merge_provenance"] = json.loads((Path(rm.source) / "merge.json").read_text())
    return {**info, **(extra or {})}
