"""``rewardkit serve``."""

from __future__ import annotations

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
    "--max-wait-ms",
    type=NON_NEGATIVE,
    default=5.0,
    show_default=True,
    help="time to gather concurrent requests",
)
@click.option(
    "--max-tokens",
    type=COUNT,
    default=None,
    help="engine token budget per batch (default: 1024 CPU, 16384 CUDA)",
)
@click.option(
    "--max-pool-sequences",
    type=COUNT,
    default=64,
    show_default=True,
    help="sequences pooled per engine call (bounds latency: pools complete in turn)",
)
@click.option(
    "--max-pool-tokens",
    type=COUNT,
    default=32768,
    show_default=True,
    help="tokens pooled per engine call (a long request is split across pools)",
)
@click.option("--max-queue", type=COUNT, default=8192, show_default=True, help="sequences waiting before 503")
@click.option(
    "--max-queue-bytes", type=Size(), default="256MB", show_default=True, help="text waiting before 503"
)
@click.option(
    "--max-request-sequences", type=COUNT, default=1024, show_default=True, help="per request (413 beyond)"
)
@click.option(
    "--max-request-bytes",
    type=Size(),
    default="16MB",
    show_default=True,
    help="per request body (413 beyond)",
)
@click.option(
    "--max-sequence-chars",
    type=COUNT,
    default=None,
    help="characters per prompt or response, 413 beyond (default: 16 x the model's context in tokens)",
)
@click.option(
    "--receive-timeout",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="seconds a client has to send its request body (408 beyond)",
)
@click.option(
    "--max-connections", type=COUNT, default=1024, show_default=True, help="open connections (503 beyond)"
)
@click.option(
    "--api-key",
    envvar="REWARDKIT_API_KEY",
    default=None,
    help="bearer token required of clients (or $REWARDKIT_API_KEY)",
)
@click.option(
    "--allow-from",
    default=None,
    help="client networks allowed, comma-separated CIDR (e.g. 10.0.0.0/8,192.168.1.7); 403 for others",
)
@click.option("--ssl-keyfile", type=click.Path(exists=True, dir_okay=False), default=None, help="TLS key")
@click.option(
    "--ssl-certfile", type=click.Path(exists=True, dir_okay=False), default=None, help="TLS certificate"
)
@click.option(
    "--served-model-name", default=None, help="the model name /v1/models gives (default: the --rm path)"
)
@chat_template_option
@length_penalty_options
@click.option("--num-replicas", type=COUNT, default=None, help="run as N Ray Serve replicas (needs ray)")
@click.option("--gpus-per-replica", type=NON_NEGATIVE, default=0.0, help="Ray Serve: GPUs per replica")
def serve(
    rm_dir,
    dpo,
    dtype,
    base_model,
    host,
    port,
    max_wait_ms,
    max_tokens,
    max_pool_sequences,
    max_pool_tokens,
    max_queue,
    max_queue_bytes,
    max_request_sequences,
    max_request_bytes,
    max_sequence_chars,
    receive_timeout,
    max_connections,
    api_key,
    allow_from,
    ssl_keyfile,
    ssl_certfile,
    served_model_name,
    chat_template,
    length_penalty,
    num_replicas,
    gpus_per_replica,
) -> None:
    """Serve a reward model over HTTP with dynamic batching (POST /score, /score_pairs, /get_reward,
    and vLLM's /pooling, /classify, /tokenize, /detokenize, GET /v1/models)."""
    import logging
    import socket
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
    from rewardkit.base import reward_model_manifest
    from rewardkit.checkpoints import check_model_folder
    from rewardkit.cli.score import length_penalized, load_rm
    from rewardkit.serve import run_ray, run_server
    from rewardkit.serve.app import ServeSettings, build_app
    from rewardkit.serve.limits import parse_networks

    if not rm_dir and not dpo["policy"]:
        raise click.UsageError("give --rm DIR (or --dpo-policy PATH --dpo-reference PATH --beta B)")
    if dpo["policy"] and dpo["beta"] is None:
        raise click.UsageError("--dpo-policy needs --beta")
    # fail fast, before the server starts; the same checks as loading makes
    if rm_dir:
        reward_model_manifest(rm_dir)
    for folder, what in ((dpo["policy"], "policy"), (dpo["reference"], "reference model")):
        if folder:
            check_model_folder(folder, what, weights=False)
    networks = tuple(x for x in (allow_from or "").split(",") if x.strip())
    try:
        parse_networks(networks)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    if bool(ssl_keyfile) != bool(ssl_certfile):
        raise click.UsageError("--ssl-keyfile and --ssl-certfile go together")
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key and not networks:
        logging.getLogger("rewardkit").warning(
            "serving on %s without --api-key or --allow-from: anyone who can reach it can use it", host
        )
    if not num_replicas:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            try:
                probe.bind((host, port))
            except OSError as e:
                raise RewardkitError(f"cannot listen on {host}:{port}: {e.strerror}") from None

    def load():
        rm = load_rm(
            rm_dir,
            dpo=dpo,
            base_model=base_model,
            dtype=dtype,
            chat_template=chat_template,
            max_tokens=max_tokens,
            progress=False,
        )
        return length_penalized(rm, length_penalty)

    settings = ServeSettings(
        max_wait_ms=max_wait_ms,
        max_pool_sequences=max_pool_sequences,
        max_pool_tokens=max_pool_tokens,
        max_queue_sequences=max_queue,
        max_queue_bytes=max_queue_bytes,
        max_request_sequences=max_request_sequences,
        max_request_bytes=max_request_bytes,
        max_sequence_chars=max_sequence_chars,
        receive_timeout_s=receive_timeout,
        max_connections=max_connections,
        api_key=api_key,
        allow_from=networks,
        model_name=served_model_name or str(rm_dir or dpo["policy"]),
    )
    if num_replicas:
        run_ray(load, settings, {}, host, port, num_replicas, gpus_per_replica)
        return
    app = build_app(load, settings)
    verbose = logging.getLogger().level <= logging.INFO

    def ready():
        info = app.state.rewardkit["info"]
        scheme = "https" if ssl_certfile else "http"
        click.echo(
            f"serving {info['kind']} reward model at {scheme}://{host}:{port} "
            "(POST /score, /score_pairs, /get_reward, /pooling, /classify)",
            err=True,
        )
        sys.stderr.flush()

    run_server(
        app,
        host,
        port,
        log_level="info" if verbose else "warning",
        on_ready=ready,
        ssl_keyfile=ssl_keyfile,
        ssl_certfile=ssl_certfile,
    )
