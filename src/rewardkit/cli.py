"""``rewardkit`` command line: thin wrappers over the Python API.

Errors in input (files, data, arguments) print one ``error: ...`` line and exit with status 2.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from rewardkit.errors import RewardkitError


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _load_yaml(path: str | None) -> dict:
    if path is None:
        return {}
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as e:
        raise RewardkitError(f"{path}: invalid YAML ({e})") from None
    if not isinstance(data, dict):
        raise RewardkitError(f"{path}: expected a mapping of config fields")
    return data


def _refuse_existing(path: str, force: bool) -> None:
    if Path(path).exists() and not force:
        raise RewardkitError(f"{path}: already exists (use --force to overwrite)")


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="log progress details")
@click.version_option(package_name="rewardkit")
def cli(verbose: bool) -> None:
    """Reward models for RLHF: train, score, evaluate, merge."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )


def _training_inputs(
    config_cls, out, force, config_file, seeds: dict, flags: dict, data, eval_data, on_error
):
    """Config from YAML < --seed < explicit flags, validated; then the training / held-out pairs."""
    from rewardkit.data import load_preferences

    _refuse_existing(out, force)
    fields = {**_load_yaml(config_file), **seeds, **{k: v for k, v in flags.items() if v is not None}}
    config = config_cls(**fields)
    train_pairs = load_preferences(data, on_error=on_error)
    eval_pairs = load_preferences(eval_data, on_error=on_error) if eval_data else None
    return config, train_pairs, eval_pairs


def _trained_message(rm, what: str, out: str, eval_pairs) -> str:
    info = rm.training_info
    msg = (
        f"trained on {info['train_pairs']} pairs in {info['optimizer_steps']} steps on "
        f"{info['world_size']} process(es); saved {what} to {out}"
    )
    if eval_pairs is not None:
        msg += f" (held-out accuracy {rm.score_pairs(eval_pairs).accuracy():.4f})"
    return msg


def chat_template_option(fn):
    return click.option(
        "--chat-template",
        type=click.Choice(["auto", "always", "never"]),
        default=None,
        help="when to apply the tokenizer's chat template: auto (conversational prompts only, TRL's rule; "
        "default), always, never. A saved model keeps the convention it was trained with.",
    )(fn)


@cli.group()
def train() -> None:
    """Train a reward model."""


@train.command("explicit")
@click.option("--model", required=True, help="base checkpoint folder (causal LM or encoder)")
@click.option("--data", required=True, help="preference file (jsonl/json/parquet/csv) or hub dataset name")
@click.option("--out", required=True, help="output folder for the trained reward model")
@click.option("--eval-data", default=None, help="held-out preference file, evaluated each epoch")
@click.option("--epochs", type=float, default=None)
@click.option("--lr", type=float, default=None)
@click.option("--batch-size", type=int, default=None, help="pairs per device per step")
@click.option("--lora-r", type=int, default=None, help="LoRA rank (default: full fine-tuning)")
@click.option("--seed", type=int, default=None, help="sets seed, head seed and data seed together")
@click.option("--head-seed", type=int, default=None)
@click.option("--data-seed", type=int, default=None)
@click.option("--max-length", type=int, default=None)
@click.option("--center-coef", type=float, default=None, help="centring penalty coefficient")
@chat_template_option
@click.option("--config", "config_file", default=None, help="YAML file of RewardTrainingConfig fields")
@click.option("--on-error", type=click.Choice(["raise", "skip"]), default="raise", help="malformed records")
@click.option("--force", is_flag=True, help="overwrite an existing --out")
def train_explicit(
    model,
    data,
    out,
    eval_data,
    epochs,
    lr,
    batch_size,
    lora_r,
    seed,
    head_seed,
    data_seed,
    max_length,
    center_coef,
    chat_template,
    config_file,
    on_error,
    force,
) -> None:
    """Train a Bradley-Terry reward model."""
    from rewardkit.train import RewardTrainingConfig, train_reward_model

    seeds = dict(seed=seed, head_seed=seed, data_seed=seed) if seed is not None else {}
    flags = dict(
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        lora_r=lora_r,
        head_seed=head_seed,
        data_seed=data_seed,
        max_length=max_length,
        center_coef=center_coef,
        chat_template=chat_template,
    )
    config, train_pairs, eval_pairs = _training_inputs(
        RewardTrainingConfig, out, force, config_file, seeds, flags, data, eval_data, on_error
    )
    rm = train_reward_model(model, train_pairs, eval_data=eval_pairs, out=out, config=config, force=force)
    click.echo(_trained_message(rm, "explicit reward model", out, eval_pairs))


