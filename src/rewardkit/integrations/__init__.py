"""Ready-made client adapters that let RL frameworks reach a ``rewardkit serve`` server where they only
accept a Python reward function (see docs/serving.md):

- :mod:`rewardkit.integrations.verl`: a verl ``custom_reward_function`` (``compute_score``);
- :mod:`rewardkit.integrations.openrlhf_reward`: an OpenRLHF ``reward_func(queries, prompts, labels)``
  file for ``--remote_rm_url`` / ``--reward.remote_url``.

Both talk to the server through :class:`~rewardkit.models.remote.RemoteRewardModel` (retries, TLS,
bearer key from ``$REWARDKIT_API_KEY``); the server's URL comes from ``$REWARDKIT_URL``.
"""

from __future__ import annotations

import os

URL_ENV = "REWARDKIT_URL"
DEFAULT_URL = "http://127.0.0.1:8000"

_CLIENTS: dict[tuple, object] = {}


def client(url: str | None = None, **options):
    """One :class:`RemoteRewardModel` per (URL, options) in this process (a trainer calls the adapter
    once per sample: the connection pool is kept)."""
    from rewardkit.models.remote import RemoteRewardModel

    url = url or os.environ.get(URL_ENV) or DEFAULT_URL
    key = (url, tuple(sorted(options.items())))
    if key not in _CLIENTS:
        _CLIENTS[key] = RemoteRewardModel(url, **options)
    return _CLIENTS[key]
