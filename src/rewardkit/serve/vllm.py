"""vLLM- and SGLang-compatible routes (the APIs of ``vllm serve <rm> --runner pooling`` and of
``sglang.launch_server --is-embedding``): ``GET /v1/models``, ``POST /pooling``, ``/classify`` (vLLM's
``input`` / ``messages``, or SGLang's ``text`` / ``input_ids``), ``/v1/classify``, ``/v1/embeddings``,
``/tokenize``, ``/detokenize``; the score and rerank routes are in :mod:`rewardkit.serve.vllm_score`.

Inputs as vLLM takes them: ``input`` is a string, a list of strings, token ids or a list of token-id
lists (completion style: the text is tokenised as it is, with the tokenizer's special tokens unless
``add_special_tokens`` is false); ``messages`` is one conversation (chat style) whose last message is
the assistant's response, scored under rewardkit's token convention, exactly as ``/score`` scores it.
The reward in ``data[i]`` is ``rewardkit score``'s. Fields that would change the output and that
rewardkit does not implement are refused (400 naming the field), never ignored.
"""

from __future__ import annotations

import math
import time
import uuid
from typing import Any

from fastapi import Request

from rewardkit.serve.limits import RequestError, parse, parse_either
from rewardkit.serve.schemas import (
    DetokenizeRequest,
    EmbeddingsRequest,
    Pooled,
    SGLangClassifyRequest,
    TokenizeRequest,
    VLLMRequest,
    plain,
)
from rewardkit.templating import Texts, to_messages


def check_model(name: str | None, served: str) -> None:
    if name is not None and name != served:
        raise RequestError(
            404, f"field 'model': the model `{name}` does not exist (this server serves `{served}`)"
        )


def activation(req: Pooled, default: bool) -> bool:
    """Whether to apply the classifier's activation (sigmoid, for one label): ``use_activation``, or
    vLLM <= 0.11.1's ``activation`` / ``softmax``; ``default`` when none is given. Conflicting values are
    refused (vLLM would silently prefer the older names)."""
    given = {
        k: getattr(req, k) for k in ("use_activation", "activation", "softmax") if getattr(req, k) is not None
    }
    if len(set(given.values())) > 1:
        raise RequestError(400, f"fields {sorted(given)} disagree: give one of them", param="use_activation")
    return next(iter(given.values())) if given else default


def check_truncation(req: Pooled, limit: int | None) -> None:
    """Accept ``truncate_prompt_tokens`` / ``truncation_side`` where they mean what rewardkit does: keep
    each sequence's last ``max_length`` tokens."""
    k = req.truncate_prompt_tokens
    if k not in (None, -1) and (limit is None or k < limit):
        raise RequestError(
            400,
            f"field 'truncate_prompt_tokens': {k} is not supported (sequences keep their last "
            f"{limit or 'max_length'} tokens; give -1 or at least that)",
        )
    if req.truncation_side not in (None, "left"):
        raise RequestError(
            400, "field 'truncation_side': only 'left' (rewardkit keeps a sequence's last tokens)"
        )


def _refuse_unsupported(req: VLLMRequest) -> None:
    if req.encoding_format != "float":
        raise RequestError(400, "field 'encoding_format': only 'float' is supported")
    if req.dimensions is not None:
        raise RequestError(400, "field 'dimensions': not supported by a reward model")
    if req.normalize:
        raise RequestError(400, "field 'normalize': not supported (a reward is one number, not a vector)")
    if req.task not in (None, "classify"):
        raise RequestError(400, f"field 'task': {req.task!r} is not served (only 'classify' or none)")


def input_texts(inp: Any, special: bool, formatter) -> Texts:
    """Completion-style input (a string, strings, token ids or lists of them) as :class:`Texts`."""
    if isinstance(inp, str):
        inp = [inp]
    if inp and all(isinstance(x, int) for x in inp):
        inp = [inp]
    if not inp:
        raise RequestError(400, "field 'input': empty")
    if isinstance(inp[0], str):
        return Texts([""] * len(inp), list(inp), raw=True, special_tokens=special)
    if formatter is None:
        raise RequestError(400, "field 'input': token ids need a model with one tokenizer")
    ids = [list(x) for x in inp]
    vocab = len(formatter.tokenizer)
    for i, seq in enumerate(ids):
        if not seq or min(seq) < 0 or max(seq) >= vocab:
            raise RequestError(400, f"field 'input.{i}': token ids must be non-empty and in [0, {vocab})")
    decoded = [formatter.tokenizer.decode(x) for x in ids]
    return Texts([""] * len(ids), decoded, ids=ids)


def vllm_texts(req: VLLMRequest, formatter) -> Texts:
    """The sequences of a vLLM request as rewardkit :class:`Texts`."""
    if req.messages is not None:
        msgs = [plain(m) for m in req.messages]
        if msgs[-1]["role"] != "assistant":
            raise RequestError(
                400, "field 'messages': the last message must be the assistant's response to score"
            )
        if req.add_special_tokens:
            raise RequestError(
                400, "field 'add_special_tokens': not supported with 'messages' (the template adds them)"
            )
        return Texts([msgs[:-1]], [msgs[-1]["content"]])
    return input_texts(
        req.input, True if req.add_special_tokens is None else req.add_special_tokens, formatter
    )


def usage(lengths: list[int] | None) -> dict[str, Any]:
    tokens = None if lengths is None else int(sum(lengths))
    return {
        "prompt_tokens": tokens,
        "total_tokens": tokens,
        "completion_tokens": 0,
        "prompt_tokens_details": None,
    }


def reply(prefix: str, name: str, data: list, lengths) -> dict[str, Any]:
    return {"id": f"{prefix}-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()),
            "model": name, "data": data, "usage": usage(lengths)}  # fmt: skip