@train.command("dpo")
@click.option("--model", required=True, help="causal LM checkpoint to train (the starting policy)")
@click.option("--data", required=True, help="preference file or hub dataset name")
@click.option("--out", required=True, help="output folder: a DPO implicit reward model")
@click.option(
    "--reference", default=None, help="reference checkpoint (default: the starting policy / LoRA base)"
)
@click.option("--eval-data", default=None)
@click.option("--beta", type=float, default=None)
@click.option("--loss", type=click.Choice(["sigmoid", "ipo", "hinge"]), default=None)
@click.option("--label-smoothing", type=float, default=None, help="conservative DPO")
@click.option("--reduction", type=click.Choice(["sum", "mean"]), default=None, help="how the DPORM scores")
@click.option("--epochs", type=float, default=None)
@click.option("--lr", type=float, default=None)
@click.option("--batch-size", type=int, default=None)
@click.option("--lora-r", type=int, default=None)
@click.option("--seed", type=int, default=None, help="sets seed and data seed")
@click.option("--max-length", type=int, default=None)
@chat_template_option
@click.option("--config", "config_file", default=None, help="YAML file of DPOTrainingConfig fields")
@click.option("--on-error", type=click.Choice(["raise", "skip"]), default="raise")
@click.option("--force", is_flag=True)
def train_dpo_cmd(
    model,
    data,
    out,
    reference,
    eval_data,
    beta,
    loss,
    label_smoothing,
    reduction,
    epochs,
    lr,
    batch_size,
    lora_r,
    seed,
    max_length,
    chat_template,
    config_file,
    on_error,
    force,
) -> None:
    """DPO-train a policy; its implicit reward is saved as a reward model."""
    from rewardkit.train import DPOTrainingConfig, train_dpo

    seeds = dict(seed=seed, data_seed=seed) if seed is not None else {}
    flags = dict(
        beta=beta,
        loss=loss,
        label_smoothing=label_smoothing,
        reduction=reduction,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        lora_r=lora_r,
        max_length=max_length,
        chat_template=chat_template,
    )
    config, train_pairs, eval_pairs = _training_inputs(
        DPOTrainingConfig, out, force, config_file, seeds, flags, data, eval_data, on_error
    )
    rm = train_dpo(
        model, train_pairs, reference=reference, eval_data=eval_pairs, out=out, config=config, force=force
    )
    click.echo(_trained_message(rm, "DPO implicit reward model", out, eval_pairs))


def _configure_engine(rm, chat_template: str | None = None, **settings) -> None:
    """Set the scoring-engine settings that are not None on a model and on every member of an ensemble;
    ``chat_template`` replaces the token convention the model was saved with."""
    for member in getattr(rm, "members", None) or []:
        _configure_engine(member, chat_template, **settings)
    for key, value in settings.items():
        if value is not None and hasattr(rm, key):
            setattr(rm, key, value)
    if chat_template is not None and hasattr(rm, "formatter"):
        from rewardkit.templating import Formatter

        f = rm.formatter
        rm.formatter = Formatter(f.tokenizer, f.max_length, chat_template, f.pair_encoding)


