"""Parameter types and options shared by the commands. Only click is imported here: every command
module imports its heavy dependencies inside the command, so ``rewardkit --help`` starts fast."""

from __future__ import annotations

import math
import os
from pathlib import Path

import click

from rewardkit.errors import RewardkitError
from rewardkit.limits import LIMITS  # the one table (also read by the configs behind the flags)


class FiniteFloat(click.ParamType):
    """A finite number, optionally bounded below (``min``, exclusive with ``open_min``)."""

    name = "number"

    def __init__(
        self,
        min: float | None = None,
        open_min: bool = False,
        max: float | None = None,
        open_max: bool = False,
    ):
        self.min, self.open_min, self.max, self.open_max = min, open_min, max, open_max

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            x = value
        else:
            try:
                x = float(value)
            except (TypeError, ValueError):
                self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(x):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.min is not None and (x <= self.min if self.open_min else x < self.min):
            self.fail(f"{value!r} must be {'>' if self.open_min else '>='} {self.min:g}", param, ctx)
        if self.max is not None and (x >= self.max if self.open_max else x > self.max):
            self.fail(f"{value!r} must be {'<' if self.open_max else '<='} {self.max:g}", param, ctx)
        return x


class NumberList(click.ParamType):
    """Comma-separated finite non-negative numbers, e.g. ``1,1,2``."""

    name = "numbers"

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        out = []
        for part in str(value).split(","):
            try:
                x = float(part)
            except ValueError:
                self.fail(f"{part.strip()!r} is not a number (expected e.g. 1,1,2)", param, ctx)
            if not math.isfinite(x) or x < 0:
                self.fail(f"{part.strip()!r} is not a finite non-negative number", param, ctx)
            out.append(x)
        return out


class Size(click.ParamType):
    """A positive size in bytes: ``2GB``, ``500MB``, ``1.5GiB``."""

    name = "size"

    def convert(self, value, param, ctx):
        from rewardkit.util import parse_size

        try:
            return parse_size(value, "size")
        except RewardkitError as e:
            self.fail(str(e), param, ctx)


POSITIVE = FiniteFloat(0.0, open_min=True)
NON_NEGATIVE = FiniteFloat(0.0)
COUNT = click.IntRange(min=1)
SEED = click.IntRange(0, 2**32 - 1)  # what numpy and torch seeding accept
EPOCHS = FiniteFloat(0.0, open_min=True, max=float(LIMITS["epochs"]))


def bounded(name: str, low: int = 1) -> click.IntRange:
    """An integer option in ``low..LIMITS[name]`` (click: "... is not in the range LOW<=x<=LIMIT")."""
    return click.IntRange(low, LIMITS[name])


def check_lora_rank(model: str | os.PathLike, rank: int | None) -> None:
    """Refuse a LoRA rank above the hidden size in ``model``'s config.json (it adds memory, not capacity:
    a rank is at most the smaller side of the matrices it adapts); a model without one is not checked."""
    import json

    cfg = Path(model) / "config.json"
    if not rank or not cfg.is_file():
        return
    try:
        fields = json.loads(cfg.read_text(encoding="utf-8"))
        hidden = next((fields[k] for k in ("hidden_size", "n_embd", "d_model") if k in fields), None)
    except (OSError, ValueError, AttributeError, TypeError):
        return  # the loader reports a broken config.json with its own line
    if isinstance(hidden, int) and 0 < hidden < rank:
        raise RewardkitError(
            f"--lora-r {rank} is above the hidden size {hidden} of {cfg}: a LoRA rank is at most the "
            "smaller side of the matrices it adapts"
        )


#: ``--on-error``: what a malformed data record does (one home for every command that reads data)
on_error_option = click.option(
    "--on-error",
    type=click.Choice(["raise", "skip"]),
    default="raise",
    help="a malformed record stops the run with its file:line (raise), or is skipped and listed (skip)",
)


