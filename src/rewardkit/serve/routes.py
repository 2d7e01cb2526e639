"""rewardkit's own routes: ``POST /score`` (``prompts`` / ``responses``; a body with vLLM's score fields
goes to :func:`rewardkit.serve.vllm_score.vllm_score`), ``/score_pairs``, ``/get_reward`` (OpenRLHF's
protocol), ``GET /health``, ``/info``, ``/metrics`` (Prometheus)."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import Request
from fastapi.responses import PlainTextResponse

from rewardkit.serve.limits import RequestError, parse, parse_either
from rewardkit.serve.schemas import OpenRLHFRequest, PairsRequest, ScorePairsRequest, ScoreRequest, plain
from rewardkit.serve.vllm_score import VLLM_SCORE_FIELDS, vllm_score
from rewardkit.templating import Texts, completion_text


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


def rewards_body(out: np.ndarray) -> dict[str, Any]:
    if out.ndim == 2:  # rewards, members..., std
        return {"rewards": out[0].tolist(), "members": out[1:-1].tolist(), "std": out[-1].tolist()}
    return {"rewards": out.tolist()}


def _score_model(data: Any) -> type:
    """rewardkit's ``/score`` body or vLLM's, told apart by their fields (never both)."""
    if isinstance(data, dict) and VLLM_SCORE_FIELDS & data.keys():
        if {"prompts", "responses"} & data.keys():
            raise RequestError(
                400, "give rewardkit's 'prompts' / 'responses' or vLLM's score fields, not both"
            )
        return ScorePairsRequest
    return ScoreRequest


async def _score_own(srv, request: Request, req: ScoreRequest) -> dict:
    if len(req.prompts) != len(req.responses):
        raise RequestError(
            400, f"fields 'prompts' and 'responses' have {len(req.prompts)} and {len(req.responses)} items"
        )
    if req.metadata is not None and len(req.metadata) != len(req.responses):
        raise RequestError(
            400, f"field 'metadata' has {len(req.metadata)} items for {len(req.responses)} responses"
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


def add_routes(route, app, srv) -> None:
    """Register rewardkit's routes with ``route`` (``build_app``'s registrar) over the server ``srv``."""
    settings = srv.settings

    @route("/score")
    async def score(request: Request) -> dict:
        req = await parse_either(request, _score_model, settings)
        if isinstance(req, ScorePairsRequest):
            return await vllm_score(srv, request, req)
        return await _score_own(srv, request, req)

    @route("/score_pairs")
    async def score_pairs(request: Request) -> dict:
        from rewardkit.records import PreferencePair

        req = await parse(request, PairsRequest, settings)
        srv.check_chars({"pairs.prompt": [p.prompt for p in req.pairs], "pairs.chosen": [p.chosen for p in req.pairs],
                         "pairs.rejected": [p.rejected for p in req.pairs]})  # fmt: skip
        pairs = [PreferencePair(plain(p.prompt), p.chosen, p.rejected, p.metadata) for p in req.pairs]
        texts = Texts.from_pairs(pairs)
        out, _ = await srv.run(request, texts, req.members)
        chosen, rejected = texts.split_pairs(out, axis=-1)
        if out.ndim == 2:  # rows: rewards, member rewards, their std
            return {"chosen": chosen[0].tolist(), "rejected": rejected[0].tolist(),
                    "chosen_members": chosen[1:-1].tolist(), "rejected_members": rejected[1:-1].tolist()}  # fmt: skip
        return {"chosen": chosen.tolist(), "rejected": rejected.tolist()}

    @route("/get_reward")
    async def get_reward(request: Request) -> dict:
        """OpenRLHF: ``query`` is already-templated text, tokenised as it is (nothing added)."""
        req = await parse(request, OpenRLHFRequest, settings)
        if req.prompts is not None and len(req.prompts) != len(req.query):
            raise RequestError(
                400, f"fields 'query' and 'prompts' have {len(req.query)} and {len(req.prompts)} items"
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
        found = srv.problem(engine_faults=True)
        if found is not None:
            faults = f"; {srv.batcher.fault_count} so far" if found.kind == "engine_fault" else ""
            raise RequestError(found.status, found.reason + faults)
        b = srv.batcher
        return {"status": "ok", "queue_sequences": b.pending, "engine_faults": b.fault_count}

    @route("/info", "GET")
    async def info(request: Request) -> dict:
        found = srv.load_problem()
        if found is not None:
            raise RequestError(found.status, str(found))
        keys = ("max_request_sequences", "max_request_bytes", "max_queue_sequences", "max_queue_bytes",
                "max_wait_ms", "max_pool_sequences", "max_pool_tokens", "receive_timeout_s", "header_timeout_s",
                "keep_alive_s", "max_connections", "max_json_values", "deterministic")  # fmt: skip
        limits = {k: getattr(settings, k) for k in keys}
        return {**srv.info, "limits": {**limits, "max_sequence_chars": srv.char_cap}}

    @app.get("/metrics")
    async def prometheus():
        from prometheus_client import generate_latest

        text = generate_latest(srv.metrics.registry).decode()
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")
