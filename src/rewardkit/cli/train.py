"""``rewardkit train explicit | dpo``."""

from __future__ import annotations

import click

from rewardkit.cli.options import (
    EPOCHS,
    NON_NEGATIVE,
    POSITIVE,
    SEED,
    FiniteFloat,
    bounded,
    chat_template_option,
    check_dir_output,
    check_lora_rank,
    dtype_option,
    load_yaml,
    on_error_option,
)


def training_bf16(dtype: str) -> bool | None:
    """The ``bf16`` (autocast) config field a ``--dtype`` gives: ``auto`` leaves it to a YAML config's
    ``bf16``, else to :func:`~rewardkit.train.pairs.auto_bf16` (bf16 where ``auto`` scores in bf16:
    a GPU with native bf16, a CPU with hardware bf16 matmuls); ``float16`` training is not offered
    (it needs loss scaling)."""
    if dtype == "float16":
        raise click.UsageError("--dtype float16 is not offered for training (use bfloat16 or float32)")
    return None if dtype == "auto" else dtype == "bfloat16"


def common_training_options(fn):
    """Options both trainers share (each becomes a config field of the same name when given)."""
    for opt in reversed(
        [
            click.option("--model", required=True, help="base checkpoint folder"),
            click.option(
                "--data", required=True, help="preference file (jsonl/json/parquet/csv) or hub name"
            ),
            click.option("--out", required=True, help="output folder for the trained model"),
            click.option("--eval-data", default=None, help="held-out preference file, evaluated each epoch"),
            click.option("--epochs", type=EPOCHS, default=None),
            click.option("--lr", type=POSITIVE, default=None, help="learning rate"),
            click.option(
                "--batch-size", type=bounded("batch_size"), default=None, help="pairs per device per step"
            ),
            click.option(
                "--lora-r", type=bounded("lora_r"), default=None, help="LoRA rank (default: full fine-tuning)"
            ),
            click.option(
                "--max-length", type=bounded("max_length", 8), default=None, help="tokens per sequence"
            ),
            chat_template_option,
            dtype_option,
            click.option(
                "--save-checkpoints",
                is_flag=True,
                default=None,
                help="keep checkpoints under OUT/checkpoints (each epoch, or --save-steps), beside the final model",
            ),
            click.option(
                "--save-steps", type=bounded("steps"), default=None, help="checkpoint every N optimizer steps"
            ),
            click.option(
                "--resume", is_flag=True, help="continue an interrupted run from its last checkpoint in OUT"
            ),
            click.option(
                "--elastic-reset-every",
                type=bounded("steps"),
                default=None,
                help="Elastic Reset: reset to the EMA every N steps (Noukhovitch et al.)",
            ),
            click.option(
                "--ema-decay",
                type=FiniteFloat(0.0, open_min=True, max=1.0, open_max=True),
                default=None,
                help="Elastic Reset EMA decay",
            ),
            click.option("--config", "config_file", default=None, help="YAML file of training config fields"),
            on_error_option,
            click.option("--force", is_flag=True, help="overwrite an existing --out"),
        ]
    ):
        fn = opt(fn)
    return fn