def _load_rm(
    rm_dir: str | None,
    max_batch_size: int | None,
    dpo: dict | None = None,
    device=None,
    max_tokens: int | None = None,
    progress: bool | None = None,
    chat_template: str | None = None,
):
    from rewardkit.base import load_reward_model

    if dpo and dpo.get("policy"):
        from rewardkit.models.implicit import DPOImplicitRM

        if rm_dir:
            raise click.UsageError("give either --rm or --dpo-policy, not both")
        if dpo["beta"] is None:
            raise click.UsageError("--dpo-policy needs --beta")
        rm = DPOImplicitRM.from_pretrained(
            dpo["policy"],
            dpo["reference"],
            beta=dpo["beta"],
            reduction=dpo["reduction"],
            reference_free=dpo["reference_free"],
            device=device,
        )
    elif rm_dir:
        rm = load_reward_model(rm_dir, **({"device": device} if device is not None else {}))
    else:
        raise click.UsageError("give --rm DIR (or --dpo-policy PATH --dpo-reference PATH --beta B)")
    _configure_engine(
        rm, chat_template, max_batch_size=max_batch_size, max_tokens=max_tokens, progress=progress
    )
    return rm


def dpo_options(fn):
    """Score with the implicit reward of any two causal LMs, no training needed."""
    for opt in reversed(
        [
            click.option("--dpo-policy", default=None, help="policy checkpoint (or LoRA adapter folder)"),
            click.option(
                "--dpo-reference",
                default=None,
                help="reference checkpoint (default for a LoRA adapter policy: its base model)",
            ),
            click.option("--reference-free", is_flag=True, help="r = beta * log pi(y|x), no reference"),
            click.option("--beta", type=float, default=None, help="DPO beta of the implicit reward"),
            click.option("--reduction", type=click.Choice(["sum", "mean"]), default="sum"),
        ]
    ):
        fn = opt(fn)
    return fn


@cli.command()
@click.option("--rm", "rm_dir", default=None, help="reward model folder")
@dpo_options
@click.option("--data", required=True, help="preference file or hub dataset name")
@click.option("--out", required=True, help="output JSONL: one line per pair, in input order")
@click.option("--batch-size", type=int, default=None, help="upper bound on sequences per batch")
@click.option(
    "--max-tokens",
    type=int,
    default=None,
    help="padded tokens per batch (default 1024 on CPU, 16384 on CUDA)",
)
@click.option("--no-progress", is_flag=True, help="no progress bar (it is off anyway when not on a terminal)")
@chat_template_option
@click.option("--on-error", type=click.Choice(["raise", "skip"]), default="raise")
@click.option("--force", is_flag=True, help="overwrite an existing --out")
def score(
    rm_dir,
    dpo_policy,
    dpo_reference,
    reference_free,
    beta,
    reduction,
    data,
    out,
    batch_size,
    max_tokens,
    no_progress,
    chat_template,
    on_error,
    force,
) -> None:
    """Score the chosen and rejected response of every pair."""
    import numpy as np

    from rewardkit.base import PairScores, pairwise_accuracy
    from rewardkit.data import load_preferences
    from rewardkit.io import atomic_write_text

    _refuse_existing(out, force)
    pairs = load_preferences(data, on_error=on_error)
    dpo = {
        "policy": dpo_policy,
        "reference": dpo_reference,
        "reference_free": reference_free,
        "beta": beta,
        "reduction": reduction,
    }
    from rewardkit.distributed import gather_rows, init_distributed

    rank, size, device = init_distributed()  # under torchrun: each rank scores pairs rank, rank+size, ...
    rm = _load_rm(rm_dir, batch_size, dpo, device, max_tokens, False if no_progress else None, chat_template)
    index = list(range(rank, len(pairs), size))
    shard = [pairs[i] for i in index]
    n = len(shard)
    uncertainty = None
    if hasattr(rm, "uncertainty"):  # ensembles: per-member rewards and their std too
        from rewardkit.templating import Texts

        uncertainty = rm.uncertainty(Texts.from_pairs(shard))
        scores = PairScores(uncertainty.aggregate[:n], uncertainty.aggregate[n:])
    else:
        scores = rm.score_pairs(shard) if shard else PairScores(np.zeros(0), np.zeros(0))
    rows = [
        {"index": i, "chosen": float(c), "rejected": float(r), "margin": float(c - r)}
        for i, c, r in zip(index, scores.chosen, scores.rejected)
    ]
    if uncertainty is not None:
        for j, row in enumerate(rows):
            row.update(
                chosen_members=uncertainty.members[:, j].tolist(),
                rejected_members=uncertainty.members[:, n + j].tolist(),
                chosen_std=float(uncertainty.std[j]),
                rejected_std=float(uncertainty.std[n + j]),
            )
    rows = gather_rows(rows, rank, size)
    if rows is None:  # not rank 0
        return
    atomic_write_text(out, "".join(json.dumps(row) + "\n" for row in rows))
    margins = np.array([r["margin"] for r in rows])
    click.echo(
        f"scored {len(rows)} pairs on {size} process(es) -> {out} (accuracy {pairwise_accuracy(margins):.4f})"
    )