def chat_template_option(fn):
    return click.option(
        "--chat-template",
        type=click.Choice(["auto", "always", "never"]),
        default=None,
        help="when to apply the tokenizer's chat template: auto (conversational prompts only, TRL's rule; "
        "default), always, never. A saved model keeps the convention it was trained with.",
    )(fn)


def base_model_option(fn):
    return click.option(
        "--base-model",
        default=None,
        help="base model folder of LoRA reward models (default: the path recorded at training time)",
    )(fn)


def dtype_choice(default: str | None = "auto"):
    """``--dtype``: the precision models are loaded and scored in (None: the command's config decides)."""
    hint = " (default: the preset's)" if default is None else ""
    return click.option(
        "--dtype",
        type=click.Choice(["auto", "float32", "bfloat16", "float16"]),
        default=default,
        show_default=default is not None,
        help="precision to load models in: auto = bfloat16 on a GPU with native bf16 and on a CPU with "
        "hardware bf16 matmuls (AMX-BF16 / AVX512-BF16), float32 elsewhere" + hint,
    )


dtype_option = dtype_choice()


def prefix_sharing_option(fn):
    """``--no-prefix-sharing``: run every prompt token once per response (see docs/scoring.md)."""
    return click.option(
        "--no-prefix-sharing",
        "no_prefix_sharing",
        is_flag=True,
        help="compute each shared prompt once per response instead of once per prompt (for comparison)",
    )(fn)


def engine_options(fn):
    """Scoring-engine settings (they reach every ensemble member)."""
    for opt in reversed(
        [
            click.option(
                "--max-batch-size",
                type=bounded("max_batch_size"),
                default=None,
                help="upper bound on sequences per scoring batch",
            ),
            click.option(
                "--max-tokens",
                type=bounded("max_tokens"),
                default=None,
                help="padded tokens per batch (default 1024 on CPU, 16384 on CUDA)",
            ),
        ]
    ):
        fn = opt(fn)
    return fn


def dpo_options(fn):
    """Score with the implicit reward of any two causal LMs, no training needed. The command receives
    the five options as one ``dpo`` dict (policy, ref_model, reference_free, beta, reduction)."""
    import functools

    names = {
        "dpo_policy": "policy",
        "dpo_ref_model": "ref_model",
        "reference_free": "reference_free",
        "beta": "beta",
        "reduction": "reduction",
    }

    @functools.wraps(fn)
    def command(*args, **kwargs):
        return fn(*args, dpo={key: kwargs.pop(flag) for flag, key in names.items()}, **kwargs)

    for opt in reversed(
        [
            click.option("--dpo-policy", default=None, help="policy checkpoint (or LoRA adapter folder)"),
            click.option(
                "--dpo-ref-model",
                default=None,
                help="reference checkpoint (default for a LoRA adapter policy: its base model)",
            ),
            click.option("--reference-free", is_flag=True, help="r = beta * log pi(y|x), no reference"),
            click.option("--beta", type=POSITIVE, default=None, help="DPO beta of the implicit reward"),
            click.option("--reduction", type=click.Choice(["sum", "mean"]), default="sum"),
        ]
    ):
        command = opt(command)
    return command


def load_yaml(path: str | None) -> dict:
    if path is None:
        return {}
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RewardkitError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise RewardkitError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise RewardkitError(f"{path}: expected a mapping of config fields")
    return data


def refuse_existing(path: str | None, force: bool) -> None:
    from rewardkit.io import refuse_existing as refuse

    refuse(path, force)


def run_inputs_of(inputs: list, base_model: str | None = None) -> list:
    """The inputs of a run: the paths given, and for each model folder among them every folder it
    depends on (LoRA base, DPO reference, ensemble members: :func:`rewardkit.models.registry.model_dependencies`).
    They are protected for the rest of the command, whatever later loads. ``base_model``: the
    ``--base-model`` that replaces the base a LoRA model records."""
    from rewardkit.io import protect
    from rewardkit.models.registry import model_dependencies

    out = []
    for raw in inputs:
        if not raw:
            continue
        p = Path(raw)
        out += model_dependencies(p, base_model) if p.is_dir() else [p]
    protect(out)
    return out


