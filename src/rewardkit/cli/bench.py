"""``rewardkit bench shift``."""

from __future__ import annotations

import click

from rewardkit.cli.options import COUNT, POSITIVE, chat_template_option, csv_list


@click.group()
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
@click.option("--n-train", type=COUNT, default=None)
@click.option("--n-eval", type=COUNT, default=None, help="pairs per evaluation split (at most)")
@click.option("--max-length", type=click.IntRange(min=8), default=None)
@chat_template_option
@click.option("--drop-long/--no-drop-long", default=None, help="drop pairs longer than --max-length")
@click.option("--seeds", default=None, help="comma-separated seeds, e.g. 0,1,2")
@click.option(
    "--members", type=click.IntRange(min=2), default=None, help="explicit RMs per seed for WARM and ensembles"
)
@click.option("--lora-r", type=COUNT, default=None)
@click.option("--beta", type=POSITIVE, default=None, help="DPO beta")
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
    from rewardkit.distributed import world
    from rewardkit.io import check_output

    shift = {
        "prompt_field": flags.pop("prompt_field"),
        "id_prompts": csv_list(flags.pop("id_prompts")),
        "ood_prompts": csv_list(flags.pop("ood_prompts")),
        "id_responses": csv_list(flags.pop("id_responses")),
        "ood_responses": csv_list(flags.pop("ood_responses")),
    }
    overrides = {k: v for k, v in flags.items() if v is not None}
    if "seeds" in overrides:
        try:
            overrides["seeds"] = csv_list(overrides["seeds"], int)
        except ValueError:
            raise click.BadParameter(
                f"{overrides['seeds']!r} is not a list of integers", param_hint="--seeds"
            ) from None
    if no_progress:
        overrides["progress"] = False
    shift = {k: v for k, v in shift.items() if v is not None}
    if shift:
        overrides["shift"] = shift
    config = resolve_config(preset, config_file, overrides)
    check_output(out, [config.data, config.model, config_file])  # flags or the config file's
    report = run_shift_benchmark(config, out, force=force)
    if world()[0] == 0:
        click.echo(report.to_markdown())
