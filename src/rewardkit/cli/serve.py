"""``rewardkit serve``: the options of :class:`~rewardkit.serve.settings.ServeSettings` are generated from
one table (flag, field, type, help; defaults from the dataclass), and the command receives one
:class:`ServeCommand` object."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any

import click

from rewardkit.cli.options import (
    COUNT,
    NON_NEGATIVE,
    Size,
    base_model_option,
    chat_template_option,
    dpo_options,
    dtype_option,
    length_penalty_options,
)

SECONDS = click.FloatRange(min=0.1)
#: --flag -> (ServeSettings field, click type, help); defaults come from ServeSettings
SETTINGS_OPTIONS: dict[str, tuple[str, Any, str]] = {
    "--max-wait-ms": ("max_wait_ms", NON_NEGATIVE, "time to gather concurrent requests"),
    "--max-pool-sequences": (
        "max_pool_sequences",
        COUNT,
        "sequences pooled per engine call (bounds latency)",
    ),
    "--max-pool-tokens": (
        "max_pool_tokens",
        COUNT,
        "tokens pooled per engine call (a long request is split)",
    ),
    "--max-queue": ("max_queue_sequences", COUNT, "sequences waiting before 503"),
    "--max-queue-bytes": ("max_queue_bytes", Size(), "text waiting before 503"),
    "--max-request-sequences": ("max_request_sequences", COUNT, "per request (413 beyond)"),
    "--max-request-bytes": ("max_request_bytes", Size(), "per request body (413 beyond)"),
    "--max-sequence-chars": (
        "max_sequence_chars",
        COUNT,
        "characters per prompt or response, 413 beyond (default: 16 x the model's context in tokens)",
    ),
    "--receive-timeout": ("receive_timeout_s", SECONDS, "seconds a client has to send its body (408 beyond)"),
    "--header-timeout": (
        "header_timeout_s",
        SECONDS,
        "seconds a connection has to send a request's line and headers, from connecting or the last response",
    ),
    "--keep-alive": ("keep_alive_s", SECONDS, "seconds an idle connection is kept after a response"),
    "--tls-handshake-timeout": ("tls_handshake_timeout_s", SECONDS, "seconds a TLS handshake may take"),
    "--max-connections": ("max_connections", COUNT, "open connections (503 beyond; idle ones reaped first)"),
    "--api-key": ("api_key", str, "bearer token required of clients (or $REWARDKIT_API_KEY)"),
    "--allow-from": ("allow_from", str, "client networks allowed, comma-separated CIDR; 403 for others"),
    "--forwarded-allow-ips": (
        "forwarded_allow_ips",
        str,
        "proxies whose X-Forwarded-For/-Proto are trusted, comma-separated (default: none, not even loopback)",
    ),
    "--served-model-name": ("model_name", str, "the model name /v1/models gives (default: the --rm path)"),
    "--deterministic": (
        "deterministic",
        bool,
        "one sequence per forward: a reward never depends on its batch mates (slower; docs/serving.md)",
    ),
}
_LISTS = ("allow_from", "forwarded_allow_ips")


@dataclass
class ServeCommand:
    """Everything ``rewardkit serve`` was given: what to load, where to listen, the server's settings."""

    rm_dir: str | None
    load: dict[str, Any]  # load_rm's options: dpo, base_model, dtype, chat_template, max_tokens
    length_penalty: dict[str, Any]
    host: str
    port: int
    ssl_keyfile: str | None
    ssl_certfile: str | None
    num_replicas: int | None
    gpus_per_replica: float
    settings: Any = field(default=None)  # ServeSettings (imported with the serve extra)


def settings_options(fn):
    """Click options for every ServeSettings field in :data:`SETTINGS_OPTIONS`; the command receives one
    ``ServeCommand``."""
    from rewardkit.serve.settings import ServeSettings

    defaults = {f.name: f.default for f in dataclasses.fields(ServeSettings)}

    @functools.wraps(fn)
    def wrapper(**kw):
        values = {name: kw.pop(name) for name, _, _ in SETTINGS_OPTIONS.values()}
        for name in _LISTS:
            values[name] = tuple(x.strip() for x in (values[name] or "").split(",") if x.strip())
        if values["model_name"] is None:
            values["model_name"] = str(kw["rm_dir"] or kw["dpo"]["policy"])
        if values["api_key"] is None:
            values.pop("api_key")
        load = {k: kw.pop(k) for k in ("dpo", "base_model", "dtype", "chat_template", "max_tokens")}
        cmd = ServeCommand(load=load, **kw)
        cmd.settings = ServeSettings(**values)
        return fn(cmd)

    for flag, (name, kind, help_) in reversed(SETTINGS_OPTIONS.items()):
        default = defaults[name]
        if kind is bool:
            wrapper = click.option(flag, name, is_flag=True, help=help_)(wrapper)
            continue
        if name in _LISTS or name == "model_name":
            default = None
        extra = {"envvar": "REWARDKIT_API_KEY"} if name == "api_key" else {}
        wrapper = click.option(flag, name, type=kind, default=default, show_default=default is not None,
                               help=help_, **extra)(wrapper)  # fmt: skip
    return wrapper