def check_file_output(path: str, inputs: list, force: bool, base_model: str | None = None) -> None:
    """An output file: not an input (nor a folder an input model depends on), not inside or holding
    one, not a folder, not under a file, and not existing unless ``force``."""
    from rewardkit.io import check_output, check_parent
    from rewardkit.locks import claim_output

    check_output(path, run_inputs_of(inputs, base_model))
    p = Path(path)
    if p.is_dir():
        raise RewardkitError(f"{path}: is a folder, expected a file path for the output")
    check_parent(p)
    claim_output(path)  # held until the command ends: a second run on this output fails at once
    refuse_existing(path, force)


def check_dir_output(path: str, inputs: list, force: bool, base_model: str | None = None) -> None:
    """An output folder: not an input (nor a folder an input model depends on), not inside or holding
    one, not under a file, and not existing unless ``force``."""
    from rewardkit.io import check_output, check_parent
    from rewardkit.locks import claim_output

    check_output(path, run_inputs_of(inputs, base_model))
    p = Path(path)
    if p.exists() and not p.is_dir() and not force:
        raise RewardkitError(
            f"{path}: is a file, expected a folder for the output (use --force to replace it)"
        )
    check_parent(p)
    claim_output(path)  # held until the command ends: a second run on this output fails at once
    refuse_existing(path, force)


def csv_list(value: str | None, cast=str) -> list | None:
    return [cast(x.strip()) for x in value.split(",") if x.strip()] if value else None


def length_penalty_options(fn):
    """CourseGPT-zh's length penalty on top of any reward model (see docs/length-penalty.md). The
    command receives the four options as one ``length_penalty`` dict (weight, reference_field,
    reference_length, unit); weight None: no penalty."""
    import functools

    names = {
        "length_penalty": "weight",
        "reference_field": "reference_field",
        "reference_length": "reference_length",
        "length_unit": "unit",
    }

    @functools.wraps(fn)
    def command(*args, **kwargs):
        return fn(*args, length_penalty={key: kwargs.pop(flag) for flag, key in names.items()}, **kwargs)

    for opt in reversed(
        [
            click.option(
                "--length-penalty",
                type=NON_NEGATIVE,
                default=None,
                help="subtract LENGTH_PENALTY * max(0, len/ref_len - 1) from every reward (0.5 in CourseGPT-zh)",
            ),
            click.option(
                "--reference-field",
                default="reference",
                show_default=True,
                help="data field holding the reference answer (or its length) for the length penalty",
            ),
            click.option(
                "--reference-length", type=POSITIVE, default=None, help="a fixed reference length instead"
            ),
            click.option(
                "--length-unit",
                type=click.Choice(["tokens", "chars", "words"]),
                default=None,
                help="unit of lengths (default: tokens for the penalty, words for eval's length-bias column)",
            ),
        ]
    ):
        command = opt(command)
    return command


def _allow_remote(ctx: click.Context, param, value) -> None:
    if value:
        from rewardkit.models.remote import remote_allowed

        ctx.with_resource(remote_allowed(list(value)))


def allow_remote_option(fn):
    """``--allow-remote URL``: the endpoints a remote model folder (also inside an ensemble or a wrapper)
    may reach; none by default (``--rm URL`` / ``--server URL`` name theirs already)."""
    return click.option(
        "--allow-remote",
        multiple=True,
        metavar="URL",
        expose_value=False,
        callback=_allow_remote,
        help="let a remote model folder send inputs (and $REWARDKIT_API_KEY) to this endpoint; repeatable",
    )(fn)


def model_options(fn):
    """What every command that loads reward models to score with takes: the implicit reward of a DPO
    policy (``dpo``), a LoRA model's base, engine settings, the dtype, the token convention and a length
    penalty (``length_penalty``)."""
    for opt in reversed(
        [
            dpo_options,
            base_model_option,
            engine_options,
            dtype_option,
            chat_template_option,
            length_penalty_options,
        ]
    ):
        fn = opt(fn)
    return fn
