"""vLLM-compatible routes (the API of ``vllm serve <rm> --runner pooling``): ``GET /v1/models``,
``POST /pooling``, ``/classify``, ``/tokenize``, ``/detokenize``, in vLLM's request and response shapes.

Inputs as vLLM takes them: ``input`` is a string, a list of strings, token ids or a list of token-id
lists (completion style: the text is tokenised as it is, with the tokenizer's special tokens unless
``add_special_tokens`` is false); ``messages`` is one conversation (chat style) whose last message is
the assistant's response, scored under rewardkit's token convention, exactly as ``/score`` scores it.
The reward in ``data[i]`` is ``rewardkit score``'s. Fields that would change a reward and that
rewardkit does not implement are refused (422 naming the field), never ignored.
"""

from __future__ import annotations

import math
import time
import uuid
from typing import Any

from fastapi import Request

from rewardkit.serve.limits import RequestError, parse
from rewardkit.serve.schemas import DetokenizeRequest, TokenizeRequest, VLLMRequest, plain
from rewardkit.templating import Texts, to_messages


def _check_model(name: str | None, served: str) -> None:
    if name is not None and name != served:
        raise RequestError(
            404, f"field 'model': the model `{name}` does not exist (this server serves `{served}`)"
        )


def _refuse_unsupported(req: VLLMRequest) -> None:
    if req.encoding_format != "float":
        raise RequestError(422, "field 'encoding_format': only 'float' is supported")
    if req.truncate_prompt_tokens not in (None, -1):
        raise RequestError(
            422, "field 'truncate_prompt_tokens': not supported (sequences keep their last max_length tokens)"
        )
    if req.dimensions is not None:
        raise RequestError(422, "field 'dimensions': not supported by a reward model")


def vllm_texts(req: VLLMRequest, formatter) -> Texts:
    """The sequences of a vLLM request as rewardkit :class:`Texts`."""
    if req.messages is not None:
        msgs = [plain(m) for m in req.messages]
        if msgs[-1]["role"] != "assistant":
            raise RequestError(
                422, "field 'messages': the last message must be the assistant's response to score"
            )
        if req.add_special_tokens:
            raise RequestError(
                422, "field 'add_special_tokens': not supported with 'messages' (the template adds them)"
            )
        return Texts([msgs[:-1]], [msgs[-1]["content"]])
    special = True if req.add_special_tokens is None else req.add_special_tokens
    inp = req.input
    if isinstance(inp, str):
        inp = [inp]
    if all(isinstance(x, int) for x in inp):
        inp = [inp]
    if isinstance(inp[0], str):
        return Texts([""] * len(inp), list(inp), raw=True, special_tokens=special)
    if formatter is None:
        raise RequestError(422, "field 'input': token ids need a model with one tokenizer")
    ids = [list(x) for x in inp]
    vocab = len(formatter.tokenizer)
    for i, seq in enumerate(ids):
        if not seq or min(seq) < 0 or max(seq) >= vocab:
            raise RequestError(422, f"field 'input.{i}': token ids must be non-empty and in [0, {vocab})")
    decoded = [formatter.tokenizer.decode(x) for x in ids]
    return Texts([""] * len(ids), decoded, ids=ids)


def _usage(lengths: list[int] | None) -> dict[str, Any]:
    tokens = None if lengths is None else int(sum(lengths))
    return {
        "prompt_tokens": tokens,
        "total_tokens": tokens,
        "completion_tokens": 0,
        "prompt_tokens_details": None,
    }


def _reply(prefix: str, name: str, data: list, lengths) -> dict[str, Any]:
    return {
        "id": f"{prefix}-{uuid.uuid4().hex}",
        "object": "list",
        "created": int(time.time()),
        "model": name,
        "data": data,
        "usage": _usage(lengths),
    }


def sigmoid(x: float) -> float:
    """vLLM's activation for a one-label classifier."""
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def add_vllm_routes(route, srv) -> None:
    """Register the vLLM routes with ``route`` (``build_app``'s registrar) over the server ``srv``."""
    settings = srv.settings
    name = settings.model_name

    def tokenizer():
        srv.check_ready()
        if srv.formatter is None:
            raise RequestError(501, "this model kind has no single tokenizer (e.g. an ensemble)")
        return srv.formatter.tokenizer

    async def pooled(request: Request) -> tuple[list[float], list | None, VLLMRequest]:
        req = await parse(request, VLLMRequest, settings)
        _check_model(req.model, name)
        _refuse_unsupported(req)
        srv.check_ready()
        texts = vllm_texts(req, srv.formatter)
        srv.check_chars({"input": texts.responses} if req.messages is None else {"messages": [req.messages]})
        out, lengths = await srv.run(request, texts)
        return [float(x) for x in out], lengths, req

    @route("/v1/models", "GET")
    async def models(request: Request) -> dict:
        srv.check_ready()
        limit = None if srv.formatter is None else srv.formatter.limit
        card = {"id": name, "object": "model", "created": int(time.time()), "owned_by": "rewardkit",
                "root": name, "parent": None, "max_model_len": limit, "permission": []}  # fmt: skip
        return {"object": "list", "data": [card]}

    @route("/pooling")
    async def pooling(request: Request) -> dict:
        rewards, lengths, _ = await pooled(request)
        data = [{"index": i, "object": "pooling", "data": [r]} for i, r in enumerate(rewards)]
        return _reply("pool", name, data, lengths)

    @route("/classify")
    async def classify(request: Request) -> dict:
        rewards, lengths, req = await pooled(request)
        act = req.use_activation is not False
        data = [{"index": i, "label": None, "probs": [sigmoid(r) if act else r], "num_classes": 1}
                for i, r in enumerate(rewards)]  # fmt: skip
        return _reply("classify", name, data, lengths)

    @route("/tokenize")
    async def tokenize(request: Request) -> dict:
        req = await parse(request, TokenizeRequest, settings)
        _check_model(req.model, name)
        tok = tokenizer()
        if req.messages is not None:
            srv.check_chars({"messages": [req.messages]})
            msgs = to_messages([plain(m) for m in req.messages])
            ids = list(tok.apply_chat_template(msgs, add_generation_prompt=req.add_generation_prompt,
                                               tokenize=True, return_dict=True)["input_ids"])  # fmt: skip
        else:
            srv.check_chars({"prompt": [req.prompt]})
            special = True if req.add_special_tokens is None else req.add_special_tokens
            ids = tok(req.prompt, add_special_tokens=special)["input_ids"]
        strs = tok.convert_ids_to_tokens(ids) if req.return_token_strs else None
        return {"count": len(ids), "max_model_len": srv.formatter.limit, "tokens": ids, "token_strs": strs}

    @route("/detokenize")
    async def detokenize(request: Request) -> dict:
        req = await parse(request, DetokenizeRequest, settings)
        _check_model(req.model, name)
        tok = tokenizer()
        if req.tokens and (min(req.tokens) < 0 or max(req.tokens) >= len(tok)):
            raise RequestError(422, f"field 'tokens': token ids must be in [0, {len(tok)})")
        return {"prompt": tok.decode(req.tokens)}
