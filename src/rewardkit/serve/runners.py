"""How a built app runs: in this process under uvicorn (:func:`run_server`), or as Ray Serve replicas
(:func:`run_ray`) whose health check asks the app (:func:`replica_health`)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from rewardkit.base import RewardModel
from rewardkit.errors import ModelError
from rewardkit.serve.settings import ServeSettings


def run_server(
    app,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "warning",
    on_ready=None,
    ssl_keyfile: str | None = None,
    ssl_certfile: str | None = None,
) -> None:
    """Run ``app`` (from :func:`rewardkit.serve.app.build_app`) with uvicorn until SIGTERM / Ctrl-C
    (in-flight requests are drained first), over TLS when given a key and certificate, with at most
    ``settings.max_connections`` connections (503 beyond), the request-head, keep-alive and TLS-handshake
    deadlines of ``settings`` (:mod:`rewardkit.serve.protocol`), and ``X-Forwarded-*`` headers trusted
    only from ``settings.forwarded_allow_ips``. If the model fails to load, the server stops and the
    error is raised as a :class:`~rewardkit.errors.ModelError`."""
    import uvicorn

    from rewardkit.serve.protocol import guarded_protocol

    s = app.state.settings
    if ssl_certfile:  # asyncio's default (60 s) is read when each handshake starts; no argument reaches it
        import asyncio.constants

        asyncio.constants.SSL_HANDSHAKE_TIMEOUT = s.tls_handshake_timeout_s
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=guarded_protocol(s.header_timeout_s, s.max_connections),
        loop="asyncio",
        timeout_graceful_shutdown=60,
        limit_concurrency=s.max_connections,
        timeout_keep_alive=s.keep_alive_s,
        proxy_headers=bool(s.forwarded_allow_ips),
        forwarded_allow_ips=list(s.forwarded_allow_ips) or None,
        server_header=False,
        ssl_keyfile=ssl_keyfile,
        ssl_certfile=ssl_certfile,
    )
    server = uvicorn.Server(config)

    def watch() -> None:
        app.state.ready.wait()
        if app.state.server.error is not None:
            server.should_exit = True
        elif on_ready is not None:
            on_ready()

    threading.Thread(target=watch, name="rewardkit-watch", daemon=True).start()
    server.run()
    error = app.state.server.error
    if error is not None:
        raise ModelError(str(error)) if not isinstance(error, ModelError) else error


_REPLICA: dict[str, Any] = {}  # the app of this Ray Serve replica (its health check reads it)


def _replica_app(load: Callable[[], RewardModel], settings: ServeSettings, describe: dict):
    """Built inside each Ray Serve replica (so no model, thread or metrics registry is pickled): the same
    app, started at once."""
    from rewardkit.serve.app import build_app

    app = build_app(load, settings, describe, start_in_lifespan=False)
    app.state.start()
    _REPLICA["app"] = app
    return app


def replica_health(app) -> str | None:
    """Why a replica is unhealthy (failed load, stopped scoring thread, faulting engine), or None."""
    if app is None:
        return "the app is not built"
    found = app.state.server.problem(engine_faults=True)
    return None if found is None or found.kind == "loading" else str(found)  # loading is healthy


def check_replica() -> None:
    """Ray Serve's health check of this process's replica (raises when unhealthy). Module-level, so
    the pickled deployment class refers to it, and to this module's ``_REPLICA``, by name."""
    problem = replica_health(_REPLICA.get("app"))
    if problem:
        raise RuntimeError(problem)


def run_ray(
    load: Callable[[], RewardModel],
    settings: ServeSettings,
    describe: dict,
    host: str,
    port: int,
    num_replicas: int,
    gpus_per_replica: float,
) -> None:
    """The same app as ``num_replicas`` Ray Serve replicas behind Ray's HTTP proxy, each loading its own
    model copy and batching its own requests. ``load`` must be picklable (it is sent to the replicas)."""
    try:
        import ray
        from ray import serve
    except ImportError:
        raise ModelError("--num-replicas needs Ray Serve: pip install 'rewardkit[ray]'") from None

    def builder():  # a plain function: Ray calls it in each replica (a partial would be taken for an ASGI app)
        return _replica_app(load, settings, describe)

    @serve.ingress(builder)
    class Replica:
        def check_health(self) -> None:  # Ray Serve restarts a replica whose check raises
            check_replica()

    # Requests a replica takes at once: enough to fill two pools (Ray's default of 5 never pools more).
    deployment = serve.deployment(
        Replica,
        name="rewardkit",
        num_replicas=num_replicas,
        ray_actor_options={"num_gpus": gpus_per_replica},
        max_ongoing_requests=max(8, 2 * settings.max_pool_sequences),
        health_check_period_s=10,
    )
    ray.init(ignore_reinit_error=True, include_dashboard=False)
    serve.start(http_options={"host": host, "port": port})
    serve.run(deployment.bind(), name="rewardkit", route_prefix="/", blocking=True)