def _named_rms(specs: tuple[str, ...], batch_size: int | None, dpo: dict) -> dict:
    """``--rm DIR`` or ``--rm NAME=DIR[,DIR2,...]`` (several folders = several trained seeds of one model)."""
    rms: dict = {}
    for spec in specs:
        name, _, dirs = spec.rpartition("=") if "=" in spec else ("", "", spec)
        folders = dirs.split(",")
        name = name or Path(folders[0]).name
        if name in rms:
            raise click.UsageError(f"two reward models named {name!r}; use --rm NAME=DIR")
        rms[name] = [_load_rm(d, batch_size) for d in folders]
    if dpo.get("policy"):
        rms[Path(dpo["policy"]).name] = [_load_rm(None, batch_size, dpo)]
    if not rms:
        raise click.UsageError("give --rm DIR (or --dpo-policy PATH --dpo-reference PATH --beta B)")
    return {k: v[0] if len(v) == 1 else v for k, v in rms.items()}


@cli.command("eval")
@click.option(
    "--rm", "rm_specs", multiple=True, help="reward model folder, or NAME=DIR[,DIR2..] (seeds); repeatable"
)
@dpo_options
@click.option("--data", required=True, help="preference file or hub dataset name")
@click.option("--split-by", default=None, help="metadata field that defines the splits (e.g. subset)")
@click.option("--ood", default=None, help="comma-separated values of --split-by that are out of distribution")
@click.option("--ties", type=click.Choice(["half", "correct", "wrong"]), default="half", help="tie policy")
@click.option("--json", "json_out", default=None, help="write the report as JSON here")
@click.option("--markdown", "md_out", default=None, help="write the table as Markdown here")
@click.option("--plot", "plot_out", default=None, help="write ID vs OOD bars with CIs as PNG here")
@click.option("--n-boot", type=int, default=2000, help="bootstrap resamples for CIs and paired tests")
@click.option("--batch-size", type=int, default=None)
@click.option("--on-error", type=click.Choice(["raise", "skip"]), default="raise")
@click.option("--force", is_flag=True, help="overwrite existing output files")
def eval_cmd(
    rm_specs,
    dpo_policy,
    dpo_reference,
    reference_free,
    beta,
    reduction,
    data,
    split_by,
    ood,
    ties,
    json_out,
    md_out,
    plot_out,
    n_boot,
    batch_size,
    on_error,
    force,
) -> None:
    """Pairwise accuracy per model and split (ID vs OOD), 95% CIs, paired tests between models."""
    from rewardkit.data import load_preferences
    from rewardkit.eval import evaluate

    if ood and not split_by:
        raise click.UsageError("--ood needs --split-by")
    for out in (json_out, md_out, plot_out):
        if out:
            _refuse_existing(out, force)
    pairs = load_preferences(data, on_error=on_error)
    dpo = {
        "policy": dpo_policy,
        "reference": dpo_reference,
        "reference_free": reference_free,
        "beta": beta,
        "reduction": reduction,
    }
    rms = _named_rms(rm_specs, batch_size, dpo)
    id_split = None
    if not split_by:
        splits = {"all": pairs}
    elif ood:
        ood_values = ood.split(",")
        keys = {str(k) for k in pairs.values(split_by)}
        unknown = set(ood_values) - keys
        if unknown:
            raise RewardkitError(f"--ood values not found in field {split_by!r}: {sorted(unknown)}")
        groups = {str(k): v for k, v in pairs.group_by(split_by).items()}
        id_split = "id"
        splits = {"id": pairs.filter(lambda p: str(p.metadata[split_by]) not in ood_values)}
        splits.update({v: groups[v] for v in ood_values})
    else:
        splits = {str(k): v for k, v in pairs.group_by(split_by).items()}
    report = evaluate(rms, splits, id_split=id_split, ties=ties, n_boot=n_boot)
    report.extra.update(data=str(data), split_by=split_by)
    if json_out:
        report.to_json(json_out)
    if md_out:
        from rewardkit.io import atomic_write_text

        atomic_write_text(md_out, report.to_markdown())
    if plot_out:
        report.plot(plot_out)
    click.echo(report.to_markdown())


