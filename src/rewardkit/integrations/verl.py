"""A verl custom reward function scoring with a ``rewardkit serve`` server.

verl reaches an external reward model only through ``custom_reward_function``; point it here::

    custom_reward_function.path=$(python -c "import rewardkit.integrations.verl as m; print(m.__file__)")
    custom_reward_function.name=compute_score
    +custom_reward_function.reward_kwargs.url=http://RM_HOST:8000      # or $REWARDKIT_URL

verl calls ``compute_score(data_source, solution_str, ground_truth, extra_info)`` once per sample with
the decoded response (special tokens skipped). The prompt comes from ``extra_info[prompt_field]``
(``"prompt"`` by default: a string or the chat messages; put the dataset's prompt there in its
preprocessing), and the pair is scored as ``POST /score`` scores it: the reward ``rewardkit score`` gives
that conversation, under the model's token convention.
"""

from __future__ import annotations

from typing import Any

from rewardkit.errors import DataError
from rewardkit.integrations import client


def prompt_of(extra_info: dict | None, field: str) -> Any:
    """The prompt verl passed in ``extra_info`` (a string or a list of ``{role, content}`` messages)."""
    value = (extra_info or {}).get(field)
    if hasattr(value, "tolist"):  # verl keeps non-tensor columns as numpy object arrays
        value = value.tolist()
    if isinstance(value, str) or (
        isinstance(value, list) and value and all(isinstance(m, dict) for m in value)
    ):
        return value
    raise DataError(
        f"extra_info[{field!r}]: the prompt to score with (a string or chat messages) is missing; put it there "
        "in the dataset's preprocessing, or pass reward_kwargs.prompt_field"
    )


def compute_score(
    data_source: Any = None,
    solution_str: str = "",
    ground_truth: Any = None,
    extra_info: dict | None = None,
    *,
    url: str | None = None,
    prompt_field: str = "prompt",
    **_: Any,
) -> dict[str, float]:
    """verl's reward-function signature -> ``{"score": reward}`` (verl logs the other keys; none here).
    ``url``: the server (default ``$REWARDKIT_URL``, else http://127.0.0.1:8000); keyword arguments verl
    adds (``reward_router_address``...) are ignored."""
    prompt = prompt_of(extra_info, prompt_field)
    reward = client(url).score([prompt], [solution_str])[0]
    return {"score": float(reward)}
