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
    length_penalty_options,
)


@click.command()
@click.option("--rm", "rm_dir", default=None, help="reward model folder (any kind rewardkit saves)")
@dpo_options
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
@click.option("--max-queue", type=COUNT, default=8192, show_default=True, help="sequences waiting before 503")
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
    "--api-key",
    envvar="REWARDKIT_API_KEY",
    default=None,
    help="bearer token required of clients (or $REWARDKIT_API_KEY)",
)
@chat_template_option
@length_penalty_options
@click.option("--num-replicas", type=COUNT, default=None, help="run as N Ray Serve replicas (needs ray)")
@click.option("--gpus-per-replica", type=NON_NEGATIVE, default=0.0, help="Ray Serve: GPUs per replica")
def serve(
    rm_dir,
    dpo_policy,
    dpo_reference,
    reference_free,
    beta,
    reduction,
    base_model,
    host,
    port,
    max_wait_ms,
    max_tokens,
    max_pool_sequences,
    max_queue,
    max_request_sequences,
    max_request_bytes,
    api_key,
    chat_template,
    length_penalty,
    reference_field,
    reference_length,
    length_unit,
    num_replicas,
    gpus_per_replica,
) -> None:
    """Serve a reward model over HTTP with dynamic batching (POST /score, /score_pairs, /get_reward)."""
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
    from rewardkit.cli.score import dpo_spec, length_penalized, load_rm
    from rewardkit.models.common import check_model_folder
    from rewardkit.serve import run_ray, run_server
    from rewardkit.serve.app import ServeSettings, build_app

    if not rm_dir and not dpo_policy:
        raise click.UsageError("give --rm DIR (or --dpo-policy PATH --dpo-reference PATH --beta B)")
    if dpo_policy and beta is None:
        raise click.UsageError("--dpo-policy needs --beta")
    # fail fast, before the server starts; the same checks as loading makes
    if rm_dir:
        reward_model_manifest(rm_dir)
    for folder, what in ((dpo_policy, "policy"), (dpo_reference, "reference model")):
        if folder:
            check_model_folder(folder, what, weights=False)
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        logging.getLogger("rewardkit").warning(
            "serving on %s without --api-key: anyone who can reach it can use it", host
        )
    if not num_replicas:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            try:
                probe.bind((host, port))
            except OSError as e:
                raise RewardkitError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    dpo = dpo_spec(dpo_policy, dpo_reference, reference_free, beta, reduction)

    def load():
        rm = load_rm(
            rm_dir,
            dpo=dpo,
            base_model=base_model,
            chat_template=chat_template,
            max_tokens=max_tokens,
            progress=False,
        )
        return length_penalized(rm, length_penalty, reference_field, reference_length, length_unit)

    settings = ServeSettings(
        max_wait_ms=max_wait_ms,
        max_pool_sequences=max_pool_sequences,
        max_queue_sequences=max_queue,
        max_request_sequences=max_request_sequences,
        max_request_bytes=max_request_bytes,
        api_key=api_key,
    )
    if num_replicas:
        run_ray(load, settings, {}, host, port, num_replicas, gpus_per_replica)
        return
    app = build_app(load, settings)
    verbose = logging.getLogger().level <= logging.INFO

    def ready():
        info = app.state.rewardkit["info"]
        click.echo(
            f"serving {info['kind']} reward model at http://{host}:{port} (POST /score, /score_pairs, /get_reward)",
            err=True,
        )
        sys.stderr.flush()

    run_server(app, host, port, log_level="info" if verbose else "warning", on_ready=ready)