@cli.command()
@click.argument("sources", nargs=-1, required=True)
@click.option("-o", "--out", required=True, help="output folder (members are embedded)")
@click.option(
    "--aggregation",
    type=click.Choice(["mean", "median", "min", "mean_minus_std", "mean_minus_var", "weighted"]),
    default="mean",
)
@click.option("--lam", type=float, default=1.0, help="uncertainty penalty of mean_minus_std / mean_minus_var")
@click.option("--weights", default=None, help="comma-separated member weights (aggregation 'weighted')")
@click.option("--normalize", type=click.Choice(["none", "zscore"]), default="none")
@click.option("--calibration", default=None, help="preference file whose prompts/responses fit the z-scores")
@click.option("--force", is_flag=True)
def ensemble(sources, out, aggregation, lam, weights, normalize, calibration, force) -> None:
    """Build a prediction ensemble from saved reward models."""
    from rewardkit.data import load_preferences
    from rewardkit.models.ensemble import EnsembleRM

    _refuse_existing(out, force)
    if normalize == "zscore" and not calibration:
        raise click.UsageError("--normalize zscore needs --calibration FILE")
    w = [float(x) for x in weights.split(",")] if weights else None
    ens = EnsembleRM.from_paths(sources, aggregation=aggregation, lam=lam, weights=w, normalize=normalize)
    if calibration:
        cal = load_preferences(calibration)
        ens.fit_normalization(
            [p.prompt for p in cal] * 2, [p.chosen for p in cal] + [p.rejected for p in cal]
        )
    ens.save(out, force=force)
    click.echo(f"saved {len(sources)}-member ensemble ({aggregation}, normalize={normalize}) to {out}")


@cli.command()
@click.argument("sources", nargs=-1)
@click.option("-o", "--out", default=None, help="output folder")
@click.option(
    "--weights", default=None, help="comma-separated weights (normalised to sum 1); default uniform"
)
@click.option(
    "--dtype",
    type=click.Choice(["float32", "bfloat16", "float16"]),
    default=None,
    help="output dtype (default: the inputs')",
)
@click.option("--shard-size", default=None, help="largest output shard, e.g. 2GB (default 2GB)")
@click.option("--config", "config_file", default=None, help="YAML: sources, weights, dtype, shard_size")
@click.option("--force", is_flag=True, help="overwrite an existing output folder")
def merge(sources, out, weights, dtype, shard_size, config_file, force) -> None:
    """Average the weights of reward models (WARM); exact for LoRA members."""
    from rewardkit.io import atomic_write_text
    from rewardkit.merge import weight_average
    from rewardkit.train.config import MergeConfig

    fields = _load_yaml(config_file)
    flags = dict(
        sources=list(sources) or None,
        out=out,
        dtype=dtype,
        shard_size=shard_size,
        weights=[float(x) for x in weights.split(",")] if weights else None,
    )
    fields.update({k: v for k, v in flags.items() if v is not None})
    config = MergeConfig(**fields)
    path = weight_average(
        config.sources,
        config.weights,
        out=config.out,
        dtype=config.dtype,
        shard_size=config.shard_size,
        force=force,
    )
    import yaml

    atomic_write_text(path / "merge.yaml", yaml.safe_dump(config.model_dump(), sort_keys=False))
    click.echo(f"merged {len(config.sources)} models -> {path}")


