"""The HTTP app: any reward model behind FastAPI, with dynamic batching through the shared engine.

A request is read within a deadline, parsed and validated in a worker thread, checked against the
per-sequence character cap, encoded in a worker thread (a bad request fails alone, before it is
pooled), then queued for the batcher thread (:mod:`rewardkit.serve.batcher`), which pools the
sequences of every waiting request into one engine call. A request whose client disconnects is dropped
before it is scored.

Endpoints: ``POST /score``, ``POST /score_pairs``, ``POST /get_reward`` (OpenRLHF's protocol),
vLLM's ``GET /v1/models``, ``POST /pooling``, ``/classify``, ``/tokenize``, ``/detokenize``
(:mod:`rewardkit.serve.vllm`), ``GET /health``, ``GET /info``, ``GET /metrics`` (Prometheus).
See docs/serving.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from rewardkit.errors import ModelError
from rewardkit.serve.batcher import Batcher, Job, Metrics, Unavailable, request_fault
from rewardkit.serve.limits import (
    Guard,
    RequestError,
    ServeSettings,
    check_chars,
    parse,
    sequence_char_cap,
)
from rewardkit.serve.schemas import OpenRLHFRequest, PairsRequest, ScoreRequest, plain, text_chars
from rewardkit.templating import Texts, completion_text

logger = logging.getLogger(__name__)

ROUTES = (
    "/score",
    "/score_pairs",
    "/get_reward",
    "/v1/models",
    "/pooling",
    "/classify",
    "/tokenize",
    "/detokenize",
    "/health",
    "/info",
    "/metrics",
)
__all__ = ["ServeSettings", "build_app", "model_info", "prompt_boundary"]


def prompt_boundary(query: str, prompt: str) -> int:
    """Where the response starts in an OpenRLHF ``query`` (characters): after ``prompt`` when the query
    starts with it; else after the longest end of ``prompt`` the query starts with (a left-truncated
    prompt); else after their common prefix (a decode that does not invert encode)."""
    if query.startswith(prompt):
        return len(prompt)
    fail = [0] * len(query)  # KMP failure function of query, then prompt run through it
    k = 0
    for i in range(1, len(query)):
        while k and query[i] != query[k]:
            k = fail[k - 1]
        if query[i] == query[k]:
            k += 1
        fail[i] = k
    k = 0
    for ch in prompt:
        while k and (k == len(query) or ch != query[k]):
            k = fail[k - 1]
        if k < len(query) and ch == query[k]:
            k += 1
    common = 0
    for a, b in zip(query, prompt):
        if a != b:
            break
        common += 1
    return max(k, common)


async def _disconnected(receive) -> None:
    """Returns once the client has disconnected (the body is already read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class Server:
    """What the routes share: settings, metrics, model state and the batcher."""

    def __init__(self, settings: ServeSettings, metrics: Metrics):
        self.settings, self.metrics = settings, metrics
        self.state: dict[str, Any] = {"model": None, "error": None, "info": {}}
        self.ready = threading.Event()
        self.formatter = None
        self.char_cap = sequence_char_cap(settings, None)
        self.batcher = Batcher(self._score, settings, metrics)

    def loaded(self, rm: Any, describe: dict | None) -> None:
        self.formatter = rm.formatter
        self.char_cap = sequence_char_cap(self.settings, None if rm.formatter is None else rm.formatter.limit)
        self.state["info"] = model_info(rm, describe)
        self.state["model"] = rm

    def _score(self, texts: Texts, members: bool) -> np.ndarray:
        """[n] rewards, or [1 + M + 1, n]: rewards, member rewards, their std."""
        rm = self.state["model"]
        if not members:
            return np.asarray(rm.score_texts(texts), dtype=np.float64)
        rewards, cols = rm.score_columns(texts)
        if "members" not in cols:  # not an ensemble: the rewards alone
            return np.asarray(rewards, dtype=np.float64)
        rows = [np.asarray(rewards)[None], cols["members"].T, cols["std"][None]]
        return np.concatenate(rows).astype(np.float64)

    def check_ready(self) -> None:
        if not self.ready.is_set():
            raise RequestError(
                503, "the model is still loading", {"Retry-After": str(self.settings.retry_after_s)}
            )
        if self.state["error"] is not None:
            raise RequestError(500, "the model failed to load (see the server log or /info)")
        if not self.batcher.is_alive():
            raise RequestError(500, "the server's scoring thread is not running")

    def check_chars(self, fields: dict[str, list]) -> None:
        check_chars({k: [text_chars(x) for x in v] for k, v in fields.items()}, self.char_cap)

    def encode_lengths(self, texts: Texts) -> list[int] | None:
        """Tokens per sequence (encoded now, in a worker thread, so a bad request fails here alone);
        None for models without one formatter."""
        if self.formatter is None:
            return None
        try:
            return [len(x) for x in texts.encode(self.formatter)]
        except Exception as e:  # noqa: BLE001 - the request's data, named in one line
            if request_fault(e):
                raise RequestError(422, str(e)) from None
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
                raise RequestError(422, str(e)) from None
            logger.exception("scoring failed")
            raise RequestError(500, f"scoring failed: {type(e).__name__}: {e}") from None


def rewards_body(out: np.ndarray) -> dict[str, Any]:
    if out.ndim == 2:  # rewards, members..., std
        return {"rewards": out[0].tolist(), "members": out[1:-1].tolist(), "std": out[-1].tolist()}
    return {"rewards": out.tolist()}


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

    from rewardkit.serve.vllm import add_vllm_routes

    settings = settings or ServeSettings()
    metrics = Metrics()
    srv = Server(settings, metrics)
    state, ready, batcher = srv.state, srv.ready, srv.batcher
    started = threading.Event()

    def loader() -> None:
        try:
            srv.loaded(load(), describe)
        except BaseException as e:  # noqa: BLE001 - reported by /health, /info and the CLI
            state["error"] = e
            logger.error("could not load the reward model: %s", e)
        finally:
            ready.set()

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
    app.state.server = srv

    def count(path: str, status: int) -> None:
        metrics.requests.labels(path if path in ROUTES else "other", str(status)).inc()  # bounded labels

    app.add_middleware(Guard, settings=settings, count=count)

    def route(path: str, method: str = "POST"):
        """Register ``fn(request) -> dict`` at ``path``: a :class:`RequestError` answers its status."""

        def deco(fn: Callable[[Request], Awaitable[dict]]):
            async def handler(request: Request):
                t0 = time.perf_counter()
                try:
                    body = await fn(request)
                except RequestError as e:
                    count(path, e.status)
                    return JSONResponse({"error": e.message}, status_code=e.status, headers=e.headers)
                count(path, 200)
                metrics.latency.labels(path).observe(time.perf_counter() - t0)
                return JSONResponse(body)

            app.add_api_route(path, handler, methods=[method], name=path)
            return fn

        return deco

    @route("/score")
    async def score(request: Request) -> dict:
        req = await parse(request, ScoreRequest, settings)
        if len(req.prompts) != len(req.responses):
            raise RequestError(
                422,
                f"fields 'prompts' and 'responses' have {len(req.prompts)} and {len(req.responses)} items",
            )
        if req.metadata is not None and len(req.metadata) != len(req.responses):
            raise RequestError(
                422, f"field 'metadata' has {len(req.metadata)} items for {len(req.responses)} responses"
            )
        srv.check_chars({"prompts": req.prompts, "responses": req.responses})
        texts = Texts(
            [plain(p) for p in req.prompts],
            [completion_text(plain(r)) for r in req.responses],
            reward_call=req.reward_call,
            metadata=req.metadata,
        )
        out, _ = await srv.run(request, texts, req.members)
        return rewards_body(out)

    @route("/score_pairs")
    async def score_pairs(request: Request) -> dict:
        from rewardkit.data import PreferencePair

        req = await parse(request, PairsRequest, settings)
        srv.check_chars(
            {
                "pairs.prompt": [p.prompt for p in req.pairs],
                "pairs.chosen": [p.chosen for p in req.pairs],
                "pairs.rejected": [p.rejected for p in req.pairs],
            }
        )
        pairs = [PreferencePair(plain(p.prompt), p.chosen, p.rejected, p.metadata) for p in req.pairs]
        out, _ = await srv.run(request, Texts.from_pairs(pairs), req.members)
        n = len(pairs)
        if out.ndim == 2:
            return {
                "chosen": out[0, :n].tolist(),
                "rejected": out[0, n:].tolist(),
                "chosen_members": out[1:-1, :n].tolist(),
                "rejected_members": out[1:-1, n:].tolist(),
            }
        return {"chosen": out[:n].tolist(), "rejected": out[n:].tolist()}

    @route("/get_reward")
    async def get_reward(request: Request) -> dict:
        """OpenRLHF: ``query`` is already-templated text, tokenised as it is (nothing added)."""
        req = await parse(request, OpenRLHFRequest, settings)
        if req.prompts is not None and len(req.prompts) != len(req.query):
            raise RequestError(
                422, f"fields 'query' and 'prompts' have {len(req.query)} and {len(req.prompts)} items"
            )
        srv.check_chars({"query": req.query})
        cuts = (
            [prompt_boundary(q, p) for q, p in zip(req.query, req.prompts)]
            if req.prompts
            else [0] * len(req.query)
        )
        texts = Texts(
            [q[:k] for q, k in zip(req.query, cuts)], [q[k:] for q, k in zip(req.query, cuts)], raw=True
        )
        out, _ = await srv.run(request, texts)
        return {"rewards": out.tolist(), "scores": out.tolist()}

    @route("/health", "GET")
    async def health(request: Request) -> dict:
        """No internal detail (paths, messages) for unauthenticated callers: status and counts only."""
        if not ready.is_set():
            raise RequestError(503, "loading")
        if state["error"] is not None:
            raise RequestError(500, "the model failed to load")
        if not batcher.is_alive():
            raise RequestError(500, "the scoring thread stopped")
        if batcher.fault is not None:
            raise RequestError(
                503, f"the last engine call failed ({batcher.fault}); {batcher.fault_count} so far"
            )
        return {"status": "ok", "queue_sequences": batcher.pending, "engine_faults": batcher.fault_count}

    @route("/info", "GET")
    async def info(request: Request) -> dict:
        if not ready.is_set():
            raise RequestError(503, "the model is not loaded")
        if state["error"] is not None:
            raise RequestError(500, f"the model failed to load: {state['error']}")
        keys = ("max_request_sequences", "max_request_bytes", "max_queue_sequences", "max_queue_bytes",
                "max_wait_ms", "max_pool_sequences", "max_pool_tokens", "receive_timeout_s", "max_connections", "max_json_values")  # fmt: skip
        limits = {k: getattr(settings, k) for k in keys}
        return {**state["info"], "limits": {**limits, "max_sequence_chars": srv.char_cap}}

    @app.get("/metrics")
    async def prometheus():
        return PlainTextResponse(
            generate_latest(metrics.registry).decode(), media_type="text/plain; version=0.0.4"
        )

    add_vllm_routes(route, srv)
    return app


def model_info(rm: Any, extra: dict | None = None) -> dict[str, Any]:
    """What ``/info`` says of a model: its ``describe()``, library versions, merge provenance."""
    from pathlib import Path

    from rewardkit.util import versions

    info = {**rm.describe(), "versions": versions()}
    if rm.source and (Path(rm.source) / "merge.json").is_file():
        info["merge_provenance"] = json.loads((Path(rm.source) / "merge.json").read_text())
    return {**info, **(extra or {})}
