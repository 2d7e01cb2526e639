"""An OpenRLHF reward-function file scoring with a ``rewardkit serve`` server.

OpenRLHF loads a ``.py`` given as the remote reward URL and calls its ``reward_func(queries, prompts,
labels)`` in a thread for each rollout::

    export REWARDKIT_URL=http://RM_HOST:8000          # the server; $REWARDKIT_API_KEY if it has a key
    python -m openrlhf.cli.train_ppo_ray ... \\
        --reward.remote_url $(python -c "import rewardkit.integrations.openrlhf_reward as m; print(m.__file__)")

(``--remote_rm_url`` before OpenRLHF 0.10.) The queries go to the server's ``/get_reward`` exactly as
OpenRLHF's own HTTP client sends them, and the answer has the same keys, so the rewards are those of
``--reward.remote_url http://RM_HOST:8000/get_reward``; what this file adds is rewardkit's client: retries
with backoff on 503 and dropped connections, the bearer key, TLS with a private CA
(``$REWARDKIT_CA``), requests split to the server's limits.
"""

from __future__ import annotations

import os
from typing import Any

from rewardkit.integrations import client

CA_ENV = "REWARDKIT_CA"


def reward_func(queries: list[str], prompts: list[str], labels: list[Any] | None = None) -> dict[str, Any]:
    """OpenRLHF's signature -> ``{"rewards", "scores", "extra_logs"}`` (rewards and scores are the same
    list: one reward per query)."""
    options = {"ca": os.environ[CA_ENV]} if os.environ.get(CA_ENV) else {}
    rm = client(**options)
    body = {"query": list(queries), "prompts": list(prompts)}
    if labels is not None:
        body["labels"] = list(labels)
    out = rm.post("/get_reward", body)
    rewards = [float(x) for x in out["rewards"]]
    return {"rewards": rewards, "scores": rewards, "extra_logs": {}}