def _csv(value: str | None, cast=str) -> list | None:
    return [cast(x.strip()) for x in value.split(",") if x.strip()] if value else None


@cli.group()
def bench() -> None:
    """Benchmarks."""


@bench.command("shift")
@click.option("--preset", type=click.Choice(["ci", "cpu", "gpu"]), default="cpu", show_default=True)
@click.option(
    "--out", required=True, help="output folder (report.json / report.md / report.png / config.yaml)"
)
@click.option("--config", "config_file", default=None, help="YAML file of bench config fields")
@click.option("--data", default=None, help="preference source (default: the built-in synthetic task)")
@click.option("--recipe", default=None, help="named data recipe: alpaca_eval, hh_rlhf, ultrafeedback, ...")
@click.option("--model", default=None, help="base checkpoint (default: the preset's)")
@click.option("--n-train", type=int, default=None)
@click.option("--n-eval", type=int, default=None, help="pairs per evaluation split (at most)")
@click.option("--max-length", type=int, default=None)
@chat_template_option
@click.option("--drop-long/--no-drop-long", default=None, help="drop pairs longer than --max-length")
@click.option("--seeds", default=None, help="comma-separated seeds, e.g. 0,1,2")
@click.option("--members", type=int, default=None, help="explicit RMs per seed for WARM and ensembles")
@click.option("--lora-r", type=int, default=None)
@click.option("--beta", type=float, default=None, help="DPO beta")
@click.option("--prompt-field", default=None, help="metadata field of the prompt source")
@click.option("--id-prompts", default=None, help="comma-separated ID prompt sources")
@click.option("--ood-prompts", default=None, help="comma-separated OOD prompt sources (default: the rest)")
@click.option("--id-responses", default=None, help="comma-separated ID response sources (generators)")
@click.option("--ood-responses", default=None, help="comma-separated OOD response sources")
@click.option("--mixture/--no-mixture", default=None, help="evaluate the prompt + response shift mixture")
@click.option("--keep-models", is_flag=True, default=None, help="keep trained models under OUT/models")
@click.option("--no-progress", is_flag=True, help="no progress bars")
@click.option("--force", is_flag=True, help="overwrite a non-empty --out")
def bench_shift(preset, out, config_file, force, no_progress, **flags) -> None:
    """EXRM vs DPORM (and WARM, ensembles) under prompt and response shift."""
    from rewardkit.bench import resolve_config, run_shift_benchmark

    shift = {
        "prompt_field": flags.pop("prompt_field"),
        "id_prompts": _csv(flags.pop("id_prompts")),
        "ood_prompts": _csv(flags.pop("ood_prompts")),
        "id_responses": _csv(flags.pop("id_responses")),
        "ood_responses": _csv(flags.pop("ood_responses")),
    }
    overrides = {k: v for k, v in flags.items() if v is not None}
    if "seeds" in overrides:
        overrides["seeds"] = _csv(overrides["seeds"], int)
    if no_progress:
        overrides["progress"] = False
    shift = {k: v for k, v in shift.items() if v is not None}
    if shift:
        overrides["shift"] = shift
    config = resolve_config(preset, config_file, overrides)
    from rewardkit.distributed import world

    report = run_shift_benchmark(config, out, force=force)
    if world()[0] == 0:
        click.echo(report.to_markdown())


@cli.command("demo-model")
def demo_model() -> None:
    """Convert (once) and print the path of the offline demo model SmolLM2-135M-Instruct."""
    from rewardkit.demo import demo_model_path

    click.echo(str(demo_model_path()))


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="rewardkit", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        _fail("aborted")
    except (RewardkitError, FileNotFoundError) as e:
        _fail(str(e))
    except Exception as e:  # pydantic validation errors: one line naming the field
        from pydantic import ValidationError

        if isinstance(e, ValidationError):
            err = e.errors()[0]
            _fail(f"config field {'.'.join(map(str, err['loc']))}: {err['msg']}")
        raise


if __name__ == "__main__":
    main()
