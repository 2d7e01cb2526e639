"""How the commands get their reward models: ``--rm`` (a folder of any kind or a server's URL) or
``--dpo-policy``, the length-penalty wrapper, and the remote endpoints a run sends inputs to."""

from __future__ import annotations

import click

from rewardkit.util import is_url


def load_rm(
    rm_dir: str | None,
    *,
    dpo: dict | None = None,
    device=None,
    base_model: str | None = None,
    chat_template: str | None = None,
    dtype: str | None = None,
    **engine,
):
    """A reward model from ``--rm DIR`` (any saved kind), or the implicit reward of ``--dpo-policy``;
    ``dtype`` (``auto``, ``float32``, ...; None: the API's default) for the models loaded here (a server
    keeps its own)."""
    from rewardkit.models.registry import load_reward_model

    kwargs = {
        k: v for k, v in (("device", device), ("base_model", base_model), ("dtype", dtype)) if v is not None
    }
    if dpo and dpo.get("policy"):
        from rewardkit.models.implicit import DPOImplicitRM

        if rm_dir:
            raise click.UsageError("give either --rm or --dpo-policy, not both")
        if dpo["beta"] is None:
            raise click.UsageError("--dpo-policy needs --beta")
        rm = DPOImplicitRM.from_pretrained(
            dpo["policy"],
            dpo["ref_model"],
            beta=dpo["beta"],
            reduction=dpo["reduction"],
            reference_free=dpo["reference_free"],
            **kwargs,
        )
    elif rm_dir:
        from rewardkit.models.remote import RemoteRewardModel

        if is_url(rm_dir):
            rm = RemoteRewardModel(rm_dir)
        else:
            rm = load_reward_model(rm_dir, **kwargs)
    else:
        raise click.UsageError("give --rm DIR (or --dpo-policy PATH --dpo-ref-model PATH --beta B)")
    rm.configure(chat_template, **engine)
    return rm


def endpoints_of(models) -> list[str]:
    """Every remote endpoint the models (members and wrapped models included) send inputs to."""
    from rewardkit.models.remote import remote_endpoints

    urls: list[str] = []
    for m in models:
        urls += [u for u in remote_endpoints(m) if u not in urls]
    return urls


def remote_note(models) -> str:
    """``"; remote endpoints used: URL, ..."`` for a summary line, or "" when no model is remote."""
    urls = endpoints_of(models)
    return f"; remote endpoints used: {', '.join(urls)}" if urls else ""


def length_penalized(rm, spec: dict):
    """``rm`` wrapped in CourseGPT-zh's length penalty (``spec`` from ``length_penalty_options``), or
    ``rm`` itself when its weight is None."""
    if spec["weight"] is None:
        return rm
    from rewardkit.models.length import LengthPenalizedRM

    reference = spec["reference_length"] if spec["reference_length"] is not None else spec["reference_field"]
    return LengthPenalizedRM(rm, spec["weight"], reference, spec["unit"] or "tokens")
