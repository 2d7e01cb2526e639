"""What bounds one request: the guard (client networks, bearer key, body size),
the body reader with a receive deadline, and parsing + validation off the event loop.

Every refusal is vLLM's error shape, ``{"error": {"message", "type", "param", "code"}}``, with a one-line
message naming the field or limit (``param``: the field, when one is at fault).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from rewardkit.serve.settings import ServeSettings
from rewardkit.util import first_error


class RequestError(Exception):
    """A request refused with ``status`` and a one-line ``message``; ``param``: the field at fault (by
    default the one a message starting ``field 'x'`` names)."""

    def __init__(
        self, status: int, message: str, headers: dict[str, str] | None = None, param: str | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.headers = status, one_line(message), headers
        if param is None and self.message.startswith("field '"):
            param = self.message[7:].split("'", 1)[0]
        self.param = param


#: vLLM's error ``type`` by HTTP status (``vllm/entrypoints/openai/engine/protocol.py``: ErrorInfo)
ERROR_TYPES = {400: "BadRequestError", 401: "UnauthorizedError", 403: "ForbiddenError",
               404: "NotFoundError", 405: "MethodNotAllowedError", 408: "RequestTimeoutError",
               413: "RequestEntityTooLargeError", 499: "ClientClosedRequestError",
               500: "InternalServerError", 501: "NotImplementedError", 503: "ServiceUnavailableError"}  # fmt: skip


def one_line(text: Any) -> str:
    return " ".join(str(text).split())


def error_content(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    """vLLM's ``ErrorResponse``: ``{"error": {"message", "type", "param", "code": status}}``."""
    kind = ERROR_TYPES.get(status, "BadRequestError" if status < 500 else "InternalServerError")
    return {"error": {"message": one_line(message), "type": kind, "param": param, "code": status}}


def error_body(status: int, message: str, param: str | None = None) -> bytes:
    return json.dumps(error_content(status, message, param)).encode()


def check_chars(fields: dict[str, Sequence[int]], cap: int) -> None:
    """413 naming the first item of ``fields`` (name -> characters per item) longer than ``cap``."""
    for name, sizes in fields.items():
        for i, n in enumerate(sizes):
            if n > cap:
                raise RequestError(
                    413, f"field '{name}.{i}': {n} characters exceed the limit of {cap} per sequence"
                )


def parse_networks(specs: Sequence[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """CIDR networks (``10.0.0.0/8``, ``192.168.1.7``); a bad one is a one-line ``ValueError``."""
    out = []
    for spec in specs:
        try:
            out.append(ipaddress.ip_network(spec.strip(), strict=False))
        except ValueError:
            raise ValueError(f"--allow-from: {spec!r} is not an IP network (e.g. 10.0.0.0/8)") from None
    return out


def client_allowed(host: str | None, networks: Sequence) -> bool:
    if not networks:
        return True
    try:
        ip = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks)


class Guard:
    """ASGI middleware run before any route: client networks (403), bearer key (401, except
    ``/health``), declared body size (413). ``count(path, status)`` records each refusal."""

    def __init__(self, app, settings: ServeSettings, count):
        self.app, self.settings, self.count = app, settings, count
        self.networks = parse_networks(settings.allow_from)
        self.key = settings.api_key.encode() if settings.api_key else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        refusal = self._refusal(scope, path)
        if refusal is None:
            return await self.app(scope, receive, send)
        status, message = refusal
        self.count(path, status)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": error_body(status, message)})

    def _refusal(self, scope, path: str) -> tuple[int, str] | None:
        client = scope.get("client")
        if not client_allowed(client[0] if client else None, self.networks):
            return 403, "this client's address is not in the server's --allow-from networks"
        headers = dict(scope.get("headers") or [])
        if self.key is not None and path != "/health":
            if not hmac.compare_digest(bearer_token(headers.get(b"authorization", b"")), self.key):
                return 401, "missing or wrong bearer token (Authorization: Bearer KEY)"
        size = headers.get(b"content-length", b"")
        if size.isdigit() and int(size) > self.settings.max_request_bytes:
            return 413, (
                f"request body of {int(size)} bytes exceeds the limit of {self.settings.max_request_bytes}"
            )
        return None


def bearer_token(header: bytes) -> bytes:
    """The token of an ``Authorization: Bearer TOKEN`` header (the scheme in any case, RFC 7235), else b""."""
    scheme, _, token = header.strip().partition(b" ")
    return token.strip() if scheme.lower() == b"bearer" else b""


async def read_body(request, settings: ServeSettings) -> bytes:
    """The whole body within ``receive_timeout_s`` (408 otherwise: a trickling client is cut off) and
    ``max_request_bytes`` (413)."""
    body = bytearray()

    async def read() -> None:
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > settings.max_request_bytes:
                raise RequestError(
                    413, f"request body exceeds the limit of {settings.max_request_bytes} bytes"
                )

    try:
        await asyncio.wait_for(read(), settings.receive_timeout_s)
    except asyncio.TimeoutError:
        raise RequestError(
            408,
            f"the request body did not arrive within {settings.receive_timeout_s:g} s",
            {"Connection": "close"},
        ) from None
    return bytes(body)


def count_values(data: Any, limit: int) -> int:
    """JSON values in ``data`` (objects, lists and scalars), counting stops past ``limit``. A string
    no tokenizer can hold (a lone surrogate, JSON's ``"\\ud800"``) is a 400, found on the same walk."""
    n, stack = 0, [data]
    while stack and n <= limit:
        x = stack.pop()
        n += 1
        if isinstance(x, dict):
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
        elif isinstance(x, str):
            try:
                x.encode("utf-8")
            except UnicodeEncodeError as e:
                raise RequestError(
                    400, f"a string holds a lone surrogate at character {e.start}: not valid Unicode text"
                ) from None
    return n


def load_json(body: bytes, max_values: int = 2**17) -> Any:
    """JSON of a body, its values counted (in Python, which yields the GIL) so that a body of too many
    is refused (413) before validation, which holds the GIL for its whole run, can stall the event loop."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RequestError(400, f"invalid JSON ({e})") from None
    except RecursionError:
        raise RequestError(400, "invalid JSON (nested too deeply)") from None
    if count_values(data, max_values) > max_values:
        raise RequestError(413, f"the request body holds more than {max_values} JSON values")
    return data


def validate(data: Any, model: type[BaseModel]) -> BaseModel:
    """``data`` as ``model``, or a 400 naming the first field at fault."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        loc, msg = first_error(e)
        raise RequestError(400, f"field {loc or 'body'!r}: {msg}", param=loc or None) from None


def decode(body: bytes, model: type[BaseModel], max_values: int = 2**17) -> BaseModel:
    """JSON + validation, run in a worker thread."""
    return validate(load_json(body, max_values), model)


async def parse(request, model: type[BaseModel], settings: ServeSettings) -> BaseModel:
    """The request body as ``model`` (any content type); :class:`RequestError` otherwise."""
    body = await read_body(request, settings)
    return await asyncio.to_thread(decode, body, model, settings.max_json_values)


async def parse_either(request, choose, settings: ServeSettings) -> BaseModel:
    """The body as the model ``choose(data)`` picks from its JSON (e.g. by its fields)."""
    body = await read_body(request, settings)

    def run() -> BaseModel:
        data = load_json(body, settings.max_json_values)
        return validate(data, choose(data))

    return await asyncio.to_thread(run)