def sigmoid(x: float) -> float:
    """vLLM's activation for a one-label classifier."""
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _classify_model(data: Any) -> type:
    """vLLM's ``/classify`` (``input`` / ``messages``) or SGLang's (``text`` / ``input_ids``)."""
    if isinstance(data, dict) and ("text" in data or "input_ids" in data):
        if "input" in data or "messages" in data:
            raise RequestError(
                400, "give vLLM's 'input' / 'messages' or SGLang's 'text' / 'input_ids', not both"
            )
        return SGLangClassifyRequest
    return VLLMRequest


def add_vllm_routes(route, srv) -> None:
    """Register the vLLM and SGLang routes with ``route`` (``build_app``'s registrar) over ``srv``."""
    settings = srv.settings
    name = settings.model_name

    async def pooled(request: Request, req: VLLMRequest) -> tuple[list[float], list | None]:
        check_model(req.model, name)
        _refuse_unsupported(req)
        srv.check_ready()
        check_truncation(req, srv.token_limit)
        texts = vllm_texts(req, srv.formatter)
        srv.check_chars({"input": texts.responses} if req.messages is None else {"messages": [req.messages]})
        out, lengths = await srv.run(request, texts)
        return [float(x) for x in out], lengths

    @route("/v1/models", "GET")
    async def models(request: Request) -> dict:
        srv.check_ready()
        card = {"id": name, "object": "model", "created": int(time.time()), "owned_by": "rewardkit",
                "root": name, "parent": None, "max_model_len": srv.token_limit, "permission": []}  # fmt: skip
        return {"object": "list", "data": [card]}

    @route("/pooling")
    async def pooling(request: Request) -> dict:
        req = await parse(request, VLLMRequest, settings)
        rewards, lengths = await pooled(request, req)
        act = activation(req, default=req.task == "classify")
        data = [
            {"index": i, "object": "pooling", "data": [sigmoid(r) if act else r]}
            for i, r in enumerate(rewards)
        ]
        return reply("pool", name, data, lengths)

    async def classify_vllm(request: Request, req: VLLMRequest) -> dict:
        rewards, lengths = await pooled(request, req)
        act = activation(req, default=True)
        data = [{"index": i, "label": None, "probs": [sigmoid(r) if act else r], "num_classes": 1}
                for i, r in enumerate(rewards)]  # fmt: skip
        return reply("classify", name, data, lengths)

    async def classify_sglang(request: Request, req: SGLangClassifyRequest) -> Any:
        check_model(req.model, name)
        srv.check_ready()
        texts = input_texts(req.text if req.text is not None else req.input_ids, True, srv.formatter)
        srv.check_chars({"text": texts.responses})
        out, lengths = await srv.run(request, texts)
        items = [{"embedding": [float(r)], "meta_info": {"id": uuid.uuid4().hex, "prompt_tokens": n}}
                 for r, n in zip(out, lengths or [None] * len(out))]  # fmt: skip
        single = isinstance(req.text, str) or (req.input_ids and isinstance(req.input_ids[0], int))
        return items[0] if single else items

    async def classify(request: Request) -> Any:
        req = await parse_either(request, _classify_model, settings)
        if isinstance(req, SGLangClassifyRequest):
            return await classify_sglang(request, req)
        return await classify_vllm(request, req)

    route("/classify")(classify)
    route("/v1/classify")(classify)

    add_sglang_embeddings(route, srv)
    add_token_routes(route, srv)


def add_sglang_embeddings(route, srv) -> None:
    """SGLang's (and OpenAI's) ``/v1/embeddings``: the embedding of a sequence is ``[reward]``."""
    settings, name = srv.settings, srv.settings.model_name

    @route("/v1/embeddings")
    async def embeddings(request: Request) -> dict:
        """SGLang's reward path (verl reads ``data[-1].embedding[-1]``): the raw reward per input."""
        req = await parse(request, EmbeddingsRequest, settings)
        check_model(req.model, name)
        if req.encoding_format != "float" or req.dimensions is not None:
            bad = "encoding_format" if req.encoding_format != "float" else "dimensions"
            raise RequestError(400, f"field '{bad}': not supported (the embedding is [reward])")
        srv.check_ready()
        texts = input_texts(req.input, True, srv.formatter)
        srv.check_chars({"input": texts.responses})
        out, lengths = await srv.run(request, texts)
        data = [{"object": "embedding", "index": i, "embedding": [float(r)]} for i, r in enumerate(out)]
        body = reply("embd", name, data, lengths)
        return {k: body[k] for k in ("id", "object", "data", "model", "usage")}


def add_token_routes(route, srv) -> None:
    """vLLM's ``/tokenize`` and ``/detokenize`` with the model's tokenizer (501 for an ensemble)."""
    settings, name = srv.settings, srv.settings.model_name

    def tokenizer():
        srv.check_ready()
        if srv.formatter is None:
            raise RequestError(501, "this model kind has no single tokenizer (e.g. an ensemble)")
        return srv.formatter.tokenizer

    @route("/tokenize")
    async def tokenize(request: Request) -> dict:
        req = await parse(request, TokenizeRequest, settings)
        check_model(req.model, name)
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
        return {"count": len(ids), "max_model_len": srv.token_limit, "tokens": ids, "token_strs": strs}

    @route("/detokenize")
    async def detokenize(request: Request) -> dict:
        req = await parse(request, DetokenizeRequest, settings)
        check_model(req.model, name)
        tok = tokenizer()
        if req.tokens and (min(req.tokens) < 0 or max(req.tokens) >= len(tok)):
            raise RequestError(400, f"field 'tokens': token ids must be in [0, {len(tok)})")
        return {"prompt": tok.decode(req.tokens)}