def _run(kind: str, flags: dict, seeds: dict, extra: dict | None = None) -> None:
    """Config from YAML < --seed < explicit flags, validated; then data; then training (``extra``:
    further arguments of the training function)."""
    from pydantic import ValidationError

    from rewardkit.data import load_preferences
    from rewardkit.util import config_error

    model, data, out, eval_data = (
        flags.pop("model"),
        flags.pop("data"),
        flags.pop("out"),
        flags.pop("eval_data"),
    )
    resume, force, on_error = flags.pop("resume"), flags.pop("force"), flags.pop("on_error")
    config_file = flags.pop("config_file")
    every, decay = flags.pop("elastic_reset_every"), flags.pop("ema_decay")
    flags["bf16"] = training_bf16(flags.pop("dtype"))
    check_dir_output(out, [model, data, eval_data, config_file, *(extra or {}).values()], force or resume)
    fields = {**load_yaml(config_file), **seeds, **{k: v for k, v in flags.items() if v is not None}}
    if resume:
        fields["save_checkpoints"] = True
    callbacks = []
    if every is not None or decay is not None:
        from rewardkit.train.elastic import ElasticResetCallback

        if every is None:
            raise click.UsageError("--ema-decay needs --elastic-reset-every")
        callbacks.append(
            ElasticResetCallback(reset_every=every, ema_decay=decay if decay is not None else 0.995)
        )
    if kind == "explicit":
        from rewardkit.train import RewardTrainingConfig as Config
        from rewardkit.train import train_reward_model as train_fn

        what = "explicit reward model"
    else:
        from rewardkit.train import DPOTrainingConfig as Config
        from rewardkit.train import train_dpo as train_fn

        what = "DPO implicit reward model"
    try:  # a field of the YAML file out of its range or above its limit: one line naming the file
        config = Config(**fields)
    except ValidationError as e:
        raise config_error(e, f"train {kind} config", config_file) from None
    check_lora_rank(model, config.lora_r)  # before any work, also for a rank from --config
    if config.bf16 is None:  # --dtype auto: the machine's rule, recorded as the precision the run used
        from rewardkit.train.pairs import auto_bf16

        config = config.model_copy(update={"bf16": auto_bf16()})
    train_pairs = load_preferences(data, on_error=on_error)
    eval_pairs = load_preferences(eval_data, on_error=on_error) if eval_data else None
    trained = train_fn(
        model,
        train_pairs,
        eval_data=eval_pairs,
        out=out,
        config=config,
        force=force,
        resume=resume,
        callbacks=callbacks,
        **(extra or {}),
    )
    rm, info = trained.model, trained.record
    msg = (
        f"trained on {info.train_pairs} pairs in {info.optimizer_steps} steps on "
        f"{info.world_size} process(es) in {'bfloat16 autocast' if config.bf16 else 'float32'}; "
        f"saved {what} to {out}"
    )
    if eval_pairs is not None:
        msg += f" (held-out accuracy {rm.score_pairs(eval_pairs).accuracy():.4f})"
    click.echo(msg)


@click.group()
def train() -> None:
    """Train a reward model."""


@train.command("explicit")
@common_training_options
@click.option("--seed", type=SEED, default=None, help="sets seed, head seed and data seed together")
@click.option("--head-seed", type=SEED, default=None)
@click.option("--data-seed", type=SEED, default=None)
@click.option("--center-coef", type=NON_NEGATIVE, default=None, help="centring penalty coefficient")
@click.option("--label-smoothing", type=FiniteFloat(0.0, max=0.49), default=None)
def train_explicit(seed, **flags) -> None:
    """Train a Bradley-Terry reward model."""
    _run("explicit", flags, dict(seed=seed, head_seed=seed, data_seed=seed) if seed is not None else {})


@train.command("dpo")
@common_training_options
@click.option(
    "--ref-model", default=None, help="reference checkpoint (default: the starting policy / LoRA base)"
)
@click.option("--beta", type=POSITIVE, default=None)
@click.option("--loss", type=click.Choice(["sigmoid", "ipo", "hinge"]), default=None)
@click.option("--label-smoothing", type=FiniteFloat(0.0, max=0.49), default=None, help="conservative DPO")
@click.option("--reduction", type=click.Choice(["sum", "mean"]), default=None, help="how the DPORM scores")
@click.option("--seed", type=SEED, default=None, help="sets seed and data seed")
def train_dpo_cmd(ref_model, seed, **flags) -> None:
    """DPO-train a policy; its implicit reward is saved as a reward model."""
    if ref_model is not None:
        from rewardkit.checkpoints import check_model_folder

        check_model_folder(ref_model, "reference model")
    seeds = dict(seed=seed, data_seed=seed) if seed is not None else {}
    _run("dpo", flags, seeds, {"ref_model": ref_model} if ref_model is not None else None)
