"""``rewardkit serve``: any reward model behind HTTP with dynamic batching (see docs/serving.md).

Needs the ``serve`` extra (FastAPI, uvicorn, prometheus-client, httpx); Ray Serve replicas need ``ray``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from rewardkit.errors import ModelError


def run_server(
    app, host: str = "127.0.0.1", port: int = 8000, log_level: str = "warning", on_ready=None
) -> None:
    """Run ``app`` (from :func:`rewardkit.serve.app.build_app`) with uvicorn until SIGTERM / Ctrl-C
    (in-flight requests are drained first). If the model fails to load, the server stops and the error
    is raised as a :class:`~rewardkit.errors.ModelError`."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=60)
    server = uvicorn.Server(config)

    def watch() -> None:
        app.state.ready.wait()
        if app.state.rewardkit["error"] is not None:
            server.should_exit = True
        elif on_ready is not None:
            on_ready()

    threading.Thread(target=watch, name="rewardkit-watch", daemon=True).start()
    server.run()
    error = app.state.rewardkit["error"]
    if error is not None:
        raise ModelError(str(error)) if not isinstance(error, ModelError) else error


def _replica_app(load: Callable[[], Any], settings, describe: dict):
    """Built inside each Ray Serve replica (so no model, thread or metrics registry is pickled): the same
    app, started at once."""
    from rewardkit.serve.app import build_app

    app = build_app(load, settings, describe, start_in_lifespan=False)
    app.state.start()
    return app


def run_ray(
    load: Callable[[], Any],
    settings,
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

    deployment = serve.deployment(
        serve.ingress(builder)(),
        name="rewardkit",
        num_replicas=num_replicas,
        ray_actor_options={"num_gpus": gpus_per_replica},
    )
    ray.init(ignore_reinit_error=True, include_dashboard=False)
    serve.start(http_options={"host": host, "port": port})
    serve.run(deployment.bind(), name="rewardkit", route_prefix="/", blocking=True)
