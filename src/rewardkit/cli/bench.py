"""``rewardkit bench shift`` and ``rewardkit bench hacking``."""

from __future__ import annotations

import click

from rewardkit.cli.options import (
    NON_NEGATIVE,
    POSITIVE,
    SEED,
    FiniteFloat,
    bounded,
    chat_template_option,
    csv_list,
    dtype_choice,
    run_inputs_of,
)


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
@click.option("--n-train", type=bounded("pairs"), default=None)
@click.option("--n-eval", type=bounded("pairs"), default=None, help="pairs per evaluation split (at most)")
@click.option("--max-length", type=bounded("max_length", 8), default=None)
@chat_template_option
@dtype_choice(None)
@click.option("--drop-long/--no-drop-long", default=None, help="drop pairs longer than --max-length")
@click.option("--seeds", default=None, help="comma-separated seeds, e.g. 0,1,2")
@click.option(
    "--members", type=bounded("members", 2), default=None, help="explicit RMs per seed for WARM and ensembles"
)
@click.option("--lora-r", type=bounded("lora_r"), default=None)
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
    check_output(out, run_inputs_of([config.data, config.model, config_file]))  # and what models name
    report = run_shift_benchmark(config, out, force=force)
    if world()[0] == 0:
        click.echo(report.to_markdown())


#: RL settings (``rl.<field>``) -> their bench hacking flags
_RL_FLAGS = {
    "steps": "rl_steps",
    "seeds": "rl_seeds",
    "beta": "kl_coef",
    "elastic_reset_every": "elastic_reset_every",
    "ema_decay": "ema_decay",
}


@bench.command("hacking")
@click.option("--preset", type=click.Choice(["ci", "cpu", "gpu"]), default="cpu", show_default=True)
@click.option(
    "--out",
    required=True,
    help="output folder (report.json / report.md / report.png / candidates.jsonl / config.yaml)",
)
@click.option("--config", "config_file", default=None, help="YAML file of bench hacking config fields")
@click.option("--data", default=None, help="preference source of prompts and pairs (default: built-in task)")
@click.option("--recipe", default=None, help="named data recipe: alpaca_eval, hh_rlhf, ultrafeedback, ...")
@click.option("--model", default=None, help="backbone of every proxy (default: the preset's)")
@click.option("--gold", default=None, help="gold reward model folder (default: the synthetic gold reward)")
@click.option("--policy", default=None, help="HF causal LM folder that samples the K candidates (cached)")
@click.option("--candidates", default=None, help="JSONL of {prompt, candidates: [...]} per line")
@click.option("--n-train", type=bounded("pairs", 4), default=None, help="training pairs of every proxy")
@click.option("--n-prompts", type=bounded("pairs", 2), default=None, help="best-of-N prompts")
@click.option("--k", type=bounded("k", 2), default=None, help="candidates per prompt (largest N)")
@click.option(
    "--corruption",
    type=FiniteFloat(0.0, open_min=True, max=1.0, open_max=True),
    default=None,
    help="share of swapped labels in the corrupt setup (default 0.25)",
)
@click.option("--members", type=bounded("members", 2), default=None, help="explicit RMs per setup")
@click.option("--lora-r", type=bounded("lora_r"), default=None)
@click.option("--max-length", type=bounded("max_length", 8), default=None)
@chat_template_option
@dtype_choice(None)
@click.option("--beta", type=POSITIVE, default=None, help="DPO beta")
@click.option("--dporm/--no-dporm", default=None, help="train the DPO policy (DPORM) too")
@click.option(
    "--pretrain-models", default=None, help="comma-separated other backbones, for a pretrain ensemble"
)
@click.option("--seed", type=SEED, default=None)
@click.option(
    "--optimizer",
    type=click.Choice(["bon", "rl", "both"]),
    default=None,
    help="best-of-N (default), RL through TRL's GRPOTrainer (needs rewardkit[rl]), or both",
)
@click.option("--rl-steps", type=bounded("steps"), default=None, help="GRPO steps per RL run")
@click.option("--rl-seeds", default=None, help="comma-separated RL seeds, e.g. 0,1")
@click.option("--kl-coef", type=NON_NEGATIVE, default=None, help="GRPO's KL-penalty coefficient (TRL's beta)")
@click.option(
    "--elastic-reset-every", type=bounded("steps"), default=None, help="EXRM-1+ER: steps between resets"
)
@click.option(
    "--ema-decay",
    type=FiniteFloat(0.0, open_min=True, max=1.0, open_max=True),
    default=None,
    help="EXRM-1+ER: EMA decay",
)
@click.option("--keep-models", is_flag=True, default=None, help="keep trained models under OUT/models")
@click.option("--no-progress", is_flag=True, help="no progress bars")
@click.option("--force", is_flag=True, help="overwrite a non-empty --out")
def bench_hacking(preset, out, config_file, force, no_progress, **flags) -> None:
    """Reward over-optimisation: gold reward of each proxy's best-of-N pick vs N (clean and corrupt)."""
    from rewardkit.bench.hacking import run_hacking_benchmark
    from rewardkit.bench.hacking_config import resolve_hacking_config
    from rewardkit.bench.hacking_report import to_markdown
    from rewardkit.bench.hacking_rl_report import full_markdown
    from rewardkit.distributed import world
    from rewardkit.io import check_output

    rl = {k: flags.pop(f) for k, f in _RL_FLAGS.items() if flags.get(f) is not None}
    if "seeds" in rl:
        try:
            rl["seeds"] = csv_list(rl["seeds"], int)
        except ValueError:
            raise click.BadParameter(
                f"{rl['seeds']!r} is not a list of integers", param_hint="--rl-seeds"
            ) from None
    overrides = {k: v for k, v in flags.items() if v is not None and k not in _RL_FLAGS.values()}
    if rl:
        overrides["rl"] = rl
    if "pretrain_models" in overrides:
        overrides["pretrain_models"] = csv_list(overrides["pretrain_models"])
    if no_progress:
        overrides["progress"] = False
    config = resolve_hacking_config(preset, config_file, overrides)
    inputs = [config.data, config.model, config.gold, config.policy, config.candidates, config_file]
    inputs += config.pretrain_models
    check_output(out, run_inputs_of(inputs))  # and every folder a model among them names
    report = run_hacking_benchmark(config, out, force=force)
    if world()[0] == 0:
        click.echo(to_markdown(report) if config.optimizer == "bon" else full_markdown(report))
