"""vLLM's score and rerank APIs over a reward model: ``POST /score`` (vLLM's shape: ``queries`` /
``documents``, ``data_1`` / ``data_2`` or ``text_1`` / ``text_2``; rewardkit's own ``prompts`` /
``responses`` go to the same path, told apart by their fields), ``/v1/score``, ``/rerank``, ``/v1/rerank``
and ``/v2/rerank``.

A (query, document) is a (prompt, response): its score is the reward ``/score`` and ``rewardkit score``
give that prompt and response. Unlike vLLM's cross-encoders, the score is the raw reward unless
``use_activation`` (or ``activation`` / ``softmax``) is true (then its sigmoid): a reward model's output
is a reward, and the ranking is the same either way.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Request

from rewardkit.serve.limits import RequestError, parse
from rewardkit.serve.schemas import RerankRequest, ScorePairsRequest
from rewardkit.serve.vllm import activation, check_model, check_truncation, reply, sigmoid
from rewardkit.templating import Texts, completion_text

#: the fields that make a ``/score`` body vLLM's rather than rewardkit's
VLLM_SCORE_FIELDS = frozenset({"queries", "documents", "data_1", "data_2", "text_1", "text_2"})


def paired(left: list[str], right: list[str]) -> tuple[list[str], list[str]]:
    """vLLM's pairing: one item on the left is scored against every item on the right, else item by item."""
    if len(left) == 1:
        return left * len(right), right
    if len(left) != len(right):
        raise RequestError(
            400, f"the two sides have {len(left)} and {len(right)} items (give 1 or equal counts)"
        )
    return left, right


async def _rewards(srv, request: Request, req, prompts: list[str], responses: list[str]):
    check_model(req.model, srv.settings.model_name)
    srv.check_ready()
    check_truncation(req, srv.token_limit)
    if not responses:
        raise RequestError(400, "nothing to score: the documents are empty")
    srv.check_chars({"queries": prompts, "documents": responses})
    texts = Texts(list(prompts), [completion_text(r) for r in responses])
    out, lengths = await srv.run(request, texts)
    act = activation(req, default=False)
    return [sigmoid(float(x)) if act else float(x) for x in out], lengths


async def vllm_score(srv, request: Request, req: ScorePairsRequest) -> dict[str, Any]:
    prompts, responses = paired(*req.sides())
    scores, lengths = await _rewards(srv, request, req, prompts, responses)
    data = [{"index": i, "object": "score", "score": s} for i, s in enumerate(scores)]
    return reply("score", srv.settings.model_name, data, lengths)


def add_score_routes(route, srv) -> None:
    """``/v1/score`` and the rerank routes (``/score`` itself dispatches in :mod:`rewardkit.serve.routes`)."""
    settings = srv.settings

    @route("/v1/score")
    async def score_v1(request: Request) -> dict:
        return await vllm_score(srv, request, await parse(request, ScorePairsRequest, settings))

    async def rerank(request: Request) -> dict:
        req = await parse(request, RerankRequest, settings)
        scores, lengths = await _rewards(srv, request, req, [req.query] * len(req.documents), req.documents)
        order = sorted(range(len(scores)), key=lambda i: -scores[i])
        if req.top_n:
            order = order[: req.top_n]
        results = [
            {"index": i, "document": {"text": req.documents[i]} if req.return_documents else None,
             "relevance_score": scores[i]}
            for i in order
        ]  # fmt: skip
        tokens = None if lengths is None else int(sum(lengths))
        return {"id": f"rerank-{uuid.uuid4().hex}", "model": settings.model_name,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}, "results": results}  # fmt: skip

    for path in ("/rerank", "/v1/rerank", "/v2/rerank"):
        route(path)(rerank)
