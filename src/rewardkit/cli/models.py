"""``rewardkit ensemble``, ``rewardkit merge`` and ``rewardkit demo-model``: build models from models."""

from __future__ import annotations

import click

from rewardkit.cli.options import (
    NON_NEGATIVE,
    NumberList,
    Size,
    base_model_option,
    check_dir_output,
    load_yaml,
)


@click.command()
@click.argument("sources", nargs=-1, required=True)
@click.option("-o", "--out", required=True, help="output folder (members are embedded)")
@click.option(
    "--aggregation",
    type=click.Choice(["mean", "median", "min", "mean_minus_std", "mean_minus_var", "weighted"]),
    default="mean",
)
@click.option(
    "--uncertainty-penalty",
    type=NON_NEGATIVE,
    default=1.0,
    help="weight of the members' spread in mean_minus_std / mean_minus_var",
)
@click.option(
    "--weights", type=NumberList(), default=None, help="comma-separated member weights ('weighted')"
)
@click.option("--normalize", type=click.Choice(["none", "zscore"]), default="none")
@click.option("--calibration", default=None, help="preference file whose prompts/responses fit the z-scores")
@base_model_option
@click.option("--force", is_flag=True)
def ensemble(
    sources, out, aggregation, uncertainty_penalty, weights, normalize, calibration, base_model, force
) -> None:
    """Build a prediction ensemble from saved reward models."""
    from rewardkit.io import check_distinct

    check_distinct(sources, "ensemble member")
    check_dir_output(out, [*sources, calibration, base_model], force, base_model)
    if normalize == "zscore" and not calibration:
        raise click.UsageError("--normalize zscore needs --calibration FILE")
    if aggregation == "weighted" and weights is None:
        raise click.UsageError("--aggregation weighted needs --weights (one per member row)")
    if weights is not None and aggregation != "weighted":
        raise click.UsageError("--weights is used by --aggregation weighted only")
    from rewardkit.data import load_preferences
    from rewardkit.models.registry import load_ensemble

    cal = load_preferences(calibration) if calibration else None  # bad data fails before models load
    kw = {"base_model": base_model} if base_model else {}
    ens = load_ensemble(
        sources,
        aggregation=aggregation,
        uncertainty_penalty=uncertainty_penalty,
        weights=weights,
        normalize=normalize,
        load_kwargs=kw,
    )
    if cal is not None:
        from rewardkit.templating import Texts

        texts = Texts.from_pairs(cal)
        ens.fit_normalization(texts.prompts, texts.responses)
    ens.save(out, force=force)
    click.echo(f"saved {len(sources)}-member ensemble ({aggregation}, normalize={normalize}) to {out}")


@click.command()
@click.argument("sources", nargs=-1)
@click.option("-o", "--out", default=None, help="output folder")
@click.option("--weights", type=NumberList(), default=None, help="comma-separated weights; default uniform")
@click.option(
    "--dtype",
    type=click.Choice(["float32", "bfloat16", "float16"]),
    default=None,
    help="output dtype (default: the inputs')",
)
@click.option("--shard-size", type=Size(), default=None, help="largest output shard, e.g. 2GB (default 2GB)")
@click.option("--config", "config_file", default=None, help="YAML: sources, weights, dtype, shard_size")
@base_model_option
@click.option("--force", is_flag=True, help="overwrite an existing output folder")
def merge(sources, out, weights, dtype, shard_size, config_file, base_model, force) -> None:
    """Average the weights of reward models (WARM); exact for LoRA members."""
    from rewardkit.io import check_distinct
    from rewardkit.merge import weight_average
    from rewardkit.merge.config import MergeConfig

    fields = load_yaml(config_file)
    flags = dict(sources=list(sources) or None, out=out, dtype=dtype, shard_size=shard_size, weights=weights)
    fields.update({k: v for k, v in flags.items() if v is not None})
    config = MergeConfig(**fields)
    check_distinct(config.sources, "merge source")
    check_dir_output(config.out, [*config.sources, config_file, base_model], force, base_model)
    import yaml

    path = weight_average(
        config.sources,
        config.weights,
        out=config.out,
        dtype=config.dtype,
        shard_size=config.shard_size,
        force=force,
        base_model=base_model,
        extra_files={"merge.yaml": yaml.safe_dump(config.model_dump(), sort_keys=False)},
    )
    click.echo(f"merged {len(config.sources)} models -> {path}")


@click.command("demo-model")
def demo_model() -> None:
    """Convert (once) and print the path of the offline demo model SmolLM2-135M-Instruct."""
    from rewardkit.demo import demo_model_path

    click.echo(str(demo_model_path()))
