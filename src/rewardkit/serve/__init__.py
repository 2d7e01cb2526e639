"""``rewardkit serve``: any reward model behind HTTP with dynamic batching (see docs/serving.md).

Needs the ``serve`` extra (FastAPI, uvicorn, prometheus-client, httpx); Ray Serve replicas need ``ray``.
"""