def _check(cmd: ServeCommand) -> None:
    """Fail fast, before the server starts: the same checks as loading makes, the networks, TLS files
    (each named when unreadable) and the port."""
    from rewardkit.checkpoints import check_model_folder
    from rewardkit.manifest import reward_model_manifest
    from rewardkit.serve.limits import parse_networks

    dpo = cmd.load["dpo"]
    if not cmd.rm_dir and not dpo["policy"]:
        raise click.UsageError("give --rm DIR (or --dpo-policy PATH --dpo-ref-model PATH --beta B)")
    if dpo["policy"] and dpo["beta"] is None:
        raise click.UsageError("--dpo-policy needs --beta")
    if cmd.rm_dir:
        reward_model_manifest(cmd.rm_dir)
    for folder, what in ((dpo["policy"], "policy"), (dpo["ref_model"], "reference model")):
        if folder:
            check_model_folder(folder, what, weights=False)
    for flag, nets in (("--allow-from", cmd.settings.allow_from), ("--forwarded-allow-ips", cmd.settings.forwarded_allow_ips)):  # fmt: skip
        try:
            parse_networks(nets)
        except ValueError as e:
            raise click.UsageError(str(e).replace("--allow-from", flag)) from None
    if bool(cmd.ssl_keyfile) != bool(cmd.ssl_certfile):
        raise click.UsageError("--ssl-keyfile and --ssl-certfile go together")
    if cmd.ssl_certfile:
        check_tls(cmd.ssl_certfile, cmd.ssl_keyfile)


def check_tls(certfile: str, keyfile: str) -> None:
    """Load the certificate and key as the server will; a bad file is one line naming it."""
    import ssl

    from rewardkit.errors import DataError

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
    except ssl.SSLError as e:
        raise DataError(
            f"--ssl-certfile {certfile} / --ssl-keyfile {keyfile}: not a PEM certificate and its key "
            f"({e.reason or e})"
        ) from None
    except OSError as e:
        raise DataError(f"--ssl-certfile / --ssl-keyfile: {e.filename or certfile}: {e.strerror}") from None


def probe_port(host: str, port: int) -> None:
    """Bind the port as uvicorn will (SO_REUSEADDR, so a restart right after a crash binds while the old
    connections linger in TIME_WAIT) and release it; a port in use is one line."""
    import socket

    from rewardkit.errors import RewardkitError

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            raise RewardkitError(f"cannot listen on {host}:{port}: {e.strerror}") from None


@click.command()
@click.option("--rm", "rm_dir", default=None, help="reward model folder (any kind rewardkit saves)")
@dpo_options
@dtype_option
@base_model_option
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="interface to bind (localhost by default)"
)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--max-tokens",
    type=COUNT,
    default=None,
    help="engine token budget per batch (default: 1024 CPU, 16384 CUDA)",
)
@click.option(
    "--ssl-keyfile", type=click.Path(exists=True, dir_okay=False), default=None, help="TLS key (PEM)"
)
@click.option(
    "--ssl-certfile", type=click.Path(exists=True, dir_okay=False), default=None, help="TLS certificate (PEM)"
)
@chat_template_option
@length_penalty_options
@click.option("--num-replicas", type=COUNT, default=None, help="run as N Ray Serve replicas (needs ray)")
@click.option("--gpus-per-replica", type=NON_NEGATIVE, default=0.0, help="Ray Serve: GPUs per replica")
@settings_options
def serve(cmd: ServeCommand) -> None:
    """Serve a reward model over HTTP with dynamic batching: rewardkit's POST /score, /score_pairs,
    OpenRLHF's /get_reward, vLLM's /pooling, /classify, /score, /rerank, /tokenize, GET /v1/models, and
    SGLang's /v1/embeddings (docs/serving.md)."""
    import logging
    import sys

    from rewardkit.errors import RewardkitError

    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise RewardkitError(
            "rewardkit serve needs the serve extra: pip install 'rewardkit[serve]'"
        ) from None
    from rewardkit.cli.loaders import length_penalized, load_rm
    from rewardkit.serve.app import build_app
    from rewardkit.serve.runners import run_ray, run_server

    _check(cmd)
    s = cmd.settings
    if cmd.host not in ("127.0.0.1", "localhost", "::1") and not s.api_key and not s.allow_from:
        logging.getLogger("rewardkit").warning(
            "serving on %s without --api-key or --allow-from: anyone who can reach it can use it", cmd.host
        )
    if not cmd.num_replicas:
        probe_port(cmd.host, cmd.port)

    def load():
        return length_penalized(load_rm(cmd.rm_dir, progress=False, **cmd.load), cmd.length_penalty)

    if cmd.num_replicas:
        run_ray(load, s, {}, cmd.host, cmd.port, cmd.num_replicas, cmd.gpus_per_replica)
        return
    app = build_app(load, s)

    def ready():
        info = app.state.server.info
        scheme = "https" if cmd.ssl_certfile else "http"
        click.echo(
            f"serving {info['kind']} reward model at {scheme}://{cmd.host}:{cmd.port} (docs/serving.md)",
            err=True,
        )
        sys.stderr.flush()

    verbose = logging.getLogger().level <= logging.INFO
    run_server(app, cmd.host, cmd.port, log_level="info" if verbose else "warning", on_ready=ready,
               ssl_keyfile=cmd.ssl_keyfile, ssl_certfile=cmd.ssl_certfile)  # fmt: skip
